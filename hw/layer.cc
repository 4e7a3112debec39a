#include "hw/layer.h"

#include <cmath>

#include "hw/pool.h"
#include "hw/rng.h"

namespace dpuemu {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

}  // namespace

const char* NceKindName(NceKind k) {
  switch (k) {
    case NceKind::kConv: return "conv";
    case NceKind::kDwConv: return "dwconv";
    case NceKind::kMaxPool: return "maxpool";
    case NceKind::kAvgPool: return "avgpool";
    case NceKind::kEltwise: return "eltwise";
  }
  return "?";
}

StatusOr<NceKind> ParseNceKind(const std::string& name) {
  for (NceKind k : {NceKind::kConv, NceKind::kDwConv, NceKind::kMaxPool, NceKind::kAvgPool,
                    NceKind::kEltwise}) {
    if (name == NceKindName(k)) return k;
  }
  return InvalidArgument("op = \"" + name +
                         "\": must be conv, dwconv, maxpool, avgpool or eltwise");
}

bool IsChannelwise(NceKind k) { return k != NceKind::kConv; }
bool HasWeights(NceKind k) { return k == NceKind::kConv || k == NceKind::kDwConv; }

const char* EltwiseTypeName(EltwiseType t) {
  switch (t) {
    case EltwiseType::kAdd: return "add";
    case EltwiseType::kSub: return "sub";
    case EltwiseType::kMult: return "mult";
  }
  return "?";
}

StatusOr<EltwiseType> ParseEltwiseType(const std::string& name) {
  for (EltwiseType t : {EltwiseType::kAdd, EltwiseType::kSub, EltwiseType::kMult}) {
    if (name == EltwiseTypeName(t)) return t;
  }
  return InvalidArgument("eltwise.type = \"" + name + "\": must be add, sub or mult");
}

int64_t NceOp::weight_taps() const {
  switch (kind) {
    case NceKind::kConv: return g.taps();
    case NceKind::kDwConv: return g.ky * g.kx;
    default: return 0;
  }
}

int64_t NceOp::taps_per_output() const {
  switch (kind) {
    case NceKind::kConv: return g.taps();
    case NceKind::kEltwise: return 2;
    default: return g.ky * g.kx;
  }
}

SparsitySupport SupportedSparsity(const NceOp& op, const Target& t) {
  SparsitySupport s;
  s.output = true;  // every NCE op; super-dense outputs (not NHWC) would lose it
  const std::string src = std::string("on ") + t.name + " (";
  switch (op.kind) {
    case NceKind::kConv:
      if (op.g.c < 16) {
        s.rule = src + "NCECompressConvolutionOp::sparsitySupport, nce_compress_convolution.cpp): "
                       "the compressed convolution (C < 16) supports sparse output only";
      } else {
        s.input = s.weights = true;
        s.rule = src + "NCEConvolutionOp::sparsitySupport, nce_convolution.cpp): "
                       "FULLY_SUPPORTED_SPARSITY_MODE (input, weights, output)";
      }
      break;
    case NceKind::kDwConv:
      s.rule = src + "NCEDepthConvolutionOp::sparsitySupport, nce_depth_convolution.cpp): "
                     "depthwise convolution supports sparse output only";
      break;
    case NceKind::kMaxPool:
      s.rule = src + "NCEMaxPoolOp::sparsitySupport, nce_max_pool.cpp): "
                     "max pooling supports sparse output only";
      break;
    case NceKind::kAvgPool:
      s.rule = src + "NCEAveragePoolOp::sparsitySupport, nce_average_pool.cpp): "
                     "average pooling supports sparse output only";
      break;
    case NceKind::kEltwise:
      s.rule = src + "NCEEltwiseOp::sparsitySupport, nce_eltwise.cpp): eltwise supports sparse "
                     "output only (input sparsity waits on SE alignment of both inputs, E#66913)";
      break;
  }
  return s;
}

bool IsIntegerWeights(DType t) {
  return t == DType::kU8 || t == DType::kI8 || t == DType::kI4 || t == DType::kU4;
}

bool IsIntegerPath(const NceOp& op) {
  return (op.in_dtype == DType::kU8 || op.in_dtype == DType::kI8) &&
         (!HasWeights(op.kind) || IsIntegerWeights(op.w_dtype));
}

bool IsMixedPrecision(const NceOp& op) {
  return HasWeights(op.kind) && IsFloat(op.in_dtype) && IsIntegerWeights(op.w_dtype);
}

StatusOr<float> FloatBiasWord(double bias, double scale) {
  const double q = bias == 0 ? 0.0 : bias / scale;
  if (!(std::fabs(q) <= std::numeric_limits<float>::max())) {
    return InvalidArgument("bias " + std::to_string(bias) + " in output units with scale " +
                           std::to_string(scale) + ": bias / scale is not a finite fp32, which "
                           "the weight table cannot hold");
  }
  return static_cast<float>(q);
}

Status CheckRange(const std::string& field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return InvalidArgument(field + " = " + Str(v) + ": must be in [" + Str(lo) + ", " + Str(hi) + "]");
  }
  return OkStatus();
}

