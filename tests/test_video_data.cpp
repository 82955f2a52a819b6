// Video data (issue 12): the moving-digits generator's rules (velocities, bounces,
// clipping, where the digits are drawn), its seeding with and without prefetch,
// the standard Moving MNIST file and BAIR's folder layout on files written here,
// and the errors bad files give.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nanode/data/video.hpp"
#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

namespace {

std::string video_tmp(const std::string& name) {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/nanode_test_video_XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    REQUIRE(d != nullptr);
    return std::string(d);
  }();
  return dir + "/" + name;
}

/// n "digits" of 28x28: a bright 10x10 square at a place that depends on k.
std::shared_ptr<data::Array> square_digits(int64_t n) {
  auto a = std::make_shared<data::Array>();
  a->dims = {n, 28, 28};
  a->elem = data::Elem::U8;
  a->bytes.assign(static_cast<size_t>(n * 28 * 28), 0);
  for (int64_t k = 0; k < n; ++k)
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t c = 0; c < 10; ++c) a->bytes[static_cast<size_t>(k * 784 + (r + 2 + k) * 28 + c + 9)] = 255;
  return a;
}

}  // namespace

TEST_CASE("moving digits: velocities in range, bounces at the walls, digits where the paths say", "[data][video]") {
  for (bool deterministic : {false, true}) {
    INFO((deterministic ? "deterministic" : "stochastic") << " bounces");
    data::MovingDigitsOptions o;
    o.deterministic = deterministic;
    o.frames = 40;
    o.sequences = 200;
    o.seed = 7;
    const data::MovingDigits src(square_digits(5), "squares", o);
    const int64_t last = o.image_size - o.digit_size - 1;
    int64_t bounces = 0, bad = 0;
    for (int64_t i = 0; i < o.sequences; ++i) {
      for (const auto& p : src.paths(i, 0, o.frames)) {
        for (size_t t = 0; t < p.x.size(); ++t) {
          // Inside the canvas, velocities in [-4, 4].
          if (p.x[t] < 0 || p.x[t] > last || p.y[t] < 0 || p.y[t] > last) ++bad;
          if (std::abs(p.vx[t]) > 4 || std::abs(p.vy[t]) > 4) ++bad;
          if (t == 0) continue;
          // The step taken: the previous velocity, unless it would have left the
          // canvas; then the box sits at the wall and the velocity points away.
          const int64_t nx = p.x[t - 1] + p.vx[t - 1], ny = p.y[t - 1] + p.vy[t - 1];
          for (const auto& [want, got, v, pv] :
               {std::tuple{nx, p.x[t], p.vx[t], p.vx[t - 1]}, std::tuple{ny, p.y[t], p.vy[t], p.vy[t - 1]}}) {
            if (want >= 0 && want <= last) {
              if (got != want) ++bad;
              continue;
            }
            ++bounces;
            const bool low = want < 0;
            if (got != (low ? 0 : last)) ++bad;
            if (deterministic ? v != -pv : (low ? !(v >= 1 && v <= 4) : !(v <= -1 && v >= -4))) ++bad;
          }
        }
      }
    }
    CHECK(bad == 0);
    CHECK(bounces > 100);  // 200 sequences of 40 frames hit the walls often
  }

  // Frames: the sum of the rescaled digits at the path's positions, clipped at 1.
  data::MovingDigitsOptions o;
  o.frames = 12;
  o.sequences = 10;
  o.seed = 3;
  const data::MovingDigits src(square_digits(3), "squares", o);
  std::vector<float> v(static_cast<size_t>(12 * 64 * 64));
  int64_t overlaps = 0;
  for (int64_t i = 0; i < 10; ++i) {
    src.read(i, 0, 0, 12, v.data());
    std::vector<float> want(v.size(), 0.0f), digit(32 * 32);
    for (const auto& p : src.paths(i, 0, 12)) {
      src.rescaled(p.digit, digit.data());
      for (int64_t t = 0; t < 12; ++t)
        for (int64_t r = 0; r < 32; ++r)
          for (int64_t c = 0; c < 32; ++c)
            want[static_cast<size_t>((t * 64 + p.y[static_cast<size_t>(t)] + r) * 64 + p.x[static_cast<size_t>(t)] + c)] +=
                digit[static_cast<size_t>(r * 32 + c)];
    }
    for (size_t k = 0; k < v.size(); ++k) {
      if (want[k] > 1.0f) ++overlaps;
      REQUIRE(v[k] == Approx(std::min(want[k], 1.0f)).margin(1e-6));
    }
  }
  CHECK(*std::max_element(v.begin(), v.end()) <= 1.0f);
  CHECK(overlaps > 0);  // the clipping was exercised
  // A sequence is one object: its first frames do not depend on how many are read,
  // nor on where the reading starts.
  std::vector<float> longer(static_cast<size_t>(12 * 64 * 64)), part(static_cast<size_t>(5 * 64 * 64));
  src.read(4, 0, 0, 12, longer.data());
  src.read(4, 0, 0, 5, part.data());
  CHECK(std::equal(part.begin(), part.end(), longer.begin()));
  src.read(4, 0, 7, 5, part.data());
  CHECK(std::equal(part.begin(), part.end(), longer.begin() + 7 * 64 * 64));
  // The rescaled square keeps its brightness inside and its size (10 -> ~11.4 px).
  std::vector<float> d(32 * 32);
  src.rescaled(0, d.data());
  CHECK(d[static_cast<size_t>(8 * 32 + 16)] == Approx(1.0f));
  CHECK(d[0] == 0.0f);
  const double mass = std::accumulate(d.begin(), d.end(), 0.0);
  CHECK(mass == Approx(100.0 * (32.0 / 28.0) * (32.0 / 28.0)).epsilon(0.02));
}

