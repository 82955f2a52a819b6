#pragma once
// The one place that picks a backend. Every function here checks its inputs
// (shapes, dtypes, devices) and then calls either the CPU kernels (Eigen, in
// backend/cpu/) or the CUDA launchers (declared in backend/cuda/api.hpp, built
// from kernels/*.cu). Ops never look at the device themselves.
#include <algorithm>
#include <cstring>
#include <sstream>
#include <utility>
#include <vector>

#include "nanode/core/tensor.hpp"
#include "nanode/backend/cpu/elementwise.hpp"
#include "nanode/backend/cpu/linalg.hpp"
#include "nanode/backend/cpu/reduce.hpp"
#include "nanode/backend/basis_math.hpp"
#include "nanode/backend/cuda/api.hpp"

namespace nanode {

/// Whether a CUDA backend is linked into this program (nanode::cuda, or the
/// emulated one), decided at run time.
inline bool cuda_built() { return device_backend() != nullptr; }
/// The linked CUDA backend's name ("cuda", "cuda-emulated"), or "none".
inline const char* cuda_backend_name() { return device_backend() ? device_backend()->name : "none"; }

/// Usable CUDA devices (0 without a GPU or without a CUDA backend).
inline int cuda_device_count() { return cuda::device_count(); }
inline bool cuda_available() { return cuda_device_count() > 0; }
/// Waits for the device's queued work (a no-op on the CPU); timing CUDA work needs it.
inline void synchronize(Device device) {
  if (device.is_cuda()) cuda::synchronize(device.index);
}

namespace backend {

// ---- checks ------------------------------------------------------------------

inline void check_defined(const char* op, const Tensor& t) {
  NANODE_CHECK(t.defined(), op, ": got an undefined tensor");
}

inline void check_float(const char* op, const Tensor& t) {
  check_defined(op, t);
  NANODE_CHECK(t.dtype() == DType::Float32 || t.dtype() == DType::Float64, op, ": expected a float tensor, got ",
               t.dtype(), " of shape ", t.shape());
  NANODE_CHECK(!(t.device().is_cuda() && t.dtype() != DType::Float32), op, ": CUDA tensors must be float32, got ",
               t.dtype());
}

inline void check_same(const char* op, const Tensor& a, const Tensor& b) {
  check_float(op, a);
  check_float(op, b);
  NANODE_CHECK(a.device() == b.device(), op, ": tensors are on different devices (", a.device(), " with shape ",
               a.shape(), ", ", b.device(), " with shape ", b.shape(), ")");
  NANODE_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", a.dtype(), " with shape ", a.shape(), ", ",
               b.dtype(), " with shape ", b.shape(), ")");
}

/// Calls f(T{}) with T the C++ type of a float dtype.
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    default: fail(op, ": dtype ", dt, " is not supported (float32 or float64 expected)");
  }
}

inline Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

// ---- raw copies ----------------------------------------------------------------

/// Copies `rows` rows of `width` bytes from src (pitch src_pitch) to dst (pitch dst_pitch), same device.
inline void copy_rows(Device dev, void* dst, int64_t dst_pitch, const void* src, int64_t src_pitch,
                      int64_t width, int64_t rows) {
  if (width == 0 || rows == 0) return;
  if (dev.is_cpu()) {
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    cpu::parallel_for(rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(width, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) std::memcpy(d + r * dst_pitch, s + r * src_pitch, static_cast<size_t>(width));
    });
    return;
  }
  cuda::copy_rows_device(dst, dst_pitch, src, src_pitch, width, rows, dev.index);
}

inline void fill(Tensor& t, double value) {
  check_defined("fill", t);
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.device().is_cpu()) {
    switch (t.dtype()) {
      case DType::Float32: cpu::fill(t.data<float>(), n, static_cast<float>(value)); break;
      case DType::Float64: cpu::fill(t.data<double>(), n, value); break;
      case DType::Int32: cpu::fill(t.data<int32_t>(), n, static_cast<int32_t>(value)); break;
    }
    return;
  }
  switch (t.dtype()) {
    case DType::Float32: cuda::fill_f32(t.data<float>(), n, static_cast<float>(value), t.device().index); break;
    case DType::Int32: cuda::fill_i32(t.data<int32_t>(), n, static_cast<int32_t>(value), t.device().index); break;
    default: fail("fill: ", t.dtype(), " is not supported on CUDA");
  }
}