Status CheckChannels(const std::string& field, int64_t v) {
  DPUEMU_RETURN_IF_ERROR(CheckRange(field, v, 16, kMaxChannels));
  if (v % 16 != 0) return InvalidArgument(field + " = " + Str(v) + ": must be a multiple of 16");
  return OkStatus();
}

bool IsCompressedChannels(int64_t c) { return c == 3 || c == kCompressedInputChannels; }
bool IsCompressedConv(const NceOp& op) {
  return op.kind == NceKind::kConv && IsCompressedChannels(op.g.c);
}

Status ValidateDims(const NceGeometry& g, NceKind kind) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("h (input height)", g.h, 1, kMaxSpatial));
  DPUEMU_RETURN_IF_ERROR(CheckRange("w (input width)", g.w, 1, kMaxSpatial));
  // C = 3 or 4: the compressed convolution (IsCompressedConv; ValidateOp refuses other kinds).
  if (!IsCompressedChannels(g.c)) DPUEMU_RETURN_IF_ERROR(CheckChannels("c (input channels)", g.c));
  DPUEMU_RETURN_IF_ERROR(CheckChannels("k (output channels)", g.k));
  DPUEMU_RETURN_IF_ERROR(CheckRange("ky (kernel height)", g.ky, 1, kMaxKernel));
  DPUEMU_RETURN_IF_ERROR(CheckRange("kx (kernel width)", g.kx, 1, kMaxKernel));
  // Bounded dimensions: these products cannot overflow.
  if (g.h * g.w * g.c > kMaxInputElements) {
    return InvalidArgument("input: h * w * c = " + Str(g.h * g.w * g.c) + " elements exceeds 2^31");
  }
  // Depthwise weights are [C, KY, KX, 1]; kinds without weights have none to bound.
  if (kind == NceKind::kConv && g.k * g.taps() > kMaxWeightElements) {
    return InvalidArgument("weights: k * ky * kx * c = " + Str(g.k * g.taps()) +
                           " elements exceeds 2^28");
  }
  if (kind == NceKind::kDwConv && g.c * g.ky * g.kx > kMaxWeightElements) {
    return InvalidArgument("weights: c * ky * kx = " + Str(g.c * g.ky * g.kx) +
                           " elements exceeds 2^28");
  }
  return OkStatus();
}

Status ValidateWindow(const NceGeometry& g) {
  DPUEMU_RETURN_IF_ERROR(CheckRange("ky (kernel height)", g.ky, 1, kMaxKernel));
  DPUEMU_RETURN_IF_ERROR(CheckRange("kx (kernel width)", g.kx, 1, kMaxKernel));
  DPUEMU_RETURN_IF_ERROR(CheckRange("stride_y", g.stride_y, 1, 8));
  DPUEMU_RETURN_IF_ERROR(CheckRange("stride_x", g.stride_x, 1, 8));
  DPUEMU_RETURN_IF_ERROR(CheckRange("pad_top", g.pad_top, 0, 255));
  DPUEMU_RETURN_IF_ERROR(CheckRange("pad_bottom", g.pad_bottom, 0, 255));
  DPUEMU_RETURN_IF_ERROR(CheckRange("pad_left", g.pad_left, 0, 255));
  DPUEMU_RETURN_IF_ERROR(CheckRange("pad_right", g.pad_right, 0, 255));
  return OkStatus();
}

