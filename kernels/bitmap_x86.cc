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

#include <cstdint>
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
// For lambdas, whose operator() the pragma may not reach.
#define HWY_ATTR_VBMI2 __attribute__((always_inline, target(DPUEMU_VBMI2_TARGET)))

namespace dpuemu {
namespace bitmap_x86 {
namespace {

// The low min(n, 64) bits (n >= 0). bzhi reads only the index's low byte, hence the clamp.
DPUEMU_VBMI2_INLINE uint64_t LowMask(int64_t n) {
  return _bzhi_u64(~uint64_t{0}, static_cast<unsigned>(n < 64 ? n : 64));
}

// n <= 64 map bits from bit pos on (all inside the map); reads no byte at or past map_end.
DPUEMU_VBMI2_INLINE uint64_t MapBits(const uint8_t* map, const uint8_t* map_end, int64_t pos,
                                     int64_t n) {
  const uint8_t* p = map + (pos >> 3);
  const unsigned shift = static_cast<unsigned>(pos & 7);
  uint64_t w;
  if (HWY_LIKELY(map_end - p >= 9)) {
    std::memcpy(&w, p, 8);
    if (shift != 0) w = (w >> shift) | (uint64_t{p[8]} << (64 - shift));
  } else {
    // The map's last bytes: a masked load of the ones the bits need (at most 9, all inside).
    const int64_t need = (shift + n + 7) >> 3;
    const __m128i v = _mm_maskz_loadu_epi8(static_cast<__mmask16>(LowMask(need)), p);
    w = static_cast<uint64_t>(_mm_cvtsi128_si64(v));
    if (shift != 0) {
      w = (w >> shift) | (static_cast<uint64_t>(_mm_extract_epi64(v, 1)) << (64 - shift));
    }
  }
  return _bzhi_u64(w, static_cast<unsigned>(n));
}

// The first min(bytes, 64) bytes. Masked whatever the length: as fast as plain ones on the cores with VBMI2, and branch-free.
DPUEMU_VBMI2_INLINE __m512i LoadN(const uint8_t* p, int64_t bytes) {
  return _mm512_maskz_loadu_epi8(LowMask(bytes), p);
}

DPUEMU_VBMI2_INLINE void StoreN(uint8_t* p, int64_t bytes, __m512i v) {
  _mm512_mask_storeu_epi8(p, LowMask(bytes), v);
}

// The packed run's next `bytes` (<= 64) bytes at p, the lanes past them unspecified: a plain
// load where 64 bytes are readable (below `end`), else masked. The masked load waits for its mask
// (from the popcount); the plain one needs only p (1.1-1.4x on a micro-benchmark of the gather
// loop on Zen 4, noisy).
DPUEMU_VBMI2_INLINE __m512i LoadPacked(const uint8_t* p, const uint8_t* end, int64_t bytes) {
  if (HWY_LIKELY(end - p >= 64)) return _mm512_loadu_si512(p);
  return LoadN(p, bytes);
}

// The kernel bundle of kernels/bitmap_drivers.inc for kEb-byte elements; kZp: 1-byte elements
// whose absent value (the zero point) is not 0.
template <int kEb, bool kZp>
struct Vbmi2Kernels {
  static_assert(kEb == 1 || kEb == 2, "1- or 2-byte elements");
  static constexpr int64_t kLanes = 64 / kEb;  // elements per step
  uint8_t zp;
  static constexpr int64_t eb() { return kEb; }
  static DPUEMU_VBMI2_INLINE int64_t Pop64(uint64_t w) {
    return static_cast<int64_t>(_mm_popcnt_u64(w));
  }

