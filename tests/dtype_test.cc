// Bit-exact tests of the fp16/bf16 conversions against independent oracles: ldexp for widening,
// GCC's _Float16 cast (IEEE round-to-nearest-even in libgcc) for FloatToHalf, and a double-based
// round-to-nearest-even for FloatToBF16.
#include "hw/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hw/rng.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

uint16_t GccHalf(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

// The fp32 value of half pattern h, computed from its fields with ldexp.
float HalfOracle(uint16_t h) {
  const bool neg = h & 0x8000;
  const int exp = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  if (exp == 0x1F) {
    // inf, or a NaN whose 10 payload bits (quiet bit included) move to the top of fp32's payload.
    return BitsToFloat((neg ? 0x80000000u : 0u) | 0x7F800000u | (uint32_t(mant) << 13));
  }
  const double mag = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
  return static_cast<float>(neg ? -mag : mag);  // exact: 11 significant bits fit in fp32
}

// Round-to-nearest-even of f to bf16 (8 significant bits), by scaling in double.
uint16_t BF16Oracle(float f) {
  const uint32_t u = FloatBits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet, payload truncated
  if (std::isinf(f) || f == 0.0f) return static_cast<uint16_t>(u >> 16);
  const double x = f;
  // bf16 keeps fp32's exponent range, so its step below 2^-126 is fixed at 2^-133.
  const int e = std::max(std::ilogb(x), -126);
  const double ulp = std::ldexp(1.0, e - 7);
  const double r = std::nearbyint(x / ulp) * ulp;  // default rounding mode: nearest, ties to even
  if (std::fabs(r) >= std::ldexp(1.0, 128)) {
    return static_cast<uint16_t>((u >> 16 & 0x8000) | 0x7F80);  // overflow: infinity
  }
  const uint32_t rb = FloatBits(static_cast<float>(r));
  EXPECT_EQ(rb & 0xFFFF, 0u) << "oracle produced a non-bf16 value for " << Hex(u);
  return static_cast<uint16_t>(rb >> 16);
}

::testing::AssertionResult SameAsGcc(float f) {
  const uint16_t got = FloatToHalf(f), want = GccHalf(f);
  if (got == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "FloatToHalf(" << f << " = " << Hex(FloatBits(f))
                                       << ") = " << Hex(got) << ", _Float16 gives " << Hex(want);
}

TEST(HalfToFloat, AllPatternsMatchFieldDecoding) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float got = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(FloatBits(got), FloatBits(HalfOracle(static_cast<uint16_t>(h)))) << "half " << Hex(h);
    // GCC's widening agrees, except that it quiets signalling NaNs (dpuemu keeps every bit).
    const bool signalling_nan = (h & 0x7E00) == 0x7C00 && (h & 0x1FF) != 0;
    if (signalling_nan) continue;
    _Float16 hf;
    const uint16_t hb = static_cast<uint16_t>(h);
    std::memcpy(&hf, &hb, 2);
    ASSERT_EQ(FloatBits(got), FloatBits(static_cast<float>(hf))) << "half " << Hex(h);
  }
}

TEST(FloatToHalf, EveryHalfValueRoundTripsAndMatchesGcc) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_TRUE(SameAsGcc(f));
    const bool nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    // Finite values and infinities come back unchanged; a NaN comes back with its quiet bit set.
    EXPECT_EQ(FloatToHalf(f), nan ? (h | 0x200) : h) << "half " << Hex(h);
  }
}

