// Time bases, time-varying layers and the dynamics families.
#include <catch2/catch.hpp>

#include <cmath>

#include "gradcheck.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

TEST_CASE("time bases evaluate to their closed forms", "[basis]") {
  const double t = 0.3;
  CHECK(tv::ConstantBasis().eval(t) == std::vector<double>{1.0});
  const auto tr = tv::TrigBasis(2).eval(t);
  REQUIRE(tr.size() == 5);
  CHECK(tr[1] == Approx(std::cos(t)));
  CHECK(tr[4] == Approx(std::sin(2 * t)));
  const auto mo = tv::MonomialBasis(4).eval(t);
  CHECK(mo[3] == Approx(t * t * t));
  // On [0, 2], u = t - 1.
  const double u = t - 1.0;
  const auto ch = tv::OrthoPolyBasis(tv::OrthoPolyBasis::Kind::Chebyshev, 5, 0.0, 2.0).eval(t);
  CHECK(ch[4] == Approx(8 * std::pow(u, 4) - 8 * u * u + 1));
  CHECK(ch[3] == Approx(std::cos(3 * std::acos(u))));
  const auto le = tv::OrthoPolyBasis(tv::OrthoPolyBasis::Kind::Legendre, 4, 0.0, 2.0).eval(t);
  CHECK(le[2] == Approx(0.5 * (3 * u * u - 1)));
  CHECK(le[3] == Approx(0.5 * (5 * u * u * u - 3 * u)));
  tv::BucketBasis b(4, 0.0, 1.0);
  CHECK(b.eval(0.0) == std::vector<double>{1, 0, 0, 0});
  CHECK(b.eval(0.26) == std::vector<double>{0, 1, 0, 0});
  CHECK(b.eval(1.0) == std::vector<double>{0, 0, 0, 1});  // the last bucket is closed
  std::vector<double> jumps;
  b.collect_jump_times(0.0, 1.0, jumps);
  CHECK(jumps == std::vector<double>{0.25, 0.5, 0.75});
  tv::RandomFourierBasis r1(6, 2.0, 3), r2(6, 2.0, 3);
  CHECK(r1.eval(t) == r2.eval(t));
  for (double v : r1.eval(t)) CHECK(std::abs(v) <= 1.0);
  CHECK_THROWS_WITH(tv::make_basis("fourier", 3), Contains("unknown time basis 'fourier'"));
}

TEST_CASE("a time-varying linear layer computes W(t) = sum_k z_k(t) A_k", "[layers]") {
  auto basis = std::make_shared<tv::TrigBasis>(1);
  tv::TimeLinear layer(2, 2, basis);
  layer.to(DType::Float64);
  std::vector<double> a{1, 2, 3, 4, 10, 20, 30, 40, 100, 200, 300, 400};  // [3, 2, 2]
  layer.weight_coeffs.mutable_data() = Tensor::from_vector(a, {3, 2, 2});
  layer.bias_coeffs.mutable_data() = Tensor::zeros({3, 2}, DType::Float64);
  const double t = 0.7;
  Tensor w = layer.weight(t).data();
  CHECK(w.at({0, 1}) == Approx(2 + 20 * std::cos(t) + 200 * std::sin(t)));
  Tensor y = layer.forward(t, Var(Tensor::from_vector<double>({1, 0}, {1, 2}))).data();
  CHECK(y.at({0, 1}) == Approx(3 + 30 * std::cos(t) + 300 * std::sin(t)));
}

TEST_CASE("bucketed steps never straddle a bucket edge", "[ode][basis]") {
  tv::FamilyOptions fo;
  fo.order = 3;  // edges at 1/3 and 2/3
  tv::MLPDynamics f("bucket", {2, 2}, fo, true);
  CHECK(f.jump_times(0.0, 1.0).size() == 2);
  // With 4 uniform steps the grid gains the two edges: 6 steps in all.
  ode::Options o;
  o.method = "rk4";
  o.steps = 4;
  auto stats = std::make_shared<ode::Stats>();
  ode::odeint_final(f, Var(Tensor::ones({1, 2})), 0.0, 1.0, o, stats);
  CHECK(stats->steps == 6);
  // Euler over buckets equals the piecewise-constant map stepped by hand.
  tv::FamilyOptions f2;
  f2.order = 2;
  tv::MLPDynamics g("bucket", {1, 1}, f2, true);
  g.to(DType::Float64);
  auto& lin = dynamic_cast<tv::TimeLinear&>(*g.layers()[0]);
  lin.weight_coeffs.mutable_data() = Tensor::from_vector<double>({0.5, -1.5}, {2, 1, 1});
  lin.bias_coeffs.mutable_data() = Tensor::from_vector<double>({0.1, 0.2}, {2, 1});
  o.method = "euler";
  o.steps = 1;  // one step would straddle t = 0.5; the solver splits it
  const double y = ode::odeint_final(g, Var(Tensor::from_vector<double>({1.0}, {1, 1})), 0.0, 1.0, o).data().item();
  double x = 1.0;
  x += 0.5 * std::tanh(0.5 * x + 0.1);
  x += 0.5 * std::tanh(-1.5 * x + 0.2);
  CHECK(y == Approx(x).epsilon(1e-12));
}

