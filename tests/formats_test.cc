// Tests of the DPU memory formats (hw/formats.h): generated round trips over every element type,
// zero point and sparsity; exact buffer sizes against the formulas of shared/dpu-facts.md;
// hand-checked layouts of tiny examples; and one test per rejected input, each asserting that
// the message names the offending field.
#include "hw/formats.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "hw/rng.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

constexpr DType kDTypes[] = {DType::kI8, DType::kU8, DType::kFP16, DType::kBF16};
constexpr double kSparsities[] = {0.0, 0.5, 0.9, 1.0};

template <typename T, size_t N>
T Pick(Rng& rng, const T (&options)[N]) {
  return options[rng.Int(0, N - 1)];
}

int64_t Align16(int64_t v) { return (v + 15) / 16 * 16; }

// The byte pattern of the absent value: the zero point for 8-bit types, +0.0 for floats.
std::vector<uint8_t> ZpBytes(DType t, int32_t zp) {
  std::vector<uint8_t> b(DTypeBytes(t), 0);
  if (b.size() == 1) b[0] = static_cast<uint8_t>(zp);
  return b;
}

bool IsAbsent(const Tensor& t, int64_t i, const std::vector<uint8_t>& zp_bytes) {
  return std::memcmp(t.bytes.data() + i * zp_bytes.size(), zp_bytes.data(), zp_bytes.size()) == 0;
}

// Weights compare by value (the compiler's sparsify.cpp): a float -0.0 is absent too.
bool IsAbsentWeight(const Tensor& t, int64_t i, const std::vector<uint8_t>& zp_bytes) {
  if (IsFloat(t.dtype) && DTypeBytes(t.dtype) == 2 && t.bytes[2 * i] == 0 &&
      t.bytes[2 * i + 1] == 0x80) {
    return true;
  }
  return IsAbsent(t, i, zp_bytes);
}

// A zero point for `t`: 0 for floats; for 8-bit types 0, either end of the range or a random one.
int32_t DrawZp(DType t, Rng& rng) {
  if (IsFloat(t)) return 0;
  const int32_t options[] = {0, static_cast<int32_t>(DTypeMin(t)),
                             static_cast<int32_t>(DTypeMax(t)),
                             static_cast<int32_t>(rng.Int(DTypeMin(t), DTypeMax(t)))};
  return Pick(rng, options);
}

// Fills `t` so that a fraction `sparsity` of the elements is the absent value. Present elements
// are any other bit pattern; for floats that includes -0.0, infinities and NaNs, which the
// formats must carry byte-exactly.
void Fill(Tensor& t, int32_t zp, double sparsity, Rng& rng) {
  const std::vector<uint8_t> zp_bytes = ZpBytes(t.dtype, zp);
  const size_t eb = zp_bytes.size();
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint8_t* e = t.bytes.data() + i * eb;
    if (rng.Bernoulli(sparsity)) {
      std::memcpy(e, zp_bytes.data(), eb);
      continue;
    }
    do {
      const uint64_t r = rng.Next();
      std::memcpy(e, &r, eb);
      if (eb == 2 && (r >> 32) % 8 == 0) {  // -0.0 is a stored value
        e[0] = 0;
        e[1] = 0x80;
      }
    } while (std::memcmp(e, zp_bytes.data(), eb) == 0);
  }
}

// A NceOp that accepts weights of `w`: integer path for 8-bit weights, float path otherwise.
NceOp OpFor(const NceGeometry& g, DType w) {
  NceOp op;
  op.g = g;
  op.w_dtype = w;
  op.in_dtype = IsFloat(w) ? w : DType::kU8;
  op.out_dtype = IsFloat(w) ? DType::kFP32 : DType::kU8;
  return op;
}

ChannelQuant RandomQuant(const NceOp& op, Rng& rng) {
  ChannelQuant q;
  for (int64_t k = 0; k < op.g.k; ++k) {
    if (IsIntegerPath(op)) {
      q.mult.push_back(static_cast<int32_t>(rng.Int(0, 65535)));
      q.shift.push_back(static_cast<int32_t>(rng.Int(0, 63)));
      q.bias.push_back(static_cast<int32_t>(rng.Int(INT32_MIN, INT32_MAX)));
    } else {
      q.scale.push_back(static_cast<float>(rng.Uniform() * 8 - 4));
      q.fbias.push_back(static_cast<float>(rng.Uniform() * 100 - 50));
    }
  }
  return q;
}

std::vector<uint8_t> Bytes(std::initializer_list<int> v) {
  std::vector<uint8_t> out;
  for (int b : v) out.push_back(static_cast<uint8_t>(b));
  return out;
}

std::vector<uint8_t> Padded(std::vector<uint8_t> v, size_t size) {
  v.resize(size, 0);
  return v;
}

// Asserts that `s` failed and that its message mentions `field`.
template <typename S>
void ExpectError(const S& s, const std::string& field) {
  const Status& st = [&]() -> const Status& {
    if constexpr (std::is_same_v<S, Status>) {
      return s;
    } else {
      return s.status();
    }
  }();
  ASSERT_FALSE(st.ok()) << "expected an error naming '" << field << "'";
  EXPECT_NE(st.message().find(field), std::string::npos)
      << "message does not name '" << field << "': " << st.message();
}

// ---------------------------------------------------------------------------------------------
// Compressed weights and the weight table

struct WeightCase {
  DType dtype;
  int32_t zp;
  double sparsity;
  NceGeometry g;
};

