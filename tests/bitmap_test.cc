// The vectorized bitmap kernels (kernels/bitmap.h) against the scalar definitions in hw/formats.h,
// byte for byte, on every Highway target compiled in and supported by this CPU: generated
// activations and weights over every element type, zero points 0 and not, sparsity 0 to 1,
// sizes around the 16-byte block and the SSE/AVX2 lane counts, SE tables scattered over several
// misaligned tiles, partial row ranges into misaligned buffers; and rejected inputs, which must
// fail with the scalar path's exact status. The AVX-512 VBMI2 path runs the same suites where the
// CPU has it.
#include "kernels/bitmap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "hw/formats.h"
#include "hw/rng.h"
#include "hwy/targets.h"
#include "hwy/tests/hwy_gtest.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

constexpr DType kDTypes[] = {DType::kI8, DType::kU8, DType::kFP16, DType::kBF16};
constexpr double kSparsities[] = {0.0, 0.5, 0.9, 1.0};
// Bytes per pixel (C * element bytes): around and across 16-byte blocks and the 64-byte step of
// the VBMI2 path, plus odd element counts (66 and 130 bytes: 33 and 65 2-byte elements).
constexpr int64_t kPixelBytes[] = {16, 32, 48, 64, 80, 128, 256, 6, 66, 130};
// Pixel counts around multiples of 16 and 32 (the u8 lane counts of SSE and AVX2).
constexpr int64_t kPixelCounts[] = {1, 3, 7, 15, 16, 17, 31, 32, 33, 48, 96, 130, 258};

template <typename T, size_t N>
T Pick(Rng& rng, const T (&options)[N]) {
  return options[rng.Int(0, N - 1)];
}

// The absent element's bytes, as IsZeroPoint defines them (2-byte types ignore zp).
std::vector<uint8_t> AbsentBytes(DType t, int32_t zp) {
  const int eb = DTypeBytes(t);
  std::vector<uint8_t> b(eb, 0);
  if (eb != 2) {
    for (int i = 0; i < eb; ++i) b[i] = static_cast<uint8_t>(static_cast<uint32_t>(zp) >> (8 * i));
  }
  return b;
}

// A zero point the type has (CheckZeroPoint): 0 for float types.
int32_t DrawZp(DType t, Rng& rng) {
  if (IsFloat(t) || rng.Bernoulli(0.5)) return 0;
  return t == DType::kI32 ? static_cast<int32_t>(rng.Int(-1000, 1000))
                          : static_cast<int32_t>(rng.Int(DTypeMin(t), DTypeMax(t)));
}

void Fill(Tensor& t, int32_t zp, double sparsity, Rng& rng) {
  const std::vector<uint8_t> absent = AbsentBytes(t.dtype, zp);
  const size_t eb = absent.size();
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint8_t* e = t.bytes.data() + i * eb;
    if (rng.Bernoulli(sparsity)) {
      std::memcpy(e, absent.data(), eb);
      continue;
    }
    do {
      const uint64_t r = rng.Next();
      std::memcpy(e, &r, eb);
    } while (std::memcmp(e, absent.data(), eb) == 0);
  }
}

std::vector<int64_t> Divisors(int64_t n) {
  std::vector<int64_t> d;
  for (int64_t i = 1; i <= n; ++i) {
    if (n % i == 0) d.push_back(i);
  }
  return d;
}

// A copy of `bytes` that starts 1..15 bytes past a 16-byte boundary and ends where its
// allocation ends (so that address sanitizers see any read past it).
struct Misaligned {
  size_t shift = 0;
  std::vector<uint8_t> storage;
  Misaligned(const std::vector<uint8_t>& bytes, Rng& rng)
      : shift(static_cast<size_t>(rng.Int(1, 15))), storage(shift + bytes.size()) {
    if (!bytes.empty()) std::memcpy(storage.data() + shift, bytes.data(), bytes.size());
  }
  ByteSpan span() const { return ByteSpan(storage.data() + shift, storage.size() - shift); }
};

// The slots of sparse activations scattered over 2-3 tiles: each SE at a random 16-aligned
// offset of a random tile (gaps hold garbage), each tile ending right after its last slot and
// starting at a misaligned address.
struct ScatteredInput {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<ByteSpan> tiles;
  std::vector<int32_t> table;
};

