#pragma once
// 3x3, stride-1 convolution by Winograd's minimal filtering (Lavin & Gray, 2016):
// F(4x4, 3x3) where the output is at least 4x4, else F(2x2, 3x3). Each m x m
// output tile is A^T [(G g G^T) . (B^T d B)] A for the (m+2) x (m+2) input patch
// d, so the channel sums become (m+2)^2 GEMMs: 4x (F(4)) or 2.25x (F(2)) fewer
// multiplications than im2col. The backward pass applies the adjoints of the same
// transforms, so its gradients are exactly those of the forward computation.
// Layout: each image is first copied channel-last and zero-padded ([Hp][Wp][C]),
// so a tile's transform works on contiguous channel vectors (16 channels at a
// time in local arrays, which the compiler vectorises) with no bounds checks; V
// and M are [(m+2)^2][tiles][C] and [(m+2)^2][tiles][Co]. The tiles of a batch of
// images go through the GEMMs together (about 128 rows, so that small images
// still make GEMMs of a useful size); batches are split over a fixed number of
// groups (kConvGroups), each summing its own weight gradient, so results do not
// depend on the thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "nanode/backend/cpu/conv.hpp"
#include "nanode/backend/cpu/lanes.hpp"

namespace nanode::cpu::winograd {

/// Whether conv2d uses Winograd where it applies (on by default; tests turn it
/// off to compare with the im2col path).
inline bool& enabled() {
  static bool on = true;
  return on;
}

/// Input channels from which conv2d prefers Winograd to im2col. Below it the tile
/// transforms (one per output channel and tile) cost more than the GEMM saves: on
/// a 2-core AVX-512 machine, [128, C, 28, 28] to 32 channels, forward and backward,
/// im2col took 4.6 / 8.8 / 14.4 ms at C = 1 / 4 / 8 against Winograd's 15.0 / 16.7 /
/// 18.1 ms, and Winograd won from C = 16 (18.5 against 26.6 ms). Tests lower it to
/// run Winograd on small cases.
inline int64_t& min_channels() {
  static int64_t m = 12;
  return m;
}

inline bool applicable(const ConvGeom& g) {
  return enabled() && g.C >= min_channels() && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.Ho >= 1 &&
         g.Wo >= 1;
}

/// F(2x2, 3x3): B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]],
/// G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]], A^T = [[1,1,1,0],[0,1,-1,-1]].
/// Each function applies one factor (or its transpose: *_adj) to a vector whose
/// entries V are scalars or SIMD vectors of S (one lane per channel).
struct F2 {
  static constexpr int m = 2, a = 4;
  template <class S, class V>
  static void in(const V* d, V* r) {  // B^T d
    r[0] = d[0] - d[2], r[1] = d[1] + d[2], r[2] = d[2] - d[1], r[3] = d[1] - d[3];
  }
  template <class S, class V>
  static void in_adj(const V* v, V* d) {  // B v
    d[0] = v[0], d[1] = v[1] - v[2] + v[3], d[2] = v[1] + v[2] - v[0], d[3] = -v[3];
  }
  template <class S, class V>
  static void out(const V* x, V* y) {  // A^T x
    y[0] = x[0] + x[1] + x[2], y[1] = x[1] - x[2] - x[3];
  }
  template <class S, class V>
  static void out_adj(const V* dy, V* x) {  // A dy
    x[0] = dy[0], x[1] = dy[0] + dy[1], x[2] = dy[0] - dy[1], x[3] = -dy[1];
  }
  template <class S, class V>
  static void filt(const V* g, V* u) {  // G g
    u[0] = g[0], u[1] = S(0.5) * (g[0] + g[1] + g[2]), u[2] = S(0.5) * (g[0] - g[1] + g[2]), u[3] = g[2];
  }
  template <class S, class V>
  static void filt_adj(const V* u, V* g) {  // G^T u
    g[0] = u[0] + S(0.5) * (u[1] + u[2]), g[1] = S(0.5) * (u[1] - u[2]), g[2] = S(0.5) * (u[1] + u[2]) + u[3];
  }
};

/// F(4x4, 3x3), interpolation points 0, +-1, +-2, infinity:
/// B^T = [[4,0,-5,0,1,0],[0,-4,-4,1,1,0],[0,4,-4,-1,1,0],[0,-2,-1,2,1,0],[0,2,-1,-2,1,0],[0,4,0,-5,0,1]],
/// G = [[1/4,0,0],[-1/6,-1/6,-1/6],[-1/6,1/6,-1/6],[1/24,1/12,1/6],[1/24,-1/12,1/6],[0,0,1]],
/// A^T = [[1,1,1,1,1,0],[0,1,-1,2,-2,0],[0,1,1,4,4,0],[0,1,-1,8,-8,1]].
struct F4 {
  static constexpr int m = 4, a = 6;
  template <class S, class V>
  static void in(const V* d, V* r) {
    r[0] = S(4) * d[0] - S(5) * d[2] + d[4];
    r[1] = -S(4) * (d[1] + d[2]) + d[3] + d[4];
    r[2] = S(4) * (d[1] - d[2]) - d[3] + d[4];
    r[3] = S(2) * (d[3] - d[1]) - d[2] + d[4];
    r[4] = S(2) * (d[1] - d[3]) - d[2] + d[4];
    r[5] = S(4) * d[1] - S(5) * d[3] + d[5];
  }
  template <class S, class V>
  static void in_adj(const V* v, V* d) {
    d[0] = S(4) * v[0];
    d[1] = S(4) * (v[2] - v[1] + v[5]) + S(2) * (v[4] - v[3]);
    d[2] = -S(5) * v[0] - S(4) * (v[1] + v[2]) - v[3] - v[4];
    d[3] = v[1] - v[2] + S(2) * (v[3] - v[4]) - S(5) * v[5];
    d[4] = v[0] + v[1] + v[2] + v[3] + v[4];
    d[5] = v[5];
  }
  template <class S, class V>
  static void out(const V* x, V* y) {
    const V p1 = x[1] + x[2], m1 = x[1] - x[2], p2 = x[3] + x[4], m2 = x[3] - x[4];
    y[0] = x[0] + p1 + p2;
    y[1] = m1 + S(2) * m2;
    y[2] = p1 + S(4) * p2;
    y[3] = m1 + S(8) * m2 + x[5];
  }
  template <class S, class V>
  static void out_adj(const V* dy, V* x) {
    x[0] = dy[0];
    x[1] = dy[0] + dy[1] + dy[2] + dy[3];
    x[2] = dy[0] - dy[1] + dy[2] - dy[3];
    x[3] = dy[0] + S(2) * dy[1] + S(4) * dy[2] + S(8) * dy[3];
    x[4] = dy[0] - S(2) * dy[1] + S(4) * dy[2] - S(8) * dy[3];
    x[5] = dy[3];
  }
  template <class S, class V>
  static void filt(const V* g, V* u) {
    u[0] = g[0] / S(4);
    u[1] = -(g[0] + g[1] + g[2]) / S(6);
    u[2] = -(g[0] - g[1] + g[2]) / S(6);
    u[3] = g[0] / S(24) + g[1] / S(12) + g[2] / S(6);
    u[4] = g[0] / S(24) - g[1] / S(12) + g[2] / S(6);
    u[5] = g[2];
  }
  template <class S, class V>
  static void filt_adj(const V* u, V* g) {
    g[0] = u[0] / S(4) - (u[1] + u[2]) / S(6) + (u[3] + u[4]) / S(24);
    g[1] = (u[2] - u[1]) / S(6) + (u[3] - u[4]) / S(12);
    g[2] = (u[3] + u[4] - u[1] - u[2]) / S(6) + u[5];
  }
};

/// The output tile size used for this geometry: 4 when the output is at least 4x4.
inline int tile_size(const ConvGeom& g) { return g.Ho >= 4 && g.Wo >= 4 ? 4 : 2; }

struct Tiles {
  int64_t th, tw, per_image;
};
inline Tiles tiles(const ConvGeom& g, int m) {
  const int64_t th = (g.Ho + m - 1) / m, tw = (g.Wo + m - 1) / m;
  return {th, tw, th * tw};
}

/// Elements of the transformed filter U [(m+2)^2][Co][C].
inline int64_t filter_size(const ConvGeom& g) {
  const int64_t a = tile_size(g) + 2;
  return a * a * g.Co * g.C;
}

struct Plan {
  int m, a2;
  Tiles tl;
  int64_t P, nb, batches, groups, Hp, Wp, per_group;
};
/// Tiles, batches, groups and per-group scratch: V, M (or dM) and dV as
/// [(m+2)^2][nb P][C or Co], a [(m+2)^2][Co][C] weight-gradient partial, a padded
/// channel-last image and a channel-last output (or output gradient) image.
inline Plan plan(const ConvGeom& g) {
  Plan p;
  p.m = tile_size(g);
  p.a2 = (p.m + 2) * (p.m + 2);
  p.tl = tiles(g, p.m);
  p.P = p.tl.per_image;
  p.nb = std::max<int64_t>(1, std::min<int64_t>(g.N, 128 / std::max<int64_t>(p.P, 1)));  // about 128 tiles
  p.batches = (g.N + p.nb - 1) / p.nb;
  p.groups = std::max<int64_t>(1, std::min<int64_t>(kConvGroups, p.batches));
  p.Hp = p.m * p.tl.th + 2, p.Wp = p.m * p.tl.tw + 2;
  const int64_t rows = p.nb * p.P;
  p.per_group = p.a2 * rows * (2 * g.C + g.Co) + p.a2 * g.Co * g.C + p.Hp * p.Wp * g.C +
                p.m * p.tl.th * p.m * p.tl.tw * g.Co;
  return p;
}

/// Scratch the forward and backward passes need (elements).
inline int64_t workspace_size(const ConvGeom& g) {
  const Plan p = plan(g);
  return p.groups * p.per_group;
}

namespace detail {

/// Eight values of T as one GCC/Clang vector (a row of an 8 x 8 block).
template <class T>
struct Row8 {
  typedef T V __attribute__((vector_size(8 * sizeof(T))));
};
/// Transposes the 8 x 8 block r[row][column] in registers: three rounds of
/// two-vector shuffles (pairs, then pairs of pairs, then halves). It only moves
/// values, so the result is the same on every instruction set.
template <class T>
inline void transpose8(typename Row8<T>::V r[8]) {
  using V = typename Row8<T>::V;
  V t[8];
  for (int k = 0; k < 8; k += 2) {
    t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  V u[8];
  for (int h = 0; h < 8; h += 4) {
    u[h] = __builtin_shufflevector(t[h], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 1] = __builtin_shufflevector(t[h], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[j + 4] = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

/// Moves 8 channels c at `w` positions p between a row of channel planes and
/// channel-last pixels: with ToPixels, dst[p * ds + c] = src[c * ss + p]; without,
/// the way back, dst[c * ds + p] = src[p * ss + c]. Whole runs of 8 positions are
/// transposed in registers, the rest one value at a time.
template <bool ToPixels, class T>
inline void move8(const T* src, int64_t ss, T* dst, int64_t ds, int64_t w) {
  // Where the 8 values of row k of a block are (contiguous), on either side.
  const auto planes = [](auto* base, int64_t stride, int64_t i0, int k) { return base + k * stride + i0; };
  const auto pixels = [](auto* base, int64_t stride, int64_t i0, int k) { return base + (i0 + k) * stride; };
  using V = typename Row8<T>::V;
  int64_t i = 0;
  for (; i + 8 <= w; i += 8) {
    V r[8];
    for (int k = 0; k < 8; ++k) std::memcpy(&r[k], ToPixels ? planes(src, ss, i, k) : pixels(src, ss, i, k), sizeof(V));
    transpose8<T>(r);
    for (int k = 0; k < 8; ++k) std::memcpy(ToPixels ? pixels(dst, ds, i, k) : planes(dst, ds, i, k), &r[k], sizeof(V));
  }
  for (; i < w; ++i)
    for (int64_t c = 0; c < 8; ++c) {
      if constexpr (ToPixels) dst[i * ds + c] = src[c * ss + i];
      else dst[c * ds + i] = src[i * ss + c];
    }
}

/// xp [Hp][Wp][C] = x [C][H][W] moved to (row + ph, column + pw), zero elsewhere.
template <class T>
void pad_channels_last(const T* x, T* xp, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t Hp,
                       int64_t Wp) {
  const int64_t w = std::min(W, Wp - pw), h = std::min(H, Hp - ph);
  // Zero only the border: rows above and below the image, columns left and right.
  std::fill(xp, xp + ph * Wp * C, T(0));
  std::fill(xp + (ph + h) * Wp * C, xp + Hp * Wp * C, T(0));
  for (int64_t r = ph; r < ph + h; ++r) {
    std::fill(xp + r * Wp * C, xp + (r * Wp + pw) * C, T(0));
    std::fill(xp + (r * Wp + pw + w) * C, xp + (r + 1) * Wp * C, T(0));
  }
  // Eight channels at a time: eight source rows stream in together (the source is
  // usually not in cache; one row per channel at a time read 32 rows 12 KB apart)
  // and each pixel gets its eight channels in one contiguous write.
  constexpr int64_t B = 8;
  const int64_t plane = H * W;
  int64_t c0 = 0;
  for (; c0 + B <= C; c0 += B)
    for (int64_t y = 0; y < h; ++y)
      move8<true>(x + c0 * plane + y * W, plane, xp + ((y + ph) * Wp + pw) * C + c0, C, w);
  for (; c0 < C; ++c0)
    for (int64_t y = 0; y < h; ++y) {
      const T* __restrict src = x + c0 * plane + y * W;
      T* __restrict dst = xp + ((y + ph) * Wp + pw) * C + c0;
      for (int64_t i = 0; i < w; ++i) dst[i * C] = src[i];
    }
}

/// x [C][H][W] = the window at (ph, pw) of xp [.][Wp][C] (a channel-last image).
template <class T>
void crop_channels_first(const T* xp, T* x, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t Wp) {
  // Eight channels at a time, as pad_channels_last.
  constexpr int64_t B = 8;
  const int64_t plane = H * W;
  int64_t c0 = 0;
  for (; c0 + B <= C; c0 += B)
    for (int64_t y = 0; y < H; ++y)
      move8<false>(xp + ((y + ph) * Wp + pw) * C + c0, C, x + c0 * plane + y * W, plane, W);
  for (; c0 < C; ++c0)
    for (int64_t y = 0; y < H; ++y) {
      const T* __restrict src = xp + ((y + ph) * Wp + pw) * C + c0;
      T* __restrict dst = x + c0 * plane + y * W;
      for (int64_t i = 0; i < W; ++i) dst[i] = src[i * C];
    }
}

/// U[xi][co][c] = (G w[co][c] G^T)[xi].
template <class W, class T>
void transform_filter(const T* w, T* U, int64_t Co, int64_t C) {
  // kLanes filters at a time, one per SIMD lane (their 3x3 taps gathered from w),
  // so U's rows are written in contiguous runs; blocks of filters in parallel.
  constexpr int a = W::a;
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  const int64_t K = Co * C, blocks = (K + L - 1) / L;
  parallel_for(blocks, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t k0 = b * L, n = std::min(L, K - k0);
      Vt g[9];
      {
        T taps[9][L] = {};
        for (int64_t l = 0; l < n; ++l)
          for (int e = 0; e < 9; ++e) taps[e][l] = w[(k0 + l) * 9 + e];
        for (int e = 0; e < 9; ++e) std::memcpy(&g[e], taps[e], sizeof(Vt));
      }
      Vt t[a][3];  // G g, column by column
      for (int j = 0; j < 3; ++j) {
        const Vt col[3] = {g[j], g[3 + j], g[6 + j]};
        Vt u[a];
        W::template filt<T>(col, u);
        for (int i = 0; i < a; ++i) t[i][j] = u[i];
      }
      for (int i = 0; i < a; ++i) {  // (G g) G^T, row by row
        Vt u[a];
        W::template filt<T>(t[i], u);
        for (int j = 0; j < a; ++j) store_lanes(U + (i * a + j) * K + k0, u[j], n);
      }
    }
  });
}

/// The adjoint of transform_filter: dw[co][c] (3x3) from dU[xi][co][c].
template <class W, class T>
void transform_filter_adjoint(const T* dU, T* dw, int64_t Co, int64_t C) {
  constexpr int a = W::a;
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  const int64_t K = Co * C, blocks = (K + L - 1) / L;
  parallel_for(blocks, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t k0 = b * L, n = std::min(L, K - k0);
      Vt t[a][3];  // rows of dU G
      for (int i = 0; i < a; ++i) {
        Vt row[a];
        for (int j = 0; j < a; ++j) row[j] = load_lanes(dU + (i * a + j) * K + k0, n);
        W::template filt_adj<T>(row, t[i]);
      }
      T taps[9][L];
      for (int j = 0; j < 3; ++j) {  // G^T (dU G)
        Vt col[a], r[3];
        for (int i = 0; i < a; ++i) col[i] = t[i][j];
        W::template filt_adj<T>(col, r);
        for (int q = 0; q < 3; ++q) std::memcpy(taps[3 * q + j], &r[q], sizeof(Vt));
      }
      for (int64_t l = 0; l < n; ++l)
        for (int e = 0; e < 9; ++e) dw[(k0 + l) * 9 + e] = taps[e][l];
    }
  });
}

/// V[xi][row0 + t][c] = (B^T d B)[xi] for the patch d (every channel) of tile t of
/// one image, from its padded channel-last copy xp; V has `rows` rows per xi.
template <class W, class T>
void transform_input(const T* xp, T* V, int64_t row0, int64_t rows, int64_t C, const Tiles& tl, int64_t Wp) {
  constexpr int a = W::a, m = W::m;
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  const int64_t xs = rows * C, rs = Wp * C;  // between xi; between rows of the patch
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = xp + (m * ty * Wp + m * tx) * C;
      T* v = V + (row0 + ty * tl.tw + tx) * C;
      for (int64_t c0 = 0; c0 < C; c0 += L) {
        const int64_t n = std::min(L, C - c0);
        Vt r[a][a];  // B^T d, column by column
        for (int j = 0; j < a; ++j) {
          Vt col[a], out[a];
          for (int i = 0; i < a; ++i) col[i] = load_lanes(src + i * rs + j * C + c0, n);
          W::template in<T>(col, out);
          for (int i = 0; i < a; ++i) r[i][j] = out[i];
        }
        for (int i = 0; i < a; ++i) {  // (B^T d) B, row by row
          Vt out[a];
          W::template in<T>(r[i], out);
          for (int j = 0; j < a; ++j) store_lanes(v + (i * a + j) * xs + c0, out[j], n);
        }
      }
    }
}

/// The adjoint of transform_input: adds B dV B^T of every tile into the padded
/// channel-last gradient dxp (zeroed by the caller).
template <class W, class T>
void transform_input_adjoint(const T* dV, int64_t row0, int64_t rows, T* dxp, int64_t C, const Tiles& tl, int64_t Wp) {
  constexpr int a = W::a, m = W::m;
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  const int64_t xs = rows * C, rs = Wp * C;
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = dV + (row0 + ty * tl.tw + tx) * C;
      T* dst = dxp + (m * ty * Wp + m * tx) * C;
      for (int64_t c0 = 0; c0 < C; c0 += L) {
        const int64_t n = std::min(L, C - c0);
        Vt r[a][a];  // dV B^T, row by row
        for (int i = 0; i < a; ++i) {
          Vt row[a];
          for (int j = 0; j < a; ++j) row[j] = load_lanes(src + (i * a + j) * xs + c0, n);
          W::template in_adj<T>(row, r[i]);
        }
        for (int j = 0; j < a; ++j) {  // B (dV B^T), column by column
          Vt col[a], out[a];
          for (int i = 0; i < a; ++i) col[i] = r[i][j];
          W::template in_adj<T>(col, out);
          for (int i = 0; i < a; ++i) add_lanes(dst + i * rs + j * C + c0, out[i], n);
        }
      }
    }
}

