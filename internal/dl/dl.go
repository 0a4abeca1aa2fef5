// Package dl loads shared libraries and their symbols through purego (no cgo), with errors that
// say why.
package dl

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/ebitengine/purego"
)

// Open is purego.Dlopen, with the calling goroutine locked to its OS thread meanwhile: the reason
// a library cannot be loaded is dlerror's, which is per thread, and purego asks for it in a second
// call, which a goroutine moved to another thread in between finds empty. The error names the
// file.
func Open(name string, mode int) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := purego.Dlopen(name, mode)
	if err != nil && !strings.Contains(err.Error(), name) {
		err = fmt.Errorf("%s: %v", name, err)
	}
	return h, err
}

// Sym is purego.Dlsym, locked to the thread as Open is.
func Sym(handle uintptr, name string) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlsym(handle, name)
}
