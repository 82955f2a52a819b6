#pragma once
// odeint's three gradient modes. Included at the end of ode/odeint.hpp.
#include <algorithm>
#include <utility>

#include "nanode/ode/odeint.hpp"
#include "nanode/ode/adjoint_system.hpp"

namespace nanode::ode {
namespace detail {

/// Stacks the outputs into one tensor [T, ...] and records `fn` as its backward
/// over inputs {x0, params...}; returns the per-time Vars (views of the stack).
inline std::vector<Var> stacked_result(const char* name, const std::vector<Tensor>& outs, const Var& x0,
                                       const std::vector<Var>& captured, BackwardFn fn) {
  std::vector<Tensor> parts;
  parts.reserve(outs.size());
  std::vector<int64_t> one = x0.shape().vec();
  one.insert(one.begin(), 1);
  for (const auto& o : outs) parts.push_back(o.reshape(one));
  Tensor stacked = backend::concat(parts, 0);
  std::vector<Var> inputs{x0};
  for (const auto& p : captured) inputs.push_back(p);
  Var node = make_result(name, stacked, inputs, std::move(fn));
  std::vector<Var> result;
  result.reserve(outs.size());
  for (size_t j = 0; j < outs.size(); ++j)
    result.push_back(reshape(slice(node, 0, static_cast<int64_t>(j), static_cast<int64_t>(j + 1)), x0.shape().vec()));
  return result;
}

/// The gradient of output j from the stacked gradient G [T, ...].
inline Tensor output_grad(const Tensor& G, size_t j, const Shape& shape) {
  return G.narrow(0, static_cast<int64_t>(j), 1).reshape(shape);
}

inline Tensor add_maybe(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return backend::binary(BinaryOp::Add, a, b);
}

inline std::vector<Var> odeint_checkpoint(Dynamics& f, const Tableau& tb, const Var& x0, const std::vector<double>& t,
                                          const std::vector<double>& jumps, const Options& o,
                                          std::shared_ptr<Stats> stats) {
  auto captured = std::make_shared<Captured>("checkpoint", f);
  // Forward without a graph, keeping x at checkpoints. With unknown step counts
  // (adaptive) the interval doubles whenever the checkpoints outnumber it, which
  // keeps both the stored states and a recomputed segment near sqrt(L).
  auto plan = std::make_shared<Plan>();
  auto ckpt = std::make_shared<std::vector<std::pair<size_t, Tensor>>>();
  int64_t every = o.checkpoint_every;
  const bool fixed_interval = every > 0;
  if (!fixed_interval && fixed_steps(o)) {
    const int64_t L = static_cast<int64_t>(fixed_plan(t, jumps, o).grid.size()) - 1;
    every = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(L)))));
  }
  if (every <= 0) every = 1;
  std::vector<Var> outs;
  {
    NoGradGuard ng;
    outs = solve_forward(
        f, tb, x0, t, jumps, o, *stats, *plan,
        [&](size_t i, const Var& x) {
          if (static_cast<int64_t>(i) % every != 0) return false;
          ckpt->push_back({i, x.data()});
          if (!fixed_interval && !fixed_steps(o) && static_cast<int64_t>(ckpt->size()) > 2 * every) {
            every *= 2;
            std::vector<std::pair<size_t, Tensor>> kept;
            for (auto& c : *ckpt)
              if (static_cast<int64_t>(c.first) % every == 0) kept.push_back(c);
            *ckpt = std::move(kept);
          }
          return true;
        },
        captured.get());
  }
  std::vector<Tensor> out_t;
  for (const auto& v : outs) out_t.push_back(v.data());
  const Shape xshape = x0.shape();
  const Tableau* tbp = &tb;
  Dynamics* fp = &f;
  return stacked_result("odeint_checkpoint", out_t, x0, captured->vars,
                        [fp, tbp, plan, ckpt, captured, xshape, stats, fuse = o.fuse_stages](const Tensor& G,
                                                                                     GradInputs& gi) {
    const size_t E = plan->grid.size() - 1;
    const size_t P = captured->vars.size();
    auto grad_at = [&](size_t idx) {
      Tensor g;
      for (size_t j = 0; j < plan->out_index.size(); ++j)
        if (plan->out_index[j] == idx) g = add_maybe(g, output_grad(G, j, xshape));
      return g;
    };
    Tensor a = grad_at(E);
    std::vector<nanode::detail::GradSlot> gp(P);  // summed over segments, in place after the first
    EnableGradGuard eg;
    VarSystem sys{*fp, *stats, &stats->backward_evals, nullptr, fuse};
    for (size_t s = ckpt->size(); s-- > 0;) {
      const size_t c = (*ckpt)[s].first, e = s + 1 < ckpt->size() ? (*ckpt)[s + 1].first : E;
      if (c == E) continue;  // a checkpoint on the last point: nothing to recompute
      // Recompute the segment on a local graph and take its vector-Jacobian
      // product with grad(): the outer graph and every .grad stay untouched.
      const uint64_t boundary = next_var_seq();
      Var xs((*ckpt)[s].second, true);
      std::vector<Var> roots;
      std::vector<Tensor> seeds;
      Var x = xs, k;
      for (size_t i = c; i < e; ++i) {
        if (plan->fresh[i]) k = Var();
        x = rk_step(sys, *tbp, plan->grid[i], plan->grid[i + 1], x, &k, nullptr);
        ++stats->backward_steps;
        if (i + 1 < e) {
          Tensor gi_out = grad_at(i + 1);
          if (gi_out.defined()) roots.push_back(x), seeds.push_back(gi_out);
        }
      }
      if (a.defined()) roots.push_back(x), seeds.push_back(a);
      std::vector<Var> live;
      std::vector<Tensor> live_seeds;
      for (size_t r = 0; r < roots.size(); ++r)
        if (roots[r].requires_grad()) live.push_back(roots[r]), live_seeds.push_back(seeds[r]);
      Tensor gxs;
      if (!live.empty()) {
        captured->check(live, boundary, plan->grid[c]);
        std::vector<Var> inputs{xs};
        inputs.insert(inputs.end(), captured->vars.begin(), captured->vars.end());
        std::vector<Tensor> g = nanode::detail::grad_stopping(live, live_seeds, inputs);
        gxs = g[0];
        for (size_t p = 0; p < P; ++p)
          if (g[1 + p].defined())
            nanode::detail::add_into(gp[p].g, gp[p].shared, g[1 + p], captured->vars[p].shape(), "odeint_checkpoint");
      }
      a = add_maybe(gxs, grad_at(c));
    }
    if (gi.need(0)) gi.set(0, a.defined() ? a : Tensor::zeros(xshape, G.dtype(), G.device()));
    for (size_t p = 0; p < P; ++p)
      if (gi.need(p + 1) && gp[p].g.defined()) gi.set(p + 1, gp[p].g);
  });
}