/// Byte copy between same-size buffers on any pair of devices.
inline void copy_bytes(const Tensor& dst, const Tensor& src) {
  const size_t bytes = src.nbytes();
  if (bytes == 0) return;
  const Device dd = dst.device(), sd = src.device();
  if (dd.is_cpu() && sd.is_cpu()) {
    std::memcpy(dst.raw_data(), src.raw_data(), bytes);
    return;
  }
  if (dd.is_cuda() && sd.is_cpu()) {
    cuda::copy_host_to_device(dst.raw_data(), src.raw_data(), bytes, dd.index);
  } else if (dd.is_cpu() && sd.is_cuda()) {
    cuda::copy_device_to_host(dst.raw_data(), src.raw_data(), bytes, sd.index);
  } else if (dd.index == sd.index) {
    cuda::copy_device_to_device(dst.raw_data(), src.raw_data(), bytes, dd.index);
  } else {
    std::vector<char> host(bytes);
    cuda::copy_device_to_host(host.data(), src.raw_data(), bytes, sd.index);
    cuda::copy_host_to_device(dst.raw_data(), host.data(), bytes, dd.index);
  }
}

// ---- random ------------------------------------------------------------------------

/// Fills a host buffer with uniform [lo, hi) or normal(mean=lo, std=hi) values from
/// gen's stream. The values depend only on (seed, offset), not on thread count.
template <class T>
void generate_random(T* out, int64_t n, double lo, double hi, bool normal, Generator& gen) {
  // Each value takes one 32-bit word (float) or two (double); normals come in pairs.
  constexpr int64_t words_per = sizeof(T) == 4 ? 1 : 2;
  const int64_t values_per_block = 4 / words_per;
  const int64_t blocks = (n + values_per_block - 1) / values_per_block;
  const uint64_t first = gen.reserve(static_cast<uint64_t>(blocks + (blocks & 1)));
  auto unit = [&](const std::array<uint32_t, 4>& w, int64_t j) -> double {
    if constexpr (sizeof(T) == 4) {
      return static_cast<double>(w[static_cast<size_t>(j)] >> 8) * 0x1.0p-24;
    } else {
      const uint64_t v = (static_cast<uint64_t>(w[static_cast<size_t>(2 * j)]) << 32) | w[static_cast<size_t>(2 * j + 1)];
      return static_cast<double>(v >> 11) * 0x1.0p-53;
    }
  };
  // Work on pairs of blocks so Box-Muller pairs never straddle threads.
  const int64_t pairs = (blocks + 1) / 2;
  cpu::parallel_for(pairs, 1024, [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      double u[8];
      for (int64_t half = 0; half < 2; ++half) {
        const auto w = gen.block(first + static_cast<uint64_t>(2 * p + half));
        for (int64_t j = 0; j < values_per_block; ++j) u[half * values_per_block + j] = unit(w, j);
      }
      const int64_t base = 2 * p * values_per_block;
      for (int64_t j = 0; j < 2 * values_per_block; j += 2) {
        double v0, v1;
        if (normal) {
          const double r = std::sqrt(-2.0 * std::log(1.0 - u[j]));
          v0 = lo + hi * r * std::cos(6.283185307179586 * u[j + 1]);
          v1 = lo + hi * r * std::sin(6.283185307179586 * u[j + 1]);
        } else {
          v0 = lo + (hi - lo) * u[j];
          v1 = lo + (hi - lo) * u[j + 1];
        }
        if (base + j < n) out[base + j] = static_cast<T>(v0);
        if (base + j + 1 < n) out[base + j + 1] = static_cast<T>(v1);
      }
    }
  });
  // Clamp float rounding of uniform values into [lo, hi).
  if (!normal && hi > lo) {
    for (int64_t i = 0; i < n; ++i)
      if (static_cast<double>(out[i]) >= hi) out[i] = static_cast<T>(lo);
  }
}

inline Tensor random(const Shape& shape, double a, double b, bool normal, Generator& gen, DType dtype, Device device) {
  Tensor host = Tensor::empty(shape, dtype, Device::cpu());
  dispatch_float(dtype, normal ? "normal" : "uniform",
                 [&](auto tag) { generate_random(host.data<decltype(tag)>(), host.numel(), a, b, normal, gen); });
  return device.is_cpu() ? host : host.to(device);
}

// ---- elementwise -----------------------------------------------------------------

