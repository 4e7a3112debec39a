// The golden set of one layer: every buffer the DPU reads and writes, in the hardware's formats
// (hw/formats.h), as raw little-endian .bin files, plus manifest.json describing each file (name,
// byte size, shape, dtype, format) so a hardware test bench can load them without dpuemu.
//
// The layer is lowered whole (one task, as if on one tile) with the plan's storage decisions:
// the weights sparse or dense as the plan decided, input and output sparsity and SE sizes as the
// plan's options ask (SE sizes of 0 take the target's default for C and K).
//
// Files: weights.bin (dense OYXI or compressed), weight_map.bin (sparse weights only),
// weight_table.bin, input.bin, input_map.bin (sparse input only), se_table.bin (SE pointers
// only), output.bin (dense or ODU sparse storage), output_map.bin (sparse output only).
//
// A spec with "se" (MakeSeGoldenSet) is lowered as the DPU runs it (LowerWithGather): input.bin is
// the SOURCE in its tile (input_tile<i>.bin, one per tile, when its rows are split over tiles),
// se_table.bin the SE pointer table and input_map.bin the map of the virtual input; a dilated
// convolution has one se_table / input_map / output / output_map per phase, named
// <file>_phase<i>.bin. manifest.json's "se" section gives the op, the source tiles (rows,
// first_row, base_offset, file) and the phases (geometry, output placement, files).
#ifndef DPUEMU_RUNTIME_GOLDEN_H_
#define DPUEMU_RUNTIME_GOLDEN_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hw/layer.h"
#include "hw/status.h"
#include "hw/tensor.h"
#include "runtime/plan.h"
#include "runtime/spec.h"

namespace dpuemu {

struct GoldenFile {
  std::string name;  // "weights.bin"
  std::vector<uint8_t> bytes;
  nlohmann::ordered_json info;  // the file's manifest entry: bytes, shape, dtype, format, ...
};

struct GoldenSet {
  std::vector<GoldenFile> files;
  nlohmann::ordered_json manifest;  // target, layer, storage, se sizes, and each file's entry
};

// `output` is the layer's dense result ([OH, OW, K] of the output dtype, e.g. RunLayer's); it is
// stored in the output's storage format (sparse: map + packed SEs) as the DPU's output unit would.
StatusOr<GoldenSet> MakeGoldenSet(const ConvLayer& layer, const Plan& plan, const Tensor& output);

// The golden set of a spec with "se": its DPU layers as LowerSeSpec lowers them (the plans'
// storage), with `outputs` the DPU layers' dense outputs (one per phase) in output storage.
StatusOr<GoldenSet> MakeSeGoldenSet(const Spec& spec, const std::vector<Plan>& plans,
                                    const std::vector<Tensor>& outputs);

// Writes every file and manifest.json into `dir`, which must exist.
Status WriteGoldenSet(const GoldenSet& set, const std::string& dir);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_GOLDEN_H_
