#include "hw/formats.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace dpuemu {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

// Present bits among the first `count` bits of `map`, 8 bytes at a time (pop: a word's set
// bits).
template <class Pop>
inline int64_t PopCountWords(const uint8_t* map, int64_t count, Pop pop) {
  int64_t n = 0, i = 0;
  for (; i + 64 <= count; i += 64) {
    uint64_t w;
    std::memcpy(&w, map + i / 8, 8);
    n += pop(w);
  }
  for (; i + 8 <= count; i += 8) n += pop(map[i / 8]);
  for (; i < count; ++i) n += MapBit(map, i);
  return n;
}

// The baseline x86-64 build has no popcnt instruction: __builtin_popcount there is a libgcc call
// per word, which was most of DecompressWeights' time. So SWAR, and the instruction itself in a
// function compiled for it where the CPU has it.
inline int64_t PopCountSwar(uint64_t w) {
  w = w - ((w >> 1) & 0x5555555555555555ull);
  w = (w & 0x3333333333333333ull) + ((w >> 2) & 0x3333333333333333ull);
  w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0Full;
  return static_cast<int64_t>((w * 0x0101010101010101ull) >> 56);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("popcnt"))) int64_t PopCountBitsPopcnt(const uint8_t* map, int64_t count) {
  int64_t n = 0, i = 0;
  for (; i + 64 <= count; i += 64) {
    uint64_t w;
    std::memcpy(&w, map + i / 8, 8);
    n += __builtin_popcountll(w);
  }
  return n + PopCountWords(map + i / 8, count - i, PopCountSwar);
}
#endif

int64_t PopCountBits(const uint8_t* map, int64_t count) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool popcnt = __builtin_cpu_supports("popcnt");
  if (popcnt) return PopCountBitsPopcnt(map, count);
#endif
  return PopCountWords(map, count, PopCountSwar);
}

// The first set bit of `map` in bits [begin, end), or -1: whole bytes where it can.
int64_t FirstSetBit(const uint8_t* map, int64_t begin, int64_t end) {
  int64_t b = begin;
  for (; b < end && (b & 7) != 0; ++b) {
    if (MapBit(map, b)) return b;
  }
  for (; b + 64 <= end; b += 64) {
    uint64_t v;
    std::memcpy(&v, map + (b >> 3), 8);
    if (v != 0) break;  // its first set bit, below
  }
  for (; b + 8 <= end; b += 8) {
    const uint8_t v = map[b >> 3];
    if (v != 0) return b + __builtin_ctz(v);
  }
  for (; b < end; ++b) {
    if (MapBit(map, b)) return b;
  }
  return -1;
}

// Accepts [H, W, C] or [1, H, W, C]; returns [H, W, C].
StatusOr<std::vector<int64_t>> Hwc(const std::vector<int64_t>& shape, const std::string& field) {
  if (shape.size() == 3) return shape;
  if (shape.size() == 4 && shape[0] == 1) return std::vector<int64_t>{shape[1], shape[2], shape[3]};
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : ", ") + Str(d);
  return InvalidArgument(field + ": shape must be [H, W, C] or [1, H, W, C], got [" + s + "]");
}

Status CheckSeDivides(int64_t c, int64_t se_size, const std::string& field) {
  if (se_size <= 0 || c % se_size != 0) {
    return InvalidArgument(field + ": se_size = " + Str(se_size) + " must divide C = " + Str(c));
  }
  return OkStatus();
}

// Every dimension in `dims` (t's shape, or its [H, W, C]) is positive.
Status CheckPositiveDims(const std::vector<int64_t>& dims, const Tensor& t, const std::string& field) {
  for (int64_t d : dims) {
    if (d <= 0) {
      return InvalidArgument(field + ": shape " + t.ShapeString() + " must have positive dimensions");
    }
  }
  return OkStatus();
}

}  // namespace

int64_t DenseWeightBytes(const NceGeometry& g, DType w) { return g.k * DenseWeightSetBytes(w, g.taps()); }
int64_t WeightMapBytesPerChannel(const NceGeometry& g) { return AlignUp((g.taps() + 7) / 8, 16); }
int64_t WeightMapBytes(const NceGeometry& g) { return g.k * WeightMapBytesPerChannel(g); }
int64_t WeightTableBytes(const NceGeometry& g) { return 16 * g.k; }
int64_t ActivationMapBytes(int64_t elements) { return AlignUp((elements + 7) / 8, 16); }
int64_t SeTableBytes(int64_t h, int64_t w, int64_t c, int64_t se_size) {
  return 4 * h * w * (c / se_size);
}

// ---------------------------------------------------------------------------------------------
// Compressed weights

