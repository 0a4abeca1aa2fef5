package xccl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/internal/dl"
)

// EnvLibrary names the environment variable that selects the oneCCL library: a path or a soname.
// When it is set, only that library is tried.
const EnvLibrary = "GCCL_XCCL_LIBRARY"

// Soname is oneCCL's shared object.
const Soname = "libccl.so.2"

// MinVersion is the oldest oneCCL whose C API (include/oneapi/ccl.h) xccl binds: 2022.0, as
// onecclGetVersion encodes it (major*10000 + minor*100 + patch).
const MinVersion = 20220000

// ErrLibrary is wrapped by every error about finding, loading or checking oneCCL.
var ErrLibrary = errors.New("xccl: oneCCL library unusable")

// oneCCL's result codes (onecclResult_t in include/oneapi/ccl/v2/types.h).
const (
	resSuccess         = 0
	resPluginException = 11
	resNotImplemented  = 12
)

// library is a loaded oneCCL: the address of every function xccl calls.
type library struct {
	path    string
	version int

	getVersion, getUniqueID, commInitRank, commDestroy uintptr
	commCount, commUserRank                            uintptr
	allReduce, reduce, broadcast, allGather            uintptr
	reduceScatter, allToAll, send, recv                uintptr
	groupStart, groupEnd                               uintptr
	// Optional: zero when the library lacks them.
	setDevice, memAlloc, memFree, commAbort uintptr

	errorString func(code int32) string
	lastError   func(comm uintptr) string

	ffi *ffiLib
}

// Candidates returns the libraries Load tries, in order: GCCL_XCCL_LIBRARY alone when it is set;
// else $CCL_ROOT/lib/libccl.so.2 when CCL_ROOT is set, then libccl.so.2 through the dynamic
// loader's search path (LD_LIBRARY_PATH, the cache, the default folders).
func Candidates() []string {
	if name := strings.TrimSpace(os.Getenv(EnvLibrary)); name != "" {
		return []string{name}
	}
	var names []string
	if root := strings.TrimSpace(os.Getenv("CCL_ROOT")); root != "" {
		names = append(names, filepath.Join(root, "lib", Soname))
	}
	return append(names, Soname)
}

var (
	loadOnce sync.Once
	loaded   *library
	loadErr  error
)

// load opens oneCCL once per process, on the first use of backend "xccl".
func load() (*library, error) {
	loadOnce.Do(func() { loaded, loadErr = loadFirst(Candidates()) })
	return loaded, loadErr
}

// Load opens oneCCL (see Candidates) and checks it, and returns the path it loaded and the
// version it reports. Backend "xccl" does the same on first use; Load lets a program check the
// installation up front.
func Load() (path string, version int, err error) {
	lib, err := load()
	if err != nil {
		return "", 0, err
	}
	return lib.path, lib.version, nil
}

func loadFirst(names []string) (*library, error) {
	var tried []string
	for _, name := range names {
		lib, err := open(name)
		if err == nil {
			return lib, nil
		}
		tried = append(tried, err.Error())
		if errors.Is(err, errUnusable) { // found but wrong: do not fall through to another copy
			break
		}
	}
	return nil, fmt.Errorf("%w: tried %s; install oneCCL 2022.0 or newer (oneAPI's ccl) and set %s to its %s, or CCL_ROOT to its root (source its setvars.sh / vars.sh)",
		ErrLibrary, strings.Join(tried, "; "), EnvLibrary, Soname)
}

// errUnusable marks a library that was found but cannot be used (a missing symbol, too old).
var errUnusable = errors.New("unusable")

