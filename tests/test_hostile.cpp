// Hostile files, corrupt checkpoints, NaN and shared output folders: each case
// fails early with a message that names the problem, overwrites nothing, and
// allocates no more than its header promises and the file can deliver (measured
// here by counting operator new).
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include "nanode/data/npy.hpp"
#include "nanode/data/safetensors.hpp"
#include "nanode/io/state_dict.hpp"
#include "nanode/models/trainer.hpp"
#include "nanode/nanode.hpp"
#include "test_files.hpp"

using namespace nanode;
using namespace nanode::testing;
using Catch::Matchers::Contains;

// ---- the largest single allocation through operator new while a probe is on ----
namespace {
std::atomic<bool> g_probe{false};
std::atomic<size_t> g_largest{0};

struct AllocationProbe {
  AllocationProbe() { g_largest = 0, g_probe = true; }
  ~AllocationProbe() { g_probe = false; }
  size_t largest() const { return g_largest.load(); }
};

void* counted(size_t n) {
  if (g_probe.load(std::memory_order_relaxed)) {
    size_t cur = g_largest.load(std::memory_order_relaxed);
    while (n > cur && !g_largest.compare_exchange_weak(cur, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(size_t n) { return counted(n); }
void* operator new[](size_t n) { return counted(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
// The nothrow forms too (std::stable_sort's buffer uses them): every form of new
// and delete of this program pairs malloc with free.
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {
std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }
void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

/// A PNG whose IHDR claims w x h (its CRC fixed, so libpng reads the header).
std::vector<uint8_t> png_claiming(uint32_t w, uint32_t h) {
  data::Image im;
  im.h = 2, im.w = 2, im.c = 3;
  im.pixels.assign(12, 77);
  const std::string p = tmp_path("claim_src.png");
  data::write_png(p, im);
  std::vector<uint8_t> b = read_all(p);
  // signature (8), IHDR length (4), "IHDR" (4), width, height, ...
  REQUIRE(std::string(b.begin() + 12, b.begin() + 16) == "IHDR");
  put_be32(b.data() + 16, w);
  put_be32(b.data() + 20, h);
  const uint32_t len = be32(b.data() + 8);
  put_be32(b.data() + 16 + len, static_cast<uint32_t>(crc32(0, b.data() + 12, 4 + len)));
  return b;
}

/// The raw safetensors bytes of a JSON header and a data section.
std::vector<uint8_t> safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>((header.size() >> (8 * i)) & 0xff);
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0);
  return b;
}

std::string st_error(const std::string& header, size_t data_bytes) {
  const std::string p = tmp_path("hostile.safetensors");
  write_bytes(p, safetensors_bytes(header, data_bytes));
  try {
    data::load_safetensors(p);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded without an error)";
}
}  // namespace

TEST_CASE("hostile PNGs: a header claiming a huge image is refused before any pixel is allocated",
          "[data][hostile]") {
  const std::string p = tmp_path("huge.png");
  write_bytes(p, png_claiming(26000, 26000));
  REQUIRE(read_all(p).size() < 200);
  {
    AllocationProbe probe;
    CHECK_THROWS_WITH(data::read_png(p), Contains("huge.png") && Contains("26000x26000") &&
                                             Contains("more than the limit"));
    CHECK(probe.largest() < (size_t{1} << 20));
  }
  // Under the pixel limit, but more than 90 bytes of deflate can hold.
  write_bytes(p, png_claiming(4000, 4000));
  {
    AllocationProbe probe;
    CHECK_THROWS_WITH(data::read_png(p), Contains("cannot hold them"));
    CHECK(probe.largest() < (size_t{1} << 20));
  }
  // The limit is an option.
  data::Image im;
  im.h = 5, im.w = 7, im.c = 1;
  im.pixels.assign(35, 9);
  data::write_png(tmp_path("small.png"), im);
  CHECK_THROWS_WITH(data::read_png(tmp_path("small.png"), 1, 34), Contains("more than the limit of 34"));
  CHECK(data::read_png(tmp_path("small.png"), 1, 35).pixels == im.pixels);
}

TEST_CASE("gzip bombs: IDX and NPY stop at what the header promises and refuse promises the file cannot keep",
          "[data][hostile]") {
  // 64 MiB of zeros gzip to ~64 KiB; the header promises 4 MiB.
  std::vector<uint8_t> bomb = idx_bytes({4, 1024, 1024}, {});
  bomb.resize(bomb.size() + (size_t{64} << 20), 0);
  write_gz(tmp_path("bomb.idx.gz"), bomb);
  {
    AllocationProbe probe;
    CHECK_THROWS_WITH(data::read_idx(tmp_path("bomb.idx.gz")), Contains("bomb.idx.gz") && Contains("trailing bytes"));
    CHECK(probe.largest() <= (size_t{4} << 20) + (size_t{1} << 16));
  }
  // A header promising 2^48 bytes from a small gzip file: refused before allocating.
  std::vector<uint8_t> liar = idx_bytes({1u << 16, 1u << 16, 1u << 16}, {});
  liar.resize(liar.size() + (size_t{1} << 20), 0);
  write_gz(tmp_path("liar.idx.gz"), liar);
  {
    AllocationProbe probe;
    CHECK_THROWS_WITH(data::read_idx(tmp_path("liar.idx.gz")), Contains("liar.idx.gz") && Contains("more data"));
    CHECK(probe.largest() < (size_t{1} << 20));
  }
  // NPY takes the same path.
  const std::string npy = tmp_path("liar.npy");
  const std::vector<float> one{1.0f};
  data::write_npy(npy, {1}, one.data(), data::Elem::F32);
  std::vector<uint8_t> b = read_all(npy);
  std::string h(b.begin() + 10, b.end() - 4);
  const size_t at = h.find("(1, )");
  REQUIRE(at != std::string::npos);
  const std::string huge = "(1099511627776,)";  // 4 TiB of float32
  h.replace(at, 5, huge);
  h.resize(h.size() - (huge.size() - 5));  // from the padding: the header keeps its length
  std::vector<uint8_t> lie(b.begin(), b.begin() + 10);
  lie[8] = static_cast<uint8_t>(h.size() & 0xff), lie[9] = static_cast<uint8_t>(h.size() >> 8);
  lie.insert(lie.end(), h.begin(), h.end());
  lie.resize(lie.size() + 4096, 0);
  write_gz(tmp_path("liar.npy.gz"), lie);
  {
    AllocationProbe probe;
    CHECK_THROWS_WITH(data::read_npy(tmp_path("liar.npy.gz")), Contains("liar.npy.gz") && Contains("more data"));
    CHECK(probe.largest() < (size_t{1} << 20));
  }
}

TEST_CASE("safetensors: exact integers, no overflow, tensors tiling the data, escaped excerpts",
          "[data][hostile][safetensors]") {
  CHECK_THROWS_WITH(data::load_safetensors(tmp_path("absent.safetensors")), Contains("cannot open"));
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(st_error(ok, 8) == "(loaded without an error)");
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
             Contains("tensor 'a'") && Contains("non-negative integers") && Contains("2.0"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}})", 8),
             Contains("non-negative integers"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
             Contains("non-negative integers"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[99999999999999999999999],"data_offsets":[0,8]}})", 8),
             Contains("non-negative integers"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})",
                      0),
             Contains("overflows"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],)"
                      R"("data_offsets":[4,12]}})",
                      12),
             Contains("overlaps"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12),
             Contains("bytes 8..12") && Contains("belong to no tensor"));
  CHECK_THAT(st_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
             Contains("bytes 0..4") && Contains("belong to no tensor"));
  // Text from the file is quoted escaped: control bytes as \xNN, quotes escaped.
  const std::string msg = st_error("{\"a\\u0001\\\"b\":{\"dtype\":\"F\\u0007\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  CHECK_THAT(msg, Contains("a\\x01\\\"b") && Contains("F\\x07"));
}

