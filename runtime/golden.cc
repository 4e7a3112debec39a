#include "runtime/golden.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>

#include "hw/dpu_task.h"
#include "hw/se_ops.h"
#include "hw/formats.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/execute.h"
#include "runtime/npy.h"

namespace dpuemu {
namespace {

using json = nlohmann::ordered_json;

// The bytes of int32 words, little-endian whatever the host.
std::vector<uint8_t> LittleEndian(const std::vector<int32_t>& words) {
  std::vector<uint8_t> out;
  out.reserve(words.size() * 4);
  for (int32_t w : words) {
    const uint32_t u = static_cast<uint32_t>(w);
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<uint8_t>(u >> (8 * b)));
  }
  return out;
}

const char* kSeTableFormat =
    "storage-element pointers: int32, bits [28:9] DATA_PTR = byte offset >> 4 within the tile, "
    "bits [8:0] BASE_PTR = tile index";

const char* kActivationMapFormat =
    "activation sparsity map: 1 bit per element in NHWC order, 1 = stored, least-significant "
    "bit first, padded to 16 bytes";

std::string ActivationFormat(bool sparse) {
  return sparse ? "sparse activations NHWC: dense-sized; each storage element (one pixel x "
                  "se_size channels) holds its values that differ from the zero point packed at "
                  "its start, the rest zero bytes"
                : "dense NHWC";
}

// Appends a file and its manifest entry (name, bytes, shape, dtype, format, then `extra`).
void AddFile(GoldenSet& set, std::string name, std::vector<uint8_t> bytes,
             std::vector<int64_t> shape, std::string dtype, std::string format,
             json extra = json::object()) {
  json info = {{"name", name},
               {"bytes", bytes.size()},
               {"shape", std::move(shape)},
               {"dtype", std::move(dtype)},
               {"format", std::move(format)}};
  for (auto& item : extra.items()) info[item.key()] = item.value();
  set.files.push_back({std::move(name), std::move(bytes), std::move(info)});
}

// weights.bin, weight_map.bin (sparse weights), weight_table.bin with its per-channel offsets.
Status AddWeightFiles(GoldenSet& set, const DpuTask& task, const std::string& note = "") {
  const NceOp& op = task.op;
  const NceGeometry& g = op.g;
  if (task.weight_table.empty()) return OkStatus();  // a kind without weights or table
  DPUEMU_ASSIGN_OR_RETURN(std::vector<WeightTableEntry> table,
                          DecodeWeightTable(task.weight_table, g.k));
  const std::vector<int64_t> w_shape = {g.k, g.ky, g.kx, g.c};
  if (task.weights_sparse()) {
    AddFile(set, "weights.bin", task.weights, w_shape, DTypeName(op.w_dtype),
            "compressed weights: per output channel the values that differ from the zero point "
            "in OYXI order (ky, kx, then c fastest), each channel's run padded to 16 bytes; shape "
            "is the dense tensor encoded" +
                note);
    AddFile(set, "weight_map.bin", task.weight_map, {g.k, WeightMapBytesPerChannel(g)}, "u8",
            "weight sparsity map: 1 bit per weight in OYXI order, 1 = stored, least-significant "
            "bit first; each channel's map padded to 128 bits");
  } else {
    AddFile(set, "weights.bin", task.weights, w_shape, DTypeName(op.w_dtype),
            (IsSubByte(op.w_dtype) ? "dense OYXI int4 weights, two per byte (element 2i in the low "
                                     "nibble), each channel's set padded to 16 bytes"
                                   : "dense OYXI weights") + note);
  }
  json weight_offsets = json::array(), sparsity_offsets = json::array();
  for (const WeightTableEntry& e : table) {
    weight_offsets.push_back(e.weight_ptr);
    sparsity_offsets.push_back(e.sparsity_ptr);
  }
  AddFile(set, "weight_table.bin", task.weight_table, {g.k, 4}, "u32",
          "weight table: 16 bytes per output channel, four uint32 words: weight_ptr (byte offset "
          "into weights.bin), sparsity_ptr (byte offset into weight_map.bin, 0xFFFFFF when "
          "dense), scale word (integer: mult << 16 | shift << 8; float: fp32 bits), bias (int32 "
          "or fp32 bits)",
          {{"weight_offsets", std::move(weight_offsets)},
           {"sparsity_offsets", std::move(sparsity_offsets)}});
  return OkStatus();
}

// output<suffix>.bin and output_map<suffix>.bin (sparse output) as the output unit writes them.
void AddOutputFiles(GoldenSet& set, const DpuOutput& out, const NceOp& op,
                    const std::string& suffix) {
  AddFile(set, "output" + suffix + ".bin", out.data.bytes, {op.g.out_h(), op.g.out_w(), op.g.k},
          DTypeName(op.out_dtype), ActivationFormat(out.sparse()), {{"se_size", out.se_size}});
  if (out.sparse()) {
    AddFile(set, "output_map" + suffix + ".bin", out.map, {static_cast<int64_t>(out.map.size())},
            "u8", kActivationMapFormat);
  }
}

json ConvJson(const NceGeometry& g) {
  return {{"h", g.h},
          {"w", g.w},
          {"c", g.c},
          {"k", g.k},
          {"ky", g.ky},
          {"kx", g.kx},
          {"stride", {g.stride_y, g.stride_x}},
          {"pad", {g.pad_top, g.pad_bottom, g.pad_left, g.pad_right}},
          {"out_h", g.out_h()},
          {"out_w", g.out_w()}};
}

// The manifest fields every golden set has; `files` last.
void FillManifest(GoldenSet& set, const std::string& layer, const Target& target,
                  const DpuTask& task, const DpuOutput& out, bool input_sparse, json conv) {
  const NceOp& op = task.op;
  json& m = set.manifest;
  m["layer"] = layer;
  m["target"] = target.name;
  m["generation"] = target.generation;
  m["op"] = NceKindName(op.kind);
  m["conv"] = std::move(conv);
  if (IsCompressedConv(op)) {
    // What the DPU task reads for C = 3 or 4 (hw/dpu_task.cc LowerLayer): 4 channels per pixel in
    // input.bin, 4 per tap in weights.bin, each weight set strided to 16 elements.
    m["compressed_conv"] = {
        {"input_channels", op.g.c},
        {"cm_sp_pattern", (1 << op.g.c) - 1},
        {"weight_set_bytes", DenseWeightSetBytes(op.w_dtype, op.g.taps())},
        {"rule", "NCECompressConvolution; C = 3 padded to 4 (input zero point, weights zero "
                 "point), conv_weights_compression.cpp"}};
  }
  if (op.kind == NceKind::kEltwise) {
    m["eltwise"] = {{"type", EltwiseTypeName(op.eltwise.type)},
                    {"input2_dtype", DTypeName(op.eltwise.in2_dtype)},
                    {"input2_zero_point", op.eltwise.in2_zp},
                    {"in1_mult", op.eltwise.in1_mult},
                    {"in2_mult", op.eltwise.in2_mult}};
  }
  if (task.weight_table.empty()) {
    // Kinds without a weight table requantise with the PPE's registers.
    const DpuTask::PpeRegisters& r = task.ppe_regs;
    m["ppe_registers"] = IsIntegerPath(op) ? json{{"mult", r.mult}, {"shift", r.shift},
                                                  {"bias", r.bias}}
                                           : json{{"scale", r.scale}, {"bias", r.fbias}};
  }
  m["dtypes"] = {{"input", DTypeName(op.in_dtype)},
                 {"weights", DTypeName(op.w_dtype)},
                 {"output", DTypeName(op.out_dtype)}};
  m["zero_points"] = {{"input", op.in_zp}, {"weights", op.w_zp}, {"output", op.ppe.out_zp}};
  m["weights_sparse"] = task.weights_sparse();
  m["input_sparse"] = input_sparse;
  m["se_table"] = !task.se_table.empty();
  m["output_sparse"] = out.sparse();
  m["se_sizes"] = {{"input", task.input_se_size}, {"output", out.se_size}};
}

void ListFiles(GoldenSet& set) {
  set.manifest["files"] = json::array();
  for (const GoldenFile& f : set.files) set.manifest["files"].push_back(f.info);
}

Status CheckOutput(const NceOp& op, const Tensor& output, const std::string& what) {
  const NceGeometry& g = op.g;
  const std::vector<int64_t> out_shape = {g.out_h(), g.out_w(), g.k};
  Tensor expect(op.out_dtype, out_shape);
  if (output.dtype != op.out_dtype || output.shape != out_shape ||
      output.bytes.size() != expect.bytes.size()) {
    return InvalidArgument("golden: " + what + " must be " + DTypeName(op.out_dtype) + " " +
                           expect.ShapeString() + ", got " + DTypeName(output.dtype) + " " +
                           output.ShapeString() + " with " + std::to_string(output.bytes.size()) +
                           " bytes");
  }
  return OkStatus();
}

}  // namespace

