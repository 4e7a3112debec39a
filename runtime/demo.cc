// The main job of dpuemu's README: a ResNet-50 3x3 layer and the seed's K=320 layer with ~60%
// weight sparsity (then one layer of each other DPU operation, and a small network), planned for NPU37XX and NPU40XX (sparsity decision, split, workloads), run on
// the SIMD kernels in parallel, checked bit for bit against the reference DPU and across storage
// formats (dense; sparse weights + input + output; input through SE pointers), with byte sizes and
// times printed.
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <cstdio>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/target.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "runtime/execute.h"
#include "runtime/network.h"
#include "runtime/plan.h"

namespace dpuemu {
namespace {

std::string Bytes(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s + " B";
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Variant {
  const char* name;
  StorageOptions storage;
};

const std::vector<Variant>& Variants() {
  static const std::vector<Variant> v = [] {
    StorageOptions dense, sparse;
    sparse.weights_sparse = sparse.input_sparse = sparse.output_sparse = true;
    StorageOptions se = sparse;
    se.input_se_table = true;
    return std::vector<Variant>{{"dense weights, input, output", dense},
                                {"sparse weights, input, output", sparse},
                                {"sparse, input through SE pointers", se}};
  }();
  return v;
}

int64_t TotalBytes(const std::vector<std::vector<uint8_t>>& tiles) {
  int64_t n = 0;
  for (const auto& t : tiles) n += static_cast<int64_t>(t.size());
  return n;
}

// Plans and runs one layer on one target; false if any output differs from the reference.
StatusOr<bool> RunLayerOn(const NceLayer& layer, const Target& target) {
  std::printf("  %s (%s, %d tiles x %d DPU)\n", target.name, target.generation, target.tiles,
              target.dpus_per_tile);
  // 1. The whole layer as one DPU task on the reference: the definition.
  DpuTask whole;
  DPUEMU_ASSIGN_OR_RETURN(whole, LowerLayer(layer, StorageOptions{}, target));
  auto t0 = std::chrono::steady_clock::now();
  DpuOutput ref_out;
  DPUEMU_ASSIGN_OR_RETURN(ref_out, RunReference(whole, target));
  const double ref_secs = Seconds(t0);
  Tensor ref;
  DPUEMU_ASSIGN_OR_RETURN(ref, DenseOutput(ref_out, layer.op.ppe.out_zp));

  // 2. The runtime: plan (sparsity decision, split, workloads), then a parallel run on the SIMD
  //    kernels, every workload in its tile's storage formats.
  PlanOptions plan_options;
  plan_options.output_sparse = true;
  Plan plan;
  DPUEMU_ASSIGN_OR_RETURN(plan, PlanLayer(layer, target, plan_options));
  RunResult run;
  DPUEMU_ASSIGN_OR_RETURN(run, RunLayer(layer, plan, target, RunOptions{}));
  bool same = run.output == ref;
  std::printf("    plan: weights %s (%s)\n", plan.weights.sparse ? "sparse" : "dense",
              plan.weights.reason.c_str());
  std::printf("          split %s over %d tiles, K padded to %lld, %zu workloads; %s\n",
              SplitStrategyName(plan.split), plan.tiles_used, static_cast<long long>(plan.k_padded),
              plan.workloads.size(), plan.split_reason.c_str());
  for (const std::string& note : plan.notes) std::printf("          note: %s\n", note.c_str());
  std::printf("          estimated %.1f us on the NPU\n", plan.time_us());
  const KernelReport& k0 = run.workloads.front().kernel;
  std::printf("    run:  %zu work items, SIMD %s kernel (%s): %.3f s vs reference %.3f s (%.0fx) -> %s\n",
              run.workloads.size(), ConvKernelName(k0.kernel), k0.isa.c_str(), run.seconds, ref_secs,
              ref_secs / run.seconds, same ? "identical to the reference" : "DIFFERS FROM THE REFERENCE");

  // The seed's case: K=320 split over output channels with sparse output (NPU37XX pads to two
  // power-of-two halves, NPU40XX splits equally in multiples of 16).
  if (layer.op.g.k == 320) {
    PlanOptions sok = plan_options;
    sok.split = SplitStrategy::kSok;
    sok.tiles = 2;
    Plan p2;
    DPUEMU_ASSIGN_OR_RETURN(p2, PlanLayer(layer, target, sok));
    RunResult r2;
    DPUEMU_ASSIGN_OR_RETURN(r2, RunLayer(layer, p2, target, RunOptions{}));
    std::string ranges;
    for (const TilePlan& tp : p2.tiles) {
      ranges += (ranges.empty() ? "" : " / ") + std::to_string(tp.k_end - tp.k_begin);
    }
    const bool ok = r2.output == ref;
    same = same && ok;
    std::printf("    seed case, SOK on 2 tiles with sparse output: K split %s, K padded to %lld -> %s\n",
                ranges.c_str(), static_cast<long long>(p2.k_padded),
                ok ? "identical to the reference" : "DIFFERS FROM THE REFERENCE");
  }

  // 3. Every storage format of the whole layer gives the same output.
  for (const Variant& v : Variants()) {
    DpuTask task;
    DPUEMU_ASSIGN_OR_RETURN(task, LowerLayer(layer, v.storage, target));
    t0 = std::chrono::steady_clock::now();
    DpuOutput out;
    DPUEMU_ASSIGN_OR_RETURN(out, RunZMConv(task, target));
    const double secs = Seconds(t0);
    Tensor dense;
    DPUEMU_ASSIGN_OR_RETURN(dense, DenseOutput(out, layer.op.ppe.out_zp));
    const bool match = dense == ref;
    same = same && match;
    std::printf("    %-34s %7.3f s  %s\n      weights %s + map %s + table %s; input %s + map %s + SE "
                "table %s; output %s + map %s (SE %lld ch)\n",
                v.name, secs, match ? "identical" : "DIFFERS",
                Bytes(static_cast<int64_t>(task.weights.size())).c_str(),
                Bytes(static_cast<int64_t>(task.weight_map.size())).c_str(),
                Bytes(static_cast<int64_t>(task.weight_table.size())).c_str(),
                Bytes(TotalBytes(task.input_tiles)).c_str(),
                Bytes(static_cast<int64_t>(task.input_map.size())).c_str(),
                Bytes(static_cast<int64_t>(task.se_table.size() * 4)).c_str(),
                Bytes(static_cast<int64_t>(out.data.bytes.size())).c_str(),
                Bytes(static_cast<int64_t>(out.map.size())).c_str(), static_cast<long long>(out.se_size));
  }
  return same;
}

// One layer of another DPU operation on one target: the whole layer on the reference, then
// planned (dense and sparse output) and run on the SIMD kernels; false if any output differs.
StatusOr<bool> RunOtherOpOn(const NceLayer& layer, const Target& target) {
  DpuTask whole;
  DPUEMU_ASSIGN_OR_RETURN(whole, LowerLayer(layer, StorageOptions{}, target));
  auto t0 = std::chrono::steady_clock::now();
  DpuOutput ref_out;
  DPUEMU_ASSIGN_OR_RETURN(ref_out, RunReference(whole, target));
  const double ref_secs = Seconds(t0);
  bool same = true;
  for (bool sparse_out : {false, true}) {
    PlanOptions po;
    po.output_sparse = sparse_out;
    Plan plan;
    DPUEMU_ASSIGN_OR_RETURN(plan, PlanLayer(layer, target, po));
    RunResult run;
    DPUEMU_ASSIGN_OR_RETURN(run, RunLayer(layer, plan, target, RunOptions{}));
    const bool ok = run.output == ref_out.data;
    same = same && ok;
    const KernelReport& k0 = run.workloads.front().kernel;
    std::printf("  %s, %s output: %s over %d tiles, %zu workloads, est. %.1f us; SIMD [%s] %.4f s "
                "vs reference %.4f s (%.0fx) -> %s\n",
                target.name, sparse_out ? "sparse" : "dense", SplitStrategyName(plan.split),
                plan.tiles_used, plan.workloads.size(), plan.time_us(), k0.isa.c_str(),
                run.seconds, ref_secs, ref_secs / run.seconds,
                ok ? "identical" : "DIFFERS FROM THE REFERENCE");
  }
  return same;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "demo: %s\n", s.ToString().c_str());
  return 1;
}

int Main() {
  std::printf("dpuemu demo: ZMConv with sparse weights and activations on the emulated NPU DPU\n\n");
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
    if (!spec.ok()) return Fail(spec.status());
    spec->in_dtype = c.in;
    spec->w_dtype = c.w;
    spec->out_dtype = c.out;
    spec->weight_sparsity = 0.6;
    spec->input_sparsity = 0.3;
    StatusOr<NceLayer> layer = GenerateLayer(*spec, /*seed=*/2024);
    if (!layer.ok()) return Fail(layer.status());
    const NceGeometry& g = layer->op.g;
    std::printf("%s: input %lldx%lldx%lld %s -> %lld channels %s, kernel %lldx%lld, stride %lld, "
                "pad %lld; weights %s, 60%% zero; %.1f M MACs\n",
                c.layer, static_cast<long long>(g.h), static_cast<long long>(g.w),
                static_cast<long long>(g.c), DTypeName(c.in), static_cast<long long>(g.k),
                DTypeName(c.out), static_cast<long long>(g.ky), static_cast<long long>(g.kx),
                static_cast<long long>(g.stride_y), static_cast<long long>(g.pad_top),
                DTypeName(c.w), static_cast<double>(g.dense_macs()) / 1e6);
    for (const Target* t : AllTargets()) {
      StatusOr<bool> same = RunLayerOn(*layer, *t);
      if (!same.ok()) return Fail(same.status());
      all_same = all_same && *same;
    }
    std::printf("\n");
  }
  // The DPU's other operations (README "Operations"), MobileNetV2 / ResNet-50 shapes.
  std::printf("The DPU's other operations:\n");
  struct OtherCase {
    const char* name;
    NceKind kind;
    int64_t hw, c, kernel, stride;
  };
  const OtherCase others[] = {{"mbv2 dwconv 3x3", NceKind::kDwConv, 56, 144, 3, 1},
                              {"r50 maxpool 3x3 s2", NceKind::kMaxPool, 112, 64, 3, 2},
                              {"avgpool 2x2 s2", NceKind::kAvgPool, 14, 256, 2, 2},
                              {"r50 eltwise add", NceKind::kEltwise, 28, 512, 1, 1}};
  for (const OtherCase& o : others) {
    for (DType dt : {DType::kU8, DType::kFP16}) {
      LayerSpec spec;
      spec.name = o.name;
      spec.kind = o.kind;
      spec.h = spec.w = o.hw;
      spec.c = spec.k = o.c;
      spec.ky = spec.kx = o.kernel;
      spec.stride = o.stride;
      spec.in_dtype = spec.out_dtype = dt;
      spec.w_dtype = dt == DType::kU8 ? DType::kI8 : dt;
      spec.input_sparsity = 0.3;
      StatusOr<NceLayer> layer = GenerateLayer(spec, /*seed=*/2024);
      if (!layer.ok()) return Fail(layer.status());
      const NceGeometry& g = layer->op.g;
      std::printf("%s (%s): %lldx%lldx%lld -> %lldx%lldx%lld\n", o.name, DTypeName(dt),
                  static_cast<long long>(g.h), static_cast<long long>(g.w),
                  static_cast<long long>(g.c), static_cast<long long>(g.out_h()),
                  static_cast<long long>(g.out_w()), static_cast<long long>(g.k));
      for (const Target* t : AllTargets()) {
        StatusOr<bool> same = RunOtherOpOn(*layer, *t);
        if (!same.ok()) return Fail(same.status());
        all_same = all_same && *same;
      }
    }
  }
  std::printf("\n");

