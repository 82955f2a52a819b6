#pragma once
// Files and data sets the data tests write: a private temp folder, raw and gzipped
// bytes, IDX files, synthetic image sets.
#include <catch2/catch.hpp>
#include <stdlib.h>
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "nanode/data/readers.hpp"
#include "nanode/nanode.hpp"

namespace nanode::testing {

inline std::string tmp_path(const std::string& name) {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/nanode_test_data_XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    REQUIRE(d != nullptr);
    return std::string(d);
  }();
  return dir + "/" + name;
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline void write_gz(const std::string& path, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  gzclose(f);
}

inline std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

/// n images of h x w with pixel (i, y, x) = (i * 7 + y * 3 + x) % 256, labels i % classes.
inline data::ImageSet synthetic(int64_t n, int64_t c, int64_t hw, int64_t classes) {
  data::ImageSet s;
  s.n = n, s.c = c, s.h = hw, s.w = hw, s.classes = classes;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < c * hw * hw; ++k) s.images.push_back(static_cast<uint8_t>((i * 7 + k * 3 + k / hw) % 256));
    s.labels.push_back(static_cast<int32_t>(i % classes));
  }
  return s;
}

/// A learnable toy: class = which quadrant holds the bright square.
inline data::ImageSet quadrants(int64_t n, int64_t hw, uint64_t seed) {
  data::ImageSet s;
  s.n = n, s.c = 1, s.h = hw, s.w = hw, s.classes = 4;
  Generator g(seed);
  for (int64_t i = 0; i < n; ++i) {
    const int q = static_cast<int>(g.randint(0, 4));
    for (int64_t y = 0; y < hw; ++y)
      for (int64_t x = 0; x < hw; ++x) {
        const bool in = (y < hw / 2) == (q < 2) && (x < hw / 2) == (q % 2 == 0);
        s.images.push_back(static_cast<uint8_t>(in ? 200 + g.randint(0, 50) : g.randint(0, 60)));
      }
    s.labels.push_back(q);
  }
  return s;
}


}  // namespace nanode::testing