/// yt [m th][m tw][Co] (channel-last, whole tiles) = A^T M A (+ bias) for the
/// tiles of one image.
template <class W, class T>
void transform_output(const T* M, int64_t row0, int64_t rows, const T* bias, T* yt, int64_t Co, const Tiles& tl) {
  constexpr int a = W::a, m = W::m;
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  const int64_t xs = rows * Co, ws = m * tl.tw * Co;  // between xi; between output rows
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = M + (row0 + ty * tl.tw + tx) * Co;
      T* dst = yt + (m * ty * m * tl.tw + m * tx) * Co;
      for (int64_t c0 = 0; c0 < Co; c0 += L) {
        const int64_t n = std::min(L, Co - c0);
        const Vt b = bias ? load_lanes(bias + c0, n) : Vt{};
        Vt r[a][m];  // M A, row by row
        for (int i = 0; i < a; ++i) {
          Vt row[a];
          for (int j = 0; j < a; ++j) row[j] = load_lanes(src + (i * a + j) * xs + c0, n);
          W::template out<T>(row, r[i]);
        }
        for (int j = 0; j < m; ++j) {  // A^T (M A), column by column
          Vt col[a], out[m];
          for (int i = 0; i < a; ++i) col[i] = r[i][j];
          W::template out<T>(col, out);
          for (int i = 0; i < m; ++i) store_lanes(dst + i * ws + j * Co + c0, out[i] + b, n);
        }
      }
    }
}

