#pragma once
// Backend dispatch for the neural-network kernels: convolution, pooling,
// normalisation, softmax, losses. Like dispatch.hpp, the only place that looks at
// devices for these ops: the CPU kernels of backend/cpu/, or on CUDA tensors the
// hand-written kernels of kernels/nn.cu and cuDNN's convolutions (kernels/dnn.cpp).
#include <utility>

#include "nanode/backend/cpu/conv.hpp"
#include "nanode/backend/cpu/norm.hpp"
#include "nanode/backend/cpu/pool.hpp"
#include "nanode/backend/cpu/softmax.hpp"
#include "nanode/backend/cpu/winograd.hpp"
#include "nanode/backend/dispatch.hpp"

namespace nanode::backend {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};

/// Geometry of conv2d(x [N, C, H, W], w [Co, C, kh, kw]); throws naming the shapes.
inline cpu::ConvGeom conv2d_geom(const char* op, const Shape& x, const Shape& w, const Conv2dParams& p) {
  NANODE_CHECK(x.ndim() == 4, op, ": input must be [N, C, H, W], got ", x);
  NANODE_CHECK(w.ndim() == 4, op, ": weight must be [C_out, C_in, kh, kw], got ", w);
  NANODE_CHECK(w[1] == x[1], op, ": input has ", x[1], " channels but weight ", w, " expects ", w[1]);
  NANODE_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.pad_h >= 0 && p.pad_w >= 0, op,
               ": stride must be >= 1 and padding >= 0");
  cpu::ConvGeom g;
  g.N = x[0]; g.C = x[1]; g.H = x[2]; g.W = x[3];
  g.Co = w[0]; g.kh = w[2]; g.kw = w[3];
  g.sh = p.stride_h; g.sw = p.stride_w; g.ph = p.pad_h; g.pw = p.pad_w;
  const int64_t hh = g.H + 2 * g.ph - g.kh, ww = g.W + 2 * g.pw - g.kw;
  NANODE_CHECK(hh >= 0 && ww >= 0, op, ": kernel ", w, " is larger than the padded input ", x);
  g.Ho = hh / g.sh + 1;
  g.Wo = ww / g.sw + 1;
  return g;
}

/// The kernels' view of a geometry.
inline WindowDesc window_desc(const cpu::ConvGeom& g) {
  WindowDesc d;
  d.N = g.N, d.C = g.C, d.H = g.H, d.W = g.W, d.Co = g.Co, d.Ho = g.Ho, d.Wo = g.Wo;
  d.kh = g.kh, d.kw = g.kw, d.sh = g.sh, d.sw = g.sw, d.ph = g.ph, d.pw = g.pw;
  return d;
}

inline Tensor conv_workspace(const cpu::ConvGeom& g, DType dt, bool weight_partials) {
  const int64_t workers = cpu::conv_workers(g.N);
  int64_t n = workers * g.col_rows() * g.col_cols();
  if (weight_partials) n += workers * g.Co * g.col_rows();
  return Tensor::empty(Shape{n}, dt, Device::cpu());
}

/// y = conv(x, w) + bias, for the geometry g (x: [N, g.C, g.H, g.W]). 3x3 stride-1
/// convolutions use Winograd F(2x2, 3x3); the others im2col + GEMM.
inline Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const cpu::ConvGeom& g) {
  check_same("conv2d", x, w);
  if (bias.defined()) check_same("conv2d", x, bias);
  Tensor y = Tensor::empty(Shape{g.N, g.Co, g.Ho, g.Wo}, x.dtype(), x.device());
  if (y.numel() == 0) return y;
  if (x.device().is_cuda()) {  // cuDNN (a direct host convolution in the emulated build)
    cuda::conv2d_forward_f32(x.data<float>(), w.data<float>(), y.data<float>(), window_desc(g), x.device().index);
    if (bias.defined())
      cuda::add_channel_bias_f32(y.data<float>(), bias.data<float>(), g.N, g.Co, g.Ho * g.Wo, x.device().index);
    return y;
  }
  if (cpu::winograd::applicable(g)) {
    Tensor U = Tensor::empty(Shape{cpu::winograd::filter_size(g)}, x.dtype());
    Tensor work = Tensor::empty(Shape{cpu::winograd::workspace_size(g)}, x.dtype());
    dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
      using T = decltype(tag);
      cpu::winograd::transform_filter<T>(w.data<T>(), U.data<T>(), g);
      cpu::winograd::forward<T>(x.data<T>(), U.data<T>(), bias.defined() ? bias.data<T>() : nullptr, y.data<T>(), g,
                                work.data<T>());
    });
    return y;
  }
  Tensor work = conv_workspace(g, x.dtype(), false);
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_forward<T>(x.data<T>(), w.data<T>(), bias.defined() ? bias.data<T>() : nullptr, y.data<T>(), g,
                           work.data<T>());
  });
  return y;
}

