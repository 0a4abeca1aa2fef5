package backends

import (
	"bytes"
	"net"
	"os"
	"strconv"
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

// SocketHost picks the local address a TCP backend listens on, so that its peers can reach it:
// loopback when the rendezvous host (Config.MasterAddr) is local, otherwise the address of the
// interface that routes to it. GCCL_SOCKET_ADDR (or GLOO_SOCKET_ADDR) overrides.
func SocketHost(master string) string {
	for _, k := range []string{"GCCL_SOCKET_ADDR", "GLOO_SOCKET_ADDR"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	if master == "" {
		return "127.0.0.1"
	}
	if a := RouteAddr(master); a != "" {
		return a
	}
	return "0.0.0.0"
}

// RouteAddr is the local address this host reaches host from: 127.0.0.1 when host is local
// ("localhost" or a loopback address), else the address of the interface the route to it goes
// through (found without sending anything), or "" when there is no route.
func RouteAddr(host string) string {
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return "127.0.0.1"
	}
	c, err := net.Dial("udp", net.JoinHostPort(host, "9"))
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

// ProcessAlive reports whether pid is a running process of this host: it exists and is not a
// zombie or dead (Z, X or x in /proc/PID/stat).
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may hold anything: "pid (comm) S ...".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}
