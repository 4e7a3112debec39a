// Per-target bitmap kernels of the table path (compiled once per Highway target through
// foreach_target.h) and the public entry points of kernels/bitmap.h (in the HWY_ONCE block at the
// end), which send 1- and 2-byte elements to the AVX-512 VBMI2 path (kernels/bitmap_x86.cc)
// where the CPU has it and the path setting allows it.
//
// Layout invariants the kernels rely on, established before any byte is read: every packed run
// lies inside its buffer, every map bit read lies inside the map. The Check* functions of
// hw/formats.h establish them, except two per-item loops done here in faster form, with the
// reference check run again for its message whenever they refuse: the SE pointers of a gather
// (SePointersPass, one pass before the gather) and each weight channel's table entry and map
// (ExpandChannelsChecked, kernels/bitmap_drivers.inc, just before the channel is expanded). Loads of 16 bytes that would cross a buffer's end are staged through a local copy, and
// dense outputs are written with exact lengths, so nothing outside the caller's buffers is
// touched. Compressing stores may run up to 16 bytes past the packed end, writing zeros into
// space the caller reserves and later overwrites or trims.

// The non-target part, compiled once although foreach_target.h includes this file per target.
#ifndef DPUEMU_KERNELS_BITMAP_CC_ONCE_
#define DPUEMU_KERNELS_BITMAP_CC_ONCE_

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "hw/formats.h"
#include "hw/layer.h"
#include "kernels/bitmap.h"
#include "kernels/bitmap_x86.h"

namespace dpuemu {
namespace bitmap_internal {

// Shuffle tables keyed by one map byte (8 elements). "Absent" indices are 0x80, which a byte
// shuffle turns into 0.
struct Tables {
  uint8_t pop[256];              // set bits
  uint64_t expand1[256];         // 1-byte elements: index byte j = rank of element j, or absent
  uint64_t splat_pop[256];       // pop in every byte
  uint8_t compress1[256][8];     // 1-byte elements: packed r <- input byte of the r-th set bit
  uint8_t compress1_hi[256][8];  // the same for the upper 8 bytes of a block (indices + 8)
  alignas(16) uint8_t expand2[256][16];  // 2-byte elements: as above, in byte pairs
  alignas(16) uint8_t compress2[256][16];
};

constexpr Tables MakeTables() {
  Tables t{};
  for (int b = 0; b < 256; ++b) {
    for (int j = 0; j < 8; ++j) {
      t.compress1[b][j] = t.compress1_hi[b][j] = 0x80;
      for (int k = 0; k < 2; ++k) t.expand2[b][2 * j + k] = t.compress2[b][2 * j + k] = 0x80;
    }
    int rank = 0;
    for (int j = 0; j < 8; ++j) {
      const bool present = (b >> j) & 1;
      t.expand1[b] |= uint64_t{present ? static_cast<uint8_t>(rank) : uint8_t{0x80}} << (8 * j);
      if (!present) continue;
      t.compress1[b][rank] = static_cast<uint8_t>(j);
      t.compress1_hi[b][rank] = static_cast<uint8_t>(j + 8);
      for (int k = 0; k < 2; ++k) {
        t.expand2[b][2 * j + k] = static_cast<uint8_t>(2 * rank + k);
        t.compress2[b][2 * rank + k] = static_cast<uint8_t>(2 * j + k);
      }
      ++rank;
    }
    t.pop[b] = static_cast<uint8_t>(rank);
    t.splat_pop[b] = uint64_t(rank) * 0x0101010101010101ull;
  }
  return t;
}

inline constexpr Tables kTables = MakeTables();

// Up to 16 map bits from bit `pos` on (pos < the map's bit count); reads no byte at or past
// `map_end`.
inline uint32_t MapBits16(const uint8_t* map, const uint8_t* map_end, int64_t pos) {
  const uint8_t* p = map + (pos >> 3);
  const int64_t avail = map_end - p;
  uint32_t w = p[0];
  if (avail > 1) w |= uint32_t{p[1]} << 8;
  if ((pos & 7) != 0 && avail > 2) w |= uint32_t{p[2]} << 16;
  return (w >> (pos & 7)) & 0xFFFF;
}

// Element-at-a-time versions: the whole job on targets without 16-byte vectors (HWY_SCALAR), and
// 4-byte elements (fp32 activations) everywhere. Same contracts as the vector runs below.
inline void ExpandScalar(const uint8_t* src, const uint8_t* map, int64_t bit0, int64_t count,
                         int64_t eb, uint8_t zp, uint8_t* dst) {
  const uint8_t absent = eb == 1 ? zp : 0;  // the zero point's bit pattern, +0.0 for float
  for (int64_t j = 0; j < count; ++j, dst += eb) {
    if (MapBit(map, bit0 + j)) {
      std::memcpy(dst, src, static_cast<size_t>(eb));
      src += eb;
    } else {
      std::memset(dst, absent, static_cast<size_t>(eb));
    }
  }
}

inline int64_t CompressScalar(const uint8_t* src, const uint8_t* map, int64_t bit0, int64_t count,
                              int64_t eb, uint8_t* dst) {
  uint8_t* const start = dst;
  for (int64_t j = 0; j < count; ++j) {
    if (!MapBit(map, bit0 + j)) continue;
    std::memcpy(dst, src + j * eb, static_cast<size_t>(eb));
    dst += eb;
  }
  return dst - start;
}

// Sets bit j of the zeroed `map` for each of the `count` elements that is not the zero point
// (IsZeroPoint; IsWeightZero for weights).
inline void MapScalar(const uint8_t* src, DType dtype, int64_t count, int32_t zp, uint8_t* map,
                      bool weights = false) {
  for (int64_t j = 0; j < count; ++j) {
    const bool absent = weights ? IsWeightZero(dtype, src, j, zp) : IsZeroPoint(dtype, src, j, zp);
    if (!absent) map[j >> 3] |= static_cast<uint8_t>(1u << (j & 7));
  }
}

}  // namespace bitmap_internal
}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_BITMAP_CC_ONCE_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/bitmap.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using bitmap_internal::CompressScalar;
using bitmap_internal::ExpandScalar;
using bitmap_internal::kTables;
using bitmap_internal::MapBits16;
using bitmap_internal::MapScalar;

