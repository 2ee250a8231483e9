package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// client is the CLI's handle on the typed /v1 client: the servers, TLS
// and token of the global flags, and a problem with those flags, reported
// on first use.
type client struct {
	*apiclient.Client
	err error
}

// unreachableHint ends the error for servers that cannot be reached.
const unreachableHint = "start one with 'gantry dev' or point --address (GANTRY_ADDRESS) at one"

// apiOptions are the typed client's options from the global flags:
// --address may name several servers, comma-separated, tried in turn.
func (g *globals) apiOptions() (apiclient.Options, error) {
	o := apiclient.Options{Servers: strings.Split(g.address, ","), Token: g.token, Hint: unreachableHint,
		// An overloaded server answers submissions 429 with a
		// Retry-After: the client waits it out (within the command's
		// time limit) and says so, so that the wait is not silent.
		OnThrottle: func(_, _ string, wait time.Duration, answer *apiclient.Error) {
			fmt.Fprintf(g.errw, "%s; sending it again in %s\n", answer.Message, wait.Round(time.Second))
		}}
	if !g.tls.Enabled() {
		return o, nil
	}
	cfg, err := g.tls.ClientConfig()
	if err != nil {
		cfg, err = &tls.Config{}, fmt.Errorf("TLS: %w", err)
	}
	o.TLS = cfg
	return o, err
}

func (g *globals) client() *client {
	o, err := g.apiOptions()
	return &client{Client: apiclient.New(o), err: err}
}

// apiError is an error the server answered with.
type apiError = apiclient.Error

func isNotFound(err error) bool { return apiclient.IsNotFound(err) }

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	if c.err != nil {
		return c.err
	}
	return c.Do(ctx, method, path, body, out)
}

// raw sends a request and returns the response when its status is 2xx.
func (c *client) raw(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if c.err != nil {
		return nil, c.err
	}
	return c.Stream(ctx, method, path, body)
}

func (c *client) get(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// read runs one typed read with the CLI's limit of 30 s.
func read[T any](c *client, f func(context.Context) (T, error)) (T, error) {
	if c.err != nil {
		var zero T
		return zero, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f(ctx)
}

func nsQuery(ns string) string {
	if ns == "" {
		return ""
	}
	return "?namespace=" + url.QueryEscape(ns)
}

func (c *client) job(ns, name string) (*api.JobSummary, error) {
	return read(c, func(ctx context.Context) (*api.JobSummary, error) { return c.Job(ctx, ns, name, false) })
}

func (c *client) jobAllocs(ns, name string) ([]*api.Allocation, error) {
	return read(c, func(ctx context.Context) ([]*api.Allocation, error) { return c.JobAllocs(ctx, ns, name, false) })
}

func (c *client) eval(id string) (*api.Evaluation, error) {
	return read(c, func(ctx context.Context) (*api.Evaluation, error) { return c.Eval(ctx, id) })
}

func (c *client) alloc(id string) (*api.Allocation, error) {
	return read(c, func(ctx context.Context) (*api.Allocation, error) { return c.Alloc(ctx, id) })
}

func (c *client) node(id string) (*api.Node, error) {
	return read(c, func(ctx context.Context) (*api.Node, error) { return c.Node(ctx, id) })
}

// answers reports whether a Gantry server answers at the address within
// two seconds.
func (c *client) answers() bool {
	if c.err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Status(ctx)
	return err == nil
}
