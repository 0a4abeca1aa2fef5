package main

import (
	"strings"
	"testing"
)

// TestEvexRegs checks the hand-made EVEX encoding against GNU as 2.40's for VCVTNE2PS2BF16
// (Intel operand order dst, src1, src2), registers below and above 8 and 16 in every position.
func TestEvexRegs(t *testing.T) {
	tests := []struct {
		dst, src1, src2 string
		want            string // objdump -d of `vcvtne2ps2bf16 %src2, %src1, %dst`
	}{
		{"Z1", "Z2", "Z3", "62 f2 6f 48 72 cb"},
		{"Z9", "Z18", "Z23", "62 32 6f 40 72 cf"},
		{"Z12", "Z1", "Z0", "62 72 77 48 72 e0"},
		{"Z18", "Z5", "Z4", "62 e2 57 48 72 d4"},
		{"Z31", "Z31", "Z31", "62 02 07 40 72 ff"},
		{"Z16", "Z8", "Z24", "62 82 3f 48 72 c0"},
		{"Z7", "Z16", "Z7", "62 f2 7f 40 72 ff"},
	}
	for _, tc := range tests {
		var want []string
		for _, b := range strings.Fields(tc.want) {
			want = append(want, "BYTE $0x"+b)
		}
		got := evexRegs(0x72, 3, 2, tc.dst, tc.src1, tc.src2)
		if got != strings.Join(want, "; ") {
			t.Errorf("VCVTNE2PS2BF16 %s, %s, %s: got %s, want %s", tc.dst, tc.src1, tc.src2, got, tc.want)
		}
	}
}

// TestTernlog checks the VPTERNLOG immediates against Intel's documented constants.
func TestTernlog(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(a, b, c bool) bool
		want uint8
	}{
		{"A", func(a, b, c bool) bool { return a }, 0xf0},
		{"B", func(a, b, c bool) bool { return b }, 0xcc},
		{"C", func(a, b, c bool) bool { return c }, 0xaa},
		{"A^(B&C)", func(a, b, c bool) bool { return a != (b && c) }, 0xf0 ^ (0xcc & 0xaa)},
		{"(A&C)|B", func(a, b, c bool) bool { return (a && c) || b }, (0xf0 & 0xaa) | 0xcc},
	} {
		if got := ternlog(tc.f); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.name, got, tc.want)
		}
	}
}
