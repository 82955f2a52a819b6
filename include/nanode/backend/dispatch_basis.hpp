#pragma once
// Backend dispatch for the time-basis combination W = sum_k z_k A_k and its
// gradients: the fused CUDA kernels (z evaluated in the kernel) on the GPU, the
// CPU kernels of backend/cpu/elementwise.hpp elsewhere. Part of the one place that
// picks a backend (dispatch.hpp includes it).
#include "nanode/backend/dispatch.hpp"

namespace nanode::backend {

namespace detail {
/// The terms of W = sum_k z[k] A[k] as cpu::lincomb takes them: A[k]'s address
/// (null where z[k] is 0: zero terms are skipped) and z[k] in T, appended.
template <class T>
void basis_terms(const Tensor& a, const std::vector<double>& z, int64_t n, std::vector<const T*>& kp,
                 std::vector<T>& cv) {
  for (size_t j = 0; j < z.size(); ++j) {
    kp.push_back(z[j] != 0.0 ? a.data<T>() + static_cast<int64_t>(j) * n : nullptr);
    cv.push_back(static_cast<T>(z[j]));
  }
}
inline void check_basis_combine(const Tensor& a, const std::vector<double>& z) {
  check_float("basis_combine", a);
  NANODE_CHECK(a.ndim() >= 1 && a.size(0) == static_cast<int64_t>(z.size()), "basis_combine: coefficients ",
               a.shape(), " do not have ", z.size(), " basis terms along axis 0");
}
/// W's shape: the coefficients' without the basis axis.
inline Shape combined_shape(const Tensor& a) {
  std::vector<int64_t> dims = a.shape().vec();
  dims.erase(dims.begin());
  return Shape(dims);
}
}  // namespace detail

/// W = sum_k z[k] A[k] for coefficients A [K, ...]: the time-basis evaluation.
inline Tensor basis_combine(const Tensor& a, const std::vector<double>& z) {
  detail::check_basis_combine(a, z);
  Tensor out = Tensor::empty(detail::combined_shape(a), a.dtype(), a.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const int nk = static_cast<int>(z.size());
  if (a.device().is_cpu()) {
    dispatch_float(a.dtype(), "basis_combine", [&](auto tag) {
      using T = decltype(tag);
      std::vector<const T*> kp;
      std::vector<T> cv;
      detail::basis_terms<T>(a, z, n, kp, cv);
      cpu::lincomb<T>(nullptr, kp.data(), cv.data(), nk, out.data<T>(), n);
    });
    return out;
  }
  // One launch takes cuda::kMaxBasisTerms terms; a larger basis is summed chunk
  // by chunk (the CPU and the GPU accept the same models).
  std::vector<float> zf(z.begin(), z.end());
  const int dev = a.device().index;
  Tensor part;
  for (int k0 = 0; k0 < nk; k0 += cuda::kMaxBasisTerms) {
    const int m = std::min(cuda::kMaxBasisTerms, nk - k0);
    if (k0 == 0) {
      cuda::basis_combine_f32(a.data<float>(), zf.data(), m, out.data<float>(), n, dev);
    } else {
      if (!part.defined()) part = empty_like(out);
      cuda::basis_combine_f32(a.data<float>() + static_cast<int64_t>(k0) * n, zf.data() + k0, m, part.data<float>(), n,
                              dev);
      cuda::axpy_f32(1.0f, part.data<float>(), out.data<float>(), n, dev);
    }
  }
  return out;
}

/// basis_combine(a, zs[q]) for every q, each to the bit: on the CPU in one sweep
/// over A (cpu::lincomb_many), which a solve that knows its next stage times uses
/// to read the coefficients once for a block of steps.
inline std::vector<Tensor> basis_combine_many(const Tensor& a, const std::vector<std::vector<double>>& zs) {
  std::vector<Tensor> out;
  if (!a.device().is_cpu() || zs.size() < 2) {
    for (const auto& z : zs) out.push_back(basis_combine(a, z));
    return out;
  }
  for (const auto& z : zs) detail::check_basis_combine(a, z);
  for (size_t q = 0; q < zs.size(); ++q) out.push_back(Tensor::empty(detail::combined_shape(a), a.dtype(), a.device()));
  const int64_t n = out[0].numel();
  if (n == 0) return out;
  dispatch_float(a.dtype(), "basis_combine", [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> kp;
    std::vector<T> cv;
    std::vector<T*> op;
    for (size_t q = 0; q < zs.size(); ++q) {
      detail::basis_terms<T>(a, zs[q], n, kp, cv);
      op.push_back(out[q].data<T>());
    }
    cpu::lincomb_many<T>(kp.data(), cv.data(), static_cast<int>(a.size(0)), static_cast<int>(zs.size()), op.data(), n);
  });
  return out;
}

/// The gradient of basis_combine with respect to A: gA[k] = z[k] g.
inline Tensor basis_combine_backward(const Tensor& g, const std::vector<double>& z) {
  std::vector<int64_t> dims = g.shape().vec();
  dims.insert(dims.begin(), static_cast<int64_t>(z.size()));
  Tensor ga = Tensor::empty(Shape(dims), g.dtype(), g.device());
  const int64_t n = g.numel();
  if (ga.numel() == 0) return ga;
  const int nk = static_cast<int>(z.size());
  if (g.device().is_cpu()) {
    dispatch_float(g.dtype(), "basis_combine_backward", [&](auto tag) {
      using T = decltype(tag);
      std::vector<T> zv(z.begin(), z.end());
      cpu::outer_scale<T>(g.data<T>(), zv.data(), nk, ga.data<T>(), n);
    });
    return ga;
  }
  std::vector<float> zf(z.begin(), z.end());
  for (int k0 = 0; k0 < nk; k0 += cuda::kMaxBasisTerms)
    cuda::outer_scale_f32(g.data<float>(), zf.data() + k0, std::min(cuda::kMaxBasisTerms, nk - k0),
                          ga.data<float>() + static_cast<int64_t>(k0) * n, n, g.device().index);
  return ga;
}

/// sum_s z_s (x) g_s, of `shape` = [K, g.shape...], for gradients g_s (all the same
/// shape, dtype and device) and K-vectors z_s: basis_combine's gradient summed
/// over its uses in one sweep on the CPU (a block of the result stays in cache
/// while the terms stream through; s in order, so the sum does not depend on the
/// thread count); elsewhere one basis_combine_backward per term.
namespace detail {
/// outer_sum into `out` (overwritten, or added to with `accumulate`).
inline void outer_sum_to(Tensor& out, const std::vector<std::vector<double>>& zs, const std::vector<Tensor>& gs,
                         bool accumulate) {
  NANODE_CHECK(!gs.empty() && zs.size() == gs.size(), "outer_sum: ", zs.size(), " z vectors for ", gs.size(), " terms");
  const Tensor& g0 = gs[0];
  const int64_t n = g0.numel();
  const int K = static_cast<int>(zs[0].size());
  const int S = static_cast<int>(gs.size());
  NANODE_CHECK(out.numel() == static_cast<int64_t>(K) * n, "outer_sum: shape ", out.shape(), " is not [", K, ", ",
               g0.shape(), "]");
  NANODE_CHECK(out.dtype() == g0.dtype() && out.device() == g0.device(), "outer_sum: the result is ", out.dtype(),
               " on ", out.device(), ", the terms ", g0.dtype(), " on ", g0.device());
  if (!g0.device().is_cpu()) {
    for (size_t s = 0; s < gs.size(); ++s) {
      Tensor part = basis_combine_backward(gs[s], zs[s]).reshape(out.shape());
      if (s == 0 && !accumulate) out.copy_(part);
      else axpy_(out, 1.0, part);
    }
    return;
  }
  for (int s = 0; s < S; ++s)
    NANODE_CHECK(gs[s].numel() == n && gs[s].dtype() == g0.dtype() && gs[s].device().is_cpu() &&
                     static_cast<int>(zs[s].size()) == K,
                 "outer_sum: term ", s, " does not match the first");
  if (out.numel() == 0) return;
  dispatch_float(g0.dtype(), "outer_sum", [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> gp(static_cast<size_t>(S));
    std::vector<T> zt(static_cast<size_t>(S) * static_cast<size_t>(K));
    for (int s = 0; s < S; ++s) {
      gp[static_cast<size_t>(s)] = gs[s].data<T>();
      for (int k = 0; k < K; ++k)
        zt[static_cast<size_t>(s * K + k)] = static_cast<T>(zs[static_cast<size_t>(s)][static_cast<size_t>(k)]);
    }
    cpu::outer_sum<T>(gp.data(), zt.data(), S, K, out.data<T>(), n, accumulate);
  });
}
}  // namespace detail

/// out += sum_s z_s (x) g_s, in place (out contiguous, of shape [K, g.shape...]).
inline void outer_sum_add_(Tensor& out, const std::vector<std::vector<double>>& zs, const std::vector<Tensor>& gs) {
  detail::outer_sum_to(out, zs, gs, /*accumulate=*/true);
}

inline Tensor outer_sum(const std::vector<std::vector<double>>& zs, const std::vector<Tensor>& gs, const Shape& shape) {
  NANODE_CHECK(!gs.empty() && zs.size() == gs.size(), "outer_sum: ", zs.size(), " z vectors for ", gs.size(), " terms");
  const Tensor& g0 = gs[0];
  if (!g0.device().is_cpu()) {
    Tensor acc = basis_combine_backward(gs[0], zs[0]);
    for (size_t s = 1; s < gs.size(); ++s) axpy_(acc, 1.0, basis_combine_backward(gs[s], zs[s]));
    return acc;
  }
  Tensor out = Tensor::empty(shape, g0.dtype(), g0.device());
  detail::outer_sum_to(out, zs, gs, /*accumulate=*/false);
  return out;
}

/// basis_combine with z = z(t) of `spec`: on CUDA one kernel evaluates z and
/// combines (the fused W4 kernel); on the CPU z is evaluated here and combined as
/// above. The same numbers either way (basis_math is the one definition of z).
inline Tensor basis_combine_at(const Tensor& a, const BasisSpec& spec, double t) {
  if (a.device().is_cuda() && a.dtype() == DType::Float32 && spec.K <= BasisSpec::kMaxSpecTerms) {
    check_float("basis_combine", a);
    NANODE_CHECK(a.ndim() >= 1 && a.size(0) == spec.K, "basis_combine: coefficients ", a.shape(), " do not have ",
                 spec.K, " basis terms along axis 0");
    std::vector<int64_t> dims = a.shape().vec();
    dims.erase(dims.begin());
    Tensor out = Tensor::empty(Shape(dims), a.dtype(), a.device());
    cuda::basis_eval_combine_f32(a.data<float>(), spec, t, out.data<float>(), out.numel(), a.device().index);
    return out;
  }
  std::vector<double> z(static_cast<size_t>(spec.K));
  basis::eval(spec, t, z.data());
  return basis_combine(a, z);
}
inline Tensor basis_combine_at_backward(const Tensor& g, const BasisSpec& spec, double t) {
  if (g.device().is_cuda() && g.dtype() == DType::Float32 && spec.K <= BasisSpec::kMaxSpecTerms) {
    std::vector<int64_t> dims = g.shape().vec();
    dims.insert(dims.begin(), static_cast<int64_t>(spec.K));
    Tensor ga = Tensor::empty(Shape(dims), g.dtype(), g.device());
    cuda::basis_eval_outer_f32(g.data<float>(), spec, t, ga.data<float>(), g.numel(), g.device().index);
    return ga;
  }
  std::vector<double> z(static_cast<size_t>(spec.K));
  basis::eval(spec, t, z.data());
  return basis_combine_backward(g, z);
}

}  // namespace nanode::backend
