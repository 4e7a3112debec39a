// Fast depthwise convolution (NCEDepthConvolution), bit-identical to RefDwConv
// (kernels/ref/dwconv_ref.cc). Highway, dynamic dispatch.
//
// Vectorised over channels (a vector of up to 16 fp32 lanes = 16 channels; C is a multiple of
// 16), 8 output pixels at a time so each weight vector is loaded once per 8 FMAs. The input rows
// a band of output rows reads are converted once into a ring of KY fp32 rows (x - x_zp for
// integers, the value for floats; padding columns 0), so each tap is one load and one FMA.
// Exactness:
//  - integer: every product (x - x_zp) * (w - w_zp) is an integer of magnitude <= 255 * 255, and
//    KY * KX <= 121 of them sum to < 2^23, so the fp32 sum is the exact int32 accumulator;
//  - float: fp32 FMA per tap in (ky, kx) order, the reference's order. On targets without FMA
//    (SSSE3, SSE4, EMU128, scalar) mul + add equals the fused result when the product is exact:
//    fp16 x fp16 and fp16 or bf16 x an integer weight always are; bf16 x bf16 can leave the fp32
//    range (or underflow), so bf16-weight layers run the reference there (report.reason says so).
// Then the PPE of kernels/ppe.h on vectors: the integer path in double (exact: (acc + bias) *
// mult * 2^-shift, rounded half to even), the float path in fp32 in PpeFloat's order.

#ifndef DPUEMU_KERNELS_DWCONV_PLAN_
#define DPUEMU_KERNELS_DWCONV_PLAN_
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "kernels/ppe.h"

namespace dpuemu {
namespace dwconv_internal {

struct DwPlan {
  int64_t h, w, c, ky, kx, sy, sx, pt, pl, oh, ow, wp;
  bool integer;
  DType in;
  int32_t in_zp;
  PpeParams ppe;
  const uint8_t* x;  // the gathered input [h][w][c], in_dtype
  const float* wt;   // [ky * kx][c]: w - w_zp (integer weights) or the value
  const float* scale;
  const float* fbias;
  const int32_t* bias;
  const int32_t* mult;
  const int32_t* shift;
  const double* bias_d;
  const double* scale_d;        // mult * 2^-shift
  const double* scale_leaky_d;  // mult * lrelu_mult * 2^-(shift + lrelu_shift)
  // The fp32 integer PPE (PpeIntVecF), when exact for this task: bias and mult * 2^-shift.
  bool int_fp32_ppe;
  const float* bias_f;
  const float* scale_f;
  float* ring;                  // ky rows of [wp][c]
  uint8_t* out;                 // [oh][ow][c], out dtype
};

#define DPUEMU_DW_UNROLL _Pragma("GCC unroll 16")

}  // namespace dwconv_internal
}  // namespace dpuemu
#endif  // DPUEMU_KERNELS_DWCONV_PLAN_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dwconv.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/float_store-inl.h"  // StoreFloatAs

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using dwconv_internal::DwPlan;

using DF = hn::CappedTag<float, 16>;
using VF = hn::Vec<DF>;

#if HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR
constexpr bool kDwFma = false;
#else
constexpr bool kDwFma = true;
#endif
bool DwHasFma() { return kDwFma; }
const char* DwIsaName() { return hwy::TargetName(HWY_TARGET); }

