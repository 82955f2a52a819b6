#pragma once
// The video-prediction model of the paper's Sec. 4.2: SVG-LP (Denton & Fergus
// 2018; DESIGN.md §6) with a VGG-64 frame encoder and decoder (skip connections
// from the last conditioning frame), an LSTM frame predictor, and Gaussian LSTMs
// for the posterior q(z_t | x_t) and the learned prior p(z_t | x_{t-1}), trained on
// the evidence lower bound: sum_t MSE(x̂_t, x_t) + beta sum_t KL(q || p). The
// DCGAN-64 encoder/decoder pair (SVG's choice for Moving MNIST) is there for the
// plain model (arch = "dcgan").
//
// Variants (VideoModelOptions::model):
//   svg     the VGG blocks as in SVG: every layer a 3x3 conv + batch norm + leaky ReLU;
//   auto    in every VGG block, the run of layers that keep the channel count (2 of
//           every 3 in the 3-layer blocks) is one ODE block with autonomous dynamics;
//   nanode  the same shape with time-varying dynamics of `family` (trig order 3 by
//           default, as the paper), integrated with `steps` steps (dt = 1/steps).
// The ODE blocks take any gradient mode of the library (ode::Gradient).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nanode/models/classifier.hpp"
#include "nanode/nn/recurrent.hpp"
#include "nanode/ops/pool.hpp"
#include "nanode/ops/shape.hpp"

namespace nanode::models {

inline const std::vector<std::string>& video_model_names() {
  static const std::vector<std::string> n{"svg", "auto", "nanode"};
  return n;
}

struct VideoModelOptions {
  std::string model = "nanode";
  std::string arch = "vgg";     ///< frame encoder/decoder: vgg (VGG-64) or dcgan (DCGAN-64, svg only)
  std::string family = "trig";  ///< nanode's dynamics family (any of tv::family_names())
  int order = 3;                ///< its basis order
  uint64_t seed = 0;            ///< random features: each ODE block draws from (seed, block)
  int64_t steps = 3;            ///< solver steps per ODE block (dt = 1/steps; the paper: 0.33)
  std::string method = "euler";
  ode::Gradient gradient = ode::Gradient::Direct;
  int64_t channels = 1;     ///< frame channels (1: Moving MNIST, 3: BAIR)
  int64_t image_size = 64;  ///< square frames; VGG-64 needs 64
  int64_t width = 64;       ///< channels of the first VGG block (SVG: 64); blocks have w, 2w, 4w, 8w
  int64_t g_dim = 128;      ///< frame encoding
  int64_t z_dim = 10;       ///< latent
  int64_t rnn_size = 256;
  int64_t predictor_layers = 2, posterior_layers = 1, prior_layers = 1;
};

namespace video_detail {

/// SVG's vgg_layer: 3x3 conv (padding 1) + batch norm + leaky ReLU(0.2).
class VggLayer : public nn::Module {
 public:
  VggLayer(int64_t in, int64_t out) {
    conv_ = register_module("conv", std::make_shared<nn::Conv2d>(nn::Conv2dLayerOptions(in, out, 3).padding(1)));
    bn_ = register_module("bn", std::make_shared<nn::BatchNorm>(out));
  }
  Var forward(const Var& x) { return leaky_relu(bn_->forward(conv_->forward(x)), 0.2); }

