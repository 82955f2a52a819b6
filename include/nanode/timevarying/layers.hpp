#pragma once
// Layers whose weights are functions of time: W(t) = sum_k z_k(t) A_k for a time
// basis z. The coefficients A are parameters named "weight_coeffs" and
// "bias_coeffs"; l2_penalty sums their squares.
#include <cmath>

#include "nanode/nn/layers.hpp"
#include "nanode/ode/schedule.hpp"
#include "nanode/ops/fused.hpp"
#include "nanode/timevarying/basis.hpp"

namespace nanode::tv {

namespace detail {
/// Coefficients [K, shape...] drawn so that W(t) has the spread of a plain layer's
/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weight, averaged over [t0, t1].
inline Tensor init_coeffs(const TimeBasis& basis, std::vector<int64_t> shape, int64_t fan_in, double t0, double t1,
                          Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in)) / std::sqrt(basis.mean_square(t0, t1));
  shape.insert(shape.begin(), basis.size());
  return Tensor::uniform(Shape(shape), -bound, bound, gen);
}
}  // namespace detail

/// W(t) = sum_k z_k(t) A_k for coefficients A [K, ...]: through the fused kernel on
/// CUDA when the basis can be described to it, else from z(t) on the host.
inline Var combine_at(const Var& coeffs, const TimeBasis& basis, double t) {
  BasisSpec s;
  if (coeffs.device().is_cuda() && basis.spec(s)) return basis_combine(coeffs, s, t);
  return basis_combine(coeffs, basis.eval(t));
}

namespace detail {
/// W(t) = basis_combine(coeffs, basis.eval(t)) (or its transpose) at the upcoming
/// times of the running solve's schedule (ode::Schedule), computed a block at a
/// time with each piece of the coefficients read once for up to 8 times
/// (basis_combine_many: the same bits) and kept in the schedule, one block per
/// layer and form at a time, so that nothing outlives the solve. The transpose is
/// combined from the coefficients transposed once per solve: entry (i, o) of
/// W(t)^T is the same sum, in the same order, as entry (o, i) of W(t).
struct ScheduledWeights {
  Tensor coeffs;  ///< holds the storage, so no other tensor can take the key
  Tensor source;  ///< what is combined: coeffs, or coeffs with each A_k transposed
  const TimeBasis* basis = nullptr;
  size_t first = 0;  ///< the schedule index of w[0]
  std::vector<Tensor> w;
  int64_t fills = 0, served = 0;
};
/// A block's size in bytes: the combined weights of a block stay in L2 while the
/// steps read them.
constexpr int64_t kScheduledBlockBytes = int64_t{512} << 10;
constexpr int64_t kScheduledBlockMax = 16;

/// W(t) [out, in] (W(t)^T [in, out] with `transposed`, for coefficients
/// [K, out, in]) from the schedule, or an undefined Tensor where it has none: no
/// schedule, t not among its coming times, not on the CPU, or a W too large for a
/// block of two.
inline Tensor scheduled_weight(const Tensor& coeffs, const TimeBasis& basis, double t, bool transposed = false) {
  ode::Schedule* s = ode::Schedule::current();
  if (!s || !coeffs.device().is_cpu() || coeffs.ndim() != (transposed ? 3 : coeffs.ndim()) || coeffs.ndim() < 2 ||
      coeffs.numel() == 0)
    return Tensor();
  const int64_t bytes = coeffs.numel() / coeffs.size(0) * static_cast<int64_t>(dtype_size(coeffs.dtype()));
  const int64_t block = std::min(kScheduledBlockMax, kScheduledBlockBytes / bytes);
  if (block < 2) return Tensor();
  // The key: the coefficients' address, one byte on for the transposed form (a
  // key only: never read).
  std::shared_ptr<void>& slot = s->slot(static_cast<const char*>(coeffs.raw_data()) + (transposed ? 1 : 0));
  auto* c = static_cast<ScheduledWeights*>(slot.get());
  if (c && (c->basis != &basis || c->coeffs.shape() != coeffs.shape() || c->coeffs.dtype() != coeffs.dtype())) {
    slot.reset();  // another view or basis at the same address: start over
    c = nullptr;
  }
  if (!c) {
    auto fresh = std::make_shared<ScheduledWeights>();
    fresh->coeffs = coeffs;
    fresh->basis = &basis;
    c = fresh.get();
    slot = std::move(fresh);
  }
  const size_t at = s->find(t, c->first);
  if (at == ode::Schedule::npos) return Tensor();
  if (c->w.empty() || at >= c->first + c->w.size()) {
    if (!c->source.defined()) c->source = transposed ? backend::permute(coeffs, {0, 2, 1}) : coeffs;
    const auto& times = s->times();
    std::vector<std::vector<double>> zs;
    for (size_t i = at; i < times.size() && zs.size() < static_cast<size_t>(block); ++i) zs.push_back(basis.eval(times[i]));
    c->w.clear();  // the old block goes first: one block in memory at a time
    c->w = backend::basis_combine_many(c->source, zs);
    c->first = at;
    ++c->fills;
  }
  ++c->served;
  ++ode::Schedule::totals().served;
  return c->w[at - c->first];
}
}  // namespace detail

