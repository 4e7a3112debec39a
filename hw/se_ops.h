// Storage-element (SE) pointer operations: tensor reshapings the DPU performs for free by reading
// its input through an SE pointer table instead of a materialised tensor.
//
// Each generator maps a source tensor [H, W, C] (stored NHWC in CMX, its rows possibly split
// across tiles) to a virtual tensor [H', W', C]. Every virtual pixel either reads a source pixel
// (one SE pointer per se_size channels, DATA_PTR/BASE_PTR via EncodeSePointer) or is an inserted
// zero: its map bits are 0, so it reads as the zero point (its pointers address the source pixel
// the compiler's SE attributes pick: the one before an inserted zero, the nearest border pixel of
// constant padding; VPU/IR/se_attributes.cpp backInferInputCoord). The virtual map is in the activation
// map format of hw/formats.h; where a virtual pixel reads a sparse source pixel it copies the
// source's bits, because the source's SE slot packs only the present elements. The gather
// definition itself is GatherActivations (hw/formats.h).
//
// Composite operations built on top: transposed convolution (zero insertion + flipped kernel)
// and dilated convolution (a set of ordinary convolutions over SE-gathered sub-grids).
#ifndef DPUEMU_HW_SE_OPS_H_
#define DPUEMU_HW_SE_OPS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"

