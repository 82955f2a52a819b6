#pragma once
// The dynamics families of the paper, as time layers and the dynamics built from
// them: autonomous (Auto / Con-ResNet), time-appended (AppNODE), bucketed
// (B-NANODE), polynomial, trigonometric (T-NANODE), random Fourier features,
// hypernetwork and sigmoid-gated weights, Householder-orthogonal weights; and the
// unconstrained ResNet (separate weights per step).
#include <algorithm>
#include <cmath>
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

// ---- gated ------------------------------------------------------------------------

/// The gates sigma_n(t) = sigmoid(a_n t + b_n), n < d, of the gated families.
class TimeGates : public nn::Module {
 public:
  explicit TimeGates(int64_t d, Generator& gen = default_generator()) {
    NANODE_CHECK(d >= 1, "TimeGates: need at least one gate, got ", d);
    slope = register_parameter("slope", Tensor::normal({d}, 0.0, 2.0, gen));
    offset = register_parameter("offset", Tensor::zeros({d}));
  }
  Var at(double t) const { return sigmoid(slope * t + offset); }  // [d]
  /// Gate n of the gates g = at(t) as a [1] Var (broadcasts).
  static Var gate(const Var& g, size_t n) { return slice(g, 0, static_cast<int64_t>(n), static_cast<int64_t>(n + 1)); }
  Var slope, offset;
};

/// The "gated-kernel" variant (not eq. 12): one layer whose output is
/// sum_n sigma_n(t) L_n(x), a sigmoid-gated mixture of d autonomous linear maps
/// (a mixture of kernels inside the dynamics' nonlinearity).
class GatedLayer : public TimeLayer {
 public:
  GatedLayer(std::vector<std::shared_ptr<TimeLayer>> parts, Generator& gen = default_generator())
      : parts_(std::move(parts)) {
    NANODE_CHECK(!parts_.empty(), "GatedLayer: need at least one sub-layer");
    for (size_t n = 0; n < parts_.size(); ++n) register_module("f" + std::to_string(n), parts_[n]);
    gates = register_module("gates", std::make_shared<TimeGates>(static_cast<int64_t>(parts_.size()), gen));
  }
  Var forward(double t, const Var& x) const override {
    const Var g = gates->at(t);
    Var out;
    for (size_t n = 0; n < parts_.size(); ++n) {
      const Var term = parts_[n]->forward(t, x) * TimeGates::gate(g, n);
      out = out.defined() ? out + term : term;
    }
    return out;
  }
  std::shared_ptr<TimeGates> gates;

 private:
  std::vector<std::shared_ptr<TimeLayer>> parts_;
};

/// Gated dynamics (eq. 12): dx/dt = sum_n sigma_n(t) f_n(x), a sigmoid-gated
/// mixture of d autonomous dynamics f_n, each with its own weights (and
/// nonlinearities: the mixture is of whole vector fields, not of kernels).
class GatedDynamics : public ode::Dynamics {
 public:
  GatedDynamics(std::vector<std::shared_ptr<ode::Dynamics>> parts, Generator& gen = default_generator())
      : parts_(std::move(parts)) {
    NANODE_CHECK(!parts_.empty(), "GatedDynamics: need at least one sub-dynamics");
    for (size_t n = 0; n < parts_.size(); ++n) register_module("f" + std::to_string(n), parts_[n]);
    gates = register_module("gates", std::make_shared<TimeGates>(static_cast<int64_t>(parts_.size()), gen));
  }
  Var forward(double t, const Var& x) override {
    const Var g = gates->at(t);
    Var out;
    for (size_t n = 0; n < parts_.size(); ++n) {
      const Var term = parts_[n]->forward(t, x) * TimeGates::gate(g, n);
      out = out.defined() ? out + term : term;
    }
    return out;
  }
  const std::vector<std::shared_ptr<ode::Dynamics>>& parts() const { return parts_; }
  std::shared_ptr<TimeGates> gates;

 private:
  std::vector<std::shared_ptr<ode::Dynamics>> parts_;
};

// ---- families by name ---------------------------------------------------------------

/// Family names: auto, appnode, bucket, monomial, chebyshev, legendre, trig, random,
/// hyper, gated (eq. 12: a gated mixture of d dynamics), gated-kernel (a gated
/// mixture of d kernels inside one layer), householder (orthogonal weights whose
/// reflection vectors vary through FamilyOptions::householder_basis).
/// ("con-resnet" is "auto"; the difference is the solver.)
inline const std::vector<std::string>& family_names() {
  static const std::vector<std::string> names{"auto",  "appnode", "bucket", "monomial", "chebyshev",    "legendre",
                                              "trig",  "random",  "hyper",  "gated",    "gated-kernel", "householder"};
  return names;
}