StatusOr<GoldenSet> MakeGoldenSet(const NceLayer& layer, const Plan& plan, const Tensor& output) {
  if (plan.target == nullptr) return InvalidArgument("golden: the plan has no target");
  const Target& target = *plan.target;
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  DPUEMU_RETURN_IF_ERROR(CheckOutput(op, output, "output"));

  StorageOptions storage;
  storage.weights_sparse = plan.weights.sparse;
  storage.input_sparse = plan.options.input_sparse;
  storage.input_se_size = plan.input_se_size;
  storage.output_sparse = plan.options.output_sparse;
  storage.output_se_size = plan.options.output_se_size;
  // The task the DPU runs: pads beyond kernel / 2 read through an SE pad gather.
  DPUEMU_ASSIGN_OR_RETURN(DpuTask task, LowerLayerForDpu(layer, storage, target));
  const NceGeometry& vg = task.op.g;  // the virtual input the table gathers, when there is one
  DPUEMU_ASSIGN_OR_RETURN(DpuOutput out, StoreOutput(task, output));

  GoldenSet set;
  DPUEMU_RETURN_IF_ERROR(AddWeightFiles(set, task));
  const bool input_sparse = !task.input_map.empty();
  AddFile(set, "input.bin", task.input_tiles.at(0), {g.h, g.w, g.c}, DTypeName(op.in_dtype),
          ActivationFormat(input_sparse), {{"se_size", task.input_se_size}});
  if (input_sparse) {
    AddFile(set, "input_map.bin", task.input_map, {static_cast<int64_t>(task.input_map.size())},
            "u8", kActivationMapFormat);
  }
  if (!task.se_table.empty()) {
    AddFile(set, "se_table.bin", LittleEndian(task.se_table),
            {vg.h, vg.w, vg.c / task.input_se_size},
            "i32", kSeTableFormat);
  }
  if (op.kind == NceKind::kEltwise) {
    AddFile(set, "input2.bin", task.input2, {g.h, g.w, g.c}, DTypeName(op.eltwise.in2_dtype),
            ActivationFormat(false));
  }
  AddOutputFiles(set, out, op, "");
  FillManifest(set, layer.name, target, task, out, input_sparse, ConvJson(g));
  ListFiles(set);
  return set;
}

