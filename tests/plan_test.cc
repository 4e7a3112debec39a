#include "runtime/plan.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

NceOp MakeOp(int64_t h, int64_t w, int64_t c, int64_t k, int64_t kernel = 1,
              DType dt = DType::kI8) {
  NceOp op;
  op.g.h = h;
  op.g.w = w;
  op.g.c = c;
  op.g.k = k;
  op.g.ky = op.g.kx = kernel;
  op.g.pad_top = op.g.pad_bottom = op.g.pad_left = op.g.pad_right = (kernel - 1) / 2;
  if (IsFloat(dt)) {
    op.in_dtype = op.w_dtype = op.out_dtype = dt;
  } else {
    op.in_dtype = DType::kU8;
    op.w_dtype = dt;
    op.out_dtype = DType::kU8;
  }
  return op;
}

// Weights for `op` whose channel k has nnz(k) values that differ from the zero point (the first
// nnz(k) taps), the rest zero point.
Tensor MakeWeights(const NceOp& op, const std::function<int64_t(int64_t)>& nnz) {
  const NceGeometry& g = op.g;
  Tensor t(op.w_dtype, {g.k, g.ky, g.kx, g.c});
  for (int64_t k = 0; k < g.k; ++k) {
    for (int64_t i = 0; i < g.taps(); ++i) {
      const int64_t at = k * g.taps() + i;
      if (IsFloat(op.w_dtype)) {
        StoreFloat(op.w_dtype, t.bytes.data(), at, i < nnz(k) ? 1.0f : 0.0f);
      } else {
        StoreInt(op.w_dtype, t.bytes.data(), at, i < nnz(k) ? op.w_zp + 1 : op.w_zp);
      }
    }
  }
  return t;
}

Tensor UniformWeights(const NceOp& op, int64_t nnz_per_channel) {
  return MakeWeights(op, [=](int64_t) { return nnz_per_channel; });
}

WeightDecision Decide(const NceOp& op, const Tensor& w, WeightHeuristic h,
                      const Target& t = Npu37()) {
  StatusOr<WeightDecision> d = DecideWeightSparsity(op, w, t, h);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? *d : WeightDecision{};
}

// ---- Names ----

TEST(PlanNames, ParseAndPrint) {
  for (const char* name : {"sas", "ratio", "cmx", "dense", "sparse", "cost"}) {
    StatusOr<WeightHeuristic> h = ParseWeightHeuristic(name);
    ASSERT_TRUE(h.ok()) << name;
    EXPECT_STREQ(WeightHeuristicName(*h), name);
  }
  EXPECT_FALSE(ParseWeightHeuristic("greedy").ok());
  EXPECT_TRUE(Contains(ParseWeightHeuristic("greedy").status().message(), "heuristic"));
  EXPECT_EQ(*ParseSplitStrategy("sok"), SplitStrategy::kSok);
  EXPECT_EQ(*ParseSplitStrategy("SOH"), SplitStrategy::kSoh);
  EXPECT_EQ(*ParseSplitStrategy("clustering"), SplitStrategy::kClustering);
  EXPECT_EQ(*ParseSplitStrategy("auto"), SplitStrategy::kAuto);
  EXPECT_FALSE(ParseSplitStrategy("sow").ok());
  for (const char* name : {"auto", "seed", "compiler"}) {
    StatusOr<SplitRule> r = ParseSplitRule(name);
    ASSERT_TRUE(r.ok()) << name;
    EXPECT_STREQ(SplitRuleName(*r), name);
  }
  EXPECT_TRUE(Contains(ParseSplitRule("vpunn").status().message(), "split_rule: unknown rule"));
}

// ---- Weight traffic and heuristics ----

TEST(WeightDecision, TrafficIsCmxGranularPerChannel) {
  // 3x3x32 taps = 288 per channel: map align16(36) = 48 bytes; packed runs aligned per channel.
  const NceOp op = MakeOp(8, 8, 32, 64, 3);
  const Tensor w = MakeWeights(op, [](int64_t k) { return (k * 37) % 289; });
  const WeightDecision d = Decide(op, w, WeightHeuristic::kSas);
  int64_t data = 0, nnz = 0;
  for (int64_t k = 0; k < 64; ++k) {
    nnz += (k * 37) % 289;
    data += ((k * 37) % 289 + 15) / 16 * 16;
  }
  EXPECT_EQ(d.traffic.elements, 64 * 288);
  EXPECT_EQ(d.traffic.nonzeros, nnz);
  EXPECT_EQ(d.traffic.dense_weight_bytes, 64 * 288);
  EXPECT_EQ(d.traffic.table_bytes, 64 * 16);
  EXPECT_EQ(d.traffic.map_bytes, 64 * 48);
  EXPECT_EQ(d.traffic.sparse_data_bytes, data);
  EXPECT_EQ(d.traffic.dense_bytes, 64 * 288 + 64 * 16);
  EXPECT_EQ(d.traffic.sparse_bytes, data + 64 * 48 + 64 * 16);
  ASSERT_EQ(d.nonzeros.size(), 64u);
  EXPECT_EQ(d.nonzeros[3], 111);
}

// int4 weights: packed two per byte in 16-byte sets, counted but never sparsified.
TEST(WeightDecision, Int4WeightsStayDense) {
  NceOp op = MakeOp(8, 8, 32, 64, 3);
  op.w_dtype = DType::kI4;
  op.w_zp = 0;
  const Tensor w = MakeWeights(op, [](int64_t k) { return k % 20; });  // 90%+ zeros
  for (WeightHeuristic h : {WeightHeuristic::kSas, WeightHeuristic::kRatio, WeightHeuristic::kCmx}) {
    const WeightDecision d = Decide(op, w, h);
    EXPECT_FALSE(d.sparse);
    EXPECT_NE(d.reason.find("sub-8-bit weights are never sparsified"), std::string::npos) << d.reason;
    EXPECT_EQ(d.traffic.dense_weight_bytes, 64 * 144);  // 288 nibbles per channel
    ASSERT_EQ(d.nonzeros.size(), 64u);
    EXPECT_EQ(d.nonzeros[13], 13);
  }
  StatusOr<WeightDecision> forced = DecideWeightSparsity(op, w, Npu37(), WeightHeuristic::kSparse);
  ASSERT_FALSE(forced.ok());
  EXPECT_NE(forced.status().message().find("sub-8-bit"), std::string::npos);
}

// C=128, 1x1: 128 weights per channel; the map is 16 bytes, exactly 1/8 of an 8-bit channel.
TEST(WeightDecision, SasBreakEven8Bit) {
  const NceOp op = MakeOp(4, 4, 128, 64);
  // 15 of 128 zero (11.7%): below the break-even.
  WeightDecision d = Decide(op, UniformWeights(op, 113), WeightHeuristic::kSas);
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "< 12.5% break-even for 8-bit weights")) << d.reason;
  // Exactly 12.5%: past the sparsity rule, but sparse traffic equals dense (112 + 16 = 128).
  d = Decide(op, UniformWeights(op, 112), WeightHeuristic::kSas);
  EXPECT_FALSE(d.sparse);
  EXPECT_EQ(d.traffic.sparse_bytes, d.traffic.dense_bytes);
  EXPECT_TRUE(Contains(d.reason, "16-byte granularity")) << d.reason;
  // 14% sparsity, but 110 non-zeros round up to 112 bytes: still no saving.
  d = Decide(op, UniformWeights(op, 110), WeightHeuristic::kSas);
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "16-byte granularity")) << d.reason;
  // 25%: 96 + 16 = 112 < 128 per channel.
  d = Decide(op, UniformWeights(op, 96), WeightHeuristic::kSas);
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_EQ(d.reason,
            "sas: sparsity 25% >= 12.5% break-even and K=64 >= 64: sparse saves 1,024 of 9,216 "
            "bytes");
}

TEST(WeightDecision, SasBreakEven16Bit) {
  // fp16: 256 bytes per channel, map 16 bytes = 1/16: break-even 6.25%.
  const NceOp op = MakeOp(4, 4, 128, 64, 1, DType::kFP16);
  WeightDecision d = Decide(op, UniformWeights(op, 121), WeightHeuristic::kSas);  // 5.5%
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "< 6.25% break-even for 16-bit weights")) << d.reason;
  d = Decide(op, UniformWeights(op, 120), WeightHeuristic::kSas);  // 6.25%: 240 + 16 = 256
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "16-byte granularity")) << d.reason;
  d = Decide(op, UniformWeights(op, 112), WeightHeuristic::kSas);  // 12.5%: 224 + 16 < 256
  EXPECT_TRUE(d.sparse) << d.reason;
}

