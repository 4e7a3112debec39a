// What the NPU compiler programs into the PPE of the pooling kinds (maxpool, avgpool), which have
// no weight table: the PPE registers hold one requantisation for every channel.
//
//   maxpool  mult 1, shift 0, bias 0, rounding NONE, no zero point added; the float PPE bypassed
//            (configureIntPPE / configurePPE in src/vpux_compiler/src/NPU40XX/dialect/VPUIPDPU/
//            transforms/passes/expand_dpu_config/expand_dpu_config_invariant_ppe.cpp;
//            setupTaskTypeDPUMaxPool and Setup_PPE in src/vpux_compiler/src/dialect/VPUMI37XX/ops/
//            external/runtime_dpu_parser_imports.cpp.inc): the window's largest stored value is
//            written as is.
//   avgpool  integer: mult / shift = QuantizationApproximation(in_scale / out_scale / (KY * KX)),
//            bias 0 (computeAvgPoolQuantScale in src/vpux_compiler/src/dialect/VPU/utils/
//            ppe_utils.cpp, PpeFactory::configureAttrForAvgPool in src/vpux_compiler/src/NPU37XX/
//            dialect/VPU/impl/ppe_factory.cpp, approximate() in src/vpux_compiler/include/vpux/
//            compiler/utils/quantization.hpp); float: scale = fp32(1 / out_scale / (KY * KX)),
//            bias 0 (configureFpPPE: fpScaleData). The window sum is over all KY * KX taps, pads
//            included (the divisor is the kernel size; exclude-pad pools are rewritten before they
//            reach the NCE, IE/transforms/passes/handle_exclude_pad_for_avg_pool.cpp).
#ifndef DPUEMU_HW_POOL_H_
#define DPUEMU_HW_POOL_H_

#include <cstdint>

#include "hw/status.h"

namespace dpuemu {

// The PPE's integer scale: target ~= mult / 2^shift with a 15-bit mantissa, as the compiler's
// approximate(15, target): frexp(target) = m * 2^e, mult = trunc(m * 2^15), shift = 15 - e. The
// compiler refuses a post-shift (e > 15, target >= 2^15); so does this, and a target that is not
// finite and positive, or whose shift exceeds the register's 0..63.
struct PpeIntScale {
  int32_t mult = 1;
  int32_t shift = 0;
};
StatusOr<PpeIntScale> ApproximateScale15(double target);

// The average pool's integer PPE scale for a KY x KX window: ApproximateScale15(in_scale /
// out_scale / (KY * KX)). `in_over_out` = in_scale / out_scale (1 when both tensors share a
// quantisation).
StatusOr<PpeIntScale> AvgPoolIntScale(double in_over_out, int64_t ky, int64_t kx);
// The average pool's float PPE scale: fp32(inv_out_scale / (KY * KX)) computed in double;
// inv_out_scale = 1 for a float output (computeAvgPoolQuantScale(nullptr, out, kernel)).
StatusOr<float> AvgPoolFloatScale(double inv_out_scale, int64_t ky, int64_t kx);

// Max pooling's order of 16-bit float values (fp16, bf16): the IEEE totalOrder, as the signed
// integer FloatOrderKey16(bits): -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN. The compiler
// does not say how the DPU compares -0 and +0 or NaNs; dpuemu's definition is this total order,
// so the max of a window is always one of its values' bit patterns.
inline int16_t FloatOrderKey16(uint16_t bits) {
  return static_cast<int16_t>(bits ^ ((bits & 0x8000u) ? 0x7FFFu : 0u));
}

}  // namespace dpuemu

#endif  // DPUEMU_HW_POOL_H_