WeightCase DrawWeightCase(Rng& rng) {
  WeightCase c;
  c.dtype = Pick(rng, kDTypes);
  c.zp = DrawZp(c.dtype, rng);
  c.sparsity = Pick(rng, kSparsities);
  const int64_t kernels[] = {1, 2, 3, 5};
  const int64_t channels[] = {16, 48, 80};
  const int64_t outputs[] = {16, 32, 48};
  c.g.ky = Pick(rng, kernels);
  c.g.kx = Pick(rng, kernels);
  c.g.c = Pick(rng, channels);
  c.g.k = Pick(rng, outputs);
  return c;
}

TEST(CompressedWeights, RoundTripsThroughTheWeightTable) {
  const uint64_t base = BaseSeed(1000);
  for (uint64_t seed = base; seed < base + 300; ++seed) {
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const WeightCase c = DrawWeightCase(rng);
    const NceGeometry& g = c.g;
    const int64_t eb = DTypeBytes(c.dtype);
    const int64_t taps = g.ky * g.kx * g.c;
    Tensor w(c.dtype, {g.k, g.ky, g.kx, g.c});
    Fill(w, c.zp, c.sparsity, rng);
    const Tensor w_before = w;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, c.zp));
    ASSERT_EQ(w, w_before);

    // Sizes and offsets from the formulas: each channel's run is align16(nnz * bytes), each
    // channel's map align16(ceil(taps / 8)).
    const std::vector<uint8_t> zp_bytes = ZpBytes(c.dtype, c.zp);
    const int64_t map_per_k = Align16((taps + 7) / 8);
    ASSERT_EQ(static_cast<int64_t>(cw.map.size()), g.k * map_per_k);
    ASSERT_EQ(static_cast<int64_t>(cw.nonzeros.size()), g.k);
    int64_t data_size = 0;
    for (int64_t k = 0; k < g.k; ++k) {
      int64_t nnz = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const bool present = !IsAbsentWeight(w, k * taps + t, zp_bytes);
        nnz += present;
        ASSERT_EQ(MapBit(cw.map.data() + k * map_per_k, t), present) << "k=" << k << " t=" << t;
      }
      for (int64_t b = taps; b < map_per_k * 8; ++b) {
        ASSERT_FALSE(MapBit(cw.map.data() + k * map_per_k, b)) << "padding bit " << b;
      }
      ASSERT_EQ(cw.nonzeros[k], nnz);
      ASSERT_EQ(cw.data_offset[k], data_size);
      ASSERT_EQ(cw.map_offset[k], k * map_per_k);
      for (int64_t b = nnz * eb; b < Align16(nnz * eb); ++b) {
        ASSERT_EQ(cw.data[data_size + b], 0) << "run padding of channel " << k;
      }
      data_size += Align16(nnz * eb);
    }
    ASSERT_EQ(static_cast<int64_t>(cw.data.size()), data_size);
    ASSERT_EQ(static_cast<int64_t>(cw.map.size()), WeightMapBytes(g));

    const NceOp op = OpFor(g, c.dtype);
    const ChannelQuant quant = RandomQuant(op, rng);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<WeightTableEntry> entries,
                                MakeWeightTable(op, quant, cw.data_offset, cw.map_offset));
    const std::vector<uint8_t> table = EncodeWeightTable(entries);
    ASSERT_EQ(static_cast<int64_t>(table.size()), 16 * g.k);
    ASSERT_EQ(static_cast<int64_t>(table.size()), WeightTableBytes(g));

    // The table decodes to the same entries and the same requantisation.
    DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<WeightTableEntry> decoded,
                                DecodeWeightTable(table, g.k));
    for (int64_t k = 0; k < g.k; ++k) {
      ASSERT_EQ(decoded[k].weight_ptr, cw.data_offset[k]);
      ASSERT_EQ(decoded[k].sparsity_ptr, cw.map_offset[k]);
      ASSERT_EQ(decoded[k].scale, entries[k].scale);
      ASSERT_EQ(decoded[k].bias, entries[k].bias);
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const ChannelQuant back, WeightTableQuant(op, decoded));
    ASSERT_EQ(back.mult, quant.mult);
    ASSERT_EQ(back.shift, quant.shift);
    ASSERT_EQ(back.bias, quant.bias);
    ASSERT_EQ(back.scale, quant.scale);
    ASSERT_EQ(back.fbias, quant.fbias);

    const CompressedWeights cw_before = cw;
    const std::vector<uint8_t> table_before = table;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor dense,
                                DecompressWeights(cw.data, cw.map, table, g, c.dtype, c.zp));
    // Absent weights come back as the zero point's pattern: a float -0.0 as +0.0.
    Tensor canonical = w;
    for (int64_t i = 0; i < w.numel(); ++i) {
      if (IsAbsentWeight(w, i, zp_bytes)) {
        std::memcpy(canonical.bytes.data() + i * zp_bytes.size(), zp_bytes.data(), zp_bytes.size());
      }
    }
    ASSERT_EQ(FirstDifference(dense, canonical), "");
    ASSERT_EQ(cw.data, cw_before.data);
    ASSERT_EQ(cw.map, cw_before.map);
    ASSERT_EQ(table, table_before);

    // The dense table (sparsity pointer 0xFFFFFF) reads the OYXI tensor as it is.
    std::vector<uint32_t> dense_ptrs;
    for (int64_t k = 0; k < g.k; ++k) dense_ptrs.push_back(static_cast<uint32_t>(k * taps * eb));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<WeightTableEntry> dense_entries,
                                MakeWeightTable(op, quant, dense_ptrs, {}));
    for (const WeightTableEntry& e : dense_entries) ASSERT_EQ(e.sparsity_ptr, 0xFFFFFFu);
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const Tensor from_dense,
        DecompressWeights(w.bytes, {}, EncodeWeightTable(dense_entries), g, c.dtype, c.zp));
    ASSERT_EQ(FirstDifference(from_dense, w), "");
  }
}

