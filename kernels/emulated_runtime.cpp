// The runtime services of the emulated backend (nanode::cuda_emulated): one
// emulated device whose memory is host memory, copies as memcpy, and a plain
// host GEMM standing in for cuBLAS (cuBLAS and cuDNN are checked only on a real
// device). Fresh device blocks are filled with 0xFF bytes (NaN as float), so a
// kernel that reads memory nobody wrote shows up as NaN in the comparisons.
#include <cstdlib>
#include <cstring>

#include "common.cuh"

namespace nanode::NANODE_KERNEL_NS {

cudaStream_t detail::stream(int) { return nullptr; }

int device_count() { return 1; }
const char* device_name(int) { return "emulated CUDA device (kernels run on the CPU)"; }

void* malloc_device(size_t bytes, int device) {
  NANODE_CHECK(device == 0, "emulated CUDA backend: there is one device (cuda:0), not cuda:", device);
  const size_t size = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, size ? size : 64);
  NANODE_CHECK(p != nullptr, "emulated CUDA backend: out of host memory allocating ", bytes, " bytes");
  std::memset(p, 0xFF, size ? size : 64);
  return p;
}
void free_device(void* ptr, size_t, int) { std::free(ptr); }
void empty_cache(int) {}

void copy_host_to_device(void* dst, const void* src, size_t bytes, int) { std::memcpy(dst, src, bytes); }
void copy_device_to_host(void* dst, const void* src, size_t bytes, int) { std::memcpy(dst, src, bytes); }
void copy_device_to_device(void* dst, const void* src, size_t bytes, int) { std::memmove(dst, src, bytes); }
void copy_rows_device(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width, int64_t rows,
                      int) {
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
                static_cast<size_t>(width));
}
void synchronize(int) {}

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
              int64_t stride_c, int64_t batch, int) {
  for (int64_t v : {m, n, k, lda, ldb, ldc, batch})
    NANODE_CHECK(v <= 2147483647, "matmul: size ", v, " exceeds cuBLAS's int32 limit");
  for (int64_t q = 0; q < batch; ++q) {
    const float* A = a + q * stride_a;
    const float* B = b + q * stride_b;
    float* C = c + q * stride_c;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) {
          const float av = trans_a ? A[p * lda + i] : A[i * lda + p];
          const float bv = trans_b ? B[j * ldb + p] : B[p * ldb + j];
          acc += static_cast<double>(av) * bv;
        }
        const float prev = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];  // beta = 0 ignores C (as cuBLAS does)
        C[i * ldc + j] = alpha * static_cast<float>(acc) + prev;
      }
  }
}

}  // namespace nanode::NANODE_KERNEL_NS
