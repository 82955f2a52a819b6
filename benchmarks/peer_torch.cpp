// The LibTorch peer of the workloads: the same problems written in LibTorch's C++
// API, timed in the same process as nanode's versions.
#include <torch/torch.h>

#include "peer.hpp"
#include "workloads.hpp"

namespace nanode::bench {

bool torch_available() { return true; }
bool torch_cuda_available() { return torch::cuda::is_available(); }

void torch_set_threads(int n) {
  at::set_num_threads(n);
  at::set_num_interop_threads(1);
}

const char* torch_version() { return TORCH_VERSION; }

double torch_w1_ms(int reps, bool cuda) {
  torch::manual_seed(0);
  const torch::Device dev = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const auto opt = torch::TensorOptions().device(dev);
  const int64_t K = 2 * W1::order + 1;
  const double bound = 1.0 / std::sqrt(static_cast<double>(W1::n)) / std::sqrt(static_cast<double>(W1::order + 1));
  auto A = (torch::rand({K, W1::n, W1::n}, opt) * 2 - 1).mul_(bound).requires_grad_();
  auto B = (torch::rand({K, W1::n}, opt) * 2 - 1).mul_(bound).requires_grad_();
  auto x0 = torch::rand({W1::batch, W1::n}, opt) * 2 - 1;
  const double h = 1.0 / W1::steps;
  auto step = [&] {
    if (A.grad().defined()) A.grad().zero_(), B.grad().zero_();
    auto x = x0;
    for (int64_t k = 0; k < W1::steps; ++k) {
      const auto zv = trig(static_cast<double>(k) * h, W1::order);
      auto z = torch::tensor(std::vector<float>(zv.begin(), zv.end())).to(dev);
      auto W = torch::tensordot(z, A, {0}, {0});
      auto b = torch::matmul(z, B);
      x = x + h * torch::tanh(torch::addmm(b, x, W.t()));
    }
    x.pow(2).mean().backward();
    if (cuda) torch::cuda::synchronize();
  };
  return median_ms(step, reps);
}

double torch_w2_ms(int reps, bool cuda) {
  torch::manual_seed(0);
  const torch::Device dev = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const auto opt = torch::TensorOptions().device(dev);
  const int64_t K = 2 * W2::order + 1, C = W2::channels;
  const double bound = 1.0 / std::sqrt(static_cast<double>(C * 9)) / std::sqrt(static_cast<double>(W2::order + 1));
  auto A = (torch::rand({K, C, C, 3, 3}, opt) * 2 - 1).mul_(bound).requires_grad_();
  auto x0 = torch::rand({W2::batch, C, W2::size, W2::size}, opt) * 2 - 1;
  const double h = 1.0 / W2::steps;
  auto step = [&] {
    if (A.grad().defined()) A.grad().zero_();
    auto x = x0;
    for (int64_t k = 0; k < W2::steps; ++k) {
      const auto zv = trig(static_cast<double>(k) * h, W2::order);
      auto z = torch::tensor(std::vector<float>(zv.begin(), zv.end())).to(dev);
      auto W = torch::tensordot(z, A, {0}, {0});
      x = x + h * torch::tanh(torch::conv2d(x, W, {}, 1, 1));
    }
    x.pow(2).mean().backward();
    if (cuda) torch::cuda::synchronize();
  };
  return median_ms(step, reps);
}

}  // namespace nanode::bench
