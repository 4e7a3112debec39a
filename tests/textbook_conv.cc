#include "tests/textbook_conv.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "hw/dtype.h"

namespace dpuemu {
namespace {

int32_t WrapToInt32(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

// Integer path: every product is formed (a weight equal to its zero point contributes 0), and
// padding reads as the input zero point, so padded taps contribute nothing and are left out.
void ConvInteger(const NceLayer& layer, Tensor& out) {
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  std::vector<int32_t> x(static_cast<size_t>(layer.input.numel()));
  std::vector<int32_t> w(static_cast<size_t>(layer.weights.numel()));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = LoadInt(op.in_dtype, layer.input.bytes.data(), i) - op.in_zp;
  for (size_t i = 0; i < w.size(); ++i)
    w[i] = LoadInt(op.w_dtype, layer.weights.bytes.data(), i) - op.w_zp;

  std::vector<int64_t> acc(static_cast<size_t>(g.k));
  for (int64_t oy = 0; oy < g.out_h(); ++oy) {
    for (int64_t ox = 0; ox < g.out_w(); ++ox) {
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t ky = 0; ky < g.ky; ++ky) {
        const int64_t iy = oy * g.stride_y + ky - g.pad_top;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t kx = 0; kx < g.kx; ++kx) {
          const int64_t ix = ox * g.stride_x + kx - g.pad_left;
          if (ix < 0 || ix >= g.w) continue;
          const int32_t* xp = &x[static_cast<size_t>((iy * g.w + ix) * g.c)];
          for (int64_t k = 0; k < g.k; ++k) {
            const int32_t* wp = &w[static_cast<size_t>(((k * g.ky + ky) * g.kx + kx) * g.c)];
            for (int64_t c = 0; c < g.c; ++c) acc[k] += int64_t{xp[c]} * wp[c];
          }
        }
      }
      for (int64_t k = 0; k < g.k; ++k) {
        const int32_t v = TextbookPpeInt(WrapToInt32(acc[k]), layer.quant.bias[k],
                                         layer.quant.mult[k], layer.quant.shift[k], op);
        StoreInt(op.out_dtype, out.bytes.data(), (oy * g.out_w() + ox) * g.k + k, v);
      }
    }
  }
}

// Float path: fp32 fused multiply-adds in (ky, kx, c) order per output, starting from +0.0.
// Padding reads as +0.0 and is multiplied like any input (0 * inf is NaN).
void ConvFloat(const NceLayer& layer, bool skip_zero_weights, Tensor& out) {
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  std::vector<float> x(static_cast<size_t>(layer.input.numel()));
  std::vector<float> w(static_cast<size_t>(layer.weights.numel()));
  std::vector<bool> skip(w.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = LoadFloat(op.in_dtype, layer.input.bytes.data(), i);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = IsFloat(op.w_dtype)
               ? LoadFloat(op.w_dtype, layer.weights.bytes.data(), i)
               : static_cast<float>(LoadInt(op.w_dtype, layer.weights.bytes.data(), i) - op.w_zp);
    // Absent from the map: zero by value, +0.0 and -0.0 (the compiler's sparsify.cpp), or the zero
    // point of integer weights.
    skip[i] = skip_zero_weights && w[i] == 0.0f;
  }

  std::vector<float> acc(static_cast<size_t>(g.k));
  for (int64_t oy = 0; oy < g.out_h(); ++oy) {
    for (int64_t ox = 0; ox < g.out_w(); ++ox) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t ky = 0; ky < g.ky; ++ky) {
        const int64_t iy = oy * g.stride_y + ky - g.pad_top;
        for (int64_t kx = 0; kx < g.kx; ++kx) {
          const int64_t ix = ox * g.stride_x + kx - g.pad_left;
          const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
          for (int64_t k = 0; k < g.k; ++k) {
            const size_t wbase = static_cast<size_t>(((k * g.ky + ky) * g.kx + kx) * g.c);
            for (int64_t c = 0; c < g.c; ++c) {
              if (skip[wbase + c]) continue;
              const float xv = inside ? x[static_cast<size_t>((iy * g.w + ix) * g.c + c)] : 0.0f;
              acc[k] = std::fmaf(xv, w[wbase + c], acc[k]);
            }
          }
        }
      }
      for (int64_t k = 0; k < g.k; ++k) {
        const float v = TextbookPpeFloat(acc[k], layer.quant.scale[k], layer.quant.fbias[k], op);
        StoreFloat(op.out_dtype, out.bytes.data(), (oy * g.out_w() + ox) * g.k + k, v);
      }
    }
  }
}

}  // namespace

