#pragma once
// odeint: explicit Runge-Kutta integration of dx/dt = f(t, x) with outputs at
// requested times, fixed or adaptive steps, and three ways to get gradients:
//   Direct      backprop through every step (memory O(L));
//   Checkpoint  store x every m steps, recompute each segment in backward (exact, O(L/m + m));
//   Adjoint     integrate [x, a, dL/dtheta] backward with vector-Jacobian products of
//               f on a throw-away graph (memory O(1) in L; converges to Direct as dt -> 0).
// torchdiffeq's odeint(func, y0, t, method, rtol, atol, options) is the model.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "nanode/nn/module.hpp"
#include "nanode/ode/schedule.hpp"
#include "nanode/ode/tableau.hpp"
#include "nanode/ops/fused.hpp"
#include "nanode/ops/shape.hpp"

namespace nanode::ode {

/// The right-hand side f(t, x) of an ODE, with its parameters as a Module.
class Dynamics : public nn::Module {
 public:
  virtual Var forward(double t, const Var& x) = 0;
  /// Dynamics that end in a bias and an activation may say so: when this returns
  /// true, forward_preactivation(t, x, bias, act) returns pre with
  /// forward(t, x) == act(pre + bias), and the solvers fuse that bias and
  /// activation with the Runge-Kutta stage that follows (one pass; one kernel on
  /// CUDA). act is tanh or sigmoid; bias is [C] along the last axis, or undefined.
  virtual bool has_preactivation() const { return false; }
  virtual Var forward_preactivation(double /*t*/, const Var& /*x*/, Var& /*bias*/, UnaryOp& /*act*/) {
    fail("Dynamics::forward_preactivation: this dynamics does not split off its last bias and activation");
  }
  /// Without a graph, dynamics whose pre-activation is a product pre = h W^T may
  /// return h [..., in] and wt = W^T [in, out] (bias and act as above) instead of
  /// computing pre, and the solvers run the product together with the stage
  /// (backend::linear_bias_act_lincomb). Its bits are those of forward_preactivation
  /// followed by the stage where cpu::linear_stage_takes the shapes (and a bias is
  /// given); return false elsewhere, or when not available at t (then
  /// forward_preactivation is used).
  virtual bool linear_preactivation(double /*t*/, const Var& /*x*/, Tensor& /*h*/, Tensor& /*wt*/, Var& /*bias*/,
                                    UnaryOp& /*act*/) {
    return false;
  }
};

/// How gradients flow through a solve.
///   Direct      backprop through every step: exact for the discrete solve, memory O(L).
///   Checkpoint  store x every m steps, recompute segments: exact, memory O(L/m + m).
///   Adjoint     the continuous adjoint: memory O(1), error O(h^p) against Direct.
///   Reversible  method "alf" only: each step is inverted in the backward pass, so it
///               is exact (to rounding) at memory O(1).
enum class Gradient { Direct, Adjoint, Checkpoint, Reversible };

inline Gradient parse_gradient(const std::string& s) {
  if (s == "direct") return Gradient::Direct;
  if (s == "adjoint") return Gradient::Adjoint;
  if (s == "checkpoint") return Gradient::Checkpoint;
  if (s == "reversible") return Gradient::Reversible;
  fail("ode: unknown gradient mode '", s, "' (valid: direct, adjoint, checkpoint, reversible)");
}
inline const char* gradient_name(Gradient g) {
  switch (g) {
    case Gradient::Direct: return "direct";
    case Gradient::Adjoint: return "adjoint";
    case Gradient::Checkpoint: return "checkpoint";
    case Gradient::Reversible: return "reversible";
  }
  return "?";
}

/// The methods odeint takes: the Butcher tableaus, and "alf", the asynchronous
/// leapfrog of MALI (second order, fixed steps, invertible: Gradient::Reversible).
inline const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names{"euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "alf"};
  return names;
}

/// Checks that `method` exists and takes gradient mode `g` (odeint checks this
/// too; trainers call it before building a model, to fail before any work).
inline void check_method(const std::string& method, Gradient g) {
  const auto& ms = method_names();
  if (std::find(ms.begin(), ms.end(), method) == ms.end()) {
    std::string valid;
    for (const auto& m : ms) valid += (valid.empty() ? "" : ", ") + m;
    fail("odeint: unknown method '", method, "' (valid: ", valid, ")");
  }
  if (method == "alf")
    NANODE_CHECK(g == Gradient::Direct || g == Gradient::Reversible, "odeint: method 'alf' takes gradient = direct "
                 "or reversible (reversible is already exact at constant memory), not ", gradient_name(g));
  else
    NANODE_CHECK(g != Gradient::Reversible, "odeint: reversible gradients need method 'alf' (its steps invert "
                 "exactly); method '", method, "' takes direct, checkpoint or adjoint gradients");
}

/// One line on what a gradient mode gives with this method and step count: what a
/// trainer prints so that its user knows whether the gradients are exact.
/// docs/gradients.md has the measured errors behind it.
inline std::string gradient_summary(const std::string& method, Gradient g, int64_t steps) {
  const std::string solve = (steps > 0 ? std::to_string(steps) + " " : std::string("adaptive ")) + method + " steps";
  switch (g) {
    case Gradient::Direct:
      return "direct: exact gradients of the " + solve + " (backprop; activation memory grows with the steps)";
    case Gradient::Checkpoint:
      return "checkpoint: exact gradients of the " + solve + " (recomputed from stored states; memory ~ sqrt(steps))";
    case Gradient::Reversible:
      return "reversible: exact gradients of the " + solve + " (each step inverted; memory constant in the steps)";
    case Gradient::Adjoint:
      return "adjoint: APPROXIMATE gradients (the continuous adjoint is off from backprop through the " + solve +
             " by O(h^order); on docs/gradients.md's T-NANODE 48% at 4 Euler steps, 2% at 100, 1e-4 at 4 RK4 "
             "steps); memory constant in the steps";
  }
  return "";
}

struct Options {
  std::string method = "rk4";
  /// Fixed steps: this many uniform steps over [t.front(), t.back()] ...
  int64_t steps = 0;
  /// ... or uniform steps of at most this size. With neither, the method must be
  /// adaptive (bosh3, dopri5) and rtol/atol control the step.
  double step_size = 0.0;
  double rtol = 1e-6, atol = 1e-8;
  int64_t max_steps = 100000;
  double first_step = 0.0;  ///< adaptive: 0 picks one automatically
  Gradient gradient = Gradient::Direct;
  int64_t checkpoint_every = 0;  ///< checkpoint mode: steps per segment (0: ceil(sqrt(L)))
  /// Fuse the dynamics' last bias and activation with the stage combination that
  /// follows (Dynamics::has_preactivation); false evaluates them apart (same graph).
  bool fuse_stages = true;
  /// Steps never cross a time where the dynamics' weights jump (a bucket basis's
  /// edges): the solver ends a step there and starts the next on the other side.
  /// false: fixed steps cross the jumps, as a fixed-grid solver that only evaluates
  /// W(t) at its stage times does (the paper's B-NANODE with more buckets than
  /// steps); the weights then switch at whichever stage lands in a new piece, and
  /// pieces that no stage lands in are never used.
  bool split_at_jumps = true;
};

/// Counters of the last solve, for reports and tests.
struct Stats {
  int64_t steps = 0, rejected = 0, evals = 0;
  int64_t backward_steps = 0, backward_evals = 0;
};

namespace detail {

/// Stage times at the ends of a step are nudged one ulp inside it, so a basis that
/// jumps at a step boundary is evaluated on the step's own side.
inline double stage_time(double t, double t_next, double c) {
  if (c <= 0.0) return std::nextafter(t, t_next);
  if (c >= 1.0) return std::nextafter(t_next, t);
  return t + c * (t_next - t);
}

inline bool same_time(double a, double b) { return std::abs(a - b) <= 1e-12 * std::max(1.0, std::abs(a)); }

/// One explicit RK step from t to t_next. `k_first` (optional): in, a stage-1 value to
/// reuse (FSAL); out, the last stage. `err` (optional): the embedded error estimate.
template <class Sys>
typename Sys::State rk_step(Sys& sys, const Tableau& tb, double t, double t_next, const typename Sys::State& x,
                            typename Sys::State* k_first, typename Sys::State* err) {
  using S = typename Sys::State;
  const double h = t_next - t;
  const int s = tb.stages();
  std::vector<S> k(static_cast<size_t>(s));
  // Each stage value k[i] is evaluated together with the combination that follows
  // it (the next stage's input, or the solution), so that a system may fuse the
  // end of the dynamics with it (VarSystem::eval_comb).
  S xn, xin = x;
  bool have_xn = false;
  for (int i = 0; i < s; ++i) {
    const bool last = i + 1 == s;
    const bool need_next = !last || !have_xn;
    std::vector<const S*> ks;
    std::vector<double> cs;
    double c_new = 0.0;
    if (need_next)
      for (int j = 0; j <= i; ++j) {
        const double a = last ? tb.b[static_cast<size_t>(j)] : tb.a[static_cast<size_t>(i + 1)][static_cast<size_t>(j)];
        if (j == i) c_new = h * a;
        else if (a != 0.0) {
          ks.push_back(&k[static_cast<size_t>(j)]);
          cs.push_back(h * a);
        }
      }
    const double ti = stage_time(t, t_next, tb.c[static_cast<size_t>(i)]);
    const bool reuse = i == 0 && k_first && Sys::defined(*k_first);
    S next;
    if (reuse || !need_next || c_new == 0.0) {
      k[static_cast<size_t>(i)] = reuse ? *k_first : sys.eval(ti, xin);
      if (!need_next) break;
      if (c_new != 0.0) {
        ks.push_back(&k[static_cast<size_t>(i)]);
        cs.push_back(c_new);
      }
      next = ks.empty() ? x : sys.comb(&x, ks, cs);
    } else {
      next = sys.eval_comb(ti, xin, k[static_cast<size_t>(i)], &x, ks, cs, c_new);
    }
    if (last) {
      xn = next;
    } else {
      xin = next;
      if (tb.fsal && i + 1 == s - 1) {
        xn = next;  // FSAL: the last stage is evaluated at the solution
        have_xn = true;
      }
    }
  }
  if (err && tb.adaptive()) {
    std::vector<const S*> ks;
    std::vector<double> cs;
    for (int j = 0; j < s; ++j)
      if (tb.e[static_cast<size_t>(j)] != 0.0) {
        ks.push_back(&k[static_cast<size_t>(j)]);
        cs.push_back(h * tb.e[static_cast<size_t>(j)]);
      }
    *err = sys.comb(nullptr, ks, cs);
  }
  if (k_first) *k_first = tb.fsal ? k[static_cast<size_t>(s - 1)] : S();
  return xn;
}

/// A first step size for an adaptive solve (Hairer, Norsett & Wanner, II.4).
template <class Sys>
double initial_step(Sys& sys, const Tableau& tb, double t0, double t1, const typename Sys::State& x0, double rtol,
                    double atol) {
  using S = typename Sys::State;
  const double dir = t1 > t0 ? 1.0 : -1.0;
  S f0 = sys.eval(t0, x0);
  const double d0 = sys.norm(x0, x0, x0, atol, rtol), d1 = sys.norm(f0, x0, x0, atol, rtol);
  double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  h0 = std::min(h0, std::abs(t1 - t0));
  S x1 = sys.comb(&x0, {&f0}, {dir * h0});
  S f1 = sys.eval(t0 + dir * h0, x1);
  S df = sys.comb(&f1, {&f0}, {-1.0});
  const double d2 = sys.norm(df, x0, x0, atol, rtol) / h0;
  const double m = std::max(d1, d2);
  const double h1 = m <= 1e-15 ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / m, 1.0 / (tb.order + 1));
  return std::min({100 * h0, h1, std::abs(t1 - t0)});
}

/// Adaptive integration of `x` from t0 to t1, landing exactly on t1. `h` carries the
/// step size between calls. After each accepted step, on_accept(t, x) runs (x is
/// the accepted state; it may change it, as the adjoint's settle() does); when it
/// returns true the next step starts afresh (no FSAL reuse).
template <class Sys, class OnAccept>
typename Sys::State adaptive_segment(Sys& sys, const Tableau& tb, typename Sys::State x, double t0, double t1,
                                     double& h, double rtol, double atol, int64_t max_steps, Stats& stats,
                                     int64_t& steps_taken, int64_t& rejected, OnAccept&& on_accept) {
  using S = typename Sys::State;
  const double dir = t1 > t0 ? 1.0 : -1.0;
  const double exponent = 1.0 / (std::min(tb.order, tb.error_order) + 1);
  double t = t0;
  S k;  // FSAL stage carried between accepted steps
  while (!same_time(t, t1)) {
    const double step = std::min(std::abs(h), std::abs(t1 - t));
    double t_next = t + dir * step;
    if (same_time(t_next, t1) || std::abs(t1 - t_next) < 1e-3 * step) t_next = t1;  // no sliver steps
    const double used = std::abs(t_next - t);
    S err;
    S kk = k;
    S xn = rk_step(sys, tb, t, t_next, x, &kk, &err);
    double e = sys.norm(err, x, xn, atol, rtol);
    if (!std::isfinite(e)) e = std::numeric_limits<double>::infinity();
    if (e <= 1.0) {
      t = t_next;
      x = std::move(xn);  // x alone holds the step's result: on_accept may update it in place
      k = on_accept(t, x) ? S() : kk;
      NANODE_CHECK(++steps_taken <= max_steps, "odeint: more than max_steps = ", max_steps,
                   " steps (reached t = ", t, "); raise max_steps or loosen rtol/atol");
    } else {
      ++rejected;
      NANODE_CHECK(rejected <= 4 * max_steps, "odeint: too many rejected steps near t = ", t);
    }
    const double factor = e == 0.0 ? 10.0 : std::clamp(0.9 * std::pow(e, -exponent), 0.2, 10.0);
    h = used * factor;
    NANODE_CHECK(h >= 1e-14 * std::max(1.0, std::abs(t)), "odeint: step size underflow (h = ", h, ") at t = ", t,
                 " with rtol = ", rtol, ", atol = ", atol, (std::isinf(e) ? "; the state became non-finite" : ""));
  }
  (void)stats;
  return x;
}

// ---- the Vars a dynamics reads besides the state ------------------------------------

/// The Vars that require grad, reachable from `roots` through nodes made at or after
/// `boundary` (a next_var_seq() value), and themselves made before it: what an
/// evaluation that started at `boundary` captured from outside. Leaves made during
/// the evaluation (the state's own leaf) are not among them.
inline std::vector<Var> outside_vars(const std::vector<Var>& roots, uint64_t boundary) {
  std::vector<Var> out;
  std::unordered_set<VarImpl*> seen;
  std::vector<std::shared_ptr<VarImpl>> stack;
  for (const auto& r : roots)
    if (r.defined() && r.requires_grad()) stack.push_back(r.impl());
  while (!stack.empty()) {
    std::shared_ptr<VarImpl> v = std::move(stack.back());
    stack.pop_back();
    if (!seen.insert(v.get()).second) continue;
    if (v->seq < boundary) {
      out.emplace_back(v);
      continue;
    }
    for (const auto& in : v->inputs)
      if (in->requires_grad) stack.push_back(in);
  }
  return out;
}

/// The Vars whose gradients a memory-saving gradient mode returns: the dynamics'
/// trainable registered parameters, then every other Var its first evaluation
/// captured (an unregistered leaf, a Var computed before the solve, a parameter of
/// another module). Later evaluations are checked against this set: a Var first
/// used later is refused with its name, never silently given no gradient.
struct Captured {
  const char* mode = "";
  double first_t = 0;
  bool discovered = false;
  std::vector<Var> vars;
  std::unordered_map<VarImpl*, size_t> index;
  std::unordered_map<VarImpl*, std::string> names;  ///< full names of registered parameters

