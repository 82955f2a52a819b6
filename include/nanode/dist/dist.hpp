#pragma once
// Data-parallel training: nanode::dist.
//
// One process per rank, each with a full copy of the model. Rank 0's initial
// parameters and buffers are broadcast to the others; each rank computes the
// gradients of its shard of the global batch; the gradients are summed across
// ranks (GradientReducer: in buckets, each started as soon as the backward pass
// has finished every gradient in it) and averaged; every rank then takes the same
// optimizer step.
//
// Backends (DESIGN: existing engines, no hand-rolled transport):
//   - MPI (Debian's OpenMPI) between processes and hosts, on CPU tensors (CUDA
//     tensors go through host memory). Built when the program links nanode::dist,
//     which defines NANODE_HAVE_MPI; without it dist::init() gives a world of one
//     and refuses to run under mpirun with more than one process.
//   - NCCL between GPUs (nanode/dist/nccl.hpp, nanode::dist_nccl), on CUDA tensors,
//     with MPI only exchanging the NCCL id.
//
// Every collective is non-blocking underneath and waited for with a deadline
// (Options::timeout_s, environment NANODE_DIST_TIMEOUT): a rank that died or hangs
// makes the others throw dist::TimeoutError naming the collective, instead of
// waiting forever. Programs catch it, print it and call dist::abort().
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nanode/autograd/var.hpp"
#include "nanode/nn/module.hpp"
#include "nanode/ops/norm.hpp"

#if defined(NANODE_HAVE_MPI) && NANODE_HAVE_MPI
#include <mpi.h>
#define NANODE_DIST_MPI 1
#else
#define NANODE_DIST_MPI 0
#endif

namespace nanode::dist {

struct TimeoutError : Error {
  using Error::Error;
};

struct Options {
  /// Seconds a collective may wait for the other ranks before TimeoutError
  /// (0: NANODE_DIST_TIMEOUT from the environment, else 300).
  double timeout_s = 0;
};

/// A started collective; done() polls it (and drives the backend's progress).
class Pending {
 public:
  virtual ~Pending() = default;
  virtual bool done() = 0;
  /// Called once, after done() returned true: results into place.
  virtual void finish() {}
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;
  /// Starts an in-place sum over ranks of `tensors` (one dtype, float32 or
  /// float64; every rank passes the same shapes in the same order).
  virtual std::unique_ptr<Pending> all_reduce_sum(std::vector<Tensor> tensors) = 0;
  /// Starts a broadcast of `bytes` bytes at `data` (host memory) from `root`.
  virtual std::unique_ptr<Pending> broadcast_bytes(void* data, int64_t bytes, int root) = 0;
  virtual std::unique_ptr<Pending> barrier() = 0;
  /// Ends every rank of the job at once (after an error on one of them).
  [[noreturn]] virtual void abort(int code) = 0;
  virtual void finalize() {}
};

namespace detail {

/// A world of one: every collective is the identity.
class LocalBackend : public Backend {
  struct Done : Pending {
    bool done() override { return true; }
  };

 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "none (one process)"; }
  std::unique_ptr<Pending> all_reduce_sum(std::vector<Tensor>) override { return std::make_unique<Done>(); }
  std::unique_ptr<Pending> broadcast_bytes(void*, int64_t, int) override { return std::make_unique<Done>(); }
  std::unique_ptr<Pending> barrier() override { return std::make_unique<Done>(); }
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

#if NANODE_DIST_MPI
inline void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("dist: ", what, " failed: ", std::string(msg, static_cast<size_t>(len)));
}

/// Buffers of collectives abandoned before they completed (after an error): MPI
/// may still write into them and offers no way to cancel a non-blocking
/// collective, so they are kept until the process ends.
inline std::vector<std::shared_ptr<void>>& abandoned_buffers() {
  static std::vector<std::shared_ptr<void>> kept;
  return kept;
}

class MpiRequest : public Pending {
 public:
  explicit MpiRequest(std::function<void()> finish = {}, std::shared_ptr<void> buffer = {})
      : finish_(std::move(finish)), buffer_(std::move(buffer)) {}
  ~MpiRequest() override {
    if (req != MPI_REQUEST_NULL && buffer_) abandoned_buffers().push_back(std::move(buffer_));
  }
  MPI_Request req = MPI_REQUEST_NULL;
  bool done() override {
    int flag = 0;
    mpi_check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
    return flag != 0;
  }
  void finish() override {
    if (finish_) finish_();
  }

