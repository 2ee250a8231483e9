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
// published service with no healthy replica gets an empty answer. Names
// outside the domain are refused: the server is authoritative for its
// zone only and resolves nothing else. Answers carry TTL 0 by default, so
// that clients see health changes at once.
package dns
