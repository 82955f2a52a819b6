#pragma once
// Backend dispatch for batched matmul and permute: cuBLAS and a CUDA permute
// kernel on the GPU, Eigen GEMM and strided copies on the CPU. Part of the one
// place that picks a backend (dispatch.hpp includes it).
#include "nanode/backend/cpu/householder.hpp"
#include "nanode/backend/dispatch.hpp"

namespace nanode::backend {

// ---- matmul and permute ------------------------------------------------------------

/// Batched matrix product of the last two axes: op(a) [.., m, k] x op(b) [.., k, n].
/// Batch axes must be equal, or one operand is 2-D and is shared by the batch.
inline Tensor matmul(const Tensor& a, const Tensor& b, bool ta = false, bool tb = false) {
  check_same("matmul", a, b);
  NANODE_CHECK(a.ndim() >= 2 && b.ndim() >= 2, "matmul: operands must be at least 2-D, got ", a.shape(), " and ",
               b.shape());
  const int64_t m = ta ? a.size(-1) : a.size(-2), ka = ta ? a.size(-2) : a.size(-1);
  const int64_t kb = tb ? b.size(-1) : b.size(-2), n = tb ? b.size(-2) : b.size(-1);
  NANODE_CHECK(ka == kb, "matmul: inner dimensions differ: ", a.shape(), (ta ? "^T" : ""), " x ", b.shape(),
               (tb ? "^T" : ""));
  std::vector<int64_t> batch_a(a.shape().vec()), batch_b(b.shape().vec());
  batch_a.resize(batch_a.size() - 2);
  batch_b.resize(batch_b.size() - 2);
  std::vector<int64_t> batch;
  if (batch_a == batch_b || batch_b.empty()) batch = batch_a;
  else if (batch_a.empty()) batch = batch_b;
  else
    fail("matmul: batch axes differ: ", a.shape(), " x ", b.shape(),
         " (batches must match, or one operand must be 2-D)");
  int64_t nb = 1;
  for (auto s : batch) nb *= s;
  if (a.device().is_cuda())  // cuBLAS takes int sizes: refuse, never truncate
    for (int64_t v : {m, n, ka, a.size(-1), b.size(-1), nb})
      NANODE_CHECK(v <= 2147483647, "matmul: ", a.shape(), " x ", b.shape(), " on ", a.device(), ": size ", v,
                   " exceeds cuBLAS's int32 limit");
  std::vector<int64_t> out_dims = batch;
  out_dims.push_back(m);
  out_dims.push_back(n);
  Tensor c = Tensor::empty(Shape(out_dims), a.dtype(), a.device());
  if (c.numel() == 0) return c;
  const int64_t lda = a.size(-1), ldb = b.size(-1);
  const int64_t sa = batch_a.empty() ? 0 : m * ka, sb = batch_b.empty() ? 0 : ka * n;
  if (a.device().is_cpu()) {
    dispatch_float(a.dtype(), "matmul", [&](auto tag) {
      using T = decltype(tag);
      cpu::gemm_batched<T>(ta, tb, m, n, ka, T(1), a.data<T>(), lda, sa, b.data<T>(), ldb, sb, T(0), c.data<T>(), n,
                           m * n, nb);
    });
    return c;
  }
  cuda::gemm_f32(ta, tb, m, n, ka, 1.0f, a.data<float>(), lda, sa, b.data<float>(), ldb, sb, 0.0f, c.data<float>(), n,
                 m * n, nb, a.device().index);
  return c;
}

/// y = x w^T for x [..., in] and w [out, in]: a linear layer's product without a
/// bias, on x's rows.
inline Tensor linear_rows(const Tensor& x, const Tensor& w) {
  NANODE_CHECK(w.ndim() == 2, "linear: weight ", w.shape(), " is not [out, in]");
  NANODE_CHECK(x.ndim() >= 1 && x.size(-1) == w.size(1), "linear: input ", x.shape(), " does not end in the ",
               w.size(1), " features of weight ", w.shape());
  std::vector<int64_t> dims = x.shape().vec();
  dims.back() = w.size(0);
  return matmul(x.reshape({-1, w.size(1)}), w, false, true).reshape(dims);
}

/// y = x W^T for W = sum_k z[k] A[k], coefficients A [K, out, in] and x [..., in]:
/// a time-varying linear layer's product without a bias. On the CPU, where the
/// fused product takes the shape (cpu::combine_gemm_bt), one pass that never holds
/// W, with the bits of linear_rows(x, basis_combine(A, z)); elsewhere those two
/// calls.
inline Tensor combine_linear(const Tensor& x, const Tensor& a, const std::vector<double>& z) {
  check_same("combine_linear", x, a);
  NANODE_CHECK(a.ndim() == 3 && a.size(0) == static_cast<int64_t>(z.size()), "combine_linear: coefficients ",
               a.shape(), " are not [", z.size(), ", out, in]");
  NANODE_CHECK(x.ndim() >= 1 && x.size(-1) == a.size(2), "combine_linear: input ", x.shape(), " does not end in ",
               a.size(2), " features (coefficients ", a.shape(), ")");
  const int64_t in = a.size(2), out_f = a.size(1), m = x.numel() / std::max<int64_t>(1, in);
  bool fused = a.device().is_cpu() && x.numel() > 0;
  if (fused)
    dispatch_float(a.dtype(), "combine_linear", [&](auto tag) {
      fused = cpu::combine_gemm_bt_takes<decltype(tag)>(m, out_f, in);
    });
  if (!fused) return linear_rows(x, basis_combine(a, z));
  std::vector<int64_t> dims = x.shape().vec();
  dims.back() = out_f;
  Tensor y = Tensor::empty(Shape(dims), x.dtype(), x.device());
  dispatch_float(a.dtype(), "combine_linear", [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> kp;
    std::vector<T> cv;
    detail::basis_terms<T>(a, z, out_f * in, kp, cv);
    cpu::combine_gemm_bt<T>(m, out_f, in, x.data<T>(), in, kp.data(), cv.data(), static_cast<int>(z.size()),
                            y.data<T>(), out_f);
  });
  return y;
}

/// y = x w^T + bias for x [m, k], w [n, k], bias [n]: on CUDA one cuBLASLt call
/// with the bias epilogue (when cuBLASLt has an algorithm for the shapes),
/// elsewhere the product and a broadcast add.
inline Tensor linear_bias(const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (x.device().is_cuda() && x.dtype() == DType::Float32 && x.ndim() == 2 && w.ndim() == 2 && bias.ndim() == 1 &&
      x.size(1) == w.size(1) && bias.size(0) == w.size(0)) {
    check_same("linear", x, w);
    check_same("linear", x, bias);
    const int64_t m = x.size(0), n = w.size(0), k = x.size(1);
    for (int64_t v : {m, n, k})
      NANODE_CHECK(v <= 2147483647, "linear: ", x.shape(), " x ", w.shape(), "^T on ", x.device(), ": size ", v,
                   " exceeds cuBLAS's int32 limit");
    Tensor y = Tensor::empty(Shape({m, n}), x.dtype(), x.device());
    if (cuda::linear_bias_f32(x.data<float>(), w.data<float>(), bias.data<float>(), y.data<float>(), m, n, k,
                              x.device().index))
      return y;
  }
  return binary(BinaryOp::Add, matmul(x, w, false, true), bias);
}

/// out[i] = x[sum_k i_k * d.in_stride[k]] (strided gather: permutes and broadcasts).
inline void gather(const Tensor& x, Tensor& out, const PermuteDesc& d) {
  if (out.numel() == 0) return;
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "gather", [&](auto tag) {
      using T = decltype(tag);
      cpu::permute<T>(x.data<T>(), out.data<T>(), d);
    });
    return;
  }
  cuda::permute_f32(x.data<float>(), out.data<float>(), d, x.device().index);
}