TEST(WeightDecision, SasFewOutputChannelsStayDense) {
  const NceOp op48 = MakeOp(4, 4, 128, 48);
  WeightDecision d = Decide(op48, UniformWeights(op48, 40), WeightHeuristic::kSas);  // 69% sparse
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "K=48 < 64")) << d.reason;
  EXPECT_LT(d.traffic.sparse_bytes, d.traffic.dense_bytes);  // the rule, not the traffic
  const NceOp op64 = MakeOp(4, 4, 128, 64);
  EXPECT_TRUE(Decide(op64, UniformWeights(op64, 40), WeightHeuristic::kSas).sparse);
}

TEST(WeightDecision, RatioThresholds) {
  // Integer: effective sparsity >= 1/8. 112 of 128 bytes kept -> exactly 0.125.
  const NceOp op = MakeOp(4, 4, 128, 16);  // K < 64 does not matter to "ratio"
  WeightDecision d = Decide(op, UniformWeights(op, 112), WeightHeuristic::kRatio);
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_DOUBLE_EQ(d.traffic.effective_sparsity(), 0.125);
  EXPECT_TRUE(Contains(d.reason, "12.5% >= 12.5% for integer weights")) << d.reason;
  // Half the channels at 113 non-zeros round up to 128 bytes: effective 6.25%.
  d = Decide(op, MakeWeights(op, [](int64_t k) { return k % 2 ? 113 : 112; }),
             WeightHeuristic::kRatio);
  EXPECT_FALSE(d.sparse) << d.reason;
  EXPECT_DOUBLE_EQ(d.traffic.effective_sparsity(), 0.0625);
  // Float: >= 1/16. 120 fp16 values = 240 of 256 bytes -> exactly 0.0625.
  const NceOp fop = MakeOp(4, 4, 128, 16, 1, DType::kFP16);
  d = Decide(fop, UniformWeights(fop, 120), WeightHeuristic::kRatio);
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "for float weights")) << d.reason;
  d = Decide(fop, UniformWeights(fop, 121), WeightHeuristic::kRatio);  // 242 -> 256 bytes
  EXPECT_FALSE(d.sparse) << d.reason;
}

TEST(WeightDecision, CmxShareTable) {
  // NPU37XX: 1,982,464 - 3,584 = 1,978,880 bytes (getTotalCMXSize).
  // 64 x 3x3x64 = 36,864 bytes = 1.9%: never, even at 90% sparsity.
  const NceOp small = MakeOp(8, 8, 64, 64, 3);
  WeightDecision d = Decide(small, UniformWeights(small, 58), WeightHeuristic::kCmx);
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "(<= 5%): never")) << d.reason;
  // 64 x 3x3x1024 = 589,824 bytes = 29.81%: needs 30%. 9216 bytes per channel.
  const NceOp mid = MakeOp(8, 8, 1024, 64, 3);
  d = Decide(mid, UniformWeights(mid, 6448), WeightHeuristic::kCmx);  // 30.03%
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "(5-50%]")) << d.reason;
  d = Decide(mid, UniformWeights(mid, 6464), WeightHeuristic::kCmx);  // 29.86%
  EXPECT_FALSE(d.sparse) << d.reason;
  // 128 channels = 1,179,648 bytes = 59.61%: needs 20%.
  const NceOp big = MakeOp(8, 8, 1024, 128, 3);
  d = Decide(big, UniformWeights(big, 7360), WeightHeuristic::kCmx);  // 20.14%
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "(50-100%]")) << d.reason;
  d = Decide(big, UniformWeights(big, 7376), WeightHeuristic::kCmx);  // 19.97%
  EXPECT_FALSE(d.sparse) << d.reason;
}

TEST(WeightDecision, SkipsWideKernelsAndAllZeroWeights) {
  const NceOp wide = MakeOp(2, 2, 8208, 64);
  const Tensor half = UniformWeights(wide, 4104);
  for (WeightHeuristic h :
       {WeightHeuristic::kSas, WeightHeuristic::kRatio, WeightHeuristic::kCmx}) {
    const WeightDecision d = Decide(wide, half, h);
    EXPECT_FALSE(d.sparse);
    EXPECT_TRUE(Contains(d.reason, "IC = 8208 > 8192")) << d.reason;
  }
  StatusOr<WeightDecision> forced =
      DecideWeightSparsity(wide, half, Npu37(), WeightHeuristic::kSparse);
  ASSERT_FALSE(forced.ok());
  EXPECT_TRUE(Contains(forced.status().message(), "IC <= 8192"));

  const NceOp op = MakeOp(4, 4, 128, 64);
  const Tensor zeros = UniformWeights(op, 0);
  WeightDecision d = Decide(op, zeros, WeightHeuristic::kRatio);
  EXPECT_FALSE(d.sparse);
  EXPECT_TRUE(Contains(d.reason, "all weights equal the zero point")) << d.reason;
  // The compiler never sparsifies an all-zero weight set (sparsity_strategy.cpp): forcing it is
  // an error naming the rule.
  StatusOr<WeightDecision> all_zero =
      DecideWeightSparsity(op, zeros, Npu37(), WeightHeuristic::kSparse);
  ASSERT_FALSE(all_zero.ok());
  EXPECT_TRUE(Contains(all_zero.status().message(), "all-zero weight set is never sparsified"));
  // One non-zero weight is enough.
  Tensor one = zeros;
  one.bytes[0] = static_cast<uint8_t>(op.w_zp + 1);
  d = Decide(op, one, WeightHeuristic::kSparse);
  EXPECT_TRUE(d.sparse);
}

TEST(WeightDecision, ForcedModesAndBadWeights) {
  const NceOp op = MakeOp(4, 4, 128, 64);
  const Tensor w = UniformWeights(op, 127);  // sparse would cost more
  EXPECT_TRUE(Decide(op, w, WeightHeuristic::kSparse).sparse);
  EXPECT_TRUE(Contains(Decide(op, w, WeightHeuristic::kSparse).reason, "sparse (forced)"));
  const Tensor w2 = UniformWeights(op, 10);
  EXPECT_FALSE(Decide(op, w2, WeightHeuristic::kDense).sparse);
  Tensor bad = w;
  bad.shape[3] = 64;
  StatusOr<WeightDecision> d = DecideWeightSparsity(op, bad, Npu37(), WeightHeuristic::kSas);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.status().message(), "weights: expected i8 [64, 1, 1, 128]"))
      << d.status().message();
}

// ---- Splits ----

StatusOr<Plan> PlanWith(const NceOp& op, const Target& t, PlanOptions o, int64_t nnz = -1) {
  return PlanOp(op, UniformWeights(op, nnz < 0 ? op.g.taps() : nnz), t, o, "test");
}

std::vector<std::pair<int64_t, int64_t>> KRanges(const Plan& p) {
  std::vector<std::pair<int64_t, int64_t>> r;
  for (const TilePlan& t : p.tiles) r.push_back({t.k_begin, t.k_end});
  return r;
}

std::vector<std::pair<int64_t, int64_t>> RowRanges(const Plan& p) {
  std::vector<std::pair<int64_t, int64_t>> r;
  for (const TilePlan& t : p.tiles) r.push_back({t.row_begin, t.row_end});
  return r;
}

using Ranges = std::vector<std::pair<int64_t, int64_t>>;

TEST(PlanSplit, SeedK320On37xxSparseOutputPadsToPowerOfTwo) {
  const NceOp op = MakeOp(28, 28, 256, 320);
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  o.output_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(op, Npu37(), o));
  EXPECT_EQ(p.split, SplitStrategy::kSok);
  EXPECT_EQ(p.k_padded, 512);
  EXPECT_EQ(KRanges(p), (Ranges{{0, 256}, {256, 512}}));
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_TRUE(Contains(p.notes[0], "K=320 padded to 512")) << p.notes[0];
  EXPECT_TRUE(Contains(p.notes[0], "power-of-two")) << p.notes[0];
  EXPECT_EQ(p.tiles[1].output_se_size, 256);
  EXPECT_TRUE(Contains(p.split_reason, "forced: SOK over 2 tiles")) << p.split_reason;
  // Padding channels cost MPE cycles like real ones, even with sparse weights.
  PlanOptions sparse_w = o;
  sparse_w.heuristic = WeightHeuristic::kSparse;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan ps, PlanWith(op, Npu37(), sparse_w, /*nnz=*/128));
  EXPECT_EQ(ps.tiles[1].cycles, ps.tiles[0].cycles);
  EXPECT_LT(ps.tiles[1].weight_bytes, ps.tiles[0].weight_bytes);  // but carry fewer weights
  // Dense output has no such rule: 160/160.
  o.output_sparse = false;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan dense, PlanWith(op, Npu37(), o));
  EXPECT_EQ(dense.k_padded, 320);
  EXPECT_EQ(KRanges(dense), (Ranges{{0, 160}, {160, 320}}));
  EXPECT_TRUE(dense.notes.empty());
}

