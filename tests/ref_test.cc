// Tests of the reference DPU: on generated layers and on hand-built corner cases, its output under
// every storage (dense/sparse weights, dense/sparse input with or without an SE table, dense/sparse
// output) must be byte-identical to the independent textbook convolution; malformed tasks must be
// rejected with a message naming the field, and the task must never change.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "hw/se_ops.h"
#include "hw/target.h"
#include "kernels/ref/nce_ref.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

namespace dpuemu {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();

std::string Describe(const StorageOptions& o) {
  return std::string("weights ") + (o.weights_sparse ? "sparse" : "dense") + ", input " +
         (o.input_sparse ? "sparse" : "dense") + (o.input_se_table ? " via SE table" : "") +
         " (se " + std::to_string(o.input_se_size) + "), output " +
         (o.output_sparse ? "sparse" : "dense") + " (se " + std::to_string(o.output_se_size) + ")";
}

// Storage-element sizes the target accepts that divide `channels`.
std::vector<int64_t> SeSizes(const Target& t, int64_t channels) {
  std::vector<int64_t> sizes;
  for (int64_t s = 16; s <= channels; s += 16) {
    if (channels % s == 0 && CheckSeSize(t, s, "se_size").ok()) sizes.push_back(s);
  }
  return sizes;
}

// All 16 combinations of dense/sparse weights, input, SE table and output (the i32 output has no
// sparse storage); SE sizes drawn from the target's legal ones, or 0 for the lowering's default.
std::vector<StorageOptions> AllStorages(const NceOp& op, const Target& t, Rng& rng) {
  const NceGeometry& g = op.g;
  const std::vector<int64_t> in_sizes = SeSizes(t, g.c), out_sizes = SeSizes(t, g.k);
  auto pick = [&rng](const std::vector<int64_t>& sizes) -> int64_t {
    const size_t i = static_cast<size_t>(rng.Int(0, static_cast<int64_t>(sizes.size())));
    return i == sizes.size() ? 0 : sizes[i];
  };
  std::vector<StorageOptions> all;
  for (int bits = 0; bits < 16; ++bits) {
    StorageOptions o;
    o.weights_sparse = bits & 1;
    o.input_sparse = bits & 2;
    o.input_se_table = bits & 4;
    o.output_sparse = bits & 8;
    if (o.output_sparse && op.out_dtype == DType::kI32) continue;
    if (o.weights_sparse && IsSubByte(op.w_dtype)) continue;  // int4 weights are never sparse
    o.input_se_size = pick(in_sizes);
    o.output_se_size = pick(out_sizes);
    all.push_back(o);
  }
  return all;
}

// First element whose sparse-output map bit disagrees with "differs from the zero point", or "".
std::string MapMismatch(const DpuOutput& out, const Tensor& expected, int32_t zp) {
  for (int64_t i = 0; i < expected.numel(); ++i) {
    const bool present = !IsZeroPoint(expected.dtype, expected.bytes.data(), i, zp);
    if (MapBit(out.map.data(), i) != present) {
      return "output map bit " + std::to_string(i) + " is " + (present ? "0" : "1");
    }
  }
  return "";
}

// The reference on `layer` under every storage on `t` equals the textbook (which skips +0.0
// weights exactly when they are stored sparse).
void ExpectMatchesTextbook(const NceLayer& layer, const Target& t, Rng& rng) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor dense_expected, TextbookConv(layer, false));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor sparse_expected, TextbookConv(layer, true));
  for (const StorageOptions& opts : AllStorages(layer.op, t, rng)) {
    SCOPED_TRACE(std::string(t.name) + ", " + Describe(opts));
    const Tensor& expected = opts.weights_sparse ? sparse_expected : dense_expected;
    // Pads beyond kernel / 2 run as one invocation reading the excess through an SE pad gather.
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayerForDpu(layer, opts, t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput out, RunReference(task, t));
    ASSERT_EQ(out.sparse(), opts.output_sparse);
    if (out.sparse()) {
      ASSERT_EQ(MapMismatch(out, expected, layer.op.ppe.out_zp), "");
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor got, DenseOutput(out, layer.op.ppe.out_zp));
    ASSERT_EQ(FirstDifference(got, expected), "");
  }
}

// The reference's dense output for one storage.
StatusOr<Tensor> RunLowered(const NceLayer& layer, const StorageOptions& opts, const Target& t) {
  DpuTask task;
  DPUEMU_ASSIGN_OR_RETURN(task, LowerLayer(layer, opts, t));
  DpuOutput out;
  DPUEMU_ASSIGN_OR_RETURN(out, RunReference(task, t));
  return DenseOutput(out, layer.op.ppe.out_zp);
}

