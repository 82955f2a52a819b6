#pragma once
// Time bases z(t): a time-varying weight is W(t) = sum_k z_k(t) A_k (DESIGN.md §1).
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "nanode/backend/basis_math.hpp"
#include "nanode/core/error.hpp"
#include "nanode/core/rng.hpp"

namespace nanode::tv {

class TimeBasis {
 public:
  virtual ~TimeBasis() = default;
  /// Number of basis functions K.
  virtual int size() const = 0;
  /// z(t), K values.
  virtual std::vector<double> eval(double t) const = 0;
  /// Adds the times in (t0, t1) where z jumps (only bucketed bases jump).
  virtual void collect_jump_times(double t0, double t1, std::vector<double>& out) const {
    (void)t0, (void)t1, (void)out;
  }
  virtual std::string name() const = 0;
  /// True when z_0(t) = 1 for every t (the constant term a_0 of the expansion):
  /// the L2 penalty on coefficients leaves A_0 alone unless asked.
  virtual bool has_constant_term() const { return false; }
  /// Describes the basis for kernels that evaluate z(t) themselves
  /// (backend/basis_math.hpp); false when it cannot be described (or has more than
  /// BasisSpec::kMaxSpecTerms terms), and then z is evaluated on the host.
  virtual bool spec(BasisSpec& out) const {
    (void)out;
    return false;
  }
  /// Mean of sum_k z_k(t)^2 over [t0, t1]: initialisers divide by its root so that
  /// W(t) starts at the scale of a plain layer's weight whatever the basis.
  double mean_square(double t0, double t1) const {
    double s = 0;
    const int n = 64;
    for (int i = 0; i < n; ++i) {
      const auto z = eval(t0 + (t1 - t0) * (i + 0.5) / n);
      for (double v : z) s += v * v;
    }
    return s / n;
  }
};
using BasisPtr = std::shared_ptr<const TimeBasis>;

namespace detail {
/// z(t) of a basis without random draws, through basis_math (the kernels' code).
inline std::vector<double> eval_kind(int kind, int K, int d, double t0, double t1, double t) {
  BasisSpec s;
  s.kind = kind, s.K = K, s.d = d, s.t0 = t0, s.t1 = t1;
  std::vector<double> z(static_cast<size_t>(K));
  basis::eval(s, t, z.data());
  return z;
}
inline bool describe(BasisSpec& out, int kind, int K, int d, double t0, double t1) {
  if (K > BasisSpec::kMaxSpecTerms) return false;
  out.kind = kind, out.K = K, out.d = d, out.t0 = t0, out.t1 = t1;
  return true;
}
}  // namespace detail

/// z = [1]: weights shared over time (Auto / Con-ResNet).
class ConstantBasis : public TimeBasis {
 public:
  int size() const override { return 1; }
  std::vector<double> eval(double) const override { return {1.0}; }
  std::string name() const override { return "constant"; }
  bool has_constant_term() const override { return true; }
  bool spec(BasisSpec& out) const override { return detail::describe(out, BasisSpec::Constant, 1, 0, 0, 1); }
};

/// One-hot of the bucket floor(d (t - t0) / (t1 - t0)) (last bucket closed):
/// piecewise-constant weights (B-NANODE). Jumps at the bucket edges.
class BucketBasis : public TimeBasis {
 public:
  BucketBasis(int d, double t0 = 0.0, double t1 = 1.0) : d_(d), t0_(t0), t1_(t1) {
    NANODE_CHECK(d >= 1, "BucketBasis: need at least one bucket, got ", d);
    NANODE_CHECK(t1 > t0, "BucketBasis: empty interval [", t0, ", ", t1, "]");
  }
  int size() const override { return d_; }
  int bucket(double t) const {
    const double u = (t - t0_) / (t1_ - t0_);
    int k = static_cast<int>(std::floor(u * d_));
    return k < 0 ? 0 : (k >= d_ ? d_ - 1 : k);
  }
  std::vector<double> eval(double t) const override {
    return detail::eval_kind(BasisSpec::Bucket, d_, d_, t0_, t1_, t);
  }
  bool spec(BasisSpec& out) const override { return detail::describe(out, BasisSpec::Bucket, d_, d_, t0_, t1_); }
  void collect_jump_times(double a, double b, std::vector<double>& out) const override {
    for (int k = 1; k < d_; ++k) {
      const double e = t0_ + (t1_ - t0_) * k / d_;
      if (e > a && e < b) out.push_back(e);
    }
  }
  std::string name() const override { return "bucket-" + std::to_string(d_); }

