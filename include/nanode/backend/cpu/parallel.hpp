#pragma once
// Threading for the CPU backend: nanode's own thread pool (no OpenMP).
//
// Work is split into a number of chunks fixed by the problem's size (never by the
// thread count), and threads claim chunks one at a time from a shared word; the
// calling thread takes part, claiming from the front while the workers claim from
// the back. So
//  - results are bit-identical for any thread count (the same chunks, the same
//    arithmetic, whichever thread runs them);
//  - on a busy machine the caller never waits for a worker the scheduler has not
//    run: it takes the chunks itself, and waits only for chunks a worker is running;
//  - consecutive regions split alike (an ODE solve's steps) give each thread
//    mostly the same chunks, whose data stays in that core's cache (with 2
//    threads: the caller the first half, the worker the second, unless one is
//    late); W2's step took about 12 % less than with both claiming from the front;
//  - idle workers spin for a bounded time (about 1 ms, yielding the CPU after the
//    first 50 us) and then sleep, so they do not burn an oversubscribed machine,
//    while back-to-back parallel regions (an ODE step is hundreds of them) do not
//    pay a wake-up each.
// The default thread count is the number of CPUs this process may run on (its
// affinity mask), or NANODE_NUM_THREADS / OMP_NUM_THREADS when set.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <Eigen/Core>
#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace nanode {
namespace cpu {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

inline void yield_cpu() {
#if defined(__linux__)
  sched_yield();
#else
  std::this_thread::yield();
#endif
}

/// The CPUs this process may run on: its affinity mask (taskset, cgroup cpusets),
/// else the hardware's count; at least 1.
inline int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? static_cast<int>(h) : 1;
}

/// Threads to use by default: NANODE_NUM_THREADS, else OMP_NUM_THREADS, else
/// available_cpus(); never more than available_cpus().
inline int default_threads() {
  const int cpus = available_cpus();
  for (const char* var : {"NANODE_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* v = std::getenv(var)) {
      const long n = std::strtol(v, nullptr, 10);
      if (n > 0) return static_cast<int>(std::min<long>(n, cpus));
    }
  }
  return cpus;
}

class ThreadPool {
 public:
  using Task = void (*)(void* ctx, int64_t index);

  static ThreadPool& instance() {
    static ThreadPool pool;
    return pool;
  }

  /// Threads taking part in a parallel region, the caller included.
  int threads() const { return threads_.load(std::memory_order_relaxed); }