// Sets a fraction of the elements to the zero point (so they are absent when stored sparse).
void SetToZeroPoint(Tensor& t, int32_t zp, double fraction, Rng& rng) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!rng.Bernoulli(fraction)) continue;
    if (IsFloat(t.dtype)) {
      StoreFloat(t.dtype, t.bytes.data(), i, 0.0f);
    } else {
      StoreInt(t.dtype, t.bytes.data(), i, zp);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Generated layers

struct DTypes {
  DType in, w, out;
};

const std::vector<DTypes>& AllDTypes() {
  static const std::vector<DTypes> all = [] {
    std::vector<DTypes> v;
    for (DType in : {DType::kU8, DType::kI8}) {
      for (DType w : {DType::kI8, DType::kU8}) {
        for (DType out : {DType::kU8, DType::kI8, DType::kI32}) v.push_back({in, w, out});
      }
      for (DType w : {DType::kI4, DType::kU4}) v.push_back({in, w, DType::kU8});
    }
    for (DType f : {DType::kFP16, DType::kBF16}) {
      for (DType out : {DType::kFP16, DType::kBF16, DType::kFP32}) v.push_back({f, f, out});
      // Weight-only quantisation: integer weights in the fp32 MAC.
      for (DType w : {DType::kI8, DType::kU8, DType::kI4, DType::kU4}) v.push_back({f, w, DType::kFP16});
    }
    return v;
  }();
  return all;
}

template <typename T, size_t N>
T Pick(Rng& rng, const T (&options)[N]) {
  return options[rng.Int(0, N - 1)];
}

// fp16/bf16 bit patterns of +inf, -inf, NaN, -0.0, the largest finite value, the smallest
// subnormal.
uint16_t SpecialFloat(DType t, int which) {
  static const uint16_t kFp16[] = {0x7C00, 0xFC00, 0x7E00, 0x8000, 0x7BFF, 0x0001};
  static const uint16_t kBf16[] = {0x7F80, 0xFF80, 0x7FC0, 0x8000, 0x7F7F, 0x0001};
  return t == DType::kFP16 ? kFp16[which] : kBf16[which];
}

// Keeps each reference run tiny: the reference is scalar and each case runs 16 storages.
constexpr int64_t kMaxMacs = 64 * 1024;

// One generated case. Everything, the dtypes and the target included, follows from the seed, so
// DPUEMU_SEED=<seed> re-runs exactly the failing case.
struct GeneratedCase {
  NceLayer layer;
  const Target* target = nullptr;
};

StatusOr<GeneratedCase> MakeCase(uint64_t seed) {
  const std::vector<DTypes>& dtypes = AllDTypes();
  const DTypes& d = dtypes[seed % dtypes.size()];
  GeneratedCase gc;
  gc.target = AllTargets()[(seed / dtypes.size()) % AllTargets().size()];
  Rng rng(seed);

  static const int64_t kKernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {1, 3},   {3, 1},
                                        {2, 2}, {1, 5}, {7, 7}, {11, 11}, {4, 1}};
  static const int64_t kSides[] = {1, 2, 3, 5, 7, 13};
  static const int64_t kChannels[] = {16, 32, 48, 80};
  static const int64_t kStrides[] = {1, 1, 2, 3, 4, 8};
  static const double kSparsity[] = {0.0, 0.5, 0.9, 1.0};
  NceGeometry g;
  // The kernel first, so that large kernels are as common as small ones; the rest is redrawn
  // until the case is small enough.
  const auto& kernel = kKernels[rng.Int(0, 9)];
  g.ky = kernel[0];
  g.kx = kernel[1];
  do {
    g.h = Pick(rng, kSides);
    g.w = Pick(rng, kSides);
    g.c = Pick(rng, kChannels);
    g.k = Pick(rng, kChannels);
    g.stride_y = Pick(rng, kStrides);
    g.stride_x = Pick(rng, kStrides);
    // Asymmetric padding, up to a whole kernel (rows of padding only) on a side.
    g.pad_top = rng.Int(0, g.ky);
    g.pad_bottom = rng.Int(0, g.ky);
    g.pad_left = rng.Int(0, g.kx);
    g.pad_right = rng.Int(0, g.kx);
    g.pad_bottom = std::max(g.pad_bottom, g.ky - g.h - g.pad_top);
    g.pad_right = std::max(g.pad_right, g.kx - g.w - g.pad_left);
  } while (g.dense_macs() > kMaxMacs);

  LayerSpec spec;
  spec.name = "generated";
  spec.h = g.h;
  spec.w = g.w;
  spec.c = g.c;
  spec.k = g.k;
  spec.ky = g.ky;
  spec.kx = g.kx;
  spec.pad = std::max(g.ky, g.kx);  // any valid padding; the generated one is replaced below
  spec.in_dtype = d.in;
  spec.w_dtype = d.w;
  spec.out_dtype = d.out;
  spec.weight_sparsity = Pick(rng, kSparsity);
  spec.input_sparsity = Pick(rng, kSparsity);
  spec.leaky_relu = rng.Bernoulli(0.5);
  spec.zero_points = rng.Bernoulli(0.75);
  DPUEMU_ASSIGN_OR_RETURN(gc.layer, GenerateLayer(spec, rng.Next()));
  NceOp& op = gc.layer.op;
  op.g = g;

  if (rng.Bernoulli(0.3) && d.out != DType::kI32) {
    if (IsFloat(d.out)) {
      op.ppe.clamp_lo = -rng.Uniform();  // generally not representable in fp32
      op.ppe.clamp_hi = rng.Uniform() * 1.5;
    } else {
      const int64_t tmin = DTypeMin(d.out), tmax = DTypeMax(d.out);
      op.ppe.clamp_lo = static_cast<double>(rng.Int(tmin - 20, tmax));
      op.ppe.clamp_hi =
          static_cast<double>(rng.Int(std::max<int64_t>(tmin, op.ppe.clamp_lo), tmax + 20));
    }
  }
  // Float specials: inputs of inf/NaN/-0/max/subnormal (where skipping +0.0 weights matters),
  // -0.0 weights (a stored value, never skipped) and a few +inf weights (padding * inf is NaN).
  if (IsFloat(d.in) && rng.Bernoulli(0.4)) {
    for (int64_t i = 0; i < gc.layer.input.numel(); ++i) {
      if (!rng.Bernoulli(0.02)) continue;
      const uint16_t bits = SpecialFloat(d.in, static_cast<int>(rng.Int(0, 5)));
      std::memcpy(gc.layer.input.bytes.data() + 2 * i, &bits, 2);
    }
    for (int64_t i = 0; IsFloat(d.w) && i < gc.layer.weights.numel(); ++i) {
      if (!rng.Bernoulli(0.05)) continue;
      const uint16_t bits = SpecialFloat(d.w, rng.Bernoulli(0.05) ? 0 : 3);
      std::memcpy(gc.layer.weights.bytes.data() + 2 * i, &bits, 2);
    }
  }
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(gc.layer));
  return gc;
}

