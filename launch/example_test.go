package launch_test

import (
	"context"
	"fmt"

	"github.com/gccl/gccl/launch"
)

// Run starts the ranks with torchrun's environment and prefixes their output with the rank.
func ExampleRun() {
	res, err := launch.Run(context.Background(), launch.Config{
		NProcs: 1, Program: "sh", Args: []string{"-c", `echo "rank $RANK of $WORLD_SIZE on node $GROUP_RANK"`},
	})
	if err != nil {
		fmt.Println("could not start:", err)
		return
	}
	fmt.Println("failed:", res.Err() != nil)
	// Output:
	// [rank 0] rank 0 of 1 on node 0
	// failed: false
}
