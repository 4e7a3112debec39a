// ZMConv throughput: dpuemu's kernels beside oneDNN (the CPU peer) and the reference DPU, on the
// project's layer table (hw/layer.h StandardLayers). Rows: <impl>/<layer>/<dtype>/<sparsity>,
// counter gmacs = dense-equivalent MACs per second / 1e9; dpuemu/.../<sparsity>/dense and
// .../sparse-weights force that kernel on the same weights (the auto row's choice beside the
// other). Single thread, except the
// .../threads:N rows: the layer planned for NPU40XX and run by the runtime's executor (every
// workload its own task, prepared once like the single-thread rows' weights) on N threads, and
// oneDNN on 2 OpenMP threads; those are timed in wall-clock time (suffix /real_time). prepare/...
// rows time the runtime's preparation of the same planned layer (what `dpuemu run` pays once).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <pthreadpool.h>
#include <xnnpack.h>

#include <cstring>
#include <dnnl.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/dnnl_fill.h"
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

void BM_Dpuemu(benchmark::State& state, std::string name, bool int8, int sparsity, ConvKernel kernel) {
  const Case& c = GetCase(name, int8, sparsity);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  KernelOptions options;
  options.kernel = kernel;
  KernelReport report;
  // Weights decoded and packed once, as oneDNN's rows reorder theirs once.
  auto prepared = PreparedWeights::Create(c.task, target);
  if (!prepared.ok()) return state.SkipWithError(prepared.status().ToString().c_str());
  for (auto _ : state) {
    auto out = RunZMConv(c.task, target, options, &report, &*prepared);
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

// What a single `dpuemu run` pays before its kernels: the runtime's preparation of the planned
// layer (slicing, lowering, weight decoding and packing), single thread; compare with the
// .../threads:1 row of the same layer.
void BM_Prepare(benchmark::State& state, std::string name, bool int8, int sparsity) {
  const Case& c = GetCase(name, int8, sparsity);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  PlanOptions po;
  po.heuristic = sparsity > 0 ? WeightHeuristic::kSparse : WeightHeuristic::kDense;
  auto plan = PlanLayer(c.layer, target, po);
  if (!plan.ok()) return state.SkipWithError(plan.status().ToString().c_str());
  RunOptions ro;
  ro.threads = 1;
  for (auto _ : state) {
    auto prepared = PreparedLayer::Create(c.layer, *plan, target, ro);
    if (!prepared.ok()) return state.SkipWithError(prepared.status().ToString().c_str());
    benchmark::DoNotOptimize(prepared->items());
  }
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
  FillDnnl(c.layer.input, user_src);
  FillDnnl(c.layer.weights, user_w);
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

// XNNPACK (Debian's 2022 snapshot), the second peer, on the same layer's data:
//   kQu8     qu8 NHWC convolution (u8 activations and weights with zero points, int32 bias, its
//            own fp32 requantisation: not dpuemu's PPE) for int8; the i8 weights enter as w + 128
//            with zero point w_zp + 128, the same products;
//   kF32     f32 NHWC convolution for fp16 (fp16 values widened to f32);
//   kF16     its f16 NHWC convolution: fp16 storage, rounded to fp16 after every FMA (not exact
//            fp32 accumulation like the DPU), labelled as such;
//   kSpmmF32 f32 NCHW convolution, which XNNPACK runs as a sparse-matrix x dense-matrix product
//            (SpMM) over the non-zero weights for 1x1 stride-1 unpadded layers: the reference
//            point for compute proportional to the non-zeros, at the case's weight sparsity.
enum class XnnMode { kQu8, kF32, kF16, kSpmmF32 };

const char* XnnModeName(XnnMode m) {
  switch (m) {
    case XnnMode::kQu8: return "qu8 NHWC";
    case XnnMode::kF32: return "f32 NHWC";
    case XnnMode::kF16: return "f16 NHWC (rounds to fp16 after every FMA)";
    case XnnMode::kSpmmF32: return "f32 NCHW SpMM";
  }
  return "?";
}

uint16_t FloatToHalfBits(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

void BM_Xnnpack(benchmark::State& state, std::string name, int sparsity, XnnMode mode, int threads) {
  static const bool initialized = xnn_initialize(nullptr) == xnn_status_success;
  if (!initialized) return state.SkipWithError("xnn_initialize failed");
  const Case& c = GetCase(name, mode == XnnMode::kQu8, sparsity);
  const NceOp& op = c.layer.op;
  const NceGeometry& g = op.g;
  const size_t nx = c.layer.input.numel(), nw = c.layer.weights.numel();
  const size_t ny = g.out_h() * g.out_w() * g.k;
  std::unique_ptr<pthreadpool, decltype(&pthreadpool_destroy)> pool(
      threads > 1 ? pthreadpool_create(threads) : nullptr, pthreadpool_destroy);
  xnn_operator_t conv = nullptr;
  xnn_status st = xnn_status_success;
  // Buffers the operator reads and writes (kept alive for the timed loop).
  std::vector<uint8_t> x8, w8, y8;
  std::vector<float> xf, wf, bf, yf;
  std::vector<uint16_t> xh, wh, bh, yh;
  const auto* x = c.layer.input.bytes.data();
  const auto* w = c.layer.weights.bytes.data();
  const uint32_t pt = g.pad_top, pr = g.pad_right, pb = g.pad_bottom, pl = g.pad_left;
  const uint32_t ky = g.ky, kx = g.kx, sy = g.stride_y, sx = g.stride_x;
  if (mode == XnnMode::kQu8) {
    x8.assign(x, x + nx);
    w8.resize(nw);
    for (size_t i = 0; i < nw; ++i) w8[i] = static_cast<uint8_t>(static_cast<int8_t>(w[i]) + 128);
    y8.resize(ny);
    const int32_t out_zp = std::min<int32_t>(255, std::max<int32_t>(0, op.ppe.out_zp));
    // Scales only set XNNPACK's requantisation multiplier (input x kernel / output < 1 required).
    st = xnn_create_convolution2d_nhwc_qu8(
        pt, pr, pb, pl, ky, kx, sy, sx, 1, 1, 1, g.c, g.k, g.c, g.k, static_cast<uint8_t>(op.in_zp),
        1.0f, static_cast<uint8_t>(op.w_zp + 128), 1.0f, w8.data(), c.layer.quant.bias.data(),
        static_cast<uint8_t>(out_zp), 1024.0f, 0, 255, 0, &conv);
    if (st == xnn_status_success)
      st = xnn_setup_convolution2d_nhwc_qu8(conv, 1, g.h, g.w, x8.data(), y8.data(), pool.get());
  } else if (mode == XnnMode::kF16) {
    xh.assign(reinterpret_cast<const uint16_t*>(x), reinterpret_cast<const uint16_t*>(x) + nx);
    wh.assign(reinterpret_cast<const uint16_t*>(w), reinterpret_cast<const uint16_t*>(w) + nw);
    bh.resize(g.k);
    for (int64_t k = 0; k < g.k; ++k) bh[k] = FloatToHalfBits(c.layer.quant.fbias[k]);
    yh.resize(ny);
    st = xnn_create_convolution2d_nhwc_f16(pt, pr, pb, pl, ky, kx, sy, sx, 1, 1, 1, g.c, g.k, g.c,
                                           g.k, wh.data(), bh.data(), -65504.0f, 65504.0f, 0, &conv);
    if (st == xnn_status_success)
      st = xnn_setup_convolution2d_nhwc_f16(conv, 1, g.h, g.w, xh.data(), yh.data(), pool.get());
  } else {
    xf.resize(nx);
    wf.resize(nw);
    yf.resize(ny);
    const bool nchw = mode == XnnMode::kSpmmF32;
    const int64_t hw = g.h * g.w;
    for (int64_t p = 0; p < hw; ++p) {
      for (int64_t ch = 0; ch < g.c; ++ch) {
        const float v = LoadFloat(DType::kFP16, x, p * g.c + ch);
        xf[nchw ? ch * hw + p : p * g.c + ch] = v;
      }
    }
    // [K, KY, KX, C] is XNNPACK's kernel layout for both: NHWC [K, KY, KX, C]; the NCHW 1x1
    // operator's [K, C] is the same.
    for (size_t i = 0; i < nw; ++i) wf[i] = LoadFloat(DType::kFP16, w, i);
    bf = c.layer.quant.fbias;
    const float inf = std::numeric_limits<float>::infinity();
    if (nchw) {
      st = xnn_create_convolution2d_nchw_f32(pt, pr, pb, pl, ky, kx, sy, sx, 1, 1, 1, g.c, g.k,
                                             g.c, g.k, wf.data(), bf.data(), -inf, inf, 0, &conv);
      if (st == xnn_status_success)
        st = xnn_setup_convolution2d_nchw_f32(conv, 1, g.h, g.w, xf.data(), yf.data(), pool.get());
    } else {
      st = xnn_create_convolution2d_nhwc_f32(pt, pr, pb, pl, ky, kx, sy, sx, 1, 1, 1, g.c, g.k,
                                             g.c, g.k, wf.data(), bf.data(), -inf, inf, 0, &conv);
      if (st == xnn_status_success)
        st = xnn_setup_convolution2d_nhwc_f32(conv, 1, g.h, g.w, xf.data(), yf.data(), pool.get());
    }
  }
  std::unique_ptr<xnn_operator, decltype(&xnn_delete_operator)> owner(conv, xnn_delete_operator);
  if (st != xnn_status_success) {
    const std::string msg = std::string("XNNPACK ") + XnnModeName(mode) + ": status " +
                            std::to_string(static_cast<int>(st)) +
                            (st == xnn_status_unsupported_hardware ? " (unsupported hardware)" : "");
    return state.SkipWithError(msg.c_str());
  }
  for (auto _ : state) {
    if (xnn_run_operator(conv, pool.get()) != xnn_status_success)
      return state.SkipWithError("xnn_run_operator failed");
    benchmark::ClobberMemory();
  }
  state.SetLabel(XnnModeName(mode));
  SetGmacs(state, c.layer);
}

void RegisterAll() {
  for (const LayerSpec& spec : StandardLayers()) {
    for (bool int8 : {true, false}) {
      const std::string dt = int8 ? "int8" : "fp16";
      for (int sparsity : {0, 50, 75, 90}) {
        const std::string suffix = spec.name + "/" + dt + "/" + std::to_string(sparsity);
        benchmark::RegisterBenchmark(("dpuemu/" + suffix).c_str(), BM_Dpuemu, spec.name, int8, sparsity,
                                     ConvKernel::kAuto)
            ->Unit(benchmark::kMillisecond);
        // The other kernel on the same sparse weights, forced: the auto choice beside it.
        for (ConvKernel forced : {ConvKernel::kDense, ConvKernel::kSparseWeights}) {
          if (sparsity == 0) break;
          benchmark::RegisterBenchmark(("dpuemu/" + suffix + "/" + ConvKernelName(forced)).c_str(), BM_Dpuemu,
                                       spec.name, int8, sparsity, forced)
              ->Unit(benchmark::kMillisecond);
        }
        if (sparsity == 0 || sparsity == 75) {
          benchmark::RegisterBenchmark(("prepare/" + suffix).c_str(), BM_Prepare, spec.name, int8, sparsity)
              ->Unit(benchmark::kMillisecond);
        }
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
        // XNNPACK: dense rows at 0% (qu8 for int8; f32 and its f16 path for fp16), the SpMM row
        // (f32 NCHW) at every sparsity on the 1x1 stride-1 unpadded layers; each single-thread
        // and on 2 threads.
        for (int threads : {1, 2}) {
          const std::string th = threads > 1 ? "/threads:2" : "";
          auto reg = [&](const std::string& row, XnnMode mode) {
            auto* b = benchmark::RegisterBenchmark(("xnnpack/" + suffix + row + th).c_str(),
                                                   BM_Xnnpack, spec.name, sparsity, mode, threads)
                          ->Unit(benchmark::kMillisecond);
            if (threads > 1) b->UseRealTime();
          };
          if (sparsity == 0 && int8) reg("", XnnMode::kQu8);
          if (sparsity == 0 && !int8) {
            reg("", XnnMode::kF32);
            reg("/f16", XnnMode::kF16);
          }
          const bool spmm_layer = spec.ky == 1 && spec.kx == 1 && spec.stride <= 1;
          if (!int8 && spmm_layer) reg("/spmm", XnnMode::kSpmmF32);
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
