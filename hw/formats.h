// The DPU's memory formats: encoders and decoders, each a pure function that validates its input
// and never modifies it. Layouts (all little-endian):
//
// Compressed weights (per output channel k, elements in OYXI order: ky, kx, then c fastest):
//   data: the elements that differ from the weight zero point by value (IsWeightZero: -0.0 is a
//         zero for float weights), packed; each channel's run padded
//         with zero bytes to a multiple of 16 bytes (an all-zero-point channel takes 0 bytes).
//   map:  one bit per element, 1 = present, LSB first; each channel's map padded to 128 bits.
// Weight table: 16 bytes per output channel, four uint32 words:
//   [0] weight pointer   byte offset of the channel's weights in the weight buffer
//   [1] sparsity pointer byte offset of the channel's map in the map buffer, 0xFFFFFF when dense
//   [2] scale word       integer: mult << 16 | shift << 8; float: the fp32 scale's bits
//   [3] bias             integer: int32; float: the fp32 bias's bits
//   Pointers are relative to their buffer's base (dpuemu places each buffer at offset 0) and
//   16-byte aligned.
// Sparse activations [H, W, C] with storage elements (SE) of se_size channels:
//   data: dense-sized; the slot of each SE (one pixel x se_size channels) holds the SE's elements
//         that differ from the zero point, packed at its start; the rest of the slot is zero bytes.
//   map:  one bit per element in NHWC order, LSB first, padded to a multiple of 16 bytes.
// SE pointer table: int32 [H, W, C / se_size], one entry per SE of the (virtual) input:
//   bits [28:9] DATA_PTR = byte offset >> 4 within the tile, bits [8:0] BASE_PTR = tile index.
#ifndef DPUEMU_HW_FORMATS_H_
#define DPUEMU_HW_FORMATS_H_

#include <cstdint>
#include <vector>

#include "hw/layer.h"
#include "hw/span.h"
#include "hw/status.h"
#include "hw/tensor.h"

