#pragma once
// What the trainers share to fail early and lose nothing:
// - OutputFolder: an exclusive lock on --out-dir (a second run fails at once,
//   naming the holder's pid), refusal to write over an earlier run's results
//   unless resuming or told to overwrite, and a check that everything the run
//   will write is writable, all before any training.
// - StepGuard: the loss, the gradient norm and the parameters checked every step
//   (a pass over the parameters, cheap beside a step); the first non-finite value
//   stops the run naming the epoch, batch and what went non-finite, with a hint;
//   a loss above `factor` times its first value for `patience` steps in a row is
//   a divergence warning, and while diverged no checkpoint is written over the
//   last good one.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "nanode/autograd/anomaly.hpp"
#include "nanode/core/error.hpp"
#include "nanode/nn/module.hpp"

namespace nanode::models {

class OutputFolder {
 public:
  OutputFolder() = default;
  /// Locks `dir` (created when missing) for this process. `results`: the files a
  /// run leaves there (a run that finds one refuses unless `resume` or
  /// `overwrite`); `checkpoint`: the file --resume needs. `who` prefixes errors.
  OutputFolder(const std::string& dir, bool resume, bool overwrite, const std::vector<std::string>& results,
               const std::string& checkpoint, const std::string& who)
      : dir_(dir) {
    NANODE_CHECK(!(resume && overwrite), who, ": --resume and --overwrite contradict each other (continue the run in ",
                 dir, ", or replace it)");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    NANODE_CHECK(!ec, who, ": cannot create --out-dir ", dir, " (", ec.message(), ")");
    NANODE_CHECK(std::filesystem::is_directory(dir, ec), who, ": --out-dir ", dir, " is not a folder");
    const std::string lock = dir + "/.nanode.lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    NANODE_CHECK(fd_ >= 0, who, ": cannot write in --out-dir ", dir, " (", lock, ": ", std::strerror(errno), ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[32] = {0};
      const ssize_t n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
      ::close(fd_);
      fd_ = -1;
      const std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("unknown");
      if (err == EWOULDBLOCK)
        fail(who, ": --out-dir ", dir, " is in use by another training run (pid ", holder.substr(0, holder.find('\n')),
             "); wait for it to finish or choose another --out-dir");
      fail(who, ": cannot lock --out-dir ", dir, " (", std::strerror(err), ")");
    }
    try {
      check(dir, resume, overwrite, results, checkpoint, who, lock);
    } catch (...) {
      ::close(fd_);  // a constructor that throws runs no destructor: release the lock here
      fd_ = -1;
      throw;
    }
  }
  OutputFolder(OutputFolder&& o) noexcept : dir_(std::move(o.dir_)), fd_(o.fd_) { o.fd_ = -1; }
  OutputFolder& operator=(OutputFolder&& o) noexcept {
    std::swap(dir_, o.dir_);
    std::swap(fd_, o.fd_);
    return *this;
  }
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;
  ~OutputFolder() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  bool locked() const { return fd_ >= 0; }

 private:
  // Under the lock: record the pid, clear stale temp files, refuse to overwrite
  // results unasked, and check that everything the run writes is writable.
  void check(const std::string& dir, bool resume, bool overwrite, const std::vector<std::string>& results,
             const std::string& checkpoint, const std::string& who, const std::string& lock) {
    std::error_code ec;
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
      fail(who, ": cannot write the lock file ", lock, " (", std::strerror(errno), ")");
    // Temp files of saves that a killed run left behind (no one else writes here now).
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.find(".tmp.") != std::string::npos) std::filesystem::remove(e.path(), ec);
    }
    if (resume) {
      NANODE_CHECK(std::filesystem::exists(dir + "/" + checkpoint), who, ": --resume, but there is no checkpoint at ",
                   dir, "/", checkpoint, " (run without --resume to start a new run)");
    } else if (!overwrite) {
      std::string found;
      for (const auto& r : results)
        if (std::filesystem::exists(dir + "/" + r)) found += (found.empty() ? "" : ", ") + r;
      NANODE_CHECK(found.empty(), who, ": --out-dir ", dir, " already holds the results of a run (", found,
                   "); pass --resume to continue that run, --overwrite to replace its results, or choose another "
                   "--out-dir");
    }
    // Everything the run writes must be writable now, not after an epoch's work:
    // existing files in place, new ones (and the checkpoint's rename) in the folder.
    for (const auto& r : results) {
      const std::string p = dir + "/" + r;
      if (std::filesystem::exists(p))
        NANODE_CHECK(::access(p.c_str(), W_OK) == 0, who, ": ", p, " is not writable (", std::strerror(errno), ")");
    }
    const std::string probe = dir + "/.nanode.probe." + std::to_string(::getpid());
    const int pf = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    NANODE_CHECK(pf >= 0, who, ": cannot create files in --out-dir ", dir, " (", std::strerror(errno), ")");
    const bool wrote = ::write(pf, "ok\n", 3) == 3;
    ::close(pf);
    ::unlink(probe.c_str());
    NANODE_CHECK(wrote, who, ": cannot write files in --out-dir ", dir, " (", std::strerror(errno), ")");
  }

  std::string dir_;
  int fd_ = -1;
};

