// The no-grad solve's fast paths against the graph's, to the bit: W(t) combined
// for a block of a solve's stage times (ode::Schedule, basis_combine_many), the
// last product fused with the RK stage (linear_bias_act_lincomb), and a
// time-varying layer and T-NANODE solve with and without a graph.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

TEST_CASE("a time-varying linear layer and a T-NANODE solve give the same bits with and without a graph", "[ops]") {
  // Without a graph the layer takes the fused product (linear_at); with one, the
  // recorded ops. The checkpoint and adjoint modes store the states of a no-grad
  // pass and recompute from them, so the two must agree. A fixed-step solve
  // without a graph also publishes its stage times (ode::Schedule): the layers
  // combine W(t) for a block of steps at once, and f's last product runs with the
  // stage (linear_bias_act_lincomb). 40 steps take several blocks; bosh3 reuses
  // its last stage (FSAL), which runs apart from the fused stage.
  manual_seed(3);
  tv::FamilyOptions fo;
  fo.order = 3;
  tv::MLPDynamics f("trig", {64, 64}, fo, /*final_tanh=*/true);
  tv::MLPDynamics g("trig", {32, 48, 32}, fo, /*final_tanh=*/false);  // TimeLinear::forward with its bias
  tv::MLPDynamics e("trig", {64, 80, 64}, fo, /*final_tanh=*/true);   // the fused product after a hidden layer
  fo.order = 10;
  tv::MLPDynamics w1("trig", {128, 128}, fo, /*final_tanh=*/true);    // W1's layer: products and blocks on the pool
  struct Case {
    tv::MLPDynamics* dyn;
    const char* name;
    int64_t batch, n;
    bool fused;
  };
  for (int threads : {1, 2})
    for (const Case c : {Case{&f, "f", 40, 64, true}, Case{&g, "g", 40, 32, false}, Case{&e, "e", 40, 64, true},
                         Case{&w1, "w1", 256, 128, true}})
      for (const char* method : {"rk4", "euler", "bosh3", "alf"}) {
        if (c.dyn == &w1 && std::string(method) != "euler") continue;
        set_num_threads(threads);
        INFO(method << ", " << threads << " threads, " << c.name);
        auto* dyn = c.dyn;
        Var x0(Tensor::uniform({c.batch, c.n}, -1, 1));
        ode::Options o;
        o.method = method;
        o.steps = std::string(method) == "rk4" ? 5 : 40;
        Tensor with = ode::odeint_final(*dyn, x0, 0.0, 1.0, o).data();
        REQUIRE(with.defined());
        Tensor without;
        const ode::Schedule::Totals before = ode::Schedule::totals();
        auto stats = std::make_shared<ode::Stats>();
        {
          NoGradGuard ng;
          without = ode::odeint_final(*dyn, x0, 0.0, 1.0, o, stats).data();
        }
        const ode::Schedule::Totals after = ode::Schedule::totals();
        CHECK(after.published == before.published + 1);
        // Every evaluation took each layer's W(t) from a block.
        const int64_t layers = static_cast<int64_t>(dyn->layers().size());
        CHECK(after.served - before.served == stats->evals * layers);
        if (c.fused && std::string(method) != "alf") CHECK(after.fused_stages - before.fused_stages >= o.steps);
        else CHECK(after.fused_stages == before.fused_stages);  // g ends without a tanh; ALF has no RK stage
        REQUIRE(with.to_vector<float>() == without.to_vector<float>());
        if (std::string(method) != "alf")  // the memory-saving modes return the no-grad pass's state
          for (ode::Gradient mode : {ode::Gradient::Checkpoint, ode::Gradient::Adjoint}) {
            ode::Options om = o;
            om.gradient = mode;
            REQUIRE(ode::odeint_final(*dyn, x0, 0.0, 1.0, om).data().to_vector<float>() == with.to_vector<float>());
          }
        for (const auto& layer : dyn->layers()) {
          NoGradGuard ng;
          const auto& tl = dynamic_cast<const tv::TimeLinear&>(*layer);
          Var h(Tensor::uniform({24, tl.weight_coeffs.size(2)}, -1, 1));
          const auto fused = tl.forward(0.3, h).data().to_vector<float>();
          const auto plain = linear(h, tl.weight(0.3), tl.bias(0.3)).data().to_vector<float>();
          REQUIRE(fused == plain);
        }
      }
  set_num_threads(2);
}

