#pragma once
// Elementwise ops on Vars: broadcast arithmetic, scalar affine maps and the
// unary activations. Each op's forward and backward sit together.
#include "nanode/autograd/var.hpp"

namespace nanode {

namespace detail {
inline Var binary_op(BinaryOp op, const Var& a, const Var& b) {
  Tensor out = backend::binary(op, a.data(), b.data());
  const Tensor ta = a.data(), tb = b.data();
  const bool need_a_val = op == BinaryOp::Mul && b.requires_grad();
  const bool need_b_val = (op == BinaryOp::Mul && a.requires_grad()) || op == BinaryOp::Div;
  const Tensor sa = need_a_val || op == BinaryOp::Div ? ta : Tensor();
  const Tensor sb = need_b_val ? tb : Tensor();
  const Tensor so = op == BinaryOp::Div && b.requires_grad() ? out : Tensor();
  const Shape shape_a = ta.shape(), shape_b = tb.shape();
  return make_result(backend::binary_name(op), out, {a, b},
                     [op, sa, sb, so, shape_a, shape_b](const Tensor& g, GradInputs& gi) {
                       using backend::binary;
                       using backend::sum_to_shape;
                       switch (op) {
                         case BinaryOp::Add:
                           if (gi.need(0)) gi.set(0, sum_to_shape(g, shape_a));
                           if (gi.need(1)) gi.set(1, sum_to_shape(g, shape_b));
                           break;
                         case BinaryOp::Sub:
                           if (gi.need(0)) gi.set(0, sum_to_shape(g, shape_a));
                           if (gi.need(1)) gi.set(1, backend::unary(UnaryOp::Affine, sum_to_shape(g, shape_b), -1.0));
                           break;
                         case BinaryOp::Mul:
                           if (gi.need(0)) gi.set(0, sum_to_shape(binary(BinaryOp::Mul, g, sb), shape_a));
                           if (gi.need(1)) gi.set(1, sum_to_shape(binary(BinaryOp::Mul, g, sa), shape_b));
                           break;
                         case BinaryOp::Div:
                           if (gi.need(0)) gi.set(0, sum_to_shape(binary(BinaryOp::Div, g, sb), shape_a));
                           if (gi.need(1)) {
                             // d(a/b)/db = -out / b
                             Tensor t = binary(BinaryOp::Div, binary(BinaryOp::Mul, g, so), sb);
                             gi.set(1, backend::unary(UnaryOp::Affine, sum_to_shape(t, shape_b), -1.0));
                           }
                           break;
                       }
                     });
}

inline Var unary_op(const char* name, UnaryOp op, const Var& x, double p0 = 0.0, double p1 = 0.0) {
  Tensor y = backend::unary(op, x.data(), p0, p1);
  // Keep only what the op's derivative reads (backend/unary_ops.hpp).
  const unary::Reads reads = unary::reads(op);
  const Tensor sx = reads == unary::Reads::X ? x.data() : Tensor(), sy = reads == unary::Reads::Y ? y : Tensor();
  return make_result(name, y, {x}, [op, sx, sy, p0, p1](const Tensor& g, GradInputs& gi) {
    gi.set(0, backend::unary_backward(op, g, sx, sy.defined() ? sy : Tensor(), p0, p1));
  });
}
}  // namespace detail

NANODE_REGISTER_OP(add);
NANODE_REGISTER_OP(sub);
NANODE_REGISTER_OP(mul);
NANODE_REGISTER_OP(div);
inline Var add(const Var& a, const Var& b) { return detail::binary_op(BinaryOp::Add, a, b); }
inline Var sub(const Var& a, const Var& b) { return detail::binary_op(BinaryOp::Sub, a, b); }
inline Var mul(const Var& a, const Var& b) { return detail::binary_op(BinaryOp::Mul, a, b); }
inline Var div(const Var& a, const Var& b) { return detail::binary_op(BinaryOp::Div, a, b); }

/// y = scale * x + shift (the op behind arithmetic with scalars).
NANODE_REGISTER_OP(affine);
inline Var affine(const Var& x, double scale, double shift = 0.0) {
  return detail::unary_op("affine", UnaryOp::Affine, x, scale, shift);
}

NANODE_REGISTER_OP(exp);
NANODE_REGISTER_OP(log);
NANODE_REGISTER_OP(sqrt);
NANODE_REGISTER_OP(pow);
NANODE_REGISTER_OP(square);
NANODE_REGISTER_OP(tanh);
NANODE_REGISTER_OP(sigmoid);
NANODE_REGISTER_OP(relu);
NANODE_REGISTER_OP(leaky_relu);
NANODE_REGISTER_OP(softplus);
NANODE_REGISTER_OP(sin);
NANODE_REGISTER_OP(cos);
inline Var exp(const Var& x) { return detail::unary_op("exp", UnaryOp::Exp, x); }
inline Var log(const Var& x) { return detail::unary_op("log", UnaryOp::Log, x); }
inline Var sqrt(const Var& x) { return detail::unary_op("sqrt", UnaryOp::Sqrt, x); }
inline Var pow(const Var& x, double exponent) { return detail::unary_op("pow", UnaryOp::Pow, x, exponent); }
inline Var square(const Var& x) { return detail::unary_op("square", UnaryOp::Square, x); }
inline Var tanh(const Var& x) { return detail::unary_op("tanh", UnaryOp::Tanh, x); }
inline Var sigmoid(const Var& x) { return detail::unary_op("sigmoid", UnaryOp::Sigmoid, x); }
inline Var relu(const Var& x) { return detail::unary_op("relu", UnaryOp::Relu, x); }
inline Var leaky_relu(const Var& x, double negative_slope = 0.01) {
  return detail::unary_op("leaky_relu", UnaryOp::LeakyRelu, x, negative_slope);
}
/// log(1 + exp(x)), computed without overflow.
inline Var softplus(const Var& x) { return detail::unary_op("softplus", UnaryOp::Softplus, x); }
inline Var sin(const Var& x) { return detail::unary_op("sin", UnaryOp::Sin, x); }
inline Var cos(const Var& x) { return detail::unary_op("cos", UnaryOp::Cos, x); }

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator-(const Var& a) { return affine(a, -1.0); }
inline Var operator+(const Var& a, double s) { return affine(a, 1.0, s); }
inline Var operator+(double s, const Var& a) { return affine(a, 1.0, s); }
inline Var operator-(const Var& a, double s) { return affine(a, 1.0, -s); }
inline Var operator-(double s, const Var& a) { return affine(a, -1.0, s); }
inline Var operator*(const Var& a, double s) { return affine(a, s); }
inline Var operator*(double s, const Var& a) { return affine(a, s); }
inline Var operator/(const Var& a, double s) { return affine(a, 1.0 / s); }
inline Var operator/(double s, const Var& a) { return affine(pow(a, -1.0), s); }

}  // namespace nanode
