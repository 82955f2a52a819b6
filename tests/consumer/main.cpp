// Uses the installed headers (and nanode::cuda when installed): a gradient.
#include <cmath>
#include <cstdio>

#include <nanode/data/safetensors.hpp>
#include <nanode/nanode.hpp>

int main() {
  using namespace nanode;
  Var x(Tensor::from_vector<double>({0.5, -1.0}, {2}), true);
  Var f = sum(tanh(x) * x);
  f.backward();
  const double expect = std::tanh(0.5) + 0.5 * (1 - std::pow(std::tanh(0.5), 2));
  const double got = x.grad().at({0});
  std::printf("consumer: d/dx x tanh(x) at 0.5 = %.12f (expected %.12f), cuda built: %d\n", got, expect,
              cuda_built() ? 1 : 0);
  // nanode::data: a safetensors round trip.
  data::save_safetensors("consumer.safetensors", {{"g", x.grad()}});
  const double back = data::load_safetensors("consumer.safetensors").at("g").at({0});
  return std::abs(got - expect) < 1e-12 && back == got ? 0 : 1;
}