/// The broadcast layout of out = a op b with size-1 axes dropped and contiguous axes merged.
inline BroadcastDesc make_broadcast_desc(const Shape& a, const Shape& b, const Shape& out) {
  const auto sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
  BroadcastDesc d;
  for (int i = 0; i < out.ndim(); ++i) {
    const int64_t n = out[i];
    if (n == 1) continue;
    const size_t si = static_cast<size_t>(i);
    if (d.ndim > 0) {
      const int j = d.ndim - 1;
      if (d.stride_a[j] == sa[si] * n && d.stride_b[j] == sb[si] * n) {
        d.size[j] *= n;
        d.stride_a[j] = sa[si];
        d.stride_b[j] = sb[si];
        continue;
      }
    }
    d.size[d.ndim] = n;
    d.stride_a[d.ndim] = sa[si];
    d.stride_b[d.ndim] = sb[si];
    ++d.ndim;
  }
  if (d.ndim == 0) {
    d.ndim = 1;
    d.size[0] = 1;
  }
  return d;
}

inline const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
  }
  return "binary";
}

inline Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_same(name, a, b);
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  const BroadcastDesc d = make_broadcast_desc(a.shape(), b.shape(), out_shape);
  if (a.device().is_cpu()) {
    dispatch_float(a.dtype(), name, [&](auto tag) {
      using T = decltype(tag);
      cpu::binary<T>(op, a.data<T>(), b.data<T>(), out.data<T>(), d);
    });
    return out;
  }
  cuda::binary_f32(op, a.data<float>(), b.data<float>(), out.data<float>(), d, a.device().index);
  return out;
}

inline Tensor unary(UnaryOp op, const Tensor& x, double p0 = 0.0, double p1 = 0.0) {
  check_float("unary", x);
  Tensor y = empty_like(x);
  if (x.numel() == 0) return y;
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "unary", [&](auto tag) {
      using T = decltype(tag);
      cpu::unary<T>(op, x.data<T>(), y.data<T>(), x.numel(), static_cast<T>(p0), static_cast<T>(p1));
    });
    return y;
  }
  cuda::unary_f32(op, x.data<float>(), y.data<float>(), x.numel(), static_cast<float>(p0), static_cast<float>(p1),
                  x.device().index);
  return y;
}

/// Gradient of a unary map: g * op'(x). Ops whose derivative uses y = op(x) read y.
inline Tensor unary_backward(UnaryOp op, const Tensor& g, const Tensor& x, const Tensor& y, double p0 = 0.0,
                             double p1 = 0.0) {
  const Tensor& ref = x.defined() ? x : (y.defined() ? y : g);
  check_same("unary_backward", g, ref);
  Tensor gx = empty_like(g);
  if (g.numel() == 0) return gx;
  if (g.device().is_cpu()) {
    dispatch_float(g.dtype(), "unary_backward", [&](auto tag) {
      using T = decltype(tag);
      cpu::unary_backward<T>(op, g.data<T>(), x.defined() ? x.data<T>() : nullptr, y.defined() ? y.data<T>() : nullptr,
                             gx.data<T>(), g.numel(), static_cast<T>(p0), static_cast<T>(p1));
    });
    return gx;
  }
  cuda::unary_backward_f32(op, g.data<float>(), x.defined() ? x.data<float>() : nullptr,
                           y.defined() ? y.data<float>() : nullptr, gx.data<float>(), g.numel(),
                           static_cast<float>(p0), static_cast<float>(p1), g.device().index);
  return gx;
}

/// y += alpha * x in place (same shape, device and dtype).
inline void axpy_(Tensor& y, double alpha, const Tensor& x) {
  check_same("axpy", y, x);
  NANODE_CHECK(y.shape() == x.shape(), "axpy: shapes differ (", y.shape(), " and ", x.shape(), ")");
  if (x.numel() == 0) return;
  if (y.device().is_cpu()) {
    dispatch_float(y.dtype(), "axpy", [&](auto tag) {
      using T = decltype(tag);
      cpu::axpy<T>(static_cast<T>(alpha), x.data<T>(), y.data<T>(), x.numel());
    });
    return;
  }
  cuda::axpy_f32(static_cast<float>(alpha), x.data<float>(), y.data<float>(), x.numel(), y.device().index);
}