// n input elements (a multiple of the lane count) at `src` to fp32 at `dst`, as the reference
// reads them: integers as x - x_zp, fp16/bf16 exactly (inf and NaN bit patterns kept).
void ConvertRun(const DwPlan& p, const uint8_t* src, int64_t n, float* dst) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const hn::RebindToSigned<DF> di;
  const hn::RebindToUnsigned<DF> du;
  switch (p.in) {
    case DType::kU8: {
      const hn::Rebind<uint8_t, DF> d8;
      const VF zp = hn::Set(df, static_cast<float>(p.in_zp));
      for (int64_t i = 0; i < n; i += N) {
        const auto v = hn::ConvertTo(df, hn::BitCast(di, hn::PromoteTo(du, hn::LoadU(d8, src + i))));
        hn::StoreU(hn::Sub(v, zp), df, dst + i);
      }
      return;
    }
    case DType::kI8: {
      const hn::Rebind<int8_t, DF> d8;
      const VF zp = hn::Set(df, static_cast<float>(p.in_zp));
      const int8_t* s = reinterpret_cast<const int8_t*>(src);
      for (int64_t i = 0; i < n; i += N) {
        hn::StoreU(hn::Sub(hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d8, s + i))), zp), df, dst + i);
      }
      return;
    }
    case DType::kBF16: {
      const hn::Rebind<uint16_t, DF> d16;
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; i += N) {
        const auto bits = hn::ShiftLeft<16>(hn::PromoteTo(du, hn::LoadU(d16, s + i)));
        hn::StoreU(hn::BitCast(df, bits), df, dst + i);
      }
      return;
    }
    default: {  // fp16, exact for every pattern, NaN payloads included
      const hn::Rebind<uint16_t, DF> d16;
      const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
      const auto exp_mask = hn::Set(du, 0x7C00u), man_mask = hn::Set(du, 0x3FFu);
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
      // F16C converts every finite value exactly; inf / NaN lanes (quieted by vcvtph2ps) are
      // rebuilt from their fields, when a vector has any.
      const hn::Rebind<hwy::float16_t, DF> dh;
      for (int64_t i = 0; i < n; i += N) {
        const auto raw = hn::LoadU(d16, s + i);
        auto bits = hn::BitCast(du, hn::PromoteTo(df, hn::BitCast(dh, raw)));
        const auto h = hn::PromoteTo(du, raw);
        const auto special = hn::Eq(hn::And(h, exp_mask), exp_mask);
        if (!hn::AllFalse(du, special)) {
          const auto rebuilt = hn::Or(hn::Or(hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000u))),
                                             hn::Set(du, 0x7F800000u)),
                                      hn::ShiftLeft<13>(hn::And(h, man_mask)));
          bits = hn::IfThenElse(special, rebuilt, bits);
        }
        hn::StoreU(hn::BitCast(df, bits), df, dst + i);
      }
      return;
#endif
      for (int64_t i = 0; i < n; i += N) {
        const auto h = hn::PromoteTo(du, hn::LoadU(d16, s + i));
        const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000u)));
        const auto e = hn::And(h, exp_mask), m = hn::And(h, man_mask);
        // Normal: rebias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits).
        const auto normal = hn::Add(hn::ShiftLeft<13>(hn::Or(e, m)), hn::Set(du, 112u << 23));
        // Inf / NaN: all-ones exponent, mantissa widened.
        const auto special = hn::Or(hn::Set(du, 0x7F800000u), hn::ShiftLeft<13>(m));
        // Zero / subnormal: m * 2^-24, exact in fp32.
        const auto sub = hn::BitCast(du, hn::Mul(hn::ConvertTo(df, hn::BitCast(di, m)),
                                                 hn::Set(df, 5.9604644775390625e-8f)));
        auto bits = hn::IfThenElse(hn::Eq(e, exp_mask), special, normal);
        bits = hn::IfThenElse(hn::Eq(e, hn::Zero(du)), sub, bits);
        hn::StoreU(hn::BitCast(df, hn::Or(bits, sign)), df, dst + i);
      }
      return;
    }
  }
}

// Padded input row py (0 .. h + pad_top + pad_bottom - 1) into `row` [wp][c].
void ConvertRow(const DwPlan& p, int64_t py, float* row) {
  const int64_t iy = py - p.pt;
  if (iy < 0 || iy >= p.h) {
    std::memset(row, 0, static_cast<size_t>(p.wp * p.c) * sizeof(float));
    return;
  }
  const int64_t left = p.pl * p.c, inner = p.w * p.c;
  std::memset(row, 0, static_cast<size_t>(left) * sizeof(float));
  std::memset(row + left + inner, 0, static_cast<size_t>(p.wp * p.c - left - inner) * sizeof(float));
  ConvertRun(p, p.x + iy * inner * DTypeBytes(p.in), inner, row + left);
}

