// Hand-written kernels of the network layers: softmax and log-softmax, the
// cross-entropy pick and its gradient, group norm and batch norm forward and
// backward, max and average pooling forward and backward, and dropout masks drawn
// from the same Philox stream as the CPU's. CPU twins: cpu::softmax /
// softmax_backward, backend::nll_mean / cross_entropy_backward, cpu/norm.hpp,
// cpu/pool.hpp, and backend::generate_random + UnaryOp::Step.
// tests/test_kernels.cpp compares them.
#include "common.cuh"

namespace nanode::NANODE_KERNEL_NS {

using detail::blocks_for;
using detail::kThreads;
using detail::use_device;

#define NANODE_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

namespace {

// ---- block reductions (blockDim.x == kThreads, a power of two) -----------------------

template <class T>
__device__ T block_sum(T v, T* s) {
  s[threadIdx.x] = v;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  const T out = s[0];
  __syncthreads();  // s may be reused by the caller's next reduction
  return out;
}

__device__ float block_max(float v, float* s) {
  s[threadIdx.x] = v;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] = fmaxf(s[threadIdx.x], s[threadIdx.x + w]);
    __syncthreads();
  }
  const float out = s[0];
  __syncthreads();
  return out;
}

// ---- softmax along the middle axis of [outer, n, inner] -----------------------------

// inner == 1: one block per row, the row's max and sum reduced in shared memory.
__global__ void softmax_rows_kernel(const float* x, float* y, int64_t n, bool log_out) {
  __shared__ float s[kThreads];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, xr[j]);
  mx = block_max(mx, s);
  if (!isfinite(mx)) mx = 0.f;
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(xr[j] - mx);
  sum = block_sum(sum, s);
  const float lse = mx + logf(sum), inv = 1.f / sum;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = log_out ? xr[j] - lse : expf(xr[j] - mx) * inv;
}

// inner > 1: one thread per (outer, inner) pair, looping over the n entries.
__global__ void softmax_strided_kernel(const float* x, float* y, int64_t outer, int64_t n, int64_t inner,
                                       bool log_out) {
  NANODE_GRID_STRIDE(oi, outer * inner) {
    const int64_t o = oi / inner, i = oi % inner;
    const float* xr = x + o * n * inner + i;
    float* yr = y + o * n * inner + i;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = fmaxf(mx, xr[j * inner]);
    if (!isfinite(mx)) mx = 0.f;
    float sum = 0.f;
    for (int64_t j = 0; j < n; ++j) sum += expf(xr[j * inner] - mx);
    const float lse = mx + logf(sum), inv = 1.f / sum;
    for (int64_t j = 0; j < n; ++j) yr[j * inner] = log_out ? xr[j * inner] - lse : expf(xr[j * inner] - mx) * inv;
  }
}

// softmax: gx = y (g - sum(g y)); log-softmax: gx = g - exp(y) sum(g).
__global__ void softmax_backward_rows_kernel(const float* g, const float* y, float* gx, int64_t n, bool log_out) {
  __shared__ float s[kThreads];
  const int64_t base = blockIdx.x * n;
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += log_out ? g[base + j] : g[base + j] * y[base + j];
  acc = block_sum(acc, s);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    gx[base + j] = log_out ? g[base + j] - expf(y[base + j]) * acc : y[base + j] * (g[base + j] - acc);
}

__global__ void softmax_backward_strided_kernel(const float* g, const float* y, float* gx, int64_t outer, int64_t n,
                                                int64_t inner, bool log_out) {
  NANODE_GRID_STRIDE(oi, outer * inner) {
    const int64_t o = oi / inner, i = oi % inner, base = o * n * inner + i;
    float acc = 0.f;
    for (int64_t j = 0; j < n; ++j) acc += log_out ? g[base + j * inner] : g[base + j * inner] * y[base + j * inner];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = base + j * inner;
      gx[k] = log_out ? g[k] - expf(y[k]) * acc : y[k] * (g[k] - acc);
    }
  }
}

