#pragma once
// Module: named parameters, buffers and children; train/eval; moving to a device.
// The names follow LibTorch's C++ frontend (register_parameter, register_module...).
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nanode/autograd/var.hpp"

namespace nanode::nn {

/// Where a module's parameters and buffers are made: dtype and device, with
/// LibTorch-style chained setters. Given to make<M>() or to a ModuleOptionsGuard.
struct ModuleOptions {
  std::optional<DType> dtype_;    ///< unset: each tensor keeps the dtype it was made with
  std::optional<Device> device_;  ///< unset: each tensor stays where it was made
  ModuleOptions& dtype(DType d) {
    dtype_ = d;
    return *this;
  }
  ModuleOptions& device(Device d) {
    device_ = d;
    return *this;
  }
};

/// While alive, modules constructed on this thread put their parameters and
/// buffers on `options`' dtype and device (register_parameter and register_buffer
/// convert what they are given). Guards nest.
class ModuleOptionsGuard {
 public:
  explicit ModuleOptionsGuard(ModuleOptions o) : prev_(current()) { current() = o; }
  ~ModuleOptionsGuard() { current() = prev_; }
  ModuleOptionsGuard(const ModuleOptionsGuard&) = delete;
  ModuleOptionsGuard& operator=(const ModuleOptionsGuard&) = delete;
  /// The options in force on this thread (none: float32 on the CPU, as given).
  static std::optional<ModuleOptions>& current() {
    thread_local std::optional<ModuleOptions> o;
    return o;
  }

 private:
  std::optional<ModuleOptions> prev_;
};

/// Constructs module M with `args` and its parameters and buffers on `options`'
/// dtype and device: nn::make<tv::MLPDynamics>(ModuleOptions().dtype(DType::Float64), "trig", widths, fo).
template <class M, class... Args>
std::shared_ptr<M> make(ModuleOptions options, Args&&... args) {
  ModuleOptionsGuard guard(options);
  return std::make_shared<M>(std::forward<Args>(args)...);
}

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Adds a parameter (a leaf Var that requires grad). The returned Var shares the
  /// module's storage: later moves and optimiser steps are visible through it.
  Var register_parameter(const std::string& name, Tensor value, bool requires_grad = true) {
    check_name(name);
    Var v(placed(std::move(value)), requires_grad);
    v.set_name(name);
    params_.emplace_back(name, v);
    return v;
  }
  /// Adds a buffer: state saved with the module but not trained (running statistics).
  Var register_buffer(const std::string& name, Tensor value) {
    check_name(name);
    Var v(placed(std::move(value)), false);
    v.set_name(name);
    buffers_.emplace_back(name, v);
    return v;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_name(name);
    NANODE_CHECK(module != nullptr, "register_module: module '", name, "' is null");
    children_.emplace_back(name, module);
    return module;
  }

  std::vector<std::pair<std::string, Var>> named_parameters(bool recurse = true) const {
    std::vector<std::pair<std::string, Var>> out;
    collect(out, "", recurse, true);
    return out;
  }
  std::vector<std::pair<std::string, Var>> named_buffers(bool recurse = true) const {
    std::vector<std::pair<std::string, Var>> out;
    collect(out, "", recurse, false);
    return out;
  }
  std::vector<Var> parameters(bool recurse = true) const {
    std::vector<Var> out;
    for (auto& [n, v] : named_parameters(recurse)) out.push_back(v);
    return out;
  }
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  /// Number of trainable scalars.
  int64_t num_parameters() const {
    int64_t n = 0;
    for (auto& [name, v] : named_parameters())
      if (v.requires_grad()) n += v.numel();
    return n;
  }
  /// Bytes held by parameters (the paper's PARAM. MEM column).
  int64_t parameter_bytes() const {
    int64_t n = 0;
    for (auto& [name, v] : named_parameters()) n += static_cast<int64_t>(v.data().nbytes());
    return n;
  }

