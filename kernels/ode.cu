// Kernels of the ODE integrator and the time bases: the Runge-Kutta stage update
// out = x + sum_j c_j k_j, the basis combination W(t) = sum_k z_k A_k and its
// gradient, and the adaptive solvers' scaled error norm. CPU twins:
// cpu::lincomb, cpu::outer_scale, cpu::scaled_sq_sum.
#include <vector>

#include "common.cuh"
#include "nanode/backend/basis_math.hpp"
#include "nanode/backend/unary_ops.hpp"

namespace nanode::NANODE_KERNEL_NS {

using detail::blocks_for;
using detail::check;
using detail::kThreads;
using detail::use_device;

namespace {

// The terms are summed first and x added last (one rounding at x's magnitude),
// as cpu::lincomb does.
__global__ void lincomb_kernel(const float* x, LincombTerms t, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float acc = 0.f;
    for (int j = 0; j < t.n; ++j)
      if (t.k[j]) acc += t.c[j] * t.k[j][i];
    out[i] = x ? acc + x[i] : acc;
  }
}

// The stage fused with the dynamics' last bias and activation: the activation
// value k is written once (later stages read it) and the next stage's input is
// formed from it while it is in a register. The terms are summed in the order of
// lincomb_kernel with k last, then x added, so the numbers equal the unfused
// bias add, activation and lincomb.
template <class Act>
__global__ void bias_act_lincomb_kernel(const float* pre, const float* bias, int64_t cols, const float* x,
                                        LincombTerms t, float c_new, float* k, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float z = bias ? pre[i] + bias[i % cols] : pre[i];
    const float kv = Act::f(z, 0.f, 0.f);
    k[i] = kv;
    float acc = 0.f;
    for (int j = 0; j < t.n; ++j)
      if (t.k[j]) acc += t.c[j] * t.k[j][i];
    acc += c_new * kv;
    out[i] = x ? acc + x[i] : acc;
  }
}

// Every component of the adjoint's augmented state combined in one launch: block
// row blockIdx.y is component c; terms summed in order, then x, as lincomb_kernel.
__global__ void multi_lincomb_kernel(MultiLincomb m) {
  const int c = static_cast<int>(blockIdx.y);
  const int64_t n = m.n[c];
  const float* x = m.x[c];
  float* out = m.out[c];
  const float sign = m.sign[c];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float acc = 0.f;
    for (int j = 0; j < m.terms; ++j)
      if (m.k[c][j]) acc += sign * m.c[j] * m.k[c][j][i];
    out[i] = x ? acc + x[i] : acc;
  }
}

struct Coeffs {
  int n;
  float z[kMaxBasisTerms];
};

// W[i] = sum_k z_k A[k, i]: one thread per weight, K loads strided by n (coalesced).
__global__ void basis_combine_kernel(const float* a, Coeffs z, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float acc = 0.f;
    for (int k = 0; k < z.n; ++k) acc += z.z[k] * a[k * n + i];
    out[i] = acc;
  }
}

__global__ void outer_scale_kernel(const float* gw, Coeffs z, float* g, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = gw[i];
    for (int k = 0; k < z.n; ++k) g[k * n + i] = z.z[k] * v;
  }
}

// The fused time-basis evaluation: each block evaluates z(t) once (thread 0, the
// basis_math code the CPU's basis classes run) into shared memory, then every
// thread combines W[i] = sum_k z_k A[k, i] in one pass over A (workload W4).
__device__ inline void basis_to_shared(const BasisSpec& spec, double t, double* zd) {
  if (threadIdx.x == 0) basis::eval(spec, t, zd);
  __syncthreads();
}

__global__ void basis_eval_combine_kernel(const float* a, BasisSpec spec, double t, float* out, int64_t n) {
  __shared__ double zd[BasisSpec::kMaxSpecTerms];
  basis_to_shared(spec, t, zd);
  const int K = spec.K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    float acc = 0.f;
    for (int k = 0; k < K; ++k) acc += static_cast<float>(zd[k]) * a[k * n + i];
    out[i] = acc;
  }
}

