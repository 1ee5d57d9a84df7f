// clm_fused_attention.cpp — causal attention softmax(Q·Kᵀ·scale)·V on the CPU
// in float32, for clm_fused_causal_attention (clm_fused.h).
//
// libtorch's CPU flash attention computes, for every block of 32 queries,
// the scores against all T keys (the causal mask only fills the upper
// triangle with −inf), and its small products scale poorly with threads. This
// one works slice by slice ([T, D] of one sequence and head; the slices in
// at::parallel_for): the queries in blocks of kBlock rows, each against the
// keys up to its last row only, by libtorch's BLAS (sgemm_, MKL in the x86
// wheels), and the softmax by rows in the loops of clm_rows.h (vectorised for
// the instruction set libtorch runs). Like the flash kernel it keeps O and the
// log-sum-exp L of each row, and the backward pass recomputes P = exp(S − L)
// block by block:
//
//	dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dO ⊙ O)),
//	dQ = scale·dS·K,  dK = scale·dSᵀ·Q.
//
// A slice's arithmetic does not depend on the thread count or on the other
// slices: the results are the same bits at any train.threads. Each slice's
// products run on one thread, inside the parallel region, and by MKL's
// thread-local setting (OneBLASThread) also for a single slice, B·H = 1,
// which ATen runs outside the region. The row loops compute the same bits
// for every instruction set (clm_rows.h); the products are the BLAS's.
//
// Anything else (CUDA, float64 or 16-bit types, a libtorch without sgemm_)
// goes to at::scaled_dot_product_attention, which computes the same function.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <vector>

#include "clm_fused.h"
#include "clm_internal.h"
#include "clm_rows.h"

// The Fortran BLAS of libtorch_cpu (the x86 wheels export MKL's): weak, so
// that a libtorch without it loads the shim and takes SDPA instead.
extern "C" void sgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                       const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
                       const float *beta, float *c, const int *ldc) __attribute__((weak));
// MKL's thread count for the calling thread (0: its global one), where the
// BLAS is MKL; the C interface (the lower-case name is Fortran's, by pointer).
extern "C" int MKL_Set_Num_Threads_Local(int nt) __attribute__((weak));

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Query rows per block: a block's scores stop at its last row's key. 64 of
// 128 positions skip a quarter of the products; smaller blocks make the
// BLAS calls too small to pay.
constexpr int64_t kBlock = 64;

// OneBLASThread runs the BLAS calls of its scope on the calling thread
// alone: a slice's products are the same bits whatever the thread count.
struct OneBLASThread {
  int prev = 0;
  OneBLASThread() {
    if (MKL_Set_Num_Threads_Local != nullptr) prev = MKL_Set_Num_Threads_Local(1);
  }
  ~OneBLASThread() {
    if (MKL_Set_Num_Threads_Local != nullptr) MKL_Set_Num_Threads_Local(prev);
  }
  OneBLASThread(const OneBLASThread &) = delete;
  OneBLASThread &operator=(const OneBLASThread &) = delete;
};

// gemm is the row-major C[m×n] = alpha·op(A)·op(B) (op: transposed or not;
// ld: row strides) by the column-major BLAS, which sees each matrix
// transposed: Cᵀ = op(B)ᵀ·op(A)ᵀ.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
          int64_t ldb, float *c, int64_t ldc) {
  const char opb = tb ? 'T' : 'N', opa = ta ? 'T' : 'N';
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  const float beta = 0.f;
  sgemm_(&opb, &opa, &M, &N, &K, &alpha, b, &la, a, &lb, &beta, c, &lc);
}

// Heads is a [B, H, T, D] float tensor with unit stride in D, read slice by
// slice: row t of slice (b, h) starts at at(b, h) + t·ld.
struct Heads {
  float *p;
  int64_t sb, sh, ld, H;
  explicit Heads(const at::Tensor &t)
      : p(t.data_ptr<float>()), sb(t.stride(0)), sh(t.stride(1)), ld(t.stride(2)), H(t.size(1)) {}
  float *at(int64_t slice) const { return p + (slice / H) * sb + (slice % H) * sh; }
};

