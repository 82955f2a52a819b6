// The LibTorch peer of the workloads: the same problems written in LibTorch's C++
// API, timed in the same process as nanode's versions.
#include <torch/torch.h>

#include <dlfcn.h>

#include <chrono>

#include "peer.hpp"
#include "workloads.hpp"

namespace nanode::bench {

bool torch_available() { return true; }
bool torch_cuda_available() { return torch::cuda::is_available(); }

void torch_set_threads(int n) {
  at::set_num_threads(n);
  at::set_num_interop_threads(1);
  // LibTorch's dense products go to the system BLAS (libblas.so.3); when that is
  // OpenBLAS, give it the same thread count (it does not follow at::set_num_threads).
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
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

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

/// The default classifier of scripts/train.sh (models/classifier.hpp) written in
/// LibTorch: stem (3x3 conv 1->32, BN, ReLU, 2x2 max pool), a T-NANODE block
/// (order 4, 4 Euler steps of x += h K(t) * relu(GN(x)) + b(t)), a strided 3x3 conv
/// 32->64 with BN and ReLU, a second block at 64 channels, then GN, ReLU, global
/// average pool and a linear head: 435,562 parameters, as nanode's.
struct Classifier : torch::nn::Module {
  static constexpr int64_t order = 4, steps = 4, K = 2 * order + 1;
  torch::nn::Conv2d stem{torch::nn::Conv2dOptions(1, 32, 3).padding(1)}, down{torch::nn::Conv2dOptions(32, 64, 3).stride(2).padding(1)};
  torch::nn::BatchNorm2d stem_bn{32}, down_bn{64};
  torch::nn::GroupNorm gn0{torch::nn::GroupNormOptions(8, 32)}, gn1{torch::nn::GroupNormOptions(8, 64)},
      head_norm{torch::nn::GroupNormOptions(8, 64)};
  torch::nn::Linear head{64, 10};
  torch::Tensor A0, B0, A1, B1;  // time-varying conv coefficients [K, C, C, 3, 3] and bias coefficients [K, C]

  Classifier() {
    register_module("stem", stem), register_module("stem_bn", stem_bn), register_module("gn0", gn0);
    register_module("down", down), register_module("down_bn", down_bn), register_module("gn1", gn1);
    register_module("head_norm", head_norm), register_module("head", head);
    auto coeffs = [&](const char* name, std::vector<int64_t> shape, int64_t fan_in) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in)) / std::sqrt(static_cast<double>(order + 1));
      return register_parameter(name, (torch::rand(shape) * 2 - 1) * bound);
    };
    A0 = coeffs("A0", {K, 32, 32, 3, 3}, 32 * 9), B0 = coeffs("B0", {K, 32}, 32 * 9);
    A1 = coeffs("A1", {K, 64, 64, 3, 3}, 64 * 9), B1 = coeffs("B1", {K, 64}, 64 * 9);
  }
  torch::Tensor block(torch::Tensor x, torch::nn::GroupNorm& gn, const torch::Tensor& A, const torch::Tensor& B) {
    const double h = 1.0 / steps;
    for (int64_t k = 0; k < steps; ++k) {
      const auto zv = trig(static_cast<double>(k) * h, order);
      auto z = torch::tensor(std::vector<float>(zv.begin(), zv.end())).to(A.device());
      auto W = torch::tensordot(z, A, {0}, {0});
      auto b = torch::matmul(z, B);
      x = x + h * torch::conv2d(torch::relu(gn(x)), W, b, 1, 1);
    }
    return x;
  }
};

}  // namespace

double torch_w6_ms(int reps, bool cuda, W6Breakdown* parts) {
  torch::manual_seed(0);
  const torch::Device dev = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  auto model = std::make_shared<Classifier>();
  model->to(dev);
  model->train();
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  auto images = torch::rand({128, 1, 28, 28}).to(dev);
  auto labels = torch::randint(0, 10, {128}, torch::TensorOptions().dtype(torch::kLong)).to(dev);
  auto sync = [&] {
    if (cuda) torch::cuda::synchronize();
  };
  const bool timed = parts != nullptr;
  W6Breakdown acc;
  int runs = 0;
  // One step; with `instrument`, forward parts timed between calls and backward
  // parts at the hooks where the gradient reaches each part's input.
  auto step = [&](bool instrument) {
    opt.zero_grad();
    Clock::time_point t = Clock::now();
    double fwd[kW6Parts];
    auto mark = [&](int i) {
      if (!instrument) return;
      sync();
      fwd[i] = ms_since(t);
      t = Clock::now();
    };
    auto h0 = torch::max_pool2d(torch::relu(model->stem_bn(model->stem(images))), 2);
    mark(0);
    auto h1 = model->block(h0, model->gn0, model->A0, model->B0);
    mark(1);
    auto h2 = torch::relu(model->down_bn(model->down(h1)));
    mark(2);
    auto h3 = model->block(h2, model->gn1, model->A1, model->B1);
    mark(3);
    auto logits = model->head(torch::relu(model->head_norm(h3)).mean({2, 3}));
    auto loss = torch::cross_entropy_loss(logits, labels);
    mark(4);
    Clock::time_point arrive[kW6Parts];  // when the gradient reached part i's output
    if (instrument) {
      const torch::Tensor outs[4] = {h0, h1, h2, h3};
      for (int i = 0; i < 4; ++i)
        outs[i].register_hook([&arrive, i](torch::Tensor g) {
          arrive[i] = Clock::now();
          return g;
        });
    }
    const auto b0 = Clock::now();
    loss.backward();
    sync();
    const auto b1 = Clock::now();
    const auto t_opt = Clock::now();
    opt.step();
    sync();
    if (instrument) {
      const double ms = ms_since(t_opt);
      auto span = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
      acc.backward_ms[4] += span(b0, arrive[3]);
      acc.backward_ms[3] += span(arrive[3], arrive[2]);
      acc.backward_ms[2] += span(arrive[2], arrive[1]);
      acc.backward_ms[1] += span(arrive[1], arrive[0]);
      acc.backward_ms[0] += span(arrive[0], b1);
      for (int i = 0; i < kW6Parts; ++i) acc.forward_ms[i] += fwd[i];
      acc.optimizer_ms += ms;
      ++runs;
    }
  };
  const double total = median_ms([&] { step(false); }, reps);
  if (timed) {
    for (int i = 0; i < reps; ++i) step(true);
    for (int i = 0; i < kW6Parts; ++i) {
      parts->forward_ms[i] = acc.forward_ms[i] / runs;
      parts->backward_ms[i] = acc.backward_ms[i] / runs;
    }
    parts->optimizer_ms = acc.optimizer_ms / runs;
  }
  return total;
}

}  // namespace nanode::bench