TEST_CASE("checkpoints: a flipped bit or a NaN weight is refused naming the tensor, saves leave no temp file",
          "[data][hostile][checkpoint]") {
  manual_seed(3);
  nn::Linear lin(64, 32);
  const std::string p = tmp_path("ckpt.safetensors");
  io::save_state_dict(lin, p, {{"note", "x"}});
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  const data::TensorFile f = data::load_safetensors(p);
  CHECK(f.metadata.count("crc32:weight") == 1);
  CHECK(f.metadata.at("note") == "x");
  nn::Linear back(64, 32);
  io::load_state_dict(back, p);
  CHECK(back.named_parameters()[0].second.data().to_vector<float>() ==
        lin.named_parameters()[0].second.data().to_vector<float>());

  // 1 float in 1000 with a flipped exponent bit (the data section ends the file).
  std::vector<uint8_t> b = read_all(p);
  const size_t floats = (64 * 32 + 32);
  const size_t data_start = b.size() - floats * 4;
  for (size_t i = 0; i < floats; i += 1000) b[data_start + 4 * i + 3] ^= 0x40;
  write_bytes(tmp_path("flipped.safetensors"), b);
  CHECK_THROWS_WITH(io::load_state_dict(back, tmp_path("flipped.safetensors")),
                    Contains("flipped.safetensors") && Contains("does not match its checksum"));
  // A changed metadata value is caught too.
  b = read_all(p);
  const std::string text(b.begin(), b.end());
  const size_t note = text.find("\"note\":\"x\"");
  REQUIRE(note != std::string::npos);
  b[note + 8] = 'y';
  write_bytes(tmp_path("meta.safetensors"), b);
  CHECK_THROWS_WITH(data::load_safetensors(tmp_path("meta.safetensors")), Contains("metadata do not match"));

  // NaN weights with a valid checksum: refused at load, naming the tensor.
  lin.named_parameters()[1].second.mutable_data().data<float>()[5] = std::nanf("");
  io::save_state_dict(lin, tmp_path("nan.safetensors"));
  CHECK_THROWS_WITH(io::load_state_dict(back, tmp_path("nan.safetensors")),
                    Contains("nan.safetensors") && Contains("tensor 'bias'") && Contains("element 5"));
}

