// Writes the seed corpora of tests/fuzz/corpus/<target>/seed-*: valid inputs of every format and
// a few invalid ones per check, in the input layouts of fuzz_targets.cc. Regenerate with
//   bazel run //tests/fuzz:make_corpus -- "$PWD/tests/fuzz/corpus"
// (files found by fuzzing, crash-* and the like, are kept next to the seeds and never rewritten).
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "hw/formats.h"
#include "hw/tensor.h"
#include "runtime/npy.h"
#include "tests/fuzz/fuzz_targets.h"

namespace dpuemu {
namespace fuzz {
namespace {

std::string g_root;
int g_written = 0;

void Write(const std::string& target, const std::string& name, const std::vector<uint8_t>& b) {
  const std::string dir = g_root + "/" + target;
  mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/seed-" + name;
  if (!WriteFileBytes(path, b).ok()) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  ++g_written;
}

uint8_t DTypeIndex(DType t) { return static_cast<uint8_t>(t); }  // the order of kDTypes

// Whether a tensor of this shape is small enough to write out (else its seed carries no bytes).
bool Small(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d > (1 << 16) || (n *= d) > (1 << 16)) return false;
  }
  return true;
}

// A tensor whose elements are (i * 7) % 5 - 2 (integers) or the fp16/bf16 bit patterns of small
// values, about a fifth of them the zero point.
Tensor Pattern(DType t, std::vector<int64_t> shape, int32_t zp) {
  Tensor x(t, std::move(shape));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int v = static_cast<int>(i * 7 % 5) - 2;
    if (DTypeBytes(t) == 1) {
      x.bytes[i] = static_cast<uint8_t>(v == 0 ? zp : zp + 3 * v);
    } else if (DTypeBytes(t) == 2) {
      const uint16_t bits = v == 0 ? 0 : static_cast<uint16_t>(0x3C00 + 0x40 * (v + 2));
      x.bytes[2 * i] = bits & 0xFF;
      x.bytes[2 * i + 1] = bits >> 8;
    } else {
      x.bytes[4 * i + 3] = v == 0 ? 0 : 0x3F;
    }
  }
  return x;
}

// ---- weights ----

void WeightsEncode(const std::string& name, DType t, int32_t zp, int64_t k, int64_t ky, int64_t kx,
                   int64_t c, std::vector<uint8_t> mutations = {}) {
  const Tensor w = Small({k, ky, kx, c}) ? Pattern(t, {k, ky, kx, c}, zp) : Tensor();
  FuzzWriter f;
  f.U8(1).U8(DTypeIndex(t)).U8(static_cast<uint8_t>(zp)).Dim(k).Dim(ky).Dim(kx).Dim(c);
  f.Bytes(w.bytes).U8(static_cast<uint8_t>(mutations.size() / 4)).Bytes(mutations);
  Write("weights", name, f.bytes());
}

// Raw buffers as CompressWeights makes them, then `edit` applied.
template <typename Edit>
void WeightsRaw(const std::string& name, DType t, int32_t zp, int64_t k, int64_t ky, int64_t kx,
                int64_t c, Edit edit) {
  const Tensor w = Pattern(t, {k, ky, kx, c}, zp);
  CompressedWeights cw = *CompressWeights(w, zp);
  std::vector<WeightTableEntry> entries(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    entries[i].weight_ptr = cw.data_offset[i];
    entries[i].sparsity_ptr = cw.map_offset[i];
  }
  std::vector<uint8_t> table = EncodeWeightTable(entries);
  NceGeometry g;
  g.k = k, g.ky = ky, g.kx = kx, g.c = c;
  edit(g, cw.data, cw.map, table);
  FuzzWriter f;
  f.U8(0).U8(DTypeIndex(t)).U8(static_cast<uint8_t>(zp)).Dim(g.k).Dim(g.ky).Dim(g.kx).Dim(g.c);
  f.U16(static_cast<uint16_t>(table.size())).Bytes(table);
  f.U16(static_cast<uint16_t>(cw.data.size())).Bytes(cw.data);
  f.U16(static_cast<uint16_t>(cw.map.size())).Bytes(cw.map);
  Write("weights", name, f.bytes());
}