namespace detail {
/// The terms of a CPU combination: the data of each k[j] (null where k[j] is
/// absent or c[j] is zero) and the coefficients in T.
template <class T>
std::pair<std::vector<const T*>, std::vector<T>> cpu_terms(const std::vector<Tensor>& ks,
                                                           const std::vector<double>& cs) {
  std::vector<const T*> kp(ks.size());
  std::vector<T> cv(cs.size());
  for (size_t j = 0; j < ks.size(); ++j) {
    kp[j] = ks[j].defined() && cs[j] != 0.0 ? ks[j].data<T>() : nullptr;
    cv[j] = static_cast<T>(cs[j]);
  }
  return {kp, cv};
}
}  // namespace detail

/// x + sum_j c[j] k[j]; x and any k[j] may be undefined (absent). All defined
/// tensors must share shape, dtype and device; `like` gives them when all are absent.
inline Tensor lincomb(const Tensor& x, const std::vector<Tensor>& ks, const std::vector<double>& cs,
                      const Tensor& like = Tensor()) {
  NANODE_CHECK(ks.size() == cs.size(), "lincomb: ", ks.size(), " terms but ", cs.size(), " coefficients");
  const Tensor* ref = x.defined() ? &x : nullptr;
  for (const auto& k : ks)
    if (!ref && k.defined()) ref = &k;
  if (!ref) ref = &like;
  check_float("lincomb", *ref);
  for (const auto& k : ks)
    if (k.defined()) {
      check_same("lincomb", *ref, k);
      NANODE_CHECK(k.shape() == ref->shape(), "lincomb: shapes differ (", ref->shape(), " and ", k.shape(), ")");
    }
  if (x.defined()) NANODE_CHECK(x.shape() == ref->shape(), "lincomb: shapes differ (", ref->shape(), " and ", x.shape(), ")");
  Tensor out = empty_like(*ref);
  const int64_t n = out.numel();
  if (n == 0) return out;
  if (out.device().is_cpu()) {
    dispatch_float(out.dtype(), "lincomb", [&](auto tag) {
      using T = decltype(tag);
      const auto [kp, cv] = detail::cpu_terms<T>(ks, cs);
      cpu::lincomb<T>(x.defined() ? x.data<T>() : nullptr, kp.data(), cv.data(), static_cast<int>(ks.size()),
                      out.data<T>(), n);
    });
    return out;
  }
  // More terms than one launch takes: the partial sum so far rides along as a
  // term of the next launch, and x joins in the last one (added last, as on the CPU).
  const float* xp = x.defined() ? x.data<float>() : nullptr;
  const size_t per = cuda::kMaxLincombTerms - 1;
  size_t s0 = 0;
  do {
    cuda::LincombTerms terms;
    if (s0 > 0) {
      terms.k[0] = out.data<float>();
      terms.c[0] = 1.0f;
      terms.n = 1;
    }
    for (size_t j = s0; j < ks.size() && terms.n < cuda::kMaxLincombTerms; ++j, ++terms.n) {
      terms.k[terms.n] = ks[j].defined() && cs[j] != 0.0 ? ks[j].data<float>() : nullptr;
      terms.c[terms.n] = static_cast<float>(cs[j]);
    }
    s0 += s0 > 0 ? per : static_cast<size_t>(cuda::kMaxLincombTerms);
    cuda::lincomb_f32(s0 >= ks.size() ? xp : nullptr, terms, out.data<float>(), n, out.device().index);
  } while (s0 < ks.size());
  return out;
}

