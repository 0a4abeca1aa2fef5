package tensor

import (
	"fmt"
	"math"
	"slices"
)

// Functional neural-network ops on float32 tensors, named after torch.nn.functional: the local
// compute of a Llama-style decoder (RMSNorm, rotary embeddings, attention over a KV cache, SwiGLU).
//
// Layouts: every tensor argument must be contiguous (row-major, no gaps) and float32, except the
// Embedding table and its output, which may be of any dtype. "The last dim" is the row the op works
// on; leading dims are rows. A dst of the ...Into forms must have the documented shape; it may be
// the very same tensor as the main input (in place), but must not otherwise overlap an input. The
// ...Into forms and Rotary.Apply allocate nothing; the forms without Into return a new tensor.

// f32 returns the elements of a contiguous float32 tensor, or an error naming fn and arg.
func f32(fn, arg string, t *Tensor) ([]float32, error) {
	if t == nil {
		return nil, fmt.Errorf("tensor: %s: %s is nil", fn, arg)
	}
	if t.IsDevice() {
		return nil, fmt.Errorf("tensor: %s: %s is %s; these ops run on host tensors only: copy it to the host first", fn, arg, t)
	}
	if t.dtype != Float32 {
		return nil, fmt.Errorf("tensor: %s: %s is %s; want float32 (convert with To)", fn, arg, t)
	}
	if !t.contiguous {
		return nil, fmt.Errorf("tensor: %s: %s %v is not contiguous (strides %v); call Contiguous first", fn, arg, t.shape, t.strides)
	}
	b := t.Bytes()
	if len(b) == 0 {
		return []float32{}, nil
	}
	if !aligned(b, 4) {
		return nil, fmt.Errorf("tensor: %s: %s's storage is not aligned for float32 (or the host is big-endian); Clone it", fn, arg)
	}
	return as[float32](b), nil
}

