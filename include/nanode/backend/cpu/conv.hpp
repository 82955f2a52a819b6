#pragma once
// CPU 2-D convolution (NCHW) through im2col + GEMM (or, where the channel counts
// allow, im2row + lane_gemm), and its transpose.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nanode/backend/cpu/elementwise.hpp"
#include "nanode/backend/cpu/lanes.hpp"
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

/// im2col's transpose, pixel-major: row[(oy, ox), (c, i, j)] = x[c, oy*sh - ph + i,
/// ox*sw - pw + j] (0 outside), so each output pixel's window is one contiguous
/// run of K = C kh kw values.
template <class T>
void im2row(const T* x, T* row, const ConvGeom& g) {
  const int64_t K = g.col_rows();
  for (int64_t c = 0; c < g.C; ++c) {
    const T* xc = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* dst = row + (c * g.kh + i) * g.kw + j;
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          T* d = dst + oy * g.Wo * K;
          if (iy < 0 || iy >= g.H) {
            for (int64_t ox = 0; ox < g.Wo; ++ox) d[ox * K] = T(0);
            continue;
          }
          const T* src = xc + iy * g.W;
          for (int64_t ox = 0; ox < g.Wo; ++ox) {
            const int64_t ix = ox * g.sw - g.pw + j;
            d[ox * K] = (ix >= 0 && ix < g.W) ? src[ix] : T(0);
          }
        }
      }
  }
}

/// The adjoint of im2row: x[c, iy, ix] += row[...] (x must be zeroed or hold a sum).
template <class T>
void row2im(const T* row, T* x, const ConvGeom& g) {
  const int64_t K = g.col_rows();
  for (int64_t c = 0; c < g.C; ++c) {
    T* xc = x + c * g.H * g.W;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* src = row + (c * g.kh + i) * g.kw + j;
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          if (iy < 0 || iy >= g.H) continue;
          const T* s = src + oy * g.Wo * K;
          T* dst = xc + iy * g.W;
          for (int64_t ox = 0; ox < g.Wo; ++ox) {
            const int64_t ix = ox * g.sw - g.pw + j;
            if (ix >= 0 && ix < g.W) dst[ix] += s[ox * K];
          }
        }
      }
  }
}

/// Whether a convolution takes the pixel-major path (im2row and lane_gemm): the
/// products' rows are Co or K = C kh kw wide, so both must be whole SIMD vectors;
/// 1x1 stride-1 unpadded convolutions need no im2col and stay on Eigen's GEMM.
/// The per-image products are small (an output of Ho Wo pixels, 49 for a 7 x 7
/// map), where Eigen's packing and blocking cost about as much as the arithmetic.
template <class T>
inline bool conv_rows_path(const ConvGeom& g) {
  const bool identity = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  // The weight gradient sums over the Ho Wo pixels: deeper than 8192, Eigen's blocking.
  return !identity && lane_gemm_fits<T>(g.Co) && lane_gemm_fits<T>(g.col_rows()) && g.Ho * g.Wo <= 8192;
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
  if (conv_rows_path<T>(g)) {
    // y[n]^T [P, Co] = row [P, K] w^T [K, Co], then moved to [Co, P] (+ bias).
    std::vector<T> wt(static_cast<size_t>(K * g.Co));
    for (int64_t co = 0; co < g.Co; ++co)
      for (int64_t k = 0; k < K; ++k) wt[k * g.Co + co] = w[co * K + k];
    parallel_for(workers, 1, [&](int64_t wb, int64_t we) {
      std::vector<T> yt(static_cast<size_t>(P * g.Co));
      for (int64_t wi = wb; wi < we; ++wi) {
        T* row = work + wi * K * P;
        for (int64_t n = wi; n < g.N; n += workers) {
          im2row(x + n * g.C * g.H * g.W, row, g);
          lane_gemm<T>(P, g.Co, K, row, K, 1, wt.data(), g.Co, false, yt.data(), g.Co);
          T* yn = y + n * g.Co * P;
          for (int64_t co = 0; co < g.Co; ++co) {
            const T b = bias ? bias[co] : T(0);
            for (int64_t p = 0; p < P; ++p) yn[co * P + p] = yt[p * g.Co + co] + b;
          }
        }
      }
    });
    return;
  }
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
  if (conv_rows_path<T>(g)) {
    // row [P, K] = gy[n]^T [P, Co] w [Co, K], then row2im.
    parallel_for(workers, 1, [&](int64_t wb, int64_t we) {
      for (int64_t wi = wb; wi < we; ++wi) {
        T* row = work + wi * K * P;
        for (int64_t n = wi; n < g.N; n += workers) {
          lane_gemm<T>(P, K, g.Co, gy + n * g.Co * P, 1, P, w, K, false, row, K);
          T* gxn = gx + n * g.C * g.H * g.W;
          std::fill(gxn, gxn + g.C * g.H * g.W, T(0));
          row2im(row, gxn, g);
        }
      }
    });
    return;
  }
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
  const bool rows = conv_rows_path<T>(g);  // the column buffers hold im2row's layout
  parallel_for(workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t wi = wb; wi < we; ++wi) {
      T* col = work + wi * K * P;
      T* acc = partial + wi * g.Co * K;
      bool first = true;
      for (int64_t n = wi; n < g.N; n += workers) {
        const T* xn = x + n * g.C * g.H * g.W;
        const T* gyn = gy + n * g.Co * P;
        const bool identity = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
        if (rows) {  // acc [Co, K] += gy[n] [Co, P] row [P, K]
          im2row(xn, col, g);
          lane_gemm<T>(g.Co, K, P, gyn, P, 1, col, K, !first, acc, K);
          first = false;
          continue;
        }
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