TEST_CASE("bucket dynamics with d = L equals the unconstrained ResNet", "[families]") {
  const int L = 6;
  tv::FamilyOptions fo;
  fo.order = L;
  tv::MLPDynamics f("bucket", {5, 5}, fo, true);
  tv::UnconResNet net(5, L);
  auto& lin = dynamic_cast<tv::TimeLinear&>(*f.layers()[0]);
  // Copy the ResNet's per-step weights into the bucket coefficients.
  std::vector<Tensor> ws, bs;
  for (auto& b : net.blocks) {
    ws.push_back(b->weight.data().reshape({1, 5, 5}));
    bs.push_back(b->bias.data().reshape({1, 5}));
  }
  lin.weight_coeffs.mutable_data() = backend::concat(ws, 0);
  lin.bias_coeffs.mutable_data() = backend::concat(bs, 0);
  Generator g(2);
  Var x(Tensor::uniform({3, 5}, -1, 1, g));
  ode::Options o;
  o.method = "euler";
  o.steps = L;
  const auto a = ode::odeint_final(f, x, 0.0, 1.0, o).data().to_vector<float>();
  const auto b = net.forward(x).data().to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).margin(1e-6));
}

namespace {
/// max |A A^T - I| (rows orthonormal) or max |A^T A - I| (columns), for A [r, c].
double orthonormality_error(const Tensor& a) {
  const int64_t r = a.size(0), c = a.size(1);
  const Tensor g = r <= c ? backend::matmul(a, a, false, true) : backend::matmul(a, a, true, false);
  const int64_t m = std::min(r, c);
  double e = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) e = std::max(e, std::abs(g.at({i, j}) - (i == j ? 1.0 : 0.0)));
  return e;
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::Float64).to_vector<double>(), y = b.to(DType::Float64).to_vector<double>();
  REQUIRE(x.size() == y.size());
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e = std::max(e, std::abs(x[i] - y[i]));
  return e;
}

/// Every parameter's gradient of sum(w * odeint(f, x0)) against a central
/// difference along a random direction (float64 modules).
void check_parameter_gradients(ode::Dynamics& f, const Tensor& x0, const ode::Options& o, double tol = 1e-5) {
  Var out = ode::odeint_final(f, Var(x0), 0.0, 1.0, o);
  Tensor w = testing::rand64(out.shape(), 6);
  f.zero_grad();
  sum(out * Var(w)).backward();
  for (auto& [name, p] : f.named_parameters()) {
    INFO("parameter " << name);
    REQUIRE(p.grad().defined());
    Tensor dir = testing::rand64(p.shape(), 8);
    double analytic = 0;
    const auto gv = p.grad().to_vector<double>(), dv = dir.to_vector<double>();
    for (size_t i = 0; i < gv.size(); ++i) analytic += gv[i] * dv[i];
    const Tensor orig = p.data().clone();
    auto value = [&](double eps) {
      NoGradGuard ng;
      p.mutable_data() = backend::lincomb(orig, {dir}, {eps});
      const auto y = ode::odeint_final(f, Var(x0), 0.0, 1.0, o).data().to_vector<double>();
      const auto wv = w.to_vector<double>();
      double s = 0;
      for (size_t i = 0; i < y.size(); ++i) s += y[i] * wv[i];
      return s;
    };
    const double numeric = (value(1e-6) - value(-1e-6)) / 2e-6;
    p.mutable_data() = orig;
    CHECK(analytic == Approx(numeric).margin(1e-6).epsilon(tol));
  }
}
}  // namespace