TEST(RefTest, MatchesTextbookOnGeneratedLayers) {
  const uint64_t base = BaseSeed(1000);
  // Consecutive seeds walk through every dtype combination on every target, three times.
  const int cases = static_cast<int>(AllDTypes().size() * AllTargets().size() * 8);
  for (int i = 0; i < cases; ++i) {
    const uint64_t seed = base + static_cast<uint64_t>(i);
    SCOPED_TRACE(SeedTrace(seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GeneratedCase gc, MakeCase(seed));
    const NceGeometry& g = gc.layer.op.g;
    SCOPED_TRACE(std::string(DTypeName(gc.layer.op.in_dtype)) + "/" +
                 DTypeName(gc.layer.op.w_dtype) + "->" + DTypeName(gc.layer.op.out_dtype) + " h" +
                 std::to_string(g.h) + " w" + std::to_string(g.w) + " c" + std::to_string(g.c) +
                 " k" + std::to_string(g.k) + " kernel " + std::to_string(g.ky) + "x" +
                 std::to_string(g.kx) + " stride " + std::to_string(g.stride_y) + "x" +
                 std::to_string(g.stride_x));
    Rng rng(seed);
    ExpectMatchesTextbook(gc.layer, *gc.target, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(RefTest, ZeroPointsAtTypeLimits) {
  const uint64_t base = BaseSeed(2000);
  for (int i = 0; i < 24; ++i) {
    const uint64_t seed = base + static_cast<uint64_t>(i);
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    LayerSpec spec;
    spec.h = 3;
    spec.w = 5;
    spec.c = 32;
    spec.k = 16;
    spec.ky = 3;
    spec.kx = 3;
    spec.in_dtype = rng.Bernoulli(0.5) ? DType::kU8 : DType::kI8;
    spec.w_dtype = rng.Bernoulli(0.5) ? DType::kU8 : DType::kI8;
    spec.out_dtype = rng.Bernoulli(0.5) ? DType::kU8 : DType::kI8;
    spec.leaky_relu = rng.Bernoulli(0.5);
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, rng.Next()));
    NceOp& op = layer.op;
    auto limit = [&rng](DType t) {
      return static_cast<int32_t>(rng.Bernoulli(0.5) ? DTypeMin(t) : DTypeMax(t));
    };
    op.in_zp = limit(op.in_dtype);
    op.w_zp = limit(op.w_dtype);
    op.ppe.out_zp = limit(op.out_dtype);
    SetToZeroPoint(layer.input, op.in_zp, 0.5, rng);
    SetToZeroPoint(layer.weights, op.w_zp, 0.5, rng);
    ExpectMatchesTextbook(layer, *AllTargets()[seed % AllTargets().size()], rng);
    if (HasFatalFailure()) return;
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-built layers: one pixel, 1x1 kernel, C = K = 16, every element at zero point 0 unless set.

NceLayer PointLayer(DType in, DType w, DType out, int64_t width = 1) {
  NceLayer l;
  l.name = "point";
  NceGeometry& g = l.op.g;
  g.h = 1;
  g.w = width;
  g.c = 16;
  g.k = 16;
  l.op.in_dtype = in;
  l.op.w_dtype = w;
  l.op.out_dtype = out;
  l.input = Tensor(in, {g.h, g.w, g.c});
  l.weights = Tensor(w, {g.k, g.ky, g.kx, g.c});
  if (IsIntegerPath(l.op)) {
    l.quant.mult.assign(16, 1);
    l.quant.shift.assign(16, 0);
    l.quant.bias.assign(16, 0);
  } else {
    l.quant.scale.assign(16, 1.0f);
    l.quant.fbias.assign(16, 0.0f);
  }
  return l;
}

// An integer channel whose accumulator is `acc` (input channel 0 is 1, its weight is acc).
struct IntChannel {
  int32_t acc, bias, mult, shift;
  int32_t expected;  // output value, worked out by hand
};

// Builds a u8 x i8 point layer from up to 16 channels and checks the textbook and, under every
// storage on both targets, the reference against the hand-worked values.
void ExpectIntChannels(NceOp op, const std::vector<IntChannel>& channels) {
  NceLayer layer = PointLayer(DType::kU8, DType::kI8, op.out_dtype);
  layer.op.ppe = op.ppe;
  Tensor expected(op.out_dtype, {1, 1, 16});
  StoreInt(DType::kU8, layer.input.bytes.data(), 0, 1);
  for (size_t k = 0; k < 16; ++k) {
    // Channels not listed: zero accumulator, mult 0 -> the output zero point (clamped).
    const IntChannel ch = k < channels.size() ? channels[k] : IntChannel{0, 0, 0, 0, 0};
    ASSERT_GE(ch.acc, -128);
    ASSERT_LE(ch.acc, 127);
    StoreInt(DType::kI8, layer.weights.bytes.data(), static_cast<int64_t>(k * 16), ch.acc);
    layer.quant.bias[k] = ch.bias;
    layer.quant.mult[k] = ch.mult;
    layer.quant.shift[k] = ch.shift;
    const int32_t value =
        k < channels.size()
            ? ch.expected
            : static_cast<int32_t>(std::max<double>(
                  op.ppe.clamp_lo, std::min<double>(op.ppe.clamp_hi, op.ppe.out_zp)));
    StoreInt(op.out_dtype, expected.bytes.data(), static_cast<int64_t>(k), value);
  }
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor textbook, TextbookConv(layer, false));
  ASSERT_EQ(FirstDifference(textbook, expected), "") << "textbook vs hand-worked values";
  Rng rng(7);
  for (const Target* t : AllTargets()) ExpectMatchesTextbook(layer, *t, rng);
}

TEST(RefTest, RoundingTiesGoToEven) {
  NceOp op;
  op.out_dtype = DType::kI8;
  op.ppe.out_zp = 10;
  const int32_t t24 = 1 << 24;
  const std::vector<IntChannel> channels = {
      {5, 0, 1, 1, 2 + 10},                    // 2.5 -> 2
      {7, 0, 1, 1, 4 + 10},                    // 3.5 -> 4
      {-5, 0, 1, 1, -2 + 10},                  // -2.5 -> -2
      {-7, 0, 1, 1, -4 + 10},                  // -3.5 -> -4
      {3, 2, 3, 1, 8 + 10},                    // 15 / 2 = 7.5 -> 8
      {1, 0, 3 << 9, 10, 2 + 10},              // 1.5 -> 2
      {1, 4, 1 << 15, 16, 2 + 10},             // 5 * 2^15 / 2^16 = 2.5 -> 2
      {-1, -4, 1 << 15, 16, -2 + 10},          // -2.5 -> -2
      {127, 0, 1, 1, 64 + 10},                 // 63.5 -> 64
      {-127, 0, 1, 1, -64 + 10},               // -63.5 -> -64
      {1, 7 * t24 - 1, 1 << 15, 40, 4 + 10},   // 7 * 2^39 / 2^40 = 3.5 -> 4
      {-1, 5 * t24 + 1, 1 << 15, 40, 2 + 10},  // 2.5 -> 2
      {0, -5 * t24, 1 << 15, 40, -2 + 10},     // -2.5 -> -2
      {0, -7 * t24, 1 << 15, 40, -4 + 10},     // -3.5 -> -4
      {1, 5 * t24, 1 << 15, 40, 3 + 10},       // just above 2.5 -> 3
      {-1, 7 * t24, 1 << 15, 40, 3 + 10},      // just below 3.5 -> 3
  };
  ExpectIntChannels(op, channels);
}

TEST(RefTest, LeakyReluScalesNegativesOnly) {
  NceOp op;
  op.out_dtype = DType::kU8;
  op.ppe.out_zp = 128;
  op.ppe.leaky_relu = true;
  op.ppe.lrelu_mult = 3;
  op.ppe.lrelu_shift = 2;
  const std::vector<IntChannel> channels = {
      {-40, 0, 1, 0, 128 - 30},   // -40 * 3 / 4
      {40, 0, 1, 0, 128 + 40},    // positives untouched
      {-2, 0, 1, 0, 128 - 2},     // -6 / 4 = -1.5 -> -2
      {-10, 0, 1, 0, 128 - 8},    // -30 / 4 = -7.5 -> -8
      {-1, 0, 1, 3, 128},         // -3 / 2^5 -> 0
      {-100, 0, 2, 1, 128 - 75},  // -200 * 3 / 2^3
      {0, 0, 1, 0, 128},          // zero is not negative
      {1, -1, 7, 0, 128},         // acc + bias = 0
      {-128, -1000, 1, 0, 0},     // -1128 * 3 / 4 = -846, clamped to u8
      {-1, 0, 0, 0, 128},         // mult 0: v = 0 is not negative
  };
  ExpectIntChannels(op, channels);
}

TEST(RefTest, LeakyReluExtremeSettings) {
  NceOp op;
  op.out_dtype = DType::kU8;
  op.ppe.out_zp = 128;
  op.ppe.leaky_relu = true;
  op.ppe.lrelu_mult = 0;
  op.ppe.lrelu_shift = 5;
  ExpectIntChannels(
      op, {{-100, 0, 1, 0, 128}, {100, 0, 1, 0, 228}, {-128, kI32Min + 128, 65535, 63, 128}});
  op.ppe.lrelu_mult = 2047;
  op.ppe.lrelu_shift = 31;
  const std::vector<IntChannel> channels = {
      {-128, -(1 << 20) + 128, 1, 0, 127},  // -2^20 * 2047 / 2^31 = -0.9995 -> -1
      {-1, 0, 1, 0, 128},                   // -2047 / 2^31 -> 0
      {-1, -(1 << 20) + 1, 1, 1, 128},      // -2^20 * 2047 / 2^32 = -0.4998 -> 0
      {-128, kI32Min, 65535, 63, 128},      // shift 63 + 31 = 94
      {-128, kI32Min + 128, 65535, 0, 0},   // most negative product, clamped
      {100, 0, 1, 0, 228},
  };
  ExpectIntChannels(op, channels);
}

TEST(RefTest, ShiftExtremesMultZeroAndTypeClamp) {
  NceOp op;
  op.out_dtype = DType::kI8;
  op.ppe.out_zp = -5;
  const std::vector<IntChannel> channels = {
      {10, -3, 2, 0, 14 - 5},         // shift 0 is exact
      {127, kI32Max, 65535, 63, -5},  // (2^31 + 126) * 65535 / 2^63 -> 0
      {-128, kI32Min, 65535, 63, -5},
      {100, 1000000, 0, 0, -5},  // mult 0
      {127, 1000, 1, 0, 127},    // clamped to the type
      {-128, -1000, 1, 0, -128},
      {127, kI32Max, 1, 24, 123},    // acc + bias = 2^31 + 126 does not wrap: 128 - 5
      {-128, kI32Min, 1, 24, -128},  // -128.00001 -> -128 - 5, clamped
      {127, 0, 65535, 0, 127},
      {-7, 0, 65535, 62, -5},  // tiny negative -> 0
      {3, 0, 1, 0, -2},
  };
  ExpectIntChannels(op, channels);
  op.out_dtype = DType::kU8;
  op.ppe.out_zp = 255;
  ExpectIntChannels(op, {{1, 0, 1, 0, 255}, {-1, 0, 1, 0, 254}, {-128, -200, 1, 0, 0}});
}

TEST(RefTest, UserClampInsideTheType) {
  NceOp op;
  op.out_dtype = DType::kU8;
  op.ppe.out_zp = 100;
  op.ppe.clamp_lo = 90;
  op.ppe.clamp_hi = 200;
  ExpectIntChannels(
      op, {{0, 0, 0, 0, 100}, {-20, 0, 1, 0, 90}, {120, 0, 1, 0, 200}, {50, 0, 1, 0, 150}});
  op.out_dtype = DType::kI8;
  op.ppe.out_zp = 0;
  op.ppe.clamp_lo = -1000;  // wider than the type: the type wins
  op.ppe.clamp_hi = 1000;
  ExpectIntChannels(op, {{127, 127, 1, 0, 127}, {-128, -128, 1, 0, -128}, {3, 0, 1, 0, 3}});
  op.ppe.clamp_lo = 7;
  op.ppe.clamp_hi = 7;
  ExpectIntChannels(op, {{127, 127, 1, 0, 7}, {-128, -128, 1, 0, 7}});
}

// A channel whose weights all equal the zero point has an empty compressed run; its output is the
// PPE of the bias alone, at every pixel.
TEST(RefTest, AllZeroPointWeightChannel) {
  const uint64_t seed = BaseSeed(3000);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  for (DType in : {DType::kU8, DType::kFP16}) {
    LayerSpec spec;
    spec.h = 5;
    spec.w = 5;
    spec.c = 32;
    spec.k = 32;
    spec.ky = 3;
    spec.kx = 3;
    spec.in_dtype = in;
    spec.w_dtype = in == DType::kU8 ? DType::kU8 : DType::kFP16;
    spec.out_dtype = in == DType::kU8 ? DType::kU8 : DType::kFP16;
    spec.weight_sparsity = 0.5;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, rng.Next()));
    const NceOp& op = layer.op;
    constexpr int64_t kChannel = 5;
    const int64_t taps = op.g.taps();
    for (int64_t t = 0; t < taps; ++t) {
      if (IsFloat(in)) {
        StoreFloat(op.w_dtype, layer.weights.bytes.data(), kChannel * taps + t, 0.0f);
      } else {
        StoreInt(op.w_dtype, layer.weights.bytes.data(), kChannel * taps + t, op.w_zp);
      }
    }
    // bias * mult < 2^47 is exact in double, and nearbyint rounds ties to even.
    const double bias_only =
        IsFloat(in)
            ? static_cast<double>(HalfToFloat(FloatToHalf(layer.quant.fbias[kChannel] * layer.quant.scale[kChannel])))
            : std::min(255.0,
                       std::max(0.0, std::nearbyint(std::ldexp(double(layer.quant.bias[kChannel]) *
                                                                   layer.quant.mult[kChannel],
                                                               -layer.quant.shift[kChannel])) +
                                         op.ppe.out_zp));
    for (bool sparse : {false, true}) {
      StorageOptions opts;
      opts.weights_sparse = sparse;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor out,
                                  RunLowered(layer, opts, GetTarget(TargetId::kNPU40XX)));
      for (int64_t p = 0; p < op.g.out_h() * op.g.out_w(); ++p) {
        const int64_t i = p * op.g.k + kChannel;
        const double got = IsFloat(in) ? LoadFloat(op.out_dtype, out.bytes.data(), i)
                                       : LoadInt(op.out_dtype, out.bytes.data(), i);
        ASSERT_EQ(got, bias_only) << "pixel " << p
                                  << (sparse ? ", sparse weights" : ", dense weights");
      }
    }
    for (const Target* t : AllTargets()) ExpectMatchesTextbook(layer, *t, rng);
  }
}

