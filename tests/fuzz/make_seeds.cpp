// Writes the fuzz targets' seed corpus: small valid files of every format the
// readers take (and a few near misses), one folder per target:
//   make_seeds DIR  ->  DIR/{idx,npy,png,safetensors,cifar}/seed_*
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nanode/data/readers.hpp"
#include "nanode/data/safetensors.hpp"

using namespace nanode;

namespace {
void put(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
void put_gz(const std::string& path, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
  gzclose(f);
}
std::vector<uint8_t> idx(const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> b{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    n *= d;
  }
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i * 37));
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (const char* t : {"idx", "npy", "png", "safetensors", "cifar"}) std::filesystem::create_directories(dir + "/" + t);
  try {
    put(dir + "/idx/seed_images", idx({3, 4, 5}));
    put(dir + "/idx/seed_labels", idx({6}));
    put_gz(dir + "/idx/seed_images_gz", idx({2, 7, 3}));
    put_gz(dir + "/idx/seed_4d_gz", idx({2, 2, 2, 3}));

    const std::vector<float> f{1.5f, -2.0f, 0.25f, 3.0f, 4.5f, -0.5f};
    const std::vector<double> d{1.0, -2.5, 1e300};
    const std::vector<int32_t> i4{7, -9};
    const std::vector<int64_t> i8{1, -2, 3};
    const std::vector<uint8_t> u1{0, 1, 2, 250};
    data::write_npy(dir + "/npy/seed_f4", {2, 3}, f.data(), data::Elem::F32);
    data::write_npy(dir + "/npy/seed_f8", {3}, d.data(), data::Elem::F64);
    data::write_npy(dir + "/npy/seed_i4", {2}, i4.data(), data::Elem::I32);
    data::write_npy(dir + "/npy/seed_i8", {3, 1}, i8.data(), data::Elem::I64);
    data::write_npy(dir + "/npy/seed_u1", {2, 1, 2}, u1.data(), data::Elem::U8);
    data::write_npy(dir + "/npy/seed_scalar", {}, f.data(), data::Elem::F32);

    data::Image g;
    g.h = 5, g.w = 7, g.c = 1;
    for (int64_t k = 0; k < 35; ++k) g.pixels.push_back(static_cast<uint8_t>(k * 7));
    data::write_png(dir + "/png/seed_gray", g);
    data::Image rgb;
    rgb.h = 3, rgb.w = 4, rgb.c = 3;
    for (int64_t k = 0; k < 36; ++k) rgb.pixels.push_back(static_cast<uint8_t>(k * 5));
    data::write_png(dir + "/png/seed_rgb", rgb);

    data::save_safetensors(dir + "/safetensors/seed_checked",
                           {{"w", Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})},
                            {"b", Tensor::from_vector<double>({0.5}, {1})},
                            {"n", Tensor::from_vector<int32_t>({3, 4}, {2})}},
                           {{"format", "seed"}});
    // Without nanode's checksums, as other tools write it.
    const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"I32","shape":[0,3],"data_offsets":[8,8]}})";
    std::vector<uint8_t> st(8, 0);
    st[0] = static_cast<uint8_t>(h.size());
    st.insert(st.end(), h.begin(), h.end());
    for (int k = 0; k < 8; ++k) st.push_back(static_cast<uint8_t>(k * 16));
    put(dir + "/safetensors/seed_plain", st);

    std::vector<uint8_t> c10, c100;
    for (int r = 0; r < 2; ++r) {  // the target takes the first byte mod 3 as the mode (0: CIFAR-10)
      c10.push_back(static_cast<uint8_t>(3 * r + 3));
      c100.push_back(static_cast<uint8_t>(r + 1)), c100.push_back(static_cast<uint8_t>(r + 40));
      for (int k = 0; k < 3072; ++k) c10.push_back(static_cast<uint8_t>(k)), c100.push_back(static_cast<uint8_t>(k * 3));
    }
    put(dir + "/cifar/seed_10", c10);
    put(dir + "/cifar/seed_100", c100);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  std::printf("make_seeds: wrote the seed corpus under %s\n", dir.c_str());
  return 0;
}