/// The adjoint of transform_output: dM[xi][row0 + t][co] = (A dY A^T)[xi] from the
/// channel-last output gradient gyt [m th][m tw][Co] (zero outside Ho x Wo).
template <class W, class T>
void transform_output_adjoint(const T* gyt, T* dM, int64_t row0, int64_t rows, int64_t Co, const Tiles& tl) {
  constexpr int a = W::a, m = W::m;
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  const int64_t xs = rows * Co, ws = m * tl.tw * Co;
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = gyt + (m * ty * m * tl.tw + m * tx) * Co;
      T* dst = dM + (row0 + ty * tl.tw + tx) * Co;
      for (int64_t c0 = 0; c0 < Co; c0 += L) {
        const int64_t n = std::min(L, Co - c0);
        Vt c[a][m];  // A dY, column by column
        for (int j = 0; j < m; ++j) {
          Vt col[m], out[a];
          for (int i = 0; i < m; ++i) col[i] = load_lanes(src + i * ws + j * Co + c0, n);
          W::template out_adj<T>(col, out);
          for (int i = 0; i < a; ++i) c[i][j] = out[i];
        }
        for (int i = 0; i < a; ++i) {  // (A dY) A^T, row by row
          Vt out[a];
          W::template out_adj<T>(c[i], out);
          for (int j = 0; j < a; ++j) store_lanes(dst + (i * a + j) * xs + c0, out[j], n);
        }
      }
    }
}