TEST(CompressedWeights, HandLayoutI8) {
  // K=1, 1x1, C=16: values at 1, 4 and 15.
  Tensor w(DType::kI8, {1, 1, 1, 16});
  w.bytes[1] = 5;
  w.bytes[4] = static_cast<uint8_t>(-3);
  w.bytes[15] = 7;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, 0));
  EXPECT_EQ(cw.map, Padded(Bytes({0x12, 0x80}), 16));
  EXPECT_EQ(cw.data, Padded(Bytes({5, 0xFD, 7}), 16));
  EXPECT_EQ(cw.nonzeros, std::vector<int64_t>{3});
  EXPECT_EQ(cw.data_offset, std::vector<uint32_t>{0});
  EXPECT_EQ(cw.map_offset, std::vector<uint32_t>{0});
}

TEST(CompressedWeights, HandLayoutTwoChannelsWithZeroPoint) {
  // i8, zp = -2, K=2, C=32. Channel 0: 17 present values (runs over one 16-byte line);
  // channel 1: one present value, the last element. 0 is a present value here.
  Tensor w(DType::kI8, {2, 1, 1, 32});
  for (auto& b : w.bytes) b = static_cast<uint8_t>(-2);
  for (int i = 0; i <= 16; ++i) w.bytes[i] = static_cast<uint8_t>(i);
  w.bytes[32 + 31] = 0x7F;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, -2));
  EXPECT_EQ(cw.data_offset, (std::vector<uint32_t>{0, 32}));
  EXPECT_EQ(cw.map_offset, (std::vector<uint32_t>{0, 16}));
  EXPECT_EQ(cw.nonzeros, (std::vector<int64_t>{17, 1}));
  std::vector<uint8_t> data(48, 0);
  for (int i = 0; i <= 16; ++i) data[i] = static_cast<uint8_t>(i);
  data[32] = 0x7F;
  EXPECT_EQ(cw.data, data);
  std::vector<uint8_t> map = Padded(Bytes({0xFF, 0xFF, 0x01}), 16);
  const std::vector<uint8_t> map1 = Padded(Bytes({0, 0, 0, 0x80}), 16);
  map.insert(map.end(), map1.begin(), map1.end());
  EXPECT_EQ(cw.map, map);
}

TEST(CompressedWeights, HandLayoutAllZeroPointChannelTakesNoBytes) {
  Tensor w(DType::kU8, {2, 1, 1, 16});
  for (int i = 0; i < 16; ++i) w.bytes[i] = 128;     // channel 0: all zero point
  for (int i = 0; i < 16; ++i) w.bytes[16 + i] = i;  // channel 1: all present
  DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, 128));
  EXPECT_EQ(cw.data_offset, (std::vector<uint32_t>{0, 0}));
  EXPECT_EQ(cw.data, std::vector<uint8_t>(w.bytes.begin() + 16, w.bytes.end()));
  std::vector<uint8_t> map(32, 0);
  map[16] = map[17] = 0xFF;
  EXPECT_EQ(cw.map, map);
}

TEST(CompressedWeights, HandLayoutFp16DropsNegativeZero) {
  // Weights compare by value (const/attributes/sparsify.cpp): +0.0 and -0.0 are absent, 1.0 is
  // stored, little-endian; -0.0 decodes as +0.0.
  Tensor w(DType::kFP16, {1, 1, 1, 16});
  w.bytes[3] = 0x80;  // element 1 = 0x8000
  w.bytes[5] = 0x3C;  // element 2 = 0x3C00
  DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, 0));
  EXPECT_EQ(cw.map, Padded(Bytes({0x04}), 16));
  EXPECT_EQ(cw.data, Padded(Bytes({0x00, 0x3C}), 16));
}

TEST(WeightTable, HandLayout) {
  const std::vector<WeightTableEntry> entries = {
      {0x30, 0x10, IntScaleWord(0x4000, 13), static_cast<uint32_t>(-5)},
      {0x20, kDenseSparsityPtr, FloatBits(0.5f), FloatBits(-1.0f)},
  };
  EXPECT_EQ(IntScaleWord(0x4000, 13), 0x40000D00u);
  EXPECT_EQ(
      EncodeWeightTable(entries),
      Bytes({0x30, 0, 0, 0, 0x10, 0,    0,    0, 0x00, 0x0D, 0x00, 0x40, 0xFB, 0xFF, 0xFF, 0xFF,
             0x20, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0, 0,    0,    0,    0x3F, 0,    0,    0x80, 0xBF}));
  EXPECT_EQ(ScaleWordMult(0x40000D00u), 0x4000);
  EXPECT_EQ(ScaleWordShift(0x40000D00u), 13);
}