namespace {

// What the eltwise adds to ValidateOp. The compiler lowers an eltwise to the DPU when both inputs
// are fp16, or both are uniformly quantized with the same storage type and signedness (zero points
// and scales may differ): VPU::isNCEEltwiseSupported, src/vpux_compiler/src/dialect/VPU/utils/
// eltwise_utils.cpp. The per-input multipliers are the 16-bit elop_scale_a / elop_scale_b
// register fields (vpu_nce_hw_37xx.h, vpu_nce_hw_40xx.h); the compiler only ever emits ADD
// (EltwiseToNCE<IE::AddOp>; PpeFactory::retrieveEltwisePPEAttribute throws for other ops), so
// sub's and mult's scaling are dpuemu's definitions (kernels/ref/eltwise_ref.cc).
Status ValidateEltwise(const NceOp& op) {
  const EltwiseParams& e = op.eltwise;
  const std::string rule = " (VPU::isNCEEltwiseSupported, VPU/utils/eltwise_utils.cpp)";
  if (op.in_dtype != DType::kU8 && op.in_dtype != DType::kI8 && op.in_dtype != DType::kFP16) {
    return InvalidArgument(std::string("input dtype = ") + DTypeName(op.in_dtype) +
                           ": eltwise runs on fp16, u8 or i8 inputs" + rule);
  }
  if (e.in2_dtype != op.in_dtype) {
    return InvalidArgument(std::string("input2 dtype = ") + DTypeName(e.in2_dtype) +
                           ": must equal the first input's dtype " + DTypeName(op.in_dtype) +
                           " (both fp16, or the same quantized storage type)" + rule);
  }
  if (IsFloat(op.in_dtype)) {
    if (e.in2_zp != 0) {
      return InvalidArgument("input2 zero_point = " + Str(e.in2_zp) +
                             ": float types have no zero point (must be 0)");
    }
    if (e.in1_mult != 1 || e.in2_mult != 1) {
      return InvalidArgument("eltwise.in1_mult / in2_mult = " + Str(e.in1_mult) + " / " +
                             Str(e.in2_mult) + ": the float eltwise has no input multipliers "
                             "(must be 1; the float PPE scale carries the scaling)");
    }
    return OkStatus();
  }
  DPUEMU_RETURN_IF_ERROR(CheckRange("input2 zero_point", e.in2_zp, DTypeMin(e.in2_dtype),
                                    DTypeMax(e.in2_dtype)));
  DPUEMU_RETURN_IF_ERROR(CheckRange("eltwise.in1_mult (elop_scale_a, 16 bits)", e.in1_mult, 0, 65535));
  DPUEMU_RETURN_IF_ERROR(CheckRange("eltwise.in2_mult (elop_scale_b, 16 bits)", e.in2_mult, 0, 65535));
  if (e.type == EltwiseType::kMult && (e.in1_mult != 1 || e.in2_mult != 1)) {
    return InvalidArgument("eltwise.in1_mult / in2_mult = " + Str(e.in1_mult) + " / " +
                           Str(e.in2_mult) + ": mult multiplies (x1 - zp1) * (x2 - zp2) as they "
                           "are (must be 1); the product's scale goes in the PPE mult / shift");
  }
  return OkStatus();
}

// The pools' rules (hw/pool.h has the compiler sources). maxpool: the output has the input's
// element type (NCEMaxPoolOp::inferReturnTypes, nce_max_pool.cpp) and the stored max is written as
// is: no zero point is added (configureIntPPE skips MAXPOOL), so out_zero_point must be the
// input's; ReLU / LeakyReLU do not fuse into it (isSupportedHWPostOp, NPU37XX/dialect/VPU/IR/
// layer_post_ops.cpp); the float PPE is bypassed (configurePPE, setupTaskTypeDPUMaxPool), so a
// float max pool has no clamp. avgpool: the integer PPE scale is the pool's (no i32 output).
Status ValidatePoolOp(const NceOp& op) {
  const bool int_in = op.in_dtype == DType::kU8 || op.in_dtype == DType::kI8;
  if (op.kind == NceKind::kMaxPool) {
    if (op.out_dtype != op.in_dtype) {
      return InvalidArgument(std::string("output dtype = ") + DTypeName(op.out_dtype) +
                             ": maxpool writes the input's type (" + DTypeName(op.in_dtype) +
                             "; NCEMaxPoolOp::inferReturnTypes)");
    }
    if (op.ppe.leaky_relu) {
      return InvalidArgument("ppe.leaky_relu: maxpool takes no ReLU / LeakyReLU (the compiler does "
                             "not fuse them into MaxPool, layer_post_ops.cpp)");
    }
    if (int_in && op.ppe.out_zp != op.in_zp) {
      return InvalidArgument("ppe.out_zero_point = " + Str(op.ppe.out_zp) + ": maxpool passes the "
                             "stored max through with no zero point added (configureIntPPE), so it "
                             "must equal the input zero_point " + Str(op.in_zp));
    }
    if (!int_in && (op.ppe.clamp_lo != -std::numeric_limits<double>::infinity() ||
                    op.ppe.clamp_hi != std::numeric_limits<double>::infinity())) {
      return InvalidArgument("ppe.clamp: a float maxpool bypasses the float PPE (configurePPE, "
                             "ppe_fp_bypass): the clamp must be unbounded");
    }
  }
  if (op.kind == NceKind::kAvgPool && int_in && op.out_dtype == DType::kI32) {
    return InvalidArgument("output dtype = i32: avgpool's average is the PPE's scale; i32 (acc + "
                           "bias, no PPE) would be the window sum");
  }
  return OkStatus();
}

}  // namespace