TEST(PlanSplit, SeedK320On40xx) {
  const NceOp op = MakeOp(28, 28, 256, 320);
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  o.output_sparse = true;
  o.tiles = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan two, PlanWith(op, Npu40(), o));
  EXPECT_EQ(two.k_padded, 320);
  EXPECT_EQ(KRanges(two), (Ranges{{0, 160}, {160, 320}}));
  EXPECT_EQ(two.tiles[0].output_se_size, 160);
  // Six tiles: 320 is not a multiple of 6 x 16. Sparse output needs equal splits: 5 tiles of 64
  // (padding to 384 would give the same 64 per tile).
  o.tiles = 0;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan six, PlanWith(op, Npu40(), o));
  EXPECT_EQ(six.tiles_used, 5);
  EXPECT_EQ(six.k_padded, 320);
  EXPECT_EQ(KRanges(six), (Ranges{{0, 64}, {64, 128}, {128, 192}, {192, 256}, {256, 320}}));
  ASSERT_EQ(six.notes.size(), 1u);
  EXPECT_TRUE(Contains(six.notes[0], "using 5 of 6 tiles")) << six.notes[0];
}

TEST(PlanSplit, Npu40xxUnevenK) {
  const NceOp op = MakeOp(14, 14, 64, 352);
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  // Dense output: the compiler's uniform segments, alignDown(352 / 6, 16) = 48 and the remaining
  // 64 channels in 16s to the first tiles.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan dense, PlanWith(op, Npu40(), o));
  EXPECT_EQ(KRanges(dense),
            (Ranges{{0, 64}, {64, 128}, {128, 192}, {192, 256}, {256, 304}, {304, 352}}));
  EXPECT_EQ(dense.k_padded, 352);
  // Sparse output, auto: the compiler's first-equal segments 5 x 64 + 32 beat the seed's padding.
  o.output_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan sparse, PlanWith(op, Npu40(), o));
  EXPECT_EQ(sparse.split_rule, SplitRule::kCompiler) << sparse.split_rule_reason;
  EXPECT_EQ(KRanges(sparse),
            (Ranges{{0, 64}, {64, 128}, {128, 192}, {192, 256}, {256, 320}, {320, 352}}));
  EXPECT_TRUE(Contains(sparse.split_rule_reason, "compiler's tiling K per tile [64, 64, 64, 64, 64, 32]"))
      << sparse.split_rule_reason;
  EXPECT_TRUE(Contains(sparse.split_rule_reason, "beats seed's tiling K per tile [64"))
      << sparse.split_rule_reason;
  // The seed's rule: equal splits. 2 tiles of 176 lose to padding 352 -> 384 = 6 x 64.
  o.split_rule = SplitRule::kSeed;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan seed, PlanWith(op, Npu40(), o));
  EXPECT_EQ(seed.split_rule, SplitRule::kSeed);
  EXPECT_EQ(seed.k_padded, 384);
  EXPECT_EQ(seed.tiles_used, 6);
  EXPECT_EQ(seed.tiles.back().k_begin, 320);
  EXPECT_EQ(seed.tiles.back().k_end, 384);
  ASSERT_EQ(seed.notes.size(), 1u);
  EXPECT_TRUE(Contains(seed.notes[0], "K=352 padded to 384")) << seed.notes[0];
}

TEST(PlanSplit, SokNeedsSixteenChannelsPerTile) {
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(MakeOp(8, 8, 32, 32), Npu40(), o));
  EXPECT_EQ(KRanges(p), (Ranges{{0, 16}, {16, 32}}));
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_TRUE(Contains(p.notes[0], "K=32 over 2 of 6 tiles: [16, 16]")) << p.notes[0];
  StatusOr<Plan> bad = PlanWith(MakeOp(8, 8, 32, 16), Npu40(), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(bad.status().message(), ">= 16 output channels")) << bad.status().message();
}

std::vector<std::pair<int64_t, int64_t>> InSegments(const Plan& p) {
  std::vector<std::pair<int64_t, int64_t>> r;
  for (const TilePlan& t : p.tiles) r.push_back({t.in_seg_begin, t.in_seg_end});
  return r;
}

TEST(PlanSplit, Npu37xxSohAlignsTheInputRows) {
  // IH=OH=10, IW=6 on 2 tiles: 5 input rows would give 30 pixels per tile. The compiler aligns
  // each tile's INPUT rows (getSOHPerClusterHeightAlignment(6, dense) = 2 -> 6 + 4) and splits the
  // output rows ceil(OH / 2) = 5 + 5.
  const NceOp op = MakeOp(10, 6, 16, 16);
  PlanOptions o;
  o.split = SplitStrategy::kSoh;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan dense, PlanWith(op, Npu37(), o));
  EXPECT_EQ(RowRanges(dense), (Ranges{{0, 5}, {5, 10}}));
  EXPECT_EQ(InSegments(dense), (Ranges{{0, 6}, {6, 10}}));  // 6 x 6 = 36, a multiple of 4
  ASSERT_EQ(dense.notes.size(), 1u);
  EXPECT_TRUE(Contains(dense.notes[0], "multiple of 4 (dense input")) << dense.notes[0];
  EXPECT_TRUE(Contains(dense.notes[0], "isSOHSupportedByDPU")) << dense.notes[0];
  o.input_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan sparse, PlanWith(op, Npu37(), o));
  EXPECT_EQ(RowRanges(sparse), (Ranges{{0, 5}, {5, 10}}));
  EXPECT_EQ(InSegments(sparse), (Ranges{{0, 8}, {8, 10}}));  // 6 x 8 = 48, a multiple of 8
  // NPU40XX has no such rule (and segments uniformly).
  o.tiles = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p40, PlanWith(op, Npu40(), o));
  EXPECT_EQ(RowRanges(p40), (Ranges{{0, 5}, {5, 10}}));
  EXPECT_EQ(InSegments(p40), (Ranges{{0, 0}, {0, 0}}));
  EXPECT_TRUE(p40.notes.empty());
  // IH=6, IW=7, sparse input: 8 input rows per tile leave nothing for tile 1.
  StatusOr<Plan> bad = PlanWith(MakeOp(6, 7, 16, 16), Npu37(), o);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status().message(), "split = SOH on NPU37XX")) << bad.status().message();
  EXPECT_TRUE(Contains(bad.status().message(), "multiple of 8 (sparse input"))
      << bad.status().message();
  // A strided layer: the rule reads the input shape, not the output's. IH=20, IW=6, stride 2:
  // OH=10 -> 5 + 5 output rows; input 10 + 10 rows (10 x 6 = 60, a multiple of 4).
  NceOp strided = MakeOp(20, 6, 16, 16);
  strided.g.stride_y = 2;
  o.input_sparse = false;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan ps, PlanWith(strided, Npu37(), o));
  EXPECT_EQ(RowRanges(ps), (Ranges{{0, 5}, {5, 10}}));
  EXPECT_EQ(InSegments(ps), (Ranges{{0, 10}, {10, 20}}));
}

TEST(PlanSplit, AutoPicksByShape) {
  // Large K, small spatial -> SOK.
  PlanOptions o;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan sok, PlanWith(MakeOp(7, 7, 128, 512, 3), Npu40(), o));
  EXPECT_EQ(sok.split, SplitStrategy::kSok) << sok.split_reason;
  EXPECT_TRUE(Contains(sok.split_reason, "auto: SOK over 6 tiles")) << sok.split_reason;
  EXPECT_TRUE(Contains(sok.split_reason, "beats SOH")) << sok.split_reason;
  // Large spatial, few channels -> SOH.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan soh, PlanWith(MakeOp(56, 56, 64, 64, 3), Npu40(), o));
  EXPECT_EQ(soh.split, SplitStrategy::kSoh) << soh.split_reason;
  EXPECT_TRUE(Contains(soh.split_reason, "beats SOK")) << soh.split_reason;
  // With 2.4 MB of weights SOH (weights on every tile) does not fit: SOK whatever the cycles.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan wide, PlanWith(MakeOp(7, 7, 512, 512, 3), Npu40(), o));
  EXPECT_EQ(wide.split, SplitStrategy::kSok);
  EXPECT_TRUE(Contains(wide.split_reason, "does not fit: SOH on 6 tiles")) << wide.split_reason;
  // Neither split possible (K=16, one output row): clustering on one tile.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan one, PlanWith(MakeOp(1, 16, 16, 16), Npu37(), o));
  EXPECT_EQ(one.split, SplitStrategy::kClustering);
  EXPECT_EQ(one.tiles_used, 1);
  EXPECT_TRUE(Contains(one.split_reason, "fallback")) << one.split_reason;
  // One tile asked for: no split.
  o.tiles = 1;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan t1, PlanWith(MakeOp(56, 56, 64, 64, 3), Npu40(), o));
  EXPECT_EQ(t1.split, SplitStrategy::kClustering);
  EXPECT_EQ(t1.tiles_used, 1);
}

