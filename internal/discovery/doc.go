// Package discovery owns the service catalog: which services the jobs
// publish (a group's services block names a task's port) and which of
// their replicas may receive traffic. It is pure: the catalog is a
// function of the jobs, their allocations and the nodes, so the server
// derives it from its view instead of storing it, and the HTTP API, the
// DNS server and the load balancers all read the same answer.
//
// Only healthy replicas are endpoints: allocations the server wants
// running, that run, pass their checks, and sit on a node that is not
// down. An allocation the server is stopping leaves the catalog at once,
// before its agent drains and stops it.
package discovery
