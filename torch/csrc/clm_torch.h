/*
 * clm_torch.h — the pure C interface of clm's libtorch shim.
 *
 * Rules every entry point follows:
 *  - Tensors cross the boundary as opaque handles (clm_tensor). Every handle
 *    a function returns is new and owned by the caller, who frees it with
 *    clm_tensor_free. Handles passed in are borrowed.
 *  - No C++ exception ever crosses this interface: each function catches
 *    c10::Error, std::exception and anything else, and returns the message
 *    by value (err != NULL) together with the result. The caller frees the
 *    message with clm_free_string. Nothing is kept in thread-local storage.
 *  - dtype codes are c10::ScalarType values; device codes are -1 for the CPU
 *    and the CUDA ordinal (0, 1, ...) otherwise.
 */
#ifndef CLM_TORCH_H
#define CLM_TORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clm_tensor_s *clm_tensor;
typedef struct clm_adamw_s *clm_adamw;

/* A tensor result: t is NULL when err is set. */
typedef struct { clm_tensor t; char *err; } clm_tresult;
/* A scalar result. */
typedef struct { double v; char *err; } clm_dresult;
typedef struct { int64_t v; char *err; } clm_iresult;

void clm_free_string(char *s);
void clm_tensor_free(clm_tensor t);

/* ---- library ---------------------------------------------------------- */
/* Writes a NUL-terminated description of the build ("torch=2.15.0
 * cuda_build=0 ...") into buf (at most n bytes). */
void clm_capabilities(char *buf, size_t n);
/* A report of the build and the machine for `clm version`: "key=value"
 * lines (the shim's and libtorch's files, libtorch's and CUDA's versions,
 * cuDNN, the devices seen and why none, the thread count). The caller frees
 * *out with clm_free_string. */
char *clm_build_report(char **out);
/* libtorch's profiler (Kineto) on the calling thread: clm_profiler_start
 * records the CPU ops (and, with cuda, the CUDA kernels) until
 * clm_profiler_stop, which writes the Chrome trace to trace_path (none when
 * it is empty) and returns the events in *out, one per line:
 * name TAB start_ns TAB duration_ns TAB thread TAB device ("cpu"/"cuda").
 * The caller frees *out with clm_free_string. */
char *clm_profiler_start(int cuda);
char *clm_profiler_stop(const char *trace_path, char **out);
char *clm_set_num_threads(int n);
int clm_get_num_threads(void);
/* The engine of float32 matrix products on the CPU (clm_matmul.cpp):
   libtorch's BLAS, the default, or oneDNN's matmul primitive. */
#define CLM_MATMUL_BLAS 0
#define CLM_MATMUL_ONEDNN 1
/* Why oneDNN cannot be the engine here (malloc'd, freed with
   clm_free_string), or NULL where it can; probed once per process. */
char *clm_cpu_matmul_onednn_unusable(void);
/* 1 where libtorch's BLAS is MKL and the CPU is Intel's, else 0. */
int clm_mkl_on_intel(void);
char *clm_set_cpu_matmul(int engine);
int clm_get_cpu_matmul(void);
int clm_cuda_is_available(void);
int clm_cuda_device_count(void);
char *clm_synchronize(int device);
char *clm_manual_seed(uint64_t seed);
/* The default generator's state of a device as a uint8 CPU tensor, and back. */
clm_tresult clm_rng_state(int device);
char *clm_set_rng_state(int device, clm_tensor state);
/* CUDA caching-allocator statistics in bytes (allocated now, peak), and reset. */
char *clm_cuda_memory(int device, int64_t *allocated, int64_t *peak);
char *clm_cuda_reset_peak(int device);
/* The device's free and total memory (cudaMemGetInfo) and the bytes that
 * libtorch's caching allocator holds on it (reserved, part of the used). */
char *clm_cuda_mem_info(int device, int64_t *free_bytes, int64_t *total_bytes, int64_t *reserved);
/* Returns the caching allocator's unused blocks to the device. */
char *clm_cuda_empty_cache(void);

/* ---- grad mode and autocast (thread-local in libtorch) ---------------- */
int clm_grad_enabled(void);
void clm_set_grad_enabled(int enabled);
/* Turns autocast on for device_type (0 CPU, 1 CUDA) with dtype; returns the
 * previous enabled flag. clm_autocast_exit restores it. */
clm_iresult clm_autocast_enter(int device_type, int dtype);
char *clm_autocast_exit(int device_type, int prev_enabled);

