// The fuzz entry points of fuzz_targets.h. Input layouts (FuzzReader: little-endian, zeros past
// the end; "dim" = FuzzReader::Dim, a byte 0..239 or a tag byte and an arbitrary int64):
//
//   weights:     mode u8 (even: raw buffers, odd: encode then mutate), dtype u8 (of 6), zp u8,
//                k ky kx c dims;
//                raw:    table, data, map lengths u16 each, then their bytes;
//                encode: the dense [K, KY, KX, C] tensor's bytes, then mutations: count u8, each
//                        buffer u8 (data, map, table), position u16, xor u8.
//   activations: mode u8, dtype u8, zp u8, rank u8 (0: [h, w, c], 1: [1, h, w, c], 2: [n, h, w,
//                c], 3: up to 5 dims), the dims, se_size dim;
//                raw:    data and map lengths u16, their bytes;
//                encode: the dense tensor's bytes, mutations as above (data, map).
//   gather:      dtype u8, zp u8, h w c dims, se_size dim, tiles u8 (0..4), per tile a length u16
//                and its bytes, flags u8 (1: map, 2: SE table, 4: exact map length, 8: exact
//                table length, 16: table entries built from (tile u8, 16-byte unit u16) pairs
//                instead of raw int32), map length u16 unless exact, map bytes, table length u16
//                unless exact, entries; then row_begin, row_end u8 for GatherRows.
//   npy:         the file's bytes.
//   spec:        SPEC.json length u16 and text, then five (length u16, bytes) files written as
//                x.npy, w.npy, b.npy, t.npy, m.npy next to it (input, weights, bias, SE table and
//                map by convention; a spec may name any of them for any role).
//
// Zero points are drawn inside their type's range (0 for float types) so that inputs get past
// CheckZeroPoint; its rejections are unit-tested (validation_test ZeroPointsInRange).
#include "tests/fuzz/fuzz_targets.h"

#include <algorithm>
#include <unistd.h>

#include <hwy/targets.h>

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/tensor.h"
#include "kernels/bitmap.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/execute.h"
#include "runtime/npy.h"
#include "runtime/plan.h"
#include "runtime/network.h"
#include "runtime/spec.h"

