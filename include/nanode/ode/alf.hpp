#pragma once
// The asynchronous leapfrog (ALF) integrator of MALI (Zhuang et al., ICLR 2021)
// and its reversible gradient: exact gradients of the discrete solve in memory
// independent of the number of steps. Included by ode/gradient_modes.hpp.
//
// The state is (x, v) with v0 = f(t0, x0). One step of size h from t, s = t + h/2:
//   x_half = x + v h/2;   v' = 2 f(s, x_half) - v;   x' = x_half + v' h/2
// and it inverts exactly:
//   x_half = x' - v' h/2;  v = 2 f(s, x_half) - v';   x = x_half - v h/2.
// The backward pass rebuilds each step's input from its output and applies that
// step's vector-Jacobian product. Both need f(s, x_half) once: the evaluation that
// rebuilds the step is the one that is differentiated, so a backward step costs one
// evaluation of f and one vector-Jacobian product, as in direct backprop.
#include <algorithm>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "nanode/ode/odeint.hpp"

namespace nanode::ode::detail {

/// The time a step from t to t_next evaluates f at.
inline double alf_mid(double t, double t_next) { return t + 0.5 * (t_next - t); }

/// One ALF step on Vars (recorded when grad mode is on); returns (x', v').
inline std::pair<Var, Var> alf_step(VarSystem& sys, double t, double t_next, const Var& x, const Var& v) {
  const double h = t_next - t, s = alf_mid(t, t_next);
  Var xh = lincomb(x, {v}, {0.5 * h});
  Var fx = sys.eval(s, xh);
  Var vn = lincomb(Var(), {fx, v}, {2.0, -1.0});
  Var xn = lincomb(xh, {vn}, {0.5 * h});
  return {xn, vn};
}

/// The first velocity v0 = f(t0, x0), on the first step's side of t0.
inline Var alf_start(VarSystem& sys, const Plan& plan, const Var& x0) {
  return sys.eval(stage_time(plan.grid[0], plan.grid[1], 0.0), x0);
}

/// Forward ALF solve on Vars: the states at the output times, and the velocities
/// there when `v_out` is given.
inline std::vector<Var> alf_forward(VarSystem& sys, const Plan& plan, const Var& x0, Stats& stats,
                                    std::vector<Var>* v_out = nullptr) {
  std::vector<Var> outs;
  std::optional<ScheduleScope> schedule;  // without a graph: the evaluation times, as solve_forward publishes them
  if (!GradMode::is_enabled()) {
    std::vector<double> times{stage_time(plan.grid[0], plan.grid[1], 0.0)};
    for (size_t i = 0; i + 1 < plan.grid.size(); ++i) times.push_back(alf_mid(plan.grid[i], plan.grid[i + 1]));
    schedule.emplace(times);
  }
  Var x = x0, v = alf_start(sys, plan, x0);
  size_t next = 0;
  auto emit = [&](size_t i) {
    while (next < plan.out_index.size() && plan.out_index[next] == i) {
      outs.push_back(x);
      if (v_out) v_out->push_back(v);
      ++next;
    }
  };
  emit(0);
  for (size_t i = 0; i + 1 < plan.grid.size(); ++i) {
    std::tie(x, v) = alf_step(sys, plan.grid[i], plan.grid[i + 1], x, v);
    ++stats.steps;
    emit(i + 1);
  }
  return outs;
}

inline std::vector<Var> odeint_alf(Dynamics& f, const Var& x0, const std::vector<double>& t,
                                   const std::vector<double>& jumps, const Options& o, std::shared_ptr<Stats> stats) {
  auto plan = std::make_shared<Plan>(fixed_plan(t, jumps, o));
  if (o.gradient == Gradient::Direct) {
    VarSystem sys{f, *stats, &stats->evals, nullptr, o.fuse_stages};
    return alf_forward(sys, *plan, x0, *stats);
  }

  // Reversible: forward without a graph, keeping only the outputs and the
  // velocities at the output times (where the backward pass resets its rebuilt
  // state, so that rounding cannot drift across outputs).
  auto captured = std::make_shared<Captured>("reversible", f);
  std::vector<Var> outs, vs;
  {
    NoGradGuard ng;
    VarSystem sys{f, *stats, &stats->evals, captured.get(), o.fuse_stages};
    outs = alf_forward(sys, *plan, x0, *stats, &vs);
  }
  std::vector<Tensor> out_t, v_t;
  for (size_t j = 0; j < outs.size(); ++j) out_t.push_back(outs[j].data()), v_t.push_back(vs[j].data());
  const Shape xshape = x0.shape();
  Dynamics* fp = &f;
  return stacked_result("odeint_reversible", out_t, x0, captured->vars,
                        [fp, plan, out_t, v_t, captured, xshape, stats](const Tensor& G, GradInputs& gi) {
    const size_t P = captured->vars.size(), E = plan->grid.size() - 1;
    std::vector<GradSum> gp(P);  // summed over steps, in place after the first
    auto add_captured = [&](const std::vector<Tensor>& g, std::vector<nanode::OuterTerms>& terms) {
      for (size_t p = 0; p < P; ++p) {
        gp[p].add(g[1 + p], captured->vars[p].shape(), "odeint_reversible");
        gp[p].add_terms(std::move(terms[1 + p]), captured->vars[p].data());
      }
    };
    // The vector-Jacobian product of f(s, .) at `at` with `seed`, on a local graph:
    // returns f's value and adds the captured Vars' parts; `gx` gets the state's.
    auto vjp = [&](double s, const Tensor& at, const Tensor& seed, Tensor& gx) {
      ++stats->backward_evals;
      EnableGradGuard eg;
      const uint64_t boundary = next_var_seq();
      Var xl(at, true);
      Var fx = fp->forward(s, xl);
      NANODE_CHECK(fx.defined() && fx.shape() == at.shape(), "odeint: dynamics returned shape ",
                   fx.defined() ? fx.shape().str() : std::string("undefined"), " for a state of shape ", at.shape());
      captured->check({fx}, boundary, s);
      gx = Tensor();
      if (seed.defined() && fx.requires_grad()) {
        std::vector<Var> inputs{xl};
        inputs.insert(inputs.end(), captured->vars.begin(), captured->vars.end());
        std::vector<nanode::OuterTerms> terms;
        std::vector<Tensor> g = nanode::detail::grad_stopping_terms({fx}, {seed}, inputs, terms);
        gx = summed(g[0], terms[0], at.shape());
        add_captured(g, terms);
      }
      return fx.data();
    };
    auto grad_at = [&](size_t idx) {
      Tensor g;
      for (size_t j = 0; j < plan->out_index.size(); ++j)
        if (plan->out_index[j] == idx) g = add_maybe(g, output_grad(G, j, xshape));
      return g;
    };
    // At an output time the stored state replaces the rebuilt one. The two are
    // compared first: inverting ALF steps amplifies rounding by about e^{|lambda| T}
    // where the dynamics contract at rate lambda, and a rebuilt state that has
    // drifted would give a wrong gradient. Past a tolerance of the dtype (the
    // accuracy the reference suite holds nanode to) the pass refuses.
    const double tol = G.dtype() == DType::Float64 ? 1e-9 : 1e-4;
    auto rms = [](const Tensor& t) { return backend::scaled_rms(t, t, t, 1.0, 0.0); };
    auto drift = [&](const Tensor& rebuilt, const Tensor& kept) {
      const double scale = std::max(rms(kept), 1e-30);
      return rms(backend::lincomb(rebuilt, {kept}, {-1.0})) / scale;
    };
    auto stored = [&](size_t idx, Tensor& x, Tensor& v, double t_from) -> bool {
      for (size_t j = 0; j < plan->out_index.size(); ++j)
        if (plan->out_index[j] == idx) {
          if (x.defined()) {
            const double d = std::max(drift(x, out_t[j]), drift(v, v_t[j]));
            NANODE_CHECK(d <= tol, "odeint (reversible gradients): rebuilding the ALF steps backward from t = ",
                         t_from, " to t = ", plan->grid[idx], " drifted from the stored state by ", d,
                         " (relative RMS; the limit for ", G.dtype(), " is ", tol, "): the dynamics contract too "
                         "fast for the inverted steps to stay accurate. Use more steps, more output times, or "
                         "gradient = direct or checkpoint with a Runge-Kutta method");
          }
          x = out_t[j], v = v_t[j];
          return true;
        }
      return false;
    };
    Tensor x, v;
    stored(E, x, v, plan->grid[E]);
    double t_stored = plan->grid[E];
    Tensor ax = grad_at(E), av;  // adjoints of x and v after the current step
    for (size_t i = E; i-- > 0;) {
      const double t0 = plan->grid[i], t1 = plan->grid[i + 1], h = t1 - t0, s = alf_mid(t0, t1);
      // Rebuild the step's input and differentiate it. With b = av + ax h/2 (the
      // adjoint of v' through both uses of it):
      //   d x_half = ax + 2 J^T b,  d v = -b + (d x_half) h/2,  d x = d x_half.
      const Tensor xh = backend::lincomb(x, {v}, {-0.5 * h});
      const Tensor b = backend::lincomb(av, {ax}, {0.5 * h}, x);
      Tensor jtb;
      const Tensor fx = vjp(s, xh, backend::unary(UnaryOp::Affine, b, 2.0), jtb);
      const Tensor v_prev = backend::lincomb(Tensor(), {fx, v}, {2.0, -1.0});
      x = backend::lincomb(xh, {v_prev}, {-0.5 * h});
      v = v_prev;
      const Tensor axh = add_maybe(ax, jtb);
      av = backend::lincomb(Tensor(), {b, axh}, {-1.0, 0.5 * h}, x);
      ax = axh;
      ++stats->backward_steps;
      if (stored(i, x, v, t_stored)) t_stored = plan->grid[i];
      ax = add_maybe(ax, grad_at(i));
    }
    // v0 = f(t0, x0): its adjoint flows into x0 and the captured Vars.
    Tensor g0;
    vjp(stage_time(plan->grid[0], plan->grid[1], 0.0), x, av, g0);
    ax = add_maybe(ax, g0);
    if (gi.need(0)) gi.set(0, ax.defined() ? ax : Tensor::zeros(xshape, G.dtype(), G.device()));
    for (size_t p = 0; p < P; ++p)
      if (Tensor g = gp[p].take(captured->vars[p].shape()); gi.need(p + 1) && g.defined()) gi.set(p + 1, g);
  });
}

}  // namespace nanode::ode::detail