struct FamilyOptions {
  int order = 4;            ///< d: basis order, buckets, features, or gated sub-dynamics
  double t0 = 0.0, t1 = 1.0;
  /// Random Fourier features (eqs. 9-10): each layer draws its own zeta ~ N(0, sigma^2)
  /// and eta ~ U[0, 2 pi) from (seed, layer): layers differ, and one seed gives the
  /// same draws in every run. The draws are buffers of the layer (saved and loaded).
  uint64_t seed = 0;
  int64_t layer = 0;        ///< the index of the layer being made (dynamics count their layers from it)
  double sigma = 1.0;
  /// Trig (eq. 8): 0 = the paper's frequencies 1..d; T > 0: frequencies 2 pi n / T.
  double trig_period = 0.0;
  /// Householder: the basis of the reflection vectors (any basis name; its order is
  /// `order`) and the number of reflections (0 = the dimension, as Lemma 1 needs).
  std::string householder_basis = "chebyshev";
  int64_t reflections = 0;
  bool bias = true;         ///< b(t) beside W(t) (basis, auto and gated families; appnode, hyper and
                            ///< householder layers always carry one)
};

/// The seed of layer `layer`'s random draws under model seed `seed` (splitmix64).
inline uint64_t layer_seed(uint64_t seed, int64_t layer) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(layer) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline BasisPtr family_basis(const std::string& family, const FamilyOptions& o) {
  if (family == "auto" || family == "constant") return std::make_shared<ConstantBasis>();
  if (family == "random") return std::make_shared<RandomFourierBasis>(o.order, o.sigma, layer_seed(o.seed, o.layer));
  if (family == "trig") return std::make_shared<TrigBasis>(o.order, o.trig_period);
  if (family == "householder") {
    NANODE_CHECK(o.householder_basis != "householder", "householder_basis must be a basis name, not 'householder'");
    return family_basis(o.householder_basis, o);
  }
  return make_basis(family, o.order, o.t0, o.t1, o.seed);
}

[[noreturn]] inline void unknown_family(const std::string& family) {
  std::string valid;
  for (const auto& n : family_names()) valid += (valid.empty() ? "" : ", ") + n;
  fail("unknown dynamics family '", family, "' (valid: ", valid, ")");
}

namespace detail {
[[noreturn]] inline void gated_is_dynamics(const std::string& what) {
  fail("family 'gated' (eq. 12) mixes whole dynamics, not ", what, ": build it with MLPDynamics, ConvDynamics or "
       "GatedDynamics, or use 'gated-kernel' for a gated mixture of kernels inside one layer");
}
}  // namespace detail

/// A time-varying dense layer in -> out of the family.
inline std::shared_ptr<TimeLayer> make_time_linear(const std::string& family, int64_t in, int64_t out,
                                                   const FamilyOptions& o) {
  NANODE_CHECK(o.bias || (family != "appnode" && family != "hyper" && family != "householder"),
               "family '", family, "' always has a bias: bias = false is not available for it");
  if (family == "appnode") return std::make_shared<AppendTimeLinear>(in, out);
  if (family == "hyper") return std::make_shared<HyperLinear>(in, out);
  if (family == "gated") detail::gated_is_dynamics("layers");
  if (family == "gated-kernel") {
    std::vector<std::shared_ptr<TimeLayer>> parts;
    for (int n = 0; n < std::max(1, o.order); ++n)
      parts.push_back(std::make_shared<TimeLinear>(in, out, std::make_shared<ConstantBasis>(), o.bias, o.t0, o.t1));
    return std::make_shared<GatedLayer>(parts);
  }
  if (family == "householder")
    return std::make_shared<HouseholderLinear>(in, out, o.reflections, family_basis(family, o),
                                               HouseholderMode::CompactWY, /*bias=*/true);
  for (const auto& n : family_names())
    if (n == family) return std::make_shared<TimeLinear>(in, out, family_basis(family, o), o.bias, o.t0, o.t1);
  unknown_family(family);
}

