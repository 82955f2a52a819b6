// One test of every op on every backend (ggml's test-backend-ops in spirit): each
// op registered with NANODE_REGISTER_OP runs its cases (tests/op_cases.hpp) on
// every backend this program has — the CPU in float32, and CUDA: emulated
// kernels (in the emulated test_kernels program, linked with
// nanode::cuda_emulated) or a real GPU (test_backend_ops_device) — and its output and the gradient of every input are
// compared with the CPU float64 result. An op without a case fails; an op without
// a CUDA path fails unless it is on the list of CUDA paths still to write (the
// GPU half's issue empties it), and an op on that list that has gained its CUDA
// path fails too, so the list cannot go stale.
#ifdef NANODE_TEST_DEVICE_MAIN
#define CATCH_CONFIG_RUNNER
#endif
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include "op_cases.hpp"

using namespace nanode;
using namespace nanode::testing;

namespace {

/// Ops whose forward or backward has no CUDA kernel yet (they say "no CUDA kernel
/// yet" on a CUDA tensor): the GPU half of the backend writes these.
const std::set<std::string> kNoCudaYet{};

/// Ops that draw random numbers: the draws depend on the dtype (24 bits of a
/// Philox word for float32, 53 bits of two for float64), so their reference is the
/// CPU in the backend's own dtype (the same draws on every device).
const std::set<std::string> kDraws{"dropout"};

struct Backend {
  std::string name;
  DType dtype;
  Device device;
};

std::vector<Backend> backends() {
  std::vector<Backend> b{{"cpu float32", DType::Float32, Device::cpu()}};
  if (cuda_device_count() > 0)
    b.push_back({std::string(cuda_backend_name()) + " float32", DType::Float32, Device::cuda(0)});
  return b;
}

struct Result {
  Tensor out;
  std::vector<Tensor> grads;
};

/// Runs a case where target() says, with the loss sum(out * w).
Result run(const Case& c, const Tensor& w) {
  std::vector<Var> vars;
  for (const auto& t : c.inputs) vars.emplace_back(KT(t), true);
  Var out = c.f(vars);
  Var loss = sum(out * K(w));
  loss.backward();
  Result r{out.data().to(Device::cpu()).to(DType::Float64), {}};
  for (auto& v : vars) r.grads.push_back(v.grad().defined() ? v.grad().to(Device::cpu()).to(DType::Float64) : Tensor());
  return r;
}

/// max |got - want| / max(1e-3, max |want|); infinite for a NaN or a shape mismatch.
double rel(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape()) return INFINITY;
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  double num = 0, den = 1e-3;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::abs(g[i] - w[i]);
    if (std::isnan(d)) return INFINITY;
    num = std::max(num, d), den = std::max(den, std::abs(w[i]));
  }
  return num / den;
}

}  // namespace

TEST_CASE("every op on every backend matches the CPU in float64, forward and backward", "[backend-ops]") {
  const auto all = op_cases();
  const auto bes = backends();
#ifndef NANODE_TEST_DEVICE_MAIN
  // Linked with nanode::cuda_emulated: its kernels must be here (a lost backend
  // would otherwise leave a CPU-only test that passes).
  REQUIRE(std::string(cuda_backend_name()) == "cuda-emulated");
  REQUIRE(bes.size() == 2);
#endif
  std::set<std::string> no_cuda;
  std::printf("%-18s", "op");
  for (const auto& b : bes) std::printf(" | %-24s", b.name.c_str());
  std::printf("\n");
  for (const auto& name : op_registry()) {
    INFO("op '" << name << "'");
    REQUIRE(all.count(name) == 1);  // every registered op has cases
    std::printf("%-18s", name.c_str());
    for (const auto& b : bes) {
      double worst = 0;
      bool missing = false;
      for (const auto& c : all.at(name)) {
        INFO(b.name << ", case '" << c.label << "'");
        target() = {kDraws.count(name) ? b.dtype : DType::Float64, Device::cpu()};
        std::vector<Var> probe;
        for (const auto& t : c.inputs) probe.emplace_back(KT(t));
        const Tensor w = rand64(c.f(probe).shape(), 0xBEEF, 0.5, 1.5);
        const Result ref = run(c, w);
        target() = {b.dtype, b.device};
        Result got;
        try {
          got = run(c, w);
        } catch (const Error& e) {
          target() = {};
          const std::string msg = e.what();
          if (b.device.is_cuda() && msg.find("no CUDA kernel yet") != std::string::npos) {
            missing = true;
            continue;
          }
          FAIL("threw: " << msg);
        }
        target() = {};
        const double e_out = rel(got.out, ref.out);
        worst = std::max(worst, e_out);
        CHECK(e_out < 2e-4);
        for (size_t i = 0; i < ref.grads.size(); ++i) {
          INFO("gradient of input " << i);
          REQUIRE(got.grads[i].defined() == ref.grads[i].defined());
          if (!ref.grads[i].defined()) continue;
          const double e = rel(got.grads[i], ref.grads[i]);
          worst = std::max(worst, e);
          CHECK(e < 2e-4);
        }
      }
      if (missing) no_cuda.insert(name);
      char cell[64];
      std::snprintf(cell, sizeof cell, "ok, worst %.1e", worst);
      std::printf(" | %-24s", missing ? "no CUDA kernel yet" : cell);
    }
    std::printf("\n");
  }
  if (bes.size() > 1) {
    for (const auto& n : no_cuda) {
      INFO("op '" << n << "' has no CUDA path and is not on the list of paths still to write");
      CHECK(kNoCudaYet.count(n) == 1);
    }
    for (const auto& n : kNoCudaYet) {
      INFO("op '" << n << "' is on the list of CUDA paths still to write, but has one now: take it off the list");
      CHECK(no_cuda.count(n) == 1);
    }
  }
}

