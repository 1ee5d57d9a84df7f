package torch

/*
#include "clm_torch.h"
*/
import "C"

import "runtime"

// Backward accumulates the gradients of a scalar t into the leaves that
// require them.
func (t *Tensor) Backward() {
	check("backward", C.clm_backward(t.handle(), nil))
}

// BackwardWith back-propagates the output gradient grad (same shape as t).
func (t *Tensor) BackwardWith(grad *Tensor) {
	check("backward", C.clm_backward(t.handle(), grad.handle()))
}

// Grad returns a new handle to t's accumulated gradient, or nil when it has
// none.
func (t *Tensor) Grad() *Tensor {
	r := C.clm_grad(t.handle())
	check("grad", r.err)
	if r.t == nil {
		return nil
	}
	return newTensor(r.t)
}

// AccumulateGrad adds g to t's gradient as autograd's AccumulateGrad
// would: t's gradient becomes a copy of g when it has none, and t.grad + g
// otherwise (in place, not recorded).
func (t *Tensor) AccumulateGrad(g *Tensor) {
	check("accumulate_grad", C.clm_accumulate_grad(t.handle(), g.handle()))
}

// ZeroGrad drops t's gradient (torch's zero_grad(set_to_none=True)).
func (t *Tensor) ZeroGrad() {
	check("zero_grad", C.clm_set_grad_none(t.handle()))
}

// ClipGradNorm scales the gradients of params so that their global p-norm
// is at most maxNorm, exactly as torch.nn.utils.clip_grad_norm_, and returns
// the norm before clipping as a 0-d tensor on the gradients' device (reading
// it synchronises).
func ClipGradNorm(params []*Tensor, maxNorm, p float64) *Tensor {
	hp, n := handles(params)
	return result("clip_grad_norm", C.clm_clip_grad_norm(hp, n, C.double(maxNorm), C.double(p)))
}

// GradEnabled reports whether autograd records operations on this thread.
func GradEnabled() bool { return C.clm_grad_enabled() != 0 }

// NoGrad runs f with gradient recording off, restoring the previous mode
// afterwards. Grad mode is per OS thread, so it pins the calling goroutine
// to its thread while f runs.
func NoGrad(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := C.clm_grad_enabled()
	C.clm_set_grad_enabled(0)
	defer C.clm_set_grad_enabled(prev)
	f()
}

// Autocast runs f with mixed precision on dev's type (CPU or CUDA), casting
// eligible ops to dt (BFloat16 or Float16), and restores the previous state
// afterwards. Autocast state is per OS thread, so it pins the calling
// goroutine to its thread while f runs.
func Autocast(dev Device, dt DType, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	devType := C.int(0)
	if dev.IsCUDA() {
		devType = 1
	}
	r := C.clm_autocast_enter(devType, C.int(dt))
	check("autocast", r.err)
	defer func() { check("autocast", C.clm_autocast_exit(devType, C.int(r.v))) }()
	f()
}
