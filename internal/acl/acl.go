// Package acl owns access control: capabilities, policies that grant them
// per namespace and cluster-wide, tokens (stored only as hashes), and the
// decision whether a token may do something, with a message that names
// the missing capability.
//
// It is pure: it never reads the store, the clock or the network. The
// server resolves a token's policies and asks.
package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Capability is one thing a token may do.
type Capability string

// Namespace capabilities.
const (
	Read      Capability = "read"       // jobs, allocations, evaluations, events, services of the namespace
	SubmitJob Capability = "submit-job" // register, plan, validate, stop jobs
	ReadLogs  Capability = "read-logs"  // allocation logs
	AllocExec Capability = "alloc-exec" // commands inside allocations
)

// Cluster-wide capabilities.
const (
	NodeRead     Capability = "node-read"     // nodes and their metrics
	NodeWrite    Capability = "node-write"    // drain, eligibility; the agent protocol without TLS
	OperatorRead Capability = "operator-read" // queues, audit reports, admission policy
	Operator     Capability = "operator"      // change queues and the admission policy
)

var namespaceCaps = map[Capability]bool{Read: true, SubmitJob: true, ReadLogs: true, AllocExec: true}
var globalCaps = map[Capability]bool{NodeRead: true, NodeWrite: true, OperatorRead: true, Operator: true}

// Namespaced reports whether c is granted per namespace.
func (c Capability) Namespaced() bool { return namespaceCaps[c] }

// implies lists what a capability includes.
var implies = map[Capability][]Capability{
	SubmitJob: {Read},
	ReadLogs:  {Read},
	AllocExec: {Read, ReadLogs},
	NodeWrite: {NodeRead},
	Operator:  {OperatorRead},
}

// Policy grants capabilities per namespace ("*" for every namespace) and
// cluster-wide.
type Policy struct {
	Name        string                  `json:"name"`
	Description string                  `json:"description,omitempty"`
	Namespaces  map[string][]Capability `json:"namespaces,omitempty"`
	Global      []Capability            `json:"global,omitempty"`
	ModifyIndex int64                   `json:"modify_index,omitempty"`
}

// Validate checks a policy's names and capabilities.
func (p *Policy) Validate() error {
	if !api.ValidName(p.Name) {
		return fmt.Errorf("policy name %q %s", p.Name, api.NameRule)
	}
	for ns, caps := range p.Namespaces {
		if ns != "*" && !api.ValidName(ns) {
			return fmt.Errorf("policy %s: namespace %q %s (or \"*\" for every namespace)", p.Name, ns, api.NameRule)
		}
		for _, c := range caps {
			if !namespaceCaps[c] {
				return fmt.Errorf("policy %s: namespace %s: %q is not a namespace capability; use %s", p.Name, ns, c, list(namespaceCaps))
			}
		}
	}
	for _, c := range p.Global {
		if !globalCaps[c] {
			return fmt.Errorf("policy %s: global: %q is not a cluster-wide capability; use %s", p.Name, c, list(globalCaps))
		}
	}
	return nil
}

func list(m map[Capability]bool) string {
	var out []string
	for c := range m {
		out = append(out, string(c))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// Token is a credential. Only the hash of its secret is stored.
type Token struct {
	AccessorID string    `json:"accessor_id"`
	Name       string    `json:"name"`
	SecretHash string    `json:"secret_hash"`
	Policies   []string  `json:"policies,omitempty"`
	Management bool      `json:"management,omitempty"`
	CreateTime time.Time `json:"create_time"`
}

// NewSecret makes a random token secret.
func NewSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "gnt_" + hex.EncodeToString(b), nil
}

// Hash is how a secret is stored and looked up.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Matches compares a secret with a stored hash in constant time.
func (t *Token) Matches(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(Hash(secret)), []byte(t.SecretHash)) == 1
}

// ACL is what one token may do, compiled from its policies.
type ACL struct {
	management bool
	name       string
	ns         map[string]map[Capability]bool
	global     map[Capability]bool
}

// Compile builds the ACL of a token from its policies (those that exist;
// missing policies grant nothing).
func Compile(t *Token, policies []*Policy) *ACL {
	a := &ACL{management: t.Management, name: t.Name, ns: map[string]map[Capability]bool{}, global: map[Capability]bool{}}
	grant := func(set map[Capability]bool, c Capability) {
		set[c] = true
		for _, i := range implies[c] {
			set[i] = true
		}
	}
	for _, p := range policies {
		for ns, caps := range p.Namespaces {
			if a.ns[ns] == nil {
				a.ns[ns] = map[Capability]bool{}
			}
			for _, c := range caps {
				grant(a.ns[ns], c)
			}
		}
		for _, c := range p.Global {
			grant(a.global, c)
		}
	}
	return a
}

// Management reports whether the token may do everything.
func (a *ACL) Management() bool { return a.management }

// ErrDenied is wrapped by every denial.
var ErrDenied = errors.New("permission denied")

// Allow says whether the token holds capability c in namespace ns (ns is
// ignored for cluster-wide capabilities); a denial names what is missing.
func (a *ACL) Allow(ns string, c Capability) error {
	if a == nil {
		return fmt.Errorf("%w: an ACL token is required (--token or GANTRY_TOKEN)", ErrDenied)
	}
	if a.management {
		return nil
	}
	if c.Namespaced() {
		if a.ns[ns][c] || a.ns["*"][c] {
			return nil
		}
		return fmt.Errorf("%w: token %q lacks capability %s in namespace %s", ErrDenied, a.name, c, ns)
	}
	if a.global[c] {
		return nil
	}
	return fmt.Errorf("%w: token %q lacks cluster-wide capability %s", ErrDenied, a.name, c)
}

// CanRead is Allow(ns, Read) as a boolean, for filtering lists.
func (a *ACL) CanRead(ns string) bool { return a.Allow(ns, Read) == nil }
