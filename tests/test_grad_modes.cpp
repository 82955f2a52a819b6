// Every gradient mode gives the gradient of any Var the dynamics use — a
// registered parameter, an unregistered leaf, a Var computed before the solve, a
// Var shared by two ODE blocks — equal to direct backprop (checkpoint to 1e-12
// relative in float64, adjoint to the solver's accuracy), or refuses with the
// Var's name.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <memory>

#include "gradcheck.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

namespace {

/// dx/dt = tanh(c x) with c captured, not registered.
struct ScaledTanh : ode::Dynamics {
  explicit ScaledTanh(Var c) : c(std::move(c)) {}
  Var forward(double, const Var& x) override { return tanh(x * c); }
  Var c;
};

/// dx/dt = tanh(x W(t)^T + b(t)) with trig-basis coefficients held as plain Vars.
struct CapturedTrig : ode::Dynamics {
  CapturedTrig(Var a, Var b, double phase = 0.0) : a(std::move(a)), b(std::move(b)), basis(2), phase(phase) {}
  Var forward(double t, const Var& x) override {
    const auto z = basis.eval(t + phase);
    return tanh(linear(x, basis_combine(a, z), basis_combine(b, z)));
  }
  Var a, b;
  tv::TrigBasis basis;
  double phase;
};

/// CapturedTrig with W(t) and b(t) summed by ops whose gradients are dense (no
/// outer-product terms): the reference for the adjoint's and the reversible
/// gradient's deferred sums of basis-coefficient terms.
struct CapturedTrigDense : ode::Dynamics {
  CapturedTrigDense(Var a, Var b) : a(std::move(a)), b(std::move(b)), basis(2) {}
  static Var combine(const Var& c, const std::vector<double>& z) {
    std::vector<int64_t> one = c.shape().vec();
    one.erase(one.begin());
    std::vector<Var> parts;
    for (int64_t k = 0; k < c.shape()[0]; ++k) parts.push_back(reshape(slice(c, 0, k, k + 1), one));
    return lincomb(Var(), parts, z);
  }
  Var forward(double t, const Var& x) override {
    const auto z = basis.eval(t);
    return tanh(linear(x, combine(a, z), combine(b, z)));
  }
  Var a, b;
  tv::TrigBasis basis;
};

/// A registered parameter of its own plus, optionally, a Var registered elsewhere.
struct OwnAndBorrowed : ode::Dynamics {
  OwnAndBorrowed(int n, uint64_t seed, Var borrowed = Var()) : borrowed(std::move(borrowed)) {
    Generator g(seed);
    w = register_parameter("w", Tensor::uniform({n, n}, -0.7, 0.7, g, DType::Float64));
  }
  Var forward(double t, const Var& x) override {
    Var W = borrowed.defined() ? lincomb(w, {borrowed}, {std::sin(3 * t)}) : w;
    return tanh(linear(x, W));
  }
  Var w, borrowed;
};

/// Uses `late` only after t = 0.5: its first evaluation cannot see it.
struct LateUser : ode::Dynamics {
  LateUser(int n, Var late) : late(std::move(late)) {
    w = register_parameter("w", Tensor::full({n, n}, 0.3, DType::Float64));
  }
  Var forward(double t, const Var& x) override {
    Var y = linear(x, w);
    if (t > 0.5) y = y + x * late;
    return tanh(y);
  }
  Var w, late;
};

ode::Options opts(const char* method, int steps, ode::Gradient g) {
  ode::Options o;
  o.method = method;
  o.steps = steps;
  o.gradient = g;
  o.checkpoint_every = 3;
  return o;
}

/// max |a - b| / max |b| over all entries of all tensors.
double rel_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].defined());
    REQUIRE(b[i].defined());
    const auto av = a[i].to_vector<double>(), bv = b[i].to_vector<double>();
    REQUIRE(av.size() == bv.size());
    for (size_t k = 0; k < av.size(); ++k) {
      num = std::max(num, std::abs(av[k] - bv[k]));
      den = std::max(den, std::abs(bv[k]));
    }
  }
  return num / std::max(den, 1e-300);
}

