// The autodiff engine: topological backward, accumulation, graph freeing,
// no-grad mode, detach, and errors.
#include <catch2/catch.hpp>

#include "gradcheck.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

using nanode::testing::leaf;

TEST_CASE("backward of a small expression matches hand derivatives", "[autograd]") {
  Var x = leaf({2.0}, {}), y = leaf({3.0}, {});
  // f = x*y + sin(x) * y^2 ; df/dx = y + cos(x) y^2 ; df/dy = x + 2 y sin(x)
  Var f = x * y + sin(x) * square(y);
  f.backward();
  CHECK(x.grad().item() == Approx(3.0 + std::cos(2.0) * 9.0));
  CHECK(y.grad().item() == Approx(2.0 + 6.0 * std::sin(2.0)));
}

TEST_CASE("gradients accumulate over shared subgraphs and repeated backward", "[autograd]") {
  Var x = leaf({1.0, 2.0}, {2});
  Var h = x * 3.0;
  Var f = sum(h * h + h);  // df/dx = 3 (2h + 1) = 3(6x + 1)
  f.backward();
  CHECK(x.grad().at({0}) == Approx(21.0));
  CHECK(x.grad().at({1}) == Approx(39.0));
  Var g = sum(x);
  g.backward();  // leaves accumulate across passes
  CHECK(x.grad().at({0}) == Approx(22.0));
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("the graph is freed after backward unless retained", "[autograd]") {
  Var x = leaf({1.0, 2.0}, {2});
  Var f = sum(exp(x));
  f.backward(Tensor(), /*retain_graph=*/true);
  f.backward();
  CHECK(x.grad().at({1}) == Approx(2 * std::exp(2.0)));
  CHECK_THROWS_WITH(f.backward(), Contains("already freed"));
}

TEST_CASE("backward on a non-scalar needs a gradient", "[autograd]") {
  Var x = leaf({1.0, 2.0}, {2});
  Var y = x * 2.0;
  CHECK_THROWS_WITH(y.backward(), Contains("not a scalar"));
  CHECK_THROWS_WITH(y.backward(Tensor::ones({3}, DType::Float64)), Contains("gradient of shape [3]"));
  y.backward(Tensor::from_vector<double>({1.0, -1.0}, {2}));
  CHECK(x.grad().at({1}) == Approx(-2.0));
  Var c(Tensor::ones({1}));
  CHECK_THROWS_WITH(c.backward(), Contains("does not require grad"));
}

TEST_CASE("no-grad mode and detach cut the graph", "[autograd]") {
  Var x = leaf({1.0}, {1});
  {
    NoGradGuard ng;
    Var y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
  }
  Var y = x * 2.0;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  Var d = y.detach();
  CHECK(d.is_leaf());
  CHECK_FALSE(d.requires_grad());
  Var z = d * x;  // only x's path is differentiated
  z.backward(Tensor::ones({1}, DType::Float64));
  CHECK(x.grad().at({0}) == Approx(2.0));
}

TEST_CASE("retain_grad keeps an intermediate gradient", "[autograd]") {
  Var x = leaf({1.0, -1.0}, {2});
  Var h = x * 2.0;
  h.retain_grad();
  Var f = sum(h * h);
  f.backward();
  CHECK(h.grad().at({0}) == Approx(4.0));
  CHECK(x.grad().at({1}) == Approx(-8.0));
}

TEST_CASE("deep graphs backpropagate and are destroyed without recursion", "[autograd]") {
  Var x = leaf({0.5}, {1});
  Var h = x;
  for (int i = 0; i < 200000; ++i) h = h * 1.0;
  Var f = sum(h);
  f.backward();
  CHECK(x.grad().at({0}) == 1.0);
  // A deep graph dropped without backward must not overflow the stack either.
  Var g = x;
  for (int i = 0; i < 200000; ++i) g = g + 0.0;
  g = Var();
  SUCCEED("destroyed a 200000-node chain");
}

TEST_CASE("ops reject bad input with errors naming op and shapes", "[autograd][errors]") {
  Var a(Tensor::zeros({2, 3})), b(Tensor::zeros({4, 5}));
  CHECK_THROWS_WITH(a + b, Contains("add: shapes [2, 3] and [4, 5] cannot be broadcast"));
  CHECK_THROWS_WITH(matmul(a, b), Contains("matmul: inner dimensions differ: [2, 3] x [4, 5]"));
  CHECK_THROWS_WITH(sum(a, {2}), Contains("sum: axis 2 is out of range for a 2-D tensor"));
  CHECK_THROWS_WITH(softmax(a, -3), Contains("softmax: axis -3 is out of range"));
  Var c(Tensor::zeros({2, 3}, DType::Float64));
  CHECK_THROWS_WITH(a * c, Contains("mul: dtypes differ"));
  CHECK_THROWS_WITH(conv2d(Var(Tensor::zeros({1, 2, 5, 5})), Var(Tensor::zeros({3, 4, 3, 3}))),
                    Contains("conv2d: input has 2 channels but weight [3, 4, 3, 3] expects 4"));
  CHECK_THROWS_WITH(linear(Var(Tensor::zeros({2, 3})), Var(Tensor::zeros({4, 5}))),
                    Contains("linear: input [2, 3] does not end in 5 features"));
  CHECK_THROWS_WITH(concat({a, b}, 0), Contains("concat: shape [4, 5] does not match [2, 3]"));
  CHECK_THROWS_WITH(reshape(a, {4, 2}), Contains("cannot view [2, 3]"));
  CHECK_THROWS_WITH(cross_entropy(Var(Tensor::zeros({2, 3})), Tensor::from_vector<int32_t>({0, 3}, {2})),
                    Contains("target 3 in row 1 is outside [0, 3)"));
  CHECK_THROWS_WITH(max_pool2d(Var(Tensor::zeros({1, 1, 2, 2})), 3), Contains("larger than the padded input"));
}

TEST_CASE("basis_combine's gradient, summed over many uses in one sweep, equals the sum of its outer products",
          "[autograd][basis]") {
  // W_s = sum_k z_s[k] A[k] at 5 "times", each used by its own op; A also used directly.
  Generator gen(17);
  Var A(Tensor::uniform({3, 2, 4}, -1, 1, gen, DType::Float64), true);
  const std::vector<std::vector<double>> zs{{1, 0.5, -2}, {0.3, 0.1, 0.7}, {-1, 2, 0}, {0.25, -0.5, 1.5}, {2, 2, 2}};
  std::vector<Tensor> us;
  auto loss_of = [&](const Var& coeffs) {
    Var loss = sum(square(coeffs)) * 0.5;  // a direct use: dA += A
    for (size_t s = 0; s < zs.size(); ++s) loss = loss + sum(basis_combine(coeffs, zs[s]) * Var(us[s]));
    return loss;
  };
  for (size_t s = 0; s < zs.size(); ++s) us.push_back(Tensor::uniform({2, 4}, -1, 1, gen, DType::Float64));
  // Hand-computed: dA[k] = A[k] + sum_s z_s[k] u_s.
  const auto a = A.data().to_vector<double>();
  std::vector<double> want(a.size());
  for (size_t k = 0; k < 3; ++k)
    for (size_t j = 0; j < 8; ++j) {
      double v = a[k * 8 + j];
      for (size_t s = 0; s < zs.size(); ++s) v += zs[s][k] * us[s].to_vector<double>()[j];
      want[k * 8 + j] = v;
    }
  loss_of(A).backward();
  const auto got = A.grad().to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == Approx(want[i]).margin(1e-12));
  // Through a non-leaf (coefficients computed from A): dA = 3 * (3 A + sum_s z_s u_s).
  Var A2(A.data(), true);
  loss_of(A2 * 3.0).backward();
  const auto got2 = A2.grad().to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) CHECK(got2[i] == Approx(3 * (want[i] + 2 * a[i])).margin(1e-12));
  // grad() gives the same as backward(), and a second backward() accumulates.
  Var A3(A.data(), true);
  const auto g3 = grad({loss_of(A3)}, {}, {A3})[0].to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) CHECK(g3[i] == Approx(want[i]).margin(1e-12));
  loss_of(A).backward();
  const auto twice = A.grad().to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) CHECK(twice[i] == Approx(2 * want[i]).margin(1e-12));
  // The sweep itself against outer_scale, term by term, in float32.
  const Tensor g0 = Tensor::uniform({5000}, -1, 1, gen), g1 = Tensor::uniform({5000}, -1, 1, gen);
  const Tensor sum2 = backend::outer_sum({{1.5, -2.0}, {0.25, 4.0}}, {g0, g1}, Shape{2, 5000});
  const auto s2 = sum2.to_vector<float>(), e0 = backend::basis_combine_backward(g0, {1.5, -2.0}).to_vector<float>(),
             e1 = backend::basis_combine_backward(g1, {0.25, 4.0}).to_vector<float>();
  for (size_t i = 0; i < s2.size(); ++i) REQUIRE(s2[i] == Approx(e0[i] + e1[i]).margin(1e-5));
}
