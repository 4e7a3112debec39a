// Fast eltwise (nce.h): the arithmetic of kernels/ref/eltwise_ref.cc on Highway vectors, chosen
// at run time, bit-identical to the reference. The work is one pass over H * W * C elements
// (memory-bound), so each vector goes from the two inputs to the output in registers:
//   integer: int32 lanes for the elop (exact), then the PPE
//            - IntFast (u8/i8 outputs without leaky ReLU): in fp32 with a proof that the result
//              is the exact one, else the block goes to IntBlockExact;
//            - IntBlockExact: in double, where (acc + bias) * mult * 2^-shift is exact (< 2^48
//              times a power of two) and Round is half to even, as PpeInt; with leaky ReLU a
//              vector with |acc + bias| >= 2^26 (the product would no longer be exact) runs PpeInt.
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
  bool fast_float;  // u8/i8 output, no leaky ReLU, IntFast's sums within int32
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
#include "kernels/float_store-inl.h"  // StoreFloatAs

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using eltwise_internal::EltwisePlan;
// File-local: other kernel files define per-target functions of the same names (IsaName).
namespace {

// At most 16 lanes, so a vector never passes the end of an [.., C] tensor (C % 16 == 0).
using DD = hn::CappedTag<double, 8>;
using DF = hn::CappedTag<float, 16>;

template <class D32>
HWY_INLINE hn::Vec<D32> LoadInt8(D32 d32, DType t, const uint8_t* p) {
  if (t == DType::kU8) return hn::PromoteTo(d32, hn::LoadU(hn::Rebind<uint8_t, D32>(), p));
  return hn::PromoteTo(d32, hn::LoadU(hn::Rebind<int8_t, D32>(), reinterpret_cast<const int8_t*>(p)));
}

template <class D32>
HWY_INLINE hn::Vec<D32> Elop(D32 d32, const EltwisePlan& p, int64_t i) {
  const auto a = hn::Sub(LoadInt8(d32, p.in, p.x1 + i), hn::Set(d32, p.zp1));
  const auto b = hn::Sub(LoadInt8(d32, p.in, p.x2 + i), hn::Set(d32, p.zp2));
  switch (p.type) {
    case EltwiseType::kAdd:
      return hn::Add(hn::Mul(a, hn::Set(d32, p.in1_mult)), hn::Mul(b, hn::Set(d32, p.in2_mult)));
    case EltwiseType::kSub:
      return hn::Sub(hn::Mul(a, hn::Set(d32, p.in1_mult)), hn::Mul(b, hn::Set(d32, p.in2_mult)));
    default:
      return hn::Mul(a, b);
  }
}

template <class D32>
HWY_INLINE void StoreInt8(D32 d32, DType t, hn::Vec<D32> r, uint8_t* dst) {
  if (t == DType::kU8) {
    const hn::Rebind<uint8_t, D32> du8;
    hn::StoreU(hn::DemoteTo(du8, r), du8, dst);
  } else {
    const hn::Rebind<int8_t, D32> di8;
    hn::StoreU(hn::DemoteTo(di8, r), di8, reinterpret_cast<int8_t*>(dst));
  }
}

// Elements [i, i + count) exactly: the PPE in double (see the file comment).
void IntBlockExact(const EltwisePlan& p, int64_t i, int64_t count) {
  const DD dd;
  const hn::Rebind<int32_t, DD> di;
  const int64_t n = static_cast<int64_t>(hn::Lanes(dd));
  const PpeParams& q = p.ppe;
  const auto bias = hn::Set(dd, p.bias_d), scale = hn::Set(dd, p.scale_d);
  const auto scale_leaky = hn::Set(dd, p.scale_leaky_d);
  const auto out_zp = hn::Set(dd, q.out_zp), lo = hn::Set(dd, q.lo), hi = hn::Set(dd, q.hi);
  const auto leaky_exact = hn::Set(dd, 67108864.0), zero = hn::Zero(dd);
  for (const int64_t end = i + count; i < end; i += n) {
    const auto acc = Elop(di, p, i);
    if (q.out == DType::kI32) {  // acc + bias, wrapping (PpeInt's debug output)
      hn::StoreU(hn::Add(acc, hn::Set(di, p.bias)), di, reinterpret_cast<int32_t*>(p.out) + i);
      continue;
    }
    const auto v = hn::Add(hn::PromoteTo(dd, acc), bias);
    auto s = scale;
    if (q.leaky) {
      if (!hn::AllTrue(dd, hn::Lt(hn::Abs(v), leaky_exact))) {
        alignas(64) int32_t lanes[8];
        hn::Store(acc, di, lanes);
        for (int64_t j = 0; j < n; ++j) {
          StoreInt(q.out, p.out, i + j, PpeInt(lanes[j], p.bias, p.mult, p.shift, q));
        }
        continue;
      }
      s = hn::IfThenElse(hn::Lt(v, zero), scale_leaky, s);
    }
    const auto r = hn::DemoteTo(di, hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(v, s)), out_zp), lo), hi));
    StoreInt8(di, q.out, r, p.out + i);
  }
}

