#pragma once
// Standard layers: Linear, Conv2d, BatchNorm, GroupNorm, Dropout.
#include <cmath>

#include "nanode/nn/module.hpp"
#include "nanode/ops/conv.hpp"
#include "nanode/ops/linalg.hpp"
#include "nanode/ops/loss.hpp"
#include "nanode/ops/norm.hpp"

namespace nanode::nn {

/// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LibTorch's default for Linear and Conv2d.
inline Tensor uniform_fan_in(const Shape& shape, int64_t fan_in, Generator& gen = default_generator()) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  return Tensor::uniform(shape, -bound, bound, gen);
}

struct LinearOptions {
  int64_t in = 0, out = 0;
  bool bias_ = true;
  LinearOptions(int64_t in_features, int64_t out_features) : in(in_features), out(out_features) {}
  LinearOptions& bias(bool b) { bias_ = b; return *this; }
};

class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& o) {
    NANODE_CHECK(o.in > 0 && o.out > 0, "Linear: feature counts must be positive, got ", o.in, " -> ", o.out);
    weight = register_parameter("weight", uniform_fan_in(Shape{o.out, o.in}, o.in));
    if (o.bias_) bias = register_parameter("bias", uniform_fan_in(Shape{o.out}, o.in));
  }
  Linear(int64_t in, int64_t out) : Linear(LinearOptions(in, out)) {}
  Var forward(const Var& x) const { return linear(x, weight, bias); }
  Var weight, bias;
};

struct Conv2dLayerOptions {
  int64_t in = 0, out = 0, kernel = 3;
  int64_t stride_ = 1, padding_ = 0;
  bool bias_ = true;
  Conv2dLayerOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in(in_channels), out(out_channels), kernel(kernel_size) {}
  Conv2dLayerOptions& stride(int64_t s) { stride_ = s; return *this; }
  Conv2dLayerOptions& padding(int64_t p) { padding_ = p; return *this; }
  Conv2dLayerOptions& bias(bool b) { bias_ = b; return *this; }
};

class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dLayerOptions& o) : opt_(o.stride_, o.padding_) {
    NANODE_CHECK(o.in > 0 && o.out > 0 && o.kernel > 0, "Conv2d: channels and kernel must be positive");
    const int64_t fan_in = o.in * o.kernel * o.kernel;
    weight = register_parameter("weight", uniform_fan_in(Shape{o.out, o.in, o.kernel, o.kernel}, fan_in));
    if (o.bias_) bias = register_parameter("bias", uniform_fan_in(Shape{o.out}, fan_in));
  }
  Var forward(const Var& x) const { return conv2d(x, weight, bias, opt_); }
  Var weight, bias;

 private:
  Conv2dOptions opt_;
};

/// Batch norm over channel axis 1 of [N, C] or [N, C, H, W] inputs.
class BatchNorm : public Module {
 public:
  explicit BatchNorm(int64_t channels, double momentum = 0.1, double eps = 1e-5, bool affine = true)
      : momentum_(momentum), eps_(eps) {
    NANODE_CHECK(channels > 0, "BatchNorm: channel count must be positive");
    if (affine) {
      weight = register_parameter("weight", Tensor::ones(Shape{channels}));
      bias = register_parameter("bias", Tensor::zeros(Shape{channels}));
    }
    running_mean = register_buffer("running_mean", Tensor::zeros(Shape{channels}));
    running_var = register_buffer("running_var", Tensor::ones(Shape{channels}));
  }
  Var forward(const Var& x) const {
    return batch_norm(x, running_mean.data(), running_var.data(), weight, bias, is_training(), momentum_, eps_);
  }
  /// relu(forward(x)) as one op (batch_norm's relu flag).
  Var forward_relu(const Var& x) const {
    return batch_norm(x, running_mean.data(), running_var.data(), weight, bias, is_training(), momentum_, eps_, true);
  }
  Var weight, bias, running_mean, running_var;

 private:
  double momentum_, eps_;
};

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t groups, int64_t channels, double eps = 1e-5) : groups_(groups), eps_(eps) {
    NANODE_CHECK(groups > 0 && channels % groups == 0, "GroupNorm: ", channels, " channels cannot be split into ",
                 groups, " groups");
    weight = register_parameter("weight", Tensor::ones(Shape{channels}));
    bias = register_parameter("bias", Tensor::zeros(Shape{channels}));
  }
  Var forward(const Var& x) const { return group_norm(x, groups_, weight, bias, eps_); }
  /// relu(forward(x)) as one op (group_norm's relu flag).
  Var forward_relu(const Var& x) const { return group_norm(x, groups_, weight, bias, eps_, true); }
  Var weight, bias;

 private:
  int64_t groups_;
  double eps_;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p) : p_(p) { NANODE_CHECK(p >= 0 && p < 1, "Dropout: p must be in [0, 1), got ", p); }
  Var forward(const Var& x) const { return dropout(x, p_, is_training()); }

 private:
  double p_;
};

}  // namespace nanode::nn