// Float accumulation skips a weight only when the DPU does no work for it: an absent (+0.0)
// weight of a sparse layer. Dense, +inf * +0.0 is NaN; -0.0 is a stored weight in both.
TEST(RefTest, FloatZeroWeightSkipAndNegativeZero) {
  for (const DTypes d : {DTypes{DType::kFP16, DType::kFP16, DType::kFP16},
                         DTypes{DType::kBF16, DType::kBF16, DType::kFP32}}) {
    SCOPED_TRACE(std::string(DTypeName(d.in)) + " -> " + DTypeName(d.out));
    NceLayer layer = PointLayer(d.in, d.w, d.out, /*width=*/2);
    auto x = [&](int64_t pixel, int64_t c, float v) {
      StoreFloat(d.in, layer.input.bytes.data(), pixel * 16 + c, v);
    };
    auto w = [&](int64_t k, int64_t c, float v) {
      StoreFloat(d.w, layer.weights.bytes.data(), k * 16 + c, v);
    };
    const float inf = std::numeric_limits<float>::infinity();
    x(0, 0, inf);
    x(0, 1, 1.0f);
    x(1, 0, -1.0f);
    x(1, 1, 1.0f);
    w(0, 1, 2.0f);   // channel 0: +0.0 against the inf
    w(1, 0, -0.0f);  // channel 1: -0.0 against the inf (a zero by value: absent when sparse)
    w(1, 1, 2.0f);
    w(2, 0, 1.0f);                 // channel 2: inf passes through
    layer.quant.scale[4] = -1.0f;  // channel 4: +0.0 accumulator * -1 + -0.0 = -0.0
    layer.quant.fbias[4] = -0.0f;

    for (bool sparse : {false, true}) {
      SCOPED_TRACE(sparse ? "sparse weights" : "dense weights");
      StorageOptions opts;
      opts.weights_sparse = sparse;
      opts.output_sparse = sparse;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor out,
                                  RunLowered(layer, opts, GetTarget(TargetId::kNPU40XX)));
      auto y = [&](int64_t pixel, int64_t k) {
        return LoadFloat(d.out, out.bytes.data(), pixel * 16 + k);
      };
      if (sparse) {
        EXPECT_EQ(y(0, 0), 2.0f);
        EXPECT_EQ(y(0, 1), 2.0f);  // -0.0 was dropped with the zeros (sparsify.cpp)
        EXPECT_EQ(FloatBits(y(0, 3)), 0u);
        EXPECT_EQ(FloatBits(y(0, 4)), 0x80000000u);
      } else {
        EXPECT_TRUE(std::isnan(y(0, 0)));
        EXPECT_TRUE(std::isnan(y(0, 1)));
        EXPECT_TRUE(std::isnan(y(0, 3)));
        EXPECT_TRUE(std::isnan(y(0, 4)));
      }
      // fp16 outputs saturate (the PPE's fp16 clamp); fp32 ones keep the infinity.
      EXPECT_EQ(y(0, 2), d.out == DType::kFP16 ? 65504.0f : inf);
      EXPECT_EQ(y(1, 0), 2.0f);
      EXPECT_EQ(y(1, 1), 2.0f);
      EXPECT_EQ(y(1, 2), -1.0f);
      EXPECT_EQ(FloatBits(y(1, 3)), 0u);
      EXPECT_EQ(FloatBits(y(1, 4)), 0x80000000u) << "the accumulator starts at +0.0";
    }
    Rng rng(11);
    for (const Target* t : AllTargets()) ExpectMatchesTextbook(layer, *t, rng);
  }
}

