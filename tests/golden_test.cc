// The per-tile golden set (runtime/golden.h, MakeTileGoldenSet) read back the way a hardware test
// bench would: each tile's CMX image is rebuilt from its files at the manifest's offsets, every
// variant becomes a DpuTask over that image (weights and maps read through the RELOCATED weight
// table, the input rows at the variant's offset, its pads and channels), the reference DPU runs it,
// and the result must equal that region of the whole layer's reference output and of the tile's
// output.bin, byte for byte. Splits SOK, SOH and clustering; NPU37XX and NPU40XX; dense and sparse
// weights; dense and sparse input and output; integer and fp16.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/execute.h"
#include "runtime/golden.h"
#include "runtime/npy.h"
#include "runtime/plan.h"
#include "runtime/spec.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

using json = nlohmann::ordered_json;

StatusOr<Tensor> OneTaskReference(const NceLayer& layer, const Target& t) {
  DPUEMU_ASSIGN_OR_RETURN(const DpuTask task, LowerLayer(layer, StorageOptions{}, t));
  DPUEMU_ASSIGN_OR_RETURN(const DpuOutput out, RunReference(task, t));
  return out.data;
}

int64_t Align16(int64_t v) { return (v + 15) / 16 * 16; }

// Copies channels [k0, k0 + kn) of rows [r0, r0 + rn) of an [R, OW, K] tensor.
Tensor Region(const Tensor& t, int64_t r0, int64_t rn, int64_t k0, int64_t kn) {
  const int64_t ow = t.shape[1], k = t.shape[2], eb = DTypeBytes(t.dtype);
  Tensor out(t.dtype, {rn, ow, kn});
  for (int64_t y = 0; y < rn; ++y) {
    for (int64_t x = 0; x < ow; ++x) {
      std::copy_n(t.bytes.begin() + (((r0 + y) * ow + x) * k + k0) * eb, kn * eb,
                  out.bytes.begin() + (y * ow + x) * kn * eb);
    }
  }
  return out;
}