/// A time-varying convolution in -> out (kernel k) of the family.
inline std::shared_ptr<TimeLayer> make_time_conv(const std::string& family, int64_t in, int64_t out, int64_t kernel,
                                                 Conv2dOptions opt, const FamilyOptions& o) {
  NANODE_CHECK(o.bias || (family != "appnode" && family != "hyper" && family != "householder"),
               "family '", family, "' always has a bias: bias = false is not available for it");
  if (family == "appnode") return std::make_shared<AppendTimeConv2d>(in, out, kernel, opt);
  if (family == "hyper") return std::make_shared<HyperConv2d>(in, out, kernel, opt);
  if (family == "gated") detail::gated_is_dynamics("convolutions");
  if (family == "gated-kernel") {
    std::vector<std::shared_ptr<TimeLayer>> parts;
    for (int n = 0; n < std::max(1, o.order); ++n)
      parts.push_back(std::make_shared<TimeConv2d>(in, out, kernel, std::make_shared<ConstantBasis>(), opt, o.bias, o.t0, o.t1));
    return std::make_shared<GatedLayer>(parts);
  }
  if (family == "householder")
    return std::make_shared<HouseholderConv2d>(in, out, kernel, family_basis(family, o), opt, o.reflections);
  for (const auto& n : family_names())
    if (n == family) return std::make_shared<TimeConv2d>(in, out, kernel, family_basis(family, o), opt, o.bias, o.t0, o.t1);
  unknown_family(family);
}

// ---- dynamics -----------------------------------------------------------------------

/// dx/dt = MLP(t, x): time layers of the given widths {n, h_1, ..., n} with tanh
/// between them, and after the last one when final_tanh (W1: one layer, final tanh).
/// Layer i of a random-feature family draws with FamilyOptions::layer + i. The
/// family "gated" is eq. 12: sum_n sigma_n(t) MLP_n(x) over d autonomous MLPs of
/// these widths (the sub-dynamics "gated.f<n>").
class MLPDynamics : public ode::Dynamics {
 public:
  MLPDynamics(const std::string& family, const std::vector<int64_t>& widths, const FamilyOptions& o,
              bool final_tanh = false)
      : final_tanh_(final_tanh) {
    NANODE_CHECK(widths.size() >= 2 && widths.front() == widths.back(), "MLPDynamics: widths must start and end "
                 "with the state size (got ", widths.size(), " widths)");
    if (family == "gated") {
      std::vector<std::shared_ptr<ode::Dynamics>> parts;
      for (int n = 0; n < std::max(1, o.order); ++n) parts.push_back(std::make_shared<MLPDynamics>("auto", widths, o, final_tanh));
      gated_ = register_module("gated", std::make_shared<GatedDynamics>(parts));
      return;
    }
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
      FamilyOptions li = o;
      li.layer = o.layer + static_cast<int64_t>(i);
      layers_.push_back(register_module("layer" + std::to_string(i), make_time_linear(family, widths[i], widths[i + 1], li)));
    }
  }
  Var forward(double t, const Var& x) override {
    if (gated_) return gated_->forward(t, x);
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
    return final_tanh_ && !gated_ && std::dynamic_pointer_cast<TimeLinear>(layers_.back()) != nullptr;
  }
  Var forward_preactivation(double t, const Var& x, Var& bias, UnaryOp& act) override {
    NANODE_CHECK(has_preactivation(), "MLPDynamics::forward_preactivation: needs a final tanh after a TimeLinear");
    const Var h = last_input(t, x, bias, act);
    const auto& last = static_cast<const TimeLinear&>(*layers_.back());
    return linear_at(h, last.weight_coeffs, last.basis(), t);
  }
  /// Where the running solve's schedule holds W(t)^T of the last layer
  /// (detail::scheduled_weight) and cpu::linear_stage takes the shapes, the solver
  /// gets it and the last layer's input and runs the product with the stage;
  /// elsewhere false (linear_at's fused product, then the stage).
  bool linear_preactivation(double t, const Var& x, Tensor& h, Tensor& wt, Var& bias, UnaryOp& act) override {
    if (!has_preactivation() || GradMode::is_enabled()) return false;
    const auto& last = static_cast<const TimeLinear&>(*layers_.back());
    const Tensor& a = last.weight_coeffs.data();
    if (a.ndim() != 3 || !last.bias_coeffs.defined() || x.ndim() < 1) return false;
    bool takes = false;
    backend::dispatch_float(a.dtype(), "linear_preactivation", [&](auto tag) {
      takes = cpu::linear_stage_takes<decltype(tag)>(x.numel() / std::max<int64_t>(1, x.size(-1)), a.size(1), a.size(2));
    });
    if (!takes) return false;
    wt = detail::scheduled_weight(a, last.basis(), t, /*transposed=*/true);
    if (!wt.defined()) return false;
    h = last_input(t, x, bias, act).data();
    return true;
  }

 private:
  /// The last layer's input (the earlier layers, each with its tanh), its bias
  /// b(t) and the final activation.
  Var last_input(double t, const Var& x, Var& bias, UnaryOp& act) const {
    Var h = x;
    for (size_t i = 0; i + 1 < layers_.size(); ++i) h = tanh(layers_[i]->forward(t, h));
    bias = static_cast<const TimeLinear&>(*layers_.back()).bias(t);
    act = UnaryOp::Tanh;
    return h;
  }
  std::vector<std::shared_ptr<TimeLayer>> layers_;
  std::shared_ptr<GatedDynamics> gated_;
  bool final_tanh_;
};

