#pragma once
// Householder-orthogonal weights (Sec. 2.5, Lemma 1): M = H(u_1) ... H(u_k),
// H(u) = I - 2 u u^T / |u|^2, applied either as a sequential chain of
// reflections or in compact-WY form M = I - U S^{-1} U^T with U = [u_i / |u_i|]
// and S = I/2 + striu(U^T U) (GEMMs and one triangular solve). The vectors vary in
// time through a basis, u_i(t) = sum_k z_k(t) U_ik (a constant basis: fixed
// vectors). k = n reflections reach all of O(n) (Lemma 1).
//
// A rectangular weight W [out, in] is the first rows (out <= in, orthonormal rows)
// or the first columns (out > in, orthonormal columns) of M in R^{max(in, out)}:
// a point of the Stiefel manifold. A convolution kernel [C_out, C_in, k, k] is such
// a W of shape [C_out, C_in k k], reshaped.
#include <algorithm>

#include "nanode/ops/conv.hpp"
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/linalg.hpp"
#include "nanode/ops/reduce.hpp"
#include "nanode/timevarying/layers.hpp"

namespace nanode::tv {

enum class HouseholderMode { Sequential, CompactWY };

/// y = x W(t)^T (+ b(t)) with W(t) [out, in] orthogonal (square) or with
/// orthonormal rows or columns (rectangular).
class HouseholderLinear : public TimeLayer {
 public:
  /// k reflections in R^max(in, out) (k <= 0: that dimension, as Lemma 1 needs).
  /// With a basis (nullptr: constant), the reflection vectors vary in time; with
  /// `bias`, b(t) [out] comes from the same basis (initialised to zero).
  HouseholderLinear(int64_t in, int64_t out, int64_t k, BasisPtr basis = nullptr,
                    HouseholderMode mode = HouseholderMode::CompactWY, bool bias = false,
                    Generator& gen = default_generator())
      : in_(in), out_(out), n_(std::max(in, out)), k_(k > 0 ? k : std::max(in, out)),
        basis_(basis ? std::move(basis) : std::make_shared<ConstantBasis>()), mode_(mode) {
    NANODE_CHECK(in >= 1 && out >= 1, "HouseholderLinear: need in >= 1 and out >= 1, got ", in, " -> ", out);
    vectors = register_parameter("vectors", Tensor::normal({basis_->size(), k_, n_}, 0.0, 1.0, gen));
    if (bias) bias_coeffs = register_parameter("bias_coeffs", Tensor::zeros({basis_->size(), out}));
    // The strictly upper mask that builds S from the Gram matrix, I/2, and the
    // [out, in] corner of the identity.
    std::vector<float> m(static_cast<size_t>(k_ * k_), 0.0f), h(static_cast<size_t>(k_ * k_), 0.0f),
        e(static_cast<size_t>(out * in), 0.0f);
    for (int64_t i = 0; i < k_; ++i) {
      h[static_cast<size_t>(i * k_ + i)] = 0.5f;
      for (int64_t j = i + 1; j < k_; ++j) m[static_cast<size_t>(i * k_ + j)] = 1.0f;
    }
    for (int64_t i = 0; i < std::min(in, out); ++i) e[static_cast<size_t>(i * in + i)] = 1.0f;
    upper_ = Tensor::from_vector(m, {k_, k_});
    half_eye_ = Tensor::from_vector(h, {k_, k_});
    corner_ = Tensor::from_vector(e, {out, in});
    keep_basis_draws(basis_);
  }

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  int64_t reflections() const { return k_; }
  const TimeBasis& basis() const { return *basis_; }

  /// The reflection vectors at time t: rows of [k, n], not normalised.
  Var vectors_at(double t) const { return combine_at(vectors, *basis_, t); }
  /// The reflection vectors at time t, normalised.
  Var unit_vectors(double t) const {
    const Var v = vectors_at(t);
    return v / sqrt(sum(square(v), {1}, true));
  }
  Var bias(double t) const { return bias_coeffs.defined() ? combine_at(bias_coeffs, *basis_, t) : Var(); }