Status CheckZeroPoint(DType t, int32_t zp, const std::string& field) {
  const int64_t lo = IsFloat(t) ? 0 : DTypeMin(t), hi = IsFloat(t) ? 0 : DTypeMax(t);
  if (zp < lo || zp > hi) {
    return InvalidArgument(field + ": zero_point = " + Str(zp) + ": must be in [" + Str(lo) + ", " +
                           Str(hi) + "] (" + DTypeName(t) + (IsFloat(t) ? ", a float type" : "") +
                           ")");
  }
  return OkStatus();
}

Status CanSparsifyWeights(DType w_dtype, int64_t c, int64_t nonzeros) {
  // Sub-8-bit weights are skipped by sparsify_weights.cpp (`getElemTypeSize() < CHAR_BIT`).
  if (IsSubByte(w_dtype)) {
    return InvalidArgument(std::string("weights: dtype ") + DTypeName(w_dtype) +
                           ": sub-8-bit weights are never sparsified (sparsify_weights.cpp)");
  }
  // Both strategies of sparsity_strategy.cpp (`shouldSparsifyWeights`): IC > VPU_DIMENSION_LIMIT
  // needs input-channel tiling, which the compression scheme cannot represent ...
  if (c > 8192) {
    return InvalidArgument("weights: IC = " + Str(c) + " > 8192: sparse weights need IC <= 8192 " +
                           "(sparsity_strategy.cpp shouldSparsifyWeights)");
  }
  // ... and a sparsity ratio of 1 (every weight equal to the zero point) is skipped.
  if (nonzeros == 0) {
    return InvalidArgument("weights: all weights equal the zero point: an all-zero weight set is "
                           "never sparsified (sparsity_strategy.cpp shouldSparsifyWeights)");
  }
  return OkStatus();
}

// A set of 16-element multiples, then 16 bytes: the compiler strides each output channel's set
// to alignValUp(IC * KY * KX, 16) elements (VPUIP/transforms/passes/conv_weights_compression.cpp
// reduceWeightsConstant), which only matters for the compressed convolution's C = 4 (with C a
// multiple of 16 the set is whole 16-element groups already).
int64_t DenseWeightSetBytes(DType t, int64_t taps) {
  return AlignUp(AlignUp(taps, 16) * DTypeBits(t) / 8, 16);
}

std::vector<uint8_t> PackDenseWeights(const Tensor& weights) {
  const int64_t k = weights.shape[0], taps = weights.numel() / k;
  const int64_t set = DenseWeightSetBytes(weights.dtype, taps);
  if (!IsSubByte(weights.dtype)) {
    const int64_t eb = DTypeBytes(weights.dtype);
    if (set == taps * eb) return weights.bytes;
    // Compressed convolution: each set padded to its aligned stride (zeros, never read).
    std::vector<uint8_t> out(static_cast<size_t>(k * set), 0);
    for (int64_t i = 0; i < k; ++i) {
      std::memcpy(out.data() + i * set, weights.bytes.data() + i * taps * eb,
                  static_cast<size_t>(taps * eb));
    }
    return out;
  }
  std::vector<uint8_t> out(static_cast<size_t>(k * set), 0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t t = 0; t < taps; ++t) {
      const uint8_t nibble = weights.bytes[static_cast<size_t>(i * taps + t)] & 0x0F;
      out[static_cast<size_t>(i * set + t / 2)] |= static_cast<uint8_t>(nibble << (4 * (t & 1)));
    }
  }
  return out;
}

int64_t DwWeightSetElements(DType t, int64_t taps) {
  return AlignUp(taps, std::max<int64_t>(128 / DTypeBits(t), 16));
}
int64_t DwWeightSetBytes(DType t, int64_t taps) { return DwWeightSetElements(t, taps) * DTypeBits(t) / 8; }

std::vector<uint8_t> PackDwWeights(const Tensor& weights, int32_t zp) {
  const DType t = weights.dtype;
  const int64_t c = weights.shape[0], taps = weights.shape[1] * weights.shape[2];
  const int64_t set = DwWeightSetElements(t, taps), bits = DTypeBits(t);
  const int64_t bytes = DTypeBytes(t);
  std::vector<uint8_t> out(static_cast<size_t>(c * DwWeightSetBytes(t, taps)), 0);
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t e = 0; e < set; ++e) {
      const int64_t i = ch * set + e;  // element index in the buffer
      if (bits == 4) {
        const int32_t v = e < taps ? weights.bytes[static_cast<size_t>(ch * taps + e)] : zp;
        out[static_cast<size_t>(i / 2)] |= static_cast<uint8_t>((v & 0x0F) << (4 * (i & 1)));
      } else if (e < taps) {
        std::memcpy(&out[static_cast<size_t>(i * bytes)], &weights.bytes[static_cast<size_t>((ch * taps + e) * bytes)],
                    static_cast<size_t>(bytes));
      } else if (!IsFloat(t)) {
        StoreInt(t, out.data(), i, zp);  // float padding stays +0.0
      }
    }
  }
  return out;
}

