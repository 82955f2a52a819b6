#pragma once
// Matrix products and axis permutations.
#include <Eigen/Dense>

#include "nanode/autograd/var.hpp"
#include "nanode/backend/dispatch_nn.hpp"

namespace nanode {

/// Batched product of the last two axes (batch axes equal, or one side 2-D).
NANODE_REGISTER_OP(matmul);
inline Var matmul(const Var& a, const Var& b) {
  const Tensor ta = a.data(), tb = b.data();
  Tensor out = backend::matmul(ta, tb);
  return make_result("matmul", out, {a, b}, [ta, tb](const Tensor& g, GradInputs& gi) {
    const bool a_batched = ta.ndim() > 2, b_batched = tb.ndim() > 2;
    if (gi.need(0)) {
      Tensor ga = backend::matmul(g, tb, false, true);  // [.., m, k]
      gi.set(0, backend::sum_to_shape(ga, ta.shape()));
    }
    if (gi.need(1)) {
      Tensor gb;
      if (a_batched && !b_batched) {
        // Shared b: fold the batch into the rows of one GEMM.
        const int64_t k = ta.size(-1), n = g.size(-1);
        gb = backend::matmul(ta.reshape({-1, k}), g.reshape({-1, n}), true, false);
      } else {
        gb = backend::sum_to_shape(backend::matmul(ta, g, true, false), tb.shape());
      }
      gi.set(1, gb);
    }
  });
}

/// y = x W^T + b for x [..., in], W [out, in], b [out] (b may be undefined).
NANODE_REGISTER_OP(linear);
inline Var linear(const Var& x, const Var& weight, const Var& bias = Var()) {
  NANODE_CHECK(weight.ndim() == 2, "linear: weight must be [out, in], got ", weight.shape());
  NANODE_CHECK(x.ndim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", x.shape(), " does not end in ",
               weight.size(1), " features (weight ", weight.shape(), ")");
  const bool has_bias = bias.defined();
  if (has_bias)
    NANODE_CHECK(bias.ndim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", bias.shape(),
                 " does not match weight ", weight.shape());
  const Tensor tx = x.data(), tw = weight.data();
  const int64_t in = tw.size(1), out_f = tw.size(0);
  // With a bias on CUDA: one cuBLASLt call (bias epilogue) instead of a GEMM and an add.
  const Tensor y2 = has_bias ? backend::linear_bias(tx.reshape({-1, in}), tw, bias.data())
                             : backend::matmul(tx.reshape({-1, in}), tw, false, true);
  std::vector<int64_t> out_dims = tx.shape().vec();
  out_dims.back() = out_f;
  Tensor y = y2.reshape(out_dims);
  const std::vector<Var> inputs = defined_vars({x, weight, bias});
  return make_result("linear", y, inputs, [tx, tw, in, out_f, has_bias](const Tensor& g, GradInputs& gi) {
    const Tensor g2 = g.reshape({-1, out_f});
    if (gi.need(0)) gi.set(0, backend::matmul(g2, tw).reshape(tx.shape()));
    if (gi.need(1)) gi.set(1, backend::matmul(g2, tx.reshape({-1, in}), true, false));
    if (has_bias && gi.need(2)) gi.set(2, backend::sum(g2, {0}, false));
  });
}

/// Output axis k is input axis perm[k].
NANODE_REGISTER_OP(permute);
inline Var permute(const Var& x, const std::vector<int>& perm) {
  Tensor out = backend::permute(x.data(), perm);
  std::vector<int> inverse(perm.size());
  for (size_t k = 0; k < perm.size(); ++k)
    inverse[static_cast<size_t>(normalize_axis(perm[k], x.ndim(), "permute"))] = static_cast<int>(k);
  return make_result("permute", out, {x},
                     [inverse](const Tensor& g, GradInputs& gi) { gi.set(0, backend::permute(g, inverse)); });
}

/// Swaps two axes (the last two by default).
NANODE_REGISTER_OP(transpose);
inline Var transpose(const Var& x, int axis0 = -2, int axis1 = -1) {
  const int nd = x.ndim();
  axis0 = normalize_axis(axis0, nd, "transpose");
  axis1 = normalize_axis(axis1, nd, "transpose");
  std::vector<int> perm(static_cast<size_t>(nd));
  for (int k = 0; k < nd; ++k) perm[static_cast<size_t>(k)] = k;
  std::swap(perm[static_cast<size_t>(axis0)], perm[static_cast<size_t>(axis1)]);
  Tensor out = backend::permute(x.data(), perm);
  return make_result("transpose", out, {x},
                     [perm](const Tensor& g, GradInputs& gi) { gi.set(0, backend::permute(g, perm)); });
}

namespace detail {
/// X = op(A)^{-1} B for triangular A [n, n] (only its upper or lower triangle is
/// read) and B [n, m]; op(A) = A or A^T.
inline Tensor triangular_solve_tensor(const Tensor& a, const Tensor& b, bool upper, bool trans) {
  backend::check_same("triangular_solve", a, b);
  Tensor x = b.clone();
  const int64_t n = a.size(0), m = b.size(1);
  if (a.device().is_cuda()) {  // cuBLAS STRSM (its column-major definition on the host when emulated)
    cuda::trsm_f32(upper, trans, n, m, a.data<float>(), x.data<float>(), a.device().index);
    return x;
  }
  backend::dispatch_float(a.dtype(), "triangular_solve", [&](auto tag) {
    using T = decltype(tag);
    using M = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const M> A(a.data<T>(), n, n);
    Eigen::Map<M> X(x.data<T>(), n, m);
    if (upper && !trans) A.template triangularView<Eigen::Upper>().solveInPlace(X);
    else if (upper && trans) A.transpose().template triangularView<Eigen::Lower>().solveInPlace(X);
    else if (!upper && !trans) A.template triangularView<Eigen::Lower>().solveInPlace(X);
    else A.transpose().template triangularView<Eigen::Upper>().solveInPlace(X);
  });
  return x;
}
}  // namespace detail

/// Solves op(A) X = B for triangular A [n, n] and B [n, m], reading only A's upper
/// (or lower) triangle; op(A) = A^T when `transpose`.
NANODE_REGISTER_OP(triangular_solve);
inline Var triangular_solve(const Var& a, const Var& b, bool upper = true, bool transpose_a = false) {
  NANODE_CHECK(a.ndim() == 2 && a.size(0) == a.size(1), "triangular_solve: A must be square, got ", a.shape());
  NANODE_CHECK(b.ndim() == 2 && b.size(0) == a.size(0), "triangular_solve: B ", b.shape(), " does not have ",
               a.size(0), " rows (A ", a.shape(), ")");
  backend::check_same("triangular_solve", a.data(), b.data());
  const Tensor ta = a.data();
  Tensor x = detail::triangular_solve_tensor(ta, b.data(), upper, transpose_a);
  return make_result("triangular_solve", x, {a, b}, [ta, x, upper, transpose_a](const Tensor& g, GradInputs& gi) {
    // X = op(A)^{-1} B  =>  dB = op(A)^{-T} G,  d op(A) = -dB X^T.
    Tensor gb = detail::triangular_solve_tensor(ta, g, upper, !transpose_a);
    if (gi.need(1)) gi.set(1, gb);
    if (gi.need(0)) {
      Tensor gop = backend::unary(UnaryOp::Affine, backend::matmul(gb, x, false, true), -1.0);
      Tensor ga = transpose_a ? backend::permute(gop, {1, 0}) : gop;
      // Only the triangle that was read gets a gradient.
      const int64_t n = ga.size(0);
      backend::dispatch_float(ga.dtype(), "triangular_solve", [&](auto tag) {
        using T = decltype(tag);
        T* p = ga.data<T>();
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j)
            if (upper ? j < i : j > i) p[i * n + j] = T(0);
      });
      gi.set(0, ga);
    }
  });
}

}  // namespace nanode