Status ValidateOp(const NceOp& op) {
  const NceGeometry& g = op.g;
  DPUEMU_RETURN_IF_ERROR(ValidateDims(g, op.kind));
  DPUEMU_RETURN_IF_ERROR(ValidateWindow(g));
  const std::string kind = NceKindName(op.kind);
  if (op.kind != NceKind::kConv && IsCompressedChannels(g.c)) {
    DPUEMU_RETURN_IF_ERROR(CheckChannels("c (input channels) of " + kind +
                                             " (C = 3 or 4 is the compressed convolution's, conv only)",
                                         g.c));
  }
  if (IsChannelwise(op.kind) && g.k != g.c) {
    return InvalidArgument("k (output channels) = " + Str(g.k) + ": " + kind +
                           " computes one output channel per input channel, so k must equal c = " +
                           Str(g.c));
  }
  if (op.kind == NceKind::kEltwise &&
      (g.ky != 1 || g.kx != 1 || g.stride_y != 1 || g.stride_x != 1 || g.pad_top != 0 ||
       g.pad_bottom != 0 || g.pad_left != 0 || g.pad_right != 0)) {
    return InvalidArgument("eltwise: combines two inputs pixel by pixel: kernel must be 1x1, "
                           "stride 1 and pads 0");
  }
  if (op.kind == NceKind::kEltwise) DPUEMU_RETURN_IF_ERROR(ValidateEltwise(op));
  DPUEMU_RETURN_IF_ERROR(ValidatePoolOp(op));
  if (g.h + g.pad_top + g.pad_bottom < g.ky) {
    return InvalidArgument("ky (kernel height) = " + Str(g.ky) +
                           ": larger than the padded input height " +
                           Str(g.h + g.pad_top + g.pad_bottom));
  }
  if (g.w + g.pad_left + g.pad_right < g.kx) {
    return InvalidArgument("kx (kernel width) = " + Str(g.kx) +
                           ": larger than the padded input width " +
                           Str(g.w + g.pad_left + g.pad_right));
  }

  const bool int_in = op.in_dtype == DType::kU8 || op.in_dtype == DType::kI8;
  const bool int_w = IsIntegerWeights(op.w_dtype);
  if (!int_in && op.in_dtype != DType::kFP16 && op.in_dtype != DType::kBF16) {
    return InvalidArgument(std::string("input dtype = ") + DTypeName(op.in_dtype) +
                           ": must be u8, i8, fp16 or bf16");
  }
  // Float activations take weights of their own type, or integer weights (weight-only
  // quantisation, the compiler's BiasFuncForI8Weights and I4WeightsConvToNCE LIT tests in
  // tests/lit/NPU/conversion/passes/IE2VPU/convert_IE_to_VPU_NCE_37XX_40XX.mlir, both targets).
  if (HasWeights(op.kind) && (int_in ? !int_w : !(int_w || op.w_dtype == op.in_dtype))) {
    return InvalidArgument(std::string("weights dtype = ") + DTypeName(op.w_dtype) +
                           ": must be i8, u8, i4 or u4 with integer input; the input's float "
                           "type, i8, u8, i4 or u4 with float input (input is " +
                           DTypeName(op.in_dtype) + ")");
  }
  if (int_in) {
    if (op.out_dtype != DType::kU8 && op.out_dtype != DType::kI8 && op.out_dtype != DType::kI32) {
      return InvalidArgument(std::string("output dtype = ") + DTypeName(op.out_dtype) +
                             ": integer input needs an output of u8, i8 or i32");
    }
    DPUEMU_RETURN_IF_ERROR(CheckRange("input zero_point", op.in_zp, DTypeMin(op.in_dtype),
                                      DTypeMax(op.in_dtype)));
    if (HasWeights(op.kind)) {
      DPUEMU_RETURN_IF_ERROR(CheckRange("weights zero_point", op.w_zp, DTypeMin(op.w_dtype),
                                        DTypeMax(op.w_dtype)));
    }
    if (op.out_dtype == DType::kI32) {
      if (op.ppe.out_zp != 0 || op.ppe.leaky_relu) {
        return InvalidArgument("ppe: output dtype i32 is acc + bias with no PPE; out_zero_point "
                               "must be 0 and leaky_relu off");
      }
      // The clamp would be silently ignored.
      if (op.ppe.clamp_lo != -std::numeric_limits<double>::infinity() ||
          op.ppe.clamp_hi != std::numeric_limits<double>::infinity()) {
        return InvalidArgument("ppe.clamp: output dtype i32 is acc + bias with no PPE; the clamp "
                               "must be unbounded");
      }
    } else {
      DPUEMU_RETURN_IF_ERROR(CheckRange("ppe.out_zero_point", op.ppe.out_zp,
                                        DTypeMin(op.out_dtype), DTypeMax(op.out_dtype)));
      // Clamping to [lo, hi] and to the type's range needs the two to overlap; otherwise the
      // clamped value lies outside the type and would wrap when stored.
      if (op.ppe.clamp_hi < DTypeMin(op.out_dtype) || op.ppe.clamp_lo > DTypeMax(op.out_dtype)) {
        return InvalidArgument("ppe.clamp = [" + std::to_string(op.ppe.clamp_lo) + ", " +
                               std::to_string(op.ppe.clamp_hi) + "]: must overlap the " +
                               DTypeName(op.out_dtype) + " range [" + Str(DTypeMin(op.out_dtype)) +
                               ", " + Str(DTypeMax(op.out_dtype)) + "]");
      }
    }
    DPUEMU_RETURN_IF_ERROR(CheckRange("ppe.leaky_relu.mult", op.ppe.lrelu_mult, 0, 2047));
    DPUEMU_RETURN_IF_ERROR(CheckRange("ppe.leaky_relu.shift", op.ppe.lrelu_shift, 0, 31));
    for (double v : {op.ppe.clamp_lo, op.ppe.clamp_hi}) {
      if (!std::isinf(v) && v != std::floor(v)) {
        return InvalidArgument("ppe.clamp = " + std::to_string(v) +
                               ": integer outputs need whole-number clamp bounds");
      }
    }
  } else {
    if (!IsFloat(op.out_dtype)) {
      return InvalidArgument(std::string("output dtype = ") + DTypeName(op.out_dtype) +
                             ": float input needs an output of fp16, bf16 or fp32");
    }
    if (op.in_zp != 0 || op.ppe.out_zp != 0 || (!int_w && op.w_zp != 0)) {
      return InvalidArgument("zero_point: float types have no zero point (must be 0)");
    }
    if (int_w) {
      DPUEMU_RETURN_IF_ERROR(CheckRange("weights zero_point", op.w_zp, DTypeMin(op.w_dtype),
                                        DTypeMax(op.w_dtype)));
    }
    if (op.ppe.leaky_relu && !std::isfinite(op.ppe.lrelu_alpha)) {
      return InvalidArgument("ppe.leaky_relu.alpha = " + std::to_string(op.ppe.lrelu_alpha) +
                             ": must be finite");
    }
  }
  if (std::isnan(op.ppe.clamp_lo) || std::isnan(op.ppe.clamp_hi) ||
      op.ppe.clamp_lo > op.ppe.clamp_hi) {
    return InvalidArgument("ppe.clamp: needs lo <= hi (got [" + std::to_string(op.ppe.clamp_lo) +
                           ", " + std::to_string(op.ppe.clamp_hi) + "])");
  }
  return OkStatus();
}

