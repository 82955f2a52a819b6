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
  // A stride-2, padding-0 conv of a 4x4 image with a 3x3 kernel is one pixel
  // (GCC 12.2 with AVX-512 once made it padding 2 and returned 3x3).
  Var img(Tensor::ones({1, 1, 4, 4}, DType::Float64));
  Var ker(Tensor::ones({1, 1, 3, 3}, DType::Float64));
  const Tensor c = conv2d(img, ker, Var(), Conv2dOptions(2, 0)).data();
  std::printf("consumer: stride-2 conv shape %s (expected [1, 1, 1, 1])\n", c.shape().str().c_str());
  const bool conv_ok = c.shape() == Shape({1, 1, 1, 1}) && c.at({0, 0, 0, 0}) == 9.0;
  return std::abs(got - expect) < 1e-12 && back == got && conv_ok ? 0 : 1;
}
