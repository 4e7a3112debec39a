#include "kernels/ref/nce_ref.h"

#include <cmath>
#include <vector>

#include "hw/formats.h"
#include "hw/fp_env.h"
#include "kernels/ppe.h"

namespace dpuemu {

StatusOr<DpuOutput> RefZMConv(const DpuTask& task) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  const bool integer = IsIntegerPath(op);

  // The input as the DPU reads it: through SE pointers (or in place), map-0 elements = zero point.
  Tensor x_t;
  DPUEMU_ASSIGN_OR_RETURN(x_t, GatherActivations(task.input_view(), op.in_dtype,
                                                 {g.h, g.w, g.c}, op.in_zp));
  // Weights through the weight table (dense channels in place, sparse ones expanded by the map),
  // and the per-channel requantisation it carries.
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, DecodeWeightTable(task.weight_table, g.k));
  Tensor w_t;
  DPUEMU_ASSIGN_OR_RETURN(w_t, DecompressWeights(task.weights, task.weight_map, task.weight_table,
                                                 g, op.w_dtype, op.w_zp));
  ChannelQuant quant;
  DPUEMU_ASSIGN_OR_RETURN(quant, WeightTableQuant(op, table));
  const PpeParams ppe = ResolvePpe(op);

  // A float-path weight: its value, or w - w_zp (exact in fp32) for integer weights.
  const auto wv_float = [&](int64_t i) {
    return IsFloat(op.w_dtype) ? LoadFloat(op.w_dtype, w_t.bytes.data(), i)
                               : static_cast<float>(LoadInt(op.w_dtype, w_t.bytes.data(), i) - op.w_zp);
  };
  const int64_t taps = g.taps();
  Tensor out(op.out_dtype, {g.out_h(), g.out_w(), g.k});
  std::vector<uint8_t> present(static_cast<size_t>(taps));
  for (int64_t k = 0; k < g.k; ++k) {
    const WeightTableEntry& e = table[static_cast<size_t>(k)];
    for (int64_t t = 0; t < taps; ++t) {
      present[t] = e.sparsity_ptr == kDenseSparsityPtr ||
                   MapBit(task.weight_map.data() + e.sparsity_ptr, t);
    }
    for (int64_t oy = 0; oy < g.out_h(); ++oy) {
      for (int64_t ox = 0; ox < g.out_w(); ++ox) {
        uint32_t iacc = 0;  // int32 accumulator; unsigned so wrap-around is defined
        float facc = 0.0f;
        int64_t t = 0;  // tap index (ky, kx, c) within the channel
        for (int64_t ky = 0; ky < g.ky; ++ky) {
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y - g.pad_top + ky;
            const int64_t ix = ox * g.stride_x - g.pad_left + kx;
            const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
            const int64_t xbase = (iy * g.w + ix) * g.c;
            for (int64_t c = 0; c < g.c; ++c, ++t) {
              const int64_t wi = k * taps + t;
              if (integer) {
                const int32_t xv = inside ? LoadInt(op.in_dtype, x_t.bytes.data(), xbase + c) : op.in_zp;
                const int32_t wv = LoadInt(op.w_dtype, w_t.bytes.data(), wi);
                iacc += static_cast<uint32_t>((xv - op.in_zp) * (wv - op.w_zp));
              } else if (present[t]) {
                const float xv = inside ? LoadFloat(op.in_dtype, x_t.bytes.data(), xbase + c) : 0.0f;
                facc = std::fma(xv, wv_float(wi), facc);
              }
            }
          }
        }
        const int64_t oi = (oy * g.out_w() + ox) * g.k + k;
        if (integer) {
          StoreInt(op.out_dtype, out.bytes.data(), oi,
                   PpeInt(static_cast<int32_t>(iacc), quant.bias[k], quant.mult[k], quant.shift[k], ppe));
        } else {
          StoreFloat(op.out_dtype, out.bytes.data(), oi, PpeFloat(facc, quant.scale[k], quant.fbias[k], ppe));
        }
      }
    }
  }
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
