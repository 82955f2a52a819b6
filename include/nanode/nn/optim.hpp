#pragma once
// Optimisers (SGD with momentum, Adam, AdamW) and learning-rate schedules.
#include <algorithm>
#include <cmath>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "nanode/autograd/var.hpp"

namespace nanode::optim {

class Optimizer {
 public:
  Optimizer(std::vector<Var> params, double lr) : params_(std::move(params)), lr_(lr) {
    NANODE_CHECK(lr >= 0 && std::isfinite(lr), "optimizer: learning rate must be finite and >= 0, got ", lr);
    for (size_t i = 0; i < params_.size(); ++i)
      NANODE_CHECK(params_[i].defined() && params_[i].is_leaf(), "optimizer: parameter ", i, " is not a leaf Var");
  }
  virtual ~Optimizer() = default;
  void zero_grad() {
    for (auto& p : params_) p.zero_grad();
  }
  /// Applies one update to every parameter that has a gradient.
  virtual void step() = 0;
  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  const std::vector<Var>& params() const { return params_; }
  int64_t steps() const { return t_; }
  /// Per-parameter state tensors (for checkpoints), keyed "<index>.<name>".
  virtual std::map<std::string, Tensor> state() const { return {}; }
  virtual void load_state(const std::map<std::string, Tensor>& s, int64_t steps) { (void)s; t_ = steps; }

 protected:
  std::vector<Var> params_;
  double lr_;
  int64_t t_ = 0;
};

struct SGDOptions {
  double lr = 0.1, momentum = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Var> params, SGDOptions o) : Optimizer(std::move(params), o.lr), o_(o), buf_(params_.size()) {}
  void step() override {
    NoGradGuard ng;
    ++t_;
    for (size_t i = 0; i < params_.size(); ++i) {
      Var& p = params_[i];
      if (!p.grad().defined()) continue;
      Tensor g = p.grad();
      if (o_.weight_decay != 0) {
        g = g.clone();
        backend::axpy_(g, o_.weight_decay, p.data());
      }
      if (o_.momentum != 0) {
        if (!buf_[i].defined()) buf_[i] = g.clone();
        else {
          buf_[i] = backend::unary(UnaryOp::Affine, buf_[i], o_.momentum);
          backend::axpy_(buf_[i], 1.0, g);
        }
        if (o_.nesterov) {
          Tensor d = g.clone();
          backend::axpy_(d, o_.momentum, buf_[i]);
          g = d;
        } else {
          g = buf_[i];
        }
      }
      backend::axpy_(p.mutable_data(), -lr_, g);
    }
  }
  std::map<std::string, Tensor> state() const override {
    std::map<std::string, Tensor> s;
    for (size_t i = 0; i < buf_.size(); ++i)
      if (buf_[i].defined()) s[std::to_string(i) + ".momentum"] = buf_[i];
    return s;
  }
  void load_state(const std::map<std::string, Tensor>& s, int64_t steps) override {
    t_ = steps;
    for (size_t i = 0; i < buf_.size(); ++i) {
      auto it = s.find(std::to_string(i) + ".momentum");
      buf_[i] = it == s.end() ? Tensor() : it->second.to(params_[i].device()).clone();
    }
  }

 private:
  SGDOptions o_;
  std::vector<Tensor> buf_;
};

struct AdamOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Var> params, AdamOptions o)
      : Optimizer(std::move(params), o.lr), o_(o), m_(params_.size()), v_(params_.size()) {}
  void step() override {
    NoGradGuard ng;
    ++t_;
    const double c1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t_));
    for (size_t i = 0; i < params_.size(); ++i) {
      Var& p = params_[i];
      if (!p.grad().defined()) continue;
      if (!m_[i].defined()) {
        m_[i] = Tensor::zeros(p.shape(), p.dtype(), p.device());
        v_[i] = Tensor::zeros(p.shape(), p.dtype(), p.device());
      }
      backend::adam_step_(p.mutable_data(), p.grad(), m_[i], v_[i], lr_, o_.beta1, o_.beta2, o_.eps, o_.weight_decay,
                          c1, c2, o_.decoupled_weight_decay);
    }
  }
  std::map<std::string, Tensor> state() const override {
    std::map<std::string, Tensor> s;
    for (size_t i = 0; i < m_.size(); ++i) {
      if (!m_[i].defined()) continue;
      s[std::to_string(i) + ".exp_avg"] = m_[i];
      s[std::to_string(i) + ".exp_avg_sq"] = v_[i];
    }
    return s;
  }
  void load_state(const std::map<std::string, Tensor>& s, int64_t steps) override {
    t_ = steps;
    for (size_t i = 0; i < m_.size(); ++i) {
      auto a = s.find(std::to_string(i) + ".exp_avg"), b = s.find(std::to_string(i) + ".exp_avg_sq");
      m_[i] = a == s.end() ? Tensor() : a->second.to(params_[i].device()).clone();
      v_[i] = b == s.end() ? Tensor() : b->second.to(params_[i].device()).clone();
    }
  }

 private:
  AdamOptions o_;
  std::vector<Tensor> m_, v_;
};

inline std::unique_ptr<Adam> make_adamw(std::vector<Var> params, double lr, double weight_decay) {
  AdamOptions o;
  o.lr = lr;
  o.weight_decay = weight_decay;
  o.decoupled_weight_decay = true;
  return std::make_unique<Adam>(std::move(params), o);
}

/// Learning rate at `step` of `total` for a base rate: constant, cosine to 0,
/// or step decay (x gamma every `every` steps). Linear warm-up over `warmup` steps.
struct Schedule {
  enum class Kind { Constant, Cosine, Step } kind = Kind::Constant;
  double base = 1e-3, gamma = 0.1;
  int64_t total = 1, every = 1, warmup = 0;
  double at(int64_t step) const {
    double lr = base;
    if (kind == Kind::Cosine) {
      const double f = std::min(1.0, static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, total)));
      lr = base * 0.5 * (1.0 + std::cos(3.141592653589793 * f));
    } else if (kind == Kind::Step) {
      lr = base * std::pow(gamma, static_cast<double>(step / std::max<int64_t>(1, every)));
    }
    if (warmup > 0 && step < warmup) lr *= static_cast<double>(step + 1) / static_cast<double>(warmup);
    return lr;
  }
};

}  // namespace nanode::optim
