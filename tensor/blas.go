package tensor

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/gccl/gccl/tensor/internal/openblas"
)

// The BLAS layer under MatMul, MatMulInto, Linear and LinearInto.
//
// On first use it loads OpenBLAS with purego (no cgo): the library named by GCCL_BLAS_LIBRARY, else
// libopenblas.so.0 or libopenblas.so through the dynamic loader, else Debian's
// /usr/lib/<triplet>/openblas-{pthread,openmp,serial}/ copies. When none is found it falls back to
// gonum's pure-Go BLAS (about 8× slower for float32 on this project's machines) and says so in
// BLASBackend. GCCL_BLAS=gonum forces the fallback; GCCL_BLAS=openblas makes a missing OpenBLAS an
// error, as a GCCL_BLAS_LIBRARY that cannot be loaded always is: then every matmul returns that
// error, naming what was looked for.
//
// Threads: OpenBLAS's thread count is process-wide. Unless OPENBLAS_NUM_THREADS,
// GOTO_NUM_THREADS or OMP_NUM_THREADS is set, it is set at load to GOMAXPROCS, the caller's share
// of the cores: `gccl run` sets GOMAXPROCS to cores/ranks, so N ranks on a host do not
// oversubscribe it (as OMP_NUM_THREADS=1 per rank does under torchrun). SetBLASThreads changes it.

// EnvBLAS selects the BLAS: "auto" (the default: OpenBLAS if found, else gonum), "openblas" (an
// error if OpenBLAS cannot be loaded) or "gonum".
const EnvBLAS = "GCCL_BLAS"

// EnvBLASLibrary names the OpenBLAS library to load, as a path or a soname. When set, only that
// library is tried, and failing to load it is an error, not a fallback.
const EnvBLASLibrary = openblas.EnvLibrary

// blasBackend is one BLAS implementation. Matrices are row-major; a, b and c start at the first
// element of their matrix, and the sizes and leading dimensions are valid.
type blasBackend struct {
	lib  *openblas.Lib // nil: gonum
	desc string
	err  error // non-nil: no usable BLAS; every operation returns it
}

var (
	blasOnce  sync.Once
	blasState atomic.Pointer[blasBackend]
	// blasGemvForRow sends single-row float products (decode steps) to GEMV rather than GEMM.
	blasGemvForRow = true
)

var gonumBLAS = &blasBackend{desc: "gonum"}

// currentBLAS returns the backend, loading it on first use.
func currentBLAS() *blasBackend {
	if be := blasState.Load(); be != nil {
		return be
	}
	blasOnce.Do(func() { blasState.CompareAndSwap(nil, loadBLAS()) })
	return blasState.Load()
}

func loadBLAS() *blasBackend {
	mode := strings.ToLower(strings.TrimSpace(os.Getenv(EnvBLAS)))
	switch mode {
	case "", "auto", "openblas":
	case "gonum":
		return &blasBackend{desc: "gonum (" + EnvBLAS + "=gonum)"}
	default:
		err := fmt.Errorf("tensor: BLAS: %s=%q is not one of auto, openblas, gonum", EnvBLAS, mode)
		slog.Error(err.Error())
		return &blasBackend{desc: "none: " + err.Error(), err: err}
	}
	lib, err := openblas.Load()
	if err != nil {
		explicit := os.Getenv(EnvBLASLibrary) != "" || mode == "openblas"
		if explicit {
			err = fmt.Errorf("tensor: BLAS: %w", err)
			slog.Error(err.Error())
			return &blasBackend{desc: "none: " + err.Error(), err: err}
		}
		slog.Debug("tensor: OpenBLAS not found, matmul uses gonum's pure-Go BLAS", "error", err)
		return &blasBackend{desc: "gonum (OpenBLAS not found: install libopenblas0 or set " + EnvBLASLibrary + ")"}
	}
	if os.Getenv("OPENBLAS_NUM_THREADS") == "" && os.Getenv("GOTO_NUM_THREADS") == "" && os.Getenv("OMP_NUM_THREADS") == "" {
		lib.SetNumThreads(runtime.GOMAXPROCS(0))
	}
	be := &blasBackend{lib: lib, desc: "openblas (" + lib.Path + ")"}
	cfg := lib.Config()
	if cfg != "" {
		be.desc = "openblas (" + lib.Path + ": " + cfg + ")"
	}
	slog.Debug("tensor: matmul uses OpenBLAS", "library", lib.Path, "config", cfg, "threads", lib.NumThreads())
	return be
}

