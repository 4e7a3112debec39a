// The AVX-512 VBMI2 path of the bitmap kernels (kernels/bitmap.h): 64 bytes per step.
//   expand   (packed + map bits -> dense): vpexpandb / vpexpandw from a register, absent lanes
//            zero or (1-byte elements) the zero point through the merge-masked form;
//   compress (dense -> packed): vpcompressb / vpcompressw into a register, then a masked store
//            of exactly the packed bytes (vpcompress* straight to memory is microcoded and slow
//            on Intel cores, and an unmasked store would overrun the caller's 16 bytes of room);
//   map      vpcmpneqb / vpcmpneqw against the absent value, straight into a mask register.
// Every load and store past a run's end is masked: the packed run is read only through its
// popcount, the map only through the bits asked for, and dense output gets exact lengths.
// Compiled with the target pragma below (no per-ISA flags in BUILD); the callers in
// kernels/bitmap.cc run it only where Vbmi2CpuSupported().
#include "kernels/bitmap_x86.h"

#if DPUEMU_BITMAP_VBMI2

#include <immintrin.h>

#include <cstring>

#include "hw/formats.h"
#include "hw/layer.h"
#include "hwy/base.h"  // HWY_NOINLINE, for the shared drivers

// The target of every function below, templates included (the shared drivers are instantiated
// here): GCC's target pragma, clang's attribute region.
#define DPUEMU_VBMI2_TARGET "avx512f,avx512bw,avx512vl,avx512vbmi2,bmi2,popcnt"
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target(DPUEMU_VBMI2_TARGET))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vbmi2,bmi2,popcnt")  // = DPUEMU_VBMI2_TARGET
#endif
#define DPUEMU_VBMI2_INLINE inline __attribute__((always_inline, target(DPUEMU_VBMI2_TARGET)))

namespace dpuemu {
namespace bitmap_x86 {
namespace {

// The low n bits (0 <= n <= 64): bzhi keeps all 64 for n = 64.
DPUEMU_VBMI2_INLINE uint64_t LowMask(int64_t n) {
  return _bzhi_u64(~uint64_t{0}, static_cast<unsigned>(n));
}

// n <= 64 map bits from bit pos on (all inside the map); reads no byte at or past map_end.
DPUEMU_VBMI2_INLINE uint64_t MapBits(const uint8_t* map, const uint8_t* map_end, int64_t pos,
                                     int64_t n) {
  const uint8_t* p = map + (pos >> 3);
  const unsigned shift = static_cast<unsigned>(pos & 7);
  __m128i v;
  if (HWY_LIKELY(map_end - p >= 16)) {
    v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    const int64_t need = (shift + n + 7) >> 3;  // at most 9 bytes, all inside the map
    v = _mm_maskz_loadu_epi8(static_cast<__mmask16>(LowMask(need)), p);
  }
  uint64_t w = static_cast<uint64_t>(_mm_cvtsi128_si64(v));
  if (shift != 0) {
    w = (w >> shift) | (static_cast<uint64_t>(_mm_extract_epi64(v, 1)) << (64 - shift));
  }
  return _bzhi_u64(w, static_cast<unsigned>(n));
}

DPUEMU_VBMI2_INLINE __m512i LoadN(const uint8_t* p, int64_t bytes) {
  return bytes >= 64 ? _mm512_loadu_si512(p)
                     : _mm512_maskz_loadu_epi8(LowMask(bytes), p);
}

DPUEMU_VBMI2_INLINE void StoreN(uint8_t* p, int64_t bytes, __m512i v) {
  if (bytes >= 64) {
    _mm512_storeu_si512(p, v);
  } else {
    _mm512_mask_storeu_epi8(p, LowMask(bytes), v);
  }
}

// The kernel bundle of kernels/bitmap_drivers.inc for kEb-byte elements; kZp: 1-byte elements
// whose absent value (the zero point) is not 0.
template <int kEb, bool kZp>
struct Vbmi2Kernels {
  static_assert(kEb == 1 || kEb == 2, "1- or 2-byte elements");
  static constexpr int64_t kLanes = 64 / kEb;  // elements per step
  uint8_t zp;
  static constexpr int64_t eb() { return kEb; }

  // `count` elements to dst: element j is the next packed element from src where map bit
  // bit0 + j is set, else absent. Reads src only through its packed run.
  DPUEMU_VBMI2_INLINE void Expand(const uint8_t* src, const uint8_t*, const uint8_t* map,
                                  const uint8_t* map_end, int64_t bit0, int64_t count,
                                  uint8_t* dst) const {
    const __m512i absent = _mm512_set1_epi8(static_cast<char>(zp));
    for (int64_t j = 0; j < count; j += kLanes, dst += 64) {
      const int64_t n = count - j < kLanes ? count - j : kLanes;
      const uint64_t bits = MapBits(map, map_end, bit0 + j, n);
      const int64_t packed = kEb * static_cast<int64_t>(_mm_popcnt_u64(bits));
      const __m512i v = LoadN(src, packed);
      __m512i out;
      if (kEb == 2) {
        out = _mm512_maskz_expand_epi16(static_cast<__mmask32>(bits), v);
      } else if (kZp) {
        out = _mm512_mask_expand_epi8(absent, bits, v);
      } else {
        out = _mm512_maskz_expand_epi8(bits, v);
      }
      StoreN(dst, n * kEb, out);
      src += packed;
    }
  }

