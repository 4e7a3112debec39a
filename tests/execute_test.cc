// The executor against the definition: every plan (split, storage, target) run on any number of
// threads gives the output of the whole layer lowered as one dense task on the reference DPU,
// byte for byte.
#include "runtime/execute.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/se_ops.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/plan.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

namespace dpuemu {
namespace {

// The definition: the whole layer as one dense task on the reference DPU.
StatusOr<Tensor> OneTaskReference(const NceLayer& layer, const Target& target) {
  DpuTask task;
  // Pads beyond kernel / 2 (one invocation's limit) read through an SE pad gather.
  DPUEMU_ASSIGN_OR_RETURN(task, LowerLayerForDpu(layer, StorageOptions{}, target));
  DpuOutput out;
  DPUEMU_ASSIGN_OR_RETURN(out, RunReference(task, target));
  return DenseOutput(out, layer.op.ppe.out_zp);
}

// Every executed item's rows x channels, summed: each real output written once.
int64_t CoveredOutputs(const RunResult& r, int64_t k) {
  int64_t n = 0;
  for (const WorkloadReport& w : r.workloads) {
    n += (w.row_end - w.row_begin) * (std::min(w.k_end, k) - w.k_begin);
  }
  return n;
}

struct Types {
  DType in, w, out;
};
const Types kTypes[] = {
    {DType::kU8, DType::kI8, DType::kU8},       {DType::kI8, DType::kU8, DType::kI8},
    {DType::kU8, DType::kI8, DType::kI32},      {DType::kFP16, DType::kFP16, DType::kFP16},
    {DType::kBF16, DType::kBF16, DType::kBF16}, {DType::kFP16, DType::kFP16, DType::kFP32},
};

TEST(ExecuteTest, EverySplitAndThreadCountMatchesOneTaskReference) {
  const uint64_t base = BaseSeed(9100);
  const SplitStrategy splits[] = {SplitStrategy::kClustering, SplitStrategy::kSok,
                                  SplitStrategy::kSoh, SplitStrategy::kAuto};
  const double sparsities[] = {0.0, 0.5, 0.9};
  std::map<SplitStrategy, int> ran;  // plans run, per split actually planned
  int sparse_io = 0, reference_runs = 0;
  for (int i = 0; i < 40; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const Types& types = kTypes[rng.Int(0, std::size(kTypes) - 1)];
    LayerSpec spec;
    spec.name = "gen" + std::to_string(seed);
    spec.in_dtype = types.in;
    spec.w_dtype = types.w;
    spec.out_dtype = types.out;
    spec.ky = spec.kx = rng.Bernoulli(0.5) ? 3 : 1;
    spec.stride = rng.Int(1, 2);
    spec.pad = rng.Bernoulli(0.3) ? rng.Int(0, 2) : -1;
    spec.h = rng.Int(spec.ky, 11);
    spec.w = rng.Int(spec.kx, 9);
    spec.c = 16 * rng.Int(1, 3);
    spec.k = 16 * rng.Int(1, 8);
    spec.weight_sparsity = sparsities[rng.Int(0, 2)];
    spec.input_sparsity = rng.Bernoulli(0.5) ? 0.4 : 0.0;
    spec.leaky_relu = rng.Bernoulli(0.5);
    PlanOptions po;
    po.input_sparse = rng.Bernoulli(0.5);
    po.output_sparse = types.out != DType::kI32 && rng.Bernoulli(0.5);
    po.heuristic = rng.Bernoulli(0.5) ? WeightHeuristic::kSparse : WeightHeuristic::kSas;
    sparse_io += po.input_sparse || po.output_sparse;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, seed));
    for (const Target* target : {&Npu37(), &Npu40()}) {
      SCOPED_TRACE(target->name);
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, OneTaskReference(layer, *target));
      for (SplitStrategy split : splits) {
        SCOPED_TRACE(SplitStrategyName(split));
        po.split = split;
        StatusOr<Plan> plan = PlanLayer(layer, *target, po);
        if (!plan.ok()) continue;  // the target's split rules forbid it (checked in plan_test)
        ++ran[split];
        for (int threads : {1, 2, 3}) {
          SCOPED_TRACE("threads " + std::to_string(threads));
          RunOptions ro;
          ro.threads = threads;
          // The reference path too, on some cases (it is slow).
          ro.reference = threads == 2 && i % 4 == 0;
          reference_runs += ro.reference;
          DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, RunLayer(layer, *plan, *target, ro));
          const std::string diff = FirstDifference(expected, r.output);
          ASSERT_TRUE(diff.empty()) << diff << "\n" << PlanToText(*plan);
          EXPECT_EQ(CoveredOutputs(r, spec.k), expected.numel() / layer.op.g.out_w());
          for (const WorkloadReport& w : r.workloads) {
            EXPECT_EQ(w.kernel.isa.empty(), ro.reference);
          }
        }
      }
    }
  }
  std::printf("[ plans    ] clustering %d, SOK %d, SOH %d, auto %d (x 3 thread counts); "
              "%d layers with sparse input or output; %d reference runs\n",
              ran[splits[0]], ran[splits[1]], ran[splits[2]], ran[splits[3]], sparse_io,
              reference_runs);
  for (SplitStrategy split : splits) {
    EXPECT_GE(ran[split], 8) << SplitStrategyName(split) << " was planned too rarely";
  }
  EXPECT_GE(sparse_io, 5);
  EXPECT_GE(reference_runs, 10);
}

