// Fast ZMConv (see zmconv.h). Layout of this file: the plan shared by all targets, the Highway
// microkernels (compiled once per target), then the dispatcher that validates, prepares and
// picks a kernel.

#ifndef DPUEMU_KERNELS_ZMCONV_PLAN_
#define DPUEMU_KERNELS_ZMCONV_PLAN_
#include <cstdint>
#include <cstring>

#include "hw/dtype.h"
#include "kernels/ppe.h"

namespace dpuemu {
namespace zmconv_internal {

// Everything a microkernel reads, prepared once per task. Accumulator tiles are [pixels][16]:
// 16 consecutive output channels per pixel.
struct ConvPlan {
  int64_t oh, ow, k, c, ky, kx, sy, sx, taps;
  bool integer;
  PpeParams ppe;
  // Per output channel requantisation (float path, then integer path).
  const float* scale;
  const float* fbias;
  const int32_t* bias;
  const int32_t* mult;
  const int32_t* shift;
  const double* bias_d;
  const double* mult_d;
  const double* inv2s;       // 2^-shift
  const double* inv2s_leaky;  // 2^-(shift + lrelu_shift)
  // Dense kernel: input padded NHWC [hp][wp][c] (x - x_zp as float, padding 0); weights
  // [k / 16][taps][16].
  const float* xpad;
  int64_t hp, wp;
  const float* wpack;
  // Dense integer kernel: the same with int16 values; weights [k / 16][taps / 2][16][2] so one
  // 32-bit broadcast of two input channels meets two taps of 16 channels (pairwise multiply-add).
  const int16_t* xpad16;
  const int16_t* wpack16;
  // Sparse-weights kernel: input planar per column phase [sx][c][hp][wq]; per output channel the
  // list of non-zero weights (offset into the planar input, value) in (ky, kx, c) order.
  const float* xplanar;
  int64_t wq;
  const int64_t* nz_begin;  // k + 1 entries
  const int64_t* nz_off;
  const float* nz_w;
  uint8_t* out;  // [oh][ow][k], the output dtype
};

// Accumulator loops are fully unrolled so the accumulators stay in registers.
#define DPUEMU_UNROLL _Pragma("GCC unroll 16")

constexpr int64_t kFlushTaps = 256;  // 256 * 255 * 255 < 2^24: fp32 partial sums stay exact

}  // namespace zmconv_internal
}  // namespace dpuemu
#endif  // DPUEMU_KERNELS_ZMCONV_PLAN_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/zmconv.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using zmconv_internal::ConvPlan;
using zmconv_internal::kFlushTaps;

using DF = hn::CappedTag<float, 16>;
constexpr size_t kN = HWY_MIN(16, HWY_LANES(float));  // lanes per float vector
constexpr size_t kV = 16 / kN;                         // vectors per 16 output channels
using VF = hn::Vec<DF>;

#if HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_EMU128 || \
    HWY_TARGET == HWY_SCALAR
constexpr bool kFusedMulAdd = false;
#else
constexpr bool kFusedMulAdd = true;
#endif

bool HasFusedMulAdd() { return kFusedMulAdd; }

// Adds the fp32 partial sums (exact integers) into the int32 accumulators and clears them.
template <size_t M>
HWY_INLINE void FlushToInt(VF (&acc)[M], int32_t* itile) {
  const DF d;
  const hn::RebindToSigned<DF> di;
  DPUEMU_UNROLL for (size_t i = 0; i < M; ++i) {
    int32_t* p = itile + i * kN;
    hn::StoreU(hn::Add(hn::LoadU(di, p), hn::ConvertTo(di, acc[i])), di, p);
    acc[i] = hn::Zero(d);
  }
}

// ---- Epilogue: accumulators of `npix` pixels x 16 channels -> PPE -> output pixels ----

HWY_INLINE void StoreFloatOut(const ConvPlan& p, VF v, uint8_t* dst) {
  const DF d;
  switch (p.ppe.out) {
    case DType::kFP32:
      hn::StoreU(v, d, reinterpret_cast<float*>(dst));
      return;
    case DType::kBF16: {
      // Round to nearest even on the bit pattern; NaN stays NaN with the quiet bit set.
      const hn::RebindToUnsigned<DF> du;
      const auto bits = hn::BitCast(du, v);
      const auto rounded = hn::ShiftRight<16>(
          hn::Add(bits, hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u)))));
      const auto nan = hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40u));
      const auto r = hn::IfThenElse(hn::RebindMask(du, hn::Ne(v, v)), nan, rounded);
      const hn::Rebind<uint16_t, DF> d16;
      hn::StoreU(hn::DemoteTo(d16, hn::BitCast(hn::RebindToSigned<DF>(), r)), d16,
                 reinterpret_cast<uint16_t*>(dst));
      return;
    }
    default: {  // fp16
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
      // F16C: round to nearest even, NaN quieted with its payload, like FloatToHalf.
      const hn::Rebind<hwy::float16_t, DF> dh;
      hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(dst));