StatusOr<Tensor> UnpackDwWeights(ByteSpan data, const std::vector<WeightTableEntry>& table,
                                 const NceGeometry& g, DType dtype) {
  const int64_t taps = g.ky * g.kx;
  const int64_t set_bytes = DwWeightSetBytes(dtype, taps);
  if (static_cast<int64_t>(table.size()) != g.c) {
    return InvalidArgument("weight_table: " + Str(table.size()) + " entries, dwconv needs one per "
                           "channel (C = " + Str(g.c) + ")");
  }
  Tensor w(dtype, {g.c, g.ky, g.kx, 1});
  const int64_t eb = IsSubByte(dtype) ? 1 : DTypeBytes(dtype);
  for (int64_t ch = 0; ch < g.c; ++ch) {
    const WeightTableEntry& e = table[static_cast<size_t>(ch)];
    if (e.sparsity_ptr != kDenseSparsityPtr) {
      return InvalidArgument("weight_table[" + Str(ch) + "].sparsity_ptr = " + Str(e.sparsity_ptr) +
                             ": dwconv weights are dense (0xFFFFFF; NCEDepthConvolutionOp::"
                             "sparsitySupport: sparse output only)");
    }
    if (e.weight_ptr & 15) {
      return InvalidArgument("weight_table[" + Str(ch) + "].weight_ptr = " + Str(e.weight_ptr) +
                             ": must be 16-byte aligned");
    }
    if (int64_t{e.weight_ptr} + set_bytes > static_cast<int64_t>(data.size())) {
      return InvalidArgument("weight_table[" + Str(ch) + "].weight_ptr = " + Str(e.weight_ptr) +
                             ": the channel's " + Str(set_bytes) + "-byte weight set (KY*KX = " +
                             Str(taps) + " taps padded to " + Str(DwWeightSetElements(dtype, taps)) +
                             " elements) ends beyond the " + Str(data.size()) + "-byte weight buffer");
    }
    const uint8_t* set = data.data() + e.weight_ptr;
    for (int64_t t = 0; t < taps; ++t) {
      uint8_t* dst = &w.bytes[static_cast<size_t>((ch * taps + t) * eb)];
      if (IsSubByte(dtype)) {
        const int32_t nib = (set[t / 2] >> (4 * (t & 1))) & 0x0F;
        const int32_t v = dtype == DType::kI4 && nib >= 8 ? nib - 16 : nib;
        *dst = static_cast<uint8_t>(v);
      } else {
        std::memcpy(dst, set + t * eb, static_cast<size_t>(eb));
      }
    }
  }
  return w;
}

StatusOr<NceGeometry> CheckCompressWeights(const Tensor& weights, int32_t zp) {
  if (weights.shape.size() != 4) {
    return InvalidArgument("weights: shape must be [K, KY, KX, C], got " + weights.ShapeString());
  }
  // An empty tensor has no channels to compress (and K could be anything).
  DPUEMU_RETURN_IF_ERROR(CheckPositiveDims(weights.shape, weights, "weights"));
  if (weights.dtype == DType::kI32 || weights.dtype == DType::kFP32 || IsSubByte(weights.dtype)) {
    return InvalidArgument(std::string("weights: dtype ") + DTypeName(weights.dtype) +
                           " cannot be compressed (i8, u8, fp16 or bf16; sub-byte weights are "
                           "never sparsified, the compiler's sparsify_weights.cpp)");
  }
  // With every dimension positive, matching bytes bound every product of dimensions.
  if (!HasExactBytes(weights)) {
    return InvalidArgument("weights: " + Str(weights.bytes.size()) + " bytes for " +
                           DTypeName(weights.dtype) + " shape " + weights.ShapeString());
  }
  if (weights.bytes.size() > (size_t{1} << 31)) return InvalidArgument("weights: larger than 2 GiB");
  DPUEMU_RETURN_IF_ERROR(CheckZeroPoint(weights.dtype, zp, "weights"));
  NceGeometry g;
  g.k = weights.shape[0]; g.ky = weights.shape[1]; g.kx = weights.shape[2]; g.c = weights.shape[3];
  return g;
}

