#pragma once
// Fused ops of the ODE machinery: the Runge-Kutta stage update
// x + sum_j c_j k_j, and the time-basis combination W(t) = sum_k z_k(t) A_k.
// Each is one pass over memory forward and backward (and one CUDA kernel).
#include <memory>

#include "nanode/autograd/var.hpp"

namespace nanode {

/// x + sum_j c[j] * k[j]. x may be undefined (then just the sum).
NANODE_REGISTER_OP(lincomb);
inline Var lincomb(const Var& x, const std::vector<Var>& ks, const std::vector<double>& cs) {
  NANODE_CHECK(ks.size() == cs.size(), "lincomb: ", ks.size(), " terms but ", cs.size(), " coefficients");
  NANODE_CHECK(x.defined() || !ks.empty(), "lincomb: nothing to combine");
  std::vector<Tensor> kt;
  kt.reserve(ks.size());
  for (const auto& k : ks) kt.push_back(k.defined() ? k.data() : Tensor());
  Tensor out = backend::lincomb(x.defined() ? x.data() : Tensor(), kt, cs);
  std::vector<Var> inputs;
  std::vector<double> scale;  // coefficient of each recorded input
  inputs.reserve(ks.size() + 1);
  if (x.defined()) {
    inputs.push_back(x);
    scale.push_back(1.0);
  }
  for (size_t j = 0; j < ks.size(); ++j)
    if (ks[j].defined()) {
      inputs.push_back(ks[j]);
      scale.push_back(cs[j]);
    }
  return make_result("lincomb", out, inputs, [scale](const Tensor& g, GradInputs& gi) {
    for (size_t i = 0; i < scale.size(); ++i)
      if (gi.need(i)) gi.set(i, scale[i] == 1.0 ? g : backend::unary(UnaryOp::Affine, g, scale[i]));
  });
}

/// W = sum_k z[k] * A[k] for coefficients A [K, ...] and basis values z (the time
/// basis evaluated at some t). Gradient: dA[k] = z[k] dW.
NANODE_REGISTER_OP(basis_combine);
inline Var basis_combine(const Var& coeffs, const std::vector<double>& z) {
  Tensor w = backend::basis_combine(coeffs.data(), z);
  return make_result("basis_combine", w, {coeffs},
                     [z](const Tensor& g, GradInputs& gi) { gi.set(0, backend::basis_combine_backward(g, z)); });
}

/// basis_combine with z = z(t) of a described basis (TimeBasis::spec): on CUDA one
/// kernel evaluates z and combines, forward and backward; elsewhere it is
/// basis_combine(coeffs, z(t)).
inline Var basis_combine(const Var& coeffs, const BasisSpec& spec, double t) {
  Tensor w = backend::basis_combine_at(coeffs.data(), spec, t);
  auto sp = std::make_shared<BasisSpec>(spec);
  return make_result("basis_combine", w, {coeffs},
                     [sp, t](const Tensor& g, GradInputs& gi) { gi.set(0, backend::basis_combine_at_backward(g, *sp, t)); });
}

}  // namespace nanode
