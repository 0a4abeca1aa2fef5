// Package launch is gccl run's library: it starts the ranks of a job, gives every worker
// torchrun's environment, prefixes each output line with its rank, and as soon as one worker
// fails stops the others and reports which rank failed and how, restarting the whole job up to
// Config.MaxRestarts times.
//
// On one node, Run hosts the rendezvous store itself. On several (Config.MaxNodes > 1), Run is
// one node's agent: the agents meet in the store at Config.RdzvEndpoint (hosted by the agent on
// that host, or by ServeStore, gccl store), agree on the rank layout of each generation, watch
// each other with memberlist, stop every node's workers when one fails anywhere, and every
// node's failure report names the earliest failure on any node.
//
//	res, err := launch.Run(ctx, launch.Config{NProcs: 4, Program: "./train", Backend: "gloo"})
//	if err != nil {
//		return err // the job could not start
//	}
//	if err := res.Err(); err != nil {
//		fmt.Println(err) // the failure report: root cause first
//	}
//
// Two nodes, run once on each (node ranks 0 and 1, the same token):
//
//	launch.Run(ctx, launch.Config{NProcs: 4, Program: "./train", MinNodes: 2, MaxNodes: 2,
//		NodeRank: 0, RdzvEndpoint: "10.0.0.1:29400", RunID: "job7", Token: token})
//
// Flags registers gccl run's command-line flags (torchrun's) and turns them into a Config.
package launch
