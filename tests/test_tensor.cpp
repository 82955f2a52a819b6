// Tensor, shapes, the allocator's counters, views, copies and the RNG.
#include <catch2/catch.hpp>

#include <cmath>

#include "nanode/nanode.hpp"

using namespace nanode;
using Catch::Matchers::Contains;

TEST_CASE("shapes: construction, numel, strides, limits", "[tensor]") {
  Shape s{2, 3, 4};
  CHECK(s.ndim() == 3);
  CHECK(s.numel() == 24);
  CHECK(s.strides()[0] == 12);
  CHECK(s.strides()[1] == 4);
  CHECK(s.size(-1) == 4);
  CHECK(Shape{}.numel() == 1);
  CHECK(Shape{2, 3, 4, 5, 6}.numel() == 720);
  CHECK_THROWS_WITH((Shape{1, 2, 3, 4, 5, 6}), Contains("at most 5"));
  CHECK_THROWS_WITH((Shape{2, -1}), Contains("negative"));
  CHECK_THROWS_WITH(s.size(3), Contains("axis 3 is out of range"));
  CHECK(broadcast_shapes({3, 1}, {1, 4}, "t") == Shape({3, 4}));
  CHECK(broadcast_shapes({2, 3, 4}, {4}, "t") == Shape({2, 3, 4}));
  CHECK_THROWS_WITH(broadcast_shapes({2, 3}, {4}, "add"), Contains("add: shapes [2, 3] and [4]"));
}

TEST_CASE("tensor creation and element access", "[tensor]") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.dtype() == DType::Float32);
  CHECK(z.device() == Device::cpu());
  for (float v : z.to_vector<float>()) CHECK(v == 0.0f);
  Tensor f = Tensor::full({2, 2}, 2.5, DType::Float64);
  CHECK(f.at({1, 1}) == 2.5);
  Tensor v = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(v.at({1, 2}) == 6.0);
  CHECK(v.at({0, 1}) == 2.0);
  CHECK_THROWS_WITH(v.at({2, 0}), Contains("out of range"));
  CHECK_THROWS_WITH(Tensor::from_vector<float>({1, 2, 3}, {2, 2}), Contains("3 values do not fill shape [2, 2]"));
  Tensor l = Tensor::linspace(0, 1, 5, DType::Float64);
  CHECK(l.at({2}) == Approx(0.5));
  CHECK(Tensor::scalar(3.0).item<double>() == 3.0);
  CHECK_THROWS_WITH(v.item<float>(), Contains("not 1"));
  CHECK_THROWS_WITH(Tensor().device(), Contains("undefined"));
  CHECK_THROWS_WITH(v.data<double>(), Contains("tensor is float32, asked for float64"));
}

TEST_CASE("reshape and narrow make views, other slices copy", "[tensor]") {
  Tensor t = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  Tensor r = t.reshape({2, -1});
  CHECK(r.shape() == Shape({2, 6}));
  CHECK(r.shares_storage_with(t));
  CHECK_THROWS_WITH(t.reshape({5, -1}), Contains("cannot infer"));
  CHECK_THROWS_WITH(t.reshape({5, 2}), Contains("cannot view [3, 4]"));
  Tensor rows = t.slice(0, 1, 2);
  CHECK(rows.shares_storage_with(t));
  CHECK(rows.at({0, 0}) == 4.0);
  rows.fill_(-1);
  CHECK(t.at({1, 2}) == -1.0);  // a view writes through
  CHECK(t.at({0, 2}) == 2.0);
  Tensor cols = t.slice(1, 1, 3);
  CHECK_FALSE(cols.shares_storage_with(t));
  CHECK(cols.shape() == Shape({3, 2}));
  CHECK(cols.at({0, 0}) == 1.0);
  CHECK(cols.at({2, 1}) == 10.0);
  CHECK(t[2].shape() == Shape({4}));
  CHECK(t[2].at({3}) == 11.0);
  CHECK_THROWS_WITH(t.slice(1, 2, 5), Contains("out of bounds"));
  CHECK_THROWS_WITH(t.slice(2, 0, 1), Contains("axis 2 is out of range"));
}

