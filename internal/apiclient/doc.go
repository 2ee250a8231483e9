// Package apiclient is the one typed client of Gantry's /v1 HTTP API:
// the CLI, the agent, the load balancer, the load generator and the
// end-to-end tests all reach the servers through it.
//
// It owns the wire: server addresses and failover between them, TLS and
// the ACL token, turning an answer other than 2xx into one *Error that
// keeps the HTTP status (so that callers classify it with Retryable and
// StatusOf instead of parsing text), typed methods for the endpoints its
// callers use, FollowEvents, which follows /v1/events and resumes after
// the last index it handed over when a connection drops or the server it
// read from goes away, and NodeStream, the agent protocol's long-lived
// stream (POST /v1/nodes/stream), which likewise reconnects by itself and
// resubscribes each node from the last index it received (what was in
// flight when a stream broke fails, for the caller to send again).
//
// It must never decide anything for its callers: it retries nothing a
// server answered (it only tries the next server when one cannot be
// reached; how long to keep trying is the caller's choice), with one
// exception the server decides: a 429 Too Many Requests that says when to
// come back (Retry-After, which an overloaded server sends to slow
// submissions down) is waited out and sent again, a bounded number of
// times (Options.ThrottleRetries) and never past the caller's context.
// It prints and logs nothing (Options.OnThrottle is told of each wait,
// NodeStreamOptions.OnError of each broken stream), and knows nothing of
// the server's packages: it speaks only the wire types of internal/api
// and the node stream's frames (internal/nodewire).
package apiclient
