// Max and average pooling on CPU SIMD (Highway, dynamic dispatch), bit-identical to RefMaxPool /
// RefAvgPool (kernels/ref): vectors run across channels (NHWC: a tap's channels are contiguous),
// each lane doing exactly the reference's sequence of operations for its channel.
//   maxpool  u8/i8: Max of the stored values, then the clamp; fp16/bf16: Max of the int16
//            FloatOrderKey16 keys (the total order), keys mapped back to bit patterns.
//   avgpool  integer: int32 window sums, then PpeInt in double (acc * mult and the power-of-two
//            shift are exact in double, Round is half to even); float: fp32 sums in (ky, kx) order,
//            then PpeFloat and the output rounding.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hw/dtype.h"
#include "hw/pool.h"
#include "kernels/nce.h"
#include "kernels/ppe.h"
#include "kernels/ref/nce_ref.h"

#ifndef DPUEMU_KERNELS_POOL_ARGS_
#define DPUEMU_KERNELS_POOL_ARGS_
namespace dpuemu {
namespace pool_internal {
struct PoolArgs {
  const uint8_t* x;  // dense [h, w, c]
  uint8_t* out;      // dense [oh, ow, c]
  int64_t h, w, c, oh, ow, ky, kx, sy, sx, pt, pl;
  DType in, out_dtype;
  int32_t in_zp;
  PpeParams ppe;
  int32_t mult, shift;  // avgpool integer PPE registers
  float scale;          // avgpool float PPE register
};
// The inside part of output pixel (oy, ox)'s window: rows [y0, y1), columns [x0, x1) of the input.
struct Window {
  int64_t y0, y1, x0, x1;
};
inline Window WindowAt(const PoolArgs& a, int64_t oy, int64_t ox) {
  Window w;
  const int64_t iy = oy * a.sy - a.pt, ix = ox * a.sx - a.pl;
  w.y0 = iy < 0 ? 0 : iy;
  w.y1 = iy + a.ky > a.h ? a.h : iy + a.ky;
  w.x0 = ix < 0 ? 0 : ix;
  w.x1 = ix + a.kx > a.w ? a.w : ix + a.kx;
  return w;
}
}  // namespace pool_internal
}  // namespace dpuemu
#endif  // DPUEMU_KERNELS_POOL_ARGS_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/pool.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/float_store-inl.h"  // StoreFloatAs

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace pool_simd {  // its own namespace: other kernel files have per-target functions too
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using pool_internal::PoolArgs;
using pool_internal::Window;
using pool_internal::WindowAt;
using dpuemu::HWY_NAMESPACE::StoreFloatAs;

// ---- Max pooling ----

// The window max of channels [c, c + Lanes(d)) of type T (u8, i8, or int16 keys when `key`).
template <bool kKey, class D>
HWY_INLINE hn::Vec<D> WindowMax(D d, const PoolArgs& a, const Window& w, int64_t c) {
  using T = hn::TFromD<D>;
  const T* x = reinterpret_cast<const T*>(a.x);
  const auto load = [&](int64_t y, int64_t xx) {
    const auto v = hn::LoadU(d, x + (y * a.w + xx) * a.c + c);
    if constexpr (kKey) {
      // FloatOrderKey16: flip the magnitude bits of negative values.
      return hn::Xor(v, hn::And(hn::ShiftRight<15>(v), hn::Set(d, static_cast<T>(0x7FFF))));
    } else {
      return v;
    }
  };
  auto m = load(w.y0, w.x0);
  for (int64_t y = w.y0; y < w.y1; ++y) {
    for (int64_t xx = (y == w.y0 ? w.x0 + 1 : w.x0); xx < w.x1; ++xx) m = hn::Max(m, load(y, xx));
  }
  return m;
}

template <bool kKey, class D>
HWY_INLINE void MaxPixel(D d, const PoolArgs& a, const Window& w, int64_t c0, int64_t c1, int64_t o) {
  using T = hn::TFromD<D>;
  T* out = reinterpret_cast<T*>(a.out) + o;
  const auto lo = hn::Set(d, static_cast<T>(kKey ? 0 : a.ppe.lo));
  const auto hi = hn::Set(d, static_cast<T>(kKey ? 0 : a.ppe.hi));
  for (int64_t c = c0; c + static_cast<int64_t>(hn::Lanes(d)) <= c1; c += hn::Lanes(d)) {
    auto m = WindowMax<kKey>(d, a, w, c);
    if constexpr (kKey) {
      m = hn::Xor(m, hn::And(hn::ShiftRight<15>(m), hn::Set(d, static_cast<T>(0x7FFF))));
    } else {
      m = hn::Min(hn::Max(m, lo), hi);
    }
    hn::StoreU(m, d, out + c);
  }
}

template <typename T, bool kKey>
void MaxPoolT(const PoolArgs& a) {
  const hn::ScalableTag<T> d;
  const hn::CappedTag<T, 16> d16;  // C is a multiple of 16
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const int64_t full = a.c / n * n;
  for (int64_t oy = 0; oy < a.oh; ++oy) {
    for (int64_t ox = 0; ox < a.ow; ++ox) {
      const Window w = WindowAt(a, oy, ox);
      const int64_t o = (oy * a.ow + ox) * a.c;
      MaxPixel<kKey>(d, a, w, 0, full, o);
      if (full < a.c) MaxPixel<kKey>(d16, a, w, full, a.c, o);
    }
  }
}

void MaxPoolImpl(const PoolArgs& a) {
  switch (a.in) {
    case DType::kU8: MaxPoolT<uint8_t, false>(a); break;
    case DType::kI8: MaxPoolT<int8_t, false>(a); break;
    default: MaxPoolT<int16_t, true>(a); break;  // fp16, bf16 bit patterns
  }
}

// ---- Average pooling ----

using DF = hn::CappedTag<float, 16>;  // C is a multiple of 16: whole vectors

// fp16 / bf16 / fp32 values of channels [c, c + Lanes) as fp32 (exact).
HWY_INLINE hn::Vec<DF> LoadAsFloat(DType t, const uint8_t* p) {
  const DF df;
  if (t == DType::kFP32) return hn::LoadU(df, reinterpret_cast<const float*>(p));
  const hn::Rebind<uint16_t, DF> d16;
  const hn::RebindToUnsigned<DF> du;
  if (t == DType::kBF16) {
    const auto bits = hn::PromoteTo(du, hn::LoadU(d16, reinterpret_cast<const uint16_t*>(p)));
    return hn::BitCast(df, hn::ShiftLeft<16>(bits));
  }
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::Rebind<hwy::float16_t, DF> dh;  // F16C: exact
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#else
  HWY_ALIGN float tmp[16];
  for (size_t i = 0; i < hn::Lanes(df); ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    tmp[i] = HalfToFloat(h);
  }
  return hn::Load(df, tmp);
#endif
}

void AvgPoolFloat(const PoolArgs& a) {
  const DF df;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const int64_t ib = DTypeBytes(a.in), ob = DTypeBytes(a.out_dtype);
  const auto scale = hn::Set(df, a.scale), alpha = hn::Set(df, a.ppe.alpha);
  const auto lo = hn::Set(df, a.ppe.flo), hi = hn::Set(df, a.ppe.fhi), zero = hn::Zero(df);
  for (int64_t oy = 0; oy < a.oh; ++oy) {
    for (int64_t ox = 0; ox < a.ow; ++ox) {
      const Window w = WindowAt(a, oy, ox);
      const int64_t o = (oy * a.ow + ox) * a.c;
      for (int64_t c = 0; c < a.c; c += n) {
        auto acc = zero;
        for (int64_t y = w.y0; y < w.y1; ++y) {
          for (int64_t xx = w.x0; xx < w.x1; ++xx) {
            acc = hn::Add(acc, LoadAsFloat(a.in, a.x + ((y * a.w + xx) * a.c + c) * ib));
          }
        }
        // PpeFloat: bias 0 (acc + 0 = acc: a sum from +0 is never -0), scale, slope, clamp.
        auto v = hn::Mul(acc, scale);
        if (a.ppe.leaky) v = hn::IfThenElse(hn::Lt(v, zero), hn::Mul(v, alpha), v);
        v = hn::IfThenElse(hn::Lt(v, lo), lo, v);  // comparisons keep NaN
        v = hn::IfThenElse(hn::Gt(v, hi), hi, v);
        StoreFloatAs(DF(), a.out_dtype, v, a.out + (o + c) * ob);
      }
    }
  }
}

// Without leaky ReLU the PPE fits int32: |acc| <= 121 * 255 < 2^15 and mult < 2^16, so
// acc * mult < 2^31; the rounding shift is RoundShiftHalfEven on int32 lanes (shift >= 32 gives
// 0, as |v| / 2^shift < 1/2). Returns how many values it did (whole vectors).
template <typename T>
int64_t PpeIntRowInt32(const PoolArgs& a, const int16_t* acc, int64_t n, T* out) {
  const hn::CappedTag<int32_t, 16> d;
  const hn::Rebind<int16_t, decltype(d)> d16;
  const hn::Rebind<T, decltype(d)> dt;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int s = a.shift;
  const auto mult = hn::Set(d, a.mult), zp = hn::Set(d, a.ppe.out_zp);
  const auto lo = hn::Set(d, a.ppe.lo), hi = hn::Set(d, a.ppe.hi);
  const auto half = hn::Set(d, s >= 1 && s < 32 ? int32_t(1) << (s - 1) : 0), one = hn::Set(d, 1);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::Mul(hn::PromoteTo(d, hn::LoadU(d16, acc + i)), mult);
    auto q = v;
    if (s >= 32) {
      q = hn::Zero(d);
    } else if (s > 0) {
      q = hn::ShiftRightSame(v, s);  // floor
      const auto r = hn::Sub(v, hn::ShiftLeftSame(q, s));
      const auto up = hn::Or(hn::Gt(r, half),
                             hn::And(hn::Eq(r, half), hn::Eq(hn::And(q, one), one)));
      q = hn::IfThenElse(up, hn::Add(q, one), q);
    }
    q = hn::Min(hn::Max(hn::Add(q, zp), lo), hi);
    hn::StoreU(hn::DemoteTo(dt, q), dt, out + i);
  }
  return i;
}

