#pragma once
// Batch normalisation (train/eval with running statistics) and group normalisation.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "nanode/autograd/var.hpp"
#include "nanode/backend/dispatch_nn.hpp"

namespace nanode {

/// Batch norm over [N, C, ...]. In training mode the batch statistics normalise x
/// and update running_mean/running_var in place (running = (1-momentum) running
/// + momentum batch, with the unbiased variance); in eval mode the running
/// statistics normalise x. gamma/beta may be undefined (no affine part).
/// relu: returns relu(batch_norm(...)) as one op (one pass over the data forward,
/// the ReLU's mask applied inside the norm's backward on the CPU).
/// Synchronised batch norm (nanode::dist): when set, training-mode batch norm adds
/// its per-channel sums over the ranks of a data-parallel job through this
/// function (an in-place sum of doubles over ranks), forward and backward, so that
/// every rank normalises with the global batch's statistics. Unset: each process
/// uses its own batch's statistics.
inline std::function<void(std::vector<double>&)>& batch_norm_sync_hook() {
  static std::function<void(std::vector<double>&)> hook;
  return hook;
}

namespace detail {
/// Synchronised training-mode batch norm: statistics of the global batch.
inline Var batch_norm_synced(const Var& x, Tensor running_mean, Tensor running_var, const Var& gamma,
                             const Var& beta, double momentum, double eps, bool relu) {
  int64_t N, C, S;
  backend::ncs("batch_norm", x.shape(), N, C, S);
  const std::function<void(std::vector<double>&)> sync = batch_norm_sync_hook();  // also for the backward pass
  const Tensor tx = x.data();
  const Tensor hx = tx.cpu().to(DType::Float64);
  const double* px = hx.data<double>();
  std::vector<double> sums(static_cast<size_t>(1 + 2 * C), 0.0);
  sums[0] = static_cast<double>(N * S);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double* row = px + (n * C + c) * S;
      double a = 0, b = 0;
      for (int64_t k = 0; k < S; ++k) a += row[k], b += row[k] * row[k];
      sums[static_cast<size_t>(1 + c)] += a;
      sums[static_cast<size_t>(1 + C + c)] += b;
    }
  sync(sums);
  const double M = sums[0];
  NANODE_CHECK(M > 1, "batch_norm: synchronised training needs more than one value per channel over all ranks, got ",
               M);
  std::vector<double> mean(static_cast<size_t>(C)), var(static_cast<size_t>(C)), inv(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const size_t i = static_cast<size_t>(c);
    mean[i] = sums[1 + i] / M;
    var[i] = std::max(0.0, sums[static_cast<size_t>(1 + C) + i] / M - mean[i] * mean[i]);
    inv[i] = 1.0 / std::sqrt(var[i] + eps);
  }
  auto as_x = [&](const std::vector<double>& v) {
    return Tensor::from_vector<double>(v, Shape{C}).to(x.dtype()).to(x.device());
  };
  backend::NormStats st;
  st.mean = as_x(mean), st.invstd = as_x(inv);
  if (running_mean.defined() && running_var.defined()) {
    std::vector<double> unbiased(var);
    for (auto& v : unbiased) v *= M / (M - 1.0);
    Tensor rm = backend::unary(UnaryOp::Affine, running_mean, 1.0 - momentum);
    backend::axpy_(rm, momentum, st.mean);
    Tensor rv = backend::unary(UnaryOp::Affine, running_var, 1.0 - momentum);
    backend::axpy_(rv, momentum, as_x(unbiased));
    running_mean.copy_(rm);
    running_var.copy_(rv);
  }
  const Tensor tg = gamma.defined() ? gamma.data() : Tensor(), tb = beta.defined() ? beta.data() : Tensor();
  Tensor y = backend::channel_normalize(tx, st.mean, st.invstd, tg, tb, relu);
  const bool has_g = gamma.defined(), has_b = beta.defined();
  const std::vector<Var> used = defined_vars({x, gamma, beta});
  const Tensor ty = relu ? y : Tensor();
  return make_result("batch_norm", y, used,
                     [tx, ty, st, tg, has_g, has_b, M, mean, inv, N, C, S, sync](const Tensor& g_in, GradInputs& gi) {
    const Tensor g = ty.defined() ? backend::relu_grad(g_in, ty) : g_in;
    // Local sums of g and g * xhat per channel: the affine parameters' gradients
    // on this rank (the gradient reducer adds the ranks').
    Tensor sgx, sg;
    backend::batch_norm_backward(g, tx, st.mean, st.invstd, Tensor(), /*train=*/false, nullptr, &sgx, &sg);
    const size_t ig = 1, ib = has_g ? 2 : 1;
    if (has_g) gi.set(ig, sgx);
    if (has_b) gi.set(ib, sg);
    // The input's gradient needs the global sums (every rank takes part).
    std::vector<double> sums(static_cast<size_t>(2 * C));
    const Tensor hsg = sg.cpu().to(DType::Float64), hsgx = sgx.cpu().to(DType::Float64);
    for (int64_t c = 0; c < C; ++c) {
      sums[static_cast<size_t>(c)] = hsg.data<double>()[c];
      sums[static_cast<size_t>(C + c)] = hsgx.data<double>()[c];
    }
    sync(sums);
    if (!gi.need(0)) return;
    const Tensor hx = tx.cpu().to(DType::Float64), hg = g.cpu().to(DType::Float64);
    const Tensor hgamma = tg.defined() ? tg.cpu().to(DType::Float64) : Tensor();
    Tensor gx = Tensor::empty(tx.shape(), DType::Float64);
    const double *px = hx.data<double>(), *pg = hg.data<double>();
    double* out = gx.data<double>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const size_t i = static_cast<size_t>(c);
        const double a = (hgamma.defined() ? hgamma.data<double>()[c] : 1.0) * inv[i];
        const double mg = sums[i] / M, mgx = sums[static_cast<size_t>(C) + i] / M;
        const int64_t at = (n * C + c) * S;
        for (int64_t k = 0; k < S; ++k) {
          const double xhat = (px[at + k] - mean[i]) * inv[i];
          out[at + k] = a * (pg[at + k] - mg - xhat * mgx);
        }
      }
    gi.set(0, gx.to(tx.dtype()).to(tx.device()));
  });
}
}  // namespace detail