  // `count` elements to dst: element j is the next packed element from src where map bit
  // bit0 + j is set, else absent. Reads src only through its packed run.
  DPUEMU_VBMI2_INLINE void Expand(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                                  const uint8_t* map_end, int64_t bit0, int64_t count,
                                  uint8_t* dst) const {
    const __m512i absent = _mm512_set1_epi8(static_cast<char>(zp));
    for (int64_t j = 0; j < count; j += kLanes, dst += 64) {
      const int64_t n = count - j < kLanes ? count - j : kLanes;
      const uint64_t bits = MapBits(map, map_end, bit0 + j, n);
      const int64_t packed = kEb * static_cast<int64_t>(_mm_popcnt_u64(bits));
      const __m512i v = LoadPacked(src, src_end, packed);
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
  // zero point for 1-byte elements, bit pattern 0 for 2-byte ones, as IsZeroPoint defines it;
  // kByValue, for weights: +-0.0 both absent, as IsWeightZero defines it for fp16/bf16).
  template <bool kByValue = false>
  DPUEMU_VBMI2_INLINE void MakeMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    const __m512i absent = _mm512_set1_epi8(static_cast<char>(kEb == 1 ? zp : 0));
    const __m512i magnitude = _mm512_set1_epi16(0x7FFF);
    for (int64_t j = 0; j < count; j += kLanes, src += 64) {
      const int64_t n = count - j < kLanes ? count - j : kLanes;
      __m512i v = LoadN(src, n * kEb);
      if (kEb == 2 && kByValue) v = _mm512_and_si512(v, magnitude);
      const uint64_t bits = (kEb == 1 ? _mm512_cmpneq_epi8_mask(v, absent)
                                      : uint64_t{_mm512_cmpneq_epi16_mask(v, absent)}) &
                            LowMask(n);
      std::memcpy(map + j / 8, &bits, static_cast<size_t>((n + 7) / 8));
    }
  }
  DPUEMU_VBMI2_INLINE void MakeWeightMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    MakeMap</*kByValue=*/true>(src, count, map);
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

// ---- Paths of their own where the 64-byte step allows better than the shared drivers ----

// The gather when SEs start on map bytes (se a multiple of 8) and are either at most one step
// (se * kEb <= 64: the SE sizes DefaultSeSize picks for C <= 64 / kEb) or whole steps: map
// loads at known offsets, one expand and one store per step, no tail logic. Every store but the
// last is a plain 64-byte one: a short SE's store runs into the next SE's output, which that SE
// then overwrites (the stores go in order). Else the shared driver.
template <int kEb, bool kZp>
HWY_NOINLINE void GatherSesImpl(const Vbmi2Kernels<kEb, kZp>& kernels, const ActivationView& view,
                                int64_t s_begin, int64_t s_end, uint8_t* out) {
  constexpr int64_t kLanes = 64 / kEb;
  const int64_t se = view.se_size;
  const int64_t slot_bytes = se * kEb;
  if (se % 8 != 0 || (slot_bytes > 64 && slot_bytes % 64 != 0)) {
    return ExpandSes(kernels, view, s_begin, s_end, out);
  }
  const ByteSpan* tiles = view.tiles.data();
  const int32_t* table = view.se_table.empty() ? nullptr : view.se_table.data();
  const uint8_t* map = view.map.data();
  const uint8_t* map_end = map + view.map.size();
  uint8_t* const out_end = out + (s_end - s_begin) * slot_bytes;
  const int64_t step_lanes = se < kLanes ? se : kLanes;
  const __m512i absent = _mm512_set1_epi8(static_cast<char>(kernels.zp));
  // One step at map bit `pos` from the packed bytes at src (readable below src_end) to dst;
  // returns the bytes read. Away from the end (!edge: 8 map bytes and 64 output bytes from
  // here on are the view's and the caller's) without the two end checks.
  const auto step = [&](const uint8_t* src, const uint8_t* src_end, int64_t pos, uint8_t* dst,
                        bool edge, bool src_room = false) HWY_ATTR_VBMI2 {
    const uint8_t* mp = map + (pos >> 3);
    uint64_t bits;
    if (!edge || HWY_LIKELY(map_end - mp >= 8)) {
      std::memcpy(&bits, mp, 8);
      bits = _bzhi_u64(bits, static_cast<unsigned>(step_lanes));
    } else {
      bits = MapBits(map, map_end, pos, step_lanes);
    }
    const int64_t packed = kEb * static_cast<int64_t>(_mm_popcnt_u64(bits));
    const __m512i v = src_room ? _mm512_loadu_si512(src) : LoadPacked(src, src_end, packed);
    __m512i dense;
    if (kEb == 2) {
      dense = _mm512_maskz_expand_epi16(static_cast<__mmask32>(bits), v);
    } else if (kZp) {
      dense = _mm512_mask_expand_epi8(absent, bits, v);
    } else {
      dense = _mm512_maskz_expand_epi8(bits, v);
    }
    if (!edge || HWY_LIKELY(out_end - dst >= 64)) {
      _mm512_storeu_si512(dst, dense);
    } else {
      StoreN(dst, out_end - dst, dense);
    }
    return packed;
  };
  const auto slot_src = [&](int64_t s, const uint8_t*& src_end) {
    if (!table) {
      src_end = tiles[0].end();
      return tiles[0].data() + s * slot_bytes;
    }
    const SePointer p = DecodeSePointer(table[s]);
    src_end = tiles[p.tile].end();
    return tiles[p.tile].data() + p.offset;
  };
  const uint8_t* src_end;
  if (slot_bytes <= 64) {  // one step per SE: a flat loop
    // The last 8 SEs are the edge: 8 SEs hold at least 64 map bits and 64 output bytes.
    const int64_t inner_end = s_end - 8 > s_begin ? s_end - 8 : s_begin;
    int64_t s = s_begin;
    for (; s < inner_end; ++s, out += slot_bytes) {
      const uint8_t* src = slot_src(s, src_end);
      step(src, src_end, s * se, out, /*edge=*/false);
    }
    for (; s < s_end; ++s, out += slot_bytes) {
      const uint8_t* src = slot_src(s, src_end);
      step(src, src_end, s * se, out, /*edge=*/true);
    }
    return;
  }
  // Whole steps: every SE but the last has the next one's map bits and its own output after it,
  // and a slot with 64 readable bytes past it needs no check on its loads.
  for (int64_t s = s_begin; s < s_end; ++s) {
    const uint8_t* src = slot_src(s, src_end);
    const bool edge = s == s_end - 1;
    if (!edge && src_end - src >= slot_bytes + 64) {
      for (int64_t j = 0; j < se; j += kLanes, out += 64) {
        src += step(src, src_end, s * se + j, out, false, /*src_room=*/true);
      }
    } else if (!edge) {
      for (int64_t j = 0; j < se; j += kLanes, out += 64) {
        src += step(src, src_end, s * se + j, out, false);
      }
    } else {
      for (int64_t j = 0; j < se; j += kLanes, out += 64) {
        src += step(src, src_end, s * se + j, out, true);
      }
    }
  }
}

// ORs n <= 64 map bits into the zeroed map at bit pos (a neighbouring SE may share the bytes at
// either end when se is not a multiple of 8); touches only the bytes those bits lie in.
DPUEMU_VBMI2_INLINE void OrMapBits(uint8_t* map, int64_t pos, int64_t n, uint64_t bits) {
  uint8_t* p = map + (pos >> 3);
  const unsigned shift = static_cast<unsigned>(pos & 7);
  if (shift == 0 && n % 8 == 0) {  // whole bytes of this SE only
    _mm_mask_storeu_epi8(p, static_cast<__mmask16>(LowMask(n / 8)),
                         _mm_cvtsi64_si128(static_cast<int64_t>(bits)));
    return;
  }
  const __mmask16 m = static_cast<__mmask16>(LowMask((shift + n + 7) >> 3));
  const uint64_t lo = bits << shift, hi = shift == 0 ? 0 : bits >> (64 - shift);
  const __m128i old = _mm_maskz_loadu_epi8(m, p);
  _mm_mask_storeu_epi8(p, m, _mm_or_si128(old, _mm_set_epi64x(static_cast<int64_t>(hi),
                                                               static_cast<int64_t>(lo))));
}

// The encode in one pass into the zeroed `data` (n * kEb bytes and 16 of room, ending at
// data_end) and map: per 64-byte step of each SE the compare gives the map bits, which compress
// the step into the slot and go to the map. A compressed step is its packed elements then
// zeros, so storing all 64 bytes leaves every byte past the packed run 0: no tail to clear, and
// a store that runs into the next slot writes zeros there before that slot's own stores. Only a
// store that would pass data_end is masked. Same output as the shared driver's PackSes.
template <int kEb, bool kZp>
HWY_NOINLINE void EncodeSesImpl(const Vbmi2Kernels<kEb, kZp>& kernels, const uint8_t* src,
                                int64_t n, int64_t se, uint8_t* data, uint8_t* data_end,
                                uint8_t* map) {
  constexpr int64_t kLanes = 64 / kEb;
  const int64_t slot_bytes = se * kEb;
  const __m512i absent = _mm512_set1_epi8(static_cast<char>(kEb == 1 ? kernels.zp : 0));
  const auto compress = [&](__m512i v, uint64_t bits, uint8_t* dst) HWY_ATTR_VBMI2 {
    const __m512i c = kEb == 1 ? _mm512_maskz_compress_epi8(bits, v)
                               : _mm512_maskz_compress_epi16(static_cast<__mmask32>(bits), v);
    if (HWY_LIKELY(data_end - dst >= 64)) {
      _mm512_storeu_si512(dst, c);
    } else {
      StoreN(dst, data_end - dst, c);
    }
    return kEb * static_cast<int64_t>(_mm_popcnt_u64(bits));
  };
  if (se % kLanes == 0) {
    // Whole steps: plain loads, and each step's bits are whole map bytes of its own.
    for (int64_t s = 0; s < n / se; ++s, data += slot_bytes) {
      uint8_t* dst = data;
      for (int64_t j = 0; j < se; j += kLanes, src += 64) {
        const __m512i v = _mm512_loadu_si512(src);
        const uint64_t bits = kEb == 1 ? _mm512_cmpneq_epi8_mask(v, absent)
                                       : uint64_t{_mm512_cmpneq_epi16_mask(v, absent)};
        std::memcpy(map + (s * se + j) / 8, &bits, kLanes / 8);
        dst += compress(v, bits, dst);
      }
    }
    return;
  }
  for (int64_t s = 0; s < n / se; ++s, src += slot_bytes, data += slot_bytes) {
    uint8_t* dst = data;
    for (int64_t j = 0; j < se; j += kLanes) {
      const int64_t m = se - j < kLanes ? se - j : kLanes;
      const __m512i v = LoadN(src + j * kEb, m * kEb);
      const uint64_t bits = (kEb == 1 ? _mm512_cmpneq_epi8_mask(v, absent)
                                      : uint64_t{_mm512_cmpneq_epi16_mask(v, absent)}) &
                            LowMask(m);
      OrMapBits(map, s * se + j, m, bits);
      dst += compress(v, bits, dst);
    }
  }
}

// Calls body(kernels) with the bundle for this element type (1 or 2 bytes) and zero point.
template <class Body>
DPUEMU_VBMI2_INLINE void WithKernels(DType dtype, int32_t zp, const Body& body) {
  const uint8_t zp8 = static_cast<uint8_t>(zp);
  if (DTypeBytes(dtype) == 2) return body(Vbmi2Kernels<2, false>{0});  // absent is 0 whatever zp
  if (zp8 != 0) return body(Vbmi2Kernels<1, true>{zp8});
  body(Vbmi2Kernels<1, false>{0});
}

}  // namespace

bool SePointersPass(const ActivationView& view, int64_t slot_bytes, int64_t s_begin,
                    int64_t s_end) {
  const int64_t tiles = static_cast<int64_t>(view.tiles.size());
  if (tiles > 15) return false;  // lane 15 is the sentinel; the reference loop decides
  // Per tile the largest offset a slot may start at, clamped to int32 (offsets are below 2^24);
  // -1 (every offset fails) for tiles past the count.
  alignas(64) int32_t room[16];
  for (int64_t t = 0; t < 16; ++t) {
    int64_t r = t < tiles ? static_cast<int64_t>(view.tiles[t].size()) - slot_bytes : -1;
    if (r < -1) r = -1;
    room[t] = static_cast<int32_t>(r < INT32_MAX ? r : INT32_MAX);
  }
  const __m512i room_v = _mm512_load_si512(room);
  const __m512i unused = _mm512_set1_epi32(static_cast<int32_t>(0xE0000000u));  // bits [31:29]
  const __m512i tile_bits = _mm512_set1_epi32(0x1FF), last = _mm512_set1_epi32(15);
  const __m512i offset_bits = _mm512_set1_epi32(0xFFFFF << 4);  // DATA_PTR x 16 = (e >> 5)
  const int32_t* table = view.se_table.data();
  __mmask16 bad = 0;
  // The maskz forms: GCC 12 warns about the unmasked ones' undefined pass-through operand.
  for (int64_t s = s_begin; s < s_end; s += 16) {
    const __mmask16 lanes = static_cast<__mmask16>(LowMask(s_end - s));
    const __m512i e = _mm512_maskz_loadu_epi32(lanes, table + s);
    const __m512i tile = _mm512_maskz_min_epu32(lanes, _mm512_and_si512(e, tile_bits), last);
    const __m512i offset = _mm512_and_si512(_mm512_maskz_srli_epi32(lanes, e, 5), offset_bits);
    const __m512i tile_room = _mm512_maskz_permutexvar_epi32(lanes, tile, room_v);
    bad |= _mm512_mask_test_epi32_mask(lanes, e, unused) |
           _mm512_mask_cmpgt_epi32_mask(lanes, offset, tile_room);
  }
  return bad == 0;
}

void GatherSes(const ActivationView& view, DType dtype, int32_t zp, int64_t s_begin,
               int64_t s_end, uint8_t* out) {
  WithKernels(dtype, zp, [&](const auto& kernels) {
    GatherSesImpl(kernels, view, s_begin, s_end, out);
  });
}

bool DecompressChannels(ByteSpan data, ByteSpan map, const uint8_t* table, int64_t k,
                        int64_t taps, int64_t map_per_k, DType dtype, int32_t zp, uint8_t* out) {
  bool ok = false;
  WithKernels(dtype, zp, [&](const auto& kernels) {
    ok = ExpandChannelsChecked(kernels, data, map, table, k, taps, map_per_k, out);
  });
  return ok;
}

void EncodeSes(const uint8_t* src, DType dtype, int64_t n, int32_t zp, int64_t se, uint8_t* data,
               uint8_t* map, int64_t /*map_bytes*/) {
  WithKernels(dtype, zp, [&](const auto& kernels) {
    EncodeSesImpl(kernels, src, n, se, data, data + n * kernels.eb() + 16, map);
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
