#pragma once
// The dynamics families of the paper, as time layers and the dynamics built from
// them: autonomous (Auto / Con-ResNet), time-appended (AppNODE), bucketed
// (B-NANODE), polynomial, trigonometric (T-NANODE), random Fourier features,
// hypernetwork and sigmoid-gated weights, Householder-orthogonal weights; and the
// unconstrained ResNet (separate weights per step).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nanode/ode/odeint.hpp"
#include "nanode/ops/loss.hpp"
#include "nanode/timevarying/householder.hpp"

namespace nanode::tv {

// ---- AppNODE: time appended to the input ------------------------------------------

/// y = [x, t] W^T + b: a plain linear layer that also sees t.
class AppendTimeLinear : public TimeLayer {
 public:
  AppendTimeLinear(int64_t in, int64_t out) {
    lin = register_module("linear", std::make_shared<nn::Linear>(in + 1, out));
  }
  Var forward(double t, const Var& x) const override {
    std::vector<int64_t> dims = x.shape().vec();
    dims.back() = 1;
    Var tcol(Tensor::full(Shape(dims), t, x.dtype(), x.device()));
    return lin->forward(concat({x, tcol}, -1));
  }
  std::shared_ptr<nn::Linear> lin;
};

/// A convolution whose input has one extra channel filled with t.
class AppendTimeConv2d : public TimeLayer {
 public:
  AppendTimeConv2d(int64_t in, int64_t out, int64_t kernel, Conv2dOptions opt)
      : conv_(std::make_shared<TimeConv2d>(in + 1, out, kernel, std::make_shared<ConstantBasis>(), opt)) {
    register_module("conv", conv_);
  }
  Var forward(double t, const Var& x) const override {
    NANODE_CHECK(x.ndim() == 4, "AppendTimeConv2d: input must be [N, C, H, W], got ", x.shape());
    Var tch(Tensor::full(Shape{x.size(0), 1, x.size(2), x.size(3)}, t, x.dtype(), x.device()));
    return conv_->forward(t, concat({x, tch}, 1));
  }

 private:
  std::shared_ptr<TimeConv2d> conv_;
};

// ---- Hyper-NANODE: W_ij(t) = Psi([v_ij, t]) ----------------------------------------

/// Generates a weight tensor of any shape from per-entry embeddings v_ij through a
/// small MLP Psi shared over the entries; entries are scaled by 1/sqrt(fan_in).
class HyperWeights : public nn::Module {
 public:
  HyperWeights(std::vector<int64_t> shape, int64_t fan_in, int64_t embed = 4, int64_t hidden = 16,
               Generator& gen = default_generator())
      : shape_(std::move(shape)), scale_(1.0 / std::sqrt(static_cast<double>(fan_in))) {
    int64_t n = 1;
    for (auto s : shape_) n *= s;
    emb = register_parameter("embeddings", Tensor::normal({n, embed}, 0.0, 1.0, gen));
    psi1 = register_module("psi1", std::make_shared<nn::Linear>(embed + 1, hidden));
    psi2 = register_module("psi2", std::make_shared<nn::Linear>(hidden, 1));
  }
  Var at(double t) const {
    Var tcol(Tensor::full(Shape{emb.size(0), 1}, t, emb.dtype(), emb.device()));
    Var w = psi2->forward(tanh(psi1->forward(concat({emb, tcol}, 1))));
    return reshape(w * scale_, shape_);
  }
  Var emb;
  std::shared_ptr<nn::Linear> psi1, psi2;

