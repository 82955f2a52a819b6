// CUDA ops against their CPU twins. Without a GPU the whole program reports a
// skip (exit code 77, which ctest shows as "Skipped") with a visible message.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cmath>
#include <iostream>

#include "nanode/models/video.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

namespace {
const Device kGpu = Device::cuda(0);

void require_close(const Tensor& gpu, const Tensor& cpu, double tol = 1e-5) {
  REQUIRE(gpu.device().is_cuda());
  REQUIRE(gpu.shape() == cpu.shape());
  const auto a = gpu.to_vector<double>(), b = cpu.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(tol).epsilon(tol));
}

Tensor randu(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  return Tensor::uniform(s, lo, hi, g);
}
}  // namespace

TEST_CASE("cuda: device allocation is counted and copies round-trip", "[cuda]") {
  const int64_t live = memory_stats(kGpu).live_bytes;
  Tensor h = randu({3, 5}, 1);
  {
    Tensor d = h.to(kGpu);
    CHECK(memory_stats(kGpu).live_bytes == live + 60);
    CHECK(d.to_vector<float>() == h.to_vector<float>());
    Tensor cols = d.slice(1, 1, 4);  // pitched device copy
    require_close(cols, h.slice(1, 1, 4), 0);
    Tensor f = Tensor::full({1000}, 2.5, DType::Float32, kGpu);
    CHECK(f.at({999}) == 2.5);
  }
  CHECK(memory_stats(kGpu).live_bytes == live);
  CHECK_THROWS_WITH(Tensor::zeros({2}, DType::Float64, kGpu), Contains("CPU-only"));
}

TEST_CASE("cuda: broadcast binary ops match the CPU", "[cuda]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{1000}, {1000}}, {{4, 5, 6}, {6}}, {{4, 1, 6}, {5, 1}}, {{7, 3}, {}}, {{2, 3, 4, 5}, {3, 1, 5}}};
  for (auto op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    for (const auto& [sa, sb] : shapes) {
      Tensor a = randu(sa, 2), b = randu(sb, 3, 0.5, 2.0);
      require_close(backend::binary(op, a.to(kGpu), b.to(kGpu)), backend::binary(op, a, b));
    }
  }
}

TEST_CASE("cuda: unary maps and their derivatives match the CPU", "[cuda]") {
  Tensor x = randu({4097}, 4, 0.1, 2.0), g = randu({4097}, 5);
  const std::vector<std::tuple<UnaryOp, double, double>> ops = {
      {UnaryOp::Exp, 0, 0},     {UnaryOp::Log, 0, 0},       {UnaryOp::Sqrt, 0, 0},      {UnaryOp::Tanh, 0, 0},
      {UnaryOp::Sigmoid, 0, 0}, {UnaryOp::Relu, 0, 0},      {UnaryOp::LeakyRelu, 0.1, 0}, {UnaryOp::Softplus, 0, 0},
      {UnaryOp::Sin, 0, 0},     {UnaryOp::Cos, 0, 0},       {UnaryOp::Pow, 2.5, 0},     {UnaryOp::Affine, -2, 0.5},
      {UnaryOp::Square, 0, 0},  {UnaryOp::Step, 1.0, 3.0}};
  for (auto [op, p0, p1] : ops) {
    INFO("unary op " << static_cast<int>(op));
    Tensor y = backend::unary(op, x, p0, p1), yd = backend::unary(op, x.to(kGpu), p0, p1);
    require_close(yd, y);
    require_close(backend::unary_backward(op, g.to(kGpu), x.to(kGpu), yd, p0, p1),
                  backend::unary_backward(op, g, x, y, p0, p1));
  }
}

