// Registers this kernel backend (nanode::cuda or nanode::cuda_emulated) with
// nanode before main. The build defines NANODE_KERNEL_NS, NANODE_BACKEND_NAME and
// NANODE_BACKEND_ANCHOR; the library's users link with -u NANODE_BACKEND_ANCHOR
// so that this object is kept even though nothing calls into it by name.
#include "launchers.cuh"

namespace nanode::NANODE_KERNEL_NS {
namespace {

// Both tables are constant-initialised (no code runs to build them), and the
// registration runs as a priority-101 constructor: before every ordinary static
// initialiser of the program, so a user's global may already use the backend.
constexpr cuda::Launchers kLaunchers = {
#define NANODE_CUDA_ENTRY(ret, name, params, args) &name,
    NANODE_CUDA_LAUNCHERS(NANODE_CUDA_ENTRY)
#undef NANODE_CUDA_ENTRY
};

constexpr DeviceBackend kBackend = {NANODE_BACKEND_NAME, &device_count, &malloc_device, &free_device, &empty_cache,
                                    &kLaunchers};

__attribute__((constructor(101))) void register_backend() { register_device_backend(&kBackend); }

}  // namespace
}  // namespace nanode::NANODE_KERNEL_NS

extern "C" {
// Referenced by the linker flag -u, never by code.
extern const int NANODE_BACKEND_ANCHOR;
const int NANODE_BACKEND_ANCHOR = 1;
}
