package dl_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/ebitengine/purego"

	"github.com/gccl/gccl/internal/dl"
)

// A library that cannot be loaded gets dlerror's reason, with its name, however the goroutines
// that ask are spread over threads.
func TestOpenSaysWhy(t *testing.T) {
	const name = "libgccl-no-such-library.so.9"
	var wg sync.WaitGroup
	errs := make(chan string, 8*200)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				_, err := dl.Open(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
				if err == nil {
					errs <- "no error"
					return
				}
				if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "No such file") {
					errs <- msg
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatalf("Open of a missing library: %q, want its name and dlerror's reason", msg)
	}
}

// A symbol a library lacks is an error; one it has resolves.
func TestSym(t *testing.T) {
	h, err := dl.Open("libc.so.6", purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := dl.Sym(h, "getpid"); err != nil || p == 0 {
		t.Fatalf("getpid: %x, %v", p, err)
	}
	if _, err := dl.Sym(h, "gccl_no_such_symbol"); err == nil {
		t.Fatal("a missing symbol resolved")
	}
}