 private:
  std::function<void()> finish_;
  std::shared_ptr<void> buffer_;
};

/// MPI on a duplicate of MPI_COMM_WORLD. Tensors are packed into one host buffer
/// per call (CUDA tensors are copied through host memory).
class MpiBackend : public Backend {
 public:
  explicit MpiBackend(bool owns_init) : owns_init_(owns_init) {
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  MpiBackend(const MpiBackend&) = delete;
  MpiBackend& operator=(const MpiBackend&) = delete;
  ~MpiBackend() override { MpiBackend::finalize(); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  std::unique_ptr<Pending> all_reduce_sum(std::vector<Tensor> tensors) override {
    NANODE_CHECK(!tensors.empty(), "dist: all_reduce of no tensors");
    const DType dt = tensors[0].dtype();
    NANODE_CHECK(dt == DType::Float32 || dt == DType::Float64, "dist: all_reduce needs float32 or float64, got ", dt);
    int64_t total = 0;
    for (const auto& t : tensors) {
      NANODE_CHECK(t.dtype() == dt, "dist: all_reduce of mixed dtypes (", dt, " and ", t.dtype(), ")");
      total += t.numel();
    }
    NANODE_CHECK(total <= int64_t{1} << 30, "dist: all_reduce of ", total, " values at once (split it)");
    const size_t es = dtype_size(dt);
    auto buf = std::make_shared<std::vector<char>>(static_cast<size_t>(total) * es);
    size_t at = 0;
    for (const auto& t : tensors) {
      const Tensor h = t.cpu();
      std::memcpy(buf->data() + at, h.raw_data(), t.nbytes());
      at += t.nbytes();
    }
    auto p = std::make_unique<MpiRequest>([buf, tensors] {
      size_t off = 0;
      for (const auto& t : tensors) {
        if (t.is_cpu()) {
          std::memcpy(t.raw_data(), buf->data() + off, t.nbytes());
        } else {
          Tensor h = Tensor::empty(t.shape(), t.dtype());
          std::memcpy(h.raw_data(), buf->data() + off, t.nbytes());
          Tensor(t).copy_(h.to(t.device()));
        }
        off += t.nbytes();
      }
    }, buf);
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, buf->data(), static_cast<int>(total),
                             dt == DType::Float32 ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM, comm_, &p->req),
              "MPI_Iallreduce");
    return p;
  }

  std::unique_ptr<Pending> broadcast_bytes(void* data, int64_t bytes, int root) override {
    NANODE_CHECK(bytes >= 0 && bytes <= (int64_t{1} << 31) - 1, "dist: broadcast of ", bytes, " bytes at once");
    auto p = std::make_unique<MpiRequest>();
    mpi_check(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &p->req), "MPI_Ibcast");
    return p;
  }
  std::unique_ptr<Pending> barrier() override {
    auto p = std::make_unique<MpiRequest>();
    mpi_check(MPI_Ibarrier(comm_, &p->req), "MPI_Ibarrier");
    return p;
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
  }
  void finalize() override {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    if (owns_init_) MPI_Finalize(), owns_init_ = false;
  }
  MPI_Comm comm() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  bool owns_init_;
};
#endif

struct State {
  std::unique_ptr<Backend> backend;
  double timeout_s = 300;
  bool sync_batch_norm = false;
  double waited_s = 0;     // seconds spent in wait(), all collectives
  int64_t collectives = 0;  // collectives waited for
};
inline State& state() {
  static State s;
  return s;
}