// The float PPE of channels c0.. of one pixel (PpeFloat's order), stored to the output type.
HWY_INLINE void PpeFloatStore(const DwPlan& p, VF acc, int64_t c0, uint8_t* dst) {
  const DF d;
  VF v = hn::Mul(hn::Add(acc, hn::LoadU(d, p.fbias + c0)), hn::LoadU(d, p.scale + c0));
  if (p.ppe.leaky) v = hn::IfThenElse(hn::Lt(v, hn::Zero(d)), hn::Mul(v, hn::Set(d, p.ppe.alpha)), v);
  v = hn::IfThenElse(hn::Lt(v, hn::Set(d, p.ppe.flo)), hn::Set(d, p.ppe.flo), v);  // NaN stays
  v = hn::IfThenElse(hn::Gt(v, hn::Set(d, p.ppe.fhi)), hn::Set(d, p.ppe.fhi), v);
  StoreFloatAs(d, p.ppe.out, v, dst);
}

// The integer PPE of n channels c0.. of one pixel (accumulators `a`), stored to the output type.
HWY_INLINE void PpeIntStore(const DwPlan& p, const int32_t* a, int64_t c0, size_t n, uint8_t* dst) {
  const PpeParams& q = p.ppe;
  if (q.out == DType::kI32) {  // acc + bias, wrapping
    const hn::CappedTag<int32_t, 16> d32;
    for (size_t i = 0; i < n; i += hn::Lanes(d32)) {
      hn::StoreU(hn::Add(hn::LoadU(d32, a + i), hn::LoadU(d32, p.bias + c0 + i)), d32,
                 reinterpret_cast<int32_t*>(dst) + i);
    }
    return;
  }
  const hn::CappedTag<double, 8> dd;
  const hn::Rebind<int32_t, decltype(dd)> di;
  const size_t nd = hn::Lanes(dd);
  const auto zp = hn::Set(dd, q.out_zp), lo = hn::Set(dd, q.lo), hi = hn::Set(dd, q.hi);
  // |acc + bias| < 2^32 and mult < 2^16: the product is exact in double. With leaky ReLU the
  // product grows by lrelu_mult < 2^11: exact while |acc + bias| < 2^26, else the scalar PPE.
  const auto leaky_exact = hn::Set(dd, 67108864.0);
  for (size_t i = 0; i < n; i += nd) {
    const int64_t c = c0 + static_cast<int64_t>(i);
    const auto v = hn::Add(hn::PromoteTo(dd, hn::LoadU(di, a + i)), hn::LoadU(dd, p.bias_d + c));
    auto scale = hn::LoadU(dd, p.scale_d + c);
    if (q.leaky) {
      if (!hn::AllTrue(dd, hn::Lt(hn::Abs(v), leaky_exact))) {
        for (size_t j = 0; j < nd; ++j) {
          const int64_t cj = c + static_cast<int64_t>(j);
          StoreInt(q.out, dst, static_cast<int64_t>(i + j),
                   PpeInt(a[i + j], p.bias[cj], p.mult[cj], p.shift[cj], q));
        }
        continue;
      }
      scale = hn::IfThenElse(hn::Lt(v, hn::Zero(dd)), hn::LoadU(dd, p.scale_leaky_d + c), scale);
    }
    // Round is half to even; the clamp bounds are integers, so clamping after it is the same.
    const auto r = hn::DemoteTo(di, hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(v, scale)), zp), lo), hi));
    if (q.out == DType::kU8) {
      const hn::Rebind<uint8_t, decltype(dd)> d8;
      hn::StoreU(hn::DemoteTo(d8, r), d8, dst + i);
    } else {
      const hn::Rebind<int8_t, decltype(dd)> d8;
      hn::StoreU(hn::DemoteTo(d8, r), d8, reinterpret_cast<int8_t*>(dst + i));
    }
  }
}

