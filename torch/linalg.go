package torch

/*
#include "clm_torch.h"
*/
import "C"

// Eigh returns the eigenvalues (ascending) and eigenvectors (columns) of a
// symmetric matrix, from its lower triangle (torch.linalg.eigh).
func (t *Tensor) Eigh() (vals, vecs *Tensor) {
	var v, e C.clm_tensor
	check("linalg_eigh", C.clm_linalg_eigh(t.handle(), &v, &e))
	return newTensor(v), newTensor(e)
}

// QR returns the reduced QR decomposition t = Q·R (torch.linalg.qr).
func (t *Tensor) QR() (q, r *Tensor) {
	var qh, rh C.clm_tensor
	check("linalg_qr", C.clm_linalg_qr(t.handle(), &qh, &rh))
	return newTensor(qh), newTensor(rh)
}

// Sort returns t's values sorted along dim and their int64 indices
// (torch.sort; the order of equal values is not specified).
func (t *Tensor) Sort(dim int, descending bool) (vals, idx *Tensor) {
	var v, i C.clm_tensor
	d := C.int(0)
	if descending {
		d = 1
	}
	check("sort", C.clm_sort(t.handle(), C.int64_t(dim), d, &v, &i))
	return newTensor(v), newTensor(i)
}

// FakeQuantize rounds t to the affine grid of one scale and zero point,
// clamped to [qmin, qmax], and maps it back (torch.fake_quantize_per_tensor_affine;
// its gradient is the straight-through estimator inside the range).
func (t *Tensor) FakeQuantize(scale float64, zeroPoint, qmin, qmax int64) *Tensor {
	return result("fake_quantize_per_tensor_affine",
		C.clm_fake_quantize_per_tensor(t.handle(), C.double(scale), C.int64_t(zeroPoint), C.int64_t(qmin), C.int64_t(qmax)))
}

// FakeQuantizePerChannel is FakeQuantize with a scale (float) and zero
// point (int32 or int64) per slice of t along axis
// (torch.fake_quantize_per_channel_affine).
func (t *Tensor) FakeQuantizePerChannel(scale, zeroPoint *Tensor, axis int, qmin, qmax int64) *Tensor {
	return result("fake_quantize_per_channel_affine",
		C.clm_fake_quantize_per_channel(t.handle(), scale.handle(), zeroPoint.handle(), C.int64_t(axis), C.int64_t(qmin), C.int64_t(qmax)))
}
