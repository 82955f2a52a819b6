// Solvers against closed-form solutions, the three gradient modes against each
// other and against finite differences, and the solver's errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "gradcheck.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

namespace {

/// dx/dt = cos(t) x + sin(t): linear, time-varying. With x(0) = x0 the solution is
/// x(t) = e^{sin t} (x0 + int_0^t e^{-sin s} sin s ds); we use the homogeneous part
/// dx/dt = cos(t) x, x(t) = x0 e^{sin t}, for the exact comparisons.
struct CosLinear : ode::Dynamics {
  Var forward(double t, const Var& x) override { return x * std::cos(t); }
};

/// dx/dt = x^2 blows up at t = 1/x0.
struct Quadratic : ode::Dynamics {
  Var forward(double, const Var& x) override { return square(x); }
};

/// A small parametric dynamics in float64: tanh(x W(t)^T + b), W(t) = W0 + t W1.
struct SmallNet : ode::Dynamics {
  SmallNet(int n, uint64_t seed) {
    Generator g(seed);
    w0 = register_parameter("w0", Tensor::uniform({n, n}, -0.8, 0.8, g, DType::Float64));
    w1 = register_parameter("w1", Tensor::uniform({n, n}, -0.8, 0.8, g, DType::Float64));
    b = register_parameter("b", Tensor::uniform({n}, -0.5, 0.5, g, DType::Float64));
  }
  Var forward(double t, const Var& x) override { return tanh(linear(x, lincomb(w0, {w1}, {t}), b)); }
  Var w0, w1, b;
};

double final_error(const std::string& method, int steps) {
  CosLinear f;
  ode::Options o;
  o.method = method;
  o.steps = steps;
  Var x0(Tensor::from_vector<double>({1.0, -0.5}, {2}));
  const double T = 2.0;
  Tensor xT = ode::odeint_final(f, x0, 0.0, T, o).data();
  return std::abs(xT.at({0}) - std::exp(std::sin(T)));
}

}  // namespace

TEST_CASE("fixed-step solvers converge at their order on a linear time-varying ODE", "[ode]") {
  for (auto [method, order] : std::vector<std::pair<std::string, int>>{
           {"euler", 1}, {"midpoint", 2}, {"heun", 2}, {"rk4", 4}, {"bosh3", 3}, {"dopri5", 5}}) {
    const double e1 = final_error(method, 16), e2 = final_error(method, 32);
    const double observed = std::log2(e1 / e2);
    INFO(method << ": errors " << e1 << " -> " << e2 << ", observed order " << observed);
    CHECK(observed > order - 0.35);
    CHECK(observed < order + 0.8);
  }
}

TEST_CASE("adaptive solvers meet their tolerance, outputs at requested times, backward in time", "[ode]") {
  CosLinear f;
  Var x0(Tensor::from_vector<double>({1.0}, {1}));
  for (const char* method : {"bosh3", "dopri5"}) {
    ode::Options o;
    o.method = method;
    o.rtol = 1e-8;
    o.atol = 1e-10;
    auto stats = std::make_shared<ode::Stats>();
    const std::vector<double> times{0.0, 0.5, 1.7, 3.0};
    auto xs = ode::odeint(f, x0, times, o, stats);
    REQUIRE(xs.size() == 4);
    for (size_t i = 0; i < times.size(); ++i) CHECK(xs[i].data().at({0}) == Approx(std::exp(std::sin(times[i]))).epsilon(1e-6));
    CHECK(stats->steps > 3);
    INFO(method << " took " << stats->steps << " steps, " << stats->rejected << " rejected, " << stats->evals << " evals");
    // Looser tolerance: fewer steps.
    o.rtol = 1e-4;
    auto loose = std::make_shared<ode::Stats>();
    ode::odeint(f, x0, times, o, loose);
    CHECK(loose->steps < stats->steps);
  }
  // Backward in time: from x(2) back to x(0).
  ode::Options o;
  o.method = "rk4";
  o.steps = 200;
  Var xT(Tensor::from_vector<double>({std::exp(std::sin(2.0))}, {1}));
  CHECK(ode::odeint_final(f, xT, 2.0, 0.0, o).data().at({0}) == Approx(1.0).epsilon(1e-8));
}

TEST_CASE("solver errors name the problem", "[ode][errors]") {
  CosLinear f;
  Var x0(Tensor::from_vector<double>({1.0}, {1}));
  ode::Options o;
  o.method = "rk5";
  o.steps = 10;
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0, 1, o), Contains("unknown method 'rk5'") && Contains("dopri5"));
  o.method = "euler";
  o.steps = 0;
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0, 1, o), Contains("no error estimate"));
  o.steps = 10;
  CHECK_THROWS_WITH(ode::odeint(f, x0, {0.0, 1.0, 0.5}, o), Contains("strictly monotone"));
  Var bad(Tensor::from_vector<double>({std::nan("")}, {1}));
  CHECK_THROWS_WITH(ode::odeint_final(f, bad, 0, 1, o), Contains("NaN"));
  // x' = x^2 from x(0) = 1 blows up at t = 1: the step size underflows there.
  Quadratic q;
  ode::Options a;
  a.method = "dopri5";
  try {
    ode::odeint_final(q, x0, 0.0, 2.0, a);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK((msg.find("step size underflow") != std::string::npos || msg.find("max_steps") != std::string::npos));
    const auto at = msg.find("t = ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stod(msg.substr(at + 4)) == Approx(1.0).margin(0.01));
  }
  a.max_steps = 5;
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0.0, 20.0, a), Contains("more than max_steps = 5"));
}