using Buf = std::vector<uint8_t>;

void Weights() {
  WeightsEncode("encode-u8-2x1x1x16", DType::kU8, 128, 2, 1, 1, 16);
  WeightsEncode("encode-i8-3x3x3x32", DType::kI8, -3, 3, 3, 3, 32);
  WeightsEncode("encode-fp16-2x3x3x16", DType::kFP16, 0, 2, 3, 3, 16);
  WeightsEncode("encode-bf16-1x1x1x48", DType::kBF16, 0, 1, 1, 1, 48);
  WeightsEncode("encode-i8-odd-c-2x1x2x5", DType::kI8, 0, 2, 1, 2, 5);
  WeightsEncode("encode-u8-mutated", DType::kU8, 7, 3, 1, 1, 32, {1, 3, 0, 0xFF, 2, 17, 0, 0x10});
  WeightsEncode("encode-fp32-rejected", DType::kFP32, 0, 1, 1, 1, 16);
  // Empty weights compress to nothing and are refused by the decoder (found by fuzzing).
  WeightsEncode("encode-empty-kx0-c0", DType::kU8, 0, 2, 16, 0, 0);
  WeightsEncode("encode-huge-shape", DType::kI8, 0, int64_t{1} << 40, 3, 3, 16);
  auto none = [](NceGeometry&, Buf&, Buf&, Buf&) {};
  WeightsRaw("raw-i8-valid", DType::kI8, 1, 4, 1, 1, 32, none);
  WeightsRaw("raw-fp16-valid", DType::kFP16, 0, 2, 3, 3, 16, none);
  WeightsRaw("raw-dense-channel", DType::kI8, 0, 2, 1, 1, 16, [](NceGeometry&, Buf& d, Buf&, Buf& t) {
    d.assign(32, 5);  // channel 0 dense at 0, channel 1 dense at 16
    t[4] = t[5] = t[6] = 0xFF;
    t[20] = t[21] = t[22] = 0xFF;
    t[16] = 16;
  });
  WeightsRaw("raw-misaligned-pointer", DType::kI8, 0, 2, 1, 1, 16,
             [](NceGeometry&, Buf&, Buf&, Buf& t) { t[16] = 8; });
  WeightsRaw("raw-map-padding-bit", DType::kU8, 0, 1, 1, 1, 16,
             [](NceGeometry&, Buf&, Buf& m, Buf&) { m[3] = 1; });
  WeightsRaw("raw-data-truncated", DType::kI8, 0, 2, 1, 1, 32,
             [](NceGeometry&, Buf& d, Buf&, Buf&) { d.resize(d.size() / 2); });
  WeightsRaw("raw-map-pointer-past-end", DType::kI8, 0, 2, 1, 1, 32,
             [](NceGeometry&, Buf&, Buf&, Buf& t) { t[20] = 0x40; });
  WeightsRaw("raw-table-short", DType::kI8, 0, 2, 1, 1, 16,
             [](NceGeometry&, Buf&, Buf&, Buf& t) { t.resize(24); });
  WeightsRaw("raw-k-zero", DType::kI8, 0, 1, 1, 1, 16,
             [](NceGeometry& g, Buf&, Buf&, Buf& t) { g.k = 0; t.clear(); });
  WeightsRaw("raw-huge-c", DType::kU8, 0, 1, 1, 1, 16,
             [](NceGeometry& g, Buf&, Buf&, Buf&) { g.c = int64_t{1} << 40; });
  WeightsRaw("raw-negative-ky", DType::kU8, 0, 1, 1, 1, 16,
             [](NceGeometry& g, Buf&, Buf&, Buf&) { g.ky = -1; });
}

// ---- activations ----