ScatteredInput Scatter(const std::vector<uint8_t>& data, int64_t slot_bytes, Rng& rng) {
  ScatteredInput in;
  const int ntiles = static_cast<int>(rng.Int(2, 3));
  const int64_t ses = static_cast<int64_t>(data.size()) / slot_bytes;
  std::vector<int32_t> tile_of(ses);
  std::vector<int64_t> offset_of(ses), cursor(ntiles, 0);
  for (int64_t s = 0; s < ses; ++s) {
    tile_of[s] = static_cast<int32_t>(rng.Int(0, ntiles - 1));
    offset_of[s] = cursor[tile_of[s]] + 16 * rng.Int(0, 2);
    cursor[tile_of[s]] = offset_of[s] + slot_bytes;
  }
  std::vector<size_t> shift(ntiles);
  for (int t = 0; t < ntiles; ++t) {
    shift[t] = static_cast<size_t>(rng.Int(1, 15));
    in.storage.emplace_back(shift[t] + cursor[t]);
    for (uint8_t& b : in.storage[t]) b = static_cast<uint8_t>(rng.Next());
  }
  for (int64_t s = 0; s < ses; ++s) {
    std::memcpy(in.storage[tile_of[s]].data() + shift[tile_of[s]] + offset_of[s],
                data.data() + s * slot_bytes, static_cast<size_t>(slot_bytes));
    in.table.push_back(EncodeSePointer(offset_of[s], tile_of[s]).value());
  }
  for (int t = 0; t < ntiles; ++t) {
    in.tiles.emplace_back(in.storage[t].data() + shift[t], static_cast<size_t>(cursor[t]));
  }
  return in;
}

// Asserts that both paths failed alike.
void ExpectSameError(const Status& scalar, const Status& fast) {
  ASSERT_FALSE(scalar.ok()) << "the case was meant to be rejected";
  EXPECT_EQ(fast.code(), scalar.code()) << fast.ToString() << " vs " << scalar.ToString();
  EXPECT_EQ(fast.message(), scalar.message());
}

void ExpectSameWeights(const CompressedWeights& fast, const CompressedWeights& scalar) {
  EXPECT_EQ(fast.data, scalar.data);
  EXPECT_EQ(fast.map, scalar.map);
  EXPECT_EQ(fast.data_offset, scalar.data_offset);
  EXPECT_EQ(fast.map_offset, scalar.map_offset);
  EXPECT_EQ(fast.nonzeros, scalar.nonzeros);
}

// Case `index` of a sweep draws from Rng(base + index); the trace names the sweep's base seed,
// which DPUEMU_SEED takes to replay the whole sweep.
std::string CaseTrace(uint64_t base, uint64_t index) {
  return SeedTrace(base) + ", case " + std::to_string(index);
}

// Each test runs once per path: the table path once per Highway target, with the dispatch pinned
// to it, and the AVX-512 VBMI2 path where this CPU has it (parameter kVbmi2Param).
constexpr int64_t kVbmi2Param = 0;  // no Highway target is 0

std::vector<int64_t> Paths() {
  std::vector<int64_t> p = simd::CompiledTargets();
  if (simd::HasVbmi2()) p.push_back(kVbmi2Param);
  return p;
}

std::string PathName(const testing::TestParamInfo<int64_t>& info) {
  return info.param == kVbmi2Param ? "AVX512VBMI2" : hwy::TargetName(info.param);
}

class Bitmap : public testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    if (GetParam() == kVbmi2Param) {
      DPUEMU_ASSERT_OK(simd::SetBitmapPath(simd::BitmapPath::kVbmi2));
      ASSERT_EQ(simd::ActivePath(), "avx512vbmi2");
      return;
    }
    DPUEMU_ASSERT_OK(simd::SetBitmapPath(simd::BitmapPath::kTable));
    hwy::SetSupportedTargetsForTest(GetParam());
    ASSERT_EQ(simd::ActiveTarget(), GetParam()) << "dispatch did not switch to the target";
    ASSERT_EQ(simd::ActivePath(), std::string("table/") + hwy::TargetName(GetParam()));
  }
  void TearDown() override {
    hwy::SetSupportedTargetsForTest(0);
    EXPECT_TRUE(simd::SetBitmapPath(simd::BitmapPath::kAuto).ok());
  }
};

HWY_GTEST_INSTANTIATE_TEST_SUITE_P(AllPaths, Bitmap, testing::ValuesIn(Paths()), PathName);

// The VBMI2 path runs where the CPU has it (this suite's Xeon does), and asking for it where
// it does not is an error, not a silent fallback.
TEST(BitmapPaths, Vbmi2AvailabilityMatchesCpu) {
#if defined(__x86_64__)
  const bool cpu = __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2");
  EXPECT_EQ(simd::HasVbmi2(), cpu);
#endif
  const Status st = simd::SetBitmapPath(simd::BitmapPath::kVbmi2);
  EXPECT_EQ(st.ok(), simd::HasVbmi2()) << st.ToString();
  DPUEMU_ASSERT_OK(simd::SetBitmapPath(simd::BitmapPath::kAuto));
}

