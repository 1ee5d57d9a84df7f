package torch

/*
#include "clm_fused.h"
*/
import "C"

// FusedLeakyReLU returns the leaky ReLU of x in one pass forward and one
// backward. It equals the composite
//
//	Where(x.GeScalar(0), x, x.MulScalar(slope))
//
// forward and backward: the gradient is g where x >= 0 (1 at x = 0, unlike
// LeakyRelu's) and slope·g elsewhere (NaN included), in x's dtype. On the
// CPU and, in a shim with CUDA kernels (FusedCUDAKernels), on CUDA it runs
// the fused kernel; elsewhere it runs the composite ops. For slope > 0 it
// keeps y for the backward pass (which the next layer keeps anyway), else x.
func FusedLeakyReLU(x *Tensor, slope float64) *Tensor {
	return result("fused_leaky_relu", C.clm_fused_leaky_relu(x.handle(), C.double(slope)))
}

// FusedRMSNorm returns RMSNorm over the last dim with eps added to the RMS,
// in one pass forward and one backward for x and for scale (shape [d], its
// gradient summed over the rows in a fixed order). It equals the composite
//
//	d := x.Size(-1)
//	rms := x.Norm(2, true, -1).MulScalar(math.Pow(float64(d), -0.5))
//	scale.Mul(x.Div(rms.AddScalar(eps)))
//
// forward and backward (a zero row has the composite's gradient
// scale·g/eps), in the composite's dtype (that of x and scale promoted: a
// bf16 x with a float32 scale gives float32). The arithmetic is in float32
// for 16-bit inputs, rounded once at the end.
func FusedRMSNorm(x, scale *Tensor, eps float64) *Tensor {
	return result("fused_rms_norm", C.clm_fused_rms_norm(x.handle(), scale.handle(), C.double(eps)))
}

// FusedCUDAKernels reports whether the shim was built with the CUDA kernels
// of the fused ops (by nvcc); without them the fused ops run on CUDA tensors
// as the composite ops they replace.
func FusedCUDAKernels() bool { return C.clm_fused_cuda_kernels() != 0 }
