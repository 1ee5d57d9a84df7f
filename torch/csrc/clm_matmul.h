// clm_matmul.h — the matrix products that follow the process's CPU matmul
// engine (clm_matmul.cpp; clm_set_cpu_matmul in clm_torch.h). For use
// inside autograd functions and no-grad code: a product by oneDNN records
// no autograd history.
#ifndef CLM_MATMUL_H
#define CLM_MATMUL_H

#include <ATen/core/Tensor.h>

namespace clm {

// mm is a·b for matrices a [n, k], b [k, m].
at::Tensor mm(const at::Tensor &a, const at::Tensor &b);

// addmm_ is c += a·b in place.
void addmm_(at::Tensor &c, const at::Tensor &a, const at::Tensor &b);

}  // namespace clm

#endif