#else
      alignas(64) float tmp[kN];
      hn::Store(v, d, tmp);
      for (size_t i = 0; i < kN; ++i) {
        const uint16_t h = FloatToHalf(tmp[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
#endif
      return;
    }
  }
}

void EpilogueFloat(const ConvPlan& p, const float* tile, int64_t npix, int64_t k0, uint8_t* out) {
  const DF d;
  const int64_t eb = DTypeBytes(p.ppe.out);
  const VF lo = hn::Set(d, p.ppe.flo), hi = hn::Set(d, p.ppe.fhi);
  for (int64_t px = 0; px < npix; ++px) {
    for (size_t v = 0; v < kV; ++v) {
      const int64_t k = k0 + static_cast<int64_t>(v * kN);
      VF x = hn::Mul(hn::LoadU(d, tile + px * 16 + v * kN), hn::LoadU(d, p.scale + k));
      x = hn::Add(x, hn::LoadU(d, p.fbias + k));
      x = hn::IfThenElse(hn::Lt(x, lo), lo, x);  // comparisons keep NaN
      x = hn::IfThenElse(hn::Gt(x, hi), hi, x);
      StoreFloatOut(p, x, out + (px * p.k + k) * eb);
    }
  }
}

void EpilogueInt(const ConvPlan& p, const int32_t* tile, int64_t npix, int64_t k0, uint8_t* out) {
  const hn::CappedTag<double, 4> dd;
  const hn::Rebind<int32_t, decltype(dd)> di;
  const size_t nd = hn::Lanes(dd);
  const PpeParams& q = p.ppe;
  if (q.out == DType::kI32) {
    const hn::CappedTag<int32_t, 16> d32;
    const size_t n32 = hn::Lanes(d32);
    for (int64_t px = 0; px < npix; ++px) {
      int32_t* dst = reinterpret_cast<int32_t*>(out) + px * p.k + k0;
      for (size_t c = 0; c < 16; c += n32) {
        hn::StoreU(hn::Add(hn::LoadU(d32, tile + px * 16 + c), hn::LoadU(d32, p.bias + k0 + c)), d32,
                   dst + c);
      }
    }
    return;
  }
  const auto zp = hn::Set(dd, q.out_zp), lo = hn::Set(dd, q.lo), hi = hn::Set(dd, q.hi);
  const auto lrelu = hn::Set(dd, q.lrelu_mult), zero = hn::Zero(dd);
  // Below 2^42, v * lrelu_mult (< 2^53) is still exact in double.
  const auto exact_limit = hn::Set(dd, 4398046511104.0);
  alignas(64) int32_t res[16];
  for (int64_t px = 0; px < npix; ++px) {
    const int32_t* a = tile + px * 16;
    for (size_t c = 0; c < 16; c += nd) {
      const int64_t k = k0 + static_cast<int64_t>(c);
      // (acc + bias) * mult < 2^49: exact in double; * 2^-shift is exact; Round is half-to-even.
      auto v = hn::Mul(hn::Add(hn::PromoteTo(dd, hn::LoadU(di, a + c)), hn::LoadU(dd, p.bias_d + k)),
                       hn::LoadU(dd, p.mult_d + k));
      auto inv = hn::LoadU(dd, p.inv2s + k);
      if (q.leaky) {
        if (!hn::AllTrue(dd, hn::Lt(hn::Abs(v), exact_limit))) {
          for (size_t i = 0; i < nd; ++i) {
            res[c + i] = PpeInt(a[c + i], p.bias[k + i], p.mult[k + i], p.shift[k + i], q);
          }
          continue;
        }
        const auto neg = hn::Lt(v, zero);
        v = hn::IfThenElse(neg, hn::Mul(v, lrelu), v);
        inv = hn::IfThenElse(neg, hn::LoadU(dd, p.inv2s_leaky + k), inv);
      }
      v = hn::Add(hn::Round(hn::Mul(v, inv)), zp);
      v = hn::Min(hn::Max(v, lo), hi);
      hn::StoreU(hn::DemoteTo(di, v), di, res + c);
    }
    uint8_t* dst = out + px * p.k + k0;
    for (int i = 0; i < 16; ++i) dst[i] = static_cast<uint8_t>(res[i]);
  }
}

