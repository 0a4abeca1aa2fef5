package tensor

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openBLAS returns the OpenBLAS backend. Without OpenBLAS the test skips, except in CI (CI set),
// where it fails: CI installs libopenblas0, so a missing library there is a broken install.
func openBLAS(t *testing.T) *blasBackend {
	t.Helper()
	be := loadBLASFor(t, "auto")
	if be.lib == nil {
		msg := "OpenBLAS not loaded (" + be.desc + "); install libopenblas0"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return be
}

// loadBLASFor loads a backend as GCCL_BLAS=mode would, whatever the environment says.
func loadBLASFor(t *testing.T, mode string) *blasBackend {
	t.Helper()
	t.Setenv(EnvBLAS, mode)
	return loadBLAS()
}

// randMatrix returns a rows×cols tensor of dt with values in [-1, 1), laid out as asked: "packed",
// "transposed" (a Transpose view of a packed cols×rows tensor), or "strided" (a column Narrow of a
// wider tensor, so rows have a gap).
func randMatrix(t *testing.T, rng *rand.Rand, dt DType, rows, cols int, layout string) *Tensor {
	t.Helper()
	var x *Tensor
	var err error
	switch layout {
	case "packed":
		x = New(dt, rows, cols)
	case "transposed":
		x, err = New(dt, cols, rows).Transpose(0, 1)
	case "strided":
		x, err = New(dt, rows, cols+3).Narrow(1, 2, cols)
	}
	require.NoError(t, err)
	for i := range rows {
		for j := range cols {
			x.SetFloat(rng.Float64()*2-1, i, j)
		}
	}
	return x
}

// naiveMatMul computes alpha·op(a)·op(b) + beta·c in float64, element by element.
func naiveMatMul(a, b, c *Tensor, transA, transB bool, alpha, beta float64) []float64 {
	at, bt := a, b
	if transA {
		at, _ = a.Transpose(0, 1)
	}
	if transB {
		bt, _ = b.Transpose(0, 1)
	}
	m, k, n := at.shape[0], at.shape[1], bt.shape[1]
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			s := 0.0
			for p := range k {
				s += at.Float(i, p) * bt.Float(p, j)
			}
			v := alpha * s
			if beta != 0 {
				v += beta * c.Float(i, j)
			}
			out[i*n+j] = v
		}
	}
	return out
}

