#pragma once
// Module: named parameters, buffers and children; train/eval; moving to a device.
// The names follow LibTorch's C++ frontend (register_parameter, register_module...).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nanode/autograd/var.hpp"

namespace nanode::nn {

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
    Var v(std::move(value), requires_grad);
    v.set_name(name);
    params_.emplace_back(name, v);
    return v;
  }
  /// Adds a buffer: state saved with the module but not trained (running statistics).
  Var register_buffer(const std::string& name, Tensor value) {
    check_name(name);
    Var v(std::move(value), false);
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
