// Op forwards against hand-computed values, float32 against float64, and the
// parallel kernel paths against plain loops.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

static Tensor T64(std::vector<double> v, Shape s) { return Tensor::from_vector(v, s); }

TEST_CASE("matmul, linear and permute on known values", "[ops]") {
  Var a(T64({1, 2, 3, 4, 5, 6}, {2, 3})), b(T64({7, 8, 9, 10, 11, 12}, {3, 2}));
  Tensor c = matmul(a, b).data();
  CHECK(c.to_vector<double>() == std::vector<double>{58, 64, 139, 154});
  Tensor l = linear(a, transpose(b), Var(T64({1, -1}, {2}))).data();
  CHECK(l.to_vector<double>() == std::vector<double>{59, 63, 140, 153});
  Tensor p = permute(Var(T64({0, 1, 2, 3, 4, 5}, {1, 2, 3})), {2, 0, 1}).data();
  CHECK(p.shape() == Shape({3, 1, 2}));
  CHECK(p.to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("sum and mean over axes", "[ops]") {
  Var x(T64({1, 2, 3, 4, 5, 6}, {2, 3}));
  CHECK(sum(x).item() == 21);
  CHECK(sum(x, {0}).data().to_vector<double>() == std::vector<double>{5, 7, 9});
  CHECK(sum(x, {1}, true).data().shape() == Shape({2, 1}));
  CHECK(mean(x, {1}).data().to_vector<double>() == std::vector<double>{2, 5});
  CHECK(mean(x).item() == 3.5);
}

TEST_CASE("conv2d, conv_transpose2d and pooling on known values", "[ops]") {
  std::vector<double> v(16);
  for (int i = 0; i < 16; ++i) v[static_cast<size_t>(i)] = i + 1;
  Var x(T64(v, {1, 1, 4, 4}));
  Var w(Tensor::ones({1, 1, 3, 3}, DType::Float64));
  Tensor y = conv2d(x, w, Var(T64({0.5}, {1})), Conv2dOptions(1, 1)).data();
  CHECK(y.shape() == Shape({1, 1, 4, 4}));
  // Winograd F(4x4, 3x3) (its 1/6 and 1/24 round in float64): equal to 1e-12.
  CHECK(y.at({0, 0, 1, 1}) == Approx(54.5).margin(1e-12));                 // 1+2+3+5+6+7+9+10+11 + bias
  CHECK(y.at({0, 0, 0, 0}) == Approx(1 + 2 + 5 + 6 + 0.5).margin(1e-12));  // corner sees the zero padding
  Tensor s2 = conv2d(x, w, Var(), Conv2dOptions(2, 0)).data();
  CHECK(s2.shape() == Shape({1, 1, 1, 1}));
  CHECK(s2.at({0, 0, 0, 0}) == 54);
  // Transposed conv of a single pixel paints the kernel.
  Tensor t = conv_transpose2d(Var(T64({2}, {1, 1, 1, 1})), Var(T64({1, 2, 3, 4}, {1, 1, 2, 2}))).data();
  CHECK(t.to_vector<double>() == std::vector<double>{2, 4, 6, 8});
  Tensor t2 = conv_transpose2d(Var(T64({1, 1, 1, 1}, {1, 1, 2, 2})), Var(Tensor::ones({1, 1, 3, 3}, DType::Float64)),
                               Var(), Conv2dOptions(2, 1), 1)
                  .data();
  CHECK(t2.shape() == Shape({1, 1, 4, 4}));
  Tensor mp = max_pool2d(x, 2).data();
  CHECK(mp.to_vector<double>() == std::vector<double>{6, 8, 14, 16});
  Tensor ap = avg_pool2d(x, 2).data();
  CHECK(ap.to_vector<double>() == std::vector<double>{3.5, 5.5, 11.5, 13.5});
  Tensor gp = global_avg_pool2d(x).data();
  CHECK(gp.item() == 8.5);
}

TEST_CASE("batch norm normalises, tracks running statistics, and uses them in eval", "[ops]") {
  Generator g(1);
  Tensor xt = Tensor::normal({8, 2, 3, 3}, 3.0, 2.0, g, DType::Float64);
  Tensor rm = Tensor::zeros({2}, DType::Float64), rv = Tensor::ones({2}, DType::Float64);
  Var y = batch_norm(Var(xt), rm, rv, Var(), Var(), true, 0.1, 0.0);
  Tensor ym = backend::sum(y.data(), {0, 2, 3}, false);
  CHECK(ym.at({0}) == Approx(0).margin(1e-9));
  Tensor y2 = backend::sum(backend::binary(BinaryOp::Mul, y.data(), y.data()), {0, 2, 3}, false);
  CHECK(y2.at({1}) / 72.0 == Approx(1.0));
  // Running statistics: 0.9 * old + 0.1 * batch (unbiased variance).
  const auto xv = xt.to_vector<double>();
  double m = 0, ss = 0;
  for (int n = 0; n < 8; ++n)
    for (int k = 0; k < 9; ++k) m += xv[static_cast<size_t>((n * 2 + 1) * 9 + k)];
  m /= 72;
  for (int n = 0; n < 8; ++n)
    for (int k = 0; k < 9; ++k) ss += std::pow(xv[static_cast<size_t>((n * 2 + 1) * 9 + k)] - m, 2);
  CHECK(rm.at({1}) == Approx(0.1 * m));
  CHECK(rv.at({1}) == Approx(0.9 + 0.1 * ss / 71));
  Var e = batch_norm(Var(T64({1, 2}, {1, 2})), T64({1, 1}, {2}), T64({4, 4}, {2}), Var(T64({2, 2}, {2})),
                     Var(T64({1, 1}, {2})), false, 0.1, 0.0);
  CHECK(e.data().to_vector<double>() == std::vector<double>{1, 2});  // (x - 1) / 2 * 2 + 1
}

TEST_CASE("group norm normalises each sample's group", "[ops]") {
  Tensor x = T64({1, 2, 3, 4, 10, 20, 30, 40}, {1, 4, 2});
  Tensor y = group_norm(Var(x), 2, Var(), Var(), 0.0).data();
  const double sd = std::sqrt(1.25);
  CHECK(y.at({0, 0, 0}) == Approx(-1.5 / sd));
  CHECK(y.at({0, 3, 1}) == Approx(15.0 / std::sqrt(125.0)));
}

TEST_CASE("softmax, log-softmax and cross-entropy on known values", "[ops]") {
  Var x(T64({0, std::log(2.0), 5, 5}, {2, 2}));
  Tensor s = softmax(x).data();
  CHECK(s.at({0, 0}) == Approx(1.0 / 3));
  CHECK(s.at({1, 1}) == Approx(0.5));
  CHECK(log_softmax(x).data().at({0, 1}) == Approx(std::log(2.0 / 3)));
  Var ce = cross_entropy(Var(T64({0, 0, 1000, 0}, {2, 2})), Tensor::from_vector<int32_t>({1, 0}, {2}));
  CHECK(ce.item() == Approx(std::log(2.0) / 2));  // the second row is certain: no overflow
  CHECK(mse_loss(Var(T64({1, 2}, {2})), Var(T64({0, 0}, {2}))).item() == 2.5);
}

TEST_CASE("dropout zeroes about p of the values and rescales the rest", "[ops]") {
  Var x(Tensor::ones({100000}));
  Generator g(5);
  const auto v = dropout(x, 0.25, true, g).data().to_vector<float>();
  int zeros = 0;
  for (float f : v) {
    if (f == 0.0f) ++zeros;
    else CHECK(f == Approx(1.0 / 0.75));
  }
  CHECK(zeros / 100000.0 == Approx(0.25).margin(0.01));
  CHECK(dropout(x, 0.25, false).data().shares_storage_with(x.data()));
  CHECK_THROWS_WITH(dropout(x, 1.0, true), Contains("[0, 1)"));
}

TEST_CASE("float32 kernels agree with float64 on larger problems", "[ops]") {
  Generator g(11);
  Tensor a64 = Tensor::uniform({64, 96}, -1, 1, g, DType::Float64), b64 = Tensor::uniform({96, 80}, -1, 1, g, DType::Float64);
  Tensor c64 = backend::matmul(a64, b64), c32 = backend::matmul(a64.to(DType::Float32), b64.to(DType::Float32));
  const auto x = c64.to_vector<double>(), y = c32.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(y[i] == Approx(x[i]).margin(1e-4));
  Tensor xi = Tensor::uniform({4, 8, 12, 12}, -1, 1, g, DType::Float64), wi = Tensor::uniform({6, 8, 3, 3}, -1, 1, g, DType::Float64);
  Tensor o64 = conv2d(Var(xi), Var(wi), Var(), Conv2dOptions(1, 1)).data();
  Tensor o32 = conv2d(Var(xi.to(DType::Float32)), Var(wi.to(DType::Float32)), Var(), Conv2dOptions(1, 1)).data();
  const auto p = o64.to_vector<double>(), q = o32.to_vector<double>();
  for (size_t i = 0; i < p.size(); ++i) REQUIRE(q[i] == Approx(p[i]).margin(1e-4));
}

TEST_CASE("parallel broadcast and reduction paths agree with plain loops", "[ops]") {
  Generator g(12);
  Tensor a = Tensor::uniform({64, 33, 40}, -1, 1, g, DType::Float64), b = Tensor::uniform({33, 1}, -1, 1, g, DType::Float64);
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  const auto r = backend::binary(BinaryOp::Mul, a, b).to_vector<double>();
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 33; ++j)
      for (int k = 0; k < 40; ++k) {
        const size_t idx = static_cast<size_t>((i * 33 + j) * 40 + k);
        REQUIRE(r[idx] == av[idx] * bv[static_cast<size_t>(j)]);
      }
  const auto s = backend::sum(a, {0, 2}, false).to_vector<double>();
  for (int j = 0; j < 33; ++j) {
    double acc = 0;
    for (int i = 0; i < 64; ++i)
      for (int k = 0; k < 40; ++k) acc += av[static_cast<size_t>((i * 33 + j) * 40 + k)];
    REQUIRE(s[static_cast<size_t>(j)] == Approx(acc));
  }
  Tensor big = Tensor::uniform({300000}, 0, 1, g, DType::Float64);
  double acc = 0;
  for (double v : big.to_vector<double>()) acc += v;
  CHECK(backend::sum_all(big).item() == Approx(acc));
}

TEST_CASE("the CPU's fused bias + activation + RK stage equals the separate ops", "[ops]") {
  // backend::bias_act_lincomb in one pass against binary add, unary and lincomb:
  // both dtypes, rows that split into several chunks and a single odd row, with
  // and without bias and x, an undefined term and a zero coefficient; a 0-d value.
  Generator g(31);
  for (DType dt : {DType::Float32, DType::Float64}) {
    for (const Shape& shape : {Shape({700, 129}), Shape({37}), Shape({3, 5, 8}), Shape()}) {
      const bool scalar = shape.ndim() == 0;  // one value: no last axis, so no bias
      const int64_t cols = scalar ? 1 : shape[shape.ndim() - 1];
      Tensor pre = Tensor::uniform(shape, -3, 3, g, dt), bias = Tensor::uniform({cols}, -1, 1, g, dt);
      Tensor x = Tensor::uniform(shape, -1, 1, g, dt), k1 = Tensor::uniform(shape, -1, 1, g, dt),
             k2 = Tensor::uniform(shape, -1, 1, g, dt);
      for (UnaryOp act : {UnaryOp::Tanh, UnaryOp::Sigmoid})
        for (bool with_bias : {true, false})
          for (bool with_x : {true, false}) {
            if (scalar && with_bias) continue;
            const std::vector<Tensor> ks{k1, Tensor(), k2};
            const std::vector<double> cs{0.25, 0.5, 0.0};
            const Tensor b = with_bias ? bias : Tensor(), xx = with_x ? x : Tensor();
            auto [k, out] = backend::bias_act_lincomb(pre, b, act, xx, ks, cs, -0.125);
            Tensor k_want = backend::unary(act, with_bias ? backend::binary(BinaryOp::Add, pre, bias) : pre);
            Tensor out_want = backend::lincomb(xx, {k1, Tensor(), k2, k_want}, {0.25, 0.5, 0.0, -0.125}, pre);
            INFO(dtype_name(dt) << " " << shape << (act == UnaryOp::Tanh ? " tanh" : " sigmoid")
                                << (with_bias ? " bias" : "") << (with_x ? " x" : ""));
            const double tol = dt == DType::Float32 ? 1e-6 : 1e-15;
            const auto kv = k.to_vector<double>(), kw = k_want.to_vector<double>();
            const auto ov = out.to_vector<double>(), ow = out_want.to_vector<double>();
            REQUIRE(kv.size() == kw.size());
            double dk = 0, dout = 0;
            for (size_t i = 0; i < kv.size(); ++i) {
              dk = std::max(dk, std::abs(kv[i] - kw[i]));
              dout = std::max(dout, std::abs(ov[i] - ow[i]));
            }
            CHECK(dk <= tol);
            CHECK(dout <= tol);
            // The stage itself, from a hand loop over the returned k.
            const auto xv = x.to_vector<double>(), k1v = k1.to_vector<double>();
            for (size_t i = 0; i < kv.size(); i += 97)
              REQUIRE(ov[i] == Approx((with_x ? xv[i] : 0.0) + 0.25 * k1v[i] - 0.125 * kv[i]).margin(4 * tol));
          }
    }
  }
}

TEST_CASE("cpu::gemm equals a direct sum on every path: lane_gemm (B as stored or transposed) and Eigen's",
          "[ops]") {
  auto check = [](auto zero) {
    using T = decltype(zero);
    const int64_t L = cpu::kLanes<T>;
    std::mt19937 rng(9);
    std::uniform_real_distribution<double> u(-1, 1);
    struct Shape3 {
      int64_t m, n, k;
    };
    // n whole vectors (lane_gemm; tiny and split products, a column slab with a
    // rest) or not (Eigen); alpha != 1 or beta outside {0, 1} go to Eigen too.
    // 301 x 4L with B transposed: one column slab, so two threads cut it in two row
    // slabs; 64 x 32L: gemm_split cuts columns.
    for (const Shape3 sh : {Shape3{3, 2 * L, 5}, Shape3{70, 9 * L, 33}, Shape3{300, 16 * L, 150}, Shape3{50, 3 * L + 3, 40},
                            Shape3{301, 4 * L, 150}, Shape3{64, 32 * L, 128}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (const auto& [alpha, beta] : {std::pair<double, double>{1, 0}, {1, 1}, {0.5, 0}, {1, 0.25}}) {
            const int64_t m = sh.m, n = sh.n, k = sh.k;
            const int64_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
            INFO(m << "x" << n << "x" << k << (ta ? " A^T" : "") << (tb ? " B^T" : "") << " alpha " << alpha
                   << " beta " << beta);
            std::vector<T> a((ta ? k : m) * lda), b((tb ? n : k) * ldb), c(m * ldc);
            for (auto* v : {&a, &b, &c})
              for (auto& e : *v) e = static_cast<T>(u(rng));
            std::vector<double> ref(c.begin(), c.end());
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < n; ++j) {
                double sum = 0;
                for (int64_t q = 0; q < k; ++q)
                  sum += static_cast<double>(ta ? a[q * lda + i] : a[i * lda + q]) *
                         static_cast<double>(tb ? b[j * ldb + q] : b[q * ldb + j]);
                ref[i * ldc + j] = alpha * sum + beta * ref[i * ldc + j];
              }
            cpu::gemm<T>(ta, tb, m, n, k, static_cast<T>(alpha), a.data(), lda, b.data(), ldb, static_cast<T>(beta),
                         c.data(), ldc);
            const double tol = (std::is_same_v<T, float> ? 2e-6 : 1e-14) * static_cast<double>(k + 2);
            for (size_t e = 0; e < c.size(); ++e) REQUIRE(c[e] == Approx(ref[e]).margin(tol));
          }
  };
  check(float{});
  check(double{});
}

TEST_CASE("lane_gemm equals a direct sum", "[ops][conv]") {
  // Row counts around its 6-row blocks, widths of 1 to 6 vectors (blocks of 4 and
  // a rest), A as stored and transposed, C overwritten and accumulated into.
  auto check = [](auto zero) {
    using T = decltype(zero);
    constexpr int64_t L = cpu::kLanes<T>;
    CHECK(!cpu::lane_gemm_fits<T>(L + 1));
    CHECK(!cpu::lane_gemm_fits<T>(0));
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> u(-1, 1);
    for (int64_t R : {1, 5, 6, 13, 98})
      for (int64_t nv : {1, 2, 3, 4, 6})
        for (int64_t K : {1, 7, 32})
          for (bool trans : {false, true})
            for (bool acc : {false, true}) {
              const int64_t N = nv * L, lda = trans ? R + 3 : K + 2, ldb = N + L, ldc = N + 2 * L;
              INFO("R " << R << ", N " << N << ", K " << K << (trans ? ", A transposed" : "") << (acc ? ", +=" : ""));
              std::vector<T> a((trans ? K : R) * lda), b(K * ldb), c(R * ldc), ref;
              for (auto* v : {&a, &b, &c})
                for (auto& e : *v) e = static_cast<T>(u(rng));
              ref = c;
              for (int64_t i = 0; i < R; ++i)
                for (int64_t j = 0; j < N; ++j) {
                  double sum = acc ? static_cast<double>(ref[i * ldc + j]) : 0.0;
                  for (int64_t q = 0; q < K; ++q)
                    sum += static_cast<double>(trans ? a[q * lda + i] : a[i * lda + q]) * static_cast<double>(b[q * ldb + j]);
                  ref[i * ldc + j] = static_cast<T>(sum);
                }
              cpu::lane_gemm<T>(R, N, K, a.data(), trans ? 1 : lda, trans ? lda : 1, b.data(), ldb,
                                                  acc, c.data(), ldc);
              const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
              for (int64_t i = 0; i < R; ++i)
                for (int64_t j = 0; j < ldc; ++j) {
                  // Beyond column N, C is left as it was (ref keeps it too).
                  REQUIRE(c[i * ldc + j] == Approx(ref[i * ldc + j]).margin(tol * static_cast<double>(K + 1)));
                }
            }
    std::vector<T> z(4 * L);
    CHECK_THROWS_WITH(cpu::lane_gemm<T>(1, L + 1, 1, z.data(), 1, 1, z.data(), L + 1, false,
                                                          z.data(), L + 1),
                      Catch::Matchers::Contains("not a positive multiple"));
  };
  check(float{});
  check(double{});
}

TEST_CASE("combine_linear (x W^T, W = sum_k z_k A_k, W never stored) equals the unfused ops to the bit and a direct sum",
          "[ops]") {
  auto check = [](auto zero) {
    using T = decltype(zero);
    const int64_t L = cpu::kLanes<T>;
    std::mt19937 rng(13);
    std::uniform_real_distribution<double> u(-1, 1);
    struct Case {
      int64_t m, n, k;
      bool fused;  // at one thread; with two, one column slab of a large product goes unfused
    };
    // Two slabs of four vectors (W1's shape for float), one short slab, a slab and
    // a rest, one large slab; too few rows and widths that are not whole vectors
    // stay unfused.
    for (const Case c : {Case{256, 8 * L, 8 * L, true}, Case{40, 3 * L, 33, true}, Case{64, 5 * L, 20, true},
                         Case{300, 4 * L, 150, true}, Case{7, 4 * L, 10, false}, Case{30, 4 * L + 3, 12, false}})
      for (int threads : {1, 2}) {
        set_num_threads(threads);
        INFO(c.m << " x " << c.n << " x " << c.k << ", " << threads << " threads");
        const bool one_task = 2 * c.m * c.n * c.k < (int64_t{1} << 20);  // runs on the calling thread
        CHECK(cpu::combine_gemm_bt_takes<T>(c.m, c.n, c.k) == (c.fused && (threads == 1 || c.n > 4 * L || one_task)));
        const int K = 5;
        std::vector<double> z{0.5, 0.0, -1.25, 2.0, 0.75};  // a zero term is skipped, as basis_combine skips it
        std::vector<double> xv(static_cast<size_t>(c.m * c.k)), av(static_cast<size_t>(K * c.n * c.k));
        for (auto* v : {&xv, &av})
          for (auto& e : *v) e = u(rng);
        const DType dt = std::is_same_v<T, float> ? DType::Float32 : DType::Float64;
        Tensor x = Tensor::from_vector(xv, {c.m, c.k}).to(dt), a = Tensor::from_vector(av, {K, c.n, c.k}).to(dt);
        Tensor y = backend::combine_linear(x, a, z);
        Tensor ref = backend::matmul(x, backend::basis_combine(a, z), false, true);
        REQUIRE(y.shape() == Shape({c.m, c.n}));
        const std::vector<T> yv = y.to_vector<T>(), rv = ref.to_vector<T>();
        for (size_t e = 0; e < yv.size(); ++e) REQUIRE(yv[e] == rv[e]);
        const double tol = (std::is_same_v<T, float> ? 1e-5 : 1e-13) * static_cast<double>(c.k);
        for (int64_t i = 0; i < c.m; ++i)
          for (int64_t j = 0; j < c.n; ++j) {
            double sum = 0;
            for (int64_t q = 0; q < c.k; ++q) {
              double w = 0;
              for (int kk = 0; kk < K; ++kk) w += z[static_cast<size_t>(kk)] * av[static_cast<size_t>((kk * c.n + j) * c.k + q)];
              sum += xv[static_cast<size_t>(i * c.k + q)] * w;
            }
            REQUIRE(static_cast<double>(yv[static_cast<size_t>(i * c.n + j)]) == Approx(sum).margin(tol));
          }
      }
    set_num_threads(2);
  };
  check(float{});
  check(double{});
  Tensor x = Tensor::zeros({20, 6}), a = Tensor::zeros({2, 16, 5});
  CHECK_THROWS_WITH(backend::combine_linear(x, a, {1.0, 2.0}), Contains("does not end in 5 features"));
  CHECK_THROWS_WITH(backend::combine_linear(Tensor::zeros({20, 5}), a, {1.0}), Contains("are not [1, out, in]"));
}

TEST_CASE("convolutions on the pixel-major path (im2row + lane_gemm) equal a direct loop, forward and backward",
          "[ops][conv]") {
  // Co and C kh kw whole SIMD vectors (8 doubles, 16 floats) take im2row + lane_gemm;
  // C = 8 stays below Winograd's min_channels, so 3x3 stride 1 takes it too.
  struct Case {
    Shape x;
    int64_t co, kh, kw, stride, pad;
  };
  auto check = [](auto zero, const Case& c) {
    using T = decltype(zero);
    const DType dt = std::is_same_v<T, float> ? DType::Float32 : DType::Float64;
    const int64_t N = c.x[0], C = c.x[1], H = c.x[2], W = c.x[3], Co = c.co;
    const int64_t Ho = (H + 2 * c.pad - c.kh) / c.stride + 1, Wo = (W + 2 * c.pad - c.kw) / c.stride + 1;
    INFO("input " << c.x << ", " << Co << " outputs, kernel " << c.kh << "x" << c.kw << ", stride " << c.stride
                  << ", padding " << c.pad << (std::is_same_v<T, float> ? ", float" : ", double"));
    REQUIRE(cpu::conv_rows_path<T>(backend::conv2d_geom("conv2d", c.x, Shape{Co, C, c.kh, c.kw},
                                                         {c.stride, c.stride, c.pad, c.pad})));
    Generator g(31);
    Tensor x = Tensor::uniform(c.x, -1, 1, g, dt), w = Tensor::uniform({Co, C, c.kh, c.kw}, -1, 1, g, dt);
    Tensor b = Tensor::uniform({Co}, -1, 1, g, dt), gy = Tensor::uniform({N, Co, Ho, Wo}, -1, 1, g, dt);
    Var xv(x, true), wv(w, true), bv(b, true);
    Var y = conv2d(xv, wv, bv, Conv2dOptions(c.stride, c.pad));
    REQUIRE(y.shape() == Shape({N, Co, Ho, Wo}));
    y.backward(gy);
    const auto X = x.to_vector<double>(), Wt = w.to_vector<double>(), B = b.to_vector<double>(),
               GY = gy.to_vector<double>();
    std::vector<double> Y(N * Co * Ho * Wo), GX(X.size()), GW(Wt.size()), GB(Co);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < Co; ++o)
        for (int64_t oy = 0; oy < Ho; ++oy)
          for (int64_t ox = 0; ox < Wo; ++ox) {
            const int64_t yi = ((n * Co + o) * Ho + oy) * Wo + ox;
            double s = B[o];
            GB[o] += GY[yi];
            for (int64_t ci = 0; ci < C; ++ci)
              for (int64_t i = 0; i < c.kh; ++i)
                for (int64_t j = 0; j < c.kw; ++j) {
                  const int64_t iy = oy * c.stride - c.pad + i, ix = ox * c.stride - c.pad + j;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  const int64_t xi = ((n * C + ci) * H + iy) * W + ix, wi = ((o * C + ci) * c.kh + i) * c.kw + j;
                  s += Wt[wi] * X[xi];
                  GX[xi] += Wt[wi] * GY[yi];
                  GW[wi] += X[xi] * GY[yi];
                }
            Y[yi] = s;
          }
    const double tol = std::is_same_v<T, float> ? 2e-4 : 1e-11;
    const std::vector<std::pair<Tensor, const std::vector<double>*>> got{
        {y.data(), &Y}, {xv.grad(), &GX}, {wv.grad(), &GW}, {bv.grad(), &GB}};
    for (const auto& [t, ref] : got) {
      const auto v = static_cast<const Tensor&>(t).to_vector<double>();
      REQUIRE(v.size() == ref->size());
      for (size_t k = 0; k < v.size(); ++k) REQUIRE(v[k] == Approx((*ref)[k]).margin(tol));
    }
  };
  for (const Case& c : {Case{{3, 8, 7, 7}, 16, 3, 3, 2, 1}, Case{{2, 8, 6, 9}, 8, 3, 3, 1, 1}, Case{{9, 8, 5, 6}, 24, 1, 3, 1, 0},
                        Case{{2, 16, 9, 8}, 40, 5, 5, 2, 2}, Case{{1, 8, 4, 4}, 8, 3, 3, 3, 0}})
    check(double{}, c);
  for (const Case& c : {Case{{3, 16, 7, 7}, 16, 3, 3, 2, 1}, Case{{2, 32, 14, 14}, 64, 3, 3, 2, 1}})
    check(float{}, c);
  // Widths that are not whole vectors stay on im2col + Eigen's GEMM.
  CHECK(!cpu::conv_rows_path<double>(backend::conv2d_geom("conv2d", Shape{1, 8, 5, 5}, Shape{12, 8, 3, 3}, {2, 2, 1, 1})));
  CHECK(!cpu::conv_rows_path<float>(backend::conv2d_geom("conv2d", Shape{1, 1, 5, 5}, Shape{16, 1, 3, 3}, {1, 1, 1, 1})));
  CHECK(!cpu::conv_rows_path<double>(backend::conv2d_geom("conv2d", Shape{1, 8, 5, 5}, Shape{8, 8, 1, 1}, {1, 1, 0, 0})));
}

TEST_CASE("Winograd 3x3 convolution equals im2col, forward and backward", "[ops][conv]") {
  // conv2d picks Winograd from min_channels() input channels on; below, im2col.
  CHECK(cpu::winograd::applicable(backend::conv2d_geom("conv2d", Shape{2, 16, 8, 8}, Shape{4, 16, 3, 3}, {1, 1, 1, 1})));
  CHECK(!cpu::winograd::applicable(backend::conv2d_geom("conv2d", Shape{2, 1, 8, 8}, Shape{4, 1, 3, 3}, {1, 1, 1, 1})));
  struct Case {
    Shape x;
    int64_t co, pad;
  };
  // Then: several batches of images per GEMM (a short last one) over several
  // groups; images too large to batch (one per GEMM); channel counts that the
  // channel-last copies take eight at a time, with a remainder (11 in, 13 out) and
  // without (16 in, 8 out). Channel counts that are whole SIMD vectors (8 doubles)
  // take lane_gemm in the Winograd domain: 8 -> 16 and 40 -> 24 (five vectors: a
  // block of four and one; three); 11 -> 13 takes Eigen's GEMM. The copies move
  // whole runs of 8 pixels through an in-register transpose (the rest one at a
  // time): 19 -> 12 on 17 x 21 images has both, in float64 and in float32 (8
  // floats are half the width of 8 doubles).
  struct Run {
    Case c;
    DType dt;
  };
  std::vector<Run> runs;
  for (const Case& c : {Case{{2, 3, 6, 6}, 4, 1}, Case{{3, 2, 7, 5}, 3, 0}, Case{{1, 4, 5, 8}, 2, 2}, Case{{2, 1, 3, 3}, 1, 1},
                        Case{{40, 2, 5, 5}, 3, 1}, Case{{3, 2, 30, 29}, 2, 1}, Case{{2, 11, 9, 7}, 13, 1},
                        Case{{1, 16, 6, 10}, 8, 0}, Case{{3, 8, 6, 6}, 16, 1}, Case{{2, 40, 5, 6}, 24, 1},
                        Case{{2, 19, 17, 21}, 12, 1}})
    runs.push_back({c, DType::Float64});
  runs.push_back({Case{{2, 19, 17, 21}, 12, 1}, DType::Float32});
  runs.push_back({Case{{3, 16, 8, 16}, 24, 1}, DType::Float32});
  for (const Run& each : runs) {
    const Case& c = each.c;  // named, not structured bindings: C++17 lambdas cannot capture those
    const DType dt = each.dt;
    INFO("input " << c.x << ", " << c.co << " outputs, padding " << c.pad << ", " << dtype_name(dt));
    Generator g(21);
    Tensor x = Tensor::uniform(c.x, -1, 1, g, dt);
    Tensor w = Tensor::uniform({c.co, c.x[1], 3, 3}, -1, 1, g, dt);
    Tensor b = Tensor::uniform({c.co}, -1, 1, g, dt);
    auto run = [&](bool winograd) {
      cpu::winograd::enabled() = winograd;
      const int64_t keep_min = cpu::winograd::min_channels();
      cpu::winograd::min_channels() = 1;  // Winograd on these small channel counts too
      Var xv(x, true), wv(w, true), bv(b, true);
      Var y = conv2d(xv, wv, bv, Conv2dOptions(1, c.pad));
      Tensor gy = Tensor::uniform(y.shape(), -1, 1, g, dt);
      y.backward(gy);
      cpu::winograd::enabled() = true;
      cpu::winograd::min_channels() = keep_min;
      return std::vector<Tensor>{y.data(), xv.grad(), wv.grad(), bv.grad()};
    };
    Generator keep = g;
    const auto a = run(true);
    g = keep;
    const auto r = run(false);
    // float32: both paths round differently (Winograd's 1/6 and 1/24); a misplaced
    // value would be off by O(1).
    const double tol = dt == DType::Float64 ? 1e-12 : 2e-4 * std::sqrt(9.0 * static_cast<double>(c.x[1] * c.x[0]));
    for (size_t i = 0; i < a.size(); ++i) {
      const auto av = a[i].to(DType::Float64).to_vector<double>(), rv = r[i].to(DType::Float64).to_vector<double>();
      REQUIRE(av.size() == rv.size());
      for (size_t k = 0; k < av.size(); ++k) REQUIRE(av[k] == Approx(rv[k]).margin(tol));
    }
  }
}

TEST_CASE("the video model's ops: nearest upsampling, Gaussian KL and BCE with logits, against hand-computed values",
          "[ops][video]") {
  const Var x(Tensor::from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2}));
  const auto up = upsample_nearest2d(x, 2).data();
  CHECK(up.shape() == Shape({1, 1, 4, 4}));
  CHECK(up.to_vector<double>() == std::vector<double>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  CHECK_THROWS_WITH(upsample_nearest2d(Var(Tensor::zeros({2, 2})), 2), Catch::Matchers::Contains("[N, C, H, W]"));
  // KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2; equal Gaussians: 0.
  const auto t = [](std::vector<double> v) { return Var(Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())})); };
  const auto kl = gaussian_kl(t({1, 0, 0.3}), t({0, 1, -0.2}), t({0, 0, 0.3}), t({0, 0, -0.2})).data().to_vector<double>();
  CHECK(kl[0] == Approx(0.5));
  CHECK(kl[1] == Approx((std::exp(1.0) - 2.0) / 2.0));
  CHECK(kl[2] == Approx(0.0).margin(1e-15));
  // BCE: z = 0 -> log 2 for either target; z = 40, y = 1 -> e^-40, i.e. 0 at double's resolution next to
  // z (no overflow, no log(0)); z = -3, y = 0.25 -> softplus(-3) + 0.75.
  CHECK(binary_cross_entropy_with_logits(t({0, 0}), t({1, 0})).data().item() == Approx(std::log(2.0)));
  CHECK(binary_cross_entropy_with_logits(t({40}), t({1})).data().item() == Approx(0.0).margin(1e-15));
  CHECK(binary_cross_entropy_with_logits(t({-3}), t({0.25})).data().item() ==
        Approx(std::log1p(std::exp(-3.0)) + 0.75));
  CHECK(binary_cross_entropy_with_logits(t({-800}), t({0})).data().item() == 0.0);
}