NANODE_REGISTER_OP(batch_norm);
inline Var batch_norm(const Var& x, Tensor running_mean, Tensor running_var, const Var& gamma, const Var& beta,
                      bool training, double momentum = 0.1, double eps = 1e-5, bool relu = false) {
  int64_t N, C, S;
  backend::ncs("batch_norm", x.shape(), N, C, S);
  auto check_c = [&](const Tensor& t, const char* what) {
    NANODE_CHECK(!t.defined() || (t.ndim() == 1 && t.size(0) == C && t.dtype() == x.dtype() &&
                                  t.device() == x.device()),
                 "batch_norm: ", what, " must be [", C, "] of ", x.dtype(), " on ", x.device(), " for input ",
                 x.shape(), ", got ",
                 t.defined() ? t.shape().str() + " of " + dtype_name(t.dtype()) + " on " + t.device().str()
                             : std::string("undefined"));
  };
  check_c(running_mean, "running_mean");
  check_c(running_var, "running_var");
  const Tensor tg = gamma.defined() ? gamma.data() : Tensor(), tb = beta.defined() ? beta.data() : Tensor();
  check_c(tg, "gamma");
  check_c(tb, "beta");
  if (training && batch_norm_sync_hook()) return detail::batch_norm_synced(x, running_mean, running_var, gamma, beta,
                                                                          momentum, eps, relu);
  const Tensor tx = x.data();
  backend::NormStats st;
  if (training) {
    st = backend::batch_norm_stats(tx, eps);
    if (running_mean.defined() && running_var.defined()) {
      const double M = static_cast<double>(N * S);
      Tensor unbiased = backend::unary(UnaryOp::Affine, st.var, M / (M - 1.0));
      Tensor rm = backend::unary(UnaryOp::Affine, running_mean, 1.0 - momentum);
      backend::axpy_(rm, momentum, st.mean);
      Tensor rv = backend::unary(UnaryOp::Affine, running_var, 1.0 - momentum);
      backend::axpy_(rv, momentum, unbiased);
      running_mean.copy_(rm);
      running_var.copy_(rv);
    }
  } else {
    NANODE_CHECK(running_mean.defined() && running_var.defined(),
                 "batch_norm: eval mode needs running statistics");
    st.mean = running_mean.clone();
    st.invstd = backend::unary(UnaryOp::Pow, backend::unary(UnaryOp::Affine, running_var, 1.0, eps), -0.5);
  }
  Tensor y = backend::channel_normalize(tx, st.mean, st.invstd, tg, tb, relu);
  const bool has_g = gamma.defined(), has_b = beta.defined();
  const std::vector<Var> used = defined_vars({x, gamma, beta});
  const Tensor ty = relu ? y : Tensor();
  return make_result("batch_norm", y, used, [tx, ty, st, tg, training, has_g, has_b](const Tensor& g, GradInputs& gi) {
    Tensor gx, dg, db;
    const size_t ig = 1, ib = has_g ? 2 : 1;
    backend::batch_norm_backward(g, tx, st.mean, st.invstd, tg, training, gi.need(0) ? &gx : nullptr,
                                 has_g && gi.need(ig) ? &dg : nullptr, has_b && gi.need(ib) ? &db : nullptr,
                                 ty.defined() ? &ty : nullptr);
    gi.set(0, gx);
    if (has_g) gi.set(ig, dg);
    if (has_b) gi.set(ib, db);
  });
}