// The integer PPE of `n` window sums (PpeInt with bias 0) into outputs of type T (u8 / i8; the
// output type).
template <typename T>
void PpeIntRow(const PoolArgs& a, const int16_t* acc, int64_t n, T* out) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<int32_t, decltype(dd)> di;
  const hn::Rebind<int16_t, decltype(dd)> di16;
  const hn::Rebind<T, decltype(dd)> dt;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(dd));
  const auto mult = hn::Set(dd, a.mult);
  const auto pos = hn::Set(dd, std::ldexp(1.0, -a.shift));
  const auto neg = hn::Set(dd, std::ldexp(1.0, -(a.shift + (a.ppe.leaky ? a.ppe.lrelu_shift : 0))));
  const auto lmult = hn::Set(dd, a.ppe.leaky ? a.ppe.lrelu_mult : 1);
  const auto zp = hn::Set(dd, a.ppe.out_zp), lo = hn::Set(dd, a.ppe.lo), hi = hn::Set(dd, a.ppe.hi);
  const auto zero = hn::Zero(dd);
  int64_t i = 0;
  if (!a.ppe.leaky) i = PpeIntRowInt32<T>(a, acc, n, out);  // the exact int32 form
  for (; i + lanes <= n; i += lanes) {
    auto v = hn::Mul(hn::PromoteTo(dd, hn::PromoteTo(di, hn::LoadU(di16, acc + i))), mult);  // exact: < 2^46
    const auto m = hn::Lt(v, zero);
    v = hn::IfThenElse(m, hn::Mul(hn::Mul(v, lmult), neg), hn::Mul(v, pos));  // exact powers of 2
    v = hn::Min(hn::Max(hn::Add(hn::Round(v), zp), lo), hi);  // Round: half to even
    hn::StoreU(hn::DemoteTo(dt, hn::DemoteTo(di, v)), dt, out + i);  // in range: exact
  }
  for (; i < n; ++i) out[i] = static_cast<T>(PpeInt(acc[i], 0, a.mult, a.shift, a.ppe));
}

