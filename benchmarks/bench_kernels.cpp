// Kernel microbenchmarks W4 (time-basis evaluation) and W5 (Householder chains) of
// DESIGN.md §4, in the style of llm.c's dev/cuda: a float64 reference on the CPU,
// each version validated against it, then timed; bandwidth or FLOP/s beside the
// device's own copy bandwidth or GEMM, measured by this program in the same run.
// Runs on the CPU (--device cpu) and on a GPU (--device cuda).
//
// W4: W(t) = sum_k z_k(t) A_k, d = 10 trig (K = 21 terms), 2^20 weights; forward
//     and backward, each one pass over memory; "unfused" evaluates z on the host
//     and passes it to the combination kernel, "fused" evaluates z in the kernel.
// W5: k = N = 256 reflections applied to 256 vectors: the chain composed of
//     per-reflection ops (3 per reflection), the fused sequential kernel, compact
//     WY (GEMMs + one triangular solve), and a GEMM with the dense matrix.
//
// Lines starting "summary:" are collected by scripts/gpu-check.sh.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "nanode/nanode.hpp"

using namespace nanode;

namespace {

/// Median ms per call: `batches` batches of `iters` calls, synchronised per batch
/// (launch latency overlaps the previous call, as in a training loop).
template <class F>
double time_ms(F&& f, Device dev, int iters, int batches = 7) {
  for (int i = 0; i < 3; ++i) f();
  synchronize(dev);
  std::vector<double> per;
  for (int b = 0; b < batches; ++b) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    synchronize(dev);
    per.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters);
  }
  std::sort(per.begin(), per.end());
  return per[per.size() / 2];
}

/// max |got - want| / max(1, max |want|), both brought to the CPU in float64.
double rel_err(const Tensor& got, const Tensor& want) {
  const auto g = got.to(Device::cpu()).to_vector<double>(), w = want.to(Device::cpu()).to_vector<double>();
  if (g.size() != w.size()) return INFINITY;
  double scale = 1, worst = 0;
  for (double v : w) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::abs(g[i] - w[i]);
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return worst / scale;
}

struct Validated {
  bool ok = true;
  void check(const char* what, double err, double tol) {
    if (!(err <= tol)) {
      std::printf("  VALIDATION FAILED: %s: relative error %.3g > %.3g\n", what, err, tol);
      ok = false;
    }
  }
};

