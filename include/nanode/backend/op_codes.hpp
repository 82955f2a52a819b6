#pragma once
// Operation codes and layout descriptors shared by the CPU backend and the CUDA
// launchers. Plain C++: included by nvcc translation units too.
#include <cstdint>

// Marks functions for both host and device code under nvcc (the host code it marks
// is the same token for token either way).
#ifndef NANODE_HD
#if defined(__CUDACC__)
#define NANODE_HD __host__ __device__
#else
#define NANODE_HD
#endif
#endif

namespace nanode {

// The ops' formulas (CPU and CUDA) are in backend/unary_ops.hpp, one struct each.
enum class BinaryOp : int { Add, Sub, Mul, Div };

/// Elementwise maps. p0/p1 are the op's scalar parameters:
/// LeakyRelu: p0 = negative slope; Pow: p0 = exponent; Affine: y = p0 * x + p1;
/// Step: y = (x > p0) ? p1 : 0 (zero derivative; builds masks).
enum class UnaryOp : int {
  Exp, Log, Sqrt, Tanh, Sigmoid, Relu, LeakyRelu, Softplus, Sin, Cos, Pow, Affine, Square, Step
};

/// A broadcast binary layout after merging contiguous axes: out is contiguous with
/// sizes `size`, and a/b are read with strides `stride_a`/`stride_b` (0 = broadcast).
struct BroadcastDesc {
  int ndim = 0;
  int64_t size[5] = {0, 0, 0, 0, 0};
  int64_t stride_a[5] = {0, 0, 0, 0, 0};
  int64_t stride_b[5] = {0, 0, 0, 0, 0};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= size[i];
    return n;
  }
};

/// Permutation of a contiguous tensor: out has sizes `size` (already permuted)
/// and element out[i0..i4] = in[sum_k i_k * in_stride[k]].
struct PermuteDesc {
  int ndim = 0;
  int64_t size[5] = {0, 0, 0, 0, 0};
  int64_t in_stride[5] = {0, 0, 0, 0, 0};
};

/// The geometry of a 2-D window op over NCHW planes (pooling; convolution with Co
/// output channels): input [N, C, H, W], output [N, Co, Ho, Wo], kh x kw windows,
/// strides sh, sw and zero padding ph, pw.
struct WindowDesc {
  int64_t N = 0, C = 0, H = 0, W = 0, Co = 0, Ho = 0, Wo = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
};

/// A time basis z(t) described for the kernels, which evaluate it themselves
/// (backend/basis_math.hpp; timevarying/basis.hpp's classes evaluate through the
/// same code). K terms; at most kMaxSpecTerms (a larger basis is evaluated on the host).
struct BasisSpec {
  static constexpr int kMaxSpecTerms = 256;
  enum Kind : int { Constant, Bucket, Monomial, Chebyshev, Legendre, Trig, Random };
  int kind = Constant;
  int K = 1;       ///< number of terms
  int d = 0;       ///< order (buckets, polynomial degree + 1, trig frequencies)
  double t0 = 0, t1 = 1;
  double omega = 1;  ///< trig only: the base frequency (frequencies n omega, n = 1..d)
  double zeta[kMaxSpecTerms] = {}, eta[kMaxSpecTerms] = {};  ///< random features only
};

}  // namespace nanode