TEST(PlanSplit, ForcedClusteringDuplicatesTheLayer) {
  PlanOptions o;
  o.split = SplitStrategy::kClustering;
  o.tiles = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(MakeOp(8, 8, 16, 32), Npu40(), o));
  EXPECT_EQ(p.tiles_used, 3);
  for (const TilePlan& t : p.tiles) {
    EXPECT_EQ(t.k_begin, 0);
    EXPECT_EQ(t.k_end, 32);
    EXPECT_EQ(t.row_end, 8);
  }
}

TEST(PlanSplit, CmxFit) {
  // 112x112x128 u8 in and out: SOK keeps the whole input on each tile and overflows NPU37XX's
  // 1,982,464 bytes; SOH halves the input and output and fits.
  const NceOp op = MakeOp(112, 112, 128, 128, 3);
  PlanOptions o;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(op, Npu37(), o));
  EXPECT_EQ(p.split, SplitStrategy::kSoh);
  EXPECT_TRUE(Contains(p.split_reason, "does not fit: SOK")) << p.split_reason;
  for (const TilePlan& t : p.tiles) EXPECT_LE(t.cmx_bytes(), Npu37().cmx_bytes_per_tile);
  o.split = SplitStrategy::kSok;
  StatusOr<Plan> sok = PlanWith(op, Npu37(), o);
  ASSERT_FALSE(sok.ok());
  EXPECT_EQ(sok.status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(Contains(sok.status().message(), "cmx: SOK on 2 tiles needs 2,483,200 bytes"))
      << sok.status().message();
  // 32 MiB of input fits nowhere.
  o.split = SplitStrategy::kAuto;
  StatusOr<Plan> huge = PlanWith(MakeOp(256, 256, 512, 64), Npu37(), o);
  ASSERT_FALSE(huge.ok());
  EXPECT_TRUE(Contains(huge.status().message(), "cmx: no split of the layer fits on NPU37XX"))
      << huge.status().message();
  o.tiles = 1;
  huge = PlanWith(MakeOp(256, 256, 512, 64), Npu37(), o);
  ASSERT_FALSE(huge.ok());
  EXPECT_TRUE(Contains(huge.status().message(), "cmx: clustering on 1 tile needs 37,782,528 bytes"))
      << huge.status().message();
}

TEST(PlanErrors, NamesTheRule) {
  PlanOptions o;
  NceOp op = MakeOp(8, 8, 64, 64);
  // K not a multiple of 16.
  NceOp k40 = op;
  k40.g.k = 40;
  StatusOr<Plan> p = PlanOp(k40, Tensor(DType::kI8, {40, 1, 1, 64}), Npu37(), o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status().message(), "k (output channels) = 40: must be a multiple of 16"));
  // Storage-element sizes.
  o.input_se_size = 48;
  p = PlanWith(MakeOp(8, 8, 96, 64), Npu37(), o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status().message(), "input se_size = 48 on NPU37XX"));
  EXPECT_TRUE(Contains(p.status().message(), "power-of-two")) << p.status().message();
  EXPECT_TRUE(PlanWith(MakeOp(8, 8, 96, 64), Npu40(), o).ok());
  p = PlanWith(op, Npu40(), o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status().message(), "input se_size = 48: must divide C = 64"));
  o.input_se_size = 0;
  o.output_se_size = 40;
  p = PlanWith(op, Npu40(), o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status().message(), "output se_size = 40 on NPU40XX"));
  // An output SE that does not divide the SOK split.
  o.output_se_size = 64;
  o.split = SplitStrategy::kSok;
  o.tiles = 2;
  p = PlanWith(MakeOp(8, 8, 64, 320), Npu40(), o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(
      Contains(p.status().message(), "must divide every tile's channel count (tile 0 has 160)"))
      << p.status().message();
  // Every output row reads only padding rows: no tile can be cut out of the input.
  NceOp void_rows = MakeOp(1, 16, 16, 16);
  void_rows.g.pad_top = 5;
  void_rows.g.stride_y = 8;
  p = PlanWith(void_rows, Npu37(), PlanOptions());
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status().message(), "read only padding rows")) << p.status().message();
  // Tile count.
  o = PlanOptions();
  o.tiles = 3;
  p = PlanWith(op, Npu37(), o);
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(Contains(p.status().message(), "tiles = 3: must be in [0, 2] on NPU37XX"));
}

// ---- Workloads ----

TEST(PlanWorkloads, MpeModeAsTheCompilerPicksIt) {
  PlanOptions o;
  o.tiles = 1;
  o.workloads_per_tile = 1;
  // 56x56x64: reads 16x16 4,160, 8x16 4,928, 4x16 6,272; 16 cuboids of 16x16x64.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan a, PlanWith(MakeOp(56, 56, 64, 64, 3), Npu40(), o));
  ASSERT_EQ(a.workloads.size(), 1u);
  const Workload& w = a.workloads[0];
  EXPECT_EQ(w.mpe_mode, MpeMode::kCuboid16x16);
  EXPECT_EQ(w.cuboids, 16);
  EXPECT_DOUBLE_EQ(w.utilisation, 56.0 * 56 * 64 / (16 * 16384));
  // The cost model (runtime/cost.h): compute-bound, no padding at 56x56 (rows to 4, cols to 2),
  // within 25% of VPUNN's 56,966 cycles for this workload (calibration row
  // c3_56x56x64_64/full, VPU_4_0 int8).
  EXPECT_EQ(w.cycles, w.cost.cycles);
  EXPECT_EQ(w.cost.padded_outputs, 56 * 56 * 64);
  EXPECT_STREQ(w.cost.bound, "mac");
  EXPECT_NEAR(static_cast<double>(w.cycles) / 56966, 1.0, 0.25) << w.cost.ToString();
  EXPECT_TRUE(Contains(a.tiles[0].mpe_reason, "16x16 4,160 8x16 4,928 4x16 6,272"))
      << a.tiles[0].mpe_reason;
  // 8x16x128: 16x16 384, 8x16 256, 4x16 384.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan b, PlanWith(MakeOp(8, 16, 64, 128), Npu40(), o));
  EXPECT_EQ(b.workloads[0].mpe_mode, MpeMode::kCuboid8x16);
  EXPECT_EQ(b.workloads[0].cuboids, 1);
  // 14x14x256: 16x16 1,040, 8x16 904, 4x16 1,220 (the old fewest-cuboids rule took 4x16).
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan c, PlanWith(MakeOp(14, 14, 256, 256, 3), Npu40(), o));
  EXPECT_EQ(c.workloads[0].mpe_mode, MpeMode::kCuboid8x16);
  EXPECT_EQ(c.workloads[0].cuboids, 4);
  // K in 2 passes of 128; rows in chunks 8 + 6 read windows 10 + 8, cols one chunk of 14 reads 16.
  EXPECT_EQ(c.workloads[0].input_reads, 2 * 18 * 16 * 16);
}

// Generated shapes: MpeModeForConv is the minimum of its own three costs, ties to the lower mode,
// and every tile's workloads share the tile's mode (NPU37XX: the tile's shape; NPU40XX: the layer's).
TEST(PlanWorkloads, MpeModeGenerated) {
  uint64_t seed = 0x5eed;
  auto next = [&](int64_t n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int64_t>((seed >> 33) % static_cast<uint64_t>(n));
  };
  const int64_t grid[3][3] = {{16, 16, 64}, {16, 8, 128}, {8, 8, 256}};  // W, H, K
  const MpeMode modes[3] = {MpeMode::kCuboid16x16, MpeMode::kCuboid8x16, MpeMode::kCuboid4x16};
  for (int i = 0; i < 2000; ++i) {
    const int64_t h = 1 + next(80), w = 1 + next(80), k = 16 * (1 + next(40));
    int64_t cost[3];
    for (int m = 0; m < 3; ++m) {
      cost[m] = (k + grid[m][2] - 1) / grid[m][2] * h * w +
                (h + grid[m][1] - 1) / grid[m][1] * ((w + grid[m][0] - 1) / grid[m][0]) * k;
    }
    const int best = cost[0] <= cost[1] && cost[0] <= cost[2] ? 0 : cost[1] <= cost[2] ? 1 : 2;
    ASSERT_EQ(MpeModeForConv(h, w, k), modes[best]) << h << "x" << w << "x" << k << " seed " << i;
  }
  for (const Target* t : AllTargets()) {
    PlanOptions o;
    o.split = SplitStrategy::kSok;
    o.tiles = 2;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(MakeOp(14, 14, 64, 96, 3), *t, o));
    for (const TilePlan& tp : p.tiles) {
      const int64_t k = t->id == TargetId::kNPU37XX ? tp.k_end - tp.k_begin : 96;
      EXPECT_EQ(tp.mpe_mode, MpeModeForConv(14, 14, k)) << t->name;
      for (const Workload& w : p.workloads) {
        if (w.tile == tp.tile) EXPECT_EQ(w.mpe_mode, tp.mpe_mode);
      }
    }
  }
}

