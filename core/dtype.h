// Element types and devices. Floating types: f32, f64 and bf16 (stored as the upper 16 bits of an
// f32, rounded to nearest even). Integer types i32 / i64 hold token ids and targets; they never carry
// gradients.
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>

namespace coil {

enum class DType : uint8_t { F32, F64, BF16, I32, I64 };
inline constexpr int kNumDTypes = 5;

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
  }
  return "?";
}
inline bool is_floating(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

// bf16 <-> f32 (host side). Round to nearest even; NaN stays NaN.
struct bf16 {
  uint16_t bits = 0;
};
inline float bf16_to_float(bf16 h) {
  uint32_t u = uint32_t(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

enum class DeviceType : uint8_t { CPU, CUDA };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device&) const = default;
};
inline std::string device_name(Device d) {
  return d.is_cpu() ? "cpu" : "cuda:" + std::to_string(d.index);
}
inline std::ostream& operator<<(std::ostream& os, Device d) { return os << device_name(d); }

}  // namespace coil
