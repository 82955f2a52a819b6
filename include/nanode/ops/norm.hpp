#pragma once
// Batch normalisation (train/eval with running statistics) and group normalisation.
#include "nanode/autograd/var.hpp"
#include "nanode/backend/dispatch_nn.hpp"

namespace nanode {

/// Batch norm over [N, C, ...]. In training mode the batch statistics normalise x
/// and update running_mean/running_var in place (running = (1-momentum) running
/// + momentum batch, with the unbiased variance); in eval mode the running
/// statistics normalise x. gamma/beta may be undefined (no affine part).
/// relu: returns relu(batch_norm(...)) as one op (one pass over the data forward,
/// the ReLU's mask applied inside the norm's backward on the CPU).
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