TEST(WeightTable, ScaleWordsFromTheOp) {
  NceGeometry g;
  g.h = g.w = 1;
  g.c = g.k = 16;
  Rng rng(BaseSeed(7));
  for (DType dt : kDTypes) {
    SCOPED_TRACE(DTypeName(dt));
    const NceOp op = OpFor(g, dt);
    const ChannelQuant q = RandomQuant(op, rng);
    std::vector<uint32_t> ptrs(16);
    for (int k = 0; k < 16; ++k) ptrs[k] = 16 * k;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<WeightTableEntry> t,
                                MakeWeightTable(op, q, ptrs, ptrs));
    for (int k = 0; k < 16; ++k) {
      if (IsFloat(dt)) {
        EXPECT_EQ(t[k].scale, FloatBits(q.scale[k]));
        EXPECT_EQ(t[k].bias, FloatBits(q.fbias[k]));
      } else {
        EXPECT_EQ(t[k].scale, uint32_t(q.mult[k]) << 16 | uint32_t(q.shift[k]) << 8);
        EXPECT_EQ(t[k].bias, static_cast<uint32_t>(q.bias[k]));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sparse activations and SE tables

struct ActCase {
  DType dtype;
  int32_t zp;
  double sparsity;
  int64_t h, w, c, se;
};

ActCase DrawActCase(Rng& rng) {
  ActCase a;
  a.dtype = Pick(rng, kDTypes);
  a.zp = DrawZp(a.dtype, rng);
  a.sparsity = Pick(rng, kSparsities);
  const int64_t odd[] = {1, 3, 5, 7};
  const int64_t channels[] = {16, 32, 48, 80, 128};
  a.h = Pick(rng, odd);
  a.w = Pick(rng, odd);
  a.c = Pick(rng, channels);
  std::vector<int64_t> se;
  for (int64_t s : {int64_t{16}, int64_t{32}, a.c}) {
    if (a.c % s == 0) se.push_back(s);
  }
  a.se = se[rng.Int(0, se.size() - 1)];
  return a;
}

// Offset of element (y, x, c) of an NHWC tensor with `w` columns and `c_total` channels.
int64_t Offset(int64_t y, int64_t x, int64_t c, int64_t w, int64_t c_total, int64_t eb) {
  return ((y * w + x) * c_total + c) * eb;
}

TEST(SparseActivations, RoundTripAndSlotLayout) {
  const uint64_t base = BaseSeed(2000);
  for (uint64_t seed = base; seed < base + 300; ++seed) {
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const ActCase a = DrawActCase(rng);
    const int64_t eb = DTypeBytes(a.dtype);
    const int64_t n = a.h * a.w * a.c;
    Tensor t(a.dtype, {a.h, a.w, a.c});
    Fill(t, a.zp, a.sparsity, rng);
    const Tensor t_before = t;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sa, EncodeSparseActivations(t, a.zp, a.se));
    ASSERT_EQ(t, t_before);
    ASSERT_EQ(sa.se_size, a.se);
    ASSERT_EQ(static_cast<int64_t>(sa.data.size()), n * eb);  // dense-sized
    ASSERT_EQ(static_cast<int64_t>(sa.map.size()), Align16((n + 7) / 8));
    ASSERT_EQ(static_cast<int64_t>(sa.map.size()), ActivationMapBytes(n));

    // Each SE's slot holds its present elements in order, then zero bytes.
    const std::vector<uint8_t> zp_bytes = ZpBytes(a.dtype, a.zp);
    for (int64_t s = 0; s < n / a.se; ++s) {
      int64_t packed = 0;
      for (int64_t j = 0; j < a.se; ++j) {
        const int64_t i = s * a.se + j;
        const bool present = !IsAbsent(t, i, zp_bytes);
        ASSERT_EQ(MapBit(sa.map.data(), i), present) << "element " << i;
        if (!present) continue;
        ASSERT_EQ(
            std::memcmp(sa.data.data() + (s * a.se + packed) * eb, t.bytes.data() + i * eb, eb), 0)
            << "SE " << s << " slot position " << packed;
        ++packed;
      }
      for (int64_t b = (s * a.se + packed) * eb; b < (s + 1) * a.se * eb; ++b) {
        ASSERT_EQ(sa.data[b], 0) << "SE " << s << " slot byte " << b;
      }
    }
    for (int64_t b = n; b < static_cast<int64_t>(sa.map.size()) * 8; ++b) {
      ASSERT_FALSE(MapBit(sa.map.data(), b)) << "padding bit " << b;
    }

    const SparseActivations sa_before = sa;
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const Tensor back,
        DecodeSparseActivations(sa.data, sa.map, a.dtype, {a.h, a.w, a.c}, a.zp, a.se));
    ASSERT_EQ(FirstDifference(back, t), "");
    ASSERT_EQ(sa.data, sa_before.data);
    ASSERT_EQ(sa.map, sa_before.map);
  }
}

TEST(SeTable, IdentityTableGathersTheTensor) {
  const uint64_t base = BaseSeed(3000);
  for (uint64_t seed = base; seed < base + 200; ++seed) {
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const ActCase a = DrawActCase(rng);
    Tensor t(a.dtype, {a.h, a.w, a.c});
    Fill(t, a.zp, a.sparsity, rng);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sa, EncodeSparseActivations(t, a.zp, a.se));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> table,
                                MakeIdentitySeTable(a.h, a.w, a.c, a.se, a.dtype));
    ASSERT_EQ(static_cast<int64_t>(table.size()), a.h * a.w * a.c / a.se);
    ASSERT_EQ(static_cast<int64_t>(table.size() * 4), SeTableBytes(a.h, a.w, a.c, a.se));
    const std::vector<int32_t> table_before = table;

    ActivationView sparse;
    sparse.tiles = {sa.data};
    sparse.map = sa.map;
    sparse.se_table = table;
    sparse.se_size = a.se;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor g1, GatherActivations(sparse, a.dtype, t.shape, a.zp));
    ASSERT_EQ(FirstDifference(g1, t), "");

    ActivationView dense;
    dense.tiles = {t.bytes};
    dense.se_table = table;
    dense.se_size = a.se;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor g2, GatherActivations(dense, a.dtype, t.shape, a.zp));
    ASSERT_EQ(FirstDifference(g2, t), "");
    dense.se_table = {};
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor g3, GatherActivations(dense, a.dtype, t.shape, a.zp));
    ASSERT_EQ(FirstDifference(g3, t), "");
    ASSERT_EQ(table, table_before);
  }
}