TEST_CASE("moving digits: one seed, one set of sequences, with and without prefetch, and new ones each epoch",
          "[data][video]") {
  data::MovingDigitsOptions o;
  o.frames = 10;
  o.sequences = 24;
  o.seed = 11;
  auto src = std::make_shared<data::MovingDigits>(square_digits(4), "squares", o);
  auto batches = [&](int prefetch, int64_t epoch) {
    data::VideoLoaderOptions lo;
    lo.batch_size = 5;
    lo.frames = 8;
    lo.seed = 2;
    lo.prefetch = prefetch;
    data::VideoLoader loader(src, lo);
    loader.start_epoch(epoch);
    std::vector<std::vector<float>> out;
    data::VideoBatch b;
    while (loader.next(b)) {
      REQUIRE(b.frames.shape() == Shape({8, 5, 1, 64, 64}));
      out.push_back(b.frames.to_vector<float>());
    }
    return out;
  };
  const auto a = batches(0, 3), b = batches(2, 3), c = batches(2, 4);
  REQUIRE(a.size() == 4);  // 24 sequences, batches of 5, the short last one dropped
  CHECK(a == b);
  CHECK(a != c);
  // make_batch gives the same batch directly; a second source with the same seed
  // the same frames.
  data::VideoLoaderOptions lo;
  lo.batch_size = 5, lo.frames = 8, lo.seed = 2, lo.prefetch = 0;
  auto twin = std::make_shared<data::MovingDigits>(square_digits(4), "squares", o);
  data::VideoLoader l2(twin, lo);
  CHECK(l2.make_batch(3, 1).frames.to_vector<float>() == a[1]);
  // Time order inside a batch: frame t of sequence k is read() frame t.
  std::vector<float> seq(static_cast<size_t>(8 * 64 * 64));
  const auto ord = l2.order(3);
  twin->read(ord[5 + 2], 3, 0, 8, seq.data());  // batch 1, item 2
  const auto& got = a[1];
  for (int64_t t = 0; t < 8; ++t)
    for (int64_t k = 0; k < 64 * 64; k += 97)
      REQUIRE(got[static_cast<size_t>((t * 5 + 2) * 4096 + k)] == seq[static_cast<size_t>(t * 4096 + k)]);
  // Asking for more frames than a sequence has names the source.
  lo.frames = 11;
  CHECK_THROWS_WITH(data::VideoLoader(twin, lo), Contains("squares") && Contains("10 frames"));
}