/* ---- creation and data ------------------------------------------------ */
/* Copies nbytes from data into a new tensor of shape/dtype on device. */
clm_tresult clm_from_data(const void *data, size_t nbytes, const int64_t *shape, int ndim, int dtype, int device);
/* Copies t (any device, any layout) into dst as contiguous values of t's dtype. */
char *clm_copy_to(clm_tensor t, void *dst, size_t nbytes);
clm_tresult clm_full(const int64_t *shape, int ndim, double value, int dtype, int device);
clm_tresult clm_arange(double start, double end, double step, int dtype, int device);
clm_tresult clm_eye(int64_t n, int64_t m, int dtype, int device);
clm_tresult clm_randn(const int64_t *shape, int ndim, int dtype, int device);
clm_tresult clm_rand(const int64_t *shape, int ndim, int dtype, int device);

/* ---- metadata --------------------------------------------------------- */
int clm_dim(clm_tensor t);
/* Fills shape[0..dim) with the sizes. */
void clm_shape(clm_tensor t, int64_t *shape);
int clm_dtype(clm_tensor t);
int clm_device(clm_tensor t);
int64_t clm_numel(clm_tensor t);
int clm_requires_grad(clm_tensor t);
int clm_defined(clm_tensor t);
clm_dresult clm_item(clm_tensor t);

/* ---- in place (no autograd history; used for init and optimizers) ---- */
char *clm_normal_(clm_tensor t, double mean, double std);
char *clm_uniform_(clm_tensor t, double a, double b);
char *clm_orthogonal_(clm_tensor t, double gain);
char *clm_copy_(clm_tensor dst, clm_tensor src);
char *clm_fill_(clm_tensor t, double value);
char *clm_mul_scalar_(clm_tensor t, double s);
char *clm_add_(clm_tensor t, clm_tensor other, double alpha);
/* t ← t + weight·(end − t) (Tensor.lerp_ with a scalar weight). */
char *clm_lerp_(clm_tensor t, clm_tensor end, double weight);
char *clm_set_requires_grad(clm_tensor t, int flag);

/* ---- ops with autograd ------------------------------------------------ */
/* Unary ops by code; see CLM_UNARY_* below. */
clm_tresult clm_unary(int op, clm_tensor a);
/* Binary tensor ops by code; see CLM_BINARY_*. */
clm_tresult clm_binary(int op, clm_tensor a, clm_tensor b);
/* Tensor-scalar ops by code; see CLM_SCALAR_*. */
clm_tresult clm_scalar(int op, clm_tensor a, double s);
clm_tresult clm_where(clm_tensor cond, clm_tensor a, clm_tensor b);
/* bias + a·b (torch.addmm), by the CPU matmul engine for float32 CPU
   tensors outside autocast (clm_set_cpu_matmul). */
clm_tresult clm_addmm(clm_tensor bias, clm_tensor a, clm_tensor b);
/* beta·bias + alpha·a·b (torch.addmm with beta and alpha). */
clm_tresult clm_addmm_scaled(clm_tensor bias, clm_tensor a, clm_tensor b, double beta, double alpha);
/* a + weight·(end − a) (torch.lerp with a scalar weight). */
clm_tresult clm_lerp(clm_tensor a, clm_tensor end, double weight);
clm_tresult clm_linear(clm_tensor x, clm_tensor w, clm_tensor bias /* nullable */);
clm_tresult clm_embedding(clm_tensor weight, clm_tensor indices);
clm_tresult clm_softmax(clm_tensor a, int64_t dim);
clm_tresult clm_log_softmax(clm_tensor a, int64_t dim);
clm_tresult clm_gelu(clm_tensor a, int tanh_approx);
clm_tresult clm_leaky_relu(clm_tensor a, double slope);
clm_tresult clm_layer_norm(clm_tensor x, const int64_t *shape, int ndim, clm_tensor w, clm_tensor b, double eps);
clm_tresult clm_dropout(clm_tensor a, double p, int train);
/* Cross-entropy of logits [N, C] and int64 targets [N]; reduction 0 none,
 * 1 mean, 2 sum. */
clm_tresult clm_cross_entropy(clm_tensor logits, clm_tensor target, int64_t ignore_index, int reduction);
/* Fused attention where libtorch has it (>= 2.0), otherwise the materialised
 * softmax(q kᵀ·scale + mask) v. scale <= 0 means 1/sqrt(head_dim). */
