#pragma once
// The device backend of this program, chosen at run time: the backend library a
// program links (nanode::cuda, or nanode::cuda_emulated) registers itself before
// main. The allocator reaches device memory through it; the launchers of kernels
// hang off `launchers` (backend/cuda/api.hpp). Nothing here depends on how the
// program was compiled, so every translation unit sees the same definitions.
#include <cstddef>

#include "nanode/core/error.hpp"

namespace nanode {

struct DeviceBackend {
  const char* name = "";  ///< "cuda", or "cuda-emulated"
  int (*device_count)() = nullptr;
  void* (*malloc_device)(size_t bytes, int device) = nullptr;
  void (*free_device)(void* ptr, size_t bytes, int device) = nullptr;
  void (*empty_cache)(int device) = nullptr;
  const void* launchers = nullptr;  ///< a cuda::Launchers table
};

namespace detail {
inline const DeviceBackend*& device_backend_slot() {
  static const DeviceBackend* b = nullptr;
  return b;
}
}  // namespace detail

/// The registered backend, or null when the program links none.
inline const DeviceBackend* device_backend() { return detail::device_backend_slot(); }

/// Called by a backend library's static initialiser. Two backends in one program
/// are an error (the program stops before main with this message).
inline bool register_device_backend(const DeviceBackend* b) {
  const DeviceBackend*& slot = detail::device_backend_slot();
  NANODE_CHECK(slot == nullptr || slot == b, "nanode: two CUDA backends are linked into this program ('",
               slot ? slot->name : "", "' and '", b->name, "'); link one of nanode::cuda and nanode::cuda_emulated");
  slot = b;
  return true;
}

/// The backend's memory functions; a clear error when none is linked.
inline const DeviceBackend& device_memory() {
  const DeviceBackend* b = device_backend();
  NANODE_CHECK(b != nullptr, "allocator: a CUDA device was requested, but this program was built without a CUDA "
               "backend (configure with NANODE_CUDA=ON and link nanode::cuda)");
  return *b;
}

}  // namespace nanode