// Checks every tile of `set` as described at the top of the file; `whole` is the layer's
// reference output. Returns the number of variants run.
int CheckTiles(const NceLayer& layer, const Plan& plan, const GoldenSet& set, const Tensor& whole) {
  const Target& target = *plan.target;
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  std::map<std::string, const std::vector<uint8_t>*> files;
  for (const GoldenFile& f : set.files) files[f.name] = &f.bytes;
  const json& m = set.manifest;
  EXPECT_EQ(m["golden"], "tiles");
  const int64_t cmx_end = m["cmx"]["end"];
  EXPECT_LE(cmx_end, target.cmx_bytes_per_tile);
  EXPECT_EQ(m["tiles"].size(), plan.tiles.size());
  const bool w_sparse = m["weights_sparse"], in_sparse = m["input_sparse"];
  const bool out_sparse = m["output_sparse"];
  const int64_t in_se = m["se_sizes"]["input"];
  const int64_t row_elems = g.w * g.c, in_eb = DTypeBytes(op.in_dtype);
  int variants = 0;
  // Every tile's CMX image: each buffer at its offset; buffers aligned, disjoint, inside CMX.
  std::map<int, std::vector<uint8_t>> images;
  for (const json& t : m["tiles"]) {
    std::vector<uint8_t>& cmx = images[t["tile"].get<int>()];
    cmx.resize(static_cast<size_t>(cmx_end));
    int64_t prev_end = 0;
    for (const json& b : t["buffers"]) {
      const int64_t off = b["offset"], bytes = b["bytes"];
      EXPECT_EQ(off % 16, 0) << b.dump();
      EXPECT_GE(off, prev_end) << b.dump();
      EXPECT_LE(off + bytes, cmx_end) << b.dump();
      prev_end = off + bytes;
      const std::vector<uint8_t>& data = *files.at(b["file"].get<std::string>());
      EXPECT_EQ(static_cast<int64_t>(data.size()), bytes);
      std::copy(data.begin(), data.end(), cmx.begin() + off);
    }
  }
  const bool se = m.contains("se");
  for (const json& t : m["tiles"]) {
    SCOPED_TRACE("tile " + t["tile"].dump());
    const std::vector<uint8_t>& cmx = images[t["tile"].get<int>()];
    std::map<std::string, json> buf;
    for (const json& b : t["buffers"]) buf[b["buffer"].get<std::string>()] = b;
    const int64_t tk0 = t["k"][0], tk1 = t["k"][1], tr0 = t["rows"][0], tr1 = t["rows"][1];
    const int64_t tkc = tk1 - tk0, trows = tr1 - tr0;
    auto at = [&](const std::string& name) {
      return cmx.begin() + buf.at(name)["offset"].get<int64_t>();
    };
    // The tile's output as the ODU wrote it, decoded.
    const std::vector<uint8_t> out_data(at("output"), at("output") + buf["output"]["bytes"].get<int64_t>());
    Tensor tile_out(op.out_dtype, {trows, g.out_w(), tkc});
    if (out_sparse) {
      const std::vector<uint8_t> out_map(at("output_map"),
                                         at("output_map") + buf["output_map"]["bytes"].get<int64_t>());
      StatusOr<Tensor> d = DecodeSparseActivations(out_data, out_map, op.out_dtype,
                                                   tile_out.shape, op.ppe.out_zp,
                                                   t["output_se_size"].get<int64_t>());
      EXPECT_TRUE(d.ok()) << d.status().ToString();
      if (!d.ok()) return variants;
      tile_out = *d;
    } else {
      tile_out.bytes = out_data;
    }
    // Real channels of the tile's output = the whole layer's.
    const int64_t real = std::max<int64_t>(std::min(tk1, g.k) - tk0, 0);
    if (real > 0) {
      EXPECT_EQ(FirstDifference(Region(whole, tr0, trows, tk0, real),
                                Region(tile_out, 0, trows, 0, real)),
                "");
    }
    const int64_t wt_off = buf.at("weight_table")["offset"];
    const int64_t in_off = se ? 0 : buf.at("input")["offset"].get<int64_t>();
    for (const json& v : t["variants"]) {
      SCOPED_TRACE("variant " + v.dump());
      ++variants;
      DpuTask task;
      task.op = op;
      NceGeometry& vg = task.op.g;
      const int64_t in0 = v["input_rows"][0], in1 = v["input_rows"][1];
      const int64_t k0 = v["k"][0], k1 = v["k"][1];
      vg.h = in1 - in0;
      vg.k = k1 - k0;
      vg.pad_top = v["pad"]["top"];
      vg.pad_bottom = v["pad"]["bottom"];
      vg.pad_left = v["pad"]["left"];
      vg.pad_right = v["pad"]["right"];
      const int64_t rc0 = v["rows_computed"][0], rc1 = v["rows_computed"][1];
      EXPECT_EQ(vg.out_h(), rc1 - rc0);
      // Weights and maps are read through the relocated pointers, from the whole CMX image.
      task.weights = cmx;
      if (w_sparse) task.weight_map = cmx;
      const int64_t wto = v["weight_table_offset"];
      EXPECT_EQ(wto, wt_off + 16 * v["k_local"][0].get<int64_t>());
      task.weight_table.assign(cmx.begin() + wto, cmx.begin() + wto + 16 * vg.k);
      if (se) {
        // The source as the pointers address it: every source tile's whole CMX image.
        for (const json& part : m["se"]["source_tiles"]) {
          task.input_tiles.push_back(images.at(part["tile"].get<int>()));
        }
        const int64_t so = buf.at("se_table")["offset"].get<int64_t>() +
                           v["se_table_offset"].get<int64_t>();
        const int64_t n = vg.h * g.w * (g.c / in_se);
        for (int64_t e = 0; e < n; ++e) {
          uint32_t u = 0;
          for (int b = 0; b < 4; ++b) u |= static_cast<uint32_t>(cmx[so + 4 * e + b]) << (8 * b);
          task.se_table.push_back(static_cast<int32_t>(u));
        }
      } else {
        const int64_t ioff = in_off + v["input_offset"].get<int64_t>();
        task.input_tiles = {std::vector<uint8_t>(cmx.begin() + ioff,
                                                 cmx.begin() + ioff + vg.h * row_elems * in_eb)};
      }
      if (in_sparse || se) {
        const int64_t bit = v["input_map_bit_offset"];
        EXPECT_EQ(bit % 8, 0);
        const int64_t mo = buf.at("input_map")["offset"].get<int64_t>() + bit / 8;
        std::vector<uint8_t> map(cmx.begin() + mo, cmx.begin() + mo + vg.h * row_elems / 8);
        map.resize(static_cast<size_t>(Align16(static_cast<int64_t>(map.size()))));
        task.input_map = std::move(map);
      }
      task.input_se_size = in_se;
      task.output_se_size = DefaultSeSize(target, vg.k);
      StatusOr<DpuOutput> out = RunReference(task, target);
      EXPECT_TRUE(out.ok()) << out.status().ToString();
      if (!out.ok()) continue;
      const int64_t r0 = v["out_start"][1], r1 = v["out_end"][1].get<int64_t>() + 1;
      EXPECT_EQ(v["out_start"][2].get<int64_t>(), k0);
      EXPECT_EQ(v["out_end"][2].get<int64_t>(), k1 - 1);
      const Tensor got = Region(out->data, r0 - rc0, r1 - r0, 0, vg.k);
      EXPECT_EQ(FirstDifference(Region(tile_out, r0 - tr0, r1 - r0, k0 - tk0, vg.k), got), "");
      const int64_t vreal = std::max<int64_t>(std::min(k1, g.k) - k0, 0);
      if (vreal > 0) {
        EXPECT_EQ(FirstDifference(Region(whole, r0, r1 - r0, k0, vreal),
                                  Region(got, 0, r1 - r0, 0, vreal)),
                  "");
      }
    }
  }
  return variants;
}

