// Fast eltwise (nce.h): the arithmetic of kernels/ref/eltwise_ref.cc on Highway vectors, chosen
// at run time, bit-identical to the reference. The work is one pass over H * W * C elements
// (memory-bound), so each vector goes from the two inputs to the output in registers:
//   integer: int32 lanes for the elop (exact: |acc| < 2^25), then the PPE in double, where
//            (acc + bias) * mult * 2^-shift is exact (< 2^48 times a power of two) and Round is
//            half to even, as PpeInt; with leaky ReLU a lane whose |acc + bias| >= 2^26 (the
//            double product would no longer be exact) runs PpeInt itself.
//   float:   fp16 widened exactly, one fp32 operation, the NaN canonicalised, then PpeFloat's
//            order (bias, scale, slope, clamp) and the output rounding of the reference.

#ifndef DPUEMU_KERNELS_ELTWISE_PLAN_
#define DPUEMU_KERNELS_ELTWISE_PLAN_
#include <cstdint>
#include <cstring>

#include "hw/dtype.h"
#include "kernels/ppe.h"

namespace dpuemu {
namespace eltwise_internal {

struct EltwisePlan {
  const uint8_t* x1;
  const uint8_t* x2;
  uint8_t* out;
  int64_t n;  // elements, a multiple of 16
  DType in;
  EltwiseType type;
  int32_t zp1, zp2, in1_mult, in2_mult;
  int32_t mult, shift, bias;  // integer PPE registers
  double bias_d, scale_d, scale_leaky_d;  // the same in double: mult * 2^-shift (exact)
  float scale, fbias;                     // float PPE registers
  PpeParams ppe;
};

}  // namespace eltwise_internal
}  // namespace dpuemu
#endif  // DPUEMU_KERNELS_ELTWISE_PLAN_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/eltwise.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using eltwise_internal::EltwisePlan;

// At most 16 lanes, so a vector never passes the end of an [.., C] tensor (C % 16 == 0).
using DD = hn::CappedTag<double, 8>;
using DF = hn::CappedTag<float, 16>;

template <class D32>
HWY_INLINE hn::Vec<D32> LoadInt8(D32 d32, DType t, const uint8_t* p) {
  if (t == DType::kU8) return hn::PromoteTo(d32, hn::LoadU(hn::Rebind<uint8_t, D32>(), p));
  return hn::PromoteTo(d32, hn::LoadU(hn::Rebind<int8_t, D32>(), reinterpret_cast<const int8_t*>(p)));
}

void EltwiseInt(const EltwisePlan& p) {
  const DD dd;
  const hn::Rebind<int32_t, DD> di;
  const size_t n = hn::Lanes(dd);
  const PpeParams& q = p.ppe;
  const auto zp1 = hn::Set(di, p.zp1), zp2 = hn::Set(di, p.zp2);
  const auto m1 = hn::Set(di, p.in1_mult), m2 = hn::Set(di, p.in2_mult);
  const auto bias_i = hn::Set(di, p.bias);
  const auto bias = hn::Set(dd, p.bias_d), scale = hn::Set(dd, p.scale_d);
  const auto scale_leaky = hn::Set(dd, p.scale_leaky_d);
  const auto out_zp = hn::Set(dd, q.out_zp), lo = hn::Set(dd, q.lo), hi = hn::Set(dd, q.hi);
  const auto leaky_exact = hn::Set(dd, 67108864.0), zero = hn::Zero(dd);
  // Locals: the byte stores below may alias any plan field.
  const bool leaky = q.leaky;
  const DType in = p.in, out_t = q.out;
  const EltwiseType type = p.type;
  const uint8_t* x1 = p.x1;
  const uint8_t* x2 = p.x2;
  uint8_t* out = p.out;
  for (int64_t i = 0; i < p.n; i += static_cast<int64_t>(n)) {
    const auto a = hn::Sub(LoadInt8(di, in, x1 + i), zp1);
    const auto b = hn::Sub(LoadInt8(di, in, x2 + i), zp2);
    hn::Vec<decltype(di)> acc;
    switch (type) {
      case EltwiseType::kAdd: acc = hn::Add(hn::Mul(a, m1), hn::Mul(b, m2)); break;
      case EltwiseType::kSub: acc = hn::Sub(hn::Mul(a, m1), hn::Mul(b, m2)); break;
      default: acc = hn::Mul(a, b); break;
    }
    if (out_t == DType::kI32) {  // acc + bias, wrapping (PpeInt's debug output)
      hn::StoreU(hn::Add(acc, bias_i), di, reinterpret_cast<int32_t*>(out) + i);
      continue;
    }
    const auto v = hn::Add(hn::PromoteTo(dd, acc), bias);
    auto s = scale;
    if (leaky) {
      if (!hn::AllTrue(dd, hn::Lt(hn::Abs(v), leaky_exact))) {
        alignas(64) int32_t lanes[8];
        hn::Store(acc, di, lanes);
        for (size_t j = 0; j < n; ++j) {
          const int32_t r = PpeInt(lanes[j], p.bias, p.mult, p.shift, q);
          StoreInt(out_t, out, i + static_cast<int64_t>(j), r);
        }
        continue;
      }
      s = hn::IfThenElse(hn::Lt(v, zero), scale_leaky, s);
    }
    const auto r = hn::DemoteTo(di, hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(v, s)), out_zp), lo), hi));
    if (out_t == DType::kU8) {
      const hn::Rebind<uint8_t, DD> du8;
      hn::StoreU(hn::DemoteTo(du8, r), du8, out + i);
    } else {
      const hn::Rebind<int8_t, DD> di8;
      hn::StoreU(hn::DemoteTo(di8, r), di8, reinterpret_cast<int8_t*>(out) + i);
    }
  }
}

