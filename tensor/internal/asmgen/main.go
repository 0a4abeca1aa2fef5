// Command asmgen writes the amd64 SIMD reduction kernels of package tensor: reduce_amd64.s (the
// assembly) and reduce_kernels_amd64.go (the Go declarations, the kernel families and the dispatch
// switch). Run it through go generate in the tensor directory:
//
//	go generate ./tensor/
//
// Every kernel has the same shape, at two instruction-set levels (AVX2 with F16C, and AVX-512
// F/BW/VL, plus DQ for the int64 product, and AVX512_BF16 and DQ for two bfloat16 kernels):
//
//	func name(dst *byte, srcs *[]byte, k, off, n int) int
//
// It computes, for n elements, dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[k-1][i], combining
// strictly in source order, where element i of source j is at srcs[j]'s data pointer + off + i*size
// and element i of dst is at dst + i*size (no alignment needed). k is at least 2. The AVX-512
// kernels take any n (the last partial vector is done with masked loads and stores); the AVX2
// kernels need n to be a multiple of 32/size (the Go caller finishes a tail through a scratch
// copy). The float kernels give up on a group of vectors that needs the Go code's rules (a NaN
// operand of MIN or MAX, a NaN result of SUM or PRODUCT, a denormal result where the rounding
// instruction would flush it): they return the number of leading elements done, before that
// group, and the Go caller computes the next few elements in pure Go and calls the kernel again.
// Otherwise they return n.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"strings"
)

// level is an instruction-set level.
type level struct {
	name   string // suffix of the kernel names, and the Go constant's suffix
	vb     int    // bytes per vector register
	avx512 bool
}

var (
	avx2   = level{name: "AVX2", vb: 32}
	avx512 = level{name: "AVX512", vb: 64, avx512: true}
	levels = []level{avx2, avx512}
)

// operand is a memory operand (base register, optional index register, displacement) or, in the
// masked tail of the AVX-512 kernels, a vector register that holds the loaded vector.
type operand struct {
	base, index string
	disp        int
	reg         string
}

// at returns the memory operand extra bytes further on.
func (o operand) at(extra int) string {
	if o.reg != "" {
		panic("at on a register operand")
	}
	if o.index == "" {
		return fmt.Sprintf("%d(%s)", o.disp+extra, o.base)
	}
	return fmt.Sprintf("%d(%s)(%s*1)", o.disp+extra, o.base, o.index)
}

// s returns the operand as an instruction argument: the register, or the memory operand.
func (o operand) s() string {
	if o.reg != "" {
		return o.reg
	}
	return o.at(0)
}

// ctx is the state of the kernel being written.
type ctx struct {
	w      *bytes.Buffer
	lv     level
	fam    *family
	masked bool // in the AVX-512 masked tail: K1 holds the lanes to load and store
	consts map[string]string
}

func (c *ctx) i(format string, args ...any) {
	fmt.Fprintf(c.w, "\t"+format+"\n", args...)
}

func (c *ctx) label(name string) { fmt.Fprintf(c.w, "%s:\n", name) }

// Register plan. AVX-512: accumulators Z0-Z7, masked-load scratch Z8-Z9, temporaries Z12-Z23
// (three per unrolled vector), constants Z24-Z31, NaN flag K3, tail mask K1, compare scratch K2.
// AVX2: accumulators Y0-Y3, temporaries Y4-Y9 (shared round-robin by the unrolled vectors),
// constants Y10-Y14, NaN flag Y15.

func (c *ctx) acc(u, j int) string {
	idx := u*c.fam.nacc + j
	if c.lv.avx512 {
		return fmt.Sprintf("Z%d", idx)
	}
	return fmt.Sprintf("Y%d", idx)
}

func (c *ctx) tmp(u, j int) string {
	if c.lv.avx512 {
		return fmt.Sprintf("Z%d", 12+3*u+j)
	}
	return fmt.Sprintf("Y%d", 4+(3*u+j)%6)
}

// half returns the register of half the width with the same number as r (Z3 -> Y3, Y3 -> X3).
func half(r string) string {
	switch r[0] {
	case 'Z':
		return "Y" + r[1:]
	case 'Y':
		return "X" + r[1:]
	}
	panic("half of " + r)
}

func (c *ctx) konst(name string) string {
	r, ok := c.consts[name]
	if !ok {
		panic("no constant " + name + " in family " + c.fam.name)
	}
	return r
}

// moveSuffix is the element width, in bits, of masked moves of the family's elements.
func (c *ctx) moveSuffix() int { return c.fam.size * 8 }

// load copies a vector from src (memory, or a register in the masked tail) into reg.
func (c *ctx) load(reg string, src operand) {
	switch {
	case src.reg != "":
		if src.reg != reg {
			c.i("VMOVDQU64 %s, %s", src.reg, reg)
		}
	case c.lv.avx512:
		c.i("VMOVDQU64 %s, %s", src.s(), reg)
	default:
		c.i("VMOVDQU %s, %s", src.s(), reg)
	}
}