template <class W, class T>
void forward(const T* x, const T* U, const T* bias, T* y, const ConvGeom& g, const Plan& pl, T* work) {
  constexpr int A2 = W::a * W::a;
  const int64_t cap = pl.nb * pl.P;
  // lane_gemm reads B by rows: U_xi^T [C][Co], transposed once per call.
  const bool lanes = lane_gemm_fits<T>(g.Co);
  std::vector<T> Ut(lanes ? static_cast<size_t>(A2 * g.C * g.Co) : 0);
  if (lanes)
    parallel_for(A2, 1, [&](int64_t b, int64_t e) {
      for (int64_t xi = b; xi < e; ++xi)
        for (int64_t co = 0; co < g.Co; ++co)
          for (int64_t c = 0; c < g.C; ++c) Ut[(xi * g.C + c) * g.Co + co] = U[(xi * g.Co + co) * g.C + c];
    });
  parallel_for(pl.groups, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t gi = gb; gi < ge; ++gi) {
      T* V = work + gi * pl.per_group;
      T* M = V + A2 * cap * g.C;
      T* xp = M + A2 * cap * (g.Co + g.C) + A2 * g.Co * g.C;
      T* yt = xp + pl.Hp * pl.Wp * g.C;
      for (int64_t b = gi; b < pl.batches; b += pl.groups) {
        const int64_t n0 = b * pl.nb, cnt = std::min(pl.nb, g.N - n0), rows = cnt * pl.P;
        for (int64_t k = 0; k < cnt; ++k) {
          pad_channels_last(x + (n0 + k) * g.C * g.H * g.W, xp, g.C, g.H, g.W, g.ph, g.pw, pl.Hp, pl.Wp);
          transform_input<W>(xp, V, k * pl.P, rows, g.C, pl.tl, pl.Wp);
        }
        for (int xi = 0; xi < A2; ++xi) {  // M_xi [rows, Co] = V_xi [rows, C] U_xi^T
          if (lanes)
            lane_gemm<T>(rows, g.Co, g.C, V + xi * rows * g.C, g.C, 1, Ut.data() + xi * g.C * g.Co, g.Co, false,
                         M + xi * rows * g.Co, g.Co);
          else
            gemm<T>(false, true, rows, g.Co, g.C, T(1), V + xi * rows * g.C, g.C, U + xi * g.Co * g.C, g.C, T(0),
                    M + xi * rows * g.Co, g.Co);
        }
        for (int64_t k = 0; k < cnt; ++k) {
          transform_output<W>(M, k * pl.P, rows, bias, yt, g.Co, pl.tl);
          crop_channels_first(yt, y + (n0 + k) * g.Co * g.Ho * g.Wo, g.Co, g.Ho, g.Wo, 0, 0, W::m * pl.tl.tw);
        }
      }
    }
  });
}

