#pragma once
// 3x3, stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
// Gray, 2016): each 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A for the 4x4
// input patch d, so the channel sums become 16 GEMMs with 2.25x fewer
// multiplications than im2col. The backward pass applies the adjoints of the
// same transforms, so its gradients are exactly those of the forward computation.
// Layout: each image is first copied channel-last and zero-padded ([Hp][Wp][C]),
// so a tile's transform is 16 loads, 32 adds and 16 stores of contiguous channel
// vectors (the compiler vectorises over channels) with no bounds checks; V and M
// are [16][tiles][C] and [16][tiles][Co]. The tiles of a batch of images go
// through the 16 GEMMs together (about 128 rows, so that small images still make
// GEMMs of a useful size); batches are split over a fixed number of groups
// (kConvGroups), each summing its own weight gradient, so results do not depend
// on the thread count.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "nanode/backend/cpu/conv.hpp"

namespace nanode::cpu::winograd {

/// Whether conv2d uses Winograd where it applies (on by default; tests turn it
/// off to compare with the im2col path).
inline bool& enabled() {
  static bool on = true;
  return on;
}

inline bool applicable(const ConvGeom& g) {
  return enabled() && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.Ho >= 1 && g.Wo >= 1;
}

struct Tiles {
  int64_t th, tw, per_image;
};
inline Tiles tiles(const ConvGeom& g) {
  const int64_t th = (g.Ho + 1) / 2, tw = (g.Wo + 1) / 2;
  return {th, tw, th * tw};
}

/// Images whose tiles share one set of GEMMs: about 128 tiles.
inline int64_t batch_images(const ConvGeom& g) {
  const int64_t P = tiles(g).per_image;
  return std::max<int64_t>(1, std::min<int64_t>(g.N, 128 / std::max<int64_t>(P, 1)));
}

struct Plan {
  int64_t P, nb, batches, groups, Hp, Wp, per_group;
};
/// Batches, groups and per-group scratch: V, M (or dM) and dV as [16][nb P][C or
/// Co], a [16][Co][C] weight-gradient partial, a padded channel-last image and a
/// channel-last output (or output gradient) image.
inline Plan plan(const ConvGeom& g) {
  Plan p;
  const Tiles tl = tiles(g);
  p.P = tl.per_image;
  p.nb = batch_images(g);
  p.batches = (g.N + p.nb - 1) / p.nb;
  p.groups = std::max<int64_t>(1, std::min<int64_t>(kConvGroups, p.batches));
  p.Hp = 2 * tl.th + 2, p.Wp = 2 * tl.tw + 2;
  const int64_t rows = p.nb * p.P;
  p.per_group = 16 * rows * g.C + 16 * rows * g.Co + 16 * rows * g.C + 16 * g.Co * g.C + p.Hp * p.Wp * g.C +
                4 * tl.th * tl.tw * g.Co;
  return p;
}

/// Scratch the forward and backward passes need (elements).
inline int64_t workspace_size(const ConvGeom& g) {
  const Plan p = plan(g);
  return p.groups * p.per_group;
}

/// U[xi][co][c] = (G w[co][c] G^T)[xi], G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]].
template <class T>
void transform_filter(const T* w, T* U, int64_t Co, int64_t C) {
  const int64_t stride = Co * C;
  for (int64_t k = 0; k < Co * C; ++k) {
    const T* g = w + k * 9;
    T tmp[4][3];  // G g
    for (int j = 0; j < 3; ++j) {
      const T g0 = g[0 * 3 + j], g1 = g[1 * 3 + j], g2 = g[2 * 3 + j];
      tmp[0][j] = g0;
      tmp[1][j] = T(0.5) * (g0 + g1 + g2);
      tmp[2][j] = T(0.5) * (g0 - g1 + g2);
      tmp[3][j] = g2;
    }
    for (int i = 0; i < 4; ++i) {
      const T a = tmp[i][0], b = tmp[i][1], c = tmp[i][2];
      U[(i * 4 + 0) * stride + k] = a;
      U[(i * 4 + 1) * stride + k] = T(0.5) * (a + b + c);
      U[(i * 4 + 2) * stride + k] = T(0.5) * (a - b + c);
      U[(i * 4 + 3) * stride + k] = c;
    }
  }
}

/// The adjoint of transform_filter: dw[co][c] (3x3) from dU[xi][co][c].
template <class T>
void transform_filter_adjoint(const T* dU, T* dw, int64_t Co, int64_t C) {
  const int64_t stride = Co * C;
  for (int64_t k = 0; k < Co * C; ++k) {
    T tmp[4][3];  // rows i of (du G)
    for (int i = 0; i < 4; ++i) {
      const T u0 = dU[(i * 4 + 0) * stride + k], u1 = dU[(i * 4 + 1) * stride + k];
      const T u2 = dU[(i * 4 + 2) * stride + k], u3 = dU[(i * 4 + 3) * stride + k];
      tmp[i][0] = u0 + T(0.5) * (u1 + u2);
      tmp[i][1] = T(0.5) * (u1 - u2);
      tmp[i][2] = T(0.5) * (u1 + u2) + u3;
    }
    T* g = dw + k * 9;
    for (int j = 0; j < 3; ++j) {
      const T u0 = tmp[0][j], u1 = tmp[1][j], u2 = tmp[2][j], u3 = tmp[3][j];
      g[0 * 3 + j] = u0 + T(0.5) * (u1 + u2);
      g[1 * 3 + j] = T(0.5) * (u1 - u2);
      g[2 * 3 + j] = T(0.5) * (u1 + u2) + u3;
    }
  }
}

namespace detail {

template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using StridedMap = Eigen::Map<RowMajor<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CStridedMap = Eigen::Map<const RowMajor<T>, 0, Eigen::OuterStride<>>;

/// xp [Hp][Wp][C] = x [C][H][W] moved to (row + ph, column + pw), zero elsewhere.
template <class T>
void pad_channels_last(const T* x, T* xp, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t Hp,
                       int64_t Wp) {
  std::fill(xp, xp + Hp * Wp * C, T(0));
  const int64_t w = std::min(W, Wp - pw);
  for (int64_t y = 0; y < H && y + ph < Hp; ++y)
    StridedMap<T>(xp + ((y + ph) * Wp + pw) * C, w, C, Eigen::OuterStride<>(C)) =
        CStridedMap<T>(x + y * W, C, w, Eigen::OuterStride<>(H * W)).transpose();
}

/// x [C][H][W] = the window at (ph, pw) of xp [Hp][Wp][C] (a channel-last image).
template <class T>
void crop_channels_first(const T* xp, T* x, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw, int64_t Wp) {
  for (int64_t y = 0; y < H; ++y)
    StridedMap<T>(x + y * W, C, W, Eigen::OuterStride<>(H * W)) =
        CStridedMap<T>(xp + ((y + ph) * Wp + pw) * C, W, C, Eigen::OuterStride<>(C)).transpose();
}

}  // namespace detail

namespace detail {
/// Channels a transform handles at once: local arrays of this many lanes keep
/// the arithmetic free of aliasing, so the compiler vectorises it.
constexpr int64_t kLanes = 16;

/// dst[0..L) = src[0..n), zeros after (n <= L).
template <class T>
inline void load_lanes(T* __restrict dst, const T* __restrict src, int64_t n) {
  if (n == kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) dst[l] = src[l];
  } else {
    for (int64_t l = 0; l < kLanes; ++l) dst[l] = l < n ? src[l] : T(0);
  }
}
template <class T>
inline void store_lanes(T* __restrict dst, const T* __restrict src, int64_t n) {
  if (n == kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) dst[l] = src[l];
  } else {
    for (int64_t l = 0; l < n; ++l) dst[l] = src[l];
  }
}
template <class T>
inline void add_lanes(T* __restrict dst, const T* __restrict src, int64_t n) {
  if (n == kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) dst[l] += src[l];
  } else {
    for (int64_t l = 0; l < n; ++l) dst[l] += src[l];
  }
}
}  // namespace detail

