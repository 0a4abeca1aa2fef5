//go:build !purego

#include "textflag.h"

// F32VIAF64 is the body of divF32F64AVX2 and mulF32F64AVX2: v[i] = float32(float64(v[i]) op x)
// for the n elements, four at a time (VCVTPS2PD, PD, VCVTPD2PS), the last n%4 one by one (SD):
// the instructions the scalar loop compiles to, so the same bits, NaN payloads included. Any
// alignment.
#define F32VIAF64(PD, SD) \
	MOVQ v+0(FP), DI; \
	MOVQ n+8(FP), CX; \
	VBROADCASTSD x+16(FP), Y0; \
	XORQ AX, AX; \
by4: \
	LEAQ 4(AX), DX; \
	CMPQ DX, CX; \
	JA by1; \
	VCVTPS2PD (DI)(AX*4), Y1; \
	PD Y0, Y1, Y1; \
	VCVTPD2PSY Y1, X1; \
	VMOVUPS X1, (DI)(AX*4); \
	MOVQ DX, AX; \
	JMP by4; \
by1: \
	CMPQ AX, CX; \
	JAE done; \
	VCVTSS2SD (DI)(AX*4), X1, X1; \
	SD X0, X1, X1; \
	VCVTSD2SS X1, X1, X1; \
	VMOVSS X1, (DI)(AX*4); \
	INCQ AX; \
	JMP by1; \
done: \
	VZEROUPPER; \
	RET

