// Element types of the DPU and their exact conversions. fp16 and bf16 values are carried as their
// uint16 bit patterns; every float rounding in dpuemu goes through the functions here, so the
// reference, the SIMD kernels and the tests share one definition.
#ifndef DPUEMU_HW_DTYPE_H_
#define DPUEMU_HW_DTYPE_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "hw/status.h"

namespace dpuemu {

// kI4/kU4 are weight types only (NPU int4 weights). A host Tensor of them holds one value per byte
// (i4 sign-extended); the DPU's weight buffer packs two per byte (hw/formats.h PackSubByte).
enum class DType : uint8_t { kU8, kI8, kFP16, kBF16, kI32, kFP32, kI4, kU4 };

const char* DTypeName(DType t);                 // "u8", "i8", "fp16", "bf16", "i32", "fp32", "i4", "u4"
StatusOr<DType> ParseDType(const std::string& name);
int DTypeBytes(DType t);  // bytes per element of a host Tensor (1 for i4/u4)
int DTypeBits(DType t);   // bits per element in the DPU's memory (4 for i4/u4)
inline bool IsSubByte(DType t) { return t == DType::kI4 || t == DType::kU4; }
bool IsFloat(DType t);                          // fp16, bf16, fp32
bool IsInteger(DType t);                        // u8, i8, i32, i4, u4
// Value range of an integer type (u8: 0..255, i8: -128..127, i4: -8..7, u4: 0..15, i32: int32).
int64_t DTypeMin(DType t);
int64_t DTypeMax(DType t);

inline uint32_t FloatBits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float BitsToFloat(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// Widening conversions are exact.
float HalfToFloat(uint16_t h);
inline float BF16ToFloat(uint16_t b) { return BitsToFloat(uint32_t{b} << 16); }
// Narrowing: IEEE round-to-nearest-even, overflow to infinity, subnormals kept, NaN stays NaN
// (payload truncated, quiet bit set).
uint16_t FloatToHalf(float f);
uint16_t FloatToBF16(float f);

// Reads element i of a little-endian buffer of type t as an int (integer types) or float.
int32_t LoadInt(DType t, const uint8_t* base, int64_t i);
float LoadFloat(DType t, const uint8_t* base, int64_t i);  // fp16, bf16, fp32
void StoreInt(DType t, uint8_t* base, int64_t i, int32_t v);
void StoreFloat(DType t, uint8_t* base, int64_t i, float v);  // rounds for fp16/bf16

}  // namespace dpuemu

#endif  // DPUEMU_HW_DTYPE_H_
