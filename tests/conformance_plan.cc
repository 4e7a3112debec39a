// Conformance of the planner's decisions with the public NPU compiler (openvinotoolkit/npu_compiler,
// paths under src/vpux_compiler/ unless they start with tests/): MPE mode, the cmx weight-sparsity
// heuristic, cluster segmentation and the workloads of an op with sparse output. Each test names
// the file whose concrete values it checks.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/execute.h"
#include "runtime/plan.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

using Sizes = std::vector<int64_t>;
using Ranges = std::vector<std::pair<int64_t, int64_t>>;

// A generated u8 x i8 layer: h x w x c -> k, kernel x kernel, "same" padding, `stride`.
NceLayer Layer(int64_t h, int64_t w, int64_t c, int64_t k, int64_t kernel = 1,
                int64_t stride = 1) {
  LayerSpec spec;
  spec.name = "conformance";
  spec.h = h;
  spec.w = w;
  spec.c = c;
  spec.k = k;
  spec.ky = spec.kx = kernel;
  spec.stride = stride;
  spec.weight_sparsity = 0.5;
  StatusOr<NceLayer> l = GenerateLayer(spec, 77);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? *l : NceLayer{};
}

// The plan must also run: byte-identical to the reference DPU on the whole layer as one task.
void ExpectRunsLikeTheReference(const NceLayer& layer, const Plan& plan, const Target& t) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayer(layer, StorageOptions{}, t));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput out, RunReference(task, t));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, DenseOutput(out, layer.op.ppe.out_zp));
  RunOptions ro;
  ro.threads = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, RunLayer(layer, plan, t, ro));
  EXPECT_EQ(FirstDifference(expected, r.output), "");
}

Ranges WorkloadK(const Plan& p, int tile) {
  Ranges r;
  for (const Workload& w : p.workloads) {
    if (w.tile == tile && w.row_begin == p.tiles[size_t(tile)].row_begin) {
      r.push_back({w.k_begin, w.k_end});
    }
  }
  return r;
}

// ---- MPE mode: getMpeModeForConv (NPU37XX/dialect/VPU/impl/nce_op_interfaces.cpp) ----

// tests/lit/NPU/dialect/VPU/passes/split_nce_ops_onto_workloads_37XX_40XX.mlir: the workloads'
// modes for the output shapes [N, K, H, W] of @ConvRewriter (1x16x16x16), @ConvRewriterCUBOID_8x16
// (1x128x56x28), @ConvRewriterCUBOID_4x16 (1x256x8x8), and the per-cluster shapes of its SOH
// cases (1x64x4x16: 16x16 and 8x16 tie at 128 reads, the lower mode wins; 1x32x56x112; 1x64x10x20).
TEST(ConformancePlan, MpeModeSplitNceOpsOntoWorkloadsLit) {
  EXPECT_EQ(MpeModeForConv(16, 16, 16), MpeMode::kCuboid16x16);
  EXPECT_EQ(MpeModeForConv(56, 28, 128), MpeMode::kCuboid8x16);
  EXPECT_EQ(MpeModeForConv(8, 8, 256), MpeMode::kCuboid4x16);
  EXPECT_EQ(MpeModeForConv(4, 16, 64), MpeMode::kCuboid16x16);
  EXPECT_TRUE(Contains(MpeModeReason(4, 16, 64), "16x16 128 8x16 128 4x16 192 -> CUBOID_16x16"))
      << MpeModeReason(4, 16, 64);
  EXPECT_EQ(MpeModeForConv(56, 112, 32), MpeMode::kCuboid16x16);
  EXPECT_EQ(MpeModeForConv(10, 20, 64), MpeMode::kCuboid16x16);
  // Through the planner, on one tile of each target: every workload runs in that mode.
  struct Case {
    int64_t h, w, k;
    MpeMode mode;
  };
  for (const Case& c : {Case{16, 16, 16, MpeMode::kCuboid16x16},
                        Case{56, 28, 128, MpeMode::kCuboid8x16},
                        Case{8, 8, 256, MpeMode::kCuboid4x16}}) {
    for (const Target* t : AllTargets()) {
      const NceLayer layer = Layer(c.h, c.w, 16, c.k);
      PlanOptions o;
      o.tiles = 1;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanLayer(layer, *t, o));
      EXPECT_EQ(p.tiles[0].mpe_mode, c.mode) << t->name << " " << p.tiles[0].mpe_reason;
      EXPECT_TRUE(Contains(p.tiles[0].mpe_reason, "split_nce_ops_onto_workloads.cpp"));
      for (const Workload& w : p.workloads) EXPECT_EQ(w.mpe_mode, c.mode);
    }
  }
}

