#pragma once
// The Tensor members that need the backend (filling, random draws, copies,
// device and dtype conversion, printing), defined once dispatch.hpp is complete.
#include "nanode/backend/dispatch.hpp"

namespace nanode {

inline Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend::fill(t, value);
  return t;
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  NANODE_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "Tensor::from_vector: ", values.size(),
               " values do not fill shape ", shape, " (", shape.numel(), " elements)");
  Tensor host = empty(shape, dtype_of<T>::value, Device::cpu());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return device.is_cpu() ? host : host.to(device);
}

inline Tensor Tensor::linspace(double a, double b, int64_t n, DType dtype, Device device) {
  NANODE_CHECK(n >= 1, "linspace: need at least one point, got ", n);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = n == 1 ? a : a + (b - a) * static_cast<double>(i) / static_cast<double>(n - 1);
  return Tensor::from_vector(v, Shape{n}).to(dtype).to(device);
}

inline Tensor Tensor::uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype, Device device) {
  NANODE_CHECK(hi >= lo, "uniform: empty range [", lo, ", ", hi, ")");
  return backend::random(shape, lo, hi, false, gen, dtype, device);
}

inline Tensor Tensor::normal(const Shape& shape, double mean, double stddev, Generator& gen, DType dtype,
                             Device device) {
  NANODE_CHECK(stddev >= 0, "normal: negative standard deviation ", stddev);
  return backend::random(shape, mean, stddev, true, gen, dtype, device);
}

inline Tensor Tensor::narrow(int axis, int64_t start, int64_t length) const {
  check_defined("narrow");
  axis = normalize_axis(axis, ndim(), "narrow");
  NANODE_CHECK(start >= 0 && length >= 0 && start + length <= shape_[axis], "narrow: range [", start, ", ",
               start + length, ") is out of bounds for axis ", axis, " of ", shape_);
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; ++k) outer *= shape_[k];
  for (int k = axis + 1; k < ndim(); ++k) inner *= shape_[k];
  if (outer == 1) {
    Tensor t = *this;
    t.shape_ = shape_.with(axis, length);
    t.offset_ = offset_ + start * inner;
    return t;
  }
  Tensor out = empty(shape_.with(axis, length), dtype_, device());
  const int64_t es = static_cast<int64_t>(dtype_size(dtype_));
  backend::copy_rows(device(), out.raw_data(), length * inner * es,
                     static_cast<const char*>(raw_data()) + start * inner * es, shape_[axis] * inner * es,
                     length * inner * es, outer);
  return out;
}

inline Tensor Tensor::to(Device device) const {
  check_defined("to");
  if (device == this->device()) return *this;
  NANODE_CHECK(!(device.is_cuda() && dtype_ == DType::Float64), "Tensor::to: float64 tensors are CPU-only; convert "
               "to float32 before moving to ", device);
  Tensor out = empty(shape_, dtype_, device);
  backend::copy_bytes(out, *this);
  return out;
}

inline Tensor Tensor::to(DType dtype) const {
  check_defined("to");
  if (dtype == dtype_) return *this;
  if (!device().is_cpu()) return cpu().to(dtype).to(device());
  Tensor out = empty(shape_, dtype, Device::cpu());
  const int64_t n = numel();
  auto conv = [&](auto* src) {
    switch (dtype) {
      case DType::Float32: cpu::convert(src, out.data<float>(), n); break;
      case DType::Float64: cpu::convert(src, out.data<double>(), n); break;
      case DType::Int32: cpu::convert(src, out.data<int32_t>(), n); break;
    }
  };
  switch (dtype_) {
    case DType::Float32: conv(data<float>()); break;
    case DType::Float64: conv(data<double>()); break;
    case DType::Int32: conv(data<int32_t>()); break;
  }
  return out;
}

inline Tensor Tensor::clone() const {
  check_defined("clone");
  Tensor out = empty(shape_, dtype_, device());
  backend::copy_bytes(out, *this);
  return out;
}

inline Tensor& Tensor::copy_(const Tensor& src) {
  check_defined("copy_");
  NANODE_CHECK(src.defined(), "copy_: source tensor is undefined");
  NANODE_CHECK(src.shape() == shape_ && src.dtype() == dtype_, "copy_: cannot copy ", src.dtype(), " ", src.shape(),
               " into ", dtype_, " ", shape_);
  backend::copy_bytes(*this, src);
  return *this;
}

inline Tensor& Tensor::fill_(double value) {
  backend::fill(*this, value);
  return *this;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_defined("to_vector");
  Tensor host = cpu();
  std::vector<T> out(static_cast<size_t>(numel()));
  const int64_t n = numel();
  switch (dtype_) {
    case DType::Float32: cpu::convert(host.data<float>(), out.data(), n); break;
    case DType::Float64: cpu::convert(host.data<double>(), out.data(), n); break;
    case DType::Int32: cpu::convert(host.data<int32_t>(), out.data(), n); break;
  }
  return out;
}

inline double Tensor::at(std::initializer_list<int64_t> index) const {
  check_defined("at");
  NANODE_CHECK(static_cast<int>(index.size()) == ndim(), "at: ", index.size(), " indices for a tensor of shape ",
               shape_);
  const auto st = shape_.strides();
  int64_t off = 0, k = 0;
  for (int64_t i : index) {
    NANODE_CHECK(i >= 0 && i < shape_[static_cast<int>(k)], "at: index ", i, " out of range for axis ", k, " of ",
                 shape_);
    off += i * st[static_cast<size_t>(k++)];
  }
  Tensor one = *this;
  one.shape_ = Shape{};
  one.offset_ = offset_ + off;
  return one.item<double>();
}

inline std::string Tensor::str(int max_elements) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(" << shape_ << ", " << dtype_ << ", " << device() << ") [";
  const auto v = to_vector<double>();
  const size_t n = std::min(v.size(), static_cast<size_t>(max_elements));
  for (size_t i = 0; i < n; ++i) os << (i ? ", " : "") << v[i];
  if (v.size() > n) os << ", ...";
  return os.str() + "]";
}

}  // namespace nanode
