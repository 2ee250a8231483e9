// Package acladmin is ACL administration on the server: the one-time
// bootstrap of the management token (POST /v1/acl/bootstrap), tokens
// (create, list, delete, and a caller's own: /v1/acl/tokens,
// /v1/acl/tokens/self) and ACL policies (/v1/acl/policies: list, apply,
// delete). It owns minting tokens: a fresh accessor ID and secret, the
// secret stored only as its hash.
//
// Authorization is not its job: the server checks every request against
// its route's rule before a handler runs (management for everything here
// but bootstrap, which is public and works once, and self, which takes
// any valid token), and keeps authorize, allow and visible to itself. The
// package reads and writes tokens through Tokens and policies through
// Policies, both kept in the store, so every server answers itself
// (nothing is forwarded to the leader) and the writes carry no leader's
// fence: tokens and policies are configuration any server may store (the
// store makes bootstrap succeed once per cluster).
//
// It must never store a secret (only acl.Hash of it), never answer a
// secret but once, in the answer that created it, never answer a token's
// hash, and never mint a token granted a policy that does not exist.
package acladmin