void ActivationsEncode(const std::string& name, DType t, int32_t zp, uint8_t rank,
                       std::vector<int64_t> dims, int64_t se, std::vector<uint8_t> mutations = {}) {
  std::vector<int64_t> shape = dims;
  if (rank == 1) shape.insert(shape.begin(), 1);
  const Tensor x = Small(shape) ? Pattern(t, shape, zp) : Tensor();
  FuzzWriter f;
  f.U8(1).U8(DTypeIndex(t)).U8(static_cast<uint8_t>(zp)).U8(rank);
  for (int64_t d : dims) f.Dim(d);
  f.Dim(se).Bytes(x.bytes).U8(static_cast<uint8_t>(mutations.size() / 4)).Bytes(mutations);
  Write("activations", name, f.bytes());
}

template <typename Edit>
void ActivationsRaw(const std::string& name, DType t, int32_t zp, std::vector<int64_t> shape,
                    int64_t se, Edit edit) {
  const Tensor x = Pattern(t, shape, zp);
  SparseActivations sa = *EncodeSparseActivations(x, zp, se);
  edit(shape, se, sa.data, sa.map);
  FuzzWriter f;
  f.U8(0).U8(DTypeIndex(t)).U8(static_cast<uint8_t>(zp)).U8(0);
  for (int64_t d : shape) f.Dim(d);
  f.Dim(se);
  f.U16(static_cast<uint16_t>(sa.data.size())).Bytes(sa.data);
  f.U16(static_cast<uint16_t>(sa.map.size())).Bytes(sa.map);
  Write("activations", name, f.bytes());
}

void Activations() {
  ActivationsEncode("encode-u8-2x3x32-se16", DType::kU8, 5, 0, {2, 3, 32}, 16);
  ActivationsEncode("encode-i8-nhwc-1x2x2x48-se48", DType::kI8, -2, 1, {2, 2, 48}, 48);
  ActivationsEncode("encode-fp16-3x1x16-se16", DType::kFP16, 0, 0, {3, 1, 16}, 16);
  ActivationsEncode("encode-bf16-2x2x64-se32", DType::kBF16, 0, 0, {2, 2, 64}, 32);
  ActivationsEncode("encode-fp32-1x3x16-se16", DType::kFP32, 0, 0, {1, 3, 16}, 16);
  ActivationsEncode("encode-u8-odd-1x5x3-se3", DType::kU8, 9, 0, {1, 5, 3}, 3);
  ActivationsEncode("encode-u8-mutated", DType::kU8, 0, 0, {2, 2, 32}, 16, {0, 5, 0, 0x81, 1, 2, 0, 4});
  ActivationsEncode("encode-se-not-dividing", DType::kU8, 0, 0, {1, 1, 32}, 24);
  ActivationsEncode("encode-i32-no-decoder", DType::kI32, 0, 0, {1, 1, 16}, 16);
  ActivationsEncode("encode-huge-shape", DType::kU8, 0, 0, {1 << 20, 1 << 20, 16}, 16);
  auto none = [](std::vector<int64_t>&, int64_t&, Buf&, Buf&) {};
  ActivationsRaw("raw-u8-valid", DType::kU8, 3, {2, 2, 32}, 16, none);
  ActivationsRaw("raw-fp16-valid", DType::kFP16, 0, {1, 3, 16}, 16, none);
  ActivationsRaw("raw-map-short", DType::kU8, 0, {2, 2, 32}, 16,
                 [](std::vector<int64_t>&, int64_t&, Buf&, Buf& m) { m.resize(8); });
  ActivationsRaw("raw-map-padding-bit", DType::kI8, 0, {1, 1, 16}, 16,
                 [](std::vector<int64_t>&, int64_t&, Buf&, Buf& m) { m[15] = 0x80; });
  ActivationsRaw("raw-data-short", DType::kU8, 0, {2, 2, 32}, 16,
                 [](std::vector<int64_t>&, int64_t&, Buf& d, Buf&) { d.resize(100); });
  ActivationsRaw("raw-huge-shape", DType::kU8, 0, {1, 1, 16}, 16,
                 [](std::vector<int64_t>& s, int64_t&, Buf&, Buf&) { s = {1 << 20, 1 << 20, 16}; });
  ActivationsRaw("raw-zero-se", DType::kU8, 0, {1, 1, 16}, 16,
                 [](std::vector<int64_t>&, int64_t& se, Buf&, Buf&) { se = 0; });
}