/// The world size the launcher announces in the environment (1 when none).
inline int launcher_world_size() {
  // (SLURM_NTASKS would count the whole allocation, also for one process started
  // from a batch script; SLURM_STEP_NUM_TASKS is srun's step.)
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    if (const char* s = std::getenv(v)) {
      const int n = std::atoi(s);
      if (n > 1) return n;
    }
  }
  return 1;
}

}  // namespace detail

inline bool built_with_mpi() { return NANODE_DIST_MPI != 0; }
inline bool is_initialized() { return detail::state().backend != nullptr; }
inline Backend& backend() {
  NANODE_CHECK(is_initialized(), "dist: call dist::init() first");
  return *detail::state().backend;
}
inline int rank() { return is_initialized() ? backend().rank() : 0; }
inline int world_size() { return is_initialized() ? backend().size() : 1; }
inline bool is_main() { return rank() == 0; }
/// This process's index among the ranks on its host (for choosing a GPU), from
/// the launcher's environment; 0 when it says nothing.
inline int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
    if (const char* s = std::getenv(v)) return std::max(0, std::atoi(s));
  return 0;
}
inline double timeout_s() { return detail::state().timeout_s; }
/// Changes the collectives' deadline (seconds).
inline void set_timeout(double seconds) {
  NANODE_CHECK(seconds > 0 && seconds < 1e7, "dist: timeout must be a positive number of seconds, got ", seconds);
  detail::state().timeout_s = seconds;
}

/// Waits for `p` with the deadline; `what` names the collective in the error.
inline void wait(Pending& p, const std::string& what) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto limit = std::chrono::duration<double>(timeout_s());
  int64_t polls = 0;
  struct Account {
    std::chrono::steady_clock::time_point t0;
    ~Account() {
      detail::state().waited_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++detail::state().collectives;
    }
  } account{t0};
  while (!p.done()) {
    // Spin briefly, then sleep between polls: a waiting rank must not take the
    // core a computing rank on the same machine needs.
    if (++polls > 200) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 1000 : 50));
    if (std::chrono::steady_clock::now() - t0 > limit)
      throw TimeoutError("dist: rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + ": " + what +
                         " did not complete within " + std::to_string(static_cast<int>(timeout_s())) +
                         " s; another rank has died, hangs, or takes a different path "
                         "(NANODE_DIST_TIMEOUT sets the limit)");
  }
  p.finish();
}

/// Seconds this process has spent waiting for collectives to complete (the
/// communication the computation did not hide, and the time a faster rank waits
/// for a slower one), and how many it waited for.
inline double waited_seconds() { return detail::state().waited_s; }
inline int64_t collectives_waited() { return detail::state().collectives; }

/// Starts the process group: MPI when built with it (MPI_Init when nobody did),
/// else a world of one. A program built without MPI but started by mpirun with
/// more than one process is refused (each copy would train alone).
inline void init(int* argc = nullptr, char*** argv = nullptr, Options o = {}) {
  auto& st = detail::state();
  if (st.backend) return;
  st.timeout_s = o.timeout_s > 0 ? o.timeout_s : 300.0;
  if (o.timeout_s <= 0)
    if (const char* e = std::getenv("NANODE_DIST_TIMEOUT")) {
      char* end = nullptr;
      const double v = std::strtod(e, &end);
      NANODE_CHECK(end != e && *end == '\0' && v > 0 && v < 1e7,
                   "dist: NANODE_DIST_TIMEOUT must be a positive number of seconds, got '", e, "'");
      st.timeout_s = v;
    }
#if NANODE_DIST_MPI
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    detail::mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  }
  st.backend = std::make_unique<detail::MpiBackend>(!inited);
  const int announced = detail::launcher_world_size();
  if (announced > 1 && st.backend->size() == 1) {
    st.backend.reset();
    fail("dist: the launcher started ", announced, " processes, but MPI made each a world of one (is mpirun from "
         "the same MPI as the library this program was built with?); refusing to train ", announced,
         " unconnected copies");
  }