// Its backward: g[k, i] = z_k(t) gw[i], z evaluated the same way.
__global__ void basis_eval_outer_kernel(const float* gw, BasisSpec spec, double t, float* g, int64_t n) {
  __shared__ double zd[BasisSpec::kMaxSpecTerms];
  basis_to_shared(spec, t, zd);
  const int K = spec.K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = gw[i];
    for (int k = 0; k < K; ++k) g[k * n + i] = static_cast<float>(zd[k]) * v;
  }
}

// ---- The sequential Householder chain (workload W5) --------------------------------
// One warp per row of x (kHouseholderRows rows per block), the row in registers
// (kHhPer values per lane); the reflection vectors pass through shared memory a
// chunk at a time, read once per block. Per reflection: one warp reduction of
// (y.v, v.v) and an axpy, no block barrier. CPU twin: cpu::householder_chain.
constexpr int kHhPer = kHouseholderMaxN / 32;
constexpr int kHhChunk = 16;

__device__ inline float warp_sum(float v) {
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

__global__ void householder_chain_kernel(const float* x, const float* v, float* y, int64_t B, int n, int k) {
  __shared__ float vs[kHhChunk][kHouseholderMaxN];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kHouseholderRows + warp;
  const bool live = row < B;
  float yr[kHhPer];
NANODE_UNROLL
  for (int j = 0; j < kHhPer; ++j) {
    const int c = lane + 32 * j;
    yr[j] = live && c < n ? x[row * n + c] : 0.f;
  }
  for (int base = k - 1; base >= 0; base -= kHhChunk) {  // reflections base, base - 1, ...
    const int cnt = base + 1 < kHhChunk ? base + 1 : kHhChunk;
    __syncthreads();  // the previous chunk is no longer read
    for (int e = static_cast<int>(threadIdx.x); e < cnt * n; e += static_cast<int>(blockDim.x))
      vs[e / n][e % n] = v[static_cast<int64_t>(base - e / n) * n + e % n];
    __syncthreads();
    for (int r = 0; r < cnt; ++r) {
      float d = 0.f, s = 0.f;
NANODE_UNROLL
      for (int j = 0; j < kHhPer; ++j) {
        const int c = lane + 32 * j;
        if (c < n) {
          const float vv = vs[r][c];
          d += yr[j] * vv;
          s += vv * vv;
        }
      }
      d = warp_sum(d);
      s = warp_sum(s);
      const float f = 2.f * d / s;
NANODE_UNROLL
      for (int j = 0; j < kHhPer; ++j) {
        const int c = lane + 32 * j;
        if (c < n) yr[j] -= f * vs[r][c];
      }
    }
  }
  if (!live) return;
NANODE_UNROLL
  for (int j = 0; j < kHhPer; ++j) {
    const int c = lane + 32 * j;
    if (c < n) y[row * n + c] = yr[j];
  }
}

// Its backward, from the output: each reflection's input is recovered by applying
// it again (an involution), so nothing is stored. The warps' dL/dv contributions
// meet in shared memory and are summed in warp order into this block's partial
// (deterministic; the caller sums the blocks' partials).
constexpr int kHhChunkBack = 8;

__global__ void householder_chain_backward_kernel(const float* y, const float* g, const float* v, float* gx,
                                                  float* gv_partial, int64_t B, int n, int k) {
  __shared__ float vs[kHhChunkBack][kHouseholderMaxN];
  __shared__ float contrib[kHouseholderRows][kHouseholderMaxN];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kHouseholderRows + warp;
  const bool live = row < B;
  float a[kHhPer], gg[kHhPer];
NANODE_UNROLL
  for (int j = 0; j < kHhPer; ++j) {
    const int c = lane + 32 * j;
    a[j] = live && c < n ? y[row * n + c] : 0.f;
    gg[j] = live && c < n ? g[row * n + c] : 0.f;
  }
  float* part = gv_partial + static_cast<int64_t>(blockIdx.x) * k * n;
  for (int base = 0; base < k; base += kHhChunkBack) {  // reflections base, base + 1, ...
    const int cnt = k - base < kHhChunkBack ? k - base : kHhChunkBack;
    __syncthreads();
    for (int e = static_cast<int>(threadIdx.x); e < cnt * n; e += static_cast<int>(blockDim.x))
      vs[e / n][e % n] = v[static_cast<int64_t>(base + e / n) * n + e % n];
    __syncthreads();
    for (int r = 0; r < cnt; ++r) {
      float yv = 0.f, qv = 0.f, s = 0.f;
NANODE_UNROLL
      for (int j = 0; j < kHhPer; ++j) {
        const int c = lane + 32 * j;
        if (c < n) {
          const float vv = vs[r][c];
          yv += a[j] * vv;
          qv += gg[j] * vv;
          s += vv * vv;
        }
      }
      yv = warp_sum(yv);
      qv = warp_sum(qv);
      s = warp_sum(s);
      const float f = 2.f * yv / s, p = -yv;
      const float cg = -2.f / s * p, ca = -2.f / s * qv, cv = 4.f * p * qv / (s * s), fg = 2.f * qv / s;
NANODE_UNROLL
      for (int j = 0; j < kHhPer; ++j) {
        const int c = lane + 32 * j;
        if (c < n) {
          const float vv = vs[r][c];
          a[j] -= f * vv;
          contrib[warp][c] = live ? cg * gg[j] + ca * a[j] + cv * vv : 0.f;
          gg[j] -= fg * vv;
        }
      }
      __syncthreads();
      for (int c = static_cast<int>(threadIdx.x); c < n; c += static_cast<int>(blockDim.x)) {
        float sum = 0.f;
        for (int w = 0; w < kHouseholderRows; ++w) sum += contrib[w][c];
        part[static_cast<int64_t>(base + r) * n + c] = sum;
      }
      __syncthreads();  // contrib is rewritten by the next reflection
    }
  }
  if (!live) return;
NANODE_UNROLL
  for (int j = 0; j < kHhPer; ++j) {
    const int c = lane + 32 * j;
    if (c < n) gx[row * n + c] = gg[j];
  }
}

__global__ void scaled_sq_kernel(const float* err, const float* a, const float* b, int64_t n, double atol, double rtol,
                                 double* partial) {
  __shared__ double s[kThreads];
  double acc = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const double sc = atol + rtol * fmax(fabs(static_cast<double>(a[i])), fabs(static_cast<double>(b[i])));
    const double r = static_cast<double>(err[i]) / sc;
    acc += r * r;
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

Coeffs make_coeffs(const float* z_host, int nk) {
  // dispatch splits larger bases (backend/dispatch.hpp); this is an internal guard.
  if (nk > kMaxBasisTerms) ::nanode::fail("basis_combine: internal error: ", nk, " basis terms in one launch (at most ", kMaxBasisTerms, ")");
  Coeffs c{};
  c.n = nk;
  for (int k = 0; k < nk; ++k) c.z[k] = z_host[k];
  return c;
}

}  // namespace

void lincomb_f32(const float* x, const LincombTerms& terms, float* out, int64_t n, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(lincomb_kernel, blocks_for(n), kThreads, device, x, terms, out, n);
}

void basis_combine_f32(const float* a, const float* z_host, int nk, float* out, int64_t n, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(basis_combine_kernel, blocks_for(n), kThreads, device, a, make_coeffs(z_host, nk), out, n);
}

void outer_scale_f32(const float* gw, const float* z_host, int nk, float* g, int64_t n, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(outer_scale_kernel, blocks_for(n), kThreads, device, gw, make_coeffs(z_host, nk), g, n);
}

void multi_lincomb_f32(const MultiLincomb& m, int device) {
  if (m.components < 1 || m.components > cuda::kMaxMultiComponents || m.terms > cuda::kMaxMultiTerms)
    ::nanode::fail("multi_lincomb: internal error: ", m.components, " components, ", m.terms, " terms");
  int64_t most = 0;
  for (int c = 0; c < m.components; ++c) most = m.n[c] > most ? m.n[c] : most;
  if (most == 0) return;
  use_device(device);
  NANODE_LAUNCH(multi_lincomb_kernel, dim3(blocks_for(most), static_cast<unsigned>(m.components)), kThreads, device, m);
}

void bias_act_lincomb_f32(const float* pre, const float* bias, int64_t cols, UnaryOp act, const float* x,
                          const LincombTerms& terms, float c_new, float* k, float* out, int64_t n, int device) {
  if (n == 0) return;
  use_device(device);
  switch (act) {
    case UnaryOp::Tanh:
      NANODE_LAUNCH(bias_act_lincomb_kernel<unary::Tanh>, blocks_for(n), kThreads, device, pre, bias, cols, x,
                    terms, c_new, k, out, n);
      return;
    case UnaryOp::Sigmoid:
      NANODE_LAUNCH(bias_act_lincomb_kernel<unary::Sigmoid>, blocks_for(n), kThreads, device, pre, bias, cols, x,
                    terms, c_new, k, out, n);
      return;
    default:
      ::nanode::fail("bias_act_lincomb: internal error: activation ", static_cast<int>(act), " is not fused");
  }
}

void basis_eval_combine_f32(const float* a, const BasisSpec& spec, double t, float* out, int64_t n, int device) {
  if (n == 0) return;
  if (spec.K > BasisSpec::kMaxSpecTerms) ::nanode::fail("basis_combine: internal error: ", spec.K, " terms in one launch");
  use_device(device);
  NANODE_LAUNCH(basis_eval_combine_kernel, blocks_for(n), kThreads, device, a, spec, t, out, n);
}

void basis_eval_outer_f32(const float* gw, const BasisSpec& spec, double t, float* g, int64_t n, int device) {
  if (n == 0) return;
  if (spec.K > BasisSpec::kMaxSpecTerms) ::nanode::fail("basis_combine: internal error: ", spec.K, " terms in one launch");
  use_device(device);
  NANODE_LAUNCH(basis_eval_outer_kernel, blocks_for(n), kThreads, device, gw, spec, t, g, n);
}

void householder_chain_f32(const float* x, const float* v, float* y, int64_t B, int n, int k, int device) {
  if (B == 0) return;
  if (n < 1 || n > kHouseholderMaxN || k < 1)
    ::nanode::fail("householder_chain: internal error: n = ", n, ", k = ", k, " (1 <= n <= ", kHouseholderMaxN, ")");
  use_device(device);
  const auto blocks = static_cast<unsigned>((B + kHouseholderRows - 1) / kHouseholderRows);
  NANODE_LAUNCH(householder_chain_kernel, blocks, 32 * kHouseholderRows, device, x, v, y, B, n, k);
}

void householder_chain_backward_f32(const float* y, const float* g, const float* v, float* gx, float* gv_partial,
                                    int64_t B, int n, int k, int device) {
  if (B == 0) return;
  if (n < 1 || n > kHouseholderMaxN || k < 1)
    ::nanode::fail("householder_chain: internal error: n = ", n, ", k = ", k, " (1 <= n <= ", kHouseholderMaxN, ")");
  use_device(device);
  const auto blocks = static_cast<unsigned>((B + kHouseholderRows - 1) / kHouseholderRows);
  NANODE_LAUNCH(householder_chain_backward_kernel, blocks, 32 * kHouseholderRows, device, y, g, v, gx, gv_partial, B,
                n, k);
}

double scaled_sq_sum_f32(const float* err, const float* a, const float* b, int64_t n, double atol, double rtol,
                         int device) {
  if (n == 0) return 0.0;
  if (detail::capturing(device))
    ::nanode::fail("CUDA graph capture: the adaptive error norm reads a value on the host, which a capture cannot "
                   "(capture fixed-step solves only)");
  use_device(device);
  const unsigned blocks = blocks_for(n) < 1024 ? blocks_for(n) : 1024;
  // Scratch from the caching allocator (a few KiB; not a tensor, so not counted).
  auto* partial = static_cast<double*>(malloc_device(blocks * sizeof(double), device));
  NANODE_LAUNCH(scaled_sq_kernel, blocks, kThreads, device, err, a, b, n, atol, rtol, partial);
  std::vector<double> host(blocks);
  check(cudaMemcpyAsync(host.data(), partial, blocks * sizeof(double), cudaMemcpyDeviceToHost, detail::stream(device)),
        "scaled_sq_sum: copy");
  check(cudaStreamSynchronize(detail::stream(device)), "scaled_sq_sum: copy");
  free_device(partial, blocks * sizeof(double), device);
  double total = 0;
  for (double v : host) total += v;
  return total;
}

}  // namespace nanode::NANODE_KERNEL_NS
