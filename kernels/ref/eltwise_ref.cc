// The eltwise (NCEEltwise): two inputs of the same shape [H, W, C] combined element by element,
// then one set of PPE registers (DpuTask::ppe_regs) for every channel.
//
// The DPU reads the second input through its weights port (elop_wload: "read in 2 tensors
// instead of a tensor and weight sets", VPUMI37XX runtime_dpu_parser_imports.cpp.inc) and the MPE
// subtracts each input's zero point (the activation and weights biases, MPEActivationBiasOp /
// MPEWeightsBiasOp in NPU40XX expand_dpu_config_invariant_mpe.cpp). The elop unit scales each
// input by its 16-bit multiplier (elop_scale_a / elop_scale_b) and adds; the PPE then applies the
// quant mult / shift ("input1 * MULT1 i32 -> + -> * MULT_OUT >> SHIFT_OUT", the comment of
// EltwiseQuantizationApproximation, utils/quantization.cpp).
//
// Integer (u8 / i8 inputs):
//   a = x1 - zp1, b = x2 - zp2                         exact
//   add:  acc = a * in1_mult + b * in2_mult            |acc| < 2^25: exact in int32
//   sub:  acc = a * in1_mult - b * in2_mult
//   mult: acc = a * b                                  (in1_mult = in2_mult = 1, ValidateOp)
//   out = PpeInt(acc, bias, mult, shift)               kernels/ppe.h
// Float (fp16 inputs, widened exactly to fp32):
//   acc = fp32(x1 + x2), fp32(x1 - x2) or fp32(x1 * x2), one rounding to nearest even
//   a NaN acc becomes the quiet NaN 0x7FC00000 (dpuemu's definition: the payload a CPU would
//   propagate depends on operand order)
//   out = PpeFloat(acc, scale, fbias), rounded to the output type (kernels/ppe.h).
// The compiler only emits ADD (EltwiseToNCE<IE::AddOp>); sub and mult are the hardware's other
// elop modes (IDUEltwiseType SUBTRACT / MULT) and their arithmetic here is dpuemu's definition.
#include "kernels/ref/nce_ref.h"

#include <cmath>

#include "hw/formats.h"
#include "kernels/ppe.h"

namespace dpuemu {

StatusOr<DpuOutput> RefEltwise(const DpuTask& task) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  const EltwiseParams& e = op.eltwise;
  const DpuTask::PpeRegisters& r = task.ppe_regs;
  const PpeParams ppe = ResolvePpe(op);

  Tensor x1_t;
  DPUEMU_ASSIGN_OR_RETURN(x1_t, GatherActivations(task.input_view(), op.in_dtype, {g.h, g.w, g.c},
                                                  op.in_zp));
  const uint8_t* x1 = x1_t.bytes.data();
  const uint8_t* x2 = task.input2.data();
  Tensor out(op.out_dtype, {g.h, g.w, g.c});
  const int64_t n = g.h * g.w * g.c;
  for (int64_t i = 0; i < n; ++i) {
    if (!IsFloat(op.in_dtype)) {
      const int32_t a = LoadInt(op.in_dtype, x1, i) - op.in_zp;
      const int32_t b = LoadInt(e.in2_dtype, x2, i) - e.in2_zp;
      int32_t acc = 0;
      switch (e.type) {
        case EltwiseType::kAdd: acc = a * e.in1_mult + b * e.in2_mult; break;
        case EltwiseType::kSub: acc = a * e.in1_mult - b * e.in2_mult; break;
        case EltwiseType::kMult: acc = a * b; break;
      }
      StoreInt(op.out_dtype, out.bytes.data(), i, PpeInt(acc, r.bias, r.mult, r.shift, ppe));
    } else {
      const float a = LoadFloat(op.in_dtype, x1, i);
      const float b = LoadFloat(e.in2_dtype, x2, i);
      float acc = 0.0f;
      switch (e.type) {
        case EltwiseType::kAdd: acc = a + b; break;
        case EltwiseType::kSub: acc = a - b; break;
        case EltwiseType::kMult: acc = a * b; break;
      }
      if (std::isnan(acc)) acc = BitsToFloat(0x7FC00000u);
      StoreFloat(op.out_dtype, out.bytes.data(), i, PpeFloat(acc, r.scale, r.fbias, ppe));
    }
  }
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
