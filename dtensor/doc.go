// Package dtensor is gccl's distributed tensor, after torch.distributed.tensor: a tensor laid
// out over a device mesh (package mesh) with one placement per mesh dimension.
//
//   - Shard{Dim: d} ("S(d)") splits tensor dimension d across the ranks of the mesh dimension
//     by torch.chunk's rules: every rank holds ceil(n/m) elements along d except the trailing
//     ones, which hold fewer or none (7 rows over 4 ranks: 2, 2, 2, 1; 5 rows: 2, 2, 1, 0).
//     A tensor dimension sharded by several mesh dimensions is chunked in mesh-dimension order,
//     each chunk again by the next (nested, like torch). LocalShape computes any rank's shard.
//   - Replicate{} ("R") holds the whole tensor on every rank of the mesh dimension.
//   - Partial{Op: op} ("P(sum)") holds per-rank parts whose reduction with op (default
//     comm.Sum) across the mesh dimension is the value.
//
// A worked example: 4 ranks as a 2x2 mesh, a 7x5 matrix sharded by rows over "dp" and
// replicated over "tp", then turned into column shards over "tp" and gathered:
//
//	m, err := mesh.New(ctx, pg, []int{2, 2}, []string{"dp", "tp"}, mesh.Options{})
//	if err != nil { ... }
//	defer m.Close()
//	// rank 0's x is scattered: ranks at dp=0 get rows 0-3, ranks at dp=1 rows 4-6.
//	d, err := dtensor.Distribute(ctx, x, m, []dtensor.Placement{dtensor.Shard{Dim: 0}, dtensor.Replicate{}},
//		dtensor.DistributeOptions{Src: 0})
//	if err != nil { ... }
//	// R -> S(1) over tp is a local chunk: rank [1 1] holds rows 4-6, columns 3-4.
//	c, err := d.Redistribute(ctx, []dtensor.Placement{dtensor.Shard{Dim: 0}, dtensor.Shard{Dim: 1}})
//	fmt.Println(c.Local().Shape()) // [3 2] on rank [1 1]
//	full, err := c.Full(ctx)        // all-gathers over tp, then over dp: x on every rank
//	// Shards from elsewhere (uneven: pass the global shape), checked across the mesh:
//	y, err := dtensor.FromLocal(ctx, shard, m, placements, dtensor.FromLocalOptions{GlobalShape: []int{7, 5}, Check: true})
//
// # Redistribute
//
// Redistribute changes the placement of each mesh dimension with one collective over that
// dimension's group (or none):
//
//	S(d) -> R      all-gather
//	P    -> R      all-reduce with the partial's op
//	P    -> S(d)   reduce-scatter with the partial's op
//	S(i) -> S(j)   all-to-all
//	R    -> S(d)   local chunk, no communication
//	R    -> P      local: the rank at coordinate 0 of the mesh dimension keeps the value, the
//	               others hold the op's identity (zeros for Sum and BXor, ones for Product);
//	               for Avg, Min, Max, BAnd and BOr every rank keeps it. Torch divides by the
//	               group size for Sum instead; this way is exact for integers.
//
// S -> P and P(op1) -> P(op2) go through R. Uneven shards are padded with zeros to the chunk
// size for the all-gather, reduce-scatter and all-to-all (which move equal blocks), and the
// padding is dropped after. Mesh dimensions change in this order (torch's planner, too, undoes
// nested shards from the innermost mesh dimension out): first every mesh dimension that changes, plus every later one that shards one
// of the same tensor dimensions, from the last mesh dimension to the first, each either in one
// step (when no other mesh dimension shards its tensor dims, apart from earlier ones that stay
// put) or to R; then, from the first to the last, the ones now at R take their targets with a
// local step. So [S(0), S(0)] -> [R, S(0)] all-gathers over the second dimension, then the
// first, and chunks over the second again.
//
// Distribute, FromLocal with Check, Redistribute and Full are collective over the mesh: every
// rank calls them with the same arguments in the same order. Bad arguments (placements of the
// wrong length, shard dims out of range, reduce ops the dtype does not support) are found on
// every rank before anything is sent, and the error, which wraps comm.ErrInvalidArgument, names
// the op, the rank and the fix. A DTensor is immutable: Redistribute returns a new one.
//
// # Ops
//
// MatMul, Linear, Add, Mul, SiLU, SwiGLU, Softmax, RMSNorm, LayerNorm, Embedding, Transpose,
// Reshape and View run the tensor package's op on the local tensors and give the result the
// placements that a small rule table per op derives from the inputs' placements, one mesh
// dimension at a time (like torch's sharding strategies). They never communicate: a rule that
// leaves a Partial (matmul of S(1) by S(0), a vocab-parallel Embedding) says so in the result's
// placements, and the caller redistributes when it needs the value. An op with no rule for the
// given placements returns an error wrapping ErrNoRule and comm.ErrInvalidArgument that names
// the op and the placements and says what to redistribute, on every rank; it never gathers
// implicitly. Nonlinear ops (Mul of two Partials, SiLU, Softmax, the norms) refuse Partial
// inputs; Softmax and the norms refuse a sharded last dim. A column-parallel then row-parallel
// MLP on a 1-D "tp" mesh (each Linear's rule table is in its documentation):
//
//	// w1 [hidden in] split by output features, w2 [out hidden] by input features.
//	w1, _ := dtensor.Distribute(ctx, w1Full, m, []dtensor.Placement{dtensor.Shard{Dim: 0}}, opts)
//	w2, _ := dtensor.Distribute(ctx, w2Full, m, []dtensor.Placement{dtensor.Shard{Dim: 1}}, opts)
//	h, err := dtensor.Linear(ctx, x, w1, nil) // x [R] -> h [S(1)]: each rank's hidden units
//	a, err := dtensor.SiLU(ctx, h)            // [S(1)]
//	y, err := dtensor.Linear(ctx, a, w2, nil) // [S(1)] x [S(1)] -> [P(sum)], no communication
//	y, err = y.Redistribute(ctx, []dtensor.Placement{dtensor.Replicate{}}) // the one all-reduce
//	// (or to Shard{Dim: 0}: a reduce-scatter, for sequence parallelism)
//
// With plain matrices the same is MatMul(x, w1t) with w1t [in hidden] S(1), then MatMul with
// w2t [hidden out] S(0): [R] x [S(1)] -> [S(1)], then [S(1)] x [S(0)] -> [P(sum)].
package dtensor