// store writes the vector reg to dst, only the lanes of K1 in the masked tail.
func (c *ctx) store(reg string, dst operand) {
	switch {
	case c.masked:
		c.i("VMOVDQU%d %s, K1, %s", c.moveSuffix(), reg, dst.s())
	case c.lv.avx512:
		c.i("VMOVDQU64 %s, %s", reg, dst.s())
	default:
		c.i("VMOVDQU %s, %s", reg, dst.s())
	}
}

// flagUnordered records in the NaN flag whether any lane of x or y (float32 or float64) is NaN;
// t is a temporary (AVX2).
func (c *ctx) flagUnordered(x, y, t string, pd bool) {
	cmp := "VCMPPS"
	if pd {
		cmp = "VCMPPD"
	}
	if c.lv.avx512 {
		c.i("%s $3, %s, %s, K2", cmp, x, y)
		c.i("KORQ K2, K3, K3")
		return
	}
	c.i("%s $3, %s, %s, %s", cmp, x, y, t)
	c.i("VPOR %s, Y15, Y15", t)
}

func (c *ctx) or() string {
	if c.lv.avx512 {
		return "VPORD"
	}
	return "VPOR"
}

func (c *ctx) and() string {
	if c.lv.avx512 {
		return "VPANDD"
	}
	return "VPAND"
}

func (c *ctx) xor() string {
	if c.lv.avx512 {
		return "VPXORD"
	}
	return "VPXOR"
}

// konstDef is a constant vector: a 32-bit pattern broadcast to every lane.
type konstDef struct {
	name string
	bits uint32
	data string // or, AVX-512 only, a 64-byte DATA symbol to load (see dataSymbols)
}

// dataSymbols are the 64-byte constants in memory, by name.
var dataSymbols = map[string][32]uint16{
	// bf16Interleave is the VPERMW index that turns VCVTNE2PS2BF16's output, the 16 even elements
	// then the 16 odd ones, back into element order.
	"bf16Interleave": func() (idx [32]uint16) {
		for i := range 16 {
			idx[2*i], idx[2*i+1] = uint16(i), uint16(16+i)
		}
		return idx
	}(),
}

// family is one kernel: an element type and an op.
type family struct {
	name   string // Go name part: famXxx, reduceXxxAVX2
	doc    string
	size   int  // bytes per element
	nacc   int  // accumulator registers per vector
	nan    bool // may stop early (see the package comment)
	noAVX2 bool
	// needsBF16 marks the kernels for levelAVX512BF16 only: AVX-512 plus AVX512_BF16 and DQ.
	needsBF16 bool
	consts    []konstDef
	// first loads the vector of srcs[0] into the accumulators of unrolled vector u.
	first func(c *ctx, u int, src operand)
	// step combines the vector of another source into the accumulators of u.
	step func(c *ctx, u int, src operand)
	// finish runs after the last source (NaN checks); may be nil.
	finish func(c *ctx, u int)
	// finishAll, if not nil, runs instead of finish, once for all nv unrolled vectors.
	finishAll func(c *ctx, nv int)
	// out writes the accumulators of u to dst.
	out func(c *ctx, u int, dst operand)
}

func (f *family) unroll(lv level) int {
	if f.nacc == 2 && !lv.avx512 {
		return 2
	}
	return 4
}

// ternlog returns the VPTERNLOG immediate of f(A, B, C), A being the destination operand.
func ternlog(f func(a, b, c bool) bool) uint8 {
	var imm uint8
	for i := range 8 {
		if f(i&4 != 0, i&2 != 0, i&1 != 0) {
			imm |= 1 << i
		}
	}
	return imm
}

// Families.

func simpleFamily(name, doc string, size int, opAVX2, opAVX512 string) *family {
	return &family{
		name: name, doc: doc, size: size, nacc: 1,
		first: func(c *ctx, u int, src operand) { c.load(c.acc(u, 0), src) },
		step: func(c *ctx, u int, src operand) {
			op := opAVX2
			if c.lv.avx512 {
				op = opAVX512
			}
			c.i("%s %s, %s, %s", op, src.s(), c.acc(u, 0), c.acc(u, 0))
		},
		out: func(c *ctx, u int, dst operand) { c.store(c.acc(u, 0), dst) },
	}
}

// floatMinMax is MIN or MAX of float32 (pd false) or float64. Between numbers, VMINPS(a, b) OR
// VMINPS(b, a) is the minimum, and -0 if a and b are zeros of either sign (VMINPS returns its
// second operand for two zeros); VMAXPS(a, b) AND VMAXPS(b, a) is the maximum, +0 for two zeros.
// A NaN operand stops the kernel: the NaN rules are left to the Go code.
func floatMinMax(name string, pd, isMin bool) *family {
	sfx, width := "PS", 4
	if pd {
		sfx, width = "PD", 8
	}
	op, what := "VMAX"+sfx, "MAX"
	if isMin {
		op, what = "VMIN"+sfx, "MIN"
	}
	return &family{
		name: name, size: width, nacc: 1, nan: true,
		doc:   fmt.Sprintf("%s of float%d; stops at a NaN operand", what, width*8),
		first: func(c *ctx, u int, src operand) { c.load(c.acc(u, 0), src) },
		step: func(c *ctx, u int, src operand) {
			a, b, t := c.acc(u, 0), c.tmp(u, 0), c.tmp(u, 1)
			c.load(b, src)
			c.flagUnordered(b, a, t, pd)
			c.i("%s %s, %s, %s", op, b, a, t) // Intel order: t = op(a, b)
			c.i("%s %s, %s, %s", op, a, b, a) // a = op(b, a)
			if isMin {
				c.i("%s %s, %s, %s", c.or(), t, a, a)
			} else {
				c.i("%s %s, %s, %s", c.and(), t, a, a)
			}
		},
		out: func(c *ctx, u int, dst operand) { c.store(c.acc(u, 0), dst) },
	}
}