/// Gradient of conv2d with respect to its input (shape [N, g.C, g.H, g.W]).
inline Tensor conv2d_backward_input(const Tensor& gy, const Tensor& w, const cpu::ConvGeom& g) {
  check_same("conv2d_backward", gy, w);
  Tensor gx = Tensor::empty(Shape{g.N, g.C, g.H, g.W}, gy.dtype(), gy.device());
  if (gx.numel() == 0) return gx;
  if (gy.device().is_cuda()) {
    cuda::conv2d_backward_data_f32(gy.data<float>(), w.data<float>(), gx.data<float>(), window_desc(g),
                                   gy.device().index);
    return gx;
  }
  Tensor work = conv_workspace(g, gy.dtype(), false);
  dispatch_float(gy.dtype(), "conv2d_backward", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_backward_input<T>(gy.data<T>(), w.data<T>(), gx.data<T>(), g, work.data<T>());
  });
  return gx;
}

/// Gradients of conv2d with respect to the weight ([g.Co, g.C, kh, kw]) and bias ([g.Co]).
inline std::pair<Tensor, Tensor> conv2d_backward_weight(const Tensor& x, const Tensor& gy, const cpu::ConvGeom& g,
                                                        bool with_bias) {
  check_same("conv2d_backward", x, gy);
  Tensor gw = Tensor::empty(Shape{g.Co, g.C, g.kh, g.kw}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    if (gw.numel() > 0)
      cuda::conv2d_backward_filter_f32(x.data<float>(), gy.data<float>(), gw.data<float>(), window_desc(g),
                                       x.device().index);
    return {gw, with_bias ? sum(gy, {0, 2, 3}, false) : Tensor()};
  }
  Tensor gb = with_bias ? Tensor::empty(Shape{g.Co}, x.dtype(), x.device()) : Tensor();
  Tensor work = conv_workspace(g, x.dtype(), true);
  dispatch_float(x.dtype(), "conv2d_backward", [&](auto tag) {
    using T = decltype(tag);
    cpu::conv2d_backward_weight<T>(x.data<T>(), gy.data<T>(), gw.data<T>(), with_bias ? gb.data<T>() : nullptr, g,
                                   work.data<T>());
  });
  return {gw, gb};
}

struct ConvGrads {
  Tensor input, weight, bias;
};

/// The gradients of conv2d_forward that are asked for, in one pass where the
/// algorithm allows (Winograd shares the output-gradient transform).
inline ConvGrads conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const cpu::ConvGeom& g,
                                 bool need_input, bool need_weight, bool need_bias) {
  ConvGrads r;
  if (need_bias) r.bias = sum(gy, {0, 2, 3}, false);
  if (!need_input && !need_weight) return r;
  if (cpu::winograd::applicable(g) && g.N > 0 && gy.device().is_cpu()) {
    Tensor U = Tensor::empty(Shape{cpu::winograd::filter_size(g)}, x.dtype());
    Tensor dU = need_weight ? Tensor::empty(Shape{cpu::winograd::filter_size(g)}, x.dtype()) : Tensor();
    if (need_input) r.input = Tensor::empty(Shape{g.N, g.C, g.H, g.W}, x.dtype());
    if (need_weight) r.weight = Tensor::empty(Shape{g.Co, g.C, 3, 3}, x.dtype());
    Tensor work = Tensor::empty(Shape{cpu::winograd::workspace_size(g)}, x.dtype());
    dispatch_float(x.dtype(), "conv2d_backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::winograd::transform_filter<T>(w.data<T>(), U.data<T>(), g);
      cpu::winograd::backward<T>(x.data<T>(), U.data<T>(), gy.data<T>(), need_input ? r.input.data<T>() : nullptr,
                                 need_weight ? dU.data<T>() : nullptr, g, work.data<T>());
      if (need_weight) cpu::winograd::transform_filter_adjoint<T>(dU.data<T>(), r.weight.data<T>(), g);
    });
    return r;
  }
  if (need_input) r.input = conv2d_backward_input(gy, w, g);
  if (need_weight) r.weight = conv2d_backward_weight(x, gy, g, false).first;
  return r;
}

