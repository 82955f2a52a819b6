#pragma once
// Reverse-mode autodiff on a dynamic graph. A Var is a Tensor plus its gradient
// and the node that made it; an op computes its forward and records its backward
// right beside it (see ops/). backward() runs the graph in reverse topological
// order, accumulates gradients into leaves, and frees the graph it has used.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nanode/autograd/anomaly.hpp"
#include "nanode/backend/dispatch.hpp"
#include "nanode/core/profile.hpp"

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

/// A gradient given as an outer product: z (x) g, of shape [z.size(), g.shape...].
struct OuterGrad {
  std::vector<double> z;
  Tensor g;
};

/// Outer-product gradient terms of one Var not summed yet: sum_s zs[s] (x) gs[s].
/// grad_stopping_terms hands them over as they are, so that a caller that sums
/// many vector-Jacobian products (the adjoint and reversible gradients) sums the
/// terms of many of them in one sweep.
struct OuterTerms {
  std::vector<std::vector<double>> zs;
  std::vector<Tensor> gs;
  int64_t bytes = 0;  ///< of the gs
  bool empty() const { return gs.empty(); }
};

/// What an op's backward fills: one gradient per input, only where needed.
class GradInputs {
 public:
  explicit GradInputs(std::vector<bool> needs)
      : needs_(std::move(needs)), grads_(needs_.size()), outers_(needs_.size()) {}
  bool need(size_t i) const { return needs_[i]; }
  void set(size_t i, Tensor g) {
    if (needs_[i]) grads_[i] = std::move(g);
  }
  /// Input i's gradient is z (x) g. The backward pass keeps such terms and sums
  /// them in one sweep when the input's gradient is needed, so the gradient of
  /// coefficients a solve combines at every step (basis_combine) costs one pass
  /// over them instead of one per step. On the CPU only (elsewhere: set()).
  void set_outer(size_t i, std::vector<double> z, Tensor g) {
    if (needs_[i]) outers_[i] = OuterGrad{std::move(z), std::move(g)};
  }
  Tensor& operator[](size_t i) { return grads_[i]; }
  OuterGrad& outer(size_t i) { return outers_[i]; }

 private:
  std::vector<bool> needs_;
  std::vector<Tensor> grads_;
  std::vector<OuterGrad> outers_;
};

using BackwardFn = std::function<void(const Tensor& grad_out, GradInputs& grads)>;

/// A number per VarImpl in creation order: the ODE gradient modes tell the Vars a
/// dynamics made during one evaluation from those it captured from outside.
inline uint64_t next_var_seq() {
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed);
}