// The seed's layer on 2 tiles: K=320 on NPU37XX with SOK and sparse output needs two equal
// power-of-two splits, so K is padded to 512 (two tiles of 256); NPU40XX splits it 160/160. The
// output keeps K=320 either way.
TEST(ExecuteTest, SeedK320SparseOutputPaddedChannelsAreDropped) {
  LayerSpec spec = *StandardLayer("k320_1x1_28");
  spec.h = spec.w = 6;
  spec.c = 32;
  spec.weight_sparsity = 0.6;
  spec.input_sparsity = 0.3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 320));
  PlanOptions po;
  po.split = SplitStrategy::kSok;
  po.tiles = 2;
  po.output_sparse = po.input_sparse = true;
  for (const Target* target : {&Npu37(), &Npu40()}) {
    SCOPED_TRACE(target->name);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, OneTaskReference(layer, *target));
    ASSERT_EQ(expected.shape, (std::vector<int64_t>{6, 6, 320}));
    Plan plan;
    for (int threads : {1, 2, 3}) {
      RunOptions ro;
      ro.threads = threads;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, PlanAndRun(layer, *target, po, ro, &plan));
      EXPECT_EQ(FirstDifference(expected, r.output), "") << "threads " << threads;
      EXPECT_EQ(r.output.shape, expected.shape);
    }
    ASSERT_EQ(plan.tiles.size(), 2u);
    const bool npu37 = target->id == TargetId::kNPU37XX;
    EXPECT_EQ(plan.k_padded, npu37 ? 512 : 320);
    EXPECT_EQ(plan.tiles[1].k_end - plan.tiles[1].k_begin, npu37 ? 256 : 160);
  }
}

// NPU40XX with sparse output pads K=112 on 6 tiles to 6 x 32 = 192: the last two tiles hold only
// padding channels, whose output is discarded, so they are not computed at all.
TEST(ExecuteTest, TilesOfPaddingChannelsOnlyAreSkipped) {
  LayerSpec spec = *StandardLayer("k320_1x1_28");
  spec.h = spec.w = 5;
  spec.c = 16;
  spec.k = 112;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 112));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, OneTaskReference(layer, Npu40()));
  PlanOptions po;
  po.split = SplitStrategy::kSok;
  po.output_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
  ASSERT_EQ(plan.k_padded, 192);
  RunOptions ro;
  ro.threads = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, RunLayer(layer, plan, Npu40(), ro));
  EXPECT_EQ(FirstDifference(expected, r.output), "");
  for (const WorkloadReport& w : r.workloads) EXPECT_LT(w.k_begin, 112) << "tile " << w.tile;
  EXPECT_EQ(CoveredOutputs(r, spec.k), expected.numel() / layer.op.g.out_w());
}

// Clustering computes the layer once however many tiles replicate it, and a plan with fewer
// workloads than threads is cut into row chunks.
TEST(ExecuteTest, ClusteringReplicasAndRowChunks) {
  LayerSpec spec = *StandardLayer("r50_3x3_14");
  spec.c = 32;
  spec.k = 48;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 5));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, OneTaskReference(layer, Npu40()));
  PlanOptions po;
  po.split = SplitStrategy::kClustering;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
  ASSERT_EQ(plan.tiles_used, 6);
  RunOptions one;
  one.threads = 1;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r1, RunLayer(layer, plan, Npu40(), one));
  ASSERT_EQ(r1.workloads.size(), plan.workloads.size() / 6);
  for (const WorkloadReport& w : r1.workloads) {
    EXPECT_EQ(w.tile, 0);
    EXPECT_EQ(w.replicas, 5);
  }
  RunOptions three;
  three.threads = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const PreparedLayer prepared,
                              PreparedLayer::Create(layer, plan, Npu40(), three));
  EXPECT_EQ(prepared.threads(), 3);
  EXPECT_GT(prepared.items(), r1.workloads.size());
  for (int run = 0; run < 2; ++run) {  // a prepared layer runs again with the same result
    DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, prepared.Run());
    EXPECT_EQ(FirstDifference(expected, r.output), "");
    EXPECT_EQ(r.workloads.size(), prepared.items());
    EXPECT_EQ(CoveredOutputs(r, spec.k), expected.numel() / layer.op.g.out_w());
  }
}

