#pragma once
// The sequential Householder chain on the CPU (the twin of kernels/ode.cu's
// householder_chain kernels): rows y of x [B, n] go through the reflections
// H(v_i) = I - 2 v_i v_i^T / |v_i|^2 in the order i = k-1, ..., 0 (y <- y H(v_i)),
// one pass per row with no intermediate tensors. The backward recovers each
// reflection's input from its output (H is an involution), so it needs no stored
// states: constant memory, like the chain of an orthogonal (reversible) map.
#include <Eigen/Dense>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "nanode/backend/cpu/parallel.hpp"

namespace nanode::cpu {

template <class T>
void householder_chain(const T* x, const T* v, T* y, int64_t B, int64_t n, int64_t k) {
  using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const Eigen::Map<const Rows> V(v, k, n);
  const Vec ss = V.rowwise().squaredNorm();
  // Blocks of rows: per reflection a matrix-vector product and a rank-1 update,
  // vectorised by Eigen, the block staying in cache.
  parallel_for((B + 15) / 16, 1, [&](int64_t q0, int64_t q1) {
    Vec d;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b0 = q * 16, nb = std::min<int64_t>(16, B - b0);
      Eigen::Map<Rows> Y(y + b0 * n, nb, n);
      Y = Eigen::Map<const Rows>(x + b0 * n, nb, n);
      for (int64_t i = k - 1; i >= 0; --i) {
        d.noalias() = Y * V.row(i).transpose();
        Y.noalias() -= (T(2) / ss(i)) * d * V.row(i);
      }
    }
  });
}

/// Given the chain's output y and dL/dy = g: gx = dL/dx [B, n] and gv = dL/dv [k, n].
/// For one reflection with input a (row), s = |v|^2 and p = a.v, q = g.v:
///   dL/da = g - (2q/s) v,  dL/dv = -(2/s)(p g + q a) + (4 p q / s^2) v.
template <class T>
void householder_chain_backward(const T* y, const T* g, const T* v, T* gx, T* gv, int64_t B, int64_t n, int64_t k) {
  using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  const Eigen::Map<const Rows> V(v, k, n);
  const Vec ss = V.rowwise().squaredNorm();
  // One partial dL/dv per block of rows, summed in block order (deterministic).
  const int64_t rows = 32, nblocks = (B + rows - 1) / rows;
  std::vector<Rows> partial(static_cast<size_t>(nblocks));
  parallel_for(nblocks, 1, [&](int64_t q0, int64_t q1) {
    Vec yv, qv;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t b0 = q * rows, nb = std::min<int64_t>(rows, B - b0);
      Rows A = Eigen::Map<const Rows>(y + b0 * n, nb, n);  // becomes each reflection's input
      Eigen::Map<Rows> G(gx + b0 * n, nb, n);               // dL/d(current state)
      G = Eigen::Map<const Rows>(g + b0 * n, nb, n);
      Rows& P = partial[static_cast<size_t>(q)];
      P.setZero(k, n);
      for (int64_t i = 0; i < k; ++i) {  // the last reflection applied comes first
        const T s = ss(i);
        yv.noalias() = A * V.row(i).transpose();
        qv.noalias() = G * V.row(i).transpose();
        // The input is H(v) applied to the output; its v-components are p = -yv.
        A.noalias() -= (T(2) / s) * yv * V.row(i);
        P.row(i).noalias() += (T(2) / s) * (yv.transpose() * G) - (T(2) / s) * (qv.transpose() * A);
        P.row(i) += (-T(4) * yv.dot(qv) / (s * s)) * V.row(i);
        G.noalias() -= (T(2) / s) * qv * V.row(i);
      }
    }
  });
  Eigen::Map<Rows> GV(gv, k, n);
  GV.setZero();
  for (const Rows& P : partial) GV += P;
}

}  // namespace nanode::cpu