// ---- cmx heuristic: sparsity_strategy.hpp / .cpp, getTotalCMXSize (VPU/IR/attributes.cpp) ----

// CMX_BASED_STRATEGY_DEFAULT_INTERVALS {0: never, 0.05: 30%, 0.5: 20%} plus {1.0: never}, looked up
// with lower_bound then one step back, over getTotalCMXSize = workspace - 2 x (512 + 1024 + 256).
TEST(ConformancePlan, CmxHeuristicIntervalsSparsityStrategy) {
  EXPECT_EQ(CmxHeuristicBytes(Npu37()), 1936 * 1024 - 3584);  // VPUX37XX_CMX_WORKSPACE_SIZE
  EXPECT_EQ(CmxHeuristicBytes(Npu40()), 1440 * 1024 - 3584);  // VPUX40XX_CMX_WORKSPACE_SIZE
  // NPU40XX: 1,470,976 bytes. 1x1 i8 weights of 208 bytes per channel; 160 non-zeros pack to
  // 160 bytes: effective sparsity 3 / 13 = 23.08%.
  auto decide = [](int64_t k) {
    NceOp op;
    op.g.h = op.g.w = 1;
    op.g.c = 208;
    op.g.k = k;
    Tensor w(DType::kI8, {k, 1, 1, 208});
    for (int64_t ch = 0; ch < k; ++ch) {
      for (int64_t i = 0; i < 160; ++i) StoreInt(DType::kI8, w.bytes.data(), ch * 208 + i, 1);
    }
    StatusOr<WeightDecision> d = DecideWeightSparsity(op, w, Npu40(), WeightHeuristic::kCmx);
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    return d.ok() ? *d : WeightDecision{};
  };
  // Exactly 50% (3536 channels = 735,488 bytes): lower_bound finds the 0.5 key, one step back is
  // the 5% interval, which needs 30%: dense.
  WeightDecision d = decide(3536);
  EXPECT_FALSE(d.sparse) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "(5-50%]")) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "1,470,976-byte CMX")) << d.reason;
  // Just above 50%: the 20% interval: sparse.
  d = decide(3552);
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "(50-100%]")) << d.reason;
  // Exactly 100% still needs 20%; above it sparsity is disabled.
  d = decide(7072);
  EXPECT_TRUE(d.sparse) << d.reason;
  d = decide(7088);
  EXPECT_FALSE(d.sparse) << d.reason;
  EXPECT_TRUE(Contains(d.reason, "(> 100%): never")) << d.reason;
}

// ---- Cluster segmentation: splitSegmentedShape (VPU/IR/attributes.cpp) ----

// tests/unit/vpux_compiler/dialect/VPU/distributed_tensor.cpp: SegmentedDistribution (H=13 over 4
// clusters -> 4, 4, 4, 1 at 0, 4, 8, 12) and SegmentedUniformDistribution (-> 4, 3, 3, 3 at 0, 4, 7,
// 10); the comments of distributed_tensor_utils.cpp getNumberOfClustersForSOKToAvoidAlignment (80
// channels on 4 clusters use 3: [32, 32, 16]; uniform 96 on 4: [32, 32, 16, 16]) and of
// getNumberOfClustersForSpatialDim (uniform height 6 on 4: [2, 2, 1, 1]).
TEST(ConformancePlan, SegmentationDistributedTensorUnitTests) {
  EXPECT_EQ(*SegmentSizes(13, 4, 1, false), (Sizes{4, 4, 4, 1}));
  EXPECT_EQ(*SegmentSizes(13, 4, 1, true), (Sizes{4, 3, 3, 3}));
  EXPECT_EQ(SokClusters(80, 4, false), 3);
  EXPECT_EQ(*SegmentSizes(80, 3, 16, false), (Sizes{32, 32, 16}));
  EXPECT_FALSE(SegmentSizes(80, 4, 16, false).ok());  // 3 x 32 leave nothing
  EXPECT_EQ(SokClusters(96, 4, true), 4);
  EXPECT_EQ(*SegmentSizes(96, 4, 16, true), (Sizes{32, 32, 16, 16}));
  EXPECT_EQ(*SegmentSizes(6, 4, 1, true), (Sizes{2, 2, 1, 1}));
  // The planner segments SOK channels that way: 80 channels on NPU37XX's 2 tiles: 48 + 32.
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p37, PlanLayer(Layer(8, 8, 16, 80), Npu37(), o));
  EXPECT_EQ(p37.tiles[0].k_end, 48);
  EXPECT_EQ(p37.tiles[1].k_end, 80);
  o.tiles = 4;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p40, PlanLayer(Layer(8, 8, 16, 96), Npu40(), o));
  Ranges k40;
  for (const TilePlan& t : p40.tiles) k40.push_back({t.k_begin, t.k_end});
  EXPECT_EQ(k40, (Ranges{{0, 32}, {32, 64}, {64, 80}, {80, 96}}));
}