TEST_CASE("Householder chains are orthogonal, and compact WY equals the sequential chain", "[householder]") {
  for (int64_t k : {1, 3, 8}) {
    Generator g(k);
    tv::HouseholderLinear seq(8, 8, k, nullptr, tv::HouseholderMode::Sequential, false, g);
    tv::HouseholderLinear cwy(8, 8, k, nullptr, tv::HouseholderMode::CompactWY);
    cwy.vectors.mutable_data() = seq.vectors.data().clone();
    Tensor m = seq.matrix(0.0).data(), mc = cwy.matrix(0.0).data();
    CHECK(orthonormality_error(m) < 1e-5);
    CHECK(max_abs_diff(mc, m) < 1e-5);
    CHECK(max_abs_diff(cwy.weight(0.0).data(), m) < 1e-5);  // the CWY matrix itself
  }
  // Time-varying reflection vectors: orthogonal at every t; gradients agree.
  auto basis = std::make_shared<tv::TrigBasis>(2);
  tv::HouseholderLinear seq(6, 6, 6, basis, tv::HouseholderMode::Sequential), cwy(6, 6, 6, basis);
  seq.to(DType::Float64);
  cwy.to(DType::Float64);
  cwy.vectors.mutable_data() = seq.vectors.data().clone();
  for (double t : {0.0, 0.4, 0.9}) CHECK(orthonormality_error(cwy.matrix(t).data()) < 1e-10);
  Var x(testing::rand64({4, 6}, 3));
  sum(square(seq.forward(0.4, x)) * Var(testing::rand64({4, 6}, 4))).backward();
  sum(square(cwy.forward(0.4, x)) * Var(testing::rand64({4, 6}, 4))).backward();
  const auto gs = seq.vectors.grad().to_vector<double>(), gc = cwy.vectors.grad().to_vector<double>();
  for (size_t i = 0; i < gs.size(); ++i) REQUIRE(gc[i] == Approx(gs[i]).margin(1e-9));
}

TEST_CASE("time-varying Householder weights: orthonormal in float32 at every t, square and rectangular (Stiefel), "
          "compact WY equal to the sequential product", "[householder][families]") {
  // u_i(t) = sum_k z_k(t) U_ik through a Chebyshev basis of order 4, k = N reflections.
  auto basis = tv::make_basis("chebyshev", 4);
  for (auto [in, out] : std::vector<std::pair<int64_t, int64_t>>{{16, 16}, {36, 5}, {5, 12}}) {
    INFO(in << " -> " << out);
    Generator g(in * 100 + out);
    tv::HouseholderLinear seq(in, out, 0, basis, tv::HouseholderMode::Sequential, false, g);
    tv::HouseholderLinear cwy(in, out, 0, basis, tv::HouseholderMode::CompactWY);
    CHECK(cwy.reflections() == std::max(in, out));  // k = N by default (Lemma 1)
    cwy.vectors.mutable_data() = seq.vectors.data().clone();
    Tensor previous;
    for (double t : {0.0, 0.3, 0.77, 1.0}) {
      INFO("t = " << t);
      const Tensor w = cwy.weight(t).data(), ws = seq.weight(t).data();
      REQUIRE(w.shape() == Shape{out, in});
      CHECK(w.dtype() == DType::Float32);
      CHECK(orthonormality_error(w) < 1e-5);
      CHECK(orthonormality_error(ws) < 1e-5);
      CHECK(max_abs_diff(w, ws) < 1e-5);
      // The sequential product H(u_1) ... H(u_k) written out, in double, sliced.
      const Tensor u = seq.vectors_at(t).data().to(DType::Float64);
      const int64_t n = std::max(in, out);
      std::vector<double> M(static_cast<size_t>(n * n), 0.0);
      for (int64_t i = 0; i < n; ++i) M[static_cast<size_t>(i * n + i)] = 1.0;
      for (int64_t r = u.size(0) - 1; r >= 0; --r) {  // M <- H(u_r) M, from the last reflection
        double nn = 0;
        for (int64_t j = 0; j < n; ++j) nn += u.at({r, j}) * u.at({r, j});
        for (int64_t c = 0; c < n; ++c) {
          double dot = 0;
          for (int64_t j = 0; j < n; ++j) dot += u.at({r, j}) * M[static_cast<size_t>(j * n + c)];
          for (int64_t j = 0; j < n; ++j) M[static_cast<size_t>(j * n + c)] -= 2.0 * u.at({r, j}) * dot / nn;
        }
      }
      double e = 0;
      for (int64_t i = 0; i < out; ++i)
        for (int64_t j = 0; j < in; ++j) e = std::max(e, std::abs(w.at({i, j}) - M[static_cast<size_t>(i * n + j)]));
      CHECK(e < 1e-5);
      if (previous.defined()) CHECK(max_abs_diff(previous, w) > 1e-3);  // it does vary in time
      previous = w;
    }
  }
  // A conv kernel [C_out, C_in, 3, 3] is the [C_out, C_in*9] weight reshaped: its rows orthonormal.
  tv::HouseholderConv2d conv(4, 6, 3, tv::make_basis("chebyshev", 3), Conv2dOptions(1, 1));
  CHECK(conv.w->reflections() == 36);
  for (double t : {0.1, 0.8}) CHECK(orthonormality_error(reshape(conv.kernel(t), {6, 36}).data()) < 1e-5);
}

