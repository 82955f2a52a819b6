// Every hand-written CUDA kernel, run through the emulated-launch build
// (nanode::cuda_emulated: kernels/*.cu compiled as host C++, blocks in turn, the
// threads of a block as fibers with real barriers), against its CPU twin, in
// float32, at ragged sizes: n = 1, n not a multiple of the block size, and n
// larger than grid x block (the grid is capped so the grid-stride loops stride),
// with the threads of a block resumed in ascending and in descending order. Fresh
// emulated device memory is NaN, so a kernel that reads what nobody wrote fails.
// The last check: every __global__ kernel in kernels/*.cu was launched.
// Built a second time against nanode::cuda (test_kernels_device), the same cases
// run on a real GPU, and skip (exit 77) without one.
#ifdef NANODE_TEST_DEVICE_MAIN
#define CATCH_CONFIG_RUNNER
#endif
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <tuple>

#include "nanode/backend/cuda/emulation.hpp"
#include "nanode/nanode.hpp"
#include "nanode/backend/dispatch_nn.hpp"

using namespace nanode;

namespace {

const Device kDev = Device::cuda(0);

Tensor rnd(const Shape& s, uint64_t seed, double lo = -2, double hi = 2) {
  Generator g(seed);
  return Tensor::uniform(s, lo, hi, g);
}

/// max |got - want| <= tol * max(1, max |want|), element by element, and no NaN.
void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.device().is_cuda());
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector<float>(), w = want.to_vector<float>();
  double scale = 1;
  for (float v : w) scale = std::max(scale, static_cast<double>(std::abs(v)));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::isnan(g[i]) != std::isnan(w[i]) ? INFINITY : std::abs(static_cast<double>(g[i]) - w[i]);
    if (d > worst) worst = d, at = i;
  }
  INFO("worst element " << at << ": " << (g.empty() ? 0.f : g[at]) << " vs CPU " << (w.empty() ? 0.f : w[at]));
  CHECK(worst <= tol * scale);
}

struct Config {
  unsigned max_grid;
  emu::Schedule schedule;
  std::string str() const {
    return std::string("max grid ") + (max_grid ? std::to_string(max_grid) : "none") +
           (schedule == emu::Schedule::Ascending ? ", ascending" : ", descending");
  }
};

const UnaryOp kUnary[] = {UnaryOp::Exp,  UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Tanh,   UnaryOp::Sigmoid,
                          UnaryOp::Relu, UnaryOp::LeakyRelu, UnaryOp::Softplus, UnaryOp::Sin, UnaryOp::Cos,
                          UnaryOp::Pow,  UnaryOp::Affine, UnaryOp::Square, UnaryOp::Step};