  /// Sets the thread count (at least 1, at most available_cpus()); workers start
  /// or stop accordingly. Not to be called from inside a parallel region.
  void set_threads(int n) {
    n = std::max(1, std::min(n, available_cpus()));
    std::lock_guard<std::mutex> run(run_mutex_);
    stop_workers();
    threads_.store(n, std::memory_order_relaxed);
    stop_.store(false);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  /// True inside a task (nested regions run inline, in order).
  static bool in_parallel() { return depth() > 0; }

  /// Runs task(ctx, i) for every i in [0, count), each exactly once, on the pool's
  /// threads and the caller; returns when all have run. The first exception a task
  /// throws is rethrown here (the remaining tasks are skipped).
  void run(int64_t count, Task task, void* ctx) {
    if (count <= 0) return;
    if (count == 1 || threads() <= 1 || in_parallel() || count > kMaxTasks || !run_mutex_.try_lock()) {
      run_inline(count, task, ctx);
      return;
    }
    std::lock_guard<std::mutex> hold(run_mutex_, std::adopt_lock);
    task_ = task;
    ctx_ = ctx;
    error_ = nullptr;
    failed_.store(false, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & kGenMask;
    word_.store(pack(gen_, count, 0), std::memory_order_seq_cst);  // publishes the fields above
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> l(sleep_mutex_);
      wake_.notify_all();
    }
    work();
    // Wait only for chunks that workers claimed and are running.
    for (int spin = 0; done_.load(std::memory_order_acquire) < count; ++spin) {
      if (spin < 4096) cpu_relax();
      else yield_cpu();  // a preempted worker holds a chunk: let the scheduler run it
    }
    if (failed_.load(std::memory_order_acquire)) std::rethrow_exception(error_);
  }

  ~ThreadPool() { stop_workers(); }

 private:
  // The claim word: generation (24 bits) | end (20 bits) | next task (20 bits);
  // tasks [next, end) are unclaimed: the caller claims `next` (next + 1), a worker
  // end - 1 (end - 1).
  static constexpr int64_t kMaxTasks = (int64_t{1} << 20) - 1;
  static constexpr uint64_t kGenMask = (uint64_t{1} << 24) - 1;
  static uint64_t pack(uint64_t gen, int64_t count, int64_t next) {
    return (gen << 40) | (static_cast<uint64_t>(count) << 20) | static_cast<uint64_t>(next);
  }
  static int64_t end_of(uint64_t w) { return static_cast<int64_t>((w >> 20) & kMaxTasks); }
  static int64_t next_of(uint64_t w) { return static_cast<int64_t>(w & kMaxTasks); }
  static bool has_work(uint64_t w) { return next_of(w) < end_of(w); }

  static int& depth() {
    thread_local int d = 0;
    return d;
  }

  ThreadPool() {
    Eigen::setNbThreads(1);  // Eigen's own (OpenMP) threading stays off: the pool splits GEMMs
    set_threads(default_threads());
  }

  static void run_inline(int64_t count, Task task, void* ctx) {
    ++depth();
    try {
      for (int64_t i = 0; i < count; ++i) task(ctx, i);
    } catch (...) {
      --depth();
      throw;
    }
    --depth();
  }

  /// Claims and runs tasks of the current region until none is left: the lowest
  /// unclaimed one (the caller), or with `top` the highest (the workers).
  void work(bool top = false) {
    uint64_t w = word_.load(std::memory_order_acquire);
    while (has_work(w)) {
      const uint64_t claimed = top ? w - (uint64_t{1} << 20) : w + 1;
      if (!word_.compare_exchange_weak(w, claimed, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const int64_t index = top ? end_of(w) - 1 : next_of(w);
      // Claimed task `index` of this generation: the fields are this region's
      // (they change only after every task of it is done).
      if (!failed_.load(std::memory_order_relaxed)) {
        ++depth();
        try {
          task_(ctx_, index);
        } catch (...) {
          std::lock_guard<std::mutex> l(error_mutex_);
          if (!failed_.load(std::memory_order_relaxed)) {
            error_ = std::current_exception();
            failed_.store(true, std::memory_order_release);
          }
        }
        --depth();
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
      w = word_.load(std::memory_order_acquire);
    }
  }

  void worker_loop() {
    using clock = std::chrono::steady_clock;
    while (!stop_.load(std::memory_order_relaxed)) {
      if (has_work(word_.load(std::memory_order_acquire))) {
        work(/*top=*/true);
        continue;
      }
      // Bounded spin: pause for ~50 us, then yield the CPU until ~1 ms, then sleep.
      const auto t0 = clock::now();
      bool found = false;
      for (int i = 1;; ++i) {
        if (has_work(word_.load(std::memory_order_acquire)) || stop_.load(std::memory_order_relaxed)) {
          found = true;
          break;
        }
        if ((i & 63) == 0) {
          const auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count();
          if (us > kSpinMicros) break;
          if (us > kPauseMicros) yield_cpu();
        } else {
          cpu_relax();
        }
      }
      if (found) continue;
      std::unique_lock<std::mutex> l(sleep_mutex_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      while (!has_work(word_.load(std::memory_order_seq_cst)) && !stop_.load(std::memory_order_seq_cst)) wake_.wait(l);
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> l(sleep_mutex_);
      stop_.store(true, std::memory_order_seq_cst);
      wake_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  static constexpr int64_t kPauseMicros = 50, kSpinMicros = 1000;

  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one region at a time; a second caller runs inline
  uint64_t gen_ = 0;
  std::atomic<uint64_t> word_{0};
  std::atomic<int64_t> done_{0};
  Task task_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::mutex error_mutex_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

/// Runs f(i) for i in [0, count) on the pool (see ThreadPool::run).
template <class F>
void parallel_tasks(int64_t count, F&& f) {
  using Fn = std::remove_reference_t<F>;
  ThreadPool::instance().run(
      count, [](void* ctx, int64_t i) { (*static_cast<Fn*>(ctx))(i); }, const_cast<void*>(static_cast<const void*>(&f)));
}

/// Chunks parallel_for splits [0, n) into: a function of n and grain only.
constexpr int64_t kMaxChunks = 64;
inline int64_t parallel_chunks(int64_t n, int64_t grain) {
  if (grain < 1) grain = 1;
  if (n < 2 * grain) return 1;
  return std::min<int64_t>(kMaxChunks, n / grain);
}

/// Runs f(begin, end) over [0, n) split into parallel_chunks(n, grain) contiguous
/// chunks (fixed by n and grain, not by the thread count), each once, on the pool.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  const int64_t chunks = parallel_chunks(n, grain);
  if (chunks == 1) {
    f(int64_t{0}, n);
    return;
  }
  parallel_tasks(chunks, [&](int64_t c) { f(n * c / chunks, n * (c + 1) / chunks); });
}

}  // namespace cpu

/// Threads used by nanode's CPU kernels (clamped to the CPUs this process may use).
inline void set_num_threads(int n) { cpu::ThreadPool::instance().set_threads(n); }

inline int get_num_threads() { return cpu::ThreadPool::instance().threads(); }

}  // namespace nanode
