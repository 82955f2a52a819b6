#pragma once
// Layers whose weights are functions of time: W(t) = sum_k z_k(t) A_k for a time
// basis z. The coefficients A are parameters named "weight_coeffs" and
// "bias_coeffs" (l2_penalty finds them by that name).
#include <cmath>

#include "nanode/nn/layers.hpp"
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

/// A layer evaluated at a time t: the building block of every dynamics family.
class TimeLayer : public nn::Module {
 public:
  virtual Var forward(double t, const Var& x) const = 0;
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
  }
  /// W(t) [out, in].
  Var weight(double t) const { return combine_at(weight_coeffs, *basis_, t); }
  Var bias(double t) const { return bias_coeffs.defined() ? combine_at(bias_coeffs, *basis_, t) : Var(); }
  Var forward(double t, const Var& x) const override { return linear(x, weight(t), bias(t)); }
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
  }
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

/// sum of squares of every time-basis coefficient in `m` (parameters named
/// *_coeffs): the L2 penalty that damps high frequencies of trig bases.
inline Var l2_penalty(const nn::Module& m) {
  Var total;
  for (auto& [name, p] : m.named_parameters()) {
    if (name.size() < 6 || name.compare(name.size() - 6, 6, "coeffs") != 0) continue;
    Var s = sum(square(p));
    total = total.defined() ? total + s : s;
  }
  NANODE_CHECK(total.defined(), "l2_penalty: the module has no time-basis coefficients");
  return total;
}

}  // namespace nanode::tv