/// V[xi][row0 + t][c] = (B^T d B)[xi] for the 4x4 patch d (every channel) of tile t
/// of one image, from its padded channel-last copy xp; V has `rows` rows per xi.
/// B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].
template <class T>
void transform_input(const T* xp, T* V, int64_t row0, int64_t rows, int64_t C, const Tiles& tl, int64_t Wp) {
  constexpr int64_t L = detail::kLanes;
  const int64_t xs = rows * C, rs = Wp * C;  // between xi; between rows of the patch
  alignas(64) T d[4][4][L], o[16][L];
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = xp + (2 * ty * Wp + 2 * tx) * C;
      T* v = V + (row0 + ty * tl.tw + tx) * C;
      for (int64_t c0 = 0; c0 < C; c0 += L) {
        const int64_t n = std::min(L, C - c0);
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) detail::load_lanes(d[i][j], src + i * rs + j * C + c0, n);
        for (int64_t l = 0; l < L; ++l) {
          T r[4][4];  // B^T d
          for (int j = 0; j < 4; ++j) {
            r[0][j] = d[0][j][l] - d[2][j][l];
            r[1][j] = d[1][j][l] + d[2][j][l];
            r[2][j] = d[2][j][l] - d[1][j][l];
            r[3][j] = d[1][j][l] - d[3][j][l];
          }
          for (int i = 0; i < 4; ++i) {  // (B^T d) B
            o[i * 4 + 0][l] = r[i][0] - r[i][2];
            o[i * 4 + 1][l] = r[i][1] + r[i][2];
            o[i * 4 + 2][l] = r[i][2] - r[i][1];
            o[i * 4 + 3][l] = r[i][1] - r[i][3];
          }
        }
        for (int xi = 0; xi < 16; ++xi) detail::store_lanes(v + xi * xs + c0, o[xi], n);
      }
    }
}