struct VarImpl {
  const uint64_t seq = next_var_seq();
  std::string name;  // optional, for error messages (parameters carry their module name)
  Tensor data;
  Tensor grad;
  bool grad_shared = false;  // grad may alias a tensor held elsewhere: never add into it in place
  bool requires_grad = false;
  bool is_leaf = true;
  bool graph_freed = false;
  bool retains_grad = false;
  const char* op = "leaf";
  const std::string* scope = profile::current_scope();  // the profiler's scope that made it (when profiling)
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
  /// A name for error messages (Module::register_parameter sets it).
  Var& set_name(std::string name) {
    check();
    impl_->name = std::move(name);
    return *this;
  }
  const std::string& name() const {
    check();
    return impl_->name;
  }
  /// "'name' [shape]", or what made it and its shape when unnamed.
  std::string describe() const {
    if (!impl_) return "an undefined Var";
    std::string kind = !impl_->name.empty() ? "'" + impl_->name + "'"
                       : impl_->is_leaf     ? std::string("an unnamed leaf Var")
                                            : std::string("an unnamed Var made by '") + impl_->op + "'";
    return kind + " of shape " + impl_->data.shape().str();
  }

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
  if (anomaly::enabled()) {
    if (const int64_t bad = anomaly::first_nonfinite(out); bad >= 0) {
      std::vector<Tensor> in;
      std::vector<std::string> names;
      for (const auto& v : inputs) in.push_back(v.data()), names.push_back(v.describe());
      fail("anomaly: op '", name, "' produced a non-finite value (", anomaly::describe_bad(out, bad),
           ") from inputs: ", anomaly::describe_inputs(in, names));
    }
  }
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

/// A gradient being summed. `shared`: the tensor may alias one held elsewhere (an
/// op's backward may pass its incoming gradient through), so the first sum into it
/// makes a new tensor and later sums add in place.
struct GradSlot {
  Tensor g;
  bool shared = false;
};

inline void add_into(Tensor& acc, bool& shared, Tensor g, const Shape& expect, const char* from_op) {
  NANODE_CHECK(g.shape() == expect, "backward: op '", from_op, "' produced a gradient of shape ", g.shape(),
               " for an input of shape ", expect);
  if (!acc.defined()) {
    acc = std::move(g);
    shared = true;
  } else if (shared) {
    acc = backend::binary(BinaryOp::Add, acc, g);
    shared = false;
  } else {
    backend::axpy_(acc, 1.0, g);
  }
}

inline void accumulate_grad(VarImpl& v, Tensor g, const char* from_op) {
  add_into(v.grad, v.grad_shared, std::move(g), v.data.shape(), from_op);
}

/// The seed of root r: `g`, checked against the root, or ones for a one-element root.
inline Tensor seed_for(const char* api, const Var& root, size_t r, const Tensor& g) {
  NANODE_CHECK(root.defined(), api, ": output ", r, " is an undefined Var");
  const auto& impl = root.impl();
  NANODE_CHECK(impl->requires_grad, api, ": output ", r,
               " does not require grad (no input of its graph requires grad)");
  NANODE_CHECK(!impl->graph_freed, api, ": the graph of output ", r, " (made by '", impl->op,
               "') was already freed by an earlier backward() or grad(); pass retain_graph=true to the earlier "
               "call to go through it twice");
  if (!g.defined()) {
    NANODE_CHECK(root.numel() == 1, api, ": output ", r, " of shape ", root.shape(),
                 " is not a scalar; pass a gradient of the same shape");
    return Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  NANODE_CHECK(g.shape() == root.shape(), api, ": gradient of shape ", g.shape(), " for output ", r, " of shape ",
               root.shape());
  NANODE_CHECK(g.dtype() == root.dtype() && g.device() == root.device(), api, ": gradient ", r, " is ", g.dtype(),
               " on ", g.device(), ", output is ", root.dtype(), " on ", root.device());
  return g;
}

/// Called by backward() (not grad()) with each leaf that requires grad as soon as
/// its .grad is final for this pass: the last node that uses it has run (or, for
/// outer-product gradients, when they are summed at the end). The data-parallel
/// gradient reducer starts its transfers from it. One per thread.
inline std::function<void(VarImpl*)>*& leaf_ready_hook() {
  thread_local std::function<void(VarImpl*)>* hook = nullptr;
  return hook;
}

/// The one reverse pass behind backward() and grad().
///
/// backward() (sinks == nullptr): runs every node reachable from the roots and
/// accumulates into the .grad of leaves that require grad (and of non-leaves that
/// retain_grad()).
///
/// grad() (sinks given): runs only the nodes that lead to a sink; the sinks'
/// gradients go to `sink_grads` (indexed as `sinks` maps them) and no .grad is
/// touched. With `stop_at_sinks` a sink is never expanded: the gradient of each
/// sink counts only paths that do not pass through another sink (the ODE modes
/// need this: a captured Var and a Var it was computed from are both inputs of
/// the solve's node, and the outer pass adds the path between them). Without it a
/// non-leaf sink records the total gradient arriving at it and the pass goes on
/// through it, as torch.autograd.grad does.
///
/// Unless retain_graph, each node that ran is freed afterwards, and only those.
/// Anomaly mode: the gradients node's backward produced must be finite.
inline void check_backward_finite(const VarImpl& node, const Tensor& g, GradInputs& gin) {
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    if (!gin.need(i)) continue;
    for (const Tensor* t : {&gin[i], &gin.outer(i).g}) {
      if (!t->defined()) continue;
      const int64_t bad = anomaly::first_nonfinite(*t);
      if (bad < 0) continue;
      std::vector<Tensor> in;
      std::vector<std::string> names;
      for (const auto& p : node.inputs) in.push_back(p->data), names.push_back(Var(p).describe());
      fail("anomaly: the backward of op '", node.op, "' produced a non-finite gradient for its input ", i, " (",
           anomaly::describe_bad(*t, bad), ") from ",
           anomaly::first_nonfinite(g) >= 0 ? "an incoming gradient that was already non-finite"
                                            : "a finite incoming gradient",
           "; its inputs: ", anomaly::describe_inputs(in, names), "; its output ", node.data.shape().str());
    }
  }
}

/// run_backward (described above check_backward_finite). `sink_terms` (grad()
/// with stop_at_sinks only): the outer-product terms of each sink go there
/// unsummed (indexed as `sinks` maps them); `sink_grads` then holds the dense rest.
inline void run_backward(const char* api, const std::vector<Var>& roots, const std::vector<Tensor>& grads,
                         bool retain_graph, const std::unordered_map<VarImpl*, size_t>* sinks,
                         std::vector<GradSlot>* sink_grads, bool stop_at_sinks = false,
                         std::vector<OuterTerms>* sink_terms = nullptr) {
  NANODE_CHECK(!sink_terms || (sinks && stop_at_sinks), api, ": unsummed terms need sinks that stop the pass");
  NANODE_CHECK(roots.size() == grads.size(), api, ": ", roots.size(), " outputs but ", grads.size(), " gradients");
  profile::PassTimer pass_timer;
  auto is_sink = [&](VarImpl* v) { return sinks && sinks->count(v) != 0; };
  // A sink whose gradient is final when it is delivered (not run as a node).
  auto terminal_sink = [&](VarImpl* v) { return is_sink(v) && (stop_at_sinks || v->is_leaf); };
  std::vector<Tensor> seeds(roots.size());
  for (size_t r = 0; r < roots.size(); ++r) seeds[r] = seed_for(api, roots[r], r, grads[r]);

  // Post-order DFS over the non-leaf nodes that require grad (not terminal sinks).
  // `order` holds owning pointers: freeing a node's inputs must not destroy a node
  // that is still to run. `leads`: one of the node's inputs is a sink or leads to
  // one, so its backward must run (always, for backward()).
  std::vector<std::shared_ptr<VarImpl>> order;
  std::unordered_map<VarImpl*, bool> leads;
  std::vector<std::pair<std::shared_ptr<VarImpl>, size_t>> stack;
  auto expandable = [&](const std::shared_ptr<VarImpl>& v) {
    return v->requires_grad && !v->is_leaf && !terminal_sink(v.get());
  };
  auto reaches = [&](VarImpl* in) {  // does a gradient delivered to `in` reach a sink?
    if (!in->requires_grad) return false;
    if (is_sink(in)) return true;
    if (in->is_leaf) return sinks == nullptr;
    auto it = leads.find(in);
    return it != leads.end() && it->second;
  };
  for (const auto& root : roots) {
    const auto& impl = root.impl();
    if (!expandable(impl) || leads.count(impl.get())) continue;
    leads.emplace(impl.get(), false);
    stack.push_back({impl, 0});
    while (!stack.empty()) {
      auto& top = stack.back();
      VarImpl* node = top.first.get();
      NANODE_CHECK(!node->graph_freed, api, ": reached a node made by '", node->op,
                   "' whose graph was already freed; pass retain_graph=true to the earlier backward() or grad()");
      if (top.second < node->inputs.size()) {
        const std::shared_ptr<VarImpl>& child = node->inputs[top.second++];
        if (expandable(child) && leads.emplace(child.get(), false).second) stack.push_back({child, 0});
      } else {
        bool l = sinks == nullptr;
        for (const auto& in : node->inputs) l = l || reaches(in.get());
        leads[node] = l;
        order.push_back(std::move(top.first));
        stack.pop_back();
      }
    }
  }

  // Leaves that wait for the nodes still to run (only with a leaf-ready hook).
  std::function<void(VarImpl*)>* ready_hook = sinks ? nullptr : leaf_ready_hook();
  std::unordered_map<VarImpl*, int64_t> leaf_uses;
  if (ready_hook)
    for (const auto& n : order)
      for (const auto& in : n->inputs)
        if (in->is_leaf && in->requires_grad) ++leaf_uses[in.get()];

  std::unordered_map<VarImpl*, GradSlot> pending;
  // Outer-product gradients (GradInputs::set_outer) per Var, summed when needed;
  // `dense` holds what was summed early to bound the memory the terms hold.
  struct Deferred {
    std::vector<std::vector<double>> zs;
    std::vector<Tensor> gs;
    int64_t bytes = 0;
    Tensor dense;
    bool dense_shared = false;
  };
  std::unordered_map<VarImpl*, Deferred> deferred;
  auto sum_terms = [](Deferred& d, const Shape& shape) {
    if (d.gs.empty()) return;
    Tensor s = backend::outer_sum(d.zs, d.gs, shape);
    add_into(d.dense, d.dense_shared, std::move(s), shape, "basis_combine");
    d.zs.clear(), d.gs.clear(), d.bytes = 0;
  };
  auto deliver_outer = [&](VarImpl* v, OuterGrad o, const char* from) {
    std::vector<int64_t> dims = o.g.shape().vec();
    dims.insert(dims.begin(), static_cast<int64_t>(o.z.size()));
    NANODE_CHECK(Shape(dims) == v->data.shape(), "backward: op '", from, "' produced a gradient of shape ", Shape(dims),
                 " for an input of shape ", v->data.shape());
    Deferred& d = deferred[v];
    d.bytes += o.g.nbytes();
    d.zs.push_back(std::move(o.z));
    d.gs.push_back(std::move(o.g));
    // Terms beyond 8x the gradient's own size (at least 64 MiB) are summed now.
    if (d.bytes > std::max<int64_t>(int64_t{64} << 20, 8 * v->data.nbytes())) sum_terms(d, v->data.shape());
  };
  auto take_deferred = [&](VarImpl* v) {
    Tensor out;
    if (auto it = deferred.find(v); it != deferred.end()) {
      sum_terms(it->second, v->data.shape());
      out = std::move(it->second.dense);
      deferred.erase(it);
    }
    return out;
  };
  auto deliver = [&](VarImpl* v, Tensor g, const char* from) {
    if (terminal_sink(v)) {
      GradSlot& s = (*sink_grads)[sinks->at(v)];
      add_into(s.g, s.shared, std::move(g), v->data.shape(), from);
    } else if (v->is_leaf) {
      if (!sinks) accumulate_grad(*v, std::move(g), from);
    } else {
      GradSlot& s = pending[v];
      add_into(s.g, s.shared, std::move(g), v->data.shape(), from);
    }
  };
  for (size_t r = 0; r < roots.size(); ++r) deliver(roots[r].impl().get(), seeds[r], api);

  // Roots may depend on each other; a reverse topological order over the union
  // of their DFS post-orders is still valid (each node follows its inputs).
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    VarImpl* node = it->get();
    const bool run = leads[node];
    if (!run && !is_sink(node)) continue;
    Tensor g;
    bool g_shared = false;
    if (auto p = pending.find(node); p != pending.end()) {
      g = std::move(p->second.g);
      g_shared = p->second.shared;
      pending.erase(p);
    }
    if (Tensor dg = take_deferred(node); dg.defined()) add_into(g, g_shared, std::move(dg), node->data.shape(), node->op);
    if (g.defined() && is_sink(node)) {  // a non-leaf input of grad(): its total gradient
      GradSlot& s = (*sink_grads)[sinks->at(node)];
      add_into(s.g, s.shared, g, node->data.shape(), node->op);
    }
    if (!run) continue;
    if (g.defined()) {
      if (!sinks && node->retains_grad) accumulate_grad(*node, g, node->op);
      std::vector<bool> needs(node->inputs.size());
      for (size_t i = 0; i < needs.size(); ++i) needs[i] = reaches(node->inputs[i].get());
      GradInputs gin(std::move(needs));
      if (profile::enabled()) {
        profile::BackwardTimer timer(node->scope);
        node->backward(g, gin);
      } else {
        node->backward(g, gin);
      }
      if (anomaly::enabled()) check_backward_finite(*node, g, gin);
      for (size_t i = 0; i < node->inputs.size(); ++i) {
        if (gin.need(i) && gin[i].defined()) deliver(node->inputs[i].get(), std::move(gin[i]), node->op);
        if (gin.need(i) && gin.outer(i).g.defined())
          deliver_outer(node->inputs[i].get(), std::move(gin.outer(i)), node->op);
      }
    }
    if (ready_hook)
      for (const auto& in : node->inputs)
        if (in->is_leaf && in->requires_grad && --leaf_uses[in.get()] == 0 && !deferred.count(in.get()))
          (*ready_hook)(in.get());
    if (!retain_graph) {
      node->backward = nullptr;
      node->inputs.clear();
      node->graph_freed = true;
    }
  }
  // Outer-product terms left over belong to leaves and to sinks not expanded.
  std::vector<VarImpl*> rest;
  for (const auto& [v, d] : deferred) rest.push_back(v);
  // In the order the Vars were made, not the map's (which differs between runs).
  std::sort(rest.begin(), rest.end(), [](const VarImpl* a, const VarImpl* b) { return a->seq < b->seq; });
  for (VarImpl* v : rest)
    if (sink_terms && terminal_sink(v)) {
      Deferred& d = deferred[v];
      OuterTerms& out = (*sink_terms)[sinks->at(v)];
      for (size_t i = 0; i < d.gs.size(); ++i) {
        out.bytes += d.gs[i].nbytes();
        out.zs.push_back(std::move(d.zs[i]));
        out.gs.push_back(std::move(d.gs[i]));
      }
      if (d.dense.defined()) deliver(v, std::move(d.dense), "basis_combine");
      deferred.erase(v);
    } else if (v->is_leaf || terminal_sink(v)) {
      deliver(v, take_deferred(v), "basis_combine");
      if (ready_hook && v->is_leaf) (*ready_hook)(v);
    }
}

