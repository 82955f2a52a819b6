#pragma once
// CPU elementwise kernels: broadcast binary ops, unary maps and their derivatives.
// Arithmetic over raw buffers only; shape checks happen in dispatch.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "nanode/backend/cpu/parallel.hpp"
#include "nanode/core/error.hpp"
#include "nanode/backend/op_codes.hpp"
#include "nanode/backend/unary_ops.hpp"

namespace nanode::cpu {

template <class T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

constexpr int64_t kElementwiseGrain = 16384;

template <class T>
void fill(T* out, int64_t n, T value) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) { std::fill(out + b, out + e, value); });
}

template <class To, class From>
void convert(const From* in, To* out, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = static_cast<To>(in[i]);
  });
}

namespace detail {
// out[0:n] = a op b where a and b are either arrays (stride 1) or scalars (stride 0);
// the formula is the op's cpu_f in backend/unary_ops.hpp.
template <class T>
void binary_run(BinaryOp op, const T* a, bool a_scalar, const T* b, bool b_scalar, T* out, int64_t n) {
  ArrMap<T> o(out, n);
  binary::visit(op, [&](auto f) {
    using Op = decltype(f);
    if (!a_scalar && !b_scalar) o = Op::cpu_f(CArrMap<T>(a, n), CArrMap<T>(b, n));
    else if (!a_scalar) o = Op::cpu_f(CArrMap<T>(a, n), *b);
    else if (!b_scalar) o = Op::cpu_f(*a, CArrMap<T>(b, n));
    else o.setConstant(Op::f(*a, *b));
  });
}
}  // namespace detail

/// out (contiguous, d.numel() elements) = a op b over the broadcast layout d.
template <class T>
void binary(BinaryOp op, const T* a, const T* b, T* out, const BroadcastDesc& d) {
  const int nd = d.ndim;
  const int64_t inner = d.size[nd - 1];
  const bool a_scalar = d.stride_a[nd - 1] == 0, b_scalar = d.stride_b[nd - 1] == 0;
  const int64_t rows = d.numel() / (inner > 0 ? inner : 1);
  if (d.numel() == 0) return;
  if (rows == 1) {
    parallel_for(inner, kElementwiseGrain, [&](int64_t s, int64_t e) {
      detail::binary_run(op, a_scalar ? a : a + s, a_scalar, b_scalar ? b : b + s, b_scalar, out + s, e - s);
    });
    return;
  }
  const int64_t grain_rows = inner >= kElementwiseGrain ? 1 : kElementwiseGrain / inner;
  parallel_for(rows, grain_rows, [&](int64_t rb, int64_t re) {
    // Odometer over the outer axes, started at row rb.
    int64_t idx[5] = {0, 0, 0, 0, 0};
    int64_t r = rb;
    for (int k = nd - 2; k >= 0; --k) {
      idx[k] = r % d.size[k];
      r /= d.size[k];
    }
    for (int64_t row = rb; row < re; ++row) {
      int64_t oa = 0, ob = 0;
      for (int k = 0; k < nd - 1; ++k) {
        oa += idx[k] * d.stride_a[k];
        ob += idx[k] * d.stride_b[k];
      }
      detail::binary_run(op, a + oa, a_scalar, b + ob, b_scalar, out + row * inner, inner);
      for (int k = nd - 2; k >= 0; --k) {
        if (++idx[k] < d.size[k]) break;
        idx[k] = 0;
      }
    }
  });
}

/// y = op(x): each op's vectorised formula is its cpu_f in backend/unary_ops.hpp.
template <class T>
void unary(UnaryOp op, const T* x, T* y, int64_t n, T p0, T p1) {
  unary::visit(op, [&](auto o) {
    parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
      CArrMap<T> X(x + b, e - b);
      ArrMap<T> Y(y + b, e - b);
      decltype(o)::cpu_f(X, Y, p0, p1);
    });
  });
}

/// gx = g * d op(x)/dx (cpu_df in backend/unary_ops.hpp); x and y = op(x) are
/// read by the ops whose derivative needs them (null otherwise).
template <class T>
void unary_backward(UnaryOp op, const T* g, const T* x, const T* y, T* gx, int64_t n, T p0, T p1) {
  (void)p1;
  unary::visit(op, [&](auto o) {
    parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
      const int64_t m = e - b;
      CArrMap<T> G(g + b, m), X(x ? x + b : nullptr, x ? m : 0), Y(y ? y + b : nullptr, y ? m : 0);
      ArrMap<T> GX(gx + b, m);
      decltype(o)::cpu_df(G, X, Y, GX, p0);
    });
  });
}

