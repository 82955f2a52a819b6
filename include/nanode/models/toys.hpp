#pragma once
// The two toys of time dependence (DESIGN.md §1), 1-D state:
//  (a) out and back: fit x(t) = sin(pi t) at 41 points of [0, 1] from x(0) = 0.
//      An autonomous 1-D solution is monotone in t, so Auto cannot (no monotone
//      curve gets below MSE 0.0659); a time-varying one can.
//  (b) flip: fit h(x) = -x on [-1, 1] through 10 Euler steps. With shared weights
//      every step is the same map, and an even number of iterates of one map
//      preserves order, so Auto cannot (MSE near 1/3); time-varying weights can.
#include <cmath>
#include <string>
#include <vector>

#include "nanode/nn/optim.hpp"
#include "nanode/timevarying/families.hpp"

namespace nanode::models {

struct ToyConfig {
  std::string family = "trig";  ///< a dynamics family (auto, trig, bucket, ...)
  int order = 5;                ///< trig order d (2d + 1 terms)
  int64_t width = 16;           ///< hidden width of f
  int64_t iterations = 3000;    ///< Adam steps
  double lr = 0.03;
  bool cosine = true;           ///< cosine learning-rate decay to 0 (else constant)
  uint64_t seed = 0;
};

struct ToyResult {
  double mse = 0;                           ///< final training MSE
  std::vector<double> losses;               ///< per iteration
  std::vector<double> times;                ///< (a): the 41 times; (b): the 11 step times
  std::vector<std::vector<double>> paths;   ///< trajectories: (a) one; (b) one per plotted start
  std::vector<double> targets;              ///< (a): sin(pi t); (b): the starts x0
};

namespace detail {
inline std::shared_ptr<tv::MLPDynamics> toy_dynamics(const ToyConfig& c) {
  manual_seed(c.seed);
  tv::FamilyOptions fo;
  fo.order = c.order;
  return std::make_shared<tv::MLPDynamics>(c.family, std::vector<int64_t>{1, c.width, 1}, fo, false);
}

template <class LossFn>
void fit(tv::MLPDynamics& f, const ToyConfig& c, ToyResult& r, LossFn&& loss_fn) {
  optim::AdamOptions o;
  o.lr = c.lr;
  optim::Adam adam(f.parameters(), o);
  optim::Schedule sched;
  sched.kind = c.cosine ? optim::Schedule::Kind::Cosine : optim::Schedule::Kind::Constant;
  sched.base = c.lr;
  sched.total = c.iterations;
  for (int64_t it = 0; it < c.iterations; ++it) {
    adam.set_lr(sched.at(it));
    adam.zero_grad();
    Var loss = loss_fn();
    const double v = loss.item();
    NANODE_CHECK(std::isfinite(v), "toy training diverged at iteration ", it, " (loss ", v, ")");
    r.losses.push_back(v);
    loss.backward();
    adam.step();
  }
}
}  // namespace detail

/// Toy (a): rk4 with 40 steps, outputs at the 41 grid times.
inline ToyResult train_out_and_back(const ToyConfig& c) {
  auto f = detail::toy_dynamics(c);
  ToyResult r;
  const int n = 41;
  std::vector<double> target(n);
  for (int i = 0; i < n; ++i) {
    r.times.push_back(i / 40.0);
    target[static_cast<size_t>(i)] = std::sin(M_PI * i / 40.0);
  }
  r.targets = target;
  const Var y(Tensor::from_vector(target, {n, 1, 1}).to(DType::Float32));
  const Var x0(Tensor::zeros({1, 1}));
  ode::Options o;
  o.method = "rk4";
  o.steps = n - 1;
  auto solve = [&] { return stack(ode::odeint(*f, x0, r.times, o), 0); };  // [41, 1, 1]
  detail::fit(*f, c, r, [&] { return mse_loss(solve(), y); });
  NoGradGuard ng;
  const Var path = solve();
  r.mse = mse_loss(path, y).item();
  r.paths.push_back(path.data().to_vector<double>());
  return r;
}

/// Toy (b): 10 Euler steps on t in [0, 1]; 64 training points evenly in [-1, 1].
inline ToyResult train_flip(const ToyConfig& c) {
  auto f = detail::toy_dynamics(c);
  ToyResult r;
  const int n = 64, L = 10;
  std::vector<double> xs(n);
  for (int i = 0; i < n; ++i) xs[static_cast<size_t>(i)] = -1.0 + 2.0 * i / (n - 1);
  const Var x0(Tensor::from_vector(xs, {n, 1}).to(DType::Float32));
  const Var y = -x0;
  ode::Options o;
  o.method = "euler";
  o.steps = L;
  detail::fit(*f, c, r, [&] { return mse_loss(ode::odeint_final(*f, x0, 0.0, 1.0, o), y); });
  NoGradGuard ng;
  r.mse = mse_loss(ode::odeint_final(*f, x0, 0.0, 1.0, o), y).item();
  // Trajectories of a few starts through the 10 steps.
  std::vector<double> times;
  for (int k = 0; k <= L; ++k) times.push_back(static_cast<double>(k) / L);
  r.times = times;
  const std::vector<double> starts{-1.0, -0.6, -0.2, 0.2, 0.6, 1.0};
  r.targets = starts;
  const auto states = ode::odeint(*f, Var(Tensor::from_vector(starts, {6, 1}).to(DType::Float32)), times, o);
  r.paths.assign(starts.size(), {});
  for (const auto& s : states) {
    const auto v = s.data().to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) r.paths[i].push_back(v[i]);
  }
  return r;
}

}  // namespace nanode::models