// halfArith is SUM (mul false) or PRODUCT of bfloat16 (bf true) or float16: each vector of 16-bit
// elements is converted to two float32 accumulators, combined with every source in order, and
// rounded once to nearest even. A NaN result stops the kernel.
//
// bfloat16 is widened without shuffles: each 32-bit lane x holds two elements, and x << 16 is the
// even one as a float32, x & 0xffff0000 the odd one; the two float32 accumulators hold the even
// and the odd elements. The rounding is Float32ToBFloat16's, (b + 0x7fff + (b>>16)&1) >> 16 (NaNs
// aside), and the two halves are merged back into 32-bit lanes with one VPTERNLOG (AVX2: AND,
// OR). float16 uses F16C's VCVTPH2PS and VCVTPS2PH with immediate 0 (round to nearest even,
// whatever MXCSR says).
func halfArith(name string, bf, mul bool) *family {
	op, what := "VADDPS", "SUM"
	if mul {
		op, what = "VMULPS", "PRODUCT"
	}
	dtName := "float16"
	if bf {
		dtName = "bfloat16"
	}
	f := &family{
		name: name, size: 2, nacc: 2, nan: true,
		doc: fmt.Sprintf("%s of %s in float32, rounded once; stops at a NaN result", what, dtName),
	}
	if bf {
		f.consts = []konstDef{{name: "high", bits: 0xffff0000}, {name: "one", bits: 1}, {name: "bias", bits: 0x7fff}}
	}
	widen := func(c *ctx, lo, hi string, src operand) {
		if bf && c.lv.avx512 {
			c.i("VPSLLD $16, %s, %s", src.s(), lo)
			c.i("VPANDD %s, %s, %s", src.s(), c.konst("high"), hi)
			return
		}
		if bf {
			c.load(lo, src)
			c.i("VPAND %s, %s, %s", c.konst("high"), lo, hi)
			c.i("VPSLLD $16, %s, %s", lo, lo)
			return
		}
		if src.reg == "" {
			c.i("VCVTPH2PS %s, %s", src.at(0), lo)
			c.i("VCVTPH2PS %s, %s", src.at(c.lv.vb/2), hi)
			return
		}
		c.i("VCVTPH2PS %s, %s", half(src.reg), lo)
		c.i("VEXTRACTI64X4 $1, %s, Y9", src.reg)
		c.i("VCVTPH2PS Y9, %s", hi)
	}
	f.first = func(c *ctx, u int, src operand) { widen(c, c.acc(u, 0), c.acc(u, 1), src) }
	f.step = func(c *ctx, u int, src operand) {
		lo, hi, t0, t1 := c.acc(u, 0), c.acc(u, 1), c.tmp(u, 0), c.tmp(u, 1)
		widen(c, t0, t1, src)
		c.i("%s %s, %s, %s", op, t0, lo, lo)
		c.i("%s %s, %s, %s", op, t1, hi, hi)
	}
	f.finish = func(c *ctx, u int) { c.flagUnordered(c.acc(u, 0), c.acc(u, 1), c.tmp(u, 2), false) }
	f.out = func(c *ctx, u int, dst operand) {
		lo, hi := c.acc(u, 0), c.acc(u, 1)
		if bf {
			for j, x := range []string{lo, hi} {
				t := c.tmp(u, j)
				c.i("VPSRLD $16, %s, %s", x, t)
				c.i("%s %s, %s, %s", c.and(), c.konst("one"), t, t)
				c.i("VPADDD %s, %s, %s", c.konst("bias"), x, x)
				c.i("VPADDD %s, %s, %s", t, x, x)
			}
			c.i("VPSRLD $16, %s, %s", lo, lo)
			if c.lv.avx512 {
				merge := ternlog(func(a, b, c bool) bool { return (a && c) || b })
				c.i("VPTERNLOGD $0x%02x, %s, %s, %s", merge, c.konst("high"), lo, hi) // hi = hi&high | lo
			} else {
				c.i("VPAND %s, %s, %s", c.konst("high"), hi, hi)
				c.i("VPOR %s, %s, %s", lo, hi, hi)
			}
			c.store(hi, dst)
			return
		}
		if !c.masked {
			c.i("VCVTPS2PH $0, %s, %s", lo, dst.at(0))
			c.i("VCVTPS2PH $0, %s, %s", hi, dst.at(c.lv.vb/2))
			return
		}
		t0, t1 := c.tmp(u, 0), c.tmp(u, 1)
		c.i("VCVTPS2PH $0, %s, %s", lo, half(t0))
		c.i("VCVTPS2PH $0, %s, %s", hi, half(t1))
		c.i("VINSERTI64X4 $1, %s, %s, %s", half(t1), t0, t0)
		c.store(t0, dst)
	}
	return f
}

