#pragma once
// 2-D convolution and transposed convolution (NCHW), with optional bias.
#include "nanode/autograd/var.hpp"
#include "nanode/backend/dispatch_nn.hpp"

namespace nanode {

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  Conv2dOptions() = default;
  Conv2dOptions(int64_t stride, int64_t padding) : stride_h(stride), stride_w(stride), pad_h(padding), pad_w(padding) {}
  Conv2dOptions& stride(int64_t s) { stride_h = stride_w = s; return *this; }
  Conv2dOptions& padding(int64_t p) { pad_h = pad_w = p; return *this; }
};

/// y = conv2d(x [N, C, H, W], w [Co, C, kh, kw]) + b [Co].
NANODE_REGISTER_OP(conv2d);
inline Var conv2d(const Var& x, const Var& weight, const Var& bias = Var(), Conv2dOptions opt = {}) {
  const backend::Conv2dParams p{opt.stride_h, opt.stride_w, opt.pad_h, opt.pad_w};
  const cpu::ConvGeom g = backend::conv2d_geom("conv2d", x.shape(), weight.shape(), p);
  const bool has_bias = bias.defined();
  if (has_bias)
    NANODE_CHECK(bias.ndim() == 1 && bias.size(0) == g.Co, "conv2d: bias ", bias.shape(), " does not match weight ",
                 weight.shape());
  const Tensor tx = x.data(), tw = weight.data();
  Tensor y = backend::conv2d_forward(tx, tw, has_bias ? bias.data() : Tensor(), g);
  const std::vector<Var> inputs = defined_vars({x, weight, bias});
  return make_result("conv2d", y, inputs, [tx, tw, g, has_bias](const Tensor& gy, GradInputs& gi) {
    auto r = backend::conv2d_backward(tx, tw, gy, g, gi.need(0), gi.need(1), has_bias && gi.need(2));
    gi.set(0, r.input);
    gi.set(1, r.weight);
    if (has_bias) gi.set(2, r.bias);
  });
}

/// Transposed convolution: x [N, C_in, H, W], w [C_in, C_out, kh, kw] (PyTorch's
/// layout), output [N, C_out, (H-1)*s - 2p + kh + output_padding, ...].
NANODE_REGISTER_OP(conv_transpose2d);
inline Var conv_transpose2d(const Var& x, const Var& weight, const Var& bias = Var(), Conv2dOptions opt = {},
                            int64_t output_padding = 0) {
  NANODE_CHECK(x.ndim() == 4, "conv_transpose2d: input must be [N, C, H, W], got ", x.shape());
  NANODE_CHECK(weight.ndim() == 4 && weight.size(0) == x.size(1), "conv_transpose2d: weight ", weight.shape(),
               " must be [C_in, C_out, kh, kw] with C_in = ", x.size(1));
  NANODE_CHECK(output_padding >= 0 && output_padding < std::max(opt.stride_h, opt.stride_w),
               "conv_transpose2d: output_padding must be in [0, stride)");
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cout = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  const int64_t Ho = (H - 1) * opt.stride_h - 2 * opt.pad_h + kh + output_padding;
  const int64_t Wo = (W - 1) * opt.stride_w - 2 * opt.pad_w + kw + output_padding;
  NANODE_CHECK(Ho > 0 && Wo > 0, "conv_transpose2d: output would be empty for input ", x.shape(), " and weight ",
               weight.shape());
  // The equivalent convolution maps the output [N, Cout, Ho, Wo] to the input.
  const backend::Conv2dParams p{opt.stride_h, opt.stride_w, opt.pad_h, opt.pad_w};
  cpu::ConvGeom g = backend::conv2d_geom("conv_transpose2d", Shape{N, Cout, Ho, Wo}, Shape{Cin, Cout, kh, kw}, p);
  NANODE_CHECK(g.Ho == H && g.Wo == W, "conv_transpose2d: inconsistent geometry for input ", x.shape());
  const bool has_bias = bias.defined();
  if (has_bias)
    NANODE_CHECK(bias.ndim() == 1 && bias.size(0) == Cout, "conv_transpose2d: bias ", bias.shape(),
                 " does not match C_out = ", Cout);
  const Tensor tx = x.data(), tw = weight.data();
  backend::check_same("conv_transpose2d", tx, tw);
  Tensor y = backend::conv2d_backward_input(tx, tw, g);
  if (has_bias) backend::add_channel_bias_(y, bias.data());
  const std::vector<Var> inputs = defined_vars({x, weight, bias});
  return make_result("conv_transpose2d", y, inputs, [tx, tw, g, has_bias](const Tensor& gy, GradInputs& gi) {
    if (gi.need(0)) gi.set(0, backend::conv2d_forward(gy, tw, Tensor(), g));
    if (gi.need(1)) gi.set(1, backend::conv2d_backward_weight(gy, tx, g, false).first);
    if (has_bias && gi.need(2)) gi.set(2, backend::sum(gy, {0, 2, 3}, false));
  });
}

}  // namespace nanode