/// y += alpha * x (the accumulation used for gradients and optimisers).
template <class T>
void axpy(T alpha, const T* x, T* y, int64_t n) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    ArrMap<T>(y + b, e - b) += alpha * CArrMap<T>(x + b, e - b);
  });
}

namespace detail {
constexpr int64_t kLincombBlock = 2048;

/// out[q][s, e) = sum_j c[q nk + j] k[j][s, e) for q < NB: NB combinations of the
/// same arrays k[j] (null ones skipped; no term: zeros), only the coefficients
/// differing (a time basis at NB times). In pieces of one 64-byte vector: each
/// piece of an array is loaded once and feeds the NB partial sums, which stay in
/// registers across the terms where the registers hold them (NB = 8 fills all 16
/// on AVX2; AVX-512 has 32). Re-reading the arrays for each combination would
/// thrash L1: they sit a multiple of 4 KiB apart. Every entry is c0 k0, then
/// + c1 k1, ... in j's order, computed by the same vector operations wherever it
/// falls (a last partial piece runs on a zero-padded copy), so results do not
/// depend on NB, on the range or on the compiler's contraction of a * b + c.
template <class T, int NB>
void combine_group(const T* const* k, const T* c, int nk, T* const* out, int64_t s, int64_t e) {
  constexpr int L = 64 / static_cast<int>(sizeof(T));
  using Vec = Eigen::Array<T, L, 1>;
  auto piece = [&](int64_t i, auto len) {  // len < L: the arrays' values copied, zero-padded
    const int64_t m = len;
    Vec acc[NB];
    Vec tail;
    bool first = true;
    for (int j = 0; j < nk; ++j) {
      if (!k[j]) continue;
      const T* kp = k[j] + i;
      if (m < L) {
        tail.setZero();
        std::copy(kp, kp + m, tail.data());
        kp = tail.data();
      }
      const Eigen::Map<const Vec> kv(kp);
      if (first) {
        for (int q = 0; q < NB; ++q) acc[q] = c[q * nk + j] * kv;
        first = false;
      } else {
        for (int q = 0; q < NB; ++q) acc[q] += c[q * nk + j] * kv;
      }
    }
    for (int q = 0; q < NB; ++q) {
      if (m == L) {
        Eigen::Map<Vec> o(out[q] + i);
        if (first) o.setZero();
        else o = acc[q];
      } else if (first) {
        std::fill(out[q] + i, out[q] + i + m, T(0));
      } else {
        std::copy(acc[q].data(), acc[q].data() + m, out[q] + i);
      }
    }
  };
  int64_t i = s;
  for (; i + L <= e; i += L) piece(i, std::integral_constant<int64_t, L>{});
  if (i < e) piece(i, e - i);
}

/// out[s0, e0) = x + sum_j c[j] k[j] over that range (null k[j] are skipped; x
/// may be null). Without x, combine_group; with x, in blocks of kLincombBlock that
/// stay in L1 across the terms, x added last.
template <class T>
void lincomb_range(const T* x, const T* const* k, const T* c, int nk, T* out, int64_t s0, int64_t e0) {
  if (!x) {
    combine_group<T, 1>(k, c, nk, &out, s0, e0);
    return;
  }
  for (int64_t s = s0; s < e0; s += kLincombBlock) {
    const int64_t m = std::min(kLincombBlock, e0 - s);
    ArrMap<T> O(out + s, m);
    bool first = true;
    for (int j = 0; j < nk; ++j) {
      if (!k[j]) continue;
      if (first) O = c[j] * CArrMap<T>(k[j] + s, m);
      else O += c[j] * CArrMap<T>(k[j] + s, m);
      first = false;
    }
    if (first) O = CArrMap<T>(x + s, m);
    else O += CArrMap<T>(x + s, m);
  }
}
}  // namespace detail

