// Registers this kernel backend (nanode::cuda or nanode::cuda_emulated) with
// nanode before main. The build defines NANODE_KERNEL_NS, NANODE_BACKEND_NAME and
// NANODE_BACKEND_ANCHOR; the library's users link with -u NANODE_BACKEND_ANCHOR
// so that this object is kept even though nothing calls into it by name.
#include "launchers.cuh"

namespace nanode::NANODE_KERNEL_NS {
namespace {

const cuda::Launchers kLaunchers = {
#define NANODE_CUDA_ENTRY(ret, name, params, args) &name,
    NANODE_CUDA_LAUNCHERS(NANODE_CUDA_ENTRY)
#undef NANODE_CUDA_ENTRY
};

const DeviceBackend kBackend = [] {
  DeviceBackend b;
  b.name = NANODE_BACKEND_NAME;
  b.device_count = &device_count;
  b.malloc_device = &malloc_device;
  b.free_device = &free_device;
  b.empty_cache = &empty_cache;
  b.launchers = &kLaunchers;
  return b;
}();

const bool kRegistered = register_device_backend(&kBackend);

}  // namespace
}  // namespace nanode::NANODE_KERNEL_NS

extern "C" {
// Referenced by the linker flag -u, never by code.
extern const int NANODE_BACKEND_ANCHOR;
const int NANODE_BACKEND_ANCHOR = 1;
}
