// Package storepb holds the protocol of the gccl rendezvous store
// (store.proto, package gccl.store.v1) and the Go code protoc generates from
// it. Use package github.com/gccl/gccl/comm/store instead of calling it
// directly; the go:generate line that regenerates it lives in
// comm/store/gen.go.
package storepb
