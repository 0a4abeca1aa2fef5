// Package mesh is gccl's DeviceMesh: an N-dimensional, named layout of the ranks of a process
// group, with one process group per dimension, after torch.distributed.device_mesh.
//
// The ranks of the parent group sit in the mesh in row-major order: the last dimension varies
// fastest. On 8 ranks, a mesh of shape [2 4] named ("dp", "tp") is
//
//	        tp=0  tp=1  tp=2  tp=3
//	dp=0     0     1     2     3
//	dp=1     4     5     6     7
//
// Rank 6 has coordinate [1 2]. Its "tp" group is the row {4, 5, 6, 7} (its local rank there is
// 2) and its "dp" group the column {2, 6} (local rank 1). New creates these groups with one
// Split per dimension over the parent group, described "mesh_tp" and "mesh_dp" in
// flight-recorder dumps (and in gccl fr's reports):
//
//	pg, err := comm.Init(ctx, comm.Options{})
//	if err != nil { ... }
//	defer pg.Close()
//	m, err := mesh.New(ctx, pg, []int{2, 4}, []string{"dp", "tp"}, mesh.Options{
//		Dims: map[string]mesh.DimOptions{"tp": {Backend: "shm"}}, // "dp" inherits pg's backend
//	})
//	if err != nil { ... }
//	defer m.Close()                    // closes the groups m created; pg stays open
//	tp, _ := m.Group("tp")             // all-reduce activations inside a row
//	err = tp.AllReduce(ctx, x, comm.Sum)
//	dp, _ := m.Dim("dp")               // a 1-D view: no new group
//	sub, _ := m.Sub("dp", "tp")        // a view of both dimensions: no new group
//	all, err := m.Flatten(ctx, "dp_tp", mesh.DimOptions{}) // one new group over both, cached
//
// New and Flatten are collective over the parent group: every rank calls them with the same
// arguments, in the same order. Bad arguments (a shape whose sizes do not multiply to the group
// size, sizes below 1, empty, duplicate or unknown names) fail with comm.ErrInvalidArgument on
// every rank, and ranks that pass different arguments fail with comm.ErrMismatch, before any
// group is created. A mesh is read-only after creation and safe for concurrent use.
package mesh