namespace dpuemu {

inline int64_t AlignUp(int64_t v, int64_t a) { return (v + a - 1) / a * a; }
inline bool MapBit(const uint8_t* map, int64_t i) { return (map[i >> 3] >> (i & 7)) & 1; }

// ---- Byte sizes (the formulas of ../shared/dpu-facts.md) ----
int64_t DenseWeightBytes(const NceGeometry& g, DType w);   // K * DenseWeightSetBytes (below)
int64_t WeightMapBytesPerChannel(const NceGeometry& g);    // align16(ceil(KY*KX*C / 8))
int64_t WeightMapBytes(const NceGeometry& g);              // K * the above
int64_t WeightTableBytes(const NceGeometry& g);            // 16 * K
int64_t ActivationMapBytes(int64_t elements);               // align16(ceil(elements / 8))
int64_t SeTableBytes(int64_t h, int64_t w, int64_t c, int64_t se_size);  // 4 * H * W * C/se_size

// ---- Dense weights in the DPU's memory ----
// Each output channel's weight set starts 16-byte aligned (VPU_WEIGHT_SET_BYTE_ALIGNMENT): its
// bytes are align16(KY * KX * C * bits / 8). 8- and 16-bit sets are whole 16-byte multiples
// already (C is a multiple of 16). i4/u4 weights are packed two per byte, element 2i in the low
// nibble and 2i + 1 in the high one (Const::BitPackAttr::transform,
// src/vpux_compiler/src/dialect/const/attributes/bit_pack.cpp), each set zero-padded to 16 bytes
// (the compiler's I4WeightsConvToNCE LIT test: 16 int4 weights per channel, pointers 0, 16, 32...).
int64_t DenseWeightSetBytes(DType t, int64_t taps);
// weights [K, KY, KX, C] (validated) -> the dense weight buffer, one set per channel as above.
std::vector<uint8_t> PackDenseWeights(const Tensor& weights);

// ---- Compressed weights ----
struct CompressedWeights {
  std::vector<uint8_t> data;
  std::vector<uint8_t> map;
  std::vector<uint32_t> data_offset;  // per output channel, into data
  std::vector<uint32_t> map_offset;   // per output channel, into map
  std::vector<int64_t> nonzeros;      // per output channel
};
// The compiler's rules for storing a layer's weight set sparse, in one place: sub-8-bit weights
// never (sparsify_weights.cpp), IC > 8192 never, an all-zero set (nonzeros == 0) never
// (sparsity_strategy.cpp shouldSparsifyWeights). nonzeros < 0: not counted (a slice of a set,
// whose own channels may all be zero). The error names the rule.
Status CanSparsifyWeights(DType w_dtype, int64_t c, int64_t nonzeros);
// weights: [K, KY, KX, C] of i8/u8/fp16/bf16; zp: the weight zero point (0 for float). An element
// is absent when IsWeightZero (float weights compare by value: -0.0 is dropped). Sub-byte
// weights are never sparsified (the compiler's sparsify_weights.cpp): an error.
StatusOr<CompressedWeights> CompressWeights(const Tensor& weights, int32_t zp);
// Rebuilds the dense [K, KY, KX, C] tensor from the buffers the weight table points into.
// Channels whose sparsity pointer is 0xFFFFFF are read dense from `data`.
StatusOr<Tensor> DecompressWeights(ByteSpan data, ByteSpan map, ByteSpan table,
                                   const NceGeometry& g, DType dtype, int32_t zp);

// ---- Weight table ----
constexpr uint32_t kDenseSparsityPtr = 0xFFFFFF;
struct WeightTableEntry {
  uint32_t weight_ptr = 0;
  uint32_t sparsity_ptr = kDenseSparsityPtr;
  uint32_t scale = 0;
  uint32_t bias = 0;
};
inline uint32_t IntScaleWord(int32_t mult, int32_t shift) {
  return (static_cast<uint32_t>(mult) << 16) | (static_cast<uint32_t>(shift) << 8);
}
inline int32_t ScaleWordMult(uint32_t w) { return static_cast<int32_t>(w >> 16); }
inline int32_t ScaleWordShift(uint32_t w) { return static_cast<int32_t>((w >> 8) & 0x3F); }

// Builds the entries for `op`/`quant`; weight/sparsity pointers from the given per-channel offsets
// (sparsity_ptrs empty = dense weights, pointers k * KY*KX*C*bytes).
StatusOr<std::vector<WeightTableEntry>> MakeWeightTable(const NceOp& op, const ChannelQuant& quant,
                                                        const std::vector<uint32_t>& weight_ptrs,
                                                        const std::vector<uint32_t>& sparsity_ptrs);
std::vector<uint8_t> EncodeWeightTable(const std::vector<WeightTableEntry>& entries);
// Checks the size (16 * k) and that pointers are 16-byte aligned.
StatusOr<std::vector<WeightTableEntry>> DecodeWeightTable(ByteSpan bytes, int64_t k);
// Per-channel requantisation back out of a decoded table (integer or float path per `op`).
StatusOr<ChannelQuant> WeightTableQuant(const NceOp& op, const std::vector<WeightTableEntry>& t);

// ---- Depthwise weights in the DPU's memory ----
// The compiler stores a depthwise filter [C, 1, KY, KX] flattened to [C, KY*KX + pad, 1, 1]: per
// channel its KY*KX weights in (ky, kx) order, padded with the weights' zero point (0 for float)
// up to a multiple of NCEInvariant::getAlignment(type) = max(128 / bits, 16) elements
// (alignDepthWiseWeightsTensor in src/vpux_compiler/src/dialect/VPU/utils/const_utils.cpp;
// NCEDepthConvolutionOp::inferAlignedFilterShape in VPU/IR/ops/nce_depth_convolution.cpp). The
// weight pointers step by one padded set (NCESparsity::getWeightPtrStep, VPU/utils/
// nce_sparsity.cpp): 16 bytes for 8-bit and int4 sets of <= 16 (32) taps, 32 for fp16/bf16.
// i4/u4 pack two per byte as for ZMConv. The DPU reads the first KY*KX elements of each set.
int64_t DwWeightSetElements(DType t, int64_t taps);  // AlignUp(taps, max(128 / bits, 16))
int64_t DwWeightSetBytes(DType t, int64_t taps);     // the above * bits / 8
// weights [C, KY, KX, 1] (validated) -> the DPU's depthwise weight buffer, C sets as above.
std::vector<uint8_t> PackDwWeights(const Tensor& weights, int32_t zp);
// The weights [C, KY, KX, 1] (one element per byte for i4/u4) that the weight table's pointers
// select in `data`: each pointer 16-byte aligned with its whole set inside the buffer; the table
// dense (sparsity_ptr 0xFFFFFF: depthwise weights are never sparse).
StatusOr<Tensor> UnpackDwWeights(ByteSpan data, const std::vector<WeightTableEntry>& table,
                                 const NceGeometry& g, DType dtype);

// ---- Sparse activations (and the ODU's sparse output) ----
struct SparseActivations {
  std::vector<uint8_t> data;  // dense-sized
  std::vector<uint8_t> map;   // ActivationMapBytes(numel)
  int64_t se_size = 0;
};
// t: [H, W, C] (or [1, H, W, C]); se_size divides C.
StatusOr<SparseActivations> EncodeSparseActivations(const Tensor& t, int32_t zp, int64_t se_size);
// shape: [H, W, C]. Checks sizes, and that no SE holds more present bits than its slot.
StatusOr<Tensor> DecodeSparseActivations(ByteSpan data, ByteSpan map, DType dtype,
                                         const std::vector<int64_t>& shape, int32_t zp,
                                         int64_t se_size);

// ---- Storage-element pointers ----
struct SePointer {
  int64_t offset = 0;  // bytes within the tile
  int32_t tile = 0;
};
constexpr int64_t kSeMaxOffset = ((int64_t{1} << 20) - 1) << 4;
constexpr int32_t kSeMaxTile = (1 << 9) - 1;
StatusOr<int32_t> EncodeSePointer(int64_t offset, int32_t tile);
inline SePointer DecodeSePointer(int32_t entry) {  // inline: the gather kernels call it per SE
  const uint32_t u = static_cast<uint32_t>(entry);
  return SePointer{static_cast<int64_t>((u >> 9) & 0xFFFFF) << 4, static_cast<int32_t>(u & 0x1FF)};
}
// The table that reads an [H, W, C] tensor stored NHWC at `base_offset` of tile `tile` in order.
StatusOr<std::vector<int32_t>> MakeIdentitySeTable(int64_t h, int64_t w, int64_t c,
                                                   int64_t se_size, DType dtype, int32_t tile = 0,
                                                   int64_t base_offset = 0);

// Where the DPU reads its input from: the CMX of each tile, an optional SE table and an optional
// sparsity map over the (virtual) input. Without a table the input is the NHWC tensor at offset 0
// of tile 0.
struct ActivationView {
  std::vector<ByteSpan> tiles;
  ByteSpan map;                 // empty = dense
  Span<const int32_t> se_table; // empty = no SE pointers
  int64_t se_size = 0;
};
// Gathers the virtual input [H, W, C] as the DPU sees it: each SE through its pointer (or its
// place in the tensor), elements whose map bit is 0 read as the zero point. Every pointer and
// slot is bounds-checked against its tile.
StatusOr<Tensor> GatherActivations(const ActivationView& view, DType dtype,
                                   const std::vector<int64_t>& shape, int32_t zp);

// ---- Input checks ----
// Each runs every check of its format function above, in the same order and with the same
// messages; the vectorized kernels (kernels/bitmap.h) call them too, so both paths fail alike.

// A zero point the type has: u8 in [0, 255], i8 in [-128, 127], any i32, 0 for float types
// (`field` names it in the message).
Status CheckZeroPoint(DType t, int32_t zp, const std::string& field);
// EncodeSparseActivations: shape, byte count, zero point, se_size.
Status CheckEncodeActivations(const Tensor& t, int32_t zp, int64_t se_size);
// CompressWeights: shape, dtype, byte count, size, zero point. Returns the geometry (k, ky, kx, c).
StatusOr<NceGeometry> CheckCompressWeights(const Tensor& weights, int32_t zp);
// DecompressWeights: dtype, zero point, geometry, the table, and each channel's pointers, map padding and
// non-zero count against the buffers. Returns the decoded table.
StatusOr<std::vector<WeightTableEntry>> CheckDecompressWeights(ByteSpan data, ByteSpan map,
                                                               ByteSpan table,
                                                               const NceGeometry& g, DType dtype,
                                                               int32_t zp);
// CheckDecompressWeights without the per-channel rules (each table entry's alignment and
// pointers, each map's padding and non-zero count), for the vectorized decode
// (kernels/bitmap.cc), which checks each channel before reading it and returns
// CheckDecompressWeights' status whenever anything fails.
Status CheckDecompressWeightsExceptChannels(ByteSpan table, const NceGeometry& g, DType dtype,
                                            int32_t zp);
// GatherActivations when only input rows [row_begin, row_end) are read (row_end < 0: all rows):
// shape, se_size, dtype, zero point, the row range, map and table sizes, the tiles, the SE pointers of those
// rows, and the map's padding bits.
struct GatherShape {
  int64_t h = 0, w = 0, c = 0;
};
StatusOr<GatherShape> CheckGather(const ActivationView& view, DType dtype,
                                  const std::vector<int64_t>& shape, int32_t zp,
                                  int64_t row_begin = 0, int64_t row_end = -1);
// CheckGather without the per-SE pointer rules, for the vectorized gathers (kernels/bitmap.cc),
// which check the pointers of the rows in their own pass and return CheckGather's status
// whenever either check fails, so that the first error reported is the same.
StatusOr<GatherShape> CheckGatherExceptSePointers(const ActivationView& view, DType dtype,
                                                  const std::vector<int64_t>& shape, int32_t zp,
                                                  int64_t row_begin = 0, int64_t row_end = -1);

}  // namespace dpuemu

#endif  // DPUEMU_HW_FORMATS_H_