  Captured(const char* m, const Dynamics& f) : mode(m) {
    for (auto& [name, p] : f.named_parameters()) {
      names.emplace(p.impl().get(), name);
      if (p.requires_grad()) add(p);
    }
  }
  void add(const Var& v) {
    if (index.emplace(v.impl().get(), vars.size()).second) vars.push_back(v);
  }
  std::string describe(const Var& v) const {
    auto it = names.find(v.impl().get());
    return it != names.end() ? "parameter '" + it->second + "' of shape " + v.shape().str() : v.describe();
  }
  /// After the first evaluation (started at `boundary`, at time t): adopt what it captured.
  void discover(const Var& fx, uint64_t boundary, double t) {
    for (const auto& v : outside_vars({fx}, boundary)) add(v);
    discovered = true;
    first_t = t;
  }
  /// During the backward pass: every captured Var must be known.
  void check(const std::vector<Var>& roots, uint64_t boundary, double t) const {
    for (const auto& v : outside_vars(roots, boundary))
      NANODE_CHECK(index.count(v.impl().get()), "odeint (", mode, " gradients): at t = ", t, " the dynamics used ",
                   describe(v), ", which requires grad but is not a registered parameter of the dynamics and was not "
                   "used by its first evaluation (t = ", first_t, "), so this mode cannot return its gradient. Register "
                   "it with register_parameter, or use gradient = direct");
  }
};

// ---- the state systems the driver runs on -------------------------------------------

/// x is a Var: steps record a graph when grad mode is on. With `discover` set, the
/// next evaluation runs on a local graph (whatever the grad mode) to find the Vars
/// the dynamics capture, and returns a value outside any graph.
struct VarSystem {
  using State = Var;
  Dynamics& f;
  Stats& stats;
  int64_t* evals;
  Captured* discover = nullptr;
  bool fuse = true;  ///< Options::fuse_stages
  Var eval(double t, const Var& x) {
    ++*evals;
    if (discover) {
      EnableGradGuard eg;
      const uint64_t boundary = next_var_seq();
      Var d = check_shape(f.forward(t, Var(x.data(), true)), x);
      discover->discover(d, boundary, t);
      discover = nullptr;
      return Var(d.data());
    }
    return check_shape(f.forward(t, x), x);
  }
  static Var check_shape(Var d, const Var& x) {
    NANODE_CHECK(d.defined() && d.shape() == x.shape(), "odeint: dynamics returned shape ",
                 d.defined() ? d.shape().str() : std::string("undefined"), " for a state of shape ", x.shape());
    return d;
  }
  /// k_out = f(t, xin) and returns x + sum_j cs[j] ks[j] + c_new k_out: with
  /// fusion on and dynamics that split off their last bias and activation, the
  /// two meet in one pass (bias_activation_lincomb); the graph is the same.
  /// Without a graph, dynamics that hand over their last product
  /// (Dynamics::linear_preactivation) have it run in that pass too.
  Var eval_comb(double t, const Var& xin, Var& k_out, const Var* x, const std::vector<const Var*>& ks,
                const std::vector<double>& cs, double c_new) {
    if (fuse && !discover && f.has_preactivation()) {
      ++*evals;
      Var bias;
      UnaryOp act = UnaryOp::Tanh;
      std::vector<Var> kv;
      std::vector<double> cv;
      nonzero_terms(ks, cs, kv, cv);
      Tensor h, wt;
      if (!GradMode::is_enabled() && f.linear_preactivation(t, xin, h, wt, bias, act)) {
        NANODE_CHECK(h.defined() && wt.defined() && wt.ndim() == 2 && h.ndim() == xin.ndim() &&
                         h.numel() / std::max<int64_t>(1, h.size(-1)) * wt.size(1) == xin.numel(),
                     "odeint: the dynamics' last product (linear_preactivation) gives input ",
                     h.defined() ? h.shape().str() : std::string("undefined"), " and transposed weight ",
                     wt.defined() ? wt.shape().str() : std::string("undefined"), " for a state of shape ", xin.shape());
        std::vector<Tensor> kt;
        for (const auto& v : kv) kt.push_back(v.data());
        auto [k, out] = backend::linear_bias_act_lincomb(h, wt, bias.defined() ? bias.data() : Tensor(), act,
                                                         x ? x->data() : Tensor(), kt, cv, c_new);
        ++Schedule::totals().fused_stages;
        k_out = check_shape(Var(k), xin);
        return Var(out);
      }
      Var pre = check_shape(f.forward_preactivation(t, xin, bias, act), xin);
      auto [k, out] = bias_activation_lincomb(pre, bias, act, x ? *x : Var(), kv, cv, c_new);
      k_out = k;
      return out;
    }
    k_out = eval(t, xin);
    std::vector<const Var*> all(ks);
    std::vector<double> call(cs);
    all.push_back(&k_out);
    call.push_back(c_new);
    return comb(x, all, call);
  }
  /// The terms of a combination whose coefficients are not zero.
  static void nonzero_terms(const std::vector<const Var*>& ks, const std::vector<double>& cs, std::vector<Var>& kv,
                            std::vector<double>& cv) {
    for (size_t j = 0; j < ks.size(); ++j)
      if (cs[j] != 0.0) {
        kv.push_back(*ks[j]);
        cv.push_back(cs[j]);
      }
  }
  Var comb(const Var* x, const std::vector<const Var*>& ks, const std::vector<double>& cs) {
    std::vector<Var> kv;
    std::vector<double> cv;
    nonzero_terms(ks, cs, kv, cv);
    if (kv.empty()) return x ? *x : Var(backend::unary(UnaryOp::Affine, ks[0]->data(), 0.0));
    return lincomb(x ? *x : Var(), kv, cv);
  }
  double norm(const Var& v, const Var& a, const Var& b, double atol, double rtol) {
    return backend::scaled_rms(v.data(), a.data(), b.data(), atol, rtol);
  }
  static bool defined(const Var& v) { return v.defined(); }
};

/// The step plan of a solve: grid points from t.front() to t.back() and, for each
/// requested time, its index in the grid.
struct Plan {
  std::vector<double> grid;
  std::vector<size_t> out_index;
  std::vector<bool> fresh;  ///< the step from grid point i did not reuse an FSAL stage
};

inline std::vector<double> stops_between(const std::vector<double>& t, const std::vector<double>& jumps) {
  std::vector<double> stops = t;
  for (double j : jumps) stops.push_back(j);
  const bool up = t.back() > t.front();
  std::sort(stops.begin(), stops.end(), [up](double a, double b) { return up ? a < b : a > b; });
  std::vector<double> out;
  for (double s : stops)
    if (out.empty() || !same_time(out.back(), s)) out.push_back(s);
  return out;
}

inline void locate_outputs(Plan& p, const std::vector<double>& t) {
  p.out_index.clear();
  size_t g = 0;
  for (double ti : t) {
    while (g < p.grid.size() && !same_time(p.grid[g], ti)) ++g;
    NANODE_CHECK(g < p.grid.size(), "odeint: internal error: output time ", ti, " is not on the step grid");
    p.out_index.push_back(g);
  }
}

inline Plan fixed_plan(const std::vector<double>& t, const std::vector<double>& jumps, const Options& o) {
  const double t0 = t.front(), t1 = t.back(), span = std::abs(t1 - t0);
  int64_t n = o.steps;
  if (n <= 0) n = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(span / o.step_size - 1e-9)));
  std::vector<double> pts;
  pts.reserve(static_cast<size_t>(n + 1));
  for (int64_t i = 0; i <= n; ++i) pts.push_back(i == n ? t1 : t0 + (t1 - t0) * static_cast<double>(i) / static_cast<double>(n));
  Plan p;
  p.grid = stops_between(pts, stops_between(t, jumps));
  locate_outputs(p, t);
  return p;
}