/// Sum of squares of a float tensor's elements (in double).
inline double squared_sum(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return 0.0;
  if (t.device().is_cuda()) return backend::sum_all(backend::binary(BinaryOp::Mul, t, t)).item<double>();
  double s = 0;
  const int64_t n = t.numel();
  if (t.dtype() == DType::Float32) {
    const float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]) * p[i];
  } else if (t.dtype() == DType::Float64) {
    const double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i) s += p[i] * p[i];
  }
  return s;
}

class StepGuard {
 public:
  /// `who`: the program (prefixes messages); `lr_option`: the option to lower in hints.
  StepGuard(std::string who, std::string lr_option = "--lr", double factor = 10.0, int64_t patience = 20)
      : who_(std::move(who)), lr_option_(std::move(lr_option)), factor_(factor), patience_(patience) {}

  /// Where the step is, for messages.
  void at(int64_t epoch, int64_t batch, double lr) { epoch_ = epoch, batch_ = batch, lr_ = lr; }
  std::string where() const {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "epoch %lld, batch %lld (learning rate %.6g)", static_cast<long long>(epoch_ + 1),
                  static_cast<long long>(batch_ + 1), lr_);
    return buf;
  }

  /// The loss of this step: non-finite stops the run; tracks divergence.
  void loss(double v) {
    if (!std::isfinite(v)) fail(who_, ": the loss became ", v, " at ", where(), hint());
    if (!have_first_) first_ = v, have_first_ = true;
    if (first_ > 0 && v > factor_ * first_) {
      if (++above_ == patience_ && !warned_) {
        warned_ = true;
        std::fprintf(stderr,
                     "\n%s: warning: the loss (%.6g) has stayed above %gx its first value (%.6g) for %lld steps, up to "
                     "%s: the run is diverging (lower %s?); no checkpoint is written while it stays so\n",
                     who_.c_str(), v, factor_, first_, static_cast<long long>(patience_), where().c_str(),
                     lr_option_.c_str());
        std::fflush(stderr);
      }
    } else {
      above_ = 0;
    }
  }

  /// After backward: the gradients' norm must be finite; names the first
  /// parameter whose gradient is not.
  double gradients(const std::vector<std::pair<std::string, Var>>& params) {
    double s = 0;
    for (const auto& [n, p] : params) s += squared_sum(p.grad());
    if (std::isfinite(s)) return std::sqrt(s);
    for (const auto& [n, p] : params)
      if (const int64_t i = anomaly::first_nonfinite(p.grad()); i >= 0)
        fail(who_, ": the gradient of parameter '", n, "' became non-finite (", anomaly::describe_bad(p.grad(), i),
             ") at ", where(), "; the loss was finite", hint());
    fail(who_, ": the gradient norm overflowed (", s, ") at ", where(), hint());
  }

  /// After the optimizer step: every parameter must be finite.
  void parameters(const std::vector<std::pair<std::string, Var>>& params) const {
    for (const auto& [n, p] : params)
      if (const int64_t i = anomaly::first_nonfinite(p.data()); i >= 0)
        fail(who_, ": parameter '", n, "' became non-finite in the optimizer step (",
             anomaly::describe_bad(p.data(), i), ") at ", where(), "; the gradients were finite", hint());
  }

  /// True while the loss has been above the divergence threshold for `patience`
  /// steps in a row: the state is not worth a checkpoint.
  bool diverging() const { return above_ >= patience_; }

 private:
  std::string hint() const {
    std::string h = ". Lower " + lr_option_;
    h += anomaly::enabled() ? "" : ", or run again with --detect-anomaly to name the op that first produced it";
    h += "; the last checkpoint (if any) was written before this step";
    return h;
  }
  std::string who_, lr_option_;
  double factor_;
  int64_t patience_;
  int64_t epoch_ = 0, batch_ = 0, above_ = 0;
  double lr_ = 0, first_ = 0;
  bool have_first_ = false, warned_ = false;
};

}  // namespace nanode::models
