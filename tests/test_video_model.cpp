// The video model (issue 12): the LSTM cell against hand-computed values and
// finite differences, the SVG-LP loss's terms against a recomputation from its
// modules on a one-step case, a training step of every variant lowering the loss
// on a fixed batch, and the NANODE variant's checkpoint gradients equal to direct.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "gradcheck.hpp"
#include "nanode/models/video.hpp"
#include "nanode/models/video_metrics.hpp"
#include "nanode/models/video_trainer.hpp"

using namespace nanode;
using nanode::testing::gradcheck;
using nanode::testing::rand64;
using Catch::Matchers::Contains;

TEST_CASE("LSTM cell: hand-computed step, gradients by finite differences, one GEMM for the gates",
          "[video][lstm]") {
  // in = 1, hidden = 1: z = W [x, h] + b with W = [wi; wf; wg; wo] (each [wx, wh]).
  const double x = 0.5, h = -0.25, c = 0.75;
  const std::vector<double> W{0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8}, b{0.01, -0.02, 0.03, 0.04};
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  auto z = [&](int k) { return W[static_cast<size_t>(2 * k)] * x + W[static_cast<size_t>(2 * k + 1)] * h + b[static_cast<size_t>(k)]; };
  const double c1 = sig(z(1)) * c + sig(z(0)) * std::tanh(z(2)), h1 = sig(z(3)) * std::tanh(c1);
  nn::LSTMState s{Var(Tensor::from_vector<double>({h}, {1, 1})), Var(Tensor::from_vector<double>({c}, {1, 1}))};
  const auto out = nn::lstm_cell(Var(Tensor::from_vector<double>({x}, {1, 1})), s,
                                 Var(Tensor::from_vector<double>(W, {4, 2})), Var(Tensor::from_vector<double>(b, {4})));
  CHECK(out.c.data().item() == Approx(c1).epsilon(1e-14));
  CHECK(out.h.data().item() == Approx(h1).epsilon(1e-14));

  // Gradients of (h', c') with respect to x, h, c, W and b, batch 3, in 2, hidden 3.
  const auto r = gradcheck(
      [](const std::vector<Var>& v) {
        const auto o = nn::lstm_cell(v[0], {v[1], v[2]}, v[3], v[4]);
        return concat({o.h, o.c}, 1);
      },
      {rand64({3, 2}, 1), rand64({3, 3}, 2), rand64({3, 3}, 3), rand64({12, 5}, 4), rand64({12}, 5)});
  INFO(r.where << "; max abs err " << r.max_abs_err);
  CHECK(r.ok);

  // The module: its state shapes, and bad input named.
  nn::LSTMCell cell(2, 3);
  CHECK(cell.weight.shape() == Shape({12, 5}));
  const auto st = cell.forward(Var(Tensor::ones({4, 2})), cell.zero_state(4));
  CHECK(st.h.shape() == Shape({4, 3}));
  CHECK_THROWS_WITH(cell.forward(Var(Tensor::ones({4, 3})), cell.zero_state(4)), Contains("[B, 2]"));
  CHECK_THROWS_WITH(cell.forward(Var(Tensor::ones({4, 2})), cell.zero_state(5)), Contains("state"));
}

namespace {

models::VideoModelOptions tiny(const std::string& model) {
  models::VideoModelOptions o;
  o.model = model;
  o.width = 2;
  o.g_dim = 6;
  o.z_dim = 2;
  o.rnn_size = 8;
  o.steps = 2;
  return o;
}

Tensor moving_square_frames(int64_t T, int64_t B) {
  std::vector<float> v(static_cast<size_t>(T * B * 64 * 64), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t r = 0; r < 12; ++r)
        for (int64_t c = 0; c < 12; ++c)
          v[static_cast<size_t>(((t * B + b) * 64 + 10 + 3 * t + r) * 64 + 8 + 5 * b + 2 * t + c)] = 1.0f;
  return Tensor::from_vector<float>(v, {T, B, 1, 64, 64});
}

}  // namespace