void run_cases(int64_t n, const Config& cfg) {
  const std::string at = "n = " + std::to_string(n) + ", " + cfg.str();
  const double tol = 2e-6;
  // fill_kernel<float>, fill_kernel<int32_t>
  expect_close(Tensor::full({n}, 2.5, DType::Float32, kDev), Tensor::full({n}, 2.5), 0, "fill f32, " + at);
  CHECK(Tensor::full({n}, 7, DType::Int32, kDev).to_vector<int32_t>() == std::vector<int32_t>(n, 7));
  // binary_contiguous and binary_strided
  const Tensor a = rnd({n}, 1), b = rnd({n}, 2, 0.5, 2);
  const Tensor ga = a.to(kDev), gb = b.to(kDev);
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div})
    expect_close(backend::binary(op, ga, gb), backend::binary(op, a, b), tol,
                 "binary " + std::to_string(int(op)) + ", " + at);
  const Tensor row = rnd({1, n}, 3), col = rnd({3, 1}, 4);
  expect_close(backend::binary(BinaryOp::Mul, col.to(kDev), row.to(kDev)), backend::binary(BinaryOp::Mul, col, row),
               tol, "broadcast binary, " + at);
  // unary_kernel and unary_backward_kernel, every op
  const Tensor pos = rnd({n}, 5, 0.1, 2), g = rnd({n}, 6);
  for (UnaryOp op : kUnary) {
    const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Pow;
    const Tensor x = positive ? pos : a;
    const double p0 = op == UnaryOp::Pow ? 1.7 : op == UnaryOp::LeakyRelu ? 0.1 : op == UnaryOp::Affine ? -0.5 : 0.3;
    const double p1 = op == UnaryOp::Affine ? 0.25 : 1.0;
    const std::string what = "unary " + std::to_string(int(op)) + ", " + at;
    const Tensor y = backend::unary(op, x, p0, p1), gy = backend::unary(op, x.to(kDev), p0, p1);
    expect_close(gy, y, 1e-5, what);
    expect_close(backend::unary_backward(op, g.to(kDev), x.to(kDev), gy, p0, p1),
                 backend::unary_backward(op, g, x, y, p0, p1), 1e-5, "backward of " + what);
  }
  // axpy_kernel
  {
    Tensor y = rnd({n}, 7), gy = y.to(kDev);
    backend::axpy_(y, -0.75, a);
    backend::axpy_(gy, -0.75, ga);
    expect_close(gy, y, tol, "axpy, " + at);
  }
  // adam_kernel (AdamW and Adam with L2)
  for (bool decoupled : {true, false}) {
    Tensor p = rnd({n}, 8), m = rnd({n}, 9, 0, 0.1), v = rnd({n}, 10, 0, 0.1);
    Tensor gp = p.to(kDev), gm = m.to(kDev), gv = v.to(kDev);
    backend::adam_step_(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, 0.19, 0.002, decoupled);
    backend::adam_step_(gp, g.to(kDev), gm, gv, 1e-2, 0.9, 0.999, 1e-8, 0.01, 0.19, 0.002, decoupled);
    expect_close(gp, p, 1e-5, std::string("adam ") + (decoupled ? "decoupled" : "L2") + ", " + at);
    expect_close(gm, m, 1e-5, "adam m, " + at);
    expect_close(gv, v, 1e-5, "adam v, " + at);
  }
  // sum_rows_kernel (sum over the last axis) and sum_middle_kernel (a middle axis)
  {
    const Tensor x2 = rnd({3, n}, 11);
    expect_close(backend::sum(x2.to(kDev), {1}, false), backend::sum(x2, {1}, false), 1e-5, "sum rows, " + at);
    const Tensor x3 = rnd({2, n, 3}, 12);
    expect_close(backend::sum(x3.to(kDev), {1}, false), backend::sum(x3, {1}, false), 1e-5, "sum middle, " + at);
    const Tensor x1 = rnd({n, 2}, 13);
    expect_close(backend::sum(x1.to(kDev), {0}, false), backend::sum(x1, {0}, false), 1e-5, "sum first, " + at);
  }
  // permute_kernel
  {
    const Tensor x = rnd({2, n, 3}, 14);
    expect_close(backend::permute(x.to(kDev), {2, 0, 1}), backend::permute(x, {2, 0, 1}), 0, "permute, " + at);
  }
  // lincomb_kernel: x + terms, no x, and more terms than one launch takes
  {
    std::vector<Tensor> ks, gks;
    std::vector<double> cs;
    for (int j = 0; j < 70; ++j) {
      ks.push_back(rnd({n}, 100 + j));
      gks.push_back(ks.back().to(kDev));
      cs.push_back(0.01 * (j - 35));
    }
    expect_close(backend::lincomb(ga, {gks[0], gks[1], gks[2]}, {0.5, -1.0, 2.0}),
                 backend::lincomb(a, {ks[0], ks[1], ks[2]}, {0.5, -1.0, 2.0}), tol, "lincomb, " + at);
    expect_close(backend::lincomb(Tensor(), {gks[3]}, {1.5}), backend::lincomb(Tensor(), {ks[3]}, {1.5}), tol,
                 "lincomb without x, " + at);
    expect_close(backend::lincomb(ga, gks, cs), backend::lincomb(a, ks, cs), 1e-5, "lincomb of 70 terms, " + at);
  }
  // basis_combine_kernel and outer_scale_kernel, with more terms than one launch takes
  for (int K : {5, 300}) {
    const Tensor coeffs = rnd({K, n}, 200 + K);
    std::vector<double> z(static_cast<size_t>(K));
    for (int k = 0; k < K; ++k) z[static_cast<size_t>(k)] = std::cos(0.37 * k);
    expect_close(backend::basis_combine(coeffs.to(kDev), z), backend::basis_combine(coeffs, z), 1e-5,
                 "basis_combine K = " + std::to_string(K) + ", " + at);
    expect_close(backend::basis_combine_backward(g.to(kDev), z), backend::basis_combine_backward(g, z), tol,
                 "outer_scale K = " + std::to_string(K) + ", " + at);
  }
  // softmax_rows_kernel / softmax_strided_kernel and their backward, both flavours
  for (bool log_out : {false, true}) {
    const std::string what = std::string(log_out ? "log_softmax" : "softmax") + ", " + at;
    for (const Shape& shape : {Shape{3, n}, Shape{2, n, 3}}) {
      const int axis = 1;
      const Tensor x = rnd(shape, 300), gy = rnd(shape, 301);
      const Tensor y = backend::softmax_forward(x, axis, log_out);
      const Tensor dy = backend::softmax_forward(x.to(kDev), axis, log_out);
      expect_close(dy, y, 1e-5, what);
      expect_close(backend::softmax_backward(gy.to(kDev), dy, axis, log_out), backend::softmax_backward(gy, y, axis, log_out),
                   1e-5, "backward of " + what);
    }
  }
  // nll_pick_kernel and cross_entropy_backward_kernel (through the op)
  {
    const int64_t C = std::max<int64_t>(2, n % 7 + 2), N = n;
    const Tensor logits = rnd({N, C}, 302);
    std::vector<int32_t> t(static_cast<size_t>(N));
    for (int64_t r = 0; r < N; ++r) t[static_cast<size_t>(r)] = static_cast<int32_t>((r * 5 + 1) % C);
    const Tensor targets = Tensor::from_vector<int32_t>(t, {N});
    Var lc(logits, true), lg(logits.to(kDev), true);
    Var cc = cross_entropy(lc, targets), cg = cross_entropy(lg, targets);
    expect_close(cg.data(), cc.data(), 1e-5, "cross_entropy, " + at);
    cc.backward();
    cg.backward();
    expect_close(lg.grad(), lc.grad(), 1e-5, "cross_entropy backward, " + at);
  }
  // group_moments_kernel, group_normalize_kernel and both backward kernels
  for (int64_t G : {1, 2}) {
    const int64_t C = 4, S = std::max<int64_t>(1, n / 4);
    const Tensor x = rnd({2, C, S}, 303), gy = rnd({2, C, S}, 304), gamma = rnd({C}, 305, 0.5, 1.5),
                 beta = rnd({C}, 306);
    backend::NormStats sc, sg;
    const Tensor y = backend::group_norm_forward(x, G, gamma, beta, 1e-5, sc);
    const Tensor dy = backend::group_norm_forward(x.to(kDev), G, gamma.to(kDev), beta.to(kDev), 1e-5, sg);
    const std::string what = "group_norm G = " + std::to_string(G) + ", S = " + std::to_string(S) + ", " + at;
    expect_close(dy, y, 1e-4, what);
    Tensor gx, dgm, dbt, dgx, ddgm, ddbt;
    backend::group_norm_backward(gy, x, G, sc, gamma, &gx, &dgm, &dbt);
    backend::group_norm_backward(gy.to(kDev), x.to(kDev), G, sg, gamma.to(kDev), &dgx, &ddgm, &ddbt);
    expect_close(dgx, gx, 1e-4, "backward (input) of " + what);
    expect_close(ddgm, dgm, 1e-4, "backward (gamma) of " + what);
    expect_close(ddbt, dbt, 1e-4, "backward (beta) of " + what);
  }
  // max/avg pooling forward and backward, overlapping and padded windows
  {
    const int64_t side = std::max<int64_t>(3, static_cast<int64_t>(std::sqrt(static_cast<double>(n))) + 2);
    const Tensor x = rnd({2, 2, side, side + 1}, 307);
    for (auto [k, st, pad] : {std::tuple<int64_t, int64_t, int64_t>{2, 2, 0}, {3, 2, 1}, {3, 1, 1}}) {
      const cpu::ConvGeom g = backend::pool_geom("pool", x.shape(), k, k, st, st, pad, pad);
      const std::string what = "pool k " + std::to_string(k) + " s " + std::to_string(st) + " p " +
                               std::to_string(pad) + ", side " + std::to_string(side) + ", " + at;
      auto [yc, ic] = backend::max_pool2d_forward(x, g);
      auto [yg, ig] = backend::max_pool2d_forward(x.to(kDev), g);
      expect_close(yg, yc, 0, "max " + what);
      CHECK(ig.to_vector<int32_t>() == ic.to_vector<int32_t>());
      const Tensor gy = rnd(yc.shape(), 308);
      expect_close(backend::max_pool2d_backward(gy.to(kDev), ig, g), backend::max_pool2d_backward(gy, ic, g), 1e-6,
                   "max backward " + what);
      expect_close(backend::avg_pool2d_forward(x.to(kDev), g), backend::avg_pool2d_forward(x, g), 1e-6, "avg " + what);
      expect_close(backend::avg_pool2d_backward(gy.to(kDev), g), backend::avg_pool2d_backward(gy, g), 1e-6,
                   "avg backward " + what);
    }
  }
  // batch norm: channel moments, normalisation, backward (train and eval)
  {
    const int64_t C = 3, S = std::max<int64_t>(1, n / 3);
    const Tensor x = rnd({2, C, S}, 309), gy = rnd({2, C, S}, 310), gamma = rnd({C}, 311, 0.5, 1.5),
                 beta = rnd({C}, 312);
    const std::string what = "batch_norm S = " + std::to_string(S) + ", " + at;
    if (2 * S > 1) {
      const backend::NormStats sc = backend::batch_norm_stats(x, 1e-5);
      const backend::NormStats sg = backend::batch_norm_stats(x.to(kDev), 1e-5);
      expect_close(sg.mean, sc.mean, 1e-5, "mean, " + what);
      expect_close(sg.var, sc.var, 1e-5, "var, " + what);
      expect_close(sg.invstd, sc.invstd, 1e-5, "invstd, " + what);
      expect_close(backend::channel_normalize(x.to(kDev), sg.mean, sg.invstd, gamma.to(kDev), beta.to(kDev)),
                   backend::channel_normalize(x, sc.mean, sc.invstd, gamma, beta), 1e-5, "normalize, " + what);
      for (bool train : {true, false}) {
        Tensor gx, dg, db, ggx, gdg, gdb;
        backend::batch_norm_backward(gy, x, sc.mean, sc.invstd, gamma, train, &gx, &dg, &db);
        backend::batch_norm_backward(gy.to(kDev), x.to(kDev), sg.mean, sg.invstd, gamma.to(kDev), train, &ggx, &gdg,
                                     &gdb);
        const std::string w2 = std::string(train ? "train" : "eval") + " backward, " + what;
        expect_close(ggx, gx, 1e-4, "input " + w2);
        expect_close(gdg, dg, 1e-4, "gamma " + w2);
        expect_close(gdb, db, 1e-4, "beta " + w2);
      }
    }
  }
  // add_channel_bias_kernel, through a convolution with bias (the convolution itself
  // is cuDNN on a device and a host stand-in here) and a transposed one
  {
    const int64_t side = std::max<int64_t>(3, static_cast<int64_t>(std::sqrt(static_cast<double>(n) / 3)) + 2);
    const Tensor x = rnd({2, 3, side, side + 1}, 313), w = rnd({4, 3, 3, 3}, 314), bias = rnd({4}, 315);
    const backend::Conv2dParams cp{2, 2, 1, 1};
    const cpu::ConvGeom g = backend::conv2d_geom("conv2d", x.shape(), w.shape(), cp);
    const std::string what = "conv2d with bias, side " + std::to_string(side) + ", " + at;
    expect_close(backend::conv2d_forward(x.to(kDev), w.to(kDev), bias.to(kDev), g),
                 backend::conv2d_forward(x, w, bias, g), 1e-5, what);
    Tensor y = backend::conv2d_backward_input(rnd({2, 4, g.Ho, g.Wo}, 316), w, g);
    Tensor yg = backend::conv2d_backward_input(rnd({2, 4, g.Ho, g.Wo}, 316).to(kDev), w.to(kDev), g);
    backend::add_channel_bias_(y, rnd({3}, 317));
    backend::add_channel_bias_(yg, rnd({3}, 317).to(kDev));
    expect_close(yg, y, 1e-5, "transposed conv with bias, " + what);
  }
  // dropout_mask_kernel: the same Philox draws as the CPU, so the same mask
  {
    Generator gc(1234 + static_cast<uint64_t>(n)), gg(1234 + static_cast<uint64_t>(n));
    gc.reserve(3), gg.reserve(3);  // not from the start of the stream
    const Tensor mc = backend::dropout_mask({n}, 0.3, gc, DType::Float32, Device::cpu());
    const Tensor mg = backend::dropout_mask({n}, 0.3, gg, DType::Float32, kDev);
    expect_close(mg, mc, 0, "dropout mask, " + at);
    CHECK(gc.state().offset == gg.state().offset);  // both consumed the same blocks
  }
  // basis_eval_combine_kernel / basis_eval_outer_kernel: z(t) evaluated in the
  // kernel for every basis, against the CPU's eval + combination
  {
    std::vector<tv::BasisPtr> bases{std::make_shared<tv::ConstantBasis>(),
                                    std::make_shared<tv::BucketBasis>(4, 0.0, 1.0),
                                    std::make_shared<tv::MonomialBasis>(5),
                                    std::make_shared<tv::OrthoPolyBasis>(tv::OrthoPolyBasis::Kind::Chebyshev, 6),
                                    std::make_shared<tv::OrthoPolyBasis>(tv::OrthoPolyBasis::Kind::Legendre, 6),
                                    std::make_shared<tv::TrigBasis>(10),
                                    std::make_shared<tv::RandomFourierBasis>(7, 1.5, 3)};
    for (const auto& b : bases)
      for (double t : {0.0, 0.37, 0.75, 1.0}) {
        BasisSpec spec;
        REQUIRE(b->spec(spec));
        const Tensor a = rnd({b->size(), n}, 320), gw = rnd({n}, 321);
        const std::string what = b->name() + " at t = " + std::to_string(t) + ", " + at;
        expect_close(backend::basis_combine_at(a.to(kDev), spec, t), backend::basis_combine(a, b->eval(t)), 1e-5,
                     "fused basis " + what);
        expect_close(backend::basis_combine_at_backward(gw.to(kDev), spec, t),
                     backend::basis_combine_backward(gw, b->eval(t)), 1e-6, "fused basis backward " + what);
      }
  }
  // multi_lincomb_kernel: components of different sizes, absent terms and x,
  // more components than one launch takes
  if (n == 255 || n == 1000) {
    const size_t C = 19;
    std::vector<Tensor> xs(C), xd(C), like(C), liked(C);
    std::vector<std::vector<Tensor>> ks(3, std::vector<Tensor>(C)), kd(3, std::vector<Tensor>(C));
    std::vector<double> sign(C);
    for (size_t c = 0; c < C; ++c) {
      const int64_t len = c == 3 ? 0 : (n * static_cast<int64_t>(c + 1)) % 611 + 1;
      sign[c] = c == 0 ? 1.0 : -1.0;
      if (c % 4 != 1) xs[c] = rnd({len}, 350 + c), xd[c] = xs[c].to(kDev);
      for (size_t j = 0; j < 3; ++j)
        if ((c + j) % 5 != 2) ks[j][c] = rnd({len}, 400 + 10 * c + j), kd[j][c] = ks[j][c].to(kDev);
      like[c] = Tensor::zeros({len});
      liked[c] = like[c].to(kDev);
    }
    const std::vector<double> cs{0.5, 0.0, -1.25};
    const auto want = backend::multi_lincomb(xs, ks, cs, sign, like);
    const auto got = backend::multi_lincomb(xd, kd, cs, sign, liked);
    for (size_t c = 0; c < C; ++c) expect_close(got[c], want[c], 1e-6, "multi_lincomb component " + std::to_string(c) + ", " + at);
  }
  // bias_act_lincomb_kernel: the RK stage fused with the last bias and activation
  {
    const int64_t cols = n % 7 + 1, rows = (n + cols - 1) / cols;
    const Tensor pre = rnd({rows, cols}, 340), bias = rnd({cols}, 341), x = rnd({rows, cols}, 342),
                 k1 = rnd({rows, cols}, 343), k2 = rnd({rows, cols}, 344);
    for (UnaryOp act : {UnaryOp::Tanh, UnaryOp::Sigmoid})
      for (bool with_bias : {true, false})
        for (bool with_x : {true, false}) {
          const std::string what = std::string("bias_act_lincomb ") + (act == UnaryOp::Tanh ? "tanh" : "sigmoid") +
                                   (with_bias ? ", bias" : "") + (with_x ? ", x" : "") + ", " + at;
          const auto want = backend::bias_act_lincomb(pre, with_bias ? bias : Tensor(), act, with_x ? x : Tensor(),
                                                      {k1, Tensor(), k2}, {0.25, 3.0, -0.5}, 0.75);
          const auto got = backend::bias_act_lincomb(pre.to(kDev), with_bias ? bias.to(kDev) : Tensor(), act,
                                                     with_x ? x.to(kDev) : Tensor(), {k1.to(kDev), Tensor(), k2.to(kDev)},
                                                     {0.25, 3.0, -0.5}, 0.75);
          expect_close(got.first, want.first, 1e-6, "k, " + what);
          expect_close(got.second, want.second, 1e-6, "out, " + what);
        }
    // More terms than one launch takes: the ops apart on the device.
    std::vector<Tensor> many, many_d;
    std::vector<double> many_c;
    for (int j = 0; j < cuda::kMaxLincombTerms + 5; ++j) {
      many.push_back(j % 2 ? k1 : k2);
      many_d.push_back(many.back().to(kDev));
      many_c.push_back(0.01 * (j + 1));
    }
    const auto want = backend::bias_act_lincomb(pre, bias, UnaryOp::Tanh, x, many, many_c, 0.75);
    const auto got = backend::bias_act_lincomb(pre.to(kDev), bias.to(kDev), UnaryOp::Tanh, x.to(kDev), many_d, many_c,
                                               0.75);
    expect_close(got.first, want.first, 1e-6, "k, bias_act_lincomb with many terms, " + at);
    expect_close(got.second, want.second, 1e-5, "out, bias_act_lincomb with many terms, " + at);
  }
  // householder_chain_kernel / householder_chain_backward_kernel: partial blocks
  // of rows, chunks of vectors, row lengths below, across and at the warp and
  // kernel limits; gv's per-block partials summed by dispatch
  if (n == 257)
    for (auto [B, len, k] : {std::tuple<int64_t, int64_t, int64_t>{19, 70, 37}, {9, 512, 3}, {3, 2, 2}, {8, 32, 16}}) {
      const Tensor x = rnd({B, len}, 330), v = rnd({k, len}, 331), gy = rnd({B, len}, 332);
      const std::string what = "householder B = " + std::to_string(B) + ", n = " + std::to_string(len) +
                               ", k = " + std::to_string(k) + ", " + at;
      const Tensor y = backend::householder_chain(x, v), yd = backend::householder_chain(x.to(kDev), v.to(kDev));
      expect_close(yd, y, 2e-5, what);
      const auto want = backend::householder_chain_backward(y, gy, v);
      const auto got = backend::householder_chain_backward(yd, gy.to(kDev), v.to(kDev));
      expect_close(got.first, want.first, 2e-5, "gx, " + what);
      expect_close(got.second, want.second, 5e-5, "gv, " + what);
    }
  // scaled_sq_kernel
  {
    const double c = backend::scaled_rms(a, b, g, 1e-3, 1e-2), d = backend::scaled_rms(ga, gb, g.to(kDev), 1e-3, 1e-2);
    INFO("scaled_rms, " << at);
    CHECK(d == Approx(c).epsilon(1e-6));
  }
}