/// Runs `loss_of(options)` and backward() in each mode and returns the gradients
/// of `leaves`.
struct ModeRunner {
  std::function<Var(const ode::Options&)> loss_of;
  std::vector<Var> leaves;
  std::vector<Tensor> grads(const ode::Options& o) {
    for (auto& l : leaves) l.zero_grad();
    loss_of(o).backward();
    std::vector<Tensor> g;
    for (auto& l : leaves) g.push_back(l.grad().defined() ? l.grad().clone() : Tensor());
    return g;
  }
  /// checkpoint == direct to 1e-12 relative; adjoint within `adjoint_tol` relative.
  void check(const char* method, int steps, double adjoint_tol) {
    const auto d = grads(opts(method, steps, ode::Gradient::Direct));
    const auto c = grads(opts(method, steps, ode::Gradient::Checkpoint));
    const auto a = grads(opts(method, steps, ode::Gradient::Adjoint));
    const double rc = rel_diff(c, d), ra = rel_diff(a, d);
    INFO(method << " x " << steps << ": checkpoint rel. diff " << rc << ", adjoint rel. diff " << ra);
    CHECK(rc < 1e-12);
    CHECK(ra < adjoint_tol);
  }
  /// ALF: reversible == direct through the same steps to 1e-10 relative.
  void check_alf(int steps) {
    ode::Options o;
    o.method = "alf";
    o.steps = steps;
    const auto d = grads(o);
    o.gradient = ode::Gradient::Reversible;
    const double rr = rel_diff(grads(o), d);
    INFO("alf x " << steps << ": reversible rel. diff " << rr);
    CHECK(rr < 1e-10);
  }
};

Tensor rnd(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) { return testing::rand64(s, seed, lo, hi); }

}  // namespace

TEST_CASE("an unregistered leaf captured by the dynamics gets the same gradient in every mode", "[ode][gradients]") {
  Var c(Tensor::from_vector<double>({1.3}, {1}), true);
  Var x0(rnd({3, 2}, 1), true);
  ScaledTanh f(c);
  ModeRunner r{[&](const ode::Options& o) { return sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))); }, {c, x0}};
  r.check("rk4", 8, 1e-4);   // the reported case: adjoint summed raw products (199.8 vs 6.24)
  r.check("rk4", 64, 1e-7);
  r.check("euler", 20, 0.1);  // Euler's adjoint is O(h) away
  r.check("euler", 400, 5e-3);
  r.check_alf(8);
  // Nothing is kept between passes: two backward passes accumulate exactly twice.
  for (auto mode : {ode::Gradient::Checkpoint, ode::Gradient::Adjoint}) {
    c.zero_grad();
    const auto o = opts("rk4", 8, mode);
    sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))).backward();
    const double once = c.grad().item<double>();
    sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))).backward();
    CHECK(c.grad().item<double>() == Approx(2 * once).epsilon(1e-14));
  }
}

TEST_CASE("captured T-NANODE coefficients get the same gradient in every mode", "[ode][gradients]") {
  Var a(rnd({5, 3, 3}, 2, -0.6, 0.6), true), b(rnd({5, 3}, 3, -0.3, 0.3), true);
  Var x0(rnd({4, 3}, 4), true);
  CapturedTrig f(a, b);
  ModeRunner r{[&](const ode::Options& o) {
                 auto xs = ode::odeint(f, x0, {0.0, 0.5, 1.0}, o);
                 return sum(square(xs[2])) + sum(xs[1] * 0.5);
               },
               {a, b, x0}};
  r.check("euler", 20, 0.1);  // was 19.7x off; Euler's adjoint is O(h) away
  r.check("rk4", 20, 1e-5);    // was 79x off
  r.check_alf(20);
}

TEST_CASE("adjoint and reversible sum basis-coefficient terms in sweeps to the per-step value", "[ode][gradients]") {
  // The lazy path (outer-product terms kept across steps and RK stages, summed
  // every few steps in place) against the same dynamics with dense gradients.
  Var a(rnd({5, 3, 3}, 2, -0.6, 0.6), true), b(rnd({5, 3}, 3, -0.3, 0.3), true);
  Var x0(rnd({4, 3}, 4), true);
  CapturedTrig lazy(a, b);
  CapturedTrigDense dense(a, b);
  struct Case {
    const char* method;
    int steps;
    ode::Gradient gradient;
  };
  for (const Case& c : {Case{"euler", 40, ode::Gradient::Adjoint}, Case{"rk4", 25, ode::Gradient::Adjoint},
                        Case{"dopri5", 0, ode::Gradient::Adjoint}, Case{"alf", 40, ode::Gradient::Reversible}}) {
    ode::Options o;
    o.method = c.method;
    o.steps = c.steps;
    o.gradient = c.gradient;
    o.rtol = 1e-7;
    o.atol = 1e-9;
    auto grads = [&](ode::Dynamics& f) {
      ModeRunner r{[&](const ode::Options& oo) {
                     auto xs = ode::odeint(f, x0, {0.0, 0.4, 1.0}, oo);
                     return sum(square(xs[2])) + sum(xs[1] * 0.5);
                   },
                   {a, b, x0}};
      return r.grads(o);
    };
    const auto gl = grads(lazy), gd = grads(dense);
    const double rd = rel_diff(gl, gd);
    INFO(c.method << ": lazy against dense rel. diff " << rd);
    CHECK(rd < 1e-12);
  }
}

