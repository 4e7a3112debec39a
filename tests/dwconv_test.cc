// Depthwise convolution (NCEDepthConvolution): the reference against an independent textbook
// depthwise convolution on the dense arrays, the SIMD kernel against the reference bit for bit on
// every compiled Highway target, the compiler's weight layout, and malformed ops refused.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"
#include "tests/hwy_targets.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

namespace dpuemu {
namespace {

struct Types {
  DType in, w, out;
};
// Every combination ValidateOp allows a layer with weights: integer activations with 8- or 4-bit
// integer weights; float activations with their own type or integer weights (weight-only
// quantisation).
const Types kTypes[] = {
    {DType::kU8, DType::kI8, DType::kU8},       {DType::kI8, DType::kI8, DType::kI8},
    {DType::kU8, DType::kU8, DType::kI32},      {DType::kI8, DType::kU8, DType::kU8},
    {DType::kU8, DType::kI4, DType::kU8},       {DType::kI8, DType::kU4, DType::kI32},
    {DType::kFP16, DType::kFP16, DType::kFP16}, {DType::kFP16, DType::kFP16, DType::kFP32},
    {DType::kBF16, DType::kBF16, DType::kBF16}, {DType::kBF16, DType::kBF16, DType::kFP16},
    {DType::kFP16, DType::kI8, DType::kFP16},   {DType::kBF16, DType::kU8, DType::kFP32},
    {DType::kFP16, DType::kI4, DType::kBF16},
};
constexpr int kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);

// The textbook depthwise convolution: out[oy][ox][c] from the dense NHWC input and the
// [C, KY, KX, 1] filter, no hardware format. Integer: exact int64 sum, wrapped to int32. Float:
// fp32 fmaf per tap in (ky, kx) order (the DPU's definition), padding 0. Then the textbook PPE.
Tensor TextbookDwConv(const NceLayer& layer) {
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  const bool integer = IsIntegerPath(op);
  Tensor out(op.out_dtype, {g.out_h(), g.out_w(), g.c});
  for (int64_t c = 0; c < g.c; ++c) {
    for (int64_t oy = 0; oy < g.out_h(); ++oy) {
      for (int64_t ox = 0; ox < g.out_w(); ++ox) {
        int64_t isum = 0;
        float fsum = 0.0f;
        for (int64_t ky = 0; ky < g.ky; ++ky) {
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y + ky - g.pad_top;
            const int64_t ix = ox * g.stride_x + kx - g.pad_left;
            const bool pad = iy < 0 || ix < 0 || iy >= g.h || ix >= g.w;
            const int64_t xi = pad ? 0 : (iy * g.w + ix) * g.c + c;
            const int64_t wi = (c * g.ky + ky) * g.kx + kx;
            if (integer) {
              if (pad) continue;  // x - x_zp = 0
              isum += int64_t{LoadInt(op.in_dtype, layer.input.bytes.data(), xi) - op.in_zp} *
                      (LoadInt(op.w_dtype, layer.weights.bytes.data(), wi) - op.w_zp);
            } else {
              const float x = pad ? 0.0f : LoadFloat(op.in_dtype, layer.input.bytes.data(), xi);
              const float w = IsFloat(op.w_dtype)
                                  ? LoadFloat(op.w_dtype, layer.weights.bytes.data(), wi)
                                  : float(LoadInt(op.w_dtype, layer.weights.bytes.data(), wi) - op.w_zp);
              fsum = std::fmaf(x, w, fsum);
            }
          }
        }
        const int64_t oi = (oy * g.out_w() + ox) * g.c + c;
        if (integer) {
          const int32_t acc = static_cast<int32_t>(static_cast<uint32_t>(isum));
          StoreInt(op.out_dtype, out.bytes.data(), oi,
                   TextbookPpeInt(acc, layer.quant.bias[c], layer.quant.mult[c], layer.quant.shift[c], op));
        } else {
          StoreFloat(op.out_dtype, out.bytes.data(), oi,
                     TextbookPpeFloat(fsum, layer.quant.scale[c], layer.quant.fbias[c], op));
        }
      }
    }
  }
  return out;
}

const Target& PickTarget(Rng& rng) { return rng.Bernoulli(0.5) ? Npu37() : Npu40(); }