// ---- gather ----

struct GatherSeed {
  DType t = DType::kU8;
  int32_t zp = 0;
  int64_t h = 2, w = 2, c = 32, se = 16;
  std::vector<std::vector<uint8_t>> tiles;
  bool map = false, table = false;
  std::vector<uint8_t> map_bytes;
  std::vector<int32_t> entries;
  uint8_t row_begin = 0, row_end = 1;
};

void GatherWrite(const std::string& name, const GatherSeed& s) {
  FuzzWriter f;
  f.U8(DTypeIndex(s.t)).U8(static_cast<uint8_t>(s.zp)).Dim(s.h).Dim(s.w).Dim(s.c).Dim(s.se);
  f.U8(static_cast<uint8_t>(s.tiles.size()));
  for (const auto& t : s.tiles) f.U16(static_cast<uint16_t>(t.size())).Bytes(t);
  f.U8(static_cast<uint8_t>((s.map ? 1 : 0) | (s.table ? 2 : 0)));
  if (s.map) f.U16(static_cast<uint16_t>(s.map_bytes.size())).Bytes(s.map_bytes);
  if (s.table) {
    f.U16(static_cast<uint16_t>(s.entries.size()));
    for (int32_t e : s.entries) f.U32(static_cast<uint32_t>(e));
  }
  f.U8(s.row_begin).U8(s.row_end);
  Write("gather", name, f.bytes());
}

// A sparse [h, w, c] source in tile 0, read through the identity SE table.
GatherSeed IdentitySeed(DType t, int32_t zp, int64_t h, int64_t w, int64_t c, int64_t se) {
  GatherSeed s;
  s.t = t, s.zp = zp, s.h = h, s.w = w, s.c = c, s.se = se;
  const SparseActivations sa = *EncodeSparseActivations(Pattern(t, {h, w, c}, zp), zp, se);
  s.tiles = {sa.data};
  s.map = s.table = true;
  s.map_bytes = sa.map;
  s.entries = *MakeIdentitySeTable(h, w, c, se, t);
  s.row_end = static_cast<uint8_t>(h);
  return s;
}

void Gather() {
  GatherWrite("identity-u8", IdentitySeed(DType::kU8, 4, 2, 3, 32, 16));
  GatherWrite("identity-fp16", IdentitySeed(DType::kFP16, 0, 3, 2, 16, 16));
  GatherWrite("identity-i8-se32", IdentitySeed(DType::kI8, -1, 1, 4, 64, 32));
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 2, 2, 32, 16);  // rows swapped, second tile
    s.tiles.push_back(s.tiles[0]);
    for (size_t i = 0; i < s.entries.size() / 2; ++i) s.entries[i] |= 1;
    s.row_begin = 1;
    s.row_end = 2;
    GatherWrite("two-tiles", s);
  }
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 1, 2, 16, 16);
    s.map = false;
    GatherWrite("table-without-map", s);
  }
  {
    GatherSeed s;
    s.tiles = {std::vector<uint8_t>(2 * 2 * 32, 7)};
    GatherWrite("dense-in-place", s);
  }
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 2, 2, 32, 16);
    s.entries[3] = static_cast<int32_t>((uint32_t{1000} << 9));
    GatherWrite("pointer-outside-tile", s);
  }
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 2, 2, 32, 16);
    s.entries[1] |= 5;
    GatherWrite("base-ptr-beyond-tiles", s);
  }
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 2, 2, 32, 16);
    s.entries[0] |= int32_t{1} << 30;
    GatherWrite("unused-bits-set", s);
  }
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 1, 1, 16, 16);
    s.map_bytes[15] = 0x01;
    GatherWrite("map-padding-bit", s);
  }
  {
    GatherSeed s = IdentitySeed(DType::kU8, 0, 2, 2, 32, 16);
    s.entries.pop_back();
    GatherWrite("table-short", s);
  }
  {
    GatherSeed s;
    s.h = -1;
    s.tiles = {std::vector<uint8_t>(64, 1)};
    GatherWrite("negative-h", s);
  }
  {
    GatherSeed s;
    s.h = s.w = int64_t{1} << 20;  // 2^60 elements: too many, but no int64 overflow
    s.c = int64_t{1} << 20;
    s.tiles = {std::vector<uint8_t>(64, 1)};
    GatherWrite("huge-shape", s);
  }
}