// rows is the [B, H, T, D] layout the kernels read: unit stride in D, rows
// apart by at least D (else a contiguous copy).
at::Tensor rows(const at::Tensor &t) {
  const int64_t D = t.size(3);
  return t.stride(3) == 1 && t.stride(2) >= D && t.stride(2) < INT_MAX ? t : t.contiguous();
}

// heads_like is an empty [B, H, T, D] in SDPA's output layout: a view of
// [B, T, H, D], so that merging the heads needs no copy.
at::Tensor heads_like(const at::Tensor &q) {
  return at::empty({q.size(0), q.size(2), q.size(1), q.size(3)}, q.options()).transpose(1, 2);
}

float scale_of(int64_t D) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))); }

// forward_slices fills o and lse ([B·H, T]) for q, k, v.
void forward_slices(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor &o,
                    const at::Tensor &lse) {
  const int64_t BH = q.size(0) * q.size(1), T = q.size(2), D = q.size(3);
  const float scale = scale_of(D);
  const Heads Q(q), K(k), V(v), O(o);
  float *L = lse.data_ptr<float>();
  const clm::RowKernels &rk = clm::row_kernels();
  at::parallel_for(0, BH, 1, [&](int64_t s0, int64_t s1) {
    const OneBLASThread one;
    std::vector<float> buf(static_cast<size_t>(kBlock * T));
    float *S = buf.data();
    for (int64_t s = s0; s < s1; ++s)
      for (int64_t r0 = 0; r0 < T; r0 += kBlock) {
        const int64_t rows = std::min(kBlock, T - r0), keys = r0 + rows;
        gemm(false, true, rows, keys, D, scale, Q.at(s) + r0 * Q.ld, Q.ld, K.at(s), K.ld, S, keys);
        for (int64_t i = 0; i < rows; ++i) {
          float *row = S + i * keys;
          L[s * T + r0 + i] = rk.softmax_row(row, r0 + i + 1);
          std::fill(row + r0 + i + 1, row + keys, 0.f);  // the causal mask
        }
        gemm(false, false, rows, D, keys, 1.f, S, keys, V.at(s), V.ld, O.at(s) + r0 * O.ld, O.ld);
      }
  });
}

// backward_slices fills dq, dk, dv from the saved q, k, v, o, lse and the
// output's gradient g.
void backward_slices(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor &o,
                     const at::Tensor &lse, const at::Tensor &g, const at::Tensor &dq, const at::Tensor &dk,
                     const at::Tensor &dv) {
  const int64_t BH = q.size(0) * q.size(1), T = q.size(2), D = q.size(3);
  const float scale = scale_of(D);
  const Heads Q(q), K(k), V(v), O(o), G(g), dQ(dq), dK(dk), dV(dv);
  const float *L = lse.data_ptr<float>();
  const clm::RowKernels &rk = clm::row_kernels();
  at::parallel_for(0, BH, 1, [&](int64_t s0, int64_t s1) {
    const OneBLASThread one;
    std::vector<float> buf(static_cast<size_t>(2 * T * T + T));
    float *P = buf.data(), *dS = P + T * T, *delta = dS + T * T;
    for (int64_t s = s0; s < s1; ++s) {
      for (int64_t i = 0; i < T; ++i) delta[i] = rk.dot(G.at(s) + i * G.ld, O.at(s) + i * O.ld, D);
      for (int64_t r0 = 0; r0 < T; r0 += kBlock) {
        const int64_t rows = std::min(kBlock, T - r0), keys = r0 + rows;
        float *Pb = P + r0 * T, *dSb = dS + r0 * T;
        gemm(false, true, rows, keys, D, scale, Q.at(s) + r0 * Q.ld, Q.ld, K.at(s), K.ld, Pb, T);
        gemm(false, true, rows, keys, D, 1.f, G.at(s) + r0 * G.ld, G.ld, V.at(s), V.ld, dSb, T);
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t n = r0 + i + 1;
          rk.grad_row(Pb + i * T, dSb + i * T, n, L[s * T + r0 + i], delta[r0 + i]);
          std::fill(Pb + i * T + n, Pb + i * T + keys, 0.f);  // the causal mask
          std::fill(dSb + i * T + n, dSb + i * T + keys, 0.f);
        }
        gemm(false, false, rows, D, keys, scale, dSb, T, K.at(s), K.ld, dQ.at(s) + r0 * dQ.ld, dQ.ld);
      }
      // Key block c0 meets the queries from c0 on; every row block there
      // reached its columns (the blocks are aligned).
      for (int64_t c0 = 0; c0 < T; c0 += kBlock) {
        const int64_t cols = std::min(kBlock, T - c0), n = T - c0;
        gemm(true, false, cols, D, n, 1.f, P + c0 * T + c0, T, G.at(s) + c0 * G.ld, G.ld, dV.at(s) + c0 * dV.ld,
             dV.ld);
        gemm(true, false, cols, D, n, scale, dS + c0 * T + c0, T, Q.at(s) + c0 * Q.ld, Q.ld, dK.at(s) + c0 * dK.ld,
             dK.ld);
      }
    }
  });
}