// With more padding than kernel, the edge rows read only padding: a chunk of them is computed
// together with a row that reads the input, and the extra row is dropped.
TEST(ExecuteTest, ChunksOfPaddingOnlyRows) {
  LayerSpec spec;
  spec.name = "wide_pad";
  spec.h = 4;
  spec.w = 5;
  spec.c = 16;
  spec.k = 32;
  spec.ky = spec.kx = 3;
  spec.pad = 5;  // output rows 0-2 and 9-11 read only padding
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE(SeedTrace(seed));
    spec.stride = static_cast<int64_t>(seed);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, OneTaskReference(layer, Npu40()));
    PlanOptions po;
    po.tiles = 1;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
    RunOptions ro;
    ro.threads = 3;  // 12 items wanted: every output row its own chunk
    DPUEMU_ASSERT_OK_AND_ASSIGN(const PreparedLayer prepared,
                                PreparedLayer::Create(layer, plan, Npu40(), ro));
    EXPECT_EQ(prepared.items(), static_cast<size_t>(layer.op.g.out_h()));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, prepared.Run());
    EXPECT_EQ(FirstDifference(expected, r.output), "");
  }
}

NceLayer SmallLayer(int64_t k, DType dt, uint64_t seed) {
  LayerSpec spec = *StandardLayer("r50_3x3_14");
  spec.h = spec.w = 8;
  spec.c = 16;
  spec.k = k;
  spec.in_dtype = spec.w_dtype = spec.out_dtype = dt;
  if (dt == DType::kU8) spec.w_dtype = DType::kI8;
  spec.weight_sparsity = 0.5;
  return *GenerateLayer(spec, seed);
}

Status RunStatus(const NceLayer& layer, const Plan& plan, const Target& target,
                 const RunOptions& options = {}) {
  return RunLayer(layer, plan, target, options).status();
}

TEST(ExecuteTest, RejectsPlansThatDoNotMatchTheLayer) {
  const NceLayer layer = SmallLayer(64, DType::kU8, 1);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), PlanOptions{}));
  DPUEMU_ASSERT_OK(RunStatus(layer, plan, Npu40()));

  Status st = RunStatus(SmallLayer(32, DType::kU8, 1), plan, Npu40());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(st.message(), "plan: made for a layer with k = 64, this layer has k = 32"))
      << st.ToString();
  st = RunStatus(SmallLayer(64, DType::kFP16, 1), plan, Npu40());
  EXPECT_TRUE(Contains(st.message(), "in_dtype = u8, this layer has fp16")) << st.ToString();
  st = RunStatus(layer, plan, Npu37());
  EXPECT_TRUE(Contains(st.message(), "plan: made for NPU40XX, running on NPU37XX"))
      << st.ToString();
  st = RunStatus(layer, Plan{}, Npu40());
  EXPECT_TRUE(Contains(st.message(), "plan: empty")) << st.ToString();
  RunOptions bad;
  bad.threads = -1;
  st = RunStatus(layer, plan, Npu40(), bad);
  EXPECT_TRUE(Contains(st.message(), "threads = -1: must be >= 0")) << st.ToString();
}

TEST(ExecuteTest, RejectsWorkloadsThatDoNotCoverTheOutputOnce) {
  const NceLayer layer = SmallLayer(64, DType::kU8, 2);
  PlanOptions po;
  po.split = SplitStrategy::kSoh;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
  ASSERT_GE(plan.workloads.size(), 2u);

  Plan missing = plan;
  missing.workloads.pop_back();
  Status st = RunStatus(layer, missing, Npu40());
  EXPECT_TRUE(Contains(st.message(), "are computed by no workload")) << st.ToString();

  Plan overlap = plan;
  overlap.workloads[1].row_begin -= 1;
  st = RunStatus(layer, overlap, Npu40());
  EXPECT_TRUE(Contains(st.message(), "plan.workloads[1]") && Contains(st.message(), "overlaps"))
      << st.ToString();

  Plan columns = plan;
  columns.workloads[0].col_end -= 1;
  st = RunStatus(layer, columns, Npu40());
  EXPECT_TRUE(Contains(st.message(), "plan.workloads[0]: columns")) << st.ToString();

  Plan channels = plan;
  channels.workloads[0].k_end = 40;
  st = RunStatus(layer, channels, Npu40());
  EXPECT_TRUE(Contains(st.message(), "16-aligned")) << st.ToString();

  Plan tile = plan;
  tile.workloads[0].tile = 17;
  st = RunStatus(layer, tile, Npu40());
  EXPECT_TRUE(Contains(st.message(), "plan.workloads[0].tile = 17")) << st.ToString();
}

