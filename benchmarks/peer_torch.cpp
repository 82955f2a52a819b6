// The LibTorch peer of the workloads: the same problems written in LibTorch's C++
// API, timed in the same process as nanode's versions.
#include <torch/torch.h>

#include <dlfcn.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

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

/// A peer workload: built once, stepped on demand.
struct PeerWorkload {
  virtual ~PeerWorkload() = default;
  /// One step; with `parts` (W6) instrumented, its per-part ms added there.
  virtual void step(W6Breakdown* parts) = 0;
  bool cuda = false;
};

namespace {

torch::Device device_of(bool cuda) { return cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU); }

struct W1Peer : PeerWorkload {
  torch::Tensor A, B, x0;
  explicit W1Peer(bool on_cuda) {
    cuda = on_cuda;
    torch::manual_seed(0);
    const auto opt = torch::TensorOptions().device(device_of(cuda));
    const int64_t K = 2 * W1::order + 1;
    const double bound = 1.0 / std::sqrt(static_cast<double>(W1::n)) / std::sqrt(static_cast<double>(W1::order + 1));
    A = (torch::rand({K, W1::n, W1::n}, opt) * 2 - 1).mul_(bound).requires_grad_();
    B = (torch::rand({K, W1::n}, opt) * 2 - 1).mul_(bound).requires_grad_();
    x0 = torch::rand({W1::batch, W1::n}, opt) * 2 - 1;
  }
  void step(W6Breakdown*) override {
    const double h = 1.0 / W1::steps;
    if (A.grad().defined()) A.grad().zero_(), B.grad().zero_();
    auto x = x0;
    for (int64_t k = 0; k < W1::steps; ++k) {
      const auto zv = trig(static_cast<double>(k) * h, W1::order);
      auto z = torch::tensor(std::vector<float>(zv.begin(), zv.end())).to(x0.device());
      auto W = torch::tensordot(z, A, {0}, {0});
      auto b = torch::matmul(z, B);
      x = x + h * torch::tanh(torch::addmm(b, x, W.t()));
    }
    x.pow(2).mean().backward();
  }
};

struct W2Peer : PeerWorkload {
  torch::Tensor A, x0;
  explicit W2Peer(bool on_cuda) {
    cuda = on_cuda;
    torch::manual_seed(0);
    const auto opt = torch::TensorOptions().device(device_of(cuda));
    const int64_t K = 2 * W2::order + 1, C = W2::channels;
    const double bound = 1.0 / std::sqrt(static_cast<double>(C * 9)) / std::sqrt(static_cast<double>(W2::order + 1));
    A = (torch::rand({K, C, C, 3, 3}, opt) * 2 - 1).mul_(bound).requires_grad_();
    x0 = torch::rand({W2::batch, C, W2::size, W2::size}, opt) * 2 - 1;
  }
  void step(W6Breakdown*) override {
    const double h = 1.0 / W2::steps;
    if (A.grad().defined()) A.grad().zero_();
    auto x = x0;
    for (int64_t k = 0; k < W2::steps; ++k) {
      const auto zv = trig(static_cast<double>(k) * h, W2::order);
      auto z = torch::tensor(std::vector<float>(zv.begin(), zv.end())).to(x0.device());
      auto W = torch::tensordot(z, A, {0}, {0});
      x = x + h * torch::tanh(torch::conv2d(x, W, {}, 1, 1));
    }
    x.pow(2).mean().backward();
  }
};

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

struct W6Peer : PeerWorkload {
  std::shared_ptr<Classifier> model;
  std::unique_ptr<torch::optim::Adam> opt;
  torch::Tensor images, labels;
  explicit W6Peer(bool on_cuda) {
    cuda = on_cuda;
    torch::manual_seed(0);
    const torch::Device dev = device_of(cuda);
    model = std::make_shared<Classifier>();
    model->to(dev);
    model->train();
    opt = std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(1e-3));
    images = torch::rand({128, 1, 28, 28}).to(dev);
    labels = torch::randint(0, 10, {128}, torch::TensorOptions().dtype(torch::kLong)).to(dev);
  }
  void sync() const {
    if (cuda) torch::cuda::synchronize();
  }
  // With `parts`: forward parts timed between calls, backward parts at the hooks
  // where the gradient reaches each part's output.
  void step(W6Breakdown* parts) override {
    const bool instrument = parts != nullptr;
    opt->zero_grad();
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
    opt->step();
    sync();
    if (instrument) {
      auto span = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
      parts->backward_ms[4] += span(b0, arrive[3]);
      parts->backward_ms[3] += span(arrive[3], arrive[2]);
      parts->backward_ms[2] += span(arrive[2], arrive[1]);
      parts->backward_ms[1] += span(arrive[1], arrive[0]);
      parts->backward_ms[0] += span(arrive[0], b1);
      for (int i = 0; i < kW6Parts; ++i) parts->forward_ms[i] += fwd[i];
      parts->optimizer_ms += ms_since(b1);
    }
  }
};

}  // namespace

PeerWorkload* torch_open(int workload, bool cuda) {
  switch (workload) {
    case 1: return new W1Peer(cuda);
    case 2: return new W2Peer(cuda);
    case 6: return new W6Peer(cuda);
    default: throw std::invalid_argument("torch_open: no workload W" + std::to_string(workload));
  }
}

double torch_step(PeerWorkload* w, W6Breakdown* parts) {
  const auto t0 = Clock::now();
  w->step(parts);
  if (w->cuda) torch::cuda::synchronize();
  return ms_since(t0);
}

void torch_close(PeerWorkload* w) { delete w; }

}  // namespace nanode::bench
