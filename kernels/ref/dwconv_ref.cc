// The reference depthwise convolution (NCEDepthConvolution): output channel c reads input channel
// c only, through its own KY x KX filter.
//
//   integer: acc[c] = int32 (wrapping) sum over (ky, kx) of (x[c] - x_zp) * (w[c] - w_zp);
//            padding pixels read as x_zp.
//   float:   acc[c] = 0; for (ky, kx) in that order: acc = fmaf(x[c], w[c], acc) in fp32, padding
//            read as 0 (weights are dense: every tap is a product, as in a dense ZMConv).
// Then the channel's PPE (kernels/ppe.h) from its weight-table entry, exactly as RefZMConv.
// The weights are read where the weight table points, in the compiler's depthwise layout
// (UnpackDwWeights, hw/formats.h).
#include <cmath>
#include <vector>

#include "hw/formats.h"
#include "kernels/ppe.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefDwConv(const DpuTask& task) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  const bool integer = IsIntegerPath(op);

  Tensor x_t;
  DPUEMU_ASSIGN_OR_RETURN(x_t, GatherActivations(task.input_view(), op.in_dtype,
                                                 {g.h, g.w, g.c}, op.in_zp));
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, DecodeWeightTable(task.weight_table, g.k));
  Tensor w_t;  // [C, KY, KX, 1]
  DPUEMU_ASSIGN_OR_RETURN(w_t, UnpackDwWeights(task.weights, table, g, op.w_dtype));
  ChannelQuant quant;
  DPUEMU_ASSIGN_OR_RETURN(quant, WeightTableQuant(op, table));
  const PpeParams ppe = ResolvePpe(op);

  const int64_t taps = g.ky * g.kx;
  Tensor out(op.out_dtype, {g.out_h(), g.out_w(), g.c});
  for (int64_t oy = 0; oy < g.out_h(); ++oy) {
    for (int64_t ox = 0; ox < g.out_w(); ++ox) {
      for (int64_t c = 0; c < g.c; ++c) {
        uint32_t iacc = 0;  // int32 accumulator; unsigned so wrap-around is defined
        float facc = 0.0f;
        for (int64_t ky = 0; ky < g.ky; ++ky) {
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y - g.pad_top + ky;
            const int64_t ix = ox * g.stride_x - g.pad_left + kx;
            const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
            const int64_t xi = (iy * g.w + ix) * g.c + c;
            const int64_t wi = c * taps + ky * g.kx + kx;
            if (integer) {
              const int32_t xv = inside ? LoadInt(op.in_dtype, x_t.bytes.data(), xi) : op.in_zp;
              const int32_t wv = LoadInt(op.w_dtype, w_t.bytes.data(), wi);
              iacc += static_cast<uint32_t>((xv - op.in_zp) * (wv - op.w_zp));
            } else {
              const float xv = inside ? LoadFloat(op.in_dtype, x_t.bytes.data(), xi) : 0.0f;
              // Integer weights (weight-only quantisation) enter as w - w_zp, exact in fp32.
              const float wv = IsFloat(op.w_dtype)
                                   ? LoadFloat(op.w_dtype, w_t.bytes.data(), wi)
                                   : static_cast<float>(LoadInt(op.w_dtype, w_t.bytes.data(), wi) - op.w_zp);
              facc = std::fma(xv, wv, facc);
            }
          }
        }
        const int64_t oi = (oy * g.out_w() + ox) * g.c + c;
        if (integer) {
          StoreInt(op.out_dtype, out.bytes.data(), oi,
                   PpeInt(static_cast<int32_t>(iacc), quant.bias[c], quant.mult[c], quant.shift[c], ppe));
        } else {
          StoreFloat(op.out_dtype, out.bytes.data(), oi, PpeFloat(facc, quant.scale[c], quant.fbias[c], ppe));
        }
      }
    }
  }
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