#else
  (void)argc, (void)argv;
  const int n = detail::launcher_world_size();
  NANODE_CHECK(n <= 1, "dist: started as one of ", n,
               " processes, but this program was built without MPI (install libopenmpi-dev and rebuild; CMake "
               "then builds nanode::dist); refusing to train ", n, " unconnected copies");
  st.backend = std::make_unique<detail::LocalBackend>();
#endif
}

/// Replaces the backend (the NCCL backend installs itself this way).
inline void set_backend(std::unique_ptr<Backend> b) { detail::state().backend = std::move(b); }

inline void finalize() {
  auto& st = detail::state();
  if (!st.backend) return;
  st.backend->finalize();
  st.backend.reset();
  st.sync_batch_norm = false;
  batch_norm_sync_hook() = nullptr;
}

/// Ends the whole job (every rank) with `code`: after an error on this rank.
[[noreturn]] inline void abort(int code = 1) {
  if (is_initialized()) backend().abort(code);
  std::exit(code);
}

inline void barrier() {
  auto p = backend().barrier();
  wait(*p, "barrier");
}

/// Sums `tensors` over ranks in place (one dtype), waiting for the result.
inline void all_reduce_sum(std::vector<Tensor> tensors, const std::string& what = "all_reduce") {
  if (world_size() == 1 || tensors.empty()) return;
  auto p = backend().all_reduce_sum(std::move(tensors));
  wait(*p, what);
}

/// Sums doubles over ranks in place (metrics, counts).
inline void all_reduce_sum(std::vector<double>& values, const std::string& what = "all_reduce") {
  if (world_size() == 1 || values.empty()) return;
  Tensor t = Tensor::from_vector<double>(values, Shape{static_cast<int64_t>(values.size())});
  all_reduce_sum(std::vector<Tensor>{t}, what);
  values = t.to_vector<double>();
}

/// Rank root's bytes, on every rank.
inline void broadcast_bytes(void* data, int64_t bytes, int root, const std::string& what = "broadcast") {
  if (world_size() == 1) return;
  auto p = backend().broadcast_bytes(data, bytes, root);
  wait(*p, what);
}

/// Rank root's tensor (same shape and dtype on every rank) into `t` in place.
inline void broadcast(Tensor& t, int root = 0, const std::string& what = "broadcast") {
  if (world_size() == 1) return;
  Tensor h = t.is_cpu() ? t : t.cpu();
  broadcast_bytes(h.raw_data(), static_cast<int64_t>(h.nbytes()), root, what);
  if (!t.is_cpu()) t.copy_(h.to(t.device()));
}

/// Rank root's string on every rank.
inline std::string broadcast_string(std::string s, int root = 0, const std::string& what = "broadcast") {
  if (world_size() == 1) return s;
  int64_t n = static_cast<int64_t>(s.size());
  broadcast_bytes(&n, sizeof(n), root, what + " (size)");
  s.resize(static_cast<size_t>(n));
  broadcast_bytes(s.data(), n, root, what);
  return s;
}

/// Makes every rank's parameters and buffers rank root's. Checks first that the
/// ranks built the same model (names, shapes and dtypes), naming the first that
/// differs.
inline void broadcast_state(nn::Module& m, int root = 0) {
  if (world_size() == 1) return;
  std::vector<std::pair<std::string, Var>> all = m.named_parameters();
  for (auto& b : m.named_buffers()) all.push_back(b);
  std::string layout;
  for (const auto& [n, v] : all) layout += n + ":" + v.shape().str() + ":" + dtype_name(v.dtype()) + ";";
  const std::string root_layout = broadcast_string(layout, root, "broadcast of the model's layout");
  if (root_layout != layout) {
    size_t i = 0;
    while (i < layout.size() && i < root_layout.size() && layout[i] == root_layout[i]) ++i;
    const size_t from = layout.rfind(';', i == 0 ? 0 : i - 1);
    const std::string here = layout.substr(from == std::string::npos ? 0 : from + 1, 80);
    fail("dist: rank ", rank(), " built a different model than rank ", root, " (first difference at '", here,
         "'); every rank must construct the same model");
  }
  for (auto& [n, v] : all) broadcast(v.mutable_data(), root, "broadcast of '" + n + "'");
}