 private:
  std::vector<int64_t> shape_;
  double scale_;
};

class HyperLinear : public TimeLayer {
 public:
  HyperLinear(int64_t in, int64_t out) {
    w = register_module("weight", std::make_shared<HyperWeights>(std::vector<int64_t>{out, in}, in));
    b = register_module("bias", std::make_shared<HyperWeights>(std::vector<int64_t>{out}, in));
  }
  Var forward(double t, const Var& x) const override { return linear(x, w->at(t), b->at(t)); }
  std::shared_ptr<HyperWeights> w, b;
};

class HyperConv2d : public TimeLayer {
 public:
  HyperConv2d(int64_t in, int64_t out, int64_t kernel, Conv2dOptions opt) : opt_(opt) {
    const int64_t fan_in = in * kernel * kernel;
    w = register_module("weight", std::make_shared<HyperWeights>(std::vector<int64_t>{out, in, kernel, kernel}, fan_in));
    b = register_module("bias", std::make_shared<HyperWeights>(std::vector<int64_t>{out}, fan_in));
  }
  Var forward(double t, const Var& x) const override { return conv2d(x, w->at(t), b->at(t), opt_); }
  std::shared_ptr<HyperWeights> w, b;

 private:
  Conv2dOptions opt_;
};

// ---- gated: sum_n sigmoid(a_n t + b_n) f_n(x) -------------------------------------

/// Mixes d autonomous layers with time gates sigma_n(t) = sigmoid(a_n t + b_n).
class GatedLayer : public TimeLayer {
 public:
  GatedLayer(std::vector<std::shared_ptr<TimeLayer>> parts, Generator& gen = default_generator())
      : parts_(std::move(parts)) {
    NANODE_CHECK(!parts_.empty(), "GatedLayer: need at least one sub-layer");
    const int64_t d = static_cast<int64_t>(parts_.size());
    for (int64_t n = 0; n < d; ++n) register_module("f" + std::to_string(n), parts_[static_cast<size_t>(n)]);
    gate_slope = register_parameter("gate_slope", Tensor::normal({d}, 0.0, 2.0, gen));
    gate_bias = register_parameter("gate_bias", Tensor::zeros({d}));
  }
  Var forward(double t, const Var& x) const override {
    const Var gates = sigmoid(gate_slope * t + gate_bias);  // [d]
    Var out;
    for (size_t n = 0; n < parts_.size(); ++n) {
      const Var g = slice(gates, 0, static_cast<int64_t>(n), static_cast<int64_t>(n + 1));  // [1], broadcasts
      const Var term = parts_[n]->forward(t, x) * g;
      out = out.defined() ? out + term : term;
    }
    return out;
  }
  Var gate_slope, gate_bias;

 private:
  std::vector<std::shared_ptr<TimeLayer>> parts_;
};

// ---- Householder: y = x M(t)^T + b(t) ---------------------------------------------

class HouseholderLayer : public TimeLayer {
 public:
  HouseholderLayer(int64_t n, int64_t k, BasisPtr basis, HouseholderMode mode = HouseholderMode::CompactWY)
      : basis_(basis ? basis : std::make_shared<ConstantBasis>()) {
    rot = register_module("orthogonal", std::make_shared<HouseholderLinear>(n, k, basis, mode));
    bias_coeffs = register_parameter("bias_coeffs", Tensor::zeros({basis_->size(), n}));
  }
  Var forward(double t, const Var& x) const override {
    return rot->forward(t, x) + combine_at(bias_coeffs, *basis_, t);
  }
  void collect_jump_times(double t0, double t1, std::vector<double>& out) const override {
    basis_->collect_jump_times(t0, t1, out);
  }
  std::shared_ptr<HouseholderLinear> rot;
  Var bias_coeffs;

