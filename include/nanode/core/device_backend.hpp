#pragma once
// The device backend of this program, chosen at run time: the backend library a
// program links (nanode::cuda, or nanode::cuda_emulated) registers itself before
// main, ahead of ordinary static initialisers. The library is a static archive
// whose registering object nothing calls by name: CMake targets carry the linker
// flag that keeps it (-u nanode_cuda_backend_anchor, or _emulated_anchor); a build
// that links the archive by hand must pass that flag too. Shared libraries that
// use nanode's CUDA must export the registry (the default visibility) and link
// the backend into one of them. The allocator reaches device memory through it; the launchers of kernels
// hang off `launchers` (backend/cuda/api.hpp). Nothing here depends on how the
// program was compiled, so every translation unit sees the same definitions.
#include <cstddef>
#include <cstring>

#include "nanode/core/error.hpp"

namespace nanode {

/// A backend's table: an aggregate, so a backend can build it as a constant.
struct DeviceBackend {
  const char* name;  ///< "cuda", or "cuda-emulated"
  int (*device_count)();
  void* (*malloc_device)(size_t bytes, int device);
  void (*free_device)(void* ptr, size_t bytes, int device);
  void (*empty_cache)(int device);
  const void* launchers;  ///< a cuda::Launchers table
};

namespace detail {
inline const DeviceBackend*& device_backend_slot() {
  static const DeviceBackend* b = nullptr;
  return b;
}
}  // namespace detail

/// The registered backend, or null when the program links none.
inline const DeviceBackend* device_backend() { return detail::device_backend_slot(); }

/// Called by a backend library before main. The same backend registered twice (two
/// shared libraries that each link it) keeps the first; two different backends in
/// one program are an error (the program stops before main with this message).
inline bool register_device_backend(const DeviceBackend* b) {
  const DeviceBackend*& slot = detail::device_backend_slot();
  if (slot != nullptr && std::strcmp(slot->name, b->name) == 0) return true;
  NANODE_CHECK(slot == nullptr, "nanode: two CUDA backends are linked into this program ('", slot ? slot->name : "",
               "' and '", b->name, "'); link one of nanode::cuda and nanode::cuda_emulated");
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