TEST_CASE("every dense family integrates and its gradients match finite differences", "[families][gradients]") {
  for (const auto& family : tv::family_names()) {
    INFO("family " << family);
    manual_seed(7);
    tv::FamilyOptions fo;
    fo.order = 3;
    fo.trig_period = family == "trig" ? 0.8 : 0.0;  // the period option too
    auto f = std::make_shared<tv::MLPDynamics>(family, std::vector<int64_t>{3, 4, 3}, fo, false);
    f->to(DType::Float64);
    ode::Options o;
    o.method = "rk4";
    o.steps = 4;
    Tensor x0 = testing::rand64({2, 3}, 5);
    auto r = testing::gradcheck([&](const std::vector<Var>& v) { return ode::odeint_final(*f, v[0], 0.0, 1.0, o); },
                                {x0});
    INFO(r.where);
    CHECK(r.ok);
    check_parameter_gradients(*f, x0, o);
  }
}

TEST_CASE("conv dynamics of every convolutional family: gradients match finite differences", "[families]") {
  for (const auto& family : tv::family_names()) {
    INFO("family " << family);
    manual_seed(9);
    tv::FamilyOptions fo;
    fo.order = 2;
    tv::ConvDynamics f(family, 2, 3, fo);
    f.to(DType::Float64);
    ode::Options o;
    o.method = "euler";
    o.steps = 3;
    Tensor x0 = testing::rand64({1, 2, 4, 4}, 10);
    auto r = testing::gradcheck([&](const std::vector<Var>& v) { return ode::odeint_final(f, v[0], 0.0, 1.0, o); },
                                {x0});
    INFO(r.where);
    CHECK(r.ok);
    check_parameter_gradients(f, x0, o);
  }
}

TEST_CASE("gated dynamics are eq. 12 (the sum of sigma_n(t) f_n(x)) and gated-kernel mixes kernels", "[families]") {
  tv::FamilyOptions fo;
  fo.order = 2;
  auto f = nn::make<tv::MLPDynamics>(nn::ModuleOptions().dtype(DType::Float64), "gated", std::vector<int64_t>{2, 2},
                                     fo, /*final_tanh=*/true);
  auto k = nn::make<tv::MLPDynamics>(nn::ModuleOptions().dtype(DType::Float64), "gated-kernel",
                                     std::vector<int64_t>{2, 2}, fo, /*final_tanh=*/true);
  const double W[2][2][2] = {{{0.5, -1.0}, {2.0, 0.25}}, {{-0.75, 1.5}, {0.3, -2.0}}}, B[2][2] = {{0.1, -0.2}, {0.4, 0.0}};
  const double A[2] = {1.5, -2.0}, C[2] = {0.2, 0.7};
  auto tensor = [](std::vector<double> v, Shape s) { return Tensor::from_vector(v, s); };
  f->load_state_dict({{"gated.f0.layer0.weight_coeffs", tensor({0.5, -1.0, 2.0, 0.25}, {1, 2, 2})},
                      {"gated.f0.layer0.bias_coeffs", tensor({0.1, -0.2}, {1, 2})},
                      {"gated.f1.layer0.weight_coeffs", tensor({-0.75, 1.5, 0.3, -2.0}, {1, 2, 2})},
                      {"gated.f1.layer0.bias_coeffs", tensor({0.4, 0.0}, {1, 2})},
                      {"gated.gates.slope", tensor({1.5, -2.0}, {2})},
                      {"gated.gates.offset", tensor({0.2, 0.7}, {2})}});
  k->load_state_dict({{"layer0.f0.weight_coeffs", tensor({0.5, -1.0, 2.0, 0.25}, {1, 2, 2})},
                      {"layer0.f0.bias_coeffs", tensor({0.1, -0.2}, {1, 2})},
                      {"layer0.f1.weight_coeffs", tensor({-0.75, 1.5, 0.3, -2.0}, {1, 2, 2})},
                      {"layer0.f1.bias_coeffs", tensor({0.4, 0.0}, {1, 2})},
                      {"layer0.gates.slope", tensor({1.5, -2.0}, {2})},
                      {"layer0.gates.offset", tensor({0.2, 0.7}, {2})}});
  const double x[2] = {0.6, -0.9}, t = 0.35;
  const auto got = f->forward(t, Var(tensor({x[0], x[1]}, {1, 2}))).data().to_vector<double>();
  const auto got_k = k->forward(t, Var(tensor({x[0], x[1]}, {1, 2}))).data().to_vector<double>();
  for (int i = 0; i < 2; ++i) {
    double eq12 = 0, mixed = 0;
    for (int n = 0; n < 2; ++n) {
      const double gate = 1.0 / (1.0 + std::exp(-(A[n] * t + C[n])));
      const double pre = W[n][i][0] * x[0] + W[n][i][1] * x[1] + B[n][i];
      eq12 += gate * std::tanh(pre);
      mixed += gate * pre;
    }
    CHECK(got[static_cast<size_t>(i)] == Approx(eq12).epsilon(1e-12));
    CHECK(got_k[static_cast<size_t>(i)] == Approx(std::tanh(mixed)).epsilon(1e-12));
    CHECK(std::abs(eq12 - std::tanh(mixed)) > 1e-2);  // the two are different models
  }
  CHECK_THROWS_WITH(tv::make_time_linear("gated", 2, 2, fo), Contains("gated-kernel"));
}

