#pragma once
// Device and element types.
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "nanode/core/error.hpp"

namespace nanode {

enum class DType : uint8_t { Float32, Float64, Int32 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int32: return 4;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int32: return "int32";
  }
  return "?";
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::Int32; };

enum class DeviceType : uint8_t { CPU, CUDA };

constexpr int kMaxCudaDevices = 16;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) {
    NANODE_CHECK(index >= 0 && index < kMaxCudaDevices, "Device::cuda: index ", index,
                 " is out of range");
    return {DeviceType::CUDA, index};
  }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  /// "cpu", "cuda" (cuda:0) or "cuda:<index>"; anything else is an error naming it.
  static Device parse(const std::string& s) {
    if (s == "cpu") return cpu();
    if (s == "cuda") return cuda(0);
    if (s.compare(0, 5, "cuda:") == 0 && s.size() > 5 && s.size() <= 7 &&
        s.find_first_not_of("0123456789", 5) == std::string::npos)
      return cuda(std::stoi(s.substr(5)));
    fail("unknown device '", s, "' (valid: cpu, cuda, cuda:<index>)");
  }
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace nanode
