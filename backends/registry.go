package backends

import (
	"fmt"
	"sort"
	"sync"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]Backend{}
)

// Register makes a backend available under name. It panics if name is taken or b is nil: both
// are programming errors found at init time.
func Register(name string, b Backend) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if b == nil {
		panic("backends: Register of a nil backend " + name)
	}
	if _, dup := registry[name]; dup {
		panic("backends: Register called twice for backend " + name)
	}
	registry[name] = b
}

// Lookup returns the backend registered under name.
func Lookup(name string) (Backend, error) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	if b, ok := registry[name]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("backends: no backend named %q (registered: %v); import its package or pick another", name, namesLocked())
}

// Names lists the registered backends, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return namesLocked()
}

func namesLocked() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
