#pragma once
// Shared helpers for nanode's CUDA translation units (no Eigen here).
#include <cuda_runtime.h>

#include <cstdint>

#include "nanode/core/error.hpp"

namespace nanode::cuda::detail {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) ::nanode::fail("CUDA error in ", what, ": ", cudaGetErrorString(err));
}

/// Makes `device` current for the calling thread.
inline void use_device(int device) {
  int cur = -1;
  check(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != device) check(cudaSetDevice(device), "cudaSetDevice");
}

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;  // grid-stride loops cover the rest
  return static_cast<unsigned>(b);
}

inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

}  // namespace nanode::cuda::detail