  virtual void train(bool on = true) {
    training_ = on;
    for (auto& [n, c] : children_) c->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Moves (or converts) every parameter and buffer in place.
  void to(Device device) {
    for (auto& [n, v] : named_parameters()) v.mutable_data() = v.data().to(device);
    for (auto& [n, v] : named_buffers()) v.mutable_data() = v.data().to(device);
  }
  void to(DType dtype) {
    for (auto& [n, v] : named_parameters()) v.mutable_data() = v.data().to(dtype);
    for (auto& [n, v] : named_buffers()) v.mutable_data() = v.data().to(dtype);
  }
  void zero_grad() {
    for (auto& [n, v] : named_parameters()) v.zero_grad();
  }

  /// Every parameter and buffer by its dotted name (one namespace, as in PyTorch),
  /// parameters first. The tensors are the module's own (not copies).
  std::vector<std::pair<std::string, Tensor>> state_dict() const {
    std::vector<std::pair<std::string, Tensor>> out;
    for (auto& [n, v] : named_parameters()) out.emplace_back(n, v.data());
    for (auto& [n, v] : named_buffers()) out.emplace_back(n, v.data());
    return out;
  }
  /// Sets parameters and buffers by name from `state` (values are copied and
  /// converted to each one's dtype and device; the Vars stay the same, so
  /// optimisers and dynamics that captured them see the new values). Shapes must
  /// match. With `strict`, every name must match both ways; either way an unknown
  /// name in `state` is an error unless strict is false. Nothing is changed when
  /// anything is wrong: the error lists every missing, unexpected and mismatched name.
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state, bool strict = true) {
    std::vector<std::pair<std::string, Var>> mine = named_parameters();
    for (auto& nb : named_buffers()) mine.push_back(nb);
    std::vector<std::string> missing, unexpected, mismatched, duplicate;
    std::vector<std::pair<Var, const Tensor*>> assign;
    for (size_t i = 0; i < state.size(); ++i) {
      const auto& [name, t] = state[i];
      for (size_t j = 0; j < i; ++j)
        if (state[j].first == name) duplicate.push_back(name);
      auto it = std::find_if(mine.begin(), mine.end(), [&](const auto& m) { return m.first == name; });
      if (it == mine.end()) {
        unexpected.push_back(name);
      } else if (!t.defined() || t.shape() != it->second.shape()) {
        mismatched.push_back(name + " (" + (t.defined() ? t.shape().str() : std::string("undefined")) + " given, " +
                             it->second.shape().str() + " expected)");
      } else {
        assign.emplace_back(it->second, &t);
      }
    }
    for (const auto& [name, v] : mine)
      if (std::none_of(state.begin(), state.end(), [&](const auto& s) { return s.first == name; }))
        missing.push_back(name);
    auto list = [](const std::vector<std::string>& names) {
      std::string out;
      for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
      return out;
    };
    std::string problems;
    if (!mismatched.empty()) problems += "; shape mismatch: " + list(mismatched);
    if (!duplicate.empty()) problems += "; given twice: " + list(duplicate);
    if (strict && !missing.empty()) problems += "; missing: " + list(missing);
    if (strict && !unexpected.empty()) problems += "; unexpected: " + list(unexpected);
    NANODE_CHECK(problems.empty(), "load_state_dict: nothing loaded", problems,
                 strict ? "" : " (strict = false ignores only missing and unexpected names)");
    // Convert everything first (this may throw: out of device memory), then swap
    // the values in, which cannot.
    std::vector<Tensor> values;
    values.reserve(assign.size());
    for (auto& [v, t] : assign) values.push_back(t->to(v.dtype()).to(v.device()).clone());
    for (size_t i = 0; i < assign.size(); ++i) {
      Var target = assign[i].first;
      std::swap(target.mutable_data(), values[i]);
    }
    notify_state_loaded();
  }
  /// Runs on_state_loaded on this module and all below it (children first): for
  /// code that sets parameters or buffers by other means than load_state_dict.
  void notify_state_loaded() {
    for (auto& [n, c] : children_) c->notify_state_loaded();
    on_state_loaded();
  }
  /// Called on every module, children first, after load_state_dict has set new
  /// values: a module that keeps a host copy of a buffer (random features' draws)
  /// refreshes it here.
  virtual void on_state_loaded() {}

  /// Adds the times in the open interval (t0, t1) at which this module's
  /// parameters jump (bucketed bases do); ODE solvers never step across them.
  virtual void collect_jump_times(double t0, double t1, std::vector<double>& out) const {
    for (auto& [n, c] : children_) c->collect_jump_times(t0, t1, out);
  }
  /// The sorted, distinct jump times in (min(t0,t1), max(t0,t1)).
  std::vector<double> jump_times(double t0, double t1) const {
    std::vector<double> out;
    collect_jump_times(std::min(t0, t1), std::max(t0, t1), out);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

 private:
  static Tensor placed(Tensor t) {
    const auto& o = ModuleOptionsGuard::current();
    if (!o || !t.defined()) return t;
    if (o->dtype_ && t.dtype() != DType::Int32 && t.dtype() != *o->dtype_) t = t.to(*o->dtype_);
    if (o->device_ && t.device() != *o->device_) t = t.to(*o->device_);
    return t;
  }
  void check_name(const std::string& name) const {
    NANODE_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: invalid name '", name,
                 "' (non-empty, no dots)");
    for (auto& p : params_) NANODE_CHECK(p.first != name, "Module: name '", name, "' is already used");
    for (auto& p : buffers_) NANODE_CHECK(p.first != name, "Module: name '", name, "' is already used");
    for (auto& p : children_) NANODE_CHECK(p.first != name, "Module: name '", name, "' is already used");
  }
  void collect(std::vector<std::pair<std::string, Var>>& out, const std::string& prefix, bool recurse,
               bool params) const {
    for (auto& [n, v] : params ? params_ : buffers_) out.emplace_back(prefix + n, v);
    if (recurse)
      for (auto& [n, c] : children_) c->collect(out, prefix + n + ".", true, params);
  }

  std::vector<std::pair<std::string, Var>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace nanode::nn