#if HWY_TARGET != HWY_SCALAR
// The kernels work in 16-byte blocks on every target: byte shuffles do not cross 16-byte lanes,
// and one block's index comes from one or two table rows.
using D = hn::Full128<uint8_t>;
using DH = hn::Full64<uint8_t>;
using V = hn::Vec<D>;

// 16 bytes from p; bytes at or past `end` (never selected by the caller) read as 0.
HWY_INLINE V LoadBlock(const uint8_t* p, const uint8_t* end) {
  const D d;
  if (HWY_LIKELY(end - p >= 16)) return hn::LoadU(d, p);
  alignas(16) uint8_t buf[16] = {};
  if (end > p) std::memcpy(buf, p, static_cast<size_t>(end - p));
  return hn::Load(d, buf);
}

// Set bits of a map word: the popcnt instruction where the target has it (GCC and Clang enable
// it with SSE4.2), else a byte table.
HWY_INLINE uint32_t Pop(uint32_t w) {
#if HWY_ARCH_X86 && HWY_TARGET == HWY_SSSE3
  return kTables.pop[w & 0xFF] + kTables.pop[(w >> 8) & 0xFF] + kTables.pop[(w >> 16) & 0xFF] +
         kTables.pop[w >> 24];
#else
  return static_cast<uint32_t>(hwy::PopCount(w));
#endif
}

// The shuffle index that expands one block of 16 / kEb elements with map bits `bits` from the
// packed bytes at the start of the block's source.
template <int kEb>
HWY_INLINE V ExpandIndex(uint32_t bits) {
  const D d;
  if (kEb == 2) return hn::Load(d, kTables.expand2[bits]);
  // Two table rows; the upper 8 outputs read after the lower 8's popcount. Added as 64-bit
  // scalars: every index byte stays below 0x100 (absent 0x80 + at most 8), so nothing carries.
  const hn::Full64<uint64_t> dq;
  const uint32_t b0 = bits & 0xFF;
  const uint64_t hi = kTables.expand1[bits >> 8] + kTables.splat_pop[b0];
  return hn::BitCast(d, hn::Combine(hn::Full128<uint64_t>(), hn::Set(dq, hi),
                                    hn::Set(dq, kTables.expand1[b0])));
}

// Packed bytes that map bits `bits` select.
template <int kEb>
HWY_INLINE uint32_t PackedBytes(uint32_t bits) {
  return kEb * Pop(bits);
}

