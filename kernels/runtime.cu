// CUDA runtime services for nanode: devices, one stream per device, a caching
// device allocator, copies, and GEMM through cuBLAS. Every launch, copy and
// cuBLAS call on a device goes to that device's stream, so work runs in issue
// order and a block freed by one op can be handed to the next at once (the next
// op cannot start before the last user of the block has finished).
#include <cublasLt.h>
#include <cublas_v2.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "blas_mapping.cuh"
#include "common.cuh"
#include "graph_pool.hpp"
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
  if (void* p = detail::graph_pool().take(size, device)) return p;
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> lock(cache().mu);
    auto& blocks = cache().free_blocks[device][size];
    if (!blocks.empty()) {
      p = blocks.back();
      blocks.pop_back();
    }
  }
  if (p) {
    detail::graph_pool().note_alloc(p, size, device);
    return p;
  }
  use_device(device);
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
  detail::graph_pool().note_alloc(p, size, device);
  return p;
}

void free_device(void* ptr, size_t bytes, int device) {
  if (!ptr || detail::graph_pool().keep(ptr, round_size(bytes), device)) return;
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

namespace {
void refuse_while_capturing(int device, const char* what) {
  if (detail::capturing(device))
    ::nanode::fail("CUDA graph capture: ", what, " is not allowed inside a capture (it would wait for work that has "
                   "not run); keep host reads, host copies, adaptive steps and synchronisation out of the captured code");
}
}  // namespace

void copy_host_to_device(void* dst, const void* src, size_t bytes, int device) {
  refuse_while_capturing(device, "a copy from the host");
  use_device(device);
  count_device_call();
  // From pageable host memory: returns once the source may be reused.
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, detail::stream(device)), "copy host->device");
  check(cudaStreamSynchronize(detail::stream(device)), "copy host->device");
}
void copy_device_to_host(void* dst, const void* src, size_t bytes, int device) {
  refuse_while_capturing(device, "a copy to the host");
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
  refuse_while_capturing(device, "synchronize()");
  use_device(device);
  check(cudaStreamSynchronize(detail::stream(device)), "cudaStreamSynchronize");
}

// ---- CUDA graphs ----------------------------------------------------------------------
// The device's stream is captured in relaxed mode (the caching allocator may call
// cudaMalloc inside); the buffers the capture touched stay reserved for the graph
// (graph_pool.hpp) until it is destroyed.

namespace {
struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  detail::GraphBlocks* blocks = nullptr;
  int64_t calls = 0;
};
bool g_capturing[kMaxCudaDevices] = {};
int64_t g_calls_at_begin = 0;

void give_back(detail::GraphBlocks* blocks, int device) {
  if (!blocks) return;
  const auto freed = detail::graph_pool().release(blocks);
  std::lock_guard<std::mutex> lock(cache().mu);
  for (const auto& [p, size] : freed) cache().free_blocks[device][size].push_back(p);
}
}  // namespace

bool detail::capturing(int device) { return g_capturing[device]; }
bool graph_capturing(int device) { return g_capturing[device]; }

void graph_begin(int device) {
  use_device(device);
  detail::graph_pool().begin(device);
  g_calls_at_begin = g_device_calls.load();
  const cudaError_t err = cudaStreamBeginCapture(detail::stream(device), cudaStreamCaptureModeRelaxed);
  if (err != cudaSuccess) {
    give_back(detail::graph_pool().end(), device);
    check(err, "cudaStreamBeginCapture");
  }
  g_capturing[device] = true;
}

void* graph_end(int device) {
  use_device(device);
  cudaGraph_t graph = nullptr;
  const cudaError_t err = cudaStreamEndCapture(detail::stream(device), &graph);
  g_capturing[device] = false;
  auto* g = new Graph();
  g->blocks = detail::graph_pool().end();
  g->calls = g_device_calls.load() - g_calls_at_begin;
  g->graph = graph;
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    give_back(g->blocks, device);
    delete g;
    ::nanode::fail("CUDA graph capture failed: ", cudaGetErrorString(err), " (an operation that cannot be captured ran "
                   "inside it: a host copy or read, a synchronisation, or an adaptive step)");
  }
  const cudaError_t ierr = cudaGraphInstantiate(&g->exec, graph, 0);
  if (ierr != cudaSuccess) {
    cudaGetLastError();
    cudaGraphDestroy(graph);
    give_back(g->blocks, device);
    delete g;
    check(ierr, "cudaGraphInstantiate");
  }
  return g;
}