TEST(PlanWorkloads, SparseWeightsScaleCycles) {
  PlanOptions o;
  o.tiles = 1;
  o.workloads_per_tile = 1;
  o.heuristic = WeightHeuristic::kSparse;
  const NceOp op = MakeOp(16, 16, 128, 64);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(op, Npu37(), o, /*nnz=*/32));
  ASSERT_TRUE(p.weights.sparse);
  // 16x16x64 outputs of 128 taps at a quarter density: the MAC time falls by the target's
  // saturating factor (runtime/cost.h), not to a quarter; the cycles are the model's.
  const WorkloadCostTerms& c = p.workloads[0].cost;
  const DtypeCostConstants& k = CostConstants(TargetId::kNPU37XX).int8;
  EXPECT_EQ(p.workloads[0].cycles, c.cycles);
  EXPECT_DOUBLE_EQ(c.weight_factor, std::max(k.sparse_floor, 1 - k.sparse_gain * 3 / 4));
  EXPECT_GT(c.weight_factor, 0.25);
  EXPECT_DOUBLE_EQ(c.mac_cycles, c.dense_mac_cycles * c.weight_factor);
  EXPECT_NEAR(c.dense_mac_cycles, 16.0 * 16 * 64 * 128 / (2048 * k.mac_rate), 1e-6);
  // Weight bytes: 32 packed bytes + 16 map + 16 table per channel.
  EXPECT_EQ(p.workloads[0].weight_bytes, 64 * (32 + 16 + 16));
}

// Tiles cover [0, k_padded) x [0, OH) (SOK/SOH) and workloads cover each tile, within CMX.
void ExpectCoverage(const Plan& p) {
  const NceGeometry& g = p.op.g;
  int64_t covered = 0;
  for (const TilePlan& t : p.tiles) {
    EXPECT_LE(t.cmx_bytes(), p.target->cmx_bytes_per_tile);
    EXPECT_EQ((t.k_end - t.k_begin) % 16, 0);
    EXPECT_EQ((t.k_end - t.k_begin) % t.output_se_size, 0);
    covered += (t.k_end - t.k_begin) * (t.row_end - t.row_begin);
    // Row bands in order, each cut into consecutive channel pieces covering the tile's K.
    int64_t row = t.row_begin, k = t.k_begin, cycles = 0;
    for (const Workload& w : p.workloads) {
      if (w.tile != t.tile) continue;
      EXPECT_EQ(w.k_begin, k);
      EXPECT_LE(w.k_end, t.k_end);
      EXPECT_EQ(w.row_begin, row);
      EXPECT_EQ(w.mpe_mode, t.mpe_mode);
      EXPECT_EQ(w.col_begin, 0);
      EXPECT_EQ(w.col_end, g.out_w());
      EXPECT_GE(w.in_row_begin, t.in_row_begin);
      EXPECT_LE(w.in_row_end, t.in_row_end);
      k = w.k_end;
      if (k == t.k_end) {
        k = t.k_begin;
        row = w.row_end;
      }
      cycles += w.cycles;
    }
    EXPECT_EQ(row, t.row_end);
    EXPECT_EQ(k, t.k_begin);
    EXPECT_EQ(cycles, t.cycles);
  }
  if (p.split != SplitStrategy::kClustering) {
    EXPECT_EQ(covered, p.k_padded * g.out_h());
  }
}

TEST(PlanWorkloads, CoverTheLayer) {
  for (const LayerSpec& spec : StandardLayers()) {
    for (const Target* t : AllTargets()) {
      for (SplitStrategy s : {SplitStrategy::kAuto, SplitStrategy::kSok, SplitStrategy::kSoh}) {
        for (bool sparse_out : {false, true}) {
          SCOPED_TRACE(spec.name + " on " + t->name + " " + SplitStrategyName(s) +
                       (sparse_out ? " sparse out" : ""));
          NceOp op = MakeOp(spec.h, spec.w, spec.c, spec.k, spec.ky);
          PlanOptions o;
          o.split = s;
          o.output_sparse = sparse_out;
          DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(op, *t, o, op.g.taps() / 3));
          ExpectCoverage(p);
        }
      }
    }
  }
}

// Generated layers, both targets, every split and rule, sparse output: the tiles cover the layer,
// and the tiling obeys its rule. Seed: NPU37XX channel splits equal powers of two, NPU40XX equal.
// Compiler: each tile's workloads all but the last equal, every one fitting an SE (NPU37XX: a
// power of two), no padding unless the split pads nothing.
TEST(PlanSplit, SplitRulesGenerated) {
  const uint64_t base = BaseSeed(4242);
  for (uint64_t i = 0; i < 120; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE(SeedTrace(seed));
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&](int64_t n) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return static_cast<int64_t>(x % static_cast<uint64_t>(n));
    };
    const Target& t = next(2) ? Npu40() : Npu37();
    const NceOp op = MakeOp(2 + next(14), 2 + next(14), 16 * (1 + next(4)), 16 * (2 + next(40)),
                             next(2) ? 3 : 1);
    PlanOptions o;
    o.output_sparse = true;
    o.split = std::vector<SplitStrategy>{SplitStrategy::kAuto, SplitStrategy::kSok,
                                         SplitStrategy::kSoh, SplitStrategy::kClustering}[next(4)];
    o.split_rule = std::vector<SplitRule>{SplitRule::kAuto, SplitRule::kSeed,
                                          SplitRule::kCompiler}[next(3)];
    o.tiles = static_cast<int>(next(t.tiles + 1));
    StatusOr<Plan> p = PlanWith(op, t, o, op.g.taps() / 2);
    if (!p.ok()) {  // only rules may refuse: never a crash, always a named rule
      EXPECT_TRUE(Contains(p.status().message(), "split = ")) << p.status().message();
      continue;
    }
    ExpectCoverage(*p);
    EXPECT_NE(p->split_rule, SplitRule::kAuto);
    if (o.split_rule != SplitRule::kAuto) EXPECT_EQ(p->split_rule, o.split_rule);
    EXPECT_FALSE(p->split_rule_reason.empty());
    for (const TilePlan& tp : p->tiles) {
      std::vector<int64_t> wl;
      for (const Workload& w : p->workloads) {
        if (w.tile == tp.tile && w.row_begin == tp.row_begin) wl.push_back(w.k_end - w.k_begin);
      }
      const int64_t kc = tp.k_end - tp.k_begin;
      if (!p->options.output_sparse) continue;
      if (p->split_rule == SplitRule::kSeed) {
        ASSERT_EQ(wl.size(), 1u);
        if (p->split == SplitStrategy::kSok && t.sok_sparse_output_pow2) {
          EXPECT_EQ(kc & (kc - 1), 0) << kc;
        }
        if (p->split == SplitStrategy::kSok) EXPECT_EQ(kc, p->tiles[0].k_end - p->tiles[0].k_begin);
      } else {
        EXPECT_EQ(p->k_padded, op.g.k);
        for (size_t j = 0; j < wl.size(); ++j) {
          if (j + 1 < wl.size()) EXPECT_EQ(wl[j], wl[0]);
          EXPECT_EQ(wl[j] % 16, 0);
          if (t.se_size_power_of_two) EXPECT_EQ(wl[j] & (wl[j] - 1), 0) << wl[j];
        }
      }
    }
  }
}

TEST(PlanSplit, SegmentSizesGenerated) {
  for (int64_t size = 1; size <= 200; size += 7) {
    for (int64_t n = 1; n <= 6; ++n) {
      for (int64_t a : {1, 2, 16}) {
        for (bool uniform : {false, true}) {
          StatusOr<std::vector<int64_t>> s = SegmentSizes(size, n, a, uniform);
          if (!s.ok()) continue;
          int64_t sum = 0;
          for (int64_t v : *s) sum += v;
          EXPECT_EQ(sum, size);
          ASSERT_EQ(static_cast<int64_t>(s->size()), n);
          for (size_t i = 0; i + 1 < s->size(); ++i) {
            EXPECT_GE((*s)[i], (*s)[i + 1]);
            if (!uniform) EXPECT_EQ((*s)[i], (*s)[0]);
            if (!uniform) EXPECT_EQ((*s)[i] % a, 0);
          }
          if (uniform) EXPECT_LE(s->front() - s->back(), a);
        }
      }
    }
  }
}

// ---- Output ----