inline std::vector<Var> odeint_adjoint(Dynamics& f, const Tableau& tb, const Var& x0, const std::vector<double>& t,
                                       const std::vector<double>& jumps, const Options& o, std::shared_ptr<Stats> stats) {
  auto captured = std::make_shared<Captured>("adjoint", f);
  auto plan = std::make_shared<Plan>();
  std::vector<Var> outs;
  {
    NoGradGuard ng;
    outs = solve_forward(f, tb, x0, t, jumps, o, *stats, *plan, [](size_t, const Var&) { return false; },
                         captured.get());
  }
  std::vector<Tensor> out_t;
  for (const auto& v : outs) out_t.push_back(v.data());
  const Shape xshape = x0.shape();
  const Tableau* tbp = &tb;
  Dynamics* fp = &f;
  const std::vector<double> times = t;
  return stacked_result("odeint_adjoint", out_t, x0, captured->vars,
                        [fp, tbp, plan, out_t, captured, xshape, stats, o, times, jumps](const Tensor& G, GradInputs& gi) {
    AdjointSystem sys{*fp, *captured, *stats};
    const size_t T = out_t.size();
    const size_t P = captured->vars.size();
    // Augmented state [x, a, g_1..g_P], integrated from t[T-1] back to t[0].
    AdjointSystem::State s = sys.start(out_t[T - 1], output_grad(G, T - 1, xshape));
    for (size_t j = T - 1; j > 0; --j) {
      if (fixed_steps(o)) {
        for (size_t i = plan->out_index[j]; i > plan->out_index[j - 1]; --i) {
          s = rk_step(sys, *tbp, plan->grid[i], plan->grid[i - 1], s, nullptr, nullptr);
          sys.settle(s, /*all=*/false);
          ++stats->backward_steps;
        }
      } else {
        std::vector<double> seg_t{times[j], times[j - 1]};
        std::vector<double> seg_jumps;
        for (double jt : jumps)
          if ((jt - times[j]) * (jt - times[j - 1]) < 0) seg_jumps.push_back(jt);
        const std::vector<double> stops = stops_between(seg_t, seg_jumps);
        double h = initial_step(sys, *tbp, stops[0], stops[1], s, o.rtol, o.atol);
        int64_t taken = 0, rejected = 0;
        for (size_t q = 0; q + 1 < stops.size(); ++q)
          s = adaptive_segment(sys, *tbp, s, stops[q], stops[q + 1], h, o.rtol, o.atol, o.max_steps, *stats, taken,
                               rejected, [&](double, AdjointSystem::State& accepted) {
                                 sys.settle(accepted, /*all=*/false);
                                 ++stats->backward_steps;
                                 return false;
                               });
      }
      // Back at an output time: the stored forward state is more accurate than
      // the backward-integrated one; the output's own gradient joins a.
      s.v[0] = out_t[j - 1];
      s.v[1] = add_maybe(s.v[1], output_grad(G, j - 1, xshape));
      sys.settle(s, /*all=*/false);
    }
    sys.settle(s, /*all=*/true);
    if (gi.need(0)) gi.set(0, s.v[1].defined() ? s.v[1] : Tensor::zeros(xshape, G.dtype(), G.device()));
    for (size_t p = 0; p < P; ++p)
      if (gi.need(p + 1) && s.v[2 + p].defined()) gi.set(p + 1, s.v[2 + p]);
  });
}

