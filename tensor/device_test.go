package tensor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var xpu0 = Device{Type: "xpu"}

func TestFromDevicePointer(t *testing.T) {
	const base = uintptr(0x7f0000001000)
	d, err := FromDevicePointer(Float32, xpu0, base, 4, 3)
	require.NoError(t, err)
	assert.True(t, d.IsDevice())
	assert.False(t, New(Float32, 2).IsDevice())
	assert.Equal(t, xpu0, d.Device())
	assert.Equal(t, []int{4, 3}, d.Shape())
	assert.Equal(t, 48, d.NBytes())
	assert.True(t, d.IsContiguous())
	assert.Equal(t, base, d.DevicePointer())
	assert.Equal(t, "tensor(float32, [4 3], xpu:0)", d.String())

	// Views keep working by pointer arithmetic.
	rows, err := d.Narrow(0, 1, 2)
	require.NoError(t, err)
	assert.Equal(t, base+3*4, rows.DevicePointer())
	assert.True(t, rows.IsDevice())
	chunks, err := d.Chunk(2, 0)
	require.NoError(t, err)
	assert.Equal(t, base+6*4, chunks[1].DevicePointer())
	flat, err := rows.Reshape(-1)
	require.NoError(t, err)
	assert.Equal(t, []int{6}, flat.Shape())
	assert.Equal(t, base+3*4, flat.DevicePointer())
	col, err := d.Narrow(1, 1, 1) // strided
	require.NoError(t, err)
	assert.False(t, col.IsContiguous())
	assert.Equal(t, base+4, col.DevicePointer())
	_, err = col.Reshape(-1)
	require.Error(t, err, "a strided device view cannot be copied into shape")
	assert.Contains(t, err.Error(), "device memory")

	// Overlap is by device address, and only on one device.
	assert.True(t, rows.Overlaps(d))
	assert.False(t, chunks[0].Overlaps(chunks[1]))
	assert.True(t, chunks[0].SharesStorage(chunks[1]))
	other, err := FromDevicePointer(Float32, Device{Type: "xpu", Index: 1}, base, 4, 3)
	require.NoError(t, err)
	assert.False(t, other.Overlaps(d), "same address on another device")
	assert.False(t, other.SharesStorage(d))
	assert.False(t, New(Float32, 12).Overlaps(d))

	empty, err := FromDevicePointer(Int8, xpu0, 0, 0)
	require.NoError(t, err, "an empty device tensor needs no pointer")
	assert.True(t, empty.IsDevice())
}

func TestFromDevicePointerBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		dt    DType
		dev   Device
		ptr   uintptr
		shape []int
		want  string
	}{
		"host device":   {Float32, CPU, 0x1000, []int{2}, "use FromBytes"},
		"zero device":   {Float32, Device{}, 0x1000, []int{2}, "use FromBytes"},
		"NULL pointer":  {Float32, xpu0, 0, []int{2}, "NULL pointer"},
		"bad dtype":     {DType(200), xpu0, 0x1000, []int{2}, "invalid dtype"},
		"negative size": {Float32, xpu0, 0x1000, []int{-1}, "negative size"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := FromDevicePointer(tc.dt, tc.dev, tc.ptr, tc.shape...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// The host-only methods are programming errors on a device tensor: they panic, naming the
// device and the fix, instead of reading whatever lies at the address.
func TestDeviceTensorHostOnly(t *testing.T) {
	d, err := FromDevicePointer(Float32, Device{Type: "xpu", Index: 2}, 0x7f0000001000, 4)
	require.NoError(t, err)
	for name, f := range map[string]func(){
		"Bytes":    func() { d.Bytes() },
		"Float32s": func() { d.Float32s() },
		"Float":    func() { d.Float(0) },
		"SetFloat": func() { d.SetFloat(1, 0) },
		"Float64s": func() { d.Float64s() },
		"Fill":     func() { d.Fill(1) },
		"Clone":    func() { d.Clone() },
		"To":       func() { d.To(Float64) },
		"Equal":    func() { Equal(d, d) },
	} {
		t.Run(name, func(t *testing.T) {
			assert.PanicsWithValue(t, "tensor: "+name+" on tensor(float32, [4], xpu:2): the tensor is in the memory of xpu:2, which the host cannot read or write; copy it to the host first (with the device's API, such as a SYCL memcpy) and use a host tensor", f)
		})
	}
	assert.PanicsWithValue(t, "tensor: DevicePointer on host tensor(float32, [1]); it has host bytes (Bytes), not a device pointer", func() { New(Float32, 1).DevicePointer() })
	err = New(Float32, 4).CopyFrom(d)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "xpu:2")
	_, err = SiLU(d)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "host tensors only")
	_, err = MatMul(d, d)
	require.Error(t, err)
}
