// Elementwise CUDA kernels: fill, broadcast binary ops, unary maps and their
// derivatives, axpy, the Adam update, sums and strided gathers. Each mirrors a CPU
// reference in include/nanode/backend/cpu/; tests/test_cuda.cpp compares them.
#include "common.cuh"
#include "nanode/backend/unary_ops.hpp"

namespace nanode::NANODE_KERNEL_NS {

using detail::blocks_for;
using detail::kThreads;
using detail::use_device;

#define NANODE_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <class T>
__global__ void fill_kernel(T* out, int64_t n, T v) {
  NANODE_GRID_STRIDE(i, n) out[i] = v;
}

void fill_f32(float* out, int64_t n, float value, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(fill_kernel<float>, blocks_for(n), kThreads, device, out, n, value);
}
void fill_i32(int32_t* out, int64_t n, int32_t value, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(fill_kernel<int32_t>, blocks_for(n), kThreads, device, out, n, value);
}

// ---- binary ------------------------------------------------------------------------

// The op's scalar formula is its f in backend/unary_ops.hpp (namespace binary).
template <class Op>
__device__ void binary_contiguous_loop(const float* a, const float* b, float* out, int64_t n) {
  NANODE_GRID_STRIDE(i, n) out[i] = Op::f(a[i], b[i]);
}
template <class Op>
__device__ void binary_strided_loop(const float* a, const float* b, float* out, const BroadcastDesc& d, int64_t n) {
  NANODE_GRID_STRIDE(i, n) {
    int64_t r = i, oa = 0, ob = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      const int64_t idx = r % d.size[k];
      r /= d.size[k];
      oa += idx * d.stride_a[k];
      ob += idx * d.stride_b[k];
    }
    out[i] = Op::f(a[oa], b[ob]);
  }
}

__global__ void binary_contiguous(BinaryOp op, const float* a, const float* b, float* out, int64_t n) {
  switch (op) {
#define NANODE_BINARY_CASE(Op) \
  case BinaryOp::Op: binary_contiguous_loop<binary::Op>(a, b, out, n); break;
    NANODE_BINARY_OPS(NANODE_BINARY_CASE)
#undef NANODE_BINARY_CASE
  }
}

__global__ void binary_strided(BinaryOp op, const float* a, const float* b, float* out, BroadcastDesc d, int64_t n) {
  switch (op) {
#define NANODE_BINARY_CASE(Op) \
  case BinaryOp::Op: binary_strided_loop<binary::Op>(a, b, out, d, n); break;
    NANODE_BINARY_OPS(NANODE_BINARY_CASE)
#undef NANODE_BINARY_CASE
  }
}

void binary_f32(BinaryOp op, const float* a, const float* b, float* out, const BroadcastDesc& d, int device) {
  const int64_t n = d.numel();
  if (n == 0) return;
  use_device(device);
  if (d.ndim == 1 && d.stride_a[0] == 1 && d.stride_b[0] == 1)
    NANODE_LAUNCH(binary_contiguous, blocks_for(n), kThreads, device, op, a, b, out, n);
  else
    NANODE_LAUNCH(binary_strided, blocks_for(n), kThreads, device, op, a, b, out, d, n);
}

// ---- unary -------------------------------------------------------------------------

// Each op's scalar formula is its f / df in backend/unary_ops.hpp; the switch
// over ops (generated from NANODE_UNARY_OPS) is outside the grid-stride loop.
template <class Op>
__device__ void unary_loop(const float* x, float* y, int64_t n, float p0, float p1) {
  NANODE_GRID_STRIDE(i, n) y[i] = Op::f(x[i], p0, p1);
}
template <class Op>
__device__ void unary_backward_loop(const float* g, const float* x, const float* y, float* gx, int64_t n, float p0) {
  NANODE_GRID_STRIDE(i, n) gx[i] = Op::df(g[i], x ? x[i] : 0.f, y ? y[i] : 0.f, p0);
}

__global__ void unary_kernel(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1) {
  switch (op) {
#define NANODE_UNARY_CASE(Op) \
  case UnaryOp::Op: unary_loop<unary::Op>(x, y, n, p0, p1); break;
    NANODE_UNARY_OPS(NANODE_UNARY_CASE)
#undef NANODE_UNARY_CASE
  }
}

