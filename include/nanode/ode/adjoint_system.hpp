#pragma once
// The sums of vector-Jacobian products that the memory-saving gradient modes keep
// across steps: GradSum (the reversible gradient's parameter sums) and the
// adjoint's augmented state with its deferred basis-coefficient terms. Included
// by ode/gradient_modes.hpp.
#include <algorithm>
#include <memory>
#include <vector>

#include "nanode/ode/odeint.hpp"

namespace nanode::ode::detail {

/// `dense` plus the outer-product terms `t`, summed now (undefined if both are
/// empty): for the state's own gradient, which the next step needs whole.
inline Tensor summed(Tensor dense, const nanode::OuterTerms& t, const Shape& shape) {
  if (t.empty()) return dense;
  Tensor s = backend::outer_sum(t.zs, t.gs, shape);
  return dense.defined() ? backend::binary(BinaryOp::Add, dense, s) : s;
}

/// One captured Var's gradient summed over many vector-Jacobian products: dense
/// parts are added in place; outer-product terms (the gradient of basis
/// coefficients, z(t) (x) dW per use) are kept and summed in one sweep once they
/// hold half the gradient's bytes. A step then costs a pass over its W(t)
/// gradient, not over all the coefficients (the reversible gradient).
struct GradSum {
  Tensor dense;
  bool shared = false;
  nanode::OuterTerms pending;

  void add(Tensor g, const Shape& shape, const char* op) {
    if (g.defined()) nanode::detail::add_into(dense, shared, std::move(g), shape, op);
  }
  /// Terms of the gradient of `var` (the Var's own data: shape and size).
  void add_terms(nanode::OuterTerms t, const Tensor& var) {
    if (t.empty()) return;
    // The sum from the first term on: the memory a pass holds does not depend on
    // how many steps it has (no sum appears mid-pass as the steps grow).
    if (!dense.defined()) dense = Tensor::zeros(var.shape(), var.dtype(), var.device()), shared = false;
    for (size_t i = 0; i < t.gs.size(); ++i) {
      pending.bytes += t.gs[i].nbytes();
      pending.zs.push_back(std::move(t.zs[i]));
      pending.gs.push_back(std::move(t.gs[i]));
    }
    if (2 * pending.bytes > static_cast<int64_t>(var.nbytes())) settle(var.shape());
  }
  /// Sums the pending terms into the dense part.
  void settle(const Shape& shape) {
    if (pending.empty()) return;
    if (!dense.defined()) {
      dense = backend::outer_sum(pending.zs, pending.gs, shape);
      shared = false;
    } else {
      if (shared || !dense.sole_owner()) dense = dense.clone(), shared = false;
      backend::outer_sum_add_(dense, pending.zs, pending.gs);
    }
    pending = nanode::OuterTerms{};
  }
  Tensor take(const Shape& shape) {
    settle(shape);
    return dense;
  }
};

/// An outer-product term of an adjoint parameter gradient, in a list shared by
/// the states of a step (a combination only puts terms in front).
struct AdjointTerm {
  std::vector<double> z;
  Tensor g;
  int64_t bytes = 0;  ///< of g and every term after it
  std::shared_ptr<const AdjointTerm> next;
};

/// The adjoint's augmented state [x, a, g_1..g_P] with
/// dx/dt = f, da/dt = -a df/dx, dg_i/dt = -a df/dtheta_i. Components 1.. hold the
/// vector-Jacobian products with a + sign; comb applies the minus. A g_i is a
/// dense part plus outer-product terms not summed yet (basis coefficients: each
/// evaluation's z(t) (x) dW); settle() sums them in one sweep every few steps, so
/// that a step does not pass over all the coefficients twice.
struct AdjointSystem {
  struct State {
    std::vector<Tensor> v;                                   ///< x, a, then the g_i's dense parts
    std::vector<std::shared_ptr<const AdjointTerm>> terms;  ///< per g_i, newest first
  };
  Dynamics& f;
  const Captured& captured;
  Stats& stats;

