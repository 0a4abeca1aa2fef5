package tensor

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDTypeProperties(t *testing.T) {
	tests := []struct {
		dt        DType
		size      int
		name      string
		torch     string
		isFloat   bool
		isInteger bool
	}{
		{Float32, 4, "float32", "Float", true, false},
		{Float64, 8, "float64", "Double", true, false},
		{Float16, 2, "float16", "Half", true, false},
		{BFloat16, 2, "bfloat16", "BFloat16", true, false},
		{Int8, 1, "int8", "Char", false, true},
		{Uint8, 1, "uint8", "Byte", false, true},
		{Int32, 4, "int32", "Int", false, true},
		{Int64, 8, "int64", "Long", false, true},
		{Bool, 1, "bool", "Bool", false, false},
		{Float8E4M3FN, 1, "float8_e4m3fn", "Float8_e4m3fn", true, false},
		{Float8E5M2, 1, "float8_e5m2", "Float8_e5m2", true, false},
	}
	require.Len(t, AllDTypes(), len(tests), "every dtype is in the table")
	for i, tc := range tests {
		assert.Equal(t, tc.dt, AllDTypes()[i])
		assert.True(t, tc.dt.Valid(), tc.name)
		assert.Equal(t, tc.size, tc.dt.Size(), tc.name)
		assert.Equal(t, tc.name, tc.dt.String())
		assert.Equal(t, tc.torch, tc.dt.TorchName(), tc.name)
		assert.Equal(t, tc.isFloat, tc.dt.IsFloat(), tc.name)
		assert.Equal(t, tc.isInteger, tc.dt.IsInteger(), tc.name)

		for _, s := range []string{tc.name, tc.torch, "torch." + tc.name, "  " + tc.name + " "} {
			got, err := ParseDType(s)
			require.NoError(t, err, s)
			assert.Equal(t, tc.dt, got, s)
		}
	}
	for _, d := range []DType{Invalid, DType(12), DType(255)} {
		assert.False(t, d.Valid())
		assert.Zero(t, d.Size())
		assert.Equal(t, "Undefined", d.TorchName())
	}
	assert.Equal(t, "invalid", Invalid.String())
	assert.Equal(t, "DType(77)", DType(77).String())
}

func TestParseDTypeAliases(t *testing.T) {
	tests := map[string]DType{
		"f32": Float32, "FP32": Float32, "float": Float32, "Float": Float32,
		"f64": Float64, "fp64": Float64, "double": Float64,
		"f16": Float16, "fp16": Float16, "half": Float16, "HALF": Float16,
		"bf16": BFloat16, "BF16": BFloat16, "torch.bfloat16": BFloat16,
		"i8": Int8, "char": Int8, "u8": Uint8, "byte": Uint8,
		"i32": Int32, "int": Int32, "i64": Int64, "long": Int64, "Long": Int64,
		"e4m3": Float8E4M3FN, "e4m3fn": Float8E4M3FN, "FLOAT8_E4M3FN": Float8E4M3FN,
		"e5m2": Float8E5M2, "fp8_e5m2": Float8E5M2, "Float8_e5m2": Float8E5M2,
	}
	for s, want := range tests {
		got, err := ParseDType(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
	}
	for _, bad := range []string{"", "float128", "int16", "invalid", "undefined"} {
		_, err := ParseDType(bad)
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "float32, float64, float16, bfloat16", bad)
		assert.ErrorContains(t, err, "float8_e5m2", bad)
	}
}

func TestDTypeText(t *testing.T) {
	type cfg struct {
		DType DType    `json:"dtype"`
		Op    ReduceOp `json:"op"`
	}
	b, err := json.Marshal(cfg{BFloat16, PreMulSum})
	require.NoError(t, err)
	assert.JSONEq(t, `{"dtype":"bfloat16","op":"PREMUL_SUM"}`, string(b))

	var c cfg
	require.NoError(t, json.Unmarshal([]byte(`{"dtype":"Half","op":"prod"}`), &c))
	assert.Equal(t, cfg{Float16, Product}, c)
	assert.Error(t, json.Unmarshal([]byte(`{"dtype":"nope"}`), &c))

	_, err = Invalid.MarshalText()
	assert.Error(t, err)
	_, err = ReduceOp(42).MarshalText()
	assert.Error(t, err)
}

func TestReduceOpNames(t *testing.T) {
	tests := []struct {
		op      ReduceOp
		name    string
		parseAs []string
	}{
		{Sum, "SUM", []string{"sum", "SUM"}},
		{Avg, "AVG", []string{"avg"}},
		{Product, "PRODUCT", []string{"prod", "product", "Prod"}},
		{Min, "MIN", []string{"min"}},
		{Max, "MAX", []string{"max"}},
		{BAnd, "BAND", []string{"band"}},
		{BOr, "BOR", []string{"bor"}},
		{BXor, "BXOR", []string{"bxor"}},
		{PreMulSum, "PREMUL_SUM", []string{"premul_sum", "PreMul_Sum"}},
	}
	require.Len(t, AllReduceOps(), len(tests))
	for i, tc := range tests {
		assert.Equal(t, tc.op, AllReduceOps()[i])
		assert.Equal(t, tc.name, tc.op.String())
		assert.True(t, tc.op.Valid())
		for _, s := range tc.parseAs {
			got, err := ParseReduceOp(s)
			require.NoError(t, err, s)
			assert.Equal(t, tc.op, got, s)
		}
	}
	assert.Equal(t, "ReduceOp(9)", ReduceOp(9).String())
	assert.False(t, ReduceOp(9).Valid())
	_, err := ParseReduceOp("mean")
	assert.ErrorContains(t, err, "premul_sum")
}
