// Modules, layers and optimisers.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <thread>

#include "nanode/models/classifier.hpp"
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

TEST_CASE("the thread pool runs every task once, nests inline, passes exceptions on and follows the affinity mask",
          "[nn][threads]") {
  const int cpus = cpu::available_cpus();
  REQUIRE(cpus >= 1);
  set_num_threads(1000);
  CHECK(get_num_threads() == cpus);  // never more threads than CPUs the process may use
  set_num_threads(2);
  CHECK(get_num_threads() == std::min(2, cpus));
  std::vector<std::atomic<int>> hits(1000);
  cpu::parallel_tasks(1000, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
  for (auto& h : hits) REQUIRE(h.load() == 1);
  // Regions of every size from 1 to 70 (the caller claims from the front, the
  // worker from the back, meeting anywhere): each task once, in every region.
  for (int round = 0; round < 20; ++round)
    for (int64_t count = 1; count <= 70; ++count) {
      std::vector<std::atomic<int>> once(static_cast<size_t>(count));
      cpu::parallel_tasks(count, [&](int64_t i) { once[static_cast<size_t>(i)].fetch_add(1); });
      for (int64_t i = 0; i < count; ++i) REQUIRE(once[static_cast<size_t>(i)].load() == 1);
    }
  // Nested: each outer chunk runs an inner parallel_for (inline, in order).
  std::vector<std::atomic<int>> cells(64 * 100);
  cpu::parallel_for(64, 1, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      cpu::parallel_for(100, 10, [&](int64_t ib, int64_t ie) {
        for (int64_t i = ib; i < ie; ++i) cells[static_cast<size_t>(o * 100 + i)].fetch_add(1);
      });
  });
  for (auto& c : cells) REQUIRE(c.load() == 1);
  // A task's exception reaches the caller; the pool works afterwards.
  CHECK_THROWS_WITH(cpu::parallel_tasks(100,
                                        [](int64_t i) {
                                          if (i == 37) fail("task ", i, " failed");
                                        }),
                    Contains("task 37 failed"));
  std::atomic<int64_t> sum{0};
  cpu::parallel_tasks(100, [&](int64_t i) { sum += i; });
  CHECK(sum.load() == 4950);
  // Two threads calling at once: one gets the pool, the other runs inline.
  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int r = 0; r < 200; ++r) cpu::parallel_tasks(16, [&](int64_t i) { total += i; });
  };
  std::thread other(caller);
  caller();
  other.join();
  CHECK(total.load() == 2 * 200 * 120);
}

TEST_CASE("results are bit-identical with 1 and 2 threads: GEMMs split in slabs and a classifier training step",
          "[nn][threads]") {
  if (cpu::available_cpus() < 2) WARN("only one CPU available: 1 and 2 threads are the same here");
  auto run = [](int threads) {
    set_num_threads(threads);
    std::vector<std::vector<float>> out;
    // A product large enough for gemm() to split it (several slabs).
    Generator g(5);
    Tensor a = Tensor::uniform({300, 150}, -1, 1, g), b = Tensor::uniform({150, 260}, -1, 1, g);
    REQUIRE(cpu::gemm_split(300, 260, 150).blocks > 1);
    out.push_back(matmul(Var(a), Var(b)).data().to_vector<float>());
    // lane_gemm's products (C's rows whole vectors), each way round. With B
    // transposed the row slabs follow the thread count: 301 x 64 is one column slab,
    // cut in two row slabs by two threads and not by one.
    Tensor a2 = Tensor::uniform({310, 310}, -1, 1, g), b2 = Tensor::uniform({310, 256}, -1, 1, g);
    for (const int64_t m : {300, 301})
      for (const int64_t n : {256, 64})
        for (bool ta : {false, true})
          for (bool tb : {false, true}) {
            std::vector<float> c(static_cast<size_t>(m * n));
            cpu::gemm<float>(ta, tb, m, n, 150, 1.0f, a2.data<float>(), 310, b2.data<float>(), tb ? 150 : 256, 0.0f,
                             c.data(), n);
            out.push_back(c);
          }
    // One training step of the default classifier (Winograd and im2col convolutions,
    // batch and group norm, pooling, cross-entropy) on 16 images.
    manual_seed(3);
    models::Classifier model(models::ClassifierOptions{});
    Tensor x = Tensor::uniform({16, 1, 28, 28}, 0, 1);
    std::vector<int32_t> lv(16);
    for (size_t i = 0; i < lv.size(); ++i) lv[i] = static_cast<int32_t>(i % 10);
    Var loss = cross_entropy(model.forward(Var(x)), Tensor::from_vector(lv, {16}));
    loss.backward();
    out.push_back(loss.data().to_vector<float>());
    for (auto& p : model.parameters()) out.push_back(p.grad().to_vector<float>());
    return out;
  };
  const auto one = run(1), two = run(2);
  set_num_threads(cpu::default_threads());
  REQUIRE(one.size() == two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(one[i] == two[i]);
  }
}
