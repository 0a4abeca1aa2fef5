package flightrecorder

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// DefaultCapacity is the ring size when no environment variable sets one,
// PyTorch's default.
const DefaultCapacity = 2000

// CapacityEnvVars are the variables CapacityFromEnv reads, first set one
// wins: gccl's own, then PyTorch's, then PyTorch's older NCCL-only name.
var CapacityEnvVars = []string{"GCCL_FR_BUFFER_SIZE", "TORCH_FR_BUFFER_SIZE", "TORCH_NCCL_TRACE_BUFFER_SIZE"}

// CapacityFromEnv returns the ring size configured in the environment: the
// first of CapacityEnvVars set to a non-empty value, else DefaultCapacity.
// 0 disables the recorder; so does a negative value, as in PyTorch. A value
// that is not an integer logs a warning and gives DefaultCapacity.
func CapacityFromEnv() int {
	for _, name := range CapacityEnvVars {
		raw, ok := os.LookupEnv(name)
		v := strings.TrimSpace(raw)
		if !ok || v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			slog.Warn("flightrecorder: buffer size is not an integer, using the default",
				"var", name, "value", raw, "default", DefaultCapacity)
			return DefaultCapacity
		}
		if n < 0 {
			return 0
		}
		return n
	}
	return DefaultCapacity
}