TEST_CASE("the trig basis: the paper's frequencies 1..d, or 2 pi n / T with a period", "[basis]") {
  const auto lit = tv::TrigBasis(2).eval(0.25);
  CHECK(lit[1] == Approx(std::cos(0.25)));
  CHECK(lit[4] == Approx(std::sin(0.5)));
  const auto per = tv::TrigBasis(2, 1.0).eval(0.25);  // cos(2 pi t), sin(2 pi t), cos(4 pi t), sin(4 pi t)
  CHECK(per[0] == 1.0);
  CHECK(per[1] == Approx(0.0).margin(1e-15));
  CHECK(per[2] == Approx(1.0));
  CHECK(per[3] == Approx(-1.0));
  CHECK(per[4] == Approx(0.0).margin(1e-15));
  CHECK(tv::TrigBasis(2, 1.0).name() == "trig-2-period-1");
  BasisSpec s;  // the kernels' description carries the frequency
  REQUIRE(tv::TrigBasis(2, 0.5).spec(s));
  CHECK(s.omega == Approx(4 * M_PI));
  CHECK_THROWS_WITH(tv::TrigBasis(2, -1.0), Contains("period"));
  // More terms than the kernels' description holds: evaluated on the host, in full.
  const auto big = tv::TrigBasis(200, 2.0).eval(0.3);
  REQUIRE(big.size() == 401);
  CHECK(big[399] == Approx(std::cos(200 * M_PI * 0.3)).margin(1e-9));
  CHECK(big[400] == Approx(std::sin(200 * M_PI * 0.3)).margin(1e-9));
  BasisSpec too_big;
  CHECK_FALSE(tv::TrigBasis(200).spec(too_big));
  // The Gram matrix of [1, cos t, sin t, ..., cos 4t, sin 4t] on [0, 1] against
  // the periodic basis of period 1: nearly collinear against orthogonal.
  auto gram_min_eig_ratio = [](const tv::TrigBasis& b) {
    const int K = b.size(), n = 2000;
    std::vector<double> G(static_cast<size_t>(K * K), 0.0);
    for (int i = 0; i < n; ++i) {
      const auto z = b.eval((i + 0.5) / n);
      for (int p = 0; p < K; ++p)
        for (int q = 0; q < K; ++q) G[static_cast<size_t>(p * K + q)] += z[static_cast<size_t>(p)] * z[static_cast<size_t>(q)] / n;
    }
    // Diagonal of the Cholesky factor: its smallest square over its largest
    // bounds the conditioning (pivots of a nearly singular matrix collapse).
    double lo = 1e300, hi = 0;
    for (int j = 0; j < K; ++j) {
      double d = G[static_cast<size_t>(j * K + j)];
      for (int k = 0; k < j; ++k) d -= G[static_cast<size_t>(j * K + k)] * G[static_cast<size_t>(j * K + k)];
      d = std::sqrt(std::max(d, 1e-300));
      G[static_cast<size_t>(j * K + j)] = d;
      for (int i = j + 1; i < K; ++i) {
        double v = G[static_cast<size_t>(i * K + j)];
        for (int k = 0; k < j; ++k) v -= G[static_cast<size_t>(i * K + k)] * G[static_cast<size_t>(j * K + k)];
        G[static_cast<size_t>(i * K + j)] = v / d;
      }
      lo = std::min(lo, d * d), hi = std::max(hi, d * d);
    }
    return lo / hi;
  };
  CHECK(gram_min_eig_ratio(tv::TrigBasis(4)) < 1e-10);
  CHECK(gram_min_eig_ratio(tv::TrigBasis(4, 1.0)) > 0.4);
}