// The integer PPE of one vector of channels in fp32, exactly (used when RunDwConvSimd found the
// task's bounds hold, with FMA, no leaky ReLU, u8/i8 output): v = acc + bias is an integer below
// 2^24 (exact), S = mult * 2^-shift is exact, and the product y = v * S is split exactly into
// hi + lo by FMA. r = round-half-even(hi) is RNE(y) unless hi is a half-integer and lo != 0, which
// moves y off the tie (corrected below); hi cannot be a half-integer without y being within lo of
// one (|lo| <= ulp(hi) / 2). From 2^23 on, where fp32 holds only integers, r may differ from
// RNE(y), but both lie beyond the u8/i8 clamp range and clamp alike.
HWY_INLINE void PpeIntVecF(const DwPlan& p, VF acc, int64_t c0, bool u8, uint8_t* dst) {
  const DF d;
  const VF v = hn::Add(acc, hn::LoadU(d, p.bias_f + c0));
  const VF sc = hn::LoadU(d, p.scale_f + c0);
  const VF hi = hn::Mul(v, sc);
  const VF lo = hn::MulSub(v, sc, hi);  // v * S - hi, exact
  VF r = hn::Round(hi);
  const VF t = hn::Sub(hi, r), half = hn::Set(d, 0.5f), zero = hn::Zero(d), one = hn::Set(d, 1.0f);
  r = hn::IfThenElse(hn::And(hn::Eq(t, half), hn::Gt(lo, zero)), hn::Add(r, one), r);
  r = hn::IfThenElse(hn::And(hn::Eq(t, hn::Neg(half)), hn::Lt(lo, zero)), hn::Sub(r, one), r);
  r = hn::Add(r, hn::Set(d, static_cast<float>(p.ppe.out_zp)));
  r = hn::Min(hn::Max(r, hn::Set(d, static_cast<float>(p.ppe.lo))), hn::Set(d, static_cast<float>(p.ppe.hi)));
  const hn::RebindToSigned<DF> di;
  const auto ri = hn::ConvertTo(di, r);
  if (u8) {
    const hn::Rebind<uint8_t, DF> d8;
    hn::StoreU(hn::DemoteTo(d8, ri), d8, dst);
  } else {
    const hn::Rebind<int8_t, DF> d8;
    hn::StoreU(hn::DemoteTo(d8, ri), d8, reinterpret_cast<int8_t*>(dst));
  }
}

#if HWY_TARGET != HWY_SCALAR
// The integer PPE of one vector of channels c0.. to u8/i8 in registers: the two halves in
// double, as PpeIntStore. Returns false (nothing stored) when a leaky product could be inexact.
HWY_INLINE bool PpeIntVec(const DwPlan& p, hn::Vec<hn::RebindToSigned<DF>> acc, int64_t c0,
                          bool leaky, bool u8, uint8_t* dst) {
  using DI = hn::RebindToSigned<DF>;
  using DH = hn::Half<DI>;
  using DD = hn::Rebind<double, DH>;
  const DI di;
  const DH dh;
  const DD dd;
  const size_t nh = hn::Lanes(dh);
  const auto zp = hn::Set(dd, p.ppe.out_zp), lo = hn::Set(dd, p.ppe.lo), hi = hn::Set(dd, p.ppe.hi);
  hn::Vec<DH> r[2];
  const hn::Vec<DH> half[2] = {hn::LowerHalf(dh, acc), hn::UpperHalf(dh, acc)};
  for (int j = 0; j < 2; ++j) {
    const int64_t c = c0 + static_cast<int64_t>(j * nh);
    const auto v = hn::Add(hn::PromoteTo(dd, half[j]), hn::LoadU(dd, p.bias_d + c));
    auto scale = hn::LoadU(dd, p.scale_d + c);
    if (leaky) {
      if (!hn::AllTrue(dd, hn::Lt(hn::Abs(v), hn::Set(dd, 67108864.0)))) return false;
      scale = hn::IfThenElse(hn::Lt(v, hn::Zero(dd)), hn::LoadU(dd, p.scale_leaky_d + c), scale);
    }
    r[j] = hn::DemoteTo(dh, hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(v, scale)), zp), lo), hi));
  }
  const auto all = hn::Combine(di, r[1], r[0]);
  if (u8) {
    const hn::Rebind<uint8_t, DI> d8;
    hn::StoreU(hn::DemoteTo(d8, all), d8, dst);
  } else {
    const hn::Rebind<int8_t, DI> d8;
    hn::StoreU(hn::DemoteTo(d8, all), d8, reinterpret_cast<int8_t*>(dst));
  }
  return true;
}
#endif