TEST_CASE("cuda: sums, matmul, permute, expand, axpy and Adam match the CPU", "[cuda]") {
  Tensor a = randu({6, 7, 8}, 6);
  for (auto axes : std::vector<std::vector<int>>{{0}, {1}, {2}, {0, 2}, {0, 1, 2}})
    require_close(backend::sum(a.to(kGpu), axes, false), backend::sum(a, axes, false), 1e-4);
  Tensor big = randu({100000}, 7);
  require_close(backend::sum_all(big.to(kGpu)), backend::sum_all(big), 1e-3);
  Tensor m1 = randu({3, 33, 17}, 8), m2 = randu({3, 17, 9}, 9), m3 = randu({9, 17}, 10);
  require_close(backend::matmul(m1.to(kGpu), m2.to(kGpu)), backend::matmul(m1, m2), 1e-4);
  require_close(backend::matmul(m1.to(kGpu), m3.to(kGpu), false, true), backend::matmul(m1, m3, false, true), 1e-4);
  require_close(backend::matmul(m2.to(kGpu), m1.to(kGpu), true, true), backend::matmul(m2, m1, true, true), 1e-4);
  require_close(backend::permute(a.to(kGpu), {2, 0, 1}), backend::permute(a, {2, 0, 1}), 0);
  require_close(backend::expand(randu({7, 1}, 11).to(kGpu), {6, 7, 8}), backend::expand(randu({7, 1}, 11), {6, 7, 8}), 0);
  Tensor y = randu({50}, 12), x = randu({50}, 13);
  Tensor yd = y.to(kGpu);
  backend::axpy_(yd, 0.5, x.to(kGpu));
  backend::axpy_(y, 0.5, x);
  require_close(yd, y);
  Tensor p = randu({64}, 14), gr = randu({64}, 15), m = Tensor::zeros({64}), v = Tensor::zeros({64});
  Tensor pd = p.to(kGpu), md = m.to(kGpu), vd = v.to(kGpu);
  backend::adam_step_(p, gr, m, v, 0.01, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.001, true);
  backend::adam_step_(pd, gr.to(kGpu), md, vd, 0.01, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.001, true);
  require_close(pd, p);
  require_close(vd, v);
}

TEST_CASE("cuda: a linear layer trains the same on both devices", "[cuda]") {
  Tensor X = randu({32, 5}, 16), W = randu({3, 5}, 17), b = randu({3}, 18), Y = randu({32, 3}, 19);
  auto grads = [&](Device d) {
    Var w(W.to(d), true), bias(b.to(d), true);
    Var loss = mean(square(tanh(linear(Var(X.to(d)), w, bias)) - Var(Y.to(d))));
    loss.backward();
    return std::make_tuple(loss.item(), w.grad().cpu(), bias.grad().cpu());
  };
  auto [lc, wc, bc] = grads(Device::cpu());
  auto [lg, wg, bg] = grads(kGpu);
  CHECK(lg == Approx(lc).epsilon(1e-5));
  require_close(wg.to(kGpu), wc, 1e-5);
  require_close(bg.to(kGpu), bc, 1e-5);
}

TEST_CASE("cuda: mixing devices is a clear error, and a conv runs on the device", "[cuda][errors]") {
  Var a(Tensor::zeros({2, 3})), b(Tensor::zeros({2, 3}, DType::Float32, kGpu));
  CHECK_THROWS_WITH(a + b, Contains("different devices"));
  CHECK_THROWS_WITH(conv2d(Var(Tensor::zeros({1, 1, 3, 3}, DType::Float32, kGpu)), Var(Tensor::zeros({1, 1, 3, 3}))),
                    Contains("conv2d"));
  const Tensor x = randu({2, 3, 6, 5}, 7), w = randu({4, 3, 3, 3}, 8), bias = randu({4}, 9);
  const Tensor yc = conv2d(Var(x), Var(w), Var(bias), Conv2dOptions(2, 1)).data();
  require_close(conv2d(Var(x.to(kGpu)), Var(w.to(kGpu)), Var(bias.to(kGpu)), Conv2dOptions(2, 1)).data(), yc, 1e-4);
}

