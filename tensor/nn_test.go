package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The nn ops against float64 references written one element at a time, on random data of odd
// sizes.

// nnShapes are the shapes each row op is tested on: vectors, matrices, odd and 3-D.
var nnShapes = [][]int{{1}, {7}, {64}, {3, 5}, {2, 3, 17}, {4, 2048}, {1, 5632}}

func randF32(rng *rand.Rand, scale float64, shape ...int) *Tensor {
	t := New(Float32, shape...)
	v := t.Float32s()
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return t
}

// rows splits the float64 elements of t into its last-dim rows.
func rows(t *Tensor) [][]float64 {
	v := t.Float64s()
	n := lastDim(t)
	var out [][]float64
	for i := 0; i+n <= len(v) && n > 0; i += n {
		out = append(out, v[i:i+n])
	}
	return out
}

// assertNear checks got against want with float32 tolerance relative to the row's scale.
func assertNear(t *testing.T, got *Tensor, want []float64, tol float64, msg string) {
	t.Helper()
	g := got.Float64s()
	require.Len(t, g, len(want), msg)
	for i := range want {
		if math.Abs(g[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s: element %d: got %v, want %v", msg, i, g[i], want[i])
		}
	}
}

func TestRMSNormAndLayerNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, shape := range nnShapes {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			n := shape[len(shape)-1]
			x := randF32(rng, 3, shape...)
			w := randF32(rng, 1, n)
			b := randF32(rng, 1, n)
			const eps = 1e-5
			var wantRMS, wantLN []float64
			for _, r := range rows(x) {
				var ss, sum float64
				for _, v := range r {
					ss += v * v
					sum += v
				}
				inv := 1 / math.Sqrt(ss/float64(n)+eps)
				mean := sum / float64(n)
				var vr float64
				for _, v := range r {
					vr += (v - mean) * (v - mean)
				}
				invLN := 1 / math.Sqrt(vr/float64(n)+eps)
				for i, v := range r {
					wantRMS = append(wantRMS, v*inv*w.Float(i))
					wantLN = append(wantLN, (v-mean)*invLN*w.Float(i)+b.Float(i))
				}
			}
			got, err := RMSNorm(x, w, eps)
			require.NoError(t, err)
			assertNear(t, got, wantRMS, 1e-5, "RMSNorm")
			got, err = LayerNorm(x, w, b, eps)
			require.NoError(t, err)
			assertNear(t, got, wantLN, 1e-5, "LayerNorm")

			// In place gives the same, without allocating.
			c := x.Clone()
			require.NoError(t, RMSNormInto(c, c, w, eps))
			assertNear(t, c, wantRMS, 1e-5, "RMSNormInto in place")
			c = x.Clone()
			allocs := testing.AllocsPerRun(5, func() {
				_ = c.CopyFrom(x)
				require.NoError(t, LayerNormInto(c, c, w, b, eps))
			})
			assert.Zero(t, allocs)
			assertNear(t, c, wantLN, 1e-5, "LayerNormInto in place")
		})
	}
	x := randF32(rng, 1, 2, 8)
	ln, err := LayerNorm(x, nil, nil, 0)
	require.NoError(t, err)
	for _, r := range rows(ln) { // nil weight and bias: mean 0, variance 1
		var s, ss float64
		for _, v := range r {
			s += v
			ss += v * v
		}
		assert.InDelta(t, 0, s/8, 1e-6)
		assert.InDelta(t, 1, ss/8, 1e-5)
	}
}

func TestSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, shape := range nnShapes {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			x := randF32(rng, 4, shape...)
			var want []float64
			for _, r := range rows(x) {
				var sum float64
				for _, v := range r {
					sum += math.Exp(v)
				}
				for _, v := range r {
					want = append(want, math.Exp(v)/sum)
				}
			}
			got, err := Softmax(x)
			require.NoError(t, err)
			assertNear(t, got, want, 1e-5, "Softmax")
			for _, r := range rows(got) {
				var s float64
				for _, v := range r {
					s += v
				}
				assert.InDelta(t, 1, s, 1e-5)
			}
		})
	}
	// Large inputs do not overflow: exp(1000) is +Inf, but softmax of [1000 1001 1002] is finite.
	x := FromSlice([]float32{1000, 1001, 1002, -1e30, 3e38, 3e38}, 2, 3)
	got, err := Softmax(x)
	require.NoError(t, err)
	e := []float64{math.Exp(-2), math.Exp(-1), 1}
	s := e[0] + e[1] + e[2]
	assertNear(t, got, []float64{e[0] / s, e[1] / s, e[2] / s, 0, 0.5, 0.5}, 1e-6, "large inputs")

	// A causal mask: -Inf gets 0, an all-masked row all zeros.
	sc := FromSlice([]float32{1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, 3)
	require.NoError(t, MaskCausal(sc, 0))
	assert.Equal(t, []float64{1, math.Inf(-1), math.Inf(-1), 4, 5, math.Inf(-1), 7, 8, 9}, sc.Float64s())
	require.NoError(t, SoftmaxInto(sc, sc))
	assert.Equal(t, 1.0, sc.Float(0, 0))
	assert.Zero(t, sc.Float(0, 1))
	assert.InDelta(t, 1/(1+math.E), sc.Float(1, 0), 1e-7)
	sc = FromSlice([]float32{1, 2, 3, 4, 5, 6}, 2, 3) // 2 new queries after 1 cached key
	require.NoError(t, MaskCausal(sc, 1))
	assert.Equal(t, []float64{1, 2, math.Inf(-1), 4, 5, 6}, sc.Float64s())
	sc = FromSlice([]float32{1, 2}, 1, 2)
	require.NoError(t, MaskCausal(sc, -1))
	require.NoError(t, SoftmaxInto(sc, sc))
	assert.Equal(t, []float64{0, 0}, sc.Float64s())
}

func TestSiLUSwiGLUAddMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, shape := range nnShapes {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			n := shape[len(shape)-1]
			g, u := randF32(rng, 4, shape...), randF32(rng, 2, shape...)
			bias := randF32(rng, 1, n)
			var wantSiLU, wantSwi, wantAdd, wantMul, wantAddB, wantMulB []float64
			gv, uv := g.Float64s(), u.Float64s()
			for i, x := range gv {
				s := x / (1 + math.Exp(-x))
				wantSiLU = append(wantSiLU, s)
				wantSwi = append(wantSwi, s*uv[i])
				wantAdd = append(wantAdd, x+uv[i])
				wantMul = append(wantMul, x*uv[i])
				wantAddB = append(wantAddB, x+bias.Float(i%n))
				wantMulB = append(wantMulB, x*bias.Float(i%n))
			}
			for name, f := range map[string]func() (*Tensor, error){
				"SiLU":   func() (*Tensor, error) { return SiLU(g) },
				"SwiGLU": func() (*Tensor, error) { return SwiGLU(g, u) },
				"Add":    func() (*Tensor, error) { return Add(g, u) },
				"Mul":    func() (*Tensor, error) { return Mul(g, u) },
				"Add[n]": func() (*Tensor, error) { return Add(g, bias) },
				"Mul[n]": func() (*Tensor, error) { return Mul(g, bias) },
			} {
				got, err := f()
				require.NoError(t, err, name)
				want := map[string][]float64{"SiLU": wantSiLU, "SwiGLU": wantSwi, "Add": wantAdd, "Mul": wantMul,
					"Add[n]": wantAddB, "Mul[n]": wantMulB}[name]
				assertNear(t, got, want, 1e-6, name)
			}
			d := New(Float32, shape...)
			allocs := testing.AllocsPerRun(5, func() {
				require.NoError(t, SwiGLUInto(d, g, u))
			})
			assert.Zero(t, allocs)
			assertNear(t, d, wantSwi, 1e-6, "SwiGLUInto")
			c := g.Clone()
			require.NoError(t, AddInto(c, c, u)) // a residual add in place
			assertNear(t, c, wantAdd, 1e-6, "AddInto in place")
		})
	}
	// Extremes: silu(-inf-ish) is -0, silu(large) is x.
	got, err := SiLU(FromSlice([]float32{-1000, 1000, 0}))
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 1000, 0}, got.Float64s())
}

