#pragma once
// Fused ops of the ODE machinery: the Runge-Kutta stage update
// x + sum_j c_j k_j, the time-basis combination W(t) = sum_k z_k(t) A_k, and the
// sequential Householder chain.
// Each is one pass over memory forward and backward (and one CUDA kernel).
#include <memory>

#include "nanode/autograd/var.hpp"
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/linalg.hpp"
#include "nanode/ops/reduce.hpp"
#include "nanode/ops/shape.hpp"

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


/// The sequential Householder chain y = x H(v_{k-1}) ... H(v_0) for x [B, n] and
/// vectors v [k, n], H(v) = I - 2 v v^T / |v|^2 (v need not be normalised; a zero
/// vector gives NaN). One pass per row on the CPU and one kernel on CUDA (the
/// vectors staged through shared memory), forward and backward; the backward
/// recovers each reflection's input from its output, so it stores nothing but y.
/// On CUDA with n > cuda::kHouseholderMaxN it is composed from matmuls instead.
NANODE_REGISTER_OP(householder_chain);
inline Var householder_chain(const Var& x, const Var& v) {
  NANODE_CHECK(x.ndim() == 2 && v.ndim() == 2 && x.size(1) == v.size(1) && v.size(0) >= 1,
               "householder_chain: need x [B, n] and vectors [k, n] with k >= 1, got ", x.shape(), " and ", v.shape());
  backend::check_same("householder_chain", x.data(), v.data());
  if (!backend::householder_chain_fused(x.device(), x.size(1))) {
    Var y = x;
    for (int64_t i = v.size(0) - 1; i >= 0; --i) {
      const Var vi = slice(v, 0, i, i + 1);  // [1, n]
      y = y - matmul(matmul(y, transpose(vi)), vi) * (2.0 / sum(square(vi)));
    }
    return y;
  }
  const Tensor vt = v.data();
  Tensor y = backend::householder_chain(x.data(), vt);
  return make_result("householder_chain", y, {x, v}, [y, vt](const Tensor& g, GradInputs& gi) {
    auto grads = backend::householder_chain_backward(y, g, vt);
    if (gi.need(0)) gi.set(0, grads.first);
    if (gi.need(1)) gi.set(1, grads.second);
  });
}

}  // namespace nanode
