// Conformance of the per-tile golden set with the public NPU compiler (openvinotoolkit/npu_compiler):
// the weight-table relocation (src/vpux_compiler/src/dialect/const/attributes/
// relocate_weights_table.cpp, RelocateWeightsTableAttr::transform) on the concrete tables its LIT
// tests fold, and the relocation parameters patch_weights_table.cpp passes for SOK (segmented) and
// duplicated weights, which MakeTileGoldenSet's manifest must state the same way.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "hw/layer.h"
#include "runtime/execute.h"
#include "runtime/golden.h"
#include "runtime/plan.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

std::vector<int32_t> Flat(const std::vector<std::vector<int32_t>>& rows) {
  std::vector<int32_t> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

// tests/lit/NPU/dialect/const/passes/constant_folding.mlir, @RelocateFoldUnfusedConstantSingleCluster:
// weightPtrStep = 1, sparsityPtrStep = 2; weightsPtr=[10], sparsityPtr=15, offsets=[0]; and the
// SubView [2, 0, 0, 0] [2, 1, 1, 4] with channelOffset=2.
TEST(ConformanceGolden, RelocateFoldUnfusedConstantSingleCluster) {
  const std::vector<std::vector<int32_t>> table = {
      {1, 2, 3, 3}, {2, 4, 4, 4}, {3, 6, 5, 5}, {4, 8, 6, 6}, {5, 10, 7, 7}};
  WeightsTableRelocation r;
  r.weights_ptr = {10};
  r.sparsity_ptr = 15;
  r.offsets = {0};
  DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> got, RelocateWeightsTable(Flat(table), r));
  EXPECT_EQ(got, Flat({{10, 15, 3, 3}, {11, 17, 4, 4}, {12, 19, 5, 5}, {13, 21, 6, 6},
                       {14, 23, 7, 7}}));
  r.channel_offset = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> sub,
                              RelocateWeightsTable(Flat({table[2], table[3]}), r));
  EXPECT_EQ(sub, Flat({{12, 19, 5, 5}, {13, 21, 6, 6}}));
}

// constant_folding.mlir, @RelocateFoldFusedConstantSingleCluster: a fused constant whose first
// weightsTableSize = 48 bytes (3 entries) are the table; the rest is left as it is.
TEST(ConformanceGolden, RelocateFoldFusedConstantSingleCluster) {
  std::vector<int32_t> fused = {1, 2, 1, 2, 2, 4, 2, 3, 3, 6, 4, 5, 0, 0, 0, 0};
  WeightsTableRelocation r;
  r.weights_ptr = {10};
  r.sparsity_ptr = 15;
  r.offsets = {0};
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const std::vector<int32_t> table,
      RelocateWeightsTable(std::vector<int32_t>(fused.begin(), fused.begin() + 48 / 4), r));
  std::copy(table.begin(), table.end(), fused.begin());
  EXPECT_EQ(fused, (std::vector<int32_t>{10, 15, 1, 2, 11, 17, 2, 3, 12, 19, 4, 5, 0, 0, 0, 0}));
}

// constant_folding.mlir, @RelocateFoldUnfusedMultiCluster: segmented over two clusters
// (offsets=[0, 2]): the pointers restart at each cluster's weightsPtr and at sparsityPtr.
TEST(ConformanceGolden, RelocateFoldUnfusedMultiCluster) {
  const std::vector<std::vector<int32_t>> table = {
      {1, 2, 3, 3}, {2, 4, 4, 4}, {3, 6, 5, 5}, {4, 8, 6, 6}};
  WeightsTableRelocation r;
  r.weights_ptr = {10, 20};
  r.sparsity_ptr = 5;
  r.offsets = {0, 2};
  DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> got, RelocateWeightsTable(Flat(table), r));
  EXPECT_EQ(got, Flat({{10, 5, 3, 3}, {11, 7, 4, 4}, {20, 5, 5, 5}, {21, 7, 6, 6}}));
  WeightsTableRelocation second;
  second.weights_ptr = {20};
  second.sparsity_ptr = 5;
  second.offsets = {0};
  DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> sub,
                              RelocateWeightsTable(Flat({table[2], table[3]}), second));
  EXPECT_EQ(sub, Flat({{20, 5, 5, 5}, {21, 7, 6, 6}}));
}