TEST_CASE("SVG-LP loss: its terms recomputed from the modules on one predicted frame", "[video][model]") {
  manual_seed(3);
  models::SVGModel m(tiny("svg"));
  const Tensor frames = moving_square_frames(2, 3);
  Generator g1(42), g2(42);
  const auto L = m.loss(Var(frames), 1, 0.5, g1);
  REQUIRE(L.frames == 1);
  // By hand: h = E(x0), skips from x0; z ~ q(E(x1)) (posterior steps first, then the
  // prior, as in loss()); x̂1 = D(pred([h, z]), skips).
  const Var x0(frames.narrow(0, 0, 1).reshape({3, 1, 64, 64})), x1(frames.narrow(0, 1, 1).reshape({3, 1, 64, 64}));
  // The encoder saw both frames as one batch (batch-norm statistics over both).
  auto [h_all, skips_all] = m.encoder().forward(concat({x0, x1}, 0));
  const Var h = slice(h_all, 0, 0, 3), ht = slice(h_all, 0, 3, 6);
  std::vector<Var> skips;
  for (const auto& s : skips_all) skips.push_back(slice(s, 0, 0, 3));
  m.frame_predictor().reset(3), m.posterior().reset(3), m.prior().reset(3);
  const auto q = m.posterior().step(ht, g2);
  const auto p = m.prior().step(h, g2);
  const Var xhat = m.decoder().forward(m.frame_predictor().step(concat({h, q.z}, 1)), skips);
  const auto xv = xhat.data().to_vector<float>(), tv = x1.data().to_vector<float>();
  double se = 0;
  for (size_t k = 0; k < xv.size(); ++k) se += (static_cast<double>(xv[k]) - tv[k]) * (static_cast<double>(xv[k]) - tv[k]);
  CHECK(L.mse.data().item() == Approx(se / static_cast<double>(xv.size())).epsilon(1e-5));
  // KL of diagonal Gaussians summed over z, averaged over the batch.
  const auto mq = q.mu.data().to_vector<float>(), lq = q.logvar.data().to_vector<float>();
  const auto mp = p.mu.data().to_vector<float>(), lp = p.logvar.data().to_vector<float>();
  double kl = 0;
  for (size_t k = 0; k < mq.size(); ++k)
    kl += 0.5 * (lp[k] - lq[k] + (std::exp(lq[k]) + (mq[k] - mp[k]) * (mq[k] - mp[k])) / std::exp(lp[k]) - 1.0);
  CHECK(L.kl.data().item() == Approx(kl / 3.0).epsilon(1e-5));
  CHECK(L.loss.data().item() == Approx(L.mse.data().item() + 0.5 * L.kl.data().item()).epsilon(1e-6));
  CHECK(L.kl.data().item() > 0.0);
  // Bad shapes and options are named.
  CHECK_THROWS_WITH(m.loss(Var(Tensor::zeros({2, 3, 1, 32, 32})), 1, 0.5, g1), Contains("64, 64"));
  CHECK_THROWS_WITH(m.loss(Var(frames), 2, 0.5, g1), Contains("n_past"));
  models::VideoModelOptions bad = tiny("lstm");
  CHECK_THROWS_WITH(models::SVGModel(bad), Contains("unknown video model"));
}

