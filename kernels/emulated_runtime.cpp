// The runtime services of the emulated backend (nanode::cuda_emulated): one
// emulated device whose memory is host memory, copies as memcpy, the column-major
// BLAS definitions standing in for cuBLAS (reached through the same row-major
// mapping as the real backend), and a direct convolution standing in for cuDNN.
// cuBLAS and cuDNN themselves are checked only on a real device. Fresh device blocks are filled with 0xFF bytes (NaN as float), so a
// kernel that reads memory nobody wrote shows up as NaN in the comparisons.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "blas_mapping.cuh"
#include "common.cuh"
#include "graph_pool.hpp"

namespace nanode::NANODE_KERNEL_NS {

cudaStream_t detail::stream(int) { return nullptr; }

namespace {
std::atomic<int64_t> g_device_calls{0};
}
void count_device_call() { g_device_calls.fetch_add(1, std::memory_order_relaxed); }
int64_t device_calls(int) { return g_device_calls.load(std::memory_order_relaxed); }

int device_count() { return 1; }
const char* device_name(int) { return "emulated CUDA device (kernels run on the CPU)"; }

namespace {
size_t emu_size(size_t bytes) { return bytes ? (bytes + 63) / 64 * 64 : 64; }
}  // namespace

void* malloc_device(size_t bytes, int device) {
  NANODE_CHECK(device == 0, "emulated CUDA backend: there is one device (cuda:0), not cuda:", device);
  const size_t size = emu_size(bytes);
  if (void* p = detail::graph_pool().take(size, device)) return p;
  void* p = std::aligned_alloc(64, size);
  NANODE_CHECK(p != nullptr, "emulated CUDA backend: out of host memory allocating ", bytes, " bytes");
  std::memset(p, 0xFF, size);  // NaN-poisoned: reading memory no kernel wrote shows
  detail::graph_pool().note_alloc(p, size, device);
  return p;
}
void free_device(void* ptr, size_t bytes, int device) {
  if (!ptr || detail::graph_pool().keep(ptr, emu_size(bytes), device)) return;
  std::free(ptr);
}
void empty_cache(int) {}

// ---- CUDA graphs: the recorded work, replayed in order ------------------------------

namespace {
struct EmuGraph {
  std::vector<std::function<void()>> work;
  detail::GraphBlocks* blocks = nullptr;
  int64_t calls = 0;
};
int64_t g_calls_at_begin = 0;
}  // namespace

bool detail::capturing(int) { return emu::recording().on; }
bool graph_capturing(int) { return emu::recording().on; }

void graph_begin(int device) {
  NANODE_CHECK(device == 0, "emulated CUDA backend: there is one device (cuda:0), not cuda:", device);
  detail::graph_pool().begin(device);
  emu::recording().on = true;
  emu::recording().work.clear();
  g_calls_at_begin = g_device_calls.load();
}
void* graph_end(int) {
  auto* g = new EmuGraph();
  g->work = std::move(emu::recording().work);
  emu::recording().work.clear();
  emu::recording().on = false;
  g->blocks = detail::graph_pool().end();
  g->calls = g_device_calls.load() - g_calls_at_begin;
  return g;
}
void graph_replay(void* graph, int) {
  emu::refuse_while_recording("replaying a graph");
  count_device_call();  // one launch
  for (auto& w : static_cast<EmuGraph*>(graph)->work) w();
}
int64_t graph_calls(void* graph) { return static_cast<EmuGraph*>(graph)->calls; }
void graph_destroy(void* graph, int) {
  auto* g = static_cast<EmuGraph*>(graph);
  if (g->blocks)
    for (const auto& [p, bytes] : detail::graph_pool().release(g->blocks)) std::free(p);
  delete g;
}

void copy_host_to_device(void* dst, const void* src, size_t bytes, int) {
  emu::refuse_while_recording("a copy from the host");
  count_device_call();
  std::memcpy(dst, src, bytes);
}
void copy_device_to_host(void* dst, const void* src, size_t bytes, int) {
  emu::refuse_while_recording("a copy to the host");
  std::memcpy(dst, src, bytes);
}
void copy_device_to_device(void* dst, const void* src, size_t bytes, int) {
  count_device_call();
  emu::run_or_record([=] { std::memmove(dst, src, bytes); });
}
void copy_rows_device(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width, int64_t rows,
                      int) {
  count_device_call();
  emu::run_or_record([=] {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                  static_cast<size_t>(width));
  });
}
void synchronize(int) { emu::refuse_while_recording("synchronize()"); }