clm_tresult clm_sdpa(clm_tensor q, clm_tensor k, clm_tensor v, clm_tensor mask /* nullable */, double dropout, int causal, double scale);

/* Reductions over dims (ndims == 0: all dims). */
clm_tresult clm_sum(clm_tensor a, const int64_t *dims, int ndims, int keepdim);
clm_tresult clm_mean(clm_tensor a, const int64_t *dims, int ndims, int keepdim);
clm_tresult clm_var(clm_tensor a, const int64_t *dims, int ndims, int64_t correction, int keepdim);
clm_tresult clm_norm(clm_tensor a, double p, const int64_t *dims, int ndims, int keepdim);
clm_tresult clm_amax(clm_tensor a, const int64_t *dims, int ndims, int keepdim);
/* Values of max / (lower) median along dim; dim == INT64_MIN: over all. */
clm_tresult clm_max(clm_tensor a, int64_t dim, int keepdim);
clm_tresult clm_median(clm_tensor a, int64_t dim, int keepdim);
clm_tresult clm_cumsum(clm_tensor a, int64_t dim);

/* Shapes and views. */
clm_tresult clm_reshape(clm_tensor a, const int64_t *shape, int ndim);
clm_tresult clm_view(clm_tensor a, const int64_t *shape, int ndim);
clm_tresult clm_expand(clm_tensor a, const int64_t *shape, int ndim);
clm_tresult clm_permute(clm_tensor a, const int64_t *dims, int ndim);
clm_tresult clm_transpose(clm_tensor a, int64_t d0, int64_t d1);
clm_tresult clm_unsqueeze(clm_tensor a, int64_t dim);
clm_tresult clm_squeeze(clm_tensor a, int64_t dim);
clm_tresult clm_narrow(clm_tensor a, int64_t dim, int64_t start, int64_t length);
clm_tresult clm_index_select(clm_tensor a, int64_t dim, clm_tensor index);
clm_tresult clm_cat(const clm_tensor *ts, int n, int64_t dim);
clm_tresult clm_stack(const clm_tensor *ts, int n, int64_t dim);
/* Splits a into chunks of size along dim; writes up to cap handles into out
 * and the number of chunks into *n. */
char *clm_split(clm_tensor a, int64_t size, int64_t dim, clm_tensor *out, int cap, int *n);

/* ---- linear algebra and quantisation (the outlier-features study) ---- */
/* Eigen-decomposition of a symmetric matrix (lower triangle): eigenvalues
 * ascending and the eigenvectors as columns (torch.linalg.eigh). */
char *clm_linalg_eigh(clm_tensor a, clm_tensor *vals, clm_tensor *vecs);
/* Reduced QR decomposition (torch.linalg.qr, mode "reduced"). */
char *clm_linalg_qr(clm_tensor a, clm_tensor *q, clm_tensor *r);
/* Sorted values and their int64 indices along dim (torch.sort). */
char *clm_sort(clm_tensor a, int64_t dim, int descending, clm_tensor *vals, clm_tensor *idx);
/* torch.fake_quantize_per_tensor_affine with a float scale and int zero point. */
clm_tresult clm_fake_quantize_per_tensor(clm_tensor a, double scale, int64_t zero_point, int64_t qmin, int64_t qmax);
/* torch.fake_quantize_per_channel_affine: scale (float) and zero_point (int32
 * or int64) have one entry per slice along axis. */
clm_tresult clm_fake_quantize_per_channel(clm_tensor a, clm_tensor scale, clm_tensor zero_point, int64_t axis,
                                          int64_t qmin, int64_t qmax);
clm_tresult clm_tril(clm_tensor a, int64_t k);
clm_tresult clm_triu(clm_tensor a, int64_t k);
clm_tresult clm_masked_fill(clm_tensor a, clm_tensor mask, double value);
clm_tresult clm_to(clm_tensor a, int dtype, int device);
/* A CPU tensor copied to a CUDA device through pinned memory, without making
 * the host wait for the device (as .pin_memory().to(device, non_blocking)). */
clm_tresult clm_upload(clm_tensor a, int device);

/* ---- autograd --------------------------------------------------------- */
/* Backward from a scalar (grad NULL) or with an explicit output gradient. */
char *clm_backward(clm_tensor t, clm_tensor grad /* nullable */);
/* The gradient of t, or t == NULL (no error) when it has none. */
clm_tresult clm_grad(clm_tensor t);
char *clm_set_grad_none(clm_tensor t);
/* t.grad ← g (a copy) when t has no gradient, else t.grad += g: autograd's
 * AccumulateGrad, for a gradient computed apart from the graph. */
