package tensor

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnsupported is wrapped by every error about an operation that a dtype does not support, such
// as a bitwise reduction on float32 or any reduction on a float8 dtype. Test for it with
// errors.Is.
var ErrUnsupported = errors.New("unsupported")

// DType is the element type of a tensor.
//
// The zero value is Invalid. Float8E4M3FN and Float8E5M2 are for data movement only: they can be
// stored, copied and converted, but reductions on them are an error (see CheckReduce).
type DType uint8

// The dtypes. Their numeric values are gccl's own and are not PyTorch's or oneCCL's enum values.
const (
	Invalid DType = iota
	Float32
	Float64
	Float16
	BFloat16
	Int8
	Uint8
	Int32
	Int64
	Bool
	Float8E4M3FN
	Float8E5M2
	numDTypes
)

type dtypeInfo struct {
	size  int
	name  string
	torch string
	// aliases are extra lower-case names accepted by ParseDType.
	aliases []string
}

var dtypeInfos = [numDTypes]dtypeInfo{
	Invalid:      {0, "invalid", "Undefined", nil},
	Float32:      {4, "float32", "Float", []string{"f32", "fp32", "float"}},
	Float64:      {8, "float64", "Double", []string{"f64", "fp64", "double"}},
	Float16:      {2, "float16", "Half", []string{"f16", "fp16", "half"}},
	BFloat16:     {2, "bfloat16", "BFloat16", []string{"bf16"}},
	Int8:         {1, "int8", "Char", []string{"i8", "char"}},
	Uint8:        {1, "uint8", "Byte", []string{"u8", "byte"}},
	Int32:        {4, "int32", "Int", []string{"i32", "int"}},
	Int64:        {8, "int64", "Long", []string{"i64", "long"}},
	Bool:         {1, "bool", "Bool", []string{"boolean"}},
	Float8E4M3FN: {1, "float8_e4m3fn", "Float8_e4m3fn", []string{"e4m3", "e4m3fn", "fp8_e4m3", "fp8_e4m3fn", "f8e4m3fn", "f8_e4m3fn", "float8e4m3fn"}},
	Float8E5M2:   {1, "float8_e5m2", "Float8_e5m2", []string{"e5m2", "fp8_e5m2", "f8e5m2", "f8_e5m2", "float8e5m2"}},
}

// dtypeByName maps every lower-case name ParseDType accepts to its dtype.
var dtypeByName = func() map[string]DType {
	m := make(map[string]DType)
	for _, d := range AllDTypes() {
		info := dtypeInfos[d]
		m[info.name] = d
		m[strings.ToLower(info.torch)] = d
		for _, a := range info.aliases {
			m[a] = d
		}
	}
	return m
}()

// Size returns the number of bytes of one element: 1 for Bool and the float8 dtypes, 0 for an
// invalid dtype.
func (d DType) Size() int {
	if d >= numDTypes {
		return 0
	}
	return dtypeInfos[d].size
}

// String returns the dtype's gccl name, such as "float32" or "bfloat16".
func (d DType) String() string {
	if d >= numDTypes {
		return fmt.Sprintf("DType(%d)", uint8(d))
	}
	return dtypeInfos[d].name
}

// TorchName returns PyTorch's name for the dtype's scalar type, as it appears in flight-recorder
// dumps: "Float", "Double", "Half", "BFloat16", "Char", "Byte", "Int", "Long", "Bool",
// "Float8_e4m3fn", "Float8_e5m2". It returns "Undefined" for an invalid dtype.
func (d DType) TorchName() string {
	if d >= numDTypes {
		return "Undefined"
	}
	return dtypeInfos[d].torch
}

// Valid reports whether d is one of the dtypes listed by AllDTypes.
func (d DType) Valid() bool { return d > Invalid && d < numDTypes }

// IsFloat reports whether d is a floating-point dtype: float16, bfloat16, float32, float64 or
// one of the float8 dtypes.
func (d DType) IsFloat() bool {
	switch d {
	case Float32, Float64, Float16, BFloat16, Float8E4M3FN, Float8E5M2:
		return true
	}
	return false
}

// IsInteger reports whether d is int8, uint8, int32 or int64. Bool is not an integer dtype.
func (d DType) IsInteger() bool {
	switch d {
	case Int8, Uint8, Int32, Int64:
		return true
	}
	return false
}

// isFloat8 reports whether d is one of the data-movement-only float8 dtypes.
func (d DType) isFloat8() bool { return d == Float8E4M3FN || d == Float8E5M2 }

// isHalf reports whether d is a 16-bit float dtype, reduced in float32.
func (d DType) isHalf() bool { return d == Float16 || d == BFloat16 }

// MarshalText implements encoding.TextMarshaler with the dtype's String name.
func (d DType) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("tensor: cannot marshal invalid dtype %s", d)
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; it accepts every name ParseDType accepts.
func (d *DType) UnmarshalText(text []byte) error {
	v, err := ParseDType(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDType returns the dtype named s. The match is case-insensitive and accepts the names
// String returns ("float32"), PyTorch's scalar-type names TorchName returns ("Float", "Half"),
// the same names prefixed with "torch." ("torch.bfloat16"), and common aliases: f32 fp32 float,
// f64 fp64 double, f16 fp16 half, bf16, i8 char, u8 byte, i32 int, i64 long, e4m3 e4m3fn, e5m2.
func ParseDType(s string) (DType, error) {
	key := strings.ToLower(strings.TrimSpace(s))
	key = strings.TrimPrefix(key, "torch.")
	if d, ok := dtypeByName[key]; ok {
		return d, nil
	}
	names := make([]string, 0, numDTypes)
	for _, d := range AllDTypes() {
		names = append(names, d.String())
	}
	return Invalid, fmt.Errorf("tensor: unknown dtype %q: valid names are %s (or PyTorch's names such as Float, Half, BFloat16, Long, or aliases such as fp32, bf16, fp16, i64)",
		s, strings.Join(names, ", "))
}

// AllDTypes returns every valid dtype, in the order of their constants. The slice is new on each
// call.
func AllDTypes() []DType {
	out := make([]DType, 0, numDTypes-1)
	for d := Invalid + 1; d < numDTypes; d++ {
		out = append(out, d)
	}
	return out
}
