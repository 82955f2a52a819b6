#pragma once
// Anomaly detection, like torch.autograd.detect_anomaly: off by default. When on,
// every op's result (make_result) and every gradient an op's backward produces is
// checked for NaN and infinity, and the first non-finite value stops the program
// with an Error naming the op, its input shapes, and which inputs were already
// non-finite. It costs a pass over every tensor (and a device sync on CUDA), so
// trainers turn it on only on request (--detect-anomaly).
#include <atomic>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "nanode/backend/dispatch.hpp"

namespace nanode::anomaly {

inline std::atomic<bool>& flag() {
  static std::atomic<bool> on{false};
  return on;
}
inline bool enabled() { return flag().load(std::memory_order_relaxed); }
inline void set_enabled(bool on) { flag().store(on, std::memory_order_relaxed); }

/// Turns detection on (or off) for its lifetime.
class Guard {
 public:
  explicit Guard(bool on = true) : was_(enabled()) { set_enabled(on); }
  ~Guard() { set_enabled(was_); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  bool was_;
};

/// The index of the first NaN or infinite element of t, or -1 (always -1 for
/// integer tensors, and inside a CUDA graph capture, where there are no values yet).
inline int64_t first_nonfinite(const Tensor& t) {
  if (!t.defined() || t.numel() == 0 || t.dtype() == DType::Int32) return -1;
  if (t.device().is_cuda()) {
    if (cuda::graph_capturing(t.device().index)) return -1;
    // A non-finite element makes the sum non-finite; only then is the tensor read.
    if (std::isfinite(backend::sum_all(t).item<double>())) return -1;
    return first_nonfinite(t.cpu());
  }
  const int64_t n = t.numel();
  if (t.dtype() == DType::Float32) {
    const float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return i;
  } else {
    const double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return i;
  }
  return -1;
}

/// "element i of [shape] is nan".
inline std::string describe_bad(const Tensor& t, int64_t i) {
  const Tensor h = t.cpu();
  const double v = h.dtype() == DType::Float32 ? static_cast<double>(h.data<float>()[i]) : h.data<double>()[i];
  std::ostringstream s;
  s << "element " << i << " of " << t.shape().str() << " is " << v;
  return s.str();
}

/// The inputs (`names`: Var::describe(), which gives the shape), each marked when
/// it already holds a non-finite value.
inline std::string describe_inputs(const std::vector<Tensor>& inputs, const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    out += out.empty() ? "" : ", ";
    out += names[i];
    if (first_nonfinite(inputs[i]) >= 0) out += " (already non-finite)";
  }
  return out.empty() ? "none" : out;
}

}  // namespace nanode::anomaly
