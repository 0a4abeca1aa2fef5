package comm

import "github.com/gccl/gccl/backends"

// Register makes a backend available to Init and NewGroup under name, as DESIGN.md's registry
// entry point. The registry itself lives in package backends, so that backends comm imports by
// default (gloo) can register themselves without an import cycle; both spellings reach it. It
// panics if name is taken.
func Register(name string, b backends.Backend) { backends.Register(name, b) }

// Backends lists the registered backend names.
func Backends() []string { return backends.Names() }