 private:
  std::shared_ptr<nn::Conv2d> conv_;
  std::shared_ptr<nn::BatchNorm> bn_;
};

/// A VGG block: channel counts c[0] -> c[1] -> ... -> c.back(), one layer per
/// step; with ODE blocks, each run of layers that keep the channel count becomes
/// one ODE block (the layers before and after it stay convolutions).
class VggBlock : public nn::Module {
 public:
  VggBlock(const std::vector<int64_t>& c, const VideoModelOptions& o, int64_t first_layer = 0) {
    const bool ode_blocks = o.model != "svg";
    size_t i = 0;
    int n = 0;
    while (i + 1 < c.size()) {
      const std::string name = "layer" + std::to_string(n++);
      if (ode_blocks && c[i] == c[i + 1]) {
        size_t j = i + 1;
        while (j + 1 < c.size() && c[j] == c[j + 1]) ++j;  // the run i .. j keeps c[i] channels
        tv::FamilyOptions fo;
        fo.order = o.order;
        fo.seed = o.seed;
        fo.layer = first_layer + n;  // random features: each ODE block its own draws
        ode::Options so;
        so.method = o.method, so.steps = o.steps, so.gradient = o.gradient;
        const std::string family = o.model == "auto" ? "auto" : o.family;
        auto f = make_residual_dynamics(family, c[i], fo);
        layers_.push_back(register_module(name, std::make_shared<tv::ODEBlock>(f, so)));
        i = j;
      } else {
        layers_.push_back(register_module(name, std::make_shared<VggLayer>(c[i], c[i + 1])));
        ++i;
      }
    }
  }
  Var forward(Var x) {
    for (auto& l : layers_) {
      if (auto* v = dynamic_cast<VggLayer*>(l.get())) x = v->forward(x);
      else x = static_cast<tv::ODEBlock*>(l.get())->forward(x);
    }
    return x;
  }
  size_t size() const { return layers_.size(); }

 private:
  std::vector<std::shared_ptr<nn::Module>> layers_;
};

}  // namespace video_detail

/// The stages both frame encoders end with and both decoders start with.
namespace video_detail {
/// Encoder end: a 4x4 conv (no padding) of 4x4 maps to g_dim, batch norm, tanh;
/// gives [B, g_dim]. Registered on `owner` as "c5" and "c5_bn".
struct EncodingHead {
  EncodingHead(nn::Module& owner, int64_t in, int64_t g_dim)
      : conv(owner.register_module("c5", std::make_shared<nn::Conv2d>(nn::Conv2dLayerOptions(in, g_dim, 4)))),
        bn(owner.register_module("c5_bn", std::make_shared<nn::BatchNorm>(g_dim))) {}
  Var forward(const Var& x) const {
    const Var h = tanh(bn->forward(conv->forward(x)));  // [B, g, 1, 1]
    return reshape(h, {x.size(0), h.size(1)});
  }
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm> bn;
};
/// Decoder start: encodings [B, g_dim] through a 4x4 transposed conv to `out`
/// channels at 4x4, batch norm, leaky ReLU (0.2). Registered as "upc1_weight" and
/// "upc1_bn".
struct DecodingStem {
  DecodingStem(nn::Module& owner, int64_t g_dim, int64_t out)
      : g_dim(g_dim),
        weight(owner.register_parameter("upc1_weight", nn::uniform_fan_in(Shape{g_dim, out, 4, 4}, out * 16))),
        bn(owner.register_module("upc1_bn", std::make_shared<nn::BatchNorm>(out))) {}
  Var forward(const Var& h) const {
    return leaky_relu(bn->forward(conv_transpose2d(reshape(h, {h.size(0), g_dim, 1, 1}), weight)), 0.2);
  }
  int64_t g_dim;
  Var weight;
  std::shared_ptr<nn::BatchNorm> bn;
};
}  // namespace video_detail

/// A frame encoder: frames [B, C, 64, 64] to encodings [B, g_dim] and four skip
/// feature maps (64, 32, 16 and 8 pixels for VGG; 32, 16, 8, 4 for DCGAN).
class FrameEncoder : public nn::Module {
 public:
  virtual std::pair<Var, std::vector<Var>> forward(const Var& x) = 0;
};
/// A frame decoder: encodings [B, g_dim] and the encoder's skips to frames in (0, 1).
class FrameDecoder : public nn::Module {
 public:
  virtual Var forward(const Var& h, const std::vector<Var>& skips) = 0;
};

/// SVG's vgg_64 encoder: four VGG blocks (64, 32, 16, 8 pixels; w, 2w, 4w, 8w
/// channels) with 2x2 max pooling between them, then a 4x4 conv to g_dim + batch
/// norm + tanh. Returns the encoding [B, g_dim] and the four blocks' outputs.
class VggEncoder : public FrameEncoder {
 public:
  explicit VggEncoder(const VideoModelOptions& o) {
    const int64_t w = o.width;
    using video_detail::VggBlock;
    b1_ = register_module("c1", std::make_shared<VggBlock>(std::vector<int64_t>{o.channels, w, w}, o, 10));
    b2_ = register_module("c2", std::make_shared<VggBlock>(std::vector<int64_t>{w, 2 * w, 2 * w}, o, 20));
    b3_ = register_module("c3", std::make_shared<VggBlock>(std::vector<int64_t>{2 * w, 4 * w, 4 * w, 4 * w}, o, 30));
    b4_ = register_module("c4", std::make_shared<VggBlock>(std::vector<int64_t>{4 * w, 8 * w, 8 * w, 8 * w}, o, 40));
    head_ = std::make_unique<video_detail::EncodingHead>(*this, 8 * w, o.g_dim);
  }
  std::pair<Var, std::vector<Var>> forward(const Var& x) override {
    NANODE_CHECK(x.ndim() == 4 && x.size(2) == 64 && x.size(3) == 64, "VggEncoder: frames must be [B, C, 64, 64], got ",
                 x.shape());
    std::vector<Var> skips;
    skips.push_back(b1_->forward(x));
    skips.push_back(b2_->forward(max_pool2d(skips.back(), 2)));
    skips.push_back(b3_->forward(max_pool2d(skips.back(), 2)));
    skips.push_back(b4_->forward(max_pool2d(skips.back(), 2)));
    return {head_->forward(max_pool2d(skips.back(), 2)), skips};
  }

