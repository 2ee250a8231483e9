// Package model holds the Promela model of the allocation lifecycle
// (lifecycle.pml), the transitions generated from the Go table
// (transitions.pml, written by go generate ./internal/lifecycle/...) and
// the tests that run spin on it. It has no Go code beyond its tests; it
// must never be imported.
package model