/// out = x + sum_j c[j] * k[j] (x may be null: then just the sum). One pass over
/// memory per chunk; the Runge-Kutta stage update and the time-basis combination.
/// The terms are summed first and x added last, so a step rounds once at the
/// state's magnitude (adding each small term to x in turn rounds at it each time).
template <class T>
void lincomb(const T* x, const T* const* k, const T* c, int nk, T* out, int64_t n) {
  // The grain counts elements read: a combination of many terms (a time basis of
  // order 10 has 21) splits finer than one of two.
  int terms = x ? 1 : 0;
  for (int j = 0; j < nk; ++j) terms += k[j] ? 1 : 0;
  parallel_for(n, std::max<int64_t>(1024, kElementwiseGrain / std::max(1, terms)),
               [&](int64_t b, int64_t e) { detail::lincomb_range(x, k, c, nk, out, b, e); });
}

/// out[q] = sum_j c[q nk + j] k[q nk + j] (no x) for q < B combinations of length n,
/// each entry the one lincomb(nullptr, k + q nk, c + q nk, nk, out[q], n) gives it
/// (combine_group). Combinations of the same arrays (a time basis at B times, with
/// the same zero terms) go eight, four or two at a time, each vector of the arrays
/// read once for the group; the others one by one.
template <class T>
void lincomb_many(const T* const* k, const T* c, int nk, int B, T* const* out, int64_t n) {
  const int64_t grain = std::max<int64_t>(4096, kElementwiseGrain / std::max(1, nk));
  auto same = [&](int q0, int nb) {  // combinations q0 .. q0 + nb read the same arrays
    for (int q = q0 + 1; q < q0 + nb; ++q)
      for (int j = 0; j < nk; ++j)
        if (k[q * nk + j] != k[q0 * nk + j]) return false;
    return true;
  };
  auto group = [&](int q0, auto nb) {
    parallel_for(n, grain, [&](int64_t b, int64_t e) {
      detail::combine_group<T, decltype(nb)::value>(k + q0 * nk, c + q0 * nk, nk, out + q0, b, e);
    });
  };
  for (int q0 = 0; q0 < B;) {
    if (q0 + 8 <= B && same(q0, 8)) {
      group(q0, std::integral_constant<int, 8>{});
      q0 += 8;
    } else if (q0 + 4 <= B && same(q0, 4)) {
      group(q0, std::integral_constant<int, 4>{});
      q0 += 4;
    } else if (q0 + 2 <= B && same(q0, 2)) {
      group(q0, std::integral_constant<int, 2>{});
      q0 += 2;
    } else {
      lincomb<T>(nullptr, k + q0 * nk, c + q0 * nk, nk, out[q0], n);
      ++q0;
    }
  }
}

namespace detail {
/// A stage's arrays and coefficients as lincomb_range sums them: ks with k_new
/// appended (bias_act_lincomb's and linear_stage's).
template <class T>
struct StageTerms {
  std::vector<const T*> k;
  std::vector<T> c;
  StageTerms(const T* const* ks, const T* cs, int nk, const T* k_new, T c_new) : k(ks, ks + nk), c(cs, cs + nk) {
    k.push_back(k_new);
    c.push_back(c_new);
  }
  int size() const { return static_cast<int>(k.size()); }
};
/// Rows [r0, r1) of kout [., cols] = act(pre + bias), row by row (pre may be kout).
template <class Op, class T>
void bias_act_rows(const T* pre, const T* bias, int64_t cols, int64_t r0, int64_t r1, T* kout) {
  for (int64_t r = r0; r < r1; ++r) {
    ArrMap<T> K(kout + r * cols, cols);
    Op::cpu_f(CArrMap<T>(pre + r * cols, cols) + CArrMap<T>(bias, cols), K, T(0), T(0));
  }
}
/// f(unary::Tanh{}) or f(unary::Sigmoid{}) for act; any other act fails naming `who`.
template <class F>
void with_stage_act(UnaryOp act, const char* who, F&& f) {
  if (act == UnaryOp::Tanh) f(unary::Tanh{});
  else if (act == UnaryOp::Sigmoid) f(unary::Sigmoid{});
  else fail(who, ": only tanh and sigmoid are fused");
}
}  // namespace detail