  /// y = x W(t)^T (+ b(t)) for x [B, in].
  Var forward(double t, const Var& x) const override {
    NANODE_CHECK(x.ndim() == 2 && x.size(1) == in_, "HouseholderLinear: input must be [B, ", in_, "], got ", x.shape());
    if (in_ != out_) return linear(x, weight(t), bias(t));
    Var y;
    if (mode_ == HouseholderMode::Sequential) {  // x M^T = x H_k ... H_1 (each H symmetric): one fused pass
      y = householder_chain(x, vectors_at(t));
    } else {
      const Var u = unit_vectors(t);
      // x M^T = x - ((x U) S^{-T}) U^T, with (P S^{-T}) = (S^{-1} P^T)^T.
      const Var Qt = triangular_solve(gram_s(u), transpose(matmul(x, transpose(u))), /*upper=*/true);  // [k, B]
      y = x - matmul(transpose(Qt), u);
    }
    const Var b = bias(t);
    return b.defined() ? y + b : y;
  }

  /// W(t) [out, in]: M(t) itself when square, else its first rows or columns.
  Var weight(double t) const {
    if (mode_ == HouseholderMode::Sequential) {
      const Var mt = householder_chain(Var(cast(eye(n_), vectors)), vectors_at(t));  // I M^T = M^T [n, n]
      if (in_ == out_) return transpose(mt);
      // M[:out, :] = (M^T[:, :out])^T; M[:, :in] = (M^T[:in, :])^T.
      return out_ < in_ ? transpose(slice(mt, 1, 0, out_)) : transpose(slice(mt, 0, 0, in_));
    }
    // M[R, C] = I[R, C] - U[R, :] S^{-1} U[C, :]^T with U = u^T.
    const Var u = unit_vectors(t);  // [k, n]
    const Var ur = out_ < n_ ? slice(u, 1, 0, out_) : u, uc = in_ < n_ ? slice(u, 1, 0, in_) : u;
    const Var Q = triangular_solve(gram_s(u), uc, /*upper=*/true);  // S^{-1} U[C, :]^T: [k, in]
    return Var(cast(corner_, u)) - matmul(transpose(ur), Q);
  }
  /// The dense orthogonal matrix M(t) [n, n].
  Var matrix(double t) const {
    const Var I(cast(eye(n_), vectors));
    return transpose(householder_chain(I, vectors_at(t)));
  }
  void collect_jump_times(double t0, double t1, std::vector<double>& out) const override {
    basis_->collect_jump_times(t0, t1, out);
  }
  /// Only the bias's coefficients: the reflection vectors are normalised before use.
  void add_l2(Var& total, bool include_a0) const override { add_squares(total, bias_coeffs, *basis_, include_a0); }

  Var vectors, bias_coeffs;

 private:
  static Tensor cast(const Tensor& t, const Var& like) { return t.to(like.dtype()).to(like.device()); }
  static Tensor eye(int64_t n) {
    std::vector<float> id(static_cast<size_t>(n * n), 0.0f);
    for (int64_t i = 0; i < n; ++i) id[static_cast<size_t>(i * n + i)] = 1.0f;
    return Tensor::from_vector(id, {n, n});
  }
  /// S = I/2 + striu(u u^T) for unit rows u [k, n].
  Var gram_s(const Var& u) const {
    return Var(cast(half_eye_, u)) + mul(matmul(u, transpose(u)), Var(cast(upper_, u)));
  }
  int64_t in_, out_, n_, k_;
  BasisPtr basis_;
  HouseholderMode mode_;
  Tensor upper_, half_eye_, corner_;
};

/// A convolution whose kernel K(t) [out, in, k, k] is a Householder weight of shape
/// [out, in k k] (orthonormal rows when out <= in k k), with a bias b(t).
class HouseholderConv2d : public TimeLayer {
 public:
  HouseholderConv2d(int64_t in, int64_t out, int64_t kernel, BasisPtr basis, Conv2dOptions opt = Conv2dOptions(1, 0),
                    int64_t reflections = 0, HouseholderMode mode = HouseholderMode::CompactWY)
      : in_(in), out_(out), kernel_(kernel), opt_(opt) {
    NANODE_CHECK(in > 0 && out > 0 && kernel > 0, "HouseholderConv2d: channels and kernel size must be positive");
    w = register_module("weight", std::make_shared<HouseholderLinear>(in * kernel * kernel, out, reflections,
                                                                        std::move(basis), mode, /*bias=*/true));
  }
  Var kernel(double t) const { return reshape(w->weight(t), {out_, in_, kernel_, kernel_}); }
  Var forward(double t, const Var& x) const override { return conv2d(x, kernel(t), w->bias(t), opt_); }
  std::shared_ptr<HouseholderLinear> w;

 private:
  int64_t in_, out_, kernel_;
  Conv2dOptions opt_;
};

}  // namespace nanode::tv
