package torch

/*
#include "clm_torch.h"
*/
import "C"

// LinearCrossEntropy returns the mean cross-entropy of the logits h·wᵀ
// (h [N, d], w [V, d], e.g. an LM head tied to the embedding) against int64
// targets [N], ignoring targets equal to ignoreIndex; the value is that of
// CrossEntropy(Linear(h, w, nil), target, ignoreIndex, ReduceMean).
//
// The logits are never materialised whole: at most [chunk, V] logits (and a
// few temporaries of that size) exist at once. When gradients will be needed
// (grad mode on, h or w requiring grad) and the matmuls do not run in
// float16, forward also forms the gradients chunk by chunk and backward only
// scales them, so the logits are computed once, as in the plain head; in
// float16 backward recomputes them (scaling by the loss scale first, so that
// small gradients do not underflow). Gradients flow to h and w. Logits, softmax and the loss are evaluated in float32
// for float16/bfloat16 inputs and under autocast (whose dtype the matmuls
// then use), so the loss is float32 there; otherwise it has the inputs'
// dtype. When every target is ignored the loss is NaN (0/0, as PyTorch's
// mean) and the gradients are zero.
func LinearCrossEntropy(h, w, target *Tensor, ignoreIndex, chunk int64) *Tensor {
	return result("linear_cross_entropy",
		C.clm_linear_cross_entropy(h.handle(), w.handle(), target.handle(), C.int64_t(ignoreIndex), C.int64_t(chunk)))
}
