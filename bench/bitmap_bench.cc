// Sparsity-bitmap kernels (kernels/bitmap.h) on the activations of the layer table (hw/layer.h
// StandardLayers), beside memcpy of the same dense size in the same run. Rows:
//   decode/<path>/<H>x<W>x<C>/<dtype>/<sparsity%>  packed SEs + map -> dense, into a reused buffer
//   gather/<path>/...                              the same through an SE table over 2 tiles
//   encode/<path>/...                              dense -> packed SEs + map (new buffers)
//   wdecode/<path>/<K>x<KY>x<KX>x<C>/<dtype>/<sparsity%>  compressed weights -> dense
//   scalar_decode/...                              hw/formats.h DecodeSparseActivations, for scale
//   memcpy/<bytes>
// <path> is kernels/bitmap.h's ActivePath(): "avx512vbmi2" (where the CPU has it) and
// "table/<Highway target>", each row forcing its path. bytes_per_second counts the DENSE bytes
// of the tensor. Single thread.
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/target.h"
#include "kernels/bitmap.h"

namespace dpuemu {
namespace {

struct Case {
  Tensor dense;
  int32_t zp = 0;
  SparseActivations sparse;
  // The SE table view: rows [0, H/2) in tile 0, the rest in tile 1 (as a height split stores
  // them), each tile holding its rows' slots from offset 0.
  std::vector<std::vector<uint8_t>> tiles;
  std::vector<int32_t> table;
  ActivationView table_view;
  ActivationView plain_view;  // the same tensor without a table
};

const Case& GetCase(int64_t h, int64_t w, int64_t c, DType dtype, int sparsity) {
  static std::map<std::tuple<int64_t, int64_t, int64_t, DType, int>, std::unique_ptr<Case>> cache;
  auto& slot = cache[{h, w, c, dtype, sparsity}];
  if (slot) return *slot;
  LayerSpec spec;
  spec.h = h;
  spec.w = w;
  spec.c = c;
  spec.k = 16;
  spec.in_dtype = dtype;
  spec.w_dtype = dtype == DType::kU8 ? DType::kI8 : dtype;
  spec.out_dtype = dtype;
  spec.input_sparsity = sparsity / 100.0;
  const NceLayer layer = *GenerateLayer(spec, 1234);
  slot = std::make_unique<Case>();
  Case& k = *slot;
  k.dense = layer.input;
  k.zp = layer.op.in_zp;
  const int64_t se = DefaultSeSize(GetTarget(TargetId::kNPU40XX), c);
  k.sparse = *simd::EncodeSparseActivations(k.dense, k.zp, se);
  const int64_t row_bytes = w * c * DTypeBytes(dtype);
  const int64_t split = h / 2;
  for (int t = 0; t < 2; ++t) {
    const int64_t rb = t == 0 ? 0 : split, re = t == 0 ? split : h;
    k.tiles.emplace_back(k.sparse.data.begin() + rb * row_bytes,
                         k.sparse.data.begin() + re * row_bytes);
    const std::vector<int32_t> part = *MakeIdentitySeTable(re - rb, w, c, se, dtype, t);
    k.table.insert(k.table.end(), part.begin(), part.end());
  }
  k.table_view.tiles = {k.tiles[0], k.tiles[1]};
  k.table_view.map = k.sparse.map;
  k.table_view.se_table = k.table;
  k.table_view.se_size = se;
  k.plain_view.tiles = {k.sparse.data};
  k.plain_view.map = k.sparse.map;
  k.plain_view.se_size = se;
  return k;
}

// Forces `path` for one benchmark and restores the automatic choice after it.
class PathScope {
 public:
  explicit PathScope(simd::BitmapPath path) : ok_(simd::SetBitmapPath(path).ok()) {}
  ~PathScope() { (void)simd::SetBitmapPath(simd::BitmapPath::kAuto); }
  bool ok() const { return ok_; }

 private:
  bool ok_;
};

void SetDenseBytes(benchmark::State& state, int64_t bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes);
}

void BM_Gather(benchmark::State& state, simd::BitmapPath path, const Case* c, bool table) {
  const PathScope scope(path);
  if (!scope.ok()) return state.SkipWithError("path unavailable");
  const Case& k = *c;
  std::vector<uint8_t> out(k.dense.bytes.size());
  const ActivationView& view = table ? k.table_view : k.plain_view;
  for (auto _ : state) {
    const Status st = simd::GatherRows(view, k.dense.dtype, k.dense.shape, k.zp, 0,
                                       k.dense.shape[0], out);
    if (!st.ok()) return state.SkipWithError(st.ToString().c_str());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  SetDenseBytes(state, static_cast<int64_t>(out.size()));
}

void BM_Encode(benchmark::State& state, simd::BitmapPath path, const Case* c) {
  const PathScope scope(path);
  if (!scope.ok()) return state.SkipWithError("path unavailable");
  const Case& k = *c;
  for (auto _ : state) {
    auto sa = simd::EncodeSparseActivations(k.dense, k.zp, k.sparse.se_size);
    if (!sa.ok()) return state.SkipWithError(sa.status().ToString().c_str());
    benchmark::DoNotOptimize(sa->data.data());
  }
  SetDenseBytes(state, static_cast<int64_t>(k.dense.bytes.size()));
}

struct WeightCase {
  Tensor dense;
  int32_t zp = 0;
  NceGeometry g;
  CompressedWeights cw;
  std::vector<uint8_t> table;  // every channel sparse
};

// The weights of GenerateLayer (K, KY, KX, C of the layer) at `sparsity`% zeros.
const WeightCase& GetWeightCase(const LayerSpec& base, DType dtype, int sparsity) {
  static std::map<std::tuple<std::string, DType, int>, std::unique_ptr<WeightCase>> cache;
  auto& slot = cache[{base.name, dtype, sparsity}];
  if (slot) return *slot;
  LayerSpec spec = base;
  spec.in_dtype = dtype == DType::kI8 ? DType::kU8 : dtype;
  spec.w_dtype = dtype;
  spec.out_dtype = spec.in_dtype;
  spec.weight_sparsity = sparsity / 100.0;
  const NceLayer layer = *GenerateLayer(spec, 4321);
  slot = std::make_unique<WeightCase>();
  WeightCase& k = *slot;
  k.dense = layer.weights;
  k.zp = layer.op.w_zp;
  k.g = *CheckCompressWeights(k.dense, k.zp);
  k.cw = *simd::CompressWeights(k.dense, k.zp);
  std::vector<WeightTableEntry> entries(static_cast<size_t>(k.g.k));
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].weight_ptr = k.cw.data_offset[i];
    entries[i].sparsity_ptr = k.cw.map_offset[i];
  }
  k.table = EncodeWeightTable(entries);
  return k;
}