// ---- cross-entropy ------------------------------------------------------------------

// row_loss[n] = -logp[n, t[n]]
__global__ void nll_pick_kernel(const float* logp, const int32_t* t, float* row_loss, int64_t N, int64_t C) {
  NANODE_GRID_STRIDE(r, N) row_loss[r] = -logp[r * C + t[r]];
}

// gx[n, c] = (exp(logp[n, c]) - [c == t[n]]) * scale
__global__ void cross_entropy_backward_kernel(const float* logp, const int32_t* t, float* gx, int64_t N, int64_t C,
                                              float scale) {
  NANODE_GRID_STRIDE(k, N * C) {
    const int64_t r = k / C, c = k % C;
    gx[k] = (expf(logp[k]) - (c == t[r] ? 1.f : 0.f)) * scale;
  }
}

// ---- group norm over [N, C, S], G groups ----------------------------------------------

// One block per (n, group): mean and 1/sqrt(var + eps), accumulated in double.
__global__ void group_moments_kernel(const float* x, int64_t len, float eps, float* mean, float* invstd) {
  __shared__ double s[kThreads];
  const float* xg = x + blockIdx.x * len;
  double sum = 0;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) sum += xg[j];
  const double m = block_sum(sum, s) / static_cast<double>(len);
  double sq = 0;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) sq += (xg[j] - m) * (xg[j] - m);
  const double v = block_sum(sq, s) / static_cast<double>(len);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = static_cast<float>(m);
    invstd[blockIdx.x] = static_cast<float>(1.0 / sqrt(v + static_cast<double>(eps)));
  }
}

__global__ void group_normalize_kernel(const float* x, float* y, int64_t N, int64_t C, int64_t S, int64_t G,
                                       const float* mean, const float* invstd, const float* gamma, const float* beta) {
  const int64_t cpg = C / G;
  NANODE_GRID_STRIDE(k, N * C * S) {
    const int64_t nc = k / S, n = nc / C, c = nc % C, ng = n * G + c / cpg;
    const float scale = invstd[ng] * (gamma ? gamma[c] : 1.f);
    const float shift = (beta ? beta[c] : 0.f) - mean[ng] * scale;
    y[k] = x[k] * scale + shift;
  }
}

// One block per (n, group): gx = invstd (gamma g - mean(gamma g) - xhat mean(gamma g xhat)).
__global__ void group_norm_backward_input_kernel(const float* g, const float* x, int64_t C, int64_t S, int64_t G,
                                                 const float* mean, const float* invstd, const float* gamma,
                                                 float* gx) {
  __shared__ double s[kThreads];
  const int64_t ng = blockIdx.x, n = ng / G, grp = ng % G, cpg = C / G, len = cpg * S;
  const int64_t off = (n * C + grp * cpg) * S;
  const float mu = mean[ng], is = invstd[ng];
  double sgg = 0, sggx = 0;
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    const float gm = gamma ? gamma[grp * cpg + j / S] : 1.f;
    const double gg = static_cast<double>(gm) * g[off + j];
    sgg += gg;
    sggx += gg * (x[off + j] - mu) * is;
  }
  const double mg = block_sum(sgg, s) / static_cast<double>(len);
  const double mgx = block_sum(sggx, s) / static_cast<double>(len);
  for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    const float gm = gamma ? gamma[grp * cpg + j / S] : 1.f;
    gx[off + j] = is * (gm * g[off + j] - static_cast<float>(mg) - (x[off + j] - mu) * is * static_cast<float>(mgx));
  }
}

