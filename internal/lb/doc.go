// Package lb is Gantry's load balancer: an HTTP reverse proxy and a TCP
// proxy per published service, fed by the service catalog (package
// discovery), run inside agents started with --lb and by `gantry ingress`.
//
// A Manager owns one listener per service that has an lb block, on the
// port the block names. Each listener spreads requests (HTTP) or
// connections (TCP) over the service's healthy endpoints with the
// service's policy:
//
//	round_robin        each endpoint in turn
//	least_outstanding  the endpoint with the fewest requests in flight
//	p2c                of two endpoints drawn at random, the one with the
//	                   lower recent latency (a decaying average) times its
//	                   requests in flight plus one
//
// A connection an endpoint refuses is retried on another endpoint, for any
// request; an idempotent request without a body (GET, HEAD, OPTIONS) is
// also retried when the endpoint fails before answering, as nginx's
// proxy_next_upstream does by default. An endpoint that failed so is left
// out for a few seconds. Clients get keep-alive, HTTP/2 without TLS (h2c,
// prior knowledge) beside HTTP/1.1, WebSocket upgrades and streamed
// responses passed through as they come.
//
// Draining: Drain marks an allocation's endpoints so that they get no new
// requests, and WaitDrained returns once the requests already in flight
// on them finished (or a grace period passed). The agent does both before
// it stops an allocation, so a stop never cuts a request that this proxy
// forwarded.
//
// Every request can be logged (slog, one line each) and every endpoint
// has counters, a latency histogram and its requests in flight, exported
// as a prometheus.Collector (Manager.Collector); this package registers
// no HTTP route.
package lb