TEST_CASE("checkpoint mode equals direct backprop", "[ode][gradients]") {
  for (const char* method : {"euler", "rk4", "dopri5"}) {
    for (int adaptive = 0; adaptive < (std::string(method) == "dopri5" ? 2 : 1); ++adaptive) {
      SmallNet f(3, 5);
      Generator g(9);
      Var x0(Tensor::uniform({4, 3}, -1, 1, g, DType::Float64), true);
      auto run = [&](ode::Gradient mode) {
        ode::Options o;
        o.method = method;
        if (!adaptive) o.steps = 25;
        o.rtol = 1e-7;
        o.gradient = mode;
        o.checkpoint_every = mode == ode::Gradient::Checkpoint && !adaptive ? 4 : 0;
        f.zero_grad();
        x0.zero_grad();
        auto xs = ode::odeint(f, x0, {0.0, 0.4, 1.0}, o);
        Var loss = sum(square(xs[2])) + sum(xs[1] * 0.5);
        loss.backward();
        std::vector<Tensor> grads{x0.grad()};
        for (auto& p : f.parameters()) grads.push_back(p.grad());
        return std::make_pair(loss.item(), grads);
      };
      auto [ld, gd] = run(ode::Gradient::Direct);
      auto [lc, gc] = run(ode::Gradient::Checkpoint);
      INFO(method << (adaptive ? " adaptive" : " fixed"));
      CHECK(lc == Approx(ld).margin(1e-12));
      for (size_t i = 0; i < gd.size(); ++i) {
        const auto a = gd[i].to_vector<double>(), b = gc[i].to_vector<double>();
        for (size_t k = 0; k < a.size(); ++k) REQUIRE(std::abs(a[k] - b[k]) < 1e-6);
      }
    }
  }
}

TEST_CASE("adjoint gradients converge to direct backprop as dt shrinks", "[ode][gradients]") {
  std::vector<double> diffs;
  for (int steps : {5, 20, 80}) {
    SmallNet f(3, 6);
    Generator g(10);
    Var x0(Tensor::uniform({2, 3}, -1, 1, g, DType::Float64), true);
    auto grads = [&](ode::Gradient mode) {
      ode::Options o;
      o.method = "euler";
      o.steps = steps;
      o.gradient = mode;
      f.zero_grad();
      x0.zero_grad();
      sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))).backward();
      std::vector<double> all = x0.grad().to_vector<double>();
      for (auto& p : f.parameters())
        for (double v : p.grad().to_vector<double>()) all.push_back(v);
      return all;
    };
    const auto d = grads(ode::Gradient::Direct), a = grads(ode::Gradient::Adjoint);
    double m = 0;
    for (size_t i = 0; i < d.size(); ++i) m = std::max(m, std::abs(d[i] - a[i]));
    diffs.push_back(m);
  }
  INFO("max |adjoint - direct| at 5, 20, 80 steps: " << diffs[0] << ", " << diffs[1] << ", " << diffs[2]);
  CHECK(diffs[1] < 0.5 * diffs[0]);
  CHECK(diffs[2] < 0.5 * diffs[1]);
  CHECK(diffs[2] < 0.03);  // Euler: first order in dt
}

TEST_CASE("gradients of all three modes match finite differences", "[ode][gradients]") {
  for (auto mode : {ode::Gradient::Direct, ode::Gradient::Checkpoint, ode::Gradient::Adjoint}) {
    INFO("mode " << ode::gradient_name(mode));
    // Adjoint is exact only as dt -> 0: an adaptive dopri5 solve at tight tolerance.
    ode::Options o;
    o.method = mode == ode::Gradient::Adjoint ? "dopri5" : "rk4";
    if (mode != ode::Gradient::Adjoint) o.steps = 8;
    o.rtol = 1e-10;
    o.atol = 1e-12;
    o.gradient = mode;
    o.checkpoint_every = 3;
    Generator g(12);
    Tensor x0 = Tensor::uniform({3, 2}, -1, 1, g, DType::Float64);
    // Parameters are module leaves, so check them through the module itself.
    SmallNet net(2, 11);
    Var xv(x0.clone(), true);
    Var out = ode::odeint_final(net, xv, 0.0, 1.0, o);
    Tensor w = testing::rand64(out.shape(), 77, 0.5, 1.5);
    sum(out * Var(w)).backward();
    auto value = [&](const Tensor& xin) {
      NoGradGuard ng;
      Tensor y = ode::odeint_final(net, Var(xin), 0.0, 1.0, o).data();
      double s = 0;
      const auto yv = y.to_vector<double>(), wv = w.to_vector<double>();
      for (size_t i = 0; i < yv.size(); ++i) s += yv[i] * wv[i];
      return s;
    };
    const double eps = 1e-6, tol = mode == ode::Gradient::Adjoint ? 1e-6 : 1e-7;
    for (int64_t k = 0; k < x0.numel(); ++k) {
      Tensor p = x0.clone(), m = x0.clone();
      p.data<double>()[k] += eps;
      m.data<double>()[k] -= eps;
      const double num = (value(p) - value(m)) / (2 * eps);
      REQUIRE(xv.grad().to_vector<double>()[static_cast<size_t>(k)] == Approx(num).margin(tol));
    }
    for (auto& prm : net.parameters()) {
      const Tensor an = prm.grad().clone();
      for (int64_t k = 0; k < prm.numel(); ++k) {
        double* q = prm.mutable_data().data<double>();
        const double orig = q[k];
        q[k] = orig + eps;
        const double fp = value(x0);
        q[k] = orig - eps;
        const double fm = value(x0);
        q[k] = orig;
        REQUIRE(an.to_vector<double>()[static_cast<size_t>(k)] == Approx((fp - fm) / (2 * eps)).margin(tol));
      }
    }
  }
}