/// grad() with every input a wall: see run_backward's stop_at_sinks. What the ODE
/// gradient modes use for their vector-Jacobian products.
inline std::vector<Tensor> grad_stopping(const std::vector<Var>& outputs, const std::vector<Tensor>& grad_outputs,
                                         const std::vector<Var>& inputs, bool retain_graph = false);
/// grad_stopping with each input's outer-product terms left unsummed in `terms`
/// (resized to inputs.size()); its gradient is the returned dense part (undefined
/// when there is none) plus those terms.
inline std::vector<Tensor> grad_stopping_terms(const std::vector<Var>& outputs,
                                               const std::vector<Tensor>& grad_outputs,
                                               const std::vector<Var>& inputs, std::vector<OuterTerms>& terms);

}  // namespace detail

/// Backpropagates from several roots at once, each seeded with its gradient (an
/// undefined gradient means ones, for a one-element root), accumulating into the
/// .grad of the leaves. Shared subgraphs run once. The graph is freed afterwards
/// unless retain_graph is true.
inline void backward(const std::vector<Var>& roots, const std::vector<Tensor>& grads, bool retain_graph = false) {
  detail::run_backward("backward", roots, grads, retain_graph, nullptr, nullptr);
}

/// Installs a leaf-ready callback (see detail::leaf_ready_hook) on this thread
/// while armed.
class LeafReadyHook {
 public:
  LeafReadyHook() = default;
  LeafReadyHook(const LeafReadyHook&) = delete;
  LeafReadyHook& operator=(const LeafReadyHook&) = delete;
  ~LeafReadyHook() { disarm(); }
  void arm(std::function<void(VarImpl*)> fn) {
    disarm();
    fn_ = std::move(fn);
    prev_ = detail::leaf_ready_hook();
    detail::leaf_ready_hook() = &fn_;
    armed_ = true;
  }
  void disarm() {
    if (!armed_) return;
    detail::leaf_ready_hook() = prev_;
    armed_ = false;
  }

