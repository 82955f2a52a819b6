// Modules, layers and optimisers.
#include <catch2/catch.hpp>

#include <cmath>

#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

namespace {
struct Net : nn::Module {
  Net() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(3, 4));
    bn = register_module("bn", std::make_shared<nn::BatchNorm>(4));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions(4, 2).bias(false)));
  }
  Var forward(const Var& x) { return fc2->forward(relu(bn->forward(fc1->forward(x)))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::BatchNorm> bn;
};
}  // namespace

TEST_CASE("modules name their parameters and buffers", "[nn]") {
  Net net;
  std::vector<std::string> names;
  for (auto& [n, v] : net.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight"});
  CHECK(net.named_buffers().size() == 2);
  CHECK(net.num_parameters() == 12 + 4 + 4 + 4 + 8);
  CHECK(net.parameter_bytes() == 4 * 32);
  net.eval();
  CHECK_FALSE(net.bn->is_training());
  net.train();
  CHECK(net.bn->is_training());
  net.to(DType::Float64);
  CHECK(net.fc1->weight.dtype() == DType::Float64);
  CHECK_THROWS_WITH(net.register_parameter("fc1", Tensor::zeros({1})), Contains("already used"));
}

TEST_CASE("Adam matches a hand-computed update", "[nn][optim]") {
  Var p(Tensor::from_vector<double>({1.0, -2.0}, {2}), true);
  optim::AdamOptions o;
  o.lr = 0.1;
  optim::Adam adam({p}, o);
  for (int step = 1; step <= 2; ++step) {
    adam.zero_grad();
    sum(square(p)).backward();  // g = 2p
    adam.step();
  }
  // Reference, by hand.
  double x = 1.0, m = 0, v = 0;
  for (int t = 1; t <= 2; ++t) {
    const double gr = 2 * x;
    m = 0.9 * m + 0.1 * gr;
    v = 0.999 * v + 0.001 * gr * gr;
    x -= 0.1 * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.999, t))) + 1e-8);
  }
  CHECK(p.data().at({0}) == Approx(x));
}

TEST_CASE("SGD with momentum matches a hand-computed update", "[nn][optim]") {
  Var p(Tensor::from_vector<double>({1.0}, {1}), true);
  optim::SGD sgd({p}, {0.1, 0.9, 0.0, false});
  double x = 1.0, buf = 0;
  for (int t = 0; t < 3; ++t) {
    sgd.zero_grad();
    sum(square(p)).backward();
    sgd.step();
    const double gr = 2 * x;
    buf = t == 0 ? gr : 0.9 * buf + gr;
    x -= 0.1 * buf;
  }
  CHECK(p.data().at({0}) == Approx(x));
}

TEST_CASE("a small network fits a linear target", "[nn]") {
  manual_seed(3);
  nn::Linear fc(2, 1);
  Generator g(4);
  Tensor X = Tensor::uniform({64, 2}, -1, 1, g);
  // y = 2 x0 - 3 x1 + 0.5
  Tensor W = Tensor::from_vector<float>({2, -3}, {2, 1});
  Tensor Y = backend::binary(BinaryOp::Add, backend::matmul(X, W), Tensor::scalar(0.5));
  optim::AdamOptions o;
  o.lr = 0.05;
  optim::Adam adam(fc.parameters(), o);
  double first = 0, last = 0;
  for (int i = 0; i < 400; ++i) {
    adam.zero_grad();
    Var loss = mse_loss(fc.forward(Var(X)), Var(Y));
    if (i == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    adam.step();
  }
  CHECK(first > 1.0);
  CHECK(last < 1e-4);
  CHECK(fc.bias.data().at({0}) == Approx(0.5).margin(0.01));
}