namespace {
/// The column-major BLAS definitions cuBLAS implements, on the host: what the
/// emulated build calls where the real one calls cuBLAS, through the same
/// row-major mapping (blas_mapping.cuh).
struct HostBlas {
  void sgemm_strided_batched(blas::Op opa, blas::Op opb, int m, int n, int k, float alpha, const float* A, int lda,
                             int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta, float* C, int ldc,
                             int64_t stride_c, int batch) {
    for (int q = 0; q < batch; ++q) {
      const float* a = A + q * stride_a;
      const float* b = B + q * stride_b;
      float* c = C + q * stride_c;
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double acc = 0;
          for (int p = 0; p < k; ++p) {
            const float av = opa == blas::Op::N ? a[i + p * lda] : a[p + i * lda];
            const float bv = opb == blas::Op::N ? b[p + j * ldb] : b[j + p * ldb];
            acc += static_cast<double>(av) * bv;
          }
          const float prev = beta == 0.f ? 0.f : beta * c[i + j * ldc];  // beta = 0 ignores C, as cuBLAS does
          c[i + j * ldc] = alpha * static_cast<float>(acc) + prev;
        }
    }
  }
  /// C = op(A) op(B) + bias[row] (cuBLASLt's bias epilogue), column-major.
  bool sgemm_bias(blas::Op opa, blas::Op opb, int m, int n, int k, const float* A, int lda, const float* B, int ldb,
                  const float* bias, float* C, int ldc) {
    sgemm_strided_batched(opa, opb, m, n, k, 1.f, A, lda, 0, B, ldb, 0, 0.f, C, ldc, 0, 1);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) C[i + j * ldc] += bias[i];
    return true;
  }
  /// X op(A) = B for B m x n (overwritten), A n x n triangular in `fill` (only that
  /// triangle is read), op(A) = A or A^T.
  void strsm_right(blas::Fill fill, blas::Op opa, int m, int n, const float* A, int lda, float* B, int ldb) {
    auto T = [&](int r, int c) {  // op(A)(r, c), read from A's stored triangle
      const int ar = opa == blas::Op::N ? r : c, ac = opa == blas::Op::N ? c : r;
      const bool stored = fill == blas::Fill::Upper ? ar <= ac : ar >= ac;
      return stored ? A[ar + ac * lda] : 0.f;
    };
    const bool t_upper = (fill == blas::Fill::Upper) == (opa == blas::Op::N);
    for (int i = 0; i < m; ++i) {
      if (t_upper) {
        for (int j = 0; j < n; ++j) {
          double s = B[i + j * ldb];
          for (int q = 0; q < j; ++q) s -= static_cast<double>(B[i + q * ldb]) * T(q, j);
          B[i + j * ldb] = static_cast<float>(s / T(j, j));
        }
      } else {
        for (int j = n - 1; j >= 0; --j) {
          double s = B[i + j * ldb];
          for (int q = j + 1; q < n; ++q) s -= static_cast<double>(B[i + q * ldb]) * T(q, j);
          B[i + j * ldb] = static_cast<float>(s / T(j, j));
        }
      }
    }
  }
};

/// Direct convolution, the host stand-in for cuDNN (checked only on a device):
/// y[n, o, oy, ox] = sum_{c, i, j} x[n, c, oy*sh - ph + i, ox*sw - pw + j] w[o, c, i, j].
template <class Fn>
void for_each_tap(const WindowDesc& d, Fn&& fn) {
  for (int64_t n = 0; n < d.N; ++n)
    for (int64_t o = 0; o < d.Co; ++o)
      for (int64_t oy = 0; oy < d.Ho; ++oy)
        for (int64_t ox = 0; ox < d.Wo; ++ox)
          for (int64_t c = 0; c < d.C; ++c)
            for (int64_t i = 0; i < d.kh; ++i) {
              const int64_t iy = oy * d.sh - d.ph + i;
              if (iy < 0 || iy >= d.H) continue;
              for (int64_t j = 0; j < d.kw; ++j) {
                const int64_t ix = ox * d.sw - d.pw + j;
                if (ix < 0 || ix >= d.W) continue;
                fn(((n * d.C + c) * d.H + iy) * d.W + ix, ((o * d.C + c) * d.kh + i) * d.kw + j,
                   ((n * d.Co + o) * d.Ho + oy) * d.Wo + ox);
              }
            }
}
}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
              int64_t stride_c, int64_t batch, int) {
  if (m == 0 || n == 0 || batch == 0) return;
  count_device_call();
  emu::run_or_record([=] {
    HostBlas blas;
    blas::gemm_row_major(blas, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                         stride_c, batch);
  });
}

bool linear_bias_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                     int) {
  if (m == 0 || n == 0) return true;
  count_device_call();
  emu::run_or_record([=] {
    HostBlas blas;
    blas::linear_bias_row_major(blas, m, n, k, x, w, bias, y);
  });
  return true;
}

void trsm_f32(bool upper, bool transpose, int64_t n, int64_t m, const float* a, float* b, int) {
  if (n == 0 || m == 0) return;
  count_device_call();
  emu::run_or_record([=] {
    HostBlas blas;
    blas::trsm_row_major(blas, upper, transpose, n, m, a, b);
  });
}

void conv2d_forward_f32(const float* x, const float* w, float* y, const WindowDesc& d, int) {
  count_device_call();
  emu::run_or_record([=] {
    std::vector<double> acc(static_cast<size_t>(d.N * d.Co * d.Ho * d.Wo), 0.0);
    for_each_tap(d, [&](int64_t xi, int64_t wi, int64_t yi) { acc[static_cast<size_t>(yi)] += double(x[xi]) * w[wi]; });
    for (size_t i = 0; i < acc.size(); ++i) y[i] = static_cast<float>(acc[i]);
  });
}
void conv2d_backward_data_f32(const float* gy, const float* w, float* gx, const WindowDesc& d, int) {
  count_device_call();
  emu::run_or_record([=] {
    std::vector<double> acc(static_cast<size_t>(d.N * d.C * d.H * d.W), 0.0);
    for_each_tap(d, [&](int64_t xi, int64_t wi, int64_t yi) { acc[static_cast<size_t>(xi)] += double(gy[yi]) * w[wi]; });
    for (size_t i = 0; i < acc.size(); ++i) gx[i] = static_cast<float>(acc[i]);
  });
}
void conv2d_backward_filter_f32(const float* x, const float* gy, float* gw, const WindowDesc& d, int) {
  count_device_call();
  emu::run_or_record([=] {
    std::vector<double> acc(static_cast<size_t>(d.Co * d.C * d.kh * d.kw), 0.0);
    for_each_tap(d, [&](int64_t xi, int64_t wi, int64_t yi) { acc[static_cast<size_t>(wi)] += double(x[xi]) * gy[yi]; });
    for (size_t i = 0; i < acc.size(); ++i) gw[i] = static_cast<float>(acc[i]);
  });
}

}  // namespace nanode::NANODE_KERNEL_NS
