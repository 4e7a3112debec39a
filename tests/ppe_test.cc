// Tests of the PPE definition (kernels/ppe.h): hand-worked values, then random inputs over the
// full parameter ranges against the textbook PPE (128-bit integers and division; fp64 arithmetic
// rounded once to fp32), which shares no code with it.
#include "kernels/ppe.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "hw/dtype.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

namespace dpuemu {
namespace {

constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();
constexpr float kInfF = std::numeric_limits<float>::infinity();

TEST(PpeTest, RoundShiftHalfEvenHandWorked) {
  struct Case {
    int64_t v;
    int shift;
    int64_t expected;
  };
  const int64_t p60 = int64_t{1} << 60;
  const Case cases[] = {
      {5, 0, 5},
      {-5, 0, -5},
      {5, 1, 2},
      {7, 1, 4},
      {-5, 1, -2},
      {-7, 1, -4},
      {1, 1, 0},
      {-1, 1, 0},
      {3, 1, 2},
      {-3, 1, -2},
      {2, 2, 0},
      {6, 2, 2},
      {10, 2, 2},
      {-2, 2, 0},
      {-6, 2, -2},
      {3, 2, 1},
      {-3, 2, -1},
      {5, 2, 1},
      {-5, 2, -1},
      {9, 3, 1},
      {p60 / 2, 60, 0},
      {3 * (p60 / 4), 60, 1},
      {-(p60 / 2), 60, 0},
      {-3 * (p60 / 4), 60, -1},
      {p60 - 1, 61, 0},
      {-(p60 - 1), 61, 0},
      {p60 - 1, 62, 0},
      {-(p60 - 1), 63, 0},
      {-(p60 - 1), 94, 0},
      {p60 - 1, 60, 1},
      {-(p60 - 1), 60, -1},
      {3 * (p60 / 4), 61, 0},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RoundShiftHalfEven(c.v, c.shift), c.expected) << c.v << " >> " << c.shift;
    EXPECT_EQ(TextbookRoundHalfEven(c.v, c.shift), c.expected) << c.v << " >> " << c.shift;
  }
}

TEST(PpeTest, RoundShiftHalfEvenRandom) {
  const uint64_t seed = BaseSeed(1);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  const int64_t lim = (int64_t{1} << 60) - 1;
  for (int i = 0; i < 200000; ++i) {
    const int shift = static_cast<int>(rng.Int(0, 94));
    int64_t v;
    switch (i % 3) {
      case 0:
        v = rng.Int(-lim, lim);
        break;
      case 1:
        v = rng.Int(-1000, 1000);
        break;
      default: {
        // An exact tie q + 1/2, odd or even q, at any magnitude.
        if (shift == 0 || shift > 59) continue;
        const int64_t q = rng.Int(-(lim >> shift), (lim >> shift) - 1);
        v = q * (int64_t{1} << shift) + (int64_t{1} << (shift - 1));
      }
    }
    ASSERT_EQ(RoundShiftHalfEven(v, shift), TextbookRoundHalfEven(v, shift))
        << v << " >> " << shift;
  }
}

// A valid op (1x1 pixel, 16 channels) whose output and PPE settings are the ones given.
NceOp PpeOp(DType out, int32_t out_zp = 0, double lo = -INFINITY, double hi = INFINITY) {
  NceOp op;
  op.g.h = op.g.w = 1;
  op.g.c = op.g.k = 16;
  if (IsFloat(out)) op.in_dtype = op.w_dtype = DType::kFP16;
  op.out_dtype = out;
  op.ppe.out_zp = out_zp;
  op.ppe.clamp_lo = lo;
  op.ppe.clamp_hi = hi;
  return op;
}

NceOp Leaky(NceOp op, int32_t mult, int32_t shift) {
  op.ppe.leaky_relu = true;
  op.ppe.lrelu_mult = mult;
  op.ppe.lrelu_shift = shift;
  return op;
}

TEST(PpeTest, PpeIntHandWorked) {
  struct Case {
    int32_t acc, bias, mult, shift;
    NceOp op;
    int32_t expected;
  };
  const NceOp i8 = PpeOp(DType::kI8), u8 = PpeOp(DType::kU8);
  const Case cases[] = {
      {5, 0, 1, 1, i8, 2},  // 2.5 -> 2
      {7, 0, 1, 1, i8, 4},  // 3.5 -> 4
      {-5, 0, 1, 1, i8, -2},
      {-7, 0, 1, 1, i8, -4},
      {3, 0, 3, 2, i8, 2},            // 9 / 4 = 2.25
      {100, 28, 65535, 16, i8, 127},  // 127.998 -> 128, clamped
      {100, 28, 65535, 16, u8, 128},
      {1000, 5, 0, 5, PpeOp(DType::kI8, -7), -7},  // mult 0
      {kI32Max, kI32Max, 65535, 63, PpeOp(DType::kU8, 3), 3},
      {10, -3, 2, 0, PpeOp(DType::kU8, 100), 114},
      {kI32Max, 1, 1, 24, u8, 128},  // acc + bias = 2^31 does not wrap
      {kI32Max, 1, 1, 24, i8, 127},
      {kI32Min, -1, 1, 24, i8, -128},  // -128.00000006 -> -128
      {kI32Min, kI32Min, 65535, 63, PpeOp(DType::kI8, -100), -100},
      {-40, 0, 1, 0, Leaky(PpeOp(DType::kU8, 128), 3, 2), 98},  // -120 / 4 = -30
      {40, 0, 1, 0, Leaky(PpeOp(DType::kU8, 128), 3, 2), 168},  // positives untouched
      {-2, 0, 3, 0, Leaky(i8, 1, 2), -2},                       // -6 / 4 = -1.5 -> -2
      {-10, 0, 1, 0, Leaky(i8, 1, 2), -2},                      // -10 / 4 = -2.5 -> -2
      {-14, 0, 1, 0, Leaky(i8, 1, 2), -4},                      // -3.5 -> -4
      {-100, 0, 1, 0, Leaky(i8, 0, 0), 0},                      // lrelu mult 0
      {-1, 0, 1, 0, Leaky(i8, 2047, 0), -128},                  // -2047, clamped
      {-1, 0, 1, 0, Leaky(i8, 2047, 31), 0},                    // -2047 / 2^31
      {-(1 << 20), 0, 1, 0, Leaky(i8, 2047, 31), -1},           // -0.9995
      {kI32Min, kI32Min, 65535, 63, Leaky(PpeOp(DType::kI8, 9), 2047, 31), 9},  // shift 94
      {kI32Min, kI32Min, 65535, 0, Leaky(i8, 2047, 0), -128},                   // about -2^59
      {kI32Max, 1, 1, 0, PpeOp(DType::kI32), kI32Min},  // i32: wraps, no PPE
      {-5, 3, 0, 63, PpeOp(DType::kI32), -2},
      {5, 0, 1, 0, PpeOp(DType::kU8, 0, 10, 20), 10},
      {30, 0, 1, 0, PpeOp(DType::kU8, 0, 10, 20), 20},
      {15, 0, 1, 0, PpeOp(DType::kU8, 0, 10, 20), 15},
      {500, 0, 1, 0, PpeOp(DType::kI8, 0, -1000, 1000), 127},
      {-500, 0, 1, 0, PpeOp(DType::kI8, 0, -1000, 1000), -128},
      {-500, 0, 1, 0, PpeOp(DType::kU8, 0, -1000, 1000), 0},
  };
  for (const Case& c : cases) {
    const std::string where = "acc " + std::to_string(c.acc) + " bias " + std::to_string(c.bias) +
                              " mult " + std::to_string(c.mult) + " shift " +
                              std::to_string(c.shift) + " -> " + DTypeName(c.op.out_dtype);
    ASSERT_TRUE(ValidateOp(c.op).ok()) << where;
    EXPECT_EQ(PpeInt(c.acc, c.bias, c.mult, c.shift, ResolvePpe(c.op)), c.expected) << where;
    EXPECT_EQ(TextbookPpeInt(c.acc, c.bias, c.mult, c.shift, c.op), c.expected) << where;
  }
}

int32_t AnyInt32(Rng& rng) {
  // Half the draws near the extremes or zero, where wrap-around and overflow would show.
  switch (rng.Int(0, 3)) {
    case 0:
      return static_cast<int32_t>(rng.Int(kI32Min, kI32Max));
    case 1:
      return static_cast<int32_t>(rng.Int(-70000, 70000));
    case 2:
      return static_cast<int32_t>(rng.Int(kI32Max - 1000, kI32Max));
    default:
      return static_cast<int32_t>(rng.Int(kI32Min, kI32Min + 1000));
  }
}

TEST(PpeTest, PpeIntMatchesTextbookOnFullRanges) {
  const uint64_t seed = BaseSeed(2);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  const DType outs[] = {DType::kU8, DType::kI8, DType::kI32};
  for (int i = 0; i < 100000; ++i) {
    NceOp op = PpeOp(outs[i % 3]);
    if (op.out_dtype != DType::kI32) {
      const int64_t tmin = DTypeMin(op.out_dtype), tmax = DTypeMax(op.out_dtype);
      op.ppe.out_zp = static_cast<int32_t>(rng.Int(tmin, tmax));
      if (rng.Bernoulli(0.5))
        op =
            Leaky(op, static_cast<int32_t>(rng.Int(0, 2047)), static_cast<int32_t>(rng.Int(0, 31)));
      if (rng.Bernoulli(0.3)) {
        op.ppe.clamp_lo = static_cast<double>(rng.Int(tmin - 300, tmax));
        op.ppe.clamp_hi =
            static_cast<double>(rng.Int(std::max<int64_t>(tmin, op.ppe.clamp_lo), tmax + 300));
      }
    }
    ASSERT_TRUE(ValidateOp(op).ok());
    const int32_t acc = AnyInt32(rng), bias = AnyInt32(rng);
    // Shifts that keep the result in the output range show the rounding; any shift is legal.
    const int32_t mult = static_cast<int32_t>(rng.Int(0, 65535));
    const int32_t shift =
        static_cast<int32_t>(rng.Bernoulli(0.5) ? rng.Int(0, 63) : rng.Int(40, 52));
    ASSERT_EQ(PpeInt(acc, bias, mult, shift, ResolvePpe(op)),
              TextbookPpeInt(acc, bias, mult, shift, op))
        << "case " << i << ": acc " << acc << " bias " << bias << " mult " << mult << " shift "
        << shift << " out " << DTypeName(op.out_dtype) << " zp " << op.ppe.out_zp << " leaky "
        << op.ppe.leaky_relu << " " << op.ppe.lrelu_mult << "/" << op.ppe.lrelu_shift << " clamp ["
        << op.ppe.clamp_lo << ", " << op.ppe.clamp_hi << "]";
  }
}

// Equal bit patterns, or both NaN (which NaN an operation returns is not part of the definition
// when several operands are NaN).
bool SameFloat(float a, float b) {
  return FloatBits(a) == FloatBits(b) || (std::isnan(a) && std::isnan(b));
}

NceOp FloatLeaky(NceOp op, float alpha) {
  op.ppe.leaky_relu = true;
  op.ppe.lrelu_alpha = alpha;
  return op;
}

// The float PPE in the compiler's order (PPEFpBiasAdd, PPEFpScalePreluMult, PPEFpConvert):
// fp32(acc + bias), then fp32(* scale), then the slope for negatives, the clamp, fp16 saturation.
TEST(PpeTest, PpeFloatHandWorked) {
  struct Case {
    float acc, scale, bias;
    NceOp op;
    float expected;
  };
  const NceOp fp32 = PpeOp(DType::kFP32);
  const NceOp fp16 = PpeOp(DType::kFP16);
  const float tiny = std::ldexp(1.0f, -24);
  const Case cases[] = {
      {3.0f, 0.5f, 1.0f, fp32, 2.0f},  // (3 + 1) * 0.5; scale first would give 2.5
      {3.0f, 0.5f, 1.0f, PpeOp(DType::kFP16, 0, 0, 1.5), 1.5f},
      {-3.0f, 0.5f, 1.0f, PpeOp(DType::kFP16, 0, 0, 2), 0.0f},
      // The sum is rounded before the scale: 1 + 2^-24 ties to 1, so 3 exactly, where the exact
      // (1 + 2^-24) * 3 rounds to 3 + 2^-22.
      {1.0f, 3.0f, tiny, fp32, 3.0f},
      {0.0f, -1.0f, -0.0f, fp32, -0.0f},   // +0 + -0 = +0; +0 * -1 = -0
      {-0.0f, 1.0f, -0.0f, fp32, -0.0f},   // -0 + -0 = -0
      {3e38f, 2.0f, 0.0f, fp32, kInfF},    // the product overflows
      {3e38f, 1.0f, 3e38f, fp32, kInfF},   // the sum overflows
      {kInfF, 1.0f, -kInfF, fp32, NAN},    // inf - inf
      {kInfF, 1.0f, 0.0f, PpeOp(DType::kFP32, 0, -1, 5), 5.0f},
      {-kInfF, 1.0f, 0.0f, PpeOp(DType::kFP32, 0, -1, 5), -1.0f},
      {NAN, 1.0f, 0.0f, PpeOp(DType::kFP32, 0, -1, 5), NAN},  // NaN passes the clamp
      {kInfF, 0.0f, 0.0f, PpeOp(DType::kFP32, 0, -1, 5), NAN},
      {1.0f, 0.25f, 0.0f, PpeOp(DType::kFP32, 0, 0.3, 1), 0.3f},  // the bound rounded to fp32
      {1.0f, 0.5f, 0.0f, PpeOp(DType::kFP32, 0, -1, 0.1), 0.1f},
      // fp16 outputs saturate at +-65504 (ppe_fp16_clamp), infinities included; NaN stays NaN.
      {1e5f, 1.0f, 0.0f, fp16, 65504.0f},
      {65519.0f, 1.0f, 0.0f, fp16, 65504.0f},
      {-kInfF, 1.0f, 0.0f, fp16, -65504.0f},
      {NAN, 1.0f, 0.0f, fp16, NAN},
      {1e5f, 1.0f, 0.0f, PpeOp(DType::kBF16), 1e5f},  // bf16 does not saturate
      // Leaky ReLU on the float path: negatives after the scale times alpha, in fp32.
      {-4.0f, 0.5f, 0.0f, FloatLeaky(fp32, 0.25f), -0.5f},
      {4.0f, 0.5f, 0.0f, FloatLeaky(fp32, 0.25f), 2.0f},
      {-4.0f, -0.5f, 0.0f, FloatLeaky(fp32, 0.25f), 2.0f},  // the sign after the scale counts
      {-3.0f, 1.0f, 1.0f, FloatLeaky(fp32, 0.1f), -0.2f},   // fp32(-2 * 0.1f)
      {-0.0f, 1.0f, -0.0f, FloatLeaky(fp32, 0.5f), -0.0f},  // -0 is not negative
      {-1e5f, 1.0f, 0.0f, FloatLeaky(fp16, 2.0f), -65504.0f},
  };
  for (const Case& c : cases) {
    const std::string where = "(" + std::to_string(c.acc) + " + " + std::to_string(c.bias) +
                              ") * " + std::to_string(c.scale) + " -> " + DTypeName(c.op.out_dtype);
    ASSERT_TRUE(ValidateOp(c.op).ok()) << where;
    EXPECT_TRUE(SameFloat(PpeFloat(c.acc, c.scale, c.bias, ResolvePpe(c.op)), c.expected)) << where;
    EXPECT_TRUE(SameFloat(TextbookPpeFloat(c.acc, c.scale, c.bias, c.op), c.expected)) << where;
  }
}

// Any fp32: random bit patterns (all exponents, NaN and inf included), plain values, specials.
float AnyFloat(Rng& rng) {
  static const float kSpecial[] = {0.0f, -0.0f, kInfF, -kInfF, NAN, 1e-45f, -1e-45f, 3.4028235e38f};
  switch (rng.Int(0, 3)) {
    case 0:
      return BitsToFloat(static_cast<uint32_t>(rng.Next()));
    case 1:
      return kSpecial[rng.Int(0, 7)];
    default:
      return static_cast<float>((rng.Uniform() - 0.5) *
                                std::ldexp(1.0, static_cast<int>(rng.Int(-30, 30))));
  }
}

float AnyFiniteFloat(Rng& rng) {
  float v;
  do v = AnyFloat(rng); while (!std::isfinite(v));
  return v;
}

TEST(PpeTest, PpeFloatMatchesTextbook) {
  const uint64_t seed = BaseSeed(3);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  for (int i = 0; i < 200000; ++i) {
    NceOp op = PpeOp(rng.Bernoulli(0.3) ? DType::kFP16 : DType::kFP32);
    if (rng.Bernoulli(0.3)) op = FloatLeaky(op, AnyFiniteFloat(rng));
    if (rng.Bernoulli(0.5)) {
      // Bounds in fp64 that are generally not fp32 values.
      op.ppe.clamp_lo =
          (rng.Uniform() - 0.75) * std::ldexp(1.0, static_cast<int>(rng.Int(-20, 20)));
      op.ppe.clamp_hi =
          op.ppe.clamp_lo + rng.Uniform() * std::ldexp(1.0, static_cast<int>(rng.Int(-20, 20)));
    }
    const float acc = AnyFloat(rng), scale = AnyFloat(rng), bias = AnyFloat(rng);
    const float ref = PpeFloat(acc, scale, bias, ResolvePpe(op));
    const float textbook = TextbookPpeFloat(acc, scale, bias, op);
    ASSERT_TRUE(SameFloat(ref, textbook))
        << "case " << i << ": " << std::hexfloat << "(" << acc << " + " << bias << ") * " << scale
        << (op.ppe.leaky_relu ? " leaky " + std::to_string(op.ppe.lrelu_alpha) : std::string())
        << " -> " << DTypeName(op.out_dtype)
        << " clamp [" << op.ppe.clamp_lo << ", " << op.ppe.clamp_hi << "]: " << ref << " vs "
        << textbook;
  }
}

}  // namespace
}  // namespace dpuemu
