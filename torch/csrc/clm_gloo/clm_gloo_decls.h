// clm_gloo_decls.h — declarations of the few gloo names that c10d's
// ProcessGroupGloo.hpp mentions, written for clm.
//
// PyTorch's wheels and libtorch archives contain gloo (linked into
// libtorch_cpu) but not its headers, and ProcessGroupGloo.hpp includes them.
// clm_dist.cpp only creates a ProcessGroupGloo and calls it through
// c10d::Backend; every gloo type the class refers to sits behind a
// shared_ptr/unique_ptr, so its layout does not depend on these declarations,
// and nothing declared here is ever defined or called from clm. CMake puts
// this folder on clm_dist.cpp's include path only, after the target's own
// include directories, so a libtorch that ships gloo's real headers uses them.
#ifndef CLM_GLOO_DECLS_H
#define CLM_GLOO_DECLS_H

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace gloo {

class Context {
 public:
  Context(int rank, int size);
  virtual ~Context();
  void setTimeout(std::chrono::milliseconds timeout);
  std::chrono::milliseconds getTimeout() const;
  const int rank;
  const int size;
};

namespace rendezvous {
class Store {
 public:
  virtual ~Store();
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) = 0;
};
}  // namespace rendezvous

namespace transport {
class Device;
class UnboundBuffer;
}  // namespace transport

}  // namespace gloo

#endif