/// Per-channel bias add on an [N, C, ...] tensor, in place.
inline void add_channel_bias_(Tensor& y, const Tensor& bias) {
  check_same("add_channel_bias", y, bias);
  const int64_t N = y.size(0), C = y.size(1), S = y.numel() / std::max<int64_t>(1, N * C);
  if (y.device().is_cuda()) {
    cuda::add_channel_bias_f32(y.data<float>(), bias.data<float>(), N, C, S, y.device().index);
    return;
  }
  dispatch_float(y.dtype(), "add_channel_bias", [&](auto tag) {
    using T = decltype(tag);
    T* p = y.data<T>();
    const T* b = bias.data<T>();
    cpu::parallel_for(N * C, 64, [&](int64_t s, int64_t e) {
      for (int64_t nc = s; nc < e; ++nc) cpu::ArrMap<T>(p + nc * S, S) += b[nc % C];
    });
  });
}

// ---- pooling ---------------------------------------------------------------------

inline cpu::ConvGeom pool_geom(const char* op, const Shape& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                               int64_t ph, int64_t pw) {
  NANODE_CHECK(x.ndim() == 4, op, ": input must be [N, C, H, W], got ", x);
  NANODE_CHECK(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1, op, ": kernel and stride must be >= 1");
  NANODE_CHECK(ph >= 0 && pw >= 0 && 2 * ph <= kh && 2 * pw <= kw, op, ": padding must be in [0, kernel/2]");
  cpu::ConvGeom g;
  g.N = x[0]; g.C = x[1]; g.H = x[2]; g.W = x[3];
  g.Co = g.C; g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw;
  NANODE_CHECK(g.H + 2 * ph >= kh && g.W + 2 * pw >= kw, op, ": window ", kh, "x", kw,
               " is larger than the padded input ", x);
  g.Ho = (g.H + 2 * ph - kh) / sh + 1;
  g.Wo = (g.W + 2 * pw - kw) / sw + 1;
  return g;
}

inline std::pair<Tensor, Tensor> max_pool2d_forward(const Tensor& x, const cpu::ConvGeom& g) {
  check_float("max_pool2d", x);
  Tensor y = Tensor::empty(Shape{g.N, g.C, g.Ho, g.Wo}, x.dtype(), x.device());
  Tensor idx = Tensor::empty(y.shape(), DType::Int32, x.device());
  if (x.device().is_cuda()) {
    cuda::max_pool_forward_f32(x.data<float>(), y.data<float>(), idx.data<int32_t>(), window_desc(g), x.device().index);
    return {y, idx};
  }
  dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::max_pool_forward<T>(x.data<T>(), y.data<T>(), idx.data<int32_t>(), g.N * g.C, g);
  });
  return {y, idx};
}

inline Tensor max_pool2d_backward(const Tensor& gy, const Tensor& idx, const cpu::ConvGeom& g) {
  Tensor gx = Tensor::empty(Shape{g.N, g.C, g.H, g.W}, gy.dtype(), gy.device());
  if (gy.device().is_cuda()) {
    cuda::max_pool_backward_f32(gy.data<float>(), idx.data<int32_t>(), gx.data<float>(), window_desc(g),
                                gy.device().index);
    return gx;
  }
  dispatch_float(gy.dtype(), "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    cpu::max_pool_backward<T>(gy.data<T>(), idx.data<int32_t>(), gx.data<T>(), g.N * g.C, g);
  });
  return gx;
}

