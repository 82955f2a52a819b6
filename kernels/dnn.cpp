// Convolutions through cuDNN 9 (nanode::cuda only; host C++, no kernels here):
// forward, backward data and backward filter of a cross-correlation over NCHW
// float32, the algorithm chosen once per geometry (cuDNN's heuristics, cached) and
// its workspace taken from nanode's device allocator so that it is counted. Full
// FP32 math (CUDNN_FMA_MATH: no TF32), so results stay within float32 rounding of
// the CPU's. A build without cuDNN compiles these as clear errors.
// The legacy convolution API is deprecated in cuDNN 9 but supported; the graph
// API (cudnn_frontend) would replace it.
#include "launchers.cuh"
#include "nanode/core/allocator.hpp"

#ifndef NANODE_NO_CUDNN
#include <cuda_runtime.h>
#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>
#endif

namespace nanode::NANODE_KERNEL_NS {

#ifdef NANODE_NO_CUDNN

namespace {
[[noreturn]] void no_cudnn(const char* op) {
  ::nanode::fail(op, ": on CUDA tensors this needs cuDNN, and nanode::cuda was built without it (cudnn.h and "
                 "libcudnn were not found under the CUDA toolkit)");
}
}  // namespace
void conv2d_forward_f32(const float*, const float*, float*, const WindowDesc&, int) { no_cudnn("conv2d"); }
void conv2d_backward_data_f32(const float*, const float*, float*, const WindowDesc&, int) {
  no_cudnn("conv2d backward");
}
void conv2d_backward_filter_f32(const float*, const float*, float*, const WindowDesc&, int) {
  no_cudnn("conv2d backward");
}

#else

namespace detail {
cudaStream_t stream(int device);  // runtime.cu
}

namespace {

void check(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) ::nanode::fail("cuDNN error in ", what, ": ", cudnnGetErrorString(s));
}

int as_int(int64_t v, const char* what) {
  if (v > 2147483647) ::nanode::fail("conv2d: ", what, " = ", v, " exceeds cuDNN's int32 limit");
  return static_cast<int>(v);
}

cudnnHandle_t handle(int device) {
  static std::mutex mu;
  static cudnnHandle_t handles[kMaxCudaDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (!handles[device]) {
    if (cudaSetDevice(device) != cudaSuccess) ::nanode::fail("cuDNN: cannot select cuda:", device);
    check(cudnnCreate(&handles[device]), "cudnnCreate");
    check(cudnnSetStream(handles[device], detail::stream(device)), "cudnnSetStream");
  }
  return handles[device];
}

/// The descriptors of one convolution geometry (destroyed with it).
struct Descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  explicit Descs(const WindowDesc& d) {
    check(cudnnCreateTensorDescriptor(&x), "descriptor");
    check(cudnnCreateTensorDescriptor(&y), "descriptor");
    check(cudnnCreateFilterDescriptor(&w), "descriptor");
    check(cudnnCreateConvolutionDescriptor(&conv), "descriptor");
    check(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, as_int(d.N, "N"), as_int(d.C, "C"),
                                     as_int(d.H, "H"), as_int(d.W, "W")),
          "input descriptor");
    check(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, as_int(d.N, "N"), as_int(d.Co, "C_out"),
                                     as_int(d.Ho, "H_out"), as_int(d.Wo, "W_out")),
          "output descriptor");
    check(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, as_int(d.Co, "C_out"), as_int(d.C, "C"),
                                     as_int(d.kh, "kh"), as_int(d.kw, "kw")),
          "filter descriptor");
    check(cudnnSetConvolution2dDescriptor(conv, as_int(d.ph, "pad"), as_int(d.pw, "pad"), as_int(d.sh, "stride"),
                                          as_int(d.sw, "stride"), 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
          "convolution descriptor");
    check(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH), "math type");
  }
  ~Descs() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(conv);
  }
  Descs(const Descs&) = delete;
  Descs& operator=(const Descs&) = delete;
};

using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int>;
Key key_of(const WindowDesc& d, int device, int which) {
  return {device, d.N, d.C, d.H, d.W, d.Co, d.kh, d.kw, d.sh, d.sw, d.ph, d.pw, which};
}

