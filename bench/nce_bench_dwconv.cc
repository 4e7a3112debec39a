// Depthwise convolution rows of nce_bench: dpuemu/dwconv/<layer>/<dtype> (RunNce on the task
// lowered for NPU40XX), onednn/dwconv/<layer>/<dtype> (oneDNN's grouped convolution with
// groups = C in the same run: u8s8 -> u8 with per-channel output scales for int8, f32 for fp16,
// as oneDNN 2.6 has no fp16 convolution here) and ref/dwconv/... (the reference DPU). Counter
// gmacs = MACs (OH * OW * C * KY * KX) per second / 1e9. Single thread.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <dnnl.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/dnnl_fill.h"
#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {
namespace {

struct DwLayer {
  const char* name;
  int64_t hw, c, stride;
};
// MobileNetV2's depthwise layers: the stride-2 3x3 on 112x112x96 and the stride-1 3x3 on 56x56x144.
const DwLayer kDwLayers[] = {{"mnv2_112x112x96_s2", 112, 96, 2}, {"mnv2_56x56x144_s1", 56, 144, 1}};

struct DwCase {
  NceLayer layer;
  DpuTask task;
};

const DwCase& GetDwCase(const DwLayer& l, bool int8) {
  static std::map<std::string, std::unique_ptr<DwCase>> cache;
  auto& slot = cache[std::string(l.name) + (int8 ? "/int8" : "/fp16")];
  if (!slot) {
    LayerSpec s;
    s.name = l.name;
    s.kind = NceKind::kDwConv;
    s.h = s.w = l.hw;
    s.c = l.c;
    s.ky = s.kx = 3;
    s.stride = l.stride;
    s.in_dtype = int8 ? DType::kU8 : DType::kFP16;
    s.w_dtype = int8 ? DType::kI8 : DType::kFP16;
    s.out_dtype = int8 ? DType::kU8 : DType::kFP16;
    slot = std::make_unique<DwCase>();
    slot->layer = *GenerateLayer(s, 4321);
    slot->task = *LowerLayer(slot->layer, {}, GetTarget(TargetId::kNPU40XX));
  }
  return *slot;
}

void SetDwGmacs(benchmark::State& state, const NceLayer& layer) {
  const NceGeometry& g = layer.op.g;
  const double macs = static_cast<double>(g.out_h() * g.out_w() * g.k * layer.op.taps_per_output());
  state.counters["gmacs"] =
      benchmark::Counter(macs * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void BM_DwDpuemu(benchmark::State& state, DwLayer l, bool int8) {
  const DwCase& c = GetDwCase(l, int8);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  KernelReport report;
  for (auto _ : state) {
    auto out = RunNce(c.task, target, {}, &report);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  state.SetLabel(report.isa);
  SetDwGmacs(state, c.layer);
}

void BM_DwReference(benchmark::State& state, DwLayer l, bool int8) {
  const DwCase& c = GetDwCase(l, int8);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  for (auto _ : state) {
    auto out = RunReference(c.task, target);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  SetDwGmacs(state, c.layer);
}

void BM_DwOneDnn(benchmark::State& state, DwLayer l, bool int8) {
  using dnnl::memory;
  const DwCase& c = GetDwCase(l, int8);
  const NceGeometry& g = c.layer.op.g;
  omp_set_num_threads(1);
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const auto src_t = int8 ? memory::data_type::u8 : memory::data_type::f32;
  const auto w_t = int8 ? memory::data_type::s8 : memory::data_type::f32;
  const auto dst_t = int8 ? memory::data_type::u8 : memory::data_type::f32;
  // Grouped convolution, one group per channel: weights [G = C, 1, 1, KY, KX].
  const memory::dims src_dims = {1, g.c, g.h, g.w}, w_dims = {g.c, 1, 1, g.ky, g.kx};
  const memory::dims dst_dims = {1, g.c, g.out_h(), g.out_w()};
  const memory::desc src_md(src_dims, src_t, memory::format_tag::any);
  const memory::desc w_md(w_dims, w_t, memory::format_tag::any);
  const memory::desc dst_md(dst_dims, dst_t, memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, w_md, dst_md,
      {g.stride_y, g.stride_x}, {g.pad_top, g.pad_left}, {g.pad_bottom, g.pad_right});
  dnnl::primitive_attr attr;
  if (int8) {
    std::vector<float> scales;
    for (int64_t i = 0; i < g.c; ++i) scales.push_back(std::ldexp(float(c.layer.quant.mult[i]), -c.layer.quant.shift[i]));
    attr.set_output_scales(1 << 1, scales);  // per output channel, like the weight table
  }
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, eng);
  memory user_src({src_dims, src_t, memory::format_tag::nhwc}, eng);
  memory user_w({w_dims, w_t, memory::format_tag::goihw}, eng);  // = [C, KY, KX, 1]
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
  state.SetLabel(pd.impl_info_str());
  SetDwGmacs(state, c.layer);
}

const bool kDwRegistered = [] {
  for (const DwLayer& l : kDwLayers) {
    for (bool int8 : {true, false}) {
      const std::string suffix = std::string("dwconv/") + l.name + (int8 ? "/int8" : "/fp16");
      benchmark::RegisterBenchmark(("dpuemu/" + suffix).c_str(), BM_DwDpuemu, l, int8)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("onednn/" + suffix).c_str(), BM_DwOneDnn, l, int8)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("ref/" + suffix).c_str(), BM_DwReference, l, int8)
          ->Unit(benchmark::kMillisecond)
          ->Iterations(1);
    }
  }
  return true;
}();

}  // namespace
}  // namespace dpuemu