inline Tensor avg_pool2d_forward(const Tensor& x, const cpu::ConvGeom& g) {
  check_float("avg_pool2d", x);
  Tensor y = Tensor::empty(Shape{g.N, g.C, g.Ho, g.Wo}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda::avg_pool_forward_f32(x.data<float>(), y.data<float>(), window_desc(g), x.device().index);
    return y;
  }
  dispatch_float(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = decltype(tag);
    cpu::avg_pool_forward<T>(x.data<T>(), y.data<T>(), g.N * g.C, g);
  });
  return y;
}

inline Tensor avg_pool2d_backward(const Tensor& gy, const cpu::ConvGeom& g) {
  Tensor gx = Tensor::empty(Shape{g.N, g.C, g.H, g.W}, gy.dtype(), gy.device());
  if (gy.device().is_cuda()) {
    cuda::avg_pool_backward_f32(gy.data<float>(), gx.data<float>(), window_desc(g), gy.device().index);
    return gx;
  }
  dispatch_float(gy.dtype(), "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    cpu::avg_pool_backward<T>(gy.data<T>(), gx.data<T>(), g.N * g.C, g);
  });
  return gx;
}

// ---- softmax ----------------------------------------------------------------------

inline void softmax_layout(const Shape& s, int axis, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int k = 0; k < axis; ++k) outer *= s[k];
  for (int k = axis + 1; k < s.ndim(); ++k) inner *= s[k];
  n = s[axis];
}

inline Tensor softmax_forward(const Tensor& x, int axis, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_float(op, x);
  axis = normalize_axis(axis, x.ndim(), op);
  int64_t outer, n, inner;
  softmax_layout(x.shape(), axis, outer, n, inner);
  Tensor y = empty_like(x);
  if (x.device().is_cuda()) {
    cuda::softmax_f32(x.data<float>(), y.data<float>(), outer, n, inner, log, x.device().index);
    return y;
  }
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    cpu::softmax<T>(x.data<T>(), y.data<T>(), outer, n, inner, log);
  });
  return y;
}

inline Tensor softmax_backward(const Tensor& g, const Tensor& y, int axis, bool log) {
  int64_t outer, n, inner;
  softmax_layout(y.shape(), axis, outer, n, inner);
  Tensor gx = empty_like(y);
  if (y.device().is_cuda()) {
    cuda::softmax_backward_f32(g.data<float>(), y.data<float>(), gx.data<float>(), outer, n, inner, log,
                               y.device().index);
    return gx;
  }
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    cpu::softmax_backward<T>(g.data<T>(), y.data<T>(), gx.data<T>(), outer, n, inner, log);
  });
  return gx;
}

// ---- normalisation ----------------------------------------------------------------

/// [N, C, S] view sizes of an [N, C, ...] tensor.
inline void ncs(const char* op, const Shape& s, int64_t& N, int64_t& C, int64_t& S) {
  NANODE_CHECK(s.ndim() >= 2, op, ": input must be [N, C, ...], got ", s);
  N = s[0];
  C = s[1];
  S = 1;
  for (int k = 2; k < s.ndim(); ++k) S *= s[k];
}

struct NormStats {
  Tensor mean, invstd, var;  // var: biased batch variance (batch norm only)
};

/// Batch statistics per channel (training mode).
inline NormStats batch_norm_stats(const Tensor& x, double eps) {
  check_float("batch_norm", x);
  int64_t N, C, S;
  ncs("batch_norm", x.shape(), N, C, S);
  NANODE_CHECK(N * S > 1, "batch_norm: training needs more than one value per channel, got input ", x.shape());
  const Shape cs{C};
  NormStats st{Tensor::empty(cs, x.dtype(), x.device()), Tensor::empty(cs, x.dtype(), x.device()),
               Tensor::empty(cs, x.dtype(), x.device())};
  if (x.device().is_cuda()) {
    cuda::channel_moments_f32(x.data<float>(), N, C, S, static_cast<float>(eps), st.mean.data<float>(),
                              st.var.data<float>(), st.invstd.data<float>(), x.device().index);
    return st;
  }
  dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    cpu::channel_moments<T>(x.data<T>(), N, C, S, st.mean.data<T>(), st.var.data<T>());
    T* inv = st.invstd.data<T>();
    const T* v = st.var.data<T>();
    for (int64_t c = 0; c < C; ++c) inv[c] = T(1) / std::sqrt(v[c] + static_cast<T>(eps));
  });
  return st;
}