__global__ void unary_backward_kernel(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n,
                                      float p0) {
  switch (op) {
#define NANODE_UNARY_CASE(Op) \
  case UnaryOp::Op: unary_backward_loop<unary::Op>(g, x, y, gx, n, p0); break;
    NANODE_UNARY_OPS(NANODE_UNARY_CASE)
#undef NANODE_UNARY_CASE
  }
}

void unary_f32(UnaryOp op, const float* x, float* y, int64_t n, float p0, float p1, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(unary_kernel, blocks_for(n), kThreads, device, op, x, y, n, p0, p1);
}

void unary_backward_f32(UnaryOp op, const float* g, const float* x, const float* y, float* gx, int64_t n, float p0,
                        float p1, int device) {
  (void)p1;
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(unary_backward_kernel, blocks_for(n), kThreads, device, op, g, x, y, gx, n, p0);
}

__global__ void axpy_kernel(float alpha, const float* x, float* y, int64_t n) {
  NANODE_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

void axpy_f32(float alpha, const float* x, float* y, int64_t n, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(axpy_kernel, blocks_for(n), kThreads, device, alpha, x, y, n);
}

__global__ void adam_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                            float eps, float wd, float c1, float c2, bool decoupled) {
  NANODE_GRID_STRIDE(i, n) {
    float gi = g[i];
    if (wd != 0.f) {
      if (decoupled) p[i] -= lr * wd * p[i];
      else gi += wd * p[i];
    }
    m[i] = b1 * m[i] + (1.f - b1) * gi;
    v[i] = b2 * v[i] + (1.f - b2) * gi * gi;
    p[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
  }
}

void adam_step_f32(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                   float eps, float weight_decay, float c1, float c2, bool decoupled, int device) {
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(adam_kernel, blocks_for(n), kThreads, device, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, c1, c2, decoupled);
}

// ---- sums ----------------------------------------------------------------------------

// One block per row: out[o] = sum_j x[o, j].
__global__ void sum_rows_kernel(const float* x, float* out, int64_t r) {
  __shared__ float partial[kThreads];
  const float* row = x + blockIdx.x * r;
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < r; j += blockDim.x) s += row[j];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) partial[threadIdx.x] += partial[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// One thread per output: out[o, i] = sum_j x[o, j, i].
__global__ void sum_middle_kernel(const float* x, float* out, int64_t outer, int64_t r, int64_t inner) {
  NANODE_GRID_STRIDE(t, outer * inner) {
    const int64_t o = t / inner, i = t % inner;
    const float* p = x + o * r * inner + i;
    float s = 0.f;
    for (int64_t j = 0; j < r; ++j) s += p[j * inner];
    out[t] = s;
  }
}

void sum_f32(const float* x, float* out, int64_t outer, int64_t r, int64_t inner, int device) {
  if (outer * inner == 0) return;
  use_device(device);
  if (inner == 1 && outer <= 65535 * 32)
    NANODE_LAUNCH(sum_rows_kernel, static_cast<unsigned>(outer), kThreads, device, x, out, r);
  else
    NANODE_LAUNCH(sum_middle_kernel, blocks_for(outer * inner), kThreads, device, x, out, outer, r, inner);
}

// ---- strided gather (permute / expand) -----------------------------------------------

__global__ void permute_kernel(const float* x, float* out, PermuteDesc d, int64_t n) {
  NANODE_GRID_STRIDE(i, n) {
    int64_t r = i, off = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      off += (r % d.size[k]) * d.in_stride[k];
      r /= d.size[k];
    }
    out[i] = x[off];
  }
}

void permute_f32(const float* x, float* out, const PermuteDesc& d, int device) {
  int64_t n = 1;
  for (int k = 0; k < d.ndim; ++k) n *= d.size[k];
  if (n == 0) return;
  use_device(device);
  NANODE_LAUNCH(permute_kernel, blocks_for(n), kThreads, device, x, out, d, n);
}

}  // namespace nanode::NANODE_KERNEL_NS
