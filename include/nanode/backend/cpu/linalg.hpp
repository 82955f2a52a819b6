#pragma once
// CPU GEMM (lane_gemm or Eigen's product) and axis permutation.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include <Eigen/Core>

#include "nanode/backend/cpu/elementwise.hpp"
#include "nanode/backend/cpu/lanes.hpp"
#include "nanode/backend/cpu/parallel.hpp"
#include "nanode/backend/op_codes.hpp"

namespace nanode::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMatMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

/// Whether a product C = op(A) B (+ C) goes to lane_gemm: C's rows are whole SIMD
/// vectors, alpha is 1 and beta 0 or 1. On a 2-core Zen 4 (AVX-512) lane_gemm ran
/// at 98-115 GFLOP/s per core from 64x128x128 to 1024^3 where Eigen's product ran at
/// 70-81 (and at 21-51 for products a few rows tall).
/// Depths above 8192 (B's slab of four vectors over 2 MB) stay with Eigen's
/// blocking.
template <class T>
inline bool lane_gemm_takes(int64_t n, int64_t k, T alpha, T beta) {
  return lane_gemm_fits<T>(n) && k <= 8192 && alpha == T(1) && (beta == T(0) || beta == T(1));
}

/// One GEMM on the calling thread: row-major C[m, n] = alpha op(A) op(B) + beta C,
/// op(A) m x k, op(B) k x n; A is stored m x k (lda) or, transposed, k x m;
/// likewise B. lane_gemm where lane_gemm_takes (and B is not transposed), else
/// Eigen's product.
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
  if (!tb && lane_gemm_takes(n, k, alpha, beta)) {
    lane_gemm<T>(m, n, k, a, ta ? 1 : lda, ta ? lda : 1, b, ldb, beta == T(1), c, ldc);
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

/// A buffer of at least n elements, 64-byte aligned as tensors are, that the
/// calling thread keeps and reuses (not zeroed): the transposed slabs of
/// gemm_lanes_bt and combine_gemm_bt, which a step of a solve asks for many
/// times. A caller holding it calls nothing that takes it again.
template <class T>
T* thread_scratch(int64_t n) {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<T, Free> buf;
  thread_local int64_t size = 0;
  if (size < n) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    T* p = static_cast<T*>(std::aligned_alloc(64, bytes));
    NANODE_CHECK(p != nullptr, "thread_scratch: out of memory for ", n, " elements");  // the old buffer stays
    buf.reset(p);
    size = n;
  }
  return buf.get();
}