 private:
  std::function<void(VarImpl*)> fn_;
  std::function<void(VarImpl*)>* prev_ = nullptr;
  bool armed_ = false;
};

namespace detail {
inline std::vector<Tensor> grad_impl(const std::vector<Var>& outputs, const std::vector<Tensor>& grad_outputs,
                                     const std::vector<Var>& inputs, bool retain_graph, bool allow_unused,
                                     bool stop_at_inputs, std::vector<OuterTerms>* terms = nullptr) {
  NANODE_CHECK(!outputs.empty(), "grad: no outputs given");
  std::unordered_map<VarImpl*, size_t> sinks;
  for (size_t i = 0; i < inputs.size(); ++i) {
    NANODE_CHECK(inputs[i].defined(), "grad: input ", i, " is an undefined Var");
    NANODE_CHECK(inputs[i].requires_grad(), "grad: input ", i, " (", inputs[i].describe(),
                 ") does not require grad");
    sinks.emplace(inputs[i].impl().get(), sinks.size());
  }
  std::vector<GradSlot> got(sinks.size());
  std::vector<Tensor> seeds = grad_outputs;
  if (seeds.empty()) seeds.resize(outputs.size());
  std::vector<OuterTerms> got_terms(terms ? sinks.size() : 0);
  run_backward("grad", outputs, seeds, retain_graph, &sinks, &got, stop_at_inputs, terms ? &got_terms : nullptr);
  std::vector<Tensor> out(inputs.size());
  if (terms) terms->assign(inputs.size(), OuterTerms{});
  for (size_t i = 0; i < inputs.size(); ++i) {
    out[i] = got[sinks.at(inputs[i].impl().get())].g;
    if (terms) {
      (*terms)[i] = got_terms[sinks.at(inputs[i].impl().get())];  // a Var given twice gets them twice, as out does
      if (!(*terms)[i].empty()) continue;
    }
    NANODE_CHECK(out[i].defined() || allow_unused, "grad: input ", i, " (", inputs[i].describe(),
                 ") was not used to compute the outputs; pass allow_unused = true to get an undefined gradient for it");
  }
  return out;
}

inline std::vector<Tensor> grad_stopping(const std::vector<Var>& outputs, const std::vector<Tensor>& grad_outputs,
                                         const std::vector<Var>& inputs, bool retain_graph) {
  return grad_impl(outputs, grad_outputs, inputs, retain_graph, /*allow_unused=*/true, /*stop_at_inputs=*/true);
}

inline std::vector<Tensor> grad_stopping_terms(const std::vector<Var>& outputs,
                                               const std::vector<Tensor>& grad_outputs,
                                               const std::vector<Var>& inputs, std::vector<OuterTerms>& terms) {
  return grad_impl(outputs, grad_outputs, inputs, /*retain_graph=*/false, /*allow_unused=*/true,
                   /*stop_at_inputs=*/true, &terms);
}
}  // namespace detail

