#pragma once
// Threading for the CPU backend: OpenMP over ranges, and the thread count that
// Eigen's GEMM shares.
#include <cstdint>

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace nanode {

/// Threads used by nanode's CPU kernels and Eigen's GEMM.
inline void set_num_threads(int n) {
  if (n < 1) n = 1;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
}

inline int get_num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace cpu {

/// Runs f(begin, end) over [0, n) split into one contiguous chunk per thread; runs
/// inline when n is below `grain`, with one thread, or inside a parallel region.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
#ifdef _OPENMP
  const int max_threads = omp_get_max_threads();
  if (n >= 2 * grain && max_threads > 1 && !omp_in_parallel()) {
    int64_t want = n / grain;
    const int threads = static_cast<int>(want < max_threads ? want : max_threads);
#pragma omp parallel num_threads(threads)
    {
      const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
      const int64_t chunk = (n + nt - 1) / nt;
      const int64_t b = id * chunk, e = b + chunk < n ? b + chunk : n;
      if (b < e) f(b, e);
    }
    return;
  }
#endif
  (void)grain;
  f(int64_t{0}, n);
}

}  // namespace cpu
}  // namespace nanode