 private:
  std::shared_ptr<video_detail::VggBlock> b1_, b2_, b3_, b4_;
  std::unique_ptr<video_detail::EncodingHead> head_;
};

/// SVG's vgg_64 decoder: a 4x4 transposed conv from g_dim, then four VGG blocks,
/// each after 2x upsampling, on [its input, the encoder's skip] side by side; the
/// last ends in a 3x3 transposed conv to the frame's channels and a sigmoid.
class VggDecoder : public FrameDecoder {
 public:
  explicit VggDecoder(const VideoModelOptions& o) : g_dim_(o.g_dim) {
    const int64_t w = o.width;
    using video_detail::VggBlock;
    stem_ = std::make_unique<video_detail::DecodingStem>(*this, o.g_dim, 8 * w);
    b2_ = register_module("upc2", std::make_shared<VggBlock>(std::vector<int64_t>{16 * w, 8 * w, 8 * w, 4 * w}, o, 50));
    b3_ = register_module("upc3", std::make_shared<VggBlock>(std::vector<int64_t>{8 * w, 4 * w, 4 * w, 2 * w}, o, 60));
    b4_ = register_module("upc4", std::make_shared<VggBlock>(std::vector<int64_t>{4 * w, 2 * w, w}, o, 70));
    b5_ = register_module("upc5", std::make_shared<VggBlock>(std::vector<int64_t>{2 * w, w}, o, 80));
    out_w_ = register_parameter("out_weight", nn::uniform_fan_in(Shape{w, o.channels, 3, 3}, o.channels * 9));
    out_b_ = register_parameter("out_bias", nn::uniform_fan_in(Shape{o.channels}, o.channels * 9));
  }
  /// Frames [B, C, 64, 64] in (0, 1) from encodings [B, g_dim] and the skips.
  Var forward(const Var& h, const std::vector<Var>& skips) override {
    NANODE_CHECK(h.ndim() == 2 && h.size(1) == g_dim_ && skips.size() == 4, "VggDecoder: need [B, ", g_dim_,
                 "] and 4 skips, got ", h.shape(), " and ", skips.size());
    Var d = stem_->forward(h);                                            // 4x4
    d = b2_->forward(concat({upsample_nearest2d(d, 2), skips[3]}, 1));   // 8x8
    d = b3_->forward(concat({upsample_nearest2d(d, 2), skips[2]}, 1));   // 16x16
    d = b4_->forward(concat({upsample_nearest2d(d, 2), skips[1]}, 1));   // 32x32
    d = b5_->forward(concat({upsample_nearest2d(d, 2), skips[0]}, 1));   // 64x64
    return sigmoid(conv_transpose2d(d, out_w_, out_b_, Conv2dOptions(1, 1)));
  }