// evexRegs encodes an EVEX.512 instruction with three zmm register operands (Intel order: dst,
// src1, src2; no masking) as BYTE directives, for instructions the Go assembler does not know.
// pp and mm are the EVEX pp and mm fields.
func evexRegs(opcode byte, pp, mm byte, dst, src1, src2 string) string {
	reg := func(r string) byte {
		var n byte
		if _, err := fmt.Sscanf(r, "Z%d", &n); err != nil || n > 31 {
			panic("not a zmm register: " + r)
		}
		return n
	}
	d, v, m := reg(dst), reg(src1), reg(src2)
	inv := func(b byte) byte { return ^b & 1 }
	p0 := inv(d>>3)<<7 | inv(m>>4)<<6 | inv(m>>3)<<5 | inv(d>>4)<<4 | mm
	p1 := (^v&0xf)<<3 | 1<<2 | pp   // W0
	p2 := byte(2)<<5 | inv(v>>4)<<3 // z0, L'L = 512, b0, aaa = 0
	modrm := 0xc0 | (d&7)<<3 | m&7
	var parts []string
	for _, b := range []byte{0x62, p0, p1, p2, opcode, modrm} {
		parts = append(parts, fmt.Sprintf("BYTE $0x%02x", b))
	}
	return strings.Join(parts, "; ")
}

// halfArithBF16 is halfArith for bfloat16 with AVX512_BF16: the same widening and accumulation,
// narrowed by VCVTNE2PS2BF16, which rounds to nearest even like Float32ToBFloat16 for every
// float32 except NaNs (always quieted) and denormals (flushed to zero). The kernel stops before
// writing a NaN or denormal float32 result (VFPCLASSPS, AVX512DQ), leaving those elements to Go.
func halfArithBF16(name string, mul bool) *family {
	f := halfArith(name, true, mul)
	f.needsBF16, f.noAVX2 = true, true
	f.doc += " or denormal; AVX512_BF16 rounding"
	f.consts = []konstDef{{name: "high", bits: 0xffff0000}, {name: "interleave", data: "bf16Interleave"}}
	f.finish = func(c *ctx, u int) {
		for j := range 2 {
			c.i("VFPCLASSPSZ $0xa1, %s, K2", c.acc(u, j)) // QNaN | SNaN | denormal
			c.i("KORQ K2, K3, K3")
		}
	}
	f.out = func(c *ctx, u int, dst operand) {
		lo, hi, t := c.acc(u, 0), c.acc(u, 1), c.tmp(u, 0)
		// t = the rounded even elements, then the odd ones: VCVTNE2PS2BF16 t, hi, lo (F2.0F38 72).
		c.i("%s // VCVTNE2PS2BF16 %s, %s, %s", evexRegs(0x72, 3, 2, t, hi, lo), lo, hi, t)
		c.i("VPERMW %s, %s, %s", t, c.konst("interleave"), t)
		c.store(t, dst)
	}
	return f
}

// halfMinMax is MIN or MAX of float16 or bfloat16 bit patterns (the result is always one of the
// operands, so no conversion is needed). The accumulator holds order keys, int16s that sort like
// the floats with -0 just below +0: key(x) = x ^ ((x >> 15) & 0x7fff) (arithmetic shift; the map
// is its own inverse), combined with VPMINSW/VPMAXSW. A NaN operand (|x| > inf) stops the kernel.
func halfMinMax(name string, inf uint16, isMin bool) *family {
	op, what := "VPMAXSW", "MAX"
	if isMin {
		op, what = "VPMINSW", "MIN"
	}
	dtName := "float16"
	if inf == 0x7f80 {
		dtName = "bfloat16"
	}
	f := &family{
		name: name, size: 2, nacc: 1, nan: true,
		doc:    fmt.Sprintf("%s of %s bit patterns; stops at a NaN operand", what, dtName),
		consts: []konstDef{{name: "abs", bits: 0x7fff7fff}, {name: "inf", bits: uint32(inf)<<16 | uint32(inf)}},
	}
	xorAnd := ternlog(func(a, b, c bool) bool { return a != (b && c) })
	flagNaN := func(c *ctx, x, t string) {
		if c.lv.avx512 {
			c.i("VPANDD %s, %s, %s", c.konst("abs"), x, t)
			c.i("VPCMPUW $6, %s, %s, K2", c.konst("inf"), t) // K2 = t > inf
			c.i("KORQ K2, K3, K3")
			return
		}
		c.i("VPAND %s, %s, %s", c.konst("abs"), x, t)
		c.i("VPCMPGTW %s, %s, %s", c.konst("inf"), t, t)
		c.i("VPOR %s, Y15, Y15", t)
	}
	key := func(c *ctx, x, t string) {
		c.i("VPSRAW $15, %s, %s", x, t)
		if c.lv.avx512 {
			c.i("VPTERNLOGD $0x%02x, %s, %s, %s", xorAnd, c.konst("abs"), t, x) // x ^= t & 0x7fff
			return
		}
		c.i("VPSRLW $1, %s, %s", t, t)
		c.i("VPXOR %s, %s, %s", t, x, x)
	}
	f.first = func(c *ctx, u int, src operand) {
		a := c.acc(u, 0)
		c.load(a, src)
		flagNaN(c, a, c.tmp(u, 0))
		key(c, a, c.tmp(u, 1))
	}
	f.step = func(c *ctx, u int, src operand) {
		a, b := c.acc(u, 0), c.tmp(u, 0)
		c.load(b, src)
		flagNaN(c, b, c.tmp(u, 1))
		key(c, b, c.tmp(u, 2))
		c.i("%s %s, %s, %s", op, b, a, a)
	}
	f.out = func(c *ctx, u int, dst operand) {
		a := c.acc(u, 0)
		key(c, a, c.tmp(u, 0))
		c.store(a, dst)
	}
	return f
}

