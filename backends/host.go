package backends

import (
	"os"
	"strings"
)

// HostID identifies the host this process runs on, so that backends (and comm's backend
// "auto") can tell which members of a group share a host: GCCL_HOST_ID when set (tests set it
// per rank to pretend that ranks run on different hosts), else hostname + "/" + the kernel's
// boot id (two containers or VMs that report the same hostname still differ by boot id).
// hostname is Config.Hostname.
func HostID(hostname string) string {
	if v := os.Getenv("GCCL_HOST_ID"); v != "" {
		return v
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return hostname + "/" + strings.TrimSpace(string(boot))
}