struct Case {
  const Target* target;
  SplitStrategy split;
  WeightHeuristic weights;
  bool input_sparse, output_sparse;
  DType dtype;
};

TEST(GoldenTilesTest, EveryVariantRebuiltFromItsTileReproducesTheLayer) {
  const uint64_t base = BaseSeed(10);
  uint64_t seed = base;
  int cases = 0;
  for (const Target* target : {&Npu37(), &Npu40()}) {
    for (SplitStrategy split : {SplitStrategy::kSok, SplitStrategy::kSoh, SplitStrategy::kClustering}) {
      for (WeightHeuristic wh : {WeightHeuristic::kDense, WeightHeuristic::kSparse}) {
        for (int io = 0; io < 4; ++io) {
          for (DType dt : {DType::kU8, DType::kFP16}) {
            ++seed;
            SCOPED_TRACE(SeedTrace(seed) + " " + target->name + " " + SplitStrategyName(split) +
                         " " + WeightHeuristicName(wh) + " io=" + std::to_string(io) + " " +
                         DTypeName(dt));
            LayerSpec spec;
            spec.name = "golden_tiles";
            spec.h = 11 + static_cast<int64_t>(seed % 3);
            spec.w = 7;
            spec.c = 32;
            spec.k = split == SplitStrategy::kSok ? 96 : 48;
            spec.ky = spec.kx = 3;
            spec.stride = 1 + static_cast<int64_t>(seed % 2);
            spec.in_dtype = spec.w_dtype = spec.out_dtype = dt;
            if (dt == DType::kU8) spec.w_dtype = DType::kI8;
            spec.weight_sparsity = 0.6;
            spec.input_sparsity = 0.4;
            DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, seed));
            PlanOptions po;
            po.split = split;
            po.heuristic = wh;
            po.input_sparse = io & 1;
            po.output_sparse = io & 2;
            po.workloads_per_tile = 3;
            DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, *target, po));
            ASSERT_EQ(plan.split, split);
            DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor whole, OneTaskReference(layer, *target));
            RunOptions ro;
            ro.threads = 1;
            DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run, RunLayer(layer, plan, *target, ro));
            DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet set,
                                        MakeTileGoldenSet(layer, plan, run.output));
            EXPECT_EQ(set.manifest["weights_sparse"], wh == WeightHeuristic::kSparse);
            EXPECT_EQ(CheckTiles(layer, plan, set, whole),
                      static_cast<int>(plan.workloads.size()));
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 2 * 3 * 2 * 4 * 2);
}

// int4 weights (NPU40XX; two per byte, 16-byte weight sets, never sparse): integer and
// weight-only-quantised fp16 layers on every split.
TEST(GoldenTilesTest, Int4Weights) {
  int cases = 0;
  for (DType act : {DType::kU8, DType::kFP16}) {
    for (SplitStrategy split : {SplitStrategy::kSok, SplitStrategy::kSoh, SplitStrategy::kClustering}) {
      SCOPED_TRACE(std::string(DTypeName(act)) + " " + SplitStrategyName(split));
      LayerSpec spec;
      spec.name = "golden_i4";
      spec.h = 12;
      spec.w = 6;
      spec.c = 48;
      spec.k = 64;
      spec.ky = spec.kx = 3;
      spec.in_dtype = spec.out_dtype = act;
      spec.w_dtype = DType::kI4;
      spec.weight_sparsity = 0.3;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 4 + cases));
      PlanOptions po;
      po.split = split;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
      ASSERT_FALSE(plan.weights.sparse);
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor whole, OneTaskReference(layer, Npu40()));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run, RunLayer(layer, plan, Npu40(), {}));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet set, MakeTileGoldenSet(layer, plan, run.output));
      EXPECT_EQ(CheckTiles(layer, plan, set, whole), static_cast<int>(plan.workloads.size()));
      ++cases;
    }
  }
  EXPECT_EQ(cases, 6);
}