// kAuto follows the CPU and DPUEMU_ISA (kernels/bitmap.h): run with DPUEMU_ISA=avx2 (bazel test
// --test_env=DPUEMU_ISA=avx2) to see the table path chosen on a VBMI2 machine.
TEST(BitmapPaths, AutoFollowsCpuAndDpuemuIsa) {
  DPUEMU_ASSERT_OK(simd::SetBitmapPath(simd::BitmapPath::kAuto));
  const char* isa = std::getenv("DPUEMU_ISA");
  const std::string s = isa ? isa : "";
  const bool allowed = s.empty() || s == "native" || s == "amx" || s == "avx512vnni" ||
                       s == "avx512vbmi2";
  const std::string path = simd::ActivePath();
  std::cout << "DPUEMU_ISA=" << s << ": bitmap path " << path << "\n";
  if (simd::HasVbmi2() && allowed) {
    EXPECT_EQ(path, "avx512vbmi2");
  } else {
    EXPECT_EQ(path.rfind("table/", 0), 0u) << path;
  }
}

TEST(BitmapTargets, SomeVectorTargetRuns) {
  const std::vector<int64_t> targets = simd::CompiledTargets();
  ASSERT_FALSE(targets.empty());
  std::string names;
  for (int64_t t : targets) names += std::string(hwy::TargetName(t)) + " ";
  const bool vector = std::any_of(targets.begin(), targets.end(), [](int64_t t) {
    return t != HWY_SCALAR && t != HWY_EMU128;
  });
  EXPECT_TRUE(vector) << "only " << names;
}

// Encode, decode, and the gather through a scattered SE table and by row ranges.
TEST_P(Bitmap, ActivationsMatchScalar) {
  const uint64_t base = BaseSeed(1);
  uint64_t index = 0;
  for (DType dtype : {DType::kI8, DType::kU8, DType::kFP16, DType::kBF16, DType::kFP32}) {
    for (int64_t pixel_bytes : kPixelBytes) {
      const int64_t eb = DTypeBytes(dtype);
      if (pixel_bytes % eb != 0) continue;
      for (int64_t pixels : kPixelCounts) {
        SCOPED_TRACE(CaseTrace(base, index));
        Rng rng(base + index++);
        const int64_t c = pixel_bytes / eb;
        const std::vector<int64_t> divs = Divisors(pixels);
        const int64_t h = divs[rng.Int(0, divs.size() - 1)];
        const int64_t w = pixels / h;
        const int32_t zp = DrawZp(dtype, rng);
        const double sparsity = Pick(rng, kSparsities);
        const std::vector<int64_t> c_divs = Divisors(c);
        const int64_t se = c_divs[rng.Int(0, c_divs.size() - 1)];  // any divisor: bit-unaligned SEs
        SCOPED_TRACE(std::string(DTypeName(dtype)) + " [" + std::to_string(h) + ", " +
                     std::to_string(w) + ", " + std::to_string(c) + "] zp " +
                     std::to_string(zp) + " sparsity " + std::to_string(sparsity) + " se " +
                     std::to_string(se));
        Tensor t(dtype, {h, w, c});
        Fill(t, zp, sparsity, rng);

        DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sa,
                                    EncodeSparseActivations(t, zp, se));
        DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations fa,
                                    simd::EncodeSparseActivations(t, zp, se));
        EXPECT_EQ(fa.data, sa.data);
        EXPECT_EQ(fa.map, sa.map);
        EXPECT_EQ(fa.se_size, sa.se_size);

        const Misaligned data(sa.data, rng), map(sa.map, rng);
        DPUEMU_ASSERT_OK_AND_ASSIGN(
            const Tensor fd,
            simd::DecodeSparseActivations(data.span(), map.span(), dtype, t.shape, zp, se));
        EXPECT_EQ(FirstDifference(fd, t), "");

        // Through an SE table: SE sizes the 16-byte pointers can address.
        std::vector<int64_t> table_ses;
        for (int64_t s : {int64_t{16}, int64_t{32}, c}) {
          if (c % s == 0 && s * eb % 16 == 0) table_ses.push_back(s);
        }
        if (table_ses.empty()) continue;
        const int64_t tse = table_ses[rng.Int(0, table_ses.size() - 1)];
        SCOPED_TRACE("table se " + std::to_string(tse));
        DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations ta,
                                    EncodeSparseActivations(t, zp, tse));
        const ScatteredInput in = Scatter(ta.data, tse * eb, rng);
        ActivationView view;
        view.tiles = in.tiles;
        view.se_table = in.table;
        view.se_size = tse;
        for (bool sparse : {true, false}) {
          view.map = sparse ? ByteSpan(ta.map) : ByteSpan();
          DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor sg, GatherActivations(view, dtype, t.shape, zp));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor fg,
                                      simd::GatherActivations(view, dtype, t.shape, zp));
          EXPECT_EQ(FirstDifference(fg, sg), "") << (sparse ? "sparse" : "dense");
          if (sparse) {
            EXPECT_EQ(FirstDifference(fg, t), "");
          }

          // A row range into a misaligned buffer between guard bytes.
          const int64_t rb = rng.Int(0, h), re = rng.Int(rb, h);
          const int64_t row_bytes = w * c * eb;
          const size_t need = static_cast<size_t>((re - rb) * row_bytes);
          const size_t shift = static_cast<size_t>(rng.Int(1, 15));
          std::vector<uint8_t> buf(need + 32, 0xA5);
          DPUEMU_ASSERT_OK(simd::GatherRows(view, dtype, t.shape, zp, rb, re,
                                            MutableByteSpan(buf.data() + shift, need)));
          EXPECT_EQ(std::memcmp(buf.data() + shift, sg.bytes.data() + rb * row_bytes, need), 0)
              << "rows [" << rb << ", " << re << ")";
          for (size_t i = 0; i < buf.size(); ++i) {
            if (i < shift || i >= shift + need) {
              ASSERT_EQ(buf[i], 0xA5) << "wrote outside, at " << i;
            }
          }
        }
      }
    }
  }
}