// A generated dwconv layer: channels 16..208, kernels 1..7 (each side), strides 1..4 (each
// axis), pads 0..kernel / 2 (each side), the i-th dtype combination, sometimes leaky ReLU.
NceLayer MakeCase(Rng& rng, int type_index, uint64_t seed) {
  const Types& t = kTypes[type_index % kNumTypes];
  LayerSpec s;
  s.name = "dw";
  s.kind = NceKind::kDwConv;
  s.c = 16 * rng.Int(1, 13);
  s.ky = rng.Int(1, 7);
  s.kx = rng.Int(1, 7);
  s.h = rng.Int(s.ky, s.ky + 12);
  s.w = rng.Int(s.kx, s.kx + 12);
  s.stride = 1;
  s.pad = 0;
  s.in_dtype = t.in;
  s.w_dtype = t.w;
  s.out_dtype = t.out;
  s.input_sparsity = rng.Bernoulli(0.3) ? 0.5 : 0.0;
  s.leaky_relu = t.out != DType::kI32 && rng.Bernoulli(0.3);
  auto layer = GenerateLayer(s, seed);
  EXPECT_TRUE(layer.ok()) << layer.status().ToString();
  NceLayer l = *layer;
  NceGeometry& g = l.op.g;
  g.stride_y = rng.Int(1, 4);
  g.stride_x = rng.Int(1, 4);
  g.pad_top = rng.Int(0, g.ky / 2);
  g.pad_bottom = rng.Int(0, g.ky / 2);
  g.pad_left = rng.Int(0, g.kx / 2);
  g.pad_right = rng.Int(0, g.kx / 2);
  return l;
}

StorageOptions MakeStorage(Rng& rng, const NceLayer& l) {
  StorageOptions st;
  st.output_sparse = l.op.out_dtype != DType::kI32 && rng.Bernoulli(0.4);
  if (st.output_sparse && rng.Bernoulli(0.5)) st.output_se_size = 16;
  return st;
}

TEST(DwConvTest, ReferenceMatchesTextbook) {
  const uint64_t base = BaseSeed(13001);
  for (int i = 0; i < 40 * kNumTypes; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const NceLayer l = MakeCase(rng, i, seed);
    const Target& target = PickTarget(rng);
    const StorageOptions st = MakeStorage(rng, l);
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, st, target));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunReference(task, target));
    EXPECT_EQ(out.sparse(), st.output_sparse);
    DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor dense, DenseOutput(out, l.op.ppe.out_zp));
    const std::string diff = FirstDifference(dense, TextbookDwConv(l));
    ASSERT_EQ(diff, "") << DTypeName(l.op.in_dtype) << "/" << DTypeName(l.op.w_dtype) << "/"
                        << DTypeName(l.op.out_dtype) << " c=" << l.op.g.c;
  }
}

// Both outputs byte for byte: data and, when sparse, the map.
void ExpectSimdSameAsReference(const DpuTask& task, const Target& target) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, target));
  KernelReport rep;
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput simd, RunNce(task, target, {}, &rep));
  ASSERT_FALSE(rep.isa.empty());
  ASSERT_EQ(FirstDifference(simd.data, ref.data), "")
      << rep.isa << " (" << rep.reason << ") " << DTypeName(task.op.in_dtype) << "/"
      << DTypeName(task.op.w_dtype) << "/" << DTypeName(task.op.out_dtype);
  ASSERT_EQ(simd.map, ref.map);
}

TEST(DwConvTest, SimdMatchesReferenceOnEveryTarget) {
  const uint64_t base = BaseSeed(13501);
  ForEachHighwayTarget([&] {
    for (int i = 0; i < 12 * kNumTypes; ++i) {
      const uint64_t seed = base + i;
      SCOPED_TRACE(SeedTrace(seed));
      Rng rng(seed);
      const NceLayer l = MakeCase(rng, i, seed);
      const Target& target = PickTarget(rng);
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, MakeStorage(rng, l), target));
      ExpectSimdSameAsReference(task, target);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

// The reported ISA is the Highway target that ran (not the reference), except bf16 weights on
// targets without FMA.
TEST(DwConvTest, ReportNamesTheHighwayTarget) {
  LayerSpec s;
  s.kind = NceKind::kDwConv;
  s.h = s.w = 8;
  s.c = 32;
  s.ky = s.kx = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer l, GenerateLayer(s, 1));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, {}, Npu40()));
  KernelReport rep;
  DPUEMU_ASSERT_OK(RunNce(task, Npu40(), {}, &rep).status());
  EXPECT_NE(rep.isa, "reference") << rep.reason;
  EXPECT_TRUE(Contains(rep.reason, "dwconv")) << rep.reason;
}