// A sparse output omits exactly the values equal to the output zero point.
TEST(RefTest, SparseOutputOmitsTheOutputZeroPoint) {
  const uint64_t seed = BaseSeed(4000);
  SCOPED_TRACE(SeedTrace(seed));
  Rng rng(seed);
  LayerSpec spec;
  spec.h = 7;
  spec.w = 7;
  spec.c = 16;
  spec.k = 32;
  spec.ky = 3;
  spec.kx = 3;
  spec.in_dtype = DType::kI8;
  spec.out_dtype = DType::kU8;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, rng.Next()));
  layer.op.ppe.out_zp = 77;
  for (size_t k = 0; k < layer.quant.mult.size(); k += 2) layer.quant.mult[k] = 0;  // outputs 77
  for (const Target* t : AllTargets()) ExpectMatchesTextbook(layer, *t, rng);

  StorageOptions opts;
  opts.output_sparse = true;
  opts.output_se_size = 16;
  const Target& t = GetTarget(TargetId::kNPU37XX);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayer(layer, opts, t));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput out, RunReference(task, t));
  ASSERT_TRUE(out.sparse());
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, TextbookConv(layer, false));
  int64_t absent = 0, zp_values = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    absent += !MapBit(out.map.data(), i);
    zp_values += LoadInt(DType::kU8, expected.bytes.data(), i) == 77;
  }
  EXPECT_EQ(absent, zp_values);
  EXPECT_GE(absent, expected.numel() / 2);
}