// int64MinMaxAVX2 is MIN or MAX of int64 with AVX2, which has no VPMINSQ: compare and blend.
func int64MinMax(name string, isMin bool) *family {
	what, op := "MAX", "VPMAXSQ"
	if isMin {
		what, op = "MIN", "VPMINSQ"
	}
	f := simpleFamily(name, what+" of int64", 8, "", op)
	f.step = func(c *ctx, u int, src operand) {
		a := c.acc(u, 0)
		if c.lv.avx512 {
			c.i("%s %s, %s, %s", op, src.s(), a, a)
			return
		}
		b, m := c.tmp(u, 0), c.tmp(u, 1)
		c.load(b, src)
		if isMin {
			c.i("VPCMPGTQ %s, %s, %s", b, a, m) // m = a > b
		} else {
			c.i("VPCMPGTQ %s, %s, %s", a, b, m) // m = b > a
		}
		c.i("VPBLENDVB %s, %s, %s, %s", m, b, a, a) // a = m ? b : a
	}
	return f
}

// boolFamily is logical or, and or xor of bool bytes (0 is false, anything else true), with 0/1
// results: or and and combine the raw bytes (OR, unsigned MIN) and clamp the result to 1 at the
// end; xor clamps every operand to 0/1 first.
func boolFamily(name, what string) *family {
	f := &family{name: name, doc: "logical " + what + " of bool bytes", size: 1, nacc: 1,
		consts: []konstDef{{name: "ones", bits: 0x01010101}}}
	switch what {
	case "xor":
		f.first = func(c *ctx, u int, src operand) {
			c.i("VPMINUB %s, %s, %s", src.s(), c.konst("ones"), c.acc(u, 0))
		}
		f.step = func(c *ctx, u int, src operand) {
			t := c.tmp(u, 0)
			c.i("VPMINUB %s, %s, %s", src.s(), c.konst("ones"), t)
			c.i("%s %s, %s, %s", c.xor(), t, c.acc(u, 0), c.acc(u, 0))
		}
		f.out = func(c *ctx, u int, dst operand) { c.store(c.acc(u, 0), dst) }
	default:
		f.first = func(c *ctx, u int, src operand) { c.load(c.acc(u, 0), src) }
		f.step = func(c *ctx, u int, src operand) {
			op := "VPMINUB"
			if what == "or" {
				op = c.or()
			}
			c.i("%s %s, %s, %s", op, src.s(), c.acc(u, 0), c.acc(u, 0))
		}
		f.out = func(c *ctx, u int, dst operand) {
			c.i("VPMINUB %s, %s, %s", c.konst("ones"), c.acc(u, 0), c.acc(u, 0))
			c.store(c.acc(u, 0), dst)
		}
	}
	return f
}

// floatArith is SUM or PRODUCT of float32 or float64, combining in source order (((s0 op s1) op
// s2) ...). A NaN result stops the kernel, so that NaN payloads are the Go code's: which of two
// NaN operands survives depends on the operand order of the scalar instructions the Go compiler
// picks, which may change with the build (it does with -race). A NaN anywhere along the way
// leaves a NaN at the end, so one check after the last source is enough.
func floatArith(name, doc string, width int, op string) *family {
	f := simpleFamily(name, doc+"; stops at a NaN result", width, op, op)
	f.nan = true
	f.finishAll = func(c *ctx, nv int) {
		for u := 0; u < nv; u += 2 { // unordered(a, b): a or b is NaN
			c.flagUnordered(c.acc(u, 0), c.acc(min(u+1, nv-1), 0), c.tmp(u, 2), width == 8)
		}
	}
	return f
}

