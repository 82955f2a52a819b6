#pragma once
// The image classifier of the paper's Fig. 1, at a size a 2-core CPU trains in
// minutes: a stem (3x3 conv, batch norm, ReLU, 2x2 max pool), one NANODE block per
// stage with a 3x3 strided conv between stages, then global average pooling and a
// linear head. Each block integrates dx/dt = f(t, x) over [0, 1] with residual
// dynamics f(t, x) = K(t) * relu(GN(x)), the time-varying convolution K(t) taken
// from the chosen family. Works for 28x28x1 and 32x32x3 inputs (any size >= 8).
//
// Model names (the paper's Table 1 and more):
//   auto          autonomous weights, integrated by the chosen solver/gradient mode
//   appnode       t appended to the input channels (AppNODE)
//   con-resnet    autonomous weights as a discrete ResNet: Euler, backprop through it
//   uncon-resnet  separate weights per step: bucket basis with d = steps, Euler, backprop
//   b-nanode      bucket basis of d pieces (B-NANODE-d)
//   t-nanode      trigonometric basis of order d (T-NANODE-d)
//   monomial, chebyshev, legendre   polynomial bases of order d
//   random        random Fourier features (d features)
//   hyper         weights from a hypernetwork of t
//   gated         eq. 12: sum_n sigma_n(t) f_n(x) over d autonomous residual dynamics
//                 (each with its own norm and convolution)
//   gated-kernel  one convolution whose kernel is a sigmoid-gated mixture of d kernels
//   householder   each block's kernel [C, C*3*3] orthonormal (Householder reflections,
//                 C*9 of them by default) with reflection vectors varying through a
//                 basis of order d (Chebyshev by default; Sec. 2.5, Fig. 3)
// A suffix "-d" sets the order: "t-nanode-10", "b-nanode-100".
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "nanode/core/profile.hpp"
#include "nanode/nn/layers.hpp"
#include "nanode/ops/pool.hpp"
#include "nanode/ode/gradient_modes.hpp"
#include "nanode/timevarying/families.hpp"

namespace nanode::models {

inline const std::vector<std::string>& classifier_model_names() {
  static const std::vector<std::string> names{"auto",     "appnode",   "con-resnet", "uncon-resnet", "b-nanode",
                                              "t-nanode", "monomial",  "chebyshev",  "legendre",     "random",
                                              "hyper",    "gated",     "gated-kernel", "householder"};
  return names;
}

struct ClassifierOptions {
  std::string model = "t-nanode";  ///< a name of classifier_model_names(), optionally "-d"
  int order = 4;                   ///< d (unless the name carries one)
  int64_t in_channels = 1, image_size = 28, classes = 10;
  std::vector<int64_t> widths{32, 64};  ///< channels per stage (one NANODE block each)
  int64_t steps = 4;                    ///< solver steps per block (dt = 1 / steps)
  std::string method = "euler";
  ode::Gradient gradient = ode::Gradient::Direct;
  uint64_t seed = 0;          ///< random features: each block's draws come from (seed, block)
  double rff_sigma = 1.0;     ///< random features: zeta ~ N(0, sigma^2)
  double trig_period = 0.0;   ///< t-nanode: 0 = frequencies 1..d (eq. 8); T > 0: 2 pi n / T
  std::string householder_basis = "chebyshev";  ///< householder: the reflection vectors' basis
  int64_t reflections = 0;    ///< householder: reflections per kernel (0: C*9, all of O(C*9))
  std::string block_norm = "group";  ///< the norm inside each block's dynamics: group, batch or none
  /// b-nanode with buckets that do not divide the steps: false refuses (the steps
  /// would silently grow); true lets the fixed steps cross the bucket edges
  /// (ode::Options::split_at_jumps = false), as the paper's fixed-grid runs do.
  bool cross_jumps = false;
};

/// The model name without its "-d" suffix, and the order it carries (or `fallback`).
inline std::pair<std::string, int> parse_model_name(const std::string& name, int fallback) {
  const size_t dash = name.find_last_of('-');
  if (dash != std::string::npos && dash + 1 < name.size() &&
      name.find_first_not_of("0123456789", dash + 1) == std::string::npos) {
    const std::string base = name.substr(0, dash), digits = name.substr(dash + 1);
    NANODE_CHECK(digits.size() <= 6 && std::stoi(digits) >= 1, "model '", name, "': the order after '-' must be in [1, 999999]");
    const int d = std::stoi(digits);
    return {base, d};
  }
  return {name, fallback};
}

/// f(t, x) = K(t) * relu(N(x)): the residual dynamics of a NANODE block, with N a
/// group norm (default), a batch norm or nothing ("none"). The batch norm inside the
/// dynamics normalises with the statistics of each evaluation's batch, in training
/// and in evaluation alike: the solver evaluates f at many times (and again in the
/// backward pass of the reversible, checkpoint and adjoint modes), so running
/// averages would mix the statistics of every t into one, weighted by the last
/// evaluations; per-batch statistics keep each evaluation at its own t.
class ResidualConvDynamics : public ode::Dynamics {
 public:
  ResidualConvDynamics(const std::string& family, int64_t channels, const tv::FamilyOptions& fo,
                       const std::string& norm = "group")
      : conv_(tv::make_time_conv(family, channels, channels, 3, Conv2dOptions(1, 1), fo)) {
    if (norm == "group") {
      group_ = register_module("norm", std::make_shared<nn::GroupNorm>(std::gcd(channels, int64_t{8}), channels));
    } else if (norm == "batch") {
      batch_ = register_module("norm", std::make_shared<nn::BatchNorm>(channels));
    } else {
      NANODE_CHECK(norm == "none", "block norm must be group, batch or none, got '", norm, "'");
    }
    register_module("conv", conv_);
  }
  Var forward(double t, const Var& x) override {
    Var a;
    {
      profile::Scope s("norm");
      a = group_ ? group_->forward_relu(x)
                 : batch_ ? batch_norm(x, Tensor(), Tensor(), batch_->weight, batch_->bias, /*training=*/true, 0.1,
                                       1e-5, /*relu=*/true)
                          : relu(x);
    }
    profile::Scope s("conv");
    return conv_->forward(t, a);
  }