/// out axis k is input axis perm[k].
inline Tensor permute(const Tensor& x, const std::vector<int>& perm) {
  check_float("permute", x);
  const int nd = x.ndim();
  NANODE_CHECK(static_cast<int>(perm.size()) == nd, "permute: got ", perm.size(), " axes for a tensor of shape ",
               x.shape());
  std::vector<int> seen(static_cast<size_t>(nd), 0);
  PermuteDesc d;
  d.ndim = nd;
  const auto st = x.shape().strides();
  std::vector<int64_t> dims(static_cast<size_t>(nd));
  for (int k = 0; k < nd; ++k) {
    const int p = normalize_axis(perm[static_cast<size_t>(k)], nd, "permute");
    NANODE_CHECK(!seen[static_cast<size_t>(p)]++, "permute: axis ", p, " appears twice");
    d.size[k] = x.shape()[p];
    d.in_stride[k] = st[static_cast<size_t>(p)];
    dims[static_cast<size_t>(k)] = x.shape()[p];
  }
  Tensor out = Tensor::empty(Shape(dims), x.dtype(), x.device());
  gather(x, out, d);
  return out;
}

/// A Runge-Kutta stage without a graph for dynamics that end in act(h w^T + bias),
/// given wt = w^T [in, out]: with pre = linear_rows(h, w), returns
/// bias_act_lincomb(pre, bias, act, x, ks, cs, c_new), i.e. {k, out}, to the bit.
/// On the CPU with a bias and shapes cpu::linear_stage takes, one parallel region
/// that runs the product and the stage slab by slab; elsewhere those calls (w
/// transposed back first).
inline std::pair<Tensor, Tensor> linear_bias_act_lincomb(const Tensor& h, const Tensor& wt, const Tensor& bias,
                                                         UnaryOp act, const Tensor& x, const std::vector<Tensor>& ks,
                                                         const std::vector<double>& cs, double c_new) {
  const char* who = "linear_bias_act_lincomb";
  check_same(who, h, wt);
  NANODE_CHECK(wt.ndim() == 2, who, ": the transposed weight ", wt.shape(), " is not [in, out]");
  NANODE_CHECK(h.ndim() >= 1 && h.size(-1) == wt.size(0), who, ": input ", h.shape(), " does not end in the ",
               wt.size(0), " features of the transposed weight ", wt.shape());
  const int64_t k = wt.size(0), n = wt.size(1), m = h.numel() / std::max<int64_t>(1, k);
  std::vector<int64_t> dims = h.shape().vec();
  dims.back() = n;
  Tensor kout = Tensor::empty(Shape(dims), h.dtype(), h.device());
  detail::check_bias_act_lincomb(who, kout, bias, act, x, ks, cs);
  bool fused = h.device().is_cpu() && bias.defined() && m > 0;
  if (fused)
    dispatch_float(h.dtype(), who, [&](auto tag) { fused = cpu::linear_stage_takes<decltype(tag)>(m, n, k); });
  if (!fused) return bias_act_lincomb(linear_rows(h, permute(wt, {1, 0})), bias, act, x, ks, cs, c_new);
  Tensor out = empty_like(kout);
  dispatch_float(h.dtype(), who, [&](auto tag) {
    using T = decltype(tag);
    const auto [kp, cv] = detail::cpu_terms<T>(ks, cs);
    cpu::linear_stage<T>(act, m, n, k, h.data<T>(), k, wt.data<T>(), bias.data<T>(), x.defined() ? x.data<T>() : nullptr,
                         kp.data(), cv.data(), static_cast<int>(ks.size()), static_cast<T>(c_new), kout.data<T>(),
                         out.data<T>());
  });
  return {kout, out};
}