/// out [k][n] (row-major) = the transpose of b [n][k] (ldb), in 16 x 16 tiles
/// through a local block (a plain column walk touches a cache line per entry).
template <class T>
void transpose_into(const T* b, int64_t ldb, int64_t n, int64_t k, T* out) {
  constexpr int64_t B = 16;
  for (int64_t j0 = 0; j0 < n; j0 += B)
    for (int64_t q0 = 0; q0 < k; q0 += B) {
      const int64_t jn = std::min(B, n - j0), qn = std::min(B, k - q0);
      T t[B][B];
      if (jn == B && qn == B) {  // whole tiles with constant bounds (twice as fast)
        for (int64_t j = 0; j < B; ++j)
          for (int64_t q = 0; q < B; ++q) t[q][j] = b[(j0 + j) * ldb + q0 + q];
        for (int64_t q = 0; q < B; ++q)
          for (int64_t j = 0; j < B; ++j) out[(q0 + q) * n + j0 + j] = t[q][j];
        continue;
      }
      for (int64_t j = 0; j < jn; ++j)
        for (int64_t q = 0; q < qn; ++q) t[q][j] = b[(j0 + j) * ldb + q0 + q];
      for (int64_t q = 0; q < qn; ++q)
        for (int64_t j = 0; j < jn; ++j) out[(q0 + q) * n + j0 + j] = t[q][j];
    }
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

/// Whether gemm() runs C = op(A) B^T by gemm_lanes_bt (a few rows: transposing B
/// costs more than it saves).
template <class T>
inline bool lanes_bt_takes(int64_t m, int64_t n, int64_t k, T alpha, T beta) {
  return k > 0 && m >= 16 && lane_gemm_takes(n, k, alpha, beta);
}

/// Whether a product of m x n x k runs its slabs on the pool: about 1 MFLOP or
/// more, and not already inside a parallel region.
inline bool product_parallel(int64_t m, int64_t n, int64_t k) {
  return 2 * m * n * k >= (int64_t{1} << 20) && !ThreadPool::in_parallel();
}

/// C = op(A) B^T (or += with `acc`) by lane_gemm, B stored [n][k]: in column slabs
/// four vectors wide, each task transposing its own rows of B (so B^T is in the
/// cache of the core that reads it), and in row slabs only as many as keep the
/// threads busy. lane_gemm gives every entry the same sum whatever the slabs, so
/// this split may follow the thread count.
template <class T>
void gemm_lanes_bt(bool ta, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
                   bool acc, T* c, int64_t ldc) {
  constexpr int64_t W = 4 * kLanes<T>;
  const int64_t cols = (n + W - 1) / W;
  const bool parallel = product_parallel(m, n, k);
  const int64_t threads = ThreadPool::instance().threads();
  const int64_t rows = parallel ? std::clamp<int64_t>((threads + cols - 1) / cols, 1, std::max<int64_t>(1, m / 16)) : 1;
  const int64_t rstep = (m + rows - 1) / rows;
  auto task = [&](int64_t t) {
    const int64_t j0 = (t % cols) * W, jn = std::min(W, n - j0);
    const int64_t i0 = (t / cols) * rstep, in = std::min(rstep, m - i0);
    if (in <= 0) return;
    T* bt = thread_scratch<T>(k * jn);
    transpose_into(b + j0 * ldb, ldb, jn, k, bt);
    lane_gemm<T>(in, jn, k, ta ? a + i0 : a + i0 * lda, ta ? 1 : lda, ta ? lda : 1, bt, jn, acc, c + i0 * ldc + j0,
                 ldc);
  };
  if (parallel) {
    parallel_tasks(cols * rows, task);
  } else {
    for (int64_t t = 0; t < cols * rows; ++t) task(t);
  }
}

/// Whether combine_gemm_bt takes C[m, n] = A W^T with W [n, k]: gemm_lanes_bt's
/// shapes, with at least one column slab per thread (a slab's rows of W are
/// combined by the one task that reads them, so row slabs would combine them twice).
template <class T>
inline bool combine_gemm_bt_takes(int64_t m, int64_t n, int64_t k) {
  if (!lanes_bt_takes<T>(m, n, k, T(1), T(0))) return false;
  const int64_t cols = (n + 4 * kLanes<T> - 1) / (4 * kLanes<T>);
  return cols >= ThreadPool::instance().threads() || !product_parallel(m, n, k);
}

/// C[m, n] = A[m, k] W^T for W [n, k] = sum_j z[j] coef[j] (each coef[j] [n, k]
/// contiguous; null ones skipped): a time-varying linear layer's product without
/// W(t) in memory. Each column slab's task combines the rows of W it reads
/// (lincomb_range: every entry the sum lincomb gives it), transposes them in its
/// cache and runs lane_gemm, so C is gemm(A, lincomb(coef, z))^T's to the bit.
/// One parallel region where the unfused product takes two. Requires
/// combine_gemm_bt_takes(m, n, k).
template <class T>
void combine_gemm_bt(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* const* coef, const T* z,
                     int nk, T* c, int64_t ldc) {
  constexpr int64_t W = 4 * kLanes<T>;
  const int64_t cols = (n + W - 1) / W;
  const bool parallel = product_parallel(m, n, k);
  auto task = [&](int64_t t) {
    const int64_t j0 = t * W, jn = std::min(W, n - j0);
    std::vector<const T*> rows(static_cast<size_t>(nk));
    for (int j = 0; j < nk; ++j) rows[static_cast<size_t>(j)] = coef[j] ? coef[j] + j0 * k : nullptr;
    T* w = thread_scratch<T>(2 * jn * k);  // W's rows, then transposed
    T* wt = w + jn * k;
    detail::lincomb_range<T>(nullptr, rows.data(), z, nk, w, 0, jn * k);
    transpose_into(w, k, jn, k, wt);
    lane_gemm<T>(m, jn, k, a, lda, 1, wt, jn, false, c + j0, ldc);
  };
  if (parallel) {
    parallel_tasks(cols, task);
  } else {
    for (int64_t t = 0; t < cols; ++t) task(t);
  }
}

/// Whether linear_stage takes h [m, k] and wt [k, n]: the shapes gemm() runs
/// x w^T for by gemm_lanes_bt (the graph's product, whose bits it gives).
template <class T>
inline bool linear_stage_takes(int64_t m, int64_t n, int64_t k) {
  return lanes_bt_takes<T>(m, n, k, T(1), T(0));
}

/// A Runge-Kutta stage without a graph whose dynamics end in act(h w^T + bias):
/// kout [m, n] = act(h wt + bias) and out = x + sum_j c[j] k[j] + c_new kout, for
/// h [m, k] (row stride ldh), wt = w^T [k, n] and bias [n]. In slabs of rows, each
/// task runs its rows of the product (lane_gemm) and then the stage on the rows it
/// just wrote: one parallel region where the product and bias_act_lincomb take two,
/// and the product's output is used while it is in the task's cache. Every entry
/// is the one gemm(h, w^T) and bias_act_lincomb give it: lane_gemm's sums do not
/// depend on the slabs, and the activation (bias_act_rows) and lincomb_range run
/// on whole rows as bias_act_lincomb runs them, rows that start on whole SIMD
/// vectors (n is whole vectors; tensors are 64-byte aligned), so no entry takes a
/// scalar edge path in one and a vector path in the other. Requires
/// linear_stage_takes(m, n, k); act Tanh or Sigmoid.
template <class T>
void linear_stage(UnaryOp act, int64_t m, int64_t n, int64_t k, const T* h, int64_t ldh, const T* wt, const T* bias,
                  const T* x, const T* const* ks, const T* c, int nk, T c_new, T* kout, T* out) {
  NANODE_CHECK(linear_stage_takes<T>(m, n, k), "linear_stage: shapes [", m, ", ", k, "] x [", k, ", ", n,
               "] are not whole SIMD vectors wide or have under 16 rows");
  const bool parallel = product_parallel(m, n, k);
  const int64_t tasks = parallel ? std::clamp<int64_t>(ThreadPool::instance().threads(), 1, std::max<int64_t>(1, m / 16)) : 1;
  const int64_t step = (m + tasks - 1) / tasks;
  const detail::StageTerms<T> st(ks, c, nk, kout, c_new);
  detail::with_stage_act(act, "linear_stage", [&](auto op) {
    using Op = decltype(op);
    auto task = [&](int64_t t) {
      const int64_t i0 = t * step, in = std::min(step, m - i0);
      if (in <= 0) return;
      lane_gemm<T>(in, n, k, h + i0 * ldh, ldh, 1, wt, n, false, kout + i0 * n, n);
      detail::bias_act_rows<Op>(kout, bias, n, i0, i0 + in, kout);
      detail::lincomb_range(x, st.k.data(), st.c.data(), st.size(), out, i0 * n, (i0 + in) * n);
    };
    if (parallel) {
      parallel_tasks(tasks, task);
    } else {
      for (int64_t t = 0; t < tasks; ++t) task(t);
    }
  });
}

/// Row-major C[m, n] = alpha op(A) op(B) + beta C (see gemm_serial), split into
/// slabs (gemm_split) that the thread pool runs in parallel.
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (tb && lanes_bt_takes(m, n, k, alpha, beta)) {
    gemm_lanes_bt(ta, m, n, k, a, lda, b, ldb, beta == T(1), c, ldc);
    return;
  }
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