Status ValidateInvocation(const NceGeometry& g) {
  const std::string limit = Str(kMaxInvocationChannels) +
                            " (VPU_DIMENSION_LIMIT: one DPU invocation; the runtime splits K)";
  if (g.c > kMaxInvocationChannels) {
    return InvalidArgument("c (input channels) = " + Str(g.c) + ": must be at most " + limit);
  }
  if (g.k > kMaxInvocationChannels) {
    return InvalidArgument("k (output channels) = " + Str(g.k) + ": must be at most " + limit);
  }
  const struct {
    const char* name;
    int64_t pad, kernel;
    const char* kname;
  } pads[] = {{"pad_top", g.pad_top, g.ky, "ky"},
              {"pad_bottom", g.pad_bottom, g.ky, "ky"},
              {"pad_left", g.pad_left, g.kx, "kx"},
              {"pad_right", g.pad_right, g.kx, "kx"}};
  for (const auto& p : pads) {
    if (p.pad > p.kernel / 2) {
      return InvalidArgument(std::string(p.name) + " = " + Str(p.pad) + ": one DPU invocation " +
                             "pads at most " + p.kname + " / 2 = " + Str(p.kernel / 2) +
                             " per side (verifyPads, nce_invariant.cpp); the runtime reads the " +
                             "excess through an SE pad gather (LowerLayerForDpu)");
    }
  }
  return OkStatus();
}

Status ValidateQuant(const NceOp& op, const ChannelQuant& q) {
  const size_t k = static_cast<size_t>(op.g.k);
  if (IsIntegerPath(op)) {
    if (q.mult.size() != k || q.shift.size() != k || q.bias.size() != k) {
      return InvalidArgument("quant: mult, shift and bias need one entry per output channel (k = " +
                             Str(op.g.k) + "), got " + Str(q.mult.size()) + ", " +
                             Str(q.shift.size()) + ", " + Str(q.bias.size()));
    }
    for (size_t i = 0; i < k; ++i) {
      // The field names are built only for a value out of range (this runs per slice and channel).
      if (q.mult[i] < 0 || q.mult[i] > 65535) {
        return CheckRange("quant.mult[" + Str(i) + "]", q.mult[i], 0, 65535);
      }
      if (q.shift[i] < 0 || q.shift[i] > 63) return CheckRange("quant.shift[" + Str(i) + "]", q.shift[i], 0, 63);
    }
  } else {
    if (q.scale.size() != k || q.fbias.size() != k) {
      return InvalidArgument("quant: scale and bias need one entry per output channel (k = " +
                             Str(op.g.k) + "), got " + Str(q.scale.size()) + ", " +
                             Str(q.fbias.size()));
    }
  }
  // The pools have no weight table: one PPE register set for every channel, so every channel's
  // entry must be the same; the compiler programs bias 0 (configureIntPPE / configureFpPPE) and
  // for maxpool mult 1, shift 0 and float scale 1 (hw/pool.h).
  if (op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool) {
    const bool integer = IsIntegerPath(op);
    const bool max = op.kind == NceKind::kMaxPool;
    const std::string kind = NceKindName(op.kind);
    for (size_t i = 0; i < k; ++i) {
      const std::string at = "[" + Str(i) + "]";
      if (integer && (q.bias[i] != 0 || q.mult[i] != q.mult[0] || q.shift[i] != q.shift[0] ||
                      (max && (q.mult[i] != 1 || q.shift[i] != 0)))) {
        return InvalidArgument("quant" + at + ": " + kind + " has one PPE register set (no weight "
                               "table): bias 0" + (max ? ", mult 1, shift 0" : ", every channel "
                               "the same mult and shift (AvgPoolIntScale)") + " (got mult " +
                               Str(q.mult[i]) + ", shift " + Str(q.shift[i]) + ", bias " +
                               Str(q.bias[i]) + ")");
      }
      if (!integer && (q.fbias[i] != 0 || q.scale[i] != q.scale[0] || (max && q.scale[i] != 1) ||
                       !(q.scale[i] > 0) || !std::isfinite(q.scale[i]))) {
        return InvalidArgument("quant" + at + ": " + kind + " has one PPE register set (no weight "
                               "table): bias 0" + (max ? ", scale 1" : ", every channel the same "
                               "positive finite scale (AvgPoolFloatScale)") + " (got scale " +
                               std::to_string(q.scale[i]) + ", bias " + std::to_string(q.fbias[i]) +
                               ")");
      }
    }
  }
  return OkStatus();
}