/// The adjoint of transform_input: adds B dV B^T of every tile into the padded
/// channel-last gradient dxp (zeroed by the caller).
template <class T>
void transform_input_adjoint(const T* dV, int64_t row0, int64_t rows, T* dxp, int64_t C, const Tiles& tl, int64_t Wp) {
  constexpr int64_t L = detail::kLanes;
  const int64_t xs = rows * C, rs = Wp * C;
  alignas(64) T v[16][L], d[4][4][L];
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = dV + (row0 + ty * tl.tw + tx) * C;
      T* dst = dxp + (2 * ty * Wp + 2 * tx) * C;
      for (int64_t c0 = 0; c0 < C; c0 += L) {
        const int64_t n = std::min(L, C - c0);
        for (int xi = 0; xi < 16; ++xi) detail::load_lanes(v[xi], src + xi * xs + c0, n);
        for (int64_t l = 0; l < L; ++l) {
          T r[4][4];  // dV B^T, row by row
          for (int i = 0; i < 4; ++i) {
            const T v0 = v[i * 4 + 0][l], v1 = v[i * 4 + 1][l], v2 = v[i * 4 + 2][l], v3 = v[i * 4 + 3][l];
            r[i][0] = v0;
            r[i][1] = v1 - v2 + v3;
            r[i][2] = v1 + v2 - v0;
            r[i][3] = -v3;
          }
          for (int j = 0; j < 4; ++j) {  // B (dV B^T)
            d[0][j][l] = r[0][j];
            d[1][j][l] = r[1][j] - r[2][j] + r[3][j];
            d[2][j][l] = r[1][j] + r[2][j] - r[0][j];
            d[3][j][l] = -r[3][j];
          }
        }
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) detail::add_lanes(dst + i * rs + j * C + c0, d[i][j], n);
      }
    }
}

/// yt [2 th][2 tw][Co] (channel-last, whole tiles) = A^T M A (+ bias) for the tiles
/// of one image. A^T = [[1,1,1,0],[0,1,-1,-1]].
template <class T>
void transform_output(const T* M, int64_t row0, int64_t rows, const T* bias, T* yt, int64_t Co, const Tiles& tl) {
  constexpr int64_t L = detail::kLanes;
  const int64_t xs = rows * Co, ws = 2 * tl.tw * Co;  // between xi; between output rows
  alignas(64) T m[16][L], y[2][2][L], b[L];
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = M + (row0 + ty * tl.tw + tx) * Co;
      T* dst = yt + (2 * ty * 2 * tl.tw + 2 * tx) * Co;
      for (int64_t c0 = 0; c0 < Co; c0 += L) {
        const int64_t n = std::min(L, Co - c0);
        for (int xi = 0; xi < 16; ++xi) detail::load_lanes(m[xi], src + xi * xs + c0, n);
        if (bias) detail::load_lanes(b, bias + c0, n);
        else std::fill(b, b + L, T(0));
        for (int64_t l = 0; l < L; ++l) {
          T r[4][2];  // m A
          for (int i = 0; i < 4; ++i) {
            r[i][0] = m[i * 4 + 0][l] + m[i * 4 + 1][l] + m[i * 4 + 2][l];
            r[i][1] = m[i * 4 + 1][l] - m[i * 4 + 2][l] - m[i * 4 + 3][l];
          }
          for (int j = 0; j < 2; ++j) {
            y[0][j][l] = r[0][j] + r[1][j] + r[2][j] + b[l];
            y[1][j][l] = r[1][j] - r[2][j] - r[3][j] + b[l];
          }
        }
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) detail::store_lanes(dst + i * ws + j * Co + c0, y[i][j], n);
      }
    }
}