char *clm_accumulate_grad(clm_tensor t, clm_tensor g);
/* Scales the gradients of ts so that their global p-norm is at most
 * max_norm, as torch.nn.utils.clip_grad_norm_; returns the total norm as a
 * 0-d tensor (no host synchronisation). */
clm_tresult clm_clip_grad_norm(const clm_tensor *ts, int n, double max_norm, double p);

/* ---- AdamW ------------------------------------------------------------ */
/* flavour 0: torch.optim.AdamW; 1: transformers' AdamW ("adamw_hf"). */
clm_adamw clm_adamw_new(int flavour, double beta1, double beta2, double eps);
void clm_adamw_free(clm_adamw o);
/* Adds a group of parameters (borrowed handles; the optimizer keeps its own
 * references) and returns its index. */
clm_iresult clm_adamw_add_group(clm_adamw o, const clm_tensor *params, int n, double lr, double weight_decay);
char *clm_adamw_set_lr(clm_adamw o, int group, double lr);
char *clm_adamw_step(clm_adamw o);
/* State of parameter i of group g: which 0 = exp_avg, 1 = exp_avg_sq; the
 * result handle is NULL before the parameter's first step. */
clm_tresult clm_adamw_state(clm_adamw o, int g, int i, int which);
clm_iresult clm_adamw_steps(clm_adamw o, int g, int i);
/* Replaces the state of parameter i of group g (values are copied). */
char *clm_adamw_set_state(clm_adamw o, int g, int i, clm_tensor exp_avg, clm_tensor exp_avg_sq, int64_t steps);

/* ---- CPU caching allocator (clm_alloc.cpp) ----------------------------- */
/* Whether CPU tensors come from the caching allocator (CLM_CPU_CACHE_MB). */
int clm_cpu_cache_enabled(void);
/* Bytes held in free lists, allocations served from / past the cache, and
 * blocks given back to make room for a miss. */
void clm_cpu_cache_stats(int64_t *cached_bytes, int64_t *hits, int64_t *misses, int64_t *evicted);
/* Returns every cached block to the system. */
void clm_cpu_cache_empty(void);
/* Returns the blocks that no allocation took since the previous trim. */
void clm_cpu_cache_trim(void);

/* Codes for clm_unary. */
enum {
  CLM_UNARY_NEG, CLM_UNARY_EXP, CLM_UNARY_LOG, CLM_UNARY_SQRT, CLM_UNARY_RSQRT,
  CLM_UNARY_TANH, CLM_UNARY_RELU, CLM_UNARY_SIGMOID, CLM_UNARY_ABS, CLM_UNARY_SIGN,
  CLM_UNARY_SQUARE, CLM_UNARY_CONTIGUOUS, CLM_UNARY_CLONE, CLM_UNARY_DETACH,
  CLM_UNARY_T, CLM_UNARY_LOGICAL_NOT, CLM_UNARY_COUNT
};
/* Codes for clm_binary. */
enum {
  CLM_BINARY_ADD, CLM_BINARY_SUB, CLM_BINARY_MUL, CLM_BINARY_DIV, CLM_BINARY_MATMUL,
  CLM_BINARY_MAXIMUM, CLM_BINARY_MINIMUM, CLM_BINARY_EQ, CLM_BINARY_NE, CLM_BINARY_LT,
  CLM_BINARY_LE, CLM_BINARY_GT, CLM_BINARY_GE, CLM_BINARY_POW, CLM_BINARY_COUNT
};
/* Codes for clm_scalar. */
enum {
  CLM_SCALAR_ADD, CLM_SCALAR_MUL, CLM_SCALAR_DIV, CLM_SCALAR_POW, CLM_SCALAR_RSUB,
  CLM_SCALAR_EQ, CLM_SCALAR_NE, CLM_SCALAR_LT, CLM_SCALAR_LE, CLM_SCALAR_GT, CLM_SCALAR_GE,
  CLM_SCALAR_CLAMP_MIN, CLM_SCALAR_CLAMP_MAX, CLM_SCALAR_COUNT
};