#ifdef NANODE_TEST_DEVICE_MAIN
int main(int argc, char** argv) {
  if (nanode::cuda_device_count() == 0) {
    std::printf("test_backend_ops_device: SKIPPED: no CUDA device (the emulated test_kernels program ran these cases)\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
#endif

#ifndef NANODE_TEST_DEVICE_MAIN
#include "nanode/models/classifier.hpp"

// Every model of the classifier trains on CUDA tensors: one step (forward, loss,
// backward, Adam) of each of the 13 models on the emulated device, from the same
// parameters, against the CPU. Gradients are compared against the scale of all of
// the model's gradients: a bias right before a norm that removes per-channel
// constants has a gradient that is rounding noise on both devices (and Adam turns
// such noise into a full step, so parameters after the step are not compared).
TEST_CASE("one training step of every classifier model on CUDA matches the CPU", "[backend-ops][classifier]") {
  REQUIRE(cuda_device_count() > 0);
  const Tensor images = rand64({3, 1, 8, 8}, 400).to(DType::Float32);
  const Tensor labels = Tensor::from_vector<int32_t>({0, 2, 1}, {3});
  for (const auto& name : models::classifier_model_names()) {
    INFO("model " << name);
    models::ClassifierOptions o;
    o.model = name;
    o.order = 2;
    o.image_size = 8;
    o.classes = 3;
    o.widths = {4, 8};
    o.steps = 2;
    manual_seed(5);
    auto cpu_model = std::make_shared<models::Classifier>(o);
    auto gpu_model = nn::make<models::Classifier>(nn::ModuleOptions().device(Device::cuda(0)), o);
    gpu_model->load_state_dict(cpu_model->state_dict());
    auto step = [&](models::Classifier& m, Device d, std::vector<Tensor>& grads) {
      optim::AdamOptions ao;
      ao.lr = 1e-2;
      optim::Adam adam(m.parameters(), ao);
      Var loss = cross_entropy(m.forward(Var(images.to(d))), labels);
      loss.backward();
      for (auto& [n, p] : m.named_parameters()) grads.push_back(p.grad().to(Device::cpu()).to(DType::Float64));
      adam.step();
      return loss.item();
    };
    std::vector<Tensor> gc, gg;
    const double lc = step(*cpu_model, Device::cpu(), gc), lg = step(*gpu_model, Device::cuda(0), gg);
    CHECK(lg == Approx(lc).epsilon(1e-5));
    double scale = 0;
    for (const auto& g : gc)
      for (double v : g.to_vector<double>()) scale = std::max(scale, std::abs(v));
    const auto names = cpu_model->named_parameters();
    REQUIRE(gg.size() == gc.size());
    for (size_t i = 0; i < gc.size(); ++i) {
      INFO("gradient of " << names[i].first);
      CHECK(gpu_model->named_parameters()[i].second.device().is_cuda());
      const auto a = gg[i].to_vector<double>(), b = gc[i].to_vector<double>();
      double worst = 0;
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(a[k] - b[k]));
      CHECK(worst <= 1e-4 * scale);
    }
  }
}
#endif