void summary(const std::string& dev, const char* workload, const std::string& figure, const char* target, bool met) {
  std::printf("summary: %s | %s | %s | %s | %s\n", dev.c_str(), workload, figure.c_str(), target,
              target[0] == '-' ? "-" : met ? "met" : "NOT MET");
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

bool run_w4(Device dev, int iters, Validated& val) {
  const int64_t n = int64_t{1} << 20;
  tv::TrigBasis basis(10);
  const int64_t K = basis.size();
  BasisSpec spec;
  basis.spec(spec);
  const double t = 0.37;
  Generator gen(4);
  const Tensor a64 = Tensor::uniform({K, n}, -1, 1, gen).to(DType::Float64);
  const Tensor gw64 = Tensor::uniform({n}, -1, 1, gen).to(DType::Float64);
  const std::vector<double> z = basis.eval(t);
  const Tensor want = backend::basis_combine(a64, z), want_back = backend::basis_combine_backward(gw64, z);
  const Tensor a = a64.to(DType::Float32).to(dev), gw = gw64.to(DType::Float32).to(dev);

  val.check("W4 unfused forward", rel_err(backend::basis_combine(a, basis.eval(t)), want), 1e-5);
  val.check("W4 fused forward", rel_err(backend::basis_combine_at(a, spec, t), want), 1e-5);
  val.check("W4 fused backward", rel_err(backend::basis_combine_at_backward(gw, spec, t), want_back), 1e-6);

  const double fwd_bytes = static_cast<double>(K + 1) * n * 4, copy_bytes = 2.0 * K * n * 4;
  const double copy = time_ms([&] { (void)a.clone(); }, dev, iters);
  const double unfused = time_ms([&] { (void)backend::basis_combine(a, basis.eval(t)); }, dev, iters);
  const double fused = time_ms([&] { (void)backend::basis_combine_at(a, spec, t); }, dev, iters);
  const double back = time_ms([&] { (void)backend::basis_combine_at_backward(gw, spec, t); }, dev, iters);
  const auto gbs = [](double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; };
  const double copy_gbs = gbs(copy_bytes, copy);
  std::printf("W4 basis evaluation, trig d = 10 (K = %lld), %lld weights, float32\n", static_cast<long long>(K),
              static_cast<long long>(n));
  std::printf("  %-44s %10s %10s %10s\n", "version", "ms", "GB/s", "of copy");
  const auto row = [&](const char* name, double bytes, double ms) {
    std::printf("  %-44s %10.4f %10.1f %9.1f%%\n", name, ms, gbs(bytes, ms), 100 * gbs(bytes, ms) / copy_gbs);
  };
  row("copy of A (the device's copy bandwidth)", copy_bytes, copy);
  row("forward, z on the host (basis_combine)", fwd_bytes, unfused);
  row("forward, z in the kernel (basis_combine_at)", fwd_bytes, fused);
  row("backward dA_k = z_k dW (fused)", fwd_bytes, back);
  const double frac = gbs(fwd_bytes, fused) / copy_gbs;
  const bool gpu = dev.is_cuda();
  summary(dev.str(), "W4 fused basis forward, of copy bandwidth", fmt("%.1f%%", 100 * frac), gpu ? ">=85%" : "-",
          frac >= 0.85);
  summary(dev.str(), "W4 fused basis backward, of copy bandwidth",
          fmt("%.1f%%", 100 * gbs(fwd_bytes, back) / copy_gbs), gpu ? ">=85%" : "-",
          gbs(fwd_bytes, back) / copy_gbs >= 0.85);
  std::fflush(stdout);
  return true;
}

bool run_w5(Device dev, int iters, Validated& val) {
  const int64_t N = 256, k = 256, B = 256;
  Generator gen(5);
  // Unit reflection vectors (compact WY assumes them), in float64 for the reference.
  Tensor v64 = Tensor::normal({k, N}, 0, 1, gen).to(DType::Float64);
  {
    double* p = v64.data<double>();
    for (int64_t i = 0; i < k; ++i) {
      double s = 0;
      for (int64_t c = 0; c < N; ++c) s += p[i * N + c] * p[i * N + c];
      for (int64_t c = 0; c < N; ++c) p[i * N + c] /= std::sqrt(s);
    }
  }
  const Tensor x64 = Tensor::uniform({B, N}, -1, 1, gen).to(DType::Float64);
  const Tensor want = backend::householder_chain(x64, v64);  // the CPU loop in float64
  const Tensor v = v64.to(DType::Float32).to(dev), x = x64.to(DType::Float32).to(dev);
  const Tensor v32 = v64.to(DType::Float32);
  std::vector<Tensor> rows;  // v_i as [1, N], for the composed chain
  for (int64_t i = 0; i < k; ++i)
    rows.push_back(Tensor::from_vector(std::vector<float>(v32.data<float>() + i * N, v32.data<float>() + (i + 1) * N),
                                       {1, N})
                       .to(dev));

  const auto composed = [&] {
    Tensor y = x;
    for (int64_t i = k - 1; i >= 0; --i) {
      const Tensor& vi = rows[static_cast<size_t>(i)];
      y = backend::lincomb(y, {backend::matmul(backend::matmul(y, vi, false, true), vi)}, {-2.0});
    }
    return y;
  };
  const auto fused = [&] { return backend::householder_chain(x, v); };
  // Compact WY: M^T applied as x - ((x U^T) S^{-T}) U, S = I/2 + striu(U U^T).
  std::vector<float> mask(static_cast<size_t>(k * k), 0.f), half(static_cast<size_t>(k * k), 0.f);
  for (int64_t i = 0; i < k; ++i) {
    half[static_cast<size_t>(i * k + i)] = 0.5f;
    for (int64_t j = i + 1; j < k; ++j) mask[static_cast<size_t>(i * k + j)] = 1.f;
  }
  const Tensor upper = Tensor::from_vector(mask, {k, k}).to(dev), half_eye = Tensor::from_vector(half, {k, k}).to(dev);
  const auto cwy = [&] {
    const Tensor gram = backend::matmul(v, v, false, true);
    const Tensor S = backend::binary(BinaryOp::Add, half_eye, backend::binary(BinaryOp::Mul, gram, upper));
    const Tensor Pt = backend::matmul(v, x, false, true);  // (x U^T)^T = U x^T [k, B]
    const Tensor Qt = detail::triangular_solve_tensor(S, Pt, /*upper=*/true, /*trans=*/false);
    return backend::lincomb(x, {backend::matmul(Qt, v, true, false)}, {-1.0});
  };
  // The application alone, S built once per set of vectors (as a layer reusing
  // M(t) for a whole batch would).
  const Tensor S_once = backend::binary(BinaryOp::Add, half_eye, backend::binary(BinaryOp::Mul, backend::matmul(v, v, false, true), upper));
  const auto cwy_apply = [&] {
    const Tensor Qt = detail::triangular_solve_tensor(S_once, backend::matmul(v, x, false, true), true, false);
    return backend::lincomb(x, {backend::matmul(Qt, v, true, false)}, {-1.0});
  };
  // The dense orthogonal matrix M^T (applied as x M^T), built once.
  Tensor eye(Tensor::zeros({N, N}, DType::Float32));
  for (int64_t i = 0; i < N; ++i) eye.data<float>()[i * N + i] = 1.f;
  const Tensor Mt = backend::householder_chain(eye.to(dev), v);  // I M^T
  const auto gemm = [&] { return backend::matmul(x, Mt); };

  val.check("W5 composed sequential chain", rel_err(composed(), want), 2e-4);
  val.check("W5 fused sequential kernel", rel_err(fused(), want), 2e-4);
  val.check("W5 compact WY", rel_err(cwy(), want), 2e-4);
  val.check("W5 compact WY, apply only", rel_err(cwy_apply(), want), 2e-4);
  val.check("W5 dense GEMM", rel_err(gemm(), want), 2e-4);

  const double t_comp = time_ms(composed, dev, std::max(1, iters / 20), 5);
  const double t_fused = time_ms(fused, dev, iters);
  const double t_cwy = time_ms(cwy, dev, iters);
  const double t_apply = time_ms(cwy_apply, dev, iters);
  const double t_gemm = time_ms(gemm, dev, iters);
  const double flops_seq = 4.0 * B * N * k;  // per reflection and row: a dot and an axpy
  const double flops_cwy = 2.0 * k * k * N + 2.0 * k * B * N + 1.0 * k * k * B + 2.0 * B * k * N;
  const double flops_gemm = 2.0 * B * N * N;
  std::printf("W5 Householder, k = N = %lld reflections applied to B = %lld vectors, float32\n",
              static_cast<long long>(k), static_cast<long long>(B));
  std::printf("  %-44s %10s %10s %12s\n", "version", "ms", "GFLOP/s", "vs CWY");
  const auto row = [&](const char* name, double flops, double ms) {
    std::printf("  %-44s %10.4f %10.1f %11.2fx\n", name, ms, flops / (ms * 1e-3) / 1e9, ms / t_cwy);
  };
  row("sequential, composed (3 ops per reflection)", flops_seq, t_comp);
  row("sequential, fused kernel", flops_seq, t_fused);
  row("compact WY (GEMMs + triangular solve)", flops_cwy, t_cwy);
  row("compact WY, apply only (S built beforehand)", 2.0 * k * B * N + 1.0 * k * k * B + 2.0 * B * k * N, t_apply);
  row("dense GEMM with M (built beforehand)", flops_gemm, t_gemm);
  const bool gpu = dev.is_cuda();
  summary(dev.str(), "W5 composed sequential / CWY time", fmt("%.1fx", t_comp / t_cwy), gpu ? ">=10x" : "-",
          t_comp / t_cwy >= 10);
  summary(dev.str(), "W5 fused sequential / CWY time", fmt("%.2fx", t_fused / t_cwy), "-", true);
  summary(dev.str(), "W5 CWY / dense GEMM time", fmt("%.2fx", t_cwy / t_gemm), gpu ? "<=2x" : "-", t_cwy / t_gemm <= 2);
  summary(dev.str(), "W5 CWY apply only / dense GEMM time", fmt("%.2fx", t_apply / t_gemm), "-", true);
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nanode kernel microbenchmarks: W4 (time-basis evaluation) and W5 (Householder chains), validated "
               "against a float64 reference, with the device's copy bandwidth and GEMM measured in the same run"};
  std::string device = "cpu";
  int threads = 2, iters = 20;
  std::vector<std::string> only{"w4", "w5"};
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", threads, "CPU threads")->check(CLI::PositiveNumber);
  app.add_option("--iters", iters, "calls per timed batch (the median of 7 batches is printed)")
      ->check(CLI::PositiveNumber);
  app.add_option("--only", only, "workloads to run")->check(CLI::IsMember({"w4", "w5"}))->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  try {
    if (device == "cuda" && !cuda_available()) {
      std::printf("SKIPPED: --device cuda but no CUDA device is present (or nanode was built without CUDA)\n");
      return 0;
    }
    const Device dev = device == "cuda" ? Device::cuda(0) : Device::cpu();
    set_num_threads(threads);
    std::printf("bench_kernels on %s (%s), %d CPU threads\n", dev.str().c_str(),
                dev.is_cuda() ? cuda::device_name(0) : "CPU", threads);
    Validated val;
    for (const auto& w : only) {
      if (w == "w4") run_w4(dev, iters, val);
      if (w == "w5") run_w5(dev, iters, val);
    }
    if (!val.ok) {
      std::fprintf(stderr, "bench_kernels: a version disagrees with the reference (see above)\n");
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  return 0;
}
