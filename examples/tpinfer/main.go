// Command tpinfer is tensor-parallel greedy generation with a Llama-style decoder (RMSNorm,
// rotary embeddings, grouped-query attention with a KV cache, SwiGLU MLP, tied or separate LM
// head) over package dtensor/tp: every rank generates the same full weights from --seed and keeps
// its shard, or reads only its shard from --weights FILE (a safetensors file with Hugging Face
// Llama names), and the ranks generate together. Run it with gccl run; the tensor-parallel degree is the number
// of ranks, and TP=1, 2 and 4 produce the same tokens:
//
//	go build -o tpinfer ./examples/tpinfer
//	gccl run --nproc-per-node 2 -- ./tpinfer --hidden 256 --layers 4 --heads 8 --kv-heads 4 --prompt 1,2,3 --new-tokens 32
//
// With --balance (backend shm), the MLPs' and the LM head's weights go to memory the ranks share
// and their rows are split by each rank's measured speed (tp.ParallelMLP.Share), which helps when
// a rank stays slower than the others.
//
// Rank 0 prints the tokens, tokens/s, the time per decode step and the share of it spent in
// all-reduce; with --json it ends with one JSON line with the keys tp, tokens, tokens_per_s,
// step_ms, allreduce_share, allreduce_shares (every rank's) and, with --balance, balance_shares
// (each rank's fraction of the balanced rows at the end).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gccl/gccl/comm"
	"github.com/gccl/gccl/dtensor/tp"
	"github.com/gccl/gccl/mesh"
	"github.com/gccl/gccl/tensor"
	"github.com/gccl/gccl/tensor/safetensors"
)