 private:
  std::shared_ptr<nn::GroupNorm> group_;
  std::shared_ptr<nn::BatchNorm> batch_;
  std::shared_ptr<tv::TimeLayer> conv_;
};

/// The dynamics of a block: ResidualConvDynamics of the family, or for "gated"
/// (eq. 12) sum_n sigma_n(t) f_n(x) over d autonomous ResidualConvDynamics.
inline std::shared_ptr<ode::Dynamics> make_residual_dynamics(const std::string& family, int64_t channels,
                                                             const tv::FamilyOptions& fo,
                                                             const std::string& norm = "group") {
  if (family != "gated") return std::make_shared<ResidualConvDynamics>(family, channels, fo, norm);
  std::vector<std::shared_ptr<ode::Dynamics>> parts;
  for (int n = 0; n < std::max(1, fo.order); ++n)
    parts.push_back(std::make_shared<ResidualConvDynamics>("auto", channels, fo, norm));
  return std::make_shared<tv::GatedDynamics>(parts);
}

class Classifier : public nn::Module {
 public:
  explicit Classifier(const ClassifierOptions& o) : o_(o) {
    auto [base, d] = parse_model_name(o.model, o.order);
    bool known = false;
    for (const auto& n : classifier_model_names()) known = known || n == base;
    if (!known) {
      std::string valid;
      for (const auto& n : classifier_model_names()) valid += (valid.empty() ? "" : ", ") + n;
      fail("unknown model '", o.model, "' (valid: ", valid, "; a suffix -d sets the order, e.g. t-nanode-10)");
    }
    NANODE_CHECK(o.image_size >= 8, "Classifier: images must be at least 8x8, got ", o.image_size);
    NANODE_CHECK(!o.widths.empty(), "Classifier: need at least one stage width");
    NANODE_CHECK(o.steps >= 1, "Classifier: steps must be >= 1, got ", o.steps);
    ode::check_method(o.method, o.gradient);
    base_ = base, order_ = d;
    std::string family = base;
    ode::Options so;
    so.method = o.method, so.steps = o.steps, so.gradient = o.gradient;
    so.split_at_jumps = !o.cross_jumps;
    if (base == "con-resnet" || base == "uncon-resnet") {
      so.method = "euler", so.gradient = ode::Gradient::Direct;
      family = base == "con-resnet" ? "auto" : "bucket";
      if (base == "uncon-resnet") d = static_cast<int>(o.steps), order_ = d;
    } else if (base == "b-nanode") {
      family = "bucket";
    } else if (base == "t-nanode") {
      family = "trig";
    }
    so_ = so;
    NANODE_CHECK(o.block_norm == "group" || o.block_norm == "batch" || o.block_norm == "none",
                 "Classifier: block_norm must be group, batch or none, got '", o.block_norm, "'");
    tv::FamilyOptions fo;
    fo.order = d;
    fo.seed = o.seed, fo.sigma = o.rff_sigma, fo.trig_period = o.trig_period;
    fo.householder_basis = o.householder_basis, fo.reflections = o.reflections;
    stem_ = register_module("stem", std::make_shared<nn::Conv2d>(nn::Conv2dLayerOptions(o.in_channels, o.widths[0], 3).padding(1)));
    stem_bn_ = register_module("stem_bn", std::make_shared<nn::BatchNorm>(o.widths[0]));
    for (size_t s = 0; s < o.widths.size(); ++s) {
      const int64_t C = o.widths[s];
      if (s > 0) {
        down_.push_back(register_module("down" + std::to_string(s), std::make_shared<nn::Conv2d>(
                                            nn::Conv2dLayerOptions(o.widths[s - 1], C, 3).stride(2).padding(1))));
        down_bn_.push_back(register_module("down_bn" + std::to_string(s), std::make_shared<nn::BatchNorm>(C)));
      }
      fo.layer = static_cast<int64_t>(s);
      std::shared_ptr<ode::Dynamics> f = make_residual_dynamics(family, C, fo, o.block_norm);
      blocks_.push_back(register_module("block" + std::to_string(s), std::make_shared<tv::ODEBlock>(f, so)));
    }
    head_norm_ = register_module("head_norm", std::make_shared<nn::GroupNorm>(std::gcd(o.widths.back(), int64_t{8}), o.widths.back()));
    head_ = register_module("head", std::make_shared<nn::Linear>(o.widths.back(), o.classes));
  }

