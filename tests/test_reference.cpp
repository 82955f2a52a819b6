// nanode against PyTorch: the float64 values written by tests/reference/make_reference.py
// (dense dynamics of every basis family through Euler, RK4 and ALF; the conv T-NANODE
// block; one training step of the Fig. 1 classifier). Every output, the loss and
// every gradient must agree to 1e-10 relative in float64 and 1e-4 in float32, in
// each gradient mode that is exact (direct, checkpoint; reversible for ALF).
// Relative error: max |got - want| / max |want| over a tensor.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "nanode/data/safetensors.hpp"
#include "nanode/io/state_dict.hpp"
#include "nanode/models/classifier.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;

namespace {

data::TensorFile reference(const std::string& name) {
  return data::load_safetensors(std::string(NANODE_REFERENCE_DIR) + "/" + name + ".safetensors");
}

/// The tensors under `prefix`, with it removed.
std::vector<std::pair<std::string, Tensor>> with_prefix(const data::TensorFile& f, const std::string& prefix) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [n, t] : f.tensors)
    if (n.compare(0, prefix.size(), prefix) == 0) out.emplace_back(n.substr(prefix.size()), t);
  return out;
}

double rel_err(const Tensor& got, const Tensor& want) {
  REQUIRE(got.defined());
  REQUIRE(got.numel() == want.numel());
  const auto g = got.to(DType::Float64).to_vector<double>(), w = want.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < g.size(); ++i) num = std::max(num, std::abs(g[i] - w[i])), den = std::max(den, std::abs(w[i]));
  return num / std::max(den, 1e-300);
}

double tolerance(DType d) { return d == DType::Float64 ? 1e-10 : 1e-4; }

/// Checks `got` against reference tensor `key`, recording the worst error seen.
struct Checker {
  const data::TensorFile& ref;
  DType dtype;
  double worst = 0;
  void operator()(const std::string& key, const Tensor& got) {
    const double e = rel_err(got, ref.at(key));
    worst = std::max(worst, e);
    INFO(ref.path << ": " << key << " (" << (dtype == DType::Float64 ? "float64" : "float32") << "): relative error "
                  << e);
    CHECK(e < tolerance(dtype));
  }
};

/// The dense dynamics of tv::MLPDynamics with an explicit basis (random features
/// take their draws from the reference file).
struct ExplicitBasisMLP : ode::Dynamics {
  ExplicitBasisMLP(tv::BasisPtr basis) {
    l0 = register_module("layer0", std::make_shared<tv::TimeLinear>(4, 5, basis));
    l1 = register_module("layer1", std::make_shared<tv::TimeLinear>(5, 4, basis));
  }
  Var forward(double t, const Var& x) override { return l1->forward(t, tanh(l0->forward(t, x))); }
  std::shared_ptr<tv::TimeLinear> l0, l1;
};

std::vector<double> doubles(const Tensor& t) { return t.to_vector<double>(); }

const char* mode_name(ode::Gradient g) { return ode::gradient_name(g); }

}  // namespace