// `out` with the absent lanes (negative index) set to the zero point, for 1-byte elements with
// a non-zero zero point (elsewhere the shuffle's 0 is the absent value).
template <bool kZp, class DV>
HWY_INLINE hn::Vec<DV> WithZeroPoint(DV d, hn::Vec<DV> idx, hn::Vec<DV> out, uint8_t zp) {
  if (!kZp) return out;
  // An explicit compare: Highway 1.0.3's IfNegativeThenElse looks at all bits on SSSE3.
  const hn::RebindToSigned<DV> di;
  return hn::IfThenElse(hn::RebindMask(d, hn::Lt(hn::BitCast(di, idx), hn::Zero(di))),
                        hn::Set(d, zp), out);
}

// One block of dense output from the packed bytes at src (bounds-checked), map bits `bits`.
template <int kEb, bool kZp>
HWY_INLINE V ExpandBlock(const uint8_t* src, const uint8_t* src_end, uint32_t bits, uint8_t zp) {
  const D d;
  const V idx = ExpandIndex<kEb>(bits);
  return WithZeroPoint<kZp>(d, idx, hn::TableLookupBytesOr0(LoadBlock(src, src_end), idx), zp);
}

// Expands `count` elements into dst: element j is the next packed element from `src` when map
// bit bit0 + j is set, else the zero point. Reads src only below src_end and the map only below
// map_end.
template <int kEb, bool kZp>
HWY_INLINE void ExpandRun(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                          const uint8_t* map_end, int64_t bit0, int64_t count, uint8_t zp,
                          uint8_t* dst) {
  const D d;
  constexpr int64_t kLanes = 16 / kEb;         // elements per block
  constexpr int64_t kMapBytes = kLanes / 8;    // map bytes per block
  static_assert(kEb == 1 || kEb == 2, "1- or 2-byte elements");
  constexpr uint32_t kAll = (1u << kLanes) - 1;
  int64_t j = 0;
  // Fast path: the run starts on a map byte and 16 bytes past its packed end are readable, so
  // no block needs a bounds check (the packed read position never passes src + count * kEb).
  if ((bit0 & 7) == 0 && src_end - src >= count * kEb + 16) {
    const uint8_t* mp = map + (bit0 >> 3);
#if HWY_CAP_GE256
    // Two blocks per 32-byte vector; each 16-byte lane shuffles its own source.
    const hn::Full256<uint8_t> d2;
    constexpr uint32_t kAll2 = kEb == 1 ? 0xFFFFFFFFu : 0xFFFFu;
    for (; j + 2 * kLanes <= count; j += 2 * kLanes, dst += 32, mp += 2 * kMapBytes) {
      uint32_t w = mp[0] | uint32_t{mp[1]} << 8;
      if (kEb == 1) w |= uint32_t{mp[2]} << 16 | uint32_t{mp[3]} << 24;
      if (w == kAll2) {  // dense: a plain copy
        hn::StoreU(hn::LoadU(d2, src), d2, dst);
        src += 32;
        continue;
      }
      const uint32_t bits0 = w & kAll, bits1 = w >> kLanes;
      const auto idx = hn::Combine(d2, ExpandIndex<kEb>(bits1), ExpandIndex<kEb>(bits0));
      const auto packed =
          hn::Combine(d2, hn::LoadU(d, src + PackedBytes<kEb>(bits0)), hn::LoadU(d, src));
      hn::StoreU(WithZeroPoint<kZp>(d2, idx, hn::TableLookupBytesOr0(packed, idx), zp), d2, dst);
      src += PackedBytes<kEb>(w);
    }
#endif
    for (; j + kLanes <= count; j += kLanes, dst += 16, mp += kMapBytes) {
      const uint32_t bits = kEb == 1 ? mp[0] | uint32_t{mp[1]} << 8 : mp[0];
      const V idx = ExpandIndex<kEb>(bits);
      hn::StoreU(WithZeroPoint<kZp>(d, idx, hn::TableLookupBytesOr0(hn::LoadU(d, src), idx), zp),
                 d, dst);
      src += PackedBytes<kEb>(bits);
    }
  }
  for (; j + kLanes <= count; j += kLanes, dst += 16) {
    const uint32_t bits = MapBits16(map, map_end, bit0 + j) & kAll;
    hn::StoreU(ExpandBlock<kEb, kZp>(src, src_end, bits, zp), d, dst);
    src += PackedBytes<kEb>(bits);
  }
  if (j < count) {
    const int64_t rest = count - j;
    const uint32_t bits = MapBits16(map, map_end, bit0 + j) & ((1u << rest) - 1);
    alignas(16) uint8_t buf[16];
    hn::Store(ExpandBlock<kEb, kZp>(src, src_end, bits, zp), d, buf);
    std::memcpy(dst, buf, static_cast<size_t>(rest * kEb));
  }
}

