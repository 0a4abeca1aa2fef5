package backendtest

import (
	"fmt"
	"hash/fnv"
	"math"

	"github.com/gccl/gccl/tensor"
)

// wrongData is a result that differs from the reference; the group is still usable.
type wrongData struct{ msg string }

func (w *wrongData) Error() string { return w.msg }

func wrongf(format string, args ...any) error { return &wrongData{msg: fmt.Sprintf(format, args...)} }

func mix(rank, i, salt int) uint64 {
	h := uint64(rank+1)*0x9E3779B97F4A7C15 ^ uint64(i+1)*0xBF58476D1CE4E5B9 ^ uint64(salt+7)*0x94D049BB133111EB
	h ^= h >> 31
	h *= 0xD6E8FEB86659FD93
	h ^= h >> 32
	return h
}

// value is rank's element i for a case: exactly representable in dt, chosen so that the op is
// interesting (integer sums wrap, products stay finite, bool AND is not always false).
func value(dt tensor.DType, op tensor.ReduceOp, rank, i, salt int) float64 {
	h := mix(rank, i, salt)
	bitwise := op == tensor.BAnd || op == tensor.BOr || op == tensor.BXor
	switch {
	case dt == tensor.Bool:
		if op == tensor.BAnd || op == tensor.Min || op == tensor.Product {
			return b2f(h%9 != 0)
		}
		return b2f(h%3 == 0)
	case op == tensor.Product && dt.IsFloat():
		return []float64{1, -1, 2, 0.5, 1, 1.5}[h%6]
	case op == tensor.Product && dt == tensor.Uint8:
		return float64(h % 4)
	case op == tensor.Product:
		return float64(int64(h%5) - 2)
	case dt == tensor.Int8:
		if bitwise {
			return float64(int8(h))
		}
		return float64(int64(h%201) - 100)
	case dt == tensor.Uint8:
		if bitwise {
			return float64(uint8(h))
		}
		return float64(h % 201)
	case dt == tensor.Int32:
		if bitwise {
			return float64(int32(h))
		}
		return float64(int64(h%2000001) - 1000000)
	case dt == tensor.Int64:
		return float64(int64(h%(1<<41)) - 1<<40)
	case dt == tensor.Float8E4M3FN || dt == tensor.Float8E5M2:
		return float64(int64(h%9)-4) / 2 // representable in e5m2 and e4m3fn
	}
	return float64(int64(h%401)-200) / 4
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// input builds rank's tensor of count elements for a case.
func input(dt tensor.DType, op tensor.ReduceOp, rank, count, salt int) *tensor.Tensor {
	vals := make([]float64, count)
	for i := range vals {
		vals[i] = value(dt, op, rank, i, salt)
	}
	t, err := tensor.FromFloat64s(dt, vals, count)
	if err != nil {
		panic(err)
	}
	return t
}

// combine is the float64/int64 reference of one reduction step for dtype dt.
func combine(dt tensor.DType, op tensor.ReduceOp, a, b float64) float64 {
	if dt == tensor.Bool {
		x, y := a != 0, b != 0
		switch op {
		case tensor.Sum, tensor.Max, tensor.BOr, tensor.Avg:
			return b2f(x || y)
		case tensor.Product, tensor.Min, tensor.BAnd:
			return b2f(x && y)
		case tensor.BXor:
			return b2f(x != y)
		}
	}
	if dt.IsInteger() {
		x, y := int64(a), int64(b)
		var r int64
		switch op {
		case tensor.Sum, tensor.Avg, tensor.PreMulSum:
			r = x + y
		case tensor.Product:
			r = x * y
		case tensor.Min:
			r = min(x, y)
		case tensor.Max:
			r = max(x, y)
		case tensor.BAnd:
			r = x & y
		case tensor.BOr:
			r = x | y
		case tensor.BXor:
			r = x ^ y
		}
		return float64(wrap(dt, r))
	}
	switch op {
	case tensor.Product:
		return a * b
	case tensor.Min:
		return math.Min(a, b)
	case tensor.Max:
		return math.Max(a, b)
	}
	return a + b
}

func wrap(dt tensor.DType, v int64) int64 {
	switch dt {
	case tensor.Int8:
		return int64(int8(v))
	case tensor.Uint8:
		return int64(uint8(v))
	case tensor.Int32:
		return int64(int32(v))
	}
	return v
}

// eps is the spacing of dt's numbers at 1.
func eps(dt tensor.DType) float64 {
	switch dt {
	case tensor.Float32:
		return 0x1p-23
	case tensor.Float64:
		return 0x1p-52
	case tensor.Float16:
		return 0x1p-10
	case tensor.BFloat16:
		return 0x1p-7
	}
	return 0
}

// reduced computes, for each element, the reference result of reducing every rank's input
// with op (factor for PreMulSum), and the error allowed for it.
func reduced(dt tensor.DType, op tensor.ReduceOp, factor float64, n, count, salt, offset int) (want, tol []float64) {
	want = make([]float64, count)
	tol = make([]float64, count)
	for i := range want {
		var acc, abs float64
		for r := 0; r < n; r++ {
			v := value(dt, op, r, offset+i, salt)
			if op == tensor.PreMulSum {
				v *= factor
			}
			if r == 0 {
				acc = v
			} else {
				acc = combine(dt, op, acc, v)
			}
			abs += math.Abs(v)
		}
		if op == tensor.Avg {
			if dt.IsInteger() {
				acc = float64(int64(acc) / int64(n))
			} else {
				acc /= float64(n)
				abs /= float64(n)
			}
		}
		if op == tensor.Product {
			abs = math.Abs(acc)
		}
		want[i] = acc
		tol[i] = 4 * eps(dt) * float64(n) * abs
	}
	return want, tol
}

// check compares got with want within tol, naming the first difference.
func check(what string, got *tensor.Tensor, want, tol []float64) error {
	g := got.Float64s()
	if len(g) != len(want) {
		return wrongf("%s: %d elements, want %d", what, len(g), len(want))
	}
	bad := 0
	first := -1
	for i := range g {
		d := math.Abs(g[i] - want[i])
		if d > tol[i] || math.IsNaN(g[i]) != math.IsNaN(want[i]) {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		return wrongf("%s: %d of %d elements wrong; first at %d: got %v, want %v (tolerance %g)",
			what, bad, len(g), first, g[first], want[first], tol[first])
	}
	return nil
}

// expectRanks checks that got holds, in rank order, each rank's input block of per elements.
func expectBlocks(what string, got *tensor.Tensor, dt tensor.DType, ranks []int, per, salt int) error {
	want := make([]float64, 0, len(ranks)*per)
	for _, r := range ranks {
		for i := 0; i < per; i++ {
			want = append(want, value(dt, tensor.Sum, r, i, salt))
		}
	}
	return check(what, got, want, make([]float64, len(want)))
}

func hashOf(t *tensor.Tensor) uint64 {
	h := fnv.New64a()
	h.Write(t.Bytes())
	return h.Sum64()
}