TEST(SeTable, PointersIntoTileOne) {
  // The tensor's rows are split over two tiles: rows [0, h1) at offset 0 of tile 0, rows
  // [h1, H) after `junk` bytes in tile 1. Each SE's pointer names its tile in BASE_PTR.
  const uint64_t base = BaseSeed(4000);
  for (uint64_t seed = base; seed < base + 200; ++seed) {
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const ActCase a = DrawActCase(rng);
    const int64_t eb = DTypeBytes(a.dtype);
    Tensor t(a.dtype, {a.h, a.w, a.c});
    Fill(t, a.zp, a.sparsity, rng);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sa, EncodeSparseActivations(t, a.zp, a.se));
    const int64_t h1 = a.h / 2;
    const int64_t split = Offset(h1, 0, 0, a.w, a.c, eb);
    const int64_t junk = 16 * rng.Int(0, 3);
    for (const bool sparse : {false, true}) {
      SCOPED_TRACE(sparse ? "sparse" : "dense");
      const std::vector<uint8_t>& src = sparse ? sa.data : t.bytes;
      const std::vector<uint8_t> tile0(src.begin(), src.begin() + split);
      std::vector<uint8_t> tile1(junk, 0xA5);
      tile1.insert(tile1.end(), src.begin() + split, src.end());
      std::vector<int32_t> table;
      for (int64_t y = 0; y < a.h; ++y) {
        for (int64_t x = 0; x < a.w; ++x) {
          for (int64_t c = 0; c < a.c; c += a.se) {
            const bool second = y >= h1;
            const int64_t off =
                second ? junk + Offset(y - h1, x, c, a.w, a.c, eb) : Offset(y, x, c, a.w, a.c, eb);
            DPUEMU_ASSERT_OK_AND_ASSIGN(const int32_t e, EncodeSePointer(off, second ? 1 : 0));
            table.push_back(e);
          }
        }
      }
      ActivationView v;
      v.tiles = {tile0, tile1};
      if (sparse) v.map = sa.map;
      v.se_table = table;
      v.se_size = a.se;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor g, GatherActivations(v, a.dtype, t.shape, a.zp));
      ASSERT_EQ(FirstDifference(g, t), "");
    }
  }
}

TEST(SeTable, MirroredPointersGatherTheMirroredTensor) {
  // The gather follows the pointers, not the table order: a table that reads column W-1-x for
  // column x yields the horizontally mirrored tensor (the map describes the virtual tensor).
  const uint64_t base = BaseSeed(5000);
  for (uint64_t seed = base; seed < base + 100; ++seed) {
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const ActCase a = DrawActCase(rng);
    const int64_t eb = DTypeBytes(a.dtype);
    Tensor t(a.dtype, {a.h, a.w, a.c});
    Fill(t, a.zp, a.sparsity, rng);
    Tensor mirrored(a.dtype, t.shape);
    std::vector<int32_t> table;
    for (int64_t y = 0; y < a.h; ++y) {
      for (int64_t x = 0; x < a.w; ++x) {
        std::memcpy(mirrored.bytes.data() + Offset(y, x, 0, a.w, a.c, eb),
                    t.bytes.data() + Offset(y, a.w - 1 - x, 0, a.w, a.c, eb), a.c * eb);
        for (int64_t c = 0; c < a.c; c += a.se) {
          DPUEMU_ASSERT_OK_AND_ASSIGN(const int32_t e,
                                      EncodeSePointer(Offset(y, a.w - 1 - x, c, a.w, a.c, eb), 0));
          table.push_back(e);
        }
      }
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sa, EncodeSparseActivations(t, a.zp, a.se));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sm,
                                EncodeSparseActivations(mirrored, a.zp, a.se));
    ActivationView v;
    v.tiles = {sa.data};
    v.map = sm.map;
    v.se_table = table;
    v.se_size = a.se;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor g, GatherActivations(v, a.dtype, t.shape, a.zp));
    ASSERT_EQ(FirstDifference(g, mirrored), "");
  }
}

TEST(SparseActivations, HandLayout) {
  // [1, 1, 32] i8, zp = -1: present values 9 and 0 in the first 16 channels, -128 and 127 in
  // the last 16.
  Tensor t(DType::kI8, {1, 1, 32});
  for (auto& b : t.bytes) b = 0xFF;
  t.bytes[3] = 9;
  t.bytes[7] = 0;
  t.bytes[16] = 0x80;
  t.bytes[31] = 0x7F;
  const std::vector<uint8_t> map = Padded(Bytes({0x88, 0x00, 0x01, 0x80}), 16);
  // se = 16: two slots, each packed at its own start.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations s16, EncodeSparseActivations(t, -1, 16));
  std::vector<uint8_t> d16(32, 0);
  d16[0] = 9;
  d16[16] = 0x80;
  d16[17] = 0x7F;
  EXPECT_EQ(s16.data, d16);
  EXPECT_EQ(s16.map, map);
  // se = 32: one slot holding all four.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations s32, EncodeSparseActivations(t, -1, 32));
  EXPECT_EQ(s32.data, Padded(Bytes({9, 0, 0x80, 0x7F}), 32));
  EXPECT_EQ(s32.map, map);
  // The same bytes read with the other SE size give a different tensor: the size matters.
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const Tensor wrong,
      DecodeSparseActivations(s32.data, s32.map, DType::kI8, {1, 1, 32}, -1, 16));
  EXPECT_NE(FirstDifference(wrong, t), "");
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const Tensor right,
      DecodeSparseActivations(s32.data, s32.map, DType::kI8, {1, 1, 32}, -1, 32));
  EXPECT_EQ(FirstDifference(right, t), "");
}