TEST_CASE("2x2 max pooling picks the first maximum, and a NaN, as the general windows do", "[ops][pool]") {
  const double nan = std::nan("");
  // Windows [1 NaN; NaN 3] and [5 2; 5 7], then [4 4; 4 4] and [-1 -2; -3 -1] (ties: the first).
  const Tensor x = Tensor::from_vector<double>({1, nan, 5, 2, nan, 3, 5, 7, 4, 4, -1, -2, 4, 4, -3, -1}, {1, 1, 4, 4});
  for (const auto& [k, s, p] : {std::tuple<int64_t, int64_t, int64_t>{2, 2, 0}}) {
    const cpu::ConvGeom g = backend::pool_geom("pool", x.shape(), k, k, s, s, p, p);
    auto [y, idx] = backend::max_pool2d_forward(x, g);
    const auto v = y.to_vector<double>();
    CHECK(std::isnan(v[0]));  // a NaN wins; the later one (row 1) ends the window
    CHECK(v[1] == 7);
    CHECK(v[2] == 4);
    CHECK(v[3] == -1);
    CHECK(idx.to_vector<int32_t>() == std::vector<int32_t>{4, 7, 8, 10});
  }
}

TEST_CASE("2x2 max pooling on float vectors matches the window-by-window rule, NaNs and ties included",
          "[ops][pool]") {
  // Widths below, at and between the SIMD lane counts (4 and 8 windows), odd ones
  // (the last column is dropped), and values with ties and NaNs.
  for (int64_t W : {2, 6, 7, 8, 14, 16, 17, 28, 30}) {
    const int64_t N = 2, C = 3, H = 6;
    std::vector<float> v(static_cast<size_t>(N * C * H * W));
    uint32_t r = 12345u + static_cast<uint32_t>(W);
    for (auto& e : v) {
      r = r * 1664525u + 1013904223u;
      const uint32_t k = r >> 24;
      e = k < 20 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(static_cast<int>(k % 7) - 3);
    }
    const Tensor x = Tensor::from_vector<float>(v, {N, C, H, W});
    const cpu::ConvGeom g = backend::pool_geom("pool", x.shape(), 2, 2, 2, 2, 0, 0);
    auto [y, idx] = backend::max_pool2d_forward(x, g);
    const auto yv = y.to_vector<float>();
    const auto iv = idx.to_vector<int32_t>();
    const int64_t Ho = H / 2, Wo = W / 2;
    int64_t bad = 0;
    for (int64_t p = 0; p < N * C; ++p)
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          // The rule: rows in order, columns in order; a larger value or a NaN is
          // taken, and a NaN taken ends its row.
          float best = 0;
          int64_t at = -1;
          for (int64_t i = 0; i < 2; ++i)
            for (int64_t j = 0; j < 2; ++j) {
              const int64_t pos = (2 * oy + i) * W + 2 * ox + j;
              const float e = v[static_cast<size_t>(p * H * W + pos)];
              if (at < 0 || e > best || std::isnan(e)) {
                best = e, at = pos;
                if (std::isnan(e)) break;
              }
            }
          const size_t o = static_cast<size_t>((p * Ho + oy) * Wo + ox);
          const bool same = std::isnan(best) ? std::isnan(yv[o]) : yv[o] == best;
          if (!same || iv[o] != at) ++bad;
        }
    INFO("W = " << W);
    CHECK(bad == 0);
  }
}