TEST_CASE("a Var computed before the solve (c = w * 2) gets its gradient in every mode", "[ode][gradients]") {
  Var w(Tensor::from_vector<double>({0.65}, {1}), true);
  Var x0(rnd({3, 2}, 5), true);
  std::unique_ptr<ScaledTanh> f;  // the dynamics must outlive the backward pass
  ModeRunner r{[&](const ode::Options& o) {
                 Var c = w * 2.0;  // a non-leaf of the outer graph, captured
                 f = std::make_unique<ScaledTanh>(c);
                 Var xT = ode::odeint_final(*f, x0, 0.0, 1.0, o);
                 return sum(square(xT)) + sum(c * 0.25);  // c also used outside the solve
               },
               {w, x0}};
  r.check("rk4", 8, 1e-4);
  r.check("euler", 10, 0.2);
  r.check_alf(8);
}

TEST_CASE("a Var shared by two ODE blocks gets both blocks' gradients in every mode", "[ode][gradients]") {
  // A and bias are plain leaves used by two dynamics; block g2 also uses block g1's
  // registered parameter (a Var registered in another module).
  Var bias(rnd({5, 3}, 7, -0.2, 0.2), true);
  Var x0(rnd({2, 3}, 8), true);
  Var A(rnd({5, 3, 3}, 9, -0.5, 0.5), true);
  CapturedTrig f2(A, bias, 0.3);  // A and bias as they are ...
  OwnAndBorrowed g1(3, 10), g2(3, 11, g1.w);
  std::unique_ptr<CapturedTrig> h1;
  ModeRunner r{[&](const ode::Options& o) {
                 // ... and in block 1 through a non-leaf made from A, fresh for each pass.
                 h1 = std::make_unique<CapturedTrig>(lincomb(Var(), {A}, {1.0}), bias);
                 Var x1 = ode::odeint_final(*h1, x0, 0.0, 1.0, o);
                 Var x2 = ode::odeint_final(f2, x1, 0.0, 1.0, o);
                 Var y1 = ode::odeint_final(g1, x2, 0.0, 0.5, o);
                 Var y2 = ode::odeint_final(g2, y1, 0.0, 0.5, o);
                 return sum(square(y2)) + sum(x1 * 0.1);
               },
               {A, bias, x0, g1.w, g2.w}};
  r.check("rk4", 6, 1e-4);
  r.check("euler", 6, 0.3);
  r.check_alf(6);
}

TEST_CASE("registered parameters: checkpoint equals direct to 1e-12, adjoint converges", "[ode][gradients]") {
  OwnAndBorrowed f(3, 12);
  Var x0(rnd({4, 3}, 13), true);
  ModeRunner r{[&](const ode::Options& o) { return sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))); },
               {f.w, x0}};
  r.check("rk4", 16, 1e-5);
  r.check("euler", 16, 0.1);
  r.check_alf(16);
}

TEST_CASE("a Var first used after the first evaluation is refused by name", "[ode][gradients][errors]") {
  Var late(Tensor::from_vector<double>({0.4}, {1}), true);
  late.set_name("late");
  LateUser f(2, late);
  Var x0(rnd({2, 2}, 14), true);
  // Direct mode differentiates it.
  sum(ode::odeint_final(f, x0, 0.0, 1.0, opts("rk4", 4, ode::Gradient::Direct))).backward();
  CHECK(late.grad().defined());
  for (auto mode : {ode::Gradient::Checkpoint, ode::Gradient::Adjoint, ode::Gradient::Reversible}) {
    ode::Options o = opts(mode == ode::Gradient::Reversible ? "alf" : "rk4", 4, mode);
    Var loss = sum(ode::odeint_final(f, x0, 0.0, 1.0, o));
    CHECK_THROWS_WITH(loss.backward(), Contains("'late' of shape [1]") && Contains("register_parameter") &&
                                           Contains(ode::gradient_name(mode)));
  }
  // Registered, it is fine in every mode.
  f.register_parameter("late_p", Tensor::from_vector<double>({0.4}, {1}));
  f.late = f.named_parameters().back().second;
  ModeRunner r{[&](const ode::Options& o) { return sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))); },
               {f.late, f.w, x0}};
  r.check("rk4", 16, 1e-3);
}