// Compress, and decompress through tables that mix sparse and dense channels.
TEST_P(Bitmap, WeightsMatchScalar) {
  const uint64_t base = BaseSeed(2);
  uint64_t index = 0;
  const int64_t kernels[][2] = {{1, 1}, {3, 3}, {1, 3}};
  for (DType dtype : kDTypes) {
    for (int64_t pixel_bytes : kPixelBytes) {
      const int64_t eb = DTypeBytes(dtype);
      for (const auto& kyx : kernels) {
        for (double sparsity : kSparsities) {
          SCOPED_TRACE(CaseTrace(base, index));
          Rng rng(base + index++);
          NceGeometry g;
          g.k = rng.Int(1, 5);
          g.ky = kyx[0];
          g.kx = kyx[1];
          g.c = pixel_bytes / eb;
          const int32_t zp = DrawZp(dtype, rng);
          SCOPED_TRACE(std::string(DTypeName(dtype)) + " [" + std::to_string(g.k) + ", " +
                       std::to_string(g.ky) + ", " + std::to_string(g.kx) + ", " +
                       std::to_string(g.c) + "] zp " + std::to_string(zp) + " sparsity " +
                       std::to_string(sparsity));
          Tensor w(dtype, {g.k, g.ky, g.kx, g.c});
          Fill(w, zp, sparsity, rng);
          // Float weights compare by value (IsWeightZero): some -0.0, which must be dropped too.
          for (int64_t i = 0; IsFloat(dtype) && i < w.numel(); ++i) {
            if (!rng.Bernoulli(0.1)) continue;
            std::memset(w.bytes.data() + i * eb, 0, static_cast<size_t>(eb));
            w.bytes[static_cast<size_t>((i + 1) * eb - 1)] = 0x80;  // sign bit (little-endian)
          }
          DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights sc, CompressWeights(w, zp));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights fc, simd::CompressWeights(w, zp));
          ExpectSameWeights(fc, sc);

          // Some channels read dense from copies appended to the data buffer.
          std::vector<uint8_t> data = sc.data;
          std::vector<WeightTableEntry> entries(g.k);
          const int64_t channel_bytes = g.taps() * eb;
          for (int64_t k = 0; k < g.k; ++k) {
            if (rng.Bernoulli(0.3)) {
              data.resize(AlignUp(static_cast<int64_t>(data.size()), 16));
              entries[k].weight_ptr = static_cast<uint32_t>(data.size());
              data.insert(data.end(), w.bytes.begin() + k * channel_bytes,
                          w.bytes.begin() + (k + 1) * channel_bytes);
            } else {
              entries[k].weight_ptr = sc.data_offset[k];
              entries[k].sparsity_ptr = sc.map_offset[k];
            }
          }
          const std::vector<uint8_t> table = EncodeWeightTable(entries);
          const Misaligned md(data, rng), mm(sc.map, rng);
          DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor sd,
                                      DecompressWeights(md.span(), mm.span(), table, g, dtype, zp));
          DPUEMU_ASSERT_OK_AND_ASSIGN(
              const Tensor fd, simd::DecompressWeights(md.span(), mm.span(), table, g, dtype, zp));
          EXPECT_EQ(FirstDifference(fd, sd), "");
          // Absent weights decode as the zero point's pattern: a float -0.0 comes back +0.0.
          Tensor canonical = w;
          for (int64_t i = 0; i < canonical.numel(); ++i) {
            const bool sparse_channel = entries[i / g.taps()].sparsity_ptr != kDenseSparsityPtr;
            if (sparse_channel && IsWeightZero(dtype, w.bytes.data(), i, zp)) {
              std::memset(canonical.bytes.data() + i * eb, eb == 1 ? zp : 0,
                          static_cast<size_t>(eb));
            }
          }
          EXPECT_EQ(FirstDifference(fd, canonical), "");
        }
      }
    }
  }
}

// ---- Rejected inputs: the scalar path's status, exactly ----

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