/// The adjoint of transform_output: dM[xi][row0 + t][co] = (A dY A^T)[xi] from the
/// channel-last output gradient gyt [2 th][2 tw][Co] (zero outside Ho x Wo).
template <class T>
void transform_output_adjoint(const T* gyt, T* dM, int64_t row0, int64_t rows, int64_t Co, const Tiles& tl) {
  constexpr int64_t L = detail::kLanes;
  const int64_t xs = rows * Co, ws = 2 * tl.tw * Co;
  alignas(64) T dy[2][2][L], m[16][L];
  for (int64_t ty = 0; ty < tl.th; ++ty)
    for (int64_t tx = 0; tx < tl.tw; ++tx) {
      const T* src = gyt + (2 * ty * 2 * tl.tw + 2 * tx) * Co;
      T* dst = dM + (row0 + ty * tl.tw + tx) * Co;
      for (int64_t c0 = 0; c0 < Co; c0 += L) {
        const int64_t n = std::min(L, Co - c0);
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) detail::load_lanes(dy[i][j], src + i * ws + j * Co + c0, n);
        for (int64_t l = 0; l < L; ++l) {
          const T a0 = dy[0][0][l], a1 = dy[0][1][l], b0 = dy[1][0][l], b1 = dy[1][1][l];
          const T c[4][2] = {{a0, a1}, {a0 + b0, a1 + b1}, {a0 - b0, a1 - b1}, {-b0, -b1}};  // A dY
          for (int i = 0; i < 4; ++i) {  // (A dY) A^T
            m[i * 4 + 0][l] = c[i][0];
            m[i * 4 + 1][l] = c[i][0] + c[i][1];
            m[i * 4 + 2][l] = c[i][0] - c[i][1];
            m[i * 4 + 3][l] = -c[i][1];
          }
        }
        for (int xi = 0; xi < 16; ++xi) detail::store_lanes(dst + xi * xs + c0, m[xi], n);
      }
    }
}

/// y = conv3x3(x, w) + bias. U: the transformed filter [16][Co][C]. `work` holds
/// workspace_size(g) elements.
template <class T>
void forward(const T* x, const T* U, const T* bias, T* y, const ConvGeom& g, T* work) {
  const Tiles tl = tiles(g);
  const Plan pl = plan(g);
  const int64_t cap = pl.nb * pl.P;
  parallel_for(pl.groups, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t gi = gb; gi < ge; ++gi) {
      T* V = work + gi * pl.per_group;
      T* M = V + 16 * cap * g.C;
      T* xp = M + 16 * cap * g.Co + 16 * cap * g.C + 16 * g.Co * g.C;
      T* yt = xp + pl.Hp * pl.Wp * g.C;
      for (int64_t b = gi; b < pl.batches; b += pl.groups) {
        const int64_t n0 = b * pl.nb, cnt = std::min(pl.nb, g.N - n0), rows = cnt * pl.P;
        for (int64_t k = 0; k < cnt; ++k) {
          detail::pad_channels_last(x + (n0 + k) * g.C * g.H * g.W, xp, g.C, g.H, g.W, g.ph, g.pw, pl.Hp, pl.Wp);
          transform_input(xp, V, k * pl.P, rows, g.C, tl, pl.Wp);
        }
        for (int xi = 0; xi < 16; ++xi)  // M_xi [rows, Co] = V_xi [rows, C] U_xi^T
          gemm<T>(false, true, rows, g.Co, g.C, T(1), V + xi * rows * g.C, g.C, U + xi * g.Co * g.C, g.C, T(0),
                  M + xi * rows * g.Co, g.Co);
        for (int64_t k = 0; k < cnt; ++k) {
          transform_output(M, k * pl.P, rows, bias, yt, g.Co, tl);
          detail::crop_channels_first(yt, y + (n0 + k) * g.Co * g.Ho * g.Wo, g.Co, g.Ho, g.Wo, 0, 0, 2 * tl.tw);
        }
      }
    }
  });
}