Status ValidateLayer(const NceLayer& layer) {
  DPUEMU_RETURN_IF_ERROR(ValidateOp(layer.op));
  DPUEMU_RETURN_IF_ERROR(ValidateQuant(layer.op, layer.quant));
  const NceGeometry& g = layer.op.g;
  auto check = [](const char* name, const Tensor& t, DType dtype,
                  const std::vector<int64_t>& shape) -> Status {
    Tensor expect;
    expect.shape = shape;
    if (t.dtype != dtype || t.shape != shape || !HasExactBytes(t)) {
      return InvalidArgument(std::string(name) + ": expected " + DTypeName(dtype) + " " +
                             expect.ShapeString() + ", got " + DTypeName(t.dtype) + " " +
                             t.ShapeString() + " with " + Str(t.bytes.size()) + " bytes");
    }
    return OkStatus();
  };
  DPUEMU_RETURN_IF_ERROR(check("input", layer.input, layer.op.in_dtype, {g.h, g.w, g.c}));
  switch (layer.op.kind) {
    case NceKind::kConv:
      DPUEMU_RETURN_IF_ERROR(
          check("weights", layer.weights, layer.op.w_dtype, {g.k, g.ky, g.kx, g.c}));
      break;
    case NceKind::kDwConv:  // the compiler's depthwise filter [C, 1, KY, KX] in OYXI order
      DPUEMU_RETURN_IF_ERROR(check("weights", layer.weights, layer.op.w_dtype, {g.c, g.ky, g.kx, 1}));
      break;
    default:
      if (!layer.weights.shape.empty() || !layer.weights.bytes.empty()) {
        return InvalidArgument(std::string("weights: ") + NceKindName(layer.op.kind) +
                               " has no weights (got " + layer.weights.ShapeString() + ")");
      }
  }
  if (layer.op.kind == NceKind::kEltwise) {
    DPUEMU_RETURN_IF_ERROR(check("input2", layer.input2, layer.op.eltwise.in2_dtype, {g.h, g.w, g.c}));
  } else if (!layer.input2.bytes.empty()) {
    return InvalidArgument(std::string("input2: only eltwise has a second input (op is ") +
                           NceKindName(layer.op.kind) + ")");
  }
  // A host tensor holds one int4 per byte: each must be a value of the type.
  if (IsSubByte(layer.op.w_dtype)) {
    const DType t = layer.op.w_dtype;
    for (int64_t i = 0; i < layer.weights.numel(); ++i) {
      const int32_t v = LoadInt(t, layer.weights.bytes.data(), i);
      if (v < DTypeMin(t) || v > DTypeMax(t)) {
        return InvalidArgument("weights[" + Str(i) + "] = " + Str(v) + ": not a " + DTypeName(t) +
                               " value [" + Str(DTypeMin(t)) + ", " + Str(DTypeMax(t)) + "]");
      }
    }
  }
  return OkStatus();
}

bool IsZeroPoint(DType t, const uint8_t* base, int64_t i, int32_t zp) {
  switch (DTypeBytes(t)) {
    case 1: return static_cast<uint8_t>(base[i]) == static_cast<uint8_t>(zp);
    case 2: return base[2 * i] == 0 && base[2 * i + 1] == 0;
    default: {
      // 4-byte types: i32 compares with the zero point, fp32 with +0.0 (zp is 0).
      int32_t v;
      std::memcpy(&v, base + 4 * i, 4);
      return v == zp;
    }
  }
}

bool IsWeightZero(DType t, const uint8_t* base, int64_t i, int32_t zp) {
  if (!IsFloat(t)) return IsZeroPoint(t, base, i, zp);
  if (DTypeBytes(t) == 2) return base[2 * i] == 0 && (base[2 * i + 1] & 0x7F) == 0;
  uint32_t v;
  std::memcpy(&v, base + 4 * i, 4);
  return (v & 0x7FFFFFFFu) == 0;
}

namespace {

// Fills `t` with values of which a fraction `sparsity` equals the zero point.
void FillTensor(Tensor& t, int32_t zp, double sparsity, Rng& rng) {
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    const bool zero = rng.Bernoulli(sparsity);
    if (IsFloat(t.dtype)) {
      // Small values with few mantissa bits keep products exact and sums well conditioned.
      float v = zero ? 0.0f : static_cast<float>(rng.Int(-64, 64)) / 32.0f;
      if (!zero && v == 0.0f) v = 1.0f / 32;
      StoreFloat(t.dtype, t.bytes.data(), i, v);
    } else {
      int32_t v = zp;
      while (!zero && v == zp) v = static_cast<int32_t>(rng.Int(DTypeMin(t.dtype), DTypeMax(t.dtype)));
      StoreInt(t.dtype, t.bytes.data(), i, v);
    }
  }
}