/// d outputs / d inputs, as torch.autograd.grad gives it: the sum over outputs of
/// the vector-Jacobian products with `grad_outputs` (an undefined one means ones,
/// for a one-element output), one gradient per input. No .grad is read or
/// written. Only nodes that lead to an input run: the pass stops where no input
/// lies further back (an input's producer is visited only when another input
/// lies behind it; then, as in PyTorch, the gradient of the later input includes
/// the paths through the earlier one). Unless retain_graph, the nodes that ran
/// are freed, and no others. An input the outputs do not depend on is an error,
/// or an undefined Tensor with allow_unused. The same Var given twice gets the
/// same gradient twice.
inline std::vector<Tensor> grad(const std::vector<Var>& outputs, const std::vector<Tensor>& grad_outputs,
                                const std::vector<Var>& inputs, bool retain_graph = false, bool allow_unused = false) {
  return detail::grad_impl(outputs, grad_outputs, inputs, retain_graph, allow_unused, /*stop_at_inputs=*/false);
}

/// grad() of one output (a one-element output when `grad_output` is undefined).
inline std::vector<Tensor> grad(const Var& output, const std::vector<Var>& inputs, const Tensor& grad_output = Tensor(),
                                bool retain_graph = false, bool allow_unused = false) {
  return grad(std::vector<Var>{output}, std::vector<Tensor>{grad_output}, inputs, retain_graph, allow_unused);
}

inline void Var::backward(const Tensor& grad, bool retain_graph) const {
  check();
  nanode::backward({*this}, {grad}, retain_graph);
}

}  // namespace nanode