// inf, NaN and -0.0 in float inputs and weights: the SIMD kernel does the same products.
TEST(DwConvTest, SpecialFloatValuesMatchOnEveryTarget) {
  const uint64_t base = BaseSeed(13701);
  ForEachHighwayTarget([&] {
    for (int i = 0; i < 24; ++i) {
      const uint64_t seed = base + i;
      SCOPED_TRACE(SeedTrace(seed));
      Rng rng(seed);
      NceLayer l = MakeCase(rng, 6 + i % 7, seed);  // the float combinations
      ASSERT_TRUE(IsFloat(l.op.in_dtype));
      const float specials[] = {std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::quiet_NaN(), -0.0f, 65504.0f, 6e-8f};
      for (int j = 0; j < 6; ++j) {
        StoreFloat(l.op.in_dtype, l.input.bytes.data(), rng.Int(0, l.input.numel() - 1),
                   specials[rng.Int(0, 5)]);
        if (IsFloat(l.op.w_dtype)) {
          StoreFloat(l.op.w_dtype, l.weights.bytes.data(), rng.Int(0, l.weights.numel() - 1),
                     specials[rng.Int(0, 5)]);
        }
      }
      const Target& target = PickTarget(rng);
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, MakeStorage(rng, l), target));
      ExpectSimdSameAsReference(task, target);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

// The integer PPE's rounding: mult 1 with shifts 1..4 makes many exact halves (ties to even), and
// large mults with large shifts put products near halves; biases below 2^23 take the kernel's
// fp32 PPE, one bias of 2^23 (or leaky ReLU) the double one. Every target, both outputs.
TEST(DwConvTest, IntegerPpeRoundingMatchesOnEveryTarget) {
  const uint64_t base = BaseSeed(13901);
  ForEachHighwayTarget([&] {
    for (int i = 0; i < 24; ++i) {
      const uint64_t seed = base + i;
      SCOPED_TRACE(SeedTrace(seed));
      Rng rng(seed);
      NceLayer l = MakeCase(rng, i % 2 ? 0 : 1, seed);  // u8/i8 -> u8, i8/i8 -> i8
      for (int64_t c = 0; c < l.op.g.c; ++c) {
        if (rng.Bernoulli(0.5)) {
          l.quant.mult[c] = 1;
          l.quant.shift[c] = static_cast<int32_t>(rng.Int(1, 4));
          l.quant.bias[c] = static_cast<int32_t>(rng.Int(-200, 200));
        } else {
          l.quant.mult[c] = static_cast<int32_t>(rng.Int(1, 65535));
          l.quant.shift[c] = static_cast<int32_t>(rng.Int(14, 40));
          l.quant.bias[c] = static_cast<int32_t>(rng.Int(-(1 << 22), 1 << 22));
        }
      }
      if (i % 3 == 1) l.quant.bias[rng.Int(0, l.op.g.c - 1)] = (i % 2 ? 1 : -1) * (1 << 23);
      if (i % 3 == 2) l.quant.bias[rng.Int(0, l.op.g.c - 1)] = (1 << 23) - 1;
      const Target& target = PickTarget(rng);
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, MakeStorage(rng, l), target));
      ExpectSimdSameAsReference(task, target);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

// Products whose fp32 rounding lands exactly on a half-integer while the exact value is just
// off it: the kernel's fp32 PPE must not round them as ties. Weights at their zero point make
// acc = 0, so y = bias * mult * 2^-24 (found by search): 37.4999996 -> 37, 60.5000014 -> 61,
// 37.5000017 -> 38, 60.4999999 -> 60.
TEST(DwConvTest, NearTiesOfTheIntegerPpeOnEveryTarget) {
  LayerSpec s;
  s.kind = NceKind::kDwConv;
  s.h = s.w = 4;
  s.c = 16;
  s.ky = s.kx = 3;
  s.zero_points = false;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer l, GenerateLayer(s, 2));
  for (int64_t i = 0; i < l.weights.numel(); ++i) StoreInt(l.op.w_dtype, l.weights.bytes.data(), i, l.op.w_zp);
  const int32_t bias[] = {9702, 15748, 9644, 15597}, mult[] = {64847, 64454, 65237, 65078};
  const int32_t want[] = {37, 61, 38, 60};
  for (int64_t c = 0; c < 16; ++c) {
    l.quant.bias[c] = bias[c % 4];
    l.quant.mult[c] = mult[c % 4];
    l.quant.shift[c] = 24;
  }
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, {}, Npu40()));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, Npu40()));
  for (int64_t i = 0; i < ref.data.numel(); ++i) ASSERT_EQ(ref.data.bytes[i], want[i % 16 % 4]) << i;
  ForEachHighwayTarget([&] { ExpectSimdSameAsReference(task, Npu40()); });
}