/// The RK stage fused with the dynamics' last bias and activation, in one pass:
/// kout = act(pre + bias) (bias: one value per column of rows of `cols`, or null)
/// and out = x + sum_j c[j] k[j] + c_new kout, summed in that order as lincomb
/// sums (k[j] null: skipped; x null: no x). Chunks (of elements, or of rows with a
/// bias) are fixed by the size, so the result does not depend on the thread count.
template <class T>
void bias_act_lincomb(UnaryOp act, const T* pre, const T* bias, int64_t cols, const T* x, const T* const* k,
                      const T* c, int nk, T c_new, T* kout, T* out, int64_t n) {
  if (n == 0) return;
  const detail::StageTerms<T> st(k, c, nk, kout, c_new);
  int terms = (x ? 1 : 0) + 3;
  for (int j = 0; j < nk; ++j) terms += k[j] ? 1 : 0;
  const int64_t grain = std::max<int64_t>(1024, kElementwiseGrain / terms);
  detail::with_stage_act(act, "bias_act_lincomb", [&](auto op) {
    using Op = decltype(op);
    if (!bias) {  // element chunks
      parallel_for(n, grain, [&](int64_t b, int64_t e) {
        ArrMap<T> K(kout + b, e - b);
        Op::cpu_f(CArrMap<T>(pre + b, e - b), K, T(0), T(0));
        detail::lincomb_range(x, st.k.data(), st.c.data(), st.size(), out, b, e);
      });
      return;
    }
    // Row chunks: bias[j] joins column j of every row.
    parallel_for(n / cols, std::max<int64_t>(1, grain / cols), [&](int64_t rb, int64_t re) {
      detail::bias_act_rows<Op>(pre, bias, cols, rb, re, kout);
      detail::lincomb_range(x, st.k.data(), st.c.data(), st.size(), out, rb * cols, re * cols);
    });
  });
}

/// g[k, i] = z[k] * gw[i]: the gradient of W = sum_k z_k A_k with respect to A.
template <class T>
void outer_scale(const T* gw, const T* z, int nk, T* g, int64_t n) {
  parallel_for(n * nk, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t idx = b; idx < e;) {
      const int64_t k = idx / n, i = idx % n, m = std::min(n - i, e - idx);
      ArrMap<T>(g + idx, m) = z[k] * CArrMap<T>(gw + i, m);
      idx += m;
    }
  });
}

/// out[k, :] = sum_s z[s K + k] g[s][:] (+= with `accumulate`) for S vectors g[s]
/// of n elements: blocks of the result stay in cache while the terms stream
/// through once; s in order.
template <class T>
void outer_sum(const T* const* g, const T* z, int S, int K, T* out, int64_t n, bool accumulate = false) {
  constexpr int64_t kBlock = 1024;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t j0 = b * kBlock, len = std::min(kBlock, n - j0);
      if (!accumulate)
        for (int k = 0; k < K; ++k) ArrMap<T>(out + k * n + j0, len).setZero();
      for (int s = 0; s < S; ++s) {
        const CArrMap<T> gs(g[s] + j0, len);
        for (int k = 0; k < K; ++k) ArrMap<T>(out + k * n + j0, len) += z[s * K + k] * gs;
      }
    }
  });
}

/// sum_i (err_i / (atol + rtol * max(|a_i|, |b_i|)))^2, accumulated in double.
template <class T>
double scaled_sq_sum(const T* err, const T* a, const T* b, int64_t n, double atol, double rtol) {
  // A fixed number of chunks (not the thread count): the same sum on any machine.
  const int64_t chunks = std::min<int64_t>(64, std::max<int64_t>(1, n / kElementwiseGrain));
  double partial[64] = {};
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t s = n * c / chunks, t = n * (c + 1) / chunks;
      double acc = 0;
      for (int64_t i = s; i < t; ++i) {
        const double sc = atol + rtol * std::max(std::abs(static_cast<double>(a[i])), std::abs(static_cast<double>(b[i])));
        const double r = static_cast<double>(err[i]) / sc;
        acc += r * r;
      }
      partial[c] = acc;
    }
  });
  double total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

/// One Adam/AdamW update of n parameters. c1, c2 are the bias corrections
/// 1 - beta1^t and 1 - beta2^t. decoupled: weight decay as in AdamW; otherwise
/// added to the gradient (Adam's L2).
template <class T>
void adam_step(T* p, const T* g, T* m, T* v, int64_t n, T lr, T beta1, T beta2, T eps, T weight_decay, T c1, T c2,
               bool decoupled) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      T gi = g[i];
      if (weight_decay != T(0)) {
        if (decoupled) p[i] -= lr * weight_decay * p[i];
        else gi += weight_decay * p[i];
      }
      m[i] = beta1 * m[i] + (T(1) - beta1) * gi;
      v[i] = beta2 * v[i] + (T(1) - beta2) * gi * gi;
      p[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
    }
  });
}

}  // namespace nanode::cpu