/// x W(t)^T (+ b(t)) for W(t) = combine_at(coeffs, basis, t): with no graph to
/// record (grad mode off, or nothing here requires grad) and on the CPU without
/// holding W(t): W(t) from the running solve's block (detail::scheduled_weight)
/// where it has one, else one fused pass (backend::combine_linear), both with the
/// same bits as the unfused ops (the solvers' no-grad passes and inference); else
/// linear(x, combine_at(coeffs, basis, t), bias).
inline Var linear_at(const Var& x, const Var& coeffs, const TimeBasis& basis, double t, const Var& bias = Var()) {
  const bool graph = GradMode::is_enabled() && (x.requires_grad() || coeffs.requires_grad() ||
                                                (bias.defined() && bias.requires_grad()));
  if (graph || !coeffs.device().is_cpu() || coeffs.ndim() != 3) return linear(x, combine_at(coeffs, basis, t), bias);
  const Tensor w = detail::scheduled_weight(coeffs.data(), basis, t);
  Tensor y = w.defined() ? backend::linear_rows(x.data(), w) : backend::combine_linear(x.data(), coeffs.data(), basis.eval(t));
  if (bias.defined()) {
    NANODE_CHECK(bias.ndim() == 1 && bias.size(0) == coeffs.size(1), "linear: bias ", bias.shape(),
                 " does not match the ", coeffs.size(1), " outputs of coefficients ", coeffs.shape());
    y = backend::binary(BinaryOp::Add, y, bias.data());
  }
  return make_result("linear", y, {x, coeffs}, [](const Tensor&, GradInputs&) {
    fail("linear_at: no graph was recorded for this product");
  });
}

/// The draws of a random-feature basis kept as buffers of the layer that uses it
/// ("frequencies" zeta and "phases" eta), so that they are saved and loaded with
/// the weights; after a load the layer's basis is rebuilt from them.
class FourierDraws : public nn::Module {
 public:
  explicit FourierDraws(BasisPtr& basis) : basis_(basis) {
    const auto& b = dynamic_cast<const RandomFourierBasis&>(*basis);
    const int64_t d = b.size();
    zeta = register_buffer("frequencies", Tensor::from_vector(b.frequencies(), {d}).to(DType::Float32));
    eta = register_buffer("phases", Tensor::from_vector(b.phases(), {d}).to(DType::Float32));
  }
  void on_state_loaded() override {
    const auto z = zeta.data().to(Device::cpu()).to(DType::Float64).to_vector<double>();
    const auto e = eta.data().to(Device::cpu()).to(DType::Float64).to_vector<double>();
    for (size_t k = 0; k < z.size(); ++k)
      NANODE_CHECK(std::isfinite(z[k]) && std::isfinite(e[k]), "random features: the loaded frequencies and phases "
                   "must be finite (feature ", k, " is ", z[k], ", ", e[k], ")");
    basis_ = std::make_shared<RandomFourierBasis>(z, e);
  }
  Var zeta, eta;

 private:
  BasisPtr& basis_;
};

/// A layer evaluated at a time t: the building block of every dynamics family.
class TimeLayer : public nn::Module {
 public:
  virtual Var forward(double t, const Var& x) const = 0;
  /// Adds the sum of squares of this layer's time-basis coefficients to `total`
  /// (the L2 penalty of l2_penalty): all of them, or all but A_0 (the constant
  /// term's, when the basis has one) unless include_a0. Layers without basis
  /// coefficients add nothing.
  virtual void add_l2(Var& total, bool include_a0) const { (void)total, (void)include_a0; }

 protected:
  /// Registers the draws of a random-feature basis as buffers (see FourierDraws).
  void keep_basis_draws(BasisPtr& basis) {
    if (dynamic_cast<const RandomFourierBasis*>(basis.get())) register_module("rff", std::make_shared<FourierDraws>(basis));
  }
  static void add_squares(Var& total, const Var& coeffs, const TimeBasis& basis, bool include_a0) {
    if (!coeffs.defined()) return;
    Var c = coeffs;
    if (!include_a0 && basis.has_constant_term()) {
      if (coeffs.size(0) == 1) return;
      c = slice(coeffs, 0, 1, coeffs.size(0));
    }
    Var s = sum(square(c));
    total = total.defined() ? total + s : s;
  }
};