TEST_CASE("basis_combine_many gives each W(t) to the bit of basis_combine", "[ops]") {
  auto check = [](auto zero) {
    using T = decltype(zero);
    const DType dt = std::is_same_v<T, float> ? DType::Float32 : DType::Float64;
    manual_seed(17);
    // 21 terms of 97 x 91 = 8827 entries: two chunks, and a last piece shorter
    // than a SIMD vector (float and double). Groups of 8, 4 and 2 times go
    // together, a single one alone; a zero term in one time sends its group's
    // times to smaller groups or one by one.
    const int64_t R = 97, C = 91, N = R * C;
    Tensor a = Tensor::uniform({21, R, C}, -1, 1).to(dt);
    const std::vector<double> av = a.to(DType::Float64).to_vector<double>();
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> u(-1, 1);
    for (size_t B : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{8}, size_t{11}, size_t{16}})
      for (bool zero_term : {false, true}) {
        INFO(B << " times" << (zero_term ? ", a zero term" : "") << (std::is_same_v<T, float> ? ", float" : ", double"));
        std::vector<std::vector<double>> zs(B, std::vector<double>(21));
        for (auto& z : zs)
          for (auto& v : z) v = u(rng);
        if (zero_term) zs[B / 2][4] = 0.0;
        const auto many = backend::basis_combine_many(a, zs);
        REQUIRE(many.size() == B);
        for (size_t q = 0; q < B; ++q) {
          const Tensor one = backend::basis_combine(a, zs[q]);
          REQUIRE(many[q].shape() == one.shape());
          REQUIRE(many[q].to_vector<T>() == one.to_vector<T>());
          // and the sums themselves, at the first entry and the last (in the short piece)
          const std::vector<double> got = many[q].to(DType::Float64).to_vector<double>();
          for (int64_t e : {int64_t{0}, N - 1}) {
            double want = 0;
            for (size_t j = 0; j < 21; ++j) want += zs[q][j] * av[static_cast<size_t>(static_cast<int64_t>(j) * N + e)];
            REQUIRE(got[static_cast<size_t>(e)] == Approx(want).margin(std::is_same_v<T, float> ? 1e-5 : 1e-12));
          }
        }
      }
  };
  check(float{});
  check(double{});
  CHECK_THROWS_WITH(backend::basis_combine_many(Tensor::zeros({3, 4, 4}), {{1, 2, 3}, {1, 2}}),
                    Contains("do not have 2 basis terms"));
}

