#pragma once
// The NCCL backend of nanode::dist: all-reduces of CUDA tensors between GPUs with
// NCCL, everything else (host tensors, broadcasts of host bytes, barriers) with
// MPI, which also carries the NCCL id from rank 0 to the others. Built when the
// program links nanode::dist_nccl (NANODE_HAVE_NCCL, with MPI and CUDA).
//
//   dist::init(&argc, &argv);
//   dist::use_nccl(dist::local_rank() % cuda_device_count());
#include "nanode/dist/dist.hpp"

#if defined(NANODE_HAVE_NCCL) && NANODE_HAVE_NCCL && NANODE_DIST_MPI
#include <cuda_runtime_api.h>
#include <nccl.h>

namespace nanode::dist {
namespace detail {

inline void nccl_check(ncclResult_t r, const char* what) {
  NANODE_CHECK(r == ncclSuccess || r == ncclInProgress, "dist: ", what, " failed: ", ncclGetErrorString(r));
}
inline void cuda_rt_check(cudaError_t e, const char* what) {
  NANODE_CHECK(e == cudaSuccess, "dist: ", what, " failed: ", cudaGetErrorString(e));
}

class NcclBackend : public Backend {
  /// An all-reduce enqueued on the backend's stream; done when its event is.
  struct Op : Pending {
    NcclBackend* b;
    cudaEvent_t ev = nullptr;
    explicit Op(NcclBackend* be) : b(be) { cuda_rt_check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate"); }
    ~Op() override {
      if (ev) cudaEventDestroy(ev);
    }
    bool done() override {
      ncclResult_t async = ncclSuccess;
      nccl_check(ncclCommGetAsyncError(b->comm_, &async), "ncclCommGetAsyncError");
      nccl_check(async, "an NCCL all-reduce");
      const cudaError_t e = cudaEventQuery(ev);
      if (e == cudaErrorNotReady) return false;
      cuda_rt_check(e, "cudaEventQuery");
      return true;
    }
  };

 public:
  /// Sets up NCCL beside `mpi`, which it takes over only once everything worked
  /// (adopt()): on failure the MPI backend stays where it was, so the job can
  /// still be ended with MPI_Abort.
  NcclBackend(Backend& mpi, int device) : device_(device) {
    auto* m = dynamic_cast<MpiBackend*>(&mpi);
    NANODE_CHECK(m != nullptr, "dist::use_nccl: needs the MPI backend underneath (call dist::init first)");
    try {
      cuda_rt_check(cudaSetDevice(device_), "cudaSetDevice");
      ncclUniqueId id;
      if (m->rank() == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      auto p = m->broadcast_bytes(&id, sizeof(id), 0);
      wait(*p, "broadcast of the NCCL id");
      nccl_check(ncclCommInitRank(&comm_, m->size(), id, m->rank()), "ncclCommInitRank");
      cuda_rt_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    } catch (...) {
      release();
      throw;
    }
  }
  void adopt(std::unique_ptr<Backend> mpi) { mpi_ = std::move(mpi); }
  ~NcclBackend() override { NcclBackend::finalize(); }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  std::string name() const override { return "nccl (cuda:" + std::to_string(device_) + ") + mpi"; }

  std::unique_ptr<Pending> all_reduce_sum(std::vector<Tensor> tensors) override {
    NANODE_CHECK(!tensors.empty(), "dist: all_reduce of no tensors");
    if (tensors[0].is_cpu()) return mpi_->all_reduce_sum(std::move(tensors));
    // The tensors were written by nanode's own streams: finish that work first.
    cuda_rt_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    auto op = std::make_unique<Op>(this);
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (const auto& t : tensors) {
      NANODE_CHECK(t.device() == Device::cuda(device_), "dist: NCCL all_reduce of a tensor on ", t.device(),
                   ", the backend's GPU is cuda:", device_);
      NANODE_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64, "dist: all_reduce of ", t.dtype());
      nccl_check(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()),
                               t.dtype() == DType::Float32 ? ncclFloat : ncclDouble, ncclSum, comm_, stream_),
                 "ncclAllReduce");
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    cuda_rt_check(cudaEventRecord(op->ev, stream_), "cudaEventRecord");
    return op;
  }
  std::unique_ptr<Pending> broadcast_bytes(void* data, int64_t bytes, int root) override {
    return mpi_->broadcast_bytes(data, bytes, root);
  }
  std::unique_ptr<Pending> barrier() override { return mpi_->barrier(); }
  [[noreturn]] void abort(int code) override {
    if (comm_) ncclCommAbort(comm_), comm_ = nullptr;
    mpi_->abort(code);
    std::exit(code);
  }
  void finalize() override {
    release();
    if (mpi_) mpi_->finalize();
  }

 private:
  void release() {
    if (comm_) ncclCommDestroy(comm_), comm_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_), stream_ = nullptr;
  }

  std::unique_ptr<Backend> mpi_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace detail

inline bool built_with_nccl() { return true; }

/// Moves the all-reduces of CUDA tensors onto NCCL on GPU `device` (MPI stays
/// underneath for the rest). Every rank calls it, each with its own GPU.
inline void use_nccl(int device) {
  NANODE_CHECK(is_initialized(), "dist::use_nccl: call dist::init first");
  auto& st = detail::state();
  auto nccl = std::make_unique<detail::NcclBackend>(*st.backend, device);
  nccl->adopt(std::move(st.backend));
  st.backend = std::move(nccl);
}

}  // namespace nanode::dist

#else

namespace nanode::dist {
inline bool built_with_nccl() { return false; }
[[noreturn]] inline void use_nccl(int) {
  fail("dist::use_nccl: this program was built without NCCL (it needs CUDA, MPI and nccl.h; link nanode::dist_nccl)");
}
}  // namespace nanode::dist

#endif
