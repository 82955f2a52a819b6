#pragma once
// CPU GEMM (Eigen) and axis permutation.
#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "nanode/backend/cpu/parallel.hpp"
#include "nanode/backend/op_codes.hpp"

namespace nanode::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMatMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

/// One GEMM on the calling thread (Eigen's product): row-major C[m, n] = alpha
/// op(A) op(B) + beta C, op(A) m x k, op(B) k x n; A is stored m x k (lda) or,
/// transposed, k x m; likewise B.
template <class T>
void gemm_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                 const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  MatMap<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (beta == T(0)) C.setZero();
    else C *= beta;
    return;
  }
  CMatMap<T> A(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  CMatMap<T> B(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& opA, const auto& opB) {
    if (beta == T(0)) {
      C.noalias() = alpha * (opA * opB);
    } else {
      if (beta != T(1)) C *= beta;
      C.noalias() += alpha * (opA * opB);
    }
  };
  if (!ta && !tb) run(A, B);
  else if (ta && !tb) run(A.transpose(), B);
  else if (!ta && tb) run(A, B.transpose());
  else run(A.transpose(), B.transpose());
}

/// How gemm() splits C: `blocks` slabs of `step` rows (along m) or columns (along
/// n), each a GEMM of its own. A function of the shape only, so a product's bits
/// do not depend on the thread count. Small products stay whole; a slab is at
/// least 64 wide and about 1 MFLOP, at most 8 slabs, cut at multiples of 16.
struct GemmSplit {
  bool rows = true;
  int64_t blocks = 1, step = 0;
};
inline GemmSplit gemm_split(int64_t m, int64_t n, int64_t k) {
  GemmSplit s;
  const int64_t flops = 2 * m * n * k;
  s.rows = m >= n;  // split the larger side: the other operand is packed once per slab
  const int64_t dim = s.rows ? m : n;
  s.blocks = std::max<int64_t>(1, std::min<int64_t>({8, dim / 64, flops >> 20}));
  s.step = s.blocks > 1 ? ((dim + s.blocks - 1) / s.blocks + 15) / 16 * 16 : dim;
  s.blocks = (dim + s.step - 1) / s.step;
  return s;
}

/// Row-major C[m, n] = alpha op(A) op(B) + beta C (see gemm_serial), split into
/// slabs (gemm_split) that the thread pool runs in parallel.
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const GemmSplit s = gemm_split(m, n, k);
  if (s.blocks == 1) {
    gemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  parallel_tasks(s.blocks, [&](int64_t i) {
    const int64_t lo = i * s.step, len = std::min(s.step, (s.rows ? m : n) - lo);
    if (s.rows)  // rows lo.. of C: rows of op(A)
      gemm_serial(ta, tb, len, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc);
    else  // columns lo.. of C: columns of op(B)
      gemm_serial(ta, tb, m, len, k, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc);
  });
}

/// `batch` GEMMs at fixed strides. Small problems run in parallel one per task;
/// large ones one after another, each split by gemm().
template <class T>
void gemm_batched(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                  int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc,
                  int64_t stride_c, int64_t batch) {
  const int64_t flops = m * n * k;
  if (batch > 1 && flops < (int64_t{1} << 20)) {
    const int64_t grain = flops > 0 ? std::max<int64_t>(1, (int64_t{1} << 16) / flops) : batch;
    parallel_for(batch, grain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i)
        gemm(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
    });
  } else {
    for (int64_t i = 0; i < batch; ++i)
      gemm(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
  }
}

/// out (contiguous, sizes d.size) from x read with strides d.in_stride.
template <class T>
void permute(const T* x, T* out, const PermuteDesc& d) {
  const int nd = d.ndim;
  if (nd == 0) {
    out[0] = x[0];
    return;
  }
  const int64_t inner = d.size[nd - 1], s_in = d.in_stride[nd - 1];
  int64_t rows = 1;
  for (int k = 0; k < nd - 1; ++k) rows *= d.size[k];
  if (rows * inner == 0) return;
  parallel_for(rows, inner >= 4096 ? 1 : 4096 / inner, [&](int64_t rb, int64_t re) {
    int64_t idx[5] = {0, 0, 0, 0, 0};
    int64_t r = rb;
    for (int k = nd - 2; k >= 0; --k) {
      idx[k] = r % d.size[k];
      r /= d.size[k];
    }
    for (int64_t row = rb; row < re; ++row) {
      int64_t off = 0;
      for (int k = 0; k < nd - 1; ++k) off += idx[k] * d.in_stride[k];
      T* o = out + row * inner;
      const T* src = x + off;
      if (s_in == 1) {
        for (int64_t j = 0; j < inner; ++j) o[j] = src[j];
      } else {
        for (int64_t j = 0; j < inner; ++j) o[j] = src[j * s_in];
      }
      for (int k = nd - 2; k >= 0; --k) {
        if (++idx[k] < d.size[k]) break;
        idx[k] = 0;
      }
    }
  });
}

}  // namespace nanode::cpu
