#include "hw/dtype.h"

#include <limits>

namespace dpuemu {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kU8: return "u8";
    case DType::kI8: return "i8";
    case DType::kFP16: return "fp16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kFP32: return "fp32";
    case DType::kI4: return "i4";
    case DType::kU4: return "u4";
  }
  return "?";
}

StatusOr<DType> ParseDType(const std::string& name) {
  for (DType t : {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16, DType::kI32, DType::kFP32,
                  DType::kI4, DType::kU4}) {
    if (name == DTypeName(t)) return t;
  }
  return InvalidArgument("unknown dtype '" + name + "' (expected u8|i8|fp16|bf16|i32|fp32|i4|u4)");
}

int DTypeBytes(DType t) {
  switch (t) {
    case DType::kU8:
    case DType::kI8:
    case DType::kI4:
    case DType::kU4: return 1;
    case DType::kFP16:
    case DType::kBF16: return 2;
    case DType::kI32:
    case DType::kFP32: return 4;
  }
  return 0;
}

int DTypeBits(DType t) { return IsSubByte(t) ? 4 : 8 * DTypeBytes(t); }

bool IsFloat(DType t) { return t == DType::kFP16 || t == DType::kBF16 || t == DType::kFP32; }
bool IsInteger(DType t) { return !IsFloat(t); }

int64_t DTypeMin(DType t) {
  switch (t) {
    case DType::kU8: return 0;
    case DType::kI8: return -128;
    case DType::kU4: return 0;
    case DType::kI4: return -8;
    default: return std::numeric_limits<int32_t>::min();
  }
}

int64_t DTypeMax(DType t) {
  switch (t) {
    case DType::kU8: return 255;
    case DType::kI8: return 127;
    case DType::kU4: return 15;
    case DType::kI4: return 7;
    default: return std::numeric_limits<int32_t>::max();
  }
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  if (exp == 0x1F) return BitsToFloat(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return BitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return BitsToFloat(sign);
  // Subnormal half: value = mant * 2^-24, normalise into an fp32 normal.
  int e = -1;
  do {
    ++e;
    mant <<= 1;
  } while ((mant & 0x400) == 0);
  return BitsToFloat(sign | uint32_t(112 - e) << 23 | ((mant & 0x3FF) << 13));
}

uint16_t FloatToHalf(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return sign | 0x7E00u | static_cast<uint16_t>((abs >> 13) & 0x3FF);  // NaN
  if (abs >= 0x47800000u) {
    // >= 65536 (2^16) is infinity after rounding; [65520, 65536) rounds to inf too (handled below).
    return sign | 0x7C00u;
  }
  const int32_t exp = static_cast<int32_t>(abs >> 23) - 127;
  if (exp >= -14) {
    // Normal half: keep 10 mantissa bits, round the 13 dropped bits to nearest even.
    uint32_t mant = abs & 0x7FFFFFu;
    uint32_t h = (uint32_t(exp + 15) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;  // carries into exponent/inf correctly
    return sign | static_cast<uint16_t>(h);
  }
  // Subnormal half (or zero): value / 2^-24, rounded to nearest even integer.
  if (exp < -25) return sign;  // below half the smallest subnormal: rounds to zero
  const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;  // 24-bit significand, value = mant * 2^(exp-23)
  const int total = -(exp + 1);                          // value / 2^-24 = mant * 2^(exp + 1)
  uint32_t h = mant >> total;
  const uint32_t rem = mant & ((1u << total) - 1);
  const uint32_t half = 1u << (total - 1);
  if (rem > half || (rem == half && (h & 1))) ++h;
  return sign | static_cast<uint16_t>(h);
}

uint16_t FloatToBF16(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

int32_t LoadInt(DType t, const uint8_t* base, int64_t i) {
  switch (t) {
    case DType::kU8:
    case DType::kU4: return base[i];
    case DType::kI8:
    case DType::kI4: return static_cast<int8_t>(base[i]);
    case DType::kI32: {
      int32_t v;
      std::memcpy(&v, base + 4 * i, 4);
      return v;
    }
    default: return 0;
  }
}

float LoadFloat(DType t, const uint8_t* base, int64_t i) {
  switch (t) {
    case DType::kFP16:
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, base + 2 * i, 2);
      return t == DType::kFP16 ? HalfToFloat(h) : BF16ToFloat(h);
    }
    case DType::kFP32: {
      float v;
      std::memcpy(&v, base + 4 * i, 4);
      return v;
    }
    default: return 0.0f;
  }
}

void StoreInt(DType t, uint8_t* base, int64_t i, int32_t v) {
  switch (t) {
    case DType::kU8:
    case DType::kI8:
    case DType::kU4:
    case DType::kI4: base[i] = static_cast<uint8_t>(v); break;
    case DType::kI32: std::memcpy(base + 4 * i, &v, 4); break;
    default: break;
  }
}

void StoreFloat(DType t, uint8_t* base, int64_t i, float v) {
  switch (t) {
    case DType::kFP16:
    case DType::kBF16: {
      const uint16_t h = t == DType::kFP16 ? FloatToHalf(v) : FloatToBF16(v);
      std::memcpy(base + 2 * i, &h, 2);
      break;
    }
    case DType::kFP32: std::memcpy(base + 4 * i, &v, 4); break;
    default: break;
  }
}

}  // namespace dpuemu