// The textbook itself on values worked out by hand: a 3x3 kernel with "same" padding on a 2x2
// input whose channel 0 holds 1, 2, 3, 4 (zero points non-zero, i32 output).
TEST(RefTest, TextbookHandWorked) {
  NceLayer layer;
  NceOp& op = layer.op;
  op.g.h = 2;
  op.g.w = 2;
  op.g.c = 16;
  op.g.k = 16;
  op.g.ky = 3;
  op.g.kx = 3;
  op.g.pad_top = op.g.pad_bottom = op.g.pad_left = op.g.pad_right = 1;
  op.in_dtype = DType::kU8;
  op.w_dtype = DType::kI8;
  op.out_dtype = DType::kI32;
  op.in_zp = 3;
  op.w_zp = -2;
  layer.input = Tensor(DType::kU8, {2, 2, 16});
  layer.weights = Tensor(DType::kI8, {16, 3, 3, 16});
  for (int64_t i = 0; i < layer.input.numel(); ++i) {
    StoreInt(DType::kU8, layer.input.bytes.data(), i, 3);
  }
  for (int64_t i = 0; i < layer.weights.numel(); ++i) {
    StoreInt(DType::kI8, layer.weights.bytes.data(), i, -2);
  }
  for (int64_t p = 0; p < 4; ++p) {
    StoreInt(DType::kU8, layer.input.bytes.data(), p * 16, 3 + (p + 1));
  }
  auto set_w = [&](int64_t k, int64_t ky, int64_t kx, int32_t v) {
    StoreInt(DType::kI8, layer.weights.bytes.data(), ((k * 3 + ky) * 3 + kx) * 16, v - 2);
  };
  for (int64_t ky = 0; ky < 3; ++ky) {
    for (int64_t kx = 0; kx < 3; ++kx) set_w(0, ky, kx, 1);  // sum of the window
  }
  set_w(1, 1, 1, 1);   // the centre pixel
  set_w(2, 0, 0, -3);  // -3 * the top-left neighbour
  layer.quant.mult.assign(16, 1);
  layer.quant.shift.assign(16, 0);
  layer.quant.bias.assign(16, 0);
  layer.quant.bias[3] = kI32Max;  // acc + bias wraps for i32 output
  set_w(3, 1, 1, 1);
  const int32_t want[4][3] = {{10, 1, 0}, {10, 2, 0}, {10, 3, 0}, {10, 4, -3}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor out, TextbookConv(layer, false));
  for (int64_t p = 0; p < 4; ++p) {
    for (int64_t k = 0; k < 3; ++k) {
      EXPECT_EQ(LoadInt(DType::kI32, out.bytes.data(), p * 16 + k), want[p][k]) << p << " " << k;
    }
    EXPECT_EQ(LoadInt(DType::kI32, out.bytes.data(), p * 16 + 3), kI32Min + p) << p;
  }
  Rng rng(5);
  for (const Target* t : AllTargets()) ExpectMatchesTextbook(layer, *t, rng);
}