TEST_CASE("SVG-LP: a training step of every variant lowers the loss on a fixed batch, and predictions have the right shape",
          "[video][model]") {
  const Tensor frames = moving_square_frames(4, 2);
  for (const std::string variant : {"svg", "auto", "nanode"}) {
    INFO(variant);
    manual_seed(5);
    models::SVGModel m(tiny(variant));
    optim::AdamOptions ao;
    ao.lr = 2e-3;
    optim::Adam opt(m.parameters(), ao);
    auto loss_at = [&]() {
      Generator g(9);  // the same latent noise each time
      return m.loss(Var(frames), 2, 1e-2, g);
    };
    auto L0 = loss_at();
    opt.zero_grad();
    L0.loss.backward();
    opt.step();
    const double before = L0.loss.data().item(), after = loss_at().loss.data().item();
    CHECK(std::isfinite(before));
    CHECK(after < before);
    Generator g(1);
    const Var pred = m.predict(Var(frames), 2, g);
    INFO("prediction");
    CHECK(pred.shape() == Shape({2, 2, 1, 64, 64}));
    const auto pv = pred.data().to_vector<float>();
    CHECK(*std::min_element(pv.begin(), pv.end()) >= 0.0f);
    CHECK(*std::max_element(pv.begin(), pv.end()) <= 1.0f);
  }
}

namespace {
// Every parameter's gradient of one SVG-LP loss with NANODE blocks solved by `method`
// with gradient mode `gradient` (same seed, same batch, same noise).
std::vector<std::vector<float>> nanode_video_grads(const std::string& method, ode::Gradient gradient) {
  const Tensor frames = moving_square_frames(3, 2);
  manual_seed(8);
  auto o = tiny("nanode");
  o.method = method;
  o.gradient = gradient;
  models::SVGModel m(o);
  Generator g(4);
  auto L = m.loss(Var(frames), 1, 0.1, g);
  L.loss.backward();
  std::vector<std::vector<float>> out;
  for (const auto& p : m.parameters()) out.push_back(p.grad().to_vector<float>());
  return out;
}

// max |a - b| over every parameter, and max |a| (the scale it is measured against).
std::pair<double, double> worst_difference(const std::vector<std::vector<float>>& a,
                                           const std::vector<std::vector<float>>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].size() == b[i].size());
    for (size_t k = 0; k < a[i].size(); ++k) {
      worst = std::max(worst, static_cast<double>(std::abs(a[i][k] - b[i][k])));
      scale = std::max(scale, static_cast<double>(std::abs(a[i][k])));
    }
  }
  return {worst, scale};
}
}  // namespace

TEST_CASE("SVG-LP with NANODE blocks: every gradient mode against direct backprop", "[video][model]") {
  SECTION("checkpoint (exact) on Euler steps") {
    const auto [worst, scale] = worst_difference(nanode_video_grads("euler", ode::Gradient::Direct),
                                                 nanode_video_grads("euler", ode::Gradient::Checkpoint));
    CHECK(scale > 0);
    CHECK(worst <= 1e-5 * std::max(1.0, scale));
  }
  SECTION("reversible (exact, constant memory) on ALF steps") {
    // The reversible mode rebuilds each state by inverting the step, so the states
    // it differentiates at differ from the stored ones by float rounding only.
    const auto [worst, scale] = worst_difference(nanode_video_grads("alf", ode::Gradient::Direct),
                                                 nanode_video_grads("alf", ode::Gradient::Reversible));
    CHECK(scale > 0);
    CHECK(worst <= 1e-4 * std::max(1.0, scale));
  }
  SECTION("adjoint (approximate: O(h^4) on RK4) on RK4 steps") {
    const auto [worst, scale] = worst_difference(nanode_video_grads("rk4", ode::Gradient::Direct),
                                                 nanode_video_grads("rk4", ode::Gradient::Adjoint));
    CHECK(scale > 0);
    CHECK(worst <= 1e-2 * scale);
  }
  SECTION("the modes a method cannot take are refused by name") {
    CHECK_THROWS_WITH(nanode_video_grads("euler", ode::Gradient::Reversible),
                      Catch::Contains("reversible gradients need method 'alf'"));
    CHECK_THROWS_WITH(nanode_video_grads("alf", ode::Gradient::Adjoint),
                      Catch::Contains("method 'alf' takes gradient = direct or reversible"));
  }
}

