#pragma once
// 2-D max and average pooling.
#include "nanode/autograd/var.hpp"
#include "nanode/backend/dispatch_nn.hpp"
#include "nanode/ops/reduce.hpp"

namespace nanode {

/// Max over kernel x kernel windows (stride defaults to the kernel size).
NANODE_REGISTER_OP(max_pool2d);
inline Var max_pool2d(const Var& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0) {
  if (stride == 0) stride = kernel;
  const cpu::ConvGeom g = backend::pool_geom("max_pool2d", x.shape(), kernel, kernel, stride, stride, padding, padding);
  auto [y, idx] = backend::max_pool2d_forward(x.data(), g);
  const Tensor saved = idx;
  return make_result("max_pool2d", y, {x}, [saved, g](const Tensor& gy, GradInputs& gi) {
    gi.set(0, backend::max_pool2d_backward(gy, saved, g));
  });
}

/// Mean over kernel x kernel windows; padded cells count as zeros.
NANODE_REGISTER_OP(avg_pool2d);
inline Var avg_pool2d(const Var& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0) {
  if (stride == 0) stride = kernel;
  const cpu::ConvGeom g = backend::pool_geom("avg_pool2d", x.shape(), kernel, kernel, stride, stride, padding, padding);
  Tensor y = backend::avg_pool2d_forward(x.data(), g);
  return make_result("avg_pool2d", y, {x},
                     [g](const Tensor& gy, GradInputs& gi) { gi.set(0, backend::avg_pool2d_backward(gy, g)); });
}

/// Mean over the spatial axes of [N, C, H, W], giving [N, C].
inline Var global_avg_pool2d(const Var& x) {
  NANODE_CHECK(x.ndim() == 4, "global_avg_pool2d: input must be [N, C, H, W], got ", x.shape());
  return mean(x, {2, 3}, false);
}

}  // namespace nanode
