#pragma once
// The canonical benchmark workloads of DESIGN.md §4, shared by nanode's side and
// the LibTorch peer so that both run exactly the same problem.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace nanode::bench {

struct W1 {  // dense T-NANODE: x [256, 128], dx/dt = tanh(W(t) x + b(t)), trig d = 10
  static constexpr int64_t batch = 256, n = 128, order = 10, steps = 100;
};
struct W2 {  // conv T-NANODE: x [32, 32, 28, 28], dx/dt = tanh(conv3x3(x; K(t))), trig d = 4
  static constexpr int64_t batch = 32, channels = 32, size = 28, order = 4, steps = 10;
};

/// [1, cos t, sin t, ..., cos dt, sin dt]
inline std::vector<double> trig(double t, int64_t d) {
  std::vector<double> z{1.0};
  for (int64_t k = 1; k <= d; ++k) {
    z.push_back(std::cos(static_cast<double>(k) * t));
    z.push_back(std::sin(static_cast<double>(k) * t));
  }
  return z;
}

/// Median wall time in milliseconds of `reps` calls after `warmup` calls.
template <class F>
double median_ms(F&& f, int reps, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace nanode::bench