/// The algorithm (as an int) and its workspace for a geometry, chosen once.
struct Choice {
  int algo = 0;
  size_t workspace = 0;
};
std::mutex& cache_mu() {
  static std::mutex mu;
  return mu;
}
std::map<Key, Choice>& cache() {
  static auto* c = new std::map<Key, Choice>();
  return *c;
}

/// Workspace bytes from nanode's allocator (counted like any tensor), released on scope exit.
struct Workspace {
  int device;
  size_t bytes;
  void* ptr = nullptr;
  Workspace(int dev, size_t b) : device(dev), bytes(b) {
    if (bytes) ptr = ::nanode::allocator(Device::cuda(device)).allocate(bytes);
  }
  ~Workspace() {
    if (ptr) ::nanode::allocator(Device::cuda(device)).deallocate(ptr, bytes);
  }
};

template <class Perf, class Get>
Choice choose(const WindowDesc& d, int device, int which, Get&& get) {
  std::lock_guard<std::mutex> lock(cache_mu());
  auto it = cache().find(key_of(d, device, which));
  if (it != cache().end()) return it->second;
  Perf perf[16];
  int count = 0;
  get(perf, 16, &count);
  Choice c;
  bool found = false;
  for (int i = 0; i < count && !found; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].mathType == CUDNN_FMA_MATH) {
      c.algo = static_cast<int>(perf[i].algo);
      c.workspace = perf[i].memory;
      found = true;
    }
  if (!found) ::nanode::fail("conv2d: cuDNN offers no FP32 algorithm for this geometry");
  cache()[key_of(d, device, which)] = c;
  return c;
}

}  // namespace

void conv2d_forward_f32(const float* x, const float* w, float* y, const WindowDesc& d, int device) {
  count_device_call();
  cudnnHandle_t h = handle(device);
  Descs ds(d);
  const Choice c = choose<cudnnConvolutionFwdAlgoPerf_t>(d, device, 0, [&](auto* p, int n, int* count) {
    check(cudnnGetConvolutionForwardAlgorithm_v7(h, ds.x, ds.w, ds.conv, ds.y, n, count, p), "forward algorithm");
  });
  Workspace ws(device, c.workspace);
  const float one = 1.f, zero = 0.f;
  check(cudnnConvolutionForward(h, &one, ds.x, x, ds.w, w, ds.conv, static_cast<cudnnConvolutionFwdAlgo_t>(c.algo),
                                ws.ptr, ws.bytes, &zero, ds.y, y),
        "cudnnConvolutionForward");
}

void conv2d_backward_data_f32(const float* gy, const float* w, float* gx, const WindowDesc& d, int device) {
  count_device_call();
  cudnnHandle_t h = handle(device);
  Descs ds(d);
  const Choice c = choose<cudnnConvolutionBwdDataAlgoPerf_t>(d, device, 1, [&](auto* p, int n, int* count) {
    check(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, ds.w, ds.y, ds.conv, ds.x, n, count, p),
          "backward data algorithm");
  });
  Workspace ws(device, c.workspace);
  const float one = 1.f, zero = 0.f;
  check(cudnnConvolutionBackwardData(h, &one, ds.w, w, ds.y, gy, ds.conv,
                                     static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws.ptr, ws.bytes, &zero, ds.x,
                                     gx),
        "cudnnConvolutionBackwardData");
}

void conv2d_backward_filter_f32(const float* x, const float* gy, float* gw, const WindowDesc& d, int device) {
  count_device_call();
  cudnnHandle_t h = handle(device);
  Descs ds(d);
  const Choice c = choose<cudnnConvolutionBwdFilterAlgoPerf_t>(d, device, 2, [&](auto* p, int n, int* count) {
    check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, ds.x, ds.y, ds.conv, ds.w, n, count, p),
          "backward filter algorithm");
  });
  Workspace ws(device, c.workspace);
  const float one = 1.f, zero = 0.f;
  check(cudnnConvolutionBackwardFilter(h, &one, ds.x, x, ds.y, gy, ds.conv,
                                       static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws.ptr, ws.bytes, &zero,
                                       ds.w, gw),
        "cudnnConvolutionBackwardFilter");
}

#endif  // NANODE_NO_CUDNN

}  // namespace nanode::NANODE_KERNEL_NS