void BM_WeightDecode(benchmark::State& state, simd::BitmapPath path, const WeightCase* c) {
  const PathScope scope(path);
  if (!scope.ok()) return state.SkipWithError("path unavailable");
  const WeightCase& k = *c;
  for (auto _ : state) {
    auto t = simd::DecompressWeights(k.cw.data, k.cw.map, k.table, k.g, k.dense.dtype, k.zp);
    if (!t.ok()) return state.SkipWithError(t.status().ToString().c_str());
    benchmark::DoNotOptimize(t->bytes.data());
  }
  SetDenseBytes(state, static_cast<int64_t>(k.dense.bytes.size()));
}

void BM_ScalarDecode(benchmark::State& state, const Case* c) {
  const Case& k = *c;
  for (auto _ : state) {
    auto t = DecodeSparseActivations(k.sparse.data, k.sparse.map, k.dense.dtype, k.dense.shape,
                                     k.zp, k.sparse.se_size);
    if (!t.ok()) return state.SkipWithError(t.status().ToString().c_str());
    benchmark::DoNotOptimize(t->bytes.data());
  }
  SetDenseBytes(state, static_cast<int64_t>(k.dense.bytes.size()));
}

void BM_Memcpy(benchmark::State& state, int64_t bytes) {
  std::vector<uint8_t> src(static_cast<size_t>(bytes), 1), dst(static_cast<size_t>(bytes));
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), dst.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  SetDenseBytes(state, bytes);
}

// The paths this CPU runs, with their row names.
std::vector<std::pair<simd::BitmapPath, std::string>> Paths() {
  std::vector<std::pair<simd::BitmapPath, std::string>> paths;
  for (simd::BitmapPath p : {simd::BitmapPath::kVbmi2, simd::BitmapPath::kTable}) {
    if (!simd::SetBitmapPath(p).ok()) continue;
    paths.emplace_back(p, simd::ActivePath());
  }
  (void)simd::SetBitmapPath(simd::BitmapPath::kAuto);
  return paths;
}

void RegisterAll() {
  const auto paths = Paths();
  std::set<std::tuple<int64_t, int64_t, int64_t>> shapes;
  for (const LayerSpec& s : StandardLayers()) shapes.insert({s.h, s.w, s.c});
  std::set<int64_t> copy_sizes;
  for (const auto& [h, w, c] : shapes) {
    for (DType dtype : {DType::kU8, DType::kFP16}) {
      copy_sizes.insert(h * w * c * DTypeBytes(dtype));
      for (int sparsity : {0, 50, 90}) {
        const std::string name = std::to_string(h) + "x" + std::to_string(w) + "x" +
                                 std::to_string(c) + "/" + DTypeName(dtype) + "/" +
                                 std::to_string(sparsity);
        const Case* k = &GetCase(h, w, c, dtype, sparsity);
        for (const auto& [path, pname] : paths) {
          const std::string row = pname + "/" + name;
          benchmark::RegisterBenchmark(("decode/" + row).c_str(), BM_Gather, path, k, false);
          benchmark::RegisterBenchmark(("gather/" + row).c_str(), BM_Gather, path, k, true);
          benchmark::RegisterBenchmark(("encode/" + row).c_str(), BM_Encode, path, k);
        }
        if (sparsity == 50) {
          benchmark::RegisterBenchmark(("scalar_decode/" + name).c_str(), BM_ScalarDecode, k);
        }
      }
    }
  }
  for (const LayerSpec& s : StandardLayers()) {
    for (DType dtype : {DType::kI8, DType::kFP16}) {
      for (int sparsity : {50, 90}) {
        const WeightCase* k = &GetWeightCase(s, dtype, sparsity);
        const std::string name = std::to_string(k->g.k) + "x" + std::to_string(k->g.ky) + "x" +
                                 std::to_string(k->g.kx) + "x" + std::to_string(k->g.c) + "/" +
                                 DTypeName(dtype) + "/" + std::to_string(sparsity);
        copy_sizes.insert(static_cast<int64_t>(k->dense.bytes.size()));
        for (const auto& [path, pname] : paths) {
          benchmark::RegisterBenchmark(("wdecode/" + pname + "/" + name).c_str(),
                                       BM_WeightDecode, path, k);
        }
      }
    }
  }
  for (int64_t bytes : copy_sizes) {
    benchmark::RegisterBenchmark(("memcpy/" + std::to_string(bytes)).c_str(), BM_Memcpy, bytes);
  }
}

}  // namespace
}  // namespace dpuemu

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  dpuemu::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