TEST(PlanOutput, JsonAndText) {
  const NceOp op = MakeOp(28, 28, 256, 320);
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  o.output_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(op, Npu37(), o, 102));  // 60% sparse
  const nlohmann::json j = PlanToJson(p);
  EXPECT_EQ(j["target"], "NPU37XX");
  EXPECT_EQ(j["weights_sparse"], true);
  EXPECT_EQ(j["reason"], p.weights.reason);
  EXPECT_TRUE(Contains(j["reason"].get<std::string>(), "sas: sparsity 60.16% >= 12.5%"));
  EXPECT_EQ(j["traffic"]["dense_bytes"], 320 * 256 + 320 * 16);
  EXPECT_EQ(j["traffic"]["sparse_bytes"], 320 * (112 + 32 + 16));
  EXPECT_EQ(j["split"], "SOK");
  EXPECT_EQ(j["k_padded"], 512);
  ASSERT_EQ(j["tiles"].size(), 2u);
  EXPECT_EQ(j["tiles"][1]["tile"], 1);
  EXPECT_EQ(j["tiles"][1]["k_begin"], 256);
  EXPECT_EQ(j["tiles"][1]["k_end"], 512);
  EXPECT_EQ(j["tiles"][1]["row_begin"], 0);
  EXPECT_EQ(j["tiles"][1]["row_end"], 28);
  ASSERT_EQ(j["workloads"].size(), p.workloads.size());
  for (const char* key : {"tile", "mpe_mode", "k_begin", "k_end", "row_begin", "row_end",
                          "col_begin", "col_end", "cycles"}) {
    EXPECT_TRUE(j["workloads"][0].contains(key)) << key;
  }
  EXPECT_EQ(j["workloads"][0]["mpe_mode"], MpeModeName(p.workloads[0].mpe_mode));
  EXPECT_EQ(j["cycles"], p.cycles);

  const std::string text = PlanToText(p);
  EXPECT_TRUE(Contains(text, "on NPU37XX (VPU2.7)")) << text;
  EXPECT_TRUE(Contains(text, p.weights.reason)) << text;
  EXPECT_TRUE(Contains(text, "split: SOK over 2 tiles, K=320 padded to 512")) << text;
  EXPECT_TRUE(Contains(text, "note: K=320 padded to 512")) << text;
  EXPECT_TRUE(Contains(text, "tile 1: k [256, 512)")) << text;
}

// ---- SE pointers: the table and map in CMX, the source rows as the input ----

// A 2x upsampling of a [4, 3, 32] source: virtual [8, 6, 32], se_size 16.
PlanSe Upsample2x() {
  PlanSe se;
  se.op = "upsample_nearest";
  se.description = "upsample_nearest fy=2 fx=2";
  se.se_size = 16;
  se.source_h = 4;
  se.source_w = 3;
  se.table_bytes = 8 * 6 * 2 * 4;
  se.map_bytes = ActivationMapBytes(8 * 6 * 32);
  for (int64_t y = 0; y < 8; ++y) {
    se.source_row_begin.push_back(y / 2);
    se.source_row_end.push_back(y / 2 + 1);
  }
  return se;
}

TEST(PlanSe, CountsTheTableMapAndSourceRowsInCmx) {
  const NceOp op = MakeOp(8, 6, 32, 32, 3);
  PlanOptions o;
  o.split = SplitStrategy::kSoh;
  o.tiles = 3;  // the 4 source rows allow at most 4 SOH tiles (isSOHSupportedByDPU)
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plain, PlanWith(op, Npu40(), o));
  o.se = Upsample2x();
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanWith(op, Npu40(), o));
  EXPECT_EQ(p.input_se_size, 16);
  ASSERT_EQ(p.tiles.size(), plain.tiles.size());
  ASSERT_GT(p.tiles.size(), 1u);
  for (size_t i = 0; i < p.tiles.size(); ++i) {
    const TilePlan& t = p.tiles[i];
    const int64_t rows = t.in_row_end - t.in_row_begin;
    EXPECT_EQ(plain.tiles[i].se_table_bytes, 0);
    EXPECT_EQ(plain.tiles[i].input_bytes, rows * 6 * 32);
    EXPECT_EQ(t.se_table_bytes, rows * 6 * 2 * 4) << i;
    EXPECT_EQ(t.input_map_bytes, ActivationMapBytes(rows * 6 * 32)) << i;
    // The source rows the window reads: virtual rows [a, b) read source rows [a / 2, (b + 1) / 2).
    const int64_t src_rows = (t.in_row_end + 1) / 2 - t.in_row_begin / 2;
    EXPECT_EQ(t.input_bytes, src_rows * 3 * 32) << i;
    EXPECT_EQ(t.cmx_bytes(), t.input_bytes + t.se_table_bytes + t.input_map_bytes +
                                 t.weight_bytes + t.output_bytes);
    EXPECT_EQ(t.cmx_bytes() - plain.tiles[i].cmx_bytes(),
              t.input_bytes + t.se_table_bytes + t.input_map_bytes - plain.tiles[i].input_bytes);
  }
  for (const Workload& w : p.workloads) {
    const int64_t rows = w.in_row_end - w.in_row_begin;
    EXPECT_EQ(w.input_bytes, ((w.in_row_end + 1) / 2 - w.in_row_begin / 2) * 3 * 32 +
                                 rows * 6 * 2 * 4 + ActivationMapBytes(rows * 6 * 32));
  }
  // Six tiles for 4 source rows: refused with the compiler's rule.
  PlanOptions six = o;
  six.tiles = 6;
  StatusOr<Plan> bad = PlanWith(op, Npu40(), six);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status().message(), "isSOHSupportedByDPU")) << bad.status().message();
  // Without the row ranges the virtual rows are counted.
  o.se.source_row_begin.clear();
  o.se.source_row_end.clear();
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan v, PlanWith(op, Npu40(), o));
  EXPECT_EQ(v.tiles[0].input_bytes, plain.tiles[0].input_bytes);
  // Rows of inserted zeros read nothing.
  o.se = Upsample2x();
  for (int64_t y = 0; y < 8; ++y) o.se.source_row_end[y] = o.se.source_row_begin[y];
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan z, PlanWith(op, Npu40(), o));
  EXPECT_EQ(z.tiles[0].input_bytes, 0);

  const nlohmann::json j = PlanToJson(p);
  EXPECT_EQ(j["se"]["op"], "upsample_nearest");
  EXPECT_EQ(j["se"]["table_bytes"], 384);
  EXPECT_EQ(j["se"]["table_entries"], 96);
  EXPECT_EQ(j["se"]["map_bytes"], 192);
  EXPECT_EQ(j["se"]["source"], (std::vector<int64_t>{4, 3, 32}));
  EXPECT_EQ(j["se"]["virtual"], (std::vector<int64_t>{8, 6, 32}));
  EXPECT_EQ(j["tiles"][0]["se_table_bytes"], p.tiles[0].se_table_bytes);
  EXPECT_EQ(j["tiles"][0]["cmx_bytes"], p.tiles[0].cmx_bytes());
  EXPECT_FALSE(PlanToJson(plain).contains("se"));
  const std::string text = PlanToText(p);
  EXPECT_TRUE(Contains(text, "se: upsample_nearest fy=2 fx=2\n    SE table 384 bytes (96 pointers "
                             "x 4) + input map 192 bytes over the virtual input 8x6x32 (source "
                             "4x3x32)")) << text;
  EXPECT_TRUE(Contains(text, " + SE table " + std::to_string(p.tiles[0].se_table_bytes) +
                                 " + map " + std::to_string(p.tiles[0].input_map_bytes) +
                                 " + weights ")) << text;
  EXPECT_FALSE(Contains(PlanToText(plain), "SE table")) << text;
}

TEST(PlanSe, TheAccountingMustDescribeTheVirtualInput) {
  const NceOp op = MakeOp(8, 6, 32, 32, 3);
  struct Case {
    std::function<void(PlanOptions&)> edit;
    const char* error;
    const Target* target;
  };
  const Case cases[] = {
      {[](PlanOptions& o) { o.se.table_bytes = 100; },
       "se.table_bytes = 100: must be 4 * H * W * C / se_size = 384 for the virtual input 8x6x32",
       &Npu40()},
      {[](PlanOptions& o) { o.se.map_bytes = 100; },
       "se.map_bytes = 100: must be align16(ceil(H * W * C / 8)) = 192", &Npu40()},
      {[](PlanOptions& o) { o.input_se_size = 32; },
       "input se_size = 32: differs from se.se_size = 16", &Npu40()},
      {[](PlanOptions& o) { o.se.se_size = 48; },
       "se.se_size = 48 on NPU37XX: this target needs a power-of-two storage-element size",
       &Npu37()},
      {[](PlanOptions& o) { o.se.se_size = 0; }, "se.se_size = 0 on NPU40XX", &Npu40()},
      {[](PlanOptions& o) { o.se.source_row_end.pop_back(); },
       "se.source_row_begin/end: 8/7 entries, need one per virtual row (H = 8)", &Npu40()},
      {[](PlanOptions& o) { o.se.source_row_end[2] = 5; },
       "se.source_row_begin/end[2]: rows [1, 5) must be a range inside [0, source_h = 4]",
       &Npu40()},
      {[](PlanOptions& o) { o.se.source_w = 0; }, "se.source: 4x0: the source needs", &Npu40()},
  };
  for (const Case& c : cases) {
    PlanOptions o;
    o.se = Upsample2x();
    c.edit(o);
    StatusOr<Plan> p = PlanWith(op, *c.target, o);
    ASSERT_FALSE(p.ok()) << c.error;
    EXPECT_TRUE(Contains(p.status().message(), c.error)) << p.status().message();
  }
}

