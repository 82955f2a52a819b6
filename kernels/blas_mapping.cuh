#pragma once
// Row-major GEMM and triangular solve expressed as the column-major BLAS calls
// cuBLAS takes. The mapping is shared by the real backend (runtime.cu, which
// hands the calls to cuBLAS) and the emulated one (emulated_runtime.cpp, which
// hands them to a host implementation of the same column-major BLAS definition),
// so the operand swaps and fill-mode flips are checked in CI without a GPU.
#include <cstdint>

#include "nanode/core/error.hpp"

namespace nanode::blas {

enum class Op { N, T };
enum class Fill { Lower, Upper };

inline int int32(int64_t v, const char* what) {
  NANODE_CHECK(v <= 2147483647, what, ": size ", v, " exceeds cuBLAS's int32 limit");
  return static_cast<int>(v);
}

/// Row-major C = alpha op(A) op(B) + beta C, batched with strides: column-major
/// C^T = op(B)^T op(A)^T, i.e. sgemm_strided_batched(op_b, op_a, n, m, k, B, A).
template <class Blas>
void gemm_row_major(Blas& blas, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b,
                    float beta, float* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  const char* what = "matmul";
  blas.sgemm_strided_batched(trans_b ? Op::T : Op::N, trans_a ? Op::T : Op::N, int32(n, what), int32(m, what),
                             int32(k, what), alpha, b, int32(ldb, what), stride_b, a, int32(lda, what), stride_a, beta,
                             c, int32(ldc, what), stride_c, int32(batch, what));
}

/// Row-major y [m, n] = x [m, k] w [n, k]^T + bias [n] (a linear layer with its
/// bias): column-major y^T = w_col^T x_col + bias along the rows of y^T, which is
/// the layout of cuBLASLt's bias epilogue: sgemm_bias(T, N, n, m, k, w, k, x, k,
/// bias, y, n), C = op(A) op(B) + bias[row]. Returns false when the BLAS has no
/// algorithm for it (the caller then adds the bias itself).
template <class Blas>
bool linear_bias_row_major(Blas& blas, int64_t m, int64_t n, int64_t k, const float* x, const float* w,
                           const float* bias, float* y) {
  const char* what = "linear";
  return blas.sgemm_bias(Op::T, Op::N, int32(n, what), int32(m, what), int32(k, what), w, int32(k, what), x,
                         int32(k, what), bias, y, int32(n, what));
}

/// Row-major op(A) X = B, X overwriting B [n, m], A [n, n] triangular (upper or
/// lower): column-major X^T op(A)^T = B^T. Column-major, the stored A is A^T (the
/// other triangle), so: side right, fill flipped, op(A)^T = A_col when not
/// transposed and A_col^T when transposed.
template <class Blas>
void trsm_row_major(Blas& blas, bool upper, bool transpose, int64_t n, int64_t m, const float* a, float* b) {
  const char* what = "triangular_solve";
  blas.strsm_right(upper ? Fill::Lower : Fill::Upper, transpose ? Op::T : Op::N, int32(m, what), int32(n, what), a,
                   int32(n, what), b, int32(m, what));
}

}  // namespace nanode::blas