// The taps of MR output pixels for one vector of channels; the sums go to `sums` [MR][lanes].
// Kept apart from the PPE so the accumulators stay in registers through the tap loop.
template <size_t MR>
HWY_NOINLINE void AccumulateTile(const float* const* rows, const float* w, int64_t c, int64_t kyn,
                                 int64_t kxn, int64_t sx, float* sums) {
  const DF d;
  VF acc[MR];
  DPUEMU_DW_UNROLL for (size_t m = 0; m < MR; ++m) acc[m] = hn::Zero(d);
  const int64_t step = sx * c;
  for (int64_t ky = 0; ky < kyn; ++ky) {
    const float* x = rows[ky];
    for (int64_t kx = 0; kx < kxn; ++kx, w += c, x += c) {
      const VF wv = hn::LoadU(d, w);
      DPUEMU_DW_UNROLL for (size_t m = 0; m < MR; ++m) {
        acc[m] = hn::MulAdd(hn::LoadU(d, x + static_cast<int64_t>(m) * step), wv, acc[m]);
      }
    }
  }
  DPUEMU_DW_UNROLL for (size_t m = 0; m < MR; ++m) hn::Store(acc[m], d, sums + m * hn::Lanes(d));
}

// MR output pixels (ox0 .. ox0 + MR - 1 of row oy) x all channels.
template <size_t MR>
HWY_INLINE void DwTile(const DwPlan& p, const float* const* rows, int64_t oy, int64_t ox0) {
  const DF d;
  const size_t N = hn::Lanes(d);
  const int64_t eb = DTypeBytes(p.ppe.out);
  // Locals: the output stores may alias the plan, which would reload these after each store.
  const bool integer = p.integer, leaky = p.ppe.leaky, u8 = p.ppe.out == DType::kU8;
  const bool int8_out = u8 || p.ppe.out == DType::kI8;
  const bool fp32_ppe = p.int_fp32_ppe;
  (void)leaky;  // used by PpeIntVec, which the scalar target lacks
  (void)int8_out;
  const int64_t c = p.c, kyn = p.ky, kxn = p.kx, sx = p.sx, ow = p.ow;
  uint8_t* const out = p.out;
  for (int64_t c0 = 0; c0 < c; c0 += static_cast<int64_t>(N)) {
    const float* tap_rows[16];
    for (int64_t ky = 0; ky < kyn; ++ky) tap_rows[ky] = rows[ky] + (ox0 * sx) * c + c0;
    alignas(64) float sums[MR * 16];
    AccumulateTile<MR>(tap_rows, p.wt + c0, c, kyn, kxn, sx, sums);
    // Unrolled so the accumulators stay in registers (a variable index would put them in memory).
    DPUEMU_DW_UNROLL for (size_t m = 0; m < MR; ++m) {
      uint8_t* dst = out + ((oy * ow + ox0 + static_cast<int64_t>(m)) * c + c0) * eb;
      if (integer && kDwFma && fp32_ppe) {
        PpeIntVecF(p, hn::Load(d, sums + m * N), c0, u8, dst);
      } else if (integer) {
        const hn::RebindToSigned<DF> di;
        const auto iacc = hn::ConvertTo(di, hn::Load(d, sums + m * N));  // exact: an integer below 2^23
#if HWY_TARGET != HWY_SCALAR
        if (int8_out && PpeIntVec(p, iacc, c0, leaky, u8, dst)) continue;
#endif
        alignas(64) int32_t a[16];
        hn::StoreU(iacc, di, a);
        PpeIntStore(p, a, c0, N, dst);
      } else {
        PpeFloatStore(p, hn::Load(d, sums + m * N), c0, dst);
      }
    }
  }
}

