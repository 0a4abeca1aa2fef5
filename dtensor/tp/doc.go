// Package tp is Megatron-style tensor parallelism over one mesh dimension: the layers of a
// Llama-style decoder with their weights sharded across the ranks of the tensor-parallel group,
// and Parallelize, which shards a model's named parameters per a plan of name patterns.
//
//   - ColumnParallelLinear: W [out in] sharded on out (Shard(0), style Colwise); the output
//     stays sharded; no communication.
//   - RowParallelLinear: W sharded on in (Shard(1), style Rowwise); the input is sharded on its
//     last dim; a local product, then one all-reduce (Sum); the bias is added once, after.
//   - ParallelMLP: SwiGLU with gate and up column-parallel and down row-parallel: one
//     all-reduce.
//   - ParallelAttention: grouped-query attention for one token (decode) or a batch of tokens
//     (prefill, causal) over a per-rank KV cache, heads
//     and kv heads split across ranks (tp divides the heads, and divides the kv heads or is a
//     multiple of them: then k and v are replicated and each rank uses its own kv head), rotary
//     embeddings, o row-parallel: one all-reduce.
//   - VocabParallelEmbedding: the table sharded on vocab (style Vocab); a masked local lookup
//     and an all-reduce.
//   - LMHead: column-parallel over vocab; a local argmax and an all-gather of one (value,
//     index) pair per rank pick the greedy token.
//
// A model is built dense from full weights (identical on every rank: the same seed or the same
// file); until Parallelize its layers compute densely with no communication, which is the
// single-process reference. Parallelize keeps each rank's shard:
//
//	m, err := mesh.New(ctx, pg, []int{pg.Size()}, []string{"tp"}, mesh.Options{})
//	mlp := &tp.ParallelMLP{
//		Gate: &tp.ColumnParallelLinear{Weight: tp.NewParameter("mlp.gate.weight", gate)},
//		Up:   &tp.ColumnParallelLinear{Weight: tp.NewParameter("mlp.up.weight", up)},
//		Down: &tp.RowParallelLinear{Weight: tp.NewParameter("mlp.down.weight", down)},
//	}
//	err = tp.Parallelize(ctx, mlp, m, tp.Plan{"*.gate.weight": tp.Colwise, "*.up.weight": tp.Colwise, "*.down.weight": tp.Rowwise})
//	y, err := mlp.Forward(ctx, x) // x [hidden] on every rank; y [hidden] on every rank
//
// On one host, ParallelMLP.Share and LMHead.Share move those layers' weights into memory every
// rank maps and split their rows by the ranks' measured speed (Balancer), so that a rank that
// stays slower for a while gets less work instead of making the others wait at every all-reduce.
//
// Collectives run on the mesh dimension's group, in the same order on every rank; the layers'
// Forward methods are collective over it once parallelized.
package tp
