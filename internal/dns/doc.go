// Package dns answers DNS queries for services from the service catalog
// (package discovery), so that any program can find a service's healthy
// replicas without a Gantry client:
//
//	<service>.<namespace>.service.gantry.             A    node address of every healthy replica
//	<service>.<namespace>.service.gantry.             SRV  one per replica: its host port and a target
//	_<service>._tcp.<namespace>.service.gantry.       SRV  the same (RFC 2782 form)
//	<alloc>.<service>.<namespace>.service.gantry.     A    the node address of one replica (SRV targets;
//	                                                       <alloc> is the first 8 characters of its ID)
//
// A name under service.gantry. that no job publishes gets NXDOMAIN; a
// published service with no healthy replica gets an empty answer.
//
// A server given a load balancer (Config.LB: an agent's resolver for its
// containers) also answers
//
//	<service>.<namespace>.lb.gantry.                  A    the load balancer's address
//	<service>.<namespace>.lb.gantry.                  SRV  the service's load-balancer port there
//
// for the services that balancer serves, whatever their health (the
// balancer refuses while none is healthy), so a container reaches a
// service by name on its load-balancer port, as a Swarm service name
// reaches its virtual IP.
//
// Names outside the domain are refused, unless the server was given
// upstream resolvers (Config.Upstreams), which it then asks and whose
// answer it passes on: the server stands in for a resolver. Answers carry
// TTL 0 by default, so that clients see health changes at once. The
// package keeps no state besides its listeners and never writes anything.
package dns
