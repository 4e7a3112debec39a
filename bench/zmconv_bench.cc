// ZMConv throughput: dpuemu's kernels beside oneDNN (the CPU peer) and the reference DPU, on the
// project's layer table (hw/layer.h StandardLayers). Rows: <impl>/<layer>/<dtype>/<sparsity>,
// counter gmacs = dense-equivalent MACs per second / 1e9. Single thread, except the
// .../threads:N rows: the layer planned for NPU40XX and run by the runtime's executor (every
// workload its own task, prepared once like the single-thread rows' weights) on N threads, and
// oneDNN on 2 OpenMP threads; those are timed in wall-clock time (suffix /real_time).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <dnnl.hpp>
#include <map>
#include <memory>
#include <string>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "runtime/execute.h"
#include "runtime/plan.h"

namespace dpuemu {
namespace {

struct Case {
  NceLayer layer;
  DpuTask task;  // weights stored sparse when the layer has sparsity, dense otherwise
};

// One generated layer per (layer, dtype, sparsity), shared by every implementation's row.
const Case& GetCase(const std::string& name, bool int8, int sparsity) {
  static std::map<std::string, std::unique_ptr<Case>> cache;
  const std::string key = name + (int8 ? "/int8/" : "/fp16/") + std::to_string(sparsity);
  auto& slot = cache[key];
  if (!slot) {
    LayerSpec spec = *StandardLayer(name);
    spec.in_dtype = int8 ? DType::kU8 : DType::kFP16;
    spec.w_dtype = int8 ? DType::kI8 : DType::kFP16;
    spec.out_dtype = int8 ? DType::kU8 : DType::kFP16;
    spec.weight_sparsity = sparsity / 100.0;
    slot = std::make_unique<Case>();
    slot->layer = *GenerateLayer(spec, 1234);
    StorageOptions storage;
    storage.weights_sparse = sparsity > 0;
    slot->task = *LowerLayer(slot->layer, storage, GetTarget(TargetId::kNPU40XX));
  }
  return *slot;
}

void SetGmacs(benchmark::State& state, const NceLayer& layer) {
  state.counters["gmacs"] = benchmark::Counter(
      static_cast<double>(layer.op.g.dense_macs()) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void BM_Dpuemu(benchmark::State& state, std::string name, bool int8, int sparsity) {
  const Case& c = GetCase(name, int8, sparsity);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  KernelReport report;
  // Weights decoded and packed once, as oneDNN's rows reorder theirs once.
  auto prepared = PreparedWeights::Create(c.task, target);
  if (!prepared.ok()) return state.SkipWithError(prepared.status().ToString().c_str());
  for (auto _ : state) {
    auto out = RunZMConv(c.task, target, {}, &report, &*prepared);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  state.SetLabel(std::string(ConvKernelName(report.kernel)) + " " + report.isa);
  SetGmacs(state, c.layer);
}

// The layer through the runtime: planned for NPU40XX (auto split, weights stored as in the
// single-thread row), every workload sliced, lowered and its weights decoded once, then run on
// `threads` threads.
void BM_DpuemuThreads(benchmark::State& state, std::string name, bool int8, int sparsity,
                      int threads) {
  const Case& c = GetCase(name, int8, sparsity);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  PlanOptions po;
  po.heuristic = sparsity > 0 ? WeightHeuristic::kSparse : WeightHeuristic::kDense;
  auto plan = PlanLayer(c.layer, target, po);
  if (!plan.ok()) return state.SkipWithError(plan.status().ToString().c_str());
  RunOptions ro;
  ro.threads = threads;
  auto prepared = PreparedLayer::Create(c.layer, *plan, target, ro);
  if (!prepared.ok()) return state.SkipWithError(prepared.status().ToString().c_str());
  for (auto _ : state) {
    auto r = prepared->Run();
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    benchmark::DoNotOptimize(r->output.bytes.data());
  }
  state.SetLabel(std::string(SplitStrategyName(plan->split)) + " " +
                 std::to_string(plan->tiles_used) + " tiles, " +
                 std::to_string(prepared->items()) + " items");
  SetGmacs(state, c.layer);
}

void BM_Reference(benchmark::State& state, std::string name, bool int8, int sparsity) {
  const Case& c = GetCase(name, int8, sparsity);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  for (auto _ : state) {
    auto out = RunReference(c.task, target);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  SetGmacs(state, c.layer);
}

// oneDNN 2.6 on the same layer, dense: u8s8s32 for int8 (its AVX2 path is inexact, see README),
// f32 for fp16 (no fp16 convolution on AVX2). Tensors in oneDNN's preferred layouts, reordered
// once outside the timed loop.
void BM_OneDnn(benchmark::State& state, std::string name, bool int8, int sparsity, int threads) {
  using dnnl::memory;
  const Case& c = GetCase(name, int8, sparsity);
  const NceGeometry& g = c.layer.op.g;
  omp_set_num_threads(threads);
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const auto src_t = int8 ? memory::data_type::u8 : memory::data_type::f32;
  const auto w_t = int8 ? memory::data_type::s8 : memory::data_type::f32;
  const auto dst_t = int8 ? memory::data_type::s32 : memory::data_type::f32;
  const memory::dims src_dims = {1, g.c, g.h, g.w}, w_dims = {g.k, g.c, g.ky, g.kx};
  const memory::dims dst_dims = {1, g.k, g.out_h(), g.out_w()};
  const memory::desc src_md(src_dims, src_t, memory::format_tag::any);
  const memory::desc w_md(w_dims, w_t, memory::format_tag::any);
  const memory::desc dst_md(dst_dims, dst_t, memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, w_md, dst_md,
      {g.stride_y, g.stride_x}, {g.pad_top, g.pad_left}, {g.pad_bottom, g.pad_right});
  const dnnl::convolution_forward::primitive_desc pd(desc, eng);
  // The layer's own data, as plain NHWC / OIHW user memory, reordered into oneDNN's layouts.
  memory user_src({src_dims, src_t, memory::format_tag::nhwc}, eng);
  memory user_w({w_dims, w_t, memory::format_tag::ohwi}, eng);
  const int64_t nx = c.layer.input.numel(), nw = c.layer.weights.numel();
  for (int64_t i = 0; i < nx; ++i) {
    if (int8) {
      static_cast<uint8_t*>(user_src.get_data_handle())[i] = c.layer.input.bytes[i];
    } else {
      static_cast<float*>(user_src.get_data_handle())[i] = LoadFloat(DType::kFP16, c.layer.input.bytes.data(), i);
    }
  }
  for (int64_t i = 0; i < nw; ++i) {
    if (int8) {
      static_cast<int8_t*>(user_w.get_data_handle())[i] = static_cast<int8_t>(c.layer.weights.bytes[i]);
    } else {
      static_cast<float*>(user_w.get_data_handle())[i] = LoadFloat(DType::kFP16, c.layer.weights.bytes.data(), i);
    }
  }
  memory src(pd.src_desc(), eng), w(pd.weights_desc(), eng), dst(pd.dst_desc(), eng);
  dnnl::reorder(user_src, src).execute(strm, user_src, src);
  dnnl::reorder(user_w, w).execute(strm, user_w, w);
  const dnnl::convolution_forward conv(pd);
  for (auto _ : state) {
    conv.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}});
    strm.wait();
  }
  SetGmacs(state, c.layer);
}

void RegisterAll() {
  for (const LayerSpec& spec : StandardLayers()) {
    for (bool int8 : {true, false}) {
      const std::string dt = int8 ? "int8" : "fp16";
      for (int sparsity : {0, 50, 75, 90}) {
        const std::string suffix = spec.name + "/" + dt + "/" + std::to_string(sparsity);
        benchmark::RegisterBenchmark(("dpuemu/" + suffix).c_str(), BM_Dpuemu, spec.name, int8, sparsity)
            ->Unit(benchmark::kMillisecond);
        // threads:1 beside threads:2 separates what the plan's split costs on a CPU from scaling.
        for (int threads = 1; (sparsity == 0 || sparsity == 75) && threads <= 2; ++threads) {
          const std::string row = "dpuemu/" + suffix + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(row.c_str(), BM_DpuemuThreads, spec.name, int8, sparsity, threads)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
        if (sparsity == 0) {
          benchmark::RegisterBenchmark(("onednn/" + suffix).c_str(), BM_OneDnn, spec.name, int8, sparsity, 1)
              ->Unit(benchmark::kMillisecond);
          benchmark::RegisterBenchmark(("onednn/" + suffix + "/threads:2").c_str(), BM_OneDnn,
                                       spec.name, int8, sparsity, 2)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
        if (sparsity == 0 || sparsity == 75) {
          benchmark::RegisterBenchmark(("ref/" + suffix).c_str(), BM_Reference, spec.name, int8, sparsity)
              ->Unit(benchmark::kMillisecond)
              ->Iterations(1);
        }
      }
    }
  }
}

}  // namespace
}  // namespace dpuemu

int main(int argc, char** argv) {
  dpuemu::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
