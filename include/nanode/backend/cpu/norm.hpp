#pragma once
// CPU normalisation kernels over an [N, C, S] layout (S = H*W, or 1 for [N, C]).
#include <cmath>
#include <cstdint>
#include <vector>

#include "nanode/backend/cpu/elementwise.hpp"

namespace nanode::cpu {

namespace norm_detail {
/// A row buffer aligned as Eigen aligns (its vectorized sums start at the same
/// lane whatever address malloc returned, so results do not depend on it).
template <class T>
using RowBuffer = std::vector<T, Eigen::aligned_allocator<T>>;

/// The gradient row to read: g itself, or, after a ReLU with output y, g where
/// y > 0 and 0 elsewhere, written to dst (the row of gx, later overwritten in
/// place) or to buf when there is no dst.
template <class T>
inline const T* relu_masked(const T* g, const T* y, int64_t S, T* dst, RowBuffer<T>& buf) {
  if (!y) return g;
  if (!dst) {
    if (static_cast<int64_t>(buf.size()) < S) buf.resize(static_cast<size_t>(S));
    dst = buf.data();
  }
  ArrMap<T>(dst, S) = (CArrMap<T>(y, S) > T(0)).select(CArrMap<T>(g, S), T(0));
  return dst;
}
}  // namespace norm_detail

/// Batch statistics per channel: mean and biased variance over N*S values.
template <class T>
void channel_moments(const T* x, int64_t N, int64_t C, int64_t S, T* mean, T* var) {
  parallel_for(C, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += static_cast<double>(CArrMap<T>(x + (n * C + c) * S, S).sum());
      const double m = s / static_cast<double>(N * S);
      double v = 0;
      for (int64_t n = 0; n < N; ++n)
        v += static_cast<double>((CArrMap<T>(x + (n * C + c) * S, S) - static_cast<T>(m)).square().sum());
      mean[c] = static_cast<T>(m);
      var[c] = static_cast<T>(v / static_cast<double>(N * S));
    }
  });
}

/// y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c]  (gamma/beta may be null),
/// then max(y, 0) when relu.
template <class T>
void channel_normalize(const T* x, T* y, int64_t N, int64_t C, int64_t S, const T* mean, const T* invstd,
                       const T* gamma, const T* beta, bool relu = false) {
  parallel_for(N * C, S >= 4096 ? 1 : 4096 / (S > 0 ? S : 1), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % C;
      const T scale = invstd[c] * (gamma ? gamma[c] : T(1));
      const T shift = (beta ? beta[c] : T(0)) - mean[c] * scale;
      if (relu) ArrMap<T>(y + nc * S, S) = (CArrMap<T>(x + nc * S, S) * scale + shift).max(T(0));
      else ArrMap<T>(y + nc * S, S) = CArrMap<T>(x + nc * S, S) * scale + shift;
    }
  });
}

/// Training-mode batch-norm backward. xhat = (x - mean) * invstd.
/// gx = invstd * gamma * (g - mean(g) - xhat * mean(g * xhat)); dgamma = sum(g*xhat); dbeta = sum(g).
/// relu_y (optional): the norm was followed by a ReLU with output relu_y, and g is
/// the gradient of that output (masked here, row by row, instead of in a pass of its own).
template <class T>
void batch_norm_backward_train(const T* g, const T* x, int64_t N, int64_t C, int64_t S, const T* mean,
                               const T* invstd, const T* gamma, T* gx, T* dgamma, T* dbeta,
                               const T* relu_y = nullptr) {
  parallel_for(C, 1, [&](int64_t cb, int64_t ce) {
    norm_detail::RowBuffer<T> buf;
    for (int64_t c = cb; c < ce; ++c) {
      double sg = 0, sgx = 0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t off = (n * C + c) * S;
        CArrMap<T> G(norm_detail::relu_masked(g + off, relu_y ? relu_y + off : nullptr, S, gx ? gx + off : nullptr,
                                              buf), S),
            X(x + off, S);
        sg += static_cast<double>(G.sum());
        sgx += static_cast<double>((G * (X - mean[c])).sum());
      }
      sgx *= static_cast<double>(invstd[c]);  // sum(g * xhat)
      if (dgamma) dgamma[c] = static_cast<T>(sgx);
      if (dbeta) dbeta[c] = static_cast<T>(sg);
      if (gx) {
        const double M = static_cast<double>(N * S);
        const T k = invstd[c] * (gamma ? gamma[c] : T(1));
        const T mg = static_cast<T>(sg / M), mgx = static_cast<T>(sgx / M);
        for (int64_t n = 0; n < N; ++n) {
          const int64_t off = (n * C + c) * S;
          // With a ReLU the masked gradient is already in gx's row: updated in place.
          CArrMap<T> G(relu_y ? gx + off : g + off, S), X(x + off, S);
          ArrMap<T>(gx + off, S) = k * (G - mg - (X - mean[c]) * invstd[c] * mgx);
        }
      }
    }
  });
}

