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
double torch_w1_ms(int, bool) { fail("LibTorch peer not built"); }
double torch_w2_ms(int, bool) { fail("LibTorch peer not built"); }
double torch_w6_ms(int, bool, W6Breakdown*) { fail("LibTorch peer not built"); }
}  // namespace nanode::bench