/// Group norm over [N, C, ...]: statistics per sample and group of C/groups channels.
/// relu: returns relu(group_norm(...)) as one op (see batch_norm).
NANODE_REGISTER_OP(group_norm);
inline Var group_norm(const Var& x, int64_t groups, const Var& gamma = Var(), const Var& beta = Var(),
                      double eps = 1e-5, bool relu = false) {
  int64_t N, C, S;
  backend::ncs("group_norm", x.shape(), N, C, S);
  const Tensor tg = gamma.defined() ? gamma.data() : Tensor(), tb = beta.defined() ? beta.data() : Tensor();
  for (const Tensor* t : {&tg, &tb})
    NANODE_CHECK(!t->defined() || (t->ndim() == 1 && t->size(0) == C), "group_norm: affine parameters must be [", C,
                 "] for input ", x.shape(), ", got ", t->shape());
  const Tensor tx = x.data();
  backend::NormStats st;
  Tensor y = backend::group_norm_forward(tx, groups, tg, tb, eps, st, relu);
  const bool has_g = gamma.defined(), has_b = beta.defined();
  const std::vector<Var> used = defined_vars({x, gamma, beta});
  const Tensor ty = relu ? y : Tensor();
  return make_result("group_norm", y, used, [tx, ty, st, tg, groups, has_g, has_b](const Tensor& g, GradInputs& gi) {
    Tensor gx, dg, db;
    const size_t ig = 1, ib = has_g ? 2 : 1;
    backend::group_norm_backward(g, tx, groups, st, tg, gi.need(0) ? &gx : nullptr,
                                 has_g && gi.need(ig) ? &dg : nullptr, has_b && gi.need(ib) ? &db : nullptr,
                                 ty.defined() ? &ty : nullptr);
    gi.set(0, gx);
    if (has_g) gi.set(ig, dg);
    if (has_b) gi.set(ib, db);
  });
}

}  // namespace nanode