// Packs the present elements of the block v (map bits `bits`) to dst and advances it; writes 16
// bytes from dst on, zeros past the packed ones (absent indices read 0).
template <int kEb>
HWY_INLINE void CompressBlock(V v, uint32_t bits, uint8_t*& dst) {
  const D d;
  if (kEb == 2) {
    hn::StoreU(hn::TableLookupBytesOr0(v, hn::Load(d, kTables.compress2[bits])), d, dst);
    dst += PackedBytes<2>(bits);
    return;
  }
  // Each 8-byte half packs its own bytes; the upper half's store follows the lower's count.
  const DH dh;
  const uint32_t b0 = bits & 0xFF;
  const V packed = hn::TableLookupBytesOr0(
      v, hn::Combine(d, hn::LoadU(dh, kTables.compress1_hi[bits >> 8]),
                     hn::LoadU(dh, kTables.compress1[b0])));
  hn::StoreU(hn::LowerHalf(dh, packed), dh, dst);
  hn::StoreU(hn::UpperHalf(dh, packed), dh, dst + Pop(b0));
  dst += PackedBytes<1>(bits);
}

// Packs the elements of src[0, count) whose map bit bit0 + j is set to dst; returns the bytes
// packed. Reads src only below src_end; may write up to 16 bytes past the packed end.
template <int kEb>
HWY_INLINE int64_t CompressRun(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                               const uint8_t* map_end, int64_t bit0, int64_t count,
                               uint8_t* dst) {
  const D d;
  constexpr int64_t kLanes = 16 / kEb;
  constexpr uint32_t kAll = (1u << kLanes) - 1;
  uint8_t* const start = dst;
  int64_t j = 0;
  if ((bit0 & 7) == 0) {  // whole map bytes
    const uint8_t* mp = map + (bit0 >> 3);
    for (; j + kLanes <= count; j += kLanes, src += 16, mp += kLanes / 8) {
      CompressBlock<kEb>(hn::LoadU(d, src), kEb == 1 ? mp[0] | uint32_t{mp[1]} << 8 : mp[0], dst);
    }
  }
  for (; j + kLanes <= count; j += kLanes, src += 16) {
    CompressBlock<kEb>(hn::LoadU(d, src), MapBits16(map, map_end, bit0 + j) & kAll, dst);
  }
  if (j < count) {
    const uint32_t bits = MapBits16(map, map_end, bit0 + j) & ((1u << (count - j)) - 1);
    CompressBlock<kEb>(LoadBlock(src, src_end), bits, dst);
  }
  return dst - start;
}

// Stores the map bits of block v at out (16 / kEb bits): present = differs from the zero point
// (1-byte elements: zp; 2-byte: bit pattern 0, as IsZeroPoint defines it; kByValue, for weights:
// +-0.0 both absent, as IsWeightZero defines it).
template <int kEb, bool kByValue = false>
HWY_INLINE void StoreMapBits(V v, uint8_t zp, uint8_t* out) {
  const D d;
  if (kEb == 1) {
    hn::StoreMaskBits(d, hn::Ne(v, hn::Set(d, zp)), out);
  } else {
    const hn::Full128<uint16_t> d16;
    auto bits = hn::BitCast(d16, v);
    if (kByValue) bits = hn::And(bits, hn::Set(d16, uint16_t{0x7FFF}));
    hn::StoreMaskBits(d16, hn::Ne(bits, hn::Zero(d16)), out);
  }
}

