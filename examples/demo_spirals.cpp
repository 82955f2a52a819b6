// A first demo of the engine: a small MLP learns to separate two interleaved
// spirals, trained with Adam; prints the loss falling and the final accuracy.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>

#include "cli_common.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;

int main(int argc, char** argv) {
  CLI::App app{"nanode demo: an MLP on two spirals"};
  int steps = 1500, points = 512, width = 64, threads = 2;
  uint64_t seed = 0;
  double lr = 0.01;
  app.add_option("--steps", steps, "training steps")->check(cli::integer(1, 100000000));
  app.add_option("--points", points, "points per spiral")->check(cli::integer(1, 10000000));
  app.add_option("--width", width, "hidden width")->check(cli::integer(1, 65536));
  app.add_option("--lr", lr, "Adam learning rate")->check(cli::number(1e-12, 10.0));
  app.add_option("--seed", seed, "random seed")->check(cli::unsigned64());
  app.add_option("--threads", threads, "CPU threads")->check(cli::integer(1, 1024));
  CLI11_PARSE(app, argc, argv);
  set_num_threads(threads);
  manual_seed(seed);

  // Two spirals: r = t, angle = 3.5 t pi (+ pi for the second class), plus noise.
  Generator gen(seed + 1);
  const int n = 2 * points;
  std::vector<float> xy(static_cast<size_t>(2 * n));
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int cls = i % 2;
    const double t = 0.1 + 0.9 * gen.uniform();
    const double a = 3.5 * M_PI * t + cls * M_PI;
    xy[static_cast<size_t>(2 * i)] = static_cast<float>(t * std::cos(a) + 0.02 * gen.normal());
    xy[static_cast<size_t>(2 * i + 1)] = static_cast<float>(t * std::sin(a) + 0.02 * gen.normal());
    labels[static_cast<size_t>(i)] = cls;
  }
  Var X(Tensor::from_vector(xy, {n, 2}));
  Tensor Y = Tensor::from_vector(labels, {n});

  nn::Linear l1(2, width), l2(width, width), l3(width, 2);
  std::vector<Var> params;
  for (auto* m : {&l1, &l2, &l3})
    for (auto& p : m->parameters()) params.push_back(p);
  optim::AdamOptions o;
  o.lr = lr;
  optim::Adam adam(params, o);
  auto forward = [&](const Var& x) { return l3.forward(tanh(l2.forward(tanh(l1.forward(x))))); };

  std::printf("training a %d-%d-%d-2 MLP on %d points (two spirals)\n", 2, width, width, n);
  for (int step = 0; step <= steps; ++step) {
    adam.zero_grad();
    Var loss = cross_entropy(forward(X), Y);
    if (!std::isfinite(loss.item())) {
      std::fprintf(stderr, "error: loss became %f at step %d\n", loss.item(), step);
      return 1;
    }
    if (step % (steps / 10 > 0 ? steps / 10 : 1) == 0) std::printf("step %5d  loss %.4f\n", step, loss.item());
    if (step == steps) break;
    loss.backward();
    adam.step();
  }
  NoGradGuard ng;
  const auto logits = forward(X).data().to_vector<float>();
  int correct = 0;
  for (int i = 0; i < n; ++i)
    correct += (logits[static_cast<size_t>(2 * i + 1)] > logits[static_cast<size_t>(2 * i)] ? 1 : 0) ==
               labels[static_cast<size_t>(i)];
  std::printf("training accuracy: %.2f%%\n", 100.0 * correct / n);
  return 0;
}