func families() []*family {
	fs := []*family{
		floatArith("F32Add", "SUM of float32", 4, "VADDPS"),
		floatArith("F32Mul", "PRODUCT of float32", 4, "VMULPS"),
		floatMinMax("F32Min", false, true),
		floatMinMax("F32Max", false, false),
		floatArith("F64Add", "SUM of float64", 8, "VADDPD"),
		floatArith("F64Mul", "PRODUCT of float64", 8, "VMULPD"),
		floatMinMax("F64Min", true, true),
		floatMinMax("F64Max", true, false),
		halfArith("BF16Add", true, false),
		halfArith("BF16Mul", true, true),
		halfArith("F16Add", false, false),
		halfArith("F16Mul", false, true),
		halfArithBF16("BF16AddBF16", false),
		halfArithBF16("BF16MulBF16", true),
		halfMinMax("BF16Min", 0x7f80, true),
		halfMinMax("BF16Max", 0x7f80, false),
		halfMinMax("F16Min", 0x7c00, true),
		halfMinMax("F16Max", 0x7c00, false),
		simpleFamily("I8Add", "SUM of int8 or uint8 (wrapping)", 1, "VPADDB", "VPADDB"),
		simpleFamily("I8Min", "MIN of int8", 1, "VPMINSB", "VPMINSB"),
		simpleFamily("I8Max", "MAX of int8", 1, "VPMAXSB", "VPMAXSB"),
		simpleFamily("U8Min", "MIN of uint8", 1, "VPMINUB", "VPMINUB"),
		simpleFamily("U8Max", "MAX of uint8", 1, "VPMAXUB", "VPMAXUB"),
		simpleFamily("I32Add", "SUM of int32 (wrapping)", 4, "VPADDD", "VPADDD"),
		simpleFamily("I32Mul", "PRODUCT of int32 (wrapping)", 4, "VPMULLD", "VPMULLD"),
		simpleFamily("I32Min", "MIN of int32", 4, "VPMINSD", "VPMINSD"),
		simpleFamily("I32Max", "MAX of int32", 4, "VPMAXSD", "VPMAXSD"),
		simpleFamily("I64Add", "SUM of int64 (wrapping)", 8, "VPADDQ", "VPADDQ"),
		simpleFamily("I64Mul", "PRODUCT of int64 (wrapping); AVX-512DQ only", 8, "", "VPMULLQ"),
		int64MinMax("I64Min", true),
		int64MinMax("I64Max", false),
		simpleFamily("BitAnd", "BAND of any integer dtype, byte by byte", 1, "VPAND", "VPANDD"),
		simpleFamily("BitOr", "BOR of any integer dtype, byte by byte", 1, "VPOR", "VPORD"),
		simpleFamily("BitXor", "BXOR of any integer dtype, byte by byte", 1, "VPXOR", "VPXORD"),
		boolFamily("BoolOr", "or"),
		boolFamily("BoolAnd", "and"),
		boolFamily("BoolXor", "xor"),
	}
	for _, f := range fs {
		if f.name == "I64Mul" {
			f.noAVX2 = true
		}
	}
	return fs
}

// Kernel bodies.

// setupConsts broadcasts the family's constants into registers.
func (c *ctx) setupConsts() {
	c.consts = map[string]string{}
	for i, k := range c.fam.consts {
		var r string
		if c.lv.avx512 {
			r = fmt.Sprintf("Z%d", 24+i)
			if k.data != "" {
				c.i("VMOVDQU64 %s<>(SB), %s", k.data, r)
			} else if k.bits == 0 {
				c.i("VPXORD %s, %s, %s", r, r, r)
			} else {
				c.i("MOVL $0x%08x, R9", k.bits)
				c.i("VPBROADCASTD R9, %s", r)
			}
		} else {
			r = fmt.Sprintf("Y%d", 10+i)
			if k.bits == 0 {
				c.i("VPXOR %s, %s, %s", r, r, r)
			} else {
				c.i("MOVL $0x%08x, R9", k.bits)
				c.i("VMOVD R9, %s", half(r))
				c.i("VPBROADCASTD %s, %s", half(r), r)
			}
		}
		c.consts[k.name] = r
	}
}

// body writes the code for nv vectors at DI (dst) and srcs[j] + R8: it reads every source for
// every vector before writing dst, and jumps to done, without writing, if the NaN flag is set.
// Registers: SI = srcs, BX = k, R10 = current source pointer, R11 = &srcs[j], R12 = sources left.
func (c *ctx) body(nv int, lbl string) {
	f, lv := c.fam, c.lv
	srcOp := func(u int) operand {
		if c.masked {
			r := "Z8"
			c.i("VMOVDQU%d.Z (R10)(R8*1), K1, %s", c.moveSuffix(), r)
			return operand{reg: r}
		}
		return operand{base: "R10", index: "R8", disp: u * lv.vb}
	}
	if f.nan {
		if lv.avx512 {
			c.i("KXORQ K3, K3, K3")
		} else {
			c.i("VPXOR Y15, Y15, Y15")
		}
	}
	c.i("MOVQ (SI), R10")
	for u := range nv {
		f.first(c, u, srcOp(u))
	}
	c.i("LEAQ 24(SI), R11")
	c.i("LEAQ -1(BX), R12")
	c.label(lbl)
	c.i("MOVQ (R11), R10")
	for u := range nv {
		f.step(c, u, srcOp(u))
	}
	c.i("ADDQ $24, R11")
	c.i("DECQ R12")
	c.i("JNZ %s", lbl)
	switch {
	case f.finishAll != nil:
		f.finishAll(c, nv)
	case f.finish != nil:
		for u := range nv {
			f.finish(c, u)
		}
	}
	if f.nan {
		if lv.avx512 {
			c.i("KORTESTQ K3, K3")
		} else {
			c.i("VPTEST Y15, Y15")
		}
		c.i("JNZ done")
	}
	for u := range nv {
		f.out(c, u, operand{base: "DI", disp: u * lv.vb})
	}
}