/// y = (x - mean) * invstd * gamma + beta per channel (gamma/beta may be undefined),
/// then max(y, 0) when relu (in the same pass on the CPU).
inline Tensor channel_normalize(const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& gamma,
                                const Tensor& beta, bool relu = false) {
  int64_t N, C, S;
  ncs("batch_norm", x.shape(), N, C, S);
  Tensor y = empty_like(x);
  if (x.device().is_cuda()) {
    cuda::channel_normalize_f32(x.data<float>(), y.data<float>(), N, C, S, mean.data<float>(), invstd.data<float>(),
                                gamma.defined() ? gamma.data<float>() : nullptr,
                                beta.defined() ? beta.data<float>() : nullptr, x.device().index);
    return relu ? unary(UnaryOp::Relu, y) : y;
  }
  dispatch_float(x.dtype(), "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    cpu::channel_normalize<T>(x.data<T>(), y.data<T>(), N, C, S, mean.data<T>(), invstd.data<T>(),
                              gamma.defined() ? gamma.data<T>() : nullptr, beta.defined() ? beta.data<T>() : nullptr,
                              relu);
  });
  return y;
}

/// The gradient through a ReLU with output y: g where y > 0, else 0.
inline Tensor relu_grad(const Tensor& g, const Tensor& y) { return unary_backward(UnaryOp::Relu, g, y, y); }

/// Batch-norm gradients. train: statistics came from the batch; else they were constants.
/// relu_y (optional): a ReLU with output *relu_y followed the norm and g is its
/// output's gradient (masked inside the CPU training kernel, by relu_grad elsewhere).
inline void batch_norm_backward(const Tensor& g_in, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                const Tensor& gamma, bool train, Tensor* gx, Tensor* dgamma, Tensor* dbeta,
                                const Tensor* relu_y = nullptr) {
  int64_t N, C, S;
  ncs("batch_norm", x.shape(), N, C, S);
  const bool fused_mask = relu_y && train && x.device().is_cpu();
  const Tensor g = relu_y && !fused_mask ? relu_grad(g_in, *relu_y) : g_in;
  if (gx) *gx = empty_like(x);
  if (dgamma) *dgamma = Tensor::empty(Shape{C}, x.dtype(), x.device());
  if (dbeta) *dbeta = Tensor::empty(Shape{C}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    const int dev = x.device().index;
    const float* gm = gamma.defined() ? gamma.data<float>() : nullptr;
    float* pdg = dgamma ? dgamma->data<float>() : nullptr;
    float* pdb = dbeta ? dbeta->data<float>() : nullptr;
    if (train) {
      cuda::batch_norm_backward_f32(g.data<float>(), x.data<float>(), N, C, S, mean.data<float>(),
                                    invstd.data<float>(), gm, gx ? gx->data<float>() : nullptr, pdg, pdb, dev);
      return;
    }
    if (gx) {  // eval: the statistics are constants, gx = g invstd gamma
      const Tensor zero = Tensor::zeros(Shape{C}, x.dtype(), x.device());
      cuda::channel_normalize_f32(g.data<float>(), gx->data<float>(), N, C, S, zero.data<float>(),
                                  invstd.data<float>(), gm, nullptr, dev);
    }
    if (pdg || pdb)
      cuda::batch_norm_backward_f32(g.data<float>(), x.data<float>(), N, C, S, mean.data<float>(),
                                    invstd.data<float>(), gm, nullptr, pdg, pdb, dev);
    return;
  }
  dispatch_float(x.dtype(), "batch_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gm = gamma.defined() ? gamma.data<T>() : nullptr;
    if (train) {
      cpu::batch_norm_backward_train<T>(g.data<T>(), x.data<T>(), N, C, S, mean.data<T>(), invstd.data<T>(), gm,
                                        gx ? gx->data<T>() : nullptr, dgamma ? dgamma->data<T>() : nullptr,
                                        dbeta ? dbeta->data<T>() : nullptr,
                                        fused_mask ? relu_y->data<T>() : nullptr);
    } else {
      if (gx) {
        Tensor zero = Tensor::zeros(Shape{C}, x.dtype());
        cpu::channel_normalize<T>(g.data<T>(), gx->data<T>(), N, C, S, zero.data<T>(), invstd.data<T>(), gm, nullptr);
      }
      if (dgamma || dbeta)
        cpu::batch_norm_backward_train<T>(g.data<T>(), x.data<T>(), N, C, S, mean.data<T>(), invstd.data<T>(), gm,
                                          nullptr, dgamma ? dgamma->data<T>() : nullptr,
                                          dbeta ? dbeta->data<T>() : nullptr);
    }
  });
}