/* ---- AdamW step modes -------------------------------------------------- */
/* How clm_adamw_step runs: 0 loop (one parameter at a time), 1 foreach
 * (libtorch's multi-tensor _foreach_ ops; bitwise the loop's result on the
 * CPU), 2 auto (foreach for parameters on CUDA, the loop elsewhere; the
 * default), 3 fused (at::_fused_adamw_, flavour 0 only; within 1e-6 of the
 * loop, not bitwise), 4 graph (every per-step value in device tensors, so
 * that a CUDA graph can capture the update; see clm_optim.cpp). An error for
 * an unknown mode, fused with flavour 1, or fused where libtorch lacks it. */
char *clm_adamw_set_foreach(clm_adamw o, int mode);
int clm_adamw_foreach(clm_adamw o);
/* The graph mode's two halves of clm_adamw_step: prepare advances the step
 * counts and writes the step's scalars to the device; apply launches the
 * update, reading back nothing. */
char *clm_adamw_prepare(clm_adamw o);
char *clm_adamw_apply(clm_adamw o);

/* ---- CUDA graphs ------------------------------------------------------- */
/* at::cuda::CUDAGraph. clm_graph_begin synchronises device, makes a side
 * stream current on the calling thread and begins capturing on it;
 * clm_graph_end ends the capture and restores the thread's stream (both on
 * the same OS thread). replay launches the captured work on the current
 * stream. free ends a capture still under way. An error without CUDA. */
typedef struct clm_graph_s *clm_graph;
char *clm_graph_begin(int device, clm_graph *out);
char *clm_graph_end(clm_graph g);
char *clm_graph_replay(clm_graph g);
void clm_graph_free(clm_graph g);
/* Whether this libtorch has _fused_adamw_ for device (-1 CPU, >= 0 CUDA). */
int clm_adamw_has_fused(int device);

/* ---- memory-lean losses ------------------------------------------------ */
/* Mean cross-entropy of logits h·wᵀ (h [N, d], w [V, d], int64 target [N])
 * over targets != ignore_index, computed chunk rows at a time so that at most
 * [chunk, V] logits exist at once in forward and backward. Gradients flow to
 * h and w. Logits are evaluated in float32 for float16/bfloat16 inputs (and
 * under autocast), float64 for float64; the loss is float32 for half inputs,
 * the inputs' dtype otherwise. All targets ignored: NaN loss and zero
 * gradients, as PyTorch's cross_entropy. */
clm_tresult clm_linear_cross_entropy(clm_tensor h, clm_tensor w, clm_tensor target, int64_t ignore_index, int64_t chunk);

/* ---- distributed: c10d process groups (clm_dist.cpp) ------------------- */
/* A process group over a c10d TCPStore (hosted by rank 0 at
 * master_addr:master_port; the other ranks connect to it) and one backend:
 * "gloo" (CPU tensors) or "nccl" (CUDA tensors; only in shims built with CUDA
 * and NCCL's headers). Collectives block until done, waiting at most the
 * group's timeout, and return errors by value: a peer that died or timed
 * out gives an error, never a hang or an abort. After a failed collective
 * every later one on the group fails too (the ranks no longer agree).
 * Lists of tensors are bucketed: one flattened buffer and one collective per
 * (device, dtype), results copied back. */
typedef struct clm_pg_s *clm_pg;
/* Bits of clm_dist_backends: the backends this shim can create. */
enum { CLM_DIST_GLOO = 1, CLM_DIST_NCCL = 2 };
/* Codes for clm_pg_allreduce. AVG (floating dtypes only) sums, then divides
 * by the world size. */
enum { CLM_REDUCE_SUM = 0, CLM_REDUCE_AVG = 1 };
int clm_dist_backends(void);
/* Joins the group (blocking until every rank has, or timeout_ms passed).
 * Returns NULL and sets *err on failure. Gloo binds to the interfaces named
 * by GLOO_SOCKET_IFNAME, else to master_addr when it is a loopback address,
 * else to the address of this machine's hostname. */
clm_pg clm_pg_new(int rank, int world, const char *master_addr, int master_port, const char *backend,
                  int64_t timeout_ms, char **err);
void clm_pg_free(clm_pg pg);
int clm_pg_rank(clm_pg pg);
int clm_pg_size(clm_pg pg);
/* In-place allreduce of ts (borrowed handles) with op CLM_REDUCE_*. */
char *clm_pg_allreduce(clm_pg pg, const clm_tensor *ts, int n, int op);
/* In-place broadcast of ts from rank root. */
char *clm_pg_broadcast(clm_pg pg, const clm_tensor *ts, int n, int root);
char *clm_pg_barrier(clm_pg pg);

#ifdef __cplusplus
}
#endif
#endif