TEST_CASE("random Fourier features: each layer draws its own, one seed gives the same draws, and the draws are "
          "saved with the weights", "[families][basis]") {
  auto draws = [](uint64_t seed, double sigma) {
    tv::FamilyOptions fo;
    fo.order = 6, fo.sigma = sigma, fo.seed = seed;
    manual_seed(seed + 1000);  // the global generator does not matter
    tv::MLPDynamics f("random", {3, 5, 3}, fo);
    std::vector<std::vector<double>> out;
    for (const auto& layer : f.layers()) {
      const auto& basis = dynamic_cast<const tv::RandomFourierBasis&>(dynamic_cast<tv::TimeLinear&>(*layer).basis());
      out.push_back(basis.frequencies());
      out.back().insert(out.back().end(), basis.phases().begin(), basis.phases().end());
    }
    return out;
  };
  const auto a = draws(5, 1.0), b = draws(5, 1.0), c = draws(6, 1.0), wide = draws(5, 100.0);
  REQUIRE(a.size() == 2);
  CHECK(a[0] != a[1]);  // layers differ
  CHECK(a == b);        // the same seed: the same draws
  CHECK(a != c);
  for (const auto& layer : a)
    for (size_t k = 6; k < 12; ++k) CHECK((layer[k] >= 0.0 && layer[k] < 2 * M_PI));  // eta in [0, 2 pi)
  double small = 0, large = 0;  // sigma scales the frequencies
  for (size_t i = 0; i < 2; ++i)
    for (size_t k = 0; k < 6; ++k) small += std::abs(a[i][k]), large += std::abs(wide[i][k]);
  CHECK(large > 20 * small);

  // A model made with another seed, loaded from this one's state, computes the same function.
  tv::FamilyOptions f1, f2;
  f1.order = f2.order = 4;
  f1.seed = 1, f2.seed = 2;
  tv::MLPDynamics m1("random", {3, 4, 3}, f1), m2("random", {3, 4, 3}, f2);
  const Var x(Tensor::uniform({2, 3}, -1, 1));
  const Tensor y1 = m1.forward(0.6, x).data();
  CHECK(max_abs_diff(m2.forward(0.6, x).data(), y1) > 1e-3);
  m2.load_state_dict(m1.state_dict());
  CHECK(max_abs_diff(m2.forward(0.6, x).data(), y1) == 0.0);
  bool saved = false;
  for (auto& [n, t] : m1.state_dict()) saved = saved || n == "layer1.rff.frequencies";
  CHECK(saved);
}

TEST_CASE("the L2 penalty sums the squared basis coefficients, without A_0 unless asked", "[layers]") {
  tv::FamilyOptions fo;
  fo.order = 2;
  tv::MLPDynamics f("trig", {2, 3, 2}, fo);
  double all = 0, rest = 0;
  for (auto& [n, p] : f.named_parameters()) {
    const auto v = p.data().to_vector<float>();
    const size_t per_term = v.size() / 5;  // trig order 2: 5 terms, A_0 first
    for (size_t i = 0; i < v.size(); ++i) {
      all += static_cast<double>(v[i]) * v[i];
      if (i >= per_term) rest += static_cast<double>(v[i]) * v[i];
    }
  }
  CHECK(tv::l2_penalty(f, /*include_a0=*/true).item() == Approx(all).epsilon(1e-5));
  CHECK(tv::l2_penalty(f).item() == Approx(rest).epsilon(1e-5));
  // A bucket basis has no constant term: every coefficient counts.
  tv::MLPDynamics bk("bucket", {2, 2}, fo);
  double bsum = 0;
  for (auto& [n, p] : bk.named_parameters())
    for (float v : p.data().to_vector<float>()) bsum += static_cast<double>(v) * v;
  CHECK(tv::l2_penalty(bk).item() == Approx(bsum).epsilon(1e-5));
  // Householder: the bias's coefficients, never the reflection vectors.
  tv::MLPDynamics h("householder", {3, 3}, fo);
  for (auto& [n, p] : h.named_parameters())
    if (n.find("bias") != std::string::npos) p.mutable_data() = Tensor::full(p.shape(), 2.0);
  CHECK(tv::l2_penalty(h).item() == Approx(4.0 * 3 * 1));   // chebyshev-2: A_1 only, 3 entries of 2^2
  CHECK(tv::l2_penalty(h, true).item() == Approx(4.0 * 3 * 2));
  tv::MLPDynamics a("appnode", {2, 2}, fo);
  CHECK_THROWS_WITH(tv::l2_penalty(a), Contains("no time-basis coefficients"));
  tv::MLPDynamics au("auto", {2, 2}, fo);
  CHECK_THROWS_WITH(tv::l2_penalty(au), Contains("include_a0"));
}

