#include "runtime/golden.h"

#include <utility>

#include "hw/dpu_task.h"
#include "hw/formats.h"
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
  const ConvOp& op = task.op;
  const ConvGeometry& g = op.g;
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
void AddOutputFiles(GoldenSet& set, const DpuOutput& out, const ConvOp& op,
                    const std::string& suffix) {
  AddFile(set, "output" + suffix + ".bin", out.data.bytes, {op.g.out_h(), op.g.out_w(), op.g.k},
          DTypeName(op.out_dtype), ActivationFormat(out.sparse()), {{"se_size", out.se_size}});
  if (out.sparse()) {
    AddFile(set, "output_map" + suffix + ".bin", out.map, {static_cast<int64_t>(out.map.size())},
            "u8", kActivationMapFormat);
  }
}

json ConvJson(const ConvGeometry& g) {
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
  const ConvOp& op = task.op;
  json& m = set.manifest;
  m["layer"] = layer;
  m["target"] = target.name;
  m["generation"] = target.generation;
  m["conv"] = std::move(conv);
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

Status CheckOutput(const ConvOp& op, const Tensor& output, const std::string& what) {
  const ConvGeometry& g = op.g;
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

StatusOr<GoldenSet> MakeGoldenSet(const ConvLayer& layer, const Plan& plan, const Tensor& output) {
  if (plan.target == nullptr) return InvalidArgument("golden: the plan has no target");
  const Target& target = *plan.target;
  const ConvOp& op = layer.op;
  const ConvGeometry& g = op.g;
  DPUEMU_RETURN_IF_ERROR(CheckOutput(op, output, "output"));

  StorageOptions storage;
  storage.weights_sparse = plan.weights.sparse;
  storage.input_sparse = plan.options.input_sparse;
  storage.input_se_size = plan.input_se_size;
  storage.output_sparse = plan.options.output_sparse;
  storage.output_se_size = plan.options.output_se_size;
  DPUEMU_ASSIGN_OR_RETURN(DpuTask task, LowerLayer(layer, storage, target));
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
    AddFile(set, "se_table.bin", LittleEndian(task.se_table), {g.h, g.w, g.c / task.input_se_size},
            "i32", kSeTableFormat);
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
    const ConvGeometry& g = t.op.g;
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

Status WriteGoldenSet(const GoldenSet& set, const std::string& dir) {
  for (const GoldenFile& f : set.files) {
    DPUEMU_RETURN_IF_ERROR(WriteFileBytes(dir + "/" + f.name, f.bytes));
  }
  const std::string manifest = set.manifest.dump(2) + "\n";
  return WriteFileBytes(
      dir + "/manifest.json",
      ByteSpan(reinterpret_cast<const uint8_t*>(manifest.data()), manifest.size()));
}

}  // namespace dpuemu