// Window sums of channels [c0, c1) in vectors of tag D (int16 lanes: a sum is at most
// 121 * 255 < 2^15, and integer sums are exact in any order).
template <typename T, class D>
HWY_INLINE void WindowSums(D d, const PoolArgs& a, const Window& w, int16_t pad_sum, int64_t c0,
                           int64_t c1, int16_t* acc_out) {
  const hn::Rebind<T, D> d8;
  const T* x = reinterpret_cast<const T*>(a.x);
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t c = c0; c + n <= c1; c += n) {
    auto acc = hn::Set(d, pad_sum);
    for (int64_t y = w.y0; y < w.y1; ++y) {
      for (int64_t xx = w.x0; xx < w.x1; ++xx) {
        acc = hn::Add(acc, hn::PromoteTo(d, hn::LoadU(d8, x + (y * a.w + xx) * a.c + c)));
      }
    }
    hn::StoreU(acc, d, acc_out + c);
  }
}

template <typename T>
void AvgPoolIntT(const PoolArgs& a) {
  const hn::CappedTag<int16_t, 32> d;
  const hn::CappedTag<int16_t, 16> d16;  // C is a multiple of 16
  const int64_t full = a.c / static_cast<int64_t>(hn::Lanes(d)) * static_cast<int64_t>(hn::Lanes(d));
  std::vector<int16_t> row(static_cast<size_t>(a.ow * a.c));
  for (int64_t oy = 0; oy < a.oh; ++oy) {
    for (int64_t ox = 0; ox < a.ow; ++ox) {
      const Window w = WindowAt(a, oy, ox);
      const int64_t pads = a.ky * a.kx - (w.y1 - w.y0) * (w.x1 - w.x0);
      const int16_t pad_sum = static_cast<int16_t>(pads * a.in_zp);  // padding reads x_zp
      int16_t* acc = row.data() + ox * a.c;
      WindowSums<T>(d, a, w, pad_sum, 0, full, acc);
      if (full < a.c) WindowSums<T>(d16, a, w, pad_sum, full, a.c, acc);
    }
    // The output type may differ from the input's (u8 in, i8 out).
    if (a.out_dtype == DType::kU8) {
      PpeIntRow<uint8_t>(a, row.data(), a.ow * a.c, a.out + oy * a.ow * a.c);
    } else {
      PpeIntRow<int8_t>(a, row.data(), a.ow * a.c, reinterpret_cast<int8_t*>(a.out) + oy * a.ow * a.c);
    }
  }
}