TEST(FloatToHalf, MidpointsRoundToEven) {
  // Every pair of adjacent finite halves of either sign, including the subnormal range and the
  // step from 0x7BFF (65504) to infinity (the midpoint 65520 rounds to even, i.e. to infinity).
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    for (uint32_t sign : {0u, 0x8000u}) {
      const double lo = HalfToFloat(static_cast<uint16_t>(sign | h));
      const double hi = h + 1 == 0x7C00 ? (sign ? -65536.0 : 65536.0)
                                        : HalfToFloat(static_cast<uint16_t>(sign | (h + 1)));
      const float mid = static_cast<float>((lo + hi) / 2);  // exact: 12 significant bits
      ASSERT_EQ(double(mid), (lo + hi) / 2);
      const uint16_t even = static_cast<uint16_t>(sign | ((h & 1) ? h + 1 : h));
      ASSERT_EQ(FloatToHalf(mid), even) << "midpoint " << mid;
      ASSERT_TRUE(SameAsGcc(mid));
      // One fp32 ulp either side of the midpoint decides for the nearer half.
      ASSERT_TRUE(SameAsGcc(std::nextafter(mid, 0.0f)));
      ASSERT_TRUE(SameAsGcc(std::nextafter(mid, sign ? -INFINITY : INFINITY)));
      ASSERT_EQ(FloatToHalf(std::nextafter(mid, 0.0f)), sign | h);
      ASSERT_EQ(FloatToHalf(std::nextafter(mid, sign ? -INFINITY : INFINITY)), sign | (h + 1));
    }
  }
}

TEST(FloatToHalf, Boundaries) {
  struct Case {
    float f;
    uint16_t want;
  };
  const Case cases[] = {
      {65504.0f, 0x7BFF},         // largest half
      {65519.99f, 0x7BFF},        // just below the midpoint to infinity
      {65520.0f, 0x7C00},         // the midpoint: ties to even, which is infinity
      {-65520.0f, 0xFC00},
      {65536.0f, 0x7C00},
      {1e30f, 0x7C00},
      {INFINITY, 0x7C00},
      {-INFINITY, 0xFC00},
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {0x1p-24f, 0x0001},         // smallest subnormal
      {0x1p-25f, 0x0000},         // half of it: a tie, rounds to even 0
      {0x1.000002p-25f, 0x0001},  // just above the tie
      {0x1.8p-24f, 0x0002},       // 1.5 ulp: tie, rounds to even 2
      {0x1.ff8p-15f, 0x03FF},     // largest subnormal
      {0x1.ffcp-15f, 0x0400},     // tie above it rounds up to the smallest normal
      {0x1p-14f, 0x0400},
      {0x1p-149f, 0x0000},        // fp32 subnormals vanish
      {-0x1p-149f, 0x8000},
      {1.0f, 0x3C00},
      {-2.0f, 0xC000},
      {0.1f, 0x2E66},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FloatToHalf(c.f), c.want) << "f = " << c.f;
    ASSERT_TRUE(SameAsGcc(c.f));
  }
  // NaNs: quiet, sign and the top payload bits kept, never turned into infinity.
  for (uint32_t u : {0x7F800001u, 0xFF800001u, 0x7FC00000u, 0x7FBFFFFFu, 0x7F802000u}) {
    const uint16_t h = FloatToHalf(BitsToFloat(u));
    EXPECT_EQ(h, static_cast<uint16_t>(((u >> 16) & 0x8000) | 0x7E00 | ((u >> 13) & 0x3FF)))
        << Hex(u);
    ASSERT_TRUE(SameAsGcc(BitsToFloat(u)));
  }
}

TEST(FloatToHalf, RandomPatternsMatchGcc) {
  const uint64_t seed = BaseSeed(0xF16);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  for (int i = 0; i < (1 << 22); ++i) {
    const uint64_t r = rng.Next();
    ASSERT_TRUE(SameAsGcc(BitsToFloat(static_cast<uint32_t>(r))));
    // Bias half of the draws to the exponents where halves live (2^-26 .. 2^17).
    const uint32_t exp = static_cast<uint32_t>(127 - 26 + (r >> 32) % 44);
    ASSERT_TRUE(SameAsGcc(BitsToFloat((static_cast<uint32_t>(r) & 0x807FFFFFu) | exp << 23)));
  }
}

