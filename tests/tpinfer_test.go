package tests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/tensor/safetensors"
)

type tpResult struct {
	TP              int       `json:"tp"`
	Tokens          []int     `json:"tokens"`
	TokensPerS      float64   `json:"tokens_per_s"`
	StepMS          float64   `json:"step_ms"`
	AllReduceShare  float64   `json:"allreduce_share"`
	AllReduceShares []float64 `json:"allreduce_shares"`
	Logits          []float32 `json:"logits"`
	BalanceShares   []float64 `json:"balance_shares"`
}

// tiny is the agreement test's model: 8 heads over 4 kv heads, so tp 1, 2 and 4 all divide.
var tiny = []string{"--hidden", "64", "--layers", "2", "--heads", "8", "--kv-heads", "4", "--vocab", "128",
	"--prompt", "3,1,4,1,5", "--new-tokens", "8", "--seed", "7"}

// TestTPInferAgreement runs examples/tpinfer through gccl run at TP=1, 2 and 4 on a tiny
// model: the same tokens, and final logits within float32 tolerance; then TP=2 again from the
// weights saved as safetensors by the TP=1 run; and the bad inputs fail with clear errors.
func TestTPInferAgreement(t *testing.T) {
	gccl, job := buildWith(t, "../examples/tpinfer")
	weights := filepath.Join(t.TempDir(), "tiny.safetensors")
	var ref tpResult
	for _, n := range []int{1, 2, 4} {
		args := append([]string{"--json", "--logits"}, tiny...)
		if n == 1 {
			args = append(args, "--save-weights", weights)
		}
		out, err := runShm(gccl, job, n, args...)
		require.NoError(t, err, "tp=%d:\n%s", n, out)
		r := lastRank0JSON[tpResult](t, out)
		assert.Equal(t, n, r.TP)
		assert.Len(t, r.Tokens, 8)
		assert.Positive(t, r.TokensPerS)
		assert.Positive(t, r.StepMS)
		if assert.Len(t, r.AllReduceShares, n, "one share per rank") {
			assert.Equal(t, r.AllReduceShare, r.AllReduceShares[0], "allreduce_share is rank 0's")
		}
		if n == 1 {
			ref = r
			assert.Zero(t, r.AllReduceShare, "one rank: no all-reduce")
			continue
		}
		for rank, share := range r.AllReduceShares {
			assert.True(t, share > 0 && share < 1, "tp=%d: rank %d's all-reduce share %v", n, rank, share)
		}
		assert.Equal(t, ref.Tokens, r.Tokens, "tp=%d", n)
		assert.True(t, tensor.AllClose(tensor.FromSlice(ref.Logits), tensor.FromSlice(r.Logits), 1e-4, 1e-4), "tp=%d logits", n)
	}

	// Balanced (--balance): the MLPs' and the head's rows split by the ranks' speeds over shared
	// weights; the same tokens, logits within tolerance, and the split every rank ended with.
	for _, n := range []int{2, 4} {
		out, err := runShm(gccl, job, n, append([]string{"--json", "--logits", "--balance"}, tiny...)...)
		require.NoError(t, err, "tp=%d balanced:\n%s", n, out)
		r := lastRank0JSON[tpResult](t, out)
		assert.Equal(t, ref.Tokens, r.Tokens, "tp=%d balanced", n)
		assert.True(t, tensor.AllClose(tensor.FromSlice(ref.Logits), tensor.FromSlice(r.Logits), 1e-4, 1e-4), "tp=%d balanced: logits", n)
		if assert.Len(t, r.BalanceShares, n, "tp=%d balanced", n) {
			sum := 0.0
			for _, s := range r.BalanceShares {
				assert.Positive(t, s)
				sum += s
			}
			assert.InDelta(t, 1, sum, 1e-9)
		}
	}

	// From the file, each rank reading only its shards.
	for _, n := range []int{2, 4} {
		out, err := runShm(gccl, job, n, append([]string{"--json", "--weights", weights}, tiny...)...)
		require.NoError(t, err, out)
		assert.Equal(t, ref.Tokens, lastRank0JSON[tpResult](t, out).Tokens, "tp=%d from the safetensors file", n)
	}

	// More ranks than kv heads (tp 4 over 2 kv heads): k and v replicated, same tokens and logits.
	kv2 := append(slices.Clone(tiny), "--kv-heads", "2")
	var results [2]tpResult
	for i, n := range []int{1, 4} {
		out, err := runShm(gccl, job, n, append([]string{"--json", "--logits"}, kv2...)...)
		require.NoError(t, err, "tp=%d over 2 kv heads:\n%s", n, out)
		results[i] = lastRank0JSON[tpResult](t, out)
	}
	assert.Equal(t, results[0].Tokens, results[1].Tokens, "tp=4 over 2 kv heads")
	assert.True(t, tensor.AllClose(tensor.FromSlice(results[0].Logits), tensor.FromSlice(results[1].Logits), 1e-4, 1e-4), "tp=4 over 2 kv heads: logits")

	t.Run("bad_input", func(t *testing.T) {
		dir := t.TempDir()
		data, err := os.ReadFile(weights)
		require.NoError(t, err)
		truncated := filepath.Join(dir, "truncated.safetensors")
		require.NoError(t, os.WriteFile(truncated, data[:len(data)-100], 0o644))
		f, err := safetensors.Open(weights)
		require.NoError(t, err)
		ts, err := f.Tensors()
		require.NoError(t, err)
		require.NoError(t, f.Close())
		ts["model.norm.weight"] = ts["model.norm.weight"].To(tensor.Int32)
		wrongDType := filepath.Join(dir, "int32.safetensors")
		require.NoError(t, safetensors.WriteFile(wrongDType, ts, nil))
		for _, c := range []struct {
			name string
			n    int
			args []string
			want string
		}{
			{"tp_does_not_divide_heads", 2, []string{"--heads", "6", "--kv-heads", "3", "--hidden", "48"}, "does not divide"},
			{"tp_not_a_multiple_of_kv_heads", 4, []string{"--heads", "12", "--kv-heads", "3", "--hidden", "48"}, "multiple of"},
			{"truncated", 1, append(tiny[:len(tiny):len(tiny)], "--weights", truncated), "truncated"},
			{"balance_without_shared_memory", 2, append(tiny[:len(tiny):len(tiny)], "--balance", "--backend", "gloo"), `use backend "shm"`},
			{"wrong_dtype", 1, append(tiny[:len(tiny):len(tiny)], "--weights", wrongDType), "model.norm.weight"},
		} {
			out, err := runShm(gccl, job, c.n, c.args...)
			assert.Error(t, err, c.name)
			assert.Contains(t, strings.ToLower(out), strings.ToLower(c.want), c.name)
		}
	})
}