TEST(SePointer, HandLayoutAndFieldLimits) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(const int32_t e, EncodeSePointer(0x120, 3));
  EXPECT_EQ(e, (0x12 << 9) | 3);
  struct Case {
    int64_t offset;
    int32_t tile;
  };
  for (const Case c : {Case{0, 0}, Case{16, 1}, Case{0x120, 3}, Case{kSeMaxOffset, 0},
                       Case{0, kSeMaxTile}, Case{kSeMaxOffset, kSeMaxTile}}) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(const int32_t entry, EncodeSePointer(c.offset, c.tile));
    EXPECT_EQ(static_cast<uint32_t>(entry) >> 29, 0u) << "reserved bits stay 0";
    EXPECT_EQ(entry, static_cast<int32_t>((c.offset >> 4) << 9 | c.tile));
    const SePointer p = DecodeSePointer(entry);
    EXPECT_EQ(p.offset, c.offset);
    EXPECT_EQ(p.tile, c.tile);
  }
  EXPECT_EQ(kSeMaxOffset, ((int64_t{1} << 20) - 1) * 16);
  EXPECT_EQ(kSeMaxTile, 511);
  EXPECT_EQ(EncodeSePointer(kSeMaxOffset, kSeMaxTile).value(), 0x1FFFFFFF);
  ExpectError(EncodeSePointer(kSeMaxOffset + 16, 0), "offset");
  ExpectError(EncodeSePointer(8, 0), "offset");
  ExpectError(EncodeSePointer(-16, 0), "offset");
  ExpectError(EncodeSePointer(0, kSeMaxTile + 1), "tile");
  ExpectError(EncodeSePointer(0, -1), "tile");
}

TEST(Sizes, MatchTheFormulas) {
  for (int64_t k : {16, 48, 320}) {
    for (int64_t kernel : {1, 3, 5, 11}) {
      for (int64_t c : {16, 48, 80, 8192}) {
        NceGeometry g;
        g.k = k;
        g.ky = kernel;
        g.kx = kernel == 1 ? 3 : kernel;
        g.c = c;
        const int64_t taps = g.ky * g.kx * c;
        for (DType dt : kDTypes) EXPECT_EQ(DenseWeightBytes(g, dt), k * taps * DTypeBytes(dt));
        EXPECT_EQ(WeightMapBytesPerChannel(g), (taps / 8 + (taps % 8 != 0) + 15) / 16 * 16);
        EXPECT_EQ(WeightMapBytes(g), k * WeightMapBytesPerChannel(g));
        EXPECT_EQ(WeightTableBytes(g), 16 * k);
      }
    }
  }
  // 1x1x16: 16 bits fit in 2 bytes but the map is padded to one 16-byte line per channel.
  NceGeometry g;
  g.k = 64;
  g.c = 16;
  EXPECT_EQ(WeightMapBytes(g), 64 * 16);
  const int64_t elements[][2] = {
      {1, 16}, {8, 16}, {127, 16}, {128, 16}, {129, 32}, {1000, 128}, {56 * 56 * 64, 25088}};
  for (const auto& e : elements) EXPECT_EQ(ActivationMapBytes(e[0]), e[1]) << e[0];
  EXPECT_EQ(SeTableBytes(7, 5, 80, 16), 4 * 7 * 5 * 5);
  EXPECT_EQ(SeTableBytes(7, 5, 80, 80), 4 * 7 * 5);
  EXPECT_EQ(SeTableBytes(56, 56, 320, 64), 4 * 56 * 56 * 5);
}

// ---------------------------------------------------------------------------------------------
// Rejected inputs

// A small compressed layer for the error tests: i8, K=2, 3x3x16, about half the weights present.
struct SmallWeights {
  NceGeometry g;
  Tensor w;
  CompressedWeights cw;
  std::vector<uint8_t> table;
  std::vector<uint8_t> dense_table;
};

SmallWeights MakeSmallWeights() {
  SmallWeights s;
  s.g.h = s.g.w = 3;
  s.g.k = 2;
  s.g.ky = s.g.kx = 3;
  s.g.c = 16;
  s.w = Tensor(DType::kI8, {2, 3, 3, 16});
  Rng rng(11);
  Fill(s.w, 0, 0.5, rng);
  s.cw = CompressWeights(s.w, 0).value();
  const NceOp op = OpFor(s.g, DType::kI8);
  const ChannelQuant q = RandomQuant(op, rng);
  s.table = EncodeWeightTable(MakeWeightTable(op, q, s.cw.data_offset, s.cw.map_offset).value());
  s.dense_table = EncodeWeightTable(MakeWeightTable(op, q, {0, 144}, {}).value());
  return s;
}

void SetWord(std::vector<uint8_t>& table, int entry, int word, uint32_t v) {
  for (int b = 0; b < 4; ++b) table[entry * 16 + word * 4 + b] = static_cast<uint8_t>(v >> (8 * b));
}

TEST(CompressedWeightsErrors, ValidInputDecodes) {
  const SmallWeights s = MakeSmallWeights();
  ASSERT_GT(s.cw.nonzeros[1], 0);
  DPUEMU_ASSERT_OK(DecompressWeights(s.cw.data, s.cw.map, s.table, s.g, DType::kI8, 0).status());
  DPUEMU_ASSERT_OK(DecompressWeights(s.w.bytes, {}, s.dense_table, s.g, DType::kI8, 0).status());
}

TEST(CompressedWeightsErrors, MapTooShort) {
  const SmallWeights s = MakeSmallWeights();
  const std::vector<uint8_t> map(s.cw.map.begin(), s.cw.map.end() - 16);
  ExpectError(DecompressWeights(s.cw.data, map, s.table, s.g, DType::kI8, 0),
              "weight_table[1].sparsity_ptr");
}

TEST(CompressedWeightsErrors, MapPaddingBitSet) {
  const SmallWeights s = MakeSmallWeights();
  std::vector<uint8_t> map = s.cw.map;
  map[32 + 144 / 8] |= 1;  // channel 1 (map at 32), first bit after its 144 weights
  ExpectError(DecompressWeights(s.cw.data, map, s.table, s.g, DType::kI8, 0), "padding bit 144");
}

