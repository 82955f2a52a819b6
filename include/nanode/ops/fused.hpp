#pragma once
// Fused ops of the ODE machinery: the Runge-Kutta stage update
// x + sum_j c_j k_j, the time-basis combination W(t) = sum_k z_k(t) A_k, and the
// sequential Householder chain.
// Each is one pass over memory forward and backward (and one CUDA kernel).
#include <memory>
#include <utility>

#include "nanode/autograd/var.hpp"
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/linalg.hpp"
#include "nanode/ops/reduce.hpp"
#include "nanode/ops/shape.hpp"

namespace nanode {

namespace detail {
/// The autograd node of out = x + sum_j c[j] k[j], already computed.
inline Var lincomb_node(const Tensor& out, const Var& x, const std::vector<Var>& ks, const std::vector<double>& cs) {
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

/// The autograd node of k = act(pre + bias), already computed (act reads its output).
inline Var bias_activation_node(const Tensor& k, const Var& pre, const Var& bias, UnaryOp act) {
  const bool has_bias = bias.defined();
  return make_result("bias_activation", k, defined_vars({pre, bias}), [k, act, has_bias](const Tensor& g,
                                                                                        GradInputs& gi) {
    Tensor gz = backend::unary_backward(act, g, Tensor(), k);
    if (gi.need(0)) gi.set(0, gz);
    if (has_bias && gi.need(1)) {
      std::vector<int> axes;
      for (int a = 0; a + 1 < gz.ndim(); ++a) axes.push_back(a);
      gi.set(1, axes.empty() ? gz : backend::sum(gz, axes, false));
    }
  });
}

inline void check_bias_activation(const Var& pre, const Var& bias, UnaryOp act) {
  NANODE_CHECK(act == UnaryOp::Tanh || act == UnaryOp::Sigmoid, "bias_activation: the activation must be tanh or "
               "sigmoid");
  NANODE_CHECK(!bias.defined() || (pre.ndim() >= 1 && bias.ndim() == 1 && bias.size(0) == pre.size(-1)),
               "bias_activation: bias ", bias.shape(), " does not match the last axis of ", pre.shape());
}
}  // namespace detail

/// x + sum_j c[j] * k[j]. x may be undefined (then just the sum).
NANODE_REGISTER_OP(lincomb);
inline Var lincomb(const Var& x, const std::vector<Var>& ks, const std::vector<double>& cs) {
  NANODE_CHECK(ks.size() == cs.size(), "lincomb: ", ks.size(), " terms but ", cs.size(), " coefficients");
  NANODE_CHECK(x.defined() || !ks.empty(), "lincomb: nothing to combine");
  std::vector<Tensor> kt;
  kt.reserve(ks.size());
  for (const auto& k : ks) kt.push_back(k.defined() ? k.data() : Tensor());
  Tensor out = backend::lincomb(x.defined() ? x.data() : Tensor(), kt, cs);
  return detail::lincomb_node(out, x, ks, cs);
}

/// act(pre + bias) for bias [C] along pre's last axis (or undefined) and act tanh or
/// sigmoid: the end of a dynamics' last layer.
NANODE_REGISTER_OP(bias_activation);
inline Var bias_activation(const Var& pre, const Var& bias, UnaryOp act) {
  detail::check_bias_activation(pre, bias, act);
  Tensor k = backend::unary(act, bias.defined() ? backend::binary(BinaryOp::Add, pre.data(), bias.data()) : pre.data());
  return detail::bias_activation_node(k, pre, bias, act);
}

/// The RK stage fused with the dynamics' last bias and activation:
/// k = act(pre + bias) and out = x + sum_j cs[j] ks[j] + c_new k, in one pass (one
/// CUDA kernel). The graph it records is that of bias_activation followed by
/// lincomb, so gradients are those of the unfused ops. Returns {k, out}.
inline std::pair<Var, Var> bias_activation_lincomb(const Var& pre, const Var& bias, UnaryOp act, const Var& x,
                                                   const std::vector<Var>& ks, const std::vector<double>& cs,
                                                   double c_new) {
  detail::check_bias_activation(pre, bias, act);
  NANODE_CHECK(ks.size() == cs.size(), "lincomb: ", ks.size(), " terms but ", cs.size(), " coefficients");
  std::vector<Tensor> kt;
  kt.reserve(ks.size());
  for (const auto& k : ks) kt.push_back(k.defined() ? k.data() : Tensor());
  auto [kd, out] = backend::bias_act_lincomb(pre.data(), bias.defined() ? bias.data() : Tensor(), act,
                                             x.defined() ? x.data() : Tensor(), kt, cs, c_new);
  Var k = detail::bias_activation_node(kd, pre, bias, act);
  std::vector<Var> all(ks);
  std::vector<double> call(cs);
  all.push_back(k);
  call.push_back(c_new);
  return {k, detail::lincomb_node(out, x, all, call)};
}

/// W = sum_k z[k] * A[k] for coefficients A [K, ...] and basis values z (the time
/// basis evaluated at some t). Gradient: dA[k] = z[k] dW.
NANODE_REGISTER_OP(basis_combine);
inline Var basis_combine(const Var& coeffs, const std::vector<double>& z) {
  Tensor w = backend::basis_combine(coeffs.data(), z);
  return make_result("basis_combine", w, {coeffs},
                     [z](const Tensor& g, GradInputs& gi) {
                       if (g.device().is_cpu()) gi.set_outer(0, z, g);  // summed over the uses in one sweep
                       else gi.set(0, backend::basis_combine_backward(g, z));
                     });
}

/// basis_combine with z = z(t) of a described basis (TimeBasis::spec): on CUDA one
/// kernel evaluates z and combines, forward and backward; elsewhere it is
/// basis_combine(coeffs, z(t)).
inline Var basis_combine(const Var& coeffs, const BasisSpec& spec, double t) {
  Tensor w = backend::basis_combine_at(coeffs.data(), spec, t);
  auto sp = std::make_shared<BasisSpec>(spec);
  return make_result("basis_combine", w, {coeffs},
                     [sp, t](const Tensor& g, GradInputs& gi) {
                       if (g.device().is_cpu()) {
                         std::vector<double> z(static_cast<size_t>(sp->K));
                         basis::eval(*sp, t, z.data());
                         gi.set_outer(0, std::move(z), g);
                       } else {
                         gi.set(0, backend::basis_combine_at_backward(g, *sp, t));
                       }
                     });
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