inline void validate(const Var& x0, const std::vector<double>& t, const Options& o, const std::string& method,
                     bool adaptive) {
  NANODE_CHECK(x0.defined(), "odeint: x0 is undefined");
  NANODE_CHECK(t.size() >= 2, "odeint: need at least two times (start and end), got ", t.size());
  const bool up = t[1] > t[0];
  for (size_t i = 0; i < t.size(); ++i) {
    NANODE_CHECK(std::isfinite(t[i]), "odeint: time ", i, " is not finite");
    if (i > 0)
      NANODE_CHECK(up ? t[i] > t[i - 1] : t[i] < t[i - 1], "odeint: times must be strictly monotone; t[", i - 1,
                   "] = ", t[i - 1], ", t[", i, "] = ", t[i]);
  }
  NANODE_CHECK(o.steps >= 0 && o.step_size >= 0, "odeint: steps and step_size must be >= 0");
  NANODE_CHECK(o.steps > 0 || o.step_size > 0 || adaptive, "odeint: method '", method,
               "' has no error estimate; give steps or step_size, or use bosh3 or dopri5");
  NANODE_CHECK(o.rtol > 0 && o.atol >= 0, "odeint: need rtol > 0 and atol >= 0");
  NANODE_CHECK(o.max_steps > 0, "odeint: max_steps must be positive");
  NANODE_CHECK(o.gradient == Gradient::Direct || x0.ndim() <= 4, "odeint: ", gradient_name(o.gradient),
               " mode stacks outputs along a new axis, so states may have at most 4 axes (got ", x0.shape(), ")");
  // Inside a CUDA graph capture there are no values to read yet (a NaN in a
  // replayed input shows in the outputs instead).
  if (x0.device().is_cuda() && cuda::graph_capturing(x0.device().index)) return;
  const double total = backend::sum_all(x0.data()).item<double>();
  NANODE_CHECK(std::isfinite(total), "odeint: the initial state x0 contains NaN or infinite values");
}