// requiredSymbols are the functions xccl cannot work without.
func (l *library) requiredSymbols() []struct {
	name string
	p    *uintptr
} {
	return []struct {
		name string
		p    *uintptr
	}{
		{"onecclGetVersion", &l.getVersion}, {"onecclGetUniqueId", &l.getUniqueID},
		{"onecclCommInitRank", &l.commInitRank}, {"onecclCommDestroy", &l.commDestroy},
		{"onecclCommCount", &l.commCount}, {"onecclCommUserRank", &l.commUserRank},
		{"onecclAllReduce", &l.allReduce}, {"onecclReduce", &l.reduce}, {"onecclBroadcast", &l.broadcast},
		{"onecclAllGather", &l.allGather}, {"onecclReduceScatter", &l.reduceScatter},
		{"onecclAllToAll", &l.allToAll}, {"onecclSend", &l.send}, {"onecclRecv", &l.recv},
		{"onecclGroupStart", &l.groupStart}, {"onecclGroupEnd", &l.groupEnd},
	}
}

// open loads one candidate and resolves every function.
func open(name string) (*library, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("%s: oneCCL's C API is bound on linux only, not %s", name, runtime.GOOS)
	}
	h, err := dl.Open(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, err
	}
	lib := &library{path: name}
	var missing []string
	for _, s := range lib.requiredSymbols() {
		if *s.p, err = dl.Sym(h, s.name); err != nil {
			missing = append(missing, s.name)
		}
	}
	var errStr, lastErr uintptr
	if errStr, err = dl.Sym(h, "onecclGetErrorString"); err != nil {
		missing = append(missing, "onecclGetErrorString")
	}
	if lastErr, err = dl.Sym(h, "onecclGetLastError"); err != nil {
		missing = append(missing, "onecclGetLastError")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s has no %s (%w: not oneCCL 2022.0's C API, include/oneapi/ccl.h)", name, strings.Join(missing, ", "), errUnusable)
	}
	purego.RegisterFunc(&lib.errorString, errStr)
	purego.RegisterFunc(&lib.lastError, lastErr)
	lib.setDevice, _ = dl.Sym(h, "onecclSetDevice")
	lib.memAlloc, _ = dl.Sym(h, "onecclMemAlloc")
	lib.memFree, _ = dl.Sym(h, "onecclMemFree")
	lib.commAbort, _ = dl.Sym(h, "onecclCommAbort")

	var v int32
	r, _, _ := purego.SyscallN(lib.getVersion, uintptr(unsafe.Pointer(&v))) // uintptrescapes: v is on the heap
	if rc := int32(r); rc != resSuccess {
		return nil, fmt.Errorf("%s: onecclGetVersion failed: %s (%w)", name, lib.describe(rc, 0), errUnusable)
	}
	lib.version = int(v)
	if lib.version < MinVersion {
		return nil, fmt.Errorf("%s is oneCCL %s, older than %s, the first with the C API xccl binds (%w)",
			name, versionString(lib.version), versionString(MinVersion), errUnusable)
	}
	if lib.ffi, err = loadFFI(); err != nil {
		return nil, fmt.Errorf("%s: %w (%w)", name, err, errUnusable)
	}
	return lib, nil
}

// versionString spells an encoded version as major.minor.patch.
func versionString(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

// call calls fn and returns its onecclResult_t. Pointer arguments must point to memory that
// cannot move: the heap (kept alive by the caller) or C memory; a pointer to a stack variable must
// instead be converted inline in a purego.SyscallN call, whose go:uintptrescapes moves it to the heap.
func (l *library) call(fn uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return int32(r)
}

// describe spells a result code: onecclGetErrorString's text, then the communicator's
// onecclGetLastError (the plugin's own message is only there).
func (l *library) describe(rc int32, comm uintptr) string {
	s := fmt.Sprintf("oneCCL error %d: %s", rc, l.errorString(rc))
	if last := strings.TrimSpace(l.lastError(comm)); last != "" {
		s += ": " + last
	}
	return s
}

// resultError turns a failed call into an error naming the call; nil for success. A plugin
// that rejects an op or a dtype (onecclPluginException, onecclNotImplemented) gives
// backends.ErrUnsupported.
func (l *library) resultError(fn string, rc int32, comm uintptr) error {
	if rc == resSuccess {
		return nil
	}
	if rc == resPluginException || rc == resNotImplemented {
		return fmt.Errorf("%s: %w: %s", fn, backends.ErrUnsupported, l.describe(rc, comm))
	}
	return fmt.Errorf("%s: %s", fn, l.describe(rc, comm))
}