// CausalAttention is the autograd node; it keeps q, k, v, the output and L,
// as libtorch's flash attention does.
struct CausalAttention : public torch::autograd::Function<CausalAttention> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &q0, const at::Tensor &k0, const at::Tensor &v0) {
    // Recorded for the profiler: a custom function's forward is no operator.
    RECORD_FUNCTION("clm::causal_attention", std::vector<c10::IValue>({q0, k0, v0}));
    const at::Tensor q = rows(q0), k = rows(k0), v = rows(v0);
    at::Tensor o = heads_like(q), lse = at::empty({q.size(0), q.size(1), q.size(2)}, q.options());
    forward_slices(q, k, v, o, lse);
    ctx->save_for_backward({q, k, v, o, lse});
    return o;
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    if (!grads[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const at::Tensor &q = saved[0];
    at::Tensor dq = heads_like(q), dk = heads_like(q), dv = heads_like(q);
    backward_slices(q, saved[1], saved[2], saved[3], saved[4], rows(grads[0]), dq, dk, dv);
    return {dq, dk, dv};
  }
};

// fused_path says whether q, k, v take the kernels above: float32 CPU
// tensors of one [B, H, T, D] shape, rows that fit the BLAS's int, and a
// libtorch that exports sgemm_.
bool fused_path(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v) {
  if (sgemm_ == nullptr) return false;
  for (const at::Tensor *t : {&q, &k, &v})
    if (!t->defined() || !t->is_cpu() || t->scalar_type() != at::kFloat || t->dim() != 4 || t->sizes() != q.sizes())
      return false;
  return q.numel() > 0 && q.size(2) <= 46340 && q.size(3) < INT_MAX;  // T² fits an int
}

}  // namespace

extern "C" {

clm_tresult clm_fused_causal_attention(clm_tensor q, clm_tensor k, clm_tensor v) {
  return clm::tresult([&] {
    const at::Tensor &Q = clm::T(q), &K = clm::T(k), &V = clm::T(v);
    if (!fused_path(Q, K, V)) return at::scaled_dot_product_attention(Q, K, V, c10::nullopt, 0.0, true);
    return CausalAttention::apply(Q, K, V);
  });
}

int clm_fused_causal_attention_native(void) { return sgemm_ != nullptr ? 1 : 0; }

const char *clm_fused_attention_isa(void) { return clm::row_kernels().isa; }

int clm_fused_attention_use_isa(const char *isa) { return clm::use_row_kernels(isa) ? 1 : 0; }

}  // extern "C"