 private:
  int64_t g_dim_;
  std::unique_ptr<video_detail::DecodingStem> stem_;
  Var out_w_, out_b_;
  std::shared_ptr<video_detail::VggBlock> b2_, b3_, b4_, b5_;
};

/// SVG's dcgan_64 encoder: 4x4 convolutions of stride 2 (w, 2w, 4w, 8w channels at
/// 32, 16, 8, 4 pixels), each with batch norm and leaky ReLU (0.2), then a 4x4 conv
/// to g_dim, batch norm and tanh.
class DcganEncoder : public FrameEncoder {
 public:
  explicit DcganEncoder(const VideoModelOptions& o) {
    const int64_t w = o.width;
    const int64_t c[5] = {o.channels, w, 2 * w, 4 * w, 8 * w};
    for (int i = 0; i < 4; ++i) {
      convs_.push_back(register_module("c" + std::to_string(i + 1), std::make_shared<nn::Conv2d>(
                                           nn::Conv2dLayerOptions(c[i], c[i + 1], 4).stride(2).padding(1))));
      bns_.push_back(register_module("c" + std::to_string(i + 1) + "_bn", std::make_shared<nn::BatchNorm>(c[i + 1])));
    }
    head_ = std::make_unique<video_detail::EncodingHead>(*this, 8 * w, o.g_dim);
  }
  std::pair<Var, std::vector<Var>> forward(const Var& x) override {
    NANODE_CHECK(x.ndim() == 4 && x.size(2) == 64 && x.size(3) == 64,
                 "DcganEncoder: frames must be [B, C, 64, 64], got ", x.shape());
    std::vector<Var> skips;
    Var h = x;
    for (size_t i = 0; i < 4; ++i) {
      h = leaky_relu(bns_[i]->forward(convs_[i]->forward(h)), 0.2);
      skips.push_back(h);
    }
    return {head_->forward(h), skips};
  }

 private:
  std::vector<std::shared_ptr<nn::Conv2d>> convs_;
  std::vector<std::shared_ptr<nn::BatchNorm>> bns_;
  std::unique_ptr<video_detail::EncodingHead> head_;
};

/// SVG's dcgan_64 decoder: a 4x4 transposed conv from g_dim to 8w channels (4x4),
/// then 4x4 transposed convs of stride 2 on [input, skip] side by side (to 4w, 2w,
/// w and the frame's channels at 8, 16, 32, 64 pixels), with batch norm and leaky
/// ReLU except the last, which ends in a sigmoid.
class DcganDecoder : public FrameDecoder {
 public:
  explicit DcganDecoder(const VideoModelOptions& o) : g_dim_(o.g_dim) {
    const int64_t w = o.width;
    const int64_t c[5] = {8 * w, 4 * w, 2 * w, w, o.channels};
    stem_ = std::make_unique<video_detail::DecodingStem>(*this, o.g_dim, 8 * w);
    for (int i = 0; i < 4; ++i) {
      ws_.push_back(register_parameter("upc" + std::to_string(i + 2) + "_weight",
                                       nn::uniform_fan_in(Shape{2 * c[i], c[i + 1], 4, 4}, c[i + 1] * 16)));
      if (i < 3) bns_.push_back(register_module("upc" + std::to_string(i + 2) + "_bn", std::make_shared<nn::BatchNorm>(c[i + 1])));
    }
    out_b_ = register_parameter("out_bias", nn::uniform_fan_in(Shape{o.channels}, o.channels * 16));
  }
  Var forward(const Var& h, const std::vector<Var>& skips) override {
    NANODE_CHECK(h.ndim() == 2 && h.size(1) == g_dim_ && skips.size() == 4, "DcganDecoder: need [B, ", g_dim_,
                 "] and 4 skips, got ", h.shape(), " and ", skips.size());
    Var d = stem_->forward(h);  // 4x4
    for (size_t i = 0; i < 4; ++i) {
      d = conv_transpose2d(concat({d, skips[3 - i]}, 1), ws_[i], i == 3 ? out_b_ : Var(), Conv2dOptions(2, 1));
      d = i == 3 ? sigmoid(d) : leaky_relu(bns_[i]->forward(d), 0.2);
    }
    return d;
  }

