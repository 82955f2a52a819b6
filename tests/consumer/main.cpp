// Uses the installed headers (and nanode::cuda when installed): a gradient.
#include <cmath>
#include <cstdio>
#include <string>

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
  bool backend_ok = true;
#ifdef NANODE_CONSUMER_BACKEND
  // Linked with a CUDA backend: it registered itself, and (emulated, or with a
  // GPU) a tanh on cuda:0 matches the CPU's.
  backend_ok = std::string(cuda_backend_name()) == NANODE_CONSUMER_BACKEND;
  std::printf("consumer: CUDA backend '%s' (expected '%s'), %d device(s)\n", cuda_backend_name(),
              NANODE_CONSUMER_BACKEND, cuda_device_count());
  if (backend_ok && cuda_device_count() > 0) {
    const Tensor h = Tensor::from_vector<float>({-1.0f, 0.25f, 2.0f}, {3});
    const auto d = tanh(Var(h.to(Device::cuda(0)))).data().to_vector<float>();
    const auto c = tanh(Var(h)).data().to_vector<float>();
    for (size_t i = 0; i < 3; ++i) backend_ok = backend_ok && std::abs(d[i] - c[i]) < 1e-6f;
  }
#endif
  return std::abs(got - expect) < 1e-12 && back == got && conv_ok && backend_ok ? 0 : 1;
}