StatusOr<GoldenSet> MakeSeGoldenSet(const Spec& spec, const std::vector<Plan>& plans,
                                    const std::vector<Tensor>& outputs) {
  if (!spec.se || spec.target == nullptr) {
    return InvalidArgument("golden: the spec has no se field (use MakeGoldenSet)");
  }
  const SeSpec& se = *spec.se;
  const Target& target = *spec.target;
  if (outputs.size() != se.phases.size()) {
    return InvalidArgument("golden: " + std::to_string(outputs.size()) + " outputs for " +
                           std::to_string(se.phases.size()) + " DPU layers");
  }
  DPUEMU_ASSIGN_OR_RETURN(std::vector<DpuTask> tasks, LowerSeSpec(spec, plans));
  std::vector<DpuOutput> outs;
  for (size_t i = 0; i < tasks.size(); ++i) {
    DPUEMU_RETURN_IF_ERROR(
        CheckOutput(tasks[i].op, outputs[i], "outputs[" + std::to_string(i) + "]"));
    DPUEMU_ASSIGN_OR_RETURN(DpuOutput out, StoreOutput(tasks[i], outputs[i]));
    outs.push_back(std::move(out));
  }
  const DpuTask& first = tasks.front();
  for (const DpuTask& t : tasks) {
    if (t.weights != first.weights || t.weight_map != first.weight_map ||
        t.weight_table != first.weight_table || t.input_tiles != first.input_tiles) {
      return Internal("golden: the phases of '" + spec.layer.name +
                      "' lowered different weights or sources");
    }
  }
  const bool phased = tasks.size() > 1;
  const int64_t c = se.source.shape[2];
  const int64_t source_w = se.source.shape[1];
  const DType in_dtype = first.op.in_dtype;

  GoldenSet set;
  DPUEMU_RETURN_IF_ERROR(AddWeightFiles(
      set, first,
      se.op == "transposed" ? "; the transposed convolution's kernel flipped in y and x (what the "
                              "DPU reads)"
                            : ""));
  // The source, as it sits in each tile: the bytes the SE pointers address.
  const std::string source_format =
      std::string("the source tensor in tile CMX, ") +
      (se.source_sparse ? "sparse-activation slots (each storage element holds its values that "
                          "differ from the zero point packed at its start, the rest zero bytes; "
                          "which are present is what input_map.bin says where it reads the SE)"
                        : "dense NHWC (read through SE pointers: sparse storage with every "
                          "element present)") +
      "; byte 0 is the tile's base: SE pointer DATA_PTR = byte offset >> 4, BASE_PTR = tile";
  json tiles = json::array();
  const std::vector<SourceLayout::Part> parts =
      se.layout.tiles.empty() ? std::vector<SourceLayout::Part>{{se.source.shape[0], 0}}
                              : se.layout.tiles;
  int64_t first_row = 0;
  for (size_t i = 0; i < first.input_tiles.size(); ++i) {
    const std::string name =
        first.input_tiles.size() == 1 ? "input.bin" : "input_tile" + std::to_string(i) + ".bin";
    const int64_t rows = parts.at(i).rows;
    const json where = {{"tile", i},
                        {"first_row", first_row},
                        {"rows", rows},
                        {"base_offset", parts[i].base_offset},
                        {"se_size", se.se_size}};
    AddFile(set, name, first.input_tiles[i], {rows, source_w, c}, DTypeName(in_dtype),
            source_format, where);
    json t = where;
    t["file"] = name;
    tiles.push_back(std::move(t));
    first_row += rows;
  }
  json phases = json::array();
  for (size_t i = 0; i < tasks.size(); ++i) {
    const DpuTask& t = tasks[i];
    const SeSpec::Phase& ph = se.phases[i];
    const NceGeometry& g = t.op.g;
    const std::string sfx = phased ? "_phase" + std::to_string(i) : "";
    AddFile(set, "se_table" + sfx + ".bin", LittleEndian(t.se_table),
            {g.h, g.w, g.c / t.input_se_size}, "i32",
            std::string(kSeTableFormat) + "; one per storage element of the virtual input",
            {{"se_size", t.input_se_size}});
    AddFile(set, "input_map" + sfx + ".bin", t.input_map,
            {static_cast<int64_t>(t.input_map.size())}, "u8",
            std::string(kActivationMapFormat) +
                ", over the virtual input (0 = reads as the zero "
                "point)",
            {{"tensor", {g.h, g.w, g.c}}});
    AddOutputFiles(set, outs[i], t.op, sfx);
    json phase_files = {"se_table" + sfx + ".bin", "input_map" + sfx + ".bin",
                        "output" + sfx + ".bin"};
    if (outs[i].sparse()) phase_files.push_back("output_map" + sfx + ".bin");
    phases.push_back({{"conv", ConvJson(g)},
                      {"virtual", {g.h, g.w, g.c}},
                      {"out_y0", ph.out_y0},
                      {"out_x0", ph.out_x0},
                      {"step_y", ph.step_y},
                      {"step_x", ph.step_x},
                      {"description", ph.gather.description},
                      {"files", std::move(phase_files)}});
  }
  // The convolution the DPU runs; for a dilated one (several DPU layers) the spec's own, whose
  // phases the "se" section lists.
  json conv = ConvJson(first.op.g);
  if (phased) {
    conv = ConvJson(se.geometry);
    conv["dilation"] = {se.dilation_y, se.dilation_x};
    conv["out_h"] = se.out_h;
    conv["out_w"] = se.out_w;
  }
  FillManifest(set, spec.layer.name, target, first, outs.front(), se.source_sparse,
               std::move(conv));
  json& m = set.manifest;
  m["se"] = {{"op", se.op},
             {"params", se.params},
             {"se_size", se.se_size},
             {"source", {se.source.shape[0], source_w, c}},
             {"source_tiles", std::move(tiles)},
             {"out_h", se.out_h},
             {"out_w", se.out_w}};
  if (phased) {
    m["se"]["phases"] = std::move(phases);
  } else {
    m["se"]["virtual"] = phases[0]["virtual"];
    m["se"]["description"] = phases[0]["description"];
  }
  ListFiles(set);
  return set;
}