  /// logits [N, classes] for images [N, C, H, W].
  Var forward(const Var& x) {
    NANODE_CHECK(x.ndim() == 4 && x.size(1) == o_.in_channels, "Classifier: expected images [N, ", o_.in_channels,
                 ", H, W], got ", x.shape());
    // Scopes name the parts for profile:: (free when profiling is off).
    Var h;
    {
      profile::Scope p("stem");
      h = max_pool2d(stem_bn_->forward_relu(stem_->forward(x)), 2);
    }
    for (size_t s = 0; s < blocks_.size(); ++s) {
      if (s > 0) {
        profile::Scope p(("down" + std::to_string(s)).c_str());
        h = down_bn_[s - 1]->forward_relu(down_[s - 1]->forward(h));
      }
      profile::Scope p(("block" + std::to_string(s)).c_str());
      h = blocks_[s]->forward(h);
    }
    profile::Scope p("head");
    return head_->forward(flatten(global_avg_pool2d(head_norm_->forward_relu(h))));
  }

  const std::string& base_model() const { return base_; }
  int order() const { return order_; }
  const ClassifierOptions& options() const { return o_; }
  /// The solver options the ODE blocks use (the ResNet rows force Euler and direct).
  const ode::Options& ode_options() const { return so_; }

 private:
  ClassifierOptions o_;
  ode::Options so_;
  std::string base_;
  int order_ = 0;
  std::shared_ptr<nn::Conv2d> stem_;
  std::shared_ptr<nn::BatchNorm> stem_bn_;
  std::vector<std::shared_ptr<nn::Conv2d>> down_;
  std::vector<std::shared_ptr<nn::BatchNorm>> down_bn_;
  std::vector<std::shared_ptr<tv::ODEBlock>> blocks_;
  std::shared_ptr<nn::GroupNorm> head_norm_;
  std::shared_ptr<nn::Linear> head_;
};

}  // namespace nanode::models
