// clm_dist.cpp — process groups over c10d for data-parallel training.
//
// A clm_pg is a c10d TCPStore (hosted by rank 0, the others connect to
// MASTER_ADDR:MASTER_PORT) plus one c10d backend: Gloo for CPU tensors, NCCL
// for CUDA tensors where the shim is built with CUDA and the NCCL headers.
// Collectives are synchronous: each one waits for its work with the group's
// timeout, and any failure (a peer that died, a timeout, mismatched sizes)
// comes back as an error string. After a failed collective the group is
// marked broken: the ranks no longer agree on the sequence of collectives,
// so every later call reports the first error instead of risking a hang.
//
// NCCL is compiled in when the shim is built with CUDA and nccl.h is on the
// include path (a system libnccl-dev, or -I.../site-packages/nvidia/nccl/include
// for PyTorch's wheels); -DCLM_NO_NCCL leaves it out.
//
// Lists of tensors are bucketed: the tensors of each (device, dtype) are
// flattened into one contiguous buffer, which takes one collective, and the
// result is copied back (a bucket of one contiguous tensor is used as is).
//
// Gloo's headers: PyTorch's wheels link gloo into libtorch_cpu but do not
// ship its headers, which ProcessGroupGloo.hpp includes. clm_gloo/ declares
// the few gloo names that header mentions (see clm_gloo_decls.h).
#include "clm_internal.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#if !__has_include(<torch/csrc/distributed/c10d/TCPStore.hpp>) || \
    !__has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#error "clm needs a libtorch built with distributed support (c10d's TCPStore and ProcessGroupGloo headers)"
#endif

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if defined(CLM_WITH_CUDA) && !defined(CLM_NO_NCCL) && __has_include(<nccl.h>) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define CLM_HAS_NCCL 1
#endif

namespace {

using clm::dup;

// Runs body through clm::guard; the message is prefixed with op.
template <typename F>
char *guard(const char *op, F &&body) {
  char *err = clm::guard(std::forward<F>(body));
  if (err == nullptr) return nullptr;
  char *msg = dup(std::string(op) + ": " + err);
  std::free(err);
  return msg;
}

}  // namespace

struct clm_pg_s {
  int rank = 0;
  int size = 1;
  bool nccl = false;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::mutex mu;       // one collective at a time
  std::string broken;  // the first failure, once a collective has failed
};

namespace {

bool is_loopback(const std::string &addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1" || addr == "[::1]";
}

// The Gloo devices (network interfaces) to use: those named by
// GLOO_SOCKET_IFNAME (comma-separated), as PyTorch does; else, for a master
// on the loopback address, that address (a single-machine job); else the
// address this machine's hostname resolves to (loopback if it resolves to
// nothing).
std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices(const std::string &master_addr) {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devs;
  const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != '\0') {
    std::string names(ifname);
    size_t start = 0;
    while (start <= names.size()) {
      size_t end = names.find(',', start);
      if (end == std::string::npos) end = names.size();
      std::string name = names.substr(start, end - start);
      if (!name.empty()) devs.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      start = end + 1;
    }
  }
  if (devs.empty()) {
    if (is_loopback(master_addr)) {
      devs.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(master_addr));
    } else {
      devs.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
  }
  return devs;
}

clm_pg_s &P(clm_pg pg) {
  if (pg == nullptr) throw std::invalid_argument("nil process group");
  if (!pg->backend) throw std::invalid_argument("process group is closed");
  return *pg;
}

std::vector<at::Tensor> tensors(const clm_tensor *ts, int n) {
  if (n < 0) throw std::invalid_argument("negative tensor count");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) {
    if (ts[i] == nullptr) throw std::invalid_argument("nil tensor handle at index " + std::to_string(i));
    const at::Tensor &t = ts[i]->t;
    if (!t.defined()) throw std::invalid_argument("undefined tensor at index " + std::to_string(i));
    if (t.is_sparse()) throw std::invalid_argument("sparse tensor at index " + std::to_string(i));
    v.push_back(t);
  }
  return v;
}

