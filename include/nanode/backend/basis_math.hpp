#pragma once
// z(t) for every described time basis, in double: the one definition that the
// basis classes (timevarying/basis.hpp) and the fused CUDA kernels
// (kernels/ode.cu) both evaluate. Plain C++, host and device.
#include <math.h>

#include "nanode/backend/op_codes.hpp"

namespace nanode::basis {

/// z[0..spec.K) at time t.
NANODE_HD inline void eval(const BasisSpec& s, double t, double* z) {
  switch (s.kind) {
    case BasisSpec::Constant:
      z[0] = 1.0;
      return;
    case BasisSpec::Bucket: {  // one-hot of floor(d (t - t0) / (t1 - t0)), the last bucket closed
      const double u = (t - s.t0) / (s.t1 - s.t0);
      int k = static_cast<int>(floor(u * s.d));
      k = k < 0 ? 0 : (k >= s.d ? s.d - 1 : k);
      for (int i = 0; i < s.d; ++i) z[i] = i == k ? 1.0 : 0.0;
      return;
    }
    case BasisSpec::Monomial: {  // t^n, n < d
      double p = 1.0;
      for (int n = 0; n < s.d; ++n, p *= t) z[n] = p;
      return;
    }
    case BasisSpec::Chebyshev:
    case BasisSpec::Legendre: {  // P_n(u), n < d, u = 2 (t - t0) / (t1 - t0) - 1
      const double u = 2.0 * (t - s.t0) / (s.t1 - s.t0) - 1.0;
      z[0] = 1.0;
      if (s.d > 1) z[1] = u;
      for (int n = 1; n + 1 < s.d; ++n)
        z[n + 1] = s.kind == BasisSpec::Chebyshev ? 2.0 * u * z[n] - z[n - 1]
                                                  : ((2.0 * n + 1.0) * u * z[n] - n * z[n - 1]) / (n + 1.0);
      return;
    }
    case BasisSpec::Trig: {  // [1, cos w t, sin w t, ..., cos d w t, sin d w t], w = omega
      z[0] = 1.0;
      for (int n = 1; n <= s.d; ++n) {
        z[2 * n - 1] = cos(n * s.omega * t);
        z[2 * n] = sin(n * s.omega * t);
      }
      return;
    }
    case BasisSpec::Random:  // cos(zeta_k t + eta_k)
      for (int k = 0; k < s.K; ++k) z[k] = cos(s.zeta[k] * t + s.eta[k]);
      return;
  }
}

}  // namespace nanode::basis