// A kernel error in some workloads comes back, and it is the first failing workload in plan
// order, whatever the thread count and the order the threads ran them in.
TEST(ExecuteTest, WorkloadErrorsPropagateInPlanOrder) {
  NceLayer layer = SmallLayer(64, DType::kFP16, 3);
  const NceGeometry& g = layer.op.g;
  const int64_t inf_row = g.h - 2;  // only the workloads reading this input row fail
  for (int64_t i = inf_row * g.w * g.c; i < (inf_row + 1) * g.w * g.c; ++i) {
    StoreFloat(DType::kFP16, layer.input.bytes.data(), i, std::numeric_limits<float>::infinity());
  }
  PlanOptions po;
  po.split = SplitStrategy::kSoh;
  po.heuristic = WeightHeuristic::kSparse;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
  int64_t first_bad = -1;
  int bad = 0;
  for (size_t w = 0; w < plan.workloads.size(); ++w) {
    const Workload& wl = plan.workloads[w];
    if (wl.in_row_begin <= inf_row && inf_row < wl.in_row_end) {
      if (first_bad < 0) first_bad = static_cast<int64_t>(w);
      ++bad;
    }
  }
  ASSERT_GT(first_bad, 0);  // good workloads before it
  ASSERT_GE(bad, 2);
  for (int threads : {1, 2, 3}) {
    RunOptions ro;
    ro.threads = threads;
    ro.kernel.kernel = ConvKernel::kDense;  // would change the result: refused by the kernel
    const Status st = RunStatus(layer, plan, Npu40(), ro);
    EXPECT_TRUE(Contains(st.message(), "plan.workloads[" + std::to_string(first_bad) + "]") &&
                Contains(st.message(), "would change the result"))
        << "threads " << threads << ": " << st.ToString();
  }
  // The storage's own kernel computes it, like the whole layer in the same (sparse-weights)
  // storage: absent weights are skipped, so inf x 0 never happens.
  StorageOptions storage;
  storage.weights_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayer(layer, storage, Npu40()));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput whole, RunReference(task, Npu40()));
  const Tensor& expected = whole.data;
  RunOptions ro;
  ro.threads = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, RunLayer(layer, plan, Npu40(), ro));
  EXPECT_EQ(FirstDifference(expected, r.output), "");
}

// K beyond one invocation (8192, VPU_DIMENSION_LIMIT) runs as several: the plan's workloads have
// at most 8192 channels and say so in a note; the result equals the textbook convolution. Pads
// beyond kernel / 2 are read through an SE pad gather and noted in the plan.
TEST(ExecuteTest, ChannelsAndPadsBeyondOneInvocation) {
  LayerSpec spec;
  spec.name = "wide_k";
  spec.h = 2;
  spec.w = 3;
  spec.c = 16;
  spec.k = 8208;
  spec.weight_sparsity = 0.5;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 3));
  PlanOptions po;
  po.tiles = 1;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
  for (const Workload& w : plan.workloads) EXPECT_LE(w.k_end - w.k_begin, 8192);
  bool noted = false;
  for (const std::string& n : plan.notes) noted |= n.find("VPU_DIMENSION_LIMIT") != std::string::npos;
  EXPECT_TRUE(noted);
  const StatusOr<DpuTask> one = LowerLayer(layer, StorageOptions{}, Npu40());
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.status().message().find("k (output channels) = 8208"), std::string::npos);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, TextbookConv(layer, false));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult r, RunLayer(layer, plan, Npu40(), RunOptions{}));
  EXPECT_EQ(FirstDifference(r.output, expected), "");

  LayerSpec padded;
  padded.name = "big_pad";
  padded.h = padded.w = 5;
  padded.c = 16;
  padded.k = 32;
  padded.ky = padded.kx = 3;
  padded.pad = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer big, GenerateLayer(padded, 4));
  for (const Target* t : {&Npu37(), &Npu40()}) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan p, PlanLayer(big, *t, PlanOptions{}));
    bool pad_note = false;
    for (const std::string& n : p.notes) pad_note |= n.find("verifyPads") != std::string::npos;
    EXPECT_TRUE(pad_note) << t->name;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor want, TextbookConv(big, false));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult got, RunLayer(big, p, *t, RunOptions{}));
    EXPECT_EQ(FirstDifference(got.output, want), "") << t->name;
  }
}

}  // namespace
}  // namespace dpuemu
