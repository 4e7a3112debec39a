// One description of a DPU operation (the NPU compiler's NCE operations), shared by the reference,
// the kernels, the planner, the golden writer, the CLI, the tests, the benchmarks and the demo.
//
// NceOp is what the DPU is programmed with for a whole invocation: the kind of operation (the
// task type: ZMConv, depthwise conv, max pool, average pool, eltwise) and what every kind shares
// (geometry, types, zero points, post-processing), plus what one kind has (the eltwise's second
// input). ChannelQuant is the per-output-channel requantisation (the weight-table entries, or
// the PPE registers for kinds without a weight table). NceLayer adds the dense tensors:
// activations NHWC [H, W, C], weights OYXI [K, KY, KX, C] (ZMConv) or [C, KY, KX, 1] (depthwise),
// the second input [H, W, C] (eltwise).
//
// Kinds (NceKindName; the compiler's VPU NCE ops and the DPU task types of VPUIP):
//   conv     NCEConvolution (and NCECompressConvolution for C = 4, and the SE operations'
//            convolutions): out[k] = sum over (ky, kx, c) of x * w[k]; K independent of C.
//   dwconv   NCEDepthConvolution: out[c] = sum over (ky, kx) of x[c] * w[c]; K = C.
//   maxpool  NCEMaxPool: out[c] = max over the window of x[c]; K = C, no weights.
//   avgpool  NCEAveragePool: out[c] = sum over the window of x[c], scaled by the PPE; K = C.
//   eltwise  NCEEltwise: out[c] = x1[c] (op) x2[c] per pixel; K = C, 1x1 window, stride 1, no pads.
// Every kind but conv is channel-wise (IsChannelwise): output channel k reads input channel k
// only, so a split over output channels also splits the input.
#ifndef DPUEMU_HW_LAYER_H_
#define DPUEMU_HW_LAYER_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"

namespace dpuemu {

struct NceGeometry {
  int64_t h = 0, w = 0, c = 0;  // input (the virtual, gathered input when SE pointers are used)
  int64_t k = 0;                // output channels
  int64_t ky = 1, kx = 1;       // kernel
  int64_t stride_y = 1, stride_x = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  int64_t out_h() const { return (h + pad_top + pad_bottom - ky) / stride_y + 1; }
  int64_t out_w() const { return (w + pad_left + pad_right - kx) / stride_x + 1; }
  int64_t taps() const { return ky * kx * c; }  // weight elements per output channel
  int64_t dense_macs() const { return out_h() * out_w() * k * taps(); }
};

// Post-processing (PPE) settings shared by all output channels.
struct Ppe {
  int32_t out_zp = 0;  // integer outputs only; the value sparse outputs omit
  // Leaky ReLU / PReLU: negatives are scaled. Integer path: multiplied by lrelu_mult and shifted
  // by lrelu_shift more bits. Float path: multiplied by lrelu_alpha in fp32 (the compiler's
  // fp_prelu_alpha, PPEFpScalePreluMult).
  bool leaky_relu = false;
  int32_t lrelu_mult = 1;   // 0..2047
  int32_t lrelu_shift = 0;  // 0..31
  float lrelu_alpha = 1.0f;  // finite
  // Clamp in the output's value domain (after the zero point); integer outputs need whole numbers.
  // Also clamped to the output type's range.
  double clamp_lo = -std::numeric_limits<double>::infinity();
  double clamp_hi = std::numeric_limits<double>::infinity();
};

enum class NceKind { kConv, kDwConv, kMaxPool, kAvgPool, kEltwise };
const char* NceKindName(NceKind k);  // "conv", "dwconv", "maxpool", "avgpool", "eltwise"
StatusOr<NceKind> ParseNceKind(const std::string& name);
bool IsChannelwise(NceKind k);  // every kind but conv: K = C, channel k reads channel k
bool HasWeights(NceKind k);     // conv, dwconv

enum class EltwiseType { kAdd, kSub, kMult };
const char* EltwiseTypeName(EltwiseType t);  // "add", "sub", "mult"
StatusOr<EltwiseType> ParseEltwiseType(const std::string& name);

// What only the eltwise has: its second input and the per-input multipliers of the integer path
// (the compiler's elop_scale_a / elop_scale_b).
struct EltwiseParams {
  EltwiseType type = EltwiseType::kAdd;
  DType in2_dtype = DType::kU8;
  int32_t in2_zp = 0;
  int32_t in1_mult = 1, in2_mult = 1;
};

struct NceOp {
  NceKind kind = NceKind::kConv;
  NceGeometry g;
  DType in_dtype = DType::kU8, w_dtype = DType::kI8, out_dtype = DType::kU8;
  int32_t in_zp = 0, w_zp = 0;  // 0 for float types; w_dtype/w_zp unused without weights
  Ppe ppe;
  EltwiseParams eltwise;  // kind == kEltwise only

