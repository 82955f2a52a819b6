#pragma once
// Emulated launches: nanode's CUDA kernel sources compiled as host C++, in the
// spirit of CUDA's old device emulation mode (DESIGN.md §5). Included by
// common.cuh when NANODE_CUDA_EMULATION is defined, in place of cuda_runtime.h.
//
// - threadIdx, blockIdx, blockDim, gridDim are per emulated thread.
// - The blocks of a grid run in turn. The threads of one block are fibers
//   (ucontext) that run until they finish or wait at a barrier, so
//   __syncthreads() is a real barrier: a thread waits there until every thread of
//   its block has arrived. A barrier some threads never reach (one inside
//   divergent code) is reported as a deadlock naming the kernel. The order in
//   which runnable threads are resumed can be ascending or descending
//   (set_schedule), so that a missing barrier shows up whichever thread writes
//   first.
// - __shared__ variables are function statics: one instance, shared by the
//   threads of the running block (the blocks run one at a time). A block that
//   reads shared memory before writing it sees what the previous block left there
//   (garbage on a GPU); the emulation does not catch that.
// - Warp shuffles exchange values among the 32 lanes of a warp through a warp
//   barrier; atomics are plain read-modify-writes (one fiber runs at a time).
// - Device memory is host memory; the runtime calls the kernels' sources make
//   (cudaMemcpy, cudaGetLastError...) are emulated below.
//
// It checks indexing, bounds of the grid-stride loops, the barrier structure and
// the arithmetic against the CPU twins; not timing, coalescing or the memory model.
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nanode/backend/cuda/emulation.hpp"
#include "nanode/core/error.hpp"

// CUDA device code has the classification functions at global scope.
using std::isfinite;
using std::isinf;
using std::isnan;

// ---- the language's qualifiers ------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

namespace nanode::emu {

/// Where the built-ins of the running emulated thread live.
struct ThreadCoords {
  dim3 thread, block, block_dim, grid_dim;
};
inline ThreadCoords& coords() {
  static ThreadCoords c;  // one fiber runs at a time
  return c;
}

namespace detail {

struct Fiber {
  ucontext_t ctx{};
  std::exception_ptr error;  ///< thrown by the kernel body on this thread
  std::unique_ptr<char[]> stack;
  dim3 thread;
  bool done = false;
  int waiting = -1;  ///< barrier id it waits at (-1: runnable)
};

/// One block in flight: its fibers, the scheduler's context and the barriers.
struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler{};
  size_t current = 0;
  const char* kernel = "";
  std::function<void()> body;
  // Barrier 0 is the block's (__syncthreads); 1 + w is warp w's (shuffles).
  std::vector<int> arrived;
  std::vector<int> expected;
  // Lane values of the shuffle in progress, per warp.
  std::vector<std::vector<uint64_t>> lanes;
};

inline Block*& current_block() {
  static Block* b = nullptr;
  return b;
}

constexpr size_t kStackBytes = 64 * 1024;
constexpr unsigned kWarp = 32;

inline void fiber_entry() {
  Block& b = *current_block();
  try {
    b.body();
  } catch (...) {  // an exception must not unwind off the fiber's stack
    b.fibers[b.current].error = std::current_exception();
  }
  b.fibers[b.current].done = true;
  // returning resumes uc_link: the scheduler
}

/// Parks the running fiber at barrier `id` until all of its expected threads arrive.
inline void wait_at(int id) {
  Block& b = *current_block();
  Fiber& f = b.fibers[b.current];
  if (++b.arrived[static_cast<size_t>(id)] == b.expected[static_cast<size_t>(id)]) {
    b.arrived[static_cast<size_t>(id)] = 0;
    for (auto& g : b.fibers)
      if (g.waiting == id) g.waiting = -1;
    return;  // the last to arrive goes straight on
  }
  f.waiting = id;
  swapcontext(&f.ctx, &b.scheduler);
}

inline unsigned linear_thread(const dim3& t, const dim3& bd) { return t.x + bd.x * (t.y + bd.y * t.z); }

}  // namespace detail

/// Runs `body` as every thread of every block of the grid.
inline void run_grid(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body) {
  static std::mutex launch_mu;  // one emulated launch at a time
  std::lock_guard<std::mutex> lock(launch_mu);
  const unsigned threads = block.x * block.y * block.z;
  NANODE_CHECK(threads >= 1 && threads <= 1024, "emulated launch of ", kernel, ": ", threads,
               " threads per block (CUDA allows 1 to 1024)");
  NANODE_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.y <= 65535 && grid.z <= 65535,
               "emulated launch of ", kernel, ": invalid grid ", grid.x, "x", grid.y, "x", grid.z);
  auto& log = launch_log();
  bool found = false;
  for (auto& [n, c] : log)
    if (n == kernel) ++c, found = true;
  if (!found) log.emplace_back(kernel, 1);

  detail::Block b;
  b.kernel = kernel;
  b.body = body;
  b.fibers.resize(threads);
  for (auto& f : b.fibers) f.stack.reset(new char[detail::kStackBytes]);
  const unsigned warps = (threads + detail::kWarp - 1) / detail::kWarp;
  b.expected.assign(1 + warps, 0);
  b.expected[0] = static_cast<int>(threads);
  for (unsigned w = 0; w < warps; ++w)
    b.expected[1 + w] = static_cast<int>(std::min(detail::kWarp, threads - w * detail::kWarp));
  b.lanes.assign(warps, std::vector<uint64_t>(detail::kWarp, 0));
  detail::current_block() = &b;

  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.arrived.assign(1 + warps, 0);
        for (unsigned i = 0; i < threads; ++i) {
          detail::Fiber& f = b.fibers[i];
          f.thread = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
          f.done = false;
          f.waiting = -1;
          f.error = nullptr;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.get();
          f.ctx.uc_stack.ss_size = detail::kStackBytes;
          f.ctx.uc_link = &b.scheduler;
          makecontext(&f.ctx, detail::fiber_entry, 0);
        }
        for (;;) {
          bool progressed = false, all_done = true;
          for (unsigned k = 0; k < threads; ++k) {
            const unsigned i = schedule() == Schedule::Ascending ? k : threads - 1 - k;
            detail::Fiber& f = b.fibers[i];
            if (f.done) continue;
            all_done = false;
            if (f.waiting >= 0) continue;
            b.current = i;
            coords() = {f.thread, dim3(bx, by, bz), block, grid};
            swapcontext(&b.scheduler, &f.ctx);
            progressed = true;
          }
          for (auto& f : b.fibers)
            if (f.error) {
              detail::current_block() = nullptr;
              std::rethrow_exception(f.error);
            }
          if (all_done) break;
          if (!progressed) {
            detail::current_block() = nullptr;
            ::nanode::fail("emulated launch of ", kernel, ": deadlock in block (", bx, ", ", by, ", ", bz,
                           "): threads wait at a barrier (__syncthreads or a warp shuffle) that the others of "
                           "their block or warp never reach");
          }
        }
      }
  detail::current_block() = nullptr;
}