HWY_INLINE void Epilogue(const ConvPlan& p, const float* ftile, const int32_t* itile, int64_t npix,
                         int64_t oy, int64_t ox0, int64_t k0) {
  uint8_t* out = p.out + ((oy * p.ow + ox0) * p.k) * DTypeBytes(p.ppe.out);
  if (p.integer) {
    EpilogueInt(p, itile, npix, k0, out);
  } else {
    EpilogueFloat(p, ftile, npix, k0, out);
  }
}

// ---- Dense kernel: MR output pixels x 16 output channels, one input element broadcast ----

template <size_t MR>
HWY_NOINLINE void DenseTile(const ConvPlan& p, int64_t oy, int64_t ox0, int64_t kb) {
  const DF d;
  alignas(64) float ftile[MR * 16];
  alignas(64) int32_t itile[MR * 16] = {};
  VF acc[MR * kV];
  DPUEMU_UNROLL for (size_t i = 0; i < MR * kV; ++i) acc[i] = hn::Zero(d);
  const float* w = p.wpack + kb * p.taps * 16;
  const int64_t pix_step = p.sx * p.c;
  int64_t t = 0, next_flush = kFlushTaps;
  for (int64_t ky = 0; ky < p.ky; ++ky) {
    for (int64_t kx = 0; kx < p.kx; ++kx) {
      const float* xr = p.xpad + ((oy * p.sy + ky) * p.wp + ox0 * p.sx + kx) * p.c;
      int64_t c = 0;
      while (c < p.c) {
        const int64_t c_end = p.integer ? std::min(p.c, c + (next_flush - t)) : p.c;
        for (; c < c_end; ++c, ++t) {
          VF wv[kV];
          DPUEMU_UNROLL for (size_t v = 0; v < kV; ++v) wv[v] = hn::Load(d, w + t * 16 + v * kN);
          DPUEMU_UNROLL for (size_t m = 0; m < MR; ++m) {
            const VF xb = hn::Set(d, xr[m * pix_step + c]);
            DPUEMU_UNROLL for (size_t v = 0; v < kV; ++v) acc[m * kV + v] = hn::MulAdd(xb, wv[v], acc[m * kV + v]);
          }
        }
        if (p.integer && t == next_flush) {
          FlushToInt(acc, itile);
          next_flush += kFlushTaps;
        }
      }
    }
  }
  if (p.integer) {
    FlushToInt(acc, itile);
  } else {
    for (size_t i = 0; i < MR * kV; ++i) hn::Store(acc[i], d, ftile + i * kN);
  }
  Epilogue(p, ftile, itile, static_cast<int64_t>(MR), oy, ox0, kb * 16);
}

// Register blocking: MR pixels x kV vectors of accumulators, about 12 registers.
constexpr size_t kDenseMR = kV >= 12 ? 1 : 12 / kV;

template <size_t MR>
HWY_INLINE void DenseTail(const ConvPlan& p, int64_t oy, int64_t ox, int64_t kb, int64_t n) {
  if constexpr (MR > 1) {
    if (n < static_cast<int64_t>(MR)) return DenseTail<MR - 1>(p, oy, ox, kb, n);
  }
  DenseTile<MR>(p, oy, ox, kb);
}

void DenseRows(const ConvPlan& p, int64_t oy_begin, int64_t oy_end, int64_t k_begin, int64_t k_end) {
  for (int64_t oy = oy_begin; oy < oy_end; ++oy) {
    for (int64_t kb = k_begin / 16; kb < k_end / 16; ++kb) {
      int64_t ox = 0;
      for (; ox + static_cast<int64_t>(kDenseMR) <= p.ow; ox += kDenseMR) DenseTile<kDenseMR>(p, oy, ox, kb);
      if (ox < p.ow) DenseTail<kDenseMR>(p, oy, ox, kb, p.ow - ox);
    }
  }
}

// ---- Dense integer kernel: pairs of taps through int16 x int16 -> int32 multiply-add ----
// Every lane sums (x0 - zp) * (w0 - zp) + (x1 - zp) * (w1 - zp), at most 2 * 255 * 255: exact.

