#pragma once
// The sequential Householder chain on the CPU (the twin of kernels/ode.cu's
// householder_chain kernels): rows y of x [B, n] go through the reflections
// H(v_i) = I - 2 v_i v_i^T / |v_i|^2 in the order i = k-1, ..., 0 (y <- y H(v_i)),
// one pass per row with no intermediate tensors. The backward recovers each
// reflection's input from its output (H is an involution), so it needs no stored
// states: constant memory, like the chain of an orthogonal (reversible) map.
#include <cstdint>
#include <vector>

#include "nanode/backend/cpu/parallel.hpp"

namespace nanode::cpu {

template <class T>
void householder_chain(const T* x, const T* v, T* y, int64_t B, int64_t n, int64_t k) {
  std::vector<T> ss(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    T s = 0;
    for (int64_t c = 0; c < n; ++c) s += v[i * n + c] * v[i * n + c];
    ss[static_cast<size_t>(i)] = s;
  }
  parallel_for(B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* yr = y + b * n;
      for (int64_t c = 0; c < n; ++c) yr[c] = x[b * n + c];
      for (int64_t i = k - 1; i >= 0; --i) {
        const T* vi = v + i * n;
        T d = 0;
        for (int64_t c = 0; c < n; ++c) d += yr[c] * vi[c];
        const T f = T(2) * d / ss[static_cast<size_t>(i)];
        for (int64_t c = 0; c < n; ++c) yr[c] -= f * vi[c];
      }
    }
  });
}

/// Given the chain's output y and dL/dy = g: gx = dL/dx [B, n] and gv = dL/dv [k, n].
/// For one reflection with input a (row), s = |v|^2 and p = a.v, q = g.v:
///   dL/da = g - (2q/s) v,  dL/dv = -(2/s)(p g + q a) + (4 p q / s^2) v.
template <class T>
void householder_chain_backward(const T* y, const T* g, const T* v, T* gx, T* gv, int64_t B, int64_t n, int64_t k) {
  std::vector<T> ss(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    T s = 0;
    for (int64_t c = 0; c < n; ++c) s += v[i * n + c] * v[i * n + c];
    ss[static_cast<size_t>(i)] = s;
  }
  // One partial dL/dv per chunk of rows, summed in chunk order (deterministic).
  const int64_t chunk = 32, nchunks = (B + chunk - 1) / chunk;
  std::vector<T> partial(static_cast<size_t>(nchunks * k * n), T(0));
  parallel_for(nchunks, 1, [&](int64_t q0, int64_t q1) {
    std::vector<T> a(static_cast<size_t>(n)), gg(static_cast<size_t>(n));
    for (int64_t q = q0; q < q1; ++q) {
      T* pv = partial.data() + q * k * n;
      for (int64_t b = q * chunk; b < (q + 1) * chunk && b < B; ++b) {
        for (int64_t c = 0; c < n; ++c) {
          a[static_cast<size_t>(c)] = y[b * n + c];
          gg[static_cast<size_t>(c)] = g[b * n + c];
        }
        for (int64_t i = 0; i < k; ++i) {  // the last reflection applied comes first
          const T* vi = v + i * n;
          const T s = ss[static_cast<size_t>(i)];
          T yv = 0, qv = 0;
          for (int64_t c = 0; c < n; ++c) {
            yv += a[static_cast<size_t>(c)] * vi[c];
            qv += gg[static_cast<size_t>(c)] * vi[c];
          }
          // The reflection's input is H(v) applied to its output; its v-component
          // is p = -yv.
          const T f = T(2) * yv / s, p = -yv;
          for (int64_t c = 0; c < n; ++c) a[static_cast<size_t>(c)] -= f * vi[c];
          const T cg = -T(2) / s * p, ca = -T(2) / s * qv, cv = T(4) * p * qv / (s * s);
          const T fg = T(2) * qv / s;
          T* pvi = pv + i * n;
          for (int64_t c = 0; c < n; ++c) {
            const size_t cc = static_cast<size_t>(c);
            pvi[c] += cg * gg[cc] + ca * a[cc] + cv * vi[c];
            gg[cc] -= fg * vi[c];
          }
        }
        for (int64_t c = 0; c < n; ++c) gx[b * n + c] = gg[static_cast<size_t>(c)];
      }
    }
  });
  for (int64_t e = 0; e < k * n; ++e) {
    T s = 0;
    for (int64_t q = 0; q < nchunks; ++q) s += partial[static_cast<size_t>(q * k * n + e)];
    gv[e] = s;
  }
}

}  // namespace nanode::cpu
