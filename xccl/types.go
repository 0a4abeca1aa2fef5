package xccl

import (
	"fmt"

	"github.com/gccl/gccl/backends"
	"github.com/gccl/gccl/tensor"
)

// oneCCL's onecclDataType_t (include/oneapi/ccl/v2/types.h).
const (
	cclInt8     = 0
	cclUint8    = 1
	cclInt32    = 2
	cclUint32   = 3
	cclInt64    = 4
	cclUint64   = 5
	cclFloat16  = 6
	cclFloat32  = 7
	cclFloat64  = 8
	cclBfloat16 = 9
)

// oneCCL's onecclRedOp_t.
const (
	cclSum  = 0
	cclProd = 1
	cclMax  = 2
	cclMin  = 3
	cclAvg  = 4
)

// dataType maps a gccl dtype to oneCCL's. Bool travels as uint8 (its reductions are remapped by
// redOp); the float8 dtypes, which oneCCL lacks, travel as uint8 for data movement only.
func dataType(dt tensor.DType) (int32, bool) {
	switch dt {
	case tensor.Float32:
		return cclFloat32, true
	case tensor.Float64:
		return cclFloat64, true
	case tensor.Float16:
		return cclFloat16, true
	case tensor.BFloat16:
		return cclBfloat16, true
	case tensor.Int8:
		return cclInt8, true
	case tensor.Uint8, tensor.Bool, tensor.Float8E4M3FN, tensor.Float8E5M2:
		return cclUint8, true
	case tensor.Int32:
		return cclInt32, true
	case tensor.Int64:
		return cclInt64, true
	}
	return 0, false
}

// reducible reports whether oneCCL can reduce dt (float8 is for data movement only).
func reducible(dt tensor.DType) bool {
	_, ok := dataType(dt)
	return ok && dt != tensor.Float8E4M3FN && dt != tensor.Float8E5M2
}

// redOp maps a reduce op on dt to oneCCL's. On bool (0 or 1 bytes as uint8) SUM, the logical or,
// is MAX, and PRODUCT, the logical and, is MIN, so that no count of ranks can overflow a byte.
// The bitwise ops and PREMUL_SUM have no oneCCL op: comm lowers PREMUL_SUM to a scale and a SUM,
// so only a direct caller of Comm can pass it.
func redOp(op tensor.ReduceOp, dt tensor.DType) (int32, error) {
	if dt == tensor.Bool {
		switch op {
		case tensor.Sum, tensor.Max:
			return cclMax, nil
		case tensor.Product, tensor.Min:
			return cclMin, nil
		}
	}
	switch op {
	case tensor.Sum:
		return cclSum, nil
	case tensor.Product:
		return cclProd, nil
	case tensor.Max:
		return cclMax, nil
	case tensor.Min:
		return cclMin, nil
	case tensor.Avg:
		return cclAvg, nil
	case tensor.BAnd, tensor.BOr, tensor.BXor:
		return 0, fmt.Errorf("%w: %s has no oneCCL reduction (oneCCL reduces with SUM, PRODUCT, MIN, MAX and AVG only): run bitwise reductions on a gloo or shm process group (comm.GroupOptions.Backend), or reduce 0/1 values with MAX (or) or MIN (and)",
			backends.ErrUnsupported, op)
	case tensor.PreMulSum:
		return 0, fmt.Errorf("%w: PREMUL_SUM reaches xccl only through comm, which scales the input and sums: scale the buffer yourself and pass SUM", backends.ErrUnsupported)
	}
	return 0, fmt.Errorf("%w: unknown reduce op %s", backends.ErrUnsupported, op)
}