TEST_CASE("adjoint memory stays flat in depth while direct grows", "[ode][memory]") {
  auto peak = [](ode::Gradient mode, int steps) {
    manual_seed(1);
    tv::FamilyOptions fo;
    fo.order = 3;
    tv::MLPDynamics f("trig", {16, 16}, fo, true);
    Tensor x0 = Tensor::uniform({32, 16}, -1, 1);
    ode::Options o;
    o.method = "euler";
    o.steps = steps;
    o.gradient = mode;
    PeakMemoryScope scope;
    {
      Var x(x0, true);
      Var loss = mean(square(ode::odeint_final(f, x, 0.0, 1.0, o)));
      loss.backward();
    }
    return scope.peak_above_start();
  };
  const int64_t a10 = peak(ode::Gradient::Adjoint, 10), a200 = peak(ode::Gradient::Adjoint, 200);
  const int64_t d10 = peak(ode::Gradient::Direct, 10), d200 = peak(ode::Gradient::Direct, 200);
  const int64_t c200 = peak(ode::Gradient::Checkpoint, 200);
  INFO("adjoint " << a10 << " -> " << a200 << " bytes; direct " << d10 << " -> " << d200 << "; checkpoint(200) " << c200);
  CHECK(static_cast<double>(a200) < 1.1 * static_cast<double>(a10));
  CHECK(static_cast<double>(d200) > 10.0 * static_cast<double>(d10));
  CHECK(c200 < d200 / 3);
}

namespace {
/// dx/dt = x Omega^T + 0.3 tanh(x) with a fixed skew Omega: the state keeps its
/// magnitude (a few units) while each step adds h f, so rounding at x's scale shows.
struct Rotation : ode::Dynamics {
  explicit Rotation(DType dt) {
    const std::vector<double> om{0, 1.3, -0.4, 0.8, -1.3, 0, 0.9, -0.2, 0.4, -0.9, 0, 1.1, -0.8, 0.2, -1.1, 0};
    omega = Var(Tensor::from_vector(om, {4, 4}).to(dt));
  }
  Var forward(double, const Var& x) override { return linear(x, omega) + tanh(x) * 0.3; }
  Var omega;
};
}  // namespace

TEST_CASE("float32 RK4 through odeint is as accurate as a hand-written float32 loop", "[ode][float32]") {
  const int L = 320;
  const double T = 8.0, h = T / L;
  Tensor x0 = testing::rand64({64, 4}, 21, -4.0, 4.0);
  ode::Options o;
  o.method = "rk4";
  o.steps = L;
  NoGradGuard ng;
  Rotation f64(DType::Float64), f32(DType::Float32);
  const Tensor ref = ode::odeint_final(f64, Var(x0), 0.0, T, o).data();
  const Tensor got = ode::odeint_final(f32, Var(x0.to(DType::Float32)), 0.0, T, o).data().to(DType::Float64);
  // The loop a user would write: x + (k1 + 2 k2 + 2 k3 + k4) h / 6.
  Var x(x0.to(DType::Float32));
  for (int i = 0; i < L; ++i) {
    const double t = i * h;
    Var k1 = f32.forward(t, x), k2 = f32.forward(t + h / 2, x + k1 * (h / 2));
    Var k3 = f32.forward(t + h / 2, x + k2 * (h / 2)), k4 = f32.forward(t + h, x + k3 * h);
    x = x + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6);
  }
  const Tensor hand = x.data().to(DType::Float64);
  auto max_err = [&](const Tensor& a) {
    double m = 0;
    const auto av = a.to_vector<double>(), rv = ref.to_vector<double>();
    for (size_t i = 0; i < av.size(); ++i) m = std::max(m, std::abs(av[i] - rv[i]));
    return m;
  };
  const double e_odeint = max_err(got), e_hand = max_err(hand);
  INFO("float32 RK4, L = 320: odeint error " << e_odeint << ", hand-written loop " << e_hand);
  CHECK(e_odeint < 1.5 * e_hand);
  CHECK(e_odeint > 0);  // float32 really ran
}
