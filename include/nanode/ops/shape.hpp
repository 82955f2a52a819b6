#pragma once
// Shape ops: reshape (a view), slicing, concatenation and stacking.
#include "nanode/autograd/var.hpp"

namespace nanode {

NANODE_REGISTER_OP(reshape);
inline Var reshape(const Var& x, const std::vector<int64_t>& dims) {
  Tensor out = x.data().reshape(dims);
  const Shape in_shape = x.shape();
  return make_result("reshape", out, {x},
                     [in_shape](const Tensor& g, GradInputs& gi) { gi.set(0, g.reshape(in_shape)); });
}
inline Var flatten(const Var& x, int start_axis = 1) {
  start_axis = normalize_axis(start_axis, x.ndim(), "flatten");
  const std::vector<int64_t> all = x.shape().vec();
  std::vector<int64_t> dims(all.begin(), all.begin() + start_axis);
  dims.push_back(-1);
  return reshape(x, dims);
}

/// Elements [start, end) along `axis` (negative indices count from the end).
NANODE_REGISTER_OP(slice);
inline Var slice(const Var& x, int axis, int64_t start, int64_t end) {
  axis = normalize_axis(axis, x.ndim(), "slice");
  const int64_t n = x.size(axis);
  if (start < 0) start += n;
  if (end < 0) end += n;
  Tensor out = x.data().slice(axis, start, end);
  const Shape in_shape = x.shape();
  return make_result("slice", out, {x}, [in_shape, axis, start](const Tensor& g, GradInputs& gi) {
    gi.set(0, backend::narrow_backward(g, in_shape, axis, start));
  });
}

NANODE_REGISTER_OP(concat);
inline Var concat(const std::vector<Var>& xs, int axis) {
  NANODE_CHECK(!xs.empty(), "concat: no tensors given");
  std::vector<Tensor> ts;
  ts.reserve(xs.size());
  for (const auto& v : xs) ts.push_back(v.data());
  Tensor out = backend::concat(ts, axis);
  axis = normalize_axis(axis, xs[0].ndim(), "concat");
  std::vector<int64_t> lens;
  for (const auto& t : ts) lens.push_back(t.size(axis));
  return make_result("concat", out, xs, [lens, axis](const Tensor& g, GradInputs& gi) {
    int64_t at = 0;
    for (size_t i = 0; i < lens.size(); ++i) {
      if (gi.need(i)) gi.set(i, g.narrow(axis, at, lens[i]));
      at += lens[i];
    }
  });
}

/// Stacks equally shaped Vars along a new axis.
NANODE_REGISTER_OP(stack);
inline Var stack(const std::vector<Var>& xs, int axis = 0) {
  NANODE_CHECK(!xs.empty(), "stack: no tensors given");
  const int nd = xs[0].ndim() + 1;
  axis = normalize_axis(axis, nd, "stack");
  std::vector<Var> parts;
  parts.reserve(xs.size());
  for (const auto& v : xs) {
    NANODE_CHECK(v.shape() == xs[0].shape(), "stack: shapes differ (", xs[0].shape(), " and ", v.shape(), ")");
    std::vector<int64_t> dims = v.shape().vec();
    dims.insert(dims.begin() + axis, 1);
    parts.push_back(reshape(v, dims));
  }
  return concat(parts, axis);
}

}  // namespace nanode
