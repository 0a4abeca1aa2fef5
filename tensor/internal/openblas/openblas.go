// Package openblas calls OpenBLAS's single- and double-precision GEMM and GEMV, loaded at run
// time with purego: no cgo, and a program that never calls Load never touches the library.
//
// It binds the Fortran-ABI entry points (sgemm_, dgemm_, sgemv_, dgemv_), which take every
// argument by pointer, so a call goes through purego.SyscallN with pointers only: no reflection
// and no allocation per call. (cblas_sgemm mixes integer and float arguments, which SyscallN cannot
// pass and purego.RegisterFunc passes through reflect.MakeFunc, allocating on every call.) The
// Fortran interface is column-major; callers with row-major data swap the operands (C = A·B
// row-major is Cᵀ = Bᵀ·Aᵀ column-major), as tensor's BLAS layer does. OpenBLAS's cblas_* functions
// are thin wrappers over the same drivers.
//
// Integers are 32-bit (LP64 OpenBLAS, Debian's libopenblas0); callers check that sizes fit.
package openblas

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gccl/gccl/internal/dl"
)

// EnvLibrary names the environment variable that selects the library to load: a path or a
// soname. When it is set, only that library is tried.
const EnvLibrary = "GCCL_BLAS_LIBRARY"

// Lib is a loaded OpenBLAS.
type Lib struct {
	Path string // what was passed to dlopen

	sgemm, dgemm, sgemv, dgemv uintptr
	setThreads, getThreads     uintptr // 0 when the library lacks them (a reference BLAS)
	config                     uintptr
}

// Candidates returns the names Load tries, in order, when GCCL_BLAS_LIBRARY is not set: the
// dynamic loader's search for libopenblas.so.0 and libopenblas.so, then Debian's
// alternatives-managed directories for the pthread, OpenMP and serial builds.
func Candidates() []string {
	names := []string{"libopenblas.so.0", "libopenblas.so"}
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu",
		"ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu",
		"loong64": "loongarch64-linux-gnu"}[runtime.GOARCH]
	if triplet != "" {
		for _, flavour := range []string{"openblas-pthread", "openblas-openmp", "openblas-serial"} {
			dir := "/usr/lib/" + triplet + "/" + flavour + "/"
			names = append(names, dir+"libopenblas.so.0", dir+"libopenblas.so")
		}
	}
	return names
}

// ErrNotFound is returned by Load when no candidate library could be opened.
var ErrNotFound = errors.New("openblas: library not found")

// Load opens OpenBLAS: the library named by GCCL_BLAS_LIBRARY when that is set (an error if it
// cannot be loaded or lacks sgemm_), else the first of Candidates that opens. The error names every
// name tried and why each failed.
func Load() (*Lib, error) {
	if name := strings.TrimSpace(os.Getenv(EnvLibrary)); name != "" {
		lib, err := open(name)
		if err != nil {
			return nil, fmt.Errorf("openblas: %s=%q cannot be used: %w", EnvLibrary, name, err)
		}
		return lib, nil
	}
	var tried []string
	for _, name := range Candidates() {
		lib, err := open(name)
		if err == nil {
			return lib, nil
		}
		tried = append(tried, err.Error())
	}
	return nil, fmt.Errorf("%w (install Debian's libopenblas0, or set %s to its path); tried: %s",
		ErrNotFound, EnvLibrary, strings.Join(tried, "; "))
}

func open(name string) (*Lib, error) {
	if runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "darwin" {
		return nil, fmt.Errorf("%s: not supported on %s", name, runtime.GOOS)
	}
	h, err := dl.Open(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, err
	}
	lib := &Lib{Path: name}
	for _, s := range []struct {
		name string
		p    *uintptr
	}{{"sgemm_", &lib.sgemm}, {"dgemm_", &lib.dgemm}, {"sgemv_", &lib.sgemv}, {"dgemv_", &lib.dgemv}} {
		if *s.p, err = dl.Sym(h, s.name); err != nil {
			_ = purego.Dlclose(h)
			return nil, fmt.Errorf("%s: no %s: %v", name, s.name, err)
		}
	}
	lib.setThreads, _ = dl.Sym(h, "openblas_set_num_threads")
	lib.getThreads, _ = dl.Sym(h, "openblas_get_num_threads")
	lib.config, _ = dl.Sym(h, "openblas_get_config")
	return lib, nil
}

// SetNumThreads sets OpenBLAS's thread count (for the whole process); a no-op if the library
// cannot.
func (l *Lib) SetNumThreads(n int) {
	if l.setThreads != 0 && n > 0 {
		purego.SyscallN(l.setThreads, uintptr(n))
	}
}

// NumThreads returns OpenBLAS's thread count, or 0 if the library cannot tell.
func (l *Lib) NumThreads() int {
	if l.getThreads == 0 {
		return 0
	}
	r, _, _ := purego.SyscallN(l.getThreads)
	return int(int32(r))
}

// Config returns openblas_get_config's string, such as "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY
// Zen MAX_THREADS=64", or "" if the library lacks it.
func (l *Lib) Config() string {
	if l.config == 0 {
		return ""
	}
	var get func() string
	purego.RegisterFunc(&get, l.config)
	return get()
}

// args holds the scalar arguments of one call, passed by pointer, and the argument vector. It lives
// on the heap (from a pool), so its addresses stay valid for the call, and handing SyscallN its
// argv (rather than a fresh variadic list, which escapes) allocates nothing. Because the pointers
// sit in argv as uintptrs, each call keeps its matrices alive with runtime.KeepAlive; Go's heap
// does not move, and the matrices are heap memory (tensor storage).
type args struct {
	argv            [13]uintptr
	transA, transB  byte
	m, n, k         int32
	lda, ldb, ldc   int32
	incX, incY      int32
	alpha32, beta32 float32
	alpha64, beta64 float64
	_               [4]byte
}

