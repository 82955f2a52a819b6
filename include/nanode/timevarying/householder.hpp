#pragma once
// Householder-orthogonal weights (Sec. 2.5, Lemma 1): M = H(u_1) ... H(u_k),
// H(u) = I - 2 u u^T / |u|^2, applied either as a sequential chain of
// reflections or in compact-WY form M = I - U S^{-1} U^T with U = [u_i / |u_i|]
// and S = I/2 + striu(U^T U) (GEMMs and one triangular solve). The vectors u_i are
// fixed parameters or functions of time through a basis.
#include "nanode/ops/elementwise.hpp"
#include "nanode/ops/linalg.hpp"
#include "nanode/ops/reduce.hpp"
#include "nanode/timevarying/layers.hpp"

namespace nanode::tv {

enum class HouseholderMode { Sequential, CompactWY };

class HouseholderLinear : public TimeLayer {
 public:
  /// k reflections in R^n. With a basis, the reflection vectors vary in time.
  HouseholderLinear(int64_t n, int64_t k, BasisPtr basis = nullptr, HouseholderMode mode = HouseholderMode::CompactWY,
                    Generator& gen = default_generator())
      : n_(n), k_(k), basis_(std::move(basis)), mode_(mode) {
    NANODE_CHECK(n >= 1 && k >= 1, "HouseholderLinear: need n >= 1 and k >= 1, got n = ", n, ", k = ", k);
    std::vector<int64_t> shape{k, n};
    if (basis_) shape.insert(shape.begin(), basis_->size());
    vectors = register_parameter("vector_coeffs", Tensor::normal(Shape(shape), 0.0, 1.0, gen));
    // The strictly upper mask that builds S from the Gram matrix.
    std::vector<float> m(static_cast<size_t>(k * k), 0.0f);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = i + 1; j < k; ++j) m[static_cast<size_t>(i * k + j)] = 1.0f;
    upper_ = Tensor::from_vector(m, {k, k});
    half_eye_ = Tensor::zeros({k, k});
    for (int64_t i = 0; i < k; ++i) half_eye_.data<float>()[i * k + i] = 0.5f;
  }

  /// The reflection vectors at time t, normalised: rows of [k, n].
  Var unit_vectors(double t) const {
    Var v = basis_ ? combine_at(vectors, *basis_, t) : vectors;
    return v / sqrt(sum(square(v), {1}, true));
  }
  /// y = x M(t)^T for x [B, n].
  Var forward(double t, const Var& x) const override {
    NANODE_CHECK(x.ndim() == 2 && x.size(1) == n_, "HouseholderLinear: input must be [B, ", n_, "], got ", x.shape());
    if (mode_ == HouseholderMode::Sequential)  // x M^T = x H_k ... H_1 (each H symmetric): one fused pass
      return householder_chain(x, basis_ ? combine_at(vectors, *basis_, t) : vectors);
    const Var u = unit_vectors(t);
    // x M^T = x - ((x U) S^{-T}) U^T, with (P S^{-T}) = (S^{-1} P^T)^T.
    const Var S = Var(cast(half_eye_, u)) + mul(matmul(u, transpose(u)), Var(cast(upper_, u)));
    const Var P = matmul(x, transpose(u));                        // [B, k]
    const Var Qt = triangular_solve(S, transpose(P), /*upper=*/true);  // [k, B]
    return x - matmul(transpose(Qt), u);
  }
  /// The dense orthogonal matrix M(t) [n, n].
  Var matrix(double t) const {
    std::vector<double> id(static_cast<size_t>(n_ * n_), 0.0);
    for (int64_t i = 0; i < n_; ++i) id[static_cast<size_t>(i * n_ + i)] = 1.0;
    Var I(Tensor::from_vector(id, {n_, n_}).to(vectors.dtype()).to(vectors.device()));
    return transpose(forward(t, I));  // I M^T = M^T
  }
  void collect_jump_times(double t0, double t1, std::vector<double>& out) const override {
    if (basis_) basis_->collect_jump_times(t0, t1, out);
  }
  Var vectors;

 private:
  static Tensor cast(const Tensor& t, const Var& like) { return t.to(like.dtype()).to(like.device()); }
  int64_t n_, k_;
  BasisPtr basis_;
  HouseholderMode mode_;
  Tensor upper_, half_eye_;
};

}  // namespace nanode::tv