  // Weight elements per output channel: KY * KX * C (conv), KY * KX (dwconv), 0 (no weights).
  int64_t weight_taps() const;
  // Input values each output value reads (the MACs or compares per output, for cost estimates):
  // KY * KX * C (conv), KY * KX (dwconv, pools), 2 (eltwise).
  int64_t taps_per_output() const;
};

// Which tensors an operation can have in sparse storage on a target: the compiler's
// sparsitySupport() of each NCE op (src/vpux_compiler/src/dialect/VPU/IR/ops/nce_*.cpp):
// conv (and the SE operations' convolutions, NCEInterpolate) all three; the compressed conv
// (C = 4), dwconv, maxpool, avgpool and eltwise the output only. The output loses its sparsity
// where the compiler requires super-dense output (isSuperdenseRequired), which dpuemu's NHWC
// outputs never do.
struct SparsitySupport {
  bool input = false, weights = false, output = false;
  std::string rule;  // the source, for messages: "NCEDepthConvolutionOp::sparsitySupport: ..."
};
SparsitySupport SupportedSparsity(const NceOp& op, const Target& t);

// Per-output-channel requantisation, as the weight table holds it.
struct ChannelQuant {
  // Integer path: v = (acc + bias) * mult >> shift (rounded half to even).
  std::vector<int32_t> mult;   // 0..65535
  std::vector<int32_t> shift;  // 0..63
  std::vector<int32_t> bias;
  // Float path: v = (acc + fbias) * scale (each step rounded to fp32). fbias is in accumulator
  // units, as the weight table holds it (the compiler stores bias / scale, getRescaledBias).
  std::vector<float> scale;
  std::vector<float> fbias;
};

struct NceLayer {
  std::string name;
  NceOp op;
  ChannelQuant quant;
  Tensor input;    // [H, W, C], op.in_dtype
  Tensor weights;  // conv [K, KY, KX, C], dwconv [C, KY, KX, 1], op.w_dtype; empty otherwise
  Tensor input2;   // eltwise: [H, W, C], op.eltwise.in2_dtype; empty otherwise
};

// Integer activations and weights (kinds without weights: integer activations): exact int32
// accumulation and the integer PPE. Float activations (with float or integer weights) take the
// fp32 accumulation and the float PPE.
bool IsIntegerPath(const NceOp& op);
bool IsIntegerWeights(DType t);  // u8, i8, i4, u4
// Float activations with integer weights (weight-only quantisation): (w - w_zp) enters the fp32
// MAC and the per-channel scale carries the dequantisation.
bool IsMixedPrecision(const NceOp& op);

// The float bias word of the weight table for a bias given in output units: bias / scale divided
// in double, then rounded to fp32, as the compiler writes it (NCESparsity::getRescaledBias in
// src/vpux_compiler/src/dialect/VPU/utils/nce_sparsity.cpp, then toHex). `scale` is the scale as
// given (the compiler divides by its fp64 quantisation scales, not by the fp32 scale word). An error
// when the quotient is not a finite fp32 (a non-zero bias with scale 0).
StatusOr<float> FloatBiasWord(double bias, double scale);

// Limits of the layers dpuemu runs (ValidateOp; README "What is checked"). Bounded dimensions
// keep every product of them, and so every byte offset, far inside int64.
constexpr int64_t kMaxSpatial = 16384;                  // h, w (and virtual SE tensors)
constexpr int64_t kMaxChannels = 16384;                 // c, k: multiples of 16
constexpr int64_t kMaxKernel = 11;                      // ky, kx
constexpr int64_t kMaxInputElements = int64_t{1} << 31;  // h * w * c
constexpr int64_t kMaxWeightElements = int64_t{1} << 28;  // k * ky * kx * c
// "`field` = v: must be in [lo, hi]" unless lo <= v <= hi.
Status CheckRange(const std::string& field, int64_t v, int64_t lo, int64_t hi);
// A channel count: in [16, kMaxChannels] and a multiple of 16.
Status CheckChannels(const std::string& field, int64_t v);
// The compressed convolution (the compiler's NCECompressConvolution, first layers with RGB(A)
// inputs): a conv with C = 3 or 4 instead of C padded to 16. The DPU reads 4 input channels per
// pixel (VPU_COMPRESSED_INPUT_CHANNEL_NUM, nce_invariant.hpp); C = 3 is padded to 4 by the
// lowering (LowerLayer), see README "Compressed convolution (C = 3, 4)".
constexpr int64_t kCompressedInputChannels = 4;
bool IsCompressedChannels(int64_t c);  // 3 or 4
bool IsCompressedConv(const NceOp& op);
// The tensor dimensions of g (h, w, c, k, ky, kx) within the limits above: the part of
// ValidateOp that sizes allocations, so parsers run it before sizing anything by K.
Status ValidateDims(const NceGeometry& g);
// The window of g: ky, kx in [1, kMaxKernel], strides in [1, 8], pads in [0, 255].
Status ValidateWindow(const NceGeometry& g);
Status ValidateOp(const NceOp& op);
// What ONE DPU invocation can run (the library's DpuTask: LowerLayer, ValidateTask, the reference
// and the kernels), beyond ValidateOp: C and K at most kMaxInvocationChannels (the compiler's
// VPU_DIMENSION_LIMIT, VPU/utils/nce_invariant.hpp) and each pad at most kernel / 2
// (NCEInvariant::verifyPads, nce_invariant.cpp). Kernel <= 11 and stride <= 8 are ValidateWindow's.
// The runtime lowers layers beyond these as the compiler does (LowerLayerForDpu, the planner).
constexpr int64_t kMaxInvocationChannels = 8192;
Status ValidateInvocation(const NceGeometry& g);
Status ValidateQuant(const NceOp& op, const ChannelQuant& q);
Status ValidateLayer(const NceLayer& layer);  // op, quant, and the tensors' dtypes and shapes

// Value of an element "absent" in sparse formats: the zero point, as the type's bit pattern.
// Float zero is +0.0 (bit pattern 0); -0.0 is a stored value.
bool IsZeroPoint(DType t, const uint8_t* base, int64_t i, int32_t zp);
// Whether a WEIGHT element is absent from compressed weights: the compiler compares weights by
// value (const/attributes/sparsify.cpp `sparsify`, utils/sparsity.cpp `countValue`: the element
// == the zero point in its storage type), so for float weights -0.0 is a zero too and is dropped
// (decoded as +0.0). Integer weights: the zero point, as IsZeroPoint.
bool IsWeightZero(DType t, const uint8_t* base, int64_t i, int32_t zp);

// A named layer shape and the recipe to fill it with deterministic pseudo-random data.
struct LayerSpec {
  std::string name;
  NceKind kind = NceKind::kConv;
  int64_t h = 0, w = 0, c = 0, k = 0, ky = 1, kx = 1, stride = 1;  // k: conv only (else = c)
  EltwiseType eltwise = EltwiseType::kAdd;  // kind == kEltwise (input2 of the input's dtype)
  int64_t pad = -1;  // -1: "same" padding, (kernel - 1) / 2 on each side
  DType in_dtype = DType::kU8, w_dtype = DType::kI8, out_dtype = DType::kU8;
  double weight_sparsity = 0.0;  // fraction of weights equal to the weight zero point
  double input_sparsity = 0.0;   // fraction of activations equal to the input zero point
  bool leaky_relu = false;
  bool zero_points = true;  // integer types: random non-zero zero points
};

// Deterministic for a (spec, seed) pair on every platform. Requantisation is chosen so outputs
// spread over the output type's range.
StatusOr<NceLayer> GenerateLayer(const LayerSpec& spec, uint64_t seed);

// The project's layer table: ResNet-50 style layers and the seed's K=320 layer (names as in the
// benchmarks: r50_3x3_56, r50_3x3_28, r50_3x3_14, r50_1x1_56, k320_1x1_28).
const std::vector<LayerSpec>& StandardLayers();
StatusOr<LayerSpec> StandardLayer(const std::string& name);

}  // namespace dpuemu

#endif  // DPUEMU_HW_LAYER_H_