/// Several lincombs with one coefficient list: out[c] = x[c] + sum_j sign[c] cs[j]
/// ks[j][c], each as lincomb(x[c], {ks[j][c]}, {sign[c] cs[j]}, like[c]) (same
/// rules, same numbers). On CUDA up to cuda::kMaxMultiComponents components go in
/// one launch (the adjoint's augmented state); on the CPU one lincomb each.
inline std::vector<Tensor> multi_lincomb(const std::vector<Tensor>& x, const std::vector<std::vector<Tensor>>& ks,
                                         const std::vector<double>& cs, const std::vector<double>& sign,
                                         const std::vector<Tensor>& like) {
  const size_t C = x.size();
  NANODE_CHECK(sign.size() == C && like.size() == C && ks.size() == cs.size(), "multi_lincomb: ", C, " components, ",
               sign.size(), " signs, ", like.size(), " shapes; ", ks.size(), " terms, ", cs.size(), " coefficients");
  for (const auto& kj : ks) NANODE_CHECK(kj.size() == C, "multi_lincomb: a term has ", kj.size(), " of ", C, " components");
  std::vector<Tensor> out(C);
  std::vector<bool> done(C, false);
  // The components one launch can take: on CUDA, float32, each with a defined tensor.
  std::vector<size_t> fused;
  if (ks.size() <= static_cast<size_t>(cuda::kMaxMultiTerms))
    for (size_t c = 0; c < C; ++c) {
      const Tensor* ref = x[c].defined() ? &x[c] : nullptr;
      for (const auto& kj : ks)
        if (!ref && kj[c].defined()) ref = &kj[c];
      if (!ref || !ref->device().is_cuda() || ref->dtype() != DType::Float32) continue;
      bool ok = true;
      for (const auto& kj : ks)
        ok = ok && (!kj[c].defined() || (kj[c].device() == ref->device() && kj[c].dtype() == DType::Float32 &&
                                         kj[c].shape() == ref->shape()));
      ok = ok && (!x[c].defined() || x[c].shape() == ref->shape());
      if (ok && (fused.empty() || out[fused.front()].device() == ref->device())) {
        out[c] = empty_like(*ref);
        fused.push_back(c);
      }
    }
  for (size_t f0 = 0; f0 < fused.size(); f0 += cuda::kMaxMultiComponents) {
    cuda::MultiLincomb m;
    m.terms = static_cast<int>(ks.size());
    for (size_t j = 0; j < ks.size(); ++j) m.c[j] = static_cast<float>(cs[j]);
    for (size_t i = f0; i < fused.size() && m.components < cuda::kMaxMultiComponents; ++i, ++m.components) {
      const size_t c = fused[i];
      const int mc = m.components;
      m.sign[mc] = static_cast<float>(sign[c]);
      m.n[mc] = out[c].numel();
      m.x[mc] = x[c].defined() ? x[c].data<float>() : nullptr;
      m.out[mc] = out[c].data<float>();
      for (size_t j = 0; j < ks.size(); ++j)
        m.k[mc][j] = ks[j][c].defined() && cs[j] != 0.0 ? ks[j][c].data<float>() : nullptr;
      done[c] = true;
    }
    cuda::multi_lincomb_f32(m, out[fused[f0]].device().index);
  }
  for (size_t c = 0; c < C; ++c) {
    if (done[c]) continue;
    std::vector<Tensor> kt;
    std::vector<double> cv;
    for (size_t j = 0; j < ks.size(); ++j) {
      kt.push_back(ks[j][c]);
      cv.push_back(sign[c] * cs[j]);
    }
    out[c] = lincomb(x[c], kt, cv, like[c]);
  }
  return out;
}

namespace detail {
/// bias_act_lincomb's checks of its operands against pre (or against the tensor
/// that will hold pre, when the caller computes it in the same pass); errors name
/// `who`.
inline void check_bias_act_lincomb(const char* who, const Tensor& pre, const Tensor& bias, UnaryOp act,
                                   const Tensor& x, const std::vector<Tensor>& ks, const std::vector<double>& cs) {
  NANODE_CHECK(act == UnaryOp::Tanh || act == UnaryOp::Sigmoid, who, ": only tanh and sigmoid are fused");
  NANODE_CHECK(ks.size() == cs.size(), who, ": ", ks.size(), " terms but ", cs.size(), " coefficients");
  check_float(who, pre);
  if (bias.defined()) {
    check_same(who, pre, bias);
    NANODE_CHECK(pre.ndim() >= 1 && bias.ndim() == 1 && bias.size(0) == pre.size(-1), who, ": bias ", bias.shape(),
                 " does not match the last axis of ", pre.shape());
  }
  if (x.defined()) {
    check_same(who, pre, x);
    NANODE_CHECK(x.shape() == pre.shape(), who, ": shapes differ (", pre.shape(), " and ", x.shape(), ")");
  }
  for (const auto& k : ks)
    if (k.defined()) {
      check_same(who, pre, k);
      NANODE_CHECK(k.shape() == pre.shape(), who, ": shapes differ (", pre.shape(), " and ", k.shape(), ")");
    }
}
}  // namespace detail

