package xccl

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gccl/gccl/internal/dl"
)

// onecclCommInitRank takes the 4096-byte onecclUniqueId by value. On linux/amd64 that struct is
// of class MEMORY: the caller copies it onto the stack, which purego cannot do (it panics: too
// many stack arguments). So that one call goes through libffi's ffi_prep_cif and ffi_call, loaded
// with purego, which take only pointers: the struct is described to libffi as 4096 uint8
// elements. Facts this relies on (checked on Debian's libffi8 3.4.4; see
// shared/notes/xccl-by-value-id.md):
//   - ffi_cif is 32 bytes and ffi_type 24 bytes {size uint64, alignment uint16, type uint16,
//     elements **ffi_type}; FFI_DEFAULT_ABI is FFI_UNIX64 = 2, FFI_TYPE_STRUCT = 13, FFI_OK = 0;
//   - ffi_type_uint8 and friends are data symbols: Dlsym gives their addresses;
//   - avalues[i] points to the value of argument i; libffi 3.4.3 to 3.6.x overwrites the slot of
//     a large struct argument with a pointer to its own (dead) copy, so avalues is built anew for
//     every call;
//   - an int return is written as 8 bytes: the result is read as a uint64, low 32 bits kept;
//   - the cif points at the argument types and the struct type, which must stay alive and not
//     move while it is used: everything lives in one pinned Go object per call.

// UniqueIDBytes is the size of oneCCL's onecclUniqueId (ONECCL_UNIQUE_ID_BYTES).
const UniqueIDBytes = 4096

// UniqueID is oneCCL's onecclUniqueId: rank 0 makes it, every rank passes it to CommInitRank.
type UniqueID [UniqueIDBytes]byte

const (
	ffiDefaultABI = 2 // FFI_UNIX64
	ffiTypeStruct = 13
	ffiOK         = 0
)

// ffiLibraries are the names tried for libffi, in order (Debian's libffi8 ships libffi.so.8).
var ffiLibraries = []string{"libffi.so.8", "libffi.so.7", "libffi.so"}

// ffiLib is a loaded libffi.
type ffiLib struct {
	prepCIF, call                  uintptr
	typeUint8, typeUint64, typeS32 uintptr // addresses of ffi_type_uint8, _uint64, _sint32
	typePointer                    uintptr
}

func loadFFI() (*ffiLib, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("the by-value onecclUniqueId call is implemented for linux/amd64 only, not %s", runtime.GOARCH)
	}
	var tried []string
	for _, name := range ffiLibraries {
		h, err := dl.Open(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		f := &ffiLib{}
		for _, s := range []struct {
			name string
			p    *uintptr
		}{{"ffi_prep_cif", &f.prepCIF}, {"ffi_call", &f.call}, {"ffi_type_uint8", &f.typeUint8},
			{"ffi_type_uint64", &f.typeUint64}, {"ffi_type_sint32", &f.typeS32}, {"ffi_type_pointer", &f.typePointer}} {
			if *s.p, err = dl.Sym(h, s.name); err != nil {
				return nil, fmt.Errorf("%s has no %s: %v", name, s.name, err)
			}
		}
		return f, nil
	}
	return nil, fmt.Errorf("libffi, needed to pass onecclUniqueId by value without cgo, cannot be loaded (install Debian's libffi8): %s",
		strings.Join(tried, "; "))
}

// ffiType is libffi's ffi_type.
type ffiType struct {
	size      uint64
	alignment uint16
	typ       uint16
	_         uint32
	elements  uintptr
}

// initRankCall holds everything one ffi_call of onecclCommInitRank reads: one Go object, pinned
// for the call, so that the pointers libffi keeps between ffi_prep_cif and ffi_call stay valid.
type initRankCall struct {
	cif        [4]uint64                  // ffi_cif (32 bytes)
	idType     ffiType                    // the struct type of onecclUniqueId
	idElements [UniqueIDBytes + 1]uintptr // UniqueIDBytes x &ffi_type_uint8, then NULL
	argTypes   [4]uintptr
	avalues    [4]uintptr
	// The argument values.
	commOut uintptr // onecclComm_t *comm: the address of handle
	nranks  uint64
	id      UniqueID
	rank    int32
	handle  uintptr // where onecclCommInitRank writes the communicator
	result  uint64
}

// commInitRank calls onecclCommInitRank(&comm, nranks, id, rank) and returns the communicator
// handle and the onecclResult_t.
func (f *ffiLib) commInitRank(fn uintptr, nranks int, id *UniqueID, rank int) (comm uintptr, rc int32, err error) {
	c := new(initRankCall)
	var pin runtime.Pinner
	pin.Pin(c)
	defer pin.Unpin()

	for i := 0; i < UniqueIDBytes; i++ {
		c.idElements[i] = f.typeUint8
	}
	c.idType = ffiType{typ: ffiTypeStruct, elements: uintptr(unsafe.Pointer(&c.idElements[0]))}
	c.argTypes = [4]uintptr{f.typePointer, f.typeUint64, uintptr(unsafe.Pointer(&c.idType)), f.typeS32}
	c.commOut = uintptr(unsafe.Pointer(&c.handle))
	c.nranks = uint64(nranks)
	c.id = *id
	c.rank = int32(rank)
	c.avalues = [4]uintptr{
		uintptr(unsafe.Pointer(&c.commOut)), uintptr(unsafe.Pointer(&c.nranks)),
		uintptr(unsafe.Pointer(&c.id[0])), uintptr(unsafe.Pointer(&c.rank)),
	}
	st, _, _ := purego.SyscallN(f.prepCIF, uintptr(unsafe.Pointer(&c.cif[0])), ffiDefaultABI, 4, f.typeS32,
		uintptr(unsafe.Pointer(&c.argTypes[0])))
	if int32(st) != ffiOK {
		return 0, 0, fmt.Errorf("ffi_prep_cif for onecclCommInitRank failed with status %d", int32(st))
	}
	purego.SyscallN(f.call, uintptr(unsafe.Pointer(&c.cif[0])), fn, uintptr(unsafe.Pointer(&c.result)),
		uintptr(unsafe.Pointer(&c.avalues[0])))
	return c.handle, int32(uint32(c.result)), nil
}