// One block per channel: dgamma = sum(g xhat), dbeta = sum(g) over n and s.
__global__ void group_norm_backward_params_kernel(const float* g, const float* x, int64_t N, int64_t C, int64_t S,
                                                  int64_t G, const float* mean, const float* invstd, float* dgamma,
                                                  float* dbeta) {
  __shared__ double s[kThreads];
  const int64_t c = blockIdx.x, cpg = C / G;
  double sg = 0, sgx = 0;
  for (int64_t k = threadIdx.x; k < N * S; k += blockDim.x) {
    const int64_t n = k / S, j = k % S, ng = n * G + c / cpg, off = (n * C + c) * S + j;
    sg += g[off];
    sgx += static_cast<double>(g[off]) * (x[off] - mean[ng]) * invstd[ng];
  }
  sg = block_sum(sg, s);
  sgx = block_sum(sgx, s);
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] = static_cast<float>(sgx);
    if (dbeta) dbeta[c] = static_cast<float>(sg);
  }
}

// ---- dropout ---------------------------------------------------------------------------

// Philox4x32-10, as core/rng.hpp's (its CPU twin): counter (lo, hi, 0, 0), key = seed.
__device__ void philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
    k0 += W0;
    k1 += W1;
  }
}

// mask[i] = (u_i > p) * scale, u_i the i-th float32 uniform of the stream from
// block `first` on: word i % 4 of block first + i / 4, 24 bits, as the CPU draws it.
__global__ void dropout_mask_kernel(float* mask, int64_t n, uint64_t seed, uint64_t first, float p, float scale) {
  NANODE_GRID_STRIDE(i, n) {
    const uint64_t counter = first + static_cast<uint64_t>(i / 4);
    uint32_t c[4] = {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u};
    philox(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    const float u = static_cast<float>(static_cast<double>(c[i % 4] >> 8) * 0x1.0p-24);
    mask[i] = u > p ? scale : 0.f;
  }
}

// ---- pooling over NCHW planes (WindowDesc: C planes per image, Co == C) ------------------

// One thread per output: the window's max (NaN wins, as on the CPU) and its index.
__global__ void max_pool_forward_kernel(const float* x, float* y, int32_t* argmax, WindowDesc d) {
  NANODE_GRID_STRIDE(k, d.N * d.C * d.Ho * d.Wo) {
    const int64_t p = k / (d.Ho * d.Wo), o = k % (d.Ho * d.Wo), oy = o / d.Wo, ox = o % d.Wo;
    const float* xp = x + p * d.H * d.W;
    float best = -INFINITY;
    int64_t best_i = -1;
    bool nan = false;
    for (int64_t i = 0; i < d.kh && !nan; ++i) {
      const int64_t iy = oy * d.sh - d.ph + i;
      if (iy < 0 || iy >= d.H) continue;
      for (int64_t j = 0; j < d.kw; ++j) {
        const int64_t ix = ox * d.sw - d.pw + j;
        if (ix < 0 || ix >= d.W) continue;
        const float v = xp[iy * d.W + ix];
        if (best_i < 0 || v > best || v != v) {
          best = v;
          best_i = iy * d.W + ix;
          if (v != v) {
            nan = true;
            break;
          }
        }
      }
    }
    y[k] = best;
    argmax[k] = static_cast<int32_t>(best_i);
  }
}

// The outputs whose windows cover input row (or column) i: [lo, hi).
__device__ void covering(int64_t i, int64_t k, int64_t s, int64_t p, int64_t n_out, int64_t& lo, int64_t& hi) {
  const int64_t a = i + p - k + 1;  // smallest o*s that still reaches i
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  hi = (i + p) / s + 1;
  if (hi > n_out) hi = n_out;
}

// One thread per input: gathers the gradients of the outputs whose max it was (no atomics).
__global__ void max_pool_backward_kernel(const float* gy, const int32_t* argmax, float* gx, WindowDesc d) {
  NANODE_GRID_STRIDE(k, d.N * d.C * d.H * d.W) {
    const int64_t p = k / (d.H * d.W), q = k % (d.H * d.W), iy = q / d.W, ix = q % d.W;
    int64_t y0, y1, x0, x1;
    covering(iy, d.kh, d.sh, d.ph, d.Ho, y0, y1);
    covering(ix, d.kw, d.sw, d.pw, d.Wo, x0, x1);
    float acc = 0.f;
    for (int64_t oy = y0; oy < y1; ++oy)
      for (int64_t ox = x0; ox < x1; ++ox) {
        const int64_t o = p * d.Ho * d.Wo + oy * d.Wo + ox;
        if (argmax[o] == q) acc += gy[o];
      }
    gx[k] = acc;
  }
}

__global__ void avg_pool_forward_kernel(const float* x, float* y, WindowDesc d) {
  const float scale = 1.f / static_cast<float>(d.kh * d.kw);
  NANODE_GRID_STRIDE(k, d.N * d.C * d.Ho * d.Wo) {
    const int64_t p = k / (d.Ho * d.Wo), o = k % (d.Ho * d.Wo), oy = o / d.Wo, ox = o % d.Wo;
    const float* xp = x + p * d.H * d.W;
    float s = 0.f;
    for (int64_t i = 0; i < d.kh; ++i) {
      const int64_t iy = oy * d.sh - d.ph + i;
      if (iy < 0 || iy >= d.H) continue;
      for (int64_t j = 0; j < d.kw; ++j) {
        const int64_t ix = ox * d.sw - d.pw + j;
        if (ix >= 0 && ix < d.W) s += xp[iy * d.W + ix];
      }
    }
    y[k] = s * scale;
  }
}

__global__ void avg_pool_backward_kernel(const float* gy, float* gx, WindowDesc d) {
  const float scale = 1.f / static_cast<float>(d.kh * d.kw);
  NANODE_GRID_STRIDE(k, d.N * d.C * d.H * d.W) {
    const int64_t p = k / (d.H * d.W), q = k % (d.H * d.W), iy = q / d.W, ix = q % d.W;
    int64_t y0, y1, x0, x1;
    covering(iy, d.kh, d.sh, d.ph, d.Ho, y0, y1);
    covering(ix, d.kw, d.sw, d.pw, d.Wo, x0, x1);
    float acc = 0.f;
    for (int64_t oy = y0; oy < y1; ++oy)
      for (int64_t ox = x0; ox < x1; ++ox) acc += gy[p * d.Ho * d.Wo + oy * d.Wo + ox];
    gx[k] = acc * scale;
  }
}

// ---- batch norm over [N, C, S] ------------------------------------------------------------

// One block per channel: mean, biased variance, 1/sqrt(var + eps) (double sums).
__global__ void channel_moments_kernel(const float* x, int64_t N, int64_t C, int64_t S, float eps, float* mean,
                                       float* var, float* invstd) {
  __shared__ double s[kThreads];
  const int64_t c = blockIdx.x, M = N * S;
  double sum = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) sum += x[((k / S) * C + c) * S + k % S];
  const double m = block_sum(sum, s) / static_cast<double>(M);
  double sq = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    const double v = x[((k / S) * C + c) * S + k % S] - m;
    sq += v * v;
  }
  const double v = block_sum(sq, s) / static_cast<double>(M);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<float>(m);
    var[c] = static_cast<float>(v);
    invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(static_cast<float>(v)) + static_cast<double>(eps)));
  }
}