/// y = x W(t)^T + b(t) with W(t) [out, in] and b(t) [out] from the basis.
class TimeLinear : public TimeLayer {
 public:
  TimeLinear(int64_t in, int64_t out, BasisPtr basis, bool bias = true, double t0 = 0.0, double t1 = 1.0,
             Generator& gen = default_generator())
      : basis_(std::move(basis)) {
    NANODE_CHECK(basis_ != nullptr, "TimeLinear: no basis given");
    NANODE_CHECK(in > 0 && out > 0, "TimeLinear: feature counts must be positive, got ", in, " -> ", out);
    weight_coeffs = register_parameter("weight_coeffs", detail::init_coeffs(*basis_, {out, in}, in, t0, t1, gen));
    if (bias) bias_coeffs = register_parameter("bias_coeffs", detail::init_coeffs(*basis_, {out}, in, t0, t1, gen));
    keep_basis_draws(basis_);
  }
  void add_l2(Var& total, bool include_a0) const override {
    add_squares(total, weight_coeffs, *basis_, include_a0);
    add_squares(total, bias_coeffs, *basis_, include_a0);
  }
  /// W(t) [out, in].
  Var weight(double t) const { return combine_at(weight_coeffs, *basis_, t); }
  Var bias(double t) const { return bias_coeffs.defined() ? combine_at(bias_coeffs, *basis_, t) : Var(); }
  Var forward(double t, const Var& x) const override { return linear_at(x, weight_coeffs, *basis_, t, bias(t)); }
  void collect_jump_times(double t0, double t1, std::vector<double>& out) const override {
    basis_->collect_jump_times(t0, t1, out);
  }
  const TimeBasis& basis() const { return *basis_; }
  Var weight_coeffs, bias_coeffs;

 private:
  BasisPtr basis_;
};

/// 2-D convolution with kernel K(t) [out, in, k, k] and bias b(t) [out] from the basis.
class TimeConv2d : public TimeLayer {
 public:
  TimeConv2d(int64_t in, int64_t out, int64_t kernel, BasisPtr basis, Conv2dOptions opt = Conv2dOptions(1, 0),
             bool bias = true, double t0 = 0.0, double t1 = 1.0, Generator& gen = default_generator())
      : basis_(std::move(basis)), opt_(opt) {
    NANODE_CHECK(basis_ != nullptr, "TimeConv2d: no basis given");
    NANODE_CHECK(in > 0 && out > 0 && kernel > 0, "TimeConv2d: channels and kernel size must be positive");
    const int64_t fan_in = in * kernel * kernel;
    weight_coeffs =
        register_parameter("weight_coeffs", detail::init_coeffs(*basis_, {out, in, kernel, kernel}, fan_in, t0, t1, gen));
    if (bias) bias_coeffs = register_parameter("bias_coeffs", detail::init_coeffs(*basis_, {out}, fan_in, t0, t1, gen));
    keep_basis_draws(basis_);
  }
  void add_l2(Var& total, bool include_a0) const override {
    add_squares(total, weight_coeffs, *basis_, include_a0);
    add_squares(total, bias_coeffs, *basis_, include_a0);
  }
  const TimeBasis& basis() const { return *basis_; }
  Var forward(double t, const Var& x) const override {
    return conv2d(x, combine_at(weight_coeffs, *basis_, t),
                  bias_coeffs.defined() ? combine_at(bias_coeffs, *basis_, t) : Var(), opt_);
  }
  void collect_jump_times(double t0, double t1, std::vector<double>& out) const override {
    basis_->collect_jump_times(t0, t1, out);
  }
  Var weight_coeffs, bias_coeffs;

 private:
  BasisPtr basis_;
  Conv2dOptions opt_;
};

/// The L2 penalty on time-basis coefficients: the sum of squares of every
/// coefficient of every time layer in `m` (TimeLayer::add_l2), without A_0 (the
/// constant term's coefficients) unless include_a0. Householder reflection vectors
/// are not coefficients of W (they are normalised before use) and are left out.
inline void collect_l2(const nn::Module& m, Var& total, bool include_a0) {
  if (auto* layer = dynamic_cast<const TimeLayer*>(&m)) layer->add_l2(total, include_a0);
  for (const auto& [n, c] : m.children()) collect_l2(*c, total, include_a0);
}
inline Var l2_penalty(const nn::Module& m, bool include_a0 = false) {
  Var total;
  collect_l2(m, total, include_a0);
  NANODE_CHECK(total.defined(), "l2_penalty: the module has no time-basis coefficients",
               include_a0 ? "" : " other than A_0 (pass include_a0 to penalise those too)");
  return total;
}

}  // namespace nanode::tv
