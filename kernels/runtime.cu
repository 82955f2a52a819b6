// CUDA runtime services for nanode: devices, one stream per device, a caching
// device allocator, copies, and GEMM through cuBLAS. Every launch, copy and
// cuBLAS call on a device goes to that device's stream, so work runs in issue
// order and a block freed by one op can be handed to the next at once (the next
// op cannot start before the last user of the block has finished).
#include <cublas_v2.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "blas_mapping.cuh"
#include "common.cuh"
#include "nanode/core/device.hpp"

namespace nanode::NANODE_KERNEL_NS {

using detail::check;
using detail::use_device;

namespace {
std::atomic<int64_t> g_device_calls{0};
}
void count_device_call() { g_device_calls.fetch_add(1, std::memory_order_relaxed); }
int64_t device_calls(int) { return g_device_calls.load(std::memory_order_relaxed); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

const char* device_name(int device) {
  static thread_local std::string name;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  name = buf;
  return name.c_str();
}

// ---- streams -------------------------------------------------------------------------

cudaStream_t detail::stream(int device) {
  static std::mutex mu;
  static cudaStream_t streams[kMaxCudaDevices] = {};
  static bool made[kMaxCudaDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (!made[device]) {
    use_device(device);
    // A blocking stream: the legacy default stream (other libraries' work) still
    // orders with it.
    check(cudaStreamCreate(&streams[device]), "cudaStreamCreate");
    made[device] = true;
  }
  return streams[device];
}

// ---- caching allocator ---------------------------------------------------------------
// Freed blocks are kept per (device, rounded size) and reused; cudaMalloc is slow and
// synchronises. Live/peak accounting happens in nanode::Allocator above this layer.

namespace {
struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks[kMaxCudaDevices];
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}
size_t round_size(size_t bytes) {
  const size_t q = bytes < (size_t{1} << 20) ? 512 : (size_t{1} << 20);
  return (bytes + q - 1) / q * q;
}
}  // namespace

void* malloc_device(size_t bytes, int device) {
  const size_t size = round_size(bytes);
  {
    std::lock_guard<std::mutex> lock(cache().mu);
    auto& blocks = cache().free_blocks[device][size];
    if (!blocks.empty()) {
      void* p = blocks.back();
      blocks.pop_back();
      return p;
    }
  }
  use_device(device);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    empty_cache(device);
    err = cudaMalloc(&p, size);
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    ::nanode::fail("CUDA out of memory allocating ", bytes, " bytes on cuda:", device, " (", cudaGetErrorString(err),
                   ")");
  }
  return p;
}

void free_device(void* ptr, size_t bytes, int device) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(cache().mu);
  cache().free_blocks[device][round_size(bytes)].push_back(ptr);
}

void empty_cache(int device) {
  std::lock_guard<std::mutex> lock(cache().mu);
  use_device(device);
  // Cached blocks may still be read by queued work on the stream.
  check(cudaStreamSynchronize(detail::stream(device)), "empty_cache: cudaStreamSynchronize");
  for (auto& [size, blocks] : cache().free_blocks[device]) {
    for (void* p : blocks) cudaFree(p);
    blocks.clear();
  }
}

// ---- copies ------------------------------------------------------------------------

void copy_host_to_device(void* dst, const void* src, size_t bytes, int device) {
  use_device(device);
  count_device_call();
  // From pageable host memory: returns once the source may be reused.
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, detail::stream(device)), "copy host->device");
  check(cudaStreamSynchronize(detail::stream(device)), "copy host->device");
}
void copy_device_to_host(void* dst, const void* src, size_t bytes, int device) {
  use_device(device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, detail::stream(device)), "copy device->host");
  check(cudaStreamSynchronize(detail::stream(device)), "copy device->host");
}
void copy_device_to_device(void* dst, const void* src, size_t bytes, int device) {
  use_device(device);
  count_device_call();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, detail::stream(device)), "copy device->device");
}
void copy_rows_device(void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch, int64_t width, int64_t rows,
                      int device) {
  use_device(device);
  count_device_call();
  check(cudaMemcpy2DAsync(dst, static_cast<size_t>(dst_pitch), src, static_cast<size_t>(src_pitch),
                          static_cast<size_t>(width), static_cast<size_t>(rows), cudaMemcpyDeviceToDevice,
                          detail::stream(device)),
        "copy rows device->device");
}
void synchronize(int device) {
  use_device(device);
  check(cudaStreamSynchronize(detail::stream(device)), "cudaStreamSynchronize");
}

