// clm_graph.cpp — CUDA graphs (at::cuda::CUDAGraph): CUDA work captured
// once and replayed, so that a training step costs one launch instead of
// thousands. Capture runs on a side stream (CUDA cannot capture the legacy
// default stream); allocations during capture come from the graph's private
// memory pool, which each replay reuses. The default CUDA generator is
// registered by capture_begin, so dropout draws fresh numbers on every
// replay.
#include "clm_internal.h"

#include <memory>
#include <optional>
#include <stdexcept>

#ifdef CLM_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

using clm::guard;

struct clm_graph_s {
#ifdef CLM_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  // The capture stream, current on the capturing thread until capture ends.
  std::optional<c10::cuda::CUDAStreamGuard> stream;
  bool capturing = false;

  // end ends the capture and restores the thread's stream, even when
  // capture_end throws (a capture that an illegal call invalidated).
  void end() {
    capturing = false;
    struct Restore {
      clm_graph_s *g;
      ~Restore() { g->stream.reset(); }
    } restore{this};
    graph->capture_end();
  }
#endif
};

extern "C" {

char *clm_graph_begin(int device, clm_graph *out) {
  return guard([&] {
#ifndef CLM_WITH_CUDA
    (void)device;
    (void)out;
    throw std::runtime_error("CUDA graphs: the shim was built without CUDA");
#else
    if (device < 0) throw std::invalid_argument("CUDA graphs: capture needs a CUDA device, not the CPU");
    const auto idx = static_cast<c10::DeviceIndex>(device);
    auto g = std::make_unique<clm_graph_s>();
    {
      c10::cuda::CUDAGuard dg(idx);
      // What the current stream still has queued must not run into the
      // capture (PyTorch's torch.cuda.graph synchronises too).
      c10::cuda::device_synchronize();
    }
    g->stream.emplace(c10::cuda::getStreamFromPool(false, idx));
    g->graph = std::make_unique<at::cuda::CUDAGraph>();
    try {
      g->graph->capture_begin();
    } catch (...) {
      g->stream.reset();
      throw;
    }
    g->capturing = true;
    *out = g.release();
#endif
  });
}

char *clm_graph_end(clm_graph g) {
  return guard([&] {
#ifdef CLM_WITH_CUDA
    if (g == nullptr || !g->capturing) throw std::logic_error("CUDA graphs: end without a capture under way");
    g->end();
#else
    (void)g;
    throw std::runtime_error("CUDA graphs: the shim was built without CUDA");
#endif
  });
}

char *clm_graph_replay(clm_graph g) {
  return guard([&] {
#ifdef CLM_WITH_CUDA
    if (g == nullptr || g->capturing) throw std::logic_error("CUDA graphs: replay of a graph still capturing");
    g->graph->replay();
#else
    (void)g;
    throw std::runtime_error("CUDA graphs: the shim was built without CUDA");
#endif
  });
}

void clm_graph_free(clm_graph g) {
#ifdef CLM_WITH_CUDA
  if (g == nullptr) return;
  if (g->capturing) {
    try {
      g->end();
    } catch (...) {
      // An invalidated capture: nothing to keep.
    }
  }
  delete g;
#else
  (void)g;
#endif
}

}  // extern "C"