TEST_CASE("cuda: an ODE solve and its gradients match the CPU in every mode (fused stages, one-launch adjoint)",
          "[cuda][ode]") {
  // RK4 fuses the last bias and tanh with each stage; the adjoint combines its
  // augmented state in one launch per step. Both devices in float32.
  for (const auto mode : {ode::Gradient::Direct, ode::Gradient::Checkpoint, ode::Gradient::Adjoint}) {
    std::vector<std::vector<double>> outs, grads;
    for (const Device dev : {Device::cpu(), kGpu}) {
      manual_seed(21);
      tv::FamilyOptions fo;
      fo.order = 3;
      tv::MLPDynamics f("trig", {6, 9, 6}, fo, /*final_tanh=*/true);
      f.to(dev);
      ode::Options o;
      o.method = "rk4";
      o.steps = 6;
      o.gradient = mode;
      Var y = ode::odeint_final(f, Var(randu({5, 6}, 22).to(dev)), 0.0, 1.0, o);
      sum(square(y)).backward();
      outs.push_back(y.data().to_vector<double>());
      std::vector<double> g;
      for (auto& p : f.parameters())
        for (double v : p.grad().to_vector<double>()) g.push_back(v);
      grads.push_back(g);
    }
    INFO(ode::gradient_name(mode));
    for (size_t i = 0; i < outs[0].size(); ++i) CHECK(outs[1][i] == Approx(outs[0][i]).margin(1e-5));
    REQUIRE(grads[1].size() == grads[0].size());
    for (size_t i = 0; i < grads[0].size(); ++i) CHECK(grads[1][i] == Approx(grads[0][i]).margin(1e-4).epsilon(1e-4));
  }
}

TEST_CASE("cuda: an SVG-LP step with NANODE blocks (train_video --device cuda) matches the CPU", "[cuda][video]") {
  // The video model end to end: VGG-64 encoder and decoder with ODE blocks, LSTMs,
  // the Gaussian latents' noise (drawn on the host from the same generator), the ELBO.
  const int64_t T = 2, B = 2;  // one predicted frame: the emulated device runs every kernel on the CPU
  std::vector<float> v(static_cast<size_t>(T * B * 64 * 64), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t r = 0; r < 10; ++r)
        for (int64_t c = 0; c < 10; ++c)
          v[static_cast<size_t>(((t * B + b) * 64 + 12 + 3 * t + r) * 64 + 9 + 5 * b + 2 * t + c)] = 1.0f;
  const Tensor frames = Tensor::from_vector<float>(v, {T, B, 1, 64, 64});
  std::vector<double> loss;
  std::vector<std::vector<double>> grads;
  for (const Device dev : {Device::cpu(), kGpu}) {
    manual_seed(8);
    models::VideoModelOptions o;
    o.model = "nanode";
    o.width = 2, o.g_dim = 6, o.z_dim = 2, o.rnn_size = 8, o.steps = 2;
    models::SVGModel m(o);
    m.to(dev);
    Generator g(4);
    auto L = m.loss(Var(frames.to(dev)), 1, 0.1, g);
    L.loss.backward();
    loss.push_back(L.loss.item());
    std::vector<double> gr;
    for (const auto& p : m.parameters()) {
      REQUIRE(p.grad().device() == dev);
      for (double x : p.grad().to_vector<double>()) gr.push_back(x);
    }
    grads.push_back(gr);
  }
  CHECK(loss[1] == Approx(loss[0]).epsilon(1e-4));
  REQUIRE(grads[1].size() == grads[0].size());
  double scale = 0;
  for (double x : grads[0]) scale = std::max(scale, std::abs(x));
  REQUIRE(scale > 0);
  for (size_t i = 0; i < grads[0].size(); ++i) CHECK(grads[1][i] == Approx(grads[0][i]).margin(1e-3 * scale));
}

TEST_CASE("cuda: fusing the stage with the last bias and tanh cuts the launches of a training step", "[cuda][ode]") {
  // Device calls (kernel launches, library calls, copies) of one W1-style step:
  // Euler, L steps, forward and backward, with and without the fused stage.
  const int64_t L = 10;
  std::vector<int64_t> calls;
  std::vector<double> loss;
  for (bool fuse : {false, true}) {
    manual_seed(31);
    tv::FamilyOptions fo;
    fo.order = 2;
    tv::MLPDynamics f("trig", {16, 16}, fo, /*final_tanh=*/true);
    f.to(kGpu);
    const Tensor x0 = randu({8, 16}, 32).to(kGpu);
    ode::Options o;
    o.method = "euler";
    o.steps = L;
    o.fuse_stages = fuse;
    synchronize(kGpu);
    const int64_t before = cuda::device_calls(0);
    Var l = mean(square(ode::odeint_final(f, Var(x0), 0.0, 1.0, o)));
    l.backward();
    calls.push_back(cuda::device_calls(0) - before);
    loss.push_back(l.data().item());
  }
  std::printf("device calls of one training step (Euler, L = %lld): %lld unfused, %lld fused\n",
              static_cast<long long>(L), static_cast<long long>(calls[0]), static_cast<long long>(calls[1]));
  CHECK(loss[1] == Approx(loss[0]).epsilon(1e-6));
  CHECK(calls[1] + L <= calls[0]);  // at least one call fewer per step
}