func kernelName(f *family, lv level) string { return "reduce" + f.name + lv.name }

func writeKernel(w *bytes.Buffer, f *family, lv level) {
	c := &ctx{w: w, lv: lv, fam: f}
	name := kernelName(f, lv)
	v := lv.vb / f.size // elements per vector
	u := f.unroll(lv)
	fmt.Fprintf(w, "// func %s(dst *byte, srcs *[]byte, k int, off int, n int) int\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-48\n", name)
	c.i("MOVQ dst+0(FP), DI")
	c.i("MOVQ srcs+8(FP), SI")
	c.i("MOVQ k+16(FP), BX")
	c.i("MOVQ off+24(FP), R8")
	c.i("MOVQ n+32(FP), CX")
	c.i("XORQ AX, AX")
	c.setupConsts()
	c.label("group")
	c.i("CMPQ CX, $%d", u*v)
	c.i("JB single")
	c.body(u, "groupsrc")
	c.i("ADDQ $%d, DI", u*lv.vb)
	c.i("ADDQ $%d, R8", u*lv.vb)
	c.i("ADDQ $%d, AX", u*v)
	c.i("SUBQ $%d, CX", u*v)
	c.i("JMP group")
	c.label("single")
	c.i("CMPQ CX, $%d", v)
	c.i("JB tail")
	c.body(1, "singlesrc")
	c.i("ADDQ $%d, DI", lv.vb)
	c.i("ADDQ $%d, R8", lv.vb)
	c.i("ADDQ $%d, AX", v)
	c.i("SUBQ $%d, CX", v)
	c.i("JMP single")
	c.label("tail")
	if lv.avx512 {
		c.i("TESTQ CX, CX")
		c.i("JZ done")
		c.i("MOVQ $1, R9")
		c.i("SHLQ CX, R9")
		c.i("DECQ R9")
		c.i("KMOVQ R9, K1")
		c.masked = true
		c.body(1, "tailsrc")
		c.masked = false
		c.i("ADDQ CX, AX")
	}
	c.label("done")
	c.i("VZEROUPPER")
	c.i("MOVQ AX, ret+40(FP)")
	c.i("RET")
	w.WriteString("\n")
}

// writeConvert writes a standalone narrowing conversion with the family's out code, for the
// tests: func name(dst, src *byte, n int) int converts n float32s (a multiple of the elements of
// one vector of 16-bit values) and stops, returning the elements done, at a vector with a NaN.
// Each vector takes two registers of float32s, lo and hi, and the bfloat16 one interleaves them
// as its widening would have split them (lo[0], hi[0], lo[1], ...), see halfArith.
func writeConvert(w *bytes.Buffer, f *family, lv level, name string) {
	c := &ctx{w: w, lv: lv, fam: f}
	v := lv.vb / 2
	fmt.Fprintf(w, "// func %s(dst *byte, src *byte, n int) int\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-32\n", name)
	c.i("MOVQ dst+0(FP), DI")
	c.i("MOVQ src+8(FP), SI")
	c.i("MOVQ n+16(FP), CX")
	c.i("XORQ AX, AX")
	c.setupConsts()
	c.label("loop")
	c.i("CMPQ CX, $%d", v)
	c.i("JB done")
	if lv.avx512 {
		c.i("KXORQ K3, K3, K3")
		c.i("VMOVDQU64 (SI), Z0")
		c.i("VMOVDQU64 %d(SI), Z1", lv.vb)
	} else {
		c.i("VPXOR Y15, Y15, Y15")
		c.i("VMOVDQU (SI), Y0")
		c.i("VMOVDQU %d(SI), Y1", lv.vb)
	}
	f.finish(c, 0)
	if lv.avx512 {
		c.i("KORTESTQ K3, K3")
	} else {
		c.i("VPTEST Y15, Y15")
	}
	c.i("JNZ done")
	f.out(c, 0, operand{base: "DI"})
	c.i("ADDQ $%d, SI", 2*lv.vb)
	c.i("ADDQ $%d, DI", lv.vb)
	c.i("ADDQ $%d, AX", v)
	c.i("SUBQ $%d, CX", v)
	c.i("JMP loop")
	c.label("done")
	c.i("VZEROUPPER")
	c.i("MOVQ AX, ret+24(FP)")
	c.i("RET")
	w.WriteString("\n")
}