TEST(CompressedWeightsErrors, WeightPtrPastTheBuffer) {
  const SmallWeights s = MakeSmallWeights();
  std::vector<uint8_t> table = s.table;
  SetWord(table, 1, 0, static_cast<uint32_t>(s.cw.data.size()));
  ExpectError(DecompressWeights(s.cw.data, s.cw.map, table, s.g, DType::kI8, 0),
              "weight_table[1].weight_ptr");
  const std::vector<uint8_t> data(s.cw.data.begin(), s.cw.data.end() - 16);
  ExpectError(DecompressWeights(data, s.cw.map, s.table, s.g, DType::kI8, 0),
              "weight_table[1].weight_ptr");
  const std::vector<uint8_t> dense(s.w.bytes.begin(), s.w.bytes.end() - 16);
  ExpectError(DecompressWeights(dense, {}, s.dense_table, s.g, DType::kI8, 0),
              "weight_table[1].weight_ptr");
}

TEST(CompressedWeightsErrors, SparsityPtrPastTheBuffer) {
  const SmallWeights s = MakeSmallWeights();
  std::vector<uint8_t> table = s.table;
  SetWord(table, 0, 1, static_cast<uint32_t>(s.cw.map.size()));
  ExpectError(DecompressWeights(s.cw.data, s.cw.map, table, s.g, DType::kI8, 0),
              "weight_table[0].sparsity_ptr");
  SetWord(table, 0, 1, 0xFFFFF0u);  // aligned, far out, and not the dense marker
  ExpectError(DecompressWeights(s.cw.data, s.cw.map, table, s.g, DType::kI8, 0),
              "weight_table[0].sparsity_ptr");
}

TEST(CompressedWeightsErrors, UnalignedTablePointers) {
  const SmallWeights s = MakeSmallWeights();
  std::vector<uint8_t> table = s.table;
  SetWord(table, 1, 0, 8);
  ExpectError(DecodeWeightTable(table, 2), "weight_table[1].weight_ptr");
  ExpectError(DecompressWeights(s.cw.data, s.cw.map, table, s.g, DType::kI8, 0),
              "weight_table[1].weight_ptr");
  table = s.table;
  SetWord(table, 0, 1, 0x18);
  ExpectError(DecodeWeightTable(table, 2), "weight_table[0].sparsity_ptr");
  // The encoder side refuses them too.
  const NceOp op = OpFor(s.g, DType::kI8);
  Rng rng(1);
  const ChannelQuant q = RandomQuant(op, rng);
  ExpectError(MakeWeightTable(op, q, {0, 24}, {}), "weight table[1]");
  ExpectError(MakeWeightTable(op, q, {0, 16}, {0, 4}), "weight table[1]");
}

TEST(CompressedWeightsErrors, TableOfWrongLength) {
  const SmallWeights s = MakeSmallWeights();
  const std::vector<uint8_t> short_table(s.table.begin(), s.table.end() - 16);
  ExpectError(DecompressWeights(s.cw.data, s.cw.map, short_table, s.g, DType::kI8, 0),
              "weight_table");
  std::vector<uint8_t> long_table = s.table;
  long_table.push_back(0);
  ExpectError(DecodeWeightTable(long_table, 2), "weight_table");
  ExpectError(DecodeWeightTable(s.table, 0), "weight_table");
  const NceOp op = OpFor(s.g, DType::kI8);
  Rng rng(1);
  const ChannelQuant q = RandomQuant(op, rng);
  ExpectError(MakeWeightTable(op, q, {0}, {}), "pointer per output channel");
  ExpectError(MakeWeightTable(op, q, {0, 16}, {0}), "pointer per output channel");
  ChannelQuant bad = q;
  bad.mult[1] = 65536;
  ExpectError(MakeWeightTable(op, bad, {0, 16}, {}), "quant.mult[1]");
}

TEST(CompressedWeightsErrors, BadWeightTensors) {
  Tensor w(DType::kI8, {2, 1, 1, 16});
  w.bytes.pop_back();  // truncated
  ExpectError(CompressWeights(w, 0), "weights");
  ExpectError(CompressWeights(Tensor(DType::kI32, {1, 1, 1, 16}), 0), "weights: dtype");
  ExpectError(CompressWeights(Tensor(DType::kI8, {1, 1, 16}), 0), "weights: shape");
  // Two negative dimensions whose product matches the byte count.
  Tensor negative(DType::kI8, {1, 1, 1, 16});
  negative.shape = {-1, 1, 1, -16};
  ExpectError(CompressWeights(negative, 0), "weights: shape");
}

TEST(CompressedWeightsErrors, BadGeometryForDecompress) {
  const SmallWeights s = MakeSmallWeights();
  for (int64_t NceGeometry::*dim : {&NceGeometry::ky, &NceGeometry::kx, &NceGeometry::c}) {
    for (int64_t bad : {int64_t{0}, int64_t{-16}, int64_t{1} << 40}) {
      NceGeometry g = s.g;
      g.*dim = bad;
      SCOPED_TRACE(bad);
      ExpectError(DecompressWeights(s.cw.data, s.cw.map, s.table, g, DType::kI8, 0), "weights");
    }
  }
  ExpectError(DecompressWeights(s.cw.data, s.cw.map, s.table, s.g, DType::kI32, 0), "dtype");
}

// A [3, 3, 32] i8 sparse tensor and its SE table (se = 16) for the error tests.
struct SmallActs {
  Tensor t;
  SparseActivations sa;
  std::vector<int32_t> table;
  ActivationView View() const {
    ActivationView v;
    v.tiles = {sa.data};
    v.map = sa.map;
    v.se_table = table;
    v.se_size = 16;
    return v;
  }
};