TEST_CASE("frame metrics: PSNR and SSIM against hand-computed values, the best of k samples", "[video][metrics]") {
  // Constant frames a and b: zero variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
  const int64_t H = 16, W = 16;
  std::vector<float> a(H * W, 0.25f), b(H * W, 0.75f);
  const double c1 = 1e-4;
  CHECK(models::frame_ssim(a.data(), b.data(), 1, H, W) ==
        Approx((2 * 0.25 * 0.75 + c1) / (0.0625 + 0.5625 + c1)).epsilon(1e-12));
  CHECK(models::frame_ssim(a.data(), a.data(), 1, H, W) == Approx(1.0));
  CHECK(models::frame_mse(a.data(), b.data(), H * W) == Approx(0.25));
  CHECK(models::psnr_from_mse(0.25) == Approx(10.0 * std::log10(4.0)));
  CHECK(models::psnr_from_mse(0.01) == Approx(20.0));
  // A checkerboard against its negative: means equal (1/2), covariance -1/4 against
  // variances 1/4 each (away from the window's weights: every 11x11 Gaussian window
  // over a checkerboard has mean near 1/2), so SSIM is near (1 + C1)(C2 - 1/2) / ((1/2 + C1)(1/2 + C2)) < 0.
  std::vector<float> cb(H * W), neg(H * W);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) cb[static_cast<size_t>(y * W + x)] = static_cast<float>((x + y) % 2), neg[static_cast<size_t>(y * W + x)] = 1.0f - cb[static_cast<size_t>(y * W + x)];
  CHECK(models::frame_ssim(cb.data(), neg.data(), 1, H, W) < -0.9);
  // Best of k: the sample closest to the truth over all frames.
  const std::vector<float> truth(2 * H * W, 0.5f);
  std::vector<std::vector<float>> samples{std::vector<float>(2 * H * W, 0.9f), std::vector<float>(2 * H * W, 0.6f),
                                          std::vector<float>(2 * H * W, 0.1f)};
  const auto r = models::best_of_k(samples, truth, 2, 1, H, W);
  CHECK(r.best == 1);
  REQUIRE(r.mse.size() == 2);
  CHECK(r.mse[0] == Approx(0.01).epsilon(1e-5));
  CHECK(r.psnr[1] == Approx(20.0).epsilon(1e-5));
  CHECK_THROWS_WITH(models::best_of_k({std::vector<float>(3)}, truth, 2, 1, H, W), Contains("sample 0"));
}

namespace {
struct Killed {};  // stands for a kill after an epoch's checkpoint
}  // namespace