 private:
  int d_;
  double t0_, t1_;
};

/// t^n, n = 0..d-1 (badly conditioned for large d; Fig. 2 of the paper).
class MonomialBasis : public TimeBasis {
 public:
  explicit MonomialBasis(int d) : d_(d) { NANODE_CHECK(d >= 1, "MonomialBasis: order must be >= 1, got ", d); }
  int size() const override { return d_; }
  std::vector<double> eval(double t) const override { return detail::eval_kind(BasisSpec::Monomial, d_, d_, 0, 1, t); }
  bool spec(BasisSpec& out) const override { return detail::describe(out, BasisSpec::Monomial, d_, d_, 0, 1); }
  std::string name() const override { return "monomial-" + std::to_string(d_); }
  bool has_constant_term() const override { return true; }

 private:
  int d_;
};

/// Chebyshev (first kind) or Legendre polynomials P_n(u), n = 0..d-1, of
/// u = 2 (t - t0) / (t1 - t0) - 1 in [-1, 1].
class OrthoPolyBasis : public TimeBasis {
 public:
  enum class Kind { Chebyshev, Legendre };
  OrthoPolyBasis(Kind kind, int d, double t0 = 0.0, double t1 = 1.0) : kind_(kind), d_(d), t0_(t0), t1_(t1) {
    NANODE_CHECK(d >= 1, "polynomial basis: order must be >= 1, got ", d);
    NANODE_CHECK(t1 > t0, "polynomial basis: empty interval [", t0, ", ", t1, "]");
  }
  int size() const override { return d_; }
  std::vector<double> eval(double t) const override { return detail::eval_kind(spec_kind(), d_, d_, t0_, t1_, t); }
  bool spec(BasisSpec& out) const override { return detail::describe(out, spec_kind(), d_, d_, t0_, t1_); }
  std::string name() const override {
    return std::string(kind_ == Kind::Chebyshev ? "chebyshev-" : "legendre-") + std::to_string(d_);
  }
  bool has_constant_term() const override { return true; }

 private:
  int spec_kind() const { return kind_ == Kind::Chebyshev ? BasisSpec::Chebyshev : BasisSpec::Legendre; }
  Kind kind_;
  int d_;
  double t0_, t1_;
};

/// [1, cos(w t), sin(w t), ..., cos(d w t), sin(d w t)]: 2d + 1 terms (T-NANODE,
/// eq. 8). The paper's literal basis has w = 1 (period 0 here); a period T > 0
/// sets w = 2 pi / T, so that the terms are orthogonal over any interval of length T
/// (on [0, 1] with w = 1 they are nearly collinear: the Gram matrix of d = 4 has
/// condition number about 1e14).
class TrigBasis : public TimeBasis {
 public:
  explicit TrigBasis(int d, double period = 0.0) : d_(d), period_(period) {
    NANODE_CHECK(d >= 0, "TrigBasis: order must be >= 0, got ", d);
    NANODE_CHECK(std::isfinite(period) && period >= 0, "TrigBasis: period must be 0 (frequencies 1..d) or positive, "
                 "got ", period);
  }
  int size() const override { return 2 * d_ + 1; }
  int order() const { return d_; }
  double period() const { return period_; }
  /// The base frequency w: 1, or 2 pi / period.
  double omega() const { return period_ > 0 ? 6.283185307179586 / period_ : 1.0; }
  std::vector<double> eval(double t) const override {
    BasisSpec s;  // filled directly: basis::eval needs no zeta/eta, so any order works here
    s.kind = BasisSpec::Trig, s.K = 2 * d_ + 1, s.d = d_, s.omega = omega();
    std::vector<double> z(static_cast<size_t>(size()));
    basis::eval(s, t, z.data());
    return z;
  }
  bool spec(BasisSpec& out) const override {
    if (!detail::describe(out, BasisSpec::Trig, 2 * d_ + 1, d_, 0, 1)) return false;  // too many terms for kernels
    out.omega = omega();
    return true;
  }
  bool has_constant_term() const override { return true; }
  std::string name() const override {
    std::string n = "trig-" + std::to_string(d_);
    if (period_ > 0) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "-period-%g", period_);
      n += buf;
    }
    return n;
  }

 private:
  int d_;
  double period_;
};