// Groups ts by (device, dtype) in order of first appearance, so that every
// rank, given the same list, forms the same buckets in the same order.
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor> &ts) {
  std::vector<std::vector<at::Tensor>> out;
  for (const auto &t : ts) {
    bool placed = false;
    for (auto &b : out) {
      if (b[0].device() == t.device() && b[0].scalar_type() == t.scalar_type()) {
        b.push_back(t);
        placed = true;
        break;
      }
    }
    if (!placed) out.push_back({t});
  }
  return out;
}

bool single(const std::vector<at::Tensor> &b) { return b.size() == 1 && b[0].is_contiguous(); }

// One contiguous 1-d buffer holding the values of b, in order.
at::Tensor flatten(const std::vector<at::Tensor> &b) {
  std::vector<at::Tensor> flat;
  flat.reserve(b.size());
  for (const auto &t : b) flat.push_back(t.reshape({-1}));
  return at::cat(flat, 0);
}

// An uninitialised buffer of b's total size (a broadcast's receiving side).
at::Tensor buffer(const std::vector<at::Tensor> &b) {
  int64_t n = 0;
  for (const auto &t : b) n += t.numel();
  return at::empty({n}, b[0].options());
}

void unflatten(const at::Tensor &flat, const std::vector<at::Tensor> &b) {
  int64_t off = 0;
  for (const auto &t : b) {
    int64_t n = t.numel();
    at::Tensor dst = t;
    dst.copy_(flat.narrow(0, off, n).view(t.sizes()));
    off += n;
  }
}

void check_backend(const clm_pg_s &pg, const at::Tensor &t) {
  if (pg.nccl && !t.is_cuda()) throw std::invalid_argument("the nccl backend needs CUDA tensors, got one on " + t.device().str());
  if (!pg.nccl && !t.is_cpu())
    throw std::invalid_argument("the gloo backend of this shim takes CPU tensors, got one on " + t.device().str());
}

// Waits for w with the group's timeout; a timeout is an error.
void wait(clm_pg_s &pg, const c10::intrusive_ptr<c10d::Work> &w) {
  const std::string limit = " (the group's timeout is " + std::to_string(pg.timeout.count()) + " ms)";
  bool done = false;
  try {
    done = w->wait(pg.timeout);
  } catch (const c10::Error &e) {
    std::string msg = e.what_without_backtrace();
    if (msg.find("timed out") != std::string::npos) msg += limit;
    throw std::runtime_error(msg);
  }
  if (!done) throw std::runtime_error("timed out" + limit);
}

// Runs one collective under the group's lock; a failure breaks the group.
template <typename F>
char *collective(clm_pg pg, const char *op, F &&body) {
  if (pg == nullptr) return dup(std::string(op) + ": nil process group");
  std::lock_guard<std::mutex> lock(pg->mu);
  if (!pg->broken.empty()) return dup(std::string(op) + ": process group unusable after an earlier failure: " + pg->broken);
  char *err = guard(op, [&] {
    P(pg);
    at::NoGradGuard ng;
    body(*pg);
  });
  if (err != nullptr) pg->broken = err;
  return err;
}

}  // namespace