// BLASBackend says which BLAS MatMul and Linear use, loading it if it is not loaded yet:
// "openblas (libopenblas.so.0: OpenBLAS 0.3.21 ...)", "gonum (...why...)", or "none: <error>" when
// GCCL_BLAS_LIBRARY or GCCL_BLAS=openblas asked for a library that could not be loaded.
func BLASBackend() string {
	be := currentBLAS()
	if be.lib != nil {
		return fmt.Sprintf("%s, %d threads", be.desc, be.lib.NumThreads())
	}
	return be.desc
}

// BLASError returns the error every matmul returns when no usable BLAS was loaded (see
// BLASBackend), and nil otherwise (OpenBLAS, or the gonum fallback).
func BLASError() error { return currentBLAS().err }

// SetBLASThreads sets the number of threads OpenBLAS uses for every later call in the process,
// and returns the previous number. With the gonum fallback it does nothing and returns 0 (gonum
// uses up to GOMAXPROCS goroutines).
func SetBLASThreads(n int) int {
	be := currentBLAS()
	if be.lib == nil {
		return 0
	}
	prev := be.lib.NumThreads()
	be.lib.SetNumThreads(n)
	return prev
}

// useBLAS replaces the backend (for tests) and returns a function restoring the previous one.
func useBLAS(be *blasBackend) (restore func()) {
	prev := currentBLAS()
	blasState.Store(be)
	return func() { blasState.Store(prev) }
}

func transpose(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// fitsInt32 reports whether every size can be passed to OpenBLAS's 32-bit integers.
func fitsInt32(v ...int) bool {
	for _, x := range v {
		if x > math.MaxInt32 {
			return false
		}
	}
	return true
}

// sgemm computes C = alpha·op(A)·op(B) + beta·C, row-major: op(A) is m×k, op(B) k×n, C m×n.
func (be *blasBackend) sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if be.lib == nil || !fitsInt32(m, n, k, lda, ldb, ldc) {
		gonum.Implementation{}.Sgemm(transpose(tA), transpose(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if m == 1 && blasGemvForRow {
		// One row: c = op(B)ᵀ·x, which column-major BLAS sees as a GEMV over B's storage.
		incX := 1
		if tA {
			incX = lda
		}
		if tB { // B stored n×k row-major: column-major k×n, transposed.
			be.lib.Sgemv(true, k, n, alpha, &b[0], ldb, &a[0], incX, beta, &c[0], 1)
		} else { // B stored k×n row-major: column-major n×k.
			be.lib.Sgemv(false, n, k, alpha, &b[0], ldb, &a[0], incX, beta, &c[0], 1)
		}
		return
	}
	// Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ over the same storage.
	be.lib.Sgemm(tB, tA, n, m, k, alpha, &b[0], ldb, &a[0], lda, beta, &c[0], ldc)
}

// dgemm is sgemm for float64.
func (be *blasBackend) dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if be.lib == nil || !fitsInt32(m, n, k, lda, ldb, ldc) {
		gonum.Implementation{}.Dgemm(transpose(tA), transpose(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if m == 1 && blasGemvForRow {
		incX := 1
		if tA {
			incX = lda
		}
		if tB {
			be.lib.Dgemv(true, k, n, alpha, &b[0], ldb, &a[0], incX, beta, &c[0], 1)
		} else {
			be.lib.Dgemv(false, n, k, alpha, &b[0], ldb, &a[0], incX, beta, &c[0], 1)
		}
		return
	}
	be.lib.Dgemm(tB, tA, n, m, k, alpha, &b[0], ldb, &a[0], lda, beta, &c[0], ldc)
}