// converts are the standalone narrowing conversions written for the tests (see writeConvert).
var converts = []struct {
	name, family string
	lv           level
}{
	{"cvtF32ToBF16AVX2", "BF16Add", avx2},
	{"cvtF32ToF16AVX2", "F16Add", avx2},
	{"cvtF32ToBF16AVX512", "BF16Add", avx512},
	{"cvtF32ToF16AVX512", "F16Add", avx512},
	{"cvtF32ToBF16AVX512BF16", "BF16AddBF16", avx512},
}

const header = "// Code generated by go run ./internal/asmgen; DO NOT EDIT.\n\n"

func main() {
	outAsm := flag.String("asm", "reduce_amd64.s", "assembly output file")
	outGo := flag.String("go", "reduce_kernels_amd64.go", "Go declarations output file")
	flag.Parse()

	fs := families()
	var s bytes.Buffer
	s.WriteString(header)
	s.WriteString("//go:build !purego\n\n#include \"textflag.h\"\n\n")
	for _, name := range []string{"bf16Interleave"} {
		words := dataSymbols[name]
		for i := 0; i < len(words); i += 4 {
			v := uint64(words[i]) | uint64(words[i+1])<<16 | uint64(words[i+2])<<32 | uint64(words[i+3])<<48
			fmt.Fprintf(&s, "DATA %s<>+%d(SB)/8, $0x%016x\n", name, 2*i, v)
		}
		fmt.Fprintf(&s, "GLOBL %s<>(SB), RODATA|NOPTR, $64\n\n", name)
	}
	for _, lv := range levels {
		for _, f := range fs {
			if lv == avx2 && f.noAVX2 {
				continue
			}
			writeKernel(&s, f, lv)
		}
	}
	byName := map[string]*family{}
	for _, f := range fs {
		byName[f.name] = f
	}
	for _, cv := range converts {
		writeConvert(&s, byName[cv.family], cv.lv, cv.name)
	}
	// Labels are local to a TEXT block in the Go assembler, so the same names can be reused.
	if err := os.WriteFile(*outAsm, s.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}

	var g bytes.Buffer
	g.WriteString(header)
	g.WriteString("//go:build !purego\n\npackage tensor\n\n")
	g.WriteString("// kernelFamily is one SIMD kernel, an element type and an op, in reduce_amd64.s.\ntype kernelFamily uint8\n\n")
	g.WriteString("// The kernel families.\nconst (\n")
	for i, f := range fs {
		if i == 0 {
			fmt.Fprintf(&g, "fam%s kernelFamily = iota // %s\n", f.name, f.doc)
		} else {
			fmt.Fprintf(&g, "fam%s // %s\n", f.name, f.doc)
		}
	}
	g.WriteString("numFamilies\n)\n\n")
	g.WriteString("// familyElemSize is the element size of each family's kernels, in bytes.\nvar familyElemSize = [numFamilies]uint8{\n")
	for _, f := range fs {
		fmt.Fprintf(&g, "fam%s: %d,\n", f.name, f.size)
	}
	g.WriteString("}\n\n")
	g.WriteString("// familyHasAVX2 reports the families with an AVX2 kernel (every family has an AVX-512 one).\nvar familyHasAVX2 = [numFamilies]bool{\n")
	for _, f := range fs {
		if !f.noAVX2 {
			fmt.Fprintf(&g, "fam%s: true,\n", f.name)
		}
	}
	g.WriteString("}\n\n")
	for _, lv := range levels {
		for _, f := range fs {
			if lv == avx2 && f.noAVX2 {
				continue
			}
			fmt.Fprintf(&g, "//go:noescape\nfunc %s(dst *byte, srcs *[]byte, k, off, n int) int\n\n", kernelName(f, lv))
		}
	}
	for _, cv := range converts {
		fmt.Fprintf(&g, "//go:noescape\nfunc %s(dst, src *byte, n int) int\n\n", cv.name)
	}
	g.WriteString("// callKernel runs the kernel of family f at level lv (see reduce_amd64.s). The level must not be\n// levelGo, and the kernel must exist.\n")
	g.WriteString("func callKernel(lv isaLevel, f kernelFamily, dst *byte, srcs *[]byte, k, off, n int) int {\n")
	g.WriteString("if lv >= levelAVX512 {\nswitch f {\n")
	for _, f := range fs {
		fmt.Fprintf(&g, "case fam%s:\nreturn %s(dst, srcs, k, off, n)\n", f.name, kernelName(f, avx512))
	}
	g.WriteString("}\npanic(\"tensor: no AVX-512 kernel\")\n}\nswitch f {\n")
	for _, f := range fs {
		if f.noAVX2 {
			continue
		}
		fmt.Fprintf(&g, "case fam%s:\nreturn %s(dst, srcs, k, off, n)\n", f.name, kernelName(f, avx2))
	}
	g.WriteString("}\npanic(\"tensor: no AVX2 kernel\")\n}\n")
	src, err := format.Source(g.Bytes())
	if err != nil {
		log.Fatalf("formatting the Go output: %v\n%s", err, g.String())
	}
	if err := os.WriteFile(*outGo, src, 0o644); err != nil {
		log.Fatal(err)
	}
}
