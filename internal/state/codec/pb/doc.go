// Package pb holds the protocol buffers schema of the store's compact
// allocation form (allocation.proto) and the Go code protoc-gen-go
// generates from it. It owns nothing else: conversion to and from the
// api types, and the format byte that precedes every stored value, live
// in internal/state/codec. It must never be edited by hand (change the
// .proto and regenerate) and must never import etcd or any Gantry
// package.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative allocation.proto
