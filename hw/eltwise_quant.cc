#include "hw/eltwise_quant.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace dpuemu {

StatusOr<QuantMultShift> ApproximateScale(double target, const char* field) {
  if (!(target >= 0) || !std::isfinite(target)) {
    return InvalidArgument(std::string(field) + " = " + std::to_string(target) +
                           ": a quantisation multiplier must be finite and >= 0");
  }
  int exponent = 0;
  const double mantissa = std::frexp(target, &exponent);  // [0.5, 1), or 0
  constexpr int kBits = 15;
  if (exponent > kBits) {
    return InvalidArgument(std::string(field) + " = " + std::to_string(target) +
                           ": >= 2^15 needs a PPE post-shift, which the compiler does not support "
                           "(QuantizationApproximation, utils/quantization.cpp)");
  }
  if (kBits - exponent > 255) {  // the compiler's uint8_t shift
    return InvalidArgument(std::string(field) + " = " + std::to_string(target) +
                           ": too small for an 8-bit shift");
  }
  QuantMultShift q;
  q.mult = static_cast<int32_t>(mantissa * 32768.0);  // truncated, as checked_cast<uint16_t>
  q.shift = kBits - exponent;
  return q;
}

StatusOr<EltwiseQuant> EltwiseQuantFromScales(double in1_scale, double in2_scale, double out_scale) {
  if (!(out_scale > 0) || !std::isfinite(out_scale)) {
    return InvalidArgument("output scale = " + std::to_string(out_scale) + ": must be finite and > 0");
  }
  QuantMultShift in1, in2, out;
  DPUEMU_ASSIGN_OR_RETURN(in1, ApproximateScale(in1_scale, "input1 scale"));
  DPUEMU_ASSIGN_OR_RETURN(in2, ApproximateScale(in2_scale, "input2 scale"));
  DPUEMU_ASSIGN_OR_RETURN(out, ApproximateScale(1.0 / out_scale, "1 / output scale"));
  constexpr int64_t kMaxShift = 63;     // 6-bit shift register
  constexpr int64_t kMaxMult = 65535;   // 16-bit mult registers
  const int64_t min_shift = std::min(in1.shift, in2.shift);
  const int64_t max_shift = std::max(in1.shift, in2.shift);
  // mult << d fits in 16 bits iff mult <= 65535 >> d (d < 64 here: both shifts are <= 63 then).
  const auto fits_left = [&](const QuantMultShift& q) {
    const int64_t d = max_shift - q.shift;
    return d < 16 ? q.mult <= (kMaxMult >> d) : q.mult == 0;
  };
  EltwiseQuant r;
  if (max_shift + out.shift <= kMaxShift && fits_left(in1) && fits_left(in2)) {
    r.in1_mult = static_cast<int32_t>(int64_t{in1.mult} << (max_shift - in1.shift));
    r.in2_mult = static_cast<int32_t>(int64_t{in2.mult} << (max_shift - in2.shift));
    r.shift = static_cast<int32_t>(out.shift + max_shift);
  } else if (min_shift + out.shift < kMaxShift) {
    const auto right = [&](const QuantMultShift& q) {
      const int64_t d = q.shift - min_shift;
      return static_cast<int32_t>(d < 16 ? q.mult >> d : 0);
    };
    r.in1_mult = right(in1);
    r.in2_mult = right(in2);
    r.shift = static_cast<int32_t>(out.shift + min_shift);
  } else {
    return InvalidArgument("eltwise scales " + std::to_string(in1_scale) + ", " +
                           std::to_string(in2_scale) + " -> " + std::to_string(out_scale) +
                           ": in1_mult / in2_mult / shift out of register range (the compiler's "
                           "EltwiseQuantizationApproximation refuses them too)");
  }
  r.mult = out.mult;
  return r;
}

}  // namespace dpuemu