/// The RK stage fused with the dynamics' last bias and activation:
/// k = act(pre + bias) (bias [C] along pre's last axis, or undefined; act Tanh or
/// Sigmoid) and out = x + sum_j cs[j] ks[j] + c_new k. Returns {k, out}. One pass:
/// one kernel on CUDA, one parallel region on the CPU (cpu::bias_act_lincomb, the
/// kernel's twin; the terms summed in lincomb's order).
inline std::pair<Tensor, Tensor> bias_act_lincomb(const Tensor& pre, const Tensor& bias, UnaryOp act, const Tensor& x,
                                                  const std::vector<Tensor>& ks, const std::vector<double>& cs,
                                                  double c_new) {
  detail::check_bias_act_lincomb("bias_act_lincomb", pre, bias, act, x, ks, cs);
  if (pre.device().is_cuda() && ks.size() < static_cast<size_t>(cuda::kMaxLincombTerms)) {
    Tensor k = empty_like(pre), out = empty_like(pre);
    cuda::LincombTerms terms;
    for (const auto& kj : ks) {
      terms.k[terms.n] = kj.defined() && cs[static_cast<size_t>(terms.n)] != 0.0 ? kj.data<float>() : nullptr;
      terms.c[terms.n] = static_cast<float>(cs[static_cast<size_t>(terms.n)]);
      ++terms.n;
    }
    cuda::bias_act_lincomb_f32(pre.data<float>(), bias.defined() ? bias.data<float>() : nullptr,
                               bias.defined() ? bias.numel() : 1, act, x.defined() ? x.data<float>() : nullptr, terms,
                               static_cast<float>(c_new), k.data<float>(), out.data<float>(), pre.numel(),
                               pre.device().index);
    return {k, out};
  }
  if (!pre.device().is_cpu()) {  // more terms than one CUDA launch takes: the ops apart
    Tensor k = unary(act, bias.defined() ? binary(BinaryOp::Add, pre, bias) : pre);
    std::vector<Tensor> all(ks);
    std::vector<double> call(cs);
    all.push_back(k);
    call.push_back(c_new);
    return {k, lincomb(x, all, call)};
  }
  Tensor k = empty_like(pre), out = empty_like(pre);
  if (pre.numel() == 0) return {k, out};
  dispatch_float(pre.dtype(), "bias_act_lincomb", [&](auto tag) {
    using T = decltype(tag);
    const auto [kp, cv] = detail::cpu_terms<T>(ks, cs);
    cpu::bias_act_lincomb<T>(act, pre.data<T>(), bias.defined() ? bias.data<T>() : nullptr,
                             bias.defined() ? pre.size(-1) : 1,
                             x.defined() ? x.data<T>() : nullptr, kp.data(), cv.data(), static_cast<int>(ks.size()),
                             static_cast<T>(c_new), k.data<T>(), out.data<T>(), pre.numel());
  });
  return {k, out};
}

/// RMS of err / (atol + rtol max(|a|, |b|)) over all elements: the adaptive
/// solvers' error norm. Returns 0 for empty tensors.
inline double scaled_rms(const Tensor& err, const Tensor& a, const Tensor& b, double atol, double rtol) {
  check_same("scaled_rms", err, a);
  check_same("scaled_rms", err, b);
  const int64_t n = err.numel();
  if (n == 0) return 0.0;
  double ss = 0;
  if (err.device().is_cpu()) {
    dispatch_float(err.dtype(), "scaled_rms", [&](auto tag) {
      using T = decltype(tag);
      ss = cpu::scaled_sq_sum<T>(err.data<T>(), a.data<T>(), b.data<T>(), n, atol, rtol);
    });
  } else {
    ss = cuda::scaled_sq_sum_f32(err.data<float>(), a.data<float>(), b.data<float>(), n, atol, rtol,
                                 err.device().index);
  }
  return std::sqrt(ss / static_cast<double>(n));
}

/// One Adam/AdamW step on a parameter tensor with its moment buffers (see cpu::adam_step).
inline void adam_step_(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, double lr, double beta1, double beta2,
                       double eps, double weight_decay, double c1, double c2, bool decoupled) {
  check_same("adam", p, g);
  NANODE_CHECK(p.shape() == g.shape() && m.shape() == p.shape() && v.shape() == p.shape(),
               "adam: parameter ", p.shape(), " and gradient ", g.shape(), " shapes differ");
  if (p.numel() == 0) return;
  if (p.device().is_cpu()) {
    dispatch_float(p.dtype(), "adam", [&](auto tag) {
      using T = decltype(tag);
      cpu::adam_step<T>(p.data<T>(), g.data<T>(), m.data<T>(), v.data<T>(), p.numel(), T(lr), T(beta1), T(beta2),
                        T(eps), T(weight_decay), T(c1), T(c2), decoupled);
    });
    return;
  }
  cuda::adam_step_f32(p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(), p.numel(), float(lr),
                      float(beta1), float(beta2), float(eps), float(weight_decay), float(c1), float(c2), decoupled,
                      p.device().index);
}