// distributed_tensor.cpp, OverlappedUniformDistribution3x3KernelStride1 and ...Stride2: the memory
// (input) rows of SOH clusters for a 3x3 pad-1 kernel over H=13 stride 1 ([5, 5, 5, 4] at 0, 3, 6, 9)
// and H=26 stride 2 ([8, 7, 7, 7] at 0, 7, 13, 19), uniform segments as on NPU40XX.
TEST(ConformancePlan, SohInputRowsDistributedTensorUnitTests) {
  PlanOptions o;
  o.split = SplitStrategy::kSoh;
  o.tiles = 4;
  auto in_rows = [](const Plan& p) {
    Ranges r;
    for (const TilePlan& t : p.tiles) r.push_back({t.in_row_begin, t.in_row_end});
    return r;
  };
  const NceLayer s1 = Layer(13, 16, 16, 16, 3);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p1, PlanLayer(s1, Npu40(), o));
  EXPECT_EQ(in_rows(p1), (Ranges{{0, 5}, {3, 8}, {6, 11}, {9, 13}}));
  ExpectRunsLikeTheReference(s1, p1, Npu40());
  const NceLayer s2 = Layer(26, 16, 16, 16, 3, 2);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p2, PlanLayer(s2, Npu40(), o));
  EXPECT_EQ(in_rows(p2), (Ranges{{0, 8}, {7, 14}, {13, 20}, {19, 26}}));
  ExpectRunsLikeTheReference(s2, p2, Npu40());
}

// ---- Workloads with sparse output: correct_nce_workloads.cpp (NPU37XX, NPU40XX) ----

// tests/lit/NPU/dialect/VPU/passes/correct_nce_workloads_37XX.mlir, @ConvLargeSparseOutput: a
// 1x384x37x37 sparse output in one workload becomes [256 at 0, 128 at 256] on NPU37XX;
// correct_nce_workloads_40XX+.mlir: unchanged on NPU40XX; correct_nce_workloads_37XX+.mlir
// @ConvLargeNoChange: a dense output keeps its 384-channel workload.
TEST(ConformancePlan, SparseOutputWorkloadsCorrectNceWorkloadsLit) {
  EXPECT_EQ(*SparseOutputWorkloadChannels({384}, Npu37()), (std::vector<Sizes>{{256, 128}}));
  EXPECT_EQ(*SparseOutputWorkloadChannels({384}, Npu40()), (std::vector<Sizes>{{384}}));
  const NceLayer layer = Layer(8, 8, 64, 384);
  PlanOptions o;
  o.tiles = 1;
  o.output_sparse = true;
  o.split_rule = SplitRule::kCompiler;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p37, PlanLayer(layer, Npu37(), o));
  EXPECT_EQ(WorkloadK(p37, 0), (Ranges{{0, 256}, {256, 384}}));
  ASSERT_FALSE(p37.notes.empty());
  EXPECT_TRUE(Contains(p37.notes.back(), "correct_nce_workloads.cpp")) << p37.notes.back();
  ExpectRunsLikeTheReference(layer, p37, Npu37());
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p40, PlanLayer(layer, Npu40(), o));
  EXPECT_EQ(WorkloadK(p40, 0), (Ranges{{0, 384}}));
  o.output_sparse = false;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan dense, PlanLayer(layer, Npu37(), o));
  EXPECT_EQ(WorkloadK(dense, 0), (Ranges{{0, 384}}));
}