// Writes the map of the `count` elements of src to the byte-aligned map (bits past count 0).
template <int kEb, bool kByValue = false>
HWY_INLINE void MakeMap(const uint8_t* src, int64_t count, uint8_t zp, uint8_t* map) {
  constexpr int64_t kLanes = 16 / kEb;
  int64_t j = 0;
  for (; j + kLanes <= count; j += kLanes, src += 16) {
    StoreMapBits<kEb, kByValue>(hn::LoadU(D(), src), zp, map + j / 8);
  }
  if (j < count) {
    const int64_t rest = count - j;
    uint8_t bits[2] = {0, 0};
    StoreMapBits<kEb, kByValue>(LoadBlock(src, src + rest * kEb), zp, bits);
    const uint32_t w = (bits[0] | uint32_t{bits[1]} << 8) & ((1u << rest) - 1);
    map[j >> 3] = static_cast<uint8_t>(w);
    if (rest > 8) map[(j >> 3) + 1] = static_cast<uint8_t>(w >> 8);
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

// ---- Kernel bundles ----
// Each bundle expands and packs runs for one element size; the drivers below are instantiated
// once per bundle, so every run is inlined into its driver's loop.

// Element-at-a-time (HWY_SCALAR, and 4-byte elements everywhere).
struct ScalarKernels {
  DType dtype;
  int32_t zp;
  int64_t eb() const { return DTypeBytes(dtype); }
  static int64_t Pop64(uint64_t w) { return static_cast<int64_t>(hwy::PopCount(w)); }
  void Expand(const uint8_t* src, const uint8_t*, const uint8_t* map, const uint8_t*,
              int64_t bit0, int64_t count, uint8_t* dst) const {
    ExpandScalar(src, map, bit0, count, eb(), static_cast<uint8_t>(zp), dst);
  }
  void MakeMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    MapScalar(src, dtype, count, zp, map);
  }
  void MakeWeightMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    MapScalar(src, dtype, count, zp, map, /*weights=*/true);
  }
  int64_t Compress(const uint8_t* src, const uint8_t*, const uint8_t* map, const uint8_t*,
                   int64_t bit0, int64_t count, uint8_t* dst) const {
    return CompressScalar(src, map, bit0, count, eb(), dst);
  }
  void Clear(uint8_t* p, int64_t n) const { std::memset(p, 0, static_cast<size_t>(n)); }
};

#if HWY_TARGET != HWY_SCALAR
template <int kEb, bool kZp>
struct VectorKernels {
  uint8_t zp;
  static constexpr int64_t eb() { return kEb; }
  static HWY_INLINE int64_t Pop64(uint64_t w) { return static_cast<int64_t>(hwy::PopCount(w)); }
  HWY_INLINE void Expand(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                         const uint8_t* map_end, int64_t bit0, int64_t count, uint8_t* dst) const {
    ExpandRun<kEb, kZp>(src, src_end, map, map_end, bit0, count, zp, dst);
  }
  HWY_INLINE void MakeMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    dpuemu::HWY_NAMESPACE::MakeMap<kEb>(src, count, zp, map);
  }
  HWY_INLINE void MakeWeightMap(const uint8_t* src, int64_t count, uint8_t* map) const {
    dpuemu::HWY_NAMESPACE::MakeMap<kEb, /*kByValue=*/true>(src, count, zp, map);
  }
  HWY_INLINE int64_t Compress(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                              const uint8_t* map_end, int64_t bit0, int64_t count,
                              uint8_t* dst) const {
    return CompressRun<kEb>(src, src_end, map, map_end, bit0, count, dst);
  }
  // Zeroes n bytes at p in 16-byte stores (a memset call per SE costs more than the SE): may
  // write up to 15 bytes past them, like Compress.
  HWY_INLINE void Clear(uint8_t* p, int64_t n) const {
    for (int64_t i = 0; i < n; i += 16) hn::StoreU(hn::Zero(D()), D(), p + i);
  }
};
#endif

// Calls body(kernels) with the bundle for this element type and zero point.
template <class Body>
HWY_INLINE void WithKernels(DType dtype, int32_t zp, const Body& body) {
#if HWY_TARGET != HWY_SCALAR
  const uint8_t zp8 = static_cast<uint8_t>(zp);
  switch (DTypeBytes(dtype)) {
    case 1:
      if (zp8 != 0) return body(VectorKernels<1, true>{zp8});
      return body(VectorKernels<1, false>{0});
    case 2:
      return body(VectorKernels<2, false>{0});  // the absent value is 0 whatever zp is
    default:
      break;
  }
#endif
  body(ScalarKernels{dtype, zp});
}

// ---- Drivers (kernels/bitmap_drivers.inc), entry points ----
#include "kernels/bitmap_drivers.inc"  // IWYU pragma: keep

