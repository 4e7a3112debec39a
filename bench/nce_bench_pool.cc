// Max and average pooling: dpuemu (RunNce: the Highway kernels of kernels/pool.cc), oneDNN's
// pooling primitive on the same data, the reference, and memcpy of the input for a memory-bound
// peer. Single thread. GB/s counts the input read plus the output written once.
#include <omp.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <dnnl.hpp>

#include "bench/dnnl_fill.h"
#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {
namespace {

struct PoolCase {
  std::string name;
  NceKind kind;
  int64_t hw, c, k, s, pad;
};
const std::vector<PoolCase>& Cases() {
  static const std::vector<PoolCase> cases = {
      {"mp_112x112x64_3x3s2", NceKind::kMaxPool, 112, 64, 3, 2, 1},  // ResNet-50 stem pool
      {"ap_56x56x256_3x3s1", NceKind::kAvgPool, 56, 256, 3, 1, 1},
      {"ap_7x7x1024_7x7", NceKind::kAvgPool, 7, 1024, 7, 1, 0},  // global average pool
  };
  return cases;
}

struct Prepared {
  NceLayer layer;
  DpuTask task;
};

const Prepared& Get(const PoolCase& pc, bool int8) {
  static std::map<std::string, Prepared> cache;
  const std::string key = pc.name + (int8 ? "/int8" : "/fp16");
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  LayerSpec spec;
  spec.name = pc.name;
  spec.kind = pc.kind;
  spec.h = spec.w = pc.hw;
  spec.c = spec.k = pc.c;
  spec.ky = spec.kx = pc.k;
  spec.stride = pc.s;
  spec.pad = pc.pad;
  spec.in_dtype = spec.out_dtype = int8 ? DType::kU8 : DType::kFP16;
  Prepared p;
  p.layer = GenerateLayer(spec, 42).value();
  p.task = LowerLayer(p.layer, {}, GetTarget(TargetId::kNPU40XX)).value();
  return cache.emplace(key, std::move(p)).first->second;
}

int64_t Bytes(const NceLayer& l) {
  const NceGeometry& g = l.op.g;
  return l.input.bytes.size() + g.out_h() * g.out_w() * g.k * DTypeBytes(l.op.out_dtype);
}

void SetBytes(benchmark::State& state, int64_t bytes) {
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * state.iterations() / 1e9,
                                              benchmark::Counter::kIsRate);
}

void BM_Dpuemu(benchmark::State& state, PoolCase pc, bool int8) {
  const Prepared& p = Get(pc, int8);
  const Target& t = GetTarget(TargetId::kNPU40XX);
  KernelReport rep;
  for (auto _ : state) {
    auto out = RunNce(p.task, t, {}, &rep);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  state.SetLabel(rep.isa);
  SetBytes(state, Bytes(p.layer));
}

void BM_Reference(benchmark::State& state, PoolCase pc, bool int8) {
  const Prepared& p = Get(pc, int8);
  const Target& t = GetTarget(TargetId::kNPU40XX);
  for (auto _ : state) {
    auto out = RunReference(p.task, t);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data.bytes.data());
  }
  SetBytes(state, Bytes(p.layer));
}

// oneDNN 2.6 pooling (max, or average including padding as the DPU's) on NHWC data: u8 for int8;
// f16 where this oneDNN has it, else f32 (the label says which).
void BM_OneDnn(benchmark::State& state, PoolCase pc, bool int8) {
  using dnnl::memory;
  const Prepared& p = Get(pc, int8);
  const NceGeometry& g = p.layer.op.g;
  omp_set_num_threads(1);
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const memory::dims src_dims = {1, g.c, g.h, g.w}, dst_dims = {1, g.k, g.out_h(), g.out_w()};
  const auto alg = pc.kind == NceKind::kMaxPool ? dnnl::algorithm::pooling_max
                                                : dnnl::algorithm::pooling_avg_include_padding;
  std::vector<memory::data_type> types = {memory::data_type::u8};
  if (!int8) types = {memory::data_type::f16, memory::data_type::f32};
  for (const auto dt : types) {
    try {
      const memory::desc src_md(src_dims, dt, memory::format_tag::nhwc);
      const memory::desc dst_md(dst_dims, dt, memory::format_tag::nhwc);
      const dnnl::pooling_forward::desc desc(dnnl::prop_kind::forward_inference, alg, src_md, dst_md,
                                             {g.stride_y, g.stride_x}, {g.ky, g.kx},
                                             {g.pad_top, g.pad_left}, {g.pad_bottom, g.pad_right});
      const dnnl::pooling_forward::primitive_desc pd(desc, eng);
      memory src(src_md, eng), dst(dst_md, eng);
      FillDnnl(p.layer.input, src);
      const dnnl::pooling_forward pool(pd);
      for (auto _ : state) {
        pool.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
        strm.wait();
      }
      state.SetLabel(std::string(dt == memory::data_type::u8 ? "u8" : dt == memory::data_type::f16 ? "f16" : "f32") +
                     " " + pd.impl_info_str());
      const int64_t eb = dt == memory::data_type::f32 ? 4 : dt == memory::data_type::f16 ? 2 : 1;
      SetBytes(state, (g.h * g.w * g.c + g.out_h() * g.out_w() * g.k) * eb);
      return;
    } catch (const dnnl::error&) {
      continue;  // this data type is not implemented here: try the next
    }
  }
  state.SkipWithError("oneDNN has no pooling for this data type");
}

void BM_Memcpy(benchmark::State& state, PoolCase pc, bool int8) {
  const Prepared& p = Get(pc, int8);
  std::vector<uint8_t> dst(p.layer.input.bytes.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), p.layer.input.bytes.data(), dst.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  SetBytes(state, 2 * static_cast<int64_t>(dst.size()));  // read + write
}

const bool kRegistered = [] {
  for (const PoolCase& pc : Cases()) {
    const std::string kind = NceKindName(pc.kind);
    for (bool int8 : {true, false}) {
      const std::string suffix = kind + "/" + pc.name + "/" + (int8 ? "int8" : "fp16");
      benchmark::RegisterBenchmark(("dpuemu/" + suffix).c_str(), BM_Dpuemu, pc, int8)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("onednn/" + suffix).c_str(), BM_OneDnn, pc, int8)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("ref/" + suffix).c_str(), BM_Reference, pc, int8)
          ->Unit(benchmark::kMicrosecond)
          ->Iterations(2);
      benchmark::RegisterBenchmark(("memcpy/" + suffix).c_str(), BM_Memcpy, pc, int8)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace
}  // namespace dpuemu
