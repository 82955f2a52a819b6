#pragma once
// Recurrent layers for the video model (SVG-LP, Denton & Fergus 2018): an LSTM
// cell whose four gates come from one GEMM over [x, h], a stack of them between a
// linear embedding and a linear output (SVG's frame predictor), and the Gaussian
// variant that outputs a mean and a log-variance and samples by
// reparameterisation (SVG's posterior and learned prior).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nanode/nn/layers.hpp"
#include "nanode/ops/shape.hpp"

namespace nanode::nn {

/// The state of one LSTM layer: hidden h and cell c, each [B, hidden].
struct LSTMState {
  Var h, c;
};

/// One LSTM step with explicit parameters (what LSTMCell::forward computes):
/// z = linear([x, h], weight, bias) in one GEMM, then the gates below.
inline LSTMState lstm_cell(const Var& x, const LSTMState& s, const Var& weight, const Var& bias) {
  const int64_t H = s.h.size(1);
  NANODE_CHECK(weight.ndim() == 2 && weight.size(0) == 4 * H && weight.size(1) == x.size(1) + H,
               "lstm_cell: weight must be [4 hidden, in + hidden] = [", 4 * H, ", ", x.size(1) + H, "], got ",
               weight.shape());
  const Var z = linear(concat({x, s.h}, 1), weight, bias);  // [B, 4H]
  const Var i = sigmoid(slice(z, 1, 0, H)), f = sigmoid(slice(z, 1, H, 2 * H));
  const Var g = tanh(slice(z, 1, 2 * H, 3 * H)), o = sigmoid(slice(z, 1, 3 * H, 4 * H));
  LSTMState out;
  out.c = f * s.c + i * g;
  out.h = o * tanh(out.c);
  return out;
}

/// i, f, g, o = split(W [x, h] + b, 4); c' = sigmoid(f) c + sigmoid(i) tanh(g);
/// h' = sigmoid(o) tanh(c'). W is [4 hidden, in + hidden] (gate order i, f, g, o,
/// as PyTorch's nn.LSTMCell; its W_ih and W_hh side by side), so the gates of a
/// step are one GEMM. Initialisation U(-1/sqrt(hidden), 1/sqrt(hidden)), as PyTorch.
class LSTMCell : public Module {
 public:
  LSTMCell(int64_t in, int64_t hidden) : in_(in), hidden_(hidden) {
    NANODE_CHECK(in > 0 && hidden > 0, "LSTMCell: sizes must be positive, got ", in, " -> ", hidden);
    weight = register_parameter("weight", uniform_fan_in(Shape{4 * hidden, in + hidden}, hidden));
    bias = register_parameter("bias", uniform_fan_in(Shape{4 * hidden}, hidden));
  }
  int64_t input_size() const { return in_; }
  int64_t hidden_size() const { return hidden_; }

  /// Zero state for a batch of B.
  LSTMState zero_state(int64_t B) const {
    const Tensor& w = weight.data();
    return {Var(Tensor::zeros(Shape{B, hidden_}, w.dtype(), w.device())),
            Var(Tensor::zeros(Shape{B, hidden_}, w.dtype(), w.device()))};
  }

  LSTMState forward(const Var& x, const LSTMState& s) const {
    NANODE_CHECK(x.ndim() == 2 && x.size(1) == in_, "LSTMCell: input must be [B, ", in_, "], got ", x.shape());
    NANODE_CHECK(s.h.defined() && s.c.defined() && s.h.shape() == Shape({x.size(0), hidden_}) &&
                     s.c.shape() == s.h.shape(),
                 "LSTMCell: state must be [", x.size(0), ", ", hidden_, "] (zero_state(B) makes one)");
    return lstm_cell(x, s, weight, bias);
  }
  Var weight, bias;

 private:
  int64_t in_, hidden_;
};

/// An embedding Linear(in, hidden) and `layers` LSTM cells with their state: the
/// trunk of SVG's LSTMs. reset(B) zeroes the state (call it at the start of every
/// sequence batch); advance(x) embeds x, steps every layer and returns the top
/// layer's h.
class LSTMTrunk : public Module {
 public:
  LSTMTrunk(int64_t in, int64_t hidden, int64_t layers, const char* who) : who_(who) {
    NANODE_CHECK(layers >= 1, who, ": need at least one layer, got ", layers);
    embed_ = register_module("embed", std::make_shared<Linear>(in, hidden));
    for (int64_t l = 0; l < layers; ++l)
      cells_.push_back(register_module("lstm" + std::to_string(l), std::make_shared<LSTMCell>(hidden, hidden)));
  }
  void reset(int64_t B) {
    state_.clear();
    for (const auto& c : cells_) state_.push_back(c->zero_state(B));
  }
  Var advance(const Var& x) {
    NANODE_CHECK(!state_.empty(), who_, ": call reset(batch) before step()");
    Var h = embed_->forward(x);
    for (size_t l = 0; l < cells_.size(); ++l) {
      state_[l] = cells_[l]->forward(h, state_[l]);
      h = state_[l].h;
    }
    return h;
  }

 private:
  const char* who_;
  std::shared_ptr<Linear> embed_;
  std::vector<std::shared_ptr<LSTMCell>> cells_;
  std::vector<LSTMState> state_;
};

/// SVG's `lstm`: the trunk, then out = tanh(Linear(hidden, out)).
class LSTMStack : public LSTMTrunk {
 public:
  LSTMStack(int64_t in, int64_t out, int64_t hidden, int64_t layers) : LSTMTrunk(in, hidden, layers, "LSTMStack") {
    out_ = register_module("output", std::make_shared<Linear>(hidden, out));
  }
  Var step(const Var& x) { return tanh(out_->forward(advance(x))); }

 private:
  std::shared_ptr<Linear> out_;
};

/// SVG's `gaussian_lstm`: the trunk, then mu = Linear(hidden, out) and logvar =
/// Linear(hidden, out); z = mu + exp(logvar / 2) eps, eps ~ N(0, 1) from `gen`
/// (the reparameterisation trick).
class GaussianLSTM : public LSTMTrunk {
 public:
  struct Sample {
    Var z, mu, logvar;
  };
  GaussianLSTM(int64_t in, int64_t out, int64_t hidden, int64_t layers)
      : LSTMTrunk(in, hidden, layers, "GaussianLSTM") {
    mu_ = register_module("mu", std::make_shared<Linear>(hidden, out));
    logvar_ = register_module("logvar", std::make_shared<Linear>(hidden, out));
  }
  Sample step(const Var& x, Generator& gen) {
    const Var h = advance(x);
    Sample s;
    s.mu = mu_->forward(h);
    s.logvar = logvar_->forward(h);
    const Tensor& m = s.mu.data();
    const Var eps(Tensor::normal(m.shape(), 0.0, 1.0, gen, m.dtype(), m.device()));
    s.z = s.mu + exp(0.5 * s.logvar) * eps;
    return s;
  }

 private:
  std::shared_ptr<Linear> mu_, logvar_;
};

}  // namespace nanode::nn
