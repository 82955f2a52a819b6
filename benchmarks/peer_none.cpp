// The peer side when LibTorch is not found: the benchmarks print nanode's figures
// alone and say how to get the comparison.
#include "nanode/core/error.hpp"
#include "peer.hpp"

namespace nanode::bench {
bool torch_available() { return false; }
bool torch_cuda_available() { return false; }
const char* torch_version() {
  return "not found (apt install libtorch-dev libopenblas0-pthread, or pass -DNANODE_TORCH_PREFIX=...)";
}
void torch_set_threads(int) {}
PeerWorkload* torch_open(int, bool) { fail("LibTorch peer not built"); }
double torch_step(PeerWorkload*, W6Breakdown*) { fail("LibTorch peer not built"); }
void torch_close(PeerWorkload*) {}
}  // namespace nanode::bench
