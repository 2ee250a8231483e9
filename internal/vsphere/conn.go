package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Connection is what it takes to reach one vCenter. Password and CACert
// stay inside the cluster state and this package: never print or log a
// Connection whole (String hides the password).
type Connection struct {
	Name               string    `json:"name"`
	URL                string    `json:"url"`
	User               string    `json:"user"`
	Password           string    `json:"password"`
	CACert             string    `json:"ca_cert,omitempty"` // PEM
	Insecure           bool      `json:"insecure,omitempty"`
	DrainOnMaintenance bool      `json:"drain_on_maintenance,omitempty"`
	CreateTime         time.Time `json:"create_time"`
}

// String names the connection without its secret, so that a stray %v in
// a log line cannot leak it.
func (c Connection) String() string {
	return fmt.Sprintf("vsphere connection %s (%s as %s)", c.Name, c.URL, c.User)
}

// LogValue keeps the password out of structured logs too.
func (c Connection) LogValue() string { return c.String() }

// Errors of Dial, each with the sentence a user sees.
var (
	// ErrBadURL: the URL is not an http(s) URL with a host.
	ErrBadURL = errors.New("bad vCenter URL")
	// ErrUnreachable: nothing answered at the URL (refused, timed out,
	// no route, not a vSphere API).
	ErrUnreachable = errors.New("vCenter unreachable")
	// ErrUntrusted: the vCenter's TLS certificate is not signed by a
	// trusted CA, or names another host.
	ErrUntrusted = errors.New("vCenter certificate not trusted")
	// ErrLogin: the vCenter refused the user and password.
	ErrLogin = errors.New("vCenter refused the login")
)

// ParseURL checks a vCenter URL and fills in the SDK path: https://vc
// becomes https://vc/sdk.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, failf(ErrBadURL, "vCenter URL %q must look like https://vcenter.example.com/sdk", raw)
	}
	if u.User != nil {
		return nil, failf(ErrBadURL, "the vCenter URL must not hold credentials: put the user in --user and the password in --password-file")
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sdk"
	}
	return u, nil
}

// Validate checks a connection before anything is dialled.
func (c *Connection) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("a connection needs a name")
	case c.User == "":
		return errors.New("a connection needs a user (--user)")
	case c.Password == "":
		return errors.New("a connection needs a password (--password-file)")
	case c.Insecure && c.CACert != "":
		return errors.New("--ca-cert and --insecure exclude each other: trust the CA, or skip the check")
	}
	if c.CACert != "" {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(c.CACert)) {
			return errors.New("the CA certificate is not PEM: pass the file holding -----BEGIN CERTIFICATE-----")
		}
	}
	_, err := ParseURL(c.URL)
	return err
}

// dialError is one sentence for the user that errors.Is matches against
// its kind (ErrLogin, ErrUntrusted, …).
type dialError struct {
	kind error
	msg  string
}

func (e *dialError) Error() string { return e.msg }
func (e *dialError) Unwrap() error { return e.kind }

func failf(kind error, format string, args ...any) error {
	return &dialError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Dial connects and logs in; every failure is one of the errors above,
// wrapped in a sentence that says what to do.
func Dial(ctx context.Context, c Connection) (*govmomi.Client, error) {
	u, err := ParseURL(c.URL)
	if err != nil {
		return nil, err
	}
	sc := soap.NewClient(u, c.Insecure)
	if c.CACert != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.CACert)) {
			return nil, errors.New("the CA certificate is not PEM: pass the file holding -----BEGIN CERTIFICATE-----")
		}
		sc.DefaultTransport().TLSClientConfig.RootCAs = pool
	}
	sc.Timeout = 30 * time.Second
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, classify(u, c.User, err)
	}
	cl := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if err := cl.Login(ctx, url.UserPassword(c.User, c.Password)); err != nil {
		return nil, classify(u, c.User, err)
	}
	return cl, nil
}

// classify turns a dial or login error into one sentence.
func classify(u *url.URL, user string, err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	var invalid x509.CertificateInvalidError
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &host):
		return failf(ErrUntrusted, "the certificate of vCenter %s is for %s, not %s: connect by the name in the certificate", u.Host, strings.Join(append(host.Certificate.DNSNames, ipStrings(host.Certificate.IPAddresses)...), ", "), u.Hostname())
	case errors.As(err, &unknown), errors.As(err, &verify), errors.As(err, &invalid):
		return failf(ErrUntrusted, "the certificate of vCenter %s is not signed by a trusted CA: pass --vcenter-ca with the CA's PEM (or --insecure to skip the check)", u.Host)
	case isLoginFault(err):
		return failf(ErrLogin, "vCenter %s refused the login of user %q: check the user and the password", u.Host, user)
	case errors.As(err, &opErr), errors.As(err, &netErr):
		return failf(ErrUnreachable, "cannot reach vCenter %s: %v", u.Host, rootCause(err))
	}
	if strings.Contains(err.Error(), "certificate") {
		return failf(ErrUntrusted, "the certificate of vCenter %s is not accepted: %v", u.Host, err)
	}
	return failf(ErrUnreachable, "%s did not answer as a vSphere API: %v", u, err)
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func isLoginFault(err error) bool {
	if soap.IsSoapFault(err) {
		if _, ok := soap.ToSoapFault(err).VimFault().(types.InvalidLogin); ok {
			return true
		}
	}
	if soap.IsVimFault(err) {
		if _, ok := soap.ToVimFault(err).(*types.InvalidLogin); ok {
			return true
		}
	}
	return strings.Contains(err.Error(), "InvalidLogin") || strings.Contains(err.Error(), "incorrect user name or password")
}

// IsNotAuthenticated reports whether err says the session expired: the
// collector then logs in again, keeping its history.
func IsNotAuthenticated(err error) bool {
	if err == nil {
		return false
	}
	if soap.IsSoapFault(err) {
		if _, ok := soap.ToSoapFault(err).VimFault().(types.NotAuthenticated); ok {
			return true
		}
	}
	return strings.Contains(err.Error(), "NotAuthenticated")
}