#if HWY_TARGET == HWY_SCALAR
constexpr bool kPairwiseInt16 = false;  // one int16 lane per int32 lane: no pairs
#else
constexpr bool kPairwiseInt16 = true;
#endif

bool HasPairwiseInt16() { return kPairwiseInt16; }

#if HWY_TARGET != HWY_SCALAR
template <size_t MR>
HWY_NOINLINE void DenseTileI16(const ConvPlan& p, int64_t oy, int64_t ox0, int64_t kb) {
  const hn::CappedTag<int32_t, 16> di;
  const hn::Repartition<int16_t, decltype(di)> d16;
  using VI = hn::Vec<decltype(di)>;
  alignas(64) int32_t itile[MR * 16];
  VI acc[MR * kV], odd[MR * kV];
  DPUEMU_UNROLL for (size_t i = 0; i < MR * kV; ++i) acc[i] = odd[i] = hn::Zero(di);
  const int16_t* w = p.wpack16 + kb * p.taps * 16;
  const int64_t pix_step = p.sx * p.c;
  for (int64_t ky = 0; ky < p.ky; ++ky) {
    for (int64_t kx = 0; kx < p.kx; ++kx) {
      const int16_t* xr = p.xpad16 + ((oy * p.sy + ky) * p.wp + ox0 * p.sx + kx) * p.c;
      for (int64_t c = 0; c < p.c; c += 2, w += 32) {
        hn::Vec<decltype(d16)> wv[kV];
        DPUEMU_UNROLL for (size_t v = 0; v < kV; ++v) wv[v] = hn::Load(d16, w + v * 2 * kN);
        DPUEMU_UNROLL for (size_t m = 0; m < MR; ++m) {
          int32_t pair;
          std::memcpy(&pair, xr + m * pix_step + c, 4);
          const auto xb = hn::BitCast(d16, hn::Set(di, pair));
          DPUEMU_UNROLL for (size_t v = 0; v < kV; ++v) {
            acc[m * kV + v] = hn::ReorderWidenMulAccumulate(di, xb, wv[v], acc[m * kV + v], odd[m * kV + v]);
          }
        }
      }
    }
  }
  DPUEMU_UNROLL for (size_t i = 0; i < MR * kV; ++i) {
    hn::Store(hn::Add(acc[i], odd[i]), di, itile + i * kN);
  }
  EpilogueInt(p, itile, static_cast<int64_t>(MR), kb * 16,
              p.out + (oy * p.ow + ox0) * p.k * DTypeBytes(p.ppe.out));
}

template <size_t MR>
HWY_INLINE void DenseTailI16(const ConvPlan& p, int64_t oy, int64_t ox, int64_t kb, int64_t n) {
  if constexpr (MR > 1) {
    if (n < static_cast<int64_t>(MR)) return DenseTailI16<MR - 1>(p, oy, ox, kb, n);
  }
  DenseTileI16<MR>(p, oy, ox, kb);
}
#endif

void DenseRowsI16(const ConvPlan& p, int64_t oy_begin, int64_t oy_end, int64_t k_begin, int64_t k_end) {
#if HWY_TARGET != HWY_SCALAR
  {
    for (int64_t oy = oy_begin; oy < oy_end; ++oy) {
      for (int64_t kb = k_begin / 16; kb < k_end / 16; ++kb) {
        int64_t ox = 0;
        for (; ox + static_cast<int64_t>(kDenseMR) <= p.ow; ox += kDenseMR) DenseTileI16<kDenseMR>(p, oy, ox, kb);
        if (ox < p.ow) DenseTailI16<kDenseMR>(p, oy, ox, kb, p.ow - ox);
      }
    }
  }
#else
  (void)p, (void)oy_begin, (void)oy_end, (void)k_begin, (void)k_end;
#endif
}

// ---- Sparse-weights kernel: P vectors of output pixels, one non-zero weight broadcast ----

