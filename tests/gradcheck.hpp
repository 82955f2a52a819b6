#pragma once
// Central finite differences against reverse-mode gradients, in float64.
#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "nanode/nanode.hpp"

namespace nanode::testing {

/// A float64 leaf that requires grad, from values and a shape.
inline Var leaf(std::vector<double> v, Shape s) { return Var(Tensor::from_vector(v, s), true); }

/// Random float64 tensor with entries in [lo, hi).
inline Tensor rand64(const Shape& s, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator g(seed);
  return Tensor::uniform(s, lo, hi, g, DType::Float64);
}

/// Random float64 values kept away from 0 by at least `gap` (for kinks at 0).
inline Tensor rand64_away(const Shape& s, uint64_t seed, double gap = 0.1) {
  Tensor t = rand64(s, seed);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] >= 0 ? p[i] + gap : p[i] - gap;
  return t;
}

using VarFn = std::function<Var(const std::vector<Var>&)>;

struct GradcheckResult {
  double max_abs_err = 0, max_rel_err = 0;
  bool ok = true;
  std::string where;
};

/// Checks d/dx_i sum(w * f(x)) for every element of every input with
/// requires_grad, where w is a fixed random weighting of f's output.
inline GradcheckResult gradcheck(const VarFn& f, const std::vector<Tensor>& inputs, double eps = 1e-6,
                                 double atol = 1e-6, double rtol = 1e-4, std::vector<bool> differentiable = {}) {
  if (differentiable.empty()) differentiable.assign(inputs.size(), true);
  std::vector<Var> vars;
  for (size_t i = 0; i < inputs.size(); ++i) vars.emplace_back(inputs[i].clone(), static_cast<bool>(differentiable[i]));
  Var out = f(vars);
  Tensor w = rand64(out.shape(), 0xC0FFEE, 0.5, 1.5);
  auto weighted = [&](const Var& o) {
    NoGradGuard ng;
    double s = 0;
    const auto ov = o.data().to_vector<double>(), wv = w.to_vector<double>();
    for (size_t k = 0; k < ov.size(); ++k) s += ov[k] * wv[k];
    return s;
  };
  Var loss = sum(out * Var(w));
  loss.backward();
  GradcheckResult r;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!differentiable[i]) continue;
    Tensor analytic = vars[i].grad();
    std::vector<double> an = analytic.defined() ? analytic.to_vector<double>()
                                                : std::vector<double>(static_cast<size_t>(inputs[i].numel()), 0.0);
    for (int64_t k = 0; k < inputs[i].numel(); ++k) {
      std::vector<Var> plus, minus;
      for (size_t j = 0; j < inputs.size(); ++j) {
        Tensor tp = inputs[j].clone(), tm = inputs[j].clone();
        if (j == i) {
          tp.data<double>()[k] += eps;
          tm.data<double>()[k] -= eps;
        }
        plus.emplace_back(tp);
        minus.emplace_back(tm);
      }
      double fp, fm;
      {
        NoGradGuard ng;
        fp = weighted(f(plus));
        fm = weighted(f(minus));
      }
      const double numeric = (fp - fm) / (2 * eps);
      const double a = an[static_cast<size_t>(k)];
      const double err = std::abs(a - numeric);
      const double rel = err / std::max(1e-12, std::abs(numeric));
      r.max_abs_err = std::max(r.max_abs_err, err);
      if (err > atol + rtol * std::abs(numeric)) {
        r.max_rel_err = std::max(r.max_rel_err, rel);
        if (r.ok)
          r.where = "input " + std::to_string(i) + " element " + std::to_string(k) + ": analytic " +
                    std::to_string(a) + " vs numeric " + std::to_string(numeric);
        r.ok = false;
      }
    }
  }
  return r;
}

}  // namespace nanode::testing