TEST_CASE("dense dynamics of every basis family match PyTorch (Euler, RK4, ALF)", "[reference]") {
  for (const std::string family : {"bucket", "monomial", "chebyshev", "legendre", "trig", "random"}) {
    for (const std::string method : {"euler", "rk4", "alf"}) {
      if (method == "alf" && family != "trig") continue;
      const data::TensorFile ref = reference("dense_" + family + "_" + method);
      const int order = std::stoi(ref.metadata.at("order"));
      const int64_t steps = std::stoll(ref.metadata.at("steps"));
      for (DType dt : {DType::Float64, DType::Float32}) {
        const std::vector<ode::Gradient> modes = method == "alf"
            ? std::vector<ode::Gradient>{ode::Gradient::Direct, ode::Gradient::Reversible}
            : std::vector<ode::Gradient>{ode::Gradient::Direct, ode::Gradient::Checkpoint};
        for (auto mode : modes) {
          INFO(family << " " << method << " " << mode_name(mode));
          std::shared_ptr<ode::Dynamics> f;
          const nn::ModuleOptions mo = nn::ModuleOptions().dtype(dt);
          if (family == "random") {
            f = nn::make<ExplicitBasisMLP>(mo, std::make_shared<tv::RandomFourierBasis>(
                                                   doubles(ref.at("input.zeta")), doubles(ref.at("input.eta"))));
          } else {
            tv::FamilyOptions fo;
            fo.order = order;
            f = nn::make<tv::MLPDynamics>(mo, family, std::vector<int64_t>{4, 5, 4}, fo);
          }
          auto state = with_prefix(ref, "param.");
          if (family == "random")  // the draws are buffers of each layer, saved with the weights
            for (const char* layer : {"layer0", "layer1"}) {
              state.emplace_back(std::string(layer) + ".rff.frequencies", ref.at("input.zeta"));
              state.emplace_back(std::string(layer) + ".rff.phases", ref.at("input.eta"));
            }
          f->load_state_dict(state);
          Var x0(ref.at("input.x0").to(dt), true);
          ode::Options o;
          o.method = method;
          o.steps = steps;
          o.gradient = mode;
          o.checkpoint_every = 3;
          auto xs = ode::odeint(*f, x0, {0.0, 0.5, 1.0}, o);
          Var loss = sum(Var(ref.at("input.w1").to(dt)) * xs[1]) + sum(Var(ref.at("input.w2").to(dt)) * tanh(xs[2]));
          loss.backward();
          Checker check{ref, dt};
          check("expect.out1", xs[1].data());
          check("expect.out2", xs[2].data());
          check("expect.loss", loss.data());
          check("grad.x0", x0.grad());
          for (auto& [name, p] : f->named_parameters()) check("grad." + name, p.grad());
          if (dt == DType::Float64 && mode == ode::Gradient::Direct)
            std::printf("reference dense %-9s %-5s: worst relative error %.1e (float64)\n", family.c_str(),
                        method.c_str(), check.worst);
        }
      }
    }
  }
}

TEST_CASE("the conv T-NANODE block matches PyTorch", "[reference]") {
  for (const std::string method : {"euler", "rk4"}) {
    const data::TensorFile ref = reference("conv_trig_" + method);
    for (DType dt : {DType::Float64, DType::Float32}) {
      for (auto mode : {ode::Gradient::Direct, ode::Gradient::Checkpoint}) {
        INFO("conv " << method << " " << mode_name(mode));
        tv::FamilyOptions fo;
        fo.order = std::stoi(ref.metadata.at("order"));
        auto f = nn::make<tv::ConvDynamics>(nn::ModuleOptions().dtype(dt), "trig", 3, 3, fo);
        f->load_state_dict(with_prefix(ref, "param."));
        Var x0(ref.at("input.x0").to(dt), true);
        ode::Options o;
        o.method = method;
        o.steps = std::stoll(ref.metadata.at("steps"));
        o.gradient = mode;
        Var xT = ode::odeint_final(*f, x0, 0.0, 1.0, o);
        Var loss = sum(Var(ref.at("input.w").to(dt)) * xT);
        loss.backward();
        Checker check{ref, dt};
        check("expect.out", xT.data());
        check("expect.loss", loss.data());
        check("grad.x0", x0.grad());
        for (auto& [name, p] : f->named_parameters()) check("grad." + name, p.grad());
        if (dt == DType::Float64 && mode == ode::Gradient::Direct)
          std::printf("reference conv  trig      %-5s: worst relative error %.1e (float64)\n", method.c_str(),
                      check.worst);
      }
    }
  }
}