template <size_t P>
HWY_NOINLINE void SparseTile(const ConvPlan& p, int64_t oy, int64_t ox0, int64_t kb, int64_t npix) {
  const DF d;
  alignas(64) float ftile[P * kN * 16];
  alignas(64) int32_t itile[P * kN * 16];
  alignas(64) float lanes[P * kN];
  alignas(64) int32_t ilanes[P * kN];
  const float* base = p.xplanar + oy * p.sy * p.wq + ox0;
  for (int64_t kk = 0; kk < 16; ++kk) {
    const int64_t k = kb * 16 + kk;
    VF acc[P];
    DPUEMU_UNROLL for (size_t q = 0; q < P; ++q) acc[q] = hn::Zero(d);
    if (p.integer) std::memset(ilanes, 0, sizeof(ilanes));
    const int64_t end = p.nz_begin[k + 1];
    int64_t j = p.nz_begin[k];
    while (j < end) {
      const int64_t chunk_end = p.integer ? std::min(end, j + kFlushTaps) : end;
      for (; j < chunk_end; ++j) {
        const VF w = hn::Set(d, p.nz_w[j]);
        const float* src = base + p.nz_off[j];
        DPUEMU_UNROLL for (size_t q = 0; q < P; ++q) acc[q] = hn::MulAdd(hn::LoadU(d, src + q * kN), w, acc[q]);
      }
      if (p.integer) FlushToInt(acc, ilanes);
    }
    if (p.integer) {
      for (int64_t i = 0; i < npix; ++i) itile[i * 16 + kk] = ilanes[i];
    } else {
      for (size_t q = 0; q < P; ++q) hn::Store(acc[q], d, lanes + q * kN);
      for (int64_t i = 0; i < npix; ++i) ftile[i * 16 + kk] = lanes[i];
    }
  }
  Epilogue(p, ftile, itile, npix, oy, ox0, kb * 16);
}

constexpr size_t kSparseP = kV >= 4 ? 1 : 4;  // 4 vectors of pixels per non-zero (1 if scalar)

void SparseRows(const ConvPlan& p, int64_t oy_begin, int64_t oy_end, int64_t k_begin, int64_t k_end) {
  const int64_t seg = static_cast<int64_t>(kSparseP * kN);
  for (int64_t oy = oy_begin; oy < oy_end; ++oy) {
    for (int64_t kb = k_begin / 16; kb < k_end / 16; ++kb) {
      for (int64_t ox = 0; ox < p.ow; ox += seg) {
        const int64_t n = std::min(seg, p.ow - ox);
        const int64_t vecs = (n + static_cast<int64_t>(kN) - 1) / static_cast<int64_t>(kN);
        if constexpr (kSparseP == 4) {
          switch (vecs) {
            case 1: SparseTile<1>(p, oy, ox, kb, n); break;
            case 2: SparseTile<2>(p, oy, ox, kb, n); break;
            case 3: SparseTile<3>(p, oy, ox, kb, n); break;
            default: SparseTile<4>(p, oy, ox, kb, n); break;
          }
        } else {
          SparseTile<kSparseP>(p, oy, ox, kb, n);
        }
      }
    }
  }
}

size_t FloatLanes() { return kN; }
const char* IsaName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hw/formats.h"
#include "kernels/ref/zmconv_ref.h"
#include "kernels/zmconv.h"

