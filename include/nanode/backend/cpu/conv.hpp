#pragma once
// CPU 2-D convolution (NCHW) through im2col + GEMM, and its transpose.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "nanode/backend/cpu/elementwise.hpp"
#include "nanode/backend/cpu/linalg.hpp"

namespace nanode::cpu {

/// Geometry of a convolution from an input plane set (C, H, W) to (Co, Ho, Wo).
struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t Co = 0, kh = 1, kw = 1;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0;
  int64_t Ho = 0, Wo = 0;
  int64_t col_rows() const { return C * kh * kw; }
  int64_t col_cols() const { return Ho * Wo; }
};

/// col[(c, i, j), (oy, ox)] = x[c, oy*sh - ph + i, ox*sw - pw + j] (0 outside).
template <class T>
void im2col(const T* x, T* col, const ConvGeom& g) {
  const int64_t HoWo = g.Ho * g.Wo;
  for (int64_t c = 0; c < g.C; ++c) {
    const T* xc = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * HoWo;
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          T* dst = row + oy * g.Wo;
          if (iy < 0 || iy >= g.H) {
            std::fill(dst, dst + g.Wo, T(0));
            continue;
          }
          const T* src = xc + iy * g.W;
          if (g.sw == 1) {
            // Valid ox range: 0 <= ox - pw + j < W.
            const int64_t lo = std::clamp<int64_t>(g.pw - j, 0, g.Wo);
            const int64_t hi = std::clamp<int64_t>(g.W + g.pw - j, lo, g.Wo);
            std::fill(dst, dst + lo, T(0));
            std::memcpy(dst + lo, src + lo - g.pw + j, static_cast<size_t>(hi - lo) * sizeof(T));
            std::fill(dst + hi, dst + g.Wo, T(0));
          } else {
            for (int64_t ox = 0; ox < g.Wo; ++ox) {
              const int64_t ix = ox * g.sw - g.pw + j;
              dst[ox] = (ix >= 0 && ix < g.W) ? src[ix] : T(0);
            }
          }
        }
      }
    }
  }
}

/// The adjoint of im2col: x[c, iy, ix] += col[...] (x must be zeroed or hold a sum).
template <class T>
void col2im(const T* col, T* x, const ConvGeom& g) {
  const int64_t HoWo = g.Ho * g.Wo;
  for (int64_t c = 0; c < g.C; ++c) {
    T* xc = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * HoWo;
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          if (iy < 0 || iy >= g.H) continue;
          const T* src = row + oy * g.Wo;
          T* dst = xc + iy * g.W;
          if (g.sw == 1) {
            const int64_t lo = std::clamp<int64_t>(g.pw - j, 0, g.Wo);
            const int64_t hi = std::clamp<int64_t>(g.W + g.pw - j, lo, g.Wo);
            T* d = dst - g.pw + j;
            for (int64_t ox = lo; ox < hi; ++ox) d[ox] += src[ox];
          } else {
            for (int64_t ox = 0; ox < g.Wo; ++ox) {
              const int64_t ix = ox * g.sw - g.pw + j;
              if (ix >= 0 && ix < g.W) dst[ix] += src[ox];
            }
          }
        }
      }
    }
  }
}

/// Number of image groups (each with its own column buffer) the conv kernels use.
/// Fixed rather than the thread count, so weight gradients, summed per group and
/// then across groups in order, do not change with the number of threads.
constexpr int64_t kConvGroups = 8;
inline int64_t conv_workers(int64_t N) { return std::max<int64_t>(1, std::min<int64_t>(N, kConvGroups)); }

/// y[n] = w[Co, C*kh*kw] x im2col(x[n]) + bias. `work` holds conv_workers(N) column buffers.
template <class T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvGeom& g, T* work) {
  const int64_t K = g.col_rows(), P = g.col_cols();
  const int64_t workers = conv_workers(g.N);
  parallel_for(workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t wi = wb; wi < we; ++wi) {
      T* col = work + wi * K * P;
      for (int64_t n = wi; n < g.N; n += workers) {
        const T* xn = x + n * g.C * g.H * g.W;
        T* yn = y + n * g.Co * P;
        const bool identity = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
        const T* src = xn;
        if (!identity) {
          im2col(xn, col, g);
          src = col;
        }
        gemm<T>(false, false, g.Co, P, K, T(1), w, K, src, P, T(0), yn, P);
        if (bias)
          for (int64_t co = 0; co < g.Co; ++co) ArrMap<T>(yn + co * P, P) += bias[co];
      }
    }
  });
}

/// gx[n] = col2im(w^T gy[n]) (gx is overwritten).
template <class T>
void conv2d_backward_input(const T* gy, const T* w, T* gx, const ConvGeom& g, T* work) {
  const int64_t K = g.col_rows(), P = g.col_cols();
  const int64_t workers = conv_workers(g.N);
  parallel_for(workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t wi = wb; wi < we; ++wi) {
      T* col = work + wi * K * P;
      for (int64_t n = wi; n < g.N; n += workers) {
        T* gxn = gx + n * g.C * g.H * g.W;
        const T* gyn = gy + n * g.Co * P;
        const bool identity = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
        if (identity) {
          gemm<T>(true, false, K, P, g.Co, T(1), w, K, gyn, P, T(0), gxn, P);
        } else {
          gemm<T>(true, false, K, P, g.Co, T(1), w, K, gyn, P, T(0), col, P);
          std::fill(gxn, gxn + g.C * g.H * g.W, T(0));
          col2im(col, gxn, g);
        }
      }
    }
  });
}

/// gw[Co, K] = sum_n gy[n] im2col(x[n])^T; gb[co] = sum gy. `work` holds
/// conv_workers(N) column buffers followed by as many [Co, K] partial sums.
template <class T>
void conv2d_backward_weight(const T* x, const T* gy, T* gw, T* gb, const ConvGeom& g, T* work) {
  const int64_t K = g.col_rows(), P = g.col_cols();
  const int64_t workers = conv_workers(g.N);
  T* partial = work + workers * K * P;
  parallel_for(workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t wi = wb; wi < we; ++wi) {
      T* col = work + wi * K * P;
      T* acc = partial + wi * g.Co * K;
      bool first = true;
      for (int64_t n = wi; n < g.N; n += workers) {
        const T* xn = x + n * g.C * g.H * g.W;
        const T* gyn = gy + n * g.Co * P;
        const bool identity = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
        const T* src = xn;
        if (!identity) {
          im2col(xn, col, g);
          src = col;
        }
        gemm<T>(false, true, g.Co, K, P, T(1), gyn, P, src, P, first ? T(0) : T(1), acc, K);
        first = false;
      }
      if (first) std::fill(acc, acc + g.Co * K, T(0));
    }
  });
  std::copy(partial, partial + g.Co * K, gw);
  for (int64_t wi = 1; wi < workers; ++wi) ArrMap<T>(gw, g.Co * K) += CArrMap<T>(partial + wi * g.Co * K, g.Co * K);
  if (gb) {
    for (int64_t co = 0; co < g.Co; ++co) {
      T s = T(0);
      for (int64_t n = 0; n < g.N; ++n) s += CArrMap<T>(gy + (n * g.Co + co) * P, P).sum();
      gb[co] = s;
    }
  }
}

}  // namespace nanode::cpu