/// Group norm forward: returns y and fills the per-(n, group) mean and invstd.
inline Tensor group_norm_forward(const Tensor& x, int64_t groups, const Tensor& gamma, const Tensor& beta, double eps,
                                 NormStats& st, bool relu = false) {
  check_float("group_norm", x);
  int64_t N, C, S;
  ncs("group_norm", x.shape(), N, C, S);
  NANODE_CHECK(groups >= 1 && C % groups == 0, "group_norm: ", C, " channels cannot be split into ", groups,
               " groups (input ", x.shape(), ")");
  if (gamma.defined()) check_same("group_norm", x, gamma);
  if (beta.defined()) check_same("group_norm", x, beta);
  st.mean = Tensor::empty(Shape{N, groups}, x.dtype(), x.device());
  st.invstd = Tensor::empty(Shape{N, groups}, x.dtype(), x.device());
  Tensor y = empty_like(x);
  if (x.device().is_cuda()) {
    const int dev = x.device().index;
    cuda::group_moments_f32(x.data<float>(), N, C, S, groups, static_cast<float>(eps), st.mean.data<float>(),
                            st.invstd.data<float>(), dev);
    cuda::group_normalize_f32(x.data<float>(), y.data<float>(), N, C, S, groups, st.mean.data<float>(),
                              st.invstd.data<float>(), gamma.defined() ? gamma.data<float>() : nullptr,
                              beta.defined() ? beta.data<float>() : nullptr, dev);
    return relu ? unary(UnaryOp::Relu, y) : y;
  }
  dispatch_float(x.dtype(), "group_norm", [&](auto tag) {
    using T = decltype(tag);
    cpu::group_moments<T>(x.data<T>(), N, C, S, groups, static_cast<T>(eps), st.mean.data<T>(), st.invstd.data<T>());
    cpu::group_normalize<T>(x.data<T>(), y.data<T>(), N, C, S, groups, st.mean.data<T>(), st.invstd.data<T>(),
                            gamma.defined() ? gamma.data<T>() : nullptr, beta.defined() ? beta.data<T>() : nullptr,
                            relu);
  });
  return y;
}

/// relu_y: as in batch_norm_backward.
inline void group_norm_backward(const Tensor& g_in, const Tensor& x, int64_t groups, const NormStats& st,
                                const Tensor& gamma, Tensor* gx, Tensor* dgamma, Tensor* dbeta,
                                const Tensor* relu_y = nullptr) {
  int64_t N, C, S;
  ncs("group_norm", x.shape(), N, C, S);
  const bool fused_mask = relu_y && x.device().is_cpu();
  const Tensor g = relu_y && !fused_mask ? relu_grad(g_in, *relu_y) : g_in;
  if (gx) *gx = empty_like(x);
  if (dgamma) *dgamma = Tensor::empty(Shape{C}, x.dtype(), x.device());
  if (dbeta) *dbeta = Tensor::empty(Shape{C}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    cuda::group_norm_backward_f32(g.data<float>(), x.data<float>(), N, C, S, groups, st.mean.data<float>(),
                                  st.invstd.data<float>(), gamma.defined() ? gamma.data<float>() : nullptr,
                                  gx ? gx->data<float>() : nullptr, dgamma ? dgamma->data<float>() : nullptr,
                                  dbeta ? dbeta->data<float>() : nullptr, x.device().index);
    return;
  }
  dispatch_float(x.dtype(), "group_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    cpu::group_norm_backward<T>(g.data<T>(), x.data<T>(), N, C, S, groups, st.mean.data<T>(), st.invstd.data<T>(),
                                gamma.defined() ? gamma.data<T>() : nullptr, gx ? gx->data<T>() : nullptr,
                                dgamma ? dgamma->data<T>() : nullptr, dbeta ? dbeta->data<T>() : nullptr,
                                fused_mask ? relu_y->data<T>() : nullptr);
  });
}