 private:
  int64_t g_dim_;
  std::unique_ptr<video_detail::DecodingStem> stem_;
  Var out_b_;
  std::vector<Var> ws_;
  std::vector<std::shared_ptr<nn::BatchNorm>> bns_;
};

/// The terms of the training loss of one batch: mse = sum over predicted frames
/// of the per-pixel mean squared error, kl = sum over predicted frames of the
/// KL(q || p) summed over latent dimensions and averaged over the batch (SVG's
/// kl_criterion); loss = mse + beta kl. frames = the number of predicted frames.
struct VideoLoss {
  Var loss, mse, kl;
  Var reconstruction;  ///< the decoded frames x̂_1 .. x̂_{T-1}, [(T-1) B, C, H, W] (posterior latents)
  int64_t frames = 0;
};

class SVGModel : public nn::Module {
 public:
  explicit SVGModel(const VideoModelOptions& o) : o_(o) {
    bool known = false;
    for (const auto& n : video_model_names()) known = known || n == o.model;
    NANODE_CHECK(known, "unknown video model '", o.model, "' (valid: svg, auto, nanode)");
    if (o.model == "nanode") {
      bool fam = false;
      for (const auto& n : tv::family_names()) fam = fam || n == o.family;
      NANODE_CHECK(fam, "unknown family '", o.family, "' for the nanode video model");
    }
    NANODE_CHECK(o.image_size == 64, "SVGModel: the VGG-64 encoder needs 64x64 frames, got ", o.image_size);
    NANODE_CHECK(o.width >= 1 && o.g_dim >= 1 && o.z_dim >= 1 && o.rnn_size >= 1 && o.channels >= 1,
                 "SVGModel: sizes must be positive");
    NANODE_CHECK(o.steps >= 1, "SVGModel: steps must be >= 1, got ", o.steps);
    ode::check_method(o.method, o.gradient);
    NANODE_CHECK(o.arch == "vgg" || o.arch == "dcgan", "unknown frame encoder '", o.arch, "' (valid: vgg, dcgan)");
    NANODE_CHECK(o.arch == "vgg" || o.model == "svg", "the ", o.model, " variant replaces layers of the VGG blocks; "
                 "the DCGAN encoder has none to replace (use --arch vgg, or --model svg)");
    if (o.arch == "vgg") {
      encoder_ = register_module<FrameEncoder>("encoder", std::make_shared<VggEncoder>(o));
      decoder_ = register_module<FrameDecoder>("decoder", std::make_shared<VggDecoder>(o));
    } else {
      encoder_ = register_module<FrameEncoder>("encoder", std::make_shared<DcganEncoder>(o));
      decoder_ = register_module<FrameDecoder>("decoder", std::make_shared<DcganDecoder>(o));
    }
    predictor_ = register_module("frame_predictor",
                                 std::make_shared<nn::LSTMStack>(o.g_dim + o.z_dim, o.g_dim, o.rnn_size, o.predictor_layers));
    posterior_ = register_module("posterior",
                                 std::make_shared<nn::GaussianLSTM>(o.g_dim, o.z_dim, o.rnn_size, o.posterior_layers));
    prior_ = register_module("prior", std::make_shared<nn::GaussianLSTM>(o.g_dim, o.z_dim, o.rnn_size, o.prior_layers));
  }
  const VideoModelOptions& options() const { return o_; }

  /// The ELBO terms of frames [T, B, C, 64, 64] (T = n_past + n_future): for t =
  /// 1 .. T-1, h = E(x_{t-1}), z_t ~ q(z | E(x_t)), x̂_t = D(pred([h, z_t]), skips),
  /// with the encoder's skips from x_{t-1} while t < n_past and from the last
  /// conditioning frame x_{n_past-1} after; p(z | h) is the learned prior. The
  /// encoder sees all T frames as one batch, the decoder all T-1 predictions.
  VideoLoss loss(const Var& frames, int64_t n_past, double beta, Generator& gen) {
    const auto [T, B] = check_frames(frames, n_past);
    const Shape fs{frames.size(2), frames.size(3), frames.size(4)};
    auto [h_all, skips_all] = encoder_->forward(reshape(frames, {T * B, fs[0], fs[1], fs[2]}));
    auto at = [&, B = B](const Var& v, int64_t t) { return slice(v, 0, t * B, (t + 1) * B); };
    predictor_->reset(B), posterior_->reset(B), prior_->reset(B);
    std::vector<Var> preds, skip_parts[4], kls;
    for (int64_t t = 1; t < T; ++t) {
      const Var h = at(h_all, t - 1), h_target = at(h_all, t);
      const int64_t sk = std::min(t - 1, n_past - 1);  // the frame whose skips the decoder uses
      const auto q = posterior_->step(h_target, gen);
      const auto p = prior_->step(h, gen);
      preds.push_back(predictor_->step(concat({h, q.z}, 1)));
      for (int k = 0; k < 4; ++k) skip_parts[k].push_back(at(skips_all[static_cast<size_t>(k)], sk));
      kls.push_back(sum(gaussian_kl(q.mu, q.logvar, p.mu, p.logvar)) * (1.0 / static_cast<double>(B)));
    }
    std::vector<Var> skips;
    for (auto& s : skip_parts) skips.push_back(concat(s, 0));
    const Var xhat = decoder_->forward(concat(preds, 0), skips);  // [(T-1) B, C, H, W]
    const Var target = reshape(slice(frames, 0, 1, T), {(T - 1) * B, fs[0], fs[1], fs[2]});
    // Per frame: the mean over its B C H W values; summed over the T-1 frames.
    VideoLoss out;
    out.frames = T - 1;
    out.reconstruction = xhat;
    out.mse = mse_loss(xhat, target) * static_cast<double>(T - 1);
    Var kl = kls[0];
    for (size_t i = 1; i < kls.size(); ++i) kl = kl + kls[i];
    out.kl = kl;
    out.loss = out.mse + beta * out.kl;
    return out;
  }

