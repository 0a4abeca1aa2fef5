package tp

import "github.com/gccl/gccl/tensor"

// For the tests of package tp_test: the Balancer's state and a shared MLP's memory.

const MinShare = minShare

func (b *Balancer) SetShares(s []float64)                 { b.share = s }
func (b *Balancer) Bounds(rows, n int) []int              { return b.bounds(rows, n) }
func (b *Balancer) Update(bounds []int, micros []float32) { b.update(bounds, micros) }

// SharedGate is the shared gate weight of an MLP that Share moved to shared memory, else nil.
func SharedGate(m *ParallelMLP) *tensor.Tensor {
	if m.shared == nil {
		return nil
	}
	return m.shared.gate
}