TEST_CASE("allocator counts live and peak bytes and can be reset", "[tensor][memory]") {
  const int64_t base = memory_stats().live_bytes;
  reset_peak_memory();
  {
    Tensor a = Tensor::empty({1000});  // 4000 bytes
    CHECK(memory_stats().live_bytes == base + 4000);
    {
      Tensor b = Tensor::empty({500}, DType::Float64);  // 4000 bytes
      CHECK(memory_stats().live_bytes == base + 8000);
    }
    CHECK(memory_stats().live_bytes == base + 4000);
    CHECK(memory_stats().peak_bytes == base + 8000);
    Tensor view = a.reshape({10, 100});  // no new bytes
    CHECK(memory_stats().live_bytes == base + 4000);
    reset_peak_memory();
    CHECK(memory_stats().peak_bytes == base + 4000);
  }
  CHECK(memory_stats().live_bytes == base);
  PeakMemoryScope scope;
  { Tensor c = Tensor::empty({256}); }
  CHECK(scope.peak_above_start() == 1024);
}

TEST_CASE("copies and dtype conversion", "[tensor]") {
  Tensor a = Tensor::from_vector<double>({1.5, -2.25, 3}, {3});
  Tensor f = a.to(DType::Float32);
  CHECK(f.dtype() == DType::Float32);
  CHECK(f.at({1}) == -2.25);
  Tensor c = a.clone();
  c.fill_(0);
  CHECK(a.at({0}) == 1.5);
  Tensor d = Tensor::zeros({3}, DType::Float64);
  d.copy_(a);
  CHECK(d.at({2}) == 3.0);
  CHECK_THROWS_WITH(d.copy_(f), Contains("cannot copy float32 [3] into float64 [3]"));
  if (!cuda_available()) {
    CHECK_THROWS(Tensor::zeros({2}, DType::Float32, Device::cuda(0)));
  }
}

TEST_CASE("RNG streams are reproducible and well distributed", "[tensor][rng]") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = Tensor::uniform({1000}, 0, 1, g1), b = Tensor::uniform({1000}, 0, 1, g2), c = Tensor::uniform({1000}, 0, 1, g3);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  CHECK(a.to_vector<float>() != c.to_vector<float>());
  // The stream continues: a second draw differs from the first.
  Tensor a2 = Tensor::uniform({1000}, 0, 1, g1);
  CHECK(a2.to_vector<float>() != a.to_vector<float>());
  // Fixed values: the stream is defined by (seed, offset), whatever the thread count.
  Generator g4(42);
  const auto first = Tensor::uniform({3}, 0, 1, g4, DType::Float64).to_vector<double>();
  set_num_threads(1);
  Generator g5(42);
  CHECK(Tensor::uniform({3}, 0, 1, g5, DType::Float64).to_vector<double>() == first);
  set_num_threads(2);
  // Moments of uniform and normal draws.
  Generator g6(7);
  Tensor n = Tensor::normal({200000}, 1.0, 2.0, g6, DType::Float64);
  const auto nv = n.to_vector<double>();
  double m = 0, s = 0;
  for (double x : nv) m += x;
  m /= static_cast<double>(nv.size());
  for (double x : nv) s += (x - m) * (x - m);
  s = std::sqrt(s / static_cast<double>(nv.size()));
  CHECK(m == Approx(1.0).margin(0.02));
  CHECK(s == Approx(2.0).margin(0.02));
  for (float x : Tensor::uniform({10000}, -3, 5, g6).to_vector<float>()) {
    CHECK(x >= -3.0f);
    CHECK(x < 5.0f);
  }
  // State save/restore.
  Generator g7(9);
  g7.uniform();
  const auto st = g7.state();
  const double x1 = g7.uniform();
  g7.set_state(st);
  CHECK(g7.uniform() == x1);
  std::vector<int> perm{0, 1, 2, 3, 4, 5, 6, 7};
  Generator g8(3), g9(3);
  auto p1 = perm, p2 = perm;
  g8.shuffle(p1);
  g9.shuffle(p2);
  CHECK(p1 == p2);
  CHECK(p1 != perm);
}