TEST_CASE("video trainer: metrics, strips and a resumed run equal to an uninterrupted one", "[video][trainer]") {
  // Generated squares, a tiny NANODE model, 2 epochs of 2 batches.
  auto digits = std::make_shared<data::Array>();
  digits->dims = {3, 28, 28};
  digits->bytes.assign(3 * 784, 0);
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t c = 0; c < 10; ++c) digits->bytes[static_cast<size_t>(k * 784 + (r + 4 + k) * 28 + c + 9)] = 255;
  auto sources = [&] {
    data::MovingDigitsOptions o;
    o.frames = 4, o.sequences = 4, o.seed = 1;
    auto train = std::make_shared<data::MovingDigits>(digits, "squares", o);
    o.sequences = 3, o.seed = 2;
    auto test = std::make_shared<data::MovingDigits>(digits, "squares", o);
    return std::pair<std::shared_ptr<data::VideoSource>, std::shared_ptr<data::VideoSource>>{train, test};
  };
  char tmpl[] = "/tmp/nanode_test_video_train_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  models::VideoTrainConfig c;
  c.model = tiny("nanode");
  c.n_past = 2, c.n_future = 2, c.epochs = 2, c.batch_size = 2, c.samples = 2, c.progress = false;
  auto run = [&](const std::string& out, bool resume, bool stop_after_first) {
    c.out_dir = out, c.resume = resume;
    std::filesystem::create_directories(out);
    auto [train, test] = sources();
    models::VideoTrainer t(c, train, test);
    models::VideoTrainResult r;
    try {
      r = t.run([&](const models::VideoEpochMetrics& m) {
        if (stop_after_first && m.epoch == 1) throw Killed{};
      });
    } catch (const Killed&) {
    }
    std::vector<std::vector<float>> params;
    for (const auto& p : t.model().parameters()) params.push_back(p.data().to_vector<float>());
    return std::make_pair(r, params);
  };
  const auto whole = run(dir + "/whole", false, false);
  REQUIRE(whole.first.epochs.size() == 2);
  const auto& m = whole.first.epochs.back();
  CHECK(std::isfinite(m.train_elbo));
  CHECK(m.train_elbo == Approx(m.train_mse + 1e-4 * m.train_kl).epsilon(1e-6));
  CHECK(m.best_mse >= 0);
  CHECK(m.best_mse <= m.test_mse + 1.0);
  CHECK(m.best_ssim <= 1.0);
  CHECK(m.peak_activation_bytes > 0);
  CHECK(std::filesystem::exists(dir + "/whole/samples_epoch2.png"));
  const data::Image strip = data::read_png(dir + "/whole/samples_epoch2.png", 1);
  CHECK(strip.w == 4 * 64 + 3);
  CHECK(strip.h == 4 * 64 + 3);  // truth, reconstruction, two prior samples
  std::ifstream csv(dir + "/whole/metrics.csv");
  std::string line;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  CHECK(lines == 3);

  run(dir + "/resumed", false, true);  // killed after epoch 1 (its checkpoint written)
  const auto resumed = run(dir + "/resumed", true, false);
  REQUIRE(resumed.first.epochs.size() == 2);
  CHECK(resumed.second == whole.second);  // bit-identical parameters
  const auto& a = whole.first.epochs.back();
  const auto& b = resumed.first.epochs.back();
  CHECK(a.train_elbo == b.train_elbo);
  CHECK(a.test_elbo == b.test_elbo);
  CHECK(a.best_psnr == b.best_psnr);
  // Resuming under other settings is refused by name; --resume without a checkpoint too.
  c.beta = 1e-3;
  CHECK_THROWS_WITH(run(dir + "/resumed", true, false), Contains("different settings"));
  c.beta = 1e-4;
  CHECK_THROWS_WITH(run(dir + "/empty", true, false), Contains("no checkpoint"));
}

TEST_CASE("SVG-LP with the DCGAN-64 encoder and decoder: shapes, a training step, variants it cannot take",
          "[video][model]") {
  manual_seed(6);
  auto o = tiny("svg");
  o.arch = "dcgan";
  models::SVGModel m(o);
  const Tensor frames = moving_square_frames(3, 2);
  const auto [h, skips] = m.encoder().forward(Var(frames.narrow(0, 0, 1).reshape({2, 1, 64, 64})));
  CHECK(h.shape() == Shape({2, 6}));
  REQUIRE(skips.size() == 4);
  CHECK(skips[0].shape() == Shape({2, 2, 32, 32}));
  CHECK(skips[3].shape() == Shape({2, 16, 4, 4}));
  optim::AdamOptions ao;
  ao.lr = 2e-3;
  optim::Adam opt(m.parameters(), ao);
  auto loss_at = [&] {
    Generator g(2);
    return m.loss(Var(frames), 1, 1e-2, g);
  };
  auto L0 = loss_at();
  opt.zero_grad();
  L0.loss.backward();
  opt.step();
  CHECK(loss_at().loss.data().item() < L0.loss.data().item());
  auto bad = tiny("nanode");
  bad.arch = "dcgan";
  CHECK_THROWS_WITH(models::SVGModel(bad), Contains("VGG blocks"));
  bad.arch = "resnet";
  CHECK_THROWS_WITH(models::SVGModel(bad), Contains("unknown frame encoder"));
}
