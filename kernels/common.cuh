#pragma once
// Shared helpers for nanode's kernel translation units (no Eigen here). The same
// sources build two backends:
//   nanode::cuda           nvcc, on a GPU (NANODE_KERNEL_NS = cuda_kernels);
//   nanode::cuda_emulated  host C++ with NANODE_CUDA_EMULATION defined
//                          (NANODE_KERNEL_NS = cuda_emulated): emulation.cuh stands
//                          in for the CUDA runtime and every launch runs on the CPU.
// Every kernel launch goes through launch() below: on a device, on the device's
// one stream; emulated, through emu::run_grid.
#ifdef NANODE_CUDA_EMULATION
#include "emulation.cuh"
#else
#include <cuda_runtime.h>
#endif

#include <cstdint>
#include <cstdlib>

#include "launchers.cuh"

// Asks nvcc to unroll the next loop (no-op in the emulated, host-compiled build).
#if defined(__CUDACC__)
#define NANODE_UNROLL _Pragma("unroll")
#else
#define NANODE_UNROLL
#endif
#include "nanode/core/error.hpp"

namespace nanode::NANODE_KERNEL_NS::detail {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) ::nanode::fail("CUDA error in ", what, ": ", cudaGetErrorString(err));
}

/// Makes `device` current for the calling thread.
inline void use_device(int device) {
  int cur = -1;
  check(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != device) check(cudaSetDevice(device), "cudaSetDevice");
}

/// The stream every launch, copy and library call on `device` uses (runtime.cu);
/// one per device, so work on a device runs in the order it was issued, and the
/// caching allocator may hand a freed block to the next op at once.
cudaStream_t stream(int device);
/// Whether `device`'s stream is being captured into a CUDA graph.
bool capturing(int device);

/// NANODE_CUDA_SYNC=1: wait after every launch and report an asynchronous fault
/// at the launch that caused it, naming the kernel (slow; for debugging).
inline bool sync_debug() {
  static const bool on = [] {
    const char* v = std::getenv("NANODE_CUDA_SYNC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

constexpr int kThreads = 256;

/// Blocks for a grid-stride loop over n elements: enough to cover n, at most
/// 65535 x 8 (the loops stride over the rest); in the emulated build at most
/// emu::max_grid() when it is set, so that the striding is exercised at small n.
inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
#ifdef NANODE_CUDA_EMULATION
  if (::nanode::emu::max_grid() > 0 && b > ::nanode::emu::max_grid()) b = ::nanode::emu::max_grid();
#endif
  return static_cast<unsigned>(b);
}

/// Launches `kernel` on a grid of `grid` blocks of `block` threads with `args`.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, int device, Args... args) {
  count_device_call();
#ifdef NANODE_CUDA_EMULATION
  (void)device;
  // Arguments by value: a recorded launch (graph capture) runs after this returns.
  ::nanode::emu::run_or_record([=] { ::nanode::emu::run_grid(name, grid, block, [&] { kernel(args...); }); });
#else
  kernel<<<grid, block, 0, stream(device)>>>(args...);
  check(cudaGetLastError(), name);
  if (sync_debug() && !capturing(device)) check(cudaStreamSynchronize(stream(device)), name);
#endif
}

}  // namespace nanode::NANODE_KERNEL_NS::detail

/// launch() with the kernel's own name (what the emulated tests look for).
#define NANODE_LAUNCH(kernel, grid, block, device, ...) \
  ::nanode::NANODE_KERNEL_NS::detail::launch(#kernel, kernel, grid, block, device, __VA_ARGS__)