TEST_CASE("linear_bias_act_lincomb (product and RK stage in one region) equals the product then bias_act_lincomb",
          "[ops]") {
  auto check = [](auto zero) {
    using T = decltype(zero);
    const DType dt = std::is_same_v<T, float> ? DType::Float32 : DType::Float64;
    const int64_t L = cpu::kLanes<T>;
    manual_seed(23);
    struct Case {
      int64_t m, n, k;
      bool fused;
    };
    // W1's shape, a small product run on the caller, rows that do not split
    // evenly, and shapes the fused kernel does not take (few rows; a width that is
    // not whole vectors; few rows with a product large enough for the pool).
    for (const Case c : {Case{256, 8 * L, 8 * L, true}, Case{40, 4 * L, 24, true}, Case{301, 2 * L, 70, true},
                         Case{8, 4 * L, 16, false}, Case{64, 4 * L + 3, 16, false}, Case{8, 32 * L, 128, false}})
      for (int threads : {1, 2})
        for (UnaryOp act : {UnaryOp::Tanh, UnaryOp::Sigmoid}) {
          set_num_threads(threads);
          INFO(c.m << " x " << c.n << " x " << c.k << ", " << threads << " threads");
          CHECK(cpu::linear_stage_takes<T>(c.m, c.n, c.k) == c.fused);
          Tensor h = Tensor::uniform({c.m, c.k}, -1, 1).to(dt), wt = Tensor::uniform({c.k, c.n}, -1, 1).to(dt);
          Tensor bias = Tensor::uniform({c.n}, -1, 1).to(dt), x = Tensor::uniform({c.m, c.n}, -1, 1).to(dt);
          Tensor k1 = Tensor::uniform({c.m, c.n}, -1, 1).to(dt);
          const std::vector<Tensor> ks{k1, Tensor()};
          const std::vector<double> cs{0.25, 0.5};
          auto [kf, of] = backend::linear_bias_act_lincomb(h, wt, bias, act, x, ks, cs, 0.125);
          // The reference: the product as a layer runs it (W^T transposed back).
          const Tensor pre = backend::matmul(h, backend::permute(wt, {1, 0}), false, true);
          auto [kr, orf] = backend::bias_act_lincomb(pre, bias, act, x, ks, cs, 0.125);
          REQUIRE(kf.to_vector<T>() == kr.to_vector<T>());
          REQUIRE(of.to_vector<T>() == orf.to_vector<T>());
          // one entry by hand
          const auto hv = h.to(DType::Float64).to_vector<double>(), wv = wt.to(DType::Float64).to_vector<double>();
          double p = bias.to(DType::Float64).to_vector<double>()[3];
          for (int64_t q = 0; q < c.k; ++q) p += hv[static_cast<size_t>(2 * c.k + q)] * wv[static_cast<size_t>(q * c.n + 3)];
          const double kk = act == UnaryOp::Tanh ? std::tanh(p) : 1.0 / (1.0 + std::exp(-p));
          const double want = x.to(DType::Float64).to_vector<double>()[static_cast<size_t>(2 * c.n + 3)] +
                              0.25 * k1.to(DType::Float64).to_vector<double>()[static_cast<size_t>(2 * c.n + 3)] +
                              0.125 * kk;
          REQUIRE(of.to(DType::Float64).to_vector<double>()[static_cast<size_t>(2 * c.n + 3)] ==
                  Approx(want).margin(std::is_same_v<T, float> ? 1e-5 : 1e-12));
          // no x (the sum alone)
          auto [kn, on] = backend::linear_bias_act_lincomb(h, wt, bias, act, Tensor(), ks, cs, 0.125);
          auto [knr, onr] = backend::bias_act_lincomb(pre, bias, act, Tensor(), ks, cs, 0.125);
          REQUIRE(on.to_vector<T>() == onr.to_vector<T>());
        }
    set_num_threads(2);
  };
  check(float{});
  check(double{});
  Tensor h = Tensor::zeros({20, 16}), wt = Tensor::zeros({16, 16}), b = Tensor::zeros({16});
  CHECK_THROWS_WITH(backend::linear_bias_act_lincomb(h, Tensor::zeros({12, 16}), b, UnaryOp::Tanh, Tensor(), {}, {}, 1.0),
                    Contains("linear_bias_act_lincomb: input [20, 16] does not end in the 12 features"));
  CHECK_THROWS_WITH(backend::linear_bias_act_lincomb(h, Tensor::zeros({16}), b, UnaryOp::Tanh, Tensor(), {}, {}, 1.0),
                    Contains("is not [in, out]"));
  CHECK_THROWS_WITH(backend::linear_bias_act_lincomb(h, wt, Tensor::zeros({5}), UnaryOp::Tanh, Tensor(), {}, {}, 1.0),
                    Contains("linear_bias_act_lincomb: bias [5] does not match"));
  CHECK_THROWS_WITH(backend::linear_bias_act_lincomb(h, wt, b, UnaryOp::Relu, Tensor(), {}, {}, 1.0),
                    Contains("only tanh and sigmoid"));
  CHECK_THROWS_WITH(backend::linear_bias_act_lincomb(h, wt, b, UnaryOp::Tanh, Tensor::zeros({20, 15}), {}, {}, 1.0),
                    Contains("shapes differ"));
  CHECK_THROWS_WITH(backend::linear_rows(h, Tensor::zeros({16})), Contains("is not [out, in]"));
}