TEST_CASE("anomaly mode names the op that first made a non-finite value, forward and backward", "[autograd][hostile]") {
  Var x(Tensor::from_vector<float>({1.0f, -1.0f}, {2}), true);
  CHECK_NOTHROW(log(x));  // off by default: NaN flows on
  {
    anomaly::Guard on;
    CHECK_THROWS_WITH(log(x), Contains("op 'log'") && Contains("element 1 of [2] is") && Contains("nan") &&
                                   Contains("from inputs: an unnamed leaf Var"));
    Var z(Tensor::from_vector<float>({0.0f, 4.0f}, {2}), true);
    Var y = sum(sqrt(z));
    CHECK_THROWS_WITH(y.backward(), Contains("backward of op 'sqrt'") && Contains("input 0") &&
                                        Contains("a finite incoming gradient"));
  }
  CHECK_FALSE(anomaly::enabled());
}

namespace {
models::TrainConfig tiny_run(const std::string& out) {
  models::TrainConfig cfg;
  cfg.model.model = "t-nanode", cfg.model.order = 2, cfg.model.widths = {4}, cfg.model.steps = 2;
  cfg.batch_size = 16, cfg.lr = 1e-2, cfg.progress = false, cfg.epochs = 1, cfg.max_batches = 2;
  cfg.out_dir = out;
  return cfg;
}
}  // namespace