// The pools' one PPE register set (hw/pool.h): maxpool the identity; avgpool the compiler's scale
// for a random in_scale / out_scale ratio near 1 (integer) or 1 / out_scale (float, the output
// about as large as the input).
StatusOr<NceLayer> GeneratePoolQuant(NceLayer& layer, Rng& rng) {
  const NceOp& op = layer.op;
  const size_t k = static_cast<size_t>(op.g.k);
  ChannelQuant& q = layer.quant;
  if (IsIntegerPath(op)) {
    PpeIntScale s;
    if (op.kind == NceKind::kAvgPool) {
      DPUEMU_ASSIGN_OR_RETURN(s, AvgPoolIntScale(0.5 + rng.Uniform(), op.g.ky, op.g.kx));
    }
    q.mult.assign(k, s.mult);
    q.shift.assign(k, s.shift);
    q.bias.assign(k, 0);
  } else {
    float scale = 1.0f;
    if (op.kind == NceKind::kAvgPool) {
      DPUEMU_ASSIGN_OR_RETURN(scale, AvgPoolFloatScale(0.5 + rng.Uniform(), op.g.ky, op.g.kx));
    }
    q.scale.assign(k, scale);
    q.fbias.assign(k, 0.0f);
  }
  return layer;
}

}  // namespace