/// x broadcast (repeated along its size-1 and missing axes) to `shape`.
inline Tensor expand(const Tensor& x, const Shape& shape) {
  check_float("expand", x);
  NANODE_CHECK(broadcast_shapes(x.shape(), shape, "expand") == shape, "expand: cannot expand ", x.shape(), " to ",
               shape);
  if (x.shape() == shape) return x;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const auto st = broadcast_strides(x.shape(), shape);
  PermuteDesc d;
  d.ndim = shape.ndim();
  for (int k = 0; k < d.ndim; ++k) {
    d.size[k] = shape[k];
    d.in_stride[k] = st[static_cast<size_t>(k)];
  }
  gather(x, out, d);
  return out;
}

/// The gradient of x.narrow(axis, start, g.size(axis)): g placed into zeros of x's shape.
inline Tensor narrow_backward(const Tensor& g, const Shape& x_shape, int axis, int64_t start) {
  Tensor gx = Tensor::zeros(x_shape, g.dtype(), g.device());
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; ++k) outer *= x_shape[k];
  for (int k = axis + 1; k < x_shape.ndim(); ++k) inner *= x_shape[k];
  const int64_t es = static_cast<int64_t>(dtype_size(g.dtype())), len = g.shape()[axis];
  copy_rows(g.device(), static_cast<char*>(gx.raw_data()) + start * inner * es, x_shape[axis] * inner * es,
            g.raw_data(), len * inner * es, len * inner * es, outer);
  return gx;
}