// The seed's K=320 case: NPU37XX sparse output pads K to 512 (256/256), so tile 1 holds 64
// padding channels; NPU40XX K=112 on 6 tiles pads to 192 and its last two tiles hold padding
// only. Their variants run too, and the padding channels of output.bin are what the DPU computes.
TEST(GoldenTilesTest, PaddingChannelsAndPaddingOnlyTiles) {
  struct PadCase {
    const Target* target;
    int64_t k;
    int64_t k_padded;
  };
  for (const PadCase& pc : {PadCase{&Npu37(), 320, 512}, PadCase{&Npu40(), 112, 192}}) {
    SCOPED_TRACE(pc.target->name);
    LayerSpec spec = *StandardLayer("k320_1x1_28");
    spec.h = spec.w = 5;
    spec.c = 16;
    spec.k = pc.k;
    spec.weight_sparsity = 0.6;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 320));
    for (WeightHeuristic wh : {WeightHeuristic::kDense, WeightHeuristic::kSparse}) {
      PlanOptions po;
      po.split = SplitStrategy::kSok;
      po.output_sparse = true;
      po.heuristic = wh;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, *pc.target, po));
      ASSERT_EQ(plan.k_padded, pc.k_padded);
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor whole, OneTaskReference(layer, *pc.target));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run, RunLayer(layer, plan, *pc.target, {}));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet set, MakeTileGoldenSet(layer, plan, run.output));
      EXPECT_EQ(CheckTiles(layer, plan, set, whole), static_cast<int>(plan.workloads.size()));
      EXPECT_EQ(set.manifest["k_padded"], pc.k_padded);
    }
  }
}

// Under SOK every tile's weight table starts at the weights buffer (the compiler resets the
// pointers per cluster); under clustering every tile holds the same table.
TEST(GoldenTilesTest, WeightPointersRestartOnEveryTile) {
  LayerSpec spec = *StandardLayer("k320_1x1_28");
  spec.h = spec.w = 6;
  spec.c = 32;
  spec.k = 128;
  spec.weight_sparsity = 0.5;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 7));
  for (SplitStrategy split : {SplitStrategy::kSok, SplitStrategy::kClustering}) {
    for (WeightHeuristic wh : {WeightHeuristic::kDense, WeightHeuristic::kSparse}) {
      PlanOptions po;
      po.split = split;
      po.heuristic = wh;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), po));
      ASSERT_GT(plan.tiles.size(), 1u);
      DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run, RunLayer(layer, plan, Npu40(), {}));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet set, MakeTileGoldenSet(layer, plan, run.output));
      const json& m = set.manifest;
      int64_t weights_at = -1, map_at = -1;
      for (const json& b : m["cmx"]["layout"]) {
        if (b["buffer"] == "weights") weights_at = b["offset"];
        if (b["buffer"] == "weight_map") map_at = b["offset"];
      }
      ASSERT_GE(weights_at, 0);
      EXPECT_EQ(m["relocation"]["segmented"], split == SplitStrategy::kSok);
      json first_table;
      for (const GoldenFile& f : set.files) {
        if (f.name.find("weight_table.bin") == std::string::npos) continue;
        EXPECT_EQ(f.info["weight_offsets"][0], weights_at) << f.name;
        if (wh == WeightHeuristic::kSparse) {
          EXPECT_EQ(f.info["sparsity_offsets"][0], map_at) << f.name;
        } else {
          EXPECT_EQ(f.info["sparsity_offsets"][0], 0xFFFFFF) << f.name;
        }
        if (first_table.is_null()) first_table = f.info["weight_offsets"];
        if (split == SplitStrategy::kClustering) {
          EXPECT_EQ(f.info["weight_offsets"], first_table) << f.name;
        }
      }
    }
  }
}

