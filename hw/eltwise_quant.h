// Integer requantisation registers from quantisation scales, as the NPU compiler derives them.
#ifndef DPUEMU_HW_ELTWISE_QUANT_H_
#define DPUEMU_HW_ELTWISE_QUANT_H_

#include <cstdint>

#include "hw/status.h"

namespace dpuemu {

// A real multiplier as a 16-bit mult and a shift: target ~= mult * 2^-shift. The compiler's
// QuantizationApproximation (src/vpux_compiler/src/utils/quantization.cpp, `approximate` in
// include/vpux/compiler/utils/quantization.hpp): frexp(target) = m * 2^e, mult = m * 2^15
// truncated, shift = 15 - e. Targets >= 2^15 would need a post-shift, which the compiler refuses;
// so does dpuemu (an error naming `field`).
struct QuantMultShift {
  int32_t mult = 0;
  int32_t shift = 0;
};
StatusOr<QuantMultShift> ApproximateScale(double target, const char* field);

// The integer eltwise's registers: elop_scale_a (in1_mult), elop_scale_b (in2_mult) and the PPE's
// quant mult / shift, from the scales of the two inputs and of the output (1.0 for a float
// output). The compiler's EltwiseQuantizationApproximation (utils/quantization.cpp), called by
// the NPU37XX/NPU40XX PpeFactory::retrieveEltwisePPEAttribute (NPU37XX/dialect/VPU/impl/
// ppe_factory.cpp): each input scale and 1 / out_scale is approximated alone; then both input
// multipliers move to a common shift, the larger of the two if every register still fits (the
// shift sum <= 63, each mult <= 65535), else the smaller (input multipliers lose their low bits;
// needs the shift sum < 63), and that input shift is added to the output shift. The input
// shifts are then 0, which is what makes the runtime honour the multipliers (E#33155).
// LIT test: EltwiseAddWithDifferentScales in tests/lit/NPU/conversion/passes/IE2VPU/
// convert_IE_to_VPU_NCE_37XX_40XX.mlir (0.04936, 0.01013, 0.05328 -> 25877, 5312, 19219, 29).
struct EltwiseQuant {
  int32_t in1_mult = 1, in2_mult = 1;
  int32_t mult = 1, shift = 0;
};
StatusOr<EltwiseQuant> EltwiseQuantFromScales(double in1_scale, double in2_scale, double out_scale);

}  // namespace dpuemu

#endif  // DPUEMU_HW_ELTWISE_QUANT_H_
