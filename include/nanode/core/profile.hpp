#pragma once
// A small profiler of where a training step's time goes, by named scope.
//
//   profile::enable(true);
//   { profile::Scope s("stem"); h = stem(x); }   // forward time of "stem"
//   loss.backward();                              // each node's backward time goes
//                                                 // to the scope that made it
//   profile::report()                             // per scope: forward, backward, calls
//
// Scopes nest ("block0" then "norm" inside it is "block0/norm"); a scope's forward
// time excludes its children's. Autograd nodes remember the innermost scope open
// when they were made, and the backward pass times each node's backward function
// against that scope. Off by default: a Scope then costs one branch. Timing is
// wall-clock on the host; on CUDA it includes only what synchronises.
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace nanode::profile {

struct Entry {
  double forward_ms = 0, backward_ms = 0;
  int64_t calls = 0;
};

namespace detail {
inline bool& enabled_flag() {
  static bool on = false;
  return on;
}
/// Interned scope paths: the pointers autograd nodes keep stay valid.
inline const std::string* intern(const std::string& path) {
  static std::set<std::string> names;
  return &*names.insert(path).first;
}
inline const std::string*& current() {
  thread_local const std::string* cur = nullptr;
  return cur;
}
inline std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
/// Time spent in child scopes of the open scopes (to make forward times exclusive).
inline std::vector<double>& child_stack() {
  thread_local std::vector<double> s;
  return s;
}
}  // namespace detail

inline bool enabled() { return detail::enabled_flag(); }
/// Turns profiling on or off (for the whole process; not while scopes are open).
inline void enable(bool on) { detail::enabled_flag() = on; }
/// Clears the collected times.
inline void reset() { detail::table().clear(); }
/// The innermost open scope's path, or nullptr (what autograd nodes record).
inline const std::string* current_scope() { return enabled() ? detail::current() : nullptr; }

/// Adds backward time to `scope` (nullptr: "(unscoped)").
inline void add_backward(const std::string* scope, double ms) {
  detail::table()[scope ? *scope : std::string("(unscoped)")].backward_ms += ms;
}

namespace detail {
inline int& backward_depth() {  // nodes being timed on this thread
  thread_local int d = 0;
  return d;
}
inline double& node_ms_in_pass() {  // node time of the outermost backward pass so far
  thread_local double ms = 0;
  return ms;
}
}  // namespace detail

/// Times one autograd node's backward against its scope. Nested backward passes
/// (the ODE gradient modes run their own) count once, in the outer node.
class BackwardTimer {
 public:
  explicit BackwardTimer(const std::string* scope) : scope_(scope), outer_(detail::backward_depth()++ == 0) {
    if (outer_) t0_ = std::chrono::steady_clock::now();
  }
  ~BackwardTimer() {
    --detail::backward_depth();
    if (!outer_) return;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    add_backward(scope_, ms);
    detail::node_ms_in_pass() += ms;
  }
  BackwardTimer(const BackwardTimer&) = delete;
  BackwardTimer& operator=(const BackwardTimer&) = delete;

 private:
  const std::string* scope_;
  bool outer_;
  std::chrono::steady_clock::time_point t0_;
};

/// Times a whole backward pass (outermost only): what its nodes did not take (the
/// engine's ordering, gradient sums, freeing the graph) goes to "(autograd engine)".
class PassTimer {
 public:
  PassTimer() : active_(enabled() && detail::backward_depth() == 0 && !in_pass()) {
    if (!active_) return;
    in_pass() = true;
    detail::node_ms_in_pass() = 0;
    t0_ = std::chrono::steady_clock::now();
  }
  ~PassTimer() {
    if (!active_) return;
    in_pass() = false;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    detail::table()["(autograd engine)"].backward_ms += ms - detail::node_ms_in_pass();
  }
  PassTimer(const PassTimer&) = delete;
  PassTimer& operator=(const PassTimer&) = delete;

 private:
  static bool& in_pass() {
    thread_local bool p = false;
    return p;
  }
  bool active_;
  std::chrono::steady_clock::time_point t0_;
};

/// Opens a named scope for the lifetime of this object.
class Scope {
 public:
  explicit Scope(const char* name) {
    if (!enabled()) return;
    active_ = true;
    prev_ = detail::current();
    detail::current() = detail::intern(prev_ ? *prev_ + "/" + name : std::string(name));
    detail::child_stack().push_back(0.0);
    t0_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (!active_) return;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    auto& stack = detail::child_stack();
    const double children = stack.back();
    stack.pop_back();
    if (!stack.empty()) stack.back() += ms;
    Entry& e = detail::table()[*detail::current()];
    e.forward_ms += ms - children;
    ++e.calls;
    detail::current() = prev_;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  bool active_ = false;
  const std::string* prev_ = nullptr;
  std::chrono::steady_clock::time_point t0_;
};

/// The collected times by scope path.
inline const std::map<std::string, Entry>& report() { return detail::table(); }

}  // namespace nanode::profile
