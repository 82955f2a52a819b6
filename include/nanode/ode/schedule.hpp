#pragma once
// The times a running solve will evaluate its dynamics at, known in advance: a
// fixed-step solve without a graph (the forward pass of the checkpoint and adjoint
// modes, and inference) publishes them for the calling thread while it runs, so
// that a time-varying layer can compute W(t) for a block of upcoming times in one
// sweep over its coefficients instead of one sweep per stage (see
// tv::detail::scheduled_weight). What a layer keeps here lives as long as the
// solve: nothing computed from the parameters outlives it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nanode::ode {

class Schedule {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);

  /// `times` in the order the solve evaluates them; repeats of the previous time
  /// are dropped.
  explicit Schedule(const std::vector<double>& times) {
    times_.reserve(times.size());
    for (double t : times)
      if (times_.empty() || times_.back() != t) times_.push_back(t);
  }
  Schedule(const Schedule&) = delete;
  Schedule& operator=(const Schedule&) = delete;

  /// The innermost schedule published on this thread, or null.
  static Schedule* current() { return current_ref(); }

  /// Counters on this thread, for tests and profiles: schedules published, values
  /// served from them, and RK stages that ran with the dynamics' last product.
  struct Totals {
    int64_t published = 0, served = 0, fused_stages = 0;
  };
  static Totals& totals() {
    thread_local Totals t;
    return t;
  }

  const std::vector<double>& times() const { return times_; }
  /// The first index at or after `from` of t (exactly) in times(), or npos (a
  /// linear scan from `from`: callers pass the start of their current block, so a
  /// scheduled time is found within a block's length).
  size_t find(double t, size_t from) const {
    for (size_t i = from; i < times_.size(); ++i)
      if (times_[i] == t) return i;
    return npos;
  }
  /// Storage for whoever caches values for `key` (its own address) during the solve.
  std::shared_ptr<void>& slot(const void* key) { return slots_[key]; }
  size_t slots() const { return slots_.size(); }

 private:
  friend class ScheduleScope;
  static Schedule*& current_ref() {
    thread_local Schedule* s = nullptr;
    return s;
  }
  std::vector<double> times_;
  std::unordered_map<const void*, std::shared_ptr<void>> slots_;
};

/// Publishes a schedule on this thread for the scope's lifetime (nesting restores
/// the outer one), then drops it and everything cached in it.
class ScheduleScope {
 public:
  explicit ScheduleScope(const std::vector<double>& times) : schedule_(times), outer_(Schedule::current_ref()) {
    Schedule::current_ref() = &schedule_;
    ++Schedule::totals().published;
  }
  ~ScheduleScope() { Schedule::current_ref() = outer_; }
  ScheduleScope(const ScheduleScope&) = delete;
  ScheduleScope& operator=(const ScheduleScope&) = delete;
  Schedule& schedule() { return schedule_; }

 private:
  Schedule schedule_;
  Schedule* outer_;
};

}  // namespace nanode::ode