namespace dpuemu {
namespace fuzz {

void Fail(const std::string& what) {
  std::fprintf(stderr, "dpuemu fuzz: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

namespace {

int64_t g_accepted = 0;

}  // namespace

int64_t AcceptedInputs() { return g_accepted; }

namespace {

constexpr DType kDTypes[] = {DType::kU8,   DType::kI8,  DType::kFP16,
                             DType::kBF16, DType::kI32, DType::kFP32};
// Largest tensor an input may ask the harness to build (bytes).
constexpr int64_t kMaxBytes = int64_t{1} << 16;

DType TakeDType(FuzzReader& in) { return kDTypes[in.U8() % 6]; }

// A zero point inside the type's range: the byte as u8 / i8, 0 for the other types.
int32_t TakeZeroPoint(FuzzReader& in, DType t) {
  const uint8_t b = in.U8();
  if (t == DType::kU8) return b;
  if (t == DType::kI8) return static_cast<int8_t>(b);
  return 0;
}

// Product of dims times bytes: -1 if a dim is negative or the product exceeds kMaxBytes, 0 if a
// dim is 0.
int64_t SmallBytes(const std::vector<int64_t>& dims, int64_t element_bytes) {
  for (int64_t d : dims) {
    if (d < 0) return -1;
  }
  for (int64_t d : dims) {
    if (d == 0) return 0;
  }
  int64_t n = element_bytes;
  for (int64_t d : dims) {
    if (d > kMaxBytes / n) return -1;
    n *= d;
  }
  return n;
}

std::string Describe(const Status& s) { return s.ok() ? "ok" : s.ToString(); }

// Both results agree: both fail with the same message, or both succeed with the same bytes.
template <typename T, typename Same>
void ExpectSame(const StatusOr<T>& scalar, const StatusOr<T>& simd, const char* what,
                const Same& same) {
  if (scalar.ok() != simd.ok() || (!scalar.ok() && scalar.status().ToString() !=
                                                       simd.status().ToString())) {
    Fail(std::string(what) + ": scalar says '" + Describe(scalar.status()) + "', SIMD says '" +
         Describe(simd.status()) + "'");
  }
  if (scalar.ok() && !same(*scalar, *simd)) Fail(std::string(what) + ": results differ");
}

bool SameTensor(const Tensor& a, const Tensor& b) { return a == b; }

// Calls simd() once on every Highway target compiled into kernels/bitmap.cc that this CPU runs
// (the table-driven path: AVX3, AVX2, SSE4, SSSE3, scalar) and once on the AVX-512 VBMI2 path
// where the CPU has it, so every code path of the SIMD decoders is compared.
template <typename F>
void ForEachSimdTarget(const F& simd) {
  (void)simd::SetBitmapPath(simd::BitmapPath::kTable);
  for (int64_t target : simd::CompiledTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    simd();
  }
  hwy::SetSupportedTargetsForTest(0);
  if (simd::HasVbmi2()) {
    (void)simd::SetBitmapPath(simd::BitmapPath::kVbmi2);
    simd();
  }
  (void)simd::SetBitmapPath(simd::BitmapPath::kAuto);
}

void Mutate(FuzzReader& in, std::vector<std::vector<uint8_t>*> buffers) {
  const int count = in.U8() % 8;
  for (int i = 0; i < count; ++i) {
    std::vector<uint8_t>& b = *buffers[in.U8() % buffers.size()];
    const uint16_t pos = in.U16();
    const uint8_t x = in.U8();
    if (!b.empty()) b[pos % b.size()] ^= x;
  }
}

// ---- weights ----

void CheckDecompress(const std::vector<uint8_t>& data, const std::vector<uint8_t>& map,
                     const std::vector<uint8_t>& table, const NceGeometry& g, DType dtype,
                     int32_t zp, const Tensor* expect) {
  const StatusOr<Tensor> s = DecompressWeights(data, map, table, g, dtype, zp);
  ForEachSimdTarget([&] {
    ExpectSame(s, simd::DecompressWeights(data, map, table, g, dtype, zp), "DecompressWeights",
               SameTensor);
  });
  g_accepted += s.ok();
  if (expect == nullptr) return;
  if (!s.ok()) Fail("DecompressWeights of CompressWeights' output failed: " + s.status().ToString());
  if (!(*s == *expect)) Fail("DecompressWeights(CompressWeights(w)) != w");
}

bool SameCompressed(const CompressedWeights& a, const CompressedWeights& b) {
  return a.data == b.data && a.map == b.map && a.data_offset == b.data_offset &&
         a.map_offset == b.map_offset && a.nonzeros == b.nonzeros;
}

}  // namespace

int FuzzWeights(const uint8_t* bytes, size_t size) {
  FuzzReader in(bytes, size);
  const bool encode = in.U8() & 1;
  const DType dtype = TakeDType(in);
  const int32_t zp = TakeZeroPoint(in, dtype);
  NceGeometry g;
  g.k = in.Dim();
  g.ky = in.Dim();
  g.kx = in.Dim();
  g.c = in.Dim();
  if (!encode) {
    const std::vector<uint8_t> table = in.Bytes(in.U16());
    const std::vector<uint8_t> data = in.Bytes(in.U16());
    const std::vector<uint8_t> map = in.Bytes(in.U16());
    CheckDecompress(data, map, table, g, dtype, zp, nullptr);
    return 0;
  }
  const int64_t n = SmallBytes({g.k, g.ky, g.kx, g.c}, DTypeBytes(dtype));
  Tensor w;
  w.dtype = dtype;
  w.shape = {g.k, g.ky, g.kx, g.c};
  // A shape too large to build: the encoders get the input's bytes and must refuse the mismatch.
  w.bytes = n < 0 ? in.Rest() : in.Bytes(static_cast<size_t>(n));
  if (n < 0) {
    const StatusOr<CompressedWeights> s = CompressWeights(w, zp);
    if (s.ok()) Fail("CompressWeights accepted " + std::to_string(w.bytes.size()) +
                     " bytes for shape " + w.ShapeString());
    ForEachSimdTarget(
        [&] { ExpectSame(s, simd::CompressWeights(w, zp), "CompressWeights", SameCompressed); });
    return 0;
  }
  const StatusOr<CompressedWeights> s = CompressWeights(w, zp);
  ForEachSimdTarget(
      [&] { ExpectSame(s, simd::CompressWeights(w, zp), "CompressWeights", SameCompressed); });
  if (!s.ok()) return 0;
  std::vector<WeightTableEntry> entries(static_cast<size_t>(g.k));
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].weight_ptr = s->data_offset[i];
    entries[i].sparsity_ptr = s->map_offset[i];
  }
  std::vector<uint8_t> data = s->data, map = s->map, table = EncodeWeightTable(entries);
  // Empty weights compress (to nothing) but do not decompress: DecompressWeights needs every
  // dimension >= 1. Then only the errors must agree.
  const bool empty = g.k == 0 || g.ky == 0 || g.kx == 0 || g.c == 0;
  // Float weights compare by value: a -0.0 weight is absent and decodes as +0.0.
  Tensor round_trip = w;
  for (int64_t i = 0; IsFloat(dtype) && i < round_trip.numel(); ++i) {
    if (IsWeightZero(dtype, w.bytes.data(), i, zp)) {
      std::fill_n(round_trip.bytes.data() + i * DTypeBytes(dtype), DTypeBytes(dtype), uint8_t{0});
    }
  }
  CheckDecompress(data, map, table, g, dtype, zp, empty ? nullptr : &round_trip);
  Mutate(in, {&data, &map, &table});
  CheckDecompress(data, map, table, g, dtype, zp, nullptr);
  return 0;
}

// ---- activations ----

namespace {

std::vector<int64_t> TakeShape(FuzzReader& in) {
  switch (in.U8() % 4) {
    case 0: {
      const int64_t h = in.Dim(), w = in.Dim();
      return {h, w, in.Dim()};
    }
    case 1: {
      const int64_t h = in.Dim(), w = in.Dim();
      return {1, h, w, in.Dim()};
    }
    case 2: {
      const int64_t n = in.Dim(), h = in.Dim(), w = in.Dim();
      return {n, h, w, in.Dim()};
    }
    default: {
      std::vector<int64_t> s(in.U8() % 6);
      for (int64_t& d : s) d = in.Dim();
      return s;
    }
  }
}

bool SameSparse(const SparseActivations& a, const SparseActivations& b) {
  return a.data == b.data && a.map == b.map && a.se_size == b.se_size;
}

StatusOr<Tensor> CheckDecode(const std::vector<uint8_t>& data, const std::vector<uint8_t>& map,
                             DType dtype, const std::vector<int64_t>& shape, int32_t zp,
                             int64_t se) {
  StatusOr<Tensor> s = DecodeSparseActivations(data, map, dtype, shape, zp, se);
  ForEachSimdTarget([&] {
    ExpectSame(s, simd::DecodeSparseActivations(data, map, dtype, shape, zp, se),
               "DecodeSparseActivations", SameTensor);
  });
  g_accepted += s.ok();
  return s;
}

}  // namespace

int FuzzActivations(const uint8_t* bytes, size_t size) {
  FuzzReader in(bytes, size);
  const bool encode = in.U8() & 1;
  const DType dtype = TakeDType(in);
  const int32_t zp = TakeZeroPoint(in, dtype);
  const std::vector<int64_t> shape = TakeShape(in);
  const int64_t se = in.Dim();
  if (!encode) {
    const std::vector<uint8_t> data = in.Bytes(in.U16());
    const std::vector<uint8_t> map = in.Bytes(in.U16());
    CheckDecode(data, map, dtype, shape, zp, se).status().ok();
    return 0;
  }
  const int64_t n = SmallBytes(shape, DTypeBytes(dtype));
  Tensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.bytes = n < 0 ? in.Rest() : in.Bytes(static_cast<size_t>(n));
  if (n < 0) {  // too large to build: the encoders must refuse the byte count
    const StatusOr<SparseActivations> s = EncodeSparseActivations(t, zp, se);
    if (s.ok()) {
      Fail("EncodeSparseActivations accepted " + std::to_string(t.bytes.size()) +
           " bytes for shape " + t.ShapeString());
    }
    ForEachSimdTarget([&] {
      ExpectSame(s, simd::EncodeSparseActivations(t, zp, se), "EncodeSparseActivations",
                 SameSparse);
    });
    return 0;
  }
  const StatusOr<SparseActivations> s = EncodeSparseActivations(t, zp, se);
  ForEachSimdTarget([&] {
    ExpectSame(s, simd::EncodeSparseActivations(t, zp, se), "EncodeSparseActivations",
               SameSparse);
  });
  if (!s.ok()) return 0;
  std::vector<uint8_t> data = s->data, map = s->map;
  const StatusOr<Tensor> back = CheckDecode(data, map, dtype, shape, zp, se);
  // The decoder takes no i32 (not an activation type) and no empty tensor; everything else that
  // encodes must decode to the same elements.
  bool empty = false;
  for (int64_t d : shape) empty = empty || d == 0;
  if (dtype != DType::kI32 && !empty) {
    if (!back.ok()) Fail("DecodeSparseActivations(EncodeSparseActivations(t)) failed: " +
                         back.status().ToString());
    if (back->bytes != t.bytes || back->dtype != t.dtype) {
      Fail("DecodeSparseActivations(EncodeSparseActivations(t)) != t");
    }
  }
  Mutate(in, {&data, &map});
  CheckDecode(data, map, dtype, shape, zp, se).status().ok();
  return 0;
}

// ---- gather ----

int FuzzGather(const uint8_t* bytes, size_t size) {
  FuzzReader in(bytes, size);
  const DType dtype = TakeDType(in);
  const int32_t zp = TakeZeroPoint(in, dtype);
  const int64_t h = in.Dim(), w = in.Dim(), c = in.Dim();
  const std::vector<int64_t> shape = {h, w, c};
  ActivationView view;
  view.se_size = in.Dim();
  std::vector<std::vector<uint8_t>> tiles(in.U8() % 5);
  for (std::vector<uint8_t>& t : tiles) t = in.Bytes(in.U16());
  for (const std::vector<uint8_t>& t : tiles) view.tiles.emplace_back(t);
  const uint8_t flags = in.U8();
  // Exact lengths only when the shape is small enough to compute them without overflow.
  const int64_t n = SmallBytes(shape, 1);
  std::vector<uint8_t> map;
  if (flags & 1) {
    const int64_t len = (flags & 4) && n >= 0 ? ActivationMapBytes(n) : in.U16();
    map = in.Bytes(static_cast<size_t>(len));
    view.map = map;
  }
  std::vector<int32_t> table;
  if (flags & 2) {
    const int64_t len = (flags & 8) && n >= 0 && view.se_size > 0 ? n / view.se_size : in.U16();
    table.resize(static_cast<size_t>(len));
    for (int32_t& e : table) {
      if (flags & 16) {
        const int32_t tile = tiles.empty() ? 0 : in.U8() % static_cast<int>(tiles.size());
        e = static_cast<int32_t>((uint32_t{in.U16()} << 9) | static_cast<uint32_t>(tile));
      } else {
        e = static_cast<int32_t>(in.U32());
      }
    }
    view.se_table = table;
  }
  const int64_t row_begin = in.U8(), row_end = in.U8();

  const StatusOr<Tensor> s = GatherActivations(view, dtype, shape, zp);
  g_accepted += s.ok();
  ForEachSimdTarget([&] {
    ExpectSame(s, simd::GatherActivations(view, dtype, shape, zp), "GatherActivations",
               SameTensor);
    // GatherRows checks and reads only the SE pointers of its rows: when the whole gather works,
    // any valid row range must work and give those rows of it.
    static std::vector<uint8_t> rows(static_cast<size_t>(kMaxBytes) * 4);
    const Status r = simd::GatherRows(view, dtype, shape, zp, row_begin, row_end,
                                      MutableByteSpan(rows.data(), rows.size()));
    if (!s.ok() || row_begin > row_end || row_end > h) return;
    const int64_t row_bytes = w * c * DTypeBytes(dtype);
    const size_t need = static_cast<size_t>((row_end - row_begin) * row_bytes);
    if (need > rows.size()) {
      if (r.ok()) Fail("GatherRows accepted an output buffer smaller than the rows");
    } else if (!r.ok()) {
      Fail("GatherRows failed on rows of a valid gather: " + r.ToString());
    } else if (need && std::memcmp(rows.data(), s->bytes.data() + row_begin * row_bytes, need)) {
      Fail("GatherRows differs from the rows of GatherActivations");
    }
  });
  return 0;
}

// ---- npy ----

int FuzzNpy(const uint8_t* bytes, size_t size) {
  const StatusOr<Tensor> t = ParseNpy(ByteSpan(bytes, size), "fuzz.npy");
  if (!t.ok()) {
    if (t.status().message().rfind("fuzz.npy: ", 0) != 0) {
      Fail("ParseNpy error does not name the file: " + t.status().ToString());
    }
    return 0;
  }
  ++g_accepted;
  const int64_t want = SmallBytes(t->shape, DTypeBytes(t->dtype));
  if (want < 0 || static_cast<int64_t>(t->bytes.size()) != want) {
    Fail("ParseNpy returned " + std::to_string(t->bytes.size()) + " bytes for shape " +
         t->ShapeString());
  }
  const StatusOr<std::vector<uint8_t>> encoded = EncodeNpy(*t);
  if (!encoded.ok()) Fail("EncodeNpy of a parsed tensor failed: " + encoded.status().ToString());
  const StatusOr<Tensor> back = ParseNpy(*encoded, "again.npy");
  if (!back.ok()) Fail("ParseNpy(EncodeNpy(t)) failed: " + back.status().ToString());
  if (!(*back == *t)) Fail("ParseNpy(EncodeNpy(t)) != t");
  return 0;
}

// ---- spec ----

namespace {

// The harness's sandbox: a spec may name any path, but one naming a device ("/dev/zero") or a
// file elsewhere would make the run depend on the machine. Only the files written here are
// reachable when no JSON string contains a '/'.
bool NamesOnlyLocalFiles(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>().find('/') == std::string::npos;
  if (j.is_object() || j.is_array()) {
    for (const auto& item : j.items()) {
      if (item.key().find('/') != std::string::npos || !NamesOnlyLocalFiles(item.value())) {
        return false;
      }
    }
  }
  return true;
}

const std::string& TempDir() {
  static const std::string dir = [] {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string templ = std::string(base ? base : "/tmp") + "/dpuemu-fuzz-spec-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) Fail("cannot create a temporary directory " + templ);
    return templ;
  }();
  return dir;
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  const Status s = WriteFileBytes(path, bytes);
  if (!s.ok()) Fail(s.ToString());
}

// Layers up to this many MACs are also run (the fuzzer should not spend its time in kernels).
constexpr int64_t kMaxRunMacs = 1 << 20;

}  // namespace

int FuzzSpec(const uint8_t* bytes, size_t size) {
  FuzzReader in(bytes, size);
  const std::vector<uint8_t> text_bytes = in.Bytes(in.U16());
  const std::string text(text_bytes.begin(), text_bytes.end());
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && !NamesOnlyLocalFiles(j)) return 0;
  const std::string dir = TempDir();
  std::vector<uint8_t> files[5];
  for (std::vector<uint8_t>& f : files) f = in.Bytes(in.U16());
  const char* names[5] = {"x.npy", "w.npy", "b.npy", "t.npy", "m.npy"};
  for (int i = 0; i < 5; ++i) WriteFile(dir + "/" + names[i], files[i]);
  const std::string path = dir + "/spec.json";
  WriteFile(path, text_bytes);
  const StatusOr<Spec> spec = LoadSpec(path);
  if (std::getenv("DPUEMU_FUZZ_VERBOSE")) {
    std::fprintf(stderr, "LoadSpec: %s\n", Describe(spec.status()).c_str());
  }
  if (!spec.ok()) {
    if (spec.status().message().rfind(path, 0) != 0) {
      Fail("LoadSpec error does not name the spec file: " + spec.status().ToString());
    }
    return 0;
  }
  ++g_accepted;
  int64_t macs = 0;
  for (size_t i = 0; i < DpuLayerCount(*spec); ++i) {
    const Status valid = ValidateLayer(DpuLayer(*spec, i));
    if (!valid.ok()) Fail("LoadSpec accepted an invalid layer: " + valid.ToString());
    macs += DpuLayer(*spec, i).op.g.dense_macs();
  }
  if (macs > kMaxRunMacs) return 0;
  // Plan and run every DPU layer: the SIMD kernels must reproduce the reference DPU byte for
  // byte, and the outputs must assemble into the spec's output.
  const StatusOr<std::vector<Plan>> plans = PlanSpec(*spec);
  if (!plans.ok()) return 0;  // the planner may refuse a layer (no split fits): an error, not a bug
  RunOptions fast = spec->run, ref = spec->run;
  fast.threads = ref.threads = 1;
  fast.reference = false;
  fast.kernel.kernel = ConvKernel::kAuto;
  ref.reference = true;
  std::vector<Tensor> outputs;
  for (size_t i = 0; i < plans->size(); ++i) {
    const NceLayer& layer = DpuLayer(*spec, i);
    const StatusOr<RunResult> a = RunLayer(layer, (*plans)[i], *spec->target, fast);
    const StatusOr<RunResult> b = RunLayer(layer, (*plans)[i], *spec->target, ref);
    if (!a.ok() || !b.ok()) {
      Fail("running a planned layer failed: SIMD '" + Describe(a.status()) + "', reference '" +
           Describe(b.status()) + "'");
    }
    if (!(a->output == b->output)) Fail("SIMD and reference outputs differ on " + layer.name);
    // Integer results never depend on the kernel: the sparse-weights kernels (fp32 on Highway,
    // the VNNI quads on AVX-512) must give the same bytes at any density.
    if (layer.op.kind == NceKind::kConv && IsIntegerPath(layer.op)) {
      RunOptions sparse = fast;
      sparse.kernel.kernel = ConvKernel::kSparseWeights;
      const StatusOr<RunResult> c = RunLayer(layer, (*plans)[i], *spec->target, sparse);
      if (!c.ok()) Fail("the forced sparse-weights kernel failed: " + Describe(c.status()));
      if (!(c->output == b->output)) Fail("sparse-weights and reference outputs differ on " + layer.name);
    }
    outputs.push_back(a->output);
  }
  const StatusOr<Tensor> out = AssembleSpecOutput(*spec, outputs);
  if (!out.ok()) Fail("AssembleSpecOutput failed: " + out.status().ToString());
  // With SE pointers: the tasks as the hardware runs them (source tiles, table, virtual map) on
  // the reference and the SIMD kernels.
  if (spec->se) {
    const StatusOr<std::vector<DpuTask>> tasks = LowerSeSpec(*spec, *plans);
    if (!tasks.ok()) Fail("LowerSeSpec failed on a planned spec: " + tasks.status().ToString());
    for (const DpuTask& task : *tasks) {
      const StatusOr<DpuOutput> r = RunReference(task, *spec->target);
      const StatusOr<DpuOutput> z = RunZMConv(task, *spec->target);
      if (!r.ok() || !z.ok()) {
        Fail("an SE task failed: reference '" + Describe(r.status()) + "', SIMD '" +
             Describe(z.status()) + "'");
      }
      if (r->data.bytes != z->data.bytes || r->map != z->map) {
        Fail("SIMD and reference outputs differ on an SE task of " + spec->layer.name);
      }
    }
  }
  return 0;
}

int FuzzNetwork(const uint8_t* bytes, size_t size) {
  FuzzReader in(bytes, size);
  const std::vector<uint8_t> text_bytes = in.Bytes(in.U16());
  const std::string text(text_bytes.begin(), text_bytes.end());
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && !NamesOnlyLocalFiles(j)) return 0;
  const std::string dir = TempDir();
  const char* names[5] = {"x.npy", "w.npy", "b.npy", "t.npy", "m.npy"};
  for (const char* name : names) WriteFile(dir + "/" + name, in.Bytes(in.U16()));
  const std::string path = dir + "/net.json";
  WriteFile(path, text_bytes);
  const StatusOr<Network> net = LoadNetwork(path);
  if (std::getenv("DPUEMU_FUZZ_VERBOSE")) {
    std::fprintf(stderr, "LoadNetwork: %s\n", Describe(net.status()).c_str());
  }
  if (!net.ok()) {
    if (net.status().message().rfind(path, 0) != 0) {
      Fail("LoadNetwork error does not name the file: " + net.status().ToString());
    }
    return 0;
  }
  ++g_accepted;
  int64_t macs = 0;
  for (const NetworkLayer& l : net->layers) macs += l.op.g.dense_macs();
  if (macs > kMaxRunMacs) return 0;
  // Every layer on the SIMD kernels and on the reference: the same outputs and decisions.
  RunOptions fast, ref;
  fast.threads = ref.threads = 1;
  ref.reference = true;
  const StatusOr<NetworkResult> a = RunNetwork(*net, fast);
  const StatusOr<NetworkResult> b = RunNetwork(*net, ref);
  if (a.ok() != b.ok()) {
    Fail("SIMD and reference networks disagree: '" + Describe(a.status()) + "' vs '" +
         Describe(b.status()) + "'");
  }
  if (!a.ok()) {
    if (a.status().message().rfind(path, 0) != 0) {
      Fail("RunNetwork error does not name the file: " + a.status().ToString());
    }
    return 0;
  }
  for (size_t i = 0; i < a->layers.size(); ++i) {
    if (!(a->layers[i].output == b->layers[i].output) ||
        a->layers[i].output_sparse != b->layers[i].output_sparse) {
      Fail("SIMD and reference outputs differ on layer " + a->layers[i].name);
    }
  }
  return 0;
}

const std::vector<FuzzTarget>& FuzzTargets() {
  static const std::vector<FuzzTarget> targets = {
      {"weights", FuzzWeights}, {"activations", FuzzActivations}, {"gather", FuzzGather},
      {"npy", FuzzNpy},         {"spec", FuzzSpec},         {"network", FuzzNetwork},
  };
  return targets;
}

}  // namespace fuzz
}  // namespace dpuemu
