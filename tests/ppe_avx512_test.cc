// The dot-product tiers' int64 AVX-512 PPE (kernels/zmconv_x86.h PpeIntAvx512) against the
// definition (kernels/ppe.h PpeInt), bit for bit, over random and edge accumulators, biases,
// multipliers 0..65535, every shift 0..63, leaky ReLU (every lrelu_shift 0..31, multipliers
// 0..2047), clamps and output zero points, u8 and i8 outputs; exact ties of every shift included.
// Half the blocks pass the dot-product tiers' compensation terms (per channel and per pixel),
// which the PPE subtracts first in wrapping int32. Without leaky ReLU the double path runs,
// with it the int64 path.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "hw/rng.h"
#include "kernels/ppe.h"
#include "kernels/zmconv_x86.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();
constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();

int32_t EdgeOrRandom(Rng& rng, const std::vector<int32_t>& edges, int32_t lo, int32_t hi) {
  if (rng.Bernoulli(0.3)) return edges[rng.Int(0, static_cast<int64_t>(edges.size()) - 1)];
  return static_cast<int32_t>(rng.Int(lo, hi));
}

TEST(PpeAvx512Test, MatchesPpeIntOnEdgeAndRandomValues) {
  if (!x86::HasAvx512Ppe()) GTEST_SKIP() << "this CPU (or OS) lacks AVX-512F: PpeIntAvx512 cannot run here";
  const uint64_t base = BaseSeed(20261202);
  constexpr int64_t kBlocks = 4, kK = 16 * kBlocks, kPix = 37;
  int64_t checked = 0, ties = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    const uint64_t seed = base + iter;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    PpeParams p;
    p.out = rng.Bernoulli(0.5) ? DType::kU8 : DType::kI8;
    const int32_t tmin = p.out == DType::kU8 ? 0 : -128, tmax = p.out == DType::kU8 ? 255 : 127;
    p.out_zp = static_cast<int32_t>(rng.Bernoulli(0.2) ? 0 : rng.Int(tmin, tmax));
    p.leaky = rng.Bernoulli(0.5);
    p.lrelu_mult = EdgeOrRandom(rng, {0, 1, 2047}, 0, 2047);
    p.lrelu_shift = static_cast<int32_t>(rng.Int(0, 31));
    p.lo = static_cast<int32_t>(rng.Bernoulli(0.5) ? tmin : rng.Int(tmin, tmax));
    p.hi = static_cast<int32_t>(rng.Bernoulli(0.5) ? tmax : rng.Int(p.lo, tmax));
    std::vector<int32_t> bias(kK), mult(kK), shift(kK);
    for (int64_t k = 0; k < kK; ++k) {
      bias[k] = EdgeOrRandom(rng, {0, 1, -1, kI32Min, kI32Max}, rng.Bernoulli(0.5) ? -4096 : kI32Min,
                             rng.Bernoulli(0.5) ? 4096 : kI32Max);
      mult[k] = rng.Bernoulli(0.25) ? 1 : EdgeOrRandom(rng, {0, 1, 2, 32768, 65535}, 0, 65535);
      // Every shift 0..63 appears across the iterations, in every channel position.
      shift[k] = static_cast<int32_t>((iter + k * 7) % 64);
    }
    const x86::IntPpe64 table = x86::MakeIntPpe64(bias.data(), mult.data(), shift.data(), kK, p.leaky,
                                                  p.lrelu_mult, p.lrelu_shift, p.lo, p.hi, p.out_zp);
    for (int64_t k0 = 0; k0 < kK; k0 += 16) {
      std::vector<int32_t> tile(kPix * 16);
      for (int64_t px = 0; px < kPix; ++px) {
        for (int64_t c = 0; c < 16; ++c) {
          const int64_t k = k0 + c;
          int32_t acc = EdgeOrRandom(rng, {0, 1, -1, kI32Min, kI32Max,
                                      // -bias, wrapping (bias may be INT32_MIN)
                                      static_cast<int32_t>(0u - static_cast<uint32_t>(bias[k]))},
                                     rng.Bernoulli(0.5) ? -100000 : kI32Min,
                                     rng.Bernoulli(0.5) ? 100000 : kI32Max);
          // An exact tie of the rounding: (acc + bias) * mult * (lrelu_mult on the leaky side)
          // = odd * 2^(s-1) for the shift s that applies, with mult = 1 (and lrelu_mult odd).
          if (mult[k] == 1 && rng.Bernoulli(0.5)) {
            const bool neg = rng.Bernoulli(0.5);
            const bool leaky_side = neg && p.leaky;
            const int s = shift[k] + (leaky_side ? p.lrelu_shift : 0);
            if (s >= 1 && s <= 31 && (!leaky_side || p.lrelu_mult % 2 == 1)) {
              const int64_t span = (int64_t{1} << 31) >> s;
              const int64_t q = neg ? -rng.Int(1, span) : rng.Int(0, span);  // 2q + 1 < 0 iff neg
              const int64_t a = (2 * q + 1) * (int64_t{1} << (s - 1)) - bias[k];
              if (a >= kI32Min && a <= kI32Max) {
                acc = static_cast<int32_t>(a);
                ++ties;
              }
            }
          }
          tile[px * 16 + c] = acc;
        }
      }
      const int64_t stride = kK + 3;  // the output row is wider than the block, like the kernels'
      std::vector<uint8_t> out(static_cast<size_t>(kPix * stride), 0xA5), want = out;
      // Compensation: the raw sum is acc + comp + pixel (wrapping), so the PPE must see acc.
      const bool compensate = rng.Bernoulli(0.5), with_pixel = rng.Bernoulli(0.5);
      std::vector<int32_t> comp(16, 0), raw = tile;
      std::vector<uint32_t> pixel(kPix, 0);
      if (compensate) {
        for (int32_t& c : comp) c = EdgeOrRandom(rng, {0, kI32Min, kI32Max}, kI32Min, kI32Max);
        for (uint32_t& t : pixel) t = with_pixel ? static_cast<uint32_t>(rng.Int(0, 0xFFFFFFFFll)) : 0;
        for (int64_t px = 0; px < kPix; ++px) {
          for (int64_t c = 0; c < 16; ++c) {
            raw[px * 16 + c] = static_cast<int32_t>(static_cast<uint32_t>(tile[px * 16 + c]) +
                                                    static_cast<uint32_t>(comp[c]) + pixel[px]);
          }
        }
      }
      x86::PpeIntAvx512(table, raw.data(), kPix, k0, stride, out.data(), compensate ? comp.data() : nullptr,
                        compensate && with_pixel ? pixel.data() : nullptr);
      for (int64_t px = 0; px < kPix; ++px) {
        for (int64_t c = 0; c < 16; ++c) {
          const int64_t k = k0 + c;
          want[px * stride + k] =
              static_cast<uint8_t>(PpeInt(tile[px * 16 + c], bias[k], mult[k], shift[k], p));
        }
      }
      for (size_t i = 0; i < out.size(); ++i) {
        const int64_t px = static_cast<int64_t>(i) / stride, k = static_cast<int64_t>(i) % stride;
        if (out[i] != want[i]) {
          const bool in_block = k >= k0 && k < k0 + 16;
          FAIL() << "pixel " << px << " channel " << k << (in_block ? "" : " (outside the block)")
                 << ": got " << int{out[i]} << ", PpeInt gives " << int{want[i]}
                 << (in_block ? " for acc=" + std::to_string(tile[px * 16 + k - k0]) +
                                    " bias=" + std::to_string(bias[k]) + " mult=" + std::to_string(mult[k]) +
                                    " shift=" + std::to_string(shift[k])
                              : std::string())
                 << " leaky=" << p.leaky << " lrelu_mult=" << p.lrelu_mult << " lrelu_shift=" << p.lrelu_shift
                 << " zp=" << p.out_zp << " lo=" << p.lo << " hi=" << p.hi;
        }
      }
      checked += kPix * 16;
    }
  }
  EXPECT_GT(ties, 10000);
  std::printf("checked %lld outputs, %lld exact ties\n", static_cast<long long>(checked),
              static_cast<long long>(ties));
}

}  // namespace
}  // namespace dpuemu