// SE-pointer specs: each tile holds its part of the source (source_rows_per_tile), the SE table
// rows of its virtual window with DATA_PTR relocated to where the source sits in CMX, and the
// virtual map rows; a variant reads the source through the table from every source tile's image
// (BASE_PTR), and reproduces the SE task's reference output.
TEST(GoldenTilesTest, SePointerSpecsReadTheSourceThroughRelocatedTables) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/golden_se";
  std::filesystem::create_directories(dir);
  LayerSpec ls;
  ls.name = "se_source";
  ls.h = 8;
  ls.w = 8;
  ls.c = 32;
  ls.k = 32;
  ls.ky = ls.kx = 3;
  ls.weight_sparsity = 0.5;
  ls.input_sparsity = 0.4;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer src, GenerateLayer(ls, 77));
  ASSERT_TRUE(WriteNpy(dir + "/x.npy", src.input).ok());
  ASSERT_TRUE(WriteNpy(dir + "/w.npy", src.weights).ok());
  const json ops[] = {
      {{"op", "upsample_nearest"}, {"factor", {2, 2}}},
      {{"op", "pad"}, {"pad", {2, 1, 0, 1}}},
      {{"op", "roll"}, {"shift", {1, -2}}},
      {{"op", "interpolate_nearest"}, {"size", {12, 8}}, {"mode", "half_pixel"}},
  };
  int checked = 0;
  for (const char* target : {"NPU37XX", "NPU40XX"}) {
    for (const json& op : ops) {
      for (const char* split : {"soh", "sok"}) {
        for (int variant = 0; variant < 2; ++variant) {  // source in one tile / over two, sparse
          SCOPED_TRACE(std::string(target) + " " + op.dump() + " " + split + " " +
                       std::to_string(variant));
          json j = {{"target", target},
                    {"input", {{"npy", "x.npy"}, {"dtype", "u8"}, {"zero_point", src.op.in_zp}}},
                    {"weights", {{"npy", "w.npy"}, {"dtype", "i8"}, {"zero_point", src.op.w_zp}}},
                    {"pad", {1, 1, 1, 1}},
                    {"ppe", {{"mult", 900}, {"shift", 12}, {"out_zero_point", 9},
                             {"clamp", {0, 255}}}},
                    {"output", {{"dtype", "u8"}, {"sparse", variant == 1}}},
                    {"sparsity", {{"weights", variant == 1 ? "sparse" : "dense"},
                                  {"input", variant == 1 ? "sparse" : "dense"}}},
                    {"split", split},
                    {"tiles", 2},
                    {"se", op}};
          if (variant == 1) j["se"]["source_rows_per_tile"] = {5, 3};
          DPUEMU_ASSERT_OK_AND_ASSIGN(const Spec spec, ParseSpec(j.dump(), dir + "/spec.json"));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<Plan> plans, PlanSpec(spec));
          ASSERT_EQ(plans.size(), 1u);
          DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<DpuTask> tasks, LowerSeSpec(spec, plans));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput ref, RunReference(tasks[0], *spec.target));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor whole, DenseOutput(ref, spec.layer.op.ppe.out_zp));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run,
                                      RunLayer(DpuLayer(spec, 0), plans[0], *spec.target, {}));
          ASSERT_EQ(FirstDifference(whole, run.output), "");
          DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet set,
                                      MakeSeTileGoldenSet(spec, plans, {run.output}));
          ASSERT_TRUE(set.manifest.contains("se"));
          EXPECT_EQ(set.manifest["se"]["source_tiles"].size(), variant == 1 ? 2u : 1u);
          EXPECT_EQ(CheckTiles(DpuLayer(spec, 0), plans[0], set, whole),
                    static_cast<int>(plans[0].workloads.size()));
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 2 * 4 * 2 * 2);
}

TEST(GoldenTilesTest, RefusesWhatItCannotDescribe) {
  LayerSpec spec = *StandardLayer("k320_1x1_28");
  spec.h = spec.w = 4;
  spec.c = 16;
  spec.k = 32;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer layer, GenerateLayer(spec, 3));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), PlanOptions{}));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const RunResult run, RunLayer(layer, plan, Npu40(), {}));
  Tensor wrong = run.output;
  wrong.shape[2] = 16;
  StatusOr<GoldenSet> s = MakeTileGoldenSet(layer, plan, wrong);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("golden: output must be"), std::string::npos)
      << s.status().ToString();
  Plan other = plan;
  other.op.g.k = 48;
  s = MakeTileGoldenSet(layer, other, run.output);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("plan: made for a layer with k = 48"), std::string::npos)
      << s.status().ToString();
  Plan se = plan;
  se.options.se.op = "upsample_nearest";
  s = MakeTileGoldenSet(layer, se, run.output);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("MakeSeTileGoldenSet"), std::string::npos)
      << s.status().ToString();
}

}  // namespace
}  // namespace dpuemu