namespace dpuemu {

HWY_EXPORT(HasFusedMulAdd);
HWY_EXPORT(DenseRows);
HWY_EXPORT(DenseRowsI16);
HWY_EXPORT(HasPairwiseInt16);
HWY_EXPORT(SparseRows);
HWY_EXPORT(FloatLanes);
HWY_EXPORT(IsaName);

const char* ConvKernelName(ConvKernel k) {
  switch (k) {
    case ConvKernel::kAuto: return "auto";
    case ConvKernel::kDense: return "dense";
    case ConvKernel::kSparseWeights: return "sparse-weights";
  }
  return "?";
}

StatusOr<ConvKernel> ParseConvKernel(const std::string& name) {
  for (ConvKernel k : {ConvKernel::kAuto, ConvKernel::kDense, ConvKernel::kSparseWeights}) {
    if (name == ConvKernelName(k)) return k;
  }
  return InvalidArgument("kernel: unknown kernel '" + name + "' (expected auto|dense|sparse-weights)");
}

namespace {

using zmconv_internal::ConvPlan;

// Per-thread buffers reused across calls: no allocation (and no page faults) on the hot path.
struct Scratch {
  std::vector<uint8_t> gathered;
  std::vector<float> xf, wf, nz_w;
  std::vector<int16_t> x16;
  std::vector<int64_t> nz_begin, nz_off;
  std::vector<uint8_t> visit;
  hwy::AlignedFreeUniquePtr<float[]> wpack;
  hwy::AlignedFreeUniquePtr<int16_t[]> wpack16;
  size_t wpack_size = 0, wpack16_size = 0;
};

template <typename T>
T* AlignedScratch(hwy::AlignedFreeUniquePtr<T[]>& buf, size_t& size, size_t n) {
  if (size < n) {
    buf = hwy::AllocateAligned<T>(n);
    size = n;
  }
  return buf.get();
}

// fp16 -> fp32 for every bit pattern, so converting a tensor is one load per element.
const float* HalfTable() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = HalfToFloat(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

// n elements of `t` as the kernels consume them: x - zp (integer types) or the float value.
template <typename Out>
void ConvertElements(DType t, const uint8_t* src, int64_t n, int32_t zp, Out* dst) {
  switch (t) {
    case DType::kU8:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Out>(int32_t{src[i]} - zp);
      break;
    case DType::kI8:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Out>(int32_t{static_cast<int8_t>(src[i])} - zp);
      break;
    case DType::kFP16: {
      const float* table = HalfTable();
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = static_cast<Out>(table[h]);
      }
      break;
    }
    default:  // bf16
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = static_cast<Out>(BF16ToFloat(h));
      }
      break;
  }
}

// Whether skipping a zero weight can change a float result: only if an input is inf/NaN, or a
// product of non-zero factors leaves the normal fp32 range (then -0.0 or rounding can appear).
bool SkipIsInvisible(const float* x, int64_t nx, const float* w, int64_t nw) {
  float xmin = std::numeric_limits<float>::infinity(), xmax = 0, wmin = xmin, wmax = 0;
  for (int64_t i = 0; i < nx; ++i) {
    const float a = std::fabs(x[i]);
    if (!(a <= std::numeric_limits<float>::max())) return false;  // inf or NaN
    if (a != 0) xmin = std::min(xmin, a), xmax = std::max(xmax, a);
  }
  for (int64_t i = 0; i < nw; ++i) {
    const float a = std::fabs(w[i]);
    if (!(a <= std::numeric_limits<float>::max())) return false;
    if (a != 0) wmin = std::min(wmin, a), wmax = std::max(wmax, a);
  }
  if (xmax == 0 || wmax == 0) return true;
  return double{xmin} * wmin >= std::numeric_limits<float>::min() &&
         double{xmax} * wmax <= std::numeric_limits<float>::max();
}

}  // namespace

