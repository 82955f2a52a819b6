#pragma once
// The CUDA launchers, reached at run time. A CUDA backend library registers a
// table of them before main: nanode::cuda (kernels/*.cu on a GPU) or
// nanode::cuda_emulated (the same kernel sources run on the CPU, DESIGN.md §5).
// A program links at most one; with none, CUDA tensors are a clear error. No
// preprocessor switch decides which backend runs, so translation units built with
// and without CUDA hold the same inline functions (no ODR hazard).
//
// This header needs no nvcc and no CUDA headers. Pointers are device pointers
// unless a name says host.
#include <cstddef>
#include <cstdint>

#include "nanode/backend/op_codes.hpp"
#include "nanode/core/device_backend.hpp"
#include "nanode/core/error.hpp"

namespace nanode::cuda {

/// Basis terms one basis_combine / outer_scale launch takes (dispatch splits more).
constexpr int kMaxBasisTerms = 256;
/// Up to kMaxLincombTerms device pointers (null = absent) and their coefficients.
constexpr int kMaxLincombTerms = 64;
/// The sequential Householder chain kernels: rows per block (one warp each) and
/// the largest row length they take (dispatch composes other ops beyond it).
constexpr int kHouseholderRows = 8;
constexpr int kHouseholderMaxN = 512;
struct LincombTerms {
  int n = 0;
  const float* k[kMaxLincombTerms] = {};
  float c[kMaxLincombTerms] = {};
};

/// Several lincombs of one coefficient list in one launch (the adjoint's augmented
/// state [x, a, g_1..g_P]): component c is out[c] = x[c] + sum_j sign[c] c[j] k[c][j].
constexpr int kMaxMultiComponents = 16;
constexpr int kMaxMultiTerms = 13;
struct MultiLincomb {
  int components = 0, terms = 0;
  float c[kMaxMultiTerms] = {};
  float sign[kMaxMultiComponents] = {};
  int64_t n[kMaxMultiComponents] = {};
  const float* x[kMaxMultiComponents] = {};
  float* out[kMaxMultiComponents] = {};
  const float* k[kMaxMultiComponents][kMaxMultiTerms] = {};
};

// X(return type, name, (parameters), (arguments)): every launcher a backend provides.
#define NANODE_CUDA_LAUNCHERS(X)                                                                                   \
  /* A one-line description of the device (name, compute capability, memory). */                                  \
  X(const char*, device_name, (int device), (device))                                                             \
  X(void, copy_host_to_device, (void* dst, const void* src, size_t bytes, int device), (dst, src, bytes, device))  \
  X(void, copy_device_to_host, (void* dst, const void* src, size_t bytes, int device), (dst, src, bytes, device))  \
  X(void, copy_device_to_device, (void* dst, const void* src, size_t bytes, int device), (dst, src, bytes, device)) \
  /* Copies `rows` rows of `width` bytes between pitched device buffers. */                                        \
  X(void, copy_rows_device,                                                                                        \
    (void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width, int64_t rows, int device),  \
    (dst, dst_pitch, src, src_pitch, width, rows, device))                                                         \
  X(void, synchronize, (int device), (device))                                                                     \
  /* Kernel launches, library calls and device copies issued so far (all devices): the launch count. */            \
  /* CUDA graphs (CudaGraph): capture the device's stream, end it (the handle), replay, destroy; graph_calls */      \
  /* is the number of device calls the capture recorded. */                                                        \
  X(void, graph_begin, (int device), (device))                                                                     \
  X(bool, graph_capturing, (int device), (device))                                                                 \
  X(void*, graph_end, (int device), (device))                                                                      \
  X(void, graph_replay, (void* graph, int device), (graph, device))                                                \
  X(int64_t, graph_calls, (void* graph), (graph))                                                                  \
  X(void, graph_destroy, (void* graph, int device), (graph, device))                                               \
  X(int64_t, device_calls, (int device), (device))                                                                 \
  X(void, fill_f32, (float* out, int64_t n, float value, int device), (out, n, value, device))                     \
  X(void, fill_i32, (int32_t* out, int64_t n, int32_t value, int device), (out, n, value, device))                 \
  /* out[i] = a[ia] op b[ib] over a collapsed broadcast layout (see BroadcastDesc). */                             \
  X(void, binary_f32, (BinaryOp op, const float* a, const float* b, float* out, const BroadcastDesc& d, int device), \
    (op, a, b, out, d, device))                                                                                    \
  /* y = op(x) with scalar parameters p0, p1 (see UnaryOp). */                                                     \
  X(void, unary_f32, (UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1, int device),            \
    (op, x, y, n, p0, p1, device))                                                                                 \
  /* gx = g * op'(x) (y = op(x) is passed for ops whose derivative uses it). */                                    \
  X(void, unary_backward_f32,                                                                                      \
    (UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float p0, float p1,         \
     int device),                                                                                                  \
    (op, g, x, y, gx, n, p0, p1, device))                                                                          \
  /* y += alpha * x */                                                                                             \
  X(void, axpy_f32, (float alpha, const float* x, float* y, int64_t n, int device), (alpha, x, y, n, device))      \
  /* out = x + sum_j c_j k_j (x may be null; the terms are summed first). */                                       \
  X(void, lincomb_f32, (const float* x, const LincombTerms& terms, float* out, int64_t n, int device),            \
    (x, terms, out, n, device))                                                                                    \
  /* W = sum_k z_k A[k] for A [K, n] (the time-basis combination W(t)). */                                         \
  X(void, basis_combine_f32, (const float* a, const float* z_host, int nk, float* out, int64_t n, int device),     \
    (a, z_host, nk, out, n, device))                                                                               \
  /* The fused basis evaluation: W = sum_k z_k(t) A[k] with z evaluated in the kernel from `spec` (W4), */         \
  /* and its backward g[k, i] = z_k(t) gw[i]. spec.K <= BasisSpec::kMaxSpecTerms. */                               \
  X(void, basis_eval_combine_f32,                                                                                  \
    (const float* a, const BasisSpec& spec, double t, float* out, int64_t n, int device),                         \
    (a, spec, t, out, n, device))                                                                                  \
  X(void, basis_eval_outer_f32, (const float* gw, const BasisSpec& spec, double t, float* g, int64_t n,           \
                                 int device),                                                                      \
    (gw, spec, t, g, n, device))                                                                                   \
  X(void, multi_lincomb_f32, (const MultiLincomb& m, int device), (m, device))                                     \
  /* The RK stage fused with the dynamics' last bias and activation: k = act(pre + bias[i % cols]) (bias may */   \
  /* be null; act Tanh or Sigmoid), out = (sum_j c_j k_j + c_new k) + x (x may be null), one pass. */              \
  X(void, bias_act_lincomb_f32,                                                                                    \
    (const float* pre, const float* bias, int64_t cols, UnaryOp act, const float* x, const LincombTerms& terms,    \
     float c_new, float* k, float* out, int64_t n, int device),                                                    \
    (pre, bias, cols, act, x, terms, c_new, k, out, n, device))                                                    \
  /* Householder chain y = x H(v_{k-1}) ... H(v_0) for x [B, n], v [k, n], n <= kHouseholderMaxN, and its */     \
  /* backward: gx [B, n] and per-block partials of gv [ceil(B / kHouseholderRows), k, n] (summed by the caller). */ \
  X(void, householder_chain_f32, (const float* x, const float* v, float* y, int64_t B, int n, int k, int device),  \
    (x, v, y, B, n, k, device))                                                                                    \
  X(void, householder_chain_backward_f32,                                                                          \
    (const float* y, const float* g, const float* v, float* gx, float* gv_partial, int64_t B, int n, int k,        \
     int device),                                                                                                  \
    (y, g, v, gx, gv_partial, B, n, k, device))                                                                    \
  /* y [m, n] = x [m, k] w [n, k]^T + bias [n] in one cuBLASLt call (bias epilogue); false: no algorithm, */     \
  /* nothing written (the caller adds the bias itself). */                                                         \
  X(bool, linear_bias_f32,                                                                                         \
    (const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k, int device),    \
    (x, w, bias, y, m, n, k, device))                                                                              \
  /* g[k, i] = z_k * gw[i]. */                                                                                     \
  X(void, outer_scale_f32, (const float* gw, const float* z_host, int nk, float* g, int64_t n, int device),        \
    (gw, z_host, nk, g, n, device))                                                                                \
  /* sum_i (err_i / (atol + rtol max(|a_i|, |b_i|)))^2. */                                                         \
  X(double, scaled_sq_sum_f32,                                                                                     \
    (const float* err, const float* a, const float* b, int64_t n, double atol, double rtol, int device),          \
    (err, a, b, n, atol, rtol, device))                                                                            \
  /* One Adam/AdamW update (see cpu::adam_step). */                                                                \
  X(void, adam_step_f32,                                                                                           \
    (float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,       \
     float weight_decay, float c1, float c2, bool decoupled, int device),                                          \
    (p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2, decoupled, device))                               \
  /* out[o, i] = sum_r x[o, r, i] */                                                                               \
  X(void, sum_f32, (const float* x, float* out, int64_t outer, int64_t r, int64_t inner, int device),              \
    (x, out, outer, r, inner, device))                                                                             \
  /* Row-major strided-batched GEMM: C = alpha op(A) op(B) + beta C. */                                            \
  X(void, gemm_f32,                                                                                                \
    (bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,        \
     int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,           \
     int64_t stride_c, int64_t batch, int device),                                                                 \
    (trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch, device)) \
  /* out = x permuted: out index order is perm of the input axes (ndim <= 5). */                                   \
  X(void, permute_f32, (const float* x, float* out, const PermuteDesc& d, int device), (x, out, d, device))         \
  /* Softmax (or log-softmax) along the middle axis of [outer, n, inner], and its backward. */                      \
  X(void, softmax_f32, (const float* x, float* y, int64_t outer, int64_t n, int64_t inner, bool log, int device),   \
    (x, y, outer, n, inner, log, device))                                                                          \
  X(void, softmax_backward_f32,                                                                                    \
    (const float* g, const float* y, float* gx, int64_t outer, int64_t n, int64_t inner, bool log, int device),    \
    (g, y, gx, outer, n, inner, log, device))                                                                      \
  /* row_loss[r] = -logp[r, targets[r]] for logp [N, C]. */                                                        \
  X(void, nll_pick_f32, (const float* logp, const int32_t* targets, float* row_loss, int64_t N, int64_t C,         \
                         int device),                                                                              \
    (logp, targets, row_loss, N, C, device))                                                                       \
  /* gx[r, c] = (exp(logp[r, c]) - [c == targets[r]]) * scale. */                                                  \
  X(void, cross_entropy_backward_f32,                                                                              \
    (const float* logp, const int32_t* targets, float* gx, int64_t N, int64_t C, float scale, int device),        \
    (logp, targets, gx, N, C, scale, device))                                                                      \
  /* Group norm over [N, C, S] in G groups: moments, normalisation, backward (see cpu/norm.hpp). */               \
  X(void, group_moments_f32,                                                                                       \
    (const float* x, int64_t N, int64_t C, int64_t S, int64_t G, float eps, float* mean, float* invstd,           \
     int device),                                                                                                  \
    (x, N, C, S, G, eps, mean, invstd, device))                                                                    \
  X(void, group_normalize_f32,                                                                                     \
    (const float* x, float* y, int64_t N, int64_t C, int64_t S, int64_t G, const float* mean,                     \
     const float* invstd, const float* gamma, const float* beta, int device),                                     \
    (x, y, N, C, S, G, mean, invstd, gamma, beta, device))                                                         \
  X(void, group_norm_backward_f32,                                                                                 \
    (const float* g, const float* x, int64_t N, int64_t C, int64_t S, int64_t G, const float* mean,               \
     const float* invstd, const float* gamma, float* gx, float* dgamma, float* dbeta, int device),                \
    (g, x, N, C, S, G, mean, invstd, gamma, gx, dgamma, dbeta, device))                                            \
  /* mask[i] = (u_i > p) * scale with u_i the float32 uniforms of the Philox stream (seed, from block */          \
  /* first_block on), exactly as the CPU draws them. */                                                            \
  X(void, dropout_mask_f32,                                                                                        \
    (float* mask, int64_t n, uint64_t seed, uint64_t first_block, float p, float scale, int device),              \
    (mask, n, seed, first_block, p, scale, device))                                                                \
  /* Max pooling: y and the argmax (flat index in the input plane, -1 for an empty window); backward. */          \
  X(void, max_pool_forward_f32, (const float* x, float* y, int32_t* argmax, const WindowDesc& d, int device),      \
    (x, y, argmax, d, device))                                                                                     \
  X(void, max_pool_backward_f32, (const float* gy, const int32_t* argmax, float* gx, const WindowDesc& d,          \
                                  int device),                                                                     \
    (gy, argmax, gx, d, device))                                                                                   \
  /* Average pooling over kh x kw windows, padding counted as zeros; backward. */                                  \
  X(void, avg_pool_forward_f32, (const float* x, float* y, const WindowDesc& d, int device), (x, y, d, device))     \
  X(void, avg_pool_backward_f32, (const float* gy, float* gx, const WindowDesc& d, int device), (gy, gx, d, device)) \
  /* Batch norm over [N, C, S]: per-channel mean, biased variance and 1/sqrt(var + eps). */                        \
  X(void, channel_moments_f32,                                                                                     \
    (const float* x, int64_t N, int64_t C, int64_t S, float eps, float* mean, float* var, float* invstd,          \
     int device),                                                                                                  \
    (x, N, C, S, eps, mean, var, invstd, device))                                                                  \
  /* y = (x - mean[c]) invstd[c] gamma[c] + beta[c] (gamma, beta may be null). */                                  \
  X(void, channel_normalize_f32,                                                                                   \
    (const float* x, float* y, int64_t N, int64_t C, int64_t S, const float* mean, const float* invstd,           \
     const float* gamma, const float* beta, int device),                                                           \
    (x, y, N, C, S, mean, invstd, gamma, beta, device))                                                            \
  /* Training-mode batch-norm backward (see cpu::batch_norm_backward_train); outputs may be null. */              \
  X(void, batch_norm_backward_f32,                                                                                 \
    (const float* g, const float* x, int64_t N, int64_t C, int64_t S, const float* mean, const float* invstd,      \
     const float* gamma, float* gx, float* dgamma, float* dbeta, int device),                                      \
    (g, x, N, C, S, mean, invstd, gamma, gx, dgamma, dbeta, device))                                               \
  /* Convolution (cross-correlation) over NCHW by the geometry d: y [N, Co, Ho, Wo] = x [N, C, H, W] (*) w */      \
  /* [Co, C, kh, kw], and its gradients. cuDNN on a device; host stand-ins in the emulated build. */              \
  X(void, conv2d_forward_f32, (const float* x, const float* w, float* y, const WindowDesc& d, int device),         \
    (x, w, y, d, device))                                                                                          \
  X(void, conv2d_backward_data_f32, (const float* gy, const float* w, float* gx, const WindowDesc& d, int device),  \
    (gy, w, gx, d, device))                                                                                        \
  X(void, conv2d_backward_filter_f32, (const float* x, const float* gy, float* gw, const WindowDesc& d,           \
                                       int device),                                                                \
    (x, gy, gw, d, device))                                                                                        \
  /* y[n, c, s] += b[c] over [N, C, S]. */                                                                         \
  X(void, add_channel_bias_f32, (float* y, const float* b, int64_t N, int64_t C, int64_t S, int device),           \
    (y, b, N, C, S, device))                                                                                       \
  /* Solves op(A) X = B in place of b [n, m] (row-major) for triangular a [n, n]; cuBLAS on a device. */          \
  X(void, trsm_f32, (bool upper, bool transpose, int64_t n, int64_t m, const float* a, float* b, int device),      \
    (upper, transpose, n, m, a, b, device))

/// The table a backend registers (DeviceBackend::launchers points at one).
struct Launchers {
#define NANODE_CUDA_FIELD(ret, name, params, args) ret(*name) params;
  NANODE_CUDA_LAUNCHERS(NANODE_CUDA_FIELD)
#undef NANODE_CUDA_FIELD
};

/// The registered backend's launchers; a clear error when none is linked.
inline const Launchers& api() {
  const DeviceBackend* b = device_backend();
  NANODE_CHECK(b != nullptr && b->launchers != nullptr,
               "CUDA: this program was built without a CUDA backend (configure with NANODE_CUDA=ON and link "
               "nanode::cuda, or nanode::cuda_emulated for the CPU emulation)");
  return *static_cast<const Launchers*>(b->launchers);
}

/// Number of usable CUDA devices; 0 when no backend is linked, or no driver or device.
inline int device_count() {
  const DeviceBackend* b = device_backend();
  return b ? b->device_count() : 0;
}
inline void* malloc_device(size_t bytes, int device) { return device_memory().malloc_device(bytes, device); }
inline void free_device(void* p, size_t bytes, int device) { device_memory().free_device(p, bytes, device); }
/// Returns every cached block to the driver.
inline void empty_cache(int device) { device_memory().empty_cache(device); }

#define NANODE_CUDA_FORWARD(ret, name, params, args) \
  inline ret name params { return api().name args; }
NANODE_CUDA_LAUNCHERS(NANODE_CUDA_FORWARD)
#undef NANODE_CUDA_FORWARD

}  // namespace nanode::cuda