/// Group statistics: for each (n, group) the mean and 1/sqrt(var + eps) over (C/G)*S values.
template <class T>
void group_moments(const T* x, int64_t N, int64_t C, int64_t S, int64_t G, T eps, T* mean, T* invstd) {
  const int64_t len = (C / G) * S;
  parallel_for(N * G, 1, [&](int64_t b, int64_t e) {
    for (int64_t ng = b; ng < e; ++ng) {
      CArrMap<T> X(x + ng * len, len);
      const double m = static_cast<double>(X.sum()) / static_cast<double>(len);
      const double v = static_cast<double>((X - static_cast<T>(m)).square().sum()) / static_cast<double>(len);
      mean[ng] = static_cast<T>(m);
      invstd[ng] = static_cast<T>(1.0 / std::sqrt(v + static_cast<double>(eps)));
    }
  });
}

template <class T>
void group_normalize(const T* x, T* y, int64_t N, int64_t C, int64_t S, int64_t G, const T* mean,
                     const T* invstd, const T* gamma, const T* beta, bool relu = false) {
  const int64_t cpg = C / G;
  parallel_for(N * C, S >= 4096 ? 1 : 4096 / (S > 0 ? S : 1), [&](int64_t b, int64_t e) {
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / C, c = nc % C, ng = n * G + c / cpg;
      const T scale = invstd[ng] * (gamma ? gamma[c] : T(1));
      const T shift = (beta ? beta[c] : T(0)) - mean[ng] * scale;
      if (relu) ArrMap<T>(y + nc * S, S) = (CArrMap<T>(x + nc * S, S) * scale + shift).max(T(0));
      else ArrMap<T>(y + nc * S, S) = CArrMap<T>(x + nc * S, S) * scale + shift;
    }
  });
}

/// Group-norm backward: one pass for the sums (per row, kept for dgamma/dbeta),
/// one for gx. relu_y: as in batch_norm_backward_train.
template <class T>
void group_norm_backward(const T* g, const T* x, int64_t N, int64_t C, int64_t S, int64_t G, const T* mean,
                         const T* invstd, const T* gamma, T* gx, T* dgamma, T* dbeta, const T* relu_y = nullptr) {
  const int64_t cpg = C / G;
  const double M = static_cast<double>(cpg * S);
  const bool affine_grads = dgamma || dbeta;
  if (!gx && !affine_grads) return;
  // Per (n, c) row: sum(g) and sum(g * (x - mean)); dgamma/dbeta sum them over n.
  std::vector<double> row_g(affine_grads ? static_cast<size_t>(N * C) : 0), row_gx(row_g.size());
  parallel_for(N * G, 1, [&](int64_t b, int64_t e) {
    norm_detail::RowBuffer<T> buf;
    for (int64_t ng = b; ng < e; ++ng) {
      const int64_t n = ng / G, grp = ng % G;
      double sgg = 0, sggx = 0;  // sums of (g*gamma) and (g*gamma*xhat)
      for (int64_t ci = 0; ci < cpg; ++ci) {
        const int64_t c = grp * cpg + ci, off = (n * C + c) * S;
        const T gm = gamma ? gamma[c] : T(1);
        CArrMap<T> Gv(norm_detail::relu_masked(g + off, relu_y ? relu_y + off : nullptr, S, gx ? gx + off : nullptr,
                                               buf), S),
            X(x + off, S);
        const T rg = Gv.sum(), rgx = (Gv * (X - mean[ng])).sum();
        sgg += static_cast<double>(gm * rg);
        sggx += static_cast<double>(gm * rgx) * static_cast<double>(invstd[ng]);
        if (affine_grads) {
          row_g[static_cast<size_t>(n * C + c)] = static_cast<double>(rg);
          row_gx[static_cast<size_t>(n * C + c)] = static_cast<double>(rgx) * static_cast<double>(invstd[ng]);
        }
      }
      if (!gx) continue;
      const T mg = static_cast<T>(sgg / M), mgx = static_cast<T>(sggx / M);
      for (int64_t ci = 0; ci < cpg; ++ci) {
        const int64_t c = grp * cpg + ci, off = (n * C + c) * S;
        const T gm = gamma ? gamma[c] : T(1);
        // With a ReLU the masked gradient is already in gx's row: updated in place.
        CArrMap<T> Gv(relu_y ? gx + off : g + off, S), X(x + off, S);
        ArrMap<T>(gx + off, S) = invstd[ng] * (gm * Gv - mg - (X - mean[ng]) * invstd[ng] * mgx);
      }
    }
  });
  if (affine_grads)
    for (int64_t c = 0; c < C; ++c) {
      double sg = 0, sgx = 0;
      for (int64_t n = 0; n < N; ++n) sg += row_g[static_cast<size_t>(n * C + c)], sgx += row_gx[static_cast<size_t>(n * C + c)];
      if (dgamma) dgamma[c] = static_cast<T>(sgx);
      if (dbeta) dbeta[c] = static_cast<T>(sg);
    }
}

}  // namespace nanode::cpu
