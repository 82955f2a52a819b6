#pragma once
// The peer (LibTorch) side of the benchmarks, compiled in its own translation unit
// when LibTorch is found (peer_torch.cpp); otherwise peer_none.cpp reports it
// missing. Only plain types cross this boundary, so the two sides may be built
// with different C++ ABIs (a pip LibTorch on the GPU machine).
namespace nanode::bench {
bool torch_available();
bool torch_cuda_available();
const char* torch_version();
void torch_set_threads(int n);
/// Median ms of one training step (forward, loss, backward) of W1 / W2, on the
/// GPU when `cuda`.
double torch_w1_ms(int reps, bool cuda);
double torch_w2_ms(int reps, bool cuda);
}  // namespace nanode::bench
