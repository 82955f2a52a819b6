// Readers on good and corrupt files written here, loader determinism, safetensors
// round trips, the classifier for every model name, a two-batch training smoke
// test, and resume equal to an uninterrupted run.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "nanode/data/npy.hpp"
#include "nanode/io/state_dict.hpp"
#include "nanode/models/trainer.hpp"
#include "nanode/nanode.hpp"
#include "test_files.hpp"

using namespace nanode;
using Catch::Matchers::Contains;
using namespace nanode::testing;


TEST_CASE("IDX: plain and gzipped files read back, corrupt ones name the problem", "[data][readers]") {
  std::vector<uint8_t> pix;
  for (int i = 0; i < 2 * 3 * 4; ++i) pix.push_back(static_cast<uint8_t>(i * 5));
  const std::string plain = tmp_path("img.idx"), gz = tmp_path("img.idx.gz"), lab = tmp_path("lab.idx.gz");
  write_bytes(plain, idx_bytes({2, 3, 4}, pix));
  write_gz(gz, idx_bytes({2, 3, 4}, pix));
  write_gz(lab, idx_bytes({2}, {7, 3}));
  for (const auto& p : {plain, gz}) {
    const data::Array a = data::read_idx(p);
    CHECK(a.dims == std::vector<int64_t>{2, 3, 4});
    CHECK(a.bytes == pix);
  }
  const data::ImageSet s = data::read_idx_pair(gz, lab);
  CHECK(s.n == 2);
  CHECK(s.h == 3);
  CHECK(s.w == 4);
  CHECK(s.labels == std::vector<int32_t>{7, 3});

  auto bytes = idx_bytes({2, 3, 4}, pix);
  write_bytes(tmp_path("short.idx"), std::vector<uint8_t>(bytes.begin(), bytes.end() - 5));
  CHECK_THROWS_WITH(data::read_idx(tmp_path("short.idx")), Contains("short.idx") && Contains("truncated"));
  auto extra = bytes;
  extra.push_back(1);
  write_bytes(tmp_path("extra.idx"), extra);
  CHECK_THROWS_WITH(data::read_idx(tmp_path("extra.idx")), Contains("trailing bytes"));
  auto magic = bytes;
  magic[0] = 0x42;
  write_bytes(tmp_path("magic.idx"), magic);
  CHECK_THROWS_WITH(data::read_idx(tmp_path("magic.idx")), Contains("not an IDX file"));
  auto type = bytes;
  type[2] = 0x0D;
  write_bytes(tmp_path("type.idx"), type);
  CHECK_THROWS_WITH(data::read_idx(tmp_path("type.idx")), Contains("not supported"));
  // A gzip stream cut in half.
  std::ifstream in(gz, std::ios::binary);
  std::vector<uint8_t> z((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(tmp_path("cut.idx.gz"), std::vector<uint8_t>(z.begin(), z.begin() + static_cast<long>(z.size() / 2)));
  CHECK_THROWS_WITH(data::read_idx(tmp_path("cut.idx.gz")), Contains("cut.idx.gz") && Contains("gzip"));
  CHECK_THROWS_WITH(data::read_idx(tmp_path("absent.idx")), Contains("cannot open"));
  // Dimensions whose product overflows 64 bits: refused, not wrapped to a small size.
  write_bytes(tmp_path("huge.idx"), idx_bytes({1u << 22, 1u << 21, 1u << 21}, {}));
  CHECK_THROWS_WITH(data::read_idx(tmp_path("huge.idx")), Contains("promises more data"));
  // Labels out of range, and counts that disagree.
  write_gz(tmp_path("badlab.idx.gz"), idx_bytes({2}, {7, 12}));
  CHECK_THROWS_WITH(data::read_idx_pair(gz, tmp_path("badlab.idx.gz")), Contains("label 12"));
  write_gz(tmp_path("lab3.idx.gz"), idx_bytes({3}, {1, 2, 3}));
  CHECK_THROWS_WITH(data::read_idx_pair(gz, tmp_path("lab3.idx.gz")), Contains("3 labels"));
}

TEST_CASE("CIFAR-10 and CIFAR-100 records, truncated files and bad labels are errors", "[data][readers]") {
  std::vector<uint8_t> c10, c100;
  for (int r = 0; r < 3; ++r) {
    c10.push_back(static_cast<uint8_t>(r + 4));
    c100.push_back(static_cast<uint8_t>(r));       // coarse
    c100.push_back(static_cast<uint8_t>(90 + r));  // fine
    for (int k = 0; k < 3072; ++k) {
      c10.push_back(static_cast<uint8_t>((k + r) % 251));
      c100.push_back(static_cast<uint8_t>((k * 3 + r) % 251));
    }
  }
  write_bytes(tmp_path("c10.bin"), c10);
  write_bytes(tmp_path("c100.bin"), c100);
  const auto a = data::read_cifar({tmp_path("c10.bin"), tmp_path("c10.bin")}, false);
  CHECK(a.n == 6);
  CHECK(a.labels == std::vector<int32_t>{4, 5, 6, 4, 5, 6});
  CHECK(a.images[3072 + 1024] == (1024 + 1) % 251);  // record 1, green plane starts at 1024
  const auto b = data::read_cifar({tmp_path("c100.bin")}, true);
  CHECK(b.classes == 100);
  CHECK(b.labels == std::vector<int32_t>{90, 91, 92});
  CHECK(data::read_cifar({tmp_path("c100.bin")}, true, true).labels == std::vector<int32_t>{0, 1, 2});
  write_bytes(tmp_path("c10cut.bin"), std::vector<uint8_t>(c10.begin(), c10.end() - 100));
  CHECK_THROWS_WITH(data::read_cifar({tmp_path("c10cut.bin")}, false),
                    Contains("c10cut.bin") && Contains("not a whole number"));
  auto bad = c10;
  bad[0] = 10;
  write_bytes(tmp_path("c10bad.bin"), bad);
  CHECK_THROWS_WITH(data::read_cifar({tmp_path("c10bad.bin")}, false), Contains("label 10"));
}

TEST_CASE("NPY: uint8 and float32 round trips, bad headers and truncation are errors", "[data][readers]") {
  std::vector<uint8_t> u{1, 2, 3, 4, 5, 6};
  data::write_npy(tmp_path("u.npy"), {2, 3}, u.data(), false);
  auto a = data::read_npy(tmp_path("u.npy"));
  CHECK(a.dims == std::vector<int64_t>{2, 3});
  CHECK_FALSE(a.is_float32);
  CHECK(a.bytes == u);
  std::vector<float> f{1.5f, -2.0f, 3.25f};
  data::write_npy(tmp_path("f.npy"), {3}, f.data(), true);
  auto b = data::read_npy(tmp_path("f.npy"));
  REQUIRE(b.is_float32);
  CHECK(b.dims == std::vector<int64_t>{3});
  float back[3];
  std::memcpy(back, b.bytes.data(), 12);
  CHECK(back[2] == 3.25f);
  // A hand-written header in NumPy's own spelling: Moving MNIST's [T, N, H, W].
  std::string h = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2, 2), }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::vector<uint8_t> raw{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size()), 0};
  raw.insert(raw.end(), h.begin(), h.end());
  for (int i = 0; i < 8; ++i) raw.push_back(static_cast<uint8_t>(i));
  write_bytes(tmp_path("mm.npy"), raw);
  CHECK(data::read_npy(tmp_path("mm.npy")).dims == std::vector<int64_t>{2, 1, 2, 2});
  write_bytes(tmp_path("mmcut.npy"), std::vector<uint8_t>(raw.begin(), raw.end() - 3));
  CHECK_THROWS_WITH(data::read_npy(tmp_path("mmcut.npy")), Contains("mmcut.npy") && Contains("truncated"));
  auto f8 = raw;
  const size_t at = std::string(f8.begin(), f8.end()).find("|u1");
  f8[at] = '>', f8[at + 1] = 'f', f8[at + 2] = '8';  // big-endian: not supported
  write_bytes(tmp_path("f8.npy"), f8);
  CHECK_THROWS_WITH(data::read_npy(tmp_path("f8.npy")), Contains("'>f8' is not supported"));
  f8[at] = '<';  // little-endian float64 is, but 8 elements need 64 bytes
  write_bytes(tmp_path("f8.npy"), f8);
  CHECK_THROWS_WITH(data::read_npy(tmp_path("f8.npy")), Contains("truncated"));
  auto fo = raw;
  const size_t at2 = std::string(fo.begin(), fo.end()).find("False");
  std::memcpy(fo.data() + at2, "True ", 5);
  write_bytes(tmp_path("fo.npy"), fo);
  CHECK_THROWS_WITH(data::read_npy(tmp_path("fo.npy")), Contains("Fortran"));
  write_bytes(tmp_path("junk.npy"), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  CHECK_THROWS_WITH(data::read_npy(tmp_path("junk.npy")), Contains("bad magic"));
}