/// Gradients of forward(): gx (overwritten) and dU (the filter-domain weight
/// gradient [16][Co][C], overwritten), each only when non-null.
template <class T>
void backward(const T* x, const T* U, const T* gy, T* gx, T* dU, const ConvGeom& g, T* work) {
  const Tiles tl = tiles(g);
  const Plan pl = plan(g);
  const int64_t usize = 16 * g.Co * g.C, cap = pl.nb * pl.P;
  parallel_for(pl.groups, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t gi = gb; gi < ge; ++gi) {
      T* V = work + gi * pl.per_group;
      T* dM = V + 16 * cap * g.C;
      T* dV = dM + 16 * cap * g.Co;
      T* part = dV + 16 * cap * g.C;
      T* xp = part + usize;
      T* gyt = xp + pl.Hp * pl.Wp * g.C;
      bool first = true;
      for (int64_t b = gi; b < pl.batches; b += pl.groups) {
        const int64_t n0 = b * pl.nb, cnt = std::min(pl.nb, g.N - n0), rows = cnt * pl.P;
        for (int64_t k = 0; k < cnt; ++k) {
          // The output gradient channel-last over whole tiles, zero outside Ho x Wo.
          detail::pad_channels_last(gy + (n0 + k) * g.Co * g.Ho * g.Wo, gyt, g.Co, g.Ho, g.Wo, 0, 0, 2 * tl.th,
                                    2 * tl.tw);
          transform_output_adjoint(gyt, dM, k * pl.P, rows, g.Co, tl);
        }
        if (gx) {
          for (int xi = 0; xi < 16; ++xi)  // dV_xi [rows, C] = dM_xi [rows, Co] U_xi
            gemm<T>(false, false, rows, g.C, g.Co, T(1), dM + xi * rows * g.Co, g.Co, U + xi * g.Co * g.C, g.C, T(0),
                    dV + xi * rows * g.C, g.C);
          for (int64_t k = 0; k < cnt; ++k) {
            std::fill(xp, xp + pl.Hp * pl.Wp * g.C, T(0));
            transform_input_adjoint(dV, k * pl.P, rows, xp, g.C, tl, pl.Wp);
            detail::crop_channels_first(xp, gx + (n0 + k) * g.C * g.H * g.W, g.C, g.H, g.W, g.ph, g.pw, pl.Wp);
          }
        }
        if (dU) {
          for (int64_t k = 0; k < cnt; ++k) {
            detail::pad_channels_last(x + (n0 + k) * g.C * g.H * g.W, xp, g.C, g.H, g.W, g.ph, g.pw, pl.Hp, pl.Wp);
            transform_input(xp, V, k * pl.P, rows, g.C, tl, pl.Wp);
          }
          for (int xi = 0; xi < 16; ++xi)  // dU_xi [Co, C] += dM_xi^T V_xi
            gemm<T>(true, false, g.Co, g.C, rows, T(1), dM + xi * rows * g.Co, g.Co, V + xi * rows * g.C, g.C,
                    first ? T(0) : T(1), part + xi * g.Co * g.C, g.C);
          first = false;
        }
      }
      if (dU && first) std::fill(part, part + usize, T(0));
    }
  });
  if (dU) {
    const auto part = [&](int64_t gi) { return work + gi * pl.per_group + 16 * cap * (2 * g.C + g.Co); };
    std::copy(part(0), part(0) + usize, dU);
    for (int64_t gi = 1; gi < pl.groups; ++gi) ArrMap<T>(dU, usize) += CArrMap<T>(part(gi), usize);
  }
}

}  // namespace nanode::cpu::winograd