/// The ALF integrator and its reversible gradient (ode/alf.hpp).
inline std::vector<Var> odeint_alf(Dynamics& f, const Var& x0, const std::vector<double>& t,
                                   const std::vector<double>& jumps, const Options& o, std::shared_ptr<Stats> stats);

}  // namespace detail

inline std::vector<Var> odeint(Dynamics& f, const Var& x0, const std::vector<double>& t, const Options& o,
                               std::shared_ptr<Stats> stats) {
  check_method(o.method, o.gradient);
  const bool alf = o.method == "alf";
  detail::validate(x0, t, o, o.method, !alf && tableau(o.method).adaptive());
  if (!stats) stats = std::make_shared<Stats>();
  *stats = Stats();
  const std::vector<double> jumps = o.split_at_jumps ? f.jump_times(t.front(), t.back()) : std::vector<double>{};
  if (alf) return detail::odeint_alf(f, x0, t, jumps, o, stats);
  const Tableau& tb = tableau(o.method);
  switch (o.gradient) {
    case Gradient::Checkpoint: return detail::odeint_checkpoint(f, tb, x0, t, jumps, o, stats);
    case Gradient::Adjoint: return detail::odeint_adjoint(f, tb, x0, t, jumps, o, stats);
    case Gradient::Direct:
    case Gradient::Reversible: break;
  }
  detail::Plan plan;
  return detail::solve_forward(f, tb, x0, t, jumps, o, *stats, plan, [](size_t, const Var&) { return false; });
}

}  // namespace nanode::ode

#include "nanode/ode/alf.hpp"