// ---- ALF and its reversible gradient ---------------------------------------------------

namespace {
ode::Options alf(int steps, ode::Gradient g) {
  ode::Options o;
  o.method = "alf";
  o.steps = steps;
  o.gradient = g;
  return o;
}
}  // namespace

TEST_CASE("ALF is second order and its reversible gradient equals direct backprop through it", "[ode][alf]") {
  // dx/dt = cos(t) x: x(2) = x0 e^{sin 2}.
  struct CosLinear : ode::Dynamics {
    Var forward(double t, const Var& x) override { return x * std::cos(t); }
  } lin;
  Var one(Tensor::from_vector<double>({1.0}, {1}));
  auto err = [&](int L) {
    return std::abs(ode::odeint_final(lin, one, 0.0, 2.0, alf(L, ode::Gradient::Direct)).item() - std::exp(std::sin(2.0)));
  };
  const double order = std::log2(err(32) / err(64));
  INFO("ALF observed order " << order);
  CHECK(order > 1.7);
  CHECK(order < 2.5);

  // Every dense family, at L = 4, 10 and 100, several outputs, float64.
  for (const std::string family : {"trig", "bucket", "monomial", "chebyshev", "legendre", "random", "auto", "appnode",
                                   "hyper", "gated", "gated-kernel", "householder"}) {
    manual_seed(3);
    tv::FamilyOptions fo;
    fo.order = 3;
    tv::MLPDynamics f(family, family == "householder" ? std::vector<int64_t>{4, 4} : std::vector<int64_t>{4, 6, 4}, fo);
    f.to(DType::Float64);
    Var x0(rnd({3, 4}, 15), true);
    std::vector<Var> leaves{x0};
    for (auto& p : f.parameters()) leaves.push_back(p);
    ModeRunner r{[&](const ode::Options& o) {
                   auto xs = ode::odeint(f, x0, {0.0, 0.3, 1.0}, o);
                   return sum(square(xs[2])) + sum(xs[1] * 0.7);
                 },
                 leaves};
    for (int L : {4, 10, 100}) {
      const double d = rel_diff(r.grads(alf(L, ode::Gradient::Reversible)), r.grads(alf(L, ode::Gradient::Direct)));
      INFO(family << ", L = " << L << ": reversible vs direct rel. diff " << d);
      CHECK(d < 1e-10);
    }
  }
}

TEST_CASE("reversible gradients of the conv T-NANODE block and of captured Vars equal direct", "[ode][alf]") {
  manual_seed(4);
  tv::FamilyOptions fo;
  fo.order = 2;
  tv::ConvDynamics f("trig", 3, 3, fo);
  f.to(DType::Float64);
  Var x0(rnd({2, 3, 5, 5}, 16), true);
  std::vector<Var> leaves{x0};
  for (auto& p : f.parameters()) leaves.push_back(p);
  ModeRunner r{[&](const ode::Options& o) { return sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))); }, leaves};
  const double d = rel_diff(r.grads(alf(10, ode::Gradient::Reversible)), r.grads(alf(10, ode::Gradient::Direct)));
  INFO("conv: reversible vs direct rel. diff " << d);
  CHECK(d < 1e-10);

  // Captured leaves and a non-leaf made before the solve.
  Var a(rnd({5, 3, 3}, 17, -0.6, 0.6), true), w(rnd({5, 3}, 18, -0.3, 0.3), true);
  Var y0(rnd({4, 3}, 19), true);
  std::unique_ptr<CapturedTrig> g;
  ModeRunner c{[&](const ode::Options& o) {
                 g = std::make_unique<CapturedTrig>(a, w * 2.0);
                 return sum(square(ode::odeint_final(*g, y0, 0.0, 1.0, o)));
               },
               {a, w, y0}};
  for (int L : {4, 1000}) {
    const double dc = rel_diff(c.grads(alf(L, ode::Gradient::Reversible)), c.grads(alf(L, ode::Gradient::Direct)));
    INFO("captured, L = " << L << ": reversible vs direct rel. diff " << dc);
    CHECK(dc < 1e-10);
  }
}

