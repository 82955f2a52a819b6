#pragma once
// Softmax, log-softmax, losses and dropout.
#include "nanode/backend/dispatch_nn.hpp"
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/reduce.hpp"

namespace nanode {

NANODE_REGISTER_OP(softmax);
inline Var softmax(const Var& x, int axis = -1) {
  Tensor y = backend::softmax_forward(x.data(), axis, false);
  axis = normalize_axis(axis, x.ndim(), "softmax");
  return make_result("softmax", y, {x}, [y, axis](const Tensor& g, GradInputs& gi) {
    gi.set(0, backend::softmax_backward(g, y, axis, false));
  });
}

NANODE_REGISTER_OP(log_softmax);
inline Var log_softmax(const Var& x, int axis = -1) {
  Tensor y = backend::softmax_forward(x.data(), axis, true);
  axis = normalize_axis(axis, x.ndim(), "log_softmax");
  return make_result("log_softmax", y, {x}, [y, axis](const Tensor& g, GradInputs& gi) {
    gi.set(0, backend::softmax_backward(g, y, axis, true));
  });
}

/// Mean negative log-likelihood of integer class `targets` ([N], int32) under
/// logits [N, C]. A target outside [0, C) is an error naming its row.
NANODE_REGISTER_OP(cross_entropy);
inline Var cross_entropy(const Var& logits, const Tensor& targets) {
  NANODE_CHECK(logits.ndim() == 2, "cross_entropy: logits must be [N, C], got ", logits.shape());
  NANODE_CHECK(targets.defined() && targets.dtype() == DType::Int32 && targets.ndim() == 1 &&
                   targets.size(0) == logits.size(0),
               "cross_entropy: targets must be int32 [", logits.size(0), "], got ",
               targets.defined() ? std::string(dtype_name(targets.dtype())) + " " + targets.shape().str()
                                 : std::string("undefined"));
  const int64_t N = logits.size(0), C = logits.size(1);
  NANODE_CHECK(N > 0, "cross_entropy: empty batch");
  const Tensor tt = targets.cpu();
  const int32_t* t = tt.data<int32_t>();
  for (int64_t n = 0; n < N; ++n)
    NANODE_CHECK(t[n] >= 0 && t[n] < C, "cross_entropy: target ", t[n], " in row ", n, " is outside [0, ", C, ")");
  const Tensor td = tt.to(logits.device());
  Tensor logp = backend::softmax_forward(logits.data(), 1, true);
  Tensor loss = backend::nll_mean(logp, td);
  return make_result("cross_entropy", loss, {logits}, [logp, td, N](const Tensor& g, GradInputs& gi) {
    gi.set(0, backend::cross_entropy_backward(logp, td, g.item<double>() / static_cast<double>(N)));
  });
}

/// mean((a - b)^2) with broadcasting.
NANODE_REGISTER_OP(mse_loss);
inline Var mse_loss(const Var& a, const Var& b) { return mean(square(a - b)); }

/// Zeroes each element with probability p and scales the rest by 1/(1-p) in
/// training mode; the identity otherwise.
NANODE_REGISTER_OP(dropout);
inline Var dropout(const Var& x, double p, bool training, Generator& gen = default_generator()) {
  NANODE_CHECK(p >= 0.0 && p < 1.0, "dropout: probability must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  backend::check_float("dropout", x.data());
  const Tensor mask = backend::dropout_mask(x.shape(), p, gen, x.dtype(), x.device());
  Tensor y = backend::binary(BinaryOp::Mul, x.data(), mask);
  return make_result("dropout", y, {x},
                     [mask](const Tensor& g, GradInputs& gi) { gi.set(0, backend::binary(BinaryOp::Mul, g, mask)); });
}

/// KL(q || p) of diagonal Gaussians q = N(mu_q, exp(logvar_q)), p = N(mu_p,
/// exp(logvar_p)), elementwise (same shape as the inputs; sum over the latent axes
/// and average over the batch as the model needs, as SVG's KL term does).
NANODE_REGISTER_OP(gaussian_kl);
inline Var gaussian_kl(const Var& mu_q, const Var& logvar_q, const Var& mu_p, const Var& logvar_p) {
  NANODE_CHECK(mu_q.shape() == logvar_q.shape() && mu_p.shape() == logvar_p.shape(), "gaussian_kl: each mean must have "
               "its log-variance's shape, got ", mu_q.shape(), " / ", logvar_q.shape(), " and ", mu_p.shape(), " / ",
               logvar_p.shape());
  return 0.5 * (logvar_p - logvar_q + (exp(logvar_q) + square(mu_q - mu_p)) * exp(-logvar_p) - 1.0);
}

/// mean(softplus(z) - y z): binary cross-entropy of targets y in [0, 1] against
/// logits z, without forming sigmoid(z) (stable for large |z|). The reconstruction
/// loss of binary frames.
NANODE_REGISTER_OP(binary_cross_entropy_with_logits);
inline Var binary_cross_entropy_with_logits(const Var& logits, const Var& targets) {
  NANODE_CHECK(logits.shape() == targets.shape(), "binary_cross_entropy_with_logits: logits ", logits.shape(),
               " and targets ", targets.shape(), " differ in shape");
  return mean(softplus(logits) - targets * logits);
}

}  // namespace nanode