// ---- Slices run on the reference and reassemble to the whole layer ----

Tensor RunDense(const NceLayer& layer, const StorageOptions& s, const Target& t) {
  StatusOr<DpuTask> task = LowerLayer(layer, s, t);
  EXPECT_TRUE(task.ok()) << task.status().ToString();
  if (!task.ok()) return Tensor();
  StatusOr<DpuOutput> out = RunReference(*task, t);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  if (!out.ok()) return Tensor();
  StatusOr<Tensor> dense = DenseOutput(*out, layer.op.ppe.out_zp);
  EXPECT_TRUE(dense.ok()) << dense.status().ToString();
  return dense.ok() ? *dense : Tensor();
}

// Copies the real channels of a slice's output [rows, OW, kc] into the whole output.
void Place(const Tensor& part, int64_t k_begin, int64_t row_begin, int64_t k, Tensor* whole) {
  const int64_t eb = DTypeBytes(part.dtype);
  const int64_t rows = part.shape[0], ow = part.shape[1], kc = part.shape[2];
  const int64_t real = std::min(kc, k - k_begin);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t x = 0; x < ow; ++x) {
      std::memcpy(whole->bytes.data() + (((row_begin + r) * ow + x) * k + k_begin) * eb,
                  part.bytes.data() + ((r * ow + x) * kc) * eb, static_cast<size_t>(real * eb));
    }
  }
}

struct SliceCase {
  LayerSpec spec;
  const Target* target;
  PlanOptions options;
};

TEST(PlanSlices, ReassembleToTheWholeLayer) {
  std::vector<SliceCase> cases;
  auto add = [&](LayerSpec s, const Target& t, SplitStrategy split, bool sparse,
                 WeightHeuristic h = WeightHeuristic::kSas) {
    PlanOptions o;
    o.split = split;
    o.input_sparse = o.output_sparse = sparse;
    o.heuristic = h;
    o.workloads_per_tile = 2;
    cases.push_back({s, &t, o});
  };
  LayerSpec conv3;
  conv3.name = "conv3";
  conv3.h = 9;
  conv3.w = 7;
  conv3.c = 32;
  conv3.k = 48;
  conv3.ky = conv3.kx = 3;
  conv3.weight_sparsity = 0.6;
  conv3.input_sparsity = 0.4;
  LayerSpec strided = conv3;
  strided.name = "strided";
  strided.h = 11;
  strided.stride = 2;
  strided.pad = 2;
  strided.ky = strided.kx = 5;
  strided.k = 64;
  LayerSpec k320;  // the seed's channel count on a tiny image
  k320.name = "k320";
  k320.h = k320.w = 3;
  k320.c = 16;
  k320.k = 320;
  k320.weight_sparsity = 0.6;
  k320.input_sparsity = 0.4;
  LayerSpec tall = conv3;  // enough rows for several workloads per tile
  tall.name = "tall";
  tall.h = 40;
  tall.w = 5;
  tall.c = 16;
  tall.k = 32;
  LayerSpec fp = conv3;
  fp.name = "fp16";
  fp.in_dtype = fp.w_dtype = fp.out_dtype = DType::kFP16;
  for (const Target* t : AllTargets()) {
    for (SplitStrategy s : {SplitStrategy::kSok, SplitStrategy::kSoh, SplitStrategy::kAuto}) {
      add(conv3, *t, s, false);
      add(conv3, *t, s, true, WeightHeuristic::kSparse);
      add(strided, *t, s, true, WeightHeuristic::kSparse);
      add(fp, *t, s, false, WeightHeuristic::kSparse);
      add(tall, *t, s, true, WeightHeuristic::kSparse);
    }
    add(k320, *t, SplitStrategy::kSok, true, WeightHeuristic::kSparse);
    add(k320, *t, SplitStrategy::kSok, false);
    add(conv3, *t, SplitStrategy::kClustering, true);
  }
  const uint64_t base = BaseSeed(7);
  int padded_plans = 0, multi_workload_plans = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const SliceCase& c = cases[i];
    const uint64_t seed = base + i;
    SCOPED_TRACE(c.spec.name + " on " + c.target->name + " " + SplitStrategyName(c.options.split) +
                 (c.options.output_sparse ? " sparse" : " dense") + " " + SeedTrace(seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(c.spec, seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, *c.target, c.options));
    if (c.options.input_sparse) {
      EXPECT_GT(plan.input_sparsity, 0.2);
    }
    padded_plans += plan.k_padded > layer.op.g.k;
    multi_workload_plans += plan.workloads.size() > plan.tiles.size();
    const Tensor whole = RunDense(layer, StorageOptions(), *c.target);
    const NceGeometry& g = layer.op.g;
    Tensor by_tiles(whole.dtype, whole.shape), by_workloads(whole.dtype, whole.shape);
    for (const TilePlan& t : plan.tiles) {
      DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer part,
                                  SliceLayer(layer, t.k_begin, t.k_end, t.row_begin, t.row_end));
      EXPECT_EQ(part.op.g.h, t.in_row_end - t.in_row_begin);
      Place(RunDense(part, TileStorage(plan, t), *c.target), t.k_begin, t.row_begin, g.k,
            &by_tiles);
    }
    for (const Workload& w : plan.workloads) {
      DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer part,
                                  SliceLayer(layer, w.k_begin, w.k_end, w.row_begin, w.row_end));
      EXPECT_EQ(part.op.g.h, w.in_row_end - w.in_row_begin);
      Place(RunDense(part, StorageOptions(), *c.target), w.k_begin, w.row_begin, g.k,
            &by_workloads);
    }
    EXPECT_EQ(FirstDifference(by_tiles, whole), "");
    EXPECT_EQ(FirstDifference(by_workloads, whole), "");
  }
  // The sweep reached padded channels and tiles cut into several workloads.
  EXPECT_GT(padded_plans, 0);
  EXPECT_GT(multi_workload_plans, 0);
}

TEST(PlanSlices, PaddingChannelsAndBadRanges) {
  LayerSpec spec;
  spec.name = "pad";
  spec.h = spec.w = 5;
  spec.c = 16;
  spec.k = 48;
  spec.ky = spec.kx = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 3));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer part, SliceLayer(layer, 32, 64, 1, 4));
  EXPECT_EQ(part.op.g.k, 32);
  EXPECT_EQ(part.op.g.h, 5);  // rows 0..4 feed output rows 1..3 with no padding
  EXPECT_EQ(part.op.g.pad_top, 0);
  EXPECT_EQ(part.op.g.pad_bottom, 0);
  // Channels 48..63 are padding: zero-point weights and zero requantisation.
  const int64_t taps = layer.op.g.taps();
  for (int64_t i = 16 * taps; i < 32 * taps; ++i) {
    ASSERT_EQ(LoadInt(part.weights.dtype, part.weights.bytes.data(), i), layer.op.w_zp);
  }
  EXPECT_EQ(part.quant.mult[16], 0);
  EXPECT_EQ(part.quant.mult[15], layer.quant.mult[47]);

  EXPECT_TRUE(Contains(SliceLayer(layer, 8, 32, 0, 5).status().message(), "multiples of 16"));
  EXPECT_TRUE(Contains(SliceLayer(layer, 48, 64, 0, 5).status().message(), "k_begin < K = 48"));
  EXPECT_TRUE(Contains(SliceLayer(layer, 0, 16, 3, 6).status().message(), "inside [0, OH = 5)"));
  spec.pad = 4;  // output row 0 reads input rows -4..-2: padding only
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer padded, GenerateLayer(spec, 3));
  EXPECT_TRUE(Contains(SliceLayer(padded, 0, 16, 0, 1).status().message(), "only padding rows"));
}

// Erratum E#102555 (sparsity_constraint.cpp areChannelsFitForSESize): fp16/bf16 sparse input
// with IC = 8192 cannot use SE size 4096; the planner refuses it, and its default avoids it.
TEST(PlanTest, InputSeSizeErratum) {
  LayerSpec spec;
  spec.name = "ic8192";
  spec.h = spec.w = 1;
  spec.c = 8192;
  spec.k = 16;
  spec.in_dtype = spec.w_dtype = spec.out_dtype = DType::kFP16;
  StatusOr<NceLayer> layer = GenerateLayer(spec, 2);
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
  for (const Target* t : AllTargets()) {
    PlanOptions po;
    po.input_sparse = true;
    po.input_se_size = 4096;
    const StatusOr<Plan> bad = PlanLayer(*layer, *t, po);
    ASSERT_FALSE(bad.ok()) << t->name;
    EXPECT_TRUE(Contains(bad.status().message(), "E#102555")) << bad.status().message();
    po.input_se_size = 0;
    const StatusOr<Plan> ok = PlanLayer(*layer, *t, po);
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_NE(ok->input_se_size, 4096) << t->name;
  }
}

}  // namespace
}  // namespace dpuemu