StatusOr<CompressedWeights> CompressWeights(const Tensor& weights, int32_t zp) {
  NceGeometry g;
  DPUEMU_ASSIGN_OR_RETURN(g, CheckCompressWeights(weights, zp));
  const int64_t eb = DTypeBytes(weights.dtype);
  const int64_t taps = g.taps();
  const int64_t map_per_k = WeightMapBytesPerChannel(g);
  CompressedWeights out;
  out.map.assign(static_cast<size_t>(g.k * map_per_k), 0);
  const uint8_t* src = weights.bytes.data();
  // 1-byte weights (the common case) test each byte against the zero point inline, which is what
  // IsWeightZero does for them; the runtime compresses every slice's weights, so this loop is
  // part of each `dpuemu run`'s preparation.
  const bool byte_zp = eb == 1 && !IsFloat(weights.dtype);
  const uint8_t zp8 = static_cast<uint8_t>(zp);
  // At most every byte plus 16 bytes of alignment per channel, zero-filled.
  std::vector<uint8_t> data(weights.bytes.size() + static_cast<size_t>(16 * g.k));
  size_t used = 0;
  for (int64_t k = 0; k < g.k; ++k) {
    out.data_offset.push_back(static_cast<uint32_t>(used));
    out.map_offset.push_back(static_cast<uint32_t>(k * map_per_k));
    uint8_t* map = out.map.data() + k * map_per_k;
    const size_t start = used;
    if (byte_zp) {
      // Branch-free: random sparsity makes the present/absent branch unpredictable.
      const uint8_t* w = src + k * taps;
      for (int64_t t = 0; t < taps; ++t) {
        const uint8_t present = w[t] != zp8;
        data[used] = w[t];
        used += present;
        map[t >> 3] |= static_cast<uint8_t>(present << (t & 7));
      }
    } else {
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t i = k * taps + t;
        if (IsWeightZero(weights.dtype, src, i, zp)) continue;
        map[t >> 3] |= static_cast<uint8_t>(1u << (t & 7));
        std::memcpy(data.data() + used, src + i * eb, static_cast<size_t>(eb));
        used += static_cast<size_t>(eb);
      }
    }
    out.nonzeros.push_back(static_cast<int64_t>((used - start) / static_cast<size_t>(eb)));
    // The padding to 16 bytes: zeros (the branch-free loop may have written one byte past the
    // channel's last present weight: clear it).
    const size_t aligned = static_cast<size_t>(AlignUp(static_cast<int64_t>(used), 16));
    std::fill(data.begin() + static_cast<std::ptrdiff_t>(used), data.begin() + static_cast<std::ptrdiff_t>(aligned), uint8_t{0});
    used = aligned;
  }
  data.resize(used);
  out.data = std::move(data);
  return out;
}

namespace {

// CheckDecompressWeights' rules before the table: dtype, zero point, the channel geometry.
Status CheckWeightSetGeometry(const NceGeometry& g, DType dtype, int32_t zp) {
  if (dtype != DType::kU8 && dtype != DType::kI8 && dtype != DType::kFP16 &&
      dtype != DType::kBF16 && !IsSubByte(dtype)) {
    return InvalidArgument(std::string("weights: dtype ") + DTypeName(dtype) +
                           " is not a weight type (i8, u8, i4, u4, fp16 or bf16)");
  }
  DPUEMU_RETURN_IF_ERROR(CheckZeroPoint(dtype, zp, "weights"));
  // Bounded one product at a time so that none of them overflows.
  const int64_t limit = int64_t{1} << 31;
  const int64_t eb = DTypeBytes(dtype);
  if (g.ky <= 0 || g.kx <= 0 || g.c <= 0 || g.ky > limit || g.kx > limit || g.c > limit ||
      g.ky * g.kx > limit || g.taps() > limit / eb) {
    return InvalidArgument("weights: KY = " + Str(g.ky) + ", KX = " + Str(g.kx) + ", C = " +
                           Str(g.c) + " must be positive with at most 2 GiB per output channel");
  }
  return OkStatus();
}

// The K limit (after the geometry passed).
Status CheckWeightSetSize(const NceGeometry& g, DType dtype) {
  const int64_t limit = int64_t{1} << 31;
  const int64_t bytes = g.taps() * DTypeBytes(dtype);
  if (g.k > limit / bytes) {
    return InvalidArgument("weights: K = " + Str(g.k) + " channels of " + Str(bytes) +
                           " bytes are larger than 2 GiB");
  }
  return OkStatus();
}

// DecodeWeightTable's size rule.
Status CheckWeightTableSize(ByteSpan bytes, int64_t k) {
  // Compared by division: 16 * k overflows for the K of a corrupt header.
  if (k <= 0 || bytes.size() % 16 != 0 || static_cast<int64_t>(bytes.size() / 16) != k) {
    const bool printable = k >= -(INT64_MAX / 16) && k <= INT64_MAX / 16;
    return InvalidArgument("weight_table: " + Str(bytes.size()) +
                           " bytes, expected 16 per output channel" +
                           (printable ? " = " + Str(16 * k) : "") + " (K = " + Str(k) + ")");
  }
  return OkStatus();
}

}  // namespace

Status CheckDecompressWeightsExceptChannels(ByteSpan table, const NceGeometry& g, DType dtype,
                                            int32_t zp) {
  DPUEMU_RETURN_IF_ERROR(CheckWeightSetGeometry(g, dtype, zp));
  DPUEMU_RETURN_IF_ERROR(CheckWeightTableSize(table, g.k));
  return CheckWeightSetSize(g, dtype);
}