StatusOr<std::vector<int32_t>> RelocateWeightsTable(std::vector<int32_t> v,
                                                    const WeightsTableRelocation& r) {
  const std::string what = "relocate weights table: ";
  if (v.size() % 4 != 0) {
    return InvalidArgument(what + std::to_string(v.size()) +
                           " words: the table holds 4 int32 words per output channel");
  }
  const int64_t oc_count = static_cast<int64_t>(v.size() / 4);
  const int64_t clusters = static_cast<int64_t>(r.weights_ptr.size());
  if (clusters == 0 || r.offsets.size() != r.weights_ptr.size()) {
    return InvalidArgument(what + "weights_ptr (" + std::to_string(clusters) + ") and offsets (" +
                           std::to_string(r.offsets.size()) +
                           ") need one entry per cluster, at least one");
  }
  if (!r.num_elems.empty() && static_cast<int64_t>(r.num_elems.size()) != oc_count) {
    return InvalidArgument(what + "num_elems has " + std::to_string(r.num_elems.size()) +
                           " entries for " + std::to_string(oc_count) + " output channels");
  }
  if (r.alignment <= 0 || r.elem_bits <= 0) {
    return InvalidArgument(what + "alignment and elem_bits must be positive");
  }
  // Steps from the table's first two channels, as the compiler reads them.
  int64_t w_step = 0, s_step = 0;
  if (oc_count >= 2) {
    w_step = int64_t{v[4]} - v[0];
    s_step = int64_t{v[5]} - v[1];
  }
  const bool segmented =
      std::adjacent_find(r.offsets.begin(), r.offsets.end(), std::not_equal_to<>()) !=
      r.offsets.end();
  auto new_cluster = [&](int64_t oc, int64_t c) {
    return segmented && c + 1 < clusters && oc >= r.offsets[static_cast<size_t>(c + 1)];
  };
  std::vector<int64_t> steps(static_cast<size_t>(oc_count));
  if (!r.num_elems.empty()) {
    int64_t ptr = 0;
    for (int64_t oc = 0, c = 0; oc < oc_count; ++oc) {
      if (new_cluster(oc, c)) {
        ++c;
        ptr = 0;
      }
      steps[static_cast<size_t>(oc)] = ptr;
      const int64_t set_bytes = (r.num_elems[static_cast<size_t>(oc)] * r.elem_bits + 7) / 8;
      ptr += (set_bytes + r.alignment - 1) / r.alignment * r.alignment;
    }
  } else {
    for (int64_t oc = 0, c = 0; oc < oc_count; ++oc) {
      if (new_cluster(oc, c)) ++c;
      steps[static_cast<size_t>(oc)] = w_step * (oc - r.offsets[static_cast<size_t>(c)]);
    }
  }
  auto word = [&](int64_t value, int64_t oc, const char* field) -> StatusOr<int32_t> {
    if (value < std::numeric_limits<int32_t>::min() ||
        value > std::numeric_limits<int32_t>::max()) {
      return OutOfRange(what + "channel " + std::to_string(oc) + " " + field + " = " +
                        std::to_string(value) + ": does not fit an int32 word");
    }
    return static_cast<int32_t>(value);
  };
  for (int64_t oc = 0, c = 0; oc < oc_count; ++oc) {
    if (new_cluster(oc, c)) ++c;
    const size_t i = static_cast<size_t>(oc * 4);
    DPUEMU_ASSIGN_OR_RETURN(
        v[i], word(r.weights_ptr[static_cast<size_t>(c)] + steps[static_cast<size_t>(oc)] +
                       r.channel_offset * w_step,
                   oc, "weight_ptr"));
    if (static_cast<uint32_t>(v[i + 1]) != kDenseSparsityPtr) {
      DPUEMU_ASSIGN_OR_RETURN(
          v[i + 1], word(r.sparsity_ptr + (oc - r.offsets[static_cast<size_t>(c)]) * s_step +
                             r.channel_offset * s_step,
                         oc, "sparsity_ptr"));
    }
  }
  return v;
}

namespace {

std::vector<int32_t> TableWords(const std::vector<uint8_t>& bytes) {
  std::vector<int32_t> words(bytes.size() / 4);
  for (size_t i = 0; i < words.size(); ++i) {
    uint32_t u = 0;
    for (int b = 0; b < 4; ++b) u |= static_cast<uint32_t>(bytes[i * 4 + b]) << (8 * b);
    words[i] = static_cast<int32_t>(u);
  }
  return words;
}

// The elements each channel's compressed weight set stores: its map's set bits.
std::vector<int64_t> StoredElements(const DpuTask& task) {
  const int64_t per_k = WeightMapBytesPerChannel(task.op.g);
  std::vector<int64_t> n(static_cast<size_t>(task.op.g.k));
  for (int64_t k = 0; k < task.op.g.k; ++k) {
    for (int64_t b = 0; b < per_k; ++b) {
      n[static_cast<size_t>(k)] += __builtin_popcount(task.weight_map[k * per_k + b]);
    }
  }
  return n;
}

int64_t Align16(int64_t v) { return (v + 15) / 16 * 16; }

json RangeJson(int64_t begin, int64_t end) { return json::array({begin, end}); }

// The CMX buffers of a tile, in layout order.
// With SE pointers "input" holds the tile's part of the SOURCE (the bytes the pointers address),
// "input_map" the virtual input's map rows and "se_table" the table rows of the tile's window.
// Layout order: the weight table first, so no buffer the DPU reads through a pointer (weights,
// maps, the SE source) sits at offset 0 and every relocation shows.
enum Buffer {
  kWeightTable, kWeights, kWeightMap, kInput, kInputMap, kSeTable, kOutput, kOutputMap, kBuffers
};
const char* const kBufferNames[kBuffers] = {"weight_table", "weights",  "weight_map",
                                            "input",        "input_map", "se_table",
                                            "output",       "output_map"};

// An SE-pointer spec's DPU task (LowerSeSpec) and source layout, for its per-tile set.
struct SeTiles {
  const DpuTask* task = nullptr;  // the whole SE task: source tiles, table, virtual map
  std::vector<SourceLayout::Part> parts;  // source rows and base offset per tile
  int64_t se_size = 0;
  int64_t source_w = 0;
};

struct TileImage {
  const TilePlan* tile = nullptr;
  DpuTask task;           // the tile's sub-layer lowered in its storage (local weight pointers)
  int64_t in_begin = 0;   // first input row of the tile's input buffer
  DpuOutput out;          // what the ODU writes for the tile
  std::vector<uint8_t> bytes[kBuffers];
};

}  // namespace