func TestNNBadInput(t *testing.T) {
	x := New(Float32, 2, 4)
	w := New(Float32, 4)
	strided, err := New(Float32, 4, 2).Transpose(0, 1)
	require.NoError(t, err)
	part, err := New(Float32, 3, 4).Narrow(0, 1, 2)
	require.NoError(t, err)
	overlap := New(Float32, 3, 4)
	o1, _ := overlap.Narrow(0, 0, 2)
	o2, _ := overlap.Narrow(0, 1, 2)
	rot, err := NewRotary(4, 8, 0)
	require.NoError(t, err)
	cases := []struct {
		name, want string
		err        error
	}{
		{"float64 x", "want float32", func() error { _, err := RMSNorm(New(Float64, 2, 4), w, 1e-5); return err }()},
		{"strided x", "not contiguous", func() error { _, err := Softmax(strided); return err }()},
		{"weight size", "want [4]", func() error { _, err := RMSNorm(x, New(Float32, 3), 1e-5); return err }()},
		{"dst shape", "dst is [4 2]", RMSNormInto(New(Float32, 4, 2), x, w, 1e-5)},
		{"partial overlap", "partly overlaps", SoftmaxInto(o2, o1)},
		{"gate/up", "differ in shape", func() error { _, err := SwiGLU(x, New(Float32, 4, 2)); return err }()},
		{"broadcast", "does not broadcast", func() error { _, err := Add(x, New(Float32, 2)); return err }()},
		{"embedding id", "id 7 (position 1) out of range for a vocabulary of 3", func() error { _, err := Embedding([]int{0, 7}, New(Float32, 3, 4)); return err }()},
		{"argmax empty", "empty last dim", func() error { _, err := Argmax(New(Float32, 2, 0)); return err }()},
		{"rotary head dim", "want [heads 4]", rot.Apply(New(Float32, 2, 6), 0)},
		{"rotary range", "positions 7 to 8", rot.Apply(New(Float32, 2, 1, 4), 7)},
		{"rotary odd", "must be even", func() error { _, err := NewRotary(5, 8, 0); return err }()},
		{"gqa", "not a multiple of 3 kv heads", Attention(New(Float32, 4, 4), New(Float32, 4, 4), New(Float32, 8, 3, 4), New(Float32, 8, 3, 4), 1, 0, nil)},
		{"length", "length 9 must be 1 to the cache's 8", Attention(New(Float32, 4, 4), New(Float32, 4, 4), New(Float32, 8, 2, 4), New(Float32, 8, 2, 4), 9, 0, nil)},
		{"narrowed dst ok", "", SoftmaxInto(part, x)},
	}
	for _, c := range cases {
		if c.want == "" {
			assert.NoError(t, c.err, c.name)
			continue
		}
		if assert.Error(t, c.err, c.name) {
			assert.Contains(t, c.err.Error(), c.want, c.name)
		}
	}
}

func TestEmbeddingArgmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	table := randF32(rng, 1, 11, 5)
	ids := []int{3, 0, 10, 3}
	got, err := Embedding(ids, table)
	require.NoError(t, err)
	require.Equal(t, []int{4, 5}, got.Shape())
	for i, id := range ids {
		for j := range 5 {
			assert.Equal(t, table.Float(id, j), got.Float(i, j))
		}
	}
	bf := table.To(BFloat16) // any dtype
	one := New(BFloat16, 5)
	require.NoError(t, EmbeddingInto(one, []int{10}, bf))
	r, _ := bf.Narrow(0, 10, 1)
	assert.Equal(t, r.Float64s(), one.Float64s())

	x := FromSlice([]float32{1, 3, 3, 2, -1, -5, float32(math.NaN()), 9, 7}, 3, 3)
	am, err := Argmax(x)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 0, 0}, am)
	y := randF32(rng, 1, 3, 1001)
	am, err = Argmax(y)
	require.NoError(t, err)
	for r, row := range rows(y) {
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		assert.Equal(t, best, am[r])
	}
}

// refRotate rotates one head vector at position p in float64, rotate-half convention.
func refRotate(x []float64, p int, theta float64) []float64 {
	d := len(x)
	out := make([]float64, d)
	for i := range d / 2 {
		a := float64(p) * math.Pow(theta, -float64(2*i)/float64(d))
		out[i] = x[i]*math.Cos(a) - x[i+d/2]*math.Sin(a)
		out[i+d/2] = x[i+d/2]*math.Cos(a) + x[i]*math.Sin(a)
	}
	return out
}

