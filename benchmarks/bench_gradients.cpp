// How far each gradient mode is from direct backprop through the same solve, so a
// user can choose: a dense T-NANODE (trig order 4, dx/dt = tanh(W(t) x + b(t)) on
// x [32, 16], t in [0, 1]) in float64, for Euler, RK4 and ALF at L = 4, 10, 100.
// Each entry is |g_mode - g_direct| / |g_direct| over the gradients of x0 and every
// parameter (2-norms). A last column gives direct's own distance from the exact
// gradient of the ODE (RK4 direct at L = 4000 stands in for it): the price of the
// discretisation, which no gradient mode changes.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "nanode/nanode.hpp"

using namespace nanode;

namespace {

std::vector<double> gradients(const std::string& method, int64_t steps, ode::Gradient mode,
                              DType dtype = DType::Float64) {
  manual_seed(7);
  tv::FamilyOptions fo;
  fo.order = 4;
  tv::MLPDynamics f("trig", {16, 16}, fo, /*final_tanh=*/true);
  f.to(dtype);
  Generator g(11);
  Var x0(Tensor::uniform({32, 16}, -1, 1, g, DType::Float64).to(dtype), true);
  ode::Options o;
  o.method = method;
  o.steps = steps;
  o.gradient = mode;
  sum(square(ode::odeint_final(f, x0, 0.0, 1.0, o))).backward();
  std::vector<double> all = x0.grad().to(DType::Float64).to_vector<double>();
  for (auto& p : f.parameters())
    for (double v : p.grad().to(DType::Float64).to_vector<double>()) all.push_back(v);
  return all;
}

double rel(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / den);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nanode: each gradient mode's error against direct backprop (Euler, RK4, ALF)"};
  std::vector<int64_t> depths{4, 10, 100};
  int threads = 2;
  app.add_option("--depths", depths, "step counts L")->delimiter(',')->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const auto exact = gradients("rk4", 4000, ode::Gradient::Direct);
    std::printf("| method | L | checkpoint | adjoint | reversible | direct vs the ODE's exact gradient |\n");
    std::printf("|---|---|---|---|---|---|\n");
    for (const std::string method : {"euler", "rk4", "alf"}) {
      for (auto L : depths) {
        const auto direct = gradients(method, L, ode::Gradient::Direct);
        auto cell = [&](ode::Gradient mode) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.1e", rel(gradients(method, L, mode), direct));
          return std::string(buf);
        };
        const bool alf = method == "alf";
        std::printf("| %s | %lld | %s | %s | %s | %.1e |\n", method.c_str(), static_cast<long long>(L),
                    alf ? "n/a" : cell(ode::Gradient::Checkpoint).c_str(),
                    alf ? "n/a" : cell(ode::Gradient::Adjoint).c_str(),
                    alf ? cell(ode::Gradient::Reversible).c_str() : "n/a", rel(direct, exact));
        std::fflush(stdout);
      }
    }

    // In float32 the reversible pass rebuilds states with float32 rounding: its
    // distance from float32 direct backprop, beside float32 direct's own distance
    // from float64 direct (the rounding any float32 gradient carries).
    std::printf("\nfloat32, ALF: | L | reversible vs direct (both float32) | float32 direct vs float64 direct |\n");
    std::printf("|---|---|---|\n");
    for (auto L : depths) {
      const auto d32 = gradients("alf", L, ode::Gradient::Direct, DType::Float32);
      const auto r32 = gradients("alf", L, ode::Gradient::Reversible, DType::Float32);
      const auto d64 = gradients("alf", L, ode::Gradient::Direct);
      std::printf("| %lld | %.1e | %.1e |\n", static_cast<long long>(L), rel(r32, d32), rel(d32, d64));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gradients: %s\n", e.what());
    return 1;
  }
  return 0;
}
