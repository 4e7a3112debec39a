// The main job of dpuemu's README: build a ResNet-50 style 3x3 layer and the seed's K=320 layer
// with ~60% weight sparsity, run them on the reference DPU of each target in dense and sparse
// storage, check every storage gives the same output, and print what was done.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/target.h"
#include "kernels/ref/zmconv_ref.h"

namespace dpuemu {
namespace {

std::string Bytes(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s + " B";
}

struct Variant {
  const char* name;
  StorageOptions storage;
};

const std::vector<Variant>& Variants() {
  static const std::vector<Variant> v = [] {
    StorageOptions dense;
    StorageOptions sparse;
    sparse.weights_sparse = sparse.input_sparse = sparse.output_sparse = true;
    StorageOptions se = sparse;
    se.input_se_table = true;
    return std::vector<Variant>{{"dense: weights, input, output", dense},
                                {"sparse: weights, input, output", sparse},
                                {"sparse, input read through SE pointers", se}};
  }();
  return v;
}

int64_t TotalBytes(const std::vector<std::vector<uint8_t>>& tiles) {
  int64_t n = 0;
  for (const auto& t : tiles) n += static_cast<int64_t>(t.size());
  return n;
}

// Runs one layer on one target in every storage variant; false if any output differs.
StatusOr<bool> RunLayer(const ConvLayer& layer, const Target& target) {
  std::printf("  %s (%s, %d tiles):\n", target.name, target.generation, target.tiles);
  Tensor first;
  bool same = true;
  for (const Variant& v : Variants()) {
    DpuTask task;
    DPUEMU_ASSIGN_OR_RETURN(task, LowerLayer(layer, v.storage, target));
    const auto t0 = std::chrono::steady_clock::now();
    DpuOutput out;
    DPUEMU_ASSIGN_OR_RETURN(out, RunReference(task, target));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Tensor dense;
    DPUEMU_ASSIGN_OR_RETURN(dense, DenseOutput(out, layer.op.ppe.out_zp));
    if (first.bytes.empty()) first = dense;
    const bool match = dense == first;
    same = same && match;
    std::printf("    %-44s %7.3f s  %s\n      weights %s + map %s + table %s; input %s + map %s"
                " + SE table %s; output %s + map %s (SE %lld ch)\n",
                v.name, secs, match ? "output identical" : "OUTPUT DIFFERS", Bytes(static_cast<int64_t>(task.weights.size())).c_str(),
                Bytes(static_cast<int64_t>(task.weight_map.size())).c_str(),
                Bytes(static_cast<int64_t>(task.weight_table.size())).c_str(),
                Bytes(TotalBytes(task.input_tiles)).c_str(),
                Bytes(static_cast<int64_t>(task.input_map.size())).c_str(),
                Bytes(static_cast<int64_t>(task.se_table.size() * 4)).c_str(),
                Bytes(static_cast<int64_t>(out.data.bytes.size())).c_str(),
                Bytes(static_cast<int64_t>(out.map.size())).c_str(),
                static_cast<long long>(out.se_size));
  }
  return same;
}

int Main() {
  std::printf("dpuemu demo: ZMConv on the reference DPU (scalar; the SIMD kernels and tiling "
              "come in later releases)\n\n");
  struct Case {
    const char* layer;
    DType in, w, out;
  };
  const Case cases[] = {{"r50_3x3_56", DType::kU8, DType::kI8, DType::kU8},
                        {"k320_1x1_28", DType::kU8, DType::kI8, DType::kU8},
                        {"k320_1x1_28", DType::kFP16, DType::kFP16, DType::kFP16}};
  bool all_same = true;
  for (const Case& c : cases) {
    StatusOr<LayerSpec> spec = StandardLayer(c.layer);
    if (!spec.ok()) return std::fprintf(stderr, "%s\n", spec.status().ToString().c_str()), 1;
    spec->in_dtype = c.in;
    spec->w_dtype = c.w;
    spec->out_dtype = c.out;
    spec->weight_sparsity = 0.6;
    spec->input_sparsity = 0.3;
    StatusOr<ConvLayer> layer = GenerateLayer(*spec, /*seed=*/2024);
    if (!layer.ok()) return std::fprintf(stderr, "%s\n", layer.status().ToString().c_str()), 1;
    const ConvGeometry& g = layer->op.g;
    std::printf("%s: input %lldx%lldx%lld %s -> %lld channels %s, kernel %lldx%lld, stride %lld, "
                "pad %lld; weights %s, 60%% zero; %.1f M MACs\n",
                c.layer, static_cast<long long>(g.h), static_cast<long long>(g.w),
                static_cast<long long>(g.c), DTypeName(c.in), static_cast<long long>(g.k),
                DTypeName(c.out), static_cast<long long>(g.ky), static_cast<long long>(g.kx),
                static_cast<long long>(g.stride_y), static_cast<long long>(g.pad_top),
                DTypeName(c.w), static_cast<double>(g.dense_macs()) / 1e6);
    for (const Target* t : AllTargets()) {
      StatusOr<bool> same = RunLayer(*layer, *t);
      if (!same.ok()) return std::fprintf(stderr, "%s\n", same.status().ToString().c_str()), 1;
      all_same = all_same && *same;
    }
    std::printf("\n");
  }
  std::printf(all_same ? "All storage formats gave identical outputs on both targets.\n"
                       : "ERROR: storage formats disagree.\n");
  return all_same ? 0 : 1;
}

}  // namespace
}  // namespace dpuemu

int main() { return dpuemu::Main(); }