 private:
  BasisPtr basis_;
};

// ---- families by name ---------------------------------------------------------------

/// Family names: auto, appnode, bucket, monomial, chebyshev, legendre, trig, random,
/// hyper, gated, householder ("con-resnet" is "auto"; the difference is the solver).
inline const std::vector<std::string>& family_names() {
  static const std::vector<std::string> names{"auto",  "appnode", "bucket", "monomial", "chebyshev",  "legendre",
                                              "trig",  "random",  "hyper",  "gated",    "householder"};
  return names;
}

struct FamilyOptions {
  int order = 4;            ///< d: basis order, buckets, gated sub-dynamics, or reflections (householder; 0 = n)
  double t0 = 0.0, t1 = 1.0;
  uint64_t seed = 0;        ///< random Fourier features
  bool bias = true;         ///< b(t) beside W(t) (basis, auto and gated families; appnode, hyper and
                            ///< householder layers always carry one)
};

inline BasisPtr family_basis(const std::string& family, const FamilyOptions& o) {
  if (family == "auto") return std::make_shared<ConstantBasis>();
  return make_basis(family, o.order, o.t0, o.t1, o.seed);
}

[[noreturn]] inline void unknown_family(const std::string& family) {
  std::string valid;
  for (const auto& n : family_names()) valid += (valid.empty() ? "" : ", ") + n;
  fail("unknown dynamics family '", family, "' (valid: ", valid, ")");
}

/// A time-varying dense layer in -> out of the family.
inline std::shared_ptr<TimeLayer> make_time_linear(const std::string& family, int64_t in, int64_t out,
                                                   const FamilyOptions& o) {
  NANODE_CHECK(o.bias || (family != "appnode" && family != "hyper" && family != "householder"),
               "family '", family, "' always has a bias: bias = false is not available for it");
  if (family == "appnode") return std::make_shared<AppendTimeLinear>(in, out);
  if (family == "hyper") return std::make_shared<HyperLinear>(in, out);
  if (family == "gated") {
    std::vector<std::shared_ptr<TimeLayer>> parts;
    for (int n = 0; n < std::max(1, o.order); ++n)
      parts.push_back(std::make_shared<TimeLinear>(in, out, std::make_shared<ConstantBasis>(), o.bias, o.t0, o.t1));
    return std::make_shared<GatedLayer>(parts);
  }
  if (family == "householder") {
    NANODE_CHECK(in == out, "householder layers are square: got ", in, " -> ", out);
    return std::make_shared<HouseholderLayer>(in, o.order > 0 ? o.order : in, std::make_shared<ConstantBasis>());
  }
  for (const auto& n : family_names())
    if (n == family) return std::make_shared<TimeLinear>(in, out, family_basis(family, o), o.bias, o.t0, o.t1);
  unknown_family(family);
}

/// A time-varying convolution in -> out (kernel k) of the family.
inline std::shared_ptr<TimeLayer> make_time_conv(const std::string& family, int64_t in, int64_t out, int64_t kernel,
                                                 Conv2dOptions opt, const FamilyOptions& o) {
  NANODE_CHECK(o.bias || (family != "appnode" && family != "hyper"),
               "family '", family, "' always has a bias: bias = false is not available for it");
  if (family == "appnode") return std::make_shared<AppendTimeConv2d>(in, out, kernel, opt);
  if (family == "hyper") return std::make_shared<HyperConv2d>(in, out, kernel, opt);
  if (family == "gated") {
    std::vector<std::shared_ptr<TimeLayer>> parts;
    for (int n = 0; n < std::max(1, o.order); ++n)
      parts.push_back(std::make_shared<TimeConv2d>(in, out, kernel, std::make_shared<ConstantBasis>(), opt, o.bias, o.t0, o.t1));
    return std::make_shared<GatedLayer>(parts);
  }
  NANODE_CHECK(family != "householder", "householder weights are dense only; no convolutional form");
  for (const auto& n : family_names())
    if (n == family) return std::make_shared<TimeConv2d>(in, out, kernel, family_basis(family, o), opt, o.bias, o.t0, o.t1);
  unknown_family(family);
}

// ---- dynamics -----------------------------------------------------------------------

/// dx/dt = MLP(t, x): time layers of the given widths {n, h_1, ..., n} with tanh
/// between them, and after the last one when final_tanh (W1: one layer, final tanh).
class MLPDynamics : public ode::Dynamics {
 public:
  MLPDynamics(const std::string& family, const std::vector<int64_t>& widths, const FamilyOptions& o,
              bool final_tanh = false)
      : final_tanh_(final_tanh) {
    NANODE_CHECK(widths.size() >= 2 && widths.front() == widths.back(), "MLPDynamics: widths must start and end "
                 "with the state size (got ", widths.size(), " widths)");
    for (size_t i = 0; i + 1 < widths.size(); ++i)
      layers_.push_back(register_module("layer" + std::to_string(i), make_time_linear(family, widths[i], widths[i + 1], o)));
  }
  Var forward(double t, const Var& x) override {
    Var h = x;
    for (size_t i = 0; i < layers_.size(); ++i) {
      h = layers_[i]->forward(t, h);
      if (i + 1 < layers_.size() || final_tanh_) h = tanh(h);
    }
    return h;
  }
  const std::vector<std::shared_ptr<TimeLayer>>& layers() const { return layers_; }
  /// With a final tanh after a time-varying linear layer, the solvers fuse that
  /// layer's bias and the tanh with the RK stage (Dynamics::has_preactivation).
  bool has_preactivation() const override {
    return final_tanh_ && std::dynamic_pointer_cast<TimeLinear>(layers_.back()) != nullptr;
  }
  Var forward_preactivation(double t, const Var& x, Var& bias, UnaryOp& act) override {
    NANODE_CHECK(has_preactivation(), "MLPDynamics::forward_preactivation: needs a final tanh after a TimeLinear");
    Var h = x;
    for (size_t i = 0; i + 1 < layers_.size(); ++i) h = tanh(layers_[i]->forward(t, h));
    const auto& last = static_cast<const TimeLinear&>(*layers_.back());
    bias = last.bias(t);
    act = UnaryOp::Tanh;
    return linear(h, last.weight(t), Var());
  }

