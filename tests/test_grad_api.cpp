// nanode::grad(): torch.autograd.grad's semantics — values, no .grad touched,
// stopping at the inputs, freeing only the nodes it ran, unused inputs, errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "gradcheck.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;
using nanode::testing::leaf;

TEST_CASE("grad returns d outputs / d inputs and touches no .grad", "[autograd][grad]") {
  Var x = leaf({2.0}, {}), y = leaf({3.0}, {});
  Var f = x * y + sin(x) * square(y);  // df/dx = y + cos(x) y^2, df/dy = x + 2 y sin(x)
  auto g = grad(f, {x, y});
  REQUIRE(g.size() == 2);
  CHECK(g[0].item<double>() == Approx(3.0 + std::cos(2.0) * 9.0).epsilon(1e-15));
  CHECK(g[1].item<double>() == Approx(2.0 + 6.0 * std::sin(2.0)).epsilon(1e-15));
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(y.grad().defined());
  // Only y asked for: x still untouched, and the result is the same number.
  Var f2 = x * y + sin(x) * square(y);
  CHECK(grad(f2, {y})[0].item<double>() == g[1].item<double>());
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("grad with several outputs and seeds sums their vector-Jacobian products", "[autograd][grad]") {
  Var x = leaf({1.0, 2.0}, {2});
  Var a = x * 3.0, b = square(x);
  const Tensor ga = Tensor::from_vector<double>({1.0, -1.0}, {2}), gb = Tensor::from_vector<double>({0.5, 2.0}, {2});
  auto g = grad({a, b}, {ga, gb}, {x});
  // 3 ga + 2 x gb
  CHECK(g[0].to_vector<double>() == std::vector<double>{3.0 + 2 * 1 * 0.5, -3.0 + 2 * 2 * 2.0});
  // The same input twice gets the same gradient twice.
  Var c = sum(x * x);
  auto gg = grad(c, {x, x});
  CHECK(gg[0].to_vector<double>() == std::vector<double>{2.0, 4.0});
  CHECK(gg[1].to_vector<double>() == gg[0].to_vector<double>());
  // An output that is itself an input: its seed.
  CHECK(grad(x, {x}, Tensor::from_vector<double>({7.0, 8.0}, {2}))[0].to_vector<double>() ==
        std::vector<double>{7.0, 8.0});
}

TEST_CASE("grad stops at non-leaf inputs and frees only the nodes it ran", "[autograd][grad]") {
  Var w = leaf({0.5, -1.5}, {2});
  Var c = w * 2.0;                  // a non-leaf made before
  Var f = sum(tanh(c * c));         // f depends on w only through c
  auto g = grad(f, {c});            // d f / d c, not through to w
  const auto cv = c.data().to_vector<double>();
  for (size_t i = 0; i < 2; ++i) {
    const double th = std::tanh(cv[i] * cv[i]);
    CHECK(g[0].to_vector<double>()[i] == Approx((1 - th * th) * 2 * cv[i]).epsilon(1e-14));
  }
  CHECK_FALSE(w.grad().defined());
  // The graph from f to c was run and freed ...
  CHECK_THROWS_WITH(grad(f, {c}), Contains("already freed"));
  // ... but c's own graph was not: backprop through it still works.
  c.backward(g[0]);
  CHECK(w.grad().to_vector<double>()[0] == Approx(2 * g[0].to_vector<double>()[0]));
}

TEST_CASE("grad with retain_graph runs twice, and backward still accumulates", "[autograd][grad]") {
  Var x = leaf({1.0, 2.0}, {2});
  Var f = sum(exp(x));
  auto g1 = grad(f, {x}, Tensor(), /*retain_graph=*/true);
  auto g2 = grad(f, {x}, Tensor(), /*retain_graph=*/true);
  CHECK(g1[0].to_vector<double>() == g2[0].to_vector<double>());
  f.backward();
  f = sum(exp(x));
  f.backward();
  CHECK(x.grad().to_vector<double>()[1] == Approx(2 * std::exp(2.0)));
}

TEST_CASE("grad: unused inputs and bad calls are clear errors", "[autograd][grad][errors]") {
  Var x = leaf({1.0}, {1}), y = leaf({2.0}, {1});
  Var f = sum(x * 3.0);
  CHECK_THROWS_WITH(grad(f, {x, y}, Tensor(), true), Contains("input 1") && Contains("allow_unused"));
  auto g = grad(f, {x, y}, Tensor(), false, /*allow_unused=*/true);
  CHECK(g[0].item<double>() == 3.0);
  CHECK_FALSE(g[1].defined());
  Var z(Tensor::ones({1}, DType::Float64));
  Var h = sum(x * 2.0);
  CHECK_THROWS_WITH(grad(h, {z}), Contains("does not require grad"));
  CHECK_THROWS_WITH(grad(Var(Tensor::ones({1})), {x}), Contains("does not require grad"));
  Var v = x * 2.0;
  CHECK_THROWS_WITH(grad(v * Var(Tensor::ones({1}, DType::Float64)), {x}, Tensor::ones({2}, DType::Float64)),
                    Contains("gradient of shape [2]"));
  Var named = leaf({1.0}, {1});
  named.set_name("alpha");
  CHECK_THROWS_WITH(grad(sum(x * 1.0), {named}), Contains("'alpha'"));
}

TEST_CASE("grad with one input behind another counts the paths through it, as PyTorch does", "[autograd][grad]") {
  Var w = leaf({0.5, 2.0}, {2});
  Var c = w * 2.0;
  Var f = sum(c * c + w);  // df/dc = 2c; df/dw = 1 + 2c * 2 through c
  auto g = grad(f, {c, w}, Tensor(), /*retain_graph=*/true);
  CHECK(g[0].to_vector<double>() == std::vector<double>{2.0, 8.0});
  CHECK(g[1].to_vector<double>() == std::vector<double>{1.0 + 4.0, 1.0 + 16.0});
  // The ODE modes' variant stops at every input: w's gradient then excludes c's path.
  auto s = detail::grad_stopping({f}, {Tensor()}, {c, w});
  CHECK(s[0].to_vector<double>() == std::vector<double>{2.0, 8.0});
  CHECK(s[1].to_vector<double>() == std::vector<double>{1.0, 1.0});
  CHECK_FALSE(w.grad().defined());
}
