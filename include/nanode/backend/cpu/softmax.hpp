#pragma once
// CPU softmax and log-softmax along the middle axis of [outer, n, inner].
#include <cmath>
#include <cstdint>
#include <limits>

#include "nanode/backend/cpu/elementwise.hpp"

namespace nanode::cpu {

template <class T>
void softmax(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  parallel_for(outer * inner, 256, [&](int64_t b, int64_t e) {
    for (int64_t oi = b; oi < e; ++oi) {
      const int64_t o = oi / inner, i = oi % inner;
      const T* xr = x + o * n * inner + i;
      T* yr = y + o * n * inner + i;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) mx = std::max(mx, xr[j * inner]);
      if (!std::isfinite(mx)) mx = T(0);
      T s = T(0);
      for (int64_t j = 0; j < n; ++j) s += std::exp(xr[j * inner] - mx);
      if (log) {
        const T lse = mx + std::log(s);
        for (int64_t j = 0; j < n; ++j) yr[j * inner] = xr[j * inner] - lse;
      } else {
        const T inv = T(1) / s;
        for (int64_t j = 0; j < n; ++j) yr[j * inner] = std::exp(xr[j * inner] - mx) * inv;
      }
    }
  });
}

/// softmax: gx = y * (g - sum(g*y)); log-softmax: gx = g - exp(y) * sum(g).
template <class T>
void softmax_backward(const T* g, const T* y, T* gx, int64_t outer, int64_t n, int64_t inner, bool log) {
  parallel_for(outer * inner, 256, [&](int64_t b, int64_t e) {
    for (int64_t oi = b; oi < e; ++oi) {
      const int64_t o = oi / inner, i = oi % inner, base = o * n * inner + i;
      T s = T(0);
      if (log) {
        for (int64_t j = 0; j < n; ++j) s += g[base + j * inner];
        for (int64_t j = 0; j < n; ++j) gx[base + j * inner] = g[base + j * inner] - std::exp(y[base + j * inner]) * s;
      } else {
        for (int64_t j = 0; j < n; ++j) s += g[base + j * inner] * y[base + j * inner];
        for (int64_t j = 0; j < n; ++j) gx[base + j * inner] = y[base + j * inner] * (g[base + j * inner] - s);
      }
    }
  });
}

}  // namespace nanode::cpu
