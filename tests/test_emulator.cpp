// The emulated-launch machinery itself (kernels/emulation.cuh): built-ins, real
// barriers, both resume orders, warp shuffles, and the errors it reports.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "emulation.cuh"

using Catch::Matchers::Contains;

namespace {

constexpr unsigned kBlock = 64;

// A shared-memory tree reduction, with or without its barriers.
template <bool kSync>
__global__ void block_sum(const float* x, float* out) {
  __shared__ float s[kBlock];
  s[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  if (kSync) __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    if (kSync) __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// A barrier only half the block reaches.
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < blockDim.x / 2) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// Warp reduction with shuffles: lane 0 of each warp writes its warp's sum.
__global__ void warp_sum(const float* x, float* out) {
  float v = x[threadIdx.x];
  for (unsigned d = 16; d > 0; d >>= 1) v += __shfl_down_sync(0xffffffffu, v, d);
  if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = v;
}

__global__ void coordinates(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * blockIdx.y;
  const unsigned thread = threadIdx.x + blockDim.x * threadIdx.y;
  out[block * blockDim.x * blockDim.y + thread] = static_cast<int>(1000 * block + thread);
}

}  // namespace

TEST_CASE("emulated barriers are real: a reduction is right with them and wrong without", "[emulator]") {
  std::vector<float> x(3 * kBlock);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7);
  std::vector<float> want(3, 0.f);
  for (size_t i = 0; i < x.size(); ++i) want[i / kBlock] += x[i];
  bool missed_somewhere = false;
  for (auto order : {nanode::emu::Schedule::Ascending, nanode::emu::Schedule::Descending}) {
    nanode::emu::set_schedule(order);
    std::vector<float> out(3, -1.f);
    nanode::emu::run_grid("block_sum<true>", dim3(3), dim3(kBlock), [&] { block_sum<true>(x.data(), out.data()); });
    CHECK(out == want);
    std::vector<float> bad(3, -1.f);
    nanode::emu::run_grid("block_sum<false>", dim3(3), dim3(kBlock), [&] { block_sum<false>(x.data(), bad.data()); });
    missed_somewhere = missed_somewhere || bad != want;
  }
  nanode::emu::set_schedule(nanode::emu::Schedule::Ascending);
  CHECK(missed_somewhere);  // the missing barriers are caught by at least one resume order
}

TEST_CASE("a barrier some threads never reach is reported, naming the kernel", "[emulator]") {
  std::vector<float> out(32);
  CHECK_THROWS_WITH(nanode::emu::run_grid("divergent_barrier", dim3(1), dim3(32), [&] { divergent_barrier(out.data()); }),
                    Contains("divergent_barrier") && Contains("deadlock"));
  CHECK_THROWS_WITH(nanode::emu::run_grid("too_big", dim3(1), dim3(2048), [] {}), Contains("2048 threads per block"));
}

TEST_CASE("emulated warp shuffles reduce a warp, including a partial last warp", "[emulator]") {
  for (unsigned threads : {64u, 96u, 80u}) {
    std::vector<float> x(threads);
    for (unsigned i = 0; i < threads; ++i) x[i] = static_cast<float>(i);
    const unsigned warps = (threads + 31) / 32;
    std::vector<float> out(warps, -1.f);
    nanode::emu::run_grid("warp_sum", dim3(1), dim3(threads), [&] { warp_sum(x.data(), out.data()); });
    for (unsigned w = 0; w < warps; ++w) {
      // A lane past the last thread gives the reader's own value (CUDA leaves it
      // undefined): with 80 threads the last warp has lanes 64..79, and the
      // reduction sums them plus the values lanes 0..15 re-read from themselves.
      const unsigned first = 32 * w, last = std::min(threads, first + 32) - 1;
      if (last - first == 31) {
        CHECK(out[w] == static_cast<float>(32 * first + 31 * 16));
      } else {
        float expect = 0;  // simulate the tree on the partial warp
        std::vector<float> v(32, 0.f);
        for (unsigned l = 0; l <= last - first; ++l) v[l] = x[first + l];
        for (unsigned d = 16; d > 0; d >>= 1)
          for (unsigned l = 0; l <= last - first; ++l) v[l] += (l + d <= last - first) ? v[l + d] : v[l];
        expect = v[0];
        CHECK(out[w] == expect);
      }
    }
  }
}

TEST_CASE("emulated built-ins cover a 2-D grid of 2-D blocks", "[emulator]") {
  std::vector<int> out(3 * 2 * 4 * 2, -1);
  nanode::emu::run_grid("coordinates", dim3(3, 2), dim3(4, 2), [&] { coordinates(out.data()); });
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < 8; ++t) CHECK(out[static_cast<size_t>(b * 8 + t)] == 1000 * b + t);
}

namespace {
__global__ void xor_pairs(const float* x, float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1, 2);
}
__global__ void throws_on_thread_5() {
  if (threadIdx.x == 5) ::nanode::fail("thread 5 failed");
}
}  // namespace

TEST_CASE("emulated xor shuffles swap within groups, and a kernel's exception reaches the caller", "[emulator]") {
  std::vector<float> x(32), out(32);
  for (unsigned i = 0; i < 32; ++i) x[i] = static_cast<float>(i);
  nanode::emu::run_grid("xor_pairs", dim3(1), dim3(32), [&] { xor_pairs(x.data(), out.data()); });
  for (unsigned i = 0; i < 32; ++i) CHECK(out[i] == static_cast<float>(i ^ 1u));
  CHECK_THROWS_WITH(nanode::emu::run_grid("throws_on_thread_5", dim3(2), dim3(8), [] { throws_on_thread_5(); }),
                    Contains("thread 5 failed"));
  // The emulator is usable again afterwards.
  nanode::emu::run_grid("xor_pairs", dim3(1), dim3(32), [&] { xor_pairs(x.data(), out.data()); });
  CHECK(out[3] == 2.f);
}