SmallActs MakeSmallActs() {
  SmallActs s;
  s.t = Tensor(DType::kI8, {3, 3, 32});
  Rng rng(12);
  Fill(s.t, 0, 0.5, rng);
  s.sa = EncodeSparseActivations(s.t, 0, 16).value();
  s.table = MakeIdentitySeTable(3, 3, 32, 16, DType::kI8).value();
  return s;
}

TEST(ActivationErrors, ValidInputGathers) {
  const SmallActs s = MakeSmallActs();
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor g,
                              GatherActivations(s.View(), DType::kI8, {3, 3, 32}, 0));
  EXPECT_EQ(FirstDifference(g, s.t), "");
}

TEST(ActivationErrors, WrongMapSize) {
  const SmallActs s = MakeSmallActs();
  for (int delta : {-16, 16, -1}) {
    std::vector<uint8_t> map = s.sa.map;
    map.resize(map.size() + delta, 0);
    ExpectError(DecodeSparseActivations(s.sa.data, map, DType::kI8, {3, 3, 32}, 0, 16),
                "activations.map");
  }
}

TEST(ActivationErrors, MapPaddingBitSet) {
  const SmallActs s = MakeSmallActs();
  std::vector<uint8_t> map = s.sa.map;  // 288 bits of data in 48 bytes
  ASSERT_EQ(map.size(), 48u);
  map[47] |= 0x80;
  ExpectError(DecodeSparseActivations(s.sa.data, map, DType::kI8, {3, 3, 32}, 0, 16),
              "activations.map: padding bit 383");
}

TEST(ActivationErrors, TruncatedData) {
  const SmallActs s = MakeSmallActs();
  const std::vector<uint8_t> data(s.sa.data.begin(), s.sa.data.end() - 1);
  ExpectError(DecodeSparseActivations(data, s.sa.map, DType::kI8, {3, 3, 32}, 0, 16),
              "activations: data");
  Tensor t = s.t;
  t.bytes.pop_back();
  ExpectError(EncodeSparseActivations(t, 0, 16), "activations");
  // Through an SE table the last SE's slot runs past the tile.
  ActivationView v = s.View();
  v.tiles = {ByteSpan(s.sa.data.data(), s.sa.data.size() - 1)};
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table[17]");
}

TEST(ActivationErrors, SeSizeMustDivideC) {
  const SmallActs s = MakeSmallActs();
  ExpectError(EncodeSparseActivations(s.t, 0, 48), "se_size");
  ExpectError(EncodeSparseActivations(s.t, 0, 0), "se_size");
  ExpectError(DecodeSparseActivations(s.sa.data, s.sa.map, DType::kI8, {3, 3, 32}, 0, 20),
              "se_size");
  ExpectError(MakeIdentitySeTable(3, 3, 48, 32, DType::kI8), "se_size");
  // Pointers are 16-byte aligned, so an 8-element i8 SE cannot be addressed.
  ExpectError(MakeIdentitySeTable(3, 3, 32, 8, DType::kI8), "se_size");
}

TEST(ActivationErrors, SePointerOutsideTheTile) {
  const SmallActs s = MakeSmallActs();
  std::vector<int32_t> table = s.table;
  // A 16-byte SE starting 16 bytes before the end fits; one line further does not.
  table[5] = EncodeSePointer(static_cast<int64_t>(s.sa.data.size()) - 16, 0).value();
  ActivationView v = s.View();
  v.se_table = table;
  DPUEMU_ASSERT_OK(GatherActivations(v, DType::kI8, {3, 3, 32}, 0).status());
  table[5] = EncodeSePointer(static_cast<int64_t>(s.sa.data.size()), 0).value();
  v.se_table = table;
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table[5]: DATA_PTR");
  table[5] = EncodeSePointer(kSeMaxOffset, 0).value();
  v.se_table = table;
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table[5]: DATA_PTR");
}

TEST(ActivationErrors, BasePtrBeyondTheTiles) {
  const SmallActs s = MakeSmallActs();
  std::vector<int32_t> table = s.table;
  ActivationView v = s.View();
  v.tiles = {s.sa.data, s.sa.data};
  table[2] = EncodeSePointer(0, 1).value();  // tile 1 exists
  v.se_table = table;
  DPUEMU_ASSERT_OK(GatherActivations(v, DType::kI8, {3, 3, 32}, 0).status());
  table[2] = EncodeSePointer(0, 2).value();
  v.se_table = table;
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table[2]: BASE_PTR");
  table[2] = EncodeSePointer(0, kSeMaxTile).value();
  v.se_table = table;
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table[2]: BASE_PTR");
}

TEST(ActivationErrors, ReservedBitsSet) {
  const SmallActs s = MakeSmallActs();
  for (uint32_t bit : {29u, 30u, 31u}) {
    std::vector<int32_t> table = s.table;
    table[3] = static_cast<int32_t>(static_cast<uint32_t>(table[3]) | 1u << bit);
    ActivationView v = s.View();
    v.se_table = table;
    ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table[3]");
    ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "[31:29]");
  }
}

TEST(ActivationErrors, TableOfWrongLengthAndOtherViews) {
  const SmallActs s = MakeSmallActs();
  ActivationView v = s.View();
  std::vector<int32_t> table = s.table;
  table.pop_back();
  v.se_table = table;
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "se_table");
  v = s.View();
  v.tiles.clear();
  ExpectError(GatherActivations(v, DType::kI8, {3, 3, 32}, 0), "tile");
  ExpectError(GatherActivations(s.View(), DType::kI8, {2, 3, 3, 32}, 0), "shape");
  ExpectError(GatherActivations(s.View(), DType::kI8, {0, 3, 32}, 0), "shape");
  ExpectError(GatherActivations(s.View(), DType::kI32, {3, 3, 32}, 0), "i32");
}

}  // namespace
}  // namespace dpuemu