StatusOr<DpuOutput> RunZMConv(const DpuTask& task, const Target& target, const KernelOptions& options,
                              KernelReport* report) {
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, target));
  const ConvOp& op = task.op;
  const ConvGeometry& g = op.g;
  const bool integer = IsIntegerPath(op);
  KernelReport local;
  KernelReport& rep = report ? *report : local;
  rep = KernelReport();
  rep.isa = HWY_DYNAMIC_DISPATCH(IsaName)();

  // bf16 products can leave the fp32 range, so mul-then-add differs from FMA there; targets
  // without a fused multiply-add run the reference instead.
  if (op.in_dtype == DType::kBF16 && !HWY_DYNAMIC_DISPATCH(HasFusedMulAdd)()) {
    rep.reason = "bf16 needs a fused multiply-add, which this CPU target lacks: ran the reference";
    return RunReference(task, target);
  }
  thread_local Scratch s;

  // The input as the DPU reads it. A dense input without SE pointers is read in place.
  const int64_t nx = g.h * g.w * g.c;
  const int64_t in_eb = DTypeBytes(op.in_dtype);
  const uint8_t* x_bytes = task.input_tiles[0].data();
  if (!task.input_map.empty() || !task.se_table.empty() ||
      static_cast<int64_t>(task.input_tiles[0].size()) != nx * in_eb) {
    Tensor x_t;
    DPUEMU_ASSIGN_OR_RETURN(x_t, GatherActivations(task.input_view(), op.in_dtype, {g.h, g.w, g.c}, op.in_zp));
    s.gathered.swap(x_t.bytes);
    x_bytes = s.gathered.data();
  }
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, DecodeWeightTable(task.weight_table, g.k));
  Tensor w_t;
  DPUEMU_ASSIGN_OR_RETURN(w_t, DecompressWeights(task.weights, task.weight_map, task.weight_table, g,
                                                 op.w_dtype, op.w_zp));
  ChannelQuant quant;
  DPUEMU_ASSIGN_OR_RETURN(quant, WeightTableQuant(op, table));

  const int64_t taps = g.taps();
  const int64_t nw = g.k * taps;
  s.wf.resize(static_cast<size_t>(nw));
  ConvertElements(op.w_dtype, w_t.bytes.data(), nw, op.w_zp, s.wf.data());
  s.xf.resize(static_cast<size_t>(nx));
  ConvertElements(op.in_dtype, x_bytes, nx, op.in_zp, s.xf.data());

  // Which weights the sparse-weights kernel visits: those present in the map (sparse storage),
  // or those that differ from the zero point (dense storage).
  s.visit.resize(static_cast<size_t>(nw));
  int64_t nnz = 0;
  for (int64_t k = 0; k < g.k; ++k) {
    const uint8_t* map = task.weights_sparse() ? task.weight_map.data() + table[k].sparsity_ptr : nullptr;
    const uint8_t* wk = w_t.bytes.data() + k * taps * DTypeBytes(op.w_dtype);
    for (int64_t t = 0; t < taps; ++t) {
      const bool v = map ? MapBit(map, t) : !IsZeroPoint(op.w_dtype, wk, t, op.w_zp);
      s.visit[k * taps + t] = v;
      nnz += v;
    }
  }
  rep.weight_density = static_cast<double>(nnz) / static_cast<double>(nw);

  // Kernel choice. Integer results never depend on it; float ones only through the skip of
  // absent weights, which SkipIsInvisible rules out.
  const ConvKernel storage_kernel = task.weights_sparse() ? ConvKernel::kSparseWeights : ConvKernel::kDense;
  const bool free_choice = integer || SkipIsInvisible(s.xf.data(), nx, s.wf.data(), nw);
  char density[64];
  std::snprintf(density, sizeof(density), "weight density %.1f%%", 100 * rep.weight_density);
  if (options.kernel != ConvKernel::kAuto) {
    if (!free_choice && options.kernel != storage_kernel) {
      return InvalidArgument(std::string("kernel: '") + ConvKernelName(options.kernel) +
                             "' would change the result: the input holds inf/NaN or products "
                             "outside the normal fp32 range, where only the '" +
                             ConvKernelName(storage_kernel) + "' kernel matches the weights' storage");
    }
    rep.kernel = options.kernel;
    rep.reason = std::string("forced by the caller; ") + density;
  } else if (!free_choice) {
    rep.kernel = storage_kernel;
    rep.reason = std::string("float input with inf/NaN or extreme products: the kernel must match "
                             "the weights' storage; ") + density;
  } else if (rep.weight_density < kSparseKernelMaxDensity) {
    rep.kernel = ConvKernel::kSparseWeights;
    rep.reason = std::string(density) + " < 60%: work proportional to the non-zeros";
  } else {
    rep.kernel = ConvKernel::kDense;
    rep.reason = std::string(density) + " >= 60%: dense kernel is faster";
  }

  // Per-channel requantisation in the forms the epilogues use.
  std::vector<double> bias_d, mult_d, inv2s, inv2s_leaky;
  for (int64_t k = 0; integer && k < g.k; ++k) {
    bias_d.push_back(quant.bias[k]);
    mult_d.push_back(quant.mult[k]);
    inv2s.push_back(std::ldexp(1.0, -quant.shift[k]));
    inv2s_leaky.push_back(std::ldexp(1.0, -(quant.shift[k] + op.ppe.lrelu_shift)));
  }

  ConvPlan p{};
  p.oh = g.out_h(); p.ow = g.out_w(); p.k = g.k; p.c = g.c; p.ky = g.ky; p.kx = g.kx;
  p.sy = g.stride_y; p.sx = g.stride_x; p.taps = taps;
  p.integer = integer;
  p.ppe = ResolvePpe(op);
  p.scale = quant.scale.data(); p.fbias = quant.fbias.data();
  p.bias = quant.bias.data(); p.mult = quant.mult.data(); p.shift = quant.shift.data();
  p.bias_d = bias_d.data(); p.mult_d = mult_d.data();
  p.inv2s = inv2s.data(); p.inv2s_leaky = inv2s_leaky.data();
  p.hp = g.h + g.pad_top + g.pad_bottom;
  p.wp = g.w + g.pad_left + g.pad_right;

  Tensor out(op.out_dtype, {p.oh, p.ow, g.k});
  p.out = out.bytes.data();

  if (rep.kernel == ConvKernel::kDense && integer && HWY_DYNAMIC_DISPATCH(HasPairwiseInt16)()) {
    // Padded NHWC int16 input (padding = x_zp, i.e. 0 after the shift); weights
    // [k / 16][taps / 2][16][2].
    s.x16.assign(static_cast<size_t>(p.hp * p.wp * g.c), 0);
    for (int64_t y = 0; y < g.h; ++y) {
      int16_t* dst = s.x16.data() + ((y + g.pad_top) * p.wp + g.pad_left) * g.c;
      for (int64_t i = 0; i < g.w * g.c; ++i) dst[i] = static_cast<int16_t>(s.xf[y * g.w * g.c + i]);
    }
    int16_t* wpack = AlignedScratch(s.wpack16, s.wpack16_size, static_cast<size_t>(nw));
    for (int64_t k = 0; k < g.k; ++k) {
      for (int64_t t = 0; t < taps; ++t) {
        wpack[((k / 16) * taps + (t & ~int64_t{1})) * 16 + (k % 16) * 2 + (t & 1)] =
            static_cast<int16_t>(s.wf[k * taps + t]);
      }
    }
    p.xpad16 = s.x16.data();
    p.wpack16 = wpack;
    rep.reason += " (int16 pairwise multiply-add)";
    HWY_DYNAMIC_DISPATCH(DenseRowsI16)(p, 0, p.oh, 0, g.k);
  } else if (rep.kernel == ConvKernel::kDense) {
    // Padded NHWC input; weights [k / 16][taps][16].
    std::vector<float>& xpad = s.nz_w;  // reused as the padded input here
    xpad.assign(static_cast<size_t>(p.hp * p.wp * g.c), 0.0f);
    for (int64_t y = 0; y < g.h; ++y) {
      std::copy_n(s.xf.data() + y * g.w * g.c, g.w * g.c,
                  xpad.data() + ((y + g.pad_top) * p.wp + g.pad_left) * g.c);
    }
    float* wpack = AlignedScratch(s.wpack, s.wpack_size, static_cast<size_t>(nw));
    for (int64_t k = 0; k < g.k; ++k) {
      for (int64_t t = 0; t < taps; ++t) wpack[((k / 16) * taps + t) * 16 + k % 16] = s.wf[k * taps + t];
    }
    p.xpad = xpad.data();
    p.wpack = wpack;
    HWY_DYNAMIC_DISPATCH(DenseRows)(p, 0, p.oh, 0, g.k);
  } else {
    // Planar input per column phase, [sx][c][hp][wq], so a run of output pixels reads a
    // contiguous run of inputs for any stride; zeros past the edge cover whole vectors.
    const int64_t lanes = static_cast<int64_t>(HWY_DYNAMIC_DISPATCH(FloatLanes)());
    p.wq = AlignUp(p.ow, lanes * 4) + (g.kx - 1) / g.stride_x + 1;
    const int64_t plane = p.hp * p.wq;
    float* planar = AlignedScratch(s.wpack, s.wpack_size, static_cast<size_t>(g.stride_x * g.c * plane));
    std::fill_n(planar, g.stride_x * g.c * plane, 0.0f);
    for (int64_t y = 0; y < g.h; ++y) {
      const float* row = s.xf.data() + y * g.w * g.c;  // one input row stays in L1
      for (int64_t c = 0; c < g.c; ++c) {
        for (int64_t x = 0; x < g.w; ++x) {
          const int64_t col = x + g.pad_left;
          planar[((col % g.stride_x) * g.c + c) * plane + (y + g.pad_top) * p.wq + col / g.stride_x] =
              row[x * g.c + c];
        }
      }
    }
    s.nz_begin.assign(1, 0);
    s.nz_off.clear();
    s.nz_w.clear();
    for (int64_t k = 0; k < g.k; ++k) {
      int64_t t = 0;
      for (int64_t ky = 0; ky < g.ky; ++ky) {
        for (int64_t kx = 0; kx < g.kx; ++kx) {
          for (int64_t c = 0; c < g.c; ++c, ++t) {
            if (!s.visit[k * taps + t]) continue;
            s.nz_off.push_back(((kx % g.stride_x) * g.c + c) * plane + ky * p.wq + kx / g.stride_x);
            s.nz_w.push_back(s.wf[k * taps + t]);
          }
        }
      }
      s.nz_begin.push_back(static_cast<int64_t>(s.nz_off.size()));
    }
    p.xplanar = planar;
    p.nz_begin = s.nz_begin.data();
    p.nz_off = s.nz_off.data();
    p.nz_w = s.nz_w.data();
    HWY_DYNAMIC_DISPATCH(SparseRows)(p, 0, p.oh, 0, g.k);
  }
  return StoreOutput(task, std::move(out));
}

}  // namespace dpuemu
#endif  // HWY_ONCE