__global__ void channel_normalize_kernel(const float* x, float* y, int64_t N, int64_t C, int64_t S, const float* mean,
                                         const float* invstd, const float* gamma, const float* beta) {
  NANODE_GRID_STRIDE(k, N * C * S) {
    const int64_t c = (k / S) % C;
    const float scale = invstd[c] * (gamma ? gamma[c] : 1.f);
    const float shift = (beta ? beta[c] : 0.f) - mean[c] * scale;
    y[k] = x[k] * scale + shift;
  }
}

// One block per channel: dgamma = sum(g xhat), dbeta = sum(g),
// gx = invstd gamma (g - mean(g) - xhat mean(g xhat)).
__global__ void batch_norm_backward_kernel(const float* g, const float* x, int64_t N, int64_t C, int64_t S,
                                           const float* mean, const float* invstd, const float* gamma, float* gx,
                                           float* dgamma, float* dbeta) {
  __shared__ double s[kThreads];
  const int64_t c = blockIdx.x, M = N * S;
  const float mu = mean[c], is = invstd[c];
  double sg = 0, sgx = 0;
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    const int64_t off = ((k / S) * C + c) * S + k % S;
    sg += g[off];
    sgx += static_cast<double>(g[off]) * (x[off] - mu);
  }
  sg = block_sum(sg, s);
  sgx = block_sum(sgx, s) * is;
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[c] = static_cast<float>(sgx);
    if (dbeta) dbeta[c] = static_cast<float>(sg);
  }
  if (!gx) return;
  const float kk = is * (gamma ? gamma[c] : 1.f);
  const float mg = static_cast<float>(sg / static_cast<double>(M)), mgx = static_cast<float>(sgx / static_cast<double>(M));
  for (int64_t k = threadIdx.x; k < M; k += blockDim.x) {
    const int64_t off = ((k / S) * C + c) * S + k % S;
    gx[off] = kk * (g[off] - mg - (x[off] - mu) * is * mgx);
  }
}