// The common case in fp32, 16 lanes. y = fl(fl(t) * mult * 2^-shift), t = acc + bias, differs
// from the exact value Y by at most |Y| * 2^-23 (two roundings of relative error 2^-24; the scale
// is exact in fp32), so by less than 2^-14 where |Y| <= 384. y is clamped to [lo - zp, hi - zp]
// (integers within +-383, so a lane clamped in fp32 rounds to the same integer as the exact one)
// and rounded by adding 1.5 * 2^23 (the FPU's round to nearest even, ScopedDpuFpEnv); unless a
// lane lies within 2^-13 of a tie k + 1/2 that is the exact half-to-even rounding. Blocks with such a lane take IntBlockExact, as do leaky ReLU, i32 outputs and
// registers whose sums could leave int32 (EltwisePlan::fast_float).
// The zero points fold into one constant: t = x1 * A + x2 * B + (bias - zp1 * A - zp2 * B) for
// add (sub: B negated); mult keeps (x1 - zp1) * (x2 - zp2) + bias.
template <EltwiseType kType, bool kSigned>
void IntFast(const EltwisePlan& p) {
  const hn::CappedTag<int32_t, 16> d32;
  const hn::Rebind<float, decltype(d32)> df;
  const hn::RebindToUnsigned<decltype(d32)> du32;
  const hn::Rebind<uint8_t, decltype(d32)> du8;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d32));
  const PpeParams& q = p.ppe;
  const DType in = kSigned ? DType::kI8 : DType::kU8;
  const int32_t b_mult = kType == EltwiseType::kSub ? -p.in2_mult : p.in2_mult;
  // Within int32: EltwisePlan::fast_float bounds it.
  const int32_t c = static_cast<int32_t>(
      kType == EltwiseType::kMult ? p.bias
                                  : int64_t{p.bias} - int64_t{p.zp1} * p.in1_mult - int64_t{p.zp2} * b_mult);
  const auto m1 = hn::Set(d32, p.in1_mult), m2 = hn::Set(d32, b_mult), cv = hn::Set(d32, c);
  const auto zp1 = hn::Set(d32, p.zp1), zp2 = hn::Set(d32, p.zp2);
  const auto scale = hn::Set(df, static_cast<float>(p.scale_d));
  const auto lo = hn::Set(df, static_cast<float>(q.lo - q.out_zp));
  const auto hi = hn::Set(df, static_cast<float>(q.hi - q.out_zp));
  const auto magic = hn::Set(df, 12582912.0f);  // 1.5 * 2^23, bits 0x4B400000
  const auto unbias = hn::Set(d32, 0x4B400000 - q.out_zp);
  const auto near_tie = hn::Set(df, 0.5f - 1.0f / 8192);
  const uint8_t* x1 = p.x1;
  const uint8_t* x2 = p.x2;
  uint8_t* out = p.out;
  const int64_t total = p.n;
  for (int64_t i = 0; i < total; i += n) {
    const auto a = LoadInt8(d32, in, x1 + i), b = LoadInt8(d32, in, x2 + i);
    const auto t = kType == EltwiseType::kMult
                       ? hn::Add(hn::Mul(hn::Sub(a, zp1), hn::Sub(b, zp2)), cv)
                       : hn::Add(hn::Add(hn::Mul(a, m1), hn::Mul(b, m2)), cv);
    const auto y = hn::Min(hn::Max(hn::Mul(hn::ConvertTo(df, t), scale), lo), hi);
    const auto shifted = hn::Add(y, magic);
    const auto dist = hn::Abs(hn::Sub(y, hn::Sub(shifted, magic)));
    if (HWY_UNLIKELY(!hn::AllFalse(df, hn::Gt(dist, near_tie)))) {
      IntBlockExact(p, i, n);
      continue;
    }
    const auto r = hn::Sub(hn::BitCast(d32, shifted), unbias);  // the output value
    // u8 or i8 (two's complement): the value's low byte.
    hn::StoreU(hn::TruncateTo(du8, hn::BitCast(du32, r)), du8, out + i);
  }
}

template <EltwiseType kType>
void IntFastFor(const EltwisePlan& p) {
  if (p.in == DType::kI8) {
    IntFast<kType, true>(p);
  } else {
    IntFast<kType, false>(p);
  }
}

void EltwiseInt(const EltwisePlan& p) {
  if (!p.fast_float) return IntBlockExact(p, 0, p.n);
  switch (p.type) {
    case EltwiseType::kAdd: return IntFastFor<EltwiseType::kAdd>(p);
    case EltwiseType::kSub: return IntFastFor<EltwiseType::kSub>(p);
    case EltwiseType::kMult: return IntFastFor<EltwiseType::kMult>(p);
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
    StoreFloatAs(DF(), out_t, x, p.out + i * ob);
  }
}

const char* IsaName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cmath>
#include <cstdlib>

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
  // IntFast's int32 sums: (x1 - zp1) * (x2 - zp2) + bias for mult; x1 * A +- x2 * B and the
  // folded constant bias - zp1 * A -+ zp2 * B for add / sub.
  const int64_t xmax = std::max(std::abs(DTypeMin(op.in_dtype)), std::abs(DTypeMax(op.in_dtype)));
  const int64_t zmax1 = std::max(std::abs(DTypeMin(op.in_dtype) - p.zp1), std::abs(DTypeMax(op.in_dtype) - p.zp1));
  const int64_t zmax2 = std::max(std::abs(DTypeMin(op.in_dtype) - p.zp2), std::abs(DTypeMax(op.in_dtype) - p.zp2));
  const int64_t sum_max =
      p.type == EltwiseType::kMult
          ? zmax1 * zmax2 + std::abs(int64_t{p.bias})
          : xmax * (p.in1_mult + p.in2_mult) +
                std::abs(int64_t{p.bias} - int64_t{p.zp1} * p.in1_mult -
                         (p.type == EltwiseType::kSub ? -1 : 1) * int64_t{p.zp2} * p.in2_mult);
  p.fast_float = (op.out_dtype == DType::kU8 || op.out_dtype == DType::kI8) && !op.ppe.leaky_relu &&
                 sum_max < (int64_t{1} << 31);
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