// The MobileNetV2 shapes of the benchmark, int8 and fp16, both targets.
TEST(DwConvTest, MobileNetLayersMatchReference) {
  for (const auto& [hw, c, stride] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {112, 96, 2}, {56, 144, 1}}) {
    for (DType t : {DType::kU8, DType::kFP16}) {
      LayerSpec s;
      s.kind = NceKind::kDwConv;
      s.h = s.w = hw;
      s.c = c;
      s.ky = s.kx = 3;
      s.stride = stride;
      s.in_dtype = t;
      s.w_dtype = t == DType::kU8 ? DType::kI8 : t;
      s.out_dtype = t;
      DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer l, GenerateLayer(s, 5));
      for (const Target* target : {&Npu37(), &Npu40()}) {
        DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, {}, *target));
        ExpectSimdSameAsReference(task, *target);
        DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, *target));
        EXPECT_EQ(FirstDifference(ref.data, TextbookDwConv(l)), "");
      }
    }
  }
}

// The weight buffer and table as the compiler lays them out (alignDepthWiseWeightsTensor,
// getWeightPtrStep): per channel KY*KX taps padded to max(128 / bits, 16) elements.
TEST(DwConvTest, WeightLayoutIsTheCompilers) {
  struct Case {
    DType in, w;
    int64_t ky, kx, set_bytes;
  } cases[] = {
      {DType::kU8, DType::kI8, 3, 3, 16},     {DType::kU8, DType::kI8, 4, 4, 16},  // 16 taps: no pad
      {DType::kU8, DType::kI8, 5, 5, 32},     {DType::kU8, DType::kI8, 7, 7, 64},
      // The compiler's DepthConvToNCEWithWeightsAlign LIT test: f16 16x1x2x3 -> 16x16x1x1.
      {DType::kFP16, DType::kFP16, 2, 3, 32}, {DType::kFP16, DType::kFP16, 4, 8, 64},  // 32 taps
      {DType::kFP16, DType::kFP16, 7, 7, 128}, {DType::kU8, DType::kI4, 3, 3, 16},
      {DType::kU8, DType::kI4, 7, 7, 32},
  };
  for (const Case& cs : cases) {
    SCOPED_TRACE(std::string(DTypeName(cs.w)) + " " + std::to_string(cs.ky) + "x" + std::to_string(cs.kx));
    EXPECT_EQ(DwWeightSetBytes(cs.w, cs.ky * cs.kx), cs.set_bytes);
    LayerSpec s;
    s.kind = NceKind::kDwConv;
    s.h = s.w = 8;
    s.c = 16;
    s.ky = cs.ky;
    s.kx = cs.kx;
    s.in_dtype = cs.in;
    s.w_dtype = cs.w;
    s.out_dtype = cs.in;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer l, GenerateLayer(s, 3));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, {}, Npu40()));
    ASSERT_EQ(static_cast<int64_t>(task.weights.size()), 16 * cs.set_bytes);
    DPUEMU_ASSERT_OK_AND_ASSIGN(auto table, DecodeWeightTable(task.weight_table, 16));
    const int64_t taps = cs.ky * cs.kx, set_el = DwWeightSetElements(cs.w, taps);
    for (int64_t c = 0; c < 16; ++c) {
      EXPECT_EQ(table[c].weight_ptr, static_cast<uint32_t>(c * cs.set_bytes));
      EXPECT_EQ(table[c].sparsity_ptr, kDenseSparsityPtr);
      for (int64_t e = 0; e < set_el; ++e) {
        const int64_t i = c * set_el + e;
        int32_t got;
        if (IsSubByte(cs.w)) {
          got = (task.weights[i / 2] >> (4 * (i & 1))) & 0xF;
        } else if (IsFloat(cs.w)) {
          got = task.weights[2 * i] | (task.weights[2 * i + 1] << 8);
        } else {
          got = task.weights[i];
        }
        int32_t want;
        if (e >= taps) {  // padding: the weights' zero point (+0.0 for float)
          want = IsFloat(cs.w) ? 0 : (l.op.w_zp & (IsSubByte(cs.w) ? 0xF : 0xFF));
        } else if (IsFloat(cs.w)) {
          want = l.weights.bytes[2 * (c * taps + e)] | (l.weights.bytes[2 * (c * taps + e) + 1] << 8);
        } else {
          want = l.weights.bytes[c * taps + e] & (IsSubByte(cs.w) ? 0xF : 0xFF);
        }
        ASSERT_EQ(got, want) << "channel " << c << " element " << e;
      }
    }
  }
}