__global__ void add_channel_bias_kernel(float* y, const float* b, int64_t N, int64_t C, int64_t S) {
  NANODE_GRID_STRIDE(k, N * C * S) y[k] += b[(k / S) % C];
}

}  // namespace

// ---- launchers --------------------------------------------------------------------------

void softmax_f32(const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log_out, int device) {
  if (outer * n * inner == 0) return;
  use_device(device);
  if (inner == 1 && outer <= 2147483647)
    NANODE_LAUNCH(softmax_rows_kernel, static_cast<unsigned>(outer), kThreads, device, x, y, n, log_out);
  else
    NANODE_LAUNCH(softmax_strided_kernel, blocks_for(outer * inner), kThreads, device, x, y, outer, n, inner, log_out);
}

void softmax_backward_f32(const float* g, const float* y, float* gx, int64_t outer, int64_t n, int64_t inner,
                          bool log_out, int device) {
  if (outer * n * inner == 0) return;
  use_device(device);
  if (inner == 1 && outer <= 2147483647)
    NANODE_LAUNCH(softmax_backward_rows_kernel, static_cast<unsigned>(outer), kThreads, device, g, y, gx, n, log_out);
  else
    NANODE_LAUNCH(softmax_backward_strided_kernel, blocks_for(outer * inner), kThreads, device, g, y, gx, outer, n,
                  inner, log_out);
}

void nll_pick_f32(const float* logp, const int32_t* targets, float* row_loss, int64_t N, int64_t C, int device) {
  if (N == 0) return;
  use_device(device);
  NANODE_LAUNCH(nll_pick_kernel, blocks_for(N), kThreads, device, logp, targets, row_loss, N, C);
}

void cross_entropy_backward_f32(const float* logp, const int32_t* targets, float* gx, int64_t N, int64_t C,
                                float scale, int device) {
  if (N * C == 0) return;
  use_device(device);
  NANODE_LAUNCH(cross_entropy_backward_kernel, blocks_for(N * C), kThreads, device, logp, targets, gx, N, C, scale);
}

void group_moments_f32(const float* x, int64_t N, int64_t C, int64_t S, int64_t G, float eps, float* mean,
                       float* invstd, int device) {
  if (N * G == 0) return;
  use_device(device);
  NANODE_LAUNCH(group_moments_kernel, static_cast<unsigned>(N * G), kThreads, device, x, (C / G) * S, eps, mean,
                invstd);
}

void group_normalize_f32(const float* x, float* y, int64_t N, int64_t C, int64_t S, int64_t G, const float* mean,
                         const float* invstd, const float* gamma, const float* beta, int device) {
  if (N * C * S == 0) return;
  use_device(device);
  NANODE_LAUNCH(group_normalize_kernel, blocks_for(N * C * S), kThreads, device, x, y, N, C, S, G, mean, invstd, gamma,
                beta);
}