  // A network: a pruned ResNet-style int8 model, activations sparse where it pays (auto),
  // against the reference DPU with every activation dense.
  char tmpl[] = "/tmp/dpuemu-demo-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) return Fail(Internal("demo: cannot create a temporary directory"));
  for (const Target* t : AllTargets()) {
    StatusOr<std::string> path = WriteExampleNetwork(dir, *t, /*seed=*/2024);
    if (!path.ok()) return Fail(path.status());
    StatusOr<Network> net = LoadNetwork(*path);
    if (!net.ok()) return Fail(net.status());
    StatusOr<NetworkResult> fast = RunNetwork(*net, RunOptions{});
    if (!fast.ok()) return Fail(fast.status());
    Network dense = *net;
    dense.activation_sparsity = ActivationSparsity::kDense;
    RunOptions ref;
    ref.reference = true;
    StatusOr<NetworkResult> slow = RunNetwork(dense, ref);
    if (!slow.ok()) return Fail(slow.status());
    bool same = true;
    for (size_t i = 0; i < fast->layers.size(); ++i) {
      same = same && fast->layers[i].output == slow->layers[i].output;
    }
    all_same = all_same && same;
    std::printf("%s", NetworkReportText(*net, *fast).c_str());
    std::printf("  every layer's output %s the reference DPU's with all activations dense "
                "(%.1f ms vs %.1f ms)\n\n",
                same ? "identical to" : "DIFFERS FROM", fast->seconds * 1e3, slow->seconds * 1e3);
  }
  std::filesystem::remove_all(dir);

  std::printf(all_same ? "All runs, splits and storage formats gave outputs identical to the reference "
                         "DPU on both targets.\n"
                       : "ERROR: outputs differ.\n");
  return all_same ? 0 : 1;
}

}  // namespace
}  // namespace dpuemu

int main() { return dpuemu::Main(); }