extern "C" {

int clm_dist_backends(void) {
#ifdef CLM_HAS_NCCL
  return CLM_DIST_GLOO | CLM_DIST_NCCL;
#else
  return CLM_DIST_GLOO;
#endif
}

clm_pg clm_pg_new(int rank, int world, const char *master_addr, int master_port, const char *backend, int64_t timeout_ms,
                  char **err) {
  clm_pg out = nullptr;
  char *e = guard("process group", [&] {
    if (world < 1) throw std::invalid_argument("world size " + std::to_string(world) + " must be at least 1");
    if (rank < 0 || rank >= world)
      throw std::invalid_argument("rank " + std::to_string(rank) + " outside [0, " + std::to_string(world) + ")");
    if (master_addr == nullptr || *master_addr == '\0') throw std::invalid_argument("empty master address");
    if (master_port < 1 || master_port > 65535) throw std::invalid_argument("master port " + std::to_string(master_port) + " outside [1, 65535]");
    if (timeout_ms <= 0) throw std::invalid_argument("timeout must be positive");
    std::string be = backend == nullptr ? "" : backend;
    if (be != "gloo" && be != "nccl") throw std::invalid_argument("unknown backend \"" + be + "\" (want gloo or nccl)");
#ifndef CLM_HAS_NCCL
    if (be == "nccl") throw std::invalid_argument("the nccl backend needs a shim built with CUDA and NCCL's headers");
#endif
    auto pg = std::make_unique<clm_pg_s>();
    pg->rank = rank;
    pg->size = world;
    pg->nccl = be == "nccl";
    pg->timeout = std::chrono::milliseconds(timeout_ms);

    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(master_port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<size_t>(world);
    so.waitWorkers = true;
    so.timeout = pg->timeout;
    pg->store = c10::make_intrusive<c10d::TCPStore>(std::string(master_addr), so);

    if (pg->nccl) {
#ifdef CLM_HAS_NCCL
      // Without this, NCCL's watchdog ends the whole process when a
      // collective fails or times out; clm reports the error instead.
      setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0", 0);
      setenv("NCCL_ASYNC_ERROR_HANDLING", "0", 0);
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = pg->timeout;
      pg->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg->store, rank, world, opts);
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create(pg->timeout);
      opts->devices = gloo_devices(master_addr);
      pg->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(pg->store, rank, world, opts);
    }
    out = pg.release();
  });
  if (err != nullptr) {
    *err = e;
  } else {
    std::free(e);
  }
  return out;
}

void clm_pg_free(clm_pg pg) {
  if (pg == nullptr) return;
  try {
    std::lock_guard<std::mutex> lock(pg->mu);
    pg->backend.reset();
    pg->store.reset();
  } catch (...) {
  }
  delete pg;
}

int clm_pg_rank(clm_pg pg) { return pg == nullptr ? -1 : pg->rank; }
int clm_pg_size(clm_pg pg) { return pg == nullptr ? -1 : pg->size; }

char *clm_pg_allreduce(clm_pg pg, const clm_tensor *ts, int n, int op) {
  return collective(pg, "allreduce", [&](clm_pg_s &g) {
    if (op != CLM_REDUCE_SUM && op != CLM_REDUCE_AVG) throw std::invalid_argument("unknown reduce op " + std::to_string(op));
    auto all = tensors(ts, n);
    for (const auto &t : all) {
      check_backend(g, t);
      if (op == CLM_REDUCE_AVG && !at::isFloatingType(t.scalar_type()))
        throw std::invalid_argument(std::string("average of a ") + c10::toString(t.scalar_type()) + " tensor");
    }
    for (auto &b : buckets(all)) {
      at::Tensor flat = single(b) ? b[0] : flatten(b);
      std::vector<at::Tensor> io{flat};
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;  // Gloo has no AVG: sum, then divide
      opts.timeout = g.timeout;
      wait(g, g.backend->allreduce(io, opts));
      if (op == CLM_REDUCE_AVG) flat.div_(static_cast<double>(g.size));
      if (!single(b)) unflatten(flat, b);
    }
  });
}

char *clm_pg_broadcast(clm_pg pg, const clm_tensor *ts, int n, int root) {
  return collective(pg, "broadcast", [&](clm_pg_s &g) {
    if (root < 0 || root >= g.size)
      throw std::invalid_argument("root " + std::to_string(root) + " outside [0, " + std::to_string(g.size) + ")");
    auto all = tensors(ts, n);
    for (const auto &t : all) check_backend(g, t);
    for (auto &b : buckets(all)) {
      at::Tensor flat = single(b) ? b[0] : (g.rank == root ? flatten(b) : buffer(b));
      std::vector<at::Tensor> io{flat};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      opts.timeout = g.timeout;
      wait(g, g.backend->broadcast(io, opts));
      if (!single(b) && g.rank != root) unflatten(flat, b);
    }
  });
}

char *clm_pg_barrier(clm_pg pg) {
  return collective(pg, "barrier", [&](clm_pg_s &g) {
    if (g.nccl) {
#ifdef CLM_HAS_NCCL
      // A one-element allreduce on the current device: NCCL's own barrier
      // guesses the device from the rank.
      std::vector<at::Tensor> io{at::zeros({1}, at::TensorOptions().device(at::kCUDA, c10::cuda::current_device()))};
      c10d::AllreduceOptions opts;
      opts.timeout = g.timeout;
      wait(g, g.backend->allreduce(io, opts));
      io[0].item();
#endif
      return;
    }
    c10d::BarrierOptions opts;
    opts.timeout = g.timeout;
    wait(g, g.backend->barrier(opts));
  });
}

}  // extern "C"