// ---- npy ----

void NpyTensor(const std::string& name, const Tensor& t) { Write("npy", name, *EncodeNpy(t)); }

std::vector<uint8_t> NpyRaw(uint8_t major, const std::string& dict, size_t data_bytes) {
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', major, 0};
  std::string header = dict;
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  out.push_back(static_cast<uint8_t>(header.size() & 0xFF));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  if (major == 2) out.push_back(0), out.push_back(0);
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 3);
  return out;
}

void Npy() {
  NpyTensor("u8-2x3", Pattern(DType::kU8, {2, 3}, 1));
  NpyTensor("i8-1x2x2x16", Pattern(DType::kI8, {1, 2, 2, 16}, 0));
  NpyTensor("fp16-4", Pattern(DType::kFP16, {4}, 0));
  NpyTensor("bf16-2x2", Pattern(DType::kBF16, {2, 2}, 0));
  NpyTensor("i32-3", Pattern(DType::kI32, {3}, 0));
  NpyTensor("fp32-scalar", Pattern(DType::kFP32, {}, 0));
  NpyTensor("u8-zero-size", Tensor(DType::kU8, {0, 5}));
  Write("npy", "v2-header", NpyRaw(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8));
  Write("npy", "fortran-order", NpyRaw(1, "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2), }", 4));
  Write("npy", "big-endian", NpyRaw(1, "{'descr': '>f2', 'fortran_order': False, 'shape': (1,), }", 2));
  Write("npy", "truncated", NpyRaw(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", 9));
  Write("npy", "trailing-bytes", NpyRaw(1, "{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", 3));
  Write("npy", "shape-overflow",
        NpyRaw(1, "{'descr': '<f2', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0));
  Write("npy", "zero-dim-first-huge",
        NpyRaw(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4611686018427387904), }", 0));
  Write("npy", "unknown-key", NpyRaw(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'x': 1}", 1));
  Write("npy", "unsupported-descr", NpyRaw(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", 8));
  Write("npy", "not-npy", std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'});
}

// ---- spec ----

void SpecWrite(const std::string& name, const std::string& json, const std::vector<uint8_t>& x,
               const std::vector<uint8_t>& w, const std::vector<uint8_t>& b,
               const std::vector<uint8_t>& table = {}, const std::vector<uint8_t>& map = {}) {
  FuzzWriter f;
  f.U16(static_cast<uint16_t>(json.size()));
  f.Bytes(std::vector<uint8_t>(json.begin(), json.end()));
  for (const auto* file : {&x, &w, &b, &table, &map}) {
    f.U16(static_cast<uint16_t>(file->size())).Bytes(*file);
  }
  Write("spec", name, f.bytes());
}

void Spec() {
  const std::vector<uint8_t> x = *EncodeNpy(Pattern(DType::kU8, {3, 3, 16}, 20));
  const std::vector<uint8_t> w = *EncodeNpy(Pattern(DType::kI8, {16, 3, 3, 16}, 0));
  Tensor bias(DType::kI32, {16});
  bias.bytes[0] = 100;
  const std::vector<uint8_t> b = *EncodeNpy(bias);
  const std::string base =
      R"("target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20},
      "weights": {"npy": "w.npy", "dtype": "i8", "zero_point": 0}, "bias": {"npy": "b.npy"},
      "pad": [1, 1, 1, 1])";
  SpecWrite("readme-example",
            "{\"name\": \"res\", " + base +
                R"(, "stride": [1, 1], "ppe": {"mult": 3000, "shift": 14, "out_zero_point": 100,
                "clamp": [0, 255], "leaky_relu": {"mult": 7, "shift": 2}},
                "output": {"dtype": "u8", "sparse": true},
                "sparsity": {"weights": "auto", "heuristic": "ratio", "input": "sparse"},
                "split": "auto", "tiles": 0})",
            x, w, b);
  SpecWrite("npu37-sok-i32", "{" + base + R"(, "output": {"dtype": "i32"}, "split": "sok", "tiles": 2,
            "run": {"threads": 1, "kernel": "dense"}})",
            x, w, b);
  const std::vector<uint8_t> xf = *EncodeNpy(Pattern(DType::kFP16, {2, 2, 16}, 0));
  const std::vector<uint8_t> wf = *EncodeNpy(Pattern(DType::kFP16, {32, 1, 1, 16}, 0));
  SpecWrite("fp16", R"({"target": "NPU37XX", "input": {"npy": "x.npy", "dtype": "fp16"},
            "weights": {"npy": "w.npy", "dtype": "fp16"}, "ppe": {"scale": 0.5, "clamp": [-2, 2]},
            "output": {"dtype": "fp32"}, "sparsity": {"weights": "sparse"}})",
            xf, wf, {});
  {
    // Weight-only quantisation with a float slope and a bias in output units; int4 weights.
    const std::vector<uint8_t> wq = *EncodeNpy(Pattern(DType::kI8, {32, 1, 1, 16}, 0));
    Tensor bf(DType::kFP32, {32});
    for (int64_t i = 0; i < 32; ++i) StoreFloat(DType::kFP32, bf.bytes.data(), i, 0.25f * (i % 5));
    SpecWrite("fp16-i8-weights", R"({"target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "fp16"},
              "weights": {"npy": "w.npy", "dtype": "i8", "zero_point": 1}, "bias": {"npy": "b.npy"},
              "ppe": {"scale": 0.03, "leaky_relu": {"alpha": 0.1}}, "output": {"dtype": "fp16"}})",
              xf, wq, *EncodeNpy(bf));
    SpecWrite("u8-i4-weights", "{" + std::string(R"("target": "NPU37XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20},
              "weights": {"npy": "w.npy", "dtype": "i4"}, "pad": [1, 1, 1, 1], "ppe": {"mult": 3000, "shift": 12},
              "output": {"dtype": "u8"}})"), x, w, b);
  }
  SpecWrite("unknown-field", "{" + base + R"(, "output": {"dtype": "u8"}, "colour": 1})", x, w, b);
  SpecWrite("bad-zero-point", R"({"target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "u8",
            "zero_point": 300}, "weights": {"npy": "w.npy", "dtype": "i8"}, "output": {"dtype": "u8"}})",
            x, w, b);
  SpecWrite("dtype-mismatch", R"({"target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "fp16"},
            "weights": {"npy": "w.npy", "dtype": "fp16"}, "output": {"dtype": "fp16"}})",
            x, w, b);
  SpecWrite("missing-npy", "{" + base + R"(, "output": {"dtype": "u8"}})", x, {}, b);
  SpecWrite("not-json", "{\"target\": ", x, w, b);
  // SE-pointer operations (README "SPEC.json se"); x.npy is the source.
  const std::string se_base =
      R"("target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20},
      "weights": {"npy": "w.npy", "dtype": "i8"}, "output": {"dtype": "u8"}, )";
  SpecWrite("se-upsample", "{" + se_base + R"("pad": [1, 1, 1, 1], "se": {"op": "upsample_nearest", "factor": [2, 2]}})", x, w, {});
  SpecWrite("se-pad-reflect", "{" + se_base + R"("se": {"op": "pad", "pad": [1, 2, 0, 1], "mode": "reflect", "se_size": 16}})", x, w, {});
  SpecWrite("se-roll-two-tiles", "{" + se_base + R"("se": {"op": "roll", "shift": [1, -1], "source_rows_per_tile": [1, 2]}, "sparsity": {"input": "sparse"}})", x, w, {});
  SpecWrite("se-interpolate", "{" + se_base + R"("se": {"op": "interpolate_nearest", "size": [5, 4], "mode": "half_pixel", "nearest_mode": "ceil"}})", x, w, {});
  SpecWrite("se-transposed", "{" + se_base + R"("stride": [2, 2], "pad": [1, 1, 1, 1], "se": {"op": "transposed", "output_padding": [1, 0]}})", x, w, {});
  SpecWrite("se-dilate", "{" + se_base + R"("pad": [2, 2, 2, 2], "se": {"op": "dilate", "dilation": [2, 2]}})", x, w, {});
  {
    // Table form: the identity table over the 3x3x16 source (one SE of 16 per pixel), all-ones map.
    Tensor table(DType::kI32, {3, 3, 1});
    const std::vector<int32_t> t = *MakeIdentitySeTable(3, 3, 16, 16, DType::kU8);
    std::memcpy(table.bytes.data(), t.data(), table.bytes.size());
    Tensor map(DType::kU8, {3, 3, 16});
    map.bytes.assign(map.bytes.size(), 1);
    SpecWrite("se-table", "{" + se_base + R"("pad": [1, 1, 1, 1], "se": {"table": "t.npy", "map": "m.npy"}})",
              x, w, {}, *EncodeNpy(table), *EncodeNpy(map));
  }
  // The other NCE kinds (README "Operations"); the eltwise's input2 is t.npy.
  const std::string kind_base =
      R"("target": "NPU37XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20},
      "output": {"dtype": "u8", "sparse": true}, )";
  SpecWrite("op-maxpool", "{" + kind_base + R"("op": "maxpool", "kernel": [3, 3], "stride": [2, 2], "pad": [1, 1, 1, 1]})", x, {}, {});
  SpecWrite("op-avgpool", "{" + kind_base + R"("op": "avgpool", "kernel": [2, 3], "ppe": {"out_zero_point": 9, "clamp": [0, 250]}})", x, {}, {});
  SpecWrite("op-dwconv", "{" + kind_base + R"("op": "dwconv", "weights": {"npy": "w.npy", "dtype": "i8"}, "pad": [1, 1, 1, 1], "ppe": {"mult": 3000, "shift": 12}})",
            x, *EncodeNpy(Pattern(DType::kI8, {16, 3, 3, 1}, 0)), {});
  SpecWrite("op-eltwise", "{" + kind_base + R"("op": "eltwise", "input2": {"npy": "t.npy", "dtype": "u8", "zero_point": 3}, "eltwise": {"type": "add"}, "ppe": {"in1_mult": 25877, "in2_mult": 5312, "mult": 19219, "shift": 29}})",
            x, {}, {}, *EncodeNpy(Pattern(DType::kU8, {3, 3, 16}, 7)));
  SpecWrite("op-dwconv-sparse-input", "{" + kind_base + R"("op": "dwconv", "weights": {"npy": "w.npy", "dtype": "i8"}, "sparsity": {"input": "sparse"}})",
            x, *EncodeNpy(Pattern(DType::kI8, {16, 3, 3, 1}, 0)), {});
  SpecWrite("se-bilinear", R"({"target": "NPU37XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20},
            "output": {"dtype": "u8"}, "ppe": {"mult": 16384, "shift": 14}, "se": {"op": "interpolate_bilinear", "size": [6, 6], "mode": "half_pixel"}})",
            x, {}, {});
  SpecWrite("compressed-conv", R"({"target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20},
            "weights": {"npy": "w.npy", "dtype": "i8"}, "pad": [1, 1, 1, 1], "ppe": {"mult": 3000, "shift": 10},
            "output": {"dtype": "u8", "sparse": true}})",
            *EncodeNpy(Pattern(DType::kU8, {3, 3, 3}, 20)), *EncodeNpy(Pattern(DType::kI8, {16, 3, 3, 3}, 0)), {});
  SpecWrite("se-unknown-op", "{" + se_base + R"("se": {"op": "rotate"}})", x, w, {});
  SpecWrite("path-outside", R"({"target": "NPU40XX", "input": {"npy": "../x.npy", "dtype": "u8"}})",
            x, w, b);
}

