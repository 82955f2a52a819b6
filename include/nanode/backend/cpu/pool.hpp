#pragma once
// CPU 2-D max and average pooling over NCHW planes.
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <limits>

#include "nanode/backend/cpu/conv.hpp"

namespace nanode::cpu {

namespace pool_detail {
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define NANODE_POOL_SIMD 1
// 2x2 max pooling on GCC/Clang vectors of floats: 8 lanes where the target has
// AVX, else 4 (SSE), so that the even/odd shuffles map onto one instruction each.
#if defined(__AVX__)
constexpr int64_t kPoolLanes = 8;
#else
constexpr int64_t kPoolLanes = 4;
#endif
typedef float PoolVf __attribute__((vector_size(4 * kPoolLanes)));
typedef int32_t PoolVi __attribute__((vector_size(4 * kPoolLanes)));

inline PoolVf pool_load(const float* p) {
  PoolVf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// kPoolLanes windows from output column ox of the row pair r0, r1 (input rows
/// base0 / base1 of the plane): the scalar loop's choice, lane by lane.
inline void max_pool_2x2_lanes(const float* r0, const float* r1, int32_t base0, int32_t base1, int64_t ox, float* yr,
                               int32_t* ar) {
  const int64_t i = 2 * ox;
  const PoolVf a0 = pool_load(r0 + i), b0 = pool_load(r0 + i + kPoolLanes);
  const PoolVf a1 = pool_load(r1 + i), b1 = pool_load(r1 + i + kPoolLanes);
#if defined(__AVX__)
  const PoolVf v0 = __builtin_shufflevector(a0, b0, 0, 2, 4, 6, 8, 10, 12, 14);
  const PoolVf v1 = __builtin_shufflevector(a0, b0, 1, 3, 5, 7, 9, 11, 13, 15);
  const PoolVf v2 = __builtin_shufflevector(a1, b1, 0, 2, 4, 6, 8, 10, 12, 14);
  const PoolVf v3 = __builtin_shufflevector(a1, b1, 1, 3, 5, 7, 9, 11, 13, 15);
  const PoolVi col = PoolVi{0, 2, 4, 6, 8, 10, 12, 14} + static_cast<int32_t>(i);
#else
  const PoolVf v0 = __builtin_shufflevector(a0, b0, 0, 2, 4, 6);
  const PoolVf v1 = __builtin_shufflevector(a0, b0, 1, 3, 5, 7);
  const PoolVf v2 = __builtin_shufflevector(a1, b1, 0, 2, 4, 6);
  const PoolVf v3 = __builtin_shufflevector(a1, b1, 1, 3, 5, 7);
  const PoolVi col = PoolVi{0, 2, 4, 6} + static_cast<int32_t>(i);
#endif
  const PoolVi t1 = (v0 == v0) & ((v1 > v0) | (v1 != v1));
  PoolVf best = t1 ? v1 : v0;
  PoolVi at = (t1 ? col + 1 : col) + base0;
  const PoolVi t2 = (v2 > best) | (v2 != v2);
  best = t2 ? v2 : best;
  at = t2 ? col + base1 : at;
  const PoolVi t3 = (v2 == v2) & ((v3 > best) | (v3 != v3));
  best = t3 ? v3 : best;
  at = t3 ? col + (base1 + 1) : at;
  std::memcpy(yr + ox, &best, sizeof best);
  std::memcpy(ar + ox, &at, sizeof at);
}
#endif
}  // namespace pool_detail

/// Pooling windows use ConvGeom's kh, kw, sh, sw, ph, pw; planes = N * C.
template <class T>
void max_pool_forward(const T* x, T* y, int32_t* argmax, int64_t planes, const ConvGeom& g) {
  if (g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0) {
    // 2x2 windows, stride 2, inside the plane: the same choice as the general loop
    // below (row by row; a NaN wins and ends its row's scan), without bounds checks
    // and without branches (selects the compiler can vectorize: on random data the
    // comparisons mispredict about half the time).
    parallel_for(planes, 4, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const T* xp = x + p * g.H * g.W;
        T* yp = y + p * g.Ho * g.Wo;
        int32_t* ap = argmax + p * g.Ho * g.Wo;
        for (int64_t oy = 0; oy < g.Ho; ++oy) {
          const T* r0 = xp + 2 * oy * g.W;
          const T* r1 = r0 + g.W;
          const int32_t base0 = static_cast<int32_t>(2 * oy * g.W), base1 = static_cast<int32_t>(base0 + g.W);
          T* yr = yp + oy * g.Wo;
          int32_t* ar = ap + oy * g.Wo;
#if defined(NANODE_POOL_SIMD)
          if constexpr (std::is_same_v<T, float>) {
            constexpr int64_t L = pool_detail::kPoolLanes;
            if (g.Wo >= L) {
              // Vectors of L windows; the last one overlaps the one before it when
              // L does not divide Wo (those windows are written twice, the same).
              int64_t ox = 0;
              for (; ox + L <= g.Wo; ox += L) pool_detail::max_pool_2x2_lanes(r0, r1, base0, base1, ox, yr, ar);
              if (ox < g.Wo) pool_detail::max_pool_2x2_lanes(r0, r1, base0, base1, g.Wo - L, yr, ar);
              continue;
            }
          }
#endif
          for (int64_t ox = 0; ox < g.Wo; ++ox) {
            const int32_t i = static_cast<int32_t>(2 * ox);
            const T v0 = r0[i], v1 = r0[i + 1], v2 = r1[i], v3 = r1[i + 1];
            // Row 0: v1 replaces v0 unless v0 is NaN (which ends the row).
            // (Bitwise & and | on purpose: short-circuits become branches.)
            const bool t1 = (v0 == v0) & ((v1 > v0) | (v1 != v1));
            T best = t1 ? v1 : v0;
            int32_t at = base0 + i + (t1 ? 1 : 0);
            // Row 1: v2 is compared with the best so far; v3 with the best after v2,
            // unless v2 was a NaN (taken, and ending the row).
            const bool t2 = (v2 > best) | (v2 != v2);
            best = t2 ? v2 : best;
            at = t2 ? base1 + i : at;
            const bool t3 = (v2 == v2) & ((v3 > best) | (v3 != v3));
            best = t3 ? v3 : best;
            at = t3 ? base1 + i + 1 : at;
            yr[ox] = best;
            ar[ox] = at;
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
