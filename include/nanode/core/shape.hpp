#pragma once
// Shape: up to five dimensions, plus the axis and broadcasting rules ops share.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "nanode/core/error.hpp"

namespace nanode {

constexpr int kMaxDims = 5;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }

  int ndim() const { return n_; }
  int64_t operator[](int i) const { return d_[static_cast<size_t>(i)]; }
  /// Size of `axis`; negative axes count from the end.
  int64_t size(int axis) const;
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < n_; ++i) n *= d_[static_cast<size_t>(i)];
    return n;
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(d_.begin(), d_.begin() + n_); }
  /// Row-major (C order) strides in elements.
  std::array<int64_t, kMaxDims> strides() const {
    std::array<int64_t, kMaxDims> s{};
    int64_t acc = 1;
    for (int i = n_ - 1; i >= 0; --i) {
      s[static_cast<size_t>(i)] = acc;
      acc *= d_[static_cast<size_t>(i)];
    }
    return s;
  }
  /// A copy with `axis` set to `value`.
  Shape with(int axis, int64_t value) const {
    Shape s = *this;
    s.d_[static_cast<size_t>(axis)] = value;
    return s;
  }
  std::string str() const {
    std::string out = "[";
    for (int i = 0; i < n_; ++i) {
      if (i) out += ", ";
      out += std::to_string(d_[static_cast<size_t>(i)]);
    }
    return out + "]";
  }
  bool operator==(const Shape& o) const {
    if (n_ != o.n_) return false;
    for (int i = 0; i < n_; ++i)
      if (d_[static_cast<size_t>(i)] != o.d_[static_cast<size_t>(i)]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  template <class It>
  void assign(It b, It e) {
    const auto n = std::distance(b, e);
    NANODE_CHECK(n <= kMaxDims, "Shape: at most ", kMaxDims, " dimensions are supported, got ", n);
    n_ = static_cast<int>(n);
    int i = 0;
    for (It it = b; it != e; ++it, ++i) {
      NANODE_CHECK(*it >= 0, "Shape: negative dimension ", *it, " at axis ", i);
      d_[static_cast<size_t>(i)] = *it;
    }
  }
  std::array<int64_t, kMaxDims> d_{};
  int n_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

/// Maps a possibly negative axis into [0, ndim); throws naming `op` when out of range.
inline int normalize_axis(int axis, int ndim, const char* op) {
  NANODE_CHECK(axis >= -ndim && axis < ndim, op, ": axis ", axis, " is out of range for a ", ndim,
               "-D tensor");
  return axis < 0 ? axis + ndim : axis;
}

inline int64_t Shape::size(int axis) const {
  return d_[static_cast<size_t>(normalize_axis(axis, n_, "Shape::size"))];
}

/// NumPy broadcasting of two shapes; throws naming `op` and both shapes on mismatch.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int n = a.ndim() > b.ndim() ? a.ndim() : b.ndim();
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int ia = a.ndim() - n + i, ib = b.ndim() - n + i;
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    NANODE_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a, " and ", b,
                 " cannot be broadcast together");
    out[static_cast<size_t>(i)] = da == 1 ? db : da;
  }
  return Shape(out);
}

/// Strides (in elements) for reading a contiguous tensor of shape `s` as if it had
/// shape `out` (which `s` broadcasts to): broadcast axes get stride 0.
inline std::array<int64_t, kMaxDims> broadcast_strides(const Shape& s, const Shape& out) {
  std::array<int64_t, kMaxDims> st{};
  const auto cs = s.strides();
  const int off = out.ndim() - s.ndim();
  for (int i = 0; i < out.ndim(); ++i) {
    const int j = i - off;
    st[static_cast<size_t>(i)] = (j < 0 || s[j] == 1) ? 0 : cs[static_cast<size_t>(j)];
  }
  return st;
}

}  // namespace nanode