// SEs [s_begin, s_end) of the gathered input, dense, to out (the view passed CheckGather).
void GatherSes(const ActivationView& view, DType dtype, int32_t zp, int64_t s_begin,
               int64_t s_end, uint8_t* out) {
  const int64_t slot_bytes = view.se_size * DTypeBytes(dtype);
  if (!view.map.empty()) {
    return WithKernels(dtype, zp, [&](const auto& kernels) {
      ExpandSes(kernels, view, s_begin, s_end, out);
    });
  }
  if (view.se_table.empty()) {
    if (s_end > s_begin) {
      std::memcpy(out, view.tiles[0].data() + s_begin * slot_bytes,
                  static_cast<size_t>((s_end - s_begin) * slot_bytes));
    }
    return;
  }
  for (int64_t s = s_begin; s < s_end; ++s, out += slot_bytes) {
    const SePointer p = DecodeSePointer(view.se_table[s]);
    std::memcpy(out, view.tiles[static_cast<size_t>(p.tile)].data() + p.offset,
                static_cast<size_t>(slot_bytes));
  }
}

bool DecompressChannels(ByteSpan data, ByteSpan map, const uint8_t* table, int64_t k,
                        int64_t taps, int64_t map_per_k, DType dtype, int32_t zp, uint8_t* out) {
  bool ok = false;
  WithKernels(dtype, zp, [&](const auto& kernels) {
    ok = ExpandChannelsChecked(kernels, data, map, table, k, taps, map_per_k, out);
  });
  return ok;
}