void graph_replay(void* graph, int device) {
  use_device(device);
  count_device_call();
  check(cudaGraphLaunch(static_cast<Graph*>(graph)->exec, detail::stream(device)), "cudaGraphLaunch");
  if (detail::sync_debug()) check(cudaStreamSynchronize(detail::stream(device)), "cudaGraphLaunch");
}

int64_t graph_calls(void* graph) { return static_cast<Graph*>(graph)->calls; }

void graph_destroy(void* graph, int device) {
  auto* g = static_cast<Graph*>(graph);
  use_device(device);
  // A replay may still be running: wait before its buffers go back to the cache.
  cudaStreamSynchronize(detail::stream(device));
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  give_back(g->blocks, device);
  delete g;
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
/// The cuBLASLt handle of a device (made on first use, kept for the program).
cublasLtHandle_t lt_handle(int device) {
  static std::mutex mu;
  static cublasLtHandle_t handles[kMaxCudaDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (!handles[device]) {
    use_device(device);
    const cublasStatus_t s = cublasLtCreate(&handles[device]);
    if (s != CUBLAS_STATUS_SUCCESS) ::nanode::fail("cublasLtCreate failed on cuda:", device, ": ", cublas_status(s));
  }
  return handles[device];
}

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
  /// C = op(A) op(B) + bias[row] through cuBLASLt's bias epilogue (no workspace).
  /// False when cuBLASLt offers no algorithm for the shapes.
  bool sgemm_bias(blas::Op opa, blas::Op opb, int m, int n, int k, const float* A, int lda, const float* B, int ldb,
                  const float* bias, float* C, int ldc) {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    const auto lt = [](cublasStatus_t s, const char* what) {
      if (s != CUBLAS_STATUS_SUCCESS) ::nanode::fail("linear: cuBLASLt ", what, " failed: ", cublas_status(s));
    };
    bool ran = false;
    try {
      lt(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
      const cublasOperation_t ta = op(opa), tb = op(opb);
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "set TRANSA");
      lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "set TRANSB");
      lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue),
         "set EPILOGUE");
      lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), "set BIAS");
      lt(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, opa == blas::Op::N ? m : k, opa == blas::Op::N ? k : m, lda),
         "layout A");
      lt(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, opb == blas::Op::N ? k : n, opb == blas::Op::N ? n : k, ldb),
         "layout B");
      lt(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc), "layout C");
      lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
      const size_t workspace = 0;
      lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                              sizeof workspace),
         "set workspace");
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const cublasStatus_t h =
          cublasLtMatmulAlgoGetHeuristic(lt_handle(device), desc, la, lb, lc, lc, pref, 1, &result, &found);
      if (h == CUBLAS_STATUS_SUCCESS && found > 0) {
        const float one = 1.f, zero = 0.f;
        lt(cublasLtMatmul(lt_handle(device), desc, &one, A, la, B, lb, &zero, C, lc, C, lc, &result.algo, nullptr, 0,
                          detail::stream(device)),
           "cublasLtMatmul");
        ran = true;
      }
    } catch (...) {
      release(desc, la, lb, lc, pref);
      throw;
    }
    release(desc, la, lb, lc, pref);
    return ran;
  }
  static void release(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                      cublasLtMatrixLayout_t lc, cublasLtMatmulPreference_t pref) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
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

bool linear_bias_f32(const float* x, const float* w, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                     int device) {
  if (m == 0 || n == 0) return true;
  use_device(device);
  Cublas blas{device};
  const bool ran = blas::linear_bias_row_major(blas, m, n, k, x, w, bias, y);
  if (ran) count_device_call();
  return ran;
}

void trsm_f32(bool upper, bool transpose, int64_t n, int64_t m, const float* a, float* b, int device) {
  if (n == 0 || m == 0) return;
  use_device(device);
  Cublas blas{device};
  count_device_call();
  blas::trsm_row_major(blas, upper, transpose, n, m, a, b);
}

}  // namespace nanode::NANODE_KERNEL_NS