// withOutput runs into on a new float32 result shaped like op fn's input arg t, after checking
// t, so that bad input is an error before anything is allocated (and nil no panic).
func withOutput(fn, arg string, t *Tensor, into func(dst *Tensor) error) (*Tensor, error) {
	if _, err := f32(fn, arg, t); err != nil {
		return nil, err
	}
	dst := New(Float32, t.shape...)
	if err := into(dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// f32Pair is f32 of an op's dst and its main input x.
func f32Pair(fn string, dst, x *Tensor) (ds, xs []float32, err error) {
	if xs, err = f32(fn, "x", x); err != nil {
		return nil, nil, err
	}
	if ds, err = f32(fn, "dst", dst); err != nil {
		return nil, nil, err
	}
	return ds, xs, nil
}

// lastDim returns the size of t's last dim (1 for a 0-dim tensor).
func lastDim(t *Tensor) int {
	if len(t.shape) == 0 {
		return 1
	}
	return t.shape[len(t.shape)-1]
}

// checkOut checks that dst has shape and is either src itself (same first element and size) or
// disjoint from it.
func checkOut(fn string, dst *Tensor, shape []int, srcs ...*Tensor) error {
	if !slices.Equal(dst.shape, shape) {
		return fmt.Errorf("tensor: %s: dst is %v; want %v", fn, dst.shape, shape)
	}
	for _, s := range srcs {
		if s == nil || !dst.Overlaps(s) {
			continue
		}
		if samePlace(dst, s) {
			continue
		}
		return fmt.Errorf("tensor: %s: dst %v partly overlaps an input %v; write in place (dst = the input) or to a separate tensor", fn, dst.shape, s.shape)
	}
	return nil
}

// samePlace reports whether two contiguous tensors cover exactly the same bytes.
func samePlace(a, b *Tensor) bool {
	a0, a1, ok1 := a.span()
	b0, b1, ok2 := b.span()
	return ok1 && ok2 && a0 == b0 && a1 == b1
}

// checkVec checks that v is a float32 vector [n] (nil allowed when optional).
func checkVec(fn, arg string, v *Tensor, n int, optional bool) ([]float32, error) {
	if v == nil && optional {
		return nil, nil
	}
	s, err := f32(fn, arg, v)
	if err != nil {
		return nil, err
	}
	if len(v.shape) != 1 || v.shape[0] != n {
		return nil, fmt.Errorf("tensor: %s: %s is %v; want [%d] (the size of x's last dim)", fn, arg, v.shape, n)
	}
	return s, nil
}

// RMSNorm returns x / sqrt(mean(x², last dim) + eps) * weight, like torch.nn.functional.rms_norm
// and Llama's RMSNorm: x [... n] and weight [n] float32, contiguous. The sum of squares is
// accumulated in float64.
func RMSNorm(x, weight *Tensor, eps float64) (*Tensor, error) {
	return withOutput("RMSNorm", "x", x, func(dst *Tensor) error { return rmsNormInto("RMSNorm", dst, x, weight, eps) })
}

// RMSNormInto is RMSNorm into dst, which has x's shape (dst may be x). It allocates nothing.
func RMSNormInto(dst, x, weight *Tensor, eps float64) error {
	return rmsNormInto("RMSNormInto", dst, x, weight, eps)
}

func rmsNormInto(fn string, dst, x, weight *Tensor, eps float64) error {
	ds, xs, err := f32Pair(fn, dst, x)
	if err != nil {
		return err
	}
	n := lastDim(x)
	w, err := checkVec(fn, "weight", weight, n, false)
	if err != nil {
		return err
	}
	if err := checkOut(fn, dst, x.shape, x, weight); err != nil {
		return err
	}
	for off := 0; off+n <= len(xs) && n > 0; off += n {
		row, out := xs[off:off+n], ds[off:off+n]
		var s0, s1, s2, s3 float64
		i := 0
		for ; i+4 <= n; i += 4 {
			a, b, c, d := float64(row[i]), float64(row[i+1]), float64(row[i+2]), float64(row[i+3])
			s0 += a * a
			s1 += b * b
			s2 += c * c
			s3 += d * d
		}
		for ; i < n; i++ {
			a := float64(row[i])
			s0 += a * a
		}
		inv := float32(1 / math.Sqrt((s0+s1+s2+s3)/float64(n)+eps))
		out = out[:len(row)]
		w := w[:len(row)]
		for i, v := range row {
			out[i] = v * inv * w[i]
		}
	}
	return nil
}

// LayerNorm returns (x - mean) / sqrt(var + eps) * weight + bias over the last dim, like
// torch.nn.functional.layer_norm with normalized_shape [n]: x [... n], weight and bias [n] or nil
// (nil means 1 and 0). The variance is the biased one, as in torch; sums are in float64.
func LayerNorm(x, weight, bias *Tensor, eps float64) (*Tensor, error) {
	return withOutput("LayerNorm", "x", x, func(dst *Tensor) error { return layerNormInto("LayerNorm", dst, x, weight, bias, eps) })
}

// LayerNormInto is LayerNorm into dst, which has x's shape (dst may be x). It allocates nothing.
func LayerNormInto(dst, x, weight, bias *Tensor, eps float64) error {
	return layerNormInto("LayerNormInto", dst, x, weight, bias, eps)
}

func layerNormInto(fn string, dst, x, weight, bias *Tensor, eps float64) error {
	ds, xs, err := f32Pair(fn, dst, x)
	if err != nil {
		return err
	}
	n := lastDim(x)
	w, err := checkVec(fn, "weight", weight, n, true)
	if err != nil {
		return err
	}
	b, err := checkVec(fn, "bias", bias, n, true)
	if err != nil {
		return err
	}
	if err := checkOut(fn, dst, x.shape, x, weight, bias); err != nil {
		return err
	}
	for off := 0; off+n <= len(xs) && n > 0; off += n {
		row, out := xs[off:off+n], ds[off:off+n]
		var sum float64
		for _, v := range row {
			sum += float64(v)
		}
		mean := sum / float64(n)
		var sq float64
		for _, v := range row {
			d := float64(v) - mean
			sq += d * d
		}
		inv := 1 / math.Sqrt(sq/float64(n)+eps)
		for i, v := range row {
			y := float32((float64(v) - mean) * inv)
			if w != nil {
				y *= w[i]
			}
			if b != nil {
				y += b[i]
			}
			out[i] = y
		}
	}
	return nil
}

// Softmax returns exp(x - max) / sum(exp(x - max)) over the last dim, like
// torch.softmax(x, dim=-1). Subtracting the row's maximum keeps large inputs from overflowing.
// -Inf entries (masked out, see MaskCausal) get probability 0; a row that is -Inf throughout
// becomes all zeros (torch gives NaN there).
func Softmax(x *Tensor) (*Tensor, error) {
	return withOutput("Softmax", "x", x, func(dst *Tensor) error { return softmaxInto("Softmax", dst, x) })
}

// SoftmaxInto is Softmax into dst, which has x's shape (dst may be x). It allocates nothing.
func SoftmaxInto(dst, x *Tensor) error { return softmaxInto("SoftmaxInto", dst, x) }

func softmaxInto(fn string, dst, x *Tensor) error {
	ds, xs, err := f32Pair(fn, dst, x)
	if err != nil {
		return err
	}
	if err := checkOut(fn, dst, x.shape, x); err != nil {
		return err
	}
	n := lastDim(x)
	for off := 0; off+n <= len(xs) && n > 0; off += n {
		softmaxRow(ds[off:off+n], xs[off:off+n])
	}
	return nil
}

// softmaxRow writes the softmax of row to out (which may be row).
func softmaxRow(out, row []float32) {
	m := float32(math.Inf(-1))
	nan := false
	for _, v := range row {
		if v > m {
			m = v
		} else if v != v {
			nan = true
		}
	}
	if nan || math.IsInf(float64(m), -1) {
		fill := float32(0)
		if nan || len(row) == 0 {
			fill = float32(math.NaN())
		}
		for i := range out[:len(row)] {
			out[i] = fill
		}
		return
	}
	var sum float64
	for i, v := range row {
		e := math.Exp(float64(v - m))
		out[i] = float32(e)
		sum += e
	}
	inv := float32(1 / sum)
	for i := range out[:len(row)] {
		out[i] *= inv
	}
}

// MaskCausal sets the attention scores that a causal decoder must not see to -Inf, in place:
// scores is [... q k] (float32, contiguous), query i sits at position offset+i and key j at
// position j, and every key j > offset+i is masked. Use offset = k - q when the q queries are the
// last of the k keys (prefill with a KV cache); offset 0 for a square mask. Softmax then gives
// those keys probability 0.
func MaskCausal(scores *Tensor, offset int) error {
	s, err := f32("MaskCausal", "scores", scores)
	if err != nil {
		return err
	}
	if len(scores.shape) < 2 {
		return fmt.Errorf("tensor: MaskCausal: scores is %v; want [... q k]", scores.shape)
	}
	q, k := scores.shape[len(scores.shape)-2], scores.shape[len(scores.shape)-1]
	if q == 0 || k == 0 {
		return nil
	}
	ninf := float32(math.Inf(-1))
	for off := 0; off < len(s); off += q * k {
		for i := range q {
			row := s[off+i*k : off+(i+1)*k]
			for j := max(offset+i+1, 0); j < k; j++ {
				row[j] = ninf
			}
		}
	}
	return nil
}

// silu returns x·sigmoid(x).
func silu(x float32) float32 {
	return float32(float64(x) / (1 + math.Exp(-float64(x))))
}

// SiLU returns x·sigmoid(x) elementwise, like torch.nn.functional.silu.
func SiLU(x *Tensor) (*Tensor, error) {
	return withOutput("SiLU", "x", x, func(dst *Tensor) error { return siluInto("SiLU", dst, x) })
}

// SiLUInto is SiLU into dst, which has x's shape (dst may be x). It allocates nothing.
func SiLUInto(dst, x *Tensor) error { return siluInto("SiLUInto", dst, x) }

func siluInto(fn string, dst, x *Tensor) error {
	ds, xs, err := f32Pair(fn, dst, x)
	if err != nil {
		return err
	}
	if err := checkOut(fn, dst, x.shape, x); err != nil {
		return err
	}
	ds = ds[:len(xs)]
	for i, v := range xs {
		ds[i] = silu(v)
	}
	return nil
}

// SwiGLU returns silu(gate) * up elementwise, the gating of Llama's MLP
// (down_proj(silu(gate_proj(x)) * up_proj(x))): gate and up have the same shape.
func SwiGLU(gate, up *Tensor) (*Tensor, error) {
	return withOutput("SwiGLU", "gate", gate, func(dst *Tensor) error { return swiGLUInto("SwiGLU", dst, gate, up) })
}

// SwiGLUInto is SwiGLU into dst, which has gate's shape (dst may be gate or up). It allocates
// nothing.
func SwiGLUInto(dst, gate, up *Tensor) error { return swiGLUInto("SwiGLUInto", dst, gate, up) }

func swiGLUInto(fn string, dst, gate, up *Tensor) error {
	gs, err := f32(fn, "gate", gate)
	if err != nil {
		return err
	}
	us, err := f32(fn, "up", up)
	if err != nil {
		return err
	}
	ds, err := f32(fn, "dst", dst)
	if err != nil {
		return err
	}
	if !slices.Equal(gate.shape, up.shape) {
		return fmt.Errorf("tensor: %s: gate %v and up %v differ in shape", fn, gate.shape, up.shape)
	}
	if err := checkOut(fn, dst, gate.shape, gate, up); err != nil {
		return err
	}
	ds, us = ds[:len(gs)], us[:len(gs)]
	for i, g := range gs {
		ds[i] = silu(g) * us[i]
	}
	return nil
}

// Add returns a + b elementwise. b has a's shape, or a suffix of it, which is broadcast over a's
// leading dims (a bias [n] added to every row of [... n]), as torch broadcasts.
func Add(a, b *Tensor) (*Tensor, error) {
	return withOutput("Add", "a", a, func(dst *Tensor) error { return binaryInto("Add", dst, a, b, false) })
}

// AddInto is Add into dst, which has a's shape (dst may be a, as in a residual x += y). It
// allocates nothing.
func AddInto(dst, a, b *Tensor) error { return binaryInto("AddInto", dst, a, b, false) }

// Mul returns a * b elementwise, with b broadcast as in Add.
func Mul(a, b *Tensor) (*Tensor, error) {
	return withOutput("Mul", "a", a, func(dst *Tensor) error { return binaryInto("Mul", dst, a, b, true) })
}

// MulInto is Mul into dst, which has a's shape (dst may be a). It allocates nothing.
func MulInto(dst, a, b *Tensor) error { return binaryInto("MulInto", dst, a, b, true) }

func binaryInto(fn string, dst, a, b *Tensor, mul bool) error {
	as_, err := f32(fn, "a", a)
	if err != nil {
		return err
	}
	bs, err := f32(fn, "b", b)
	if err != nil {
		return err
	}
	ds, err := f32(fn, "dst", dst)
	if err != nil {
		return err
	}
	if len(b.shape) > len(a.shape) || !slices.Equal(b.shape, a.shape[len(a.shape)-len(b.shape):]) {
		return fmt.Errorf("tensor: %s: b %v does not broadcast to a %v; b must be a's shape or a suffix of it", fn, b.shape, a.shape)
	}
	if err := checkOut(fn, dst, a.shape, a, b); err != nil {
		return err
	}
	n := len(bs)
	if n == 0 {
		return nil
	}
	for off := 0; off < len(as_); off += n {
		x, y, out := as_[off:off+n], bs[:n], ds[off:off+n]
		if mul {
			for i, v := range x {
				out[i] = v * y[i]
			}
		} else {
			for i, v := range x {
				out[i] = v + y[i]
			}
		}
	}
	return nil
}

// Embedding returns the rows ids of weight [vocab hidden], as torch.nn.functional.embedding(ids,
// weight) does: a [len(ids) hidden] tensor of weight's dtype (any dtype).
func Embedding(ids []int, weight *Tensor) (*Tensor, error) {
	if len(weight.shape) != 2 {
		return nil, fmt.Errorf("tensor: Embedding: weight is %v; want [vocab hidden]", weight.shape)
	}
	dst := New(weight.dtype, len(ids), weight.shape[1])
	if err := embeddingInto("Embedding", dst, ids, weight); err != nil {
		return nil, err
	}
	return dst, nil
}

// EmbeddingInto copies the rows ids of weight [vocab hidden] into dst, a contiguous tensor of
// weight's dtype with len(ids)·hidden elements (such as [len(ids) hidden], or [hidden] for one
// id). It allocates nothing.
func EmbeddingInto(dst *Tensor, ids []int, weight *Tensor) error {
	return embeddingInto("EmbeddingInto", dst, ids, weight)
}

func embeddingInto(fn string, dst *Tensor, ids []int, weight *Tensor) error {
	if len(weight.shape) != 2 || !weight.contiguous {
		return fmt.Errorf("tensor: %s: weight is %v (strides %v); want a contiguous [vocab hidden]", fn, weight.shape, weight.strides)
	}
	if dst.dtype != weight.dtype || !dst.contiguous {
		return fmt.Errorf("tensor: %s: dst is %s; want a contiguous %s tensor like weight", fn, dst, weight.dtype)
	}
	vocab, hidden := weight.shape[0], weight.shape[1]
	if dst.numel != len(ids)*hidden {
		return fmt.Errorf("tensor: %s: dst %v has %d elements; want %d ids × hidden %d", fn, dst.shape, dst.numel, len(ids), hidden)
	}
	if dst.Overlaps(weight) {
		return fmt.Errorf("tensor: %s: dst overlaps weight", fn)
	}
	if hidden == 0 || len(ids) == 0 {
		return nil
	}
	row := hidden * weight.dtype.Size()
	wb, db := weight.Bytes(), dst.Bytes()
	for i, id := range ids {
		if id < 0 || id >= vocab {
			return fmt.Errorf("tensor: %s: id %d (position %d) out of range for a vocabulary of %d", fn, id, i, vocab)
		}
		copy(db[i*row:(i+1)*row], wb[id*row:(id+1)*row])
	}
	return nil
}

// Argmax returns the index of the largest element of each row (last dim) of x, one per row in
// row-major order (a single index for a vector): the first one on ties, and the first NaN if a
// row has one (NaN counts as the largest, as in torch.argmax).
func Argmax(x *Tensor) ([]int, error) {
	n := lastDim(x)
	rows := 0
	if n > 0 {
		rows = x.numel / n
	}
	dst := make([]int, rows)
	if err := argmaxInto("Argmax", dst, x); err != nil {
		return nil, err
	}
	return dst, nil
}

// ArgmaxInto is Argmax into dst, which has one entry per row of x. It allocates nothing.
func ArgmaxInto(dst []int, x *Tensor) error { return argmaxInto("ArgmaxInto", dst, x) }

func argmaxInto(fn string, dst []int, x *Tensor) error {
	xs, err := f32(fn, "x", x)
	if err != nil {
		return err
	}
	n := lastDim(x)
	if n == 0 {
		return fmt.Errorf("tensor: %s: x %v has an empty last dim", fn, x.shape)
	}
	if len(dst) != len(xs)/n {
		return fmt.Errorf("tensor: %s: dst has %d entries; x %v has %d rows", fn, len(dst), x.shape, len(xs)/n)
	}
	for r := range dst {
		row := xs[r*n : (r+1)*n]
		best := 0
		for i, v := range row {
			if v != v {
				best = i
				break
			}
			if v > row[best] {
				best = i
			}
		}
		dst[r] = best
	}
	return nil
}

// Rotary holds the cos and sin tables of rotary position embeddings (RoPE) for one head size and
// a range of positions, in Llama's "rotate half" convention (Hugging Face's LlamaRotaryEmbedding
// and apply_rotary_pos_emb): a head vector x of size d is split into halves x1 = x[:d/2] and
// x2 = x[d/2:], and at position p
//
//	out[:d/2] = x1·cos - x2·sin,  out[d/2:] = x2·cos + x1·sin,  angle_i = p · theta^(-2i/d).
//
// The tables are computed in float64 and rounded to float32 once. A Rotary is read-only after
// NewRotary and safe for concurrent use.
type Rotary struct {
	headDim, maxPositions int
	cos, sin              []float32 // [maxPositions headDim/2]
}

// NewRotary precomputes the tables for head size headDim (even) and positions 0 to
// maxPositions-1, with base theta (Llama: 10000; 0 means 10000).
func NewRotary(headDim, maxPositions int, theta float64) (*Rotary, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("tensor: NewRotary: head dim %d must be even and positive", headDim)
	}
	if maxPositions <= 0 {
		return nil, fmt.Errorf("tensor: NewRotary: max positions %d must be positive", maxPositions)
	}
	if theta == 0 {
		theta = 10000
	}
	if theta <= 0 || math.IsNaN(theta) || math.IsInf(theta, 0) {
		return nil, fmt.Errorf("tensor: NewRotary: theta %v must be positive and finite", theta)
	}
	half := headDim / 2
	r := &Rotary{headDim: headDim, maxPositions: maxPositions,
		cos: make([]float32, maxPositions*half), sin: make([]float32, maxPositions*half)}
	for i := range half {
		invFreq := math.Pow(theta, -float64(2*i)/float64(headDim))
		for p := range maxPositions {
			s, c := math.Sincos(float64(p) * invFreq)
			r.cos[p*half+i], r.sin[p*half+i] = float32(c), float32(s)
		}
	}
	return r, nil
}

// HeadDim returns the head size the tables are for.
func (r *Rotary) HeadDim() int { return r.headDim }

// MaxPositions returns the number of positions the tables cover.
func (r *Rotary) MaxPositions() int { return r.maxPositions }

// Apply rotates x in place. x is [heads head_dim], one token at position pos (a decode step), or
// [... seq heads head_dim], where token s of the seq dim is at position pos+s (prefill; leading
// dims such as batch all start at pos). It allocates nothing.
func (r *Rotary) Apply(x *Tensor, pos int) error { return r.apply("Rotary.Apply", x, x, pos) }

// ApplyInto writes x rotated as in Apply to dst, which has x's shape (dst may be x).
func (r *Rotary) ApplyInto(dst, x *Tensor, pos int) error {
	return r.apply("Rotary.ApplyInto", dst, x, pos)
}

func (r *Rotary) apply(fn string, dst, x *Tensor, pos int) error {
	ds, xs, err := f32Pair(fn, dst, x)
	if err != nil {
		return err
	}
	nd := len(x.shape)
	if nd < 2 || x.shape[nd-1] != r.headDim {
		return fmt.Errorf("tensor: %s: x is %v; want [heads %d] or [... seq heads %d]", fn, x.shape, r.headDim, r.headDim)
	}
	if err := checkOut(fn, dst, x.shape, x); err != nil {
		return err
	}
	seq := 1
	if nd >= 3 {
		seq = x.shape[nd-3]
	}
	if pos < 0 || pos+seq > r.maxPositions {
		return fmt.Errorf("tensor: %s: positions %d to %d are outside the tables' 0 to %d; make the Rotary with more positions", fn, pos, pos+seq-1, r.maxPositions-1)
	}
	half := r.headDim / 2
	tok := x.shape[nd-2] * r.headDim // elements per token
	for off := 0; off < len(xs); off += tok {
		p := pos + (off/tok)%seq
		c, s := r.cos[p*half:(p+1)*half], r.sin[p*half:(p+1)*half]
		for h := off; h < off+tok; h += r.headDim {
			x1, x2 := xs[h:h+half], xs[h+half:h+r.headDim]
			o1, o2 := ds[h:h+half], ds[h+half:h+r.headDim]
			for i := range half {
				a, b := x1[i], x2[i]
				o1[i] = a*c[i] - b*s[i]
				o2[i] = b*c[i] + a*s[i]
			}
		}
	}
	return nil
}

// Attention computes scaled-dot-product attention for one query position with grouped-query
// attention over a KV cache, into dst [heads head_dim]:
//
//	dst[h] = softmax(q[h] · k[:length, h/g]ᵀ · scale) · v[:length, h/g],  g = heads / kvHeads
//
// q is [heads head_dim]; kCache and vCache are [maxSeq kvHeads head_dim] with the first length
// positions filled (the query attends to all of them: it is the newest). heads must be a multiple
// of kvHeads; query head h reads kv head h/g, as Hugging Face's repeat_kv lays them out. scale 0
// means 1/sqrt(head_dim). scratch holds the scores: at least length float32s, or nil to allocate
// them; with scratch it allocates nothing. dst must not overlap the inputs.
func Attention(dst, q, kCache, vCache *Tensor, length int, scale float64, scratch []float32) error {
	const fn = "Attention"
	qs, err := f32(fn, "q", q)
	if err != nil {
		return err
	}
	ks, err := f32(fn, "kCache", kCache)
	if err != nil {
		return err
	}
	vs, err := f32(fn, "vCache", vCache)
	if err != nil {
		return err
	}
	ds, err := f32(fn, "dst", dst)
	if err != nil {
		return err
	}
	if len(q.shape) != 2 {
		return fmt.Errorf("tensor: %s: q is %v; want [heads head_dim]", fn, q.shape)
	}
	heads, hd := q.shape[0], q.shape[1]
	if len(kCache.shape) != 3 || kCache.shape[2] != hd || !slices.Equal(kCache.shape, vCache.shape) {
		return fmt.Errorf("tensor: %s: kCache %v and vCache %v must both be [maxSeq kvHeads %d]", fn, kCache.shape, vCache.shape, hd)
	}
	kvHeads := kCache.shape[1]
	if kvHeads == 0 || heads%kvHeads != 0 {
		return fmt.Errorf("tensor: %s: %d query heads are not a multiple of %d kv heads", fn, heads, kvHeads)
	}
	if length < 1 || length > kCache.shape[0] {
		return fmt.Errorf("tensor: %s: length %d must be 1 to the cache's %d positions", fn, length, kCache.shape[0])
	}
	if !slices.Equal(dst.shape, q.shape) {
		return fmt.Errorf("tensor: %s: dst is %v; want q's %v", fn, dst.shape, q.shape)
	}
	if dst.Overlaps(q) || dst.Overlaps(kCache) || dst.Overlaps(vCache) {
		return fmt.Errorf("tensor: %s: dst overlaps an input; write to a separate tensor", fn)
	}
	if scratch == nil {
		scratch = make([]float32, length)
	}
	if len(scratch) < length {
		return fmt.Errorf("tensor: %s: scratch holds %d scores; want at least length %d", fn, len(scratch), length)
	}
	if scale == 0 {
		scale = 1 / math.Sqrt(float64(hd))
	}
	sc := float32(scale)
	group := heads / kvHeads
	stride := kvHeads * hd // elements per cached position
	scores := scratch[:length]
	for h := range heads {
		qh := qs[h*hd : (h+1)*hd]
		kvOff := (h / group) * hd
		for t := range length {
			k := ks[t*stride+kvOff : t*stride+kvOff+hd]
			k = k[:len(qh)]
			var dot float32
			for i, v := range qh {
				dot += v * k[i]
			}
			scores[t] = dot * sc
		}
		softmaxRow(scores, scores)
		out := ds[h*hd : (h+1)*hd]
		clear(out)
		for t, p := range scores {
			v := vs[t*stride+kvOff : t*stride+kvOff+hd]
			v = v[:len(out)]
			for i := range out {
				out[i] += p * v[i]
			}
		}
	}
	return nil
}
