#pragma once
// Tensor: a contiguous, typed buffer on one device with a shape of up to 5 axes.
// Tensors share storage by reference (copying a Tensor copies a handle); reshape
// and leading-axis narrowing return views of the same storage.
// This header declares Tensor; its computing members (to, clone, fill_, copy_,
// to_vector...) are defined by backend/ (core/ never includes backend/). Include
// nanode/tensor.hpp or nanode/nanode.hpp, not this header alone.
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "nanode/core/allocator.hpp"
#include "nanode/core/rng.hpp"
#include "nanode/core/shape.hpp"

namespace nanode {

class Storage {
 public:
  Storage(size_t bytes, Device device)
      : ptr_(allocator(device).allocate(bytes)), bytes_(bytes), device_(device) {}
  ~Storage() { allocator(device_).deallocate(ptr_, bytes_); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* ptr_;
  size_t bytes_;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;

  // ---- creation -------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu()) {
    NANODE_CHECK(!(device.is_cuda() && dtype == DType::Float64),
                 "Tensor: float64 tensors are CPU-only (asked for ", shape, " on ", device, ")");
    Tensor t;
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape.numel()) * dtype_size(dtype), device);
    return t;
  }
  static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32,
                     Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu()) {
    return full(shape, 0.0, dtype, device);
  }
  static Tensor ones(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu()) {
    return full(shape, 1.0, dtype, device);
  }
  static Tensor scalar(double value, DType dtype = DType::Float32, Device device = Device::cpu()) {
    return full(Shape{}, value, dtype, device);
  }
  /// Copies host values into a new tensor of `shape` (numel must match).
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  /// n evenly spaced values from a to b inclusive.
  static Tensor linspace(double a, double b, int64_t n, DType dtype = DType::Float32,
                         Device device = Device::cpu());
  /// Uniform in [lo, hi) from `gen`'s stream.
  static Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen = default_generator(),
                        DType dtype = DType::Float32, Device device = Device::cpu());
  static Tensor normal(const Shape& shape, double mean, double stddev, Generator& gen = default_generator(),
                       DType dtype = DType::Float32, Device device = Device::cpu());

  // ---- properties -----------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  /// No other Tensor (view or copy of the handle) shares this one's storage: an
  /// in-place update changes no value anyone else can see.
  bool sole_owner() const { return storage_ != nullptr && storage_.use_count() == 1; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  int64_t numel() const { return shape_.numel(); }
  int64_t size(int axis) const { return shape_.size(axis); }
  DType dtype() const { return dtype_; }
  Device device() const {
    check_defined("device");
    return storage_->device();
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_cpu() const { return device().is_cpu(); }

  void* raw_data() const {
    check_defined("data");
    return static_cast<char*>(storage_->data()) + offset_ * dtype_size(dtype_);
  }
  template <class T>
  T* data() const {
    check_defined("data");
    NANODE_CHECK(dtype_ == dtype_of<T>::value, "Tensor::data: tensor is ", dtype_, ", asked for ",
                 dtype_of<T>::value);
    return static_cast<T*>(raw_data());
  }
  bool shares_storage_with(const Tensor& o) const { return storage_ == o.storage_; }

  // ---- views ----------------------------------------------------------------
  /// A view with a new shape of the same numel; one dimension may be -1.
  Tensor reshape(std::vector<int64_t> dims) const {
    check_defined("reshape");
    int infer = -1;
    int64_t known = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] == -1) {
        NANODE_CHECK(infer < 0, "reshape: more than one -1 in the new shape (from ", shape_, ")");
        infer = static_cast<int>(i);
      } else {
        NANODE_CHECK(dims[i] >= 0, "reshape: negative dimension ", dims[i], " (from ", shape_, ")");
        known *= dims[i];
      }
    }
    if (infer >= 0) {
      NANODE_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer -1 reshaping ", shape_,
                   " (", numel(), " elements)");
      dims[static_cast<size_t>(infer)] = numel() / known;
      known *= dims[static_cast<size_t>(infer)];
    }
    Shape ns(dims);
    NANODE_CHECK(known == numel(), "reshape: cannot view ", shape_, " (", numel(), " elements) as ", ns);
    Tensor t = *this;
    t.shape_ = ns;
    return t;
  }
  Tensor reshape(const Shape& s) const { return reshape(s.vec()); }
  Tensor reshape(std::initializer_list<int64_t> dims) const { return reshape(std::vector<int64_t>(dims)); }
  Tensor flatten() const { return reshape({numel()}); }

  /// Elements [start, start+length) along `axis`. A view when the slice is
  /// contiguous in memory (axis 0, or all earlier axes of size 1); a copy otherwise.
  Tensor narrow(int axis, int64_t start, int64_t length) const;
  /// Python-style slice [start, end) along `axis` (negative indices count from the end).
  Tensor slice(int axis, int64_t start, int64_t end) const {
    check_defined("slice");
    axis = normalize_axis(axis, ndim(), "slice");
    const int64_t n = shape_[axis];
    if (start < 0) start += n;
    if (end < 0) end += n;
    NANODE_CHECK(start >= 0 && start <= end && end <= n, "slice: range [", start, ", ", end,
                 ") is out of bounds for axis ", axis, " of ", shape_);
    return narrow(axis, start, end - start);
  }
  /// Index `i` of axis 0, dropping that axis (a view).
  Tensor operator[](int64_t i) const {
    NANODE_CHECK(ndim() >= 1, "Tensor[]: cannot index a 0-D tensor");
    NANODE_CHECK(i >= 0 && i < shape_[0], "Tensor[]: index ", i, " out of range for ", shape_);
    auto d = shape_.vec();
    d.erase(d.begin());
    return narrow(0, i, 1).reshape(d);
  }

  // ---- copies and conversion (defined with the backend dispatch) -------------
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor clone() const;
  /// Copies `src` (same shape and dtype, any device) into this tensor's storage.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  /// All values, copied to the host and converted to T.
  template <class T>
  std::vector<T> to_vector() const;
  /// The value of a one-element tensor.
  template <class T = double>
  T item() const {
    NANODE_CHECK(numel() == 1, "item: tensor of shape ", shape_, " has ", numel(), " elements, not 1");
    return to_vector<T>()[0];
  }
  /// The element at a full index (any device; copies one element to the host).
  double at(std::initializer_list<int64_t> index) const;
  std::string str(int max_elements = 32) const;

 private:
  void check_defined(const char* what) const {
    NANODE_CHECK(storage_ != nullptr, "Tensor::", what, ": tensor is undefined (default-constructed)");
  }

  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::Float32;
};

}  // namespace nanode