void AvgPoolImpl(const PoolArgs& a) {
  switch (a.in) {
    case DType::kU8: AvgPoolIntT<uint8_t>(a); break;
    case DType::kI8: AvgPoolIntT<int8_t>(a); break;
    default: AvgPoolFloat(a); break;
  }
}

const char* IsaName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace pool_simd
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dpuemu {
namespace pool_simd {
HWY_EXPORT(MaxPoolImpl);
HWY_EXPORT(AvgPoolImpl);
HWY_EXPORT(IsaName);
const char* Isa() { return HWY_DYNAMIC_DISPATCH(IsaName)(); }
void MaxPool(const pool_internal::PoolArgs& a) { HWY_DYNAMIC_DISPATCH(MaxPoolImpl)(a); }
void AvgPool(const pool_internal::PoolArgs& a) { HWY_DYNAMIC_DISPATCH(AvgPoolImpl)(a); }
}  // namespace pool_simd

namespace {
// The task's dense input in place (pools read dense input only: SupportedSparsity), or null.
const uint8_t* DenseInput(const DpuTask& task) {
  const NceGeometry& g = task.op.g;
  if (!task.input_map.empty() || !task.se_table.empty() || task.input_tiles.size() != 1) return nullptr;
  const auto& t = task.input_tiles[0];
  if (static_cast<int64_t>(t.size()) != g.h * g.w * g.c * DTypeBytes(task.op.in_dtype)) return nullptr;
  return t.data();
}

pool_internal::PoolArgs MakeArgs(const DpuTask& task, const uint8_t* x, Tensor& out) {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  pool_internal::PoolArgs a;
  a.x = x;
  a.out = out.bytes.data();
  a.h = g.h; a.w = g.w; a.c = g.c; a.oh = g.out_h(); a.ow = g.out_w();
  a.ky = g.ky; a.kx = g.kx; a.sy = g.stride_y; a.sx = g.stride_x; a.pt = g.pad_top; a.pl = g.pad_left;
  a.in = op.in_dtype;
  a.out_dtype = op.out_dtype;
  a.in_zp = op.in_zp;
  a.ppe = ResolvePpe(op);
  a.mult = task.ppe_regs.mult;
  a.shift = task.ppe_regs.shift;
  a.scale = task.ppe_regs.scale;
  return a;
}

template <typename Ref, typename Impl>
StatusOr<DpuOutput> RunPool(const DpuTask& task, KernelReport& report, const char* kind, Ref ref,
                            Impl impl) {
  const uint8_t* x = DenseInput(task);
  if (x == nullptr) {
    report.isa = "reference";
    report.reason = std::string(kind) + ": the input is not one dense tile: ran the reference";
    return ref(task);
  }
  Tensor out(task.op.out_dtype, {task.op.g.out_h(), task.op.g.out_w(), task.op.g.k});
  impl(MakeArgs(task, x, out));
  report.isa = pool_simd::Isa();
  report.reason = std::string(kind) + ": Highway kernel over channels";
  return StoreOutput(task, std::move(out));
}
}  // namespace

StatusOr<DpuOutput> RunMaxPoolSimd(const DpuTask& task, KernelReport& report) {
  return RunPool(task, report, "maxpool", RefMaxPool, pool_simd::MaxPool);
}

StatusOr<DpuOutput> RunAvgPoolSimd(const DpuTask& task, KernelReport& report) {
  return RunPool(task, report, "avgpool", RefAvgPool, pool_simd::AvgPool);
}

}  // namespace dpuemu
#endif  // HWY_ONCE