// ---- cross-entropy and dropout --------------------------------------------------------

/// mean_r -logp[r, targets[r]] for logp [N, C] and int32 targets [N] on logp's device.
inline Tensor nll_mean(const Tensor& logp, const Tensor& targets) {
  const int64_t N = logp.size(0), C = logp.size(1);
  if (logp.device().is_cuda()) {
    Tensor rows = Tensor::empty(Shape{N}, logp.dtype(), logp.device());
    cuda::nll_pick_f32(logp.data<float>(), targets.data<int32_t>(), rows.data<float>(), N, C, logp.device().index);
    return unary(UnaryOp::Affine, sum_all(rows), 1.0 / static_cast<double>(N));
  }
  Tensor loss = Tensor::empty(Shape{}, logp.dtype());
  const int32_t* t = targets.data<int32_t>();
  dispatch_float(logp.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T* lp = logp.data<T>();
    double s = 0;
    for (int64_t n = 0; n < N; ++n) s -= static_cast<double>(lp[n * C + t[n]]);
    loss.data<T>()[0] = static_cast<T>(s / static_cast<double>(N));
  });
  return loss;
}

/// d mean-NLL / d logits = (softmax - onehot) * scale, scale = upstream / N.
inline Tensor cross_entropy_backward(const Tensor& logp, const Tensor& targets, double scale) {
  const int64_t N = logp.size(0), C = logp.size(1);
  Tensor gx = empty_like(logp);
  if (logp.device().is_cuda()) {
    cuda::cross_entropy_backward_f32(logp.data<float>(), targets.data<int32_t>(), gx.data<float>(), N, C,
                                     static_cast<float>(scale), logp.device().index);
    return gx;
  }
  dispatch_float(logp.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    const T sc = static_cast<T>(scale);
    const T* lp = logp.data<T>();
    const int32_t* t = targets.data<int32_t>();
    T* o = gx.data<T>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) o[n * C + c] = std::exp(lp[n * C + c]) * sc;
      o[n * C + t[n]] -= sc;
    }
  });
  return gx;
}

/// The dropout mask (u > p) / (1 - p) for uniforms u drawn from `gen`, in `dtype`
/// on `device`. The draws are the CPU's on every device (a CUDA mask is drawn in a
/// kernel from the same Philox blocks), so a seed gives the same mask everywhere.
inline Tensor dropout_mask(const Shape& shape, double p, Generator& gen, DType dtype, Device device) {
  if (device.is_cuda()) {
    NANODE_CHECK(dtype == DType::Float32, "dropout: CUDA tensors are float32");
    Tensor mask = Tensor::empty(shape, dtype, device);
    const int64_t n = mask.numel();
    // generate_random's layout for float32: 4 values per Philox block, blocks reserved in pairs.
    const int64_t blocks = (n + 3) / 4;
    const uint64_t first = gen.reserve(static_cast<uint64_t>(blocks + (blocks & 1)));
    cuda::dropout_mask_f32(mask.data<float>(), n, gen.seed(), first, static_cast<float>(p),
                           static_cast<float>(1.0 / (1.0 - p)), device.index);
    return mask;
  }
  Tensor u = random(shape, 0.0, 1.0, false, gen, dtype, device);
  return unary(UnaryOp::Step, u, p, 1.0 / (1.0 - p));  // (u > p) / (1 - p)
}

}  // namespace nanode::backend
