#pragma once
// The memory side of CUDA Graph capture, shared by the real and the emulated
// runtime. A captured graph replays into the very buffers its capture used, so
// those buffers must never go to another tensor while the graph lives:
//  - a block allocated during the capture belongs to the graph; when the tensor
//    holding it is freed (during the capture or later) the block stays reserved;
//  - a block allocated before the capture and freed during it also stays reserved
//    (captured work may read it);
//  - during the capture, a block the capture itself freed may be reused by a later
//    allocation of the same capture (work in one captured stream runs in order);
//  - when the graph is destroyed its reserved free blocks go back to the runtime's
//    cache, and blocks still held by tensors become ordinary.
// One capture at a time per backend. Host-only C++.
#include <cstddef>
#include <map>
#include <mutex>
#include <vector>

#include "nanode/core/error.hpp"

namespace nanode::NANODE_KERNEL_NS::detail {

struct GraphBlocks {
  int device = 0;
  std::vector<std::pair<void*, size_t>> free;  ///< reserved, not held by a tensor
  std::map<void*, size_t> owned;               ///< every block the graph keeps
};

class GraphPool {
 public:
  void begin(int device) {
    std::lock_guard<std::mutex> lock(mu_);
    NANODE_CHECK(current_ == nullptr, "CUDA graph: a capture is already in progress (one at a time)");
    current_ = new GraphBlocks();
    current_->device = device;
  }
  GraphBlocks* end() {
    std::lock_guard<std::mutex> lock(mu_);
    GraphBlocks* g = current_;
    current_ = nullptr;
    return g;
  }
  bool capturing() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_ != nullptr;
  }
  /// During a capture: a block of exactly `bytes` the capture freed, or nullptr.
  void* take(size_t bytes, int device) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!current_ || current_->device != device) return nullptr;
    auto& f = current_->free;
    for (size_t i = 0; i < f.size(); ++i)
      if (f[i].second == bytes) {
        void* p = f[i].first;
        f.erase(f.begin() + static_cast<std::ptrdiff_t>(i));
        return p;
      }
    return nullptr;
  }
  /// A fresh block: during a capture on its device, it belongs to the graph.
  void note_alloc(void* p, size_t bytes, int device) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!current_ || current_->device != device) return;
    current_->owned[p] = bytes;
    owner_[p] = current_;
  }
  /// A freed block: true when a graph keeps it (the runtime must not reuse it).
  bool keep(void* p, size_t bytes, int device) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = owner_.find(p);
    GraphBlocks* g = it != owner_.end() ? it->second : (current_ && current_->device == device ? current_ : nullptr);
    if (!g) return false;
    g->owned[p] = bytes;
    owner_[p] = g;
    g->free.emplace_back(p, bytes);
    return true;
  }
  /// A graph is destroyed: its reserved free blocks, for the runtime to take back.
  std::vector<std::pair<void*, size_t>> release(GraphBlocks* g) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [p, bytes] : g->owned) {
      auto it = owner_.find(p);
      if (it != owner_.end() && it->second == g) owner_.erase(it);
    }
    std::vector<std::pair<void*, size_t>> out = std::move(g->free);
    delete g;
    return out;
  }

 private:
  mutable std::mutex mu_;
  GraphBlocks* current_ = nullptr;
  std::map<void*, GraphBlocks*> owner_;
};

inline GraphPool& graph_pool() {
  static GraphPool* p = new GraphPool();  // never destroyed: tensors may be freed during exit
  return *p;
}

}  // namespace nanode::NANODE_KERNEL_NS::detail
