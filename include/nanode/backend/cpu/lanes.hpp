#pragma once
// SIMD lanes as GCC/Clang vectors, and lane_gemm: the CPU's GEMM wherever C's rows
// are whole vectors (cpu::gemm, the Winograd domain, the convolutions' im2row path).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "nanode/core/error.hpp"

namespace nanode::cpu {

/// 64 bytes of channels at once as one GCC/Clang vector (16 float or 8 double
/// lanes; the compiler maps it onto whatever SIMD the target has), so the
/// arithmetic is SIMD by construction, with no aliasing to prove.
template <class T>
struct Lanes;
template <>
struct Lanes<float> {
  typedef float V __attribute__((vector_size(64)));
};
template <>
struct Lanes<double> {
  typedef double V __attribute__((vector_size(64)));
};
template <class T>
using Vec = typename Lanes<T>::V;
template <class T>
constexpr int64_t kLanes = static_cast<int64_t>(sizeof(Vec<T>) / sizeof(T));

/// src[0..n) as a vector, zeros after (n <= lanes).
template <class T>
inline Vec<T> load_lanes(const T* src, int64_t n) {
  Vec<T> v;
  if (n == kLanes<T>) {
    std::memcpy(&v, src, sizeof(v));
  } else {
    T tmp[kLanes<T>] = {};
    std::memcpy(tmp, src, static_cast<size_t>(n) * sizeof(T));
    std::memcpy(&v, tmp, sizeof(v));
  }
  return v;
}
template <class T>
inline void store_lanes(T* dst, const Vec<T>& v, int64_t n) {
  if (n == kLanes<T>) {
    std::memcpy(dst, &v, sizeof(v));
  } else {
    T tmp[kLanes<T>];
    std::memcpy(tmp, &v, sizeof(v));
    std::memcpy(dst, tmp, static_cast<size_t>(n) * sizeof(T));
  }
}
template <class T>
inline void add_lanes(T* dst, const Vec<T>& v, int64_t n) {
  store_lanes(dst, load_lanes(dst, n) + v, n);
}

/// RB rows by NV vectors of C (= or += with `acc`) sum_k A(i, k) B[k][:] in
/// registers; A(i, k) = a[i * ai + k * ak]. Every entry is the same statement,
/// s += A(i, k) B[k][j] for k in order, in every RB and NV (the compiler contracts
/// it to one FMA or not, alike for all), so an entry's bits do not depend on the
/// block it falls in.
template <int NV, int RB, class T>
inline void lane_gemm_block(int64_t K, const T* a, int64_t ai, int64_t ak, const T* b, int64_t ldb, bool acc, T* c,
                            int64_t ldc) {
  constexpr int64_t L = kLanes<T>;
  using Vt = Vec<T>;
  Vt s[RB][NV];
  for (int i = 0; i < RB; ++i)
    for (int v = 0; v < NV; ++v) s[i][v] = acc ? load_lanes(c + i * ldc + v * L, L) : Vt{};
  for (int64_t k = 0; k < K; ++k) {
    Vt bv[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + k * ldb + v * L, sizeof(Vt));
    for (int i = 0; i < RB; ++i) {
      const T ab = a[i * ai + k * ak];
      for (int v = 0; v < NV; ++v) s[i][v] += ab * bv[v];
    }
  }
  for (int i = 0; i < RB; ++i)
    for (int v = 0; v < NV; ++v) store_lanes(c + i * ldc + v * L, s[i][v], L);
}

template <int NV, class T>
void lane_gemm_rows(int64_t R, int64_t K, const T* a, int64_t ai, int64_t ak, const T* b, int64_t ldb, bool acc, T* c,
                    int64_t ldc) {
  int64_t i = 0;
  for (; i + 6 <= R; i += 6) lane_gemm_block<NV, 6>(K, a + i * ai, ai, ak, b, ldb, acc, c + i * ldc, ldc);
  const T* ar = a + i * ai;
  T* cr = c + i * ldc;
  switch (R - i) {
    case 5: lane_gemm_block<NV, 5>(K, ar, ai, ak, b, ldb, acc, cr, ldc); break;
    case 4: lane_gemm_block<NV, 4>(K, ar, ai, ak, b, ldb, acc, cr, ldc); break;
    case 3: lane_gemm_block<NV, 3>(K, ar, ai, ak, b, ldb, acc, cr, ldc); break;
    case 2: lane_gemm_block<NV, 2>(K, ar, ai, ak, b, ldb, acc, cr, ldc); break;
    case 1: lane_gemm_block<NV, 1>(K, ar, ai, ak, b, ldb, acc, cr, ldc); break;
    default: break;
  }
}

/// Whether lane_gemm takes a product whose rows of B and C are n wide.
template <class T>
constexpr bool lane_gemm_fits(int64_t n) {
  return n > 0 && n % kLanes<T> == 0;
}

/// Row-major C[R, N] = (or += with `acc`) A B on the calling thread, A(i, k) =
/// a[i * ai + k * ak] (A or, with ai = 1, a transposed matrix), B [K, N] (ldb);
/// N a multiple of kLanes<T> (lane_gemm_fits). No packing: B's rows are read as
/// vectors, A's entries broadcast, and blocks of 6 rows by up to 4 vectors are
/// summed in registers, k in order, so every entry's sum has one fixed order
/// whatever the thread count or the rows around it. Eigen's product packs both
/// operands and zeroes C first, which the small products here (a Winograd GEMM is
/// channels wide and ~128 tiles tall) pay for in full.
template <class T>
void lane_gemm(int64_t R, int64_t N, int64_t K, const T* a, int64_t ai, int64_t ak, const T* b, int64_t ldb, bool acc,
               T* c, int64_t ldc) {
  constexpr int64_t L = kLanes<T>;
  NANODE_CHECK(lane_gemm_fits<T>(N), "lane_gemm: N = ", N, " is not a positive multiple of ", L);
  for (int64_t n0 = 0; n0 < N; n0 += 4 * L) {
    switch (std::min<int64_t>(4, (N - n0) / L)) {
      case 4: lane_gemm_rows<4>(R, K, a, ai, ak, b + n0, ldb, acc, c + n0, ldc); break;
      case 3: lane_gemm_rows<3>(R, K, a, ai, ak, b + n0, ldb, acc, c + n0, ldc); break;
      case 2: lane_gemm_rows<2>(R, K, a, ai, ak, b + n0, ldb, acc, c + n0, ldc); break;
      default: lane_gemm_rows<1>(R, K, a, ai, ak, b + n0, ldb, acc, c + n0, ldc); break;
    }
  }
}

}  // namespace nanode::cpu
