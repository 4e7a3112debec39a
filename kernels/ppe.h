// The post-processing element (PPE): accumulator to output value. This is the project's
// definition of the DPU's arithmetic after accumulation; the reference and every fast kernel call
// these functions, so they cannot disagree.
//
// Integer path (integer activations and weights, exact):
//   i32 output:   out = acc + bias (int32, wrapping), no further PPE (debug mode).
//   u8/i8 output: v = (acc + bias) * mult                  in 64 bits, exact
//                 if v < 0 and leaky ReLU: v *= lrelu_mult, shift += lrelu_shift
//                 v = v / 2^shift, rounded half to even    (exact integer arithmetic)
//                 v += out_zp; clamp to [lo, hi] intersected with the output type's range.
// Float path (fp16/bf16 activations; weights of the same type, or integer weights as w - w_zp),
// in the order the compiler programs the NPU40XX float PPE (buildFpPPEConfig in
// src/vpux_compiler/src/NPU40XX/dialect/VPUIPDPU/transforms/passes/expand_dpu_config/
// expand_dpu_config_invariant_ppe.cpp: PPEFpBiasAdd, PPEFpScalePreluMult, PPEFpConvert):
//   v = fp32(acc + bias)            bias in accumulator units, as the weight table holds it
//   v = fp32(v * scale)
//   if leaky ReLU and v < 0: v = fp32(v * alpha)
//   clamp to [lo, hi] (NaN passes through); fp16 outputs also to [-65504, 65504], the PPE's
//   fp16 clamp (ppe_fp16_clamp on NPU37XX, PPEFpConvert clamp mode on NPU40XX), so they
//   saturate instead of overflowing to infinity;
//   round to the output type (fp16/bf16 round-to-nearest-even, or fp32 as is).
#ifndef DPUEMU_KERNELS_PPE_H_
#define DPUEMU_KERNELS_PPE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "hw/dtype.h"
#include "hw/layer.h"

namespace dpuemu {

// v / 2^shift rounded to nearest, ties to even; |v| < 2^60, shift in [0, 94].
inline int64_t RoundShiftHalfEven(int64_t v, int shift) {
  if (shift == 0) return v;
  if (shift > 61) return 0;  // |v| / 2^shift < 1/2
  const int64_t q = v >> shift;  // floor (arithmetic shift)
  const int64_t r = v - q * (int64_t{1} << shift);
  const int64_t half = int64_t{1} << (shift - 1);
  return (r > half || (r == half && (q & 1))) ? q + 1 : q;
}

// PPE settings resolved once per op: clamp bounds intersected with the output type.
struct PpeParams {
  DType out = DType::kU8;
  int32_t out_zp = 0;
  bool leaky = false;
  int32_t lrelu_mult = 1, lrelu_shift = 0;
  float alpha = 1.0f;      // float leaky ReLU slope
  int32_t lo = 0, hi = 0;  // integer outputs
  float flo = 0, fhi = 0;  // float outputs; for fp16 saturated to +-65504
};

constexpr float kHalfMax = 65504.0f;

inline PpeParams ResolvePpe(const NceOp& op) {
  PpeParams p;
  p.out = op.out_dtype;
  p.out_zp = op.ppe.out_zp;
  p.leaky = op.ppe.leaky_relu;
  p.lrelu_mult = op.ppe.lrelu_mult;
  p.lrelu_shift = op.ppe.lrelu_shift;
  p.alpha = op.ppe.lrelu_alpha;
  const double tmin = static_cast<double>(DTypeMin(op.out_dtype));
  const double tmax = static_cast<double>(DTypeMax(op.out_dtype));
  p.lo = static_cast<int32_t>(std::max(op.ppe.clamp_lo, tmin));
  p.hi = static_cast<int32_t>(std::min(op.ppe.clamp_hi, tmax));
  // Bounds outside fp32 become +-inf (no clamp); the double -> float rounding of a finite bound
  // is part of the definition.
  const auto to_float = [](double v) {
    constexpr float kMax = std::numeric_limits<float>::max();
    return v > kMax ? std::numeric_limits<float>::infinity()
                    : v < -kMax ? -std::numeric_limits<float>::infinity() : static_cast<float>(v);
  };
  p.flo = to_float(op.ppe.clamp_lo);
  p.fhi = to_float(op.ppe.clamp_hi);
  // fp16 saturation after the clamp: saturating both bounds (monotone) composes the two.
  if (op.out_dtype == DType::kFP16) {
    p.flo = std::min(std::max(p.flo, -kHalfMax), kHalfMax);
    p.fhi = std::min(std::max(p.fhi, -kHalfMax), kHalfMax);
  }
  return p;
}

// Integer PPE to the output type's value (u8/i8 in int32; i32 as is).
inline int32_t PpeInt(int32_t acc, int32_t bias, int32_t mult, int32_t shift, const PpeParams& p) {
  if (p.out == DType::kI32) {
    return static_cast<int32_t>(static_cast<uint32_t>(acc) + static_cast<uint32_t>(bias));
  }
  int64_t v = (int64_t{acc} + bias) * mult;
  int s = shift;
  if (v < 0 && p.leaky) {
    v *= p.lrelu_mult;
    s += p.lrelu_shift;
  }
  v = RoundShiftHalfEven(v, s) + p.out_zp;
  return static_cast<int32_t>(std::min<int64_t>(std::max<int64_t>(v, p.lo), p.hi));
}

// Float PPE to fp32; the caller rounds to the output type with StoreFloat.
inline float PpeFloat(float acc, float scale, float bias, const PpeParams& p) {
  float v = acc + bias;
  v = v * scale;
  if (p.leaky && v < 0) v = v * p.alpha;
  if (v < p.flo) v = p.flo;
  if (v > p.fhi) v = p.fhi;
  return v;
}

}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_PPE_H_
