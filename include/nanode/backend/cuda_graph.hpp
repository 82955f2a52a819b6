#pragma once
// CUDA Graphs: a fixed sequence of device work (say one fixed-step training step,
// forward and backward) recorded once and replayed with a single launch, which
// removes the per-kernel launch cost that dominates small problems on a GPU.
//
//   CudaGraph g;
//   step();                                   // warm-up: cuDNN picks algorithms, grads exist
//   g.capture(dev, [&] { step(); });          // recorded, not run
//   for (...) { copy the batch into x_static; g.replay(); read loss_static, p.grad() }
//
// The rules are those of any CUDA graph: the capture records the work, it does not
// run it; a replay recomputes into the very tensors the capture produced (keep
// them; put new inputs into the captured input tensors with copy_); the host may not
// read device values, copy from the host, synchronise or take adaptive steps inside
// the capture (each is a clear error); random numbers drawn on the host (dropout
// masks) are fixed at capture. Buffers the capture touched stay reserved for the
// graph until it is destroyed. Works on the emulated device too, where the
// recorded launches are replayed on the CPU.
#include <utility>

#include "nanode/backend/cuda/api.hpp"
#include "nanode/core/device.hpp"

namespace nanode {

class CudaGraph {
 public:
  CudaGraph() = default;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;
  CudaGraph(CudaGraph&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)), device_(o.device_) {}
  CudaGraph& operator=(CudaGraph&& o) noexcept {
    if (this != &o) {
      reset();
      handle_ = std::exchange(o.handle_, nullptr);
      device_ = o.device_;
    }
    return *this;
  }
  ~CudaGraph() {
    try {
      reset();
    } catch (...) {
    }
  }

  /// Records the device work `body` issues on `device` (replacing an earlier capture).
  template <class F>
  void capture(Device device, F&& body) {
    NANODE_CHECK(device.is_cuda(), "CudaGraph::capture: graphs record CUDA work, not work on ", device);
    reset();
    cuda::graph_begin(device.index);
    try {
      body();
    } catch (...) {
      void* h = nullptr;
      try {
        h = cuda::graph_end(device.index);
      } catch (...) {
      }
      if (h) cuda::graph_destroy(h, device.index);
      throw;
    }
    handle_ = cuda::graph_end(device.index);
    device_ = device;
  }
  /// Runs the recorded work again, in one launch, on the device's stream.
  void replay() {
    NANODE_CHECK(handle_ != nullptr, "CudaGraph::replay: nothing has been captured");
    cuda::graph_replay(handle_, device_.index);
  }
  /// The device calls (kernel launches, library calls, copies) the capture recorded.
  int64_t calls() const { return handle_ ? cuda::graph_calls(handle_) : 0; }
  bool captured() const { return handle_ != nullptr; }
  /// Destroys the graph (waiting for a running replay) and frees its reserved buffers.
  void reset() {
    if (handle_) cuda::graph_destroy(std::exchange(handle_, nullptr), device_.index);
  }

 private:
  void* handle_ = nullptr;
  Device device_ = Device::cpu();
};

}  // namespace nanode