TEST_CASE("Moving MNIST file: read back, a seeded train/test split, bad files named", "[data][video]") {
  const int64_t T = 6, N = 10, H = 16, W = 16;
  std::vector<uint8_t> bytes(static_cast<size_t>(T * N * H * W));
  for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<uint8_t>((k * 37) % 251);
  const std::string path = video_tmp("mm.npy");
  data::write_npy(path, {T, N, H, W}, bytes.data(), data::Elem::U8);
  auto [train, test] = data::load_moving_mnist_file(path, 3, 5);
  CHECK(train->size() == 7);
  CHECK(test->size() == 3);
  CHECK(train->frames() == T);
  CHECK(train->frame_shape() == std::vector<int64_t>{1, H, W});
  // Every sequence once, in one of the two parts; each read back as bytes / 255.
  std::vector<int> seen(N, 0);
  std::vector<float> v(static_cast<size_t>(T * H * W));
  for (auto* part : {train.get(), test.get()})
    for (int64_t i = 0; i < part->size(); ++i) {
      part->read(i, 0, 0, T, v.data());
      // Which sequence: the one whose first pixel matches all of frame 0.
      int64_t found = -1;
      for (int64_t n = 0; n < N && found < 0; ++n) {
        bool same = true;
        for (int64_t t = 0; t < T && same; ++t)
          for (int64_t k = 0; k < H * W && same; ++k)
            same = v[static_cast<size_t>(t * H * W + k)] ==
                   static_cast<float>(bytes[static_cast<size_t>((t * N + n) * H * W + k)]) * (1.0f / 255.0f);
        if (same) found = n;
      }
      REQUIRE(found >= 0);
      ++seen[static_cast<size_t>(found)];
    }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
  // The same seed splits the same way; another seed differently.
  std::vector<float> a(v.size()), b(v.size());
  auto again = data::load_moving_mnist_file(path, 3, 5);
  auto other = data::load_moving_mnist_file(path, 3, 6);
  test->read(0, 0, 0, T, a.data());
  again.second->read(0, 0, 0, T, b.data());
  CHECK(a == b);
  bool differs = false;
  for (int64_t i = 0; i < 3; ++i) {
    other.second->read(i, 0, 0, T, b.data());
    test->read(i, 0, 0, T, a.data());
    differs = differs || a != b;
  }
  CHECK(differs);

  // Bad files.
  CHECK_THROWS_WITH(data::load_moving_mnist_file(video_tmp("absent.npy"), 3, 0), Contains("absent.npy"));
  const std::string f32 = video_tmp("f32.npy");
  std::vector<float> fl(static_cast<size_t>(T * N * H * W), 0.5f);
  data::write_npy(f32, {T, N, H, W}, fl.data(), data::Elem::F32);
  CHECK_THROWS_WITH(data::load_moving_mnist_file(f32, 3, 0), Contains("f32.npy") && Contains("uint8"));
  const std::string flat = video_tmp("flat.npy");
  data::write_npy(flat, {T * N, H * W}, bytes.data(), data::Elem::U8);
  CHECK_THROWS_WITH(data::load_moving_mnist_file(flat, 3, 0), Contains("flat.npy") && Contains("[T, N, H, W]"));
  // Truncated: the header promises more than the file holds.
  std::ifstream in(path, std::ios::binary);
  std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = video_tmp("cut.npy");
  std::ofstream(cut, std::ios::binary).write(all.data(), static_cast<std::streamsize>(all.size() - 100));
  CHECK_THROWS_WITH(data::load_moving_mnist_file(cut, 3, 0), Contains("cut.npy"));
  CHECK_THROWS_WITH(data::load_moving_mnist_file(path, 10, 0), Contains("test_count"));
  // Too few frames for the model.
  data::VideoLoaderOptions lo;
  lo.frames = 7;
  CHECK_THROWS_WITH(data::VideoLoader(train, lo), Contains("mm.npy") && Contains("6 frames"));
}

TEST_CASE("BAIR layout: sequences read back in order, missing and odd frames named", "[data][video]") {
  namespace fs = std::filesystem;
  const std::string root = video_tmp("bair");
  const int64_t F = 30, S = 8;
  // Two records with 2 and 1 sequences (folders 0, 1 and 10 sort by number).
  auto pixel = [](int64_t rec, int64_t k, int64_t t, int64_t i) {
    return static_cast<uint8_t>((rec * 71 + k * 13 + t * 7 + i) % 256);
  };
  const std::vector<std::pair<int64_t, int64_t>> seqs{{0, 1}, {0, 10}, {1, 0}};
  for (const auto& [rec, k] : seqs) {
    const fs::path d = fs::path(root) / "train" / ("traj_" + std::to_string(rec)) / std::to_string(k);
    fs::create_directories(d);
    for (int64_t t = 0; t < F; ++t) {
      data::Image im;
      im.h = S, im.w = S, im.c = 3;
      for (int64_t i = 0; i < S * S * 3; ++i) im.pixels.push_back(pixel(rec, k, t, i));
      data::write_png((d / (std::to_string(t) + ".png")).string(), im);
    }
  }
  const data::BairSource src(root, "train");
  REQUIRE(src.size() == 3);
  CHECK(src.frame_shape() == std::vector<int64_t>{3, S, S});
  std::vector<float> v(static_cast<size_t>(4 * 3 * S * S));
  for (int64_t s = 0; s < 3; ++s) {
    const auto [rec, k] = seqs[static_cast<size_t>(s)];
    src.read(s, 0, 26, 4, v.data());  // frames 26..29, planar RGB
    for (int64_t t = 0; t < 4; ++t)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t p = 0; p < S * S; ++p)
          REQUIRE(v[static_cast<size_t>(((t * 3 + c) * S * S) + p)] ==
                  static_cast<float>(pixel(rec, k, 26 + t, p * 3 + c)) * (1.0f / 255.0f));
  }
  // A frame of another size is named when read; a missing one when indexing.
  data::Image odd;
  odd.h = 4, odd.w = 4, odd.c = 3;
  odd.pixels.assign(48, 9);
  const fs::path bad = fs::path(root) / "train" / "traj_1" / "0" / "17.png";
  data::write_png(bad.string(), odd);
  std::vector<float> all(static_cast<size_t>(F * 3 * S * S));
  CHECK_THROWS_WITH(src.read(2, 0, 0, F, all.data()), Contains("17.png") && Contains("4x4"));
  fs::remove(bad);
  CHECK_THROWS_WITH(data::BairSource(root, "train"), Contains("17.png") && Contains("missing frame"));
  CHECK_THROWS_WITH(data::BairSource(root, "test"), Contains("no such directory"));
}