StatusOr<std::vector<WeightTableEntry>> CheckDecompressWeights(ByteSpan data, ByteSpan map,
                                                               ByteSpan table,
                                                               const NceGeometry& g, DType dtype,
                                                               int32_t zp) {
  DPUEMU_RETURN_IF_ERROR(CheckWeightSetGeometry(g, dtype, zp));
  std::vector<WeightTableEntry> entries;
  DPUEMU_ASSIGN_OR_RETURN(entries, DecodeWeightTable(table, g.k));
  DPUEMU_RETURN_IF_ERROR(CheckWeightSetSize(g, dtype));
  const int64_t eb = DTypeBytes(dtype);
  const int64_t taps = g.taps();
  const int64_t map_per_k = WeightMapBytesPerChannel(g);
  for (int64_t k = 0; k < g.k; ++k) {
    const WeightTableEntry& e = entries[static_cast<size_t>(k)];
    // Built only for a message: a string per channel was most of the check's time.
    const auto where = [k] { return "weight_table[" + Str(k) + "]"; };
    if (e.sparsity_ptr == kDenseSparsityPtr) {
      const int64_t set = taps * DTypeBits(dtype) / 8;
      if (e.weight_ptr + set > static_cast<int64_t>(data.size())) {
        return OutOfRange(where() + ".weight_ptr = " + Str(e.weight_ptr) + ": dense channel of " +
                          Str(set) + " bytes ends past the weights buffer (" +
                          Str(data.size()) + " bytes)");
      }
      continue;
    }
    if (IsSubByte(dtype)) {
      return InvalidArgument(where() + ".sparsity_ptr = " + Str(e.sparsity_ptr) + ": " +
                             DTypeName(dtype) + " weights are never sparse (0xFFFFFF expected; "
                             "the compiler's sparsify_weights.cpp)");
    }
    if (e.sparsity_ptr + map_per_k > static_cast<int64_t>(map.size())) {
      return OutOfRange(where() + ".sparsity_ptr = " + Str(e.sparsity_ptr) + ": map of " +
                        Str(map_per_k) + " bytes ends past the map buffer (" + Str(map.size()) +
                        " bytes)");
    }
    const uint8_t* m = map.data() + e.sparsity_ptr;
    const int64_t b = FirstSetBit(m, taps, map_per_k * 8);
    if (b >= 0) {
      return InvalidArgument(where() + ": sparsity map padding bit " + Str(b) + " is set (only " +
                             Str(taps) + " weights per channel)");
    }
    const int64_t nnz = PopCountBits(m, taps);
    if (e.weight_ptr + nnz * eb > static_cast<int64_t>(data.size())) {
      return OutOfRange(where() + ".weight_ptr = " + Str(e.weight_ptr) + ": the map's " + Str(nnz) +
                        " non-zeros end past the weights buffer (" + Str(data.size()) + " bytes)");
    }
  }
  return entries;
}