std::string base_name(const std::string& launched) { return launched.substr(0, launched.find('<')); }

}  // namespace

TEST_CASE("every CUDA kernel matches its CPU twin (emulated launches, or a GPU)", "[kernels][emulated]") {
  const bool emulated = std::string(cuda_backend_name()) == "cuda-emulated";
  REQUIRE(cuda_device_count() >= 1);
  std::printf("kernel backend: %s, %s\n", cuda_backend_name(), cuda::device_name(0));
  emu::launch_log().clear();
  std::vector<Config> configs{{0, emu::Schedule::Ascending}};
  if (emulated)  // resume orders and grid caps exist only in the emulation
    configs = {{0, emu::Schedule::Ascending}, {0, emu::Schedule::Descending}, {2, emu::Schedule::Ascending},
               {3, emu::Schedule::Descending}};
  for (const Config& cfg : configs) {
    emu::max_grid() = cfg.max_grid;
    emu::set_schedule(cfg.schedule);
    for (int64_t n : {1, 255, 257, 1000, 2100}) run_cases(n, cfg);
  }
  emu::max_grid() = 0;
  emu::set_schedule(emu::Schedule::Ascending);
  if (!emulated) return;  // launch counts are kept by the emulation only

  // Every __global__ kernel of kernels/*.cu ran (the list is read from the sources).
  std::map<std::string, int64_t> ran;
  for (const auto& [name, count] : emu::launch_log()) ran[base_name(name)] += count;
  std::stringstream all(NANODE_KERNEL_NAMES);
  std::string name;
  int kernels = 0;
  std::printf("emulated kernel launches (kernels/*.cu, all compared with their CPU twins):\n");
  while (std::getline(all, name, ',')) {
    ++kernels;
    std::printf("  %-34s %6lld launches\n", name.c_str(), static_cast<long long>(ran[name]));
    INFO("kernel " << name << " was never launched by the emulated tests: add a case for it");
    CHECK(ran[name] > 0);
  }
  CHECK(kernels >= 14);
}