TEST_CASE("an ODE block refuses a step grid that misses its buckets' jumps instead of adding steps", "[families][ode]") {
  tv::FamilyOptions fo;
  fo.order = 10;  // B-NANODE-10: jumps at 0.1, ..., 0.9
  ode::Options o;
  o.method = "euler";
  o.steps = 4;
  auto f = std::make_shared<tv::MLPDynamics>("bucket", std::vector<int64_t>{2, 2}, fo, true);
  CHECK_THROWS_WITH(tv::ODEBlock(f, o), Contains("grid of 4 steps") && Contains("multiple of 10"));
  for (int64_t steps : {10, 20}) {
    o.steps = steps;
    tv::ODEBlock block(f, o);
    block.forward(Var(Tensor::ones({1, 2})));
    CHECK(block.stats().steps == steps);  // exactly the steps asked for
  }
  // Crossing the jumps, as a fixed-grid solver does: 4 steps are 4 steps, and the
  // weights are those of the bucket each stage time lands in.
  o.steps = 4;
  o.split_at_jumps = false;
  tv::ODEBlock crossing(f, o);
  const Var x0(Tensor::ones({1, 2}));
  const Tensor y = crossing.forward(x0).data();
  CHECK(crossing.stats().steps == 4);
  Var x = x0;  // Euler by hand: W and b of bucket floor(10 t) at t = 0, 0.25, 0.5, 0.75
  auto& layer = dynamic_cast<tv::TimeLinear&>(*f->layers()[0]);
  for (int k = 0; k < 4; ++k) {
    const double t = 0.25 * k;
    const int64_t bucket = static_cast<int64_t>(std::floor(10 * t + 1e-9));
    const Var w = reshape(slice(layer.weight_coeffs, 0, bucket, bucket + 1), {2, 2}),
              b = reshape(slice(layer.bias_coeffs, 0, bucket, bucket + 1), {2});
    x = x + tanh(linear(x, w, b)) * 0.25;
    CHECK(layer.weight(t + 1e-12).data().to_vector<float>() == w.data().to_vector<float>());
  }
  CHECK(max_abs_diff(y, x.data()) < 1e-6);
  o.split_at_jumps = true;
  o.steps = 7;  // families without jumps take any grid
  CHECK_NOTHROW(tv::ODEBlock(std::make_shared<tv::MLPDynamics>("trig", std::vector<int64_t>{2, 2}, fo, true), o));
}

TEST_CASE("bias = false drops b(t) where the family allows it, and says so where not", "[families]") {
  tv::FamilyOptions fo;
  fo.order = 2;
  fo.bias = false;
  auto has_bias = [](const nn::Module& m) {
    for (auto& [n, p] : m.named_parameters())
      if (n.find("bias") != std::string::npos) return true;
    return false;
  };
  tv::ConvDynamics c("trig", 3, 3, fo);
  CHECK(c.num_parameters() == 5 * 3 * 3 * 9);  // 2d + 1 kernels, no bias coefficients
  CHECK_FALSE(has_bias(c));
  tv::MLPDynamics m("gated", {4, 4}, fo);
  CHECK(m.named_parameters().size() == 2 + 2);  // two weights, the gates' slope and bias
  CHECK_THROWS_WITH(tv::MLPDynamics("appnode", {4, 4}, fo), Contains("always has a bias"));
  CHECK_THROWS_WITH(tv::ConvDynamics("hyper", 3, 3, fo), Contains("always has a bias"));
  fo.bias = true;
  CHECK(has_bias(tv::ConvDynamics("trig", 3, 3, fo)));
}

