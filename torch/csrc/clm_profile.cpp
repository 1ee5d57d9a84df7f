// clm_profile.cpp — libtorch's profiler (Kineto) through the C interface:
// the ops of the calling thread between start and stop, as a Chrome trace
// and as a list of events the Go side aggregates (torch/profile.go).
#include "clm_internal.h"
#include "clm_torch.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstdlib>
#include <set>
#include <string>

namespace {

using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

ProfilerConfig config() { return ProfilerConfig(ProfilerState::KINETO); }

std::set<ActivityType> activities(bool cuda) {
  std::set<ActivityType> a{ActivityType::CPU};
  if (cuda) a.insert(ActivityType::CUDA);
  return a;
}

// active is whether this shim started the profiler (libtorch's own state
// is per thread; one profile at a time is all clm needs).
bool active = false;

}  // namespace

extern "C" {

char *clm_profiler_start(int cuda) {
  return clm::guard([&] {
    TORCH_CHECK(!active, "the profiler is already running");
    // Kineto logs its start and stop, and on a machine without a GPU an
    // error about the device count, on stderr; clm says what it profiled
    // itself. Level 6 is above Kineto's ERROR (the user's setting wins).
    setenv("KINETO_LOG_LEVEL", "6", 0);
    torch::autograd::profiler::prepareProfiler(config(), activities(cuda != 0));
    torch::autograd::profiler::enableProfiler(config(), activities(cuda != 0));
    active = true;
  });
}

char *clm_profiler_stop(const char *trace_path, char **out) {
  return clm::guard([&] {
    TORCH_CHECK(active, "the profiler is not running");
    active = false;
    auto result = torch::autograd::profiler::disableProfiler();
    std::string s;
    for (const auto &e : result->events()) {
      if (e.isHiddenEvent()) continue;
      bool on_cuda = e.deviceType() == c10::DeviceType::CUDA;
      s += e.name() + "\t" + std::to_string(e.startNs()) + "\t" + std::to_string(e.durationNs()) + "\t" +
           std::to_string(e.startThreadId()) + "\t" + (on_cuda ? "cuda" : "cpu") + "\n";
    }
    if (trace_path != nullptr && trace_path[0] != '\0') result->save(trace_path);
    *out = clm::dup(s);
  });
}

}  // extern "C"