// Per-channel requantisation: every channel takes its own weight-table entry.
TEST(DwConvTest, EachChannelUsesItsOwnWeightTableEntry) {
  LayerSpec s;
  s.kind = NceKind::kDwConv;
  s.h = s.w = 5;
  s.c = 32;
  s.ky = s.kx = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer l, GenerateLayer(s, 9));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, {}, Npu37()));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput before, RunReference(task, Npu37()));
  l.quant.bias[17] += 1 << 20;  // a large bias on channel 17 only
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task2, LowerLayer(l, {}, Npu37()));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput after, RunReference(task2, Npu37()));
  const int64_t px = l.op.g.out_h() * l.op.g.out_w();
  bool changed = false;
  for (int64_t p = 0; p < px; ++p) {
    for (int64_t c = 0; c < 32; ++c) {
      const bool same = before.data.bytes[p * 32 + c] == after.data.bytes[p * 32 + c];
      if (c != 17) {
        ASSERT_TRUE(same) << "pixel " << p << " channel " << c;
      }
      changed |= !same;
    }
  }
  EXPECT_TRUE(changed);
}

NceLayer SmallLayer() {
  LayerSpec s;
  s.kind = NceKind::kDwConv;
  s.h = s.w = 6;
  s.c = 32;
  s.ky = s.kx = 3;
  auto l = GenerateLayer(s, 4);
  EXPECT_TRUE(l.ok());
  return *l;
}

TEST(DwConvTest, MalformedOpsAreRefused) {
  {  // K != C
    NceLayer l = SmallLayer();
    l.op.g.k = 48;
    const Status st = ValidateLayer(l);
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(Contains(st.message(), "k must equal c")) << st.ToString();
  }
  {  // the weight shape of a ZMConv
    NceLayer l = SmallLayer();
    l.weights = Tensor(l.op.w_dtype, {32, 3, 3, 32});
    const Status st = ValidateLayer(l);
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(Contains(st.message(), "weights: expected i8 [32, 3, 3, 1]")) << st.ToString();
  }
  for (int which = 0; which < 3; ++which) {  // sparse weights, sparse input, SE pointers
    NceLayer l = SmallLayer();
    StorageOptions st;
    st.weights_sparse = which == 0;
    st.input_sparse = which == 1;
    st.input_se_table = which == 2;
    for (const Target* t : {&Npu37(), &Npu40()}) {
      auto task = LowerLayer(l, st, *t);
      ASSERT_FALSE(task.ok()) << which;
      EXPECT_TRUE(Contains(task.status().message(), "NCEDepthConvolutionOp::sparsitySupport"))
          << task.status().ToString();
    }
  }
  NceLayer l = SmallLayer();
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask good, LowerLayer(l, {}, Npu40()));
  {  // a weight map handed to the DPU
    DpuTask t = good;
    t.weight_map.assign(32 * 16, 0xFF);
    const Status st = ValidateTask(t, Npu40());
    EXPECT_TRUE(Contains(st.message(), "sparsitySupport")) << st.ToString();
    EXPECT_FALSE(RunNce(t, Npu40()).ok());
  }
  {  // a weight set beyond the buffer
    DpuTask t = good;
    t.weights.resize(t.weights.size() - 16);
    const Status st = ValidateTask(t, Npu40());
    EXPECT_TRUE(Contains(st.message(), "ends beyond")) << st.ToString();
    EXPECT_FALSE(RunReference(t, Npu40()).ok());
    EXPECT_FALSE(RunNce(t, Npu40()).ok());
  }
  {  // no weight table
    DpuTask t = good;
    t.weight_table.clear();
    EXPECT_TRUE(Contains(ValidateTask(t, Npu40()).message(), "needs a weight table"));
  }
  {  // pads beyond kernel / 2 in one invocation
    NceLayer p = SmallLayer();
    p.op.g.pad_top = 2;
    EXPECT_TRUE(Contains(LowerLayer(p, {}, Npu40()).status().message(), "verifyPads"));
  }
}

// The weight bound of ValidateDims follows the depthwise shape [C, KY, KX, 1]: a dwconv with
// C = 8192 and an 11x11 kernel (C^2 * 121 weights as a ZMConv) is a legal op.
TEST(DwConvTest, LargeDepthwiseOpsAreWithinTheWeightBound) {
  NceOp op;
  op.kind = NceKind::kDwConv;
  op.g.h = op.g.w = 16;
  op.g.c = op.g.k = 8192;
  op.g.ky = op.g.kx = 11;
  DPUEMU_ASSERT_OK(ValidateOp(op));
  op.kind = NceKind::kConv;
  EXPECT_TRUE(Contains(ValidateOp(op).message(), "exceeds 2^28"));
}

}  // namespace
}  // namespace dpuemu
