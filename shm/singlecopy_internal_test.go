package shm

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gccl/gccl/backends"
)

// A peer that is being killed loses its memory before /proc shows it as a zombie: a read of it
// then fails with ESRCH while the pid still looks alive, and that must be a PeerLostError
// naming it (CI once saw "process_vm_readv ...: no such process" reach the caller instead).
func TestRemoteErrESRCHIsPeerLost(t *testing.T) {
	g := &Group{cfg: backends.Config{Rank: 0, Size: 2, GlobalRanks: []int{4, 7}}, pids: []int{os.Getpid(), os.Getpid()}}
	err := g.remoteErr(1, &os.SyscallError{Syscall: "process_vm_readv", Err: unix.ESRCH})
	var lost *backends.PeerLostError
	if !errors.As(err, &lost) || lost.Rank != 1 || lost.GlobalRank != 7 {
		t.Fatalf("remoteErr(ESRCH) from a pid /proc shows running = %v, want a PeerLostError for rank 1 (global 7)", err)
	}
	if !errors.Is(err, backends.ErrPeerLost) {
		t.Fatalf("remoteErr(ESRCH) = %v, not ErrPeerLost", err)
	}
	// Any other failure of a live peer stays what it was.
	err = g.remoteErr(1, unix.EFAULT)
	if errors.As(err, &lost) || !errors.Is(err, unix.EFAULT) {
		t.Fatalf("remoteErr(EFAULT) from a live pid = %v, want the EFAULT itself", err)
	}
}

// readRemote of a process that exited (a zombie, not yet reaped) reports ESRCH, which remoteErr
// turns into a PeerLostError.
func TestReadRemoteOfExitedProcess(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); backends.ProcessAlive(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running after 5 s", pid)
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 64)
	err := readRemote(pid, 0x400000, buf)
	if !errors.Is(err, unix.ESRCH) {
		t.Fatalf("readRemote of exited pid %d = %v, want ESRCH", pid, err)
	}
	g := &Group{cfg: backends.Config{Rank: 0, Size: 2, GlobalRanks: []int{0, 1}}, pids: []int{os.Getpid(), pid}}
	if err := g.remoteErr(1, err); !errors.Is(err, backends.ErrPeerLost) {
		t.Fatalf("remoteErr = %v, want ErrPeerLost", err)
	}
}