inline bool fixed_steps(const Options& o) { return o.steps > 0 || o.step_size > 0; }

/// The times rk_step evaluates stages at, step after step over `grid`.
inline std::vector<double> stage_times(const Tableau& tb, const std::vector<double>& grid) {
  std::vector<double> out;
  out.reserve(grid.empty() ? 0 : (grid.size() - 1) * static_cast<size_t>(tb.stages()));
  for (size_t i = 0; i + 1 < grid.size(); ++i)
    for (double c : tb.c) out.push_back(stage_time(grid[i], grid[i + 1], c));
  return out;
}

/// Forward solve of a Var system over the whole time range: returns the states at
/// the requested times and fills `plan` with the grid it stepped on. After grid
/// point i is reached, on_grid(i, x) runs; when it returns true, the next step does
/// not reuse the FSAL stage (checkpoint segments start afresh).
template <class OnGrid>
std::vector<Var> solve_forward(Dynamics& f, const Tableau& tb, const Var& x0, const std::vector<double>& t,
                               const std::vector<double>& jumps, const Options& o, Stats& stats, Plan& plan,
                               OnGrid&& on_grid, Captured* discover = nullptr) {
  VarSystem sys{f, stats, &stats.evals, discover, o.fuse_stages};
  std::vector<Var> outs;
  Var x = x0;
  if (fixed_steps(o)) {
    plan = fixed_plan(t, jumps, o);
    // Without a graph, the stage times are published (ode::Schedule) for layers
    // that can prepare their weights for several steps at once.
    std::optional<ScheduleScope> schedule;
    if (!GradMode::is_enabled()) schedule.emplace(stage_times(tb, plan.grid));
    std::vector<bool> fresh(plan.grid.size(), false);
    for (size_t i = 0; i < plan.grid.size(); ++i)
      for (double j : jumps) fresh[i] = fresh[i] || same_time(plan.grid[i], j);
    size_t next_out = 0;
    Var k;
    if (on_grid(size_t{0}, x)) fresh[0] = true;
    while (next_out < plan.out_index.size() && plan.out_index[next_out] == 0) outs.push_back(x), ++next_out;
    for (size_t i = 0; i + 1 < plan.grid.size(); ++i) {
      if (fresh[i]) k = Var();
      x = rk_step(sys, tb, plan.grid[i], plan.grid[i + 1], x, &k, nullptr);
      ++stats.steps;
      if (on_grid(i + 1, x)) fresh[i + 1] = true;
      while (next_out < plan.out_index.size() && plan.out_index[next_out] == i + 1) outs.push_back(x), ++next_out;
    }
    plan.fresh = fresh;
    return outs;
  }
  // Adaptive: segment by segment between stops (outputs and jumps); FSAL never
  // crosses a stop, since a jump may sit there.
  const std::vector<double> stops = stops_between(t, jumps);
  plan.grid.assign(1, t.front());
  plan.fresh.assign(1, true);
  outs.push_back(x);
  on_grid(size_t{0}, x);
  double h = o.first_step;
  if (h <= 0) {
    NoGradGuard ng;
    h = initial_step(sys, tb, stops[0], stops[1], x0, o.rtol, o.atol);
  }
  int64_t taken = 0, rejected = 0;
  size_t next_t = 1;
  for (size_t s = 0; s + 1 < stops.size(); ++s) {
    x = adaptive_segment(sys, tb, x, stops[s], stops[s + 1], h, o.rtol, o.atol, o.max_steps, stats, taken, rejected,
                         [&](double tt, const Var& xx) {
                           plan.grid.push_back(tt);
                           ++stats.steps;
                           const bool f = on_grid(plan.grid.size() - 1, xx);
                           plan.fresh.push_back(f);
                           return f;
                         });
    plan.fresh.back() = true;  // a stop: the next segment starts afresh
    if (next_t < t.size() && same_time(stops[s + 1], t[next_t])) outs.push_back(x), ++next_t;
  }
  stats.rejected += rejected;
  locate_outputs(plan, t);
  return outs;
}

}  // namespace detail

/// Integrates dx/dt = f(t, x) from x(t[0]) = x0 and returns x at every time in t
/// (t[0] included, as torchdiffeq does). Times must be strictly monotone (backward
/// integration is fine). `stats`, when given, receives the solve's counters (the
/// backward counters when the backward pass runs). The dynamics must outlive the
/// backward pass of the outputs.
inline std::vector<Var> odeint(Dynamics& f, const Var& x0, const std::vector<double>& t, const Options& o = {},
                               std::shared_ptr<Stats> stats = nullptr);

/// x(t1) from x(t0) = x0.
inline Var odeint_final(Dynamics& f, const Var& x0, double t0, double t1, const Options& o = {},
                        std::shared_ptr<Stats> stats = nullptr) {
  return odeint(f, x0, {t0, t1}, o, std::move(stats)).back();
}

}  // namespace nanode::ode

#include "nanode/ode/gradient_modes.hpp"