namespace dpuemu {

// Where a source tensor [H, W, C] sits in CMX: tile i holds the next tiles[i].rows rows (at least
// one), stored NHWC from byte tiles[i].base_offset (a multiple of 16). Empty: the whole tensor at
// offset 0 of tile 0.
struct SourceLayout {
  struct Part {
    int64_t rows = 0;
    int64_t base_offset = 0;
  };
  std::vector<Part> tiles;
};
// Splits h rows over min(tiles, h) tiles, earlier tiles taking the remainder, each at base_offset.
SourceLayout SplitRows(int64_t h, int tiles, int64_t base_offset = 0);

// The source of a gather: shape, element type, placement, and its sparsity map when it is stored
// sparse (ActivationMapBytes(H * W * C) bytes, 1 = present; empty = dense).
struct SeSource {
  int64_t h = 0, w = 0, c = 0;
  DType dtype = DType::kU8;
  SourceLayout layout;
  std::vector<uint8_t> map;
};
// Describes tensor t [H, W, C]; when `sparse`, records which elements differ from zero point zp.
StatusOr<SeSource> MakeSeSource(const Tensor& t, const SourceLayout& layout, bool sparse,
                                int32_t zp);

// A gather: the SE pointer table and sparsity map of a virtual tensor [h, w, c] over a source of
// [source_h, source_w, c].
struct SeGather {
  int64_t h = 0, w = 0, c = 0;
  int64_t source_h = 0, source_w = 0;
  int64_t se_size = 0;
  std::vector<int32_t> table;  // [h, w, c / se_size]
  std::vector<uint8_t> map;    // ActivationMapBytes(h * w * c); 0 = reads as the zero point
  std::string description;     // what was gathered, for printing
};

// Every generator takes the target and an se_size (0 = DefaultSeSize(target, C)); the size must
// satisfy CheckSeSize and divide C. Virtual dimensions are limited to [1, 16384] and 2^31
// elements, like ZMConv inputs.

// Nearest upsampling by integer factors: virtual (y, x) reads source (y / fy, x / fx).
StatusOr<SeGather> UpsampleNearestGather(const SeSource& src, const Target& t, int64_t se_size,
                                         int64_t fy, int64_t fx);

// ONNX Resize, mode "nearest", to [out_h, out_w]: the coordinate transformation maps an output
// index to a source coordinate (scale = out / in), the nearest mode rounds it, and the result is
// clamped to the source. Computed in exact rational arithmetic, so exact halves are exact.
enum class CoordMode {
  kAsymmetric,
  kHalfPixel,
  kAlignCorners,
  kPytorchHalfPixel,
  kTfHalfPixelForNN
};
enum class NearestMode { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };
const char* CoordModeName(CoordMode m);      // ONNX spelling: "half_pixel", ...
const char* NearestModeName(NearestMode m);  // "round_prefer_floor", ...
StatusOr<CoordMode> ParseCoordMode(const std::string& name);
StatusOr<NearestMode> ParseNearestMode(const std::string& name);
StatusOr<SeGather> InterpolateNearestGather(const SeSource& src, const Target& t, int64_t se_size,
                                            int64_t out_h, int64_t out_w, CoordMode coord,
                                            NearestMode mode);

// numpy.pad semantics, pads wider than the tensor included: constant = inserted zeros (the zero
// point); edge repeats the border pixel; reflect mirrors without repeating it (period 2(n-1); a
// single row or column acts like edge), symmetric mirrors repeating it (period 2n).
enum class PadMode { kConstant, kEdge, kReflect, kSymmetric };
const char* PadModeName(PadMode m);
StatusOr<PadMode> ParsePadMode(const std::string& name);
struct Pads {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
};
StatusOr<SeGather> PadGather(const SeSource& src, const Target& t, int64_t se_size,
                             const Pads& pads, PadMode mode);

// ONNX Resize, mode "linear" (bilinear over H and W), as the compiler lowers it to the DPU
// (NCEInterpolate with mode BILINEAR: VPU/transforms/passes/lower_ops_to_se_nce.cpp
// InterpolateToNCE): the SE table repeats every source pixel `factor` times per axis and adds
// pads of border copies (SEInterpolateAttr, VPU/IR/se_attributes.cpp backInferInputCoord), and a
// ZMConv with a KY x KX box kernel of weight 1 / (KY * KX) on the diagonal channel (input channel
// k for output channel k) and the given stride averages it: for integer scales the box average of
// the repeated pixels is exactly the bilinear weighting. Factors, pads, kernel and stride per axis
// follow VPU/utils/nce_interpolate_utils.cpp (getNCEInterpolateFactors/PadsBegin/PadsEnd/
// KernelSize/Strides) for scale s = out / in (align_corners: (out - 1) / (in - 1)), which must be
// a whole number:
//   asymmetric            factor s, pads 0 / s - 1, kernel s, stride 1
//   align_corners         factor s, pads 0 / 0,     kernel s, stride 1
//   half_pixel, pytorch_half_pixel:
//     s odd               factor s, pads (s - 1) / 2 each side, kernel s, stride 1
//     s even              factor 2s, pads s - 1 each side, kernel 2s, stride 2
// tf_half_pixel_for_nn is refused, as by NCEInterpolateOp::isSupported (E#107568).
struct BilinearInterp {
  CoordMode coord = CoordMode::kAsymmetric;
  int64_t in_h = 1, in_w = 1, out_h = 1, out_w = 1;
  int64_t scale_y = 1, scale_x = 1;    // whole-number scales
  int64_t factor_y = 1, factor_x = 1;  // SE repetition of each source pixel
  Pads pads;                           // border copies around the repeated pixels
  int64_t ky = 1, kx = 1, stride_y = 1, stride_x = 1;  // the box convolution
  std::string ToString() const;
};
StatusOr<BilinearInterp> PlanInterpolateBilinear(int64_t in_h, int64_t in_w, int64_t out_h,
                                                 int64_t out_w, CoordMode coord);
// The SE table of the plan over src (which must be [in_h, in_w, C]): virtual index v of an axis
// reads the source index SEInterpolateAttr::backInferInputCoord gives: o = max(0, (v - k + 1) /
// stride) (C++ division), the coordinate transformation of o (identity on an axis of scale 1),
// ceil, clamped to the source.
StatusOr<SeGather> InterpolateBilinearGather(const SeSource& src, const Target& t, int64_t se_size,
                                             const BilinearInterp& b);
// The ZMConv over `gather` (from InterpolateBilinearGather with the same plan): K = C, kernel
// KY x KX, the plan's stride, no DPU padding, weights [C, KY, KX, C] zero except w[k][.][.][k]:
//   integer inputs: u8 1 (zero point 0), the 1 / (KY * KX) moved into the requantisation, as the
//     compiler quantises that weight (createWeightsConstantImpl: storage 1, scale 1 / (KY * KX)):
//     `quant` is the interpolate's own (mult, shift: its in_scale / out_scale; bias in input
//     units) and the layer's is mult * 2^-shift / (KY * KX) re-encoded as mantissa x 2^15 and
//     shift = 15 - exponent (EncodePpeScale), bias * KY * KX;
//   fp16 inputs: fp16 weights 1 / (KY * KX) rounded to fp16, quant unchanged (the compiler's f16
//     weights); bf16 inputs: bf16 weights (dpuemu's ZMConv takes float weights of the input's
//     type; the compiler would use f16).
// op gives the types, zero points and PPE; its geometry is replaced.
StatusOr<NceLayer> InterpolateBilinearAsZMConv(const BilinearInterp& b, const SeGather& gather,
                                               const NceOp& op, const ChannelQuant& quant);
// A positive scale as the PPE's (mult, shift): frexp's mantissa x 2^15 rounded (a mantissa that
// rounds to 2^15 becomes 2^14 with one less shift) and shift = 15 - exponent, as the compiler
// encodes requantisation scales; an error when the shift falls outside [0, 63].
Status EncodePpeScale(double scale, int32_t* mult, int32_t* shift);

// numpy.roll semantics: virtual (y, x) reads source ((y - dy) mod H, (x - dx) mod W); any shift.
StatusOr<SeGather> RollGather(const SeSource& src, const Target& t, int64_t se_size, int64_t dy,
                              int64_t dx);

// ---- Transposed convolution ----
// Definition, with weights W [K, KY, KX, C] (output channels, kernel, input channels):
//   out[y * stride_y + ky - pads.top][x * stride_x + kx - pads.left][k]
//       += in[y][x][c] * W[k][ky][kx][c]
// over an output of ((H - 1) * stride_y - pads.top - pads.bottom + KY + output_padding_y) rows
// (likewise columns). It equals a stride-1, unpadded ZMConv with the kernel flipped in y and x
// over the virtual tensor that holds the input pixels `stride` apart, zeros between them, and a
// border of KY - 1 - pads.top zero rows above and KY - 1 - pads.bottom + output_padding_y below
// (a negative border crops).
struct TransposedConv {
  int64_t stride_y = 1, stride_x = 1;  // zero-insertion factors, >= 1
  Pads pads;                           // >= 0
  // Extra bottom rows / right columns of the output, < stride.
  int64_t output_padding_y = 0, output_padding_x = 0;
  int64_t ky = 1, kx = 1;  // kernel, 1..11
};
StatusOr<SeGather> ZeroInsertGather(const SeSource& src, const Target& t, int64_t se_size,
                                    const TransposedConv& tc);
// The ZMConv that, run over `gather` (from ZeroInsertGather with the same tc), computes the
// transposed convolution: op's types, zero points and PPE with the virtual geometry (stride 1,
// no padding), the flipped weights, quant unchanged. weights: [K, KY, KX, C] as defined above.
// The layer's input is left empty: LowerWithGather reads the source instead.
StatusOr<NceLayer> TransposedConvAsZMConv(const TransposedConv& tc, const SeGather& gather,
                                           const NceOp& op, const ChannelQuant& quant,
                                           const Tensor& weights);

// ---- Lowering ----
// The DpuTask that runs virtual_layer's op and weights over the gathered virtual tensor:
// input_tiles hold the source placed per `layout` (dense bytes, or the sparse-activation slots
// when opts.input_sparse), se_table = gather.table, input_map = gather.map, input_se_size =
// gather.se_size (opts.input_se_size must be 0 or equal). virtual_layer.op.g must describe the
// virtual tensor; virtual_layer.input is ignored. Every pointer must address a storage element of
// a source row held in its tile, and every virtual SE's map bits must be all 0 or exactly what the
// addressed source slot holds (all 1 for a dense source, the source's bits for a sparse one).
StatusOr<DpuTask> LowerWithGather(const NceLayer& virtual_layer, const Tensor& source,
                                  const SourceLayout& layout, const SeGather& gather,
                                  const StorageOptions& opts, const Target& t);

// The DpuTask of `layer` as the compiler lowers a convolution whose pads exceed kernel / 2
// (IE/transforms/passes/handle_large_pads.cpp keeps kernel / 2 in the DPU and moves the excess
// into the input as zero rows and columns): LowerLayer when every pad is within kernel / 2;
// otherwise the DPU pads kernel / 2 and reads the excess as constant padding through an SE
// pointer table over the input (PadGather; the input is then in sparse storage). Other limits of
// ValidateInvocation (C, K <= 8192) are refused with the rule.
bool NeedsPadGather(const NceGeometry& g);
// The excess of each pad over kernel / 2 (all 0 when !NeedsPadGather).
Pads ExcessPads(const NceGeometry& g);
// `g` with a constant border around its virtual tensor: `pads` rows and columns of inserted zeros
// (map bits 0) whose pointers repeat those of the nearest virtual pixel, as SEPaddingAttr's
// constant padding addresses the nearest pixel. Used to lower an SE layer whose own pads exceed
// kernel / 2.
StatusOr<SeGather> PadVirtual(const SeGather& g, const Pads& pads);
// The convolution over `bordered` (the input or virtual tensor with the `excess` pads moved into
// it as a border, PadGather / PadVirtual): its size, and the pads left to the DPU.
NceGeometry GeometryOverBorder(const NceGeometry& g, const SeGather& bordered, const Pads& excess);
StatusOr<DpuTask> LowerLayerForDpu(const NceLayer& layer, const StorageOptions& opts,
                                   const Target& t);

// ---- Dilated convolution ----
// out[oy][ox] = sum over (ky, kx, c) of xp[oy * stride_y + ky * dilation_y][ox * stride_x +
// kx * dilation_x][c] * W[k][ky][kx][c], xp the padded input. With g = gcd(stride, dilation),
// the outputs fall into step = dilation / g phases per axis; phase p (outputs p, p + step, ...)
// reads padded rows p * stride + dilation * m only, so it is an ordinary ZMConv with the dense
// kernel and stride stride / g over the sub-grid of those rows (padding rows gathered as map 0).
struct DilatedPhase {
  int64_t out_y0 = 0, out_x0 = 0;        // first output row / column of the phase
  int64_t out_h = 0, out_w = 0;          // outputs out_y0 + step_y * q, q < out_h (likewise x)
  int64_t source_y0 = 0, source_x0 = 0;  // sub-grid row m is source row source_y0 + dilation_y * m
  SeGather gather;
};
struct DilatedPlan {
  NceGeometry geometry;  // the dilated conv's source, kernel, stride and padding (k unused)
  int64_t dilation_y = 1, dilation_x = 1;
  int64_t out_h = 0, out_w = 0;
  int64_t step_y = 1, step_x = 1;      // phases per axis
  int64_t stride_y = 1, stride_x = 1;  // each sub-convolution's stride
  std::vector<DilatedPhase> phases;    // empty phases (no outputs) are left out
  std::string ToString() const;
};
// g: the dilated conv (h, w, c as src; kernel 1..11, stride 1..8, padding 0..255). Dilation
// 1..1024 per axis.
StatusOr<DilatedPlan> PlanDilatedConv(const SeSource& src, const Target& t, int64_t se_size,
                                      const NceGeometry& g, int64_t dilation_y,
                                      int64_t dilation_x);
// One task per phase of plan, for `layer` (op.g as planned, input = the source [H, W, C]).
StatusOr<std::vector<DpuTask>> LowerDilatedConv(const NceLayer& layer, const DilatedPlan& plan,
                                                const SourceLayout& layout,
                                                const StorageOptions& opts, const Target& t);
// Interleaves the phases' outputs (one per phase, either storage) into [OH, OW, K].
StatusOr<Tensor> AssembleDilatedOutput(const DilatedPlan& plan,
                                       const std::vector<DpuOutput>& outputs, int32_t out_zp);

// Runs one DpuTask: RunReference (kernels/ref) or a wrapper of RunZMConv (kernels/zmconv.h).
using ConvRunner = std::function<StatusOr<DpuOutput>(const DpuTask&, const Target&)>;
// Plans (se_size from opts.input_se_size), lowers, runs every phase and assembles the dense
// output [OH, OW, K] of the dilated convolution `layer`. The plan is stored in *plan if given.
StatusOr<Tensor> RunDilatedConv(const NceLayer& layer, int64_t dilation_y, int64_t dilation_x,
                                const SourceLayout& layout, const StorageOptions& opts,
                                const Target& t, const ConvRunner& run,
                                DilatedPlan* plan = nullptr);

}  // namespace dpuemu

#endif  // DPUEMU_HW_SE_OPS_H_