TEST_CASE("the RK stage fused with the dynamics' last bias and tanh equals the unfused ops, in every mode",
          "[ode][fused]") {
  // A two-layer trig MLP with a final tanh splits off its last bias and
  // activation, and a trig convolution (with its bias) its tanh; the solvers fuse
  // them with the stage combination. Fused and unfused solves record the same
  // graph, so values and every parameter's gradient agree to rounding, with the
  // same number of evaluations.
  for (const bool conv : {false, true}) {
    for (const std::string method : {"euler", "rk4", "dopri5", "alf"})
      for (const auto mode :
           {ode::Gradient::Direct, ode::Gradient::Checkpoint, ode::Gradient::Adjoint, ode::Gradient::Reversible}) {
        if ((method == "alf") != (mode == ode::Gradient::Direct || mode == ode::Gradient::Reversible) &&
            mode != ode::Gradient::Direct)
          continue;
        manual_seed(11);
        tv::FamilyOptions fo;
        fo.order = 2;
        fo.bias = true;
        std::unique_ptr<ode::Dynamics> dyn;
        if (conv) dyn = std::make_unique<tv::ConvDynamics>("trig", 3, 3, fo);
        else dyn = std::make_unique<tv::MLPDynamics>("trig", std::vector<int64_t>{3, 5, 3}, fo, /*final_tanh=*/true);
        ode::Dynamics& f = *dyn;
        f.to(DType::Float64);
        REQUIRE(f.has_preactivation());
        const Tensor x0 =
            (conv ? Tensor::uniform({2, 3, 5, 4}, -1, 1) : Tensor::uniform({4, 3}, -1, 1)).to(DType::Float64);
        std::vector<std::vector<double>> outs, grads;
        std::vector<int64_t> evals;
        for (bool fuse : {true, false}) {
          ode::Options o;
          o.method = method;
          if (method != "dopri5") o.steps = 7;
          o.rtol = 1e-7;
          o.atol = 1e-9;
          o.gradient = mode;
          o.fuse_stages = fuse;
          auto stats = std::make_shared<ode::Stats>();
          f.zero_grad();
          Var y = ode::odeint_final(f, Var(x0), 0.0, 1.0, o, stats);
          sum(square(y)).backward();
          outs.push_back(y.data().to_vector<double>());
          std::vector<double> g;
          for (auto& p : f.parameters())
            for (double v : p.grad().to_vector<double>()) g.push_back(v);
          grads.push_back(g);
          evals.push_back(stats->evals);
        }
        INFO((conv ? "conv, " : "mlp, ") << method << ", " << ode::gradient_name(mode));
        CHECK(evals[0] == evals[1]);
        REQUIRE(outs[0].size() == outs[1].size());
        for (size_t i = 0; i < outs[0].size(); ++i) CHECK(outs[0][i] == Approx(outs[1][i]).margin(1e-13));
        REQUIRE(grads[0].size() == grads[1].size());
        for (size_t i = 0; i < grads[0].size(); ++i) CHECK(grads[0][i] == Approx(grads[1][i]).margin(1e-12));
      }
  }
}

namespace {
// dx/dt = tanh(x C + b) with C an unregistered leaf and b = 2 w a non-leaf made
// before the solve: the Vars the gradient modes must find by capture.
struct CapturedTanh : ode::Dynamics {
  Var c, b;
  Var forward(double, const Var& x) override { return tanh(matmul(x, c) + b); }
  bool has_preactivation() const override { return true; }
  Var forward_preactivation(double, const Var& x, Var& bias, UnaryOp& act) override {
    bias = b;
    act = UnaryOp::Tanh;
    return matmul(x, c);
  }
};
}  // namespace

TEST_CASE("the fused RK stage gives captured leaves and non-leaf Vars the gradients of direct backprop in every mode",
          "[ode][fused]") {
  const Tensor c0 = Tensor::uniform({3, 3}, -1, 1).to(DType::Float64);
  const Tensor w0 = Tensor::uniform({3}, -1, 1).to(DType::Float64);
  const Tensor x0 = Tensor::uniform({4, 3}, -1, 1).to(DType::Float64);
  // {dL/dC, dL/dw} of one solve.
  const auto grads = [&](const std::string& method, ode::Gradient mode, bool fuse) {
    CapturedTanh f;
    Var c(c0.clone(), true), w(w0.clone(), true);
    f.c = c;
    f.b = 2.0 * w;
    ode::Options o;
    o.method = method;
    o.steps = 6;
    o.gradient = mode;
    o.fuse_stages = fuse;
    Var y = ode::odeint_final(f, Var(x0), 0.0, 1.0, o);
    auto g = nanode::grad(sum(square(y)), {c, w});
    std::vector<double> out = g[0].to_vector<double>();
    for (double v : g[1].to_vector<double>()) out.push_back(v);
    return out;
  };
  for (const std::string method : {"rk4", "alf"}) {
    const auto direct = grads(method, ode::Gradient::Direct, false);
    std::vector<std::pair<ode::Gradient, double>> modes{{ode::Gradient::Direct, 1e-13}};
    if (method == "alf") modes.push_back({ode::Gradient::Reversible, 1e-12});
    else modes.insert(modes.end(), {{ode::Gradient::Checkpoint, 1e-13}, {ode::Gradient::Adjoint, 1e-3}});
    for (const auto& [mode, tol] : modes) {
      const auto fused = grads(method, mode, true);
      INFO(method << ", " << ode::gradient_name(mode));
      REQUIRE(fused.size() == direct.size());
      for (size_t i = 0; i < fused.size(); ++i) CHECK(fused[i] == Approx(direct[i]).margin(tol));
    }
  }
}