template <class W, class T>
void backward(const T* x, const T* U, const T* gy, T* gx, T* dU, const ConvGeom& g, const Plan& pl, T* work) {
  constexpr int A2 = W::a * W::a, m = W::m;
  const int64_t usize = A2 * g.Co * g.C, cap = pl.nb * pl.P;
  const bool lanes = lane_gemm_fits<T>(g.C);  // dV and dU are C wide
  const auto part_of = [&](int64_t gi) { return work + gi * pl.per_group + A2 * cap * (2 * g.C + g.Co); };
  parallel_for(pl.groups, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t gi = gb; gi < ge; ++gi) {
      T* V = work + gi * pl.per_group;
      T* dM = V + A2 * cap * g.C;
      T* dV = dM + A2 * cap * g.Co;
      T* part = part_of(gi);
      T* xp = part + usize;
      T* gyt = xp + pl.Hp * pl.Wp * g.C;
      bool first = true;
      for (int64_t b = gi; b < pl.batches; b += pl.groups) {
        const int64_t n0 = b * pl.nb, cnt = std::min(pl.nb, g.N - n0), rows = cnt * pl.P;
        for (int64_t k = 0; k < cnt; ++k) {
          // The output gradient channel-last over whole tiles, zero outside Ho x Wo.
          pad_channels_last(gy + (n0 + k) * g.Co * g.Ho * g.Wo, gyt, g.Co, g.Ho, g.Wo, 0, 0, m * pl.tl.th,
                            m * pl.tl.tw);
          transform_output_adjoint<W>(gyt, dM, k * pl.P, rows, g.Co, pl.tl);
        }
        if (gx) {
          for (int xi = 0; xi < A2; ++xi) {  // dV_xi [rows, C] = dM_xi [rows, Co] U_xi
            if (lanes)
              lane_gemm<T>(rows, g.C, g.Co, dM + xi * rows * g.Co, g.Co, 1, U + xi * g.Co * g.C, g.C, false,
                           dV + xi * rows * g.C, g.C);
            else
              gemm<T>(false, false, rows, g.C, g.Co, T(1), dM + xi * rows * g.Co, g.Co, U + xi * g.Co * g.C, g.C,
                      T(0), dV + xi * rows * g.C, g.C);
          }
          for (int64_t k = 0; k < cnt; ++k) {
            std::fill(xp, xp + pl.Hp * pl.Wp * g.C, T(0));
            transform_input_adjoint<W>(dV, k * pl.P, rows, xp, g.C, pl.tl, pl.Wp);
            crop_channels_first(xp, gx + (n0 + k) * g.C * g.H * g.W, g.C, g.H, g.W, g.ph, g.pw, pl.Wp);
          }
        }
        if (dU) {
          for (int64_t k = 0; k < cnt; ++k) {
            pad_channels_last(x + (n0 + k) * g.C * g.H * g.W, xp, g.C, g.H, g.W, g.ph, g.pw, pl.Hp, pl.Wp);
            transform_input<W>(xp, V, k * pl.P, rows, g.C, pl.tl, pl.Wp);
          }
          for (int xi = 0; xi < A2; ++xi) {  // dU_xi [Co, C] += dM_xi^T V_xi
            if (lanes)
              lane_gemm<T>(g.Co, g.C, rows, dM + xi * rows * g.Co, 1, g.Co, V + xi * rows * g.C, g.C, !first,
                           part + xi * g.Co * g.C, g.C);
            else
              gemm<T>(true, false, g.Co, g.C, rows, T(1), dM + xi * rows * g.Co, g.Co, V + xi * rows * g.C, g.C,
                      first ? T(0) : T(1), part + xi * g.Co * g.C, g.C);
          }
          first = false;
        }
      }
      if (dU && first) std::fill(part, part + usize, T(0));
    }
  });
  if (dU) {
    std::copy(part_of(0), part_of(0) + usize, dU);
    for (int64_t gi = 1; gi < pl.groups; ++gi) ArrMap<T>(dU, usize) += CArrMap<T>(part_of(gi), usize);
  }
}

}  // namespace detail

