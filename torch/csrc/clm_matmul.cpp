// clm_matmul.cpp — float32 matrix products on the CPU by the engine the
// process chose: libtorch's BLAS (MKL in the x86 wheels) or oneDNN's matmul
// primitive (its AVX-512 brgemm kernels, which libtorch carries too). Which
// is faster depends on the CPU's maker, since MKL picks its kernels by it:
// on a 2-core Zen 4 oneDNN is 10–50% faster than MKL's sgemm at every shape
// of a GPT-2 step; on a 2-core Intel Xeon the two are level at the mid size
// and MKL's step is 24–30% faster at the paper's (docs/benchmarks.md;
// torch.AutoCPUMatmul).
//
// clm_set_cpu_matmul chooses once for the process. The linear layers
// (clm_addmm: forward and backward) and the LM head (clm::mm, clm::addmm_ in
// clm_loss.cpp) follow the choice for float32 CPU tensors outside autocast;
// every other product (CUDA, float64, half precision, autocast) is
// libtorch's own call, whatever the choice.
//
// oneDNN is only offered where it computes true float32 products: the probe
// compares it with a float64 product, so a CPU it does not support (no
// AVX-512) or a reduced-precision math mode (ONEDNN_DEFAULT_FPMATH_MODE,
// torch's float32 matmul precision) leaves the BLAS as the only engine.
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "clm_internal.h"
#include "clm_matmul.h"

namespace at::native {
// libtorch_cpu exports it (ATen/native/mkldnn/Matmul.h, not installed with
// the headers): result = beta·result + alpha·mat1·mat2 by oneDNN's matmul
// primitive; mat1 and mat2 contiguous or transposed, else copied.
TORCH_API void mkldnn_matmul(const at::Tensor &mat1, const at::Tensor &mat2, const at::Tensor &result, float beta,
                             float alpha);
}  // namespace at::native

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<int> engine{CLM_MATMUL_BLAS};

// probe_onednn runs oneDNN on one product and holds it to float32: the error
// against float64 must be that of a float32 sum of 256 terms (about 1e-5 of
// the terms' scale), not of bfloat16 or TF32 inputs (1e-3 and worse).
std::string probe_onednn() {
  if (!at::hasMKLDNN()) return "libtorch was built without oneDNN";
  try {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
    auto a = at::randn({64, 256}, gen, at::kFloat), b = at::randn({256, 48}, gen, at::kFloat);
    auto c = at::empty({64, 48}, a.options());
    at::native::mkldnn_matmul(a, b.t().contiguous().t(), c, 0.f, 1.f);
    const double err = (c.to(at::kDouble) - at::mm(a.to(at::kDouble), b.to(at::kDouble))).abs().max().item<double>();
    if (!(err <= 1e-4))
      return "its float32 product is off by " + std::to_string(err) +
             " (a reduced-precision math mode? ONEDNN_DEFAULT_FPMATH_MODE)";
  } catch (const c10::Error &e) {
    return e.what_without_backtrace();
  }
  return "";
}

// onednn_unusable is why oneDNN cannot multiply float32 matrices here, or
// "" where it can; probed once.
const std::string &onednn_unusable() {
  static const std::string why = probe_onednn();
  return why;
}

// by_onednn says whether the product of a and b goes to oneDNN.
bool by_onednn(const at::Tensor &a, const at::Tensor &b) {
  return engine.load(std::memory_order_relaxed) == CLM_MATMUL_ONEDNN && a.device().is_cpu() &&
         a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && a.dim() == 2 && b.dim() == 2 &&
         a.numel() > 0 && b.numel() > 0;
}

// onednn_mm_out is out = beta·out + a·b by oneDNN, recorded for the profiler
// (a plain function call, not an operator libtorch would record).
void onednn_mm_out(const at::Tensor &out, const at::Tensor &a, const at::Tensor &b, float beta) {
  RECORD_FUNCTION("clm::onednn_mm", std::vector<c10::IValue>({a, b}));
  at::native::mkldnn_matmul(a, b, out, beta, 1.f);
}

// Addmm is bias + x·w (torch.addmm, beta = alpha = 1) with every product,
// forward and backward, by oneDNN: x [N, in], w [in, out], bias broadcast
// to [N, out]. The gradients are torch.addmm's: g·wᵀ, xᵀ·g and g summed to
// the bias's shape.
struct Addmm : public torch::autograd::Function<Addmm> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &bias, const at::Tensor &x, const at::Tensor &w) {
    // A fresh buffer: contiguous() of an [N, out] bias would be the bias
    // itself, and the product is added into y in place.
    auto y = bias.expand({x.size(0), w.size(1)}).clone(at::MemoryFormat::Contiguous);
    onednn_mm_out(y, x, w, 1.f);
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias_sizes"] = bias.sizes();
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &g = grads[0];
    at::Tensor gb, gx, gw;
    if (ctx->needs_input_grad(0)) gb = at::sum_to(g, ctx->saved_data["bias_sizes"].toIntVector());
    if (ctx->needs_input_grad(1)) gx = clm::mm(g, w.t());
    if (ctx->needs_input_grad(2)) gw = clm::mm(x.t(), g);
    return {gb, gx, gw};
  }
};

}  // namespace

namespace clm {

at::Tensor mm(const at::Tensor &a, const at::Tensor &b) {
  if (!by_onednn(a, b)) return at::mm(a, b);
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  onednn_mm_out(out, a, b, 0.f);
  return out;
}

void addmm_(at::Tensor &c, const at::Tensor &a, const at::Tensor &b) {
  if (by_onednn(a, b) && c.scalar_type() == at::kFloat && c.is_contiguous())
    onednn_mm_out(c, a, b, 1.f);
  else
    c.addmm_(a, b);
}

}  // namespace clm

extern "C" {

char *clm_cpu_matmul_onednn_unusable(void) {
  const auto &why = onednn_unusable();
  return why.empty() ? nullptr : clm::dup(why);
}

int clm_mkl_on_intel(void) {
#if defined(__x86_64__) || defined(__i386__)
  return at::hasMKL() && __builtin_cpu_is("intel") ? 1 : 0;
#else
  return 0;
#endif
}

char *clm_set_cpu_matmul(int e) {
  return clm::guard([&] {
    switch (e) {
      case CLM_MATMUL_BLAS: break;
      case CLM_MATMUL_ONEDNN:
        if (!onednn_unusable().empty())
          throw std::invalid_argument("oneDNN cannot multiply float32 matrices here: " + onednn_unusable());
        break;
      default: throw std::invalid_argument("unknown CPU matmul engine " + std::to_string(e));
    }
    engine.store(e);
  });
}

int clm_get_cpu_matmul(void) { return engine.load(); }

clm_tresult clm_addmm(clm_tensor hb, clm_tensor ha, clm_tensor hw) {
  return clm::tresult([&] {
    const auto &bias = clm::T(hb), &a = clm::T(ha), &b = clm::T(hw);
    if (by_onednn(a, b) && bias.scalar_type() == at::kFloat && !clm::autocast_on(at::kCPU)) return Addmm::apply(bias, a, b);
    return at::addmm(bias, a, b);
  });
}

}  // extern "C"