var argPool = sync.Pool{New: func() any { return new(args) }}

func trans(t bool) byte {
	if t {
		return 'T'
	}
	return 'N'
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C in column-major order: op(A) is m×k, op(B) is
// k×n, C is m×n; a, b and c point at the first elements, in heap memory. The caller guarantees
// valid sizes and leading dimensions (they fit in int32 and satisfy BLAS's rules).
func (l *Lib) Sgemm(transA, transB bool, m, n, k int, alpha float32, a *float32, lda int, b *float32, ldb int, beta float32, c *float32, ldc int) {
	p := argPool.Get().(*args)
	p.alpha32, p.beta32 = alpha, beta
	p.gemm(transA, transB, m, n, k, unsafe.Pointer(&p.alpha32), unsafe.Pointer(a), lda, unsafe.Pointer(b), ldb,
		unsafe.Pointer(&p.beta32), unsafe.Pointer(c), ldc)
	purego.SyscallN(l.sgemm, p.argv[:13]...)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
	argPool.Put(p)
}

// Dgemm is Sgemm for float64.
func (l *Lib) Dgemm(transA, transB bool, m, n, k int, alpha float64, a *float64, lda int, b *float64, ldb int, beta float64, c *float64, ldc int) {
	p := argPool.Get().(*args)
	p.alpha64, p.beta64 = alpha, beta
	p.gemm(transA, transB, m, n, k, unsafe.Pointer(&p.alpha64), unsafe.Pointer(a), lda, unsafe.Pointer(b), ldb,
		unsafe.Pointer(&p.beta64), unsafe.Pointer(c), ldc)
	purego.SyscallN(l.dgemm, p.argv[:13]...)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
	argPool.Put(p)
}

// gemm fills argv for ?gemm_(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc).
func (p *args) gemm(transA, transB bool, m, n, k int, alpha, a unsafe.Pointer, lda int, b unsafe.Pointer, ldb int, beta, c unsafe.Pointer, ldc int) {
	p.transA, p.transB = trans(transA), trans(transB)
	p.m, p.n, p.k = int32(m), int32(n), int32(k)
	p.lda, p.ldb, p.ldc = int32(lda), int32(ldb), int32(ldc)
	p.argv = [13]uintptr{
		uintptr(unsafe.Pointer(&p.transA)), uintptr(unsafe.Pointer(&p.transB)),
		uintptr(unsafe.Pointer(&p.m)), uintptr(unsafe.Pointer(&p.n)), uintptr(unsafe.Pointer(&p.k)),
		uintptr(alpha), uintptr(a), uintptr(unsafe.Pointer(&p.lda)),
		uintptr(b), uintptr(unsafe.Pointer(&p.ldb)),
		uintptr(beta), uintptr(c), uintptr(unsafe.Pointer(&p.ldc)),
	}
}

// Sgemv computes y = alpha·op(A)·x + beta·y in column-major order, A being m×n with leading
// dimension lda; a, x and y are in heap memory.
func (l *Lib) Sgemv(transA bool, m, n int, alpha float32, a *float32, lda int, x *float32, incX int, beta float32, y *float32, incY int) {
	p := argPool.Get().(*args)
	p.alpha32, p.beta32 = alpha, beta
	p.gemv(transA, m, n, unsafe.Pointer(&p.alpha32), unsafe.Pointer(a), lda, unsafe.Pointer(x), incX,
		unsafe.Pointer(&p.beta32), unsafe.Pointer(y), incY)
	purego.SyscallN(l.sgemv, p.argv[:11]...)
	runtime.KeepAlive(a)
	runtime.KeepAlive(x)
	runtime.KeepAlive(y)
	argPool.Put(p)
}

// Dgemv is Sgemv for float64.
func (l *Lib) Dgemv(transA bool, m, n int, alpha float64, a *float64, lda int, x *float64, incX int, beta float64, y *float64, incY int) {
	p := argPool.Get().(*args)
	p.alpha64, p.beta64 = alpha, beta
	p.gemv(transA, m, n, unsafe.Pointer(&p.alpha64), unsafe.Pointer(a), lda, unsafe.Pointer(x), incX,
		unsafe.Pointer(&p.beta64), unsafe.Pointer(y), incY)
	purego.SyscallN(l.dgemv, p.argv[:11]...)
	runtime.KeepAlive(a)
	runtime.KeepAlive(x)
	runtime.KeepAlive(y)
	argPool.Put(p)
}

// gemv fills argv for ?gemv_(trans, m, n, alpha, a, lda, x, incx, beta, y, incy).
func (p *args) gemv(transA bool, m, n int, alpha, a unsafe.Pointer, lda int, x unsafe.Pointer, incX int, beta, y unsafe.Pointer, incY int) {
	p.transA = trans(transA)
	p.m, p.n, p.lda = int32(m), int32(n), int32(lda)
	p.incX, p.incY = int32(incX), int32(incY)
	p.argv = [13]uintptr{
		uintptr(unsafe.Pointer(&p.transA)), uintptr(unsafe.Pointer(&p.m)), uintptr(unsafe.Pointer(&p.n)),
		uintptr(alpha), uintptr(a), uintptr(unsafe.Pointer(&p.lda)),
		uintptr(x), uintptr(unsafe.Pointer(&p.incX)),
		uintptr(beta), uintptr(y), uintptr(unsafe.Pointer(&p.incY)),
	}
}