TEST_CASE("the output folder: locked, never overwritten unasked, checked before training", "[models][hostile]") {
  auto train = std::make_shared<data::ImageDataset>(quadrants(48, 12, 1));
  auto test = std::make_shared<data::ImageDataset>(quadrants(16, 12, 2));
  const std::string dir = tmp_path("run");
  {
    models::Trainer first(tiny_run(dir), train, test);
    // A second run on the same folder fails at once, naming the holder.
    CHECK_THROWS_WITH(models::Trainer(tiny_run(dir), train, test),
                      Contains("in use by another training run") && Contains(std::to_string(::getpid())));
    first.run();
  }
  const auto csv = read_all(dir + "/metrics.csv"), ckpt = read_all(dir + "/checkpoint.safetensors");
  REQUIRE(!csv.empty());
  // A new run into a folder with results refuses, and touches nothing.
  CHECK_THROWS_WITH(models::Trainer(tiny_run(dir), train, test),
                    Contains("already holds the results") && Contains("--resume") && Contains("--overwrite"));
  CHECK(read_all(dir + "/metrics.csv") == csv);
  CHECK(read_all(dir + "/checkpoint.safetensors") == ckpt);
  auto both = tiny_run(dir);
  both.resume = both.overwrite = true;
  CHECK_THROWS_WITH(models::Trainer(both, train, test), Contains("contradict"));
  auto again = tiny_run(dir);
  again.overwrite = true;
  CHECK_NOTHROW(models::Trainer(again, train, test).run());
  // --resume without a checkpoint is an error, not a fresh start.
  auto resume = tiny_run(tmp_path("empty_run"));
  resume.resume = true;
  CHECK_THROWS_WITH(models::Trainer(resume, train, test), Contains("no checkpoint at"));
  // A folder that cannot be made is found before any training.
  write_bytes(tmp_path("a_file"), {1});
  CHECK_THROWS_WITH(models::Trainer(tiny_run(tmp_path("a_file") + "/sub"), train, test), Contains("--out-dir"));
  // Temp files a killed save left behind are cleared under the lock.
  write_bytes(dir + "/checkpoint.safetensors.tmp.999999.0", {1, 2});
  auto fresh = tiny_run(dir);
  fresh.overwrite = true;
  { models::Trainer t(fresh, train, test); }
  CHECK_FALSE(std::filesystem::exists(dir + "/checkpoint.safetensors.tmp.999999.0"));
}

TEST_CASE("a diverging or non-finite run stops or warns with epoch and batch, and keeps the last good checkpoint",
          "[models][hostile]") {
  auto train = std::make_shared<data::ImageDataset>(quadrants(64, 12, 1));
  auto test = std::make_shared<data::ImageDataset>(quadrants(16, 12, 2));
  SECTION("plain SGD at lr 1e30: the parameters become non-finite; the message says where") {
    auto cfg = tiny_run("");
    cfg.optimizer = "sgd", cfg.momentum = 0, cfg.lr = 1e30, cfg.schedule = "constant", cfg.max_batches = 4;
    try {
      models::Trainer(cfg, train, test).run();
      FAIL("the run did not stop");
    } catch (const Error& e) {
      const std::string m = e.what();
      INFO(m);
      CHECK_THAT(m, Contains("train:") && Contains("epoch 1, batch"));
      CHECK_THAT(m, Contains("Lower --lr") && Contains("--detect-anomaly"));
    }
  }
  SECTION("a loss far above its first value for many steps is a warning, and no checkpoint is written") {
    models::StepGuard g("test", "--lr", 10.0, 3);
    g.loss(2.0);
    for (int i = 0; i < 3; ++i) {
      CHECK_FALSE(g.diverging());
      g.loss(100.0);
    }
    CHECK(g.diverging());
    g.loss(1.0);
    CHECK_FALSE(g.diverging());
    CHECK_THROWS_WITH(g.loss(std::nan("")), Contains("the loss became nan") && Contains("epoch 1, batch 1"));
  }
}
