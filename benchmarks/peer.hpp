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

/// W6's parts, in order: stem (conv, BN, ReLU, pool), block0 (the first NANODE
/// block), down1 (strided conv, BN, ReLU), block1, head (GN, ReLU, average pool,
/// linear) with the loss; then the optimizer.
constexpr int kW6Parts = 5;
inline const char* const kW6PartNames[kW6Parts] = {"stem", "block0", "down1", "block1", "head+loss"};
struct W6Breakdown {
  double forward_ms[kW6Parts] = {}, backward_ms[kW6Parts] = {}, optimizer_ms = 0;
};

/// A peer workload, built once and stepped on demand, so that the benchmark can
/// alternate its steps with nanode's in paired rounds. `workload` is 1 (W1), 2 (W2)
/// or 6 (W6); on the GPU when `cuda`. W1 and W2: one training step (forward, loss,
/// backward); W6: one training step of the default classifier (forward, loss,
/// backward, Adam) on a batch of 128 Fashion-MNIST-sized images.
struct PeerWorkload;
PeerWorkload* torch_open(int workload, bool cuda);
/// Runs one step and returns its wall-clock ms (synchronised). With `parts` (W6
/// only) the step is instrumented and its per-part ms are added to *parts.
double torch_step(PeerWorkload* w, W6Breakdown* parts);
void torch_close(PeerWorkload* w);
}  // namespace nanode::bench
