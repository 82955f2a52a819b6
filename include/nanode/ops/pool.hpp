#pragma once
// 2-D max and average pooling.
#include "nanode/autograd/var.hpp"
#include "nanode/backend/dispatch_nn.hpp"
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/reduce.hpp"
#include "nanode/ops/shape.hpp"

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

/// Nearest-neighbour upsampling of [N, C, H, W] by an integer factor: each pixel
/// becomes a scale x scale block (the decoder of the video model). A broadcast
/// product with ones, so its gradient sums each block and it runs wherever the
/// elementwise kernels do.
NANODE_REGISTER_OP(upsample_nearest2d);
inline Var upsample_nearest2d(const Var& x, int64_t scale) {
  NANODE_CHECK(x.ndim() == 4, "upsample_nearest2d: input must be [N, C, H, W], got ", x.shape());
  NANODE_CHECK(scale >= 1, "upsample_nearest2d: scale must be >= 1, got ", scale);
  if (scale == 1) return x;
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Var ones(Tensor::full({1, 1, scale, 1, scale}, 1.0, x.dtype(), x.device()));
  return reshape(mul(reshape(x, {N * C, H, 1, W, 1}), ones), {N, C, H * scale, W * scale});
}

}  // namespace nanode