func TestRotary(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const hd, heads = 64, 3
	rot, err := NewRotary(hd, 4096, 10000)
	require.NoError(t, err)

	// Position 0 is the identity.
	x := randF32(rng, 1, heads, hd)
	y := x.Clone()
	require.NoError(t, rot.Apply(y, 0))
	assert.True(t, Equal(x, y))

	// Against the reference, prefill [batch seq heads hd] from position 5.
	const batch, seq, pos = 2, 7, 5
	x = randF32(rng, 1, batch, seq, heads, hd)
	y = New(Float32, x.Shape()...)
	require.NoError(t, rot.ApplyInto(y, x, pos))
	var want []float64
	xv := x.Float64s()
	for tok := range batch * seq {
		for h := range heads {
			off := (tok*heads + h) * hd
			want = append(want, refRotate(xv[off:off+hd], pos+tok%seq, 10000)...)
		}
	}
	assertNear(t, y, want, 2e-5, "prefill")
	// A decode step: [heads hd] at a far position, in place, without allocating.
	x = randF32(rng, 1, heads, hd)
	y = x.Clone()
	allocs := testing.AllocsPerRun(2, func() { require.NoError(t, rot.Apply(y, 4000)) })
	assert.Zero(t, allocs)
	require.NoError(t, y.CopyFrom(x))
	require.NoError(t, rot.Apply(y, 4000))
	want = want[:0]
	xv = x.Float64s()
	for h := range heads {
		want = append(want, refRotate(xv[h*hd:(h+1)*hd], 4000, 10000)...)
	}
	assertNear(t, y, want, 1e-4, "decode at 4000")

	// q·k at positions (m, n) depends only on m - n.
	q, k := randF32(rng, 1, 1, hd), randF32(rng, 1, 1, hd)
	dot := func(m, n int) float64 {
		qq, kk := q.Clone(), k.Clone()
		require.NoError(t, rot.Apply(qq, m))
		require.NoError(t, rot.Apply(kk, n))
		var s float64
		for i, v := range qq.Float64s() {
			s += v * kk.Float(0, i)
		}
		return s
	}
	base := dot(3, 0)
	for _, off := range []int{1, 17, 100, 1000} {
		assert.InDelta(t, base, dot(3+off, off), 1e-3*(1+math.Abs(base)), "offset %d", off)
	}
	same := dot(0, 0)
	assert.InDelta(t, same, dot(2500, 2500), 1e-3*(1+math.Abs(same)))
}

func TestAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ heads, kvHeads, hd, maxSeq, length int }{
		{4, 4, 8, 5, 5}, {8, 2, 16, 32, 13}, {6, 1, 5, 3, 1}, {32, 8, 64, 64, 40},
	} {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			q := randF32(rng, 1, c.heads, c.hd)
			k := randF32(rng, 1, c.maxSeq, c.kvHeads, c.hd)
			v := randF32(rng, 1, c.maxSeq, c.kvHeads, c.hd)
			dst := New(Float32, c.heads, c.hd)
			scratch := make([]float32, c.length)
			allocs := testing.AllocsPerRun(2, func() {
				require.NoError(t, Attention(dst, q, k, v, c.length, 0, scratch))
			})
			assert.Zero(t, allocs)
			var want []float64
			g := c.heads / c.kvHeads
			for h := range c.heads {
				kv := h / g
				s := make([]float64, c.length)
				var m float64 = math.Inf(-1)
				for tpos := range c.length {
					for i := range c.hd {
						s[tpos] += q.Float(h, i) * k.Float(tpos, kv, i)
					}
					s[tpos] /= math.Sqrt(float64(c.hd))
					m = math.Max(m, s[tpos])
				}
				var sum float64
				for i := range s {
					s[i] = math.Exp(s[i] - m)
					sum += s[i]
				}
				for i := range c.hd {
					var o float64
					for tpos := range c.length {
						o += s[tpos] / sum * v.Float(tpos, kv, i)
					}
					want = append(want, o)
				}
			}
			assertNear(t, dst, want, 1e-5, "Attention")
		})
	}
}