TEST_CASE("PNG: RGB and gray round trips, a truncated file is an error", "[data][readers]") {
  data::Image im;
  im.h = 3, im.w = 5, im.c = 3;
  for (int i = 0; i < 45; ++i) im.pixels.push_back(static_cast<uint8_t>(i * 5));
  data::write_png(tmp_path("a.png"), im);
  const auto back = data::read_png(tmp_path("a.png"), 3);
  CHECK(back.h == 3);
  CHECK(back.w == 5);
  CHECK(back.pixels == im.pixels);
  data::Image g;
  g.h = 2, g.w = 3, g.c = 1, g.pixels = {0, 40, 80, 120, 160, 250};
  data::write_png(tmp_path("g.png"), g);
  CHECK(data::read_png(tmp_path("g.png"), 1).pixels == g.pixels);
  const auto rgb = data::read_png(tmp_path("g.png"), 3);  // gray expands to equal channels
  CHECK(rgb.pixels == std::vector<uint8_t>{0, 0, 0, 40, 40, 40, 80, 80, 80, 120, 120, 120, 160, 160, 160, 250, 250, 250});
  std::ifstream in(tmp_path("a.png"), std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(tmp_path("cut.png"), std::vector<uint8_t>(b.begin(), b.begin() + static_cast<long>(b.size() - 20)));
  CHECK_THROWS_WITH(data::read_png(tmp_path("cut.png")), Contains("cut.png"));
  write_bytes(tmp_path("not.png"), {1, 2, 3, 4});
  CHECK_THROWS_WITH(data::read_png(tmp_path("not.png")), Contains("not.png"));
}

TEST_CASE("the loader is deterministic in seed and epoch, with or without prefetching", "[data][loader]") {
  auto ds = std::make_shared<data::ImageDataset>(synthetic(37, 3, 6, 5));
  auto batches = [&](int prefetch, uint64_t seed, int64_t epoch) {
    data::LoaderOptions o;
    o.batch_size = 8, o.seed = seed, o.crop_padding = 2, o.hflip = true, o.prefetch = prefetch;
    o.mean = {0.5f, 0.4f, 0.3f}, o.stddev = {0.2f, 0.25f, 0.3f};
    data::DataLoader dl(ds, o);
    dl.start_epoch(epoch);
    std::vector<std::vector<float>> out;
    data::Batch b;
    while (dl.next(b)) {
      auto v = b.images.to_vector<float>();
      for (int i = 0; i < b.labels.size(0); ++i) v.push_back(static_cast<float>(b.labels.data<int32_t>()[i]));
      out.push_back(v);
    }
    return out;
  };
  const auto a = batches(2, 3, 0);
  REQUIRE(a.size() == 5);  // 37 = 4 x 8 + 5
  CHECK(a.back().size() == 5 * 3 * 36 + 5);
  CHECK(batches(0, 3, 0) == a);
  CHECK(batches(2, 3, 0) == a);
  CHECK(batches(2, 3, 1) != a);
  CHECK(batches(2, 4, 0) != a);
  // Every item appears once per epoch.
  data::LoaderOptions o;
  o.batch_size = 8, o.seed = 3;
  data::DataLoader dl(ds, o);
  auto ord = dl.order(5);
  std::sort(ord.begin(), ord.end());
  for (int64_t i = 0; i < 37; ++i) CHECK(ord[static_cast<size_t>(i)] == i);
  // Without augmentation a batch holds the normalised pixels of the items in order.
  o.shuffle = false, o.prefetch = 0;
  data::DataLoader plain(ds, o);
  plain.start_epoch(0);
  data::Batch b;
  REQUIRE(plain.next(b));
  CHECK(b.images.data<float>()[1] == Approx(ds->pixels(0)[1] / 255.0));
  CHECK(b.labels.data<int32_t>()[6] == 1);
  data::LoaderOptions bad;
  bad.mean = {0.5f};
  bad.stddev = {0.5f};
  CHECK_THROWS_WITH(data::DataLoader(ds, bad), Contains("one value per channel"));
  data::LoaderOptions neg;
  neg.prefetch = -1;
  CHECK_THROWS_WITH(data::DataLoader(ds, neg), Contains("prefetch"));
  data::DataLoader unstarted(ds, data::LoaderOptions{});
  CHECK_THROWS_WITH(unstarted.next(b), Contains("start_epoch"));
}

TEST_CASE("safetensors: a round trip keeps names, dtypes, values and metadata, corrupt files are errors",
          "[data][safetensors]") {
  const Tensor a = Tensor::uniform({2, 3}, -1, 1), b = Tensor::from_vector<double>({1.25, -7.5}, {2});
  const Tensor c = Tensor::from_vector<int32_t>({4, -9, 12}, {3});
  const std::string p = tmp_path("t.safetensors");
  data::save_safetensors(p, {{"a", a}, {"b", b}, {"c", c}}, {{"epoch", "3"}});
  const auto f = data::load_safetensors(p);
  REQUIRE(f.tensors.size() == 3);
  CHECK(f.tensors[0].first == "a");
  CHECK(f.at("a").to_vector<float>() == a.to_vector<float>());
  CHECK(f.at("b").dtype() == DType::Float64);
  CHECK(f.at("b").to_vector<double>() == b.to_vector<double>());
  CHECK(f.at("c").to_vector<int32_t>() == c.to_vector<int32_t>());
  CHECK(f.metadata.at("epoch") == "3");
  CHECK_FALSE(data::file_exists(p + ".tmp"));
  std::ifstream in(p, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_bytes(tmp_path("cut.safetensors"), std::vector<uint8_t>(bytes.begin(), bytes.end() - 4));
  CHECK_THROWS_WITH(data::load_safetensors(tmp_path("cut.safetensors")), Contains("data_offsets"));
  auto hdr = bytes;
  hdr[9] = '!';
  write_bytes(tmp_path("hdr.safetensors"), hdr);
  CHECK_THROWS_WITH(data::load_safetensors(tmp_path("hdr.safetensors")), Contains("malformed"));
  write_bytes(tmp_path("tiny.safetensors"), {1, 2, 3});
  CHECK_THROWS_WITH(data::load_safetensors(tmp_path("tiny.safetensors")), Contains("not a safetensors"));
}

TEST_CASE("the classifier runs every model on 28x28x1 and 32x32x3 images", "[models][classifier]") {
  for (const auto& name : models::classifier_model_names()) {
    for (int64_t c : {1, 3}) {
      INFO(name << " with " << c << " channels");
      manual_seed(1);
      models::ClassifierOptions o;
      o.model = name, o.order = 2, o.widths = {8, 16}, o.steps = 2;
      o.in_channels = c, o.image_size = c == 1 ? 28 : 32, o.classes = c == 1 ? 10 : 100;
      models::Classifier m(o);
      Var x(Tensor::uniform({2, c, o.image_size, o.image_size}, -1, 1));
      Var logits = m.forward(x);
      CHECK(logits.shape() == Shape{2, o.classes});
      Var loss = cross_entropy(logits, Tensor::from_vector<int32_t>({1, 7}, {2}));
      loss.backward();
      int64_t with_grad = 0, params = 0;
      for (auto& [n, p] : m.named_parameters()) ++params, with_grad += p.grad().defined();
      CHECK(with_grad == params);
    }
  }
  models::ClassifierOptions o;
  o.model = "t-nanode-10";
  CHECK(models::Classifier(o).order() == 10);
  o.model = "uncon-resnet", o.steps = 3;
  CHECK(models::Classifier(o).order() == 3);
  o.model = "resnet-50";
  CHECK_THROWS_WITH(models::Classifier(o), Contains("unknown model 'resnet-50'") &&
                                               Contains("t-nanode"));
  models::Classifier m(models::ClassifierOptions{});
  CHECK_THROWS_WITH(m.forward(Var(Tensor::zeros({2, 3, 28, 28}))), Contains("expected images [N, 1"));
}

TEST_CASE("training: two batches lower the loss, resume equals an uninterrupted run", "[models][trainer]") {
  auto train = std::make_shared<data::ImageDataset>(quadrants(96, 12, 1));
  auto test = std::make_shared<data::ImageDataset>(quadrants(40, 12, 2));
  models::TrainConfig cfg;
  cfg.model.model = "t-nanode", cfg.model.order = 2, cfg.model.widths = {8}, cfg.model.steps = 2;
  cfg.batch_size = 32, cfg.lr = 1e-2, cfg.progress = false, cfg.crop_padding = 1, cfg.hflip = true;

  SECTION("smoke: two batches") {
    cfg.epochs = 1, cfg.max_batches = 2;
    models::Trainer t(cfg, train, test);
    models::EpochMetrics before;
    t.evaluate(before);
    const auto r = t.run();
    REQUIRE(r.epochs.size() == 1);
    CHECK(std::isfinite(r.epochs[0].train_loss));
    CHECK(r.epochs[0].peak_activation_bytes > 0);
    CHECK(r.epochs[0].test_loss < before.test_loss);
  }

  SECTION("resume after a kill equals the uninterrupted run, bit for bit") {
    cfg.epochs = 3;
    cfg.out_dir = tmp_path("full");
    REQUIRE(std::system(("mkdir -p " + cfg.out_dir).c_str()) == 0);
    models::Trainer full(cfg, train, test);
    const auto rf = full.run();
    CHECK(rf.final_test_acc() > 0.5);  // the quadrant task is learnable

    models::TrainConfig part = cfg;
    part.out_dir = tmp_path("part");
    REQUIRE(std::system(("mkdir -p " + part.out_dir).c_str()) == 0);
    {  // "killed" after its first epoch: only that epoch's checkpoint exists
      models::Trainer t(part, train, test);
      int epochs = 0;
      try {
        t.run([&](const models::EpochMetrics&) {
          if (++epochs == 1) throw std::runtime_error("killed");
        });
      } catch (const std::runtime_error&) {
      }
    }
    {  // ... and killed again after appending epoch 2's metrics row but before its checkpoint
      std::ofstream csv(part.out_dir + "/metrics.csv", std::ios::app);
      csv << "2,9,9,9,9,9,9,9,9\n";
    }
    part.resume = true;
    auto resumed = std::make_unique<models::Trainer>(part, train, test);
    const auto rr = resumed->run();
    REQUIRE(rr.epochs.size() == 3);
    for (size_t e = 0; e < 3; ++e) {  // epoch 1 restored from the checkpoint, 2 and 3 recomputed: identical
      CHECK(rr.epochs[e].test_acc == rf.epochs[e].test_acc);
      CHECK(rr.epochs[e].test_loss == rf.epochs[e].test_loss);
      CHECK(rr.epochs[e].train_loss == rf.epochs[e].train_loss);
      CHECK(rr.epochs[e].peak_activation_bytes == rf.epochs[e].peak_activation_bytes);
      CHECK(rr.epochs[e].lr == rf.epochs[e].lr);
    }
    for (bool params : {true, false}) {
      auto pf = params ? full.model().named_parameters() : full.model().named_buffers();
      auto pr = params ? resumed->model().named_parameters() : resumed->model().named_buffers();
      REQUIRE(pf.size() == pr.size());
      for (size_t i = 0; i < pf.size(); ++i) {
        INFO(pf[i].first);
        CHECK(pf[i].second.data().to_vector<float>() == pr[i].second.data().to_vector<float>());
      }
    }
    // The CSV holds one row per epoch after the resume, as in the full run.
    std::ifstream csv(part.out_dir + "/metrics.csv");
    int lines = 0;
    for (std::string l; std::getline(csv, l);) ++lines;
    CHECK(lines == 4);
    // A checkpoint from other settings is refused, naming both (once the folder's
    // lock is free: a second trainer on it would be refused for that first).
    resumed.reset();
    models::TrainConfig other = part;
    other.lr = 0.5;
    models::Trainer wrong(other, train, test);
    CHECK_THROWS_WITH(wrong.run(), Contains("different settings"));
  }
}

TEST_CASE("NPY as tensors: float64, int32 and int64 round trips and range errors", "[data][readers]") {
  const Tensor d = Tensor::from_vector<double>({1.0 / 3, -2.5e-300, 7.0, 1e300}, {2, 2});
  data::write_npy(tmp_path("d.npy"), d);
  const Tensor dback = data::read_npy_tensor(tmp_path("d.npy"));
  CHECK(dback.dtype() == DType::Float64);
  CHECK(dback.shape() == Shape({2, 2}));
  CHECK(dback.to_vector<double>() == d.to_vector<double>());
  const Tensor i = Tensor::from_vector<int32_t>({-7, 0, 2147483647}, {3});
  data::write_npy(tmp_path("i.npy"), i);
  CHECK(data::read_npy_tensor(tmp_path("i.npy")).to_vector<int32_t>() == i.to_vector<int32_t>());
  std::vector<int64_t> big{5, -6, int64_t{1} << 40};
  data::write_npy(tmp_path("i8.npy"), {3}, big.data(), data::Elem::I64);
  CHECK(data::read_npy(tmp_path("i8.npy")).elem == data::Elem::I64);
  CHECK_THROWS_WITH(data::read_npy_tensor(tmp_path("i8.npy")), Contains("i8.npy") && Contains("does not fit"));
  big[2] = -9;
  data::write_npy(tmp_path("i8ok.npy"), {3}, big.data(), data::Elem::I64);
  CHECK(data::read_npy_tensor(tmp_path("i8ok.npy")).to_vector<int32_t>() == std::vector<int32_t>{5, -6, -9});
  const Tensor f = Tensor::from_vector<float>({1.5f, 2.5f}, {2});
  data::write_npy(tmp_path("f4.npy"), f);
  CHECK(data::read_npy_tensor(tmp_path("f4.npy")).to_vector<float>() == f.to_vector<float>());
  std::vector<uint8_t> u{0, 255};
  data::write_npy(tmp_path("u1.npy"), {2}, u.data(), data::Elem::U8);
  CHECK(data::read_npy_tensor(tmp_path("u1.npy")).to_vector<float>() == std::vector<float>{0.0f, 255.0f});
}

TEST_CASE("state dicts: save and load by name, errors list every bad name, nothing half-loaded", "[data][io]") {
  struct Small : nn::Module {
    Small() {
      fc = register_module("fc", std::make_shared<nn::Linear>(3, 2));
      bn = register_module("bn", std::make_shared<nn::BatchNorm>(2));
    }
    std::shared_ptr<nn::Linear> fc;
    std::shared_ptr<nn::BatchNorm> bn;
  };
  manual_seed(1);
  Small a;
  a.bn->running_mean.mutable_data().fill_(0.25);
  manual_seed(2);
  Small b;
  const std::string path = tmp_path("small.safetensors");
  io::save_state_dict(a, path);
  const Var w = b.fc->weight;  // captured before loading: must see the new values
  io::load_state_dict(b, path);
  CHECK(w.data().to_vector<float>() == a.fc->weight.data().to_vector<float>());
  CHECK(b.bn->running_mean.data().to_vector<float>() == std::vector<float>{0.25f, 0.25f});
  std::vector<std::string> names;
  for (auto& [n, t] : a.state_dict()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                          "bn.running_var"});
  // Wrong shape, a missing and an unexpected name: all listed, nothing changed.
  auto sd = a.state_dict();
  sd[0].second = Tensor::zeros({2, 4});
  sd.erase(sd.begin() + 1);
  sd.emplace_back("fc.extra", Tensor::zeros({1}));
  const auto before = b.fc->weight.data().to_vector<float>();
  CHECK_THROWS_WITH(b.load_state_dict(sd), Contains("fc.weight ([2, 4] given, [2, 3] expected)") &&
                                               Contains("missing: fc.bias") && Contains("unexpected: fc.extra"));
  CHECK(b.fc->weight.data().to_vector<float>() == before);
  sd[0].second = a.fc->weight.data();
  b.load_state_dict(sd, /*strict=*/false);  // missing and unexpected names allowed
  CHECK(b.fc->weight.data().to_vector<float>() == a.fc->weight.data().to_vector<float>());
  // Files: the error names the file.
  data::save_safetensors(tmp_path("other.safetensors"), {{"fc.weight", Tensor::zeros({2, 3})}});
  CHECK_THROWS_WITH(io::load_state_dict(b, tmp_path("other.safetensors")),
                    Contains("other.safetensors") && Contains("missing: fc.bias"));
  // Float64 values load into float32 parameters (converted), and nn::make places parameters.
  auto c = nn::make<Small>(nn::ModuleOptions().dtype(DType::Float64));
  CHECK(c->fc->weight.dtype() == DType::Float64);
  CHECK(c->bn->running_var.dtype() == DType::Float64);
  io::save_state_dict(*c, tmp_path("c64.safetensors"));
  io::load_state_dict(b, tmp_path("c64.safetensors"));
  CHECK(b.fc->weight.dtype() == DType::Float32);
  CHECK(b.fc->weight.data().at({1, 2}) == Approx(c->fc->weight.data().at({1, 2})).epsilon(1e-7));
  Small d;  // outside the guard: float32 again
  CHECK(d.fc->weight.dtype() == DType::Float32);
}