StatusOr<Tensor> DecompressWeights(ByteSpan data, ByteSpan map, ByteSpan table,
                                   const NceGeometry& g, DType dtype, int32_t zp) {
  std::vector<WeightTableEntry> entries;
  DPUEMU_ASSIGN_OR_RETURN(entries, CheckDecompressWeights(data, map, table, g, dtype, zp));
  const int64_t eb = DTypeBytes(dtype);
  const int64_t taps = g.taps();
  Tensor out(dtype, {g.k, g.ky, g.kx, g.c});
  // The absent value: the zero point's bit pattern (+0.0 for float).
  std::vector<uint8_t> zp_bytes(static_cast<size_t>(eb), 0);
  if (eb == 1) zp_bytes[0] = static_cast<uint8_t>(zp);
  for (int64_t k = 0; k < g.k; ++k) {
    const WeightTableEntry& e = entries[static_cast<size_t>(k)];
    uint8_t* dst = out.bytes.data() + k * taps * eb;
    if (e.sparsity_ptr == kDenseSparsityPtr && IsSubByte(dtype)) {
      // Two per byte, low nibble first; i4 sign-extended into the host byte.
      const uint8_t* src = data.data() + e.weight_ptr;
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t nibble = (src[t / 2] >> (4 * (t & 1))) & 0x0F;
        StoreInt(dtype, dst, t, dtype == DType::kI4 && nibble >= 8 ? nibble - 16 : nibble);
      }
      continue;
    }
    if (e.sparsity_ptr == kDenseSparsityPtr) {
      std::memcpy(dst, data.data() + e.weight_ptr, static_cast<size_t>(taps * eb));
      continue;
    }
    const uint8_t* m = map.data() + e.sparsity_ptr;
    const uint8_t* src = data.data() + e.weight_ptr;
    for (int64_t t = 0; t < taps; ++t) {
      if (MapBit(m, t)) {
        std::memcpy(dst + t * eb, src, static_cast<size_t>(eb));
        src += eb;
      } else {
        std::memcpy(dst + t * eb, zp_bytes.data(), static_cast<size_t>(eb));
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Weight table

StatusOr<std::vector<WeightTableEntry>> MakeWeightTable(const NceOp& op, const ChannelQuant& quant,
                                                        const std::vector<uint32_t>& weight_ptrs,
                                                        const std::vector<uint32_t>& sparsity_ptrs) {
  DPUEMU_RETURN_IF_ERROR(ValidateQuant(op, quant));
  const size_t k = static_cast<size_t>(op.g.k);
  if (weight_ptrs.size() != k || (!sparsity_ptrs.empty() && sparsity_ptrs.size() != k)) {
    return InvalidArgument("weight table: need one weight (and sparsity) pointer per output channel");
  }
  std::vector<WeightTableEntry> t(k);
  const bool integer = IsIntegerPath(op);
  for (size_t i = 0; i < k; ++i) {
    t[i].weight_ptr = weight_ptrs[i];
    t[i].sparsity_ptr = sparsity_ptrs.empty() ? kDenseSparsityPtr : sparsity_ptrs[i];
    if ((t[i].weight_ptr & 15) || (t[i].sparsity_ptr != kDenseSparsityPtr && (t[i].sparsity_ptr & 15))) {
      return InvalidArgument("weight table[" + Str(i) + "]: pointers must be 16-byte aligned");
    }
    if (integer) {
      t[i].scale = IntScaleWord(quant.mult[i], quant.shift[i]);
      t[i].bias = static_cast<uint32_t>(quant.bias[i]);
    } else {
      t[i].scale = FloatBits(quant.scale[i]);
      t[i].bias = FloatBits(quant.fbias[i]);
    }
  }
  return t;
}

std::vector<uint8_t> EncodeWeightTable(const std::vector<WeightTableEntry>& entries) {
  std::vector<uint8_t> out(entries.size() * 16);
  for (size_t i = 0; i < entries.size(); ++i) {
    const uint32_t words[4] = {entries[i].weight_ptr, entries[i].sparsity_ptr, entries[i].scale,
                               entries[i].bias};
    for (int w = 0; w < 4; ++w) {
      for (int b = 0; b < 4; ++b) out[i * 16 + w * 4 + b] = static_cast<uint8_t>(words[w] >> (8 * b));
    }
  }
  return out;
}

StatusOr<std::vector<WeightTableEntry>> DecodeWeightTable(ByteSpan bytes, int64_t k) {
  DPUEMU_RETURN_IF_ERROR(CheckWeightTableSize(bytes, k));
  std::vector<WeightTableEntry> t(static_cast<size_t>(k));
  // Little-endian words assembled in registers (a word array on the stack cost a store
  // forwarding stall per entry).
  const auto word = [&bytes](int64_t at) {
    return uint32_t{bytes[at]} | uint32_t{bytes[at + 1]} << 8 | uint32_t{bytes[at + 2]} << 16 |
           uint32_t{bytes[at + 3]} << 24;
  };
  for (int64_t i = 0; i < k; ++i) {
    const uint32_t w[4] = {word(i * 16), word(i * 16 + 4), word(i * 16 + 8), word(i * 16 + 12)};
    t[i] = {w[0], w[1], w[2], w[3]};
    if (w[0] & 15) {
      return InvalidArgument("weight_table[" + Str(i) + "].weight_ptr = " + Str(w[0]) +
                             ": must be 16-byte aligned");
    }
    if (w[1] != kDenseSparsityPtr && (w[1] & 15)) {
      return InvalidArgument("weight_table[" + Str(i) + "].sparsity_ptr = " + Str(w[1]) +
                             ": must be 16-byte aligned or 0xFFFFFF (dense)");
    }
  }
  return t;
}

StatusOr<ChannelQuant> WeightTableQuant(const NceOp& op, const std::vector<WeightTableEntry>& t) {
  ChannelQuant q;
  for (const WeightTableEntry& e : t) {
    if (IsIntegerPath(op)) {
      q.mult.push_back(ScaleWordMult(e.scale));
      q.shift.push_back(ScaleWordShift(e.scale));
      q.bias.push_back(static_cast<int32_t>(e.bias));
    } else {
      q.scale.push_back(BitsToFloat(e.scale));
      q.fbias.push_back(BitsToFloat(e.bias));
    }
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// Sparse activations

Status CheckEncodeActivations(const Tensor& t, int32_t zp, int64_t se_size) {
  std::vector<int64_t> hwc;
  DPUEMU_ASSIGN_OR_RETURN(hwc, Hwc(t.shape, "activations"));
  // C = 0 would let any se_size "divide" it.
  DPUEMU_RETURN_IF_ERROR(CheckPositiveDims(hwc, t, "activations"));
  if (!HasExactBytes(t)) {
    return InvalidArgument("activations: " + Str(t.bytes.size()) + " bytes for " +
                           DTypeName(t.dtype) + " shape " + t.ShapeString());
  }
  DPUEMU_RETURN_IF_ERROR(CheckZeroPoint(t.dtype, zp, "activations"));
  return CheckSeDivides(hwc[2], se_size, "activations");
}

StatusOr<SparseActivations> EncodeSparseActivations(const Tensor& t, int32_t zp, int64_t se_size) {
  DPUEMU_RETURN_IF_ERROR(CheckEncodeActivations(t, zp, se_size));
  const int64_t eb = DTypeBytes(t.dtype);
  const int64_t n = t.numel();
  SparseActivations out;
  out.se_size = se_size;
  out.data.assign(t.bytes.size(), 0);
  out.map.assign(static_cast<size_t>(ActivationMapBytes(n)), 0);
  const uint8_t* src = t.bytes.data();
  for (int64_t se = 0; se < n / se_size; ++se) {
    uint8_t* slot = out.data.data() + se * se_size * eb;
    for (int64_t j = 0; j < se_size; ++j) {
      const int64_t i = se * se_size + j;
      if (IsZeroPoint(t.dtype, src, i, zp)) continue;
      out.map[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
      std::memcpy(slot, src + i * eb, static_cast<size_t>(eb));
      slot += eb;
    }
  }
  return out;
}

StatusOr<Tensor> DecodeSparseActivations(ByteSpan data, ByteSpan map, DType dtype,
                                         const std::vector<int64_t>& shape, int32_t zp,
                                         int64_t se_size) {
  ActivationView view;
  view.tiles = {data};
  view.map = map;
  view.se_size = se_size;
  return GatherActivations(view, dtype, shape, zp);
}

// ---------------------------------------------------------------------------------------------
// SE pointers and the gather

StatusOr<int32_t> EncodeSePointer(int64_t offset, int32_t tile) {
  if (offset < 0 || offset > kSeMaxOffset || (offset & 15)) {
    return InvalidArgument("se pointer: offset " + Str(offset) +
                           " must be 16-byte aligned and at most " + Str(kSeMaxOffset));
  }
  if (tile < 0 || tile > kSeMaxTile) {
    return InvalidArgument("se pointer: tile " + Str(tile) + " must be in [0, " + Str(kSeMaxTile) + "]");
  }
  return static_cast<int32_t>(((offset >> 4) << 9) | tile);
}

StatusOr<std::vector<int32_t>> MakeIdentitySeTable(int64_t h, int64_t w, int64_t c,
                                                   int64_t se_size, DType dtype, int32_t tile,
                                                   int64_t base_offset) {
  DPUEMU_RETURN_IF_ERROR(CheckSeDivides(c, se_size, "se table"));
  const int64_t eb = DTypeBytes(dtype);
  if (se_size * eb % 16 != 0) {
    return InvalidArgument("se table: se_size * element bytes = " + Str(se_size * eb) +
                           " must be a multiple of 16 (pointers are 16-byte aligned)");
  }
  std::vector<int32_t> table;
  table.reserve(static_cast<size_t>(h * w * (c / se_size)));
  for (int64_t p = 0; p < h * w; ++p) {
    for (int64_t s = 0; s < c / se_size; ++s) {
      int32_t e;
      DPUEMU_ASSIGN_OR_RETURN(e, EncodeSePointer(base_offset + (p * c + s * se_size) * eb, tile));
      table.push_back(e);
    }
  }
  return table;
}

namespace {

StatusOr<GatherShape> CheckGatherImpl(const ActivationView& view, DType dtype,
                                      const std::vector<int64_t>& shape, int32_t zp,
                                      int64_t row_begin, int64_t row_end, bool se_pointers) {
  std::vector<int64_t> hwc;
  DPUEMU_ASSIGN_OR_RETURN(hwc, Hwc(shape, "activations"));
  const int64_t h = hwc[0], w = hwc[1], c = hwc[2];
  const int64_t elements = ShapeElements(hwc);
  if (h <= 0 || w <= 0 || c <= 0 || elements < 0 || elements > (int64_t{1} << 31)) {
    return InvalidArgument("activations: shape [" + Str(h) + ", " + Str(w) + ", " + Str(c) +
                           "] must be positive with at most 2^31 elements");
  }
  DPUEMU_RETURN_IF_ERROR(CheckSeDivides(c, view.se_size, "activations"));
  if (dtype == DType::kI32) return InvalidArgument("activations: dtype i32 is not an activation type");
  DPUEMU_RETURN_IF_ERROR(CheckZeroPoint(dtype, zp, "activations"));
  if (row_end < 0) row_end = h;
  if (row_begin < 0 || row_begin > row_end || row_end > h) {
    return InvalidArgument("rows: [" + Str(row_begin) + ", " + Str(row_end) +
                           ") must lie within [0, H = " + Str(h) + "]");
  }
  const int64_t eb = DTypeBytes(dtype);
  const int64_t n = h * w * c;
  const int64_t se = view.se_size;
  const int64_t ses = n / se;
  const bool sparse = !view.map.empty();
  const bool table = !view.se_table.empty();
  if (sparse && static_cast<int64_t>(view.map.size()) != ActivationMapBytes(n)) {
    return InvalidArgument("activations.map: " + Str(view.map.size()) + " bytes, expected " +
                           Str(ActivationMapBytes(n)) + " (one bit per element of [" + Str(h) +
                           ", " + Str(w) + ", " + Str(c) + "], padded to 16 bytes)");
  }
  if (table && static_cast<int64_t>(view.se_table.size()) != ses) {
    return InvalidArgument("se_table: " + Str(view.se_table.size()) + " entries, expected H * W * " +
                           "C / se_size = " + Str(ses));
  }
  if (view.tiles.empty()) return InvalidArgument("activations: no tile buffers given");
  if (!table && static_cast<int64_t>(view.tiles[0].size()) < n * eb) {
    return OutOfRange("activations: data of " + Str(view.tiles[0].size()) + " bytes, expected " +
                      Str(n * eb));
  }
  const int64_t ses_per_row = w * c / se;
  for (int64_t s = row_begin * ses_per_row; se_pointers && table && s < row_end * ses_per_row;
       ++s) {
    const int32_t entry = view.se_table[s];
    if (static_cast<uint32_t>(entry) >> 29) {
      return InvalidArgument("se_table[" + Str(s) + "] = " + Str(entry) +
                             ": bits [31:29] are unused and must be 0");
    }
    const SePointer p = DecodeSePointer(entry);
    if (p.tile >= static_cast<int32_t>(view.tiles.size())) {
      return OutOfRange("se_table[" + Str(s) + "]: BASE_PTR = " + Str(p.tile) +
                        " is beyond the tile count " + Str(view.tiles.size()));
    }
    const ByteSpan tile = view.tiles[static_cast<size_t>(p.tile)];
    if (p.offset + se * eb > static_cast<int64_t>(tile.size())) {
      return OutOfRange("se_table[" + Str(s) + "]: DATA_PTR offset " + Str(p.offset) + " + " +
                        Str(se * eb) + " bytes is outside tile " + Str(p.tile) + " (" +
                        Str(tile.size()) + " bytes)");
    }
  }
  if (sparse) {
    const int64_t b = FirstSetBit(view.map.data(), n, static_cast<int64_t>(view.map.size()) * 8);
    if (b >= 0) {
      return InvalidArgument("activations.map: padding bit " + Str(b) + " is set (tensor has " +
                             Str(n) + " elements)");
    }
  }
  return GatherShape{h, w, c};
}

}  // namespace

StatusOr<GatherShape> CheckGather(const ActivationView& view, DType dtype,
                                  const std::vector<int64_t>& shape, int32_t zp,
                                  int64_t row_begin, int64_t row_end) {
  return CheckGatherImpl(view, dtype, shape, zp, row_begin, row_end, /*se_pointers=*/true);
}

StatusOr<GatherShape> CheckGatherExceptSePointers(const ActivationView& view, DType dtype,
                                                  const std::vector<int64_t>& shape, int32_t zp,
                                                  int64_t row_begin, int64_t row_end) {
  return CheckGatherImpl(view, dtype, shape, zp, row_begin, row_end, /*se_pointers=*/false);
}

StatusOr<Tensor> GatherActivations(const ActivationView& view, DType dtype,
                                   const std::vector<int64_t>& shape, int32_t zp) {
  GatherShape gs;
  DPUEMU_ASSIGN_OR_RETURN(gs, CheckGather(view, dtype, shape, zp));
  const int64_t eb = DTypeBytes(dtype);
  const int64_t se = view.se_size;
  const int64_t ses = gs.h * gs.w * gs.c / se;
  const bool sparse = !view.map.empty();
  const bool table = !view.se_table.empty();
  Tensor out(dtype, {gs.h, gs.w, gs.c});
  std::vector<uint8_t> zp_bytes(static_cast<size_t>(eb), 0);
  if (eb == 1) zp_bytes[0] = static_cast<uint8_t>(zp);
  for (int64_t s = 0; s < ses; ++s) {
    const uint8_t* slot;
    if (table) {
      const SePointer p = DecodeSePointer(view.se_table[s]);
      slot = view.tiles[static_cast<size_t>(p.tile)].data() + p.offset;
    } else {
      slot = view.tiles[0].data() + s * se * eb;
    }
    uint8_t* dst = out.bytes.data() + s * se * eb;
    if (!sparse) {
      std::memcpy(dst, slot, static_cast<size_t>(se * eb));
      continue;
    }
    for (int64_t j = 0; j < se; ++j) {
      const int64_t i = s * se + j;
      if (MapBit(view.map.data(), i)) {
        std::memcpy(dst + j * eb, slot, static_cast<size_t>(eb));
        slot += eb;
      } else {
        std::memcpy(dst + j * eb, zp_bytes.data(), static_cast<size_t>(eb));
      }
    }
  }
  return out;
}

}  // namespace dpuemu