/// dx/dt = tanh(conv(x; K(t))) with a same-size convolution (W2's dynamics). The
/// family "gated" is eq. 12: sum_n sigma_n(t) tanh(conv_n(x)) over d autonomous
/// convolutions (the sub-dynamics "gated.f<n>").
class ConvDynamics : public ode::Dynamics {
 public:
  ConvDynamics(const std::string& family, int64_t channels, int64_t kernel, const FamilyOptions& o) {
    if (family == "gated") {
      std::vector<std::shared_ptr<ode::Dynamics>> parts;
      for (int n = 0; n < std::max(1, o.order); ++n) parts.push_back(std::make_shared<ConvDynamics>("auto", channels, kernel, o));
      gated = register_module("gated", std::make_shared<GatedDynamics>(parts));
      return;
    }
    conv = register_module("conv", make_time_conv(family, channels, channels, kernel,
                                                  Conv2dOptions(1, kernel / 2), o));
  }
  Var forward(double t, const Var& x) override {
    return gated ? gated->forward(t, x) : tanh(conv->forward(t, x));
  }
  /// The solvers fuse the final tanh with the RK stage (Dynamics::has_preactivation);
  /// the convolution keeps its own bias.
  bool has_preactivation() const override { return !gated; }
  Var forward_preactivation(double t, const Var& x, Var& bias, UnaryOp& act) override {
    NANODE_CHECK(!gated, "ConvDynamics::forward_preactivation: the gated family has no single final tanh");
    bias = Var();
    act = UnaryOp::Tanh;
    return conv->forward(t, x);
  }
  std::shared_ptr<TimeLayer> conv;        ///< (not for "gated")
  std::shared_ptr<GatedDynamics> gated;   ///< (only for "gated")
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
  /// With a fixed step count, every time at which the dynamics' weights jump (a
  /// bucket basis of d pieces jumps at multiples of 1/d) must lie on the step grid:
  /// otherwise the solver would add steps there, and "L steps" would silently mean
  /// more. Such a pairing is an error naming the step counts that work, unless
  /// the options say to cross the jumps (Options::split_at_jumps = false).
  ODEBlock(std::shared_ptr<ode::Dynamics> f, ode::Options options, double t0 = 0.0, double t1 = 1.0)
      : f_(register_module("dynamics", std::move(f))), options_(std::move(options)), t0_(t0), t1_(t1) {
    if (options_.steps <= 0 || !options_.split_at_jumps) return;
    const double dt = (t1_ - t0_) / static_cast<double>(options_.steps);
    const std::vector<double> jumps = f_->jump_times(t0_, t1_);
    std::vector<double> off;
    for (double j : jumps) {
      const double k = std::round((j - t0_) / dt);
      if (std::abs(t0_ + k * dt - j) > 1e-9 * std::max(1.0, std::abs(t1_ - t0_))) off.push_back(j);
    }
    if (off.empty()) return;
    const int64_t pieces = static_cast<int64_t>(jumps.size()) + 1;  // a bucket basis: d pieces, d - 1 jumps
    fail("ODEBlock: the dynamics' weights jump at ", jumps.size(), " times in (", t0_, ", ", t1_, "), e.g. t = ",
         off.front(), ", which the grid of ", options_.steps, " steps (dt = ", dt,
         ") does not hold: the solver would add steps there. Use a step count that is a multiple of ", pieces,
         " (the buckets), e.g. ", pieces, " or ", 2 * pieces, ", or let the steps cross the jumps as a fixed-grid "
         "solver does (ode::Options::split_at_jumps = false; train_classifier --cross-jumps)");
  }
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
