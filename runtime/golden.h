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
//
// Per-tile golden set (MakeTileGoldenSet, `dpuemu run --golden tiles`): what each DPU of the plan
// reads and writes, in its tile's CMX, cut and lowered exactly as the executor runs the plan
// (runtime/execute.h: SliceLayer of the tile's channels and rows, LowerLayer in TileStorage).
// Files, per tile i of plan.tiles, under tile<i>/:
//   input.bin, input_map.bin (sparse input): the tile's input rows, halo included, in storage
//     format (a row slice of the layer's storage: sparse slots and map bits are per pixel);
//   weights.bin, weight_map.bin (sparse weights): the tile's output channels (its K slice under
//     SOK, all K otherwise; padding channels [K, k_padded) hold zero-point weights), compressed or
//     dense as planned;
//   weight_table.bin: 16 bytes per channel of the tile, weight_ptr and sparsity_ptr RELOCATED to
//     the tile's CMX: absolute byte offsets in the tile's CMX of each channel's weights and map
//     (RelocateWeightsTable below, as the compiler's relocate_weights_table.cpp does; under SOK
//     the pointers restart at the weights buffer on every tile);
//   output.bin, output_map.bin (sparse output): the tile's output [rows, OW, channels of the
//     tile, padding channels included] as the ODU writes it with the tile's output SE size.
// manifest.json: "golden": "tiles", the layer fields of the whole-layer set, "split",
// "k_padded", "cmx": {bytes_per_tile, alignment 16, "layout": [{buffer, offset, bytes}]} - one
// offset per buffer, the same on every tile (the compiler allocates a distributed buffer at one
// offset in every cluster), each 16-byte aligned, its size the largest tile's, all inside the
// target's CMX per tile; "relocation" (the relocate_weights_table parameters: weights_ptr per
// tile, sparsity_ptr, offsets); "tiles": per tile {tile, k [begin, end), rows [begin, end),
// input_rows [begin, end), output_se_size, "buffers": [{buffer, file, offset, bytes}],
// "variants"}. A variant is one workload of the plan as the DPU runs it on that tile:
// {workload (index in plan.workloads), mpe_mode, out_start / out_end ([x, y, z] = column, row,
// channel of the layer's output, inclusive, as the compiler's DPUTask), pad {top, bottom, left,
// right} (the variant's own, after slicing), k [begin, end) (layer channels) and k_local (within
// the tile's weights and table), weight_table_offset (CMX byte offset of its first table entry),
// input_rows [begin, end) (layer rows read), input_offset / input_map_bit_offset (where those rows
// start in the tile's input.bin and input_map.bin), rows_computed [begin, end) (= the variant's
// rows, wider only when they read nothing but padding, as the executor computes them)}.
// Layout order: weight_table, weights, weight_map, input, input_map, se_table, output,
// output_map (so no buffer read through a pointer sits at offset 0).
//
// With "se" (MakeSeTileGoldenSet; one DPU layer, so not dilate): tile<i>/input.bin is tile i's
// part of the SOURCE (source_rows_per_tile; written for every tile holding source rows, which
// must be tiles of the plan), se_table.bin the SE table rows of the tile's virtual input window
// with DATA_PTR relocated to the source's offset in this layout (BASE_PTR, the tile holding the
// source row, unchanged), input_map.bin the virtual map rows of the window; manifest "se" lists
// source_tiles {tile, first_row, rows, offset, file} and each variant has se_table_offset (where
// its rows start in se_table.bin) instead of input_offset.
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
StatusOr<GoldenSet> MakeGoldenSet(const NceLayer& layer, const Plan& plan, const Tensor& output);

// The golden set of a spec with "se": its DPU layers as LowerSeSpec lowers them (the plans'
// storage), with `outputs` the DPU layers' dense outputs (one per phase) in output storage.
StatusOr<GoldenSet> MakeSeGoldenSet(const Spec& spec, const std::vector<Plan>& plans,
                                    const std::vector<Tensor>& outputs);

// Per-tile golden set (see the header comment); `output` is the layer's dense result. Plans with
// SE pointers need their spec: MakeSeTileGoldenSet.
StatusOr<GoldenSet> MakeTileGoldenSet(const NceLayer& layer, const Plan& plan,
                                      const Tensor& output);
// The per-tile golden set of a spec with "se" that runs as one DPU layer (every op but dilate):
// `outputs` holds that layer's dense output.
StatusOr<GoldenSet> MakeSeTileGoldenSet(const Spec& spec, const std::vector<Plan>& plans,
                                        const std::vector<Tensor>& outputs);

// The compiler's weight-table relocation (src/vpux_compiler/src/dialect/const/attributes/
// relocate_weights_table.cpp, RelocateWeightsTableAttr::transform; its parameters come from
// VPUIP/transforms/passes/patch_weights_table.cpp). `words` is the table as int32 words, 4 per
// output channel (weight_ptr, sparsity_ptr, scale, bias). Cluster c holds the channels from
// offsets[c] (all equal: not segmented, every channel uses cluster 0's pointer). For channel oc of
// cluster c:
//   weight_ptr   = weights_ptr[c] + step(oc) + channel_offset * (w[1].weight_ptr - w[0].weight_ptr)
//     step(oc) = dense: (w[1].weight_ptr - w[0].weight_ptr) * (oc - offsets[c]);
//                compressed (num_elems given): the sum over the earlier channels of cluster c of
//                align_up(ceil(num_elems * elem_bits / 8), alignment);
//   sparsity_ptr = sparsity_ptr + (oc - offsets[c]) * (w[1].sparsity_ptr - w[0].sparsity_ptr)
//                  + channel_offset * that step, unless it is 0xFFFFFF (dense: kept).
// The steps come from the table's first two channels (0 with one channel).
struct WeightsTableRelocation {
  std::vector<int64_t> weights_ptr;  // per cluster
  int64_t sparsity_ptr = 0xFFFFFF;
  std::vector<int64_t> offsets;  // first output channel of each cluster; same size as weights_ptr
  std::vector<int64_t> num_elems;  // compressed weights: stored elements per channel; empty: dense
  int64_t elem_bits = 8;
  int64_t alignment = 16;  // VPU_WEIGHT_SET_BYTE_ALIGNMENT
  int64_t channel_offset = 0;
};
StatusOr<std::vector<int32_t>> RelocateWeightsTable(std::vector<int32_t> words,
                                                    const WeightsTableRelocation& r);

// Writes every file and manifest.json into `dir`, which must exist (file names with a '/' get
// their subdirectory created).
Status WriteGoldenSet(const GoldenSet& set, const std::string& dir);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_GOLDEN_H_
