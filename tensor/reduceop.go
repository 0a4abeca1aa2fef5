package tensor

import (
	"fmt"
	"strings"
)

// ReduceOp is a reduction operator of a collective, with the meaning of torch.distributed's
// ReduceOp.
//
// In the kernels of this package (ReduceInto, ReduceMany) Avg and PreMulSum reduce like Sum: the
// caller divides the result by the number of ranks (DivideBy) or scales each input before
// reducing (Scale).
type ReduceOp uint8

// The reduce ops.
const (
	Sum ReduceOp = iota
	Avg
	Product
	Min
	Max
	BAnd
	BOr
	BXor
	PreMulSum
	numReduceOps
)

var reduceOpNames = [numReduceOps]string{
	Sum:       "SUM",
	Avg:       "AVG",
	Product:   "PRODUCT",
	Min:       "MIN",
	Max:       "MAX",
	BAnd:      "BAND",
	BOr:       "BOR",
	BXor:      "BXOR",
	PreMulSum: "PREMUL_SUM",
}

// String returns the op's upper-case name, as torch.distributed prints it: "SUM", "AVG",
// "PRODUCT", "MIN", "MAX", "BAND", "BOR", "BXOR", "PREMUL_SUM".
func (o ReduceOp) String() string {
	if o >= numReduceOps {
		return fmt.Sprintf("ReduceOp(%d)", uint8(o))
	}
	return reduceOpNames[o]
}

// Valid reports whether o is one of the ops listed by AllReduceOps.
func (o ReduceOp) Valid() bool { return o < numReduceOps }

// isBitwise reports whether o is BAND, BOR or BXOR.
func (o ReduceOp) isBitwise() bool { return o == BAnd || o == BOr || o == BXor }

// MarshalText implements encoding.TextMarshaler with the op's String name.
func (o ReduceOp) MarshalText() ([]byte, error) {
	if !o.Valid() {
		return nil, fmt.Errorf("tensor: cannot marshal invalid reduce op %s", o)
	}
	return []byte(o.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts every name ParseReduceOp accepts.
func (o *ReduceOp) UnmarshalText(text []byte) error {
	v, err := ParseReduceOp(string(text))
	if err != nil {
		return err
	}
	*o = v
	return nil
}

// ParseReduceOp returns the op named s, case-insensitively: "sum", "avg", "prod", "product",
// "min", "max", "band", "bor", "bxor", "premul_sum".
func ParseReduceOp(s string) (ReduceOp, error) {
	key := strings.ToLower(strings.TrimSpace(s))
	if key == "prod" {
		return Product, nil
	}
	for o, name := range reduceOpNames {
		if key == strings.ToLower(name) {
			return ReduceOp(o), nil
		}
	}
	return 0, fmt.Errorf("tensor: unknown reduce op %q: valid names are sum, avg, prod (or product), min, max, band, bor, bxor, premul_sum", s)
}

// AllReduceOps returns every reduce op, in the order of their constants. The slice is new on each
// call.
func AllReduceOps() []ReduceOp {
	out := make([]ReduceOp, numReduceOps)
	for i := range out {
		out[i] = ReduceOp(i)
	}
	return out
}

// CheckReduce returns nil if op can reduce elements of dtype dt, and otherwise an error, wrapping
// ErrUnsupported, that names the op and the dtype and says what to do instead.
//
// Supported: SUM, AVG, PRODUCT, MIN, MAX and PREMUL_SUM on every float and integer dtype except the
// float8 ones; BAND, BOR and BXOR on integers and bool; SUM, PRODUCT, MIN, MAX on bool (as logical
// or/and). Unsupported: every op on float8 dtypes (they are for data movement only), bitwise ops
// on floats, and AVG and PREMUL_SUM on bool.
func CheckReduce(op ReduceOp, dt DType) error {
	if err := checkReduce(op, dt); err != nil {
		return fmt.Errorf("tensor: %w", err)
	}
	return nil
}

// checkReduce is CheckReduce without the package prefix, for wrapping by other functions.
func checkReduce(op ReduceOp, dt DType) error {
	switch {
	case !op.Valid():
		return fmt.Errorf("%s on %s: %w: unknown reduce op; use one of AllReduceOps", op, dt, ErrUnsupported)
	case !dt.Valid():
		return fmt.Errorf("%s on %s: %w: invalid dtype; use one of AllDTypes", op, dt, ErrUnsupported)
	case dt.isFloat8():
		return fmt.Errorf("%s on %s: %w: float8 dtypes are for data movement only; convert to bfloat16 or float32 before reducing",
			op, dt, ErrUnsupported)
	case op.isBitwise() && dt.IsFloat():
		return fmt.Errorf("%s on %s: %w: bitwise ops need an integer or bool dtype; use SUM/MIN/MAX for floats, or reinterpret the bits as an integer dtype",
			op, dt, ErrUnsupported)
	case dt == Bool && (op == Avg || op == PreMulSum):
		return fmt.Errorf("%s on %s: %w: a bool cannot be divided or scaled; use SUM or MAX (logical or), PRODUCT or MIN (logical and), or convert to an integer dtype",
			op, dt, ErrUnsupported)
	}
	return nil
}