TEST_CASE("a solve's schedule: W(t) for a block of its times, served only inside the solve and only at its times",
          "[ops]") {
  manual_seed(29);
  tv::FamilyOptions fo;
  fo.order = 3;
  tv::MLPDynamics f("trig", {32, 32}, fo, /*final_tanh=*/true);
  const auto& layer = dynamic_cast<const tv::TimeLinear&>(*f.layers()[0]);
  const Tensor a = layer.weight_coeffs.data();
  CHECK(ode::Schedule::current() == nullptr);
  CHECK_FALSE(tv::detail::scheduled_weight(a, layer.basis(), 0.25).defined());  // no solve running
  std::vector<double> times;
  for (int i = 0; i < 40; ++i) times.push_back(0.025 * i);
  times.push_back(times.back());  // a repeat is dropped
  {
    // Exact times only: a time a hair off a scheduled one gets nothing, the
    // scheduled one its W.
    ode::ScheduleScope scope(times);
    CHECK_FALSE(tv::detail::scheduled_weight(a, layer.basis(), std::nextafter(times[3], 1.0)).defined());
    CHECK(tv::detail::scheduled_weight(a, layer.basis(), times[3]).defined());
    // Another basis at the same coefficients' address: its own W, not the cached one.
    tv::FamilyOptions fo7;
    fo7.order = 7;  // seven Chebyshev terms: as many as trig of order 3
    tv::MLPDynamics other("chebyshev", {32, 32}, fo7, /*final_tanh=*/true);
    const auto& obasis = dynamic_cast<const tv::TimeLinear&>(*other.layers()[0]).basis();
    REQUIRE(obasis.size() == layer.basis().size());
    const Tensor wo = tv::detail::scheduled_weight(a, obasis, times[4]);
    REQUIRE(wo.defined());
    CHECK(wo.to_vector<float>() == backend::basis_combine(a, obasis.eval(times[4])).to_vector<float>());
  }
  const int64_t published = ode::Schedule::totals().published;
  {
    ode::ScheduleScope scope(times);
    REQUIRE(ode::Schedule::current() == &scope.schedule());
    CHECK(ode::Schedule::totals().published == published + 1);
    REQUIRE(scope.schedule().times().size() == 40);
    CHECK(scope.schedule().find(0.05, 0) == 2);
    CHECK(scope.schedule().find(0.05, 3) == ode::Schedule::npos);
    CHECK(scope.schedule().find(0.0501, 0) == ode::Schedule::npos);
    // 32 x 32 floats: blocks of 16 times; 40 times take three sweeps.
    for (size_t i = 0; i < 40; ++i)
      for (bool tr : {false, true}) {
        const Tensor w = tv::detail::scheduled_weight(a, layer.basis(), times[i], tr);
        REQUIRE(w.defined());
        Tensor ref = backend::basis_combine(a, layer.basis().eval(times[i]));
        if (tr) ref = backend::permute(ref, {1, 0});
        REQUIRE(w.to_vector<float>() == ref.to_vector<float>());
      }
    CHECK(scope.schedule().slots() == 2);  // W and W^T
    const auto* entry = static_cast<const tv::detail::ScheduledWeights*>(
        scope.schedule().slot(static_cast<const char*>(a.raw_data())).get());
    REQUIRE(entry != nullptr);
    CHECK(entry->fills == 3);
    CHECK(entry->served == 40);
    CHECK_FALSE(tv::detail::scheduled_weight(a, layer.basis(), 0.0125).defined());  // not a scheduled time
    CHECK_FALSE(tv::detail::scheduled_weight(a, layer.basis(), 0.0).defined());     // behind the block
    {
      ode::ScheduleScope inner({0.5});
      CHECK(ode::Schedule::current() == &inner.schedule());
      CHECK_FALSE(tv::detail::scheduled_weight(a, layer.basis(), 0.975).defined());  // the outer one's time
    }
    CHECK(ode::Schedule::current() == &scope.schedule());
    // The dynamics hand the solver W(t)^T and the last layer's input where the
    // schedule has t and no graph is recorded.
    NoGradGuard ng;
    Var x(Tensor::uniform({20, 32}, -1, 1));
    Tensor h, w;
    Var bias;
    UnaryOp act = UnaryOp::Sigmoid;
    REQUIRE(f.linear_preactivation(times[39], x, h, w, bias, act));
    CHECK(act == UnaryOp::Tanh);
    CHECK(h.to_vector<float>() == x.data().to_vector<float>());
    CHECK(w.shape() == Shape({32, 32}));
    CHECK_FALSE(f.linear_preactivation(0.3, x, h, w, bias, act));
  }
  CHECK(ode::Schedule::current() == nullptr);
}
