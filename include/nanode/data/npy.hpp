#pragma once
// NPY files as Tensors: read_npy_tensor and write_npy for a Tensor. Element types
// map as numpy's do where nanode has them: '<f4' float32, '<f8' float64, '<i4'
// int32; '<i8' becomes int32 (values outside int32's range are an error naming
// the file) and '|u1' becomes float32 holding 0..255.
#include <cstring>
#include <limits>
#include <string>

#include "nanode/tensor.hpp"
#include "nanode/data/readers.hpp"

namespace nanode::data {

inline Tensor read_npy_tensor(const std::string& path) {
  const Array a = read_npy(path);
  NANODE_CHECK(a.dims.size() <= 5, path, ": NPY array of rank ", a.dims.size(), " (nanode tensors have at most 5 axes)");
  const Shape shape(a.dims);
  const int64_t n = a.numel();
  switch (a.elem) {
    case Elem::F32:
    case Elem::F64:
    case Elem::I32: {
      Tensor t = Tensor::empty(shape, a.elem == Elem::F32 ? DType::Float32 : a.elem == Elem::F64 ? DType::Float64 : DType::Int32);
      if (t.nbytes() > 0) std::memcpy(t.raw_data(), a.bytes.data(), t.nbytes());
      return t;
    }
    case Elem::I64: {
      Tensor t = Tensor::empty(shape, DType::Int32);
      int32_t* out = t.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) {
        int64_t v;
        std::memcpy(&v, a.bytes.data() + 8 * i, 8);
        NANODE_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(), path,
                     ": int64 element ", i, " = ", v, " does not fit nanode's int32");
        out[i] = static_cast<int32_t>(v);
      }
      return t;
    }
    case Elem::U8: {
      Tensor t = Tensor::empty(shape, DType::Float32);
      float* out = t.data<float>();
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(a.bytes[static_cast<size_t>(i)]);
      return t;
    }
  }
  fail(path, ": unsupported NPY element type");
}

/// Writes `t` (float32 '<f4', float64 '<f8' or int32 '<i4') as an NPY file.
inline void write_npy(const std::string& path, const Tensor& t) {
  NANODE_CHECK(t.defined(), "write_npy: ", path, ": the tensor is undefined");
  const Tensor host = t.cpu();  // tensors are always contiguous
  const Elem e = host.dtype() == DType::Float32 ? Elem::F32 : host.dtype() == DType::Float64 ? Elem::F64 : Elem::I32;
  write_npy(path, host.shape().vec(), host.raw_data(), e);
}

}  // namespace nanode::data