/// Batch norm statistics: per rank (the default: each rank normalises with its
/// own shard's statistics) or synchronised (the sums behind the mean and variance,
/// and in the backward pass the sums behind the gradient, are added over ranks,
/// so the statistics are those of the global batch, as in one process).
inline void set_sync_batch_norm(bool on) {
  detail::state().sync_batch_norm = on;
  if (on && world_size() > 1) {
    batch_norm_sync_hook() = [](std::vector<double>& v) { all_reduce_sum(v, "batch-norm statistics"); };
  } else {
    batch_norm_sync_hook() = nullptr;
  }
}
inline bool sync_batch_norm() { return detail::state().sync_batch_norm; }

/// Sums the gradients of `params` over ranks and divides by the world size, in
/// buckets of about bucket_bytes. Run a backward pass inside backward() (or
/// between begin() and finish()): each bucket is started as soon as the backward
/// pass has produced every gradient in it (a leaf's gradient is final when the
/// last node that uses it has run), so the transfers overlap the rest of the pass.
/// Buckets start in a fixed order (every rank must issue the same sequence of
/// collectives), each once it and the buckets before it are complete. A parameter
/// that got no gradient on a rank counts as zeros there; after finish() every
/// parameter that some rank gave a gradient has the same averaged one on every
/// rank, and one that no rank did has none (as in one process). One backward pass
/// per begin()/finish(): a second is refused.
class GradientReducer {
 public:
  explicit GradientReducer(std::vector<Var> params, int64_t bucket_bytes = int64_t{1} << 18)
      : params_(std::move(params)) {
    NANODE_CHECK(bucket_bytes > 0, "GradientReducer: bucket size must be positive");
    // Buckets in reverse registration order (the order in which a backward pass
    // usually finishes gradients: the head first, the stem last), one dtype and
    // device each.
    for (size_t k = params_.size(); k-- > 0;) {
      const Var& p = params_[k];
      NANODE_CHECK(p.defined() && p.is_leaf(), "GradientReducer: parameter ", k, " is not a leaf Var");
      NANODE_CHECK(p.dtype() == DType::Float32 || p.dtype() == DType::Float64, "GradientReducer: parameter ",
                   p.describe(), " is ", p.dtype(), " (float32 or float64 only)");
      if (buckets_.empty() || buckets_.back().bytes + static_cast<int64_t>(p.data().nbytes()) > bucket_bytes ||
          buckets_.back().dtype != p.dtype() || buckets_.back().device != p.device())
        buckets_.push_back(Bucket{{}, 0, p.dtype(), p.device()});
      buckets_.back().members.push_back(k);
      buckets_.back().bytes += static_cast<int64_t>(p.data().nbytes());
      where_[p.impl().get()] = {buckets_.size() - 1, k};
    }
  }