// fp16 bits to fp32, exact for every pattern (infinities and NaN payloads too, like HalfToFloat).
HWY_INLINE hn::Vec<DF> LoadHalf(const uint8_t* p) {
  const DF df;
  const hn::Rebind<uint32_t, DF> du;
  const hn::Rebind<uint16_t, DF> d16;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const auto h = hn::LoadU(d16, reinterpret_cast<const uint16_t*>(p));
  const auto h32 = hn::PromoteTo(du, h);
  const auto bits = hn::BitCast(du, hn::PromoteTo(df, hn::BitCast(dh, h)));
  const auto special = hn::Eq(hn::And(h32, hn::Set(du, 0x7C00u)), hn::Set(du, 0x7C00u));
  const auto rebuilt = hn::Or(hn::Or(hn::ShiftLeft<16>(hn::And(h32, hn::Set(du, 0x8000u))),
                                     hn::Set(du, 0x7F800000u)),
                              hn::ShiftLeft<13>(hn::And(h32, hn::Set(du, 0x3FFu))));
  return hn::BitCast(df, hn::IfThenElse(special, rebuilt, bits));
}

// fp32 to the output type as StoreFloat rounds (nearest even; NaN stays NaN, quieted).
HWY_INLINE void StoreOut(DType t, hn::Vec<DF> v, uint8_t* dst) {
  const DF d;
  if (t == DType::kFP32) {
    hn::StoreU(v, d, reinterpret_cast<float*>(dst));
  } else if (t == DType::kBF16) {
    const hn::RebindToUnsigned<DF> du;
    const auto bits = hn::BitCast(du, v);
    const auto rounded = hn::ShiftRight<16>(
        hn::Add(bits, hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u)))));
    const auto nan = hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40u));
    // IsNaN, not Ne(v, v): Highway 1.0.3's AVX3 Ne is an ordered compare (false for NaN).
    const auto r = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), nan, rounded);
    const hn::Rebind<uint16_t, DF> d16;
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(hn::RebindToSigned<DF>(), r)), d16,
               reinterpret_cast<uint16_t*>(dst));
  } else {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
    // F16C: round to nearest even, NaN quieted with its payload, like FloatToHalf.
    const hn::Rebind<hwy::float16_t, DF> dh;
    hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(dst));
#else
    alignas(64) float tmp[16];
    hn::StoreU(v, d, tmp);
    for (size_t i = 0; i < hn::Lanes(d); ++i) {
      const uint16_t h = FloatToHalf(tmp[i]);
      std::memcpy(dst + 2 * i, &h, 2);
    }
#endif
  }
}