func assertClose(t *testing.T, dt DType, k int, want []float64, got *Tensor, what string) {
	t.Helper()
	vals := got.Float64s()
	require.Len(t, vals, len(want))
	tol := 1e-12 * float64(k+1)
	switch dt {
	case Float32:
		tol = 2e-6 * float64(k+1)
	case BFloat16:
		tol = 1e-2 * float64(k+1)
	case Float16:
		tol = 2e-3 * float64(k+1)
	}
	for i := range want {
		if math.Abs(vals[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s: element %d is %g, want %g (tolerance %g)", what, i, vals[i], want[i], tol)
		}
	}
}

// TestMatMulIntoBackends compares OpenBLAS and gonum (the reference) with each other and with a
// float64 loop, over random shapes (single rows, sizes that are multiples of nothing), transposes,
// strided and transposed views, alpha and beta.
func TestMatMulIntoBackends(t *testing.T) {
	ob := openBLAS(t)
	backends := map[string]*blasBackend{"openblas": ob, "gonum": gonumBLAS}
	rng := rand.New(rand.NewPCG(5, 5))
	layouts := []string{"packed", "transposed", "strided"}
	shapes := [][3]int{{1, 1, 1}, {1, 7, 5}, {1, 64, 33}, {1, 300, 129}, {2, 3, 4}, {3, 17, 1}, {7, 1, 9}, {33, 65, 31}, {64, 100, 70}, {130, 37, 257}}
	for _, dt := range []DType{Float32, Float64} {
		for _, s := range shapes {
			m, k, n := s[0], s[1], s[2]
			for trial := range 4 {
				transA, transB := trial&1 != 0, trial&2 != 0
				la, lb := layouts[rng.IntN(3)], layouts[rng.IntN(3)]
				ar, ac := m, k
				if transA {
					ar, ac = k, m
				}
				br, bc := k, n
				if transB {
					br, bc = n, k
				}
				a := randMatrix(t, rng, dt, ar, ac, la)
				b := randMatrix(t, rng, dt, br, bc, lb)
				c0 := randMatrix(t, rng, dt, m, n, layouts[rng.IntN(3)])
				alpha, beta := 1.0, 0.0
				if trial >= 2 {
					alpha, beta = 0.5, -1.5
				}
				want := naiveMatMul(a, b, c0, transA, transB, alpha, beta)
				results := map[string]*Tensor{}
				for name, be := range backends {
					restore := useBLAS(be)
					c := c0.Clone()
					what := fmt.Sprintf("%s %s m=%d k=%d n=%d transA=%t transB=%t a=%s b=%s", name, dt, m, k, n, transA, transB, la, lb)
					require.NoError(t, MatMulInto(c, a, b, transA, transB, alpha, beta), what)
					restore()
					assertClose(t, dt, k, want, c, what)
					results[name] = c
				}
				assert.True(t, AllClose(results["openblas"], results["gonum"], 1e-4, 1e-5), "openblas vs gonum")
			}
		}
	}
}

// TestMatMulGemvRow checks that single rows give the same result through GEMV and GEMM.
func TestMatMulGemvRow(t *testing.T) {
	ob := openBLAS(t)
	defer useBLAS(ob)()
	rng := rand.New(rand.NewPCG(6, 6))
	x := randMatrix(t, rng, Float32, 1, 2048, "packed")
	w := randMatrix(t, rng, Float32, 1000, 2048, "packed")
	viaGemv, err := Linear(x, w, nil)
	require.NoError(t, err)
	blasGemvForRow = false
	viaGemm, err := Linear(x, w, nil)
	blasGemvForRow = true
	require.NoError(t, err)
	assert.True(t, AllClose(viaGemv, viaGemm, 1e-4, 1e-4))
}

func TestMatMulBatchedAndLinear(t *testing.T) {
	for _, name := range []string{"current", "gonum"} {
		t.Run(name, func(t *testing.T) {
			if name == "gonum" {
				defer useBLAS(gonumBLAS)()
			}
			rng := rand.New(rand.NewPCG(7, 7))
			// 2-D
			a, _ := FromFloat64s(Float32, []float64{1, 2, 3, 4}, 2, 2)
			c, err := MatMul(a, a)
			require.NoError(t, err)
			assert.Equal(t, []float64{7, 10, 15, 22}, c.Float64s())

			// a [2 3 4 5] · b [5 6] -> [2 3 4 6], each matrix of a times b.
			a4 := New(Float64, 2, 3, 4, 5)
			for i := range a4.Numel() {
				a4.F64s()[i] = rng.Float64()
			}
			b := randMatrix(t, rng, Float64, 5, 6, "packed")
			out, err := MatMul(a4, b)
			require.NoError(t, err)
			assert.Equal(t, []int{2, 3, 4, 6}, out.Shape())
			a0, _ := a4.Narrow(0, 1, 1)
			a0, _ = a0.Narrow(1, 2, 1)
			a0, _ = a0.Reshape(4, 5)
			o0, _ := out.Narrow(0, 1, 1)
			o0, _ = o0.Narrow(1, 2, 1)
			o0, _ = o0.Reshape(4, 6)
			assertClose(t, Float64, 5, naiveMatMul(a0, b, nil, false, false, 1, 0), o0, "batched with 2-D b")

			// a [3 4 5] · b [3 5 2]: matrix by matrix.
			ab := New(Float32, 3, 4, 5)
			bb := New(Float32, 3, 5, 2)
			for i := range ab.Numel() {
				ab.Float32s()[i] = float32(rng.Float64())
			}
			for i := range bb.Numel() {
				bb.Float32s()[i] = float32(rng.Float64())
			}
			ob, err := MatMul(ab, bb)
			require.NoError(t, err)
			assert.Equal(t, []int{3, 4, 2}, ob.Shape())
			for i := range 3 {
				ai, _ := ab.Narrow(0, i, 1)
				ai, _ = ai.Reshape(4, 5)
				bi, _ := bb.Narrow(0, i, 1)
				bi, _ = bi.Reshape(5, 2)
				oi, _ := ob.Narrow(0, i, 1)
				oi, _ = oi.Reshape(4, 2)
				assertClose(t, Float32, 5, naiveMatMul(ai, bi, nil, false, false, 1, 0), oi, fmt.Sprintf("batch %d", i))
			}

			// Linear: x [2 3 8] (a transposed view underneath), w [5 8], bias [5].
			xs := New(Float32, 8, 6)
			for i := range xs.Numel() {
				xs.Float32s()[i] = float32(rng.Float64())
			}
			xt, _ := xs.Transpose(0, 1) // [6 8], strided
			x3 := xt.Clone()
			x3, _ = x3.Reshape(2, 3, 8)
			w := randMatrix(t, rng, Float32, 5, 8, "packed")
			bias, _ := FromFloat64s(Float32, []float64{1, -2, 3, -4, 5}, 5)
			y, err := Linear(x3, w, bias)
			require.NoError(t, err)
			assert.Equal(t, []int{2, 3, 5}, y.Shape())
			wantY := naiveMatMul(xt, w, nil, false, true, 1, 0)
			for i := range wantY {
				wantY[i] += bias.Float(i % 5)
			}
			assertClose(t, Float32, 8, wantY, y, "Linear 3-D with bias")
			// The same through LinearInto with the strided 2-D x and a strided dst.
			wide := New(Float32, 6, 9)
			dst, _ := wide.Narrow(1, 1, 5)
			require.NoError(t, LinearInto(dst, xt, w, bias))
			assertClose(t, Float32, 8, wantY, dst.Contiguous(), "LinearInto strided")

			// bfloat16 and float16: computed in float32, rounded once.
			for _, dt := range []DType{BFloat16, Float16} {
				xl, wl, bl := xt.To(dt), w.To(dt), bias.To(dt)
				yl, err := Linear(xl, wl, bl)
				require.NoError(t, err)
				assert.Equal(t, dt, yl.DType())
				want := naiveMatMul(xl, wl, nil, false, true, 1, 0)
				for i := range want {
					want[i] += bl.Float(i % 5)
				}
				assertClose(t, dt, 8, want, yl, "Linear "+dt.String())
			}
		})
	}
}

func TestMatMulEmptyAndZeroK(t *testing.T) {
	a := New(Float32, 3, 0)
	b := New(Float32, 0, 4)
	c, err := MatMul(a, b)
	require.NoError(t, err)
	assert.Equal(t, make([]float64, 12), c.Float64s())
	dst := New(Float32, 3, 4)
	dst.Fill(2)
	require.NoError(t, MatMulInto(dst, a, b, false, false, 1, 0.5))
	assert.Equal(t, []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, dst.Float64s())
	e, err := MatMul(New(Float32, 0, 3), New(Float32, 3, 2))
	require.NoError(t, err)
	assert.Equal(t, []int{0, 2}, e.Shape())
}

func TestMatMulBadInput(t *testing.T) {
	f := func(shape ...int) *Tensor { return New(Float32, shape...) }
	cases := []struct {
		name string
		run  func() error
		want []string
	}{
		{"inner dims", func() error { _, err := MatMul(f(2, 3), f(4, 5)); return err }, []string{"[2 3]", "[4 5]"}},
		{"1-D", func() error { _, err := MatMul(f(3), f(3, 2)); return err }, []string{"2 or more dims", "[3]"}},
		{"batch dims", func() error { _, err := MatMul(f(2, 2, 3), f(3, 3, 1)); return err }, []string{"[2 2 3]", "[3 3 1]"}},
		{"dst shape", func() error { return MatMulInto(f(2, 2), f(2, 3), f(3, 4), false, false, 1, 0) }, []string{"[2 2]", "[2 3]", "[3 4]"}},
		{"trans inner", func() error { return MatMulInto(f(2, 4), f(2, 3), f(3, 4), true, false, 1, 0) }, []string{"transA true", "[2 3]"}},
		{"3-D into", func() error { return MatMulInto(f(1, 2, 2), f(2, 2), f(2, 2), false, false, 1, 0) }, []string{"2-D", "[1 2 2]"}},
		{"mixed dtypes", func() error { _, err := MatMul(f(2, 2), New(Float64, 2, 2)); return err }, []string{"float32", "float64"}},
		{"int dtype", func() error { _, err := MatMul(New(Int32, 2, 2), New(Int32, 2, 2)); return err }, []string{"int32", "unsupported"}},
		{"overlap", func() error { x := f(2, 2); return MatMulInto(x, x, f(2, 2), false, false, 1, 0) }, []string{"overlaps"}},
		{"linear in", func() error { _, err := Linear(f(2, 3), f(4, 5), nil); return err }, []string{"[2 3]", "[4 5]"}},
		{"linear bias", func() error { _, err := Linear(f(2, 5), f(4, 5), f(5)); return err }, []string{"bias", "[5]"}},
		{"linear dst", func() error { return LinearInto(f(2, 5), f(2, 5), f(4, 5), nil) }, []string{"[2 5]", "[2 4]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	_, err := MatMul(New(Int32, 2, 2), New(Int32, 2, 2))
	assert.True(t, errors.Is(err, ErrUnsupported))
}

// TestBLASSelection covers the fallback and the errors when a named library cannot be used.
func TestBLASSelection(t *testing.T) {
	be := loadBLASFor(t, "gonum")
	assert.Nil(t, be.lib)
	assert.NoError(t, be.err)
	assert.Contains(t, be.desc, "gonum")

	t.Setenv(EnvBLASLibrary, "/nonexistent/libopenblas.so.0")
	be = loadBLASFor(t, "auto")
	require.Error(t, be.err)
	assert.Contains(t, be.err.Error(), "/nonexistent/libopenblas.so.0")
	assert.Contains(t, be.err.Error(), EnvBLASLibrary)
	restore := useBLAS(be)
	_, err := MatMul(New(Float32, 2, 2), New(Float32, 2, 2))
	assert.ErrorIs(t, err, be.err)
	assert.Contains(t, BLASBackend(), "none:")
	assert.Equal(t, be.err, BLASError())
	restore()

	be = loadBLASFor(t, "bogus")
	require.Error(t, be.err)
	assert.Contains(t, be.err.Error(), "bogus")

	// A library without sgemm_ (libc) is refused, naming the symbol.
	t.Setenv(EnvBLASLibrary, "libc.so.6")
	be = loadBLASFor(t, "auto")
	require.Error(t, be.err)
	assert.Contains(t, be.err.Error(), "sgemm_")
}

func TestBLASBackendOpenBLAS(t *testing.T) {
	ob := openBLAS(t)
	defer useBLAS(ob)()
	desc := BLASBackend()
	assert.True(t, strings.HasPrefix(desc, "openblas ("), desc)
	prev := SetBLASThreads(1)
	assert.Equal(t, 1, ob.lib.NumThreads())
	SetBLASThreads(prev)
}

// TestMatMulIntoAllocs: the hot path (float32, 2-D, dst given) allocates nothing.
func TestMatMulIntoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, name := range []string{"openblas", "gonum"} {
		t.Run(name, func(t *testing.T) {
			be := gonumBLAS
			if name == "openblas" {
				be = openBLAS(t)
			}
			defer useBLAS(be)()
			rng := rand.New(rand.NewPCG(8, 8))
			for _, m := range []int{1, 4} {
				x := randMatrix(t, rng, Float32, m, 64, "packed")
				w := randMatrix(t, rng, Float32, 32, 64, "packed")
				bias := randMatrix(t, rng, Float32, 1, 32, "packed")
				bias, _ = bias.Reshape(32)
				y := New(Float32, m, 32)
				allocs := testing.AllocsPerRun(20, func() {
					if err := LinearInto(y, x, w, bias); err != nil {
						t.Fatal(err)
					}
					if err := MatMulInto(y, x, w, false, true, 1, 0); err != nil {
						t.Fatal(err)
					}
				})
				assert.Zero(t, allocs, "m=%d", m)
			}
		})
	}
}