TEST_CASE("reversible gradients match finite differences and use memory flat in depth", "[ode][alf][memory]") {
  Var c(Tensor::from_vector<double>({0.9}, {1}), true);
  ScaledTanh f(c);
  Tensor x0 = rnd({2, 2}, 20);
  const auto o = alf(12, ode::Gradient::Reversible);
  Var xv(x0, true);
  sum(square(ode::odeint_final(f, xv, 0.0, 1.0, o))).backward();
  auto value = [&](double cv) {
    NoGradGuard ng;
    ScaledTanh g(Var(Tensor::from_vector<double>({cv}, {1})));
    return sum(square(ode::odeint_final(g, Var(x0), 0.0, 1.0, o))).item();
  };
  const double eps = 1e-6;
  CHECK(c.grad().item<double>() == Approx((value(0.9 + eps) - value(0.9 - eps)) / (2 * eps)).epsilon(1e-8));

  auto peak = [](ode::Gradient mode, int steps) {
    manual_seed(1);
    tv::FamilyOptions fo;
    fo.order = 3;
    tv::MLPDynamics d("trig", {16, 16}, fo, true);
    Tensor y0 = Tensor::uniform({32, 16}, -1, 1);
    PeakMemoryScope scope;
    {
      Var y(y0, true);
      mean(square(ode::odeint_final(d, y, 0.0, 1.0, alf(steps, mode)))).backward();
    }
    return scope.peak_above_start();
  };
  const int64_t r10 = peak(ode::Gradient::Reversible, 10), r200 = peak(ode::Gradient::Reversible, 200);
  const int64_t d200 = peak(ode::Gradient::Direct, 200);
  INFO("reversible " << r10 << " -> " << r200 << " bytes; direct(200) " << d200);
  CHECK(static_cast<double>(r200) < 1.1 * static_cast<double>(r10));
  CHECK(r200 * 10 < d200);
}

TEST_CASE("ALF and reversible gradients refuse what they cannot do", "[ode][alf][errors]") {
  ScaledTanh f(Var(Tensor::from_vector<double>({1.0}, {1})));
  Var x0(rnd({2, 2}, 21), true);
  ode::Options o = opts("rk4", 4, ode::Gradient::Reversible);
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0, 1, o), Contains("reversible gradients need method 'alf'"));
  o = alf(4, ode::Gradient::Adjoint);
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0, 1, o), Contains("'alf' takes gradient = direct or reversible"));
  o = alf(0, ode::Gradient::Reversible);
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0, 1, o), Contains("give steps or step_size"));
  // Fast contraction (dx/dt = -30 x): inverting the steps amplifies rounding by
  // about e^30, so the rebuilt x0 is far off the stored one: refused, not wrong.
  struct Contract : ode::Dynamics {
    Var forward(double, const Var& x) override { return x * -30.0; }
  } k;
  Var y0(rnd({2, 2}, 22), true);
  Var stiff = sum(square(ode::odeint_final(k, y0, 0.0, 1.0, alf(100, ode::Gradient::Reversible))));
  CHECK_THROWS_WITH(stiff.backward(), Contains("drifted from the stored state") && Contains("contract too fast"));
  // Mild contraction is fine: dx/dt = -2 x.
  struct Mild : ode::Dynamics {
    Var forward(double, const Var& x) override { return x * -2.0; }
  } m;
  Var z0(rnd({2, 2}, 23), true);
  sum(square(ode::odeint_final(m, z0, 0.0, 1.0, alf(100, ode::Gradient::Reversible)))).backward();
  const double gr = z0.grad().at({0, 0});
  z0.zero_grad();
  sum(square(ode::odeint_final(m, z0, 0.0, 1.0, alf(100, ode::Gradient::Direct)))).backward();
  CHECK(gr == Approx(z0.grad().at({0, 0})).epsilon(1e-12));
  o.method = "leapfrog";
  CHECK_THROWS_WITH(ode::odeint_final(f, x0, 0, 1, o), Contains("unknown method 'leapfrog'") && Contains("alf"));
}