  /// The state at the end time: the parameter gradients start at zero (summed in
  /// place from the first step on, so the memory does not depend on the steps).
  State start(const Tensor& x, const Tensor& a) const {
    State s;
    s.v.resize(2 + captured.vars.size());
    s.v[0] = x;
    s.v[1] = a;
    for (size_t p = 0; p < captured.vars.size(); ++p) {
      const Tensor& w = captured.vars[p].data();
      s.v[2 + p] = Tensor::zeros(w.shape(), w.dtype(), w.device());
    }
    s.terms.resize(captured.vars.size());
    return s;
  }
  State eval(double t, const State& s) {
    ++stats.backward_evals;
    EnableGradGuard eg;
    const uint64_t boundary = next_var_seq();
    Var xl(s.v[0], true);
    Var fx = f.forward(t, xl);
    NANODE_CHECK(fx.defined() && fx.shape() == s.v[0].shape(), "odeint: dynamics returned shape ",
                 fx.defined() ? fx.shape().str() : std::string("undefined"), " for a state of shape ",
                 s.v[0].shape());
    captured.check({fx}, boundary, t);
    State d;
    d.v.resize(s.v.size());
    d.terms.resize(captured.vars.size());
    d.v[0] = fx.data();
    if (fx.requires_grad()) {
      std::vector<Var> inputs{xl};
      inputs.insert(inputs.end(), captured.vars.begin(), captured.vars.end());
      std::vector<nanode::OuterTerms> terms;
      std::vector<Tensor> g = nanode::detail::grad_stopping_terms({fx}, {s.v[1]}, inputs, terms);
      for (size_t i = 0; i < g.size(); ++i) d.v[1 + i] = std::move(g[i]);
      d.v[1] = summed(d.v[1], terms[0], s.v[0].shape());  // terms if the state is combined as coefficients
      for (size_t p = 0; p < captured.vars.size(); ++p) {
        auto& tp = terms[1 + p];
        for (size_t q = 0; q < tp.gs.size(); ++q)
          d.terms[p] = std::make_shared<const AdjointTerm>(
              AdjointTerm{std::move(tp.zs[q]), tp.gs[q],
                          static_cast<int64_t>(tp.gs[q].nbytes()) + (d.terms[p] ? d.terms[p]->bytes : 0),
                          d.terms[p]});
      }
    }
    return d;
  }
  State eval_comb(double t, const State& xin, State& k_out, const State* x, const std::vector<const State*>& ks,
                  const std::vector<double>& cs, double c_new) {
    k_out = eval(t, xin);
    std::vector<const State*> all(ks);
    std::vector<double> call(cs);
    all.push_back(&k_out);
    call.push_back(c_new);
    return comb(x, all, call);
  }
  State comb(const State* x, const std::vector<const State*>& ks, const std::vector<double>& cs) {
    const size_t n = x ? x->v.size() : ks.front()->v.size();
    State out;
    out.v.resize(n);
    // Dense parts: every component some term has, in one pass (one launch on
    // CUDA): x with +cs, the vector-Jacobian products with -cs. A component no
    // term has keeps x's tensor.
    std::vector<size_t> comp;
    for (size_t c = 0; c < n; ++c) {
      bool any = false;
      for (const State* k : ks) any = any || k->v[c].defined();
      if (any) comp.push_back(c);
      else if (x) out.v[c] = x->v[c];
    }
    if (!comp.empty()) {
      std::vector<Tensor> xs(comp.size()), like(comp.size());
      std::vector<double> sign(comp.size());
      std::vector<std::vector<Tensor>> kt(ks.size(), std::vector<Tensor>(comp.size()));
      for (size_t i = 0; i < comp.size(); ++i) {
        const size_t c = comp[i];
        if (x) xs[i] = x->v[c];
        like[i] = c >= 2 ? captured.vars[c - 2].data() : (x ? x->v[0] : Tensor());
        sign[i] = c == 0 ? 1.0 : -1.0;
        for (size_t j = 0; j < ks.size(); ++j) {
          kt[j][i] = ks[j]->v[c];
          if (!like[i].defined() && kt[j][i].defined()) like[i] = kt[j][i];
        }
      }
      std::vector<Tensor> r = backend::multi_lincomb(xs, kt, cs, sign, like);
      for (size_t i = 0; i < comp.size(); ++i) out.v[comp[i]] = std::move(r[i]);
    }
    // Terms: x's list, then each term's with its coefficient folded into z.
    const size_t P = captured.vars.size();
    out.terms.resize(P);
    for (size_t p = 0; p < P; ++p) {
      std::shared_ptr<const AdjointTerm> list = x ? x->terms[p] : nullptr;
      for (size_t j = 0; j < ks.size(); ++j)
        for (const AdjointTerm* t = ks[j]->terms[p].get(); t; t = t->next.get()) {
          std::vector<double> z = t->z;
          for (double& zk : z) zk *= -cs[j];
          const int64_t b = t->g.nbytes() + (list ? list->bytes : 0);
          list = std::make_shared<const AdjointTerm>(AdjointTerm{std::move(z), t->g, b, std::move(list)});
        }
      out.terms[p] = std::move(list);
    }
    return out;
  }
  /// Sums a g_i's terms into its dense part once they hold half its bytes, or all
  /// of them: the driver calls it after each accepted step (the combinations
  /// inside a step only add that step's terms). In place when no other state
  /// shares the dense part.
  void settle(State& s, bool all) const {
    for (size_t p = 0; p < s.terms.size(); ++p) {
      const AdjointTerm* head = s.terms[p].get();
      if (!head) continue;
      const int64_t size = static_cast<int64_t>(captured.vars[p].data().nbytes());
      if (!all && 2 * head->bytes <= size) continue;
      nanode::OuterTerms t;
      for (const AdjointTerm* q = head; q; q = q->next.get()) t.zs.push_back(q->z), t.gs.push_back(q->g);
      std::reverse(t.zs.begin(), t.zs.end());  // oldest first
      std::reverse(t.gs.begin(), t.gs.end());
      Tensor& d = s.v[2 + p];
      if (!d.defined()) {
        d = backend::outer_sum(t.zs, t.gs, captured.vars[p].shape());
      } else {
        if (!d.sole_owner()) d = d.clone();
        backend::outer_sum_add_(d, t.zs, t.gs);
      }
      // Unlinked one by one: a long list must not free itself recursively.
      std::shared_ptr<const AdjointTerm> rest = std::move(s.terms[p]);
      while (rest && rest.use_count() == 1) rest = rest->next;
    }
  }
  /// Error norm over x and a (the parameter gradients are quadratures of them).
  double norm(const State& v, const State& a, const State& b, double atol, double rtol) {
    double ss = 0;
    int64_t n = 0;
    for (size_t c = 0; c < 2; ++c) {
      if (!v.v[c].defined()) continue;
      const Tensor& ta = a.v[c].defined() ? a.v[c] : v.v[c];
      const Tensor& tb = b.v[c].defined() ? b.v[c] : v.v[c];
      const double r = backend::scaled_rms(v.v[c], ta, tb, atol, rtol);
      ss += r * r * static_cast<double>(v.v[c].numel());
      n += v.v[c].numel();
    }
    return n ? std::sqrt(ss / static_cast<double>(n)) : 0.0;
  }
  static bool defined(const State& s) { return !s.v.empty(); }
};

}  // namespace nanode::ode::detail
