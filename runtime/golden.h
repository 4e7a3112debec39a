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

// Writes every file and manifest.json into `dir`, which must exist.
Status WriteGoldenSet(const GoldenSet& set, const std::string& dir);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_GOLDEN_H_
