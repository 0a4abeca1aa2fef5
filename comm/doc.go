// Package comm is gccl's user-facing API: process groups and their collectives, over pluggable
// backends, shaped after PyTorch's torch.distributed.
//
// Init joins the job and returns the world group. Rank and world size come from Options or
// from the environment that a launcher sets: torchrun's names (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as set by gccl run), then OpenMPI's, PMI's and, inside
// an srun step, Slurm's.
//
//	pg, err := comm.Init(ctx, comm.Options{})      // under gccl run, torchrun, mpirun or srun
//	if err != nil { ... }
//	defer pg.Close()
//	t := tensor.New(tensor.Float32, 1024)
//	err = pg.AllReduce(ctx, t, comm.Sum)           // in place, every rank gets the sum
//	w := pg.AllGatherAsync(out, t)                  // returns at once
//	err = w.Wait(ctx)
//	tp, err := pg.Split(ctx, pg.Rank()/2, 0, comm.GroupOptions{}) // pairs of ranks
//	err = pg.BatchSendRecv(ctx, []comm.P2POp{       // send and receive at once
//		comm.SendOp(t, next, 0), comm.RecvOp(in, prev, 0),
//	})
//
// What comm does for every backend: it validates arguments before any byte moves
// (ErrInvalidArgument names the op, the rank and the fix), runs each group's ops in the order
// they were issued (synchronous ops on the caller's goroutine, asynchronous ones on a per-group
// worker goroutine, started by the group's first asynchronous op and kept until Close; an
// asynchronous send the backend can buffer at once runs on the caller's goroutine), bounds
// every op by the group's timeout (ErrTimeout, after which the group is aborted so that no rank
// waits forever), ends in about two seconds the waits of ranks that issued a group's ops in
// orders that leave them waiting for each other for good (ErrMismatch), records every op in the
// flight recorder, and lowers Avg and PreMulSum to Sum so that backends implement only the plain
// reductions.
//
// An asynchronous op overlaps the caller's work only when the Go runtime has a processor to run
// the worker on. With GOMAXPROCS=1 (what gccl run gives each rank when there are as many ranks
// as cores) the worker runs while the caller blocks (in Wait, in another op, on a channel), not
// during its computation: issuing early then costs nothing, but hides nothing either, and an
// op the worker starts just before the caller resumes computing may stay half done meanwhile,
// with its peers waiting (fsdp's ReduceGradientsAsync finishes its reduction before returning
// there for that reason).
package comm
