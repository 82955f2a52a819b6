#pragma once
// Host-only declarations of the CUDA launchers compiled into nanode::cuda
// (kernels/*.cu). This header needs no nvcc and no CUDA headers; the functions
// exist only when the program links nanode::cuda (NANODE_WITH_CUDA is then
// defined). Pointers are device pointers unless a name says host.
#include <cstddef>
#include <cstdint>

#include "nanode/backend/op_codes.hpp"

namespace nanode::cuda {

/// Number of usable CUDA devices; 0 when there is no driver or no device.
int device_count();
/// A one-line description of the device (name, compute capability, memory).
const char* device_name(int device);

void* malloc_device(size_t bytes, int device);
void free_device(void* ptr, size_t bytes, int device);
/// Returns every cached block to the driver.
void empty_cache(int device);

void copy_host_to_device(void* dst, const void* src, size_t bytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t bytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t bytes, int device);
/// Copies `rows` rows of `width` bytes between pitched device buffers.
void copy_rows_device(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width,
                      int64_t rows, int device);
void synchronize(int device);

void fill_f32(float* out, int64_t n, float value, int device);
void fill_i32(int32_t* out, int64_t n, int32_t value, int device);

/// out[i] = a[ia] op b[ib] over a collapsed broadcast layout (see BroadcastDesc).
void binary_f32(BinaryOp op, const float* a, const float* b, float* out, const BroadcastDesc& d,
                int device);
/// y = op(x) with scalar parameters p0, p1 (see UnaryOp).
void unary_f32(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1, int device);
/// gx = g * op'(x) (y = op(x) is passed for ops whose derivative uses it).
void unary_backward_f32(UnaryOp op, const float* g, const float* x, const float* y, float* gx,
                        int64_t n, float p0, float p1, int device);
/// y += alpha * x
void axpy_f32(float alpha, const float* x, float* y, int64_t n, int device);
/// Up to kMaxLincombTerms device pointers (null = absent) and their coefficients.
constexpr int kMaxLincombTerms = 64;
struct LincombTerms {
  int n = 0;
  const float* k[kMaxLincombTerms] = {};
  float c[kMaxLincombTerms] = {};
};
/// out = x + sum_j c_j k_j (x may be null).
void lincomb_f32(const float* x, const LincombTerms& terms, float* out, int64_t n, int device);
/// W = sum_k z_k A[k] for A [K, n] (the time-basis combination W(t)).
void basis_combine_f32(const float* a, const float* z_host, int nk, float* out, int64_t n, int device);
/// g[k, i] = z_k * gw[i].
void outer_scale_f32(const float* gw, const float* z_host, int nk, float* g, int64_t n, int device);
/// sum_i (err_i / (atol + rtol max(|a_i|, |b_i|)))^2.
double scaled_sq_sum_f32(const float* err, const float* a, const float* b, int64_t n, double atol, double rtol,
                         int device);
/// One Adam/AdamW update (see cpu::adam_step).
void adam_step_f32(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                   float eps, float weight_decay, float c1, float c2, bool decoupled, int device);
/// out[o, i] = sum_r x[o, r, i]
void sum_f32(const float* x, float* out, int64_t outer, int64_t r, int64_t inner, int device);
/// Row-major strided-batched GEMM: C = alpha op(A) op(B) + beta C.
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb,
              int64_t stride_b, float beta, float* c, int64_t ldc, int64_t stride_c,
              int64_t batch, int device);
/// out = x permuted: out index order is perm of the input axes (ndim <= 5).
void permute_f32(const float* x, float* out, const PermuteDesc& d, int device);

}  // namespace nanode::cuda
