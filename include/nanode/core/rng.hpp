#pragma once
// A counter-based random generator (Philox4x32-10). A stream is fully defined by
// (seed, offset): the same seed gives the same numbers on every run and machine,
// and a generator's state can be saved and restored (checkpoints do this).
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace nanode {

namespace detail {
inline std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
    k0 += W0;
    k1 += W1;
  }
  return c;
}
}  // namespace detail

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;  ///< next counter block
  uint32_t used = 0;    ///< values of block offset-1 already consumed (0 = none buffered)
};

class Generator {
 public:
  using result_type = uint32_t;
  explicit Generator(uint64_t seed = 0x6e616e6f6465ull) { manual_seed(seed); }

  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
    have_ = 0;
  }
  uint64_t seed() const { return seed_; }
  GeneratorState state() const { return {seed_, offset_, have_ > 0 ? static_cast<uint32_t>(4 - have_) : 0u}; }
  void set_state(const GeneratorState& s) {
    seed_ = s.seed;
    offset_ = s.offset;
    have_ = 0;
    if (s.used > 0 && s.used < 4 && s.offset > 0) {
      buf_ = block(s.offset - 1);
      have_ = 4 - static_cast<int>(s.used);
    }
  }

  /// Reserves `blocks` consecutive counter blocks (4 numbers each) and returns the
  /// first; block(i) may then be evaluated in any order or in parallel.
  uint64_t reserve(uint64_t blocks) {
    have_ = 0;
    const uint64_t first = offset_;
    offset_ += blocks;
    return first;
  }
  std::array<uint32_t, 4> block(uint64_t counter) const {
    return detail::philox4x32_10({static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u},
                                 static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32));
  }

  uint32_t operator()() {
    if (have_ == 0) {
      buf_ = block(offset_++);
      have_ = 4;
    }
    return buf_[static_cast<size_t>(4 - have_--)];
  }
  static constexpr uint32_t min() { return 0; }
  static constexpr uint32_t max() { return 0xFFFFFFFFu; }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() {
    const uint64_t hi = (*this)(), lo = (*this)();
    return static_cast<double>(((hi << 32) | lo) >> 11) * 0x1.0p-53;
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal(double mean = 0.0, double stddev = 1.0) {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Uniform integer in [lo, hi).
  int64_t randint(int64_t lo, int64_t hi) {
    const uint64_t range = static_cast<uint64_t>(hi - lo);
    if (range == 0) return lo;
    // Rejection sampling keeps the distribution exact.
    const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do {
      x = (static_cast<uint64_t>((*this)()) << 32) | (*this)();
    } while (x >= limit);
    return lo + static_cast<int64_t>(x % range);
  }
  /// Fisher-Yates shuffle with this generator's stream.
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(randint(0, static_cast<int64_t>(i)))]);
  }

 private:
  uint64_t seed_ = 0, offset_ = 0;
  std::array<uint32_t, 4> buf_{};
  int have_ = 0;
};

/// The process-wide generator that initialisers and dropout use by default.
inline Generator& default_generator() {
  static Generator g;
  return g;
}
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace nanode