TEST_CASE("one training step of the Fig. 1 classifier matches PyTorch", "[reference]") {
  const data::TensorFile ref = reference("classifier_step");
  for (DType dt : {DType::Float64, DType::Float32}) {
    for (auto mode : {ode::Gradient::Direct, ode::Gradient::Checkpoint}) {
      INFO("classifier " << mode_name(mode));
      models::ClassifierOptions co;
      co.model = ref.metadata.at("model");
      co.order = std::stoi(ref.metadata.at("order"));
      co.in_channels = 1;
      co.image_size = std::stoll(ref.metadata.at("image_size"));
      co.classes = std::stoll(ref.metadata.at("classes"));
      co.widths = {4, 8};
      co.steps = std::stoll(ref.metadata.at("steps"));
      co.method = ref.metadata.at("method");
      co.gradient = mode;
      auto model = nn::make<models::Classifier>(nn::ModuleOptions().dtype(dt), co);
      model->load_state_dict(with_prefix(ref, "param."));  // strict: every parameter and buffer by name
      model->train();
      const Tensor labels = ref.at("input.labels").to(DType::Int32);
      Var logits = model->forward(Var(ref.at("input.images").to(dt)));
      Var loss = cross_entropy(logits, labels);
      optim::AdamOptions ao;
      ao.lr = std::stod(ref.metadata.at("lr"));
      optim::Adam adam(model->parameters(), ao);
      adam.zero_grad();
      loss.backward();
      Checker check{ref, dt};
      check("expect.logits", logits.data());
      check("expect.loss", loss.data());
      for (auto& [name, b] : model->named_buffers()) check("expect.buffer." + name, b.data());
      // A bias right before a norm that removes per-channel constants (the stem's
      // and down1's before batch norm; block1's before group norms of one channel
      // per group) has a gradient that is zero but for rounding, in PyTorch too.
      // Such a gradient is checked against the scale of all gradients instead, and
      // Adam's step on it (rounding noise over eps) only against Adam's bound lr.
      double scale = 0;
      for (auto& [name, p] : model->named_parameters())
        for (double v : ref.at("grad." + name).to_vector<double>()) scale = std::max(scale, std::abs(v));
      std::vector<std::string> zero_grad;
      std::vector<Tensor> before;
      for (auto& [name, p] : model->named_parameters()) {
        before.push_back(p.data().clone());
        double m = 0;
        for (double v : ref.at("grad." + name).to_vector<double>()) m = std::max(m, std::abs(v));
        if (m > 1e-12 * scale) {
          check("grad." + name, p.grad());
          continue;
        }
        zero_grad.push_back(name);
        double got = 0;
        for (double v : p.grad().to(DType::Float64).to_vector<double>()) got = std::max(got, std::abs(v));
        INFO(name << ": gradient zero up to rounding in PyTorch; nanode's largest entry " << got << ", scale " << scale);
        CHECK(got < tolerance(dt) * scale);
      }
      CHECK(zero_grad.size() == 3);  // stem.bias, down1.bias, block1.dynamics.conv.bias_coeffs
      // Adam's step in float64 only: it divides each gradient entry by its own
      // magnitude, so a float32 entry far below the largest (but within the 1e-4
      // checked above) can move its parameter by a different fraction of lr.
      adam.step();
      size_t i = 0;
      for (auto& [name, p] : model->named_parameters()) {
        if (dt == DType::Float32) break;
        if (std::find(zero_grad.begin(), zero_grad.end(), name) == zero_grad.end()) {
          check("expect.after_adam." + name, p.data());
        } else {
          double moved = 0;
          const auto a = p.data().to(DType::Float64).to_vector<double>(), b = before[i].to(DType::Float64).to_vector<double>();
          for (size_t k = 0; k < a.size(); ++k) moved = std::max(moved, std::abs(a[k] - b[k]));
          CHECK(moved <= 1.01 * ao.lr);
        }
        ++i;
      }
      if (dt == DType::Float64 && mode == ode::Gradient::Direct)
        std::printf("reference classifier step: worst relative error %.1e (float64)\n", check.worst);
      if (dt == DType::Float32 && mode == ode::Gradient::Direct)
        std::printf("reference classifier step: worst relative error %.1e (float32)\n", check.worst);
    }
  }
}
