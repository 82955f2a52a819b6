#pragma once
// CPU 2-D max and average pooling over NCHW planes.
#include <cstdint>
#include <limits>

#include "nanode/backend/cpu/conv.hpp"

namespace nanode::cpu {

/// Pooling windows use ConvGeom's kh, kw, sh, sw, ph, pw; planes = N * C.
template <class T>
void max_pool_forward(const T* x, T* y, int32_t* argmax, int64_t planes, const ConvGeom& g) {
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0) {
    // 2x2 windows, stride 2, inside the plane: the same choice as the general loop
    // below (row by row; a NaN wins and ends its row's scan), without bounds checks.
    parallel_for(planes, 4, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const T* xp = x + p * g.H * g.W;
        T* yp = y + p * g.Ho * g.Wo;
        int32_t* ap = argmax + p * g.Ho * g.Wo;
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          const T* r0 = xp + 2 * oy * g.W;
          const T* r1 = r0 + g.W;
          for (int64_t ox = 0; ox < g.Wo; ++ox) {
            const int64_t i = 2 * ox;
            T best = r0[i];
            int64_t at = 2 * oy * g.W + i;
            if (!(best != best) && (r0[i + 1] > best || r0[i + 1] != r0[i + 1])) best = r0[i + 1], at += 1;
            const T v2 = r1[i], v3 = r1[i + 1];
            if (v2 > best || v2 != v2) {
              best = v2, at = (2 * oy + 1) * g.W + i;
              if (!(v2 != v2) && (v3 > best || v3 != v3)) best = v3, at += 1;
            } else if (v3 > best || v3 != v3) {
              best = v3, at = (2 * oy + 1) * g.W + i + 1;
            }
            yp[oy * g.Wo + ox] = best;
            ap[oy * g.Wo + ox] = static_cast<int32_t>(at);
          }
        }
      }
    });
    return;
  }
  parallel_for(planes, 4, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* xp = x + p * g.H * g.W;
      T* yp = y + p * g.Ho * g.Wo;
      int32_t* ap = argmax + p * g.Ho * g.Wo;
      for (int64_t oy = 0; oy < g.Ho; ++oy)
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_i = -1;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t iy = oy * g.sh - g.ph + i;
            if (iy < 0 || iy >= g.H) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t ix = ox * g.sw - g.pw + j;
              if (ix < 0 || ix >= g.W) continue;
              const T v = xp[iy * g.W + ix];
              if (best_i < 0 || v > best || v != v) {
                best = v;
                best_i = iy * g.W + ix;
                if (v != v) break;
              }
            }
          }
          yp[oy * g.Wo + ox] = best;
          ap[oy * g.Wo + ox] = static_cast<int32_t>(best_i);
        }
    }
  });
}

template <class T>
void max_pool_backward(const T* gy, const int32_t* argmax, T* gx, int64_t planes, const ConvGeom& g) {
  parallel_for(planes, 4, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T* gxp = gx + p * g.H * g.W;
      std::fill(gxp, gxp + g.H * g.W, T(0));
      const T* gyp = gy + p * g.Ho * g.Wo;
      const int32_t* ap = argmax + p * g.Ho * g.Wo;
      for (int64_t o = 0; o < g.Ho * g.Wo; ++o)
        if (ap[o] >= 0) gxp[ap[o]] += gyp[o];
    }
  });
}

/// Average over each window, dividing by the full window size (padding counts as 0).
template <class T>
void avg_pool_forward(const T* x, T* y, int64_t planes, const ConvGeom& g) {
  const T scale = T(1) / static_cast<T>(g.kh * g.kw);
  parallel_for(planes, 4, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* xp = x + p * g.H * g.W;
      T* yp = y + p * g.Ho * g.Wo;
      for (int64_t oy = 0; oy < g.Ho; ++oy)
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          T s = T(0);
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t iy = oy * g.sh - g.ph + i;
            if (iy < 0 || iy >= g.H) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t ix = ox * g.sw - g.pw + j;
              if (ix >= 0 && ix < g.W) s += xp[iy * g.W + ix];
            }
          }
          yp[oy * g.Wo + ox] = s * scale;
        }
    }
  });
}

template <class T>
void avg_pool_backward(const T* gy, T* gx, int64_t planes, const ConvGeom& g) {
  const T scale = T(1) / static_cast<T>(g.kh * g.kw);
  parallel_for(planes, 4, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T* gxp = gx + p * g.H * g.W;
      std::fill(gxp, gxp + g.H * g.W, T(0));
      const T* gyp = gy + p * g.Ho * g.Wo;
      for (int64_t oy = 0; oy < g.Ho; ++oy)
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          const T v = gyp[oy * g.Wo + ox] * scale;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t iy = oy * g.sh - g.ph + i;
            if (iy < 0 || iy >= g.H) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t ix = ox * g.sw - g.pw + j;
              if (ix >= 0 && ix < g.W) gxp[iy * g.W + ix] += v;
            }
          }
        }
    }
  });
}

}  // namespace nanode::cpu
