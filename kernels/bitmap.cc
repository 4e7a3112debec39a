// Per-target bitmap kernels (compiled once per Highway target through foreach_target.h) and the
// public entry points of kernels/bitmap.h (in the HWY_ONCE block at the end).
//
// Layout invariants the kernels rely on, all established by the Check* functions of hw/formats.h
// before any kernel runs: every packed run lies inside its buffer, every map bit read lies inside
// the map. Loads of 16 bytes that would cross a buffer's end are staged through a local copy, and
// dense outputs are written with exact lengths, so nothing outside the caller's buffers is
// touched. Compressing stores may run up to 16 bytes past the packed end, into space the caller
// reserves and later overwrites or trims.

// The non-target part, compiled once although foreach_target.h includes this file per target.
#ifndef DPUEMU_KERNELS_BITMAP_CC_ONCE_
#define DPUEMU_KERNELS_BITMAP_CC_ONCE_

#include <cstring>
#include <vector>

#include "hw/formats.h"
#include "hw/layer.h"
#include "kernels/bitmap.h"

namespace dpuemu {
namespace bitmap_internal {

// Shuffle tables keyed by one map byte (8 elements). "Absent" indices are 0x80, which a byte
// shuffle turns into 0.
struct Tables {
  uint8_t pop[256];            // set bits
  uint8_t expand1[256][8];     // 1-byte elements: output j <- packed byte rank(j), or absent
  uint8_t compress1[256][8];   // 1-byte elements: packed r <- input byte of the r-th set bit
  alignas(16) uint8_t expand2[256][16];    // 2-byte elements, same in byte pairs
  alignas(16) uint8_t compress2[256][16];
  alignas(16) uint8_t hi_offset[17][16];   // 0 in the lower 8 bytes, i in the upper 8
};

constexpr Tables MakeTables() {
  Tables t{};
  for (int b = 0; b < 256; ++b) {
    int rank = 0;
    for (int j = 0; j < 8; ++j) {
      t.expand1[b][j] = 0x80;
      t.compress1[b][j] = 0x80;
      for (int k = 0; k < 2; ++k) {
        t.expand2[b][2 * j + k] = 0x80;
        t.compress2[b][2 * j + k] = 0x80;
      }
    }
    for (int j = 0; j < 8; ++j) {
      if (!((b >> j) & 1)) continue;
      t.expand1[b][j] = static_cast<uint8_t>(rank);
      t.compress1[b][rank] = static_cast<uint8_t>(j);
      for (int k = 0; k < 2; ++k) {
        t.expand2[b][2 * j + k] = static_cast<uint8_t>(2 * rank + k);
        t.compress2[b][2 * rank + k] = static_cast<uint8_t>(2 * j + k);
      }
      ++rank;
    }
    t.pop[b] = static_cast<uint8_t>(rank);
  }
  for (int i = 0; i <= 16; ++i) {
    for (int j = 8; j < 16; ++j) t.hi_offset[i][j] = static_cast<uint8_t>(i);
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

inline int64_t PopCount16(uint32_t bits) { return kTables.pop[bits & 0xFF] + kTables.pop[bits >> 8]; }

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

// Sets bit j of the zeroed `map` for each of the `count` elements that is not the zero point.
inline void MapScalar(const uint8_t* src, DType dtype, int64_t count, int32_t zp, uint8_t* map) {
  for (int64_t j = 0; j < count; ++j) {
    if (!IsZeroPoint(dtype, src, j, zp)) map[j >> 3] |= static_cast<uint8_t>(1u << (j & 7));
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
using bitmap_internal::PopCount16;

#if HWY_TARGET != HWY_SCALAR
// The kernels work in 16-byte blocks on every target: byte shuffles do not cross 16-byte lanes,
// and one block's index comes from one or two table rows.
using D = hn::Full128<uint8_t>;
using DI = hn::Full128<int8_t>;
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

// One block of 16 / kEb elements: the dense block for map bits `bits` from the packed bytes at
// the start of `packed`. Absent elements become `zpv` (1-byte elements with kZp) or 0.
template <int kEb, bool kZp>
HWY_INLINE V ExpandBlock(V packed, uint32_t bits, V zpv) {
  const D d;
  V idx;
  if (kEb == 1) {
    // Two table rows; the upper 8 outputs read after the lower 8's popcount.
    const DH dh;
    const uint32_t b0 = bits & 0xFF, b1 = bits >> 8;
    idx = hn::Add(hn::Combine(d, hn::LoadU(dh, kTables.expand1[b1]),
                              hn::LoadU(dh, kTables.expand1[b0])),
                  hn::Load(d, kTables.hi_offset[kTables.pop[b0]]));  // 0x80 + k stays absent
  } else {
    idx = hn::Load(d, kTables.expand2[bits]);
  }
  const V out = hn::TableLookupBytesOr0(packed, idx);
  if (!kZp) return out;
  // An explicit compare: Highway 1.0.3's IfNegativeThenElse looks at all bits on SSSE3.
  const DI di;
  return hn::IfThenElse(hn::RebindMask(d, hn::Lt(hn::BitCast(di, idx), hn::Zero(di))), zpv, out);
}

// Expands `count` elements into dst: element j is the next packed element from `src` when map
// bit bit0 + j is set, else the zero point. Reads src only below src_end and the map only below
// map_end.
template <int kEb, bool kZp>
HWY_INLINE void ExpandRun(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                          const uint8_t* map_end, int64_t bit0, int64_t count, V zpv,
                          uint8_t* dst) {
  const D d;
  constexpr int64_t kLanes = 16 / kEb;
  constexpr uint32_t kAll = (1u << kLanes) - 1;
  int64_t j = 0;
  for (; j + kLanes <= count; j += kLanes, dst += 16) {
    const uint32_t bits = MapBits16(map, map_end, bit0 + j) & kAll;
    const V packed = LoadBlock(src, src_end);
    if (bits == kAll) {  // dense block: a plain copy (sparsity 0 runs at memcpy speed)
      hn::StoreU(packed, d, dst);
      src += 16;
      continue;
    }
    hn::StoreU(ExpandBlock<kEb, kZp>(packed, bits, zpv), d, dst);
    src += kEb * PopCount16(bits);
  }
  if (j < count) {
    const int64_t rest = count - j;
    const uint32_t bits = MapBits16(map, map_end, bit0 + j) & ((1u << rest) - 1);
    alignas(16) uint8_t buf[16];
    hn::Store(ExpandBlock<kEb, kZp>(LoadBlock(src, src_end), bits, zpv), d, buf);
    std::memcpy(dst, buf, static_cast<size_t>(rest * kEb));
  }
}

// Packs the elements of src[0, count) whose map bit bit0 + j is set to dst; returns the bytes
// packed. Reads src only below src_end; may write up to 16 bytes past the packed end.
template <int kEb>
HWY_INLINE int64_t CompressRun(const uint8_t* src, const uint8_t* src_end, const uint8_t* map,
                               const uint8_t* map_end, int64_t bit0, int64_t count,
                               uint8_t* dst) {
  const D d;
  const DH dh;
  constexpr int64_t kLanes = 16 / kEb;
  uint8_t* const start = dst;
  for (int64_t j = 0; j < count; j += kLanes, src += 16) {
    const int64_t n = count - j < kLanes ? count - j : kLanes;
    const uint32_t bits = MapBits16(map, map_end, bit0 + j) & ((1u << n) - 1);
    const V v = LoadBlock(src, src_end);
    if (kEb == 1) {
      const uint32_t b0 = bits & 0xFF, b1 = bits >> 8;
      const V idx = hn::Add(hn::Combine(d, hn::LoadU(dh, kTables.compress1[b1]),
                                        hn::LoadU(dh, kTables.compress1[b0])),
                            hn::Load(d, kTables.hi_offset[8]));
      const V packed = hn::TableLookupBytesOr0(v, idx);
      hn::StoreU(hn::LowerHalf(dh, packed), dh, dst);
      hn::StoreU(hn::UpperHalf(dh, packed), dh, dst + kTables.pop[b0]);
      dst += PopCount16(bits);
    } else {
      hn::StoreU(hn::TableLookupBytesOr0(v, hn::Load(d, kTables.compress2[bits])), d, dst);
      dst += 2 * kTables.pop[bits];
    }
  }
  return dst - start;
}

// Sets map bit j (map zeroed, byte-aligned) for each of the `count` elements of src that differs
// from the zero point (1-byte: zp; 2-byte: bit pattern 0, as IsZeroPoint defines it).
template <int kEb>
HWY_INLINE void MakeMap(const uint8_t* src, int64_t count, uint8_t zp, uint8_t* map) {
  const D d;
  const hn::Full128<uint16_t> d16;
  constexpr int64_t kLanes = 16 / kEb;
  const uint8_t* const end = src + count * kEb;
  for (int64_t j = 0; j < count; j += kLanes, src += 16) {
    const V v = LoadBlock(src, end);
    uint8_t bits[2] = {0, 0};
    if (kEb == 1) {
      hn::StoreMaskBits(d, hn::Ne(v, hn::Set(d, zp)), bits);
    } else {
      hn::StoreMaskBits(d16, hn::Ne(hn::BitCast(d16, v), hn::Zero(d16)), bits);
    }
    const int64_t n = count - j < kLanes ? count - j : kLanes;
    const uint32_t keep = (1u << n) - 1;
    const uint32_t w = (bits[0] | uint32_t{bits[1]} << 8) & keep;
    map[j >> 3] = static_cast<uint8_t>(w);
    if (n > 8) map[(j >> 3) + 1] = static_cast<uint8_t>(w >> 8);
  }
}
#endif  // HWY_TARGET != HWY_SCALAR

// ---- Gather / decode ----

// SEs [s_begin, s_end) of the gathered input, dense, to out (the view passed CheckGather).
void GatherSes(const ActivationView& view, int64_t eb, int32_t zp, int64_t s_begin,
               int64_t s_end, uint8_t* out) {
  const int64_t se = view.se_size;
  const int64_t slot_bytes = se * eb;
  const bool table = !view.se_table.empty();
  const bool sparse = !view.map.empty();
  if (!table && !sparse) {
    if (s_end > s_begin) {
      std::memcpy(out, view.tiles[0].data() + s_begin * slot_bytes,
                  static_cast<size_t>((s_end - s_begin) * slot_bytes));
    }
    return;
  }
  // Calls run(first map bit, slot, end of the slot's buffer, destination) for each SE.
  const auto for_each_se = [&](const auto& run) {
    for (int64_t s = s_begin; s < s_end; ++s) {
      ByteSpan buf = view.tiles[0];
      int64_t offset = s * slot_bytes;
      if (table) {
        const SePointer p = DecodeSePointer(view.se_table[s]);
        buf = view.tiles[static_cast<size_t>(p.tile)];
        offset = p.offset;
      }
      run(s * se, buf.data() + offset, buf.end(), out + (s - s_begin) * slot_bytes);
    }
  };
  if (!sparse) {
    for_each_se([&](int64_t, const uint8_t* slot, const uint8_t*, uint8_t* dst) {
      std::memcpy(dst, slot, static_cast<size_t>(slot_bytes));
    });
    return;
  }
  const uint8_t* map = view.map.data();
  const uint8_t zp8 = static_cast<uint8_t>(zp);
#if HWY_TARGET != HWY_SCALAR
  const uint8_t* map_end = map + view.map.size();
  const V zpv = hn::Set(D(), zp8);
  if (eb == 1 && zp8 != 0) {
    return for_each_se([&](int64_t bit0, const uint8_t* slot, const uint8_t* end, uint8_t* dst) {
      ExpandRun<1, true>(slot, end, map, map_end, bit0, se, zpv, dst);
    });
  }
  if (eb == 1) {
    return for_each_se([&](int64_t bit0, const uint8_t* slot, const uint8_t* end, uint8_t* dst) {
      ExpandRun<1, false>(slot, end, map, map_end, bit0, se, zpv, dst);
    });
  }
  if (eb == 2) {
    return for_each_se([&](int64_t bit0, const uint8_t* slot, const uint8_t* end, uint8_t* dst) {
      ExpandRun<2, false>(slot, end, map, map_end, bit0, se, zpv, dst);
    });
  }
#endif
  for_each_se([&](int64_t bit0, const uint8_t* slot, const uint8_t*, uint8_t* dst) {
    ExpandScalar(slot, map, bit0, se, eb, zp8, dst);
  });
}

// Dense [K, taps] weights to out from the buffers the (checked) table points into.
void DecompressChannels(ByteSpan data, ByteSpan map, const WeightTableEntry* entries, int64_t k,
                        int64_t taps, int64_t map_per_k, int64_t eb, int32_t zp, uint8_t* out) {
  const int64_t channel_bytes = taps * eb;
  // Calls expand(packed run, its buffer's end, channel map, destination) per sparse channel.
  const auto for_each_channel = [&](const auto& expand) {
    for (int64_t i = 0; i < k; ++i) {
      const WeightTableEntry& e = entries[i];
      uint8_t* dst = out + i * channel_bytes;
      if (e.sparsity_ptr == kDenseSparsityPtr) {
        std::memcpy(dst, data.data() + e.weight_ptr, static_cast<size_t>(channel_bytes));
      } else {
        expand(data.data() + e.weight_ptr, data.end(), map.data() + e.sparsity_ptr, dst);
      }
    }
  };
  const uint8_t zp8 = static_cast<uint8_t>(zp);
#if HWY_TARGET != HWY_SCALAR
  const V zpv = hn::Set(D(), zp8);
  if (eb == 1 && zp8 != 0) {
    return for_each_channel([&](const uint8_t* src, const uint8_t* end, const uint8_t* m,
                                uint8_t* dst) {
      ExpandRun<1, true>(src, end, m, m + map_per_k, 0, taps, zpv, dst);
    });
  }
  if (eb == 1) {
    return for_each_channel([&](const uint8_t* src, const uint8_t* end, const uint8_t* m,
                                uint8_t* dst) {
      ExpandRun<1, false>(src, end, m, m + map_per_k, 0, taps, zpv, dst);
    });
  }
  if (eb == 2) {
    return for_each_channel([&](const uint8_t* src, const uint8_t* end, const uint8_t* m,
                                uint8_t* dst) {
      ExpandRun<2, false>(src, end, m, m + map_per_k, 0, taps, zpv, dst);
    });
  }
#endif
  for_each_channel([&](const uint8_t* src, const uint8_t*, const uint8_t* m, uint8_t* dst) {
    ExpandScalar(src, m, 0, taps, eb, zp8, dst);
  });
}

// ---- Encode ----

// Runs make_map(src, count, map) and compress(src, src_end, map, map_end, bit0, count, dst) ->
// bytes with the kernels for this element size (and target).
template <class Body>
HWY_INLINE void WithPackKernels(DType dtype, int32_t zp, const Body& body) {
  const int64_t eb = DTypeBytes(dtype);
#if HWY_TARGET != HWY_SCALAR
  const uint8_t zp8 = static_cast<uint8_t>(zp);
  if (eb == 1) {
    return body([&](const uint8_t* src, int64_t count, uint8_t* map) {
      MakeMap<1>(src, count, zp8, map);
    }, [](const uint8_t* src, const uint8_t* end, const uint8_t* map, const uint8_t* map_end,
          int64_t bit0, int64_t count, uint8_t* dst) {
      return CompressRun<1>(src, end, map, map_end, bit0, count, dst);
    });
  }
  if (eb == 2) {
    return body([](const uint8_t* src, int64_t count, uint8_t* map) {
      MakeMap<2>(src, count, 0, map);
    }, [](const uint8_t* src, const uint8_t* end, const uint8_t* map, const uint8_t* map_end,
          int64_t bit0, int64_t count, uint8_t* dst) {
      return CompressRun<2>(src, end, map, map_end, bit0, count, dst);
    });
  }
#endif
  body([&](const uint8_t* src, int64_t count, uint8_t* map) {
    MapScalar(src, dtype, count, zp, map);
  }, [eb](const uint8_t* src, const uint8_t*, const uint8_t* map, const uint8_t*, int64_t bit0,
          int64_t count, uint8_t* dst) {
    return CompressScalar(src, map, bit0, count, eb, dst);
  });
}

// Sparse activations of the n elements at src: the zeroed map (map_bytes) and the slots of
// `data`, which has 16 bytes of room past n * element bytes.
void EncodeSes(const uint8_t* src, DType dtype, int64_t n, int32_t zp, int64_t se,
               uint8_t* data, uint8_t* map, int64_t map_bytes) {
  const int64_t eb = DTypeBytes(dtype);
  const int64_t slot_bytes = se * eb;
  WithPackKernels(dtype, zp, [&](const auto& make_map, const auto& compress) {
    make_map(src, n, map);
    for (int64_t s = 0; s < n / se; ++s) {
      uint8_t* slot = data + s * slot_bytes;
      const int64_t packed =
          compress(src + s * slot_bytes, src + n * eb, map, map + map_bytes, s * se, se, slot);
      std::memset(slot + packed, 0, static_cast<size_t>(slot_bytes - packed));
    }
  });
}

// Compressed weights of the [k, taps] tensor at src: per channel the map (zeroed, map_per_k
// bytes each), its offset and non-zero count, and the packed run padded to 16 bytes in `data`,
// which has 16 bytes of room past the worst case. Returns the bytes of data used.
int64_t CompressChannels(const uint8_t* src, DType dtype, int64_t k, int64_t taps, int32_t zp,
                         int64_t map_per_k, uint8_t* data, uint8_t* map, uint32_t* data_offset,
                         int64_t* nonzeros) {
  const int64_t eb = DTypeBytes(dtype);
  int64_t pos = 0;
  WithPackKernels(dtype, zp, [&](const auto& make_map, const auto& compress) {
    for (int64_t i = 0; i < k; ++i) {
      const uint8_t* w = src + i * taps * eb;
      uint8_t* m = map + i * map_per_k;
      make_map(w, taps, m);
      const int64_t packed = compress(w, w + taps * eb, m, m + map_per_k, 0, taps, data + pos);
      const int64_t padded = AlignUp(packed, 16);
      std::memset(data + pos + packed, 0, static_cast<size_t>(padded - packed));
      data_offset[i] = static_cast<uint32_t>(pos);
      nonzeros[i] = packed / eb;
      pos += padded;
    }
  });
  return pos;
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

StatusOr<SparseActivations> EncodeSparseActivations(const Tensor& t, int32_t zp, int64_t se_size) {
  DPUEMU_RETURN_IF_ERROR(CheckEncodeActivations(t, se_size));
  const int64_t n = t.numel();
  const size_t bytes = t.bytes.size();
  SparseActivations out;
  out.se_size = se_size;
  out.data.resize(bytes + 16);  // room for the packing stores, trimmed below
  out.map.assign(static_cast<size_t>(ActivationMapBytes(n)), 0);
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
  DPUEMU_ASSIGN_OR_RETURN(gs, CheckGather(view, dtype, shape));
  Tensor out(dtype, {gs.h, gs.w, gs.c});
  HWY_DYNAMIC_DISPATCH(GatherSes)(view, DTypeBytes(dtype), zp, 0, gs.h * gs.w * gs.c / view.se_size,
                                  out.bytes.data());
  return out;
}

Status GatherRows(const ActivationView& view, DType dtype, const std::vector<int64_t>& shape,
                  int32_t zp, int64_t row_begin, int64_t row_end, MutableByteSpan out) {
  GatherShape gs;
  DPUEMU_ASSIGN_OR_RETURN(gs, CheckGather(view, dtype, shape, row_begin, row_end));
  if (row_end < 0) row_end = gs.h;
  const int64_t row_bytes = gs.w * gs.c * DTypeBytes(dtype);
  const int64_t need = (row_end - row_begin) * row_bytes;
  if (static_cast<int64_t>(out.size()) < need) {
    return InvalidArgument("out: " + std::to_string(out.size()) + " bytes, rows [" +
                           std::to_string(row_begin) + ", " + std::to_string(row_end) +
                           ") need " + std::to_string(need));
  }
  const int64_t ses_per_row = gs.w * gs.c / view.se_size;
  HWY_DYNAMIC_DISPATCH(GatherSes)(view, DTypeBytes(dtype), zp, row_begin * ses_per_row,
                                  row_end * ses_per_row, out.data());
  return OkStatus();
}

StatusOr<CompressedWeights> CompressWeights(const Tensor& weights, int32_t zp) {
  ConvGeometry g;
  DPUEMU_ASSIGN_OR_RETURN(g, CheckCompressWeights(weights));
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
  const int64_t used = HWY_DYNAMIC_DISPATCH(CompressChannels)(
      weights.bytes.data(), weights.dtype, g.k, taps, zp, map_per_k, out.data.data(),
      out.map.data(), out.data_offset.data(), out.nonzeros.data());
  out.data.resize(static_cast<size_t>(used));
  return out;
}

StatusOr<Tensor> DecompressWeights(ByteSpan data, ByteSpan map, ByteSpan table,
                                   const ConvGeometry& g, DType dtype, int32_t zp) {
  std::vector<WeightTableEntry> entries;
  DPUEMU_ASSIGN_OR_RETURN(entries, CheckDecompressWeights(data, map, table, g, dtype));
  Tensor out(dtype, {g.k, g.ky, g.kx, g.c});
  HWY_DYNAMIC_DISPATCH(DecompressChannels)(data, map, entries.data(), g.k, g.taps(),
                                           WeightMapBytesPerChannel(g), DTypeBytes(dtype), zp,
                                           out.bytes.data());
  return out;
}

std::vector<int64_t> CompiledTargets() { return hwy::SupportedAndGeneratedTargets(); }

int64_t ActiveTarget() { return HWY_DYNAMIC_DISPATCH(TargetId)(); }

}  // namespace simd
}  // namespace dpuemu
#endif  // HWY_ONCE
