// clm_fused_act_cuda.h — the CUDA kernels of clm_fused_act.cpp (leaky ReLU,
// RMSNorm), compiled by nvcc from clm_fused_act.cu only in a shim built with
// CLM_WITH_CUDA_KERNELS. Not part of the C interface.
//
// The interface is raw pointers and dtype codes, so that the .cu includes
// only CUDA's own headers (fast to compile, no libtorch ABI in nvcc): the
// caller allocates every buffer (libtorch's caching allocator), passes
// contiguous data and its current stream. Errors are thrown as
// std::runtime_error (caught by clm::guard on the C++ side).
#ifndef CLM_FUSED_ACT_CUDA_H
#define CLM_FUSED_ACT_CUDA_H

#include <cstdint>

namespace clm {
namespace fused_cuda {

// Element types; the arithmetic type of each is float, or double for kF64.
enum Dtype : int { kF32 = 0, kF64 = 1, kBF16 = 2, kF16 = 3 };

// Rows per partial sum of RMSNorm's scale gradient (at least; more when the
// rows would need more than 65535 chunks): a fixed chunking, so the sum is
// the same on every run.
constexpr int64_t kRMSRowChunk = 32;

// y = x >= 0 ? x : slope·x over n elements of type dt.
void leaky_forward(int dt, const void *x, void *y, int64_t n, double slope, void *stream);
// dx = c >= 0 ? g : slope·g, where c is the saved x, or y when slope > 0.
void leaky_backward(int dt, const void *g, const void *c, void *dx, int64_t n, double slope, void *stream);

// y[r, j] = w[j] · (x[r, j] / (sqrt(Σ_j x[r, j]²)·c + eps)); x is [rows, d]
// of type xdt, y of type odt (xdt, or kF32 for a 16-bit xdt), w of x's
// arithmetic type.
void rms_forward(int xdt, int odt, const void *x, const void *w, void *y, int64_t rows, int64_t d, double c,
                 double eps, void *stream);
// The gradients for g of type odt: dx (type xdt; nullptr: not wanted) and
// dw (arithmetic type; nullptr: not wanted). scratch_a holds rows arithmetic
// values; scratch_partial holds rms_partials(rows) · d of them.
void rms_backward(int xdt, int odt, const void *g, const void *x, const void *w, void *dx, void *dw,
                  void *scratch_a, void *scratch_partial, int64_t rows, int64_t d, double c, double eps,
                  void *stream);
// The rows of one chunk, and the number of chunks, that rms_backward sums
// the scale gradient over.
inline int64_t rms_chunk(int64_t rows) {
  int64_t c = (rows + 65534) / 65535;
  return c > kRMSRowChunk ? c : kRMSRowChunk;
}
inline int64_t rms_partials(int64_t rows) { return (rows + rms_chunk(rows) - 1) / rms_chunk(rows); }

}  // namespace fused_cuda
}  // namespace clm

#endif
