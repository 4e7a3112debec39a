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

const char* kActivationMapFormat =
    "activation sparsity map: 1 bit per element in NHWC order, 1 = stored, least-significant "
    "bit first, padded to 16 bytes";

std::string ActivationFormat(bool sparse) {
  return sparse ? "sparse activations NHWC: dense-sized; each storage element (one pixel x "
                  "se_size channels) holds its values that differ from the zero point packed at "
                  "its start, the rest zero bytes"
                : "dense NHWC";
}

}  // namespace

StatusOr<GoldenSet> MakeGoldenSet(const ConvLayer& layer, const Plan& plan, const Tensor& output) {
  if (plan.target == nullptr) return InvalidArgument("golden: the plan has no target");
  const Target& target = *plan.target;
  const ConvOp& op = layer.op;
  const ConvGeometry& g = op.g;
  const std::vector<int64_t> out_shape = {g.out_h(), g.out_w(), g.k};
  Tensor expect(op.out_dtype, out_shape);
  if (output.dtype != op.out_dtype || output.shape != out_shape ||
      output.bytes.size() != expect.bytes.size()) {
    return InvalidArgument(std::string("golden: output must be ") + DTypeName(op.out_dtype) + " " +
                           expect.ShapeString() + ", got " + DTypeName(output.dtype) + " " +
                           output.ShapeString() + " with " + std::to_string(output.bytes.size()) +
                           " bytes");
  }

  StorageOptions storage;
  storage.weights_sparse = plan.weights.sparse;
  storage.input_sparse = plan.options.input_sparse;
  storage.input_se_size = plan.input_se_size;
  storage.output_sparse = plan.options.output_sparse;
  storage.output_se_size = plan.options.output_se_size;
  DPUEMU_ASSIGN_OR_RETURN(DpuTask task, LowerLayer(layer, storage, target));
  DPUEMU_ASSIGN_OR_RETURN(DpuOutput out, StoreOutput(task, output));
  DPUEMU_ASSIGN_OR_RETURN(std::vector<WeightTableEntry> table,
                          DecodeWeightTable(task.weight_table, g.k));

  GoldenSet set;
  set.files.reserve(8);  // every file; `add` hands out references into the vector
  auto add = [&set](std::string name, std::vector<uint8_t> bytes, std::vector<int64_t> shape,
                    std::string dtype, std::string format) -> json& {
    json info = {{"name", name},
                 {"bytes", bytes.size()},
                 {"shape", std::move(shape)},
                 {"dtype", std::move(dtype)},
                 {"format", std::move(format)}};
    set.files.push_back({std::move(name), std::move(bytes), std::move(info)});
    return set.files.back().info;
  };

  const std::vector<int64_t> w_shape = {g.k, g.ky, g.kx, g.c};
  if (task.weights_sparse()) {
    add("weights.bin", task.weights, w_shape, DTypeName(op.w_dtype),
        "compressed weights: per output channel the values that differ from the zero point in "
        "OYXI order (ky, kx, then c fastest), each channel's run padded to 16 bytes; shape is "
        "the dense tensor encoded");
    add("weight_map.bin", task.weight_map, {g.k, WeightMapBytesPerChannel(g)}, "u8",
        "weight sparsity map: 1 bit per weight in OYXI order, 1 = stored, least-significant bit "
        "first; each channel's map padded to 128 bits");
  } else {
    add("weights.bin", task.weights, w_shape, DTypeName(op.w_dtype), "dense OYXI weights");
  }
  json& wt = add("weight_table.bin", task.weight_table, {g.k, 4}, "u32",
                 "weight table: 16 bytes per output channel, four uint32 words: weight_ptr "
                 "(byte offset into weights.bin), sparsity_ptr (byte offset into weight_map.bin, "
                 "0xFFFFFF when dense), scale word (integer: mult << 16 | shift << 8; float: fp32 "
                 "bits), bias (int32 or fp32 bits)");
  json weight_offsets = json::array(), sparsity_offsets = json::array();
  for (const WeightTableEntry& e : table) {
    weight_offsets.push_back(e.weight_ptr);
    sparsity_offsets.push_back(e.sparsity_ptr);
  }
  wt["weight_offsets"] = std::move(weight_offsets);
  wt["sparsity_offsets"] = std::move(sparsity_offsets);

  const bool input_sparse = !task.input_map.empty();
  add("input.bin", task.input_tiles.at(0), {g.h, g.w, g.c}, DTypeName(op.in_dtype),
      ActivationFormat(input_sparse))["se_size"] = task.input_se_size;
  if (input_sparse) {
    add("input_map.bin", task.input_map, {static_cast<int64_t>(task.input_map.size())}, "u8",
        kActivationMapFormat);
  }
  if (!task.se_table.empty()) {
    add("se_table.bin", LittleEndian(task.se_table), {g.h, g.w, g.c / task.input_se_size}, "i32",
        "storage-element pointers: bits [28:9] byte offset >> 4, bits [8:0] tile");
  }
  add("output.bin", out.data.bytes, out_shape, DTypeName(op.out_dtype),
      ActivationFormat(out.sparse()))["se_size"] = out.se_size;
  if (out.sparse()) {
    add("output_map.bin", out.map, {static_cast<int64_t>(out.map.size())}, "u8",
        kActivationMapFormat);
  }

  json& m = set.manifest;
  m["layer"] = layer.name;
  m["target"] = target.name;
  m["generation"] = target.generation;
  m["conv"] = {{"h", g.h},
               {"w", g.w},
               {"c", g.c},
               {"k", g.k},
               {"ky", g.ky},
               {"kx", g.kx},
               {"stride", {g.stride_y, g.stride_x}},
               {"pad", {g.pad_top, g.pad_bottom, g.pad_left, g.pad_right}},
               {"out_h", g.out_h()},
               {"out_w", g.out_w()}};
  m["dtypes"] = {{"input", DTypeName(op.in_dtype)},
                 {"weights", DTypeName(op.w_dtype)},
                 {"output", DTypeName(op.out_dtype)}};
  m["zero_points"] = {{"input", op.in_zp}, {"weights", op.w_zp}, {"output", op.ppe.out_zp}};
  m["weights_sparse"] = task.weights_sparse();
  m["input_sparse"] = input_sparse;
  m["se_table"] = !task.se_table.empty();
  m["output_sparse"] = out.sparse();
  m["se_sizes"] = {{"input", task.input_se_size}, {"output", out.se_size}};
  m["files"] = json::array();
  for (const GoldenFile& f : set.files) m["files"].push_back(f.info);
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
