#pragma once
// Batches of a data-parallel run (nanode::dist), shared by the image and video
// loaders. Global batch b holds what one process with batch_size x world would
// put in its batch b; rank r takes the r-th contiguous share of it (a partial last
// batch split as evenly as it goes, the first ranks taking one more). Or, for
// evaluation (whole_batches), rank r takes the whole batches r, r + world, ...
#include <algorithm>
#include <cstdint>

#include "nanode/core/error.hpp"

namespace nanode::data {

struct BatchSharding {
  int64_t batch_size = 1;  ///< per rank (whole_batches: per batch)
  int rank = 0, world = 1;
  bool whole_batches = false;
  bool drop_last = false;

  void check(const char* who) const {
    NANODE_CHECK(world >= 1 && rank >= 0 && rank < world, who, ": rank ", rank, " outside a world of ", world);
    NANODE_CHECK(batch_size > 0, who, ": batch size must be positive, got ", batch_size);
    NANODE_CHECK(batch_size <= (int64_t{1} << 40) / world, who, ": batch size ", batch_size, " x ", world,
                 " ranks is too large");
  }
  int64_t global_batch_size() const { return whole_batches ? batch_size : batch_size * world; }
  /// Global batches in an epoch of n items.
  int64_t global_batches(int64_t n) const {
    const int64_t g = global_batch_size();
    return drop_last ? n / g : (n + g - 1) / g;
  }
  /// The batches this rank takes in an epoch of n items.
  int64_t batches(int64_t n) const {
    const int64_t all = global_batches(n);
    if (!whole_batches) return all;
    return all / world + (rank < all % world ? 1 : 0);
  }
  /// The global batch of this rank's k-th batch.
  int64_t global_index(int64_t k) const { return whole_batches ? rank + k * world : k; }

  struct Range {
    int64_t begin = 0, count = 0;  ///< this rank's items: positions [begin, begin + count) of the epoch's order
    int64_t global_count = 0;      ///< the items of the whole global batch
  };
  /// This rank's items of global batch b, in an epoch of n items.
  Range range(int64_t b, int64_t n) const {
    const int64_t G = global_batch_size(), gbegin = b * G, gcount = std::min(n, gbegin + G) - gbegin;
    Range r{gbegin, gcount, gcount};
    if (!whole_batches && world > 1) {
      const int64_t base = gcount / world, extra = gcount % world;
      r.begin = gbegin + rank * base + std::min<int64_t>(rank, extra);
      r.count = base + (rank < extra ? 1 : 0);
    }
    return r;
  }
};

}  // namespace nanode::data
