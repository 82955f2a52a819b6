#pragma once
// Sums and means, over all elements or chosen axes.
#include <vector>

#include "nanode/autograd/var.hpp"

namespace nanode {

namespace detail {
inline Shape keepdim_shape(const Shape& s, std::vector<int> axes) {
  std::vector<int64_t> d = s.vec();
  for (int a : axes) d[static_cast<size_t>(normalize_axis(a, s.ndim(), "sum"))] = 1;
  return Shape(d);
}
inline std::vector<int> all_axes(int nd) {
  std::vector<int> a(static_cast<size_t>(nd));
  for (int k = 0; k < nd; ++k) a[static_cast<size_t>(k)] = k;
  return a;
}
inline int64_t reduced_count(const Shape& s, const std::vector<int>& axes) {
  int64_t n = 1;
  for (int a : axes) n *= s[normalize_axis(a, s.ndim(), "mean")];
  return n;
}
}  // namespace detail

NANODE_REGISTER_OP(sum);
/// Sum over `axes`; keepdim keeps them as size 1.
inline Var sum(const Var& x, const std::vector<int>& axes, bool keepdim = false) {
  Tensor out = axes.empty() ? x.data() : backend::sum(x.data(), axes, keepdim);
  const Shape in_shape = x.shape(), kshape = detail::keepdim_shape(x.shape(), axes);
  return make_result("sum", out, {x}, [in_shape, kshape](const Tensor& g, GradInputs& gi) {
    gi.set(0, backend::expand(g.reshape(kshape), in_shape));
  });
}
/// Sum of all elements (a 0-D Var).
inline Var sum(const Var& x) {
  if (x.ndim() == 0) return sum(x, {}, false);
  return sum(x, detail::all_axes(x.ndim()), false);
}

NANODE_REGISTER_OP(mean);
inline Var mean(const Var& x, const std::vector<int>& axes, bool keepdim = false) {
  const int64_t n = detail::reduced_count(x.shape(), axes);
  Tensor s = axes.empty() ? x.data() : backend::sum(x.data(), axes, keepdim);
  Tensor out = backend::unary(UnaryOp::Affine, s, 1.0 / static_cast<double>(n > 0 ? n : 1));
  const Shape in_shape = x.shape(), kshape = detail::keepdim_shape(x.shape(), axes);
  return make_result("mean", out, {x}, [in_shape, kshape, n](const Tensor& g, GradInputs& gi) {
    Tensor e = backend::expand(g.reshape(kshape), in_shape);
    gi.set(0, backend::unary(UnaryOp::Affine, e, 1.0 / static_cast<double>(n > 0 ? n : 1)));
  });
}
inline Var mean(const Var& x) {
  if (x.ndim() == 0) return mean(x, {}, false);
  return mean(x, detail::all_axes(x.ndim()), false);
}

}  // namespace nanode