StatusOr<NceLayer> GenerateLayer(const LayerSpec& spec, uint64_t seed) {
  if (!(spec.weight_sparsity >= 0 && spec.weight_sparsity <= 1) ||
      !(spec.input_sparsity >= 0 && spec.input_sparsity <= 1)) {
    return InvalidArgument("sparsity: must be in [0, 1]");
  }
  Rng rng(seed);
  NceLayer layer;
  layer.name = spec.name;
  NceOp& op = layer.op;
  NceGeometry& g = op.g;
  op.kind = spec.kind;
  g.h = spec.h; g.w = spec.w; g.c = spec.c; g.ky = spec.ky; g.kx = spec.kx;
  g.k = IsChannelwise(spec.kind) ? spec.c : spec.k;
  g.stride_y = g.stride_x = spec.stride;
  const int64_t py = spec.pad < 0 ? (spec.ky - 1) / 2 : spec.pad;
  const int64_t px = spec.pad < 0 ? (spec.kx - 1) / 2 : spec.pad;
  g.pad_top = g.pad_bottom = py;
  g.pad_left = g.pad_right = px;
  op.in_dtype = spec.in_dtype;
  op.w_dtype = spec.w_dtype;
  op.out_dtype = spec.out_dtype;
  const bool integer = !IsFloat(spec.in_dtype);
  const bool int_weights = !IsFloat(spec.w_dtype);
  // Weight zero points near the middle of the type: unsigned types are offset by half their range.
  const bool sub_byte = IsSubByte(spec.w_dtype);
  const auto weight_zp = [&](bool random) {
    const int32_t spread = sub_byte ? 2 : 8;
    const int32_t mid = spec.w_dtype == DType::kU8 ? 128 : spec.w_dtype == DType::kU4 ? 8 : 0;
    return (random ? static_cast<int32_t>(rng.Int(-spread, spread)) : 0) + mid;
  };
  if (!integer && int_weights) {  // weight-only quantisation: only the weights have a zero point
    op.w_zp = weight_zp(spec.zero_points);
  } else if (integer && spec.zero_points) {
    op.in_zp = static_cast<int32_t>(rng.Int(DTypeMin(spec.in_dtype) / 2 + 64, DTypeMax(spec.in_dtype) / 2));
    op.w_zp = weight_zp(true);
    if (spec.out_dtype != DType::kI32) {
      op.ppe.out_zp = static_cast<int32_t>(
          (DTypeMin(spec.out_dtype) + DTypeMax(spec.out_dtype)) / 2 + rng.Int(-20, 20));
    }
  } else if (integer) {
    op.w_zp = weight_zp(false);
  }
  if (integer && spec.leaky_relu && spec.out_dtype != DType::kI32) {
    op.ppe.leaky_relu = true;
    op.ppe.lrelu_mult = static_cast<int32_t>(rng.Int(1, 2047));
    op.ppe.lrelu_shift = static_cast<int32_t>(rng.Int(0, 11));
  } else if (!integer && spec.leaky_relu) {
    op.ppe.leaky_relu = true;
    op.ppe.lrelu_alpha = static_cast<float>(rng.Int(1, 255)) / 256.0f;
  }

  if (spec.kind == NceKind::kEltwise) {
    op.eltwise.type = spec.eltwise;
    op.eltwise.in2_dtype = spec.in_dtype;
    if (integer && spec.zero_points) op.eltwise.in2_zp = op.in_zp + static_cast<int32_t>(rng.Int(-8, 8));
    // Integer add / sub: per-input multipliers of the size EltwiseQuantFromScales gives.
    if (integer && spec.eltwise != EltwiseType::kMult) {
      op.eltwise.in1_mult = static_cast<int32_t>(rng.Int(4096, 65535));
      op.eltwise.in2_mult = static_cast<int32_t>(rng.Int(4096, 65535));
    }
  }
  if (spec.kind == NceKind::kMaxPool) {  // the stored max passes through (ValidatePoolOp)
    op.out_dtype = spec.in_dtype;
    op.ppe.out_zp = op.in_zp;
    op.ppe.leaky_relu = false;
  }
  if (!HasWeights(spec.kind)) op.w_zp = 0;
  DPUEMU_RETURN_IF_ERROR(ValidateOp(op));

  layer.input = Tensor(spec.in_dtype, {g.h, g.w, g.c});
  FillTensor(layer.input, op.in_zp, spec.input_sparsity, rng);
  if (spec.kind == NceKind::kConv) layer.weights = Tensor(spec.w_dtype, {g.k, g.ky, g.kx, g.c});
  if (spec.kind == NceKind::kDwConv) layer.weights = Tensor(spec.w_dtype, {g.c, g.ky, g.kx, 1});
  if (HasWeights(spec.kind)) FillTensor(layer.weights, op.w_zp, spec.weight_sparsity, rng);
  if (spec.kind == NceKind::kEltwise) {
    layer.input2 = Tensor(op.eltwise.in2_dtype, {g.h, g.w, g.c});
    FillTensor(layer.input2, op.eltwise.in2_zp, spec.input_sparsity, rng);
  }

  // Requantisation that maps a typical accumulator (about sqrt(taps) * 74 * 74 for uniform 8-bit
  // values) onto about a quarter of the output range.
  const double density = std::max(
      0.05, (HasWeights(spec.kind) ? 1 - spec.weight_sparsity : 1.0) * (1 - spec.input_sparsity));
  // Float activations are about +-1 (FillTensor); integer weights about +-74 (+-4.6 for int4) from
  // their zero point.
  const double wmag = sub_byte ? 4.6 : 74.0;
  double acc_scale = std::sqrt(double(op.taps_per_output()) * density) *
                     (integer ? 74.0 * wmag : int_weights ? 0.6 * wmag : 0.4);
  if (spec.kind == NceKind::kEltwise && integer && spec.eltwise != EltwiseType::kMult) {
    acc_scale = 74.0 * std::hypot(op.eltwise.in1_mult, op.eltwise.in2_mult);
  }
  if (spec.kind == NceKind::kMaxPool || spec.kind == NceKind::kAvgPool) {
    return GeneratePoolQuant(layer, rng);
  }
  const int64_t k = g.k;
  for (int64_t i = 0; i < k; ++i) {
    if (integer) {
      const double target = 64.0 / acc_scale * (0.5 + rng.Uniform());
      const int32_t mult = static_cast<int32_t>(rng.Int(16384, 65535));
      const int32_t shift = static_cast<int32_t>(
          std::min(63.0, std::max(0.0, std::round(std::log2(mult / target)))));
      layer.quant.mult.push_back(mult);
      layer.quant.shift.push_back(shift);
      layer.quant.bias.push_back(static_cast<int32_t>(rng.Int(-4, 4) * acc_scale / 8));
    } else {
      // The bias is drawn in output units and held in accumulator units, as the compiler does.
      const float scale = static_cast<float>((0.5 + rng.Uniform()) / acc_scale);
      layer.quant.scale.push_back(scale);
      layer.quant.fbias.push_back(static_cast<float>(rng.Int(-16, 16) / 16.0 / double{scale}));
    }
  }
  if (!HasWeights(spec.kind)) {
    // No weight table: one set of PPE registers requantises every channel, with no bias.
    ChannelQuant& q = layer.quant;
    for (auto* v : {&q.mult, &q.shift}) v->assign(v->size(), v->empty() ? 0 : v->front());
    q.scale.assign(q.scale.size(), q.scale.empty() ? 0.0f : q.scale.front());
    q.bias.assign(q.bias.size(), 0);
    q.fbias.assign(q.fbias.size(), 0.0f);
  }
  return layer;
}

const std::vector<LayerSpec>& StandardLayers() {
  static const std::vector<LayerSpec> layers = [] {
    auto make = [](const char* name, int64_t hw, int64_t c, int64_t k, int64_t kernel) {
      LayerSpec s;
      s.name = name;
      s.h = s.w = hw;
      s.c = c;
      s.k = k;
      s.ky = s.kx = kernel;
      return s;
    };
    return std::vector<LayerSpec>{
        make("r50_3x3_56", 56, 64, 64, 3),    make("r50_3x3_28", 28, 128, 128, 3),
        make("r50_3x3_14", 14, 256, 256, 3),  make("r50_1x1_56", 56, 64, 256, 1),
        make("k320_1x1_28", 28, 256, 320, 1),
    };
  }();
  return layers;
}

StatusOr<LayerSpec> StandardLayer(const std::string& name) {
  for (const LayerSpec& s : StandardLayers()) {
    if (s.name == name) return s;
  }
  return NotFound("layer: no standard layer named '" + name + "'");
}

}  // namespace dpuemu