void ExpectSameGatherError(const ActivationView& v, DType dtype, const std::vector<int64_t>& shape) {
  const StatusOr<Tensor> scalar = GatherActivations(v, dtype, shape, 0);
  ExpectSameError(scalar.status(), simd::GatherActivations(v, dtype, shape, 0).status());
  std::vector<uint8_t> out(3 * 3 * 32 * 4);
  ExpectSameError(scalar.status(), simd::GatherRows(v, dtype, shape, 0, 0, -1, out));
}

TEST_P(Bitmap, GatherErrorsMatchScalar) {
  const SmallActs s = MakeSmallActs();
  const std::vector<int64_t> shape = {3, 3, 32};
  for (int delta : {-16, 16, -1}) {  // map size
    std::vector<uint8_t> map = s.sa.map;
    map.resize(map.size() + delta, 0);
    ActivationView v = s.View();
    v.map = map;
    ExpectSameGatherError(v, DType::kI8, shape);
    ExpectSameError(DecodeSparseActivations(s.sa.data, map, DType::kI8, shape, 0, 16).status(),
                    simd::DecodeSparseActivations(s.sa.data, map, DType::kI8, shape, 0, 16).status());
  }
  {
    std::vector<uint8_t> map = s.sa.map;  // padding bit
    map.back() |= 0x80;
    ActivationView v = s.View();
    v.map = map;
    ExpectSameGatherError(v, DType::kI8, shape);
  }
  {
    const std::vector<uint8_t> data(s.sa.data.begin(), s.sa.data.end() - 1);  // truncated
    ExpectSameError(DecodeSparseActivations(data, s.sa.map, DType::kI8, shape, 0, 16).status(),
                    simd::DecodeSparseActivations(data, s.sa.map, DType::kI8, shape, 0, 16).status());
    ActivationView v = s.View();
    v.tiles = {data};
    ExpectSameGatherError(v, DType::kI8, shape);
  }
  {
    ActivationView v = s.View();  // se_size does not divide C
    v.se_size = 20;
    ExpectSameGatherError(v, DType::kI8, shape);
  }
  const int32_t bad_entries[] = {
      EncodeSePointer(static_cast<int64_t>(s.sa.data.size()), 0).value(),  // slot past the tile
      EncodeSePointer(kSeMaxOffset, 0).value(),
      EncodeSePointer(0, 1).value(),                                       // no tile 1
      EncodeSePointer(0, kSeMaxTile).value(),
      static_cast<int32_t>(static_cast<uint32_t>(s.table[3]) | 1u << 30),  // reserved bits
      static_cast<int32_t>(0x80000000u),
  };
  for (int32_t bad : bad_entries) {
    std::vector<int32_t> table = s.table;
    table[8] = bad;
    ActivationView v = s.View();
    v.se_table = table;
    SCOPED_TRACE(bad);
    ExpectSameGatherError(v, DType::kI8, shape);
    // Row ranges check only the pointers of their rows: with 6 SEs per row, SE 8 is in row 1, so
    // rows [0, 1) and [2, 3) gather and any range over row 1 fails alike.
    std::vector<uint8_t> out(3 * 32);
    DPUEMU_ASSERT_OK(simd::GatherRows(v, DType::kI8, shape, 0, 0, 1, out));
    DPUEMU_ASSERT_OK(simd::GatherRows(v, DType::kI8, shape, 0, 2, 3, out));
    std::vector<uint8_t> full(3 * 3 * 32);
    const Status whole = simd::GatherRows(v, DType::kI8, shape, 0, 0, 3, full);
    ExpectSameError(whole, simd::GatherRows(v, DType::kI8, shape, 0, 0, 2, full));
  }
  {
    std::vector<int32_t> table = s.table;  // table length
    table.pop_back();
    ActivationView v = s.View();
    v.se_table = table;
    ExpectSameGatherError(v, DType::kI8, shape);
    v = s.View();
    v.tiles.clear();
    ExpectSameGatherError(v, DType::kI8, shape);
  }
  ExpectSameGatherError(s.View(), DType::kI8, {2, 3, 3, 32});
  ExpectSameGatherError(s.View(), DType::kI8, {0, 3, 32});
  ExpectSameGatherError(s.View(), DType::kI32, shape);

  // Only the row variant has these.
  std::vector<uint8_t> out(3 * 3 * 32);
  for (const auto& rows : {std::pair<int64_t, int64_t>{-1, 2}, {2, 1}, {0, 4}}) {
    const Status st = simd::GatherRows(s.View(), DType::kI8, shape, 0, rows.first, rows.second, out);
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("rows"), std::string::npos) << st.message();
  }
  const Status small =
      simd::GatherRows(s.View(), DType::kI8, shape, 0, 1, 3, MutableByteSpan(out.data(), 191));
  EXPECT_FALSE(small.ok());
  EXPECT_NE(small.message().find("out"), std::string::npos) << small.message();
  DPUEMU_ASSERT_OK(
      simd::GatherRows(s.View(), DType::kI8, shape, 0, 1, 3, MutableByteSpan(out.data(), 192)));
}