TEST_CASE("cuda: a fixed-step training step captured in a CUDA graph replays to the eager result in one launch",
          "[cuda][graph]") {
  // Forward (RK4, fused stages) and backward of a small T-NANODE, captured once
  // and replayed on new inputs copied into the captured input tensor; a twin model
  // trained eagerly on the same inputs gives the reference.
  const auto make = [] {
    manual_seed(41);
    tv::FamilyOptions fo;
    fo.order = 2;
    auto f = std::make_shared<tv::MLPDynamics>("trig", std::vector<int64_t>{12, 12}, fo, /*final_tanh=*/true);
    f->to(kGpu);
    return f;
  };
  auto f = make(), twin = make();
  ode::Options o;
  o.method = "rk4";
  o.steps = 5;
  Tensor x_static = randu({6, 12}, 42).to(kGpu), loss_static;
  const auto step = [&](tv::MLPDynamics& m, const Tensor& x) {
    m.zero_grad();
    Var l = mean(square(ode::odeint_final(m, Var(x), 0.0, 1.0, o)));
    l.backward();
    return l.data();
  };
  loss_static = step(*f, x_static);  // warm-up
  const int64_t before = cuda::device_calls(0);
  loss_static = step(*f, x_static);
  const int64_t eager_calls = cuda::device_calls(0) - before;
  CudaGraph g;
  g.capture(kGpu, [&] { loss_static = step(*f, x_static); });
  CHECK(g.calls() == eager_calls - 1);  // all but the eager NaN check of x0 (a reduction read on the host)
  std::printf("one training step (RK4, L = 5): %lld device calls eager, 1 graph launch replayed\n",
              static_cast<long long>(eager_calls));
  // Tensors made after the capture must never share the graph's buffers.
  std::vector<Tensor> bystanders;
  for (int64_t n : {72, 12, 1, 144, 6, 72, 12, 300})
    for (int r = 0; r < 4; ++r) bystanders.push_back(Tensor::full({n}, 7.0, DType::Float32, kGpu));
  for (uint64_t seed : {43, 44}) {
    const Tensor xin = randu({6, 12}, seed).to(kGpu);
    x_static.copy_(xin);
    const int64_t b = cuda::device_calls(0);
    g.replay();
    CHECK(cuda::device_calls(0) - b == 1);
    const Tensor want = step(*twin, xin);
    CHECK(loss_static.item() == Approx(want.item()).epsilon(1e-6));
    const auto pf = f->parameters(), pt = twin->parameters();
    REQUIRE(pf.size() == pt.size());
    for (size_t i = 0; i < pf.size(); ++i) require_close(pf[i].grad(), pt[i].grad().cpu(), 1e-6);
  }
  for (const Tensor& t : bystanders)
    for (float v : t.to_vector<float>()) REQUIRE(v == 7.0f);
  // What a capture cannot hold is refused by name, and the next capture works.
  CHECK_THROWS_WITH(g.capture(kGpu, [&] { (void)loss_static.item(); }), Contains("not allowed inside a capture"));
  CHECK(!g.captured());
  g.capture(kGpu, [&] { loss_static = step(*f, x_static); });
  g.replay();
  CHECK(std::isfinite(loss_static.item()));
}

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  const auto& cfg = session.configData();
  const bool listing = cfg.listTests || cfg.listTestNamesOnly || cfg.listTags || cfg.listReporters;
  if (!listing && cuda_device_count() == 0) {
    std::cout << "SKIPPED: no CUDA device present; the CUDA tests need a GPU (their CPU twins ran in the other tests)\n";
    return 77;
  }
  if (!listing) std::cout << "CUDA device: " << cuda::device_name(0) << "\n";
  return session.run();
}