namespace {

StatusOr<GoldenSet> MakeTiles(const NceLayer& layer, const Plan& plan, const Tensor& output,
                              const SeTiles* se) {
  if (plan.target == nullptr) return InvalidArgument("golden tiles: the plan has no target");
  if (plan.options.se.used() != (se != nullptr)) {
    return InvalidArgument("golden tiles: a plan with SE pointers needs its spec: use "
                           "MakeSeTileGoldenSet (dpuemu run --golden tiles does)");
  }
  const Target& target = *plan.target;
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  DPUEMU_RETURN_IF_ERROR(CheckPlanMatches(layer.op, plan, target));
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  DPUEMU_RETURN_IF_ERROR(CheckOutput(op, output, "output"));
  const int64_t ow = g.out_w(), ob = DTypeBytes(op.out_dtype);
  const int64_t row_bytes = g.w * g.c * DTypeBytes(op.in_dtype);

  std::vector<TileImage> images(plan.tiles.size());
  for (size_t i = 0; i < plan.tiles.size(); ++i) {
    const TilePlan& t = plan.tiles[i];
    const std::string where = "golden tiles: plan.tiles[" + std::to_string(i) + "]";
    TileImage& im = images[i];
    im.tile = &t;
    const StorageOptions storage = TileStorage(plan, t);
    if (t.k_begin < g.k) {
      StatusOr<DpuTask> task =
          LowerSlice(layer, storage, t.k_begin, t.k_end, t.row_begin, t.row_end, target);
      if (!task.ok()) return task.status().Annotate(where);
      im.task = std::move(task).value();
    } else {
      // Padding channels only (e.g. NPU40XX sparse-output SOK padding K): slice from the last
      // real 16 channels on, whose own channels [16, ...) are then the tile's.
      const int64_t lo = g.k - 16;
      StatusOr<NceLayer> base = SliceLayer(layer, lo, t.k_end, t.row_begin, t.row_end);
      if (!base.ok()) return base.status().Annotate(where);
      StatusOr<DpuTask> task = LowerSlice(*base, storage, t.k_begin - lo, t.k_end - lo, 0,
                                          t.row_end - t.row_begin, target);
      if (!task.ok()) return task.status().Annotate(where);
      im.task = std::move(task).value();
    }
    im.in_begin = t.row_begin * g.stride_y - g.pad_top + im.task.op.g.pad_top;
    // The tile's dense output: real channels from the layer's, padding channels (zero-point
    // weights, zero requantisation) computed by the reference from the last real 16 channels on.
    const int64_t kc = t.k_end - t.k_begin, rows = t.row_end - t.row_begin;
    const int64_t k_real = std::max<int64_t>(std::min(t.k_end, g.k) - t.k_begin, 0);
    Tensor dense(op.out_dtype, {rows, ow, kc});
    for (int64_t y = 0; y < rows; ++y) {
      for (int64_t x = 0; x < ow; ++x) {
        std::memcpy(dense.bytes.data() + (y * ow + x) * kc * ob,
                    output.bytes.data() + (((t.row_begin + y) * ow + x) * g.k + t.k_begin) * ob,
                    static_cast<size_t>(k_real * ob));
      }
    }
    if (t.k_end > g.k) {
      StorageOptions ps;  // the storage the values depend on (absent float weights are skipped)
      ps.weights_sparse = storage.weights_sparse;
      ps.input_sparse = storage.input_sparse;
      ps.input_se_size = storage.input_se_size;
      const int64_t lo = t.k_begin < g.k ? std::max(t.k_begin, g.k - 16) : g.k - 16;
      const int64_t pad_from = std::max(t.k_begin, g.k);
      DPUEMU_ASSIGN_OR_RETURN(DpuTask pt,
                              LowerSlice(layer, ps, lo, t.k_end, t.row_begin, t.row_end, target));
      DPUEMU_ASSIGN_OR_RETURN(DpuOutput po, RunReference(pt, target));
      const int64_t pk = t.k_end - lo;
      for (int64_t y = 0; y < rows; ++y) {
        for (int64_t x = 0; x < ow; ++x) {
          std::memcpy(dense.bytes.data() + ((y * ow + x) * kc + pad_from - t.k_begin) * ob,
                      po.data.bytes.data() + ((y * ow + x) * pk + pad_from - lo) * ob,
                      static_cast<size_t>((t.k_end - pad_from) * ob));
        }
      }
    }
    DPUEMU_ASSIGN_OR_RETURN(im.out, StoreOutput(im.task, std::move(dense)));
    if (se == nullptr) {
      im.bytes[kInput] = im.task.input_tiles.at(0);
      im.bytes[kInputMap] = im.task.input_map;
    } else {
      // The tile's source part (where the pointers of every tile with BASE_PTR = this tile
      // read), and the table and virtual map rows of its input window.
      const size_t id = static_cast<size_t>(t.tile);
      if (id < se->parts.size()) {
        const std::vector<uint8_t>& src = se->task->input_tiles.at(id);
        im.bytes[kInput].assign(src.begin() + se->parts[id].base_offset, src.end());
      }
      const int64_t row_elems = g.w * g.c, row_ses = g.w * (g.c / se->se_size);
      const std::vector<uint8_t>& vmap = se->task->input_map;
      im.bytes[kInputMap].assign(vmap.begin() + im.in_begin * row_elems / 8,
                                 vmap.begin() + (im.in_begin + im.task.op.g.h) * row_elems / 8);
      im.bytes[kInputMap].resize(static_cast<size_t>(
          ActivationMapBytes(im.task.op.g.h * row_elems)));
      const std::vector<int32_t> rows(se->task->se_table.begin() + im.in_begin * row_ses,
                                      se->task->se_table.begin() +
                                          (im.in_begin + im.task.op.g.h) * row_ses);
      im.bytes[kSeTable] = LittleEndian(rows);
    }
    im.bytes[kWeights] = im.task.weights;
    im.bytes[kWeightMap] = im.task.weight_map;
    im.bytes[kWeightTable] = im.task.weight_table;
    im.bytes[kOutput] = im.out.data.bytes;
    im.bytes[kOutputMap] = im.out.map;
  }

  // One CMX layout for every tile: each buffer at one 16-byte-aligned offset, sized for the
  // largest tile's.
  int64_t offset[kBuffers], size[kBuffers], end = 0;
  for (int b = 0; b < kBuffers; ++b) {
    size[b] = 0;
    for (const TileImage& im : images) {
      size[b] = std::max<int64_t>(size[b], static_cast<int64_t>(im.bytes[b].size()));
    }
    offset[b] = end;
    end = Align16(end + size[b]);
  }
  if (end > target.cmx_bytes_per_tile) {
    return InvalidArgument("golden tiles: the tiles' buffers need " + std::to_string(end) +
                           " bytes of CMX (16-byte aligned), " + target.name + " has " +
                           std::to_string(target.cmx_bytes_per_tile) + " per tile");
  }

  if (se != nullptr) {
    // SE pointers address the source where this layout puts it: DATA_PTR moves by the input
    // buffer's offset minus the part's base offset in the spec's layout; BASE_PTR stays.
    for (size_t id = 0; id < se->parts.size(); ++id) {
      const bool held = std::any_of(images.begin(), images.end(), [&](const TileImage& im) {
        return im.tile->tile == static_cast<int>(id);
      });
      if (!held && se->parts[id].rows > 0) {
        return InvalidArgument("golden tiles: the source rows of tile " + std::to_string(id) +
                               " lie on a tile the plan does not use");
      }
    }
    for (TileImage& im : images) {
      std::vector<int32_t> words = TableWords(im.bytes[kSeTable]);
      for (int32_t& e : words) {
        const SePointer p = DecodeSePointer(e);
        if (static_cast<size_t>(p.tile) >= se->parts.size()) {
          return Internal("golden tiles: an SE pointer names tile " + std::to_string(p.tile) +
                          " outside the source layout");
        }
        DPUEMU_ASSIGN_OR_RETURN(
            e, EncodeSePointer(p.offset - se->parts[static_cast<size_t>(p.tile)].base_offset +
                                   offset[kInput],
                               p.tile));
      }
      im.bytes[kSeTable] = LittleEndian(words);
    }
  }

  // Weight-table pointers relocated to the CMX offsets, as relocate_weights_table.cpp does. Under
  // SOK the compiler relocates the whole table once with each cluster's first channel in
  // `offsets`, so the pointers restart at the weights buffer on every tile.
  const bool sparse_w = plan.weights.sparse;
  const bool sok = plan.split == SplitStrategy::kSok && images.size() > 1;
  WeightsTableRelocation reloc;
  reloc.sparsity_ptr = sparse_w ? offset[kWeightMap] : kDenseSparsityPtr;
  reloc.elem_bits = DTypeBits(op.w_dtype);
  std::vector<std::vector<int32_t>> relocated(images.size());
  if (sok) {
    std::vector<int32_t> all;
    for (const TileImage& im : images) {
      if (!reloc.offsets.empty() && im.tile->k_begin <= reloc.offsets.back()) {
        return Internal("golden tiles: SOK tiles are not in channel order");
      }
      reloc.offsets.push_back(im.tile->k_begin);
      reloc.weights_ptr.push_back(offset[kWeights]);
      const std::vector<int32_t> w = TableWords(im.task.weight_table);
      all.insert(all.end(), w.begin(), w.end());
      if (sparse_w) {
        const std::vector<int64_t> n = StoredElements(im.task);
        reloc.num_elems.insert(reloc.num_elems.end(), n.begin(), n.end());
      }
    }
    // The compiler's offsets count from the table's first channel.
    const int64_t first = reloc.offsets.front();
    for (int64_t& o : reloc.offsets) o -= first;
    DPUEMU_ASSIGN_OR_RETURN(const std::vector<int32_t> words,
                            RelocateWeightsTable(std::move(all), reloc));
    size_t at = 0;
    for (size_t i = 0; i < images.size(); ++i) {
      const size_t n = images[i].task.weight_table.size() / 4;
      relocated[i].assign(words.begin() + at, words.begin() + at + n);
      at += n;
    }
  } else {
    // Duplicated weights: every cluster's offset is 0 (not segmented), as patch_weights_table.cpp
    // passes them for DUPLICATED buffers.
    reloc.offsets.assign(images.size(), 0);
    reloc.weights_ptr.assign(images.size(), offset[kWeights]);
    for (size_t i = 0; i < images.size(); ++i) {
      WeightsTableRelocation r = reloc;
      if (sparse_w) r.num_elems = StoredElements(images[i].task);
      DPUEMU_ASSIGN_OR_RETURN(relocated[i],
                              RelocateWeightsTable(TableWords(images[i].task.weight_table), r));
    }
  }
  // The relocated pointers must address the very bytes the local ones did, moved to the CMX.
  for (size_t i = 0; i < images.size(); ++i) {
    const std::vector<int32_t> local = TableWords(images[i].task.weight_table);
    for (size_t k = 0; k < local.size(); k += 4) {
      const bool dense_ptr = static_cast<uint32_t>(local[k + 1]) == kDenseSparsityPtr;
      if (int64_t{relocated[i][k]} != local[k] + offset[kWeights] ||
          int64_t{relocated[i][k + 1]} !=
              (dense_ptr ? int64_t{local[k + 1]} : local[k + 1] + offset[kWeightMap])) {
        return Internal("golden tiles: tile " + std::to_string(i) + " channel " +
                        std::to_string(k / 4) +
                        ": the relocated pointers do not address the tile's own weights");
      }
    }
    images[i].bytes[kWeightTable] = LittleEndian(relocated[i]);
  }

  GoldenSet set;
  json tiles = json::array();
  for (size_t i = 0; i < images.size(); ++i) {
    const TileImage& im = images[i];
    const TilePlan& t = *im.tile;
    const NceGeometry& tg = im.task.op.g;
    const std::string dir = "tile" + std::to_string(t.tile) + "/";
    const json where = {{"tile", t.tile}};
    json buffers = json::array();
    auto add = [&](Buffer b, std::vector<int64_t> shape, std::string dtype, std::string format,
                   json extra) {
      if (im.bytes[b].empty()) return;
      const std::string name = dir + kBufferNames[b] + ".bin";
      extra["tile"] = t.tile;
      extra["offset"] = offset[b];
      buffers.push_back({{"buffer", kBufferNames[b]},
                         {"file", name},
                         {"offset", offset[b]},
                         {"bytes", im.bytes[b].size()}});
      AddFile(set, name, im.bytes[b], std::move(shape), std::move(dtype), std::move(format),
              std::move(extra));
    };
    if (se == nullptr) {
      const bool in_sparse = !im.task.input_map.empty();
      add(kInput, {tg.h, g.w, g.c}, DTypeName(op.in_dtype),
          ActivationFormat(in_sparse) + "; the tile's input rows, halo included",
          {{"se_size", im.task.input_se_size},
           {"rows", RangeJson(im.in_begin, im.in_begin + tg.h)}});
      add(kInputMap, {static_cast<int64_t>(im.bytes[kInputMap].size())}, "u8",
          kActivationMapFormat, json::object());
    } else {
      const size_t id = static_cast<size_t>(t.tile);
      int64_t first_row = 0;
      for (size_t j = 0; j < id && j < se->parts.size(); ++j) first_row += se->parts[j].rows;
      const int64_t src_rows = id < se->parts.size() ? se->parts[id].rows : 0;
      add(kInput, {src_rows, se->source_w, g.c}, DTypeName(op.in_dtype),
          "the tile's part of the SE source (rows [first_row, first_row + rows) of input.npy), "
          "in sparse-activation slots (dense: every element present); SE pointers with BASE_PTR "
          "= this tile read it",
          {{"se_size", se->se_size}, {"first_row", first_row}, {"source_rows", src_rows}});
      add(kInputMap, {static_cast<int64_t>(im.bytes[kInputMap].size())}, "u8",
          std::string(kActivationMapFormat) + ", over the virtual input rows of the tile's window",
          {{"rows", RangeJson(im.in_begin, im.in_begin + tg.h)}});
      add(kSeTable, {tg.h, g.w, g.c / se->se_size}, "i32",
          std::string(kSeTableFormat) +
              "; the table rows of the tile's virtual input window, DATA_PTR relocated to the "
              "source's CMX offset in the BASE_PTR tile",
          {{"rows", RangeJson(im.in_begin, im.in_begin + tg.h)}, {"se_size", se->se_size}});
    }
    const std::vector<int64_t> w_shape = {tg.k, g.ky, g.kx, g.c};
    add(kWeights, w_shape, DTypeName(op.w_dtype),
        sparse_w ? "compressed weights (per output channel the values that differ from the zero "
                   "point in OYXI order, each channel's run padded to 16 bytes) of the tile's "
                   "channels"
                 : IsSubByte(op.w_dtype)
                       ? "dense OYXI int4 weights of the tile's channels, two per byte (element 2i "
                         "in the low nibble), each channel's set padded to 16 bytes"
                       : "dense OYXI weights of the tile's channels",
        {{"k", RangeJson(t.k_begin, t.k_end)}});
    add(kWeightMap, {tg.k, WeightMapBytesPerChannel(tg)}, "u8",
        "weight sparsity map: 1 bit per weight in OYXI order, 1 = stored, least-significant bit "
        "first; each channel's map padded to 128 bits",
        json::object());
    json wo = json::array(), so = json::array();
    for (size_t k = 0; k < relocated[i].size(); k += 4) {
      wo.push_back(static_cast<uint32_t>(relocated[i][k]));
      so.push_back(static_cast<uint32_t>(relocated[i][k + 1]));
    }
    add(kWeightTable, {tg.k, 4}, "u32",
        "weight table: 16 bytes per output channel of the tile: weight_ptr and sparsity_ptr "
        "relocated (absolute byte offsets in the tile's CMX; sparsity_ptr 0xFFFFFF when dense), "
        "scale word, bias",
        {{"weight_offsets", std::move(wo)}, {"sparsity_offsets", std::move(so)}});
    add(kOutput, {t.row_end - t.row_begin, ow, tg.k}, DTypeName(op.out_dtype),
        ActivationFormat(im.out.sparse()) + "; the tile's output rows and channels (padding "
                                             "channels included) as the output unit writes them",
        {{"se_size", im.out.se_size},
         {"rows", RangeJson(t.row_begin, t.row_end)},
         {"k", RangeJson(t.k_begin, t.k_end)}});
    add(kOutputMap, {static_cast<int64_t>(im.bytes[kOutputMap].size())}, "u8",
        kActivationMapFormat, json::object());

    std::sort(buffers.begin(), buffers.end(), [](const json& a, const json& b) {
      return a["offset"].get<int64_t>() < b["offset"].get<int64_t>();
    });
    json variants = json::array();
    for (size_t wi = 0; wi < plan.workloads.size(); ++wi) {
      const Workload& w = plan.workloads[wi];
      if (w.tile != t.tile) continue;
      const std::string wname = "golden tiles: plan.workloads[" + std::to_string(wi) + "]";
      if (w.k_begin < t.k_begin || w.k_end > t.k_end || w.row_begin < t.row_begin ||
          w.row_end > t.row_end || w.k_begin % 16 != 0 || w.k_end <= w.k_begin) {
        return InvalidArgument(wname + ": its channels and rows must lie inside its tile's");
      }
      if (w.col_begin != 0 || w.col_end != ow) {
        return InvalidArgument(wname + ": columns must be the whole output width");
      }
      const auto [cb, ce] = ComputedRows(g, w.row_begin, w.row_end);
      // The variant's input window and pads, from the executor's slicing of those rows.
      DPUEMU_ASSIGN_OR_RETURN(const NceLayer s,
                              SliceLayer(layer, 0, 16, cb, ce));
      const int64_t in_b = cb * g.stride_y - g.pad_top + s.op.g.pad_top;
      if (in_b < im.in_begin || in_b + s.op.g.h > im.in_begin + tg.h) {
        return Internal(wname + ": reads input rows outside its tile's input buffer");
      }
      const int64_t kl = w.k_begin - t.k_begin;
      variants.push_back(
          {{"workload", wi},
           {"mpe_mode", MpeModeName(w.mpe_mode)},
           {"out_start", {w.col_begin, w.row_begin, w.k_begin}},
           {"out_end", {w.col_end - 1, w.row_end - 1, w.k_end - 1}},
           {"rows_computed", RangeJson(cb, ce)},
           {"pad",
            {{"top", s.op.g.pad_top},
             {"bottom", s.op.g.pad_bottom},
             {"left", g.pad_left},
             {"right", g.pad_right}}},
           {"k", RangeJson(w.k_begin, w.k_end)},
           {"k_local", RangeJson(kl, w.k_end - t.k_begin)},
           {"weight_table_offset", offset[kWeightTable] + 16 * kl},
           {"input_rows", RangeJson(in_b, in_b + s.op.g.h)},
           {"input_offset", (in_b - im.in_begin) * row_bytes},
           {"input_map_bit_offset", (in_b - im.in_begin) * g.w * g.c}});
      if (se != nullptr) {  // the input is read through the table, not at an offset
        variants.back().erase("input_offset");
        variants.back()["se_table_offset"] =
            (in_b - im.in_begin) * g.w * (g.c / se->se_size) * 4;
      }
    }
    tiles.push_back({{"tile", t.tile},
                     {"k", RangeJson(t.k_begin, t.k_end)},
                     {"rows", RangeJson(t.row_begin, t.row_end)},
                     {"input_rows", RangeJson(im.in_begin, im.in_begin + tg.h)},
                     {"output_se_size", im.out.se_size},
                     {"buffers", std::move(buffers)},
                     {"variants", std::move(variants)}});
  }

  const TileImage& first = images.front();
  json& m = set.manifest;
  m["golden"] = "tiles";
  FillManifest(set, layer.name, target, first.task, first.out, plan.options.input_sparse,
               ConvJson(g));
  m["split"] = SplitStrategyName(plan.split);
  m["k_padded"] = plan.k_padded;
  json layout = json::array();
  for (int b = 0; b < kBuffers; ++b) {
    if (size[b] > 0) {
      layout.push_back({{"buffer", kBufferNames[b]}, {"offset", offset[b]}, {"bytes", size[b]}});
    }
  }
  m["cmx"] = {{"bytes_per_tile", target.cmx_bytes_per_tile},
              {"alignment", 16},
              {"end", end},
              {"layout", std::move(layout)}};
  m["relocation"] = {{"source",
                      "src/vpux_compiler/src/dialect/const/attributes/relocate_weights_table.cpp "
                      "(RelocateWeightsTableAttr::transform)"},
                     {"weights_ptr", reloc.weights_ptr},
                     {"sparsity_ptr", reloc.sparsity_ptr},
                     {"offsets", reloc.offsets},
                     {"segmented", sok}};
  m["tiles"] = std::move(tiles);
  if (se != nullptr) {
    json parts = json::array();
    int64_t first_row = 0;
    for (size_t j = 0; j < se->parts.size(); ++j) {
      parts.push_back({{"tile", j},
                       {"first_row", first_row},
                       {"rows", se->parts[j].rows},
                       {"offset", offset[kInput]},
                       {"file", "tile" + std::to_string(j) + "/input.bin"}});
      first_row += se->parts[j].rows;
    }
    m["se"] = {{"se_size", se->se_size}, {"source_tiles", std::move(parts)}};
  }
  ListFiles(set);
  return set;
}

}  // namespace

