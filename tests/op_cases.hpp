#pragma once
// The op cases every op test walks: for each op registered with
// NANODE_REGISTER_OP, inputs (float64 on the CPU) and a function of them.
// tests/test_gradcheck.cpp (in the test_ops program) checks them against finite
// differences; tests/test_backend_ops.cpp runs them on every backend present
// against the CPU float64 result. Constants a case
// needs beside its inputs go through K() / KT(), which put them on the dtype and
// device the case runs on.
#include <map>
#include <string>
#include <vector>

#include "gradcheck.hpp"

namespace nanode::testing {

/// Where the cases run now: float64 on the CPU unless a backend test says otherwise.
struct Target {
  DType dtype = DType::Float64;
  Device device = Device::cpu();
};
inline Target& target() {
  static Target t;
  return t;
}
/// A constant for the current target (integer tensors keep their dtype).
inline Tensor KT(const Tensor& t) {
  Tensor out = t.dtype() == DType::Int32 ? t : t.to(target().dtype);
  return out.to(target().device);
}
inline Var K(const Tensor& t) { return Var(KT(t)); }

struct Case {
  std::string label;
  std::vector<Tensor> inputs;
  VarFn f;
};

inline Tensor positive(const Shape& s, uint64_t seed) { return rand64(s, seed, 0.5, 2.0); }

inline std::map<std::string, std::vector<Case>> op_cases() {
  std::map<std::string, std::vector<Case>> c;
  // ---- elementwise binary, with broadcasting ----
  c["add"] = {
      {"same shape", {rand64({3, 4}, 1), rand64({3, 4}, 2)}, [](auto& v) { return v[0] + v[1]; }},
      {"row broadcast", {rand64({2, 3, 4}, 3), rand64({4}, 4)}, [](auto& v) { return v[0] + v[1]; }},
      {"outer broadcast", {rand64({3, 1}, 5), rand64({1, 4}, 6)}, [](auto& v) { return add(v[0], v[1]); }},
      {"0-D operand", {rand64({3, 4}, 7), rand64({}, 8)}, [](auto& v) { return v[0] + v[1]; }},
  };
  c["sub"] = {
      {"column broadcast", {rand64({2, 3}, 9), rand64({2, 1}, 10)}, [](auto& v) { return v[0] - v[1]; }},
      {"left broadcast", {rand64({4}, 11), rand64({3, 4}, 12)}, [](auto& v) { return sub(v[0], v[1]); }},
  };
  c["mul"] = {
      {"middle broadcast", {rand64({2, 3, 4}, 13), rand64({3, 1}, 14)}, [](auto& v) { return v[0] * v[1]; }},
      {"same operand twice", {rand64({5}, 15)}, [](auto& v) { return v[0] * v[0]; }},
  };
  c["div"] = {
      {"row broadcast", {rand64({3, 4}, 16), positive({4}, 17)}, [](auto& v) { return v[0] / v[1]; }},
      {"scalar numerator", {positive({3}, 18)}, [](auto& v) { return 2.0 / v[0]; }},
  };
  c["affine"] = {{"scale and shift", {rand64({3, 4}, 19)}, [](auto& v) { return 2.5 * v[0] - 1.0; }},
                 {"negation", {rand64({4}, 20)}, [](auto& v) { return -v[0]; }}};
  // ---- unary ----
  c["exp"] = {{"", {rand64({3, 4}, 21)}, [](auto& v) { return exp(v[0]); }}};
  c["log"] = {{"", {positive({3, 4}, 22)}, [](auto& v) { return log(v[0]); }}};
  c["sqrt"] = {{"", {positive({3, 4}, 23)}, [](auto& v) { return sqrt(v[0]); }}};
  c["pow"] = {{"real exponent", {positive({3, 4}, 24)}, [](auto& v) { return pow(v[0], 2.7); }},
              {"square", {rand64({5}, 25)}, [](auto& v) { return pow(v[0], 2.0); }}};
  c["square"] = {{"", {rand64({3, 4}, 26)}, [](auto& v) { return square(v[0]); }}};
  c["tanh"] = {{"", {rand64({3, 4}, 27, -2, 2)}, [](auto& v) { return tanh(v[0]); }}};
  c["sigmoid"] = {{"", {rand64({3, 4}, 28, -3, 3)}, [](auto& v) { return sigmoid(v[0]); }}};
  c["relu"] = {{"", {rand64_away({3, 4}, 29)}, [](auto& v) { return relu(v[0]); }}};
  c["leaky_relu"] = {{"", {rand64_away({3, 4}, 30)}, [](auto& v) { return leaky_relu(v[0], 0.2); }}};
  c["softplus"] = {{"", {rand64({3, 4}, 31, -25, 25)}, [](auto& v) { return softplus(v[0]); }}};
  c["sin"] = {{"", {rand64({3, 4}, 32, -3, 3)}, [](auto& v) { return sin(v[0]); }}};
  c["cos"] = {{"", {rand64({3, 4}, 33, -3, 3)}, [](auto& v) { return cos(v[0]); }}};
  // ---- linear algebra ----
  c["matmul"] = {
      {"2-D", {rand64({3, 4}, 34), rand64({4, 5}, 35)}, [](auto& v) { return matmul(v[0], v[1]); }},
      {"batched", {rand64({2, 3, 4}, 36), rand64({2, 4, 5}, 37)}, [](auto& v) { return matmul(v[0], v[1]); }},
      {"batched x shared", {rand64({2, 3, 4}, 38), rand64({4, 2}, 39)}, [](auto& v) { return matmul(v[0], v[1]); }},
      {"shared x batched", {rand64({3, 4}, 40), rand64({2, 4, 2}, 41)}, [](auto& v) { return matmul(v[0], v[1]); }},
  };
  c["linear"] = {
      {"with bias", {rand64({2, 3, 4}, 42), rand64({5, 4}, 43), rand64({5}, 44)},
       [](auto& v) { return linear(v[0], v[1], v[2]); }},
      {"no bias", {rand64({3, 4}, 45), rand64({2, 4}, 46)}, [](auto& v) { return linear(v[0], v[1]); }},
  };
  c["permute"] = {{"3-D", {rand64({2, 3, 4}, 47)}, [](auto& v) { return permute(v[0], {2, 0, 1}); }}};
  c["transpose"] = {{"last two", {rand64({3, 4}, 48)}, [](auto& v) { return transpose(v[0]); }},
                    {"outer", {rand64({2, 3, 2}, 49)}, [](auto& v) { return transpose(v[0], 0, 2); }}};
  // ---- shape ----
  c["reshape"] = {{"", {rand64({2, 6}, 50)}, [](auto& v) { return reshape(v[0], {3, -1}) * K(rand64({3, 4}, 51)); }}};
  c["slice"] = {{"inner axis", {rand64({4, 5}, 52)}, [](auto& v) { return slice(v[0], 1, 1, 4); }},
                {"outer axis, negative end", {rand64({4, 5}, 53)}, [](auto& v) { return slice(v[0], 0, 1, -1); }}};
  c["concat"] = {{"axis 1", {rand64({2, 3}, 54), rand64({2, 2}, 55)}, [](auto& v) { return concat({v[0], v[1]}, 1); }},
                 {"axis 0", {rand64({1, 3}, 56), rand64({2, 3}, 57)}, [](auto& v) { return concat({v[0], v[1]}, 0); }}};
  c["stack"] = {{"new middle axis", {rand64({2, 3}, 58), rand64({2, 3}, 59)},
                 [](auto& v) { return stack({v[0], v[1]}, 1); }}};
  // ---- reductions ----
  c["sum"] = {{"all", {rand64({3, 4}, 60)}, [](auto& v) { return sum(v[0]); }},
              {"axes 0 and 2", {rand64({2, 3, 4}, 61)}, [](auto& v) { return sum(v[0], {0, 2}); }},
              {"keepdim", {rand64({2, 3, 4}, 62)}, [](auto& v) { return sum(v[0], {1}, true); }}};
  c["mean"] = {{"all", {rand64({3, 4}, 63)}, [](auto& v) { return mean(v[0]); }},
               {"axis -1", {rand64({2, 3, 4}, 64)}, [](auto& v) { return mean(v[0], {-1}); }}};
  // ---- convolution and pooling ----
  c["conv2d"] = {
      {"3x3 pad 1", {rand64({2, 3, 5, 5}, 65), rand64({4, 3, 3, 3}, 66), rand64({4}, 67)},
       [](auto& v) { return conv2d(v[0], v[1], v[2], Conv2dOptions(1, 1)); }},
      {"stride 2, no bias", {rand64({1, 2, 6, 5}, 68), rand64({3, 2, 3, 2}, 69)},
       [](auto& v) { return conv2d(v[0], v[1], Var(), Conv2dOptions(2, 0)); }},
      {"1x1", {rand64({2, 3, 2, 2}, 70), rand64({2, 3, 1, 1}, 71)}, [](auto& v) { return conv2d(v[0], v[1]); }},
      {"3x3 pad 0, odd output (Winograd)", {rand64({2, 12, 7, 6}, 115), rand64({3, 12, 3, 3}, 116), rand64({3}, 117)},
       [](auto& v) { return conv2d(v[0], v[1], v[2]); }},
      {"3x3 pad 1, im2col forward", {rand64({1, 2, 4, 4}, 118), rand64({2, 2, 3, 3}, 119)}, [](auto& v) {
         cpu::winograd::enabled() = false;
         Var y = conv2d(v[0], v[1], Var(), Conv2dOptions(1, 1));
         cpu::winograd::enabled() = true;
         return y;
       }},
  };
  c["conv_transpose2d"] = {
      {"stride 2 pad 1 outpad 1", {rand64({2, 3, 3, 3}, 72), rand64({3, 2, 3, 3}, 73), rand64({2}, 74)},
       [](auto& v) { return conv_transpose2d(v[0], v[1], v[2], Conv2dOptions(2, 1), 1); }},
      {"stride 1", {rand64({1, 2, 3, 3}, 75), rand64({2, 2, 2, 2}, 76)},
       [](auto& v) { return conv_transpose2d(v[0], v[1]); }},
  };
  c["max_pool2d"] = {{"2x2", {rand64({2, 2, 4, 4}, 77)}, [](auto& v) { return max_pool2d(v[0], 2); }},
                     {"3x3 stride 2 pad 1", {rand64({1, 2, 5, 5}, 78)}, [](auto& v) { return max_pool2d(v[0], 3, 2, 1); }}};
  c["avg_pool2d"] = {{"2x2", {rand64({2, 2, 4, 4}, 79)}, [](auto& v) { return avg_pool2d(v[0], 2); }},
                     {"3x3 stride 2 pad 1", {rand64({1, 2, 5, 5}, 80)}, [](auto& v) { return avg_pool2d(v[0], 3, 2, 1); }}};
  // ---- normalisation ----
  c["batch_norm"] = {
      {"train 4-D", {rand64({4, 3, 2, 2}, 81), rand64({3}, 82, 0.5, 1.5), rand64({3}, 83)},
       [](auto& v) {
         return batch_norm(v[0], KT(Tensor::zeros({3}, DType::Float64)), KT(Tensor::ones({3}, DType::Float64)), v[1], v[2], true);
       }},
      {"train 2-D, no affine", {rand64({5, 3}, 84)},
       [](auto& v) { return batch_norm(v[0], Tensor(), Tensor(), Var(), Var(), true); }},
      {"eval", {rand64({4, 3, 2, 2}, 85), rand64({3}, 86, 0.5, 1.5), rand64({3}, 87)},
       [](auto& v) {
         return batch_norm(v[0], KT(rand64({3}, 88)), KT(rand64({3}, 89, 0.5, 2.0)), v[1], v[2], false);
       }},
      {"train 4-D, relu", {rand64({4, 3, 2, 2}, 181), rand64({3}, 182, 0.5, 1.5), rand64({3}, 183)},
       [](auto& v) {
         return batch_norm(v[0], KT(Tensor::zeros({3}, DType::Float64)), KT(Tensor::ones({3}, DType::Float64)), v[1],
                           v[2], true, 0.1, 1e-5, true);
       }},
      {"eval, relu", {rand64({4, 3, 2, 2}, 185), rand64({3}, 186, 0.5, 1.5), rand64({3}, 187)},
       [](auto& v) {
         return batch_norm(v[0], KT(rand64({3}, 188)), KT(rand64({3}, 189, 0.5, 2.0)), v[1], v[2], false, 0.1, 1e-5,
                           true);
       }},
  };
  c["group_norm"] = {{"2 groups", {rand64({2, 4, 3, 3}, 90), rand64({4}, 91, 0.5, 1.5), rand64({4}, 92)},
                      [](auto& v) { return group_norm(v[0], 2, v[1], v[2]); }},
                     {"1 group no affine", {rand64({2, 3, 4}, 93)}, [](auto& v) { return group_norm(v[0], 1); }},
                     {"2 groups, relu", {rand64({2, 4, 3, 3}, 190), rand64({4}, 191, 0.5, 1.5), rand64({4}, 192)},
                      [](auto& v) { return group_norm(v[0], 2, v[1], v[2], 1e-5, true); }}};
  // ---- softmax and losses ----
  c["softmax"] = {{"last axis", {rand64({3, 5}, 94, -2, 2)}, [](auto& v) { return softmax(v[0]); }},
                  {"middle axis", {rand64({2, 3, 4}, 95, -2, 2)}, [](auto& v) { return softmax(v[0], 1); }}};
  c["log_softmax"] = {{"last axis", {rand64({3, 5}, 96, -2, 2)}, [](auto& v) { return log_softmax(v[0]); }},
                      {"first axis", {rand64({3, 4}, 97, -2, 2)}, [](auto& v) { return log_softmax(v[0], 0); }}};
  c["cross_entropy"] = {{"", {rand64({4, 5}, 98, -2, 2)}, [](auto& v) {
                           return cross_entropy(v[0], KT(Tensor::from_vector<int32_t>({0, 4, 2, 2}, {4})));
                         }}};
  c["mse_loss"] = {{"same shape", {rand64({3, 4}, 99), rand64({3, 4}, 100)}, [](auto& v) { return mse_loss(v[0], v[1]); }},
                   {"broadcast target", {rand64({3, 4}, 101), rand64({4}, 102)},
                    [](auto& v) { return mse_loss(v[0], v[1]); }}};
  c["dropout"] = {{"p = 0.3", {rand64({4, 5}, 103)}, [](auto& v) {
                     Generator g(7);
                     return dropout(v[0], 0.3, true, g);
                   }}};
  // ---- fused ODE ops and triangular solves ----
  c["lincomb"] = {{"x plus three terms", {rand64({3, 4}, 104), rand64({3, 4}, 105), rand64({3, 4}, 106), rand64({3, 4}, 107)},
                   [](auto& v) { return lincomb(v[0], {v[1], v[2], v[3]}, {0.5, -2.0, 1.0}); }},
                  {"no x", {rand64({5}, 108), rand64({5}, 109)}, [](auto& v) { return lincomb(Var(), {v[0], v[1]}, {2.0, 3.0}); }}};
  c["basis_combine"] = {{"trig basis at t = 0.3", {rand64({5, 3, 2}, 110)},
                         [](auto& v) { return basis_combine(v[0], tv::TrigBasis(2).eval(0.3)); }}};
  c["bias_activation"] = {
      {"tanh with a bias along the last axis", {rand64({3, 4}, 120), rand64({4}, 121)},
       [](auto& v) { return bias_activation(v[0], v[1], UnaryOp::Tanh); }},
      {"sigmoid without a bias", {rand64({2, 3, 2}, 122)},
       [](auto& v) { return bias_activation(v[0], Var(), UnaryOp::Sigmoid); }},
      {"fused with a stage combination (the stage's output)",
       {rand64({3, 4}, 123), rand64({4}, 124), rand64({3, 4}, 125), rand64({3, 4}, 126)},
       [](auto& v) {
         auto kx = bias_activation_lincomb(v[0], v[1], UnaryOp::Tanh, v[2], {v[3]}, {0.5}, -1.5);
         return kx.second + 2.0 * kx.first;
       }}};
  c["upsample_nearest2d"] = {{"scale 2", {rand64({2, 3, 2, 3}, 127)}, [](auto& v) { return upsample_nearest2d(v[0], 2); }},
                              {"scale 3, one channel", {rand64({1, 1, 2, 2}, 128)},
                               [](auto& v) { return upsample_nearest2d(v[0], 3); }}};
  c["gaussian_kl"] = {{"", {rand64({3, 4}, 129), rand64({3, 4}, 130, -1, 1), rand64({3, 4}, 131), rand64({3, 4}, 132, -1, 1)},
                       [](auto& v) { return gaussian_kl(v[0], v[1], v[2], v[3]); }}};
  c["binary_cross_entropy_with_logits"] = {
      {"targets in [0, 1]", {rand64({4, 5}, 133, -6, 6), rand64({4, 5}, 134, 0, 1)},
       [](auto& v) { return binary_cross_entropy_with_logits(v[0], v[1]); }}};
  c["householder_chain"] = {
      {"three reflections", {rand64({5, 4}, 115), rand64({3, 4}, 116)},
       [](auto& v) { return householder_chain(v[0], v[1]); }},
      {"more rows than a block, more vectors than a chunk", {rand64({11, 40}, 117), rand64({20, 40}, 118)},
       [](auto& v) { return householder_chain(v[0], v[1]); }}};
  c["basis_combine"].push_back({"fused evaluation, Legendre basis at t = 0.6", {rand64({4, 3, 2}, 119)}, [](auto& v) {
    BasisSpec spec;
    tv::OrthoPolyBasis(tv::OrthoPolyBasis::Kind::Legendre, 4).spec(spec);
    return basis_combine(v[0], spec, 0.6);
  }});
  c["triangular_solve"] = {
      {"upper", {rand64({3, 3}, 111, 0.5, 1.5), rand64({3, 2}, 112)},
       [](auto& v) { return triangular_solve(v[0], v[1], true, false); }},
      {"lower transposed", {rand64({3, 3}, 113, 0.5, 1.5), rand64({3, 4}, 114)},
       [](auto& v) { return triangular_solve(v[0], v[1], false, true); }}};
  return c;
}

}  // namespace nanode::testing