void EncodeSes(const uint8_t* src, DType dtype, int64_t n, int32_t zp, int64_t se,
               uint8_t* data, uint8_t* map, int64_t map_bytes) {
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

int64_t TargetId() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace dpuemu {
namespace simd {

HWY_EXPORT(GatherSes);
HWY_EXPORT(DecompressChannels);
HWY_EXPORT(EncodeSes);
HWY_EXPORT(CompressChannels);
HWY_EXPORT(TargetId);

namespace {

std::atomic<int> g_path{static_cast<int>(BitmapPath::kAuto)};

// kAuto's choice: the CPU's, unless DPUEMU_ISA names a tier below VBMI2 (kernels/bitmap.h).
bool AutoVbmi2() {
  static const bool on = [] {
    if (!HasVbmi2()) return false;
    const char* isa = std::getenv("DPUEMU_ISA");
    if (isa == nullptr) return true;
    const std::string s(isa);
    return s.empty() || s == "native" || s == "amx" || s == "avx512vnni" || s == "avx512vbmi2";
  }();
  return on;
}

bool Vbmi2Selected() {
  switch (static_cast<BitmapPath>(g_path.load(std::memory_order_relaxed))) {
    case BitmapPath::kTable:
      return false;
    case BitmapPath::kVbmi2:
      return true;
    case BitmapPath::kAuto:
      break;
  }
  return AutoVbmi2();
}

// Whether this call takes the VBMI2 path: 1- and 2-byte elements (4-byte ones stay on the
// element loop of the table path).
bool UseVbmi2(DType dtype) {
  const int64_t eb = DTypeBytes(dtype);
  return DPUEMU_BITMAP_VBMI2 && (eb == 1 || eb == 2) && Vbmi2Selected();
}

void GatherSesAny(const ActivationView& view, DType dtype, int32_t zp, int64_t s_begin,
                  int64_t s_end, uint8_t* out) {
#if DPUEMU_BITMAP_VBMI2
  if (!view.map.empty() && UseVbmi2(dtype)) {
    return bitmap_x86::GatherSes(view, dtype, zp, s_begin, s_end, out);
  }
#endif
  HWY_DYNAMIC_DISPATCH(GatherSes)(view, dtype, zp, s_begin, s_end, out);
}

// SePointersPass of kernels/bitmap_x86.h for the table path: branch-free over the entries
// (CheckGather's loop has three branches and a tile lookup per SE).
bool SePointersPassScalar(const ActivationView& view, int64_t slot_bytes, int64_t s_begin,
                          int64_t s_end) {
  constexpr int64_t kMaxTiles = 16;
  const int64_t tiles = static_cast<int64_t>(view.tiles.size());
  if (tiles > kMaxTiles) return false;
  int64_t room[kMaxTiles + 1];  // the largest offset a slot may start at; -1 past the count
  for (int64_t t = 0; t <= kMaxTiles; ++t) {
    room[t] = t < tiles ? static_cast<int64_t>(view.tiles[t].size()) - slot_bytes : -1;
  }
  const int32_t* table = view.se_table.data();
  bool bad = false;
  for (int64_t s = s_begin; s < s_end; ++s) {
    const uint32_t u = static_cast<uint32_t>(table[s]);
    const SePointer p = DecodeSePointer(table[s]);
    bad |= (u >> 29) != 0;
    bad |= p.offset > room[p.tile < kMaxTiles ? p.tile : kMaxTiles];
  }
  return !bad;
}

// CheckGather for the gather of rows [row_begin, row_end): its other rules, then the SE pointers
// in one vectorized pass; the reference check again, for its message, when either fails.
StatusOr<GatherShape> CheckGatherFast(const ActivationView& view, DType dtype,
                                      const std::vector<int64_t>& shape, int32_t zp,
                                      int64_t row_begin, int64_t row_end) {
  StatusOr<GatherShape> gs =
      CheckGatherExceptSePointers(view, dtype, shape, zp, row_begin, row_end);
  if (!gs.ok()) return CheckGather(view, dtype, shape, zp, row_begin, row_end);
  if (view.se_table.empty()) return gs;
  const int64_t ses_per_row = gs->w * gs->c / view.se_size;
  const int64_t s_begin = row_begin * ses_per_row;
  const int64_t s_end = (row_end < 0 ? gs->h : row_end) * ses_per_row;
  const int64_t slot_bytes = view.se_size * DTypeBytes(dtype);
#if DPUEMU_BITMAP_VBMI2
  const bool pass = Vbmi2Selected()
                        ? bitmap_x86::SePointersPass(view, slot_bytes, s_begin, s_end)
                        : SePointersPassScalar(view, slot_bytes, s_begin, s_end);
#else
  const bool pass = SePointersPassScalar(view, slot_bytes, s_begin, s_end);
#endif
  if (!pass) return CheckGather(view, dtype, shape, zp, row_begin, row_end);
  return gs;
}

}  // namespace

bool HasVbmi2() { return bitmap_x86::Vbmi2CpuSupported(); }

Status SetBitmapPath(BitmapPath path) {
  if (path == BitmapPath::kVbmi2 && !HasVbmi2()) {
    return InvalidArgument(
        "bitmap path: avx512vbmi2 needs AVX-512 F/BW/VL/VBMI2, BMI2 and POPCNT, which this "
        "build or CPU lacks");
  }
  g_path.store(static_cast<int>(path), std::memory_order_relaxed);
  return OkStatus();
}

std::string ActivePath() {
  if (DPUEMU_BITMAP_VBMI2 && Vbmi2Selected()) return "avx512vbmi2";
  return std::string("table/") + hwy::TargetName(ActiveTarget());
}

StatusOr<SparseActivations> EncodeSparseActivations(const Tensor& t, int32_t zp, int64_t se_size) {
  DPUEMU_RETURN_IF_ERROR(CheckEncodeActivations(t, zp, se_size));
  const int64_t n = t.numel();
  const size_t bytes = t.bytes.size();
  SparseActivations out;
  out.se_size = se_size;
  out.data.resize(bytes + 16);  // room for the packing stores, trimmed below
  out.map.assign(static_cast<size_t>(ActivationMapBytes(n)), 0);
#if DPUEMU_BITMAP_VBMI2
  if (UseVbmi2(t.dtype)) {
    bitmap_x86::EncodeSes(t.bytes.data(), t.dtype, n, zp, se_size, out.data.data(),
                          out.map.data(), static_cast<int64_t>(out.map.size()));
    out.data.resize(bytes);
    return out;
  }
#endif
  HWY_DYNAMIC_DISPATCH(EncodeSes)(t.bytes.data(), t.dtype, n, zp, se_size, out.data.data(),
                                  out.map.data(), static_cast<int64_t>(out.map.size()));
  out.data.resize(bytes);
  return out;
}

StatusOr<Tensor> DecodeSparseActivations(ByteSpan data, ByteSpan map, DType dtype,
                                         const std::vector<int64_t>& shape, int32_t zp,
                                         int64_t se_size) {
  ActivationView view;
  view.tiles = {data};
  view.map = map;
  view.se_size = se_size;
  return simd::GatherActivations(view, dtype, shape, zp);
}

StatusOr<Tensor> GatherActivations(const ActivationView& view, DType dtype,
                                   const std::vector<int64_t>& shape, int32_t zp) {
  GatherShape gs;
  DPUEMU_ASSIGN_OR_RETURN(gs, CheckGatherFast(view, dtype, shape, zp, 0, -1));
  Tensor out(dtype, {gs.h, gs.w, gs.c});
  GatherSesAny(view, dtype, zp, 0, gs.h * gs.w * gs.c / view.se_size, out.bytes.data());
  return out;
}

Status GatherRows(const ActivationView& view, DType dtype, const std::vector<int64_t>& shape,
                  int32_t zp, int64_t row_begin, int64_t row_end, MutableByteSpan out) {
  GatherShape gs;
  DPUEMU_ASSIGN_OR_RETURN(gs, CheckGatherFast(view, dtype, shape, zp, row_begin, row_end));
  if (row_end < 0) row_end = gs.h;
  const int64_t row_bytes = gs.w * gs.c * DTypeBytes(dtype);
  const int64_t need = (row_end - row_begin) * row_bytes;
  if (static_cast<int64_t>(out.size()) < need) {
    return InvalidArgument("out: " + std::to_string(out.size()) + " bytes, rows [" +
                           std::to_string(row_begin) + ", " + std::to_string(row_end) +
                           ") need " + std::to_string(need));
  }
  const int64_t ses_per_row = gs.w * gs.c / view.se_size;
  GatherSesAny(view, dtype, zp, row_begin * ses_per_row, row_end * ses_per_row, out.data());
  return OkStatus();
}

StatusOr<CompressedWeights> CompressWeights(const Tensor& weights, int32_t zp) {
  NceGeometry g;
  DPUEMU_ASSIGN_OR_RETURN(g, CheckCompressWeights(weights, zp));
  const int64_t eb = DTypeBytes(weights.dtype);
  const int64_t taps = g.taps();
  const int64_t map_per_k = WeightMapBytesPerChannel(g);
  const size_t k = static_cast<size_t>(g.k);
  CompressedWeights out;
  out.map.assign(k * static_cast<size_t>(map_per_k), 0);
  // Worst case plus room for the packing stores; trimmed below.
  out.data.resize(k * static_cast<size_t>(AlignUp(taps * eb, 16)) + 16);
  out.data_offset.resize(k);
  out.nonzeros.resize(k);
  for (size_t i = 0; i < k; ++i) out.map_offset.push_back(static_cast<uint32_t>(i * map_per_k));
  auto* compress = HWY_DYNAMIC_DISPATCH(CompressChannels);
#if DPUEMU_BITMAP_VBMI2
  if (UseVbmi2(weights.dtype)) compress = bitmap_x86::CompressChannels;
#endif
  const int64_t used =
      compress(weights.bytes.data(), weights.dtype, g.k, taps, zp, map_per_k, out.data.data(),
               out.map.data(), out.data_offset.data(), out.nonzeros.data());
  out.data.resize(static_cast<size_t>(used));
  return out;
}

StatusOr<Tensor> DecompressWeights(ByteSpan data, ByteSpan map, ByteSpan table,
                                   const NceGeometry& g, DType dtype, int32_t zp) {
  // int4 sets are dense nibbles: the scalar unpacking.
  if (IsSubByte(dtype)) return dpuemu::DecompressWeights(data, map, table, g, dtype, zp);
  // The per-channel rules are checked by the decode itself, channel by channel before it reads
  // one; on any failure the reference check says which rule broke.
  const auto reference_error = [&]() -> Status {
    const Status st = CheckDecompressWeights(data, map, table, g, dtype, zp).status();
    return st.ok() ? Internal("DecompressWeights: the per-channel check refused what "
                              "CheckDecompressWeights accepts")
                   : st;
  };
  if (!CheckDecompressWeightsExceptChannels(table, g, dtype, zp).ok()) return reference_error();
  Tensor out(dtype, {g.k, g.ky, g.kx, g.c});
  auto* decompress = HWY_DYNAMIC_DISPATCH(DecompressChannels);
#if DPUEMU_BITMAP_VBMI2
  if (UseVbmi2(dtype)) decompress = bitmap_x86::DecompressChannels;
#endif
  if (!decompress(data, map, table.data(), g.k, g.taps(), WeightMapBytesPerChannel(g), dtype, zp,
                  out.bytes.data())) {
    return reference_error();
  }
  return out;
}

std::vector<int64_t> CompiledTargets() { return hwy::SupportedAndGeneratedTargets(); }

int64_t ActiveTarget() { return HWY_DYNAMIC_DISPATCH(TargetId)(); }

}  // namespace simd
}  // namespace dpuemu
#endif  // HWY_ONCE