StatusOr<GoldenSet> MakeTileGoldenSet(const NceLayer& layer, const Plan& plan,
                                      const Tensor& output) {
  if (layer.op.kind != NceKind::kConv) {
    return InvalidArgument(std::string("golden tiles: the per-tile CMX layout is defined for conv; "
                                       "op ") + NceKindName(layer.op.kind) +
                           " writes the whole-layer golden set (--golden layer)");
  }
  return MakeTiles(layer, plan, output, nullptr);
}

StatusOr<GoldenSet> MakeSeTileGoldenSet(const Spec& spec, const std::vector<Plan>& plans,
                                        const std::vector<Tensor>& outputs) {
  if (!spec.se || spec.target == nullptr) {
    return InvalidArgument("golden tiles: the spec has no se field (use MakeTileGoldenSet)");
  }
  const SeSpec& se = *spec.se;
  if (se.phases.size() != 1 || plans.size() != 1 || outputs.size() != 1) {
    return InvalidArgument("golden tiles: '" + spec.layer.name + "' runs as " +
                           std::to_string(se.phases.size()) +
                           " DPU layers (dilate phases): per-tile golden sets cover one DPU "
                           "layer; use --golden layer");
  }
  DPUEMU_ASSIGN_OR_RETURN(const std::vector<DpuTask> tasks, LowerSeSpec(spec, plans));
  SeTiles st;
  st.task = &tasks.front();
  st.parts = se.layout.tiles.empty()
                 ? std::vector<SourceLayout::Part>{{se.source.shape[0], 0}}
                 : se.layout.tiles;
  st.se_size = se.se_size;
  st.source_w = se.source.shape[1];
  return MakeTiles(DpuLayer(spec, 0), plans.front(), outputs.front(), &st);
}

Status WriteGoldenSet(const GoldenSet& set, const std::string& dir) {
  for (const GoldenFile& f : set.files) {
    const size_t slash = f.name.rfind('/');
    if (slash != std::string::npos) {
      std::error_code ec;
      std::filesystem::create_directories(dir + "/" + f.name.substr(0, slash), ec);
      if (ec) {
        return InvalidArgument(dir + "/" + f.name.substr(0, slash) +
                               ": cannot create: " + ec.message());
      }
    }
    DPUEMU_RETURN_IF_ERROR(WriteFileBytes(dir + "/" + f.name, f.bytes));
  }
  const std::string manifest = set.manifest.dump(2) + "\n";
  return WriteFileBytes(
      dir + "/manifest.json",
      ByteSpan(reinterpret_cast<const uint8_t*>(manifest.data()), manifest.size()));
}

}  // namespace dpuemu
