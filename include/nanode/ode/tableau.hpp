#pragma once
// Butcher tableaus of the explicit Runge-Kutta methods: euler, midpoint, heun,
// rk4 (fixed step) and bosh3, dopri5 (embedded error estimates, adaptive).
#include <string>
#include <vector>

#include "nanode/core/error.hpp"

namespace nanode::ode {

struct Tableau {
  std::string name;
  std::vector<double> c;               ///< stage times
  std::vector<std::vector<double>> a;  ///< a[i][j], j < i
  std::vector<double> b;               ///< solution weights
  std::vector<double> e;               ///< b - b_hat (empty: no error estimate)
  int order = 1;                       ///< order of the solution
  int error_order = 0;                 ///< order of the embedded estimate
  bool fsal = false;                   ///< the last stage is f(t+h, x_next)
  int stages() const { return static_cast<int>(c.size()); }
  bool adaptive() const { return !e.empty(); }
};

inline const Tableau& tableau(const std::string& name) {
  static const std::vector<Tableau> all = [] {
    std::vector<Tableau> t;
    t.push_back({"euler", {0.0}, {{}}, {1.0}, {}, 1, 0, false});
    t.push_back({"midpoint", {0.0, 0.5}, {{}, {0.5}}, {0.0, 1.0}, {}, 2, 0, false});
    t.push_back({"heun", {0.0, 1.0}, {{}, {1.0}}, {0.5, 0.5}, {}, 2, 0, false});
    t.push_back({"rk4",
                 {0.0, 0.5, 0.5, 1.0},
                 {{}, {0.5}, {0.0, 0.5}, {0.0, 0.0, 1.0}},
                 {1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6},
                 {},
                 4,
                 0,
                 false});
    {
      // Bogacki-Shampine 3(2).
      const std::vector<double> b{2.0 / 9, 1.0 / 3, 4.0 / 9, 0.0}, bh{7.0 / 24, 1.0 / 4, 1.0 / 3, 1.0 / 8};
      std::vector<double> e(4);
      for (int i = 0; i < 4; ++i) e[static_cast<size_t>(i)] = b[static_cast<size_t>(i)] - bh[static_cast<size_t>(i)];
      t.push_back({"bosh3",
                   {0.0, 0.5, 0.75, 1.0},
                   {{}, {0.5}, {0.0, 0.75}, {2.0 / 9, 1.0 / 3, 4.0 / 9}},
                   b,
                   e,
                   3,
                   2,
                   true});
    }
    {
      // Dormand-Prince 5(4).
      const std::vector<double> b{35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0.0};
      const std::vector<double> bh{5179.0 / 57600,    0.0,           7571.0 / 16695, 393.0 / 640,
                                   -92097.0 / 339200, 187.0 / 2100, 1.0 / 40};
      std::vector<double> e(7);
      for (int i = 0; i < 7; ++i) e[static_cast<size_t>(i)] = b[static_cast<size_t>(i)] - bh[static_cast<size_t>(i)];
      t.push_back({"dopri5",
                   {0.0, 0.2, 0.3, 0.8, 8.0 / 9, 1.0, 1.0},
                   {{},
                    {0.2},
                    {3.0 / 40, 9.0 / 40},
                    {44.0 / 45, -56.0 / 15, 32.0 / 9},
                    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
                    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
                    {35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}},
                   b,
                   e,
                   5,
                   4,
                   true});
    }
    return t;
  }();
  for (const auto& t : all)
    if (t.name == name) return t;
  std::string names;
  for (const auto& t : all) names += (names.empty() ? "" : ", ") + t.name;
  fail("ode: unknown method '", name, "' (valid: ", names, ")");
}

}  // namespace nanode::ode