TEST_CASE("batch and group norm with a fused ReLU equal the norm followed by relu(), values and gradients",
          "[ops][norm]") {
  // Float32 on the CPU, where the ReLU's mask is applied inside the norms' backward
  // kernels; shapes with S = 7 * 9 and several groups.
  const Tensor x = Tensor::uniform({5, 8, 7, 9}, -2, 2);
  const Tensor gy = Tensor::uniform({5, 8, 7, 9}, -1, 1);
  for (int kind = 0; kind < 3; ++kind) {
    INFO((kind == 0 ? "batch norm, training" : kind == 1 ? "batch norm, eval" : "group norm"));
    nn::BatchNorm bn(8);
    nn::GroupNorm gn(4, 8);
    auto set = [](const Var& v, const Tensor& src) {
      Tensor t = v.data();  // shares v's storage
      t.copy_(src);
    };
    set(bn.weight, Tensor::uniform({8}, 0.5, 1.5));
    set(bn.bias, Tensor::uniform({8}, -0.5, 0.5));
    set(gn.weight, Tensor::uniform({8}, 0.5, 1.5));
    set(gn.bias, Tensor::uniform({8}, -0.5, 0.5));
    if (kind == 1) bn.eval();
    auto run = [&](bool fused) {
      Var xv(x.clone(), true);
      bn.zero_grad(), gn.zero_grad();
      // Same running statistics before each run (training mode updates them).
      set(bn.running_mean, Tensor::zeros({8}));
      set(bn.running_var, Tensor::ones({8}));
      Var y = kind < 2 ? (fused ? bn.forward_relu(xv) : relu(bn.forward(xv)))
                       : (fused ? gn.forward_relu(xv) : relu(gn.forward(xv)));
      backward({y}, {gy});
      const Var& w = kind < 2 ? bn.weight : gn.weight;
      const Var& b = kind < 2 ? bn.bias : gn.bias;
      return std::vector<Tensor>{y.data(), xv.grad(), w.grad(), b.grad()};
    };
    const auto fused = run(true), plain = run(false);
    const char* what[] = {"output", "input gradient", "weight gradient", "bias gradient"};
    for (size_t i = 0; i < fused.size(); ++i) {
      INFO(what[i]);
      const auto a = fused[i].to_vector<float>(), b = plain[i].to_vector<float>();
      REQUIRE(a.size() == b.size());
      double worst = 0;
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, static_cast<double>(std::abs(a[k] - b[k])));
      CHECK(worst <= 1e-5);
    }
    // The mask matters: about half the outputs are zero.
    const auto y = fused[0].to_vector<float>();
    const auto zeros = std::count(y.begin(), y.end(), 0.0f);
    CHECK(zeros > static_cast<long>(y.size() / 4));
    CHECK(zeros < static_cast<long>(3 * y.size() / 4));
  }
}
