#pragma once
// 3x3, stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
// Gray, 2016): each 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A for the 4x4
// input patch d, so the channel sums become 16 GEMMs with 2.25x fewer
// multiplications than im2col. The backward pass applies the adjoints of the
// same transforms, so its gradients are exactly those of the forward computation.
// Work is split by image: the tiles of one image never touch another's gradient.
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

/// Scratch per image group: V, M (or dM), dV as [16][C or Co][P], and a [16][Co][C] partial.
inline int64_t workspace_per_group(const ConvGeom& g) {
  const int64_t P = tiles(g).per_image;
  return 16 * g.C * P + 16 * g.Co * P + 16 * g.C * P + 16 * g.Co * g.C;
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

/// V[xi][c][t] = (B^T d B)[xi] for the 4x4 patch d of tile t of one image (zero
/// outside the image). B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].
/// Tile by tile: interior tiles read their patch without bounds checks.
template <class T>
void transform_input(const T* x, T* V, const ConvGeom& g, const Tiles& tl) {
  const int64_t P = tl.per_image, stride = g.C * P;
  for (int64_t c = 0; c < g.C; ++c) {
    const T* xc = x + c * g.H * g.W;
    T* vc = V + c * P;
    for (int64_t ty = 0; ty < tl.th; ++ty) {
      const int64_t y0 = 2 * ty - g.ph;
      const bool rows_in = y0 >= 0 && y0 + 3 < g.H;
      for (int64_t tx = 0; tx < tl.tw; ++tx) {
        const int64_t x0 = 2 * tx - g.pw;
        T d[4][4];
        if (rows_in && x0 >= 0 && x0 + 3 < g.W) {
          for (int i = 0; i < 4; ++i) {
            const T* src = xc + (y0 + i) * g.W + x0;
            d[i][0] = src[0], d[i][1] = src[1], d[i][2] = src[2], d[i][3] = src[3];
          }
        } else {
          for (int i = 0; i < 4; ++i) {
            const int64_t yy = y0 + i;
            for (int j = 0; j < 4; ++j) {
              const int64_t xx = x0 + j;
              d[i][j] = (yy >= 0 && yy < g.H && xx >= 0 && xx < g.W) ? xc[yy * g.W + xx] : T(0);
            }
          }
        }
        T r[4][4];  // B^T d
        for (int j = 0; j < 4; ++j) {
          r[0][j] = d[0][j] - d[2][j];
          r[1][j] = d[1][j] + d[2][j];
          r[2][j] = d[2][j] - d[1][j];
          r[3][j] = d[1][j] - d[3][j];
        }
        T* v = vc + ty * tl.tw + tx;
        for (int i = 0; i < 4; ++i) {  // (B^T d) B
          v[(i * 4 + 0) * stride] = r[i][0] - r[i][2];
          v[(i * 4 + 1) * stride] = r[i][1] + r[i][2];
          v[(i * 4 + 2) * stride] = r[i][2] - r[i][1];
          v[(i * 4 + 3) * stride] = r[i][1] - r[i][3];
        }
      }
    }
  }
}

/// The adjoint of transform_input: accumulates B dV B^T into the image gradient.
template <class T>
void transform_input_adjoint(const T* dV, T* dx, const ConvGeom& g, const Tiles& tl) {
  const int64_t P = tl.per_image, stride = g.C * P;
  for (int64_t c = 0; c < g.C; ++c) {
    T* dxc = dx + c * g.H * g.W;
    const T* vc = dV + c * P;
    for (int64_t ty = 0; ty < tl.th; ++ty) {
      const int64_t y0 = 2 * ty - g.ph;
      const bool rows_in = y0 >= 0 && y0 + 3 < g.H;
      for (int64_t tx = 0; tx < tl.tw; ++tx) {
        const T* v = vc + ty * tl.tw + tx;
        T r[4][4];  // (dV) B^T, row by row
        for (int i = 0; i < 4; ++i) {
          const T v0 = v[(i * 4 + 0) * stride], v1 = v[(i * 4 + 1) * stride];
          const T v2 = v[(i * 4 + 2) * stride], v3 = v[(i * 4 + 3) * stride];
          r[i][0] = v0;
          r[i][1] = v1 - v2 + v3;
          r[i][2] = v1 + v2 - v0;
          r[i][3] = -v3;
        }
        T d[4][4];  // B (dV B^T)
        for (int j = 0; j < 4; ++j) {
          d[0][j] = r[0][j];
          d[1][j] = r[1][j] - r[2][j] + r[3][j];
          d[2][j] = r[1][j] + r[2][j] - r[0][j];
          d[3][j] = -r[3][j];
        }
        const int64_t x0 = 2 * tx - g.pw;
        if (rows_in && x0 >= 0 && x0 + 3 < g.W) {
          for (int i = 0; i < 4; ++i) {
            T* dst = dxc + (y0 + i) * g.W + x0;
            dst[0] += d[i][0], dst[1] += d[i][1], dst[2] += d[i][2], dst[3] += d[i][3];
          }
        } else {
          for (int i = 0; i < 4; ++i) {
            const int64_t yy = y0 + i;
            if (yy < 0 || yy >= g.H) continue;
            for (int j = 0; j < 4; ++j) {
              const int64_t xx = x0 + j;
              if (xx >= 0 && xx < g.W) dxc[yy * g.W + xx] += d[i][j];
            }
          }
        }
      }
    }
  }
}

/// y[co] tiles = A^T M A (+ bias), cropped to Ho x Wo. A^T = [[1,1,1,0],[0,1,-1,-1]].
template <class T>
void transform_output(const T* M, const T* bias, T* y, const ConvGeom& g, const Tiles& tl) {
  const int64_t P = tl.per_image, stride = g.Co * P;
  for (int64_t co = 0; co < g.Co; ++co) {
    T* yc = y + co * g.Ho * g.Wo;
    const T* mc = M + co * P;
    const T b = bias ? bias[co] : T(0);
    for (int64_t ty = 0; ty < tl.th; ++ty) {
      const int64_t oy = 2 * ty;
      for (int64_t tx = 0; tx < tl.tw; ++tx) {
        const T* m = mc + ty * tl.tw + tx;
        T r[4][2];  // m A
        for (int i = 0; i < 4; ++i) {
          const T m0 = m[(i * 4 + 0) * stride], m1 = m[(i * 4 + 1) * stride];
          const T m2 = m[(i * 4 + 2) * stride], m3 = m[(i * 4 + 3) * stride];
          r[i][0] = m0 + m1 + m2;
          r[i][1] = m1 - m2 - m3;
        }
        const int64_t ox = 2 * tx;
        for (int j = 0; j < 2 && ox + j < g.Wo; ++j) {
          yc[oy * g.Wo + ox + j] = r[0][j] + r[1][j] + r[2][j] + b;
          if (oy + 1 < g.Ho) yc[(oy + 1) * g.Wo + ox + j] = r[1][j] - r[2][j] - r[3][j] + b;
        }
      }
    }
  }
}

/// The adjoint of transform_output: dM[xi][co][t] = (A dY A^T)[xi], dY zero outside Ho x Wo.
template <class T>
void transform_output_adjoint(const T* gy, T* dM, const ConvGeom& g, const Tiles& tl) {
  const int64_t P = tl.per_image, stride = g.Co * P;
  for (int64_t co = 0; co < g.Co; ++co) {
    const T* gc = gy + co * g.Ho * g.Wo;
    T* mc = dM + co * P;
    for (int64_t ty = 0; ty < tl.th; ++ty) {
      const int64_t oy = 2 * ty;
      for (int64_t tx = 0; tx < tl.tw; ++tx) {
        const int64_t ox = 2 * tx;
        T dy[2][2];
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j)
            dy[i][j] = (oy + i < g.Ho && ox + j < g.Wo) ? gc[(oy + i) * g.Wo + ox + j] : T(0);
        T c[4][2];  // A dY
        for (int j = 0; j < 2; ++j) {
          c[0][j] = dy[0][j];
          c[1][j] = dy[0][j] + dy[1][j];
          c[2][j] = dy[0][j] - dy[1][j];
          c[3][j] = -dy[1][j];
        }
        T* m = mc + ty * tl.tw + tx;
        for (int i = 0; i < 4; ++i) {  // (A dY) A^T
          m[(i * 4 + 0) * stride] = c[i][0];
          m[(i * 4 + 1) * stride] = c[i][0] + c[i][1];
          m[(i * 4 + 2) * stride] = c[i][0] - c[i][1];
          m[(i * 4 + 3) * stride] = -c[i][1];
        }
      }
    }
  }
}

