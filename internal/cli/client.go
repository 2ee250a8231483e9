package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// client talks to a Gantry server's /v1 API.
type client struct {
	base  string
	http  *http.Client
	token string
	err   error // a configuration problem, reported on first use
}

func (g *globals) client() *client {
	base := strings.TrimRight(g.address, "/")
	c := &client{http: &http.Client{}, token: g.token}
	if g.tls.Enabled() {
		cfg, err := g.tls.ClientConfig()
		if err != nil {
			c.err = fmt.Errorf("TLS: %w", err)
		}
		c.http.Transport = &http.Transport{TLSClientConfig: cfg}
		base = strings.Replace(base, "http://", "https://", 1)
		if !strings.Contains(base, "://") {
			base = "https://" + base
		}
	} else if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c.base = base
	return c
}

// apiError is an error the server answered with.
type apiError struct {
	Status int
	Msg    string
	Errors []api.FieldError // every problem of a rejected job, when the server lists them
}

func (e *apiError) Error() string { return e.Msg }

func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the server's answer to %s %s is not valid JSON: %w", method, path, err)
	}
	return nil
}

// raw sends a request and returns the response when its status is 2xx.
func (c *client) raw(ctx context.Context, method, path string, body any) (*http.Response, error) {
	if c.err != nil {
		return nil, c.err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("bad server address %q: %w", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Gantry-Token", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("server answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return nil, &apiError{Status: resp.StatusCode, Msg: e.Error, Errors: e.Errors}
	}
	return resp, nil
}

func (c *client) connError(err error) error {
	var ne net.Error
	if errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &ne) && !ne.Timeout() {
		return fmt.Errorf("no Gantry server answers at %s: start one with 'gantry dev' or point --address (GANTRY_ADDRESS) at one", c.base)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("the Gantry server at %s did not answer in time", c.base)
	}
	return fmt.Errorf("cannot reach the Gantry server at %s: %v", c.base, err)
}

func (c *client) get(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func nsQuery(ns string) string {
	if ns == "" {
		return ""
	}
	return "?namespace=" + url.QueryEscape(ns)
}

func (c *client) job(ns, name string) (*api.JobSummary, error) {
	var s api.JobSummary
	err := c.get("/v1/jobs/"+url.PathEscape(name)+nsQuery(ns), &s)
	return &s, err
}

func (c *client) jobAllocs(ns, name string) ([]*api.Allocation, error) {
	var as []*api.Allocation
	err := c.get("/v1/jobs/"+url.PathEscape(name)+"/allocations"+nsQuery(ns), &as)
	return as, err
}

func (c *client) eval(id string) (*api.Evaluation, error) {
	var e api.Evaluation
	err := c.get("/v1/evaluations/"+url.PathEscape(id), &e)
	return &e, err
}

func (c *client) alloc(id string) (*api.Allocation, error) {
	var a api.Allocation
	err := c.get("/v1/allocations/"+url.PathEscape(id), &a)
	return &a, err
}

func (c *client) node(id string) (*api.Node, error) {
	var n api.Node
	err := c.get("/v1/nodes/"+url.PathEscape(id), &n)
	return &n, err
}

// answers reports whether a Gantry server answers at the address within
// two seconds.
func (c *client) answers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st api.StatusResponse
	return c.do(ctx, http.MethodGet, "/v1/status", nil, &st) == nil
}