// ---------------------------------------------------------------------------------------------
// Malformed tasks

// Every field of a task as bytes, to check that RunReference leaves the task alone.
std::string Fingerprint(const DpuTask& t) {
  const NceOp& op = t.op;
  const NceGeometry& g = op.g;
  char regs[512];
  std::snprintf(regs, sizeof(regs),
                "%lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld "
                "%d %d %d %d %d %d %d %d %d %a %a %lld %d %lld|",
                (long long)g.h, (long long)g.w, (long long)g.c, (long long)g.k, (long long)g.ky,
                (long long)g.kx, (long long)g.stride_y, (long long)g.stride_x, (long long)g.pad_top,
                (long long)g.pad_bottom, (long long)g.pad_left, (long long)g.pad_right,
                int(op.in_dtype), int(op.w_dtype), int(op.out_dtype), op.in_zp, op.w_zp,
                op.ppe.out_zp, int(op.ppe.leaky_relu), op.ppe.lrelu_mult, op.ppe.lrelu_shift,
                op.ppe.clamp_lo, op.ppe.clamp_hi, (long long)t.input_se_size, int(t.output_sparse),
                (long long)t.output_se_size);
  std::string s = regs;
  auto add = [&s](const void* data, size_t bytes) {
    s += std::to_string(bytes) + ":";
    s.append(static_cast<const char*>(data), bytes);
  };
  add(t.weights.data(), t.weights.size());
  add(t.weight_map.data(), t.weight_map.size());
  add(t.weight_table.data(), t.weight_table.size());
  for (const auto& tile : t.input_tiles) add(tile.data(), tile.size());
  add(t.input_map.data(), t.input_map.size());
  add(t.se_table.data(), t.se_table.size() * sizeof(int32_t));
  return s;
}