TEST_P(Bitmap, EncodeErrorsMatchScalar) {
  const SmallActs s = MakeSmallActs();
  Tensor truncated = s.t;
  truncated.bytes.pop_back();
  ExpectSameError(EncodeSparseActivations(truncated, 0, 16).status(),
                  simd::EncodeSparseActivations(truncated, 0, 16).status());
  for (int64_t se : {0, 48, -16}) {
    ExpectSameError(EncodeSparseActivations(s.t, 0, se).status(),
                    simd::EncodeSparseActivations(s.t, 0, se).status());
  }
  const Tensor bad_shape(DType::kI8, {2, 1, 1, 16});
  ExpectSameError(EncodeSparseActivations(bad_shape, 0, 16).status(),
                  simd::EncodeSparseActivations(bad_shape, 0, 16).status());

  Tensor w(DType::kI8, {2, 1, 1, 16});
  w.bytes.pop_back();
  Tensor negative(DType::kI8, {1, 1, 1, 16});
  negative.shape = {-1, -1, 1, 16};
  for (const Tensor& bad : {w, Tensor(DType::kI32, {1, 1, 1, 16}), Tensor(DType::kFP32, {1, 1, 1, 4}),
                            Tensor(DType::kI8, {1, 1, 16}), negative}) {
    ExpectSameError(CompressWeights(bad, 0).status(), simd::CompressWeights(bad, 0).status());
  }
}

void SetWord(std::vector<uint8_t>& table, int entry, int word, uint32_t v) {
  for (int b = 0; b < 4; ++b) table[entry * 16 + word * 4 + b] = static_cast<uint8_t>(v >> (8 * b));
}

TEST_P(Bitmap, DecompressErrorsMatchScalar) {
  NceGeometry g;
  g.k = 2;
  g.ky = g.kx = 3;
  g.c = 16;
  Tensor w(DType::kI8, {2, 3, 3, 16});
  Rng rng(11);
  Fill(w, 0, 0.5, rng);
  const CompressedWeights cw = CompressWeights(w, 0).value();
  std::vector<WeightTableEntry> entries(2);
  for (int k = 0; k < 2; ++k) entries[k] = {cw.data_offset[k], cw.map_offset[k], 0, 0};
  const std::vector<uint8_t> table = EncodeWeightTable(entries);
  const auto expect_same = [&](ByteSpan data, ByteSpan map, ByteSpan tbl, const NceGeometry& gg,
                               DType dtype) {
    SCOPED_TRACE(std::string(DTypeName(dtype)) + " ky " + std::to_string(gg.ky) + " kx " +
                 std::to_string(gg.kx) + " c " + std::to_string(gg.c) + ", buffers " +
                 std::to_string(data.size()) + ", " + std::to_string(map.size()) + ", " +
                 std::to_string(tbl.size()));
    ExpectSameError(DecompressWeights(data, map, tbl, gg, dtype, 0).status(),
                    simd::DecompressWeights(data, map, tbl, gg, dtype, 0).status());
  };
  const std::vector<uint8_t> short_map(cw.map.begin(), cw.map.end() - 16);
  ASSERT_GT(cw.nonzeros[1], 0);
  expect_same(cw.data, short_map, table, g, DType::kI8);
  std::vector<uint8_t> map = cw.map;
  map[cw.map_offset[1] + 144 / 8] |= 1;  // channel 1's first padding bit
  expect_same(cw.data, map, table, g, DType::kI8);
  const std::vector<uint8_t> short_data(cw.data.begin(),
                                        cw.data.begin() + cw.data_offset[1] + cw.nonzeros[1] - 1);
  expect_same(short_data, cw.map, table, g, DType::kI8);
  for (const auto& word : {std::pair<int, uint32_t>{0, 8}, {0, 1u << 20}, {1, 0x18},
                           {1, static_cast<uint32_t>(cw.map.size())}, {1, 0xFFFFF0u}}) {
    std::vector<uint8_t> t = table;
    SetWord(t, 1, word.first, word.second);
    expect_same(cw.data, cw.map, t, g, DType::kI8);
  }
  entries[1].sparsity_ptr = kDenseSparsityPtr;  // a dense channel that does not fit
  expect_same(cw.data, cw.map, EncodeWeightTable(entries), g, DType::kI8);
  const std::vector<uint8_t> short_table(table.begin(), table.end() - 16);
  expect_same(cw.data, cw.map, short_table, g, DType::kI8);
  for (int64_t NceGeometry::*dim : {&NceGeometry::ky, &NceGeometry::kx, &NceGeometry::c}) {
    for (int64_t bad : {int64_t{0}, int64_t{-16}, int64_t{1} << 40}) {
      NceGeometry bg = g;
      bg.*dim = bad;
      expect_same(cw.data, cw.map, table, bg, DType::kI8);
    }
  }
  expect_same(cw.data, cw.map, table, g, DType::kI32);
  expect_same(cw.data, cw.map, table, g, DType::kFP32);
}