// ---- reductions --------------------------------------------------------------------

/// out[o, i] = sum_j x[o, j, i] on the tensor's device; out has outer*inner elements.
inline void sum_middle(const Tensor& x, Tensor& out, int64_t outer, int64_t r, int64_t inner) {
  if (x.device().is_cpu()) {
    dispatch_float(x.dtype(), "sum", [&](auto tag) {
      using T = decltype(tag);
      cpu::sum_middle<T>(x.data<T>(), out.data<T>(), outer, r, inner);
    });
    return;
  }
  cuda::sum_f32(x.data<float>(), out.data<float>(), outer, r, inner, x.device().index);
}

/// Sums over `axes` (any order, no repeats). keepdim keeps them as size 1.
inline Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdim) {
  check_float("sum", x);
  const int nd = x.ndim();
  for (auto& a : axes) a = normalize_axis(a, nd, "sum");
  std::sort(axes.begin(), axes.end());
  NANODE_CHECK(std::adjacent_find(axes.begin(), axes.end()) == axes.end(), "sum: an axis is repeated");
  std::vector<int64_t> kept = x.shape().vec();
  Tensor cur = x;
  // Reduce runs of adjacent axes, last run first, each as one [outer, r, inner] pass.
  size_t i = axes.size();
  while (i > 0) {
    size_t j = i - 1;
    while (j > 0 && axes[j - 1] == axes[j] - 1) --j;
    const int first = axes[j], last = axes[i - 1];
    int64_t outer = 1, r = 1, inner = 1;
    for (int k = 0; k < nd; ++k) {
      const int64_t s = kept[static_cast<size_t>(k)];
      if (k < first) outer *= s;
      else if (k <= last) r *= s;
      else inner *= s;
    }
    for (int k = first; k <= last; ++k) kept[static_cast<size_t>(k)] = 1;
    Tensor out = Tensor::empty(Shape(kept), x.dtype(), x.device());
    if (out.numel() > 0) {
      if (r == 0) fill(out, 0.0);
      else sum_middle(cur, out, outer, r, inner);
    }
    cur = out;
    i = j;
  }
  if (keepdim) return cur;
  std::vector<int64_t> dims;
  for (int k = 0; k < nd; ++k)
    if (!std::binary_search(axes.begin(), axes.end(), k)) dims.push_back(x.shape()[k]);
  return cur.reshape(dims);
}

inline Tensor sum_all(const Tensor& x) {
  std::vector<int> axes(static_cast<size_t>(x.ndim()));
  for (int k = 0; k < x.ndim(); ++k) axes[static_cast<size_t>(k)] = k;
  if (axes.empty()) return x.clone();
  return sum(x, axes, false);
}

/// Sums a gradient of a broadcast result back to the shape of the operand.
inline Tensor sum_to_shape(const Tensor& g, const Shape& target) {
  if (g.shape() == target) return g;
  const int nd = g.ndim(), off = nd - target.ndim();
  NANODE_CHECK(off >= 0, "sum_to_shape: cannot reduce ", g.shape(), " to ", target);
  std::vector<int> axes;
  for (int k = 0; k < nd; ++k) {
    if (k < off) axes.push_back(k);
    else if (target[k - off] == 1 && g.shape()[k] != 1) axes.push_back(k);
    else
      NANODE_CHECK(target[k - off] == g.shape()[k], "sum_to_shape: cannot reduce ", g.shape(), " to ", target);
  }
  if (axes.empty()) return g.reshape(target);
  return sum(g, axes, true).reshape(target);
}

}  // namespace backend

}  // namespace nanode

// Matmul and permute dispatch, the time-basis combinations, and the Tensor members
// built on the backend, live beside this file.
#include "nanode/backend/dispatch_basis.hpp"
#include "nanode/backend/dispatch_linalg.hpp"
#include "nanode/backend/tensor_members.hpp"
