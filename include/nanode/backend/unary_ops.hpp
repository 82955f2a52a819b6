#pragma once
// Every elementwise op, whole, in one place. A unary op: its name, what its derivative
// reads (x, y = op(x), or neither), its scalar forward and derivative (what the
// CUDA kernels and the emulated build run), and its vectorised CPU forward and
// derivative (Eigen array expressions; templates, so this header needs no Eigen
// and nvcc can include it). cpu::unary and the CUDA unary kernels dispatch over
// NANODE_UNARY_OPS; the Var ops (ops/elementwise.hpp) keep what the derivative
// reads from `reads`; an op's test cases are in tests/op_cases.hpp, which the
// gradient check and the op x backend test walk.
//
// To add an op: a struct here, its entry in NANODE_UNARY_OPS and in UnaryOp
// (op_codes.hpp), its Var function in ops/elementwise.hpp, and its case.
// p0, p1 are the op's scalar parameters (see UnaryOp).
#include <math.h>

#include "nanode/backend/op_codes.hpp"


namespace nanode::unary {

// The math functions for float (the f-suffixed C functions, which CUDA device code
// has) and double.
NANODE_HD inline float m_exp(float x) { return expf(x); }
NANODE_HD inline double m_exp(double x) { return exp(x); }
NANODE_HD inline float m_log(float x) { return logf(x); }
NANODE_HD inline double m_log(double x) { return log(x); }
NANODE_HD inline float m_sqrt(float x) { return sqrtf(x); }
NANODE_HD inline double m_sqrt(double x) { return sqrt(x); }
NANODE_HD inline float m_tanh(float x) { return tanhf(x); }
NANODE_HD inline double m_tanh(double x) { return tanh(x); }
NANODE_HD inline float m_sin(float x) { return sinf(x); }
NANODE_HD inline double m_sin(double x) { return sin(x); }
NANODE_HD inline float m_cos(float x) { return cosf(x); }
NANODE_HD inline double m_cos(double x) { return cos(x); }
NANODE_HD inline float m_pow(float x, float p) { return powf(x, p); }
NANODE_HD inline double m_pow(double x, double p) { return pow(x, p); }
NANODE_HD inline float m_log1p(float x) { return log1pf(x); }
NANODE_HD inline double m_log1p(double x) { return log1p(x); }
template <class T>
NANODE_HD T m_sigmoid(T x) {
  return T(1) / (T(1) + m_exp(-x));
}

/// What an op's derivative reads besides the incoming gradient.
enum class Reads { Nothing, X, Y };

struct Exp {
  static constexpr const char* name = "exp";
  static constexpr Reads reads = Reads::Y;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_exp(x); }
  template <class T> NANODE_HD static T df(T g, T, T y, T) { return g * y; }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.exp(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X&, const Y& y, O& o, T) {
    o = g * y;
  }
};
struct Log {
  static constexpr const char* name = "log";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_log(x); }
  template <class T> NANODE_HD static T df(T g, T x, T, T) { return g / x; }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.log(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X& x, const Y&, O& o, T) {
    o = g / x;
  }
};
struct Sqrt {
  static constexpr const char* name = "sqrt";
  static constexpr Reads reads = Reads::Y;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_sqrt(x); }
  template <class T> NANODE_HD static T df(T g, T, T y, T) { return g * T(0.5) / y; }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.sqrt(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X&, const Y& y, O& o, T) {
    o = g * T(0.5) / y;
  }
};
struct Tanh {
  static constexpr const char* name = "tanh";
  static constexpr Reads reads = Reads::Y;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_tanh(x); }
  template <class T> NANODE_HD static T df(T g, T, T y, T) { return g * (T(1) - y * y); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.tanh(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X&, const Y& y, O& o, T) {
    o = g * (T(1) - y.square());
  }
};
struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  static constexpr Reads reads = Reads::Y;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_sigmoid(x); }
  template <class T> NANODE_HD static T df(T g, T, T y, T) { return g * y * (T(1) - y); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.logistic(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X&, const Y& y, O& o, T) {
    o = g * y * (T(1) - y);
  }
};
struct Relu {
  static constexpr const char* name = "relu";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T, T) { return x > T(0) ? x : T(0); }
  template <class T> NANODE_HD static T df(T g, T x, T, T) { return x > T(0) ? g : T(0); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.max(T(0)); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X& x, const Y&, O& o, T) {
    o = (x > T(0)).select(g, T(0));
  }
};
struct LeakyRelu {  // p0: the negative slope
  static constexpr const char* name = "leaky_relu";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T p0, T) { return x > T(0) ? x : x * p0; }
  template <class T> NANODE_HD static T df(T g, T x, T, T p0) { return x > T(0) ? g : g * p0; }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T p0, T) { o = (x > T(0)).select(x, x * p0); }
  template <class G, class X, class Y, class O, class T>
  static void cpu_df(const G& g, const X& x, const Y&, O& o, T p0) {
    o = (x > T(0)).select(g, g * p0);
  }
};
struct Softplus {  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|), without overflow
  static constexpr const char* name = "softplus";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T, T) {
    return (x > T(0) ? x : T(0)) + m_log1p(m_exp(x > T(0) ? -x : x));
  }
  template <class T> NANODE_HD static T df(T g, T x, T, T) { return g * m_sigmoid(x); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) {
    o = x.max(T(0)) + (-x.abs()).exp().log1p();
  }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X& x, const Y&, O& o, T) {
    o = g * x.logistic();
  }
};
struct Sin {
  static constexpr const char* name = "sin";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_sin(x); }
  template <class T> NANODE_HD static T df(T g, T x, T, T) { return g * m_cos(x); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.sin(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X& x, const Y&, O& o, T) {
    o = g * x.cos();
  }
};
struct Cos {
  static constexpr const char* name = "cos";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T, T) { return m_cos(x); }
  template <class T> NANODE_HD static T df(T g, T x, T, T) { return -g * m_sin(x); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.cos(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X& x, const Y&, O& o, T) {
    o = -g * x.sin();
  }
};
struct Pow {  // p0: the exponent (2 is x * x exactly)
  static constexpr const char* name = "pow";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T p0, T) { return p0 == T(2) ? x * x : m_pow(x, p0); }
  template <class T> NANODE_HD static T df(T g, T x, T, T p0) {
    return p0 == T(2) ? T(2) * g * x : g * p0 * m_pow(x, p0 - T(1));
  }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T p0, T) {
    if (p0 == T(2)) o = x.square();
    else if (p0 == T(1)) o = x;
    else if (p0 == T(0.5)) o = x.sqrt();
    else o = x.pow(p0);
  }
  template <class G, class X, class Y, class O, class T>
  static void cpu_df(const G& g, const X& x, const Y&, O& o, T p0) {
    if (p0 == T(2)) o = T(2) * g * x;
    else if (p0 == T(1)) o = g;
    else o = g * p0 * x.pow(p0 - T(1));
  }
};
struct Affine {  // y = p0 x + p1
  static constexpr const char* name = "affine";
  static constexpr Reads reads = Reads::Nothing;
  template <class T> NANODE_HD static T f(T x, T p0, T p1) { return x * p0 + p1; }
  template <class T> NANODE_HD static T df(T g, T, T, T p0) { return g * p0; }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T p0, T p1) { o = x * p0 + p1; }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X&, const Y&, O& o, T p0) {
    o = g * p0;
  }
};
struct Square {
  static constexpr const char* name = "square";
  static constexpr Reads reads = Reads::X;
  template <class T> NANODE_HD static T f(T x, T, T) { return x * x; }
  template <class T> NANODE_HD static T df(T g, T x, T, T) { return T(2) * g * x; }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T, T) { o = x.square(); }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G& g, const X& x, const Y&, O& o, T) {
    o = T(2) * g * x;
  }
};
struct Step {  // y = (x > p0) ? p1 : 0, derivative zero (builds masks)
  static constexpr const char* name = "step";
  static constexpr Reads reads = Reads::Nothing;
  template <class T> NANODE_HD static T f(T x, T p0, T p1) { return x > p0 ? p1 : T(0); }
  template <class T> NANODE_HD static T df(T, T, T, T) { return T(0); }
  template <class X, class O, class T> static void cpu_f(const X& x, O& o, T p0, T p1) {
    o = (x > p0).template cast<T>() * p1;
  }
  template <class G, class X, class Y, class O, class T> static void cpu_df(const G&, const X&, const Y&, O& o, T) {
    o.setZero();
  }
};