// The gathers check the SE pointers in a pass of their own (a vector one on the VBMI2 path) and
// the weight decode checks each channel as it goes; both must accept exactly what the reference
// checks accept, and refuse the rest with the reference's message. Random tables with one entry
// pushed to or past a rule's edge: slots ending exactly at / one granule past their tile's end,
// tiles at and past the count (1-17 tiles: the vector pass handles up to 15), reserved bits.
TEST_P(Bitmap, GatherPointerEdgesMatchScalar) {
  const uint64_t base = BaseSeed(3);
  int accepted = 0, refused = 0;  // both outcomes must be common, or the sweep tests little
  for (uint64_t index = 0; index < 300; ++index) {
    SCOPED_TRACE(CaseTrace(base, index));
    Rng rng(base + index);
    const DType dtype = Pick(rng, kDTypes);
    const int64_t eb = DTypeBytes(dtype);
    const int64_t se = 16 * rng.Int(1, 4), c = se * rng.Int(1, 3);
    const int64_t h = rng.Int(1, 4), w = rng.Int(1, 9);
    const int32_t zp = DrawZp(dtype, rng);
    Tensor t(dtype, {h, w, c});
    Fill(t, zp, Pick(rng, kSparsities), rng);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SparseActivations sa, EncodeSparseActivations(t, zp, se));
    const int64_t slot_bytes = se * eb, ses = h * w * c / se;
    const int ntiles = static_cast<int>(rng.Int(1, 17));
    // Each tile a copy of all slots plus 0-3 granules, so that any slot fits in any tile.
    std::vector<std::vector<uint8_t>> storage(ntiles);
    ActivationView view;
    for (int i = 0; i < ntiles; ++i) {
      storage[i] = sa.data;
      storage[i].resize(sa.data.size() + 16 * rng.Int(0, 3), 0x5A);
      view.tiles.emplace_back(storage[i]);
    }
    std::vector<int32_t> table(ses);
    for (int64_t s = 0; s < ses; ++s) {
      const int32_t tile = static_cast<int32_t>(rng.Int(0, ntiles - 1));
      table[s] = EncodeSePointer(s * slot_bytes, tile).value();
    }
    const int64_t victim = rng.Int(0, ses - 1);
    const int32_t tile = static_cast<int32_t>(rng.Int(0, ntiles - 1));
    const int64_t last = static_cast<int64_t>(view.tiles[tile].size()) - slot_bytes;  // fits
    switch (rng.Int(0, 4)) {
      case 0:
        table[victim] = EncodeSePointer(last / 16 * 16, tile).value();
        break;
      case 1:
        table[victim] = EncodeSePointer(AlignUp(last + 1, 16), tile).value();
        break;
      case 2:
        table[victim] = EncodeSePointer(0, static_cast<int32_t>(ntiles + rng.Int(0, 20))).value();
        break;
      case 3:
        table[victim] = static_cast<int32_t>(static_cast<uint32_t>(table[victim]) |
                                             (1u << rng.Int(29, 31)));
        break;
      default:
        table[victim] = EncodeSePointer(16 * rng.Int(0, (1 << 20) - 1), tile).value();
        break;
    }
    view.map = sa.map;
    view.se_table = table;
    view.se_size = se;
    SCOPED_TRACE(std::string(DTypeName(dtype)) + " [" + std::to_string(h) + ", " +
                 std::to_string(w) + ", " + std::to_string(c) + "] se " + std::to_string(se) +
                 ", " + std::to_string(ntiles) + " tiles, entry " + std::to_string(victim));
    for (bool sparse : {true, false}) {
      view.map = sparse ? ByteSpan(sa.map) : ByteSpan();
      const StatusOr<Tensor> sg = GatherActivations(view, dtype, t.shape, zp);
      const StatusOr<Tensor> fg = simd::GatherActivations(view, dtype, t.shape, zp);
      ASSERT_EQ(fg.ok(), sg.ok()) << fg.status().ToString() << " vs " << sg.status().ToString();
      ++(sg.ok() ? accepted : refused);
      if (!sg.ok()) {
        ExpectSameError(sg.status(), fg.status());
      } else {
        EXPECT_EQ(FirstDifference(*fg, *sg), "");
      }
      const int64_t rb = rng.Int(0, h), re = rng.Int(rb, h);
      std::vector<uint8_t> out(static_cast<size_t>((re - rb) * w * c * eb) + 1);
      const Status sr = CheckGather(view, dtype, t.shape, zp, rb, re).status();
      const Status fr = simd::GatherRows(view, dtype, t.shape, zp, rb, re, out);
      ASSERT_EQ(fr.ok(), sr.ok()) << fr.ToString() << " vs " << sr.ToString();
      if (!sr.ok()) ExpectSameError(sr, fr);
    }
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 50);
  std::cout << "gather pointer edges: " << accepted << " accepted, " << refused << " refused\n";
}