/// Concatenation along `axis`; all other axes must agree.
inline Tensor concat(const std::vector<Tensor>& xs, int axis) {
  NANODE_CHECK(!xs.empty(), "concat: no tensors given");
  const Tensor& x0 = xs[0];
  check_float("concat", x0);
  axis = normalize_axis(axis, x0.ndim(), "concat");
  int64_t total = 0;
  for (const auto& x : xs) {
    check_same("concat", x0, x);
    bool ok = x.ndim() == x0.ndim();
    for (int k = 0; ok && k < x0.ndim(); ++k) ok = k == axis || x.shape()[k] == x0.shape()[k];
    NANODE_CHECK(ok, "concat: shape ", x.shape(), " does not match ", x0.shape(), " outside axis ", axis);
    total += x.shape()[axis];
  }
  Tensor out = Tensor::empty(x0.shape().with(axis, total), x0.dtype(), x0.device());
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; ++k) outer *= x0.shape()[k];
  for (int k = axis + 1; k < x0.ndim(); ++k) inner *= x0.shape()[k];
  const int64_t es = static_cast<int64_t>(dtype_size(x0.dtype()));
  int64_t at = 0;
  for (const auto& x : xs) {
    const int64_t len = x.shape()[axis];
    copy_rows(x0.device(), static_cast<char*>(out.raw_data()) + at * inner * es, total * inner * es, x.raw_data(),
              len * inner * es, len * inner * es, outer);
    at += len;
  }
  return out;
}

// ---- the sequential Householder chain ----------------------------------------------

/// Whether householder_chain runs as one pass (the CPU loop or the CUDA kernel) for
/// rows of length n on this device; otherwise callers compose it from other ops.
inline bool householder_chain_fused(const Device& d, int64_t n) {
  return d.is_cpu() || n <= cuda::kHouseholderMaxN;
}

/// y = x H(v_{k-1}) ... H(v_0), H(v) = I - 2 v v^T / |v|^2, for x [B, n], v [k, n].
inline Tensor householder_chain(const Tensor& x, const Tensor& v) {
  check_same("householder_chain", x, v);
  check_float("householder_chain", x);
  NANODE_CHECK(x.ndim() == 2 && v.ndim() == 2 && x.size(1) == v.size(1) && v.size(0) >= 1,
               "householder_chain: need x [B, n] and vectors [k, n] with k >= 1, got ", x.shape(), " and ", v.shape());
  NANODE_CHECK(householder_chain_fused(x.device(), x.size(1)), "householder_chain: rows of length ", x.size(1),
               " on ", x.device(), " exceed the kernel's ", cuda::kHouseholderMaxN);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t B = x.size(0), n = x.size(1), k = v.size(0);
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "householder_chain", [&](auto tag) {
      using T = decltype(tag);
      cpu::householder_chain<T>(x.data<T>(), v.data<T>(), y.data<T>(), B, n, k);
    });
    return y;
  }
  NANODE_CHECK(k <= 2147483647, "householder_chain: ", k, " reflections exceed the kernel's int32 limit");
  cuda::householder_chain_f32(x.data<float>(), v.data<float>(), y.data<float>(), B, static_cast<int>(n),
                              static_cast<int>(k), x.device().index);
  return y;
}

/// The backward of householder_chain from its output y and dL/dy = g: {dL/dx, dL/dv}.
inline std::pair<Tensor, Tensor> householder_chain_backward(const Tensor& y, const Tensor& g, const Tensor& v) {
  const int64_t B = y.size(0), n = y.size(1), k = v.size(0);
  Tensor gx = Tensor::empty(y.shape(), y.dtype(), y.device());
  if (y.device().is_cpu()) {
    Tensor gv = Tensor::empty(v.shape(), v.dtype(), v.device());
    dispatch_float(y.dtype(), "householder_chain", [&](auto tag) {
      using T = decltype(tag);
      cpu::householder_chain_backward<T>(y.data<T>(), g.data<T>(), v.data<T>(), gx.data<T>(), gv.data<T>(), B, n, k);
    });
    return {gx, gv};
  }
  const int64_t blocks = (B + cuda::kHouseholderRows - 1) / cuda::kHouseholderRows;
  Tensor partial = Tensor::empty(Shape({std::max<int64_t>(blocks, 1), k, n}), y.dtype(), y.device());
  if (B == 0) return {gx, Tensor::zeros(v.shape(), v.dtype(), v.device())};
  cuda::householder_chain_backward_f32(y.data<float>(), g.data<float>(), v.data<float>(), gx.data<float>(),
                                       partial.data<float>(), B, static_cast<int>(n), static_cast<int>(k),
                                       y.device().index);
  return {gx, sum(partial, {0}, false)};
}

}  // namespace nanode::backend