/// y = conv3x3(x, w) + bias. U: the transformed filter [16][Co][C]. `work` holds
/// conv_workers(N) groups of workspace_per_group(g).
template <class T>
void forward(const T* x, const T* U, const T* bias, T* y, const ConvGeom& g, T* work) {
  const Tiles tl = tiles(g);
  const int64_t P = tl.per_image, groups = conv_workers(g.N), per = workspace_per_group(g);
  parallel_for(groups, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t gi = gb; gi < ge; ++gi) {
      T* V = work + gi * per;
      T* M = V + 16 * g.C * P;
      for (int64_t n = gi; n < g.N; n += groups) {
        transform_input(x + n * g.C * g.H * g.W, V, g, tl);
        for (int xi = 0; xi < 16; ++xi)
          gemm<T>(false, false, g.Co, P, g.C, T(1), U + xi * g.Co * g.C, g.C, V + xi * g.C * P, P, T(0),
                  M + xi * g.Co * P, P);
        transform_output(M, bias, y + n * g.Co * g.Ho * g.Wo, g, tl);
      }
    }
  });
}

/// Gradients of forward(): gx (overwritten) and dU (the filter-domain weight
/// gradient [16][Co][C], overwritten), each only when non-null.
template <class T>
void backward(const T* x, const T* U, const T* gy, T* gx, T* dU, const ConvGeom& g, T* work) {
  const Tiles tl = tiles(g);
  const int64_t P = tl.per_image, groups = conv_workers(g.N), per = workspace_per_group(g);
  const int64_t usize = 16 * g.Co * g.C;
  parallel_for(groups, 1, [&](int64_t gb, int64_t ge) {
    for (int64_t gi = gb; gi < ge; ++gi) {
      T* V = work + gi * per;
      T* dM = V + 16 * g.C * P;
      T* dV = dM + 16 * g.Co * P;
      T* part = dV + 16 * g.C * P;
      bool first = true;
      for (int64_t n = gi; n < g.N; n += groups) {
        transform_output_adjoint(gy + n * g.Co * g.Ho * g.Wo, dM, g, tl);
        if (gx) {
          for (int xi = 0; xi < 16; ++xi)
            gemm<T>(true, false, g.C, P, g.Co, T(1), U + xi * g.Co * g.C, g.C, dM + xi * g.Co * P, P, T(0),
                    dV + xi * g.C * P, P);
          T* gxn = gx + n * g.C * g.H * g.W;
          std::fill(gxn, gxn + g.C * g.H * g.W, T(0));
          transform_input_adjoint(dV, gxn, g, tl);
        }
        if (dU) {
          transform_input(x + n * g.C * g.H * g.W, V, g, tl);
          for (int xi = 0; xi < 16; ++xi)
            gemm<T>(false, true, g.Co, g.C, P, T(1), dM + xi * g.Co * P, P, V + xi * g.C * P, P, first ? T(0) : T(1),
                    part + xi * g.Co * g.C, g.C);
          first = false;
        }
      }
      if (dU && first) std::fill(part, part + usize, T(0));
    }
  });
  if (dU) {
    std::copy(work + per - usize, work + per, dU);
    for (int64_t gi = 1; gi < groups; ++gi) ArrMap<T>(dU, usize) += CArrMap<T>(work + gi * per + per - usize, usize);
  }
}

}  // namespace nanode::cpu::winograd