// func sumF32SSE(dst *byte, n int, srcs *[]byte, k int)
//
// dst[i] = srcs[0][i] + srcs[1][i] + ... + srcs[k-1][i] for the n/4 float32 elements (n a multiple
// of 4, k >= 1), added in source order: four elements at a time with ADDPS, then at most one pair
// (ADDPS on the low half) and one single element (ADDSS). SSE is in every amd64 CPU, so there is
// no dispatch. Every source is loaded at an offset before dst is stored there, so dst may be one
// of the sources.
TEXT ·sumF32SSE(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ srcs+16(FP), SI
	MOVQ k+24(FP), BX
	IMULQ $24, BX            // the end of the slice headers, in bytes from SI
	XORQ AX, AX              // byte offset of the next element
vec:
	LEAQ 16(AX), DX
	CMPQ DX, CX
	JA pair
	MOVQ (SI), R10
	MOVUPS (R10)(AX*1), X0
	MOVQ $24, R9
vadd:
	CMPQ R9, BX
	JAE vstore
	MOVQ (SI)(R9*1), R10
	MOVUPS (R10)(AX*1), X1
	ADDPS X1, X0
	ADDQ $24, R9
	JMP vadd
vstore:
	MOVUPS X0, (DI)(AX*1)
	MOVQ DX, AX
	JMP vec
pair:
	LEAQ 8(AX), DX
	CMPQ DX, CX
	JA one
	MOVQ (SI), R10
	MOVSD (R10)(AX*1), X0    // two elements, the upper lanes zero (0+0 stays 0, unstored)
	MOVQ $24, R9
padd:
	CMPQ R9, BX
	JAE pstore
	MOVQ (SI)(R9*1), R10
	MOVSD (R10)(AX*1), X1
	ADDPS X1, X0
	ADDQ $24, R9
	JMP padd
pstore:
	MOVSD X0, (DI)(AX*1)
	MOVQ DX, AX
one:
	LEAQ 4(AX), DX
	CMPQ DX, CX
	JA done
	MOVQ (SI), R10
	MOVSS (R10)(AX*1), X0
	MOVQ $24, R9
sadd:
	CMPQ R9, BX
	JAE sstore
	MOVQ (SI)(R9*1), R10
	MOVSS (R10)(AX*1), X1
	ADDSS X1, X0
	ADDQ $24, R9
	JMP sadd
sstore:
	MOVSS X0, (DI)(AX*1)
done:
	RET

// func scaleF32AVX2(v *float32, n int, r float32)
//
// v[i] *= r for the n elements, eight at a time with VMULPS (32 a round), the last n%8 with
// VMULSS: the bits of the scalar loop, NaN payloads included when r is not a NaN (a NaN v[i] comes
// out quieted, as from MULSS). Any alignment.
TEXT ·scaleF32AVX2(SB), NOSPLIT, $0-20
	MOVQ v+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS r+16(FP), Y0
	XORQ AX, AX              // index of the next element
by32:
	LEAQ 32(AX), DX
	CMPQ DX, CX
	JA by8
	VMULPS (DI)(AX*4), Y0, Y1
	VMULPS 32(DI)(AX*4), Y0, Y2
	VMULPS 64(DI)(AX*4), Y0, Y3
	VMULPS 96(DI)(AX*4), Y0, Y4
	VMOVUPS Y1, (DI)(AX*4)
	VMOVUPS Y2, 32(DI)(AX*4)
	VMOVUPS Y3, 64(DI)(AX*4)
	VMOVUPS Y4, 96(DI)(AX*4)
	MOVQ DX, AX
	JMP by32
by8:
	LEAQ 8(AX), DX
	CMPQ DX, CX
	JA by1
	VMULPS (DI)(AX*4), Y0, Y1
	VMOVUPS Y1, (DI)(AX*4)
	MOVQ DX, AX
	JMP by8
by1:
	CMPQ AX, CX
	JAE done
	VMULSS (DI)(AX*4), X0, X1
	VMOVSS X1, (DI)(AX*4)
	INCQ AX
	JMP by1
done:
	VZEROUPPER
	RET

// func divF32F64AVX2(v *float32, n int, x float64)
//
// v[i] = float32(float64(v[i]) / x), as F32VIAF64 says.
TEXT ·divF32F64AVX2(SB), NOSPLIT, $0-24
	F32VIAF64(VDIVPD, VDIVSD)

// func mulF32F64AVX2(v *float32, n int, x float64)
//
// v[i] = float32(float64(v[i]) * x), as F32VIAF64 says.
TEXT ·mulF32F64AVX2(SB), NOSPLIT, $0-24
	F32VIAF64(VMULPD, VMULSD)

// BROADCASTD puts the 32-bit constant c in every element of y (x is y's low half), through AX.
#define BROADCASTD(c, x, y) MOVL c, AX; MOVQ AX, x; VPBROADCASTD x, y

// TOBF16 sets the eight 32-bit elements of r to the bfloat16 bits of the float32 elements of b,
// with Y8-Y13 as bf16FromF32AVX2 sets them; t, m (the NaN mask) and q (the NaN results) are
// scratch (t and m may be the same register).
#define TOBF16(b, r, t, m, q) \
	VPSRLD $16, b, r; VPAND Y10, r, t; VPADDD Y11, b, r; VPADDD t, r, r; VPSRLD $16, r, r; \
	VPAND Y8, b, m; VPCMPGTD Y9, m, m; \
	VPSRLD $16, b, q; VPAND Y12, q, q; VPOR Y13, q, q; \
	VPBLENDVB m, q, r, r

// func bf16FromF32AVX2(dst *uint16, src *float32, n int)
//
// dst[i] = To's bfloat16 of src[i] for the n elements, n a multiple of 16: round to nearest,
// ties to even ((b + 0x7fff + (b>>16)&1) >> 16, whose carry turns the largest finite values
// into Inf as it should), and a NaN becomes sign | 0x7fc0. Sixteen at a time: two vectors of
// eight 32-bit results packed into 16 bits (VPACKUSDW, exact: every result is below 0x10000;
// it packs within 128-bit lanes, so VPERMQ puts the quarters back in order). Any alignment.
TEXT ·bf16FromF32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BROADCASTD($0x7fffffff, X8, Y8) // magnitude mask
	BROADCASTD($0x7f800000, X9, Y9) // +Inf: a magnitude above it is a NaN
	BROADCASTD($1, X10, Y10)
	BROADCASTD($0x7fff, X11, Y11)
	BROADCASTD($0x8000, X12, Y12) // the sign, once shifted down
	BROADCASTD($0x7fc0, X13, Y13) // the canonical quiet NaN
	XORQ AX, AX
bf16loop:
	CMPQ AX, CX
	JAE bf16done
	VMOVDQU (SI)(AX*4), Y0
	VMOVDQU 32(SI)(AX*4), Y1
	TOBF16(Y0, Y2, Y3, Y4, Y6)
	TOBF16(Y1, Y3, Y5, Y5, Y7)
	VPACKUSDW Y3, Y2, Y2 // lanes: Y2[0:4] Y3[0:4] | Y2[4:8] Y3[4:8]
	VPERMQ $0xd8, Y2, Y2
	VMOVDQU Y2, (DI)(AX*2)
	ADDQ $16, AX
	JMP bf16loop
bf16done:
	VZEROUPPER
	RET

// func f32FromBF16AVX2(dst *uint32, src *uint16, n int)
//
// dst[i] = src[i] << 16 with the quiet bit set in a NaN (To's widening: through float64, which
// quiets), for the n elements, n a multiple of 8, eight at a time. Any alignment.
TEXT ·f32FromBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BROADCASTD($0x7fffffff, X8, Y8)
	BROADCASTD($0x7f800000, X9, Y9)
	BROADCASTD($0x00400000, X10, Y10) // the quiet bit
	XORQ AX, AX
f32loop:
	CMPQ AX, CX
	JAE f32done
	VPMOVZXWD (SI)(AX*2), Y0
	VPSLLD $16, Y0, Y0
	VPAND Y8, Y0, Y1
	VPCMPGTD Y9, Y1, Y1
	VPAND Y10, Y1, Y1
	VPOR Y1, Y0, Y0
	VMOVDQU Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP f32loop
f32done:
	VZEROUPPER
	RET

// func f16FromF32AVX2(dst *uint16, src *float32, n int)
//
// dst[i] = To's float16 of src[i] for the n elements, n a multiple of 8: F16C's VCVTPS2PH,
// rounding to nearest even (subnormals and overflow to Inf included, as MXCSR has no
// flush-to-zero in Go), after every NaN is replaced by the quiet NaN with its sign and no
// payload, which converts to To's canonical sign | 0x7e00. Any alignment.
TEXT ·f16FromF32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	BROADCASTD($0x7fffffff, X8, Y8)  // magnitude mask
	BROADCASTD($0x7f800000, X9, Y9)  // +Inf: a magnitude above it is a NaN
	BROADCASTD($0x80000000, X10, Y10) // the sign
	BROADCASTD($0x7fc00000, X11, Y11) // the quiet NaN without payload
	XORQ AX, AX
f16loop:
	CMPQ AX, CX
	JAE f16done
	VMOVDQU (SI)(AX*4), Y0
	VPAND Y8, Y0, Y1
	VPCMPGTD Y9, Y1, Y1
	VPAND Y10, Y0, Y2
	VPOR Y11, Y2, Y2
	VPBLENDVB Y1, Y2, Y0, Y0
	VCVTPS2PH $0, Y0, X0
	VMOVDQU X0, (DI)(AX*2)
	ADDQ $8, AX
	JMP f16loop
f16done:
	VZEROUPPER
	RET

// func f32FromF16AVX2(dst *float32, src *uint16, n int)
//
// dst[i] = the float32 of the float16 src[i] for the n elements, n a multiple of 8: F16C's
// VCVTPH2PS, exact, a NaN quieted (To's widening). Any alignment.
TEXT ·f32FromF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ AX, AX
h32loop:
	CMPQ AX, CX
	JAE h32done
	VCVTPH2PS (SI)(AX*2), Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP h32loop
h32done:
	VZEROUPPER
	RET

// func copyNTAVX2(dst, src *byte, n int)
//
// Copies n bytes (a multiple of 64, dst 32-byte aligned) with non-temporal stores (VMOVNTDQ),
// which write whole lines to memory without first reading them into this core's cache; then
// SFENCE, so the stores are ordered before whatever the caller publishes next. Any alignment
// of src.
TEXT ·copyNTAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ AX, AX
ntloop:
	CMPQ AX, CX
	JAE ntdone
	VMOVDQU (SI)(AX*1), Y0
	VMOVDQU 32(SI)(AX*1), Y1
	VMOVNTDQ Y0, (DI)(AX*1)
	VMOVNTDQ Y1, 32(DI)(AX*1)
	ADDQ $64, AX
	JMP ntloop
ntdone:
	SFENCE
	VZEROUPPER
	RET
