#pragma once
// Reverse-mode autodiff on a dynamic graph. A Var is a Tensor plus its gradient
// and the node that made it; an op computes its forward and records its backward
// right beside it (see ops/). backward() runs the graph in reverse topological
// order, accumulates gradients into leaves, and frees the graph it has used.
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "nanode/backend/dispatch.hpp"

namespace nanode {

/// Whether ops record graphs on this thread.
class GradMode {
 public:
  static bool is_enabled() { return flag(); }
  static void set_enabled(bool on) { flag() = on; }

 private:
  static bool& flag() {
    thread_local bool enabled = true;
    return enabled;
  }
};

/// Disables graph recording for its lifetime (evaluation, optimiser updates).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// Enables graph recording for its lifetime (local graphs built inside a backward
/// pass, e.g. the adjoint's vector-Jacobian products).
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(true); }
  ~EnableGradGuard() { GradMode::set_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

/// What an op's backward fills: one gradient per input, only where needed.
class GradInputs {
 public:
  explicit GradInputs(std::vector<bool> needs) : needs_(std::move(needs)), grads_(needs_.size()) {}
  bool need(size_t i) const { return needs_[i]; }
  void set(size_t i, Tensor g) {
    if (needs_[i]) grads_[i] = std::move(g);
  }
  Tensor& operator[](size_t i) { return grads_[i]; }

 private:
  std::vector<bool> needs_;
  std::vector<Tensor> grads_;
};

using BackwardFn = std::function<void(const Tensor& grad_out, GradInputs& grads)>;

struct VarImpl {
  Tensor data;
  Tensor grad;
  bool grad_shared = false;  // grad may alias a tensor held elsewhere: never add into it in place
  bool requires_grad = false;
  bool is_leaf = true;
  bool graph_freed = false;
  bool retains_grad = false;
  const char* op = "leaf";
  std::vector<std::shared_ptr<VarImpl>> inputs;
  BackwardFn backward;

  // Graphs of long integrations are deep chains; tear them down without recursion.
  ~VarImpl() {
    if (inputs.empty()) return;
    std::vector<std::shared_ptr<VarImpl>> stack = std::move(inputs);
    while (!stack.empty()) {
      std::shared_ptr<VarImpl> p = std::move(stack.back());
      stack.pop_back();
      if (p && p.use_count() == 1) {
        for (auto& q : p->inputs) stack.push_back(std::move(q));
        p->inputs.clear();
        p->backward = nullptr;
      }
    }
  }
};

class Var {
 public:
  Var() = default;
  /// Wraps a tensor; a leaf that collects gradients when requires_grad is true.
  Var(Tensor data, bool requires_grad = false) : impl_(std::make_shared<VarImpl>()) {  // NOLINT: implicit by design
    impl_->data = std::move(data);
    if (requires_grad) requires_grad_(true);
  }

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const {
    check();
    return impl_->data;
  }
  /// The value, writable (optimisers update parameters in place under NoGradGuard).
  Tensor& mutable_data() {
    check();
    return impl_->data;
  }
  /// The accumulated gradient (undefined until a backward pass reaches this Var).
  const Tensor& grad() const {
    check();
    return impl_->grad;
  }
  void set_grad(Tensor g) {
    check();
    impl_->grad = std::move(g);
    impl_->grad_shared = true;
  }
  void zero_grad() {
    check();
    impl_->grad = Tensor();
    impl_->grad_shared = false;
  }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  Var& requires_grad_(bool on = true) {
    check();
    NANODE_CHECK(impl_->is_leaf || on, "requires_grad_: only leaves can stop requiring grad; use detach()");
    if (on) {
      NANODE_CHECK(impl_->data.dtype() != DType::Int32, "requires_grad_: integer tensors cannot require grad");
    }
    impl_->requires_grad = on;
    return *this;
  }
  bool is_leaf() const { return !impl_ || impl_->is_leaf; }
  /// Keep this non-leaf's gradient after backward (leaves always keep theirs).
  void retain_grad() {
    check();
    impl_->retains_grad = true;
  }
  /// The op that made this Var ("leaf" for leaves).
  const char* op_name() const { return impl_ ? impl_->op : "undefined"; }

  /// A new leaf sharing this Var's data, outside any graph.
  Var detach() const { return Var(data()); }

  const Shape& shape() const { return data().shape(); }
  int ndim() const { return data().ndim(); }
  int64_t numel() const { return data().numel(); }
  int64_t size(int axis) const { return data().size(axis); }
  DType dtype() const { return data().dtype(); }
  Device device() const { return data().device(); }
  double item() const { return data().item<double>(); }

  /// Backpropagates from this Var. Without `grad` the Var must hold one element.
  /// The graph is freed afterwards unless retain_graph is true.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  const std::shared_ptr<VarImpl>& impl() const { return impl_; }
  explicit Var(std::shared_ptr<VarImpl> impl) : impl_(std::move(impl)) {}

 private:
  void check() const { NANODE_CHECK(impl_ != nullptr, "Var: use of an undefined Var"); }
  std::shared_ptr<VarImpl> impl_;
};

// ---- op registry: every differentiable op registers its name; the gradient-check
// test walks this list and fails for any op it has no case for. ----------------------

inline std::vector<std::string>& op_registry() {
  static std::vector<std::string> names;
  return names;
}
inline bool register_op(const char* name) {
  auto& r = op_registry();
  for (const auto& n : r)
    if (n == name) return true;
  r.emplace_back(name);
  return true;
}
#define NANODE_REGISTER_OP(name) \
  inline const bool nanode_registered_op_##name = ::nanode::register_op(#name)

/// The defined Vars among `vars`, in order (drops absent optional inputs such as a bias).
inline std::vector<Var> defined_vars(std::initializer_list<Var> vars) {
  std::vector<Var> out;
  out.reserve(vars.size());
  for (const auto& v : vars)
    if (v.defined()) out.push_back(v);
  return out;
}

/// Builds the result of op `name`: records `fn` as its backward when grad mode is
/// on and any input requires grad; otherwise returns a plain Var.
inline Var make_result(const char* name, Tensor out, const std::vector<Var>& inputs, BackwardFn fn) {
  bool any = false;
  if (GradMode::is_enabled())
    for (const auto& v : inputs) any = any || v.requires_grad();
  if (!any) return Var(std::move(out));
  auto impl = std::make_shared<VarImpl>();
  impl->data = std::move(out);
  impl->requires_grad = true;
  impl->is_leaf = false;
  impl->op = name;
  impl->inputs.reserve(inputs.size());
  for (const auto& v : inputs) impl->inputs.push_back(v.impl());
  impl->backward = std::move(fn);
  return Var(std::move(impl));
}

namespace detail {
inline void accumulate_grad(VarImpl& v, Tensor g, const char* from_op) {
  NANODE_CHECK(g.shape() == v.data.shape(), "backward: op '", from_op, "' produced a gradient of shape ", g.shape(),
               " for an input of shape ", v.data.shape());
  if (!v.grad.defined()) {
    v.grad = std::move(g);
    v.grad_shared = true;
  } else if (v.grad_shared) {
    v.grad = backend::binary(BinaryOp::Add, v.grad, g);
    v.grad_shared = false;
  } else {
    backend::axpy_(v.grad, 1.0, g);
  }
}
}  // namespace detail

/// Backpropagates from several roots at once, each seeded with its gradient (an
/// undefined gradient means ones, for a one-element root). Shared subgraphs run
/// once. The graph is freed afterwards unless retain_graph is true.
inline void backward(const std::vector<Var>& roots, const std::vector<Tensor>& grads, bool retain_graph = false) {
  NANODE_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " roots but ", grads.size(), " gradients");
  std::vector<std::shared_ptr<VarImpl>> order;
  std::unordered_set<VarImpl*> visited;
  std::vector<std::pair<std::shared_ptr<VarImpl>, size_t>> stack;
  std::vector<Tensor> seeds(roots.size());
  for (size_t r = 0; r < roots.size(); ++r) {
    const Var& root = roots[r];
    NANODE_CHECK(root.defined(), "backward: root ", r, " is an undefined Var");
    const auto& impl = root.impl();
    NANODE_CHECK(impl->requires_grad,
                 "backward: this Var does not require grad (no input of its graph requires grad)");
    NANODE_CHECK(!impl->graph_freed, "backward: the graph of this Var (made by '", impl->op,
                 "') was already freed by an earlier backward(); pass retain_graph=true to backpropagate twice");
    Tensor g = grads[r];
    if (!g.defined()) {
      NANODE_CHECK(root.numel() == 1, "backward: output of shape ", root.shape(),
                   " is not a scalar; pass a gradient of the same shape");
      g = Tensor::ones(root.shape(), root.dtype(), root.device());
    } else {
      NANODE_CHECK(g.shape() == root.shape(), "backward: gradient of shape ", g.shape(), " for an output of shape ",
                   root.shape());
      NANODE_CHECK(g.dtype() == root.dtype() && g.device() == root.device(), "backward: gradient is ", g.dtype(),
                   " on ", g.device(), ", output is ", root.dtype(), " on ", root.device());
    }
    seeds[r] = g;
    // Topological order of the non-leaf nodes that lead to a leaf requiring grad.
    // It holds owning pointers: freeing a node's inputs must not destroy a node
    // that is still to run.
    if (impl->is_leaf || !visited.insert(impl.get()).second) continue;
    stack.push_back({impl, 0});
    while (!stack.empty()) {
      auto& top = stack.back();
      if (top.second < top.first->inputs.size()) {
        const std::shared_ptr<VarImpl>& child = top.first->inputs[top.second++];
        if (child->requires_grad && !child->is_leaf && visited.insert(child.get()).second)
          stack.push_back({child, 0});
      } else {
        order.push_back(std::move(top.first));
        stack.pop_back();
      }
    }
  }
  // Roots may depend on each other; a reverse topological order over the union
  // of their DFS post-orders is still valid (each node follows its inputs).
  for (size_t r = 0; r < roots.size(); ++r) detail::accumulate_grad(*roots[r].impl(), seeds[r], "backward");
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    VarImpl* node = it->get();
    NANODE_CHECK(!node->graph_freed && node->backward, "backward: reached a node made by '", node->op,
                 "' whose graph was already freed; pass retain_graph=true to the earlier backward()");
    if (node->grad.defined()) {
      std::vector<bool> needs(node->inputs.size());
      for (size_t i = 0; i < needs.size(); ++i) needs[i] = node->inputs[i]->requires_grad;
      GradInputs gin(std::move(needs));
      node->backward(node->grad, gin);
      for (size_t i = 0; i < node->inputs.size(); ++i)
        if (gin.need(i) && gin[i].defined()) detail::accumulate_grad(*node->inputs[i], std::move(gin[i]), node->op);
    }
    if (!node->retains_grad) {
      node->grad = Tensor();
      node->grad_shared = false;
    }
    if (!retain_graph) {
      node->backward = nullptr;
      node->inputs.clear();
      node->graph_freed = true;
    }
  }
}

inline void Var::backward(const Tensor& grad, bool retain_graph) const {
  check();
  nanode::backward({*this}, {grad}, retain_graph);
}

}  // namespace nanode