TEST(RefTest, RejectsMalformedTasksAndNeverModifiesThem) {
  // 3x3x32 input and 3x3 kernel: 288 bits per map, so both kinds of map have padding bits.
  LayerSpec spec;
  spec.h = 3;
  spec.w = 3;
  spec.c = 32;
  spec.k = 16;
  spec.ky = 3;
  spec.kx = 3;
  spec.weight_sparsity = 0.5;
  spec.input_sparsity = 0.5;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 42));
  const Target& t = GetTarget(TargetId::kNPU40XX);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask dense, LowerLayer(layer, StorageOptions{}, t));
  StorageOptions sparse_opts;
  sparse_opts.weights_sparse = true;
  sparse_opts.input_se_table = true;
  sparse_opts.input_se_size = 32;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask sparse, LowerLayer(layer, sparse_opts, t));
  StorageOptions map_opts;
  map_opts.input_sparse = true;
  map_opts.input_se_size = 16;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask mapped, LowerLayer(layer, map_opts, t));
  const int64_t tile_bytes = static_cast<int64_t>(sparse.input_tiles[0].size());

  struct Malformed {
    const char* what;
    const DpuTask* base;
    std::function<void(DpuTask&)> mutate;
    const char* message;  // a part of the expected error message
  };
  const Malformed cases[] = {
      {"weight map with a dense table", &dense,
       [](DpuTask& k) { k.weight_map.assign(static_cast<size_t>(WeightMapBytes(k.op.g)), 0xFF); },
       "sparsity_ptr: 0xFFFFFF (dense) but a weight map is given"},
      {"sparse table without a map", &sparse, [](DpuTask& k) { k.weight_map.clear(); },
       "sparsity_ptr: set but no weight map is given"},
      {"table one entry short", &dense,
       [](DpuTask& k) { k.weight_table.resize(k.weight_table.size() - 16); },
       "weight_table: 240 bytes, expected 16 per output channel = 256"},
      {"table one byte long", &sparse, [](DpuTask& k) { k.weight_table.push_back(0); },
       "weight_table: 257 bytes"},
      {"misaligned weight pointer", &dense, [](DpuTask& k) { k.weight_table[16] |= 4; },
       "weight_table[1].weight_ptr = "},
      {"dense weights truncated", &dense, [](DpuTask& k) { k.weights.pop_back(); },
       "weight_table[15].weight_ptr"},
      {"compressed weights truncated", &sparse,
       [](DpuTask& k) { k.weights.resize(k.weights.size() - 16); }, ".weight_ptr = "},
      {"weight map truncated", &sparse,
       [](DpuTask& k) { k.weight_map.resize(k.weight_map.size() - 16); },
       "weight_table[15].sparsity_ptr"},
      {"weight map padding bit", &sparse,
       [](DpuTask& k) { k.weight_map[WeightMapBytesPerChannel(k.op.g) - 1] |= 0x80; },
       "weight_table[0]: sparsity map padding bit"},
      {"SE entry past the tile", &sparse,
       [tile_bytes](DpuTask& k) { k.se_table.back() = EncodeSePointer(tile_bytes, 0).value(); },
       "is outside tile 0"},
      {"SE entry straddling the tile end", &sparse,
       [tile_bytes](DpuTask& k) { k.se_table[0] = EncodeSePointer(tile_bytes - 16, 0).value(); },
       "se_table[0]: DATA_PTR offset"},
      {"SE entry in a missing tile", &sparse,
       [](DpuTask& k) { k.se_table[2] = EncodeSePointer(0, 1).value(); },
       "se_table[2]: BASE_PTR = 1 is beyond the tile count 1"},
      {"SE entry with unused bits", &sparse, [](DpuTask& k) { k.se_table[1] |= 1 << 29; },
       "se_table[1] = "},
      {"SE table one entry short", &sparse, [](DpuTask& k) { k.se_table.pop_back(); },
       "se_table: 8 entries, expected"},
      {"SE table without a map", &sparse, [](DpuTask& k) { k.input_map.clear(); },
       "SE pointers need the sparse storage format"},
      {"input map one byte long", &mapped, [](DpuTask& k) { k.input_map.push_back(0); },
       "activations.map: 49 bytes, expected 48"},
      {"input map padding bit", &mapped, [](DpuTask& k) { k.input_map.back() |= 0x80; },
       "activations.map: padding bit"},
      {"dense input truncated", &dense, [](DpuTask& k) { k.input_tiles[0].pop_back(); },
       "activations: data of 287 bytes, expected 288"},
      {"no input tiles", &dense, [](DpuTask& k) { k.input_tiles.clear(); },
       "input_tiles: 0 tile buffers"},
      {"more tiles than the target", &dense,
       [](DpuTask& k) { k.input_tiles.resize(7, k.input_tiles[0]); },
       "input_tiles: 7 tile buffers, NPU40XX has 6"},
      {"input se_size not dividing C", &mapped, [](DpuTask& k) { k.input_se_size = 48; },
       "input se_size = 48: must divide C = 32"},
      {"output se_size not legal", &dense, [](DpuTask& k) { k.output_se_size = 24; },
       "output se_size = 24"},
      {"float output for integer input", &dense, [](DpuTask& k) { k.op.out_dtype = DType::kFP32; },
       "output dtype = fp32"},
      {"clamp below the output type", &dense,
       [](DpuTask& k) {
         k.op.ppe.clamp_lo = -300;
         k.op.ppe.clamp_hi = -200;
       },
       "ppe.clamp"},
      {"clamp above the output type", &dense,
       [](DpuTask& k) {
         k.op.ppe.clamp_lo = 256;
         k.op.ppe.clamp_hi = 300;
       },
       "ppe.clamp"},
      {"sparse i32 output", &dense,
       [](DpuTask& k) {
         k.op.out_dtype = DType::kI32;
         k.op.ppe.out_zp = 0;
         k.output_sparse = true;
       },
       "output_sparse: output dtype i32"},
      {"clamp on an i32 output", &dense,
       [](DpuTask& k) {
         k.op.out_dtype = DType::kI32;
         k.op.ppe.out_zp = 0;
         k.op.ppe.clamp_hi = 100;
       },
       "ppe.clamp"},
  };
  for (const Malformed& m : cases) {
    SCOPED_TRACE(m.what);
    DpuTask task = *m.base;
    m.mutate(task);
    const std::string before = Fingerprint(task);
    const StatusOr<DpuOutput> out = RunReference(task, t);
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find(m.message), std::string::npos) << out.status().ToString();
    EXPECT_EQ(Fingerprint(task), before) << "RunReference modified the task";
  }
  // Valid tasks are left alone too.
  for (const DpuTask* base : {&dense, &sparse, &mapped}) {
    const std::string before = Fingerprint(*base);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput out, RunReference(*base, t));
    EXPECT_EQ(Fingerprint(*base), before);
    (void)out;
  }
}

}  // namespace
}  // namespace dpuemu