type result struct {
	TP             int     `json:"tp"`
	Tokens         []int   `json:"tokens"`
	TokensPerS     float64 `json:"tokens_per_s"`
	StepMS         float64 `json:"step_ms"`
	AllReduceShare float64 `json:"allreduce_share"`
	// AllReduceShares is every rank's share, in rank order (AllReduceShare is rank 0's): the time
	// in all-reduce is mostly a rank waiting for the others, so the ranks' shares differ.
	AllReduceShares []float64 `json:"allreduce_shares"`
	PrefillMS       float64   `json:"prefill_ms"` // the prompt but its last token, in one batch
	Logits          []float32 `json:"logits,omitempty"`
	// BalanceShares is each rank's fraction of the MLP and LM head rows at the end, with --balance.
	BalanceShares []float64 `json:"balance_shares,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tpinfer:", err)
		os.Exit(1)
	}
}

func parseIDs(s string) ([]int, error) {
	var ids []int
	for f := range strings.SplitSeq(s, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--prompt %q: %q is not a token id; pass comma-separated ids such as 1,2,3", s, f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func run() error {
	var c Config
	var (
		seed                        uint64
		prompt, weights, backend    string
		saveWeights                 string
		newTokens                   int
		asJSON, printLogits, dryRun bool
		balance                     bool
	)
	flag.IntVar(&c.Hidden, "hidden", 256, "hidden size")
	flag.IntVar(&c.Layers, "layers", 4, "decoder layers")
	flag.IntVar(&c.Heads, "heads", 8, "attention heads")
	flag.IntVar(&c.KVHeads, "kv-heads", 4, "key/value heads (grouped-query attention)")
	flag.IntVar(&c.Vocab, "vocab", 1024, "vocabulary size")
	flag.IntVar(&c.Intermediate, "intermediate", 0, "MLP size (default 3 × hidden)")
	flag.BoolVar(&c.Tied, "tied", false, "tie the LM head to the embedding table")
	flag.Float64Var(&c.RopeTheta, "rope-theta", 10000, "rotary base")
	flag.Float64Var(&c.Eps, "eps", 1e-5, "RMSNorm epsilon")
	flag.Uint64Var(&seed, "seed", 1, "seed of the generated weights (the same on every rank)")
	flag.StringVar(&prompt, "prompt", "1,2,3,4", "prompt token ids, comma-separated")
	flag.IntVar(&newTokens, "new-tokens", 16, "tokens to generate")
	flag.StringVar(&weights, "weights", "", "read the weights from this safetensors file (Hugging Face Llama names) instead of generating them")
	flag.StringVar(&saveWeights, "save-weights", "", "rank 0 writes the generated weights to this safetensors file")
	flag.StringVar(&backend, "backend", "", "backend (default: GCCL_BACKEND from gccl run --backend, else shm)")
	flag.BoolVar(&asJSON, "json", false, "rank 0 ends with one JSON line: tp, tokens, tokens_per_s, step_ms, allreduce_share, allreduce_shares, prefill_ms (and logits with --logits, balance_shares with --balance)")
	flag.BoolVar(&printLogits, "logits", false, "with --json, add the full logits of the last step (for checks)")
	flag.BoolVar(&balance, "balance", false, "put the MLP and LM head weights in memory the ranks share (backend shm) and split their rows by each rank's measured speed")
	flag.BoolVar(&dryRun, "check-only", false, "load and shard the model, then exit")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; every option is a flag (see -h)", flag.Args())
	}
	if c.Intermediate == 0 {
		c.Intermediate = 3 * c.Hidden
	}
	ids, err := parseIDs(prompt)
	if err != nil {
		return err
	}
	if newTokens < 1 {
		return fmt.Errorf("--new-tokens %d must be at least 1", newTokens)
	}
	for _, id := range ids {
		if id < 0 || id >= c.Vocab {
			return fmt.Errorf("--prompt: token id %d is outside the vocabulary of %d (--vocab)", id, c.Vocab)
		}
	}
	c.MaxSeq = len(ids) + newTokens
	if err := c.check(); err != nil {
		return err
	}
	if backend == "" && os.Getenv("GCCL_BACKEND") == "" {
		backend = "shm" // comm.Init's own default is gloo
	}

	ctx := context.Background()
	pg, err := comm.Init(ctx, comm.Options{Backend: backend})
	if err != nil {
		return err
	}
	defer pg.Close()
	n := pg.Size()
	if c.Heads%n != 0 || (c.KVHeads%n != 0 && n%c.KVHeads != 0) {
		return fmt.Errorf("tensor-parallel degree %d (the number of ranks) does not divide --heads %d, or neither divides nor is a multiple of --kv-heads %d; run with a number of ranks that divides the heads and divides the kv heads or is a multiple of them", n, c.Heads, c.KVHeads)
	}
	m, err := mesh.New(ctx, pg, []int{n}, []string{"tp"}, mesh.Options{})
	if err != nil {
		return err
	}
	defer m.Close()

	// From a file, each rank reads only its shards. From a seed, every rank generates the full
	// weights and keeps its shards; the rest goes back to the OS at once after Parallelize.
	var params map[string]*tp.Parameter
	if weights != "" {
		var f *safetensors.File
		if params, f, err = openWeights(c, weights); err != nil {
			return err
		}
		defer f.Close()
	} else {
		full := seedWeights(c, seed)
		if saveWeights != "" && pg.Rank() == 0 {
			if err := safetensors.WriteFile(saveWeights, full, map[string]string{"format": "pt"}); err != nil {
				return err
			}
		}
		params = denseParameters(full)
	}
	model, err := NewModel(c, params)
	if err != nil {
		return err
	}
	if err := tp.Parallelize(ctx, model, m, plan); err != nil {
		return err
	}
	var balancer tp.Balancer
	if balance {
		if err := model.Share(ctx, &balancer); err != nil {
			return fmt.Errorf("--balance: %w", err)
		}
		defer model.Close()
	}
	params = nil
	debug.FreeOSMemory()
	if dryRun {
		return nil
	}

	// The prompt but its last token in one batch (a prefill: one all-reduce per block for all of
	// them), then greedy decoding. A decode step is one token through the model; the timed steps
	// are the ones that produce the new tokens (the last prompt token's, then each generated
	// token's but the last). The ranks start together: the prefill's first all-reduce would
	// otherwise count the time a rank waits for the others to finish loading their weights.
	if err := pg.Barrier(ctx); err != nil {
		return err
	}
	start := time.Now()
	if len(ids) > 1 {
		if _, err := model.Prefill(ctx, ids[:len(ids)-1], 0); err != nil {
			return err
		}
	}
	prefill := time.Since(start)
	var tokens []int
	next := ids[len(ids)-1]
	var decode time.Duration
	arBefore := model.Stats.AllReduceTime
	for pos := len(ids) - 1; len(tokens) < newTokens; pos++ {
		start := time.Now()
		if next, err = model.Step(ctx, next, pos); err != nil {
			return err
		}
		decode += time.Since(start)
		tokens = append(tokens, next)
	}
	res := result{TP: n, Tokens: tokens, PrefillMS: float64(prefill) / float64(time.Millisecond)}
	res.StepMS = float64(decode) / float64(time.Millisecond) / float64(len(tokens))
	res.TokensPerS = float64(len(tokens)) / decode.Seconds()
	res.AllReduceShare = float64(model.Stats.AllReduceTime-arBefore) / float64(decode)
	shares := tensor.New(tensor.Float64, n)
	if err := pg.AllGather(ctx, shares, tensor.FromSlice([]float64{res.AllReduceShare})); err != nil {
		return err
	}
	res.AllReduceShares = shares.Float64s()
	res.BalanceShares = balancer.Shares()
	if printLogits {
		// The logits of the last step again, at its position: rerun it on a fresh cache.
		if res.Logits, err = model.lastLogits(ctx, ids, tokens); err != nil {
			return err
		}
	}
	if pg.Rank() != 0 {
		return nil
	}
	fmt.Printf("tp=%d backend=%s hidden=%d layers=%d heads=%d kv-heads=%d vocab=%d\n", n, pg.Backend(), c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Vocab)
	fmt.Printf("tokens: %v\n", tokens)
	fmt.Printf("prefill of %d tokens: %.3f ms\n", len(ids)-1, res.PrefillMS)
	fmt.Printf("%.1f tokens/s, %.3f ms per decode step, %.1f%% of it in all-reduce (per rank: %s)\n", res.TokensPerS, res.StepMS, 100*res.AllReduceShare, percents(res.AllReduceShares))
	if res.BalanceShares != nil {
		fmt.Printf("balanced rows at the end, per rank: %s\n", percents(res.BalanceShares))
	}
	if asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	}
	return nil
}

// percents formats shares as "3.1% 4.2%".
func percents(shares []float64) string {
	parts := make([]string, len(shares))
	for i, v := range shares {
		parts[i] = fmt.Sprintf("%.1f%%", 100*v)
	}
	return strings.Join(parts, " ")
}
