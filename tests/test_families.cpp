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

TEST_CASE("Householder chains are orthogonal, and compact WY equals the sequential chain", "[householder]") {
  for (int64_t k : {1, 3, 8}) {
    Generator g(k);
    tv::HouseholderLinear seq(8, k, nullptr, tv::HouseholderMode::Sequential, g);
    tv::HouseholderLinear cwy(8, k, nullptr, tv::HouseholderMode::CompactWY);
    cwy.vectors.mutable_data() = seq.vectors.data().clone();
    Tensor m = seq.matrix(0.0).data(), mc = cwy.matrix(0.0).data();
    Tensor mmt = backend::matmul(m, m, false, true);
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t j = 0; j < 8; ++j) {
        REQUIRE(mmt.at({i, j}) == Approx(i == j ? 1.0 : 0.0).margin(1e-5));
        REQUIRE(mc.at({i, j}) == Approx(m.at({i, j})).margin(1e-5));
      }
  }
  // Time-varying reflection vectors: orthogonal at every t; gradients agree.
  auto basis = std::make_shared<tv::TrigBasis>(2);
  tv::HouseholderLinear seq(6, 6, basis, tv::HouseholderMode::Sequential), cwy(6, 6, basis);
  seq.to(DType::Float64);
  cwy.to(DType::Float64);
  cwy.vectors.mutable_data() = seq.vectors.data().clone();
  for (double t : {0.0, 0.4, 0.9}) {
    Tensor m = cwy.matrix(t).data();
    Tensor mtm = backend::matmul(m, m, true, false);
    for (int64_t i = 0; i < 6; ++i) REQUIRE(mtm.at({i, i}) == Approx(1.0).margin(1e-10));
  }
  Var x(testing::rand64({4, 6}, 3));
  sum(square(seq.forward(0.4, x)) * Var(testing::rand64({4, 6}, 4))).backward();
  sum(square(cwy.forward(0.4, x)) * Var(testing::rand64({4, 6}, 4))).backward();
  const auto gs = seq.vectors.grad().to_vector<double>(), gc = cwy.vectors.grad().to_vector<double>();
  for (size_t i = 0; i < gs.size(); ++i) REQUIRE(gc[i] == Approx(gs[i]).margin(1e-9));
}

TEST_CASE("every dense family integrates and its gradients match finite differences", "[families][gradients]") {
  for (const auto& family : tv::family_names()) {
    INFO("family " << family);
    manual_seed(7);
    tv::FamilyOptions fo;
    fo.order = 3;
    // Householder layers are square: one n -> n layer with a final tanh.
    auto f = family == "householder" ? std::make_shared<tv::MLPDynamics>(family, std::vector<int64_t>{3, 3}, fo, true)
                                     : std::make_shared<tv::MLPDynamics>(family, std::vector<int64_t>{3, 4, 3}, fo, false);
    f->to(DType::Float64);
    ode::Options o;
    o.method = "rk4";
    o.steps = 4;
    Tensor x0 = testing::rand64({2, 3}, 5);
    auto r = testing::gradcheck([&](const std::vector<Var>& v) { return ode::odeint_final(*f, v[0], 0.0, 1.0, o); },
                                {x0});
    INFO(r.where);
    CHECK(r.ok);
    // Parameter gradients: one scalar per parameter tensor along a random direction.
    Var out = ode::odeint_final(*f, Var(x0), 0.0, 1.0, o);
    Tensor w = testing::rand64(out.shape(), 6);
    f->zero_grad();
    sum(out * Var(w)).backward();
    for (auto& [name, p] : f->named_parameters()) {
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
        const auto y = ode::odeint_final(*f, Var(x0), 0.0, 1.0, o).data().to_vector<double>();
        const auto wv = w.to_vector<double>();
        double s = 0;
        for (size_t i = 0; i < y.size(); ++i) s += y[i] * wv[i];
        return s;
      };
      const double numeric = (value(1e-6) - value(-1e-6)) / 2e-6;
      p.mutable_data() = orig;
      CHECK(analytic == Approx(numeric).margin(1e-6).epsilon(1e-5));
    }
  }
}

TEST_CASE("conv dynamics of every convolutional family run forward and backward", "[families]") {
  for (const auto& family : tv::family_names()) {
    if (family == "householder") {
      CHECK_THROWS_WITH(tv::ConvDynamics(family, 2, 3, {}), Contains("dense only"));
      continue;
    }
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
  }
}

TEST_CASE("the L2 penalty sums the squared coefficients", "[layers]") {
  tv::FamilyOptions fo;
  fo.order = 2;
  tv::MLPDynamics f("trig", {2, 3, 2}, fo);
  double expect = 0;
  for (auto& [n, p] : f.named_parameters())
    for (float v : p.data().to_vector<float>()) expect += static_cast<double>(v) * v;
  CHECK(tv::l2_penalty(f).item() == Approx(expect).epsilon(1e-5));
  tv::MLPDynamics a("appnode", {2, 2}, fo);
  CHECK_THROWS_WITH(tv::l2_penalty(a), Contains("no time-basis coefficients"));
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
  // activation; the solvers fuse them with the stage combination. Fused and
  // unfused solves record the same graph, so values and every parameter's
  // gradient agree to rounding, with the same number of evaluations.
  for (const std::string method : {"euler", "rk4", "dopri5", "alf"})
    for (const auto mode :
         {ode::Gradient::Direct, ode::Gradient::Checkpoint, ode::Gradient::Adjoint, ode::Gradient::Reversible}) {
      if ((method == "alf") != (mode == ode::Gradient::Direct || mode == ode::Gradient::Reversible) &&
          mode != ode::Gradient::Direct)
        continue;
      manual_seed(11);
      tv::FamilyOptions fo;
      fo.order = 2;
      tv::MLPDynamics f("trig", {3, 5, 3}, fo, /*final_tanh=*/true);
      f.to(DType::Float64);
      REQUIRE(f.has_preactivation());
      const Tensor x0 = Tensor::uniform({4, 3}, -1, 1).to(DType::Float64);
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
      INFO(method << ", " << ode::gradient_name(mode));
      CHECK(evals[0] == evals[1]);
      REQUIRE(outs[0].size() == outs[1].size());
      for (size_t i = 0; i < outs[0].size(); ++i) CHECK(outs[0][i] == Approx(outs[1][i]).margin(1e-13));
      REQUIRE(grads[0].size() == grads[1].size());
      for (size_t i = 0; i < grads[0].size(); ++i) CHECK(grads[0][i] == Approx(grads[1][i]).margin(1e-12));
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