// The documented examples of workload_splitter_base.cpp getSupportedChannels (256 channels over 6
// tiles as [48, 48, 48, 48, 48, 16]: supported [48, 16], nothing split) and of sparsity_utils.cpp
// shouldRemoveOutputSparsity (128 channels over 6 tiles are only segmented uniformly,
// [32, 32, 16, 16, 16, 16]: the SOK output sparsity is removed).
TEST(ConformancePlan, SparseOutputSokWorkloadSplitterAndRemoval) {
  EXPECT_EQ(*SparseOutputWorkloadChannels({48, 48, 48, 48, 48, 16}, Npu40()),
            (std::vector<Sizes>{{48}, {48}, {48}, {48}, {48}, {16}}));
  EXPECT_EQ(SokClusters(128, 6, true), 6);
  EXPECT_FALSE(SegmentSizes(128, 6, 16, false).ok());
  EXPECT_EQ(*SegmentSizes(128, 6, 16, true), (Sizes{32, 32, 16, 16, 16, 16}));
  const NceLayer layer = Layer(8, 8, 16, 128);
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  o.output_sparse = true;
  o.split_rule = SplitRule::kCompiler;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanLayer(layer, Npu40(), o));
  EXPECT_FALSE(p.options.output_sparse);
  EXPECT_EQ(p.tiles_used, 6);
  EXPECT_EQ(p.tiles[0].k_end, 32);
  bool named = false;
  for (const std::string& n : p.notes) named |= Contains(n, "shouldRemoveOutputSparsity");
  EXPECT_TRUE(named);
  ExpectRunsLikeTheReference(layer, p, Npu40());
  // auto keeps the requested sparse output: the seed's equal splits (128 = 4 x 32).
  o.split_rule = SplitRule::kAuto;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan a, PlanLayer(layer, Npu40(), o));
  EXPECT_TRUE(a.options.output_sparse);
  EXPECT_EQ(a.split_rule, SplitRule::kSeed) << a.split_rule_reason;
  EXPECT_TRUE(Contains(a.split_rule_reason, "output sparsity removed")) << a.split_rule_reason;
}

// The seed's K=320 case beside the compiler's: NPU37XX seed 256/256 (K padded to 512), compiler
// 160/160 clusters each run as 5 workloads of 32 (160 is no power of two; 32 divides it); NPU40XX
// 160/160 under both. auto takes the cheaper and names the other.
TEST(ConformancePlan, SeedK320BesideTheCompiler) {
  const NceLayer layer = Layer(28, 28, 256, 320);
  PlanOptions o;
  o.split = SplitStrategy::kSok;
  o.tiles = 2;
  o.output_sparse = true;
  o.split_rule = SplitRule::kSeed;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan seed, PlanLayer(layer, Npu37(), o));
  EXPECT_EQ(seed.k_padded, 512);
  EXPECT_EQ(WorkloadK(seed, 1), (Ranges{{256, 512}}));
  o.split_rule = SplitRule::kCompiler;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan comp, PlanLayer(layer, Npu37(), o));
  EXPECT_EQ(comp.k_padded, 320);
  EXPECT_EQ(WorkloadK(comp, 1),
            (Ranges{{160, 192}, {192, 224}, {224, 256}, {256, 288}, {288, 320}}));
  ExpectRunsLikeTheReference(layer, comp, Npu37());
  o.split_rule = SplitRule::kAuto;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan a, PlanLayer(layer, Npu37(), o));
  const Plan& cheaper = seed.cycles <= comp.cycles ? seed : comp;
  EXPECT_EQ(a.k_padded, cheaper.k_padded);
  EXPECT_EQ(a.cycles, cheaper.cycles);
  EXPECT_TRUE(Contains(a.split_rule_reason, "split_rule auto:")) << a.split_rule_reason;
  EXPECT_TRUE(Contains(a.split_rule_reason, seed.cycles <= comp.cycles ? "compiler's tiling"
                                                                       : "seed's tiling"))
      << a.split_rule_reason;
  for (SplitRule r : {SplitRule::kSeed, SplitRule::kCompiler}) {
    o.split_rule = r;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanLayer(layer, Npu40(), o));
    EXPECT_EQ(WorkloadK(p, 0), (Ranges{{0, 160}})) << SplitRuleName(r);
    EXPECT_EQ(WorkloadK(p, 1), (Ranges{{160, 320}})) << SplitRuleName(r);
  }
}

}  // namespace
}  // namespace dpuemu