// Random weight sets (taps below, at and above 64-bit map words) whose table, map or data is
// pushed to or past one rule's edge; the decode must match the reference's result or status.
TEST_P(Bitmap, DecompressEdgesMatchScalar) {
  const uint64_t base = BaseSeed(4);
  int accepted = 0, refused = 0;
  for (uint64_t index = 0; index < 300; ++index) {
    SCOPED_TRACE(CaseTrace(base, index));
    Rng rng(base + index);
    const DType dtype = Pick(rng, kDTypes);
    NceGeometry g;
    g.k = rng.Int(1, 6);
    g.ky = g.kx = rng.Bernoulli(0.5) ? 1 : 3;
    g.c = 16 * rng.Int(1, 9);
    const int32_t zp = DrawZp(dtype, rng);
    Tensor w(dtype, {g.k, g.ky, g.kx, g.c});
    Fill(w, zp, Pick(rng, kSparsities), rng);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, zp));
    std::vector<uint8_t> data = cw.data, map = cw.map;
    std::vector<WeightTableEntry> entries(g.k);
    for (int64_t k = 0; k < g.k; ++k) entries[k] = {cw.data_offset[k], cw.map_offset[k], 0, 0};
    const int64_t eb = DTypeBytes(dtype), taps = g.taps();
    const int64_t map_per_k = WeightMapBytesPerChannel(g);
    const int64_t victim = rng.Int(0, g.k - 1);
    WeightTableEntry& e = entries[victim];
    switch (rng.Int(0, 6)) {
      case 0:  // the data ends right after (or one byte before the end of) the last channel
      {
        const int64_t end = cw.data_offset[g.k - 1] + cw.nonzeros[g.k - 1] * eb;
        data.resize(static_cast<size_t>(std::max<int64_t>(0, end - rng.Int(0, 1))));
        break;
      }
      case 1:  // a padding bit
        if (taps % 8 != 0 || 8 * map_per_k > taps) {
          const int64_t b = rng.Int(taps, 8 * map_per_k - 1);
          map[e.sparsity_ptr + b / 8] |= static_cast<uint8_t>(1u << (b % 8));
        }
        break;
      case 2: {  // a dense channel ending at or one byte past the data's end
        const int64_t at = AlignUp(static_cast<int64_t>(data.size()), 16);
        e.sparsity_ptr = kDenseSparsityPtr;
        e.weight_ptr = static_cast<uint32_t>(at);
        data.resize(static_cast<size_t>(at + taps * eb - rng.Int(0, 1)));
        break;
      }
      case 3:  // the map at or past its end
        e.sparsity_ptr = static_cast<uint32_t>(map.size() - map_per_k + 16 * rng.Int(0, 1));
        break;
      case 4:  // misaligned pointers
        (rng.Bernoulli(0.5) ? e.weight_ptr : e.sparsity_ptr) += static_cast<uint32_t>(
            rng.Int(1, 15));
        break;
      case 5:  // a weight pointer past the data
        e.weight_ptr = static_cast<uint32_t>(AlignUp(static_cast<int64_t>(data.size()), 16));
        break;
      default:  // another channel's map: its non-zeros may not fit
        e.sparsity_ptr = cw.map_offset[rng.Int(0, g.k - 1)];
        break;
    }
    const std::vector<uint8_t> table = EncodeWeightTable(entries);
    const Misaligned md(data, rng), mm(map, rng);
    SCOPED_TRACE(std::string(DTypeName(dtype)) + " [" + std::to_string(g.k) + ", " +
                 std::to_string(g.ky) + ", " + std::to_string(g.kx) + ", " + std::to_string(g.c) +
                 "] channel " + std::to_string(victim));
    const StatusOr<Tensor> sd = DecompressWeights(md.span(), mm.span(), table, g, dtype, zp);
    const StatusOr<Tensor> fd =
        simd::DecompressWeights(md.span(), mm.span(), table, g, dtype, zp);
    ASSERT_EQ(fd.ok(), sd.ok()) << fd.status().ToString() << " vs " << sd.status().ToString();
    ++(sd.ok() ? accepted : refused);
    if (!sd.ok()) {
      ExpectSameError(sd.status(), fd.status());
    } else {
      EXPECT_EQ(FirstDifference(*fd, *sd), "");
    }
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 50);
  std::cout << "decompress edges: " << accepted << " accepted, " << refused << " refused\n";
}

}  // namespace
}  // namespace dpuemu