/// The emulated stream capture: while recording, device work is kept (in issue
/// order) instead of run; a replay runs it again. Synchronising, or copying to or
/// from the host, while recording is an error, as in a real capture.
struct Recording {
  bool on = false;
  std::vector<std::function<void()>> work;
};
inline Recording& recording() {
  static Recording r;
  return r;
}
/// Runs `work` now, or records it while a capture is on.
inline void run_or_record(std::function<void()> work) {
  if (recording().on) recording().work.push_back(std::move(work));
  else work();
}
inline void refuse_while_recording(const char* what) {
  NANODE_CHECK(!recording().on, "CUDA graph capture: ", what, " is not allowed inside a capture (it would wait for "
               "work that has not run); keep host reads, host copies, adaptive steps and synchronisation out of the "
               "captured code");
}

}  // namespace nanode::emu

// ---- the built-ins, as kernels read them -------------------------------------------
#define threadIdx (::nanode::emu::coords().thread)
#define blockIdx (::nanode::emu::coords().block)
#define blockDim (::nanode::emu::coords().block_dim)
#define gridDim (::nanode::emu::coords().grid_dim)

inline void __syncthreads() { ::nanode::emu::detail::wait_at(0); }

/// The value of `var` at lane (own lane + delta) of the warp (own value past its end).
template <class T>
T __shfl_down_sync(unsigned /*mask*/, T var, unsigned delta, int width = 32) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "emulated shuffles take values of at most 8 bytes");
  NANODE_CHECK(width > 0 && width <= 32 && (width & (width - 1)) == 0, "__shfl_down_sync: width ", width,
               " is not a power of two up to 32");
  using namespace ::nanode::emu::detail;
  Block& b = *current_block();
  const unsigned t = linear_thread(threadIdx, blockDim), warp = t / kWarp, lane = t % kWarp;
  uint64_t raw = 0;
  std::memcpy(&raw, &var, sizeof(T));
  b.lanes[warp][lane] = raw;
  wait_at(static_cast<int>(1 + warp));  // every lane has written
  const unsigned seg = lane / static_cast<unsigned>(width) * static_cast<unsigned>(width);
  const unsigned src = lane + delta;
  T out = var;
  if (src < seg + static_cast<unsigned>(width) && src < static_cast<unsigned>(b.expected[1 + warp]))
    std::memcpy(&out, &b.lanes[warp][src], sizeof(T));
  wait_at(static_cast<int>(1 + warp));  // every lane has read before anyone writes again
  return out;
}
/// The value of `var` at lane (own lane XOR lane_mask); a lane in a later group of
/// `width` lanes (or past the warp's last thread) gives the caller's own value.
template <class T>
T __shfl_xor_sync(unsigned /*mask*/, T var, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "emulated shuffles take values of at most 8 bytes");
  NANODE_CHECK(width > 0 && width <= 32 && (width & (width - 1)) == 0, "__shfl_xor_sync: width ", width,
               " is not a power of two up to 32");
  using namespace ::nanode::emu::detail;
  Block& b = *current_block();
  const unsigned t = linear_thread(threadIdx, blockDim), warp = t / kWarp, lane = t % kWarp;
  uint64_t raw = 0;
  std::memcpy(&raw, &var, sizeof(T));
  b.lanes[warp][lane] = raw;
  wait_at(static_cast<int>(1 + warp));
  const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
  const unsigned group_end = (lane / static_cast<unsigned>(width) + 1) * static_cast<unsigned>(width);
  T out = var;
  if (src < group_end && src < static_cast<unsigned>(b.expected[1 + warp]))
    std::memcpy(&out, &b.lanes[warp][src], sizeof(T));
  wait_at(static_cast<int>(1 + warp));
  return out;
}

template <class T>
T atomicAdd(T* address, T value) {
  const T old = *address;  // one fiber runs at a time: a plain read-modify-write is atomic
  *address = old + value;
  return old;
}
template <class T>
T atomicMax(T* address, T value) {
  const T old = *address;
  if (value > old) *address = value;
  return old;
}

// ---- the runtime calls the kernels' sources make ----------------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
using cudaStream_t = void*;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  ::nanode::emu::refuse_while_recording("a copy issued from kernel code");
  return cudaMemcpy(dst, src, bytes, kind);
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ::nanode::emu::refuse_while_recording("synchronising the stream");
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  ::nanode::emu::refuse_while_recording("synchronising the device");
  return cudaSuccess;
}