 private:
  std::vector<std::shared_ptr<TimeLayer>> layers_;
  bool final_tanh_;
};

/// dx/dt = tanh(conv(x; K(t))) with a same-size convolution (W2's dynamics).
class ConvDynamics : public ode::Dynamics {
 public:
  ConvDynamics(const std::string& family, int64_t channels, int64_t kernel, const FamilyOptions& o) {
    conv = register_module("conv", make_time_conv(family, channels, channels, kernel,
                                                  Conv2dOptions(1, kernel / 2), o));
  }
  Var forward(double t, const Var& x) override { return tanh(conv->forward(t, x)); }
  std::shared_ptr<TimeLayer> conv;
};

// ---- Uncon-ResNet: separate weights per step ----------------------------------------

/// x_{k+1} = x_k + h tanh(x_k W_k^T + b_k), k = 0..L-1, h = (t1 - t0) / L: a
/// discrete residual network with its own weights at every step.
class UnconResNet : public nn::Module {
 public:
  UnconResNet(int64_t n, int64_t steps, double t0 = 0.0, double t1 = 1.0) : h_((t1 - t0) / static_cast<double>(steps)) {
    NANODE_CHECK(steps >= 1, "UnconResNet: need at least one step");
    for (int64_t k = 0; k < steps; ++k)
      blocks.push_back(register_module("step" + std::to_string(k), std::make_shared<nn::Linear>(n, n)));
  }
  Var forward(const Var& x) const {
    Var h = x;
    for (const auto& b : blocks) h = lincomb(h, {tanh(b->forward(h))}, {h_});
    return h;
  }
  std::vector<std::shared_ptr<nn::Linear>> blocks;

 private:
  double h_;
};

/// An ODE block: x -> x(t1) for dx/dt = f(t, x), x(t0) = x, with the solver and
/// gradient mode of `options`.
class ODEBlock : public nn::Module {
 public:
  ODEBlock(std::shared_ptr<ode::Dynamics> f, ode::Options options, double t0 = 0.0, double t1 = 1.0)
      : f_(register_module("dynamics", std::move(f))), options_(std::move(options)), t0_(t0), t1_(t1) {}
  Var forward(const Var& x) { return ode::odeint_final(*f_, x, t0_, t1_, options_, stats_); }
  ode::Dynamics& dynamics() { return *f_; }
  ode::Options& options() { return options_; }
  /// Counters of the last forward (and its backward once run).
  const ode::Stats& stats() const { return *stats_; }

 private:
  std::shared_ptr<ode::Dynamics> f_;
  ode::Options options_;
  double t0_, t1_;
  std::shared_ptr<ode::Stats> stats_ = std::make_shared<ode::Stats>();
};

}  // namespace nanode::tv