  // The byte-aligned map of the `count` elements of src (present = not the absent value: the
  // zero point for 1-byte elements, bit pattern 0 for 2-byte ones, as IsZeroPoint defines it).
  DPUEMU_VBMI2_INLINE void MakeMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    const __m512i absent = _mm512_set1_epi8(static_cast<char>(kEb == 1 ? zp : 0));
    for (int64_t j = 0; j < count; j += kLanes, src += 64) {
      const int64_t n = count - j < kLanes ? count - j : kLanes;
      const __m512i v = LoadN(src, n * kEb);
      const uint64_t bits = (kEb == 1 ? _mm512_cmpneq_epi8_mask(v, absent)
                                      : uint64_t{_mm512_cmpneq_epi16_mask(v, absent)}) &
                            LowMask(n);
      std::memcpy(map + j / 8, &bits, static_cast<size_t>((n + 7) / 8));
    }
  }

  // Packs the elements of src[0, count) whose map bit bit0 + j is set to dst; returns the bytes
  // packed, and writes nothing past them.
  DPUEMU_VBMI2_INLINE int64_t Compress(const uint8_t* src, const uint8_t*, const uint8_t* map,
                                       const uint8_t* map_end, int64_t bit0, int64_t count,
                                       uint8_t* dst) const {
    uint8_t* const start = dst;
    for (int64_t j = 0; j < count; j += kLanes, src += 64) {
      const int64_t n = count - j < kLanes ? count - j : kLanes;
      const uint64_t bits = MapBits(map, map_end, bit0 + j, n);
      const __m512i v = LoadN(src, n * kEb);
      const __m512i packed = kEb == 1
                                 ? _mm512_maskz_compress_epi8(bits, v)
                                 : _mm512_maskz_compress_epi16(static_cast<__mmask32>(bits), v);
      const int64_t bytes = kEb * static_cast<int64_t>(_mm_popcnt_u64(bits));
      StoreN(dst, bytes, packed);
      dst += bytes;
    }
    return dst - start;
  }

  DPUEMU_VBMI2_INLINE void Clear(uint8_t* p, int64_t n) const {
    for (int64_t i = 0; i < n; i += 64) StoreN(p + i, n - i, _mm512_setzero_si512());
  }
};

#include "kernels/bitmap_drivers.inc"  // IWYU pragma: keep

// Calls body(kernels) with the bundle for this element type (1 or 2 bytes) and zero point.
template <class Body>
DPUEMU_VBMI2_INLINE void WithKernels(DType dtype, int32_t zp, const Body& body) {
  const uint8_t zp8 = static_cast<uint8_t>(zp);
  if (DTypeBytes(dtype) == 2) return body(Vbmi2Kernels<2, false>{0});  // absent is 0 whatever zp
  if (zp8 != 0) return body(Vbmi2Kernels<1, true>{zp8});
  body(Vbmi2Kernels<1, false>{0});
}

}  // namespace

void GatherSes(const ActivationView& view, DType dtype, int32_t zp, int64_t s_begin,
               int64_t s_end, uint8_t* out) {
  WithKernels(dtype, zp, [&](const auto& kernels) {
    ExpandSes(kernels, view, s_begin, s_end, out);
  });
}

void DecompressChannels(ByteSpan data, ByteSpan map, const WeightTableEntry* entries, int64_t k,
                        int64_t taps, int64_t map_per_k, DType dtype, int32_t zp, uint8_t* out) {
  WithKernels(dtype, zp, [&](const auto& kernels) {
    ExpandChannels(kernels, data, map, entries, k, taps, map_per_k, out);
  });
}

void EncodeSes(const uint8_t* src, DType dtype, int64_t n, int32_t zp, int64_t se, uint8_t* data,
               uint8_t* map, int64_t map_bytes) {
  WithKernels(dtype, zp, [&](const auto& kernels) {
    PackSes(kernels, src, n, se, data, map, map_bytes);
  });
}

int64_t CompressChannels(const uint8_t* src, DType dtype, int64_t k, int64_t taps, int32_t zp,
                         int64_t map_per_k, uint8_t* data, uint8_t* map, uint32_t* data_offset,
                         int64_t* nonzeros) {
  int64_t used = 0;
  WithKernels(dtype, zp, [&](const auto& kernels) {
    used = PackChannels(kernels, src, k, taps, map_per_k, data, map, data_offset, nonzeros);
  });
  return used;
}

}  // namespace bitmap_x86
}  // namespace dpuemu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace dpuemu {
namespace bitmap_x86 {

bool Vbmi2CpuSupported() {
  // libgcc's / compiler-rt's detection also checks that the OS saves the zmm and mask state.
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("bmi2") &&
                         __builtin_cpu_supports("popcnt");
  return ok;
}

}  // namespace bitmap_x86
}  // namespace dpuemu

#else  // !DPUEMU_BITMAP_VBMI2

namespace dpuemu {
namespace bitmap_x86 {
bool Vbmi2CpuSupported() { return false; }
}  // namespace bitmap_x86
}  // namespace dpuemu

#endif  // DPUEMU_BITMAP_VBMI2