  /// Arms the hook for the next backward pass.
  void begin() {
    NANODE_CHECK(!broken_, "GradientReducer: an earlier step failed with collectives in flight; this rank can no "
                 "longer take part (end the job: dist::abort)");
    ready_.assign(buckets_.size(), 0);
    reported_.assign(params_.size(), 0);
    pending_.clear();
    pending_.resize(buckets_.size());
    staged_.assign(buckets_.size(), {});
    early_ = 0, next_ = 0;
    hook_.arm([this](VarImpl* v) { on_ready(v); });
  }
  /// Starts the buckets not started yet, waits for all, and writes the averaged
  /// gradients.
  void finish() {
    hook_.disarm();
    try {
      while (next_ < buckets_.size()) start(next_++);
      const double scale = 1.0 / world_size();
      for (size_t b = 0; b < buckets_.size(); ++b) {
        if (pending_[b]) wait(*pending_[b], "gradient all-reduce (bucket " + std::to_string(b) + " of " +
                                                std::to_string(buckets_.size()) + ")");
        pending_[b].reset();
        const size_t m = buckets_[b].members.size();
        // The last staged tensor counts the ranks on which each parameter got a
        // gradient: one that none did stays without one, as in one process (an
        // optimizer then leaves it alone).
        const std::vector<double> had = staged_[b][m].to(DType::Float64).to_vector<double>();
        for (size_t i = 0; i < m; ++i) {
          Var& p = params_[buckets_[b].members[i]];
          if (had[i] == 0) {
            p.zero_grad();
            continue;
          }
          Tensor g = staged_[b][i];
          if (scale != 1.0) g = backend::unary(UnaryOp::Affine, g, scale);
          p.set_grad(g);
        }
        staged_[b].clear();
      }
    } catch (...) {
      broken_ = true;  // collectives may be in flight: this rank is out of step
      throw;
    }
  }
  /// loss.backward() with the buckets started as their gradients are final.
  void backward(const Var& loss) {
    begin();
    try {
      loss.backward();
    } catch (...) {
      hook_.disarm();
      if (next_ > 0) broken_ = true;  // some buckets were started
      throw;
    }
    finish();
  }
  size_t buckets() const { return buckets_.size(); }
  /// Buckets started while the backward pass was still running, in the last step.
  size_t started_early() const { return early_; }

 private:
  struct Bucket {
    std::vector<size_t> members;
    int64_t bytes;
    DType dtype;
    Device device;
  };

  void on_ready(VarImpl* v) {
    auto it = where_.find(v);
    if (it == where_.end()) return;
    const size_t b = it->second.first;
    NANODE_CHECK(!reported_[it->second.second]++, "GradientReducer: a second backward pass between begin() and "
                 "finish() (", params_[it->second.second].describe(), " got a gradient twice); accumulating gradients "
                 "over several passes is not supported (one pass per step)");
    ++ready_[b];
    // Buckets start in their fixed order, whatever order they become ready in:
    // every rank must issue its collectives in the same sequence (the order in
    // which a pass finishes gradients can differ between processes, e.g. for
    // gradients summed at its end).
    while (next_ < buckets_.size() && ready_[next_] == buckets_[next_].members.size()) {
      start(next_++);
      ++early_;
    }
    // Poll what is in flight: MPI moves messages only inside its calls.
    for (auto& p : pending_)
      if (p) (void)p->done();
  }

  void start(size_t b) {
    std::vector<Tensor> ts;
    std::vector<double> had;
    for (size_t k : buckets_[b].members) {
      const Var& p = params_[k];
      // A copy: the gradient may alias a tensor held elsewhere.
      ts.push_back(p.grad().defined() ? p.grad().clone() : Tensor::zeros(p.shape(), p.dtype(), p.device()));
      had.push_back(p.grad().defined() ? 1.0 : 0.0);
    }
    ts.push_back(Tensor::from_vector<double>(had, Shape{static_cast<int64_t>(had.size())})
                     .to(buckets_[b].dtype)
                     .to(buckets_[b].device));
    staged_[b] = ts;
    pending_[b] = world_size() > 1 ? backend().all_reduce_sum(std::move(ts)) : nullptr;
  }

  std::vector<Var> params_;
  std::vector<Bucket> buckets_;
  std::unordered_map<VarImpl*, std::pair<size_t, size_t>> where_;  // bucket, parameter index
  std::vector<size_t> ready_;
  std::vector<char> reported_;
  std::vector<std::unique_ptr<Pending>> pending_;
  std::vector<std::vector<Tensor>> staged_;
  LeafReadyHook hook_;
  size_t early_ = 0, next_ = 0;
  bool broken_ = false;
};

}  // namespace nanode::dist
