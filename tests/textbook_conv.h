// An independent "textbook" ZMConv on plain dense arrays, to test the reference DPU against.
//
// It implements the arithmetic defined in kernels/ppe.h and kernels/ref/nce_ref.h without
// sharing their code or any hardware format (no weight table, no compressed weights, no maps):
// a direct convolution over the dense NHWC input and OYXI weights with a different loop nest, and
// a PPE written another way (128-bit integers and division for the integer path, fp64 arithmetic
// rounded once to fp32 for the float path). Only the element conversions of hw/dtype.h are shared.
#ifndef DPUEMU_TESTS_TEXTBOOK_CONV_H_
#define DPUEMU_TESTS_TEXTBOOK_CONV_H_

#include <cstdint>

#include "hw/layer.h"
#include "hw/status.h"
#include "hw/tensor.h"

namespace dpuemu {

// The layer's output [OH, OW, K] in op.out_dtype. On the float path the sum depends on which
// products the DPU performs: with sparse weights it skips weights absent from the map (zero by
// value, +0.0 or -0.0), so +inf * 0.0 does not make a NaN there. `skip_zero_weights` selects that behaviour; it
// does not change integer results.
StatusOr<Tensor> TextbookConv(const NceLayer& layer, bool skip_zero_weights);

// The PPE steps on their own, for the tests of kernels/ppe.h.
// v / 2^shift rounded to the nearest integer, ties to even; shift in [0, 126].
int64_t TextbookRoundHalfEven(int64_t v, int shift);
// Integer accumulator to the output value (u8/i8 value in an int32, or the i32 output).
int32_t TextbookPpeInt(int32_t acc, int32_t bias, int32_t mult, int32_t shift, const NceOp& op);
// Float accumulator to the fp32 value before rounding to the output type.
float TextbookPpeFloat(float acc, float scale, float bias, const NceOp& op);

}  // namespace dpuemu

#endif  // DPUEMU_TESTS_TEXTBOOK_CONV_H_