namespace dpuemu {
namespace {

// Channel-wise kinds: a slice over output channels takes the same input channels (the eltwise's
// second input too), padding channels at the zero point; no weights to decide on.
TEST(PlanKinds, ChannelwiseSlicesTakeTheirInputChannels) {
  LayerSpec spec;
  spec.kind = NceKind::kEltwise;
  spec.h = 5;
  spec.w = 3;
  spec.c = 48;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 7));
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer s, SliceLayer(layer, 32, 64, 1, 4));
  ASSERT_EQ(s.op.g.c, 32);
  ASSERT_EQ(s.op.g.k, 32);
  ASSERT_EQ(s.op.g.h, 3);
  for (int64_t y = 0; y < 3; ++y) {
    for (int64_t x = 0; x < 3; ++x) {
      for (int64_t c = 0; c < 32; ++c) {
        const int64_t si = (y * 3 + x) * 32 + c, li = ((y + 1) * 3 + x) * 48 + 32 + c;
        const bool pad = 32 + c >= 48;
        EXPECT_EQ(s.input.bytes[si], pad ? static_cast<uint8_t>(layer.op.in_zp) : layer.input.bytes[li]);
        EXPECT_EQ(s.input2.bytes[si],
                  pad ? static_cast<uint8_t>(layer.op.eltwise.in2_zp) : layer.input2.bytes[li]);
      }
    }
  }
  // One requantisation for all channels: padding repeats it.
  EXPECT_EQ(s.quant.mult.back(), layer.quant.mult.back());

  for (const Target* t : AllTargets()) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(WeightDecision d,
                                DecideWeightSparsity(layer.op, layer.weights, *t, WeightHeuristic::kSas));
    EXPECT_FALSE(d.sparse);
    EXPECT_EQ(d.reason, "eltwise has no weights");
    EXPECT_FALSE(DecideWeightSparsity(layer.op, layer.weights, *t, WeightHeuristic::kSparse).ok());
  }

  spec.kind = NceKind::kDwConv;
  spec.ky = spec.kx = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer dw, GenerateLayer(spec, 8));
  EXPECT_EQ(dw.weights.shape, (std::vector<int64_t>{48, 3, 3, 1}));
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer ds, SliceLayer(dw, 16, 32, 0, 5));
  EXPECT_EQ(ds.weights.shape, (std::vector<int64_t>{16, 3, 3, 1}));
  EXPECT_EQ(0, std::memcmp(ds.weights.bytes.data(), dw.weights.bytes.data() + 16 * 9, 16 * 9));
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      WeightDecision d, DecideWeightSparsity(dw.op, dw.weights, GetTarget(TargetId::kNPU40XX),
                                             WeightHeuristic::kSas));
  EXPECT_FALSE(d.sparse);
  EXPECT_NE(d.reason.find("NCEDepthConvolutionOp::sparsitySupport"), std::string::npos) << d.reason;
}

}  // namespace
}  // namespace dpuemu
namespace dpuemu {
namespace {

// ---- The cost heuristic (runtime/cost.h) ----

// 1234567 -> "1,234,567", as plans print counts.
std::string Grouped(int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3) s.insert(i, ",");
  return s;
}

// Plans op with nnz non-zeros per channel under heuristic h.
Plan PlanHeuristic(const NceOp& op, int64_t nnz, const Target& t, WeightHeuristic h) {
  PlanOptions o;
  o.heuristic = h;
  StatusOr<Plan> p = PlanOp(op, UniformWeights(op, nnz), t, o);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : Plan{};
}

// Checks that the cost plan is the faster of the dense and the sparse plans and names both.
void ExpectFasterOfBoth(const NceOp& op, int64_t nnz, const Target& t, bool want_sparse) {
  const Plan c = PlanHeuristic(op, nnz, t, WeightHeuristic::kCost);
  const Plan d = PlanHeuristic(op, nnz, t, WeightHeuristic::kDense);
  const Plan s = PlanHeuristic(op, nnz, t, WeightHeuristic::kSparse);
  EXPECT_EQ(c.weights.heuristic, WeightHeuristic::kCost);
  EXPECT_EQ(c.weights.sparse, want_sparse) << t.name << ": " << c.weights.reason;
  EXPECT_EQ(c.weights.sparse, s.cycles < d.cycles) << t.name << ": " << c.weights.reason;
  EXPECT_EQ(c.cycles, std::min(s.cycles, d.cycles));
  EXPECT_TRUE(Contains(c.weights.reason, Grouped(s.cycles) + " cycles with sparse weights"))
      << c.weights.reason;
  EXPECT_TRUE(Contains(c.weights.reason, "vs " + Grouped(d.cycles) + " dense")) << c.weights.reason;
  EXPECT_TRUE(Contains(c.weights.reason, "map + table")) << c.weights.reason;
}

TEST(CostHeuristic, SeedK320IsSparseLikeSas) {
  // The seed's K=320 layer (28x28x256 -> 320, 1x1) at 60% weight sparsity: sparse on both
  // targets, as sas decides; the split (160/160 on NPU37XX) is the same either way.
  const NceOp op = MakeOp(28, 28, 256, 320);
  for (const Target* t : AllTargets()) {
    ExpectFasterOfBoth(op, 102, *t, /*want_sparse=*/true);
    EXPECT_TRUE(PlanHeuristic(op, 102, *t, WeightHeuristic::kSas).weights.sparse);
  }
}

TEST(CostHeuristic, SeedKBelow64) {
  // A thin 1x1 layer with K=32 is bound by moving activations: sparse weights only add map
  // bytes, so cost keeps them dense, as the seed's K < 64 rule does.
  const NceOp thin = MakeOp(56, 56, 16, 32);
  for (const Target* t : AllTargets()) {
    ExpectFasterOfBoth(thin, 8, *t, /*want_sparse=*/false);
    EXPECT_FALSE(PlanHeuristic(thin, 8, *t, WeightHeuristic::kSas).weights.sparse);
  }
  // A 3x3 K=32 layer over 64 channels is MAC-bound: the model says sparse weights are faster
  // where the seed's rule of thumb keeps dense (why sas stays the default, README "Cost model").
  const NceOp conv3 = MakeOp(28, 28, 64, 32, 3);
  for (const Target* t : AllTargets()) {
    ExpectFasterOfBoth(conv3, 288, *t, /*want_sparse=*/true);
    const Plan sas = PlanHeuristic(conv3, 288, *t, WeightHeuristic::kSas);
    EXPECT_FALSE(sas.weights.sparse);
    EXPECT_TRUE(Contains(sas.weights.reason, "K=32 < 64")) << sas.weights.reason;
  }
}

TEST(CostHeuristic, PreconditionsKeepDenseAndTheDecisionAlone) {
  const NceOp op = MakeOp(8, 8, 32, 64, 3);
  // All weights zero: CanSparsifyWeights keeps them dense for every heuristic.
  const Plan zeros = PlanHeuristic(op, 0, Npu37(), WeightHeuristic::kCost);
  EXPECT_FALSE(zeros.weights.sparse);
  EXPECT_TRUE(Contains(zeros.weights.reason, "cost: ")) << zeros.weights.reason;
  // Alone, the decision costs the whole layer as one workload and names both estimates.
  const NceOp big = MakeOp(28, 28, 128, 128, 3);
  StatusOr<WeightDecision> d =
      DecideWeightSparsity(big, UniformWeights(big, 288), Npu40(), WeightHeuristic::kCost);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->sparse) << d->reason;
  EXPECT_TRUE(Contains(d->reason, "the layer as one workload")) << d->reason;
  EXPECT_TRUE(Contains(d->reason, "cycles with sparse weights")) << d->reason;
}

TEST(CostHeuristic, ExplainAndJsonCarryTheTerms) {
  const Plan p = PlanHeuristic(MakeOp(28, 28, 64, 64, 3), 288, Npu37(), WeightHeuristic::kCost);
  ASSERT_FALSE(p.workloads.empty());
  const std::string text = PlanToText(p, /*explain=*/true);
  EXPECT_TRUE(Contains(text, "cost: max(mac ")) << text;
  EXPECT_FALSE(Contains(PlanToText(p), "cost: max(mac "));
  const nlohmann::json j = PlanToJson(p);
  EXPECT_EQ(j["heuristic"], "cost");
  for (size_t i = 0; i < p.workloads.size(); ++i) {
    EXPECT_EQ(j["workloads"][i]["cost"]["cycles"], p.workloads[i].cycles);
    EXPECT_EQ(j["workloads"][i]["cycles"], p.workloads[i].cost.cycles);
  }
}

}  // namespace
}  // namespace dpuemu
