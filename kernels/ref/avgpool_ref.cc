// Average pooling (NCEAveragePool) as the DPU computes it: a depthwise window sum with weights of
// 1 (pool_wt_data = 0x0101 / fp16 1.0 / bf16 1.0: configureWeights in expand_dpu_config_invariant_
// idu.cpp, the AVEPOOL case of runtime_dpu_parser_imports.cpp.inc), then the PPE with the pool's
// one register set (hw/pool.h; task.ppe_regs).
//   Integer: acc = int32 sum over all KY * KX taps of the STORED value (the IDU subtracts no zero
//            point for pools: the comment of FuseWithAveragePool, IE/interfaces/common_rewriters/
//            fuse_quantized_ops.cpp); padding taps read as the input zero point, as ZMConv's do.
//            Then PpeInt(acc, bias 0, mult, shift): round half to even, + out_zp, clamp.
//   Float:   acc = fp32 sum of the inside taps in (ky, kx) order from +0 (x * 1.0 exact; padding
//            adds 0), then PpeFloat(acc, scale, bias 0) and the rounding to the output type.
// The divisor is always KY * KX (in the scale): padding counts (include-pad).
#include "hw/formats.h"
#include "kernels/ppe.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefAvgPool(const DpuTask& task) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  Tensor x;
  DPUEMU_ASSIGN_OR_RETURN(x, GatherActivations(task.input_view(), op.in_dtype, {g.h, g.w, g.c},
                                               op.in_zp));
  const bool integer = IsIntegerPath(op);
  const PpeParams ppe = ResolvePpe(op);
  const DpuTask::PpeRegisters& r = task.ppe_regs;
  Tensor out(op.out_dtype, {g.out_h(), g.out_w(), g.k});
  const uint8_t* xb = x.bytes.data();
  for (int64_t oy = 0; oy < g.out_h(); ++oy) {
    for (int64_t ox = 0; ox < g.out_w(); ++ox) {
      for (int64_t c = 0; c < g.c; ++c) {
        int32_t iacc = 0;  // at most 121 * 255: no overflow
        float facc = 0.0f;
        for (int64_t ky = 0; ky < g.ky; ++ky) {
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y - g.pad_top + ky;
            const int64_t ix = ox * g.stride_x - g.pad_left + kx;
            const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
            const int64_t i = (iy * g.w + ix) * g.c + c;
            if (integer) {
              iacc += inside ? LoadInt(op.in_dtype, xb, i) : op.in_zp;
            } else if (inside) {
              facc += LoadFloat(op.in_dtype, xb, i);
            }
          }
        }
        const int64_t oi = (oy * g.out_w() + ox) * g.k + c;
        if (integer) {
          StoreInt(op.out_dtype, out.bytes.data(), oi, PpeInt(iacc, r.bias, r.mult, r.shift, ppe));
        } else {
          StoreFloat(op.out_dtype, out.bytes.data(), oi, PpeFloat(facc, r.scale, r.fbias, ppe));
        }
      }
    }
  }
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