/// Random Fourier features cos(zeta_k t + eta_k), zeta ~ N(0, sigma^2),
/// eta ~ U[0, 2 pi), drawn once from `seed` and fixed.
class RandomFourierBasis : public TimeBasis {
 public:
  RandomFourierBasis(int d, double sigma = 1.0, uint64_t seed = 0) : d_(d), sigma_(sigma) {
    NANODE_CHECK(d >= 1, "RandomFourierBasis: need at least one feature, got ", d);
    NANODE_CHECK(sigma > 0, "RandomFourierBasis: sigma must be positive, got ", sigma);
    NANODE_CHECK(std::isfinite(sigma), "RandomFourierBasis: sigma must be finite, got ", sigma);
    Generator g(seed);
    // Rounded to float32, so that the float32 buffers that save them (layers.hpp)
    // hold them exactly and a saved model reloads to the same function.
    for (int k = 0; k < d; ++k) {
      zeta_.push_back(static_cast<float>(g.normal(0.0, sigma)));
      float e = static_cast<float>(g.uniform(0.0, 6.283185307179586));
      if (!(e < 6.2831855f)) e = 0.0f;  // keep eta in [0, 2 pi)
      eta_.push_back(e);
    }
  }
  /// Given frequencies and phases (as drawn elsewhere, e.g. a reference in PyTorch).
  RandomFourierBasis(std::vector<double> zeta, std::vector<double> eta)
      : d_(static_cast<int>(zeta.size())), sigma_(0.0), zeta_(std::move(zeta)), eta_(std::move(eta)) {
    NANODE_CHECK(d_ >= 1 && zeta_.size() == eta_.size(), "RandomFourierBasis: need as many phases as frequencies "
                 "(at least one), got ", zeta_.size(), " and ", eta_.size());
  }
  int size() const override { return d_; }
  const std::vector<double>& frequencies() const { return zeta_; }
  const std::vector<double>& phases() const { return eta_; }
  std::vector<double> eval(double t) const override {
    std::vector<double> z(static_cast<size_t>(d_));
    for (size_t k = 0; k < z.size(); ++k) z[k] = std::cos(zeta_[k] * t + eta_[k]);  // as basis_math's Random
    return z;
  }
  bool spec(BasisSpec& out) const override {
    if (!detail::describe(out, BasisSpec::Random, d_, d_, 0, 1)) return false;
    for (int k = 0; k < d_; ++k) out.zeta[k] = zeta_[static_cast<size_t>(k)], out.eta[k] = eta_[static_cast<size_t>(k)];
    return true;
  }
  std::string name() const override { return "random-fourier-" + std::to_string(d_); }

 private:
  int d_;
  double sigma_;
  std::vector<double> zeta_, eta_;
};

/// A basis by name: constant, bucket, monomial, chebyshev, legendre, trig, random.
/// `order` is d (trig has 2d + 1 terms); [t0, t1] is the integration interval.
inline BasisPtr make_basis(const std::string& kind, int order, double t0 = 0.0, double t1 = 1.0, uint64_t seed = 0) {
  if (kind == "constant") return std::make_shared<ConstantBasis>();
  if (kind == "bucket") return std::make_shared<BucketBasis>(order, t0, t1);
  if (kind == "monomial") return std::make_shared<MonomialBasis>(order);
  if (kind == "chebyshev") return std::make_shared<OrthoPolyBasis>(OrthoPolyBasis::Kind::Chebyshev, order, t0, t1);
  if (kind == "legendre") return std::make_shared<OrthoPolyBasis>(OrthoPolyBasis::Kind::Legendre, order, t0, t1);
  if (kind == "trig") return std::make_shared<TrigBasis>(order);
  if (kind == "random") return std::make_shared<RandomFourierBasis>(order, 1.0, seed);
  fail("unknown time basis '", kind, "' (valid: constant, bucket, monomial, chebyshev, legendre, trig, random)");
}

}  // namespace nanode::tv