/// U (filter_size(g) elements) = the transformed filter of w [Co][C][3][3].
template <class T>
void transform_filter(const T* w, T* U, const ConvGeom& g) {
  if (tile_size(g) == 4) detail::transform_filter<F4>(w, U, g.Co, g.C);
  else detail::transform_filter<F2>(w, U, g.Co, g.C);
}

/// The adjoint of transform_filter: dw [Co][C][3][3] from dU.
template <class T>
void transform_filter_adjoint(const T* dU, T* dw, const ConvGeom& g) {
  if (tile_size(g) == 4) detail::transform_filter_adjoint<F4>(dU, dw, g.Co, g.C);
  else detail::transform_filter_adjoint<F2>(dU, dw, g.Co, g.C);
}

/// y = conv3x3(x, w) + bias, U the transformed filter. `work` holds
/// workspace_size(g) elements.
template <class T>
void forward(const T* x, const T* U, const T* bias, T* y, const ConvGeom& g, T* work) {
  const Plan pl = plan(g);
  if (pl.m == 4) detail::forward<F4>(x, U, bias, y, g, pl, work);
  else detail::forward<F2>(x, U, bias, y, g, pl, work);
}

/// Gradients of forward(): gx (overwritten) and dU (the gradient of the
/// transformed filter, overwritten), each only when non-null.
template <class T>
void backward(const T* x, const T* U, const T* gy, T* gx, T* dU, const ConvGeom& g, T* work) {
  const Plan pl = plan(g);
  if (pl.m == 4) detail::backward<F4>(x, U, gy, gx, dU, g, pl, work);
  else detail::backward<F2>(x, U, gy, gx, dU, g, pl, work);
}

}  // namespace nanode::cpu::winograd