namespace {
// Read during static initialisation: the backend registers before ordinary
// static initialisers, so a user's global already sees it.
const int kDevicesAtStaticInit = cuda_device_count();
}  // namespace

TEST_CASE("the CUDA backend is registered before a program's own static initialisers", "[kernels][emulated]") {
  CHECK(kDevicesAtStaticInit == cuda_device_count());
  CHECK(kDevicesAtStaticInit >= 1);
}

TEST_CASE("emulated CUDA tensors: sizes beyond cuBLAS's int32 are refused, not truncated", "[kernels][emulated]") {
  // A [1, 2^31] x [2^31, 1] product would need 16 GiB; the size check comes first.
  CHECK_THROWS_WITH(cuda::gemm_f32(false, false, 1, 1, int64_t{1} << 31, 1.0f, nullptr, int64_t{1} << 31, 0, nullptr, 1,
                                   0, 0.0f, nullptr, 1, 0, 1, 0),
                    Catch::Matchers::Contains("int32"));
  // Through the op, refused before the output is allocated: 2^31 rows with an
  // empty inner dimension cost no memory.
  const Tensor a = Tensor::empty({int64_t{1} << 31, 0}, DType::Float32, Device::cuda(0));
  const Tensor b = Tensor::empty({0, 1}, DType::Float32, Device::cuda(0));
  CHECK_THROWS_WITH(backend::matmul(a, b), Catch::Matchers::Contains("exceeds cuBLAS's int32 limit"));
}

#ifdef NANODE_TEST_DEVICE_MAIN
int main(int argc, char** argv) {
  if (nanode::cuda_device_count() == 0) {
    std::printf("test_kernels_device: SKIPPED: no CUDA device (the emulated build, test_kernels, ran the same cases)\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
#endif
