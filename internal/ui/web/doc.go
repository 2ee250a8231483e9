// Package web owns the web UI's HTTP handlers: the shell and its assets
// under /ui/, every page's HTML fragment under /ui/fragments/ (also put
// into the shell for browsers without JavaScript), the recent events the
// overview shows (a follower of the store's event stream, started by the
// first page that needs it), and the gathering of each page's data under
// the caller's ACL into the page types of internal/ui, which renders them.
//
// It reads the server and the store only through the small interfaces of
// web.go, declared here and implemented by *server.Server and
// *state.Store; the daemon (internal/cli) builds it with Mount before the
// server starts, and the server serves it on its API listener with the
// authorization rules it keeps for /ui routes. It must never write to the
// store or change the cluster, and the server must never import it: the
// control plane does not depend on the UI.
package web
