// Eltwise add throughput: dpuemu's Highway kernel (RunNce) beside oneDNN's binary add and memcpy
// in the same run, and the reference DPU. Rows <impl>/eltwise/<H>x<W>x<C>/<dtype>; counter gbps =
// bytes read and written per second / 1e9 (two inputs and the output; memcpy: the two inputs'
// bytes copied, read plus written). Single thread.
//   int8: u8 + u8 -> u8 with zero points and the compiler's per-input multipliers. oneDNN's u8
//         binary add with per-input scales (no zero points in oneDNN 2.6's binary).
//   fp16: fp16 + fp16 -> fp16. oneDNN in f16 where its CPU binary supports it, else in f32
//         (the row's label says which).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstring>
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

struct Shape {
  const char* name;
  int64_t h, w, c;
};
const Shape kShapes[] = {{"56x56x256", 56, 56, 256}, {"28x28x512", 28, 28, 512}};

struct Case {
  NceLayer layer;
  DpuTask task;
};

const Case& GetCase(const Shape& s, bool int8) {
  static std::map<std::string, std::unique_ptr<Case>> cache;
  auto& slot = cache[std::string(s.name) + (int8 ? "/int8" : "/fp16")];
  if (!slot) {
    LayerSpec spec;
    spec.name = s.name;
    spec.kind = NceKind::kEltwise;
    spec.h = s.h;
    spec.w = s.w;
    spec.c = s.c;
    spec.in_dtype = spec.out_dtype = int8 ? DType::kU8 : DType::kFP16;
    slot = std::make_unique<Case>();
    slot->layer = *GenerateLayer(spec, 77);
    slot->task = *LowerLayer(slot->layer, {}, GetTarget(TargetId::kNPU40XX));
  }
  return *slot;
}

int64_t Bytes(const NceLayer& l) { return static_cast<int64_t>(l.input.bytes.size()); }

void SetGbps(benchmark::State& state, int64_t bytes_per_iter) {
  state.counters["gbps"] = benchmark::Counter(
      static_cast<double>(bytes_per_iter) * static_cast<double>(state.iterations()) / 1e9,
      benchmark::Counter::kIsRate);
}

void BM_Dpuemu(benchmark::State& state, Shape s, bool int8) {
  const Case& c = GetCase(s, int8);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  KernelReport report;
  for (auto _ : state) {
    auto out = RunNce(c.task, target, {}, &report);
    if (!out.ok()) {
      state.SkipWithError(out.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  state.SetLabel(report.isa);
  SetGbps(state, 3 * Bytes(c.layer));
}

void BM_Reference(benchmark::State& state, Shape s, bool int8) {
  const Case& c = GetCase(s, int8);
  const Target& target = GetTarget(TargetId::kNPU40XX);
  for (auto _ : state) {
    auto out = RunReference(c.task, target);
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  SetGbps(state, 3 * Bytes(c.layer));
}

void BM_Memcpy(benchmark::State& state, Shape s, bool int8) {
  const Case& c = GetCase(s, int8);
  const int64_t n = Bytes(c.layer);
  std::vector<uint8_t> dst(static_cast<size_t>(2 * n));
  for (auto _ : state) {
    std::memcpy(dst.data(), c.layer.input.bytes.data(), static_cast<size_t>(n));
    std::memcpy(dst.data() + n, c.layer.input2.bytes.data(), static_cast<size_t>(n));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  SetGbps(state, 4 * n);
}

void BM_OneDnn(benchmark::State& state, Shape s, bool int8) {
  using dnnl::memory;
  const Case& c = GetCase(s, int8);
  omp_set_num_threads(1);
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const memory::dims dims = {1, s.c, s.h, s.w};
  const auto make = [&](memory::data_type t) {
    const memory::desc md(dims, t, memory::format_tag::nhwc);
    dnnl::primitive_attr attr;
    if (int8) {  // the inputs' real scales as the per-input multipliers represent them
      attr.set_scales(DNNL_ARG_SRC_0, 0, {c.layer.op.eltwise.in1_mult / 65536.0f});
      attr.set_scales(DNNL_ARG_SRC_1, 0, {c.layer.op.eltwise.in2_mult / 65536.0f});
    }
    return dnnl::binary::primitive_desc(dnnl::binary::desc(dnnl::algorithm::binary_add, md, md, md),
                                        attr, eng);
  };
  memory::data_type t = int8 ? memory::data_type::u8 : memory::data_type::f16;
  dnnl::binary::primitive_desc pd;
  try {
    pd = make(t);
  } catch (const dnnl::error&) {
    t = memory::data_type::f32;  // no f16 binary on this CPU
    pd = make(t);
  }
  memory a(pd.src0_desc(), eng), b(pd.src1_desc(), eng), d(pd.dst_desc(), eng);
  FillDnnl(c.layer.input, a);
  FillDnnl(c.layer.input2, b);
  const dnnl::binary prim(pd);
  for (auto _ : state) {
    prim.execute(strm, {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, d}});
    strm.wait();
  }
  state.SetLabel(t == memory::data_type::f32 ? "f32" : t == memory::data_type::f16 ? "f16" : "u8");
  SetGbps(state, 3 * c.layer.input.numel() * static_cast<int64_t>(memory::data_type_size(t)));
}

const bool kRegistered = [] {
  for (const Shape& s : kShapes) {
    for (bool int8 : {true, false}) {
      const std::string suffix = std::string("eltwise/") + s.name + (int8 ? "/int8" : "/fp16");
      benchmark::RegisterBenchmark(("dpuemu/" + suffix).c_str(), BM_Dpuemu, s, int8)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("onednn/" + suffix).c_str(), BM_OneDnn, s, int8)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("memcpy/" + suffix).c_str(), BM_Memcpy, s, int8)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("ref/" + suffix).c_str(), BM_Reference, s, int8)
          ->Unit(benchmark::kMicrosecond)
          ->Iterations(3);
    }
  }
  return true;
}();

}  // namespace
}  // namespace dpuemu
