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

/// The middle value (the upper of the two middle ones for an even count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Wall time in milliseconds of one call.
template <class F>
double time_ms(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

/// Median wall time in milliseconds of `reps` calls after `warmup` calls.
template <class F>
double median_ms(F&& f, int reps, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) ms.push_back(time_ms(f));
  return median(ms);
}

/// Two steps timed in alternating rounds (a first in even rounds, b first in odd
/// ones) after `warmup` rounds; each call returns its own ms. The medians of each
/// side, and the median over rounds of a / b within a round: this machine's speed
/// drifts by up to 2x over seconds, which a ratio of medians taken apart (minutes
/// apart for slow workloads) does not cancel.
struct PairedMs {
  double a = 0, b = 0, ratio = 0;
};
template <class A, class B>
PairedMs paired_ms(A&& a, B&& b, int reps, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) a(), b();
  std::vector<double> ta, tb, r;
  for (int i = 0; i < reps; ++i) {
    double x, y;
    if (i % 2 == 0) x = a(), y = b();
    else y = b(), x = a();
    ta.push_back(x), tb.push_back(y), r.push_back(x / y);
  }
  return {median(ta), median(tb), median(r)};
}

}  // namespace nanode::bench