void RunDw(const DwPlan& p) {
  constexpr size_t kMR = 8;
  const int64_t row_floats = p.wp * p.c;
  std::vector<int64_t> slot_row(static_cast<size_t>(p.ky), -1);
  std::vector<const float*> rows(static_cast<size_t>(p.ky));
  for (int64_t oy = 0; oy < p.oh; ++oy) {
    // The KY padded rows oy * sy .. oy * sy + KY - 1 are consecutive: distinct slots mod KY.
    for (int64_t ky = 0; ky < p.ky; ++ky) {
      const int64_t py = oy * p.sy + ky, slot = py % p.ky;
      float* r = p.ring + slot * row_floats;
      if (slot_row[static_cast<size_t>(slot)] != py) {
        ConvertRow(p, py, r);
        slot_row[static_cast<size_t>(slot)] = py;
      }
      rows[static_cast<size_t>(ky)] = r;
    }
    int64_t ox = 0;
    for (; ox + static_cast<int64_t>(kMR) <= p.ow; ox += kMR) DwTile<kMR>(p, rows.data(), oy, ox);
    for (; ox < p.ow; ++ox) DwTile<1>(p, rows.data(), oy, ox);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cmath>
#include <vector>

#include "hw/formats.h"
#include "hwy/aligned_allocator.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {

HWY_EXPORT(DwHasFma);
HWY_EXPORT(DwIsaName);
HWY_EXPORT(RunDw);

// The ring of KY converted rows is bounded; larger rows (W * C beyond 2^24 floats) run the
// reference rather than allocate gigabytes.
constexpr int64_t kMaxRingFloats = int64_t{1} << 26;

StatusOr<DpuOutput> RunDwConvSimd(const DpuTask& task, KernelReport& report) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  const int64_t wp = g.w + g.pad_left + g.pad_right;
  const std::string isa = HWY_DYNAMIC_DISPATCH(DwIsaName)();
  if (op.w_dtype == DType::kBF16 && !HWY_DYNAMIC_DISPATCH(DwHasFma)()) {
    report.isa = "reference";
    report.reason = "bf16 x bf16 products need a fused multiply-add, which " + isa +
                    " lacks: ran the reference";
    return RefDwConv(task);
  }
  if (g.ky * wp * g.c > kMaxRingFloats) {
    report.isa = "reference";
    report.reason = "KY * padded W * C = " + std::to_string(g.ky * wp * g.c) +
                    " floats exceeds the kernel's row ring (2^26): ran the reference";
    return RefDwConv(task);
  }

  // Dense input in one tile is read in place; otherwise gathered as the reference reads it.
  Tensor x;
  const uint8_t* xdata = nullptr;
  if (task.input_map.empty() && task.se_table.empty() && task.input_tiles.size() == 1 &&
      static_cast<int64_t>(task.input_tiles[0].size()) == g.h * g.w * g.c * DTypeBytes(op.in_dtype)) {
    xdata = task.input_tiles[0].data();
  } else {
    DPUEMU_ASSIGN_OR_RETURN(x, GatherActivations(task.input_view(), op.in_dtype, {g.h, g.w, g.c}, op.in_zp));
    xdata = x.bytes.data();
  }
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, DecodeWeightTable(task.weight_table, g.k));
  Tensor w;
  DPUEMU_ASSIGN_OR_RETURN(w, UnpackDwWeights(task.weights, table, g, op.w_dtype));
  ChannelQuant quant;
  DPUEMU_ASSIGN_OR_RETURN(quant, WeightTableQuant(op, table));

  const int64_t taps = g.ky * g.kx;
  // Weights transposed to [tap][c], as fp32 (w - w_zp for integer weights: exact).
  auto wt = hwy::AllocateAligned<float>(static_cast<size_t>(taps * g.c));
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t i = c * taps + t;
      wt[static_cast<size_t>(t * g.c + c)] =
          IsFloat(op.w_dtype) ? LoadFloat(op.w_dtype, w.bytes.data(), i)
                              : static_cast<float>(LoadInt(op.w_dtype, w.bytes.data(), i) - op.w_zp);
    }
  }
  std::vector<double> bias_d, scale_d, scale_leaky_d;
  const bool integer = IsIntegerPath(op);
  if (integer) {
    for (int64_t c = 0; c < g.c; ++c) {
      bias_d.push_back(quant.bias[c]);
      scale_d.push_back(std::ldexp(static_cast<double>(quant.mult[c]), -quant.shift[c]));
      scale_leaky_d.push_back(std::ldexp(static_cast<double>(quant.mult[c]) * op.ppe.lrelu_mult,
                                         -(quant.shift[c] + op.ppe.lrelu_shift)));
    }
  }
  // The fp32 integer PPE's bounds: |acc| <= KY*KX * 255 * 255 < 2^23, so |bias| < 2^23 keeps
  // acc + bias below 2^24; mult * 2^-shift is exact in fp32 (mult < 2^16, shift <= 63).
  std::vector<float> bias_f, scale_f;
  bool fp32_ppe = integer && !op.ppe.leaky_relu &&
                  (op.out_dtype == DType::kU8 || op.out_dtype == DType::kI8);
  for (int64_t c = 0; fp32_ppe && c < g.c; ++c) {
    fp32_ppe = std::abs(int64_t{quant.bias[c]}) < (int64_t{1} << 23);
    bias_f.push_back(static_cast<float>(quant.bias[c]));
    scale_f.push_back(std::ldexp(static_cast<float>(quant.mult[c]), -quant.shift[c]));
  }
  auto ring = hwy::AllocateAligned<float>(static_cast<size_t>(g.ky * wp * g.c));
  Tensor out(op.out_dtype, {g.out_h(), g.out_w(), g.c});

  dwconv_internal::DwPlan p;
  p.h = g.h; p.w = g.w; p.c = g.c; p.ky = g.ky; p.kx = g.kx;
  p.sy = g.stride_y; p.sx = g.stride_x; p.pt = g.pad_top; p.pl = g.pad_left;
  p.oh = g.out_h(); p.ow = g.out_w(); p.wp = wp;
  p.integer = integer;
  p.in = op.in_dtype;
  p.in_zp = op.in_zp;
  p.ppe = ResolvePpe(op);
  p.x = xdata;
  p.wt = wt.get();
  p.scale = quant.scale.data();
  p.fbias = quant.fbias.data();
  p.bias = quant.bias.data();
  p.mult = quant.mult.data();
  p.shift = quant.shift.data();
  p.bias_d = bias_d.data();
  p.scale_d = scale_d.data();
  p.scale_leaky_d = scale_leaky_d.data();
  p.int_fp32_ppe = fp32_ppe;
  p.bias_f = bias_f.data();
  p.scale_f = scale_f.data();
  p.ring = ring.get();
  p.out = out.bytes.data();
  HWY_DYNAMIC_DISPATCH(RunDw)(p);

  report.isa = isa;
  report.reason = std::string("dwconv: ") + (integer ? "exact integer" : "fp32") +
                  " MACs vectorised over channels, 8 output pixels per step";
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
#endif  // HWY_ONCE