void EltwiseFloat(const EltwisePlan& p) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const size_t n = hn::Lanes(d);
  const PpeParams& q = p.ppe;
  const auto fbias = hn::Set(d, p.fbias), scale = hn::Set(d, p.scale);
  const auto alpha = hn::Set(d, q.alpha), lo = hn::Set(d, q.flo), hi = hn::Set(d, q.fhi);
  const auto qnan = hn::BitCast(d, hn::Set(du, 0x7FC00000u));
  const bool leaky = q.leaky;
  const DType out_t = q.out;
  const EltwiseType type = p.type;
  const int64_t ob = DTypeBytes(out_t);
  for (int64_t i = 0; i < p.n; i += static_cast<int64_t>(n)) {
    const auto a = LoadHalf(p.x1 + 2 * i), b = LoadHalf(p.x2 + 2 * i);
    hn::Vec<DF> acc;
    switch (type) {
      case EltwiseType::kAdd: acc = hn::Add(a, b); break;
      case EltwiseType::kSub: acc = hn::Sub(a, b); break;
      default: acc = hn::Mul(a, b); break;
    }
    acc = hn::IfThenElse(hn::IsNaN(acc), qnan, acc);
    auto x = hn::Mul(hn::Add(acc, fbias), scale);
    if (leaky) x = hn::IfThenElse(hn::Lt(x, hn::Zero(d)), hn::Mul(x, alpha), x);
    x = hn::IfThenElse(hn::Lt(x, lo), lo, x);  // comparisons keep NaN
    x = hn::IfThenElse(hn::Gt(x, hi), hi, x);
    StoreOut(out_t, x, p.out + i * ob);
  }
}

const char* IsaName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <cmath>

#include "hw/formats.h"
#include "kernels/nce.h"

namespace dpuemu {

HWY_EXPORT(EltwiseInt);
HWY_EXPORT(EltwiseFloat);
HWY_EXPORT(IsaName);

StatusOr<DpuOutput> RunEltwiseSimd(const DpuTask& task, KernelReport& report) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  // The first input in place when it is one dense buffer (the usual case: eltwise has no input
  // sparsity), else gathered as the reference reads it.
  Tensor gathered;
  const uint8_t* x1 = nullptr;
  if (task.input_tiles.size() == 1 && task.input_map.empty() && task.se_table.empty()) {
    x1 = task.input_tiles[0].data();
  } else {
    DPUEMU_ASSIGN_OR_RETURN(gathered, GatherActivations(task.input_view(), op.in_dtype,
                                                        {g.h, g.w, g.c}, op.in_zp));
    x1 = gathered.bytes.data();
  }
  Tensor out(op.out_dtype, {g.h, g.w, g.c});
  eltwise_internal::EltwisePlan p;
  p.x1 = x1;
  p.x2 = task.input2.data();
  p.out = out.bytes.data();
  p.n = g.h * g.w * g.c;
  p.in = op.in_dtype;
  p.type = op.eltwise.type;
  p.zp1 = op.in_zp;
  p.zp2 = op.eltwise.in2_zp;
  p.in1_mult = op.eltwise.in1_mult;
  p.in2_mult = op.eltwise.in2_mult;
  const DpuTask::PpeRegisters& r = task.ppe_regs;
  p.mult = r.mult;
  p.shift = r.shift;
  p.bias = r.bias;
  p.bias_d = r.bias;
  p.scale_d = std::ldexp(static_cast<double>(r.mult), -r.shift);
  p.scale_leaky_d = std::ldexp(static_cast<double>(r.mult) * op.ppe.lrelu_mult,
                               -(r.shift + op.ppe.lrelu_shift));
  p.scale = r.scale;
  p.fbias = r.fbias;
  p.ppe = ResolvePpe(op);
  if (IsFloat(op.in_dtype)) {
    HWY_DYNAMIC_DISPATCH(EltwiseFloat)(p);
  } else {
    HWY_DYNAMIC_DISPATCH(EltwiseInt)(p);
  }
  report.isa = HWY_DYNAMIC_DISPATCH(IsaName)();
  report.reason = std::string("eltwise ") + EltwiseTypeName(op.eltwise.type) +
                  (IsFloat(op.in_dtype) ? ": fp32 per element" : ": int32 elop, exact PPE in double");
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
#endif  // HWY_ONCE
