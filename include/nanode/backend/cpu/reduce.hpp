#pragma once
// CPU reductions over the middle axis of an [outer, r, inner] layout.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "nanode/backend/cpu/elementwise.hpp"

namespace nanode::cpu {

/// out[o, i] = sum_j x[o, j, i]
template <class T>
void sum_middle(const T* x, T* out, int64_t outer, int64_t r, int64_t inner) {
  if (inner == 1) {
    const int64_t grain = r >= kElementwiseGrain ? 1 : kElementwiseGrain / (r > 0 ? r : 1);
    if (outer == 1) {
      // One long row: partial sums over a fixed number of chunks (independent of the
      // thread count, so results do not change with it), combined in order.
      const int64_t chunks = std::min<int64_t>(64, std::max<int64_t>(1, r / kElementwiseGrain));
      T partial[64] = {};
      parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          const int64_t s = r * c / chunks, t = r * (c + 1) / chunks;
          partial[c] = t > s ? CArrMap<T>(x + s, t - s).sum() : T(0);
        }
      });
      T acc = T(0);
      for (int64_t c = 0; c < chunks; ++c) acc += partial[c];
      out[0] = acc;
      return;
    }
    parallel_for(outer, grain, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) out[o] = r > 0 ? CArrMap<T>(x + o * r, r).sum() : T(0);
    });
    return;
  }
  if (outer >= 4 || inner < kElementwiseGrain) {  // shape only: the same bits for any thread count
    const int64_t work = r * inner;
    const int64_t grain = work >= kElementwiseGrain ? 1 : kElementwiseGrain / (work > 0 ? work : 1);
    parallel_for(outer, grain, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        ArrMap<T> acc(out + o * inner, inner);
        acc.setZero();
        for (int64_t j = 0; j < r; ++j) acc += CArrMap<T>(x + (o * r + j) * inner, inner);
      }
    });
  } else {
    for (int64_t o = 0; o < outer; ++o) {
      parallel_for(inner, kElementwiseGrain / 4, [&](int64_t b, int64_t e) {
        ArrMap<T> acc(out + o * inner + b, e - b);
        acc.setZero();
        for (int64_t j = 0; j < r; ++j) acc += CArrMap<T>(x + (o * r + j) * inner + b, e - b);
      });
    }
  }
}

/// Per row of an [outer, n] layout: the maximum value and its first index.
template <class T>
void max_last(const T* x, T* values, int32_t* indices, int64_t outer, int64_t n) {
  parallel_for(outer, 1024, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const T* row = x + o * n;
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j)
        if (row[j] > row[best]) best = j;
      if (values) values[o] = n > 0 ? row[best] : -std::numeric_limits<T>::infinity();
      if (indices) indices[o] = static_cast<int32_t>(best);
    }
  });
}

}  // namespace nanode::cpu