TEST(FloatToBF16, EveryBF16ValueAndMidpoints) {
  for (uint32_t b = 0; b <= 0xFFFF; ++b) {
    const uint32_t u = b << 16;
    const float f = BitsToFloat(u);
    ASSERT_EQ(FloatToBF16(f), BF16Oracle(f)) << Hex(u);
    if (!std::isnan(f)) {
      ASSERT_EQ(FloatToBF16(f), b) << Hex(u);
    }
    if ((b & 0x7F80) == 0x7F80) continue;  // inf/NaN have no midpoints
    // The midpoint to the next pattern (a tie) and its two fp32 neighbours.
    for (uint32_t m : {u | 0x8000u, u | 0x7FFFu, u | 0x8001u}) {
      ASSERT_EQ(FloatToBF16(BitsToFloat(m)), BF16Oracle(BitsToFloat(m))) << Hex(m);
    }
    ASSERT_EQ(FloatToBF16(BitsToFloat(u | 0x8000u)), (b & 1) ? b + 1 : b) << "tie " << Hex(u);
  }
}

TEST(FloatToBF16, SpecialValues) {
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX rounds to infinity
  EXPECT_EQ(FloatToBF16(BitsToFloat(0xFF7F8000u)), 0xFF80);  // tie at the top: even is infinity
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x7F7F7FFFu)), 0x7F7F);
  EXPECT_EQ(FloatToBF16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x00008000u)), 0x0000);  // subnormal tie -> even 0
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x00018000u)), 0x0002);  // subnormal tie -> even 2
  // A signalling NaN whose payload is only in the dropped bits must stay a NaN.
  EXPECT_EQ(FloatToBF16(BitsToFloat(0x7F800001u)), 0x7FC0);
  EXPECT_EQ(FloatToBF16(BitsToFloat(0xFFFFFFFFu)), 0xFFFF);
}

TEST(FloatToBF16, RandomPatternsMatchOracle) {
  const uint64_t seed = BaseSeed(0xBF16);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  for (int i = 0; i < (1 << 22); ++i) {
    const float f = BitsToFloat(static_cast<uint32_t>(rng.Next()));
    ASSERT_EQ(FloatToBF16(f), BF16Oracle(f)) << Hex(FloatBits(f));
  }
}

TEST(Store, RoundsThroughTheConversions) {
  uint8_t buf[4] = {0, 0, 0, 0};
  StoreFloat(DType::kFP16, buf, 1, 65520.0f);
  EXPECT_EQ(buf[2] | buf[3] << 8, 0x7C00);
  EXPECT_EQ(LoadFloat(DType::kFP16, buf, 1), INFINITY);
  StoreFloat(DType::kBF16, buf, 0, 1.00390625f);  // 1 + 2^-8: a tie, rounds to even 1.0
  EXPECT_EQ(buf[0] | buf[1] << 8, 0x3F80);
  StoreInt(DType::kI32, buf, 0, -2);
  EXPECT_EQ(buf[0], 0xFE);
  EXPECT_EQ(buf[3], 0xFF);
  EXPECT_EQ(LoadInt(DType::kI32, buf, 0), -2);
  EXPECT_EQ(LoadInt(DType::kI8, buf, 0), -2);
  EXPECT_EQ(LoadInt(DType::kU8, buf, 0), 254);
}

TEST(DType, NamesRoundTrip) {
  for (DType t : {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16, DType::kI32, DType::kFP32}) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DType parsed, ParseDType(DTypeName(t)));
    EXPECT_EQ(parsed, t) << DTypeName(t);
  }
  EXPECT_TRUE(IsFloat(DType::kBF16));
  EXPECT_TRUE(IsInteger(DType::kI32));
  EXPECT_EQ(DTypeBytes(DType::kBF16), 2);
  EXPECT_EQ(DTypeBytes(DType::kI32), 4);
  EXPECT_EQ(DTypeMin(DType::kI8), -128);
  EXPECT_EQ(DTypeMax(DType::kU8), 255);
}

TEST(DType, ParseErrorNamesTheString) {
  for (const std::string bad : {"f32", "int8", "FP16", ""}) {
    const StatusOr<DType> r = ParseDType(bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("dtype"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("'" + bad + "'"), std::string::npos)
        << r.status().message();
  }
}

}  // namespace
}  // namespace dpuemu