int64_t TextbookRoundHalfEven(int64_t v, int shift) {
  const __int128 d = static_cast<__int128>(1) << shift;
  // Floor division with a non-negative remainder, then compare twice the remainder with d.
  __int128 q = v / d;
  __int128 r = v % d;
  if (r < 0) {
    q -= 1;
    r += d;
  }
  if (2 * r > d || (2 * r == d && q % 2 != 0)) q += 1;
  return static_cast<int64_t>(q);
}

int32_t TextbookPpeInt(int32_t acc, int32_t bias, int32_t mult, int32_t shift, const NceOp& op) {
  if (op.out_dtype == DType::kI32) return WrapToInt32(int64_t{acc} + bias);
  __int128 v = (static_cast<__int128>(acc) + bias) * mult;  // acc + bias does not wrap
  int total_shift = shift;
  if (op.ppe.leaky_relu && v < 0) {
    v *= op.ppe.lrelu_mult;
    total_shift += op.ppe.lrelu_shift;
  }
  int64_t out = TextbookRoundHalfEven(static_cast<int64_t>(v), total_shift) + op.ppe.out_zp;
  // The type's range first (exact), then the user's bounds on the now small value.
  out = std::max(DTypeMin(op.out_dtype), std::min(DTypeMax(op.out_dtype), out));
  double clamped = static_cast<double>(out);
  if (clamped < op.ppe.clamp_lo) clamped = op.ppe.clamp_lo;
  if (clamped > op.ppe.clamp_hi) clamped = op.ppe.clamp_hi;
  return static_cast<int32_t>(clamped);
}

float TextbookPpeFloat(float acc, float scale, float bias, const NceOp& op) {
  // fp64 holds an fp32 sum or product exactly, and rounding it to fp32 equals the fp32
  // operation: each step below is one correctly rounded fp32 operation.
  double v = static_cast<float>(static_cast<double>(acc) + static_cast<double>(bias));
  v = static_cast<float>(v * static_cast<double>(scale));
  if (op.ppe.leaky_relu && v < 0) v = static_cast<float>(v * static_cast<double>(op.ppe.lrelu_alpha));
  // Clamping in fp64 to the exact bounds, then rounding, equals clamping to the bounds rounded to
  // fp32. NaN fails every comparison and passes through. fp16 outputs saturate at +-65504.
  if (v < op.ppe.clamp_lo) v = op.ppe.clamp_lo;
  if (v > op.ppe.clamp_hi) v = op.ppe.clamp_hi;
  if (op.out_dtype == DType::kFP16) {
    if (v < -65504.0) v = -65504.0;
    if (v > 65504.0) v = 65504.0;
  }
  return static_cast<float>(v);
}

StatusOr<Tensor> TextbookConv(const NceLayer& layer, bool skip_zero_weights) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  const NceGeometry& g = layer.op.g;
  Tensor out(layer.op.out_dtype, {g.out_h(), g.out_w(), g.k});
  if (IsIntegerPath(layer.op)) {
    ConvInteger(layer, out);
  } else {
    ConvFloat(layer, skip_zero_weights, out);
  }
  return out;
}

}  // namespace dpuemu