  /// Predicted frames [T - n_past, B, C, 64, 64] for frames [T, B, ...]: the first
  /// n_past frames condition the model (their latents from the posterior, as in
  /// SVG), the rest are generated with latents drawn from the learned prior, each
  /// prediction feeding the next step. No gradient is recorded.
  Var predict(const Var& frames, int64_t n_past, Generator& gen) {
    NoGradGuard ng;
    const auto [T, B] = check_frames(frames, n_past);
    predictor_->reset(B), posterior_->reset(B), prior_->reset(B);
    std::vector<Var> skips;
    Var x_in = slice_frame(frames, 0);
    std::vector<Var> out;
    for (int64_t t = 1; t < T; ++t) {
      auto [h, s] = encoder_->forward(x_in);
      if (t < n_past) skips = s;
      if (t < n_past) {
        const auto q = posterior_->step(encoder_->forward(slice_frame(frames, t)).first, gen);
        prior_->step(h, gen);
        predictor_->step(concat({h, q.z}, 1));
        x_in = slice_frame(frames, t);
      } else {
        const auto p = prior_->step(h, gen);
        x_in = decoder_->forward(predictor_->step(concat({h, p.z}, 1)), skips);
        out.push_back(reshape(x_in, {1, B, x_in.size(1), x_in.size(2), x_in.size(3)}));
      }
    }
    return concat(out, 0);
  }

  FrameEncoder& encoder() { return *encoder_; }
  FrameDecoder& decoder() { return *decoder_; }
  nn::LSTMStack& frame_predictor() { return *predictor_; }
  nn::GaussianLSTM& posterior() { return *posterior_; }
  nn::GaussianLSTM& prior() { return *prior_; }

 private:
  std::pair<int64_t, int64_t> check_frames(const Var& frames, int64_t n_past) const {
    NANODE_CHECK(frames.ndim() == 5 && frames.size(2) == o_.channels && frames.size(3) == 64 && frames.size(4) == 64,
                 "SVGModel: frames must be [T, B, ", o_.channels, ", 64, 64], got ", frames.shape());
    const int64_t T = frames.size(0), B = frames.size(1);
    NANODE_CHECK(n_past >= 1 && n_past < T, "SVGModel: n_past must be in [1, ", T, ") for ", T, " frames, got ", n_past);
    NANODE_CHECK(B >= 1, "SVGModel: empty batch");
    return {T, B};
  }
  static Var slice_frame(const Var& frames, int64_t t) {
    const Var f = slice(frames, 0, t, t + 1);
    return reshape(f, {frames.size(1), frames.size(2), frames.size(3), frames.size(4)});
  }

  VideoModelOptions o_;
  std::shared_ptr<FrameEncoder> encoder_;
  std::shared_ptr<FrameDecoder> decoder_;
  std::shared_ptr<nn::LSTMStack> predictor_;
  std::shared_ptr<nn::GaussianLSTM> posterior_, prior_;
};

}  // namespace nanode::models