// Compressed weights: tests/lit/NPU/dialect/VPUIP/passes/compute_task_stripping_40XX+.mlir gives
// the attribute weightsPtr=[832], sparsityPtr=2880, weightsElemBitSize=16, numElems = [512, 512,
// 0 x 14], alignment 16 (it states no folded values). By the transform, each channel's pointer
// is 832 plus the 16-byte-aligned sizes of the sets before it: 832, 1856, then 2880 for the
// empty sets; the dense sparsity pointer 0xFFFFFF is never relocated.
TEST(ConformanceGolden, RelocateCompressedWeightSets) {
  std::vector<int32_t> table;
  for (int k = 0; k < 16; ++k) {
    table.insert(table.end(), {0, k < 15 ? 128 * k : static_cast<int32_t>(0xFFFFFF), 7, 9});
  }
  WeightsTableRelocation r;
  r.weights_ptr = {832};
  r.sparsity_ptr = 2880;
  r.offsets = {0};
  r.elem_bits = 16;
  r.num_elems = {512, 512, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> got, RelocateWeightsTable(table, r));
  for (int k = 0; k < 16; ++k) {
    SCOPED_TRACE(k);
    EXPECT_EQ(got[4 * k], k == 0 ? 832 : k == 1 ? 1856 : 2880);
    EXPECT_EQ(got[4 * k + 1], k < 15 ? 2880 + 128 * k : 0xFFFFFF);
    EXPECT_EQ(got[4 * k + 2], 7);
    EXPECT_EQ(got[4 * k + 3], 9);
  }
  // An odd-sized set is rounded up to the alignment: 3 fp16 values = 6 bytes -> 16.
  r.num_elems[0] = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int32_t> odd, RelocateWeightsTable(table, r));
  EXPECT_EQ(odd[4], 832 + 16);
}

TEST(ConformanceGolden, RelocationErrorsNameTheField) {
  WeightsTableRelocation r;
  r.weights_ptr = {10, 20};
  r.offsets = {0};
  StatusOr<std::vector<int32_t>> s = RelocateWeightsTable(std::vector<int32_t>(8), r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("weights_ptr (2) and offsets (1)"), std::string::npos);
  r.offsets = {0, 1};
  s = RelocateWeightsTable(std::vector<int32_t>(7), r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("4 int32 words per output channel"), std::string::npos);
  r.num_elems = {1};
  s = RelocateWeightsTable(std::vector<int32_t>(8), r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("num_elems has 1 entries for 2"), std::string::npos);
}

// tests/lit/NPU/dialect/VPUIP/passes/patch_weight_table.mlir: @PatchWeightTableWithDistributed
// BufferWithSOKAndWeightsOnly relocates a 32-channel table SEGMENTED over 2 clusters with
// weightsPtr=[W, W], sparsityPtr=16777215, offsets=[0, 16]; @PatchWeightTableWithDistributedBuffer
// WithSOHAndWeightsOnly a 16-channel DUPLICATED one with weightsPtr=[W, W], offsets=[0, 0]. The
// per-tile golden set of the same splits states the same parameters, and every tile's table is
// its segment of the table relocated that way.
TEST(ConformanceGolden, TileGoldenRelocationParametersAsPatchWeightsTable) {
  struct Case {
    SplitStrategy split;
    int64_t k;
    std::vector<int64_t> offsets;
  };
  for (const Case& c : {Case{SplitStrategy::kSok, 32, {0, 16}}, Case{SplitStrategy::kSoh, 16, {0, 0}}}) {
    SCOPED_TRACE(SplitStrategyName(c.split));
    LayerSpec spec;
    spec.name = "patch_weight_table";
    spec.h = spec.w = 16;
    spec.c = 16;
    spec.k = c.k;
    spec.ky = spec.kx = 3;
    spec.in_dtype = spec.w_dtype = spec.out_dtype = DType::kFP16;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 16));
    const Target& npu = GetTarget(TargetId::kNPU37XX);  // 2 clusters, as the LIT tests
    PlanOptions po;
    po.split = c.split;
    po.heuristic = WeightHeuristic::kDense;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, npu, po));
    ASSERT_EQ(plan.tiles.size(), 2u);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run, RunLayer(layer, plan, npu, {}));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet set, MakeTileGoldenSet(layer, plan, run.output));
    const nlohmann::ordered_json& rel = set.manifest["relocation"];
    int64_t w = -1;
    for (const auto& b : set.manifest["cmx"]["layout"]) {
      if (b["buffer"] == "weights") w = b["offset"];
    }
    EXPECT_EQ(rel["weights_ptr"], nlohmann::ordered_json({w, w}));
    EXPECT_EQ(rel["sparsity_ptr"], 16777215);
    EXPECT_EQ(rel["offsets"], nlohmann::ordered_json(c.offsets));
    // Dense fp16 weights: channel k of a tile at W + k * KY*KX*C*2 from its first channel.
    for (const GoldenFile& f : set.files) {
      if (f.name.find("weight_table.bin") == std::string::npos) continue;
      const auto& wo = f.info["weight_offsets"];
      for (size_t k = 0; k < wo.size(); ++k) {
        EXPECT_EQ(wo[k].get<int64_t>(), w + static_cast<int64_t>(k) * 9 * 16 * 2) << f.name;
      }
    }
  }
}

}  // namespace
}  // namespace dpuemu