// Every op, in UnaryOp's order.
#define NANODE_UNARY_OPS(X) \
  X(Exp) X(Log) X(Sqrt) X(Tanh) X(Sigmoid) X(Relu) X(LeakyRelu) X(Softplus) X(Sin) X(Cos) X(Pow) X(Affine) X(Square) X(Step)

/// Calls fn(Op{}) with the struct of `op` (host code; the CUDA kernels switch
/// over NANODE_UNARY_OPS themselves).
template <class Fn>
auto visit(UnaryOp op, Fn&& fn) {
  switch (op) {
#define NANODE_UNARY_CASE(Op) \
  case UnaryOp::Op: return fn(Op{});
    NANODE_UNARY_OPS(NANODE_UNARY_CASE)
#undef NANODE_UNARY_CASE
  }
  return fn(Step{});  // unreachable: every UnaryOp has a case above
}

inline Reads reads(UnaryOp op) {
  return visit(op, [](auto o) { return decltype(o)::reads; });
}

}  // namespace nanode::unary

namespace nanode::binary {

// The four broadcast binary ops the same way: a scalar formula (CUDA kernels) and
// a CPU formula that takes arrays or scalars on either side. Their backward, with
// the reductions over broadcast axes, is in ops/elementwise.hpp.
struct Add {
  static constexpr const char* name = "add";
  template <class T> NANODE_HD static T f(T a, T b) { return a + b; }
  template <class A, class B> static auto cpu_f(const A& a, const B& b) { return a + b; }
};
struct Sub {
  static constexpr const char* name = "sub";
  template <class T> NANODE_HD static T f(T a, T b) { return a - b; }
  template <class A, class B> static auto cpu_f(const A& a, const B& b) { return a - b; }
};
struct Mul {
  static constexpr const char* name = "mul";
  template <class T> NANODE_HD static T f(T a, T b) { return a * b; }
  template <class A, class B> static auto cpu_f(const A& a, const B& b) { return a * b; }
};
struct Div {
  static constexpr const char* name = "div";
  template <class T> NANODE_HD static T f(T a, T b) { return a / b; }
  template <class A, class B> static auto cpu_f(const A& a, const B& b) { return a / b; }
};

#define NANODE_BINARY_OPS(X) X(Add) X(Sub) X(Mul) X(Div)

/// Calls fn(Op{}) with the struct of `op` (host code).
template <class Fn>
auto visit(BinaryOp op, Fn&& fn) {
  switch (op) {
#define NANODE_BINARY_CASE(Op) \
  case BinaryOp::Op: return fn(Op{});
    NANODE_BINARY_OPS(NANODE_BINARY_CASE)
#undef NANODE_BINARY_CASE
  }
  return fn(Add{});  // unreachable
}

}  // namespace nanode::binary
