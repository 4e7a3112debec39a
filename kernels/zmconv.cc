// Fast ZMConv (see zmconv.h). Layout of this file: the plan shared by all targets, the Highway
// microkernels (compiled once per target), then the dispatcher that validates, prepares and
// picks a kernel.

#ifndef DPUEMU_KERNELS_ZMCONV_PLAN_
#define DPUEMU_KERNELS_ZMCONV_PLAN_
#include <cstdint>
#include <cstring>

#include "hw/dtype.h"
#include "kernels/ppe.h"
#include "kernels/zmconv_x86.h"  // Transpose16x16 (the AVX3 target's block transpose)

namespace dpuemu {
namespace x86 {
struct IntPpe64;
}  // namespace x86
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
  const double* scale_d;        // mult * 2^-shift (exact in double)
  const double* scale_leaky_d;  // mult * lrelu_mult * 2^-(shift + lrelu_shift)
  // The dot-product tiers' int64 AVX-512 PPE (u8/i8 outputs), or null for EpilogueInt.
  const x86::IntPpe64* ppe64;
  // Dense kernel: input padded NHWC [hp][wp][c] (x - x_zp as float, padding 0); weights
  // [k / 16][taps][16].
  const float* xpad;
  int64_t hp, wp;
  const float* wpack;
  // Dense integer kernel: the same with int16 values; weights [k / 16][taps / 2][16][2] so one
  // 32-bit broadcast of two input channels meets two taps of 16 channels (pairwise multiply-add).
  const int16_t* xpad16;
  const int16_t* wpack16;
  // Sparse-weights kernel: input as rows of channel runs, [hp][sx][c][wq] (column phase, then
  // channel, then col / sx), so the rows one output row reads stay in cache; per output channel the
  // list of non-zero weights (offset into the planar input, value) in (ky, kx, c) order.
  const float* xplanar;
  int64_t wq;
  int64_t planar_row;  // elements per input row: sx * c * wq
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
#include "kernels/float_store-inl.h"  // StoreFloatAs

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

// The float PPE of accumulator vector `acc` (channels k..k + kN) to the output at `dst`.
HWY_INLINE void PpeFloatStore(const ConvPlan& p, VF acc, int64_t k, VF lo, VF hi, uint8_t* dst) {
  const DF d;
  // PpeFloat's order: bias (accumulator units), scale, leaky slope, clamp.
  VF x = hn::Mul(hn::Add(acc, hn::LoadU(d, p.fbias + k)), hn::LoadU(d, p.scale + k));
  if (p.ppe.leaky) x = hn::IfThenElse(hn::Lt(x, hn::Zero(d)), hn::Mul(x, hn::Set(d, p.ppe.alpha)), x);
  x = hn::IfThenElse(hn::Lt(x, lo), lo, x);  // comparisons keep NaN
  x = hn::IfThenElse(hn::Gt(x, hi), hi, x);
  StoreFloatAs(d, p.ppe.out, x, dst);
}

void EpilogueFloat(const ConvPlan& p, const float* tile, int64_t npix, int64_t k0, uint8_t* out) {
  const DF d;
  const int64_t eb = DTypeBytes(p.ppe.out);
  const VF lo = hn::Set(d, p.ppe.flo), hi = hn::Set(d, p.ppe.fhi);
  for (int64_t px = 0; px < npix; ++px) {
    for (size_t v = 0; v < kV; ++v) {
      const int64_t k = k0 + static_cast<int64_t>(v * kN);
      PpeFloatStore(p, hn::LoadU(d, tile + px * 16 + v * kN), k, lo, hi, out + (px * p.k + k) * eb);
    }
  }
}

#if HWY_TARGET == HWY_AVX2
// EpilogueInt for u8/i8 outputs in fewer operations, bit-identical to its generic loop: the clamp
// to [lo - zp, hi - zp] comes before the rounding (the bounds are integers, so the order does not
// matter), the rounding is half to even whatever the caller's MXCSR mode, and one pixel's 16
// channels are packed into one 16-byte store.
bool EpilogueIntAvx2(const ConvPlan& p, const int32_t* tile, int64_t npix, int64_t k0,
                     uint8_t* out) {
  const PpeParams& q = p.ppe;
  if (q.out != DType::kU8 && q.out != DType::kI8) return false;
  const bool leaky = q.leaky, u8 = q.out == DType::kU8;
  __m256d bias[4], scale[4], scale_leaky[4];
  for (int i = 0; i < 4; ++i) {
    bias[i] = _mm256_loadu_pd(p.bias_d + k0 + 4 * i);
    scale[i] = _mm256_loadu_pd(p.scale_d + k0 + 4 * i);
    scale_leaky[i] = leaky ? _mm256_loadu_pd(p.scale_leaky_d + k0 + 4 * i) : scale[i];
  }
  const __m256d lo = _mm256_set1_pd(static_cast<double>(q.lo) - q.out_zp);
  const __m256d hi = _mm256_set1_pd(static_cast<double>(q.hi) - q.out_zp);
  const __m128i zp = _mm_set1_epi16(static_cast<int16_t>(q.out_zp));
  // As in the generic loop: below 2^26 the leaky product is exact.
  const __m256d leaky_exact = _mm256_set1_pd(67108864.0);
  const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd();
  for (int64_t px = 0; px < npix; ++px) {
    const int32_t* a = tile + px * 16;
    uint8_t* dst = out + px * p.k + k0;
    __m128i r[4];
    bool exact = true;
    for (int i = 0; i < 4; ++i) {
      const __m256d v = _mm256_add_pd(
          _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 4 * i))), bias[i]);
      __m256d s = scale[i];
      if (leaky) {
        exact &= _mm256_movemask_pd(_mm256_cmp_pd(_mm256_andnot_pd(sign, v), leaky_exact,
                                                  _CMP_LT_OQ)) == 0xF;
        s = _mm256_blendv_pd(s, scale_leaky[i], _mm256_cmp_pd(v, zero, _CMP_LT_OQ));
      }
      const __m256d y = _mm256_min_pd(_mm256_max_pd(_mm256_mul_pd(v, s), lo), hi);
      r[i] = _mm256_cvttpd_epi32(_mm256_round_pd(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    if (!exact) {
      for (int64_t c = 0; c < 16; ++c) {
        dst[c] = static_cast<uint8_t>(PpeInt(a[c], p.bias[k0 + c], p.mult[k0 + c], p.shift[k0 + c], q));
      }
      continue;
    }
    const __m128i lo16 = _mm_add_epi16(_mm_packs_epi32(r[0], r[1]), zp);
    const __m128i hi16 = _mm_add_epi16(_mm_packs_epi32(r[2], r[3]), zp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                     u8 ? _mm_packus_epi16(lo16, hi16) : _mm_packs_epi16(lo16, hi16));
  }
  return true;
}
#endif

void EpilogueInt(const ConvPlan& p, const int32_t* tile, int64_t npix, int64_t k0, uint8_t* out) {
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
#if HWY_TARGET == HWY_AVX2
  if (EpilogueIntAvx2(p, tile, npix, k0, out)) return;
#endif
  const hn::CappedTag<double, 4> dd;
  const hn::Rebind<int32_t, decltype(dd)> di;
  const hn::Rebind<uint8_t, decltype(dd)> du8;
  const hn::Rebind<int8_t, decltype(dd)> di8;
  const size_t nd = hn::Lanes(dd);
  const auto zp = hn::Set(dd, q.out_zp), lo = hn::Set(dd, q.lo), hi = hn::Set(dd, q.hi);
  const auto zero = hn::Zero(dd);
  // acc + bias < 2^33 and mult * lrelu_mult < 2^27: below 2^26 the leaky product is exact too.
  const auto leaky_exact = hn::Set(dd, 67108864.0);
  // Locals, not plan fields: the byte stores below may alias anything, which would force the
  // compiler to reload every field after each store.
  const bool leaky = q.leaky, u8 = q.out == DType::kU8;
  const int64_t stride = p.k;
  const double* bias_d = p.bias_d + k0;
  const double* scale_d = p.scale_d + k0;
  const double* scale_leaky_d = p.scale_leaky_d + k0;
  for (int64_t px = 0; px < npix; ++px) {
    const int32_t* a = tile + px * 16;
    uint8_t* dst = out + px * stride + k0;
    for (size_t c = 0; c < 16; c += nd) {
      // (acc + bias) * mult * 2^-shift is exact in double; Round is half-to-even.
      const auto v = hn::Add(hn::PromoteTo(dd, hn::LoadU(di, a + c)), hn::LoadU(dd, bias_d + c));
      auto scale = hn::LoadU(dd, scale_d + c);
      if (leaky) {
        if (!hn::AllTrue(dd, hn::Lt(hn::Abs(v), leaky_exact))) {
          for (size_t i = 0; i < nd; ++i) {
            const int64_t k = k0 + static_cast<int64_t>(c + i);
            dst[c + i] = static_cast<uint8_t>(PpeInt(a[c + i], p.bias[k], p.mult[k], p.shift[k], q));
          }
          continue;
        }
        scale = hn::IfThenElse(hn::Lt(v, zero), hn::LoadU(dd, scale_leaky_d + c), scale);
      }
      const auto r = hn::DemoteTo(di, hn::Min(hn::Max(hn::Add(hn::Round(hn::Mul(v, scale)), zp), lo), hi));
      if (u8) {
        hn::StoreU(hn::DemoteTo(du8, r), du8, dst + c);
      } else {
        hn::StoreU(hn::DemoteTo(di8, r), di8, reinterpret_cast<int8_t*>(dst + c));
      }
    }
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
  // Integer layers flush the fp32 sums here; float layers go from registers to the epilogue
  // (no tile in memory: zeroing and copying it cost a sixth of a 1x1 layer's time).
  alignas(64) int32_t itile[MR * 16];
  VF acc[MR * kV];
  DPUEMU_UNROLL for (size_t i = 0; i < MR * kV; ++i) acc[i] = hn::Zero(d);
  if (p.integer) {
    const hn::RebindToSigned<DF> di;
    DPUEMU_UNROLL for (size_t i = 0; i < MR * kV; ++i) hn::Store(hn::Zero(di), di, itile + i * kN);
  }
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
  uint8_t* out = p.out + (oy * p.ow + ox0) * p.k * DTypeBytes(p.ppe.out);
  if (p.integer) {
    FlushToInt(acc, itile);
    EpilogueInt(p, itile, static_cast<int64_t>(MR), kb * 16, out);
    return;
  }
  const int64_t eb = DTypeBytes(p.ppe.out);
  const VF lo = hn::Set(d, p.ppe.flo), hi = hn::Set(d, p.ppe.fhi);
  DPUEMU_UNROLL for (size_t m = 0; m < MR; ++m) {
    DPUEMU_UNROLL for (size_t v = 0; v < kV; ++v) {
      const int64_t k = kb * 16 + static_cast<int64_t>(v * kN);
      PpeFloatStore(p, acc[m * kV + v], k, lo, hi, out + (static_cast<int64_t>(m) * p.k + k) * eb);
    }
  }
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

// Calls f(ox, width) over [begin, end) in tiles of at most mr pixels and nearly equal width
// (14 pixels by 12: 7 + 7, not 12 + 2): a narrow tile loads the same weights for fewer MACs.
template <class F>
HWY_INLINE void ForEachTile(int64_t begin, int64_t end, int64_t mr, const F& f) {
  const int64_t n = end - begin, tiles = (n + mr - 1) / mr;
  for (int64_t i = 0, ox = begin; i < tiles; ++i) {
    const int64_t width = n / tiles + (i < n % tiles ? 1 : 0);
    f(ox, width);
    ox += width;
  }
}

void DenseRows(const ConvPlan& p, int64_t oy_begin, int64_t oy_end, int64_t k_begin, int64_t k_end) {
  for (int64_t oy = oy_begin; oy < oy_end; ++oy) {
    for (int64_t kb = k_begin / 16; kb < k_end / 16; ++kb) {
      ForEachTile(0, p.ow, static_cast<int64_t>(kDenseMR),
                  [&](int64_t ox, int64_t n) { DenseTail<kDenseMR>(p, oy, ox, kb, n); });
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
// Writes the int32 sums of MR pixels x 16 channels to itile; the caller runs the epilogue over
// many tiles at once (its per-call setup costs as much as a few pixels of a 1x1 layer).
template <size_t MR>
HWY_NOINLINE void DenseTileI16(const ConvPlan& p, int64_t oy, int64_t ox0, int64_t kb,
                               int32_t* itile) {
  const hn::CappedTag<int32_t, 16> di;
  const hn::Repartition<int16_t, decltype(di)> d16;
  using VI = hn::Vec<decltype(di)>;
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
}

template <size_t MR>
HWY_INLINE void DenseTailI16(const ConvPlan& p, int64_t oy, int64_t ox, int64_t kb, int64_t n,
                             int32_t* itile) {
  if constexpr (MR > 1) {
    if (n < static_cast<int64_t>(MR)) return DenseTailI16<MR - 1>(p, oy, ox, kb, n, itile);
  }
  DenseTileI16<MR>(p, oy, ox, kb, itile);
}
#endif

void DenseRowsI16(const ConvPlan& p, int64_t oy_begin, int64_t oy_end, int64_t k_begin, int64_t k_end) {
#if HWY_TARGET != HWY_SCALAR
  constexpr int64_t kMR = static_cast<int64_t>(kDenseMR);
  constexpr int64_t kChunk = 10 * kMR;  // pixels per epilogue call
  alignas(64) int32_t itile[kChunk * 16];
  const int64_t eb = DTypeBytes(p.ppe.out);
  for (int64_t oy = oy_begin; oy < oy_end; ++oy) {
    for (int64_t kb = k_begin / 16; kb < k_end / 16; ++kb) {
      for (int64_t ox0 = 0; ox0 < p.ow; ox0 += kChunk) {
        const int64_t end = std::min(p.ow, ox0 + kChunk);
        ForEachTile(ox0, end, kMR, [&](int64_t ox, int64_t n) {
          DenseTailI16<kDenseMR>(p, oy, ox, kb, n, itile + (ox - ox0) * 16);
        });
        EpilogueInt(p, itile, end - ox0, kb * 16, p.out + (oy * p.ow + ox0) * p.k * eb);
      }
    }
  }
#else
  (void)p, (void)oy_begin, (void)oy_end, (void)k_begin, (void)k_end;
#endif
}

// ---- Sparse-weights kernel: P vectors of output pixels, one non-zero weight broadcast ----

// dst[i * 16 + kk] = src[kk * stride + i] for kN pixels i and 16 channels kk: one channel-major
// block of the sparse kernel's sums to the epilogue's [pixel][16] layout. Shuffles on AVX-512 (one
// 16 x 16 transpose) and AVX2 (two 8 x 8); a 1x1 layer's few non-zeros per channel made the
// element-wise copy cost more than the multiply-adds. Bits are moved, not values: int32 sums
// take the same path.
HWY_INLINE void TransposeBlock(const float* src, int64_t stride, float* dst) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  x86::Transpose16x16(src, stride, dst);
#elif HWY_TARGET == HWY_AVX2
  for (int h = 0; h < 2; ++h) {
    const float* s = src + h * 8 * stride;
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      const __m256 r0 = _mm256_loadu_ps(s + 2 * i * stride), r1 = _mm256_loadu_ps(s + (2 * i + 1) * stride);
      t[2 * i] = _mm256_unpacklo_ps(r0, r1);
      t[2 * i + 1] = _mm256_unpackhi_ps(r0, r1);
    }
    for (int g = 0; g < 2; ++g) {
      const __m256* tg = t + 4 * g;
      u[4 * g] = _mm256_shuffle_ps(tg[0], tg[2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * g + 1] = _mm256_shuffle_ps(tg[0], tg[2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * g + 2] = _mm256_shuffle_ps(tg[1], tg[3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * g + 3] = _mm256_shuffle_ps(tg[1], tg[3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
      _mm256_storeu_ps(dst + i * 16 + h * 8, _mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
      _mm256_storeu_ps(dst + (4 + i) * 16 + h * 8, _mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
    }
  }
#else
  for (size_t i = 0; i < kN; ++i) {
    for (int64_t kk = 0; kk < 16; ++kk) dst[i * 16 + static_cast<size_t>(kk)] = src[kk * stride + static_cast<int64_t>(i)];
  }
#endif
}

// The sparse kernel's planar input [hp][sx][c][wq] from the NHWC input (see RunZMConv). With
// stride 1 each input row is a [w][c] -> [c][w] transpose, done in blocks of 16 pixels x kN
// channels; only the padding is zeroed.
void PlanarInput(const float* src, int64_t h, int64_t w, int64_t c, int64_t pad_top, int64_t pad_left,
                 int64_t hp, int64_t sx, int64_t wq, const int64_t* col_offset, float* planar) {
  const int64_t row = sx * c * wq;
  const int64_t n = static_cast<int64_t>(kN);
  if (sx != 1 || c % n != 0) {
    std::fill_n(planar, hp * row, 0.0f);
    for (int64_t y = 0; y < h; ++y) {
      const float* s = src + y * w * c;
      float* dst_row = planar + (y + pad_top) * row;
      for (int64_t ch = 0; ch < c; ++ch) {
        float* dst = dst_row + ch * wq;
        for (int64_t x = 0; x < w; ++x) dst[col_offset[x]] = s[x * c + ch];
      }
    }
    return;
  }
  std::fill_n(planar, pad_top * row, 0.0f);
  std::fill_n(planar + (pad_top + h) * row, (hp - pad_top - h) * row, 0.0f);
  alignas(64) float block[16 * 16];
  for (int64_t y = 0; y < h; ++y) {
    const float* s = src + y * w * c;
    float* dst_row = planar + (y + pad_top) * row;
    for (int64_t ch = 0; ch < c; ++ch) {
      std::fill_n(dst_row + ch * wq, pad_left, 0.0f);
      std::fill_n(dst_row + ch * wq + pad_left + w, wq - pad_left - w, 0.0f);
    }
    int64_t x = 0;
    for (; x + 16 <= w; x += 16) {
      for (int64_t c0 = 0; c0 < c; c0 += n) {
        TransposeBlock(s + x * c + c0, c, block);  // block[i][16 pixels] = channel c0 + i
        for (int64_t i = 0; i < n; ++i) {
          std::copy_n(block + i * 16, 16, dst_row + (c0 + i) * wq + pad_left + x);
        }
      }
    }
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t xx = x; xx < w; ++xx) dst_row[ch * wq + pad_left + xx] = s[xx * c + ch];
    }
  }
}

// R output rows x P vectors of pixels share each broadcast weight (up to 4 accumulators).
template <size_t P, size_t R>
HWY_NOINLINE void SparseTile(const ConvPlan& p, int64_t oy, int64_t ox0, int64_t kb, int64_t npix) {
  const DF d;
  constexpr size_t kPix = P * kN;
  constexpr int64_t kRow = static_cast<int64_t>(R * kPix);  // one channel's sums, channel-major
  alignas(64) float ftile[R * kPix * 16];
  alignas(64) int32_t itile[R * kPix * 16];
  alignas(64) float cmf[16 * R * kPix];
  alignas(64) int32_t cmi[16 * R * kPix];
  const float* base[R];
  DPUEMU_UNROLL for (size_t r = 0; r < R; ++r) base[r] = p.xplanar + (oy + r) * p.sy * p.planar_row + ox0;
  if (p.integer) std::memset(cmi, 0, sizeof(cmi));
  for (int64_t kk = 0; kk < 16; ++kk) {
    const int64_t k = kb * 16 + kk;
    VF acc[R * P];
    DPUEMU_UNROLL for (size_t q = 0; q < R * P; ++q) acc[q] = hn::Zero(d);
    const int64_t end = p.nz_begin[k + 1];
    int64_t j = p.nz_begin[k];
    while (j < end) {
      const int64_t chunk_end = p.integer ? std::min(end, j + kFlushTaps) : end;
      for (; j < chunk_end; ++j) {
        const VF w = hn::Set(d, p.nz_w[j]);
        const int64_t off = p.nz_off[j];
        DPUEMU_UNROLL for (size_t r = 0; r < R; ++r) {
          DPUEMU_UNROLL for (size_t q = 0; q < P; ++q) {
            acc[r * P + q] = hn::MulAdd(hn::LoadU(d, base[r] + off + q * kN), w, acc[r * P + q]);
          }
        }
      }
      if (p.integer) FlushToInt(acc, cmi + kk * kRow);
    }
    if (!p.integer) {
      DPUEMU_UNROLL for (size_t q = 0; q < R * P; ++q) hn::Store(acc[q], d, cmf + kk * kRow + q * kN);
    }
  }
  const float* cm = p.integer ? reinterpret_cast<const float*>(cmi) : cmf;
  float* tile = p.integer ? reinterpret_cast<float*>(itile) : ftile;
  for (size_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < npix; i += static_cast<int64_t>(kN)) {
      TransposeBlock(cm + r * kPix + i, kRow, tile + (static_cast<int64_t>(r * kPix) + i) * 16);
    }
  }
  for (size_t r = 0; r < R; ++r) {
    Epilogue(p, ftile + r * kPix * 16, itile + r * kPix * 16, npix, oy + static_cast<int64_t>(r), ox0, kb * 16);
  }
}

constexpr size_t kSparseP = kV >= 4 ? 1 : 4;  // vectors of pixels per row segment (1 if scalar)

void SparseRows(const ConvPlan& p, int64_t oy_begin, int64_t oy_end, int64_t k_begin, int64_t k_end) {
  const int64_t seg = static_cast<int64_t>(kSparseP * kN);
  for (int64_t oy = oy_begin; oy < oy_end;) {
    // Narrow rows take several rows per tile so each weight still feeds 4 vectors.
    const int64_t vecs_row = (std::min(seg, p.ow) + static_cast<int64_t>(kN) - 1) / static_cast<int64_t>(kN);
    const int64_t rows = kSparseP == 4 ? std::min<int64_t>(std::max<int64_t>(1, 4 / vecs_row), oy_end - oy) : 1;
    for (int64_t kb = k_begin / 16; kb < k_end / 16; ++kb) {
      for (int64_t ox = 0; ox < p.ow; ox += seg) {
        const int64_t n = std::min(seg, p.ow - ox);
        const int64_t vecs = (n + static_cast<int64_t>(kN) - 1) / static_cast<int64_t>(kN);
        if constexpr (kSparseP == 4) {
          switch (vecs * 8 + rows) {
            case 8 + 1: SparseTile<1, 1>(p, oy, ox, kb, n); break;
            case 8 + 2: SparseTile<1, 2>(p, oy, ox, kb, n); break;
            case 8 + 3: SparseTile<1, 3>(p, oy, ox, kb, n); break;
            case 8 + 4: SparseTile<1, 4>(p, oy, ox, kb, n); break;
            case 16 + 1: SparseTile<2, 1>(p, oy, ox, kb, n); break;
            case 16 + 2: SparseTile<2, 2>(p, oy, ox, kb, n); break;
            case 24 + 1: SparseTile<3, 1>(p, oy, ox, kb, n); break;
            default: SparseTile<4, 1>(p, oy, ox, kb, n); break;
          }
        } else {
          SparseTile<kSparseP, 1>(p, oy, ox, kb, n);
        }
      }
    }
    oy += rows;
  }
}

// fp16 -> fp32 for n elements, exactly as HalfToFloat. Inf/NaN lanes are rebuilt from their bits:
// Highway 1.0.3's emulated conversion (targets without F16C) gets them wrong, and F16C would set
// the quiet bit of signalling NaNs.
void HalfToFloatN(const uint16_t* src, int64_t n, float* dst) {
  const DF df;
  const hn::Rebind<uint32_t, DF> du;
  const hn::Rebind<uint16_t, DF> d16;
  const hn::Rebind<hwy::float16_t, DF> dh;
  int64_t i = 0;
  for (; i + static_cast<int64_t>(kN) <= n; i += kN) {
    const auto h = hn::LoadU(d16, src + i);
    const auto h32 = hn::PromoteTo(du, h);
    auto bits = hn::BitCast(du, hn::PromoteTo(df, hn::BitCast(dh, h)));
    const auto special = hn::Eq(hn::And(h32, hn::Set(du, 0x7C00u)), hn::Set(du, 0x7C00u));
    const auto rebuilt = hn::Or(hn::Or(hn::ShiftLeft<16>(hn::And(h32, hn::Set(du, 0x8000u))),
                                       hn::Set(du, 0x7F800000u)),
                                hn::ShiftLeft<13>(hn::And(h32, hn::Set(du, 0x3FFu))));
    bits = hn::IfThenElse(special, rebuilt, bits);
    hn::StoreU(hn::BitCast(df, bits), df, dst + i);
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + i, 2);
    dst[i] = HalfToFloat(h);
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
#include <cstdlib>
#include <limits>
#include <mutex>
#include <type_traits>
#include <vector>

#include "hw/formats.h"
#include "hw/fp_env.h"
#include "kernels/bitmap.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "kernels/zmconv_x86.h"

namespace dpuemu {

HWY_EXPORT(HasFusedMulAdd);
HWY_EXPORT(DenseRows);
HWY_EXPORT(DenseRowsI16);
HWY_EXPORT(HasPairwiseInt16);
HWY_EXPORT(SparseRows);
HWY_EXPORT(PlanarInput);
HWY_EXPORT(FloatLanes);
HWY_EXPORT(HalfToFloatN);
HWY_EXPORT(IsaName);
HWY_EXPORT(EpilogueInt);

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

// Row length of the sparse kernel's planar input: whole vectors of the widest target (16 lanes)
// past the last output pixel, so non-zero offsets do not depend on the CPU target. No more: a
// 14-pixel row padded to 64 made a 3x3 layer's rows four times larger than L1 holds.
int64_t PlanarRow(const NceGeometry& g) { return AlignUp(g.out_w(), 16) + (g.kx - 1) / g.stride_x + 1; }
int64_t PaddedH(const NceGeometry& g) { return g.h + g.pad_top + g.pad_bottom; }
int64_t PaddedW(const NceGeometry& g) { return g.w + g.pad_left + g.pad_right; }

// n elements of type t as the kernels consume them: x - zp (integer types) or the float value.
template <typename Out>
void ConvertElements(DType t, const uint8_t* src, int64_t n, int32_t zp, Out* dst) {
  switch (t) {
    case DType::kU8:
    case DType::kU4:  // host tensors hold one int4 per byte
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Out>(int32_t{src[i]} - zp);
      break;
    case DType::kI8:
    case DType::kI4:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Out>(int32_t{static_cast<int8_t>(src[i])} - zp);
      break;
    case DType::kFP16:
      if constexpr (std::is_same_v<Out, float>) {
        HWY_DYNAMIC_DISPATCH(HalfToFloatN)(reinterpret_cast<const uint16_t*>(src), n, dst);
      } else {
        for (int64_t i = 0; i < n; ++i) {
          uint16_t h;
          std::memcpy(&h, src + 2 * i, 2);
          dst[i] = static_cast<Out>(HalfToFloat(h));
        }
      }
      break;
    default:  // bf16
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = static_cast<Out>(BF16ToFloat(h));
      }
      break;
  }
}

// Smallest and largest non-zero magnitude; false if any value is inf/NaN.
bool MagnitudeRange(const float* v, int64_t n, float* lo, float* hi) {
  // On the magnitudes' bits, whose integer order is their float order: a branch-free loop the
  // compiler vectorizes (it runs over the input whenever the kernel differs from the storage).
  constexpr uint32_t kInf = 0x7f800000;
  uint32_t mn = kInf, mx = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t a;
    std::memcpy(&a, v + i, 4);
    a &= 0x7fffffff;
    mx = std::max(mx, a);
    mn = std::min(mn, a == 0 ? kInf : a);
  }
  if (mx >= kInf) return false;  // inf or NaN
  std::memcpy(lo, &mn, 4);
  std::memcpy(hi, &mx, 4);
  return true;
}

// Whether weights prepared for op `a` serve op `b`: the prepared layouts do not depend on the
// input height or the vertical pads (the row slices of one layer differ only there), so those
// may differ.
bool SameWeightsOp(const NceOp& a, const NceOp& b) {
  const NceGeometry &x = a.g, &y = b.g;
  return x.w == y.w && x.c == y.c && x.k == y.k && x.ky == y.ky && x.kx == y.kx &&
         x.stride_y == y.stride_y && x.stride_x == y.stride_x &&
         x.pad_left == y.pad_left && x.pad_right == y.pad_right &&
         a.in_dtype == b.in_dtype && a.w_dtype == b.w_dtype && a.out_dtype == b.out_dtype &&
         a.in_zp == b.in_zp && a.w_zp == b.w_zp && a.ppe.out_zp == b.ppe.out_zp &&
         a.ppe.leaky_relu == b.ppe.leaky_relu && a.ppe.lrelu_mult == b.ppe.lrelu_mult &&
         a.ppe.lrelu_shift == b.ppe.lrelu_shift &&
         FloatBits(a.ppe.lrelu_alpha) == FloatBits(b.ppe.lrelu_alpha) && a.ppe.clamp_lo == b.ppe.clamp_lo &&
         a.ppe.clamp_hi == b.ppe.clamp_hi;
}

// Per-thread buffers reused across calls: no allocation (and no page faults) on the hot path.
struct Scratch {
  std::vector<uint8_t> gathered;
  std::vector<float> xf;
  std::vector<int64_t> col_offset;
  hwy::AlignedFreeUniquePtr<float[]> xbuf, wbuf;
  hwy::AlignedFreeUniquePtr<int16_t[]> x16;
  size_t xbuf_size = 0, wbuf_size = 0, x16_size = 0;
};

template <typename T>
T* Grow(hwy::AlignedFreeUniquePtr<T[]>& buf, size_t& size, size_t n) {
  if (size < n) {
    buf = hwy::AllocateAligned<T>(n);
    size = n;
  }
  return buf.get();
}

// Weights [k][taps] -> [k / 16][taps][16] (dense fp32 kernel).
void PackDense(const float* wf, int64_t k, int64_t taps, float* out) {
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t t = 0; t < taps; ++t) out[((i / 16) * taps + t) * 16 + i % 16] = wf[i * taps + t];
  }
}

// The integer tier wanted: KernelOptions::isa, else DPUEMU_ISA, else auto (the fastest). A tier
// named explicitly must be one this CPU runs.
StatusOr<x86::IntTier> CeilingTier(const KernelOptions& options) {
  std::string name = options.isa;
  const char* env = std::getenv("DPUEMU_ISA");
  const std::string source = !name.empty() ? "KernelOptions::isa" : "DPUEMU_ISA";
  if (name.empty() && env != nullptr) name = env;
  if (name.empty() || name == "auto") return x86::IntTier::kAmx;
  for (x86::IntTier t : {x86::IntTier::kAmx, x86::IntTier::kAvx512Vnni, x86::IntTier::kAvxVnni,
                         x86::IntTier::kAvx2, x86::IntTier::kHighway}) {
    if (name != x86::IntTierName(t)) continue;
    std::string why;
    if (!x86::TierAvailable(t, &why)) {
      return InvalidArgument("isa: " + source + " asks for '" + name + "' (" + x86::IntTierIsaName(t) +
                             ") but " + why);
    }
#if !(HWY_TARGETS & HWY_AVX2)
    if (t == x86::IntTier::kAvx2) {
      return InvalidArgument("isa: " + source + " asks for 'avx2' but this build has no Highway AVX2 target");
    }
#endif
    return t;
  }
  return InvalidArgument("isa: " + source + " has unknown tier '" + name +
                         "' (expected auto|amx|avx512vnni|avxvnni|avx2|highway)");
}

// The integer dense tier that runs: the fastest at or below `ceiling` that the CPU has; `note`
// gathers why faster tiers were passed over.
x86::IntTier ChooseIntTier(x86::IntTier ceiling, std::string* note) {
  for (x86::IntTier t : {x86::IntTier::kAmx, x86::IntTier::kAvx512Vnni, x86::IntTier::kAvxVnni}) {
    if (static_cast<int>(t) < static_cast<int>(ceiling)) continue;
    std::string why;
    if (x86::TierAvailable(t, &why)) return t;
    *note += std::string("; not ") + x86::IntTierIsaName(t) + ": " + why;
  }
  return ceiling == x86::IntTier::kAvx2 ? x86::IntTier::kAvx2 : x86::IntTier::kHighway;
}

bool IsDotProductTier(x86::IntTier t) {
  return t == x86::IntTier::kAmx || t == x86::IntTier::kAvx512Vnni || t == x86::IntTier::kAvxVnni;
}

// The dot-product tiers hand their compensated accumulators to the shared integer PPE.
void EpilogueToPlan(const void* ctx, int32_t* tile, int64_t npix, int64_t pix0, int64_t k0,
                    const int32_t* comp16, const uint32_t* pixel) {
  const ConvPlan& p = *static_cast<const ConvPlan*>(ctx);
  if (p.ppe64 != nullptr) {
    return x86::PpeIntAvx512(*p.ppe64, tile, npix, k0, p.k, p.out + pix0 * p.k, comp16, pixel);
  }
  x86::Compensate(tile, npix, comp16, pixel);
  HWY_DYNAMIC_DISPATCH(EpilogueInt)(p, tile, npix, k0, p.out + pix0 * p.k * DTypeBytes(p.ppe.out));
}

}  // namespace

// Integer weight types whose bytes are signed (host tensors hold one int4 per byte).
static bool SignedIntWeights(DType t) { return t == DType::kI8 || t == DType::kI4; }

struct PreparedWeights::Impl {
  NceOp op;
  std::vector<uint8_t> weights, weight_map, weight_table;  // what this was prepared from
  bool weights_sparse = false;
  ChannelQuant quant;
  std::vector<double> bias_d, scale_d, scale_leaky_d;
  // The dense weights [k][taps] as stored (w, not w - w_zp): the packed layouts are made from it.
  Tensor wdense;
  double density = 1.0;
  bool w_finite = true;
  float wmin = 0, wmax = 0;
  hwy::AlignedFreeUniquePtr<float[]> wpack;      // float layers: dense kernel layout
  x86::IntPpe64 ppe64;                           // integer layers, u8/i8 outputs: PpeIntAvx512's table
  std::vector<WeightTableEntry> table;           // decoded weight table (sparse storage: map offsets)
  int64_t planar_row = 0;                        // the sparse kernel's input row, PlanarRow(g)

  // Integer layers: w - w_zp of weight i of the [k][taps] weights.
  int32_t IntW(int64_t i) const {
    const uint8_t b = wdense.bytes[static_cast<size_t>(i)];
    return (SignedIntWeights(op.w_dtype) ? int32_t{static_cast<int8_t>(b)} : int32_t{b}) - op.w_zp;
  }
  // Float layers (fp16, bf16 or weight-only integer weights): weight i as ConvertElements gives it.
  float FloatW(int64_t i) const {
    float v;
    ConvertElements(op.w_dtype, wdense.bytes.data() + i * DTypeBytes(op.w_dtype), 1, op.w_zp, &v);
    return v;
  }
  // Layouts only some kernels read, made on first use (once, thread-safe): a run pays for its
  // kernel's alone (integer layers keep one byte per weight until then).
  // Integer layers, int16 kernel: [k / 16][taps / 2][16][2].
  const int16_t* Pack16() const {
    std::call_once(pack16_once_, [this] {
      const int64_t taps = op.g.taps();
      wpack16_ = hwy::AllocateAligned<int16_t>(static_cast<size_t>(op.g.k * taps));
      for (int64_t k = 0; k < op.g.k; ++k) {
        int16_t* dst = wpack16_.get() + (k / 16) * taps * 16 + (k % 16) * 2;
        for (int64_t t = 0; t < taps; ++t) dst[(t & ~int64_t{1}) * 16 + (t & 1)] = static_cast<int16_t>(IntW(k * taps + t));
      }
    });
    return wpack16_.get();
  }
  // Integer layers, dot-product tiers.
  const x86::VnniWeights& Vnni() const {
    std::call_once(vnni_once_, [this] {
      vnni_ = x86::PackVnniWeights(wdense.bytes.data(), SignedIntWeights(op.w_dtype), op.w_zp, op.g.k, op.g.taps());
    });
    return vnni_;
  }
  // Integer layers, sparse weights on AVX-512 VNNI.
  const x86::VnniSparseWeights& VnniSparse() const {
    std::call_once(vnni_sparse_once_, [this] {
      const NceGeometry& g = op.g;
      vnni_sparse_ = x86::PackVnniSparse(wdense.bytes.data(), SignedIntWeights(op.w_dtype), op.w_zp, g.k, g.ky,
                                         g.kx, g.c, g.out_w());
    });
    return vnni_sparse_;
  }
  // Whether the sparse-weights kernel visits weight t of channel k: present in the map (sparse
  // storage), or different from the zero point (dense storage: w - w_zp != 0, or bits != 0).
  bool Visited(int64_t k, int64_t t) const {
    if (weights_sparse) return MapBit(weight_map.data() + table[k].sparsity_ptr, t);
    const int64_t i = k * op.g.taps() + t;
    return IsIntegerPath(op) ? IntW(i) != 0 : FloatBits(FloatW(i)) != 0;
  }
  // Sparse-weights kernel: per channel the visited weights, in (ky, kx, c) order, as offsets
  // into the planar input (rows of PlanarRow) and values.
  struct NonZeros {
    std::vector<int64_t> begin, off;
    std::vector<float> w;
  };
  const NonZeros& Nz() const {
    std::call_once(nz_once_, [this] {
      const NceGeometry& g = op.g;
      const int64_t wq = planar_row / (g.stride_x * g.c);
      nz_.begin.push_back(0);
      for (int64_t k = 0; k < g.k; ++k) {
        int64_t t = 0;
        for (int64_t ky = 0; ky < g.ky; ++ky) {
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            for (int64_t c = 0; c < g.c; ++c, ++t) {
              if (!Visited(k, t)) continue;
              nz_.off.push_back(ky * planar_row + ((kx % g.stride_x) * g.c + c) * wq + kx / g.stride_x);
              const int64_t i = k * g.taps() + t;
              nz_.w.push_back(IsIntegerPath(op) ? static_cast<float>(IntW(i)) : FloatW(i));
            }
          }
        }
        nz_.begin.push_back(static_cast<int64_t>(nz_.off.size()));
      }
    });
    return nz_;
  }

 private:
  mutable std::once_flag pack16_once_, vnni_once_, vnni_sparse_once_, nz_once_;
  mutable x86::VnniSparseWeights vnni_sparse_;
  mutable hwy::AlignedFreeUniquePtr<int16_t[]> wpack16_;
  mutable x86::VnniWeights vnni_;
  mutable NonZeros nz_;
};

double PreparedWeights::weight_density() const { return impl_->density; }

StatusOr<PreparedWeights> PreparedWeights::Create(const DpuTask& task, const Target& target) {
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, target));
  auto impl = std::make_shared<Impl>();
  Impl& w = *impl;
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  w.op = op;
  w.weights = task.weights;
  w.weight_map = task.weight_map;
  w.weight_table = task.weight_table;
  w.weights_sparse = task.weights_sparse();
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, DecodeWeightTable(task.weight_table, g.k));
  Tensor w_t;
  DPUEMU_ASSIGN_OR_RETURN(w_t, simd::DecompressWeights(task.weights, task.weight_map, task.weight_table, g,
                                                 op.w_dtype, op.w_zp));
  DPUEMU_ASSIGN_OR_RETURN(w.quant, WeightTableQuant(op, table));
  const bool integer = IsIntegerPath(op);
  for (int64_t k = 0; integer && k < g.k; ++k) {
    w.bias_d.push_back(w.quant.bias[k]);
    w.scale_d.push_back(std::ldexp(static_cast<double>(w.quant.mult[k]), -w.quant.shift[k]));
    w.scale_leaky_d.push_back(std::ldexp(static_cast<double>(w.quant.mult[k]) * op.ppe.lrelu_mult,
                                         -(w.quant.shift[k] + op.ppe.lrelu_shift)));
  }
  const int64_t taps = g.taps(), nw = g.k * taps;
  w.wdense = std::move(w_t);
  if (integer) {
    if (op.out_dtype == DType::kU8 || op.out_dtype == DType::kI8) {
      const PpeParams pp = ResolvePpe(op);
      w.ppe64 = x86::MakeIntPpe64(w.quant.bias.data(), w.quant.mult.data(), w.quant.shift.data(), g.k,
                                  pp.leaky, pp.lrelu_mult, pp.lrelu_shift, pp.lo, pp.hi, pp.out_zp);
    }
  } else {
    // Converted 16 channels at a time straight into the dense kernel's layout.
    w.wpack = hwy::AllocateAligned<float>(static_cast<size_t>(nw));
    std::vector<float> rows(static_cast<size_t>(16 * taps));
    for (int64_t k0 = 0; k0 < g.k; k0 += 16) {
      const int64_t n = std::min<int64_t>(16, g.k - k0);
      ConvertElements(op.w_dtype, w.wdense.bytes.data() + k0 * taps * DTypeBytes(op.w_dtype), n * taps,
                      op.w_zp, rows.data());
      PackDense(rows.data(), n, taps, w.wpack.get() + k0 * taps);
    }
    // Only the float kernel choice reads the weights' magnitude range (any order will do).
    w.w_finite = MagnitudeRange(w.wpack.get(), nw, &w.wmin, &w.wmax);
  }
  // The density the kernel choice reads: the weights the sparse-weights kernel would visit.
  w.table = std::move(table);
  w.planar_row = g.stride_x * g.c * PlanarRow(g);
  // Counted as Visited() decides, in loops the compiler vectorizes: w - w_zp != 0 is byte !=
  // w_zp's byte (w_zp lies in the type's range), a float weight is visited when its bits are not 0.
  int64_t visited = 0;
  if (w.weights_sparse) {
    for (int64_t k = 0; k < g.k; ++k) {
      for (int64_t t = 0; t < taps; ++t) visited += MapBit(w.weight_map.data() + w.table[k].sparsity_ptr, t);
    }
  } else if (IsInteger(op.w_dtype)) {  // integer layers and weight-only integer weights
    const uint8_t zb = static_cast<uint8_t>(op.w_zp);
    const uint8_t* b = w.wdense.bytes.data();
    for (int64_t i = 0; i < nw; ++i) visited += b[i] != zb;
  } else {  // fp16 and bf16 convert +0.0 alone to float bits 0
    for (int64_t i = 0; i < nw; ++i) {
      uint16_t h;
      std::memcpy(&h, w.wdense.bytes.data() + 2 * i, 2);
      visited += h != 0;
    }
  }
  w.density = static_cast<double>(visited) / static_cast<double>(nw);
  PreparedWeights out;
  out.impl_ = std::move(impl);
  return out;
}

// The kernel's dense output in the task's output storage.
static StatusOr<DpuOutput> FinishOutput(const DpuTask& task, Tensor out);

StatusOr<DpuOutput> RunZMConv(const DpuTask& task, const Target& target, const KernelOptions& options,
                              KernelReport* report, const PreparedWeights* prepared) {
  const ScopedDpuFpEnv fp_env;
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, target));
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  const bool integer = IsIntegerPath(op);
  KernelReport local;
  KernelReport& rep = report ? *report : local;
  rep = KernelReport();
  rep.isa = HWY_DYNAMIC_DISPATCH(IsaName)();
  x86::IntTier ceiling;
  DPUEMU_ASSIGN_OR_RETURN(ceiling, CeilingTier(options));

  // bf16 products can leave the fp32 range, so mul-then-add differs from FMA there; targets
  // without a fused multiply-add run the reference instead.
  if (op.in_dtype == DType::kBF16 && !HWY_DYNAMIC_DISPATCH(HasFusedMulAdd)()) {
    rep.reason = "bf16 needs a fused multiply-add, which this CPU target lacks: ran the reference";
    return RunReference(task, target);
  }

  PreparedWeights own;
  if (prepared == nullptr) {
    DPUEMU_ASSIGN_OR_RETURN(own, PreparedWeights::Create(task, target));
    prepared = &own;
  }
  const PreparedWeights::Impl& w = prepared->impl();
  if (!SameWeightsOp(w.op, op) || w.weights != task.weights || w.weight_map != task.weight_map ||
      w.weight_table != task.weight_table) {
    return InvalidArgument("prepared weights: made from a different op or weight buffers than the task");
  }
  thread_local Scratch s;

  // The input as the DPU reads it. A dense input without SE pointers is read in place.
  const int64_t nx = g.h * g.w * g.c;
  const uint8_t* x_bytes = task.input_tiles[0].data();
  if (!task.input_map.empty() || !task.se_table.empty() ||
      static_cast<int64_t>(task.input_tiles[0].size()) != nx * DTypeBytes(op.in_dtype)) {
    s.gathered.resize(static_cast<size_t>(nx * DTypeBytes(op.in_dtype)));
    DPUEMU_RETURN_IF_ERROR(simd::GatherRows(task.input_view(), op.in_dtype, {g.h, g.w, g.c}, op.in_zp,
                                            0, g.h, MutableByteSpan(s.gathered.data(), s.gathered.size())));
    x_bytes = s.gathered.data();
  }
  // Float inputs are converted now (the kernel choice looks at them); integer ones only when a
  // kernel needs them as fp32.
  if (!integer) {
    s.xf.resize(static_cast<size_t>(nx));
    ConvertElements(op.in_dtype, x_bytes, nx, op.in_zp, s.xf.data());
  }

  // Kernel choice. Integer results never depend on it. Float ones differ only through the skip
  // of absent weights, which cannot show unless an input is inf/NaN or a product of non-zero
  // factors leaves the normal fp32 range (then -0.0 or rounding can appear); the input is only
  // scanned for that when the wanted kernel differs from the one the storage implies.
  rep.weight_density = w.density;
  const ConvKernel storage_kernel = w.weights_sparse ? ConvKernel::kSparseWeights : ConvKernel::kDense;
  // The sparse kernel is fp32 FMA over pixels; the integer dense kernel does twice the MACs per
  // instruction (int16 pairs), so integer layers need sparser weights to gain.
  const double max_density = integer ? kSparseKernelMaxDensityInt : kSparseKernelMaxDensityFloat;
  // Per output channel the sparse kernel pays a fixed cost (its 16-channel tile transpose); with
  // few non-zeros per channel the integer dense kernel stays ahead (measured on r50_1x1_56).
  std::string tier_note;
  // The x86 integer tiers (AMX-INT8, VNNI, AVX2: zmconv_x86.cc) pack each tap's channels in
  // 16-channel groups; the compressed convolution (C = 4, IsCompressedConv) runs the Highway
  // integer kernel, which takes any C (bit-exact: tests/compress_conv_test.cc).
  if (integer && g.c % 16 != 0 && ceiling != x86::IntTier::kHighway) {
    ceiling = x86::IntTier::kHighway;
    tier_note += "; not the x86 integer tiers: C = " + std::to_string(g.c) +
                 " (compressed convolution) is not a multiple of 16, ran the Highway kernel";
  }
  const x86::IntTier tier = integer ? ChooseIntTier(ceiling, &tier_note) : x86::IntTier::kHighway;
  // Measured on the benchmark layers (README, Integer tiers): the dot-product tiers' dense kernel
  // outruns the fp32 sparse-weights kernel at every benchmark sparsity (up to 90%).
  // On the AVX-512 tiers (AMX hosts have VNNI too), sparse integer weights with stride 1 in x
  // take the VNNI sparse-weights kernel (zmconv_x86.h); elsewhere the dot-product tiers' dense
  // kernel outruns the fp32 sparse-weights kernel at every benchmark sparsity (up to 90%).
  std::string why_not;
  const bool vnni_sparse = integer && (tier == x86::IntTier::kAvx512Vnni || tier == x86::IntTier::kAmx) &&
                           g.stride_x == 1 && x86::TierAvailable(x86::IntTier::kAvx512Vnni, &why_not);
  const bool dot_dense = IsDotProductTier(tier) && !vnni_sparse;
  const double max_density_here = vnni_sparse ? kSparseKernelMaxDensityVnni : max_density;
  const bool few_nonzeros = integer && !vnni_sparse &&
                            w.density * static_cast<double>(g.taps()) < kSparseKernelMinNonzerosInt;
  const ConvKernel wanted = options.kernel != ConvKernel::kAuto ? options.kernel
                            : dot_dense                         ? ConvKernel::kDense
                            : w.density < max_density_here && !few_nonzeros ? ConvKernel::kSparseWeights
                                                                             : ConvKernel::kDense;
  bool free_choice = integer || wanted == storage_kernel;
  if (!free_choice && w.w_finite) {
    float xmin, xmax;
    free_choice = MagnitudeRange(s.xf.data(), nx, &xmin, &xmax) &&
                  (xmax == 0 || w.wmax == 0 ||
                   (double{xmin} * w.wmin >= std::numeric_limits<float>::min() &&
                    double{xmax} * w.wmax <= std::numeric_limits<float>::max()));
  }
  char density[96];
  std::snprintf(density, sizeof(density), "weight density %.1f%%", 100 * w.density);
  const std::string threshold = std::to_string(static_cast<int>(100 * max_density_here)) + "%";
  if (!free_choice && options.kernel != ConvKernel::kAuto) {
    return InvalidArgument(std::string("kernel: '") + ConvKernelName(options.kernel) +
                           "' would change the result: the input holds inf/NaN or products "
                           "outside the normal fp32 range, where only the '" +
                           ConvKernelName(storage_kernel) + "' kernel matches the weights' storage");
  }
  rep.kernel = free_choice ? wanted : storage_kernel;
  if (options.kernel != ConvKernel::kAuto) {
    rep.reason = std::string("forced by the caller; ") + density;
  } else if (!free_choice) {
    rep.reason = std::string("float input with inf/NaN or extreme products: the kernel must match "
                             "the weights' storage; ") + density;
  } else if (dot_dense) {
    rep.reason = std::string(density) + ": the " + x86::IntTierIsaName(tier) +
                 " dense kernel is faster than the sparse-weights kernel at any density";
  } else if (wanted == ConvKernel::kSparseWeights) {
    rep.reason = std::string(density) + " < " + threshold + ": work proportional to the non-zeros";
  } else if (few_nonzeros && w.density < max_density_here) {
    rep.reason = std::string(density) + " but fewer than " +
                 std::to_string(static_cast<int>(kSparseKernelMinNonzerosInt)) +
                 " non-zeros per output channel: the dense kernel is faster";
  } else {
    rep.reason = std::string(density) + " >= " + threshold + ": the dense kernel is faster";
  }

  ConvPlan p{};
  p.oh = g.out_h(); p.ow = g.out_w(); p.k = g.k; p.c = g.c; p.ky = g.ky; p.kx = g.kx;
  p.sy = g.stride_y; p.sx = g.stride_x; p.taps = g.taps();
  p.integer = integer;
  p.ppe = ResolvePpe(op);
  p.scale = w.quant.scale.data(); p.fbias = w.quant.fbias.data();
  p.bias = w.quant.bias.data(); p.mult = w.quant.mult.data(); p.shift = w.quant.shift.data();
  p.bias_d = w.bias_d.data(); p.scale_d = w.scale_d.data(); p.scale_leaky_d = w.scale_leaky_d.data();
  p.hp = PaddedH(g);
  p.wp = PaddedW(g);

  Tensor out(op.out_dtype, {p.oh, p.ow, g.k});
  p.out = out.bytes.data();
  const size_t padded = static_cast<size_t>(p.hp * p.wp * g.c);

  const bool sparse_vnni_run = vnni_sparse && rep.kernel == ConvKernel::kSparseWeights;
  if (integer && IsDotProductTier(tier) && (rep.kernel == ConvKernel::kDense || sparse_vnni_run)) {
    x86::VnniConv a{};
    a.x = x_bytes;
    a.x_signed = op.in_dtype == DType::kI8;
    a.x_zp = op.in_zp;
    a.h = g.h; a.w = g.w; a.c = g.c; a.pad_top = g.pad_top; a.pad_left = g.pad_left;
    a.hp = p.hp; a.wp = p.wp;
    a.ky = g.ky; a.kx = g.kx; a.sy = g.stride_y; a.sx = g.stride_x; a.oh = p.oh; a.ow = p.ow;
    a.weights = sparse_vnni_run ? nullptr : &w.Vnni();
    a.epilogue = EpilogueToPlan;
    a.ctx = &p;
    // The AMX and AVX-512 VNNI tiers' CPUs have AVX-512F: their PPE runs in exact int64 there.
    const bool ppe64 = (tier == x86::IntTier::kAmx || tier == x86::IntTier::kAvx512Vnni) &&
                       !w.ppe64.mult[0].empty() && x86::HasAvx512Ppe();
    p.ppe64 = ppe64 ? &w.ppe64 : nullptr;
    const std::string ppe_note = ppe64 ? ", exact PPE on AVX-512 (double, int64 with leaky ReLU)" : "";
    if (sparse_vnni_run) {
      const x86::VnniSparseWeights& sw = w.VnniSparse();
      rep.isa = x86::IntTierIsaName(x86::IntTier::kAvx512Vnni);
      char quads[64];
      std::snprintf(quads, sizeof(quads), "%.1f%% of the 4-channel quads", 100 * sw.density);
      rep.reason += std::string(" (u8 x i8 dot products over ") + quads + ", w - w_zp split into two bytes" +
                    ppe_note + tier_note + ")";
      x86::RunVnniSparse(a, sw);
      return FinishOutput(task, std::move(out));
    }
    rep.isa = x86::IntTierIsaName(tier);
    rep.reason += std::string(" (u8 x i8 dot products with zero-point compensation") + ppe_note +
                  (a.weights->z != 0 ? ", w - w_zp shifted by " + std::to_string(a.weights->z) + " with a per-pixel term" : "") +
                  tier_note + ")";
    x86::RunVnniTier(tier, a);
    return FinishOutput(task, std::move(out));
  }
  const bool int16_dense = rep.kernel == ConvKernel::kDense && integer &&
                           (tier == x86::IntTier::kAvx2 || HWY_DYNAMIC_DISPATCH(HasPairwiseInt16)());
  if (integer && !int16_dense) {
    s.xf.resize(static_cast<size_t>(nx));
    ConvertElements(op.in_dtype, x_bytes, nx, op.in_zp, s.xf.data());
  }
  if (int16_dense) {
    // Padded NHWC int16 input (padding = x_zp, i.e. 0 after the shift).
    int16_t* x16 = Grow(s.x16, s.x16_size, padded);
    std::fill_n(x16, padded, int16_t{0});
    for (int64_t y = 0; y < g.h; ++y) {
      ConvertElements(op.in_dtype, x_bytes + y * g.w * g.c, g.w * g.c, op.in_zp,
                      x16 + ((y + g.pad_top) * p.wp + g.pad_left) * g.c);
    }
    p.xpad16 = x16;
    p.wpack16 = w.Pack16();
    rep.reason += " (int16 pairwise multiply-add" + tier_note + ")";
#if HWY_TARGETS & HWY_AVX2
    if (tier == x86::IntTier::kAvx2) {
      rep.isa = "AVX2";
      N_AVX2::DenseRowsI16(p, 0, p.oh, 0, g.k);
    } else
#endif
    {
      HWY_DYNAMIC_DISPATCH(DenseRowsI16)(p, 0, p.oh, 0, g.k);
    }
  } else if (rep.kernel == ConvKernel::kDense) {
    if (p.hp == g.h && p.wp == g.w) {
      p.xpad = s.xf.data();  // no padding: the converted input is the padded input
    } else {
      float* xpad = Grow(s.xbuf, s.xbuf_size, padded);
      std::fill_n(xpad, padded, 0.0f);
      for (int64_t y = 0; y < g.h; ++y) {
        std::copy_n(s.xf.data() + y * g.w * g.c, g.w * g.c, xpad + ((y + g.pad_top) * p.wp + g.pad_left) * g.c);
      }
      p.xpad = xpad;
    }
    if (w.wpack) {
      p.wpack = w.wpack.get();
    } else {  // integer layer on a target without int16 pairs
      const int64_t nw = g.k * g.taps();
      float* wf = Grow(s.wbuf, s.wbuf_size, 2 * static_cast<size_t>(nw));
      for (int64_t i = 0; i < nw; ++i) wf[nw + i] = static_cast<float>(w.IntW(i));
      PackDense(wf + nw, g.k, g.taps(), wf);
      p.wpack = wf;
    }
    HWY_DYNAMIC_DISPATCH(DenseRows)(p, 0, p.oh, 0, g.k);
  } else {
    // Input as [hp][sx][c][wq]: a run of output pixels reads a contiguous run of inputs for any
    // stride, and zeros past the edge cover whole vectors.
    p.wq = PlanarRow(g);
    p.planar_row = g.stride_x * g.c * p.wq;
    const size_t n = static_cast<size_t>(p.hp * p.planar_row);
    float* planar = Grow(s.xbuf, s.xbuf_size, n);
    // Where input column x lands within a row (no division per element).
    s.col_offset.resize(static_cast<size_t>(g.w));
    for (int64_t x = 0; x < g.w; ++x) {
      const int64_t col = x + g.pad_left;
      s.col_offset[x] = (col % g.stride_x) * g.c * p.wq + col / g.stride_x;
    }
    HWY_DYNAMIC_DISPATCH(PlanarInput)(s.xf.data(), g.h, g.w, g.c, g.pad_top, g.pad_left, p.hp, g.stride_x,
                                      p.wq, s.col_offset.data(), planar);
    p.xplanar = planar;
    const PreparedWeights::Impl::NonZeros& nz = w.Nz();
    p.nz_begin = nz.begin.data();
    p.nz_off = nz.off.data();
    p.nz_w = nz.w.data();
    HWY_DYNAMIC_DISPATCH(SparseRows)(p, 0, p.oh, 0, g.k);
  }
  return FinishOutput(task, std::move(out));
}

static StatusOr<DpuOutput> FinishOutput(const DpuTask& task, Tensor out) {
  const NceOp& op = task.op;
  if (!task.output_sparse) return StoreOutput(task, std::move(out));
  // The output unit's sparse storage, encoded with the SIMD encoder (same bytes as StoreOutput).
  SparseActivations sa;
  DPUEMU_ASSIGN_OR_RETURN(sa, simd::EncodeSparseActivations(out, op.ppe.out_zp, task.output_se_size));
  DpuOutput result;
  result.se_size = task.output_se_size;
  result.data = Tensor(out.dtype, out.shape);
  result.data.bytes = std::move(sa.data);
  result.map = std::move(sa.map);
  return result;
}

}  // namespace dpuemu
#endif  // HWY_ONCE
