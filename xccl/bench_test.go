package xccl

import (
	"context"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gccl/gccl/internal/wait"
)

// BenchmarkCallOverhead measures what one oneCCL call costs the binding, on the fixture's
// onecclGetVersion (which only stores an int):
//   - C-direct: the same call from C through a function pointer, the baseline;
//   - SyscallN: purego.SyscallN with a prepared argument, as every op calls oneCCL;
//   - RegisterFunc: purego's reflection-built function, for comparison;
//   - thread: SyscallN made on a communicator's locked OS thread from another goroutine, the
//     hand-off every Comm op pays.
//
// The bound is on SyscallN minus C-direct: at most 1 µs.
func BenchmarkCallOverhead(b *testing.B) {
	f := openFixture(b)
	lib := f.lib
	v := new(int32)
	b.Run("C-direct", func(b *testing.B) {
		f.directNs(int64(b.N))
	})
	b.Run("SyscallN", func(b *testing.B) {
		p := uintptr(unsafe.Pointer(v))
		for i := 0; i < b.N; i++ {
			lib.call(lib.getVersion, p)
		}
	})
	b.Run("RegisterFunc", func(b *testing.B) {
		var get func(*int32) int32
		purego.RegisterFunc(&get, lib.getVersion)
		for i := 0; i < b.N; i++ {
			get(v)
		}
	})
	b.Run("thread", func(b *testing.B) {
		th := newThread(wait.NewPolicy(1))
		defer th.stop()
		ctx := context.Background()
		p := uintptr(unsafe.Pointer(v))
		for i := 0; i < b.N; i++ {
			_ = th.do(ctx, nil, func() { lib.call(lib.getVersion, p) })
		}
	})
}