void group_norm_backward_f32(const float* g, const float* x, int64_t N, int64_t C, int64_t S, int64_t G,
                             const float* mean, const float* invstd, const float* gamma, float* gx, float* dgamma,
                             float* dbeta, int device) {
  if (N * C * S == 0) return;
  use_device(device);
  if (gx)
    NANODE_LAUNCH(group_norm_backward_input_kernel, static_cast<unsigned>(N * G), kThreads, device, g, x, C, S, G,
                  mean, invstd, gamma, gx);
  if (dgamma || dbeta)
    NANODE_LAUNCH(group_norm_backward_params_kernel, static_cast<unsigned>(C), kThreads, device, g, x, N, C, S, G, mean,
                  invstd, dgamma, dbeta);
}

void dropout_mask_f32(float* mask, int64_t n, uint64_t seed, uint64_t first_block, float p, float scale, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(dropout_mask_kernel, blocks_for(n), kThreads, device, mask, n, seed, first_block, p, scale);
}

void max_pool_forward_f32(const float* x, float* y, int32_t* argmax, const WindowDesc& d, int device) {
  const int64_t n = d.N * d.C * d.Ho * d.Wo;
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(max_pool_forward_kernel, blocks_for(n), kThreads, device, x, y, argmax, d);
}

void max_pool_backward_f32(const float* gy, const int32_t* argmax, float* gx, const WindowDesc& d, int device) {
  const int64_t n = d.N * d.C * d.H * d.W;
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(max_pool_backward_kernel, blocks_for(n), kThreads, device, gy, argmax, gx, d);
}

void avg_pool_forward_f32(const float* x, float* y, const WindowDesc& d, int device) {
  const int64_t n = d.N * d.C * d.Ho * d.Wo;
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(avg_pool_forward_kernel, blocks_for(n), kThreads, device, x, y, d);
}

void avg_pool_backward_f32(const float* gy, float* gx, const WindowDesc& d, int device) {
  const int64_t n = d.N * d.C * d.H * d.W;
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(avg_pool_backward_kernel, blocks_for(n), kThreads, device, gy, gx, d);
}

void channel_moments_f32(const float* x, int64_t N, int64_t C, int64_t S, float eps, float* mean, float* var,
                         float* invstd, int device) {
  if (C == 0) return;
  use_device(device);
  NANODE_LAUNCH(channel_moments_kernel, static_cast<unsigned>(C), kThreads, device, x, N, C, S, eps, mean, var, invstd);
}

void channel_normalize_f32(const float* x, float* y, int64_t N, int64_t C, int64_t S, const float* mean,
                           const float* invstd, const float* gamma, const float* beta, int device) {
  if (N * C * S == 0) return;
  use_device(device);
  NANODE_LAUNCH(channel_normalize_kernel, blocks_for(N * C * S), kThreads, device, x, y, N, C, S, mean, invstd, gamma,
                beta);
}

void batch_norm_backward_f32(const float* g, const float* x, int64_t N, int64_t C, int64_t S, const float* mean,
                             const float* invstd, const float* gamma, float* gx, float* dgamma, float* dbeta,
                             int device) {
  if (C == 0) return;
  use_device(device);
  NANODE_LAUNCH(batch_norm_backward_kernel, static_cast<unsigned>(C), kThreads, device, g, x, N, C, S, mean, invstd,
                gamma, gx, dgamma, dbeta);
}

void add_channel_bias_f32(float* y, const float* b, int64_t N, int64_t C, int64_t S, int device) {
  if (N * C * S == 0) return;
  use_device(device);
  NANODE_LAUNCH(add_channel_bias_kernel, blocks_for(N * C * S), kThreads, device, y, b, N, C, S);
}

}  // namespace nanode::NANODE_KERNEL_NS