// ---- network ----

void Network() {
  const auto write = [](const std::string& name, const std::string& json,
                        const std::vector<std::vector<uint8_t>>& files) {
    FuzzWriter f;
    f.U16(static_cast<uint16_t>(json.size()));
    f.Bytes(std::vector<uint8_t>(json.begin(), json.end()));
    for (size_t i = 0; i < 5; ++i) {
      const std::vector<uint8_t> none;
      const std::vector<uint8_t>& file = i < files.size() ? files[i] : none;
      f.U16(static_cast<uint16_t>(file.size())).Bytes(file);
    }
    Write("network", name, f.bytes());
  };
  const std::vector<uint8_t> x = *EncodeNpy(Pattern(DType::kU8, {3, 3, 16}, 20));
  const std::vector<uint8_t> w = *EncodeNpy(Pattern(DType::kI8, {16, 3, 3, 16}, 0));
  const std::vector<uint8_t> w1 = *EncodeNpy(Pattern(DType::kI8, {32, 1, 1, 16}, 0));
  const std::string head =
      R"({"name": "n", "target": "NPU37XX", "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 20}, )";
  const std::string conv3 =
      R"("weights": {"npy": "w.npy", "dtype": "i8"}, "pad": [1, 1, 1, 1], "ppe": {"mult": 3000, "shift": 14, "out_zero_point": 5, "clamp": [5, 255]}, "output": {"dtype": "u8"})";
  write("chain", head + R"("activation_sparsity": "sparse", "layers": [{"name": "a", )" + conv3 +
                     R"(}, {"name": "b", )" + conv3 + R"(}, {"name": "c", "inputs": ["b"], "weights": {"npy": "b.npy", "dtype": "i8"}, "output": {"dtype": "u8"}}], "outputs": ["b", "c"]})",
        {x, w, w1});
  write("auto-from-input", head + R"("layers": [{"name": "a", "inputs": ["input"], )" + conv3 +
                               R"(}, {"name": "b", )" + conv3 + R"(}]})",
        {x, w});
  write("cycle", head + R"("layers": [{"name": "a", "inputs": ["b"], )" + conv3 +
                     R"(}, {"name": "b", )" + conv3 + R"(}]})",
        {x, w});
  write("unknown-input", head + R"("layers": [{"name": "a", "inputs": ["zz"], )" + conv3 + R"(}]})", {x, w});
  write("duplicate-name", head + R"("layers": [{"name": "a", )" + conv3 + R"(}, {"name": "a", )" + conv3 + R"(}]})", {x, w});
  write("shape-mismatch", head + R"("layers": [{"name": "a", "weights": {"npy": "w.npy", "dtype": "i8"}, "output": {"dtype": "u8"}}]})", {x, w1});
  write("not-json", "{\"layers\": [", {x});
}

}  // namespace
}  // namespace fuzz
}  // namespace dpuemu

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus DIR   (DIR: tests/fuzz/corpus)\n");
    return 2;
  }
  dpuemu::fuzz::g_root = argv[1];
  mkdir(argv[1], 0755);
  dpuemu::fuzz::Weights();
  dpuemu::fuzz::Activations();
  dpuemu::fuzz::Gather();
  dpuemu::fuzz::Npy();
  dpuemu::fuzz::Spec();
  dpuemu::fuzz::Network();
  std::printf("make_corpus: wrote %d seeds under %s\n", dpuemu::fuzz::g_written, argv[1]);
  return 0;
}
