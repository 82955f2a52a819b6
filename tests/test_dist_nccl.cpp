// The NCCL backend of nanode::dist on a real GPU: a world of one (or, under
// mpiexec on a machine with a GPU per rank, several), an all-reduce of CUDA
// tensors and the gradient reducer on CUDA parameters. Exits 77 (ctest: Skipped)
// with a message when no CUDA device is present.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "nanode/dist/nccl.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    failures += !ok;
  };
  try {
    if (cuda_device_count() == 0) {
      std::printf("test_dist_nccl: skipped: no CUDA device (backend %s)\n", cuda_backend_name());
      dist::finalize();
      return 77;
    }
    const int W = dist::world_size(), r = dist::rank();
    const int device = dist::local_rank() % cuda_device_count();
    dist::use_nccl(device);
    check(dist::backend().name().rfind("nccl", 0) == 0, "the backend is NCCL's");
    const Device dev = Device::cuda(device);
    // Rank r holds r + 1 everywhere: the sum is W (W + 1) / 2.
    Tensor a = Tensor::full({1000}, r + 1.0, DType::Float32, dev), b = Tensor::full({3, 5}, 2.0 * (r + 1), DType::Float64, dev);
    dist::all_reduce_sum({a});
    dist::all_reduce_sum({b});
    const double s = W * (W + 1) / 2.0;
    bool all = true;
    for (float v : a.cpu().to_vector<float>()) all = all && v == static_cast<float>(s);
    check(all, "float32 all-reduce of a CUDA tensor");
    all = true;
    for (double v : b.cpu().to_vector<double>()) all = all && v == 2 * s;
    check(all, "float64 all-reduce of a CUDA tensor");
    // The reducer on CUDA parameters: the ranks' mean gradient.
    manual_seed(4);
    nn::Linear l(8, 4);
    l.to(dev);
    Generator g(10 + static_cast<uint64_t>(r));
    const Tensor x = Tensor::uniform({5, 8}, -1, 1, g);
    sum(square(l.forward(Var(x.to(dev))))).backward();
    std::vector<Tensor> expect{l.weight.grad().cpu().clone(), l.bias.grad().cpu().clone()};
    dist::all_reduce_sum(expect);  // over MPI, on the host
    l.weight.zero_grad(), l.bias.zero_grad();
    dist::GradientReducer red({l.weight, l.bias});
    red.backward(sum(square(l.forward(Var(x.to(dev))))));
    double worst = 0;
    for (int k = 0; k < 2; ++k) {
      const auto got = (k ? l.bias : l.weight).grad().cpu().to_vector<float>(), want = expect[k].to_vector<float>();
      for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(got[i] - want[i] / W)));
    }
    check(worst < 1e-5, "the gradient reducer averages CUDA gradients over NCCL");
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    ++failures;
  }
  dist::finalize();
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
