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

/// W6's parts, in order: stem (conv, BN, ReLU, pool), block0 (the first NANODE
/// block), down1 (strided conv, BN, ReLU), block1, head (GN, ReLU, average pool,
/// linear) with the loss; then the optimizer.
constexpr int kW6Parts = 5;
inline const char* const kW6PartNames[kW6Parts] = {"stem", "block0", "down1", "block1", "head+loss"};
struct W6Breakdown {
  double forward_ms[kW6Parts] = {}, backward_ms[kW6Parts] = {}, optimizer_ms = 0;
};
/// Median ms of one training step of the default classifier (W6: forward, loss,
/// backward, Adam step) on a batch of 128 Fashion-MNIST-sized images; the mean
/// per-part times of an instrumented second run into `parts` when non-null.
double torch_w6_ms(int reps, bool cuda, W6Breakdown* parts);
}  // namespace nanode::bench
