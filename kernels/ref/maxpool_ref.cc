// Max pooling (NCEMaxPool) as the DPU computes it; the rules and their compiler sources are in
// hw/pool.h and ValidatePoolOp (hw/layer.cc).
//   Each output channel c at (oy, ox) is the largest input value of channel c over the window's
//   taps inside the input; padding taps do not take part (the compiler does not say what the IDU
//   pads a max pool with; every window has an inside tap since pads <= kernel / 2).
//   Integer: the largest STORED value (no zero point subtracted, none added: the output has the
//   input's type and zero point), then the PPE's clamp (intClampLow/High) in the stored domain;
//   mult 1, shift 0, rounding NONE, so nothing else changes it.
//   Float (fp16/bf16): the largest value in the IEEE total order (FloatOrderKey16), written
//   bit for bit (the float PPE is bypassed, no conversion).
#include <algorithm>
#include <cstring>

#include "hw/formats.h"
#include "hw/pool.h"
#include "kernels/ppe.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefMaxPool(const DpuTask& task) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  Tensor x;
  DPUEMU_ASSIGN_OR_RETURN(x, GatherActivations(task.input_view(), op.in_dtype, {g.h, g.w, g.c},
                                               op.in_zp));
  const bool integer = IsIntegerPath(op);
  const PpeParams ppe = ResolvePpe(op);
  Tensor out(op.out_dtype, {g.out_h(), g.out_w(), g.k});
  const uint8_t* xb = x.bytes.data();
  for (int64_t oy = 0; oy < g.out_h(); ++oy) {
    for (int64_t ox = 0; ox < g.out_w(); ++ox) {
      for (int64_t c = 0; c < g.c; ++c) {
        bool first = true;
        int32_t best = 0;  // integer: the stored value; float: FloatOrderKey16 of the bits
        for (int64_t ky = 0; ky < g.ky; ++ky) {
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y - g.pad_top + ky;
            const int64_t ix = ox * g.stride_x - g.pad_left + kx;
            if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;  // padding: not a candidate
            const int64_t i = (iy * g.w + ix) * g.c + c;
            int32_t v;
            if (integer) {
              v = LoadInt(op.in_dtype, xb, i);
            } else {
              uint16_t bits;
              std::memcpy(&bits, xb + 2 * i, 2);
              v = FloatOrderKey16(bits);
            }
            if (first || v > best) best = v;
            first = false;
          }
        }
        const int64_t oi = (oy * g.out_w() + ox) * g.k + c;
        if (integer) {
          StoreInt(op.out_dtype, out.bytes.data(), oi, std::min(std::max(best, ppe.lo), ppe.hi));
        } else {
          const uint16_t bits = static_cast<uint16_t>(FloatOrderKey16(static_cast<uint16_t>(best)));
          std::memcpy(out.bytes.data() + 2 * oi, &bits, 2);
        }
      }
    }
  }
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