// ---- cuBLAS ------------------------------------------------------------------------

namespace {
const char* cublas_status(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
  }
}
cublasHandle_t handle(int device) {
  static std::mutex mu;
  static cublasHandle_t handles[kMaxCudaDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (!handles[device]) {
    use_device(device);
    const cublasStatus_t s = cublasCreate(&handles[device]);
    if (s != CUBLAS_STATUS_SUCCESS) ::nanode::fail("cublasCreate failed on cuda:", device, ": ", cublas_status(s));
    const cublasStatus_t t = cublasSetStream(handles[device], detail::stream(device));
    if (t != CUBLAS_STATUS_SUCCESS) ::nanode::fail("cublasSetStream failed on cuda:", device, ": ", cublas_status(t));
  }
  return handles[device];
}
}  // namespace

namespace {
/// The column-major BLAS calls of blas_mapping.cuh, made by cuBLAS on the device's stream.
struct Cublas {
  int device;
  static cublasOperation_t op(blas::Op o) { return o == blas::Op::T ? CUBLAS_OP_T : CUBLAS_OP_N; }
  void sgemm_strided_batched(blas::Op opa, blas::Op opb, int m, int n, int k, float alpha, const float* A, int lda,
                             int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta, float* C, int ldc,
                             int64_t stride_c, int batch) {
    const cublasStatus_t s = cublasSgemmStridedBatched(handle(device), op(opa), op(opb), m, n, k, &alpha, A, lda,
                                                       stride_a, B, ldb, stride_b, &beta, C, ldc, stride_c, batch);
    if (s != CUBLAS_STATUS_SUCCESS) ::nanode::fail("matmul: cuBLAS SGEMM failed: ", cublas_status(s));
  }
  void strsm_right(blas::Fill fill, blas::Op opa, int m, int n, const float* A, int lda, float* B, int ldb) {
    const float one = 1.f;
    const cublasStatus_t s =
        cublasStrsm(handle(device), CUBLAS_SIDE_RIGHT, fill == blas::Fill::Upper ? CUBLAS_FILL_MODE_UPPER
                                                                                  : CUBLAS_FILL_MODE_LOWER,
                    op(opa), CUBLAS_DIAG_NON_UNIT, m, n, &one, A, lda, B, ldb);
    if (s != CUBLAS_STATUS_SUCCESS) ::nanode::fail("triangular_solve: cuBLAS STRSM failed: ", cublas_status(s));
  }
};
}  // namespace

// cuBLAS takes int sizes: larger ones are refused, never truncated (dispatch's
// matmul checks before it allocates; blas::int32 guards direct callers).
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
              int64_t stride_c, int64_t batch, int device) {
  if (m == 0 || n == 0 || batch == 0) return;
  use_device(device);
  Cublas blas{device};
  count_device_call();
  blas::gemm_row_major(blas, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                       stride_c, batch);
}

void trsm_f32(bool upper, bool transpose, int64_t n, int64_t m, const float* a, float* b, int device) {
  if (n == 0 || m == 0) return;
  use_device(device);
  Cublas blas{device};
  count_device_call();
  blas::trsm_row_major(blas, upper, transpose, n, m, a, b);
}

}  // namespace nanode::NANODE_KERNEL_NS
