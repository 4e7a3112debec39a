#include "hw/dpu_task.h"

#include <cmath>
#include <cstring>
#include <string>

namespace dpuemu {
namespace {
std::string Str(int64_t v) { return std::to_string(v); }
}  // namespace

Status LowerPpeRegisters(const NceLayer& layer, DpuTask& task);
Status LowerDwWeights(const NceLayer& layer, DpuTask& task);

ActivationView DpuTask::input_view() const {
  ActivationView v;
  for (const auto& t : input_tiles) v.tiles.emplace_back(t);
  v.map = input_map;
  v.se_table = se_table;
  v.se_size = input_se_size;
  return v;
}

int64_t DefaultSeSize(const Target& t, int64_t channels, DType in_dtype) {
  for (int64_t s = std::min<int64_t>(channels, t.se_size_max); s >= 16; s -= 16) {
    if (channels % s == 0 && CheckSeSize(t, s, "se_size").ok() &&
        !IsSeErratum(in_dtype, channels, s)) {
      return s;
    }
  }
  return 16;
}

// ---- Eltwise (kept apart from the pools' share of LowerPpeRegisters) ----

// The eltwise's PPE registers: the layer's per-channel quant must hold one value for all channels
// (the compiler's PPE attribute of an NCEEltwise has one quant_mult / quant_shift,
// PpeFactory::retrieveEltwisePPEAttribute; there is no weight table).
Status LowerEltwisePpe(const NceLayer& layer, DpuTask& task) {
  const ChannelQuant& q = layer.quant;
  DpuTask::PpeRegisters& r = task.ppe_regs;
  const auto uniform = [&](const auto& v, const char* field) -> Status {
    for (size_t k = 1; k < v.size(); ++k) {
      if (!(v[k] == v[0])) {
        return InvalidArgument(std::string("quant.") + field + "[" + Str(k) + "]: differs from " +
                               field + "[0]; eltwise has one set of PPE registers for all channels");
      }
    }
    return OkStatus();
  };
  if (!IsFloat(layer.op.in_dtype)) {
    DPUEMU_RETURN_IF_ERROR(uniform(q.mult, "mult"));
    DPUEMU_RETURN_IF_ERROR(uniform(q.shift, "shift"));
    DPUEMU_RETURN_IF_ERROR(uniform(q.bias, "bias"));
    r.mult = q.mult.at(0);
    r.shift = q.shift.at(0);
    r.bias = q.bias.at(0);
  } else {
    DPUEMU_RETURN_IF_ERROR(uniform(q.scale, "scale"));
    DPUEMU_RETURN_IF_ERROR(uniform(q.fbias, "fbias"));
    r.scale = q.scale.at(0);
    r.fbias = q.fbias.at(0);
  }
  return OkStatus();
}

// The eltwise's registers in a task: quant mult 16 bits and shift 6 bits (the limits
// EltwiseQuantizationApproximation keeps to, utils/quantization.cpp).
Status ValidateEltwiseRegisters(const DpuTask& task) {
  const DpuTask::PpeRegisters& r = task.ppe_regs;
  if (!IsFloat(task.op.in_dtype)) {
    DPUEMU_RETURN_IF_ERROR(CheckRange("ppe_regs.mult", r.mult, 0, 65535));
    DPUEMU_RETURN_IF_ERROR(CheckRange("ppe_regs.shift", r.shift, 0, 63));
  }
  return OkStatus();
}

// The PPE registers of a kind without a weight table: one requantisation for every channel.
// Pools (hw/pool.h): ValidateQuant has checked that every channel's entry is the same and is what
// the compiler programs (maxpool the identity, avgpool its scale with bias 0); the registers are
// channel 0's. NPU37XX and NPU40XX program pools alike (setupTaskTypeDPUMaxPool /
// setupTaskTypeDPUAvgPool, expand_dpu_config_invariant_ppe.cpp) and neither has a maxpool weight
// table (arch37xx::MaxPoolToNCE creates NCEMaxPoolOp with weightsTable = nullptr).
Status LowerPpeRegisters(const NceLayer& layer, DpuTask& task) {
  const NceOp& op = layer.op;
  if (op.kind == NceKind::kEltwise) return LowerEltwisePpe(layer, task);
  if (op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool) {
    DpuTask::PpeRegisters r;
    if (IsIntegerPath(op)) {
      r.mult = layer.quant.mult.at(0);
      r.shift = layer.quant.shift.at(0);
      r.bias = 0;
    } else {
      r.scale = layer.quant.scale.at(0);
      r.fbias = 0.0f;
    }
    task.ppe_regs = r;
    return OkStatus();
  }
  return Internal(std::string("LowerPpeRegisters: ") + NceKindName(op.kind) +
                  " has a weight table, not PPE registers");
}

// Depthwise weights in the compiler's layout (PackDwWeights: each channel's KY*KX taps padded to
// a 16-element set, alignDepthWiseWeightsTensor) and the weight table the compiler builds for
// them (DepthConvToNCE in NPU37XX/conversion/passes/IE2VPU/convert_IE_to_VPU_NCE.cpp:
// createWeightsTableData over the aligned filter, one entry per channel; weight pointers step by
// one set, getWeightPtrStep; sparsity pointers dense). Dense only: the weights are never sparse
// (NCEDepthConvolutionOp::sparsitySupport), which LowerLayer checked.
Status LowerDwWeights(const NceLayer& layer, DpuTask& task) {
  const NceOp& op = layer.op;
  task.weights = PackDwWeights(layer.weights, op.w_zp);
  const int64_t set = DwWeightSetBytes(op.w_dtype, op.weight_taps());
  std::vector<uint32_t> wptr;
  for (int64_t c = 0; c < op.g.c; ++c) wptr.push_back(static_cast<uint32_t>(c * set));
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, MakeWeightTable(op, layer.quant, wptr, {}));
  task.weight_table = EncodeWeightTable(table);
  return OkStatus();
}

namespace {

// The compressed convolution with C = 3 as the DPU runs it: C padded to 4 (the compiler expands
// the input to VPU_COMPRESSED_INPUT_CHANNEL_NUM and pads the weights' IC to 4 when the input is
// compressed, VPUIP/transforms/passes/conv_weights_compression.cpp: cm_sp_pattern then covers 4
// channels). The added input channel holds the input zero point and the added weights the
// weights' zero point, so it adds exactly 0 to every accumulator.
NceLayer PadToCompressedChannels(const NceLayer& layer) {
  const NceGeometry& g = layer.op.g;
  const int64_t c = g.c, c4 = kCompressedInputChannels;
  NceLayer p = layer;
  p.op.g.c = c4;
  const int64_t ieb = DTypeBytes(layer.op.in_dtype);
  p.input = Tensor(layer.op.in_dtype, {g.h, g.w, c4});
  for (int64_t px = 0; px < g.h * g.w; ++px) {
    std::memcpy(p.input.bytes.data() + px * c4 * ieb, layer.input.bytes.data() + px * c * ieb,
                static_cast<size_t>(c * ieb));
    for (int64_t i = c; i < c4; ++i) {
      if (IsInteger(layer.op.in_dtype)) StoreInt(layer.op.in_dtype, p.input.bytes.data(), px * c4 + i, layer.op.in_zp);
    }
  }
  const int64_t web = DTypeBytes(layer.op.w_dtype);  // conv weights of C = 3: never sub-byte
  p.weights = Tensor(layer.op.w_dtype, {g.k, g.ky, g.kx, c4});
  for (int64_t tap = 0; tap < g.k * g.ky * g.kx; ++tap) {
    std::memcpy(p.weights.bytes.data() + tap * c4 * web, layer.weights.bytes.data() + tap * c * web,
                static_cast<size_t>(c * web));
    for (int64_t i = c; i < c4; ++i) {
      if (IsInteger(layer.op.w_dtype)) StoreInt(layer.op.w_dtype, p.weights.bytes.data(), tap * c4 + i, layer.op.w_zp);
    }
  }
  return p;
}

}  // namespace

StatusOr<DpuTask> LowerLayer(const NceLayer& layer, const StorageOptions& opts, const Target& t) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  DPUEMU_RETURN_IF_ERROR(ValidateInvocation(layer.op.g));
  if (IsCompressedConv(layer.op) && layer.op.g.c < kCompressedInputChannels) {
    if (IsSubByte(layer.op.w_dtype)) {
      return InvalidArgument(std::string("weights dtype = ") + DTypeName(layer.op.w_dtype) +
                             ": the compressed convolution with C = 3 takes 8- or 16-bit weights");
    }
    return LowerLayer(PadToCompressedChannels(layer), opts, t);
  }
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  DpuTask task;
  task.op = op;

  const SparsitySupport sup = SupportedSparsity(op, t);
  if ((opts.weights_sparse && !sup.weights) || ((opts.input_sparse || opts.input_se_table) &&
                                                !sup.input) || (opts.output_sparse && !sup.output)) {
    return InvalidArgument(std::string("sparsity: ") + NceKindName(op.kind) + " " + sup.rule);
  }
  if (!HasWeights(op.kind)) {
    DPUEMU_RETURN_IF_ERROR(LowerPpeRegisters(layer, task));
  } else if (op.kind == NceKind::kDwConv) {
    DPUEMU_RETURN_IF_ERROR(LowerDwWeights(layer, task));
  }
  if (op.kind == NceKind::kEltwise) task.input2 = layer.input2.bytes;
  std::vector<uint32_t> wptr, sptr;
  if (op.kind != NceKind::kConv) {
  } else if (opts.weights_sparse) {
    CompressedWeights cw;
    DPUEMU_ASSIGN_OR_RETURN(cw, CompressWeights(layer.weights, op.w_zp));
    task.weights = std::move(cw.data);
    task.weight_map = std::move(cw.map);
    wptr = std::move(cw.data_offset);
    sptr = std::move(cw.map_offset);
  } else {
    task.weights = PackDenseWeights(layer.weights);
    for (int64_t k = 0; k < g.k; ++k) {
      wptr.push_back(static_cast<uint32_t>(k * DenseWeightSetBytes(op.w_dtype, g.taps())));
    }
  }
  if (op.kind == NceKind::kConv) {
    std::vector<WeightTableEntry> table;
    DPUEMU_ASSIGN_OR_RETURN(table, MakeWeightTable(op, layer.quant, wptr, sptr));
    task.weight_table = EncodeWeightTable(table);
  }

  // The compressed convolution's input is dense, 4 channels per pixel, never in storage
  // elements (input sparsity and SE pointers are refused above, SupportedSparsity); its
  // input_se_size is the pixel's 4 channels, the unit GatherActivations reads.
  if (IsCompressedConv(op)) {
    if (opts.input_se_size != 0 && opts.input_se_size != kCompressedInputChannels) {
      return InvalidArgument("input se_size = " + Str(opts.input_se_size) +
                             ": the compressed convolution (C = 4) reads its input dense, without "
                             "storage elements");
    }
    task.input_se_size = kCompressedInputChannels;
    task.input_tiles = {layer.input.bytes};
    task.output_sparse = opts.output_sparse;
    task.output_se_size = opts.output_se_size ? opts.output_se_size : DefaultSeSize(t, g.k);
    DPUEMU_RETURN_IF_ERROR(ValidateTask(task, t));
    return task;
  }
  // Input. SE pointers need the sparse storage format, dense or not (an all-ones map).
  task.input_se_size =
      opts.input_se_size ? opts.input_se_size : DefaultSeSize(t, g.c, op.in_dtype);
  DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, task.input_se_size, "input se_size"));
  if (g.c % task.input_se_size != 0) {
    return InvalidArgument("input se_size = " + Str(task.input_se_size) + ": must divide C = " +
                           Str(g.c));
  }
  if (opts.input_sparse || opts.input_se_table) {
    SparseActivations sa;
    DPUEMU_ASSIGN_OR_RETURN(sa, EncodeSparseActivations(layer.input, op.in_zp, task.input_se_size));
    task.input_tiles = {std::move(sa.data)};
    task.input_map = std::move(sa.map);
    if (opts.input_se_table) {
      DPUEMU_ASSIGN_OR_RETURN(task.se_table, MakeIdentitySeTable(g.h, g.w, g.c, task.input_se_size,
                                                                 op.in_dtype));
    }
  } else {
    task.input_tiles = {layer.input.bytes};
  }

  task.output_sparse = opts.output_sparse;
  task.output_se_size = opts.output_se_size ? opts.output_se_size : DefaultSeSize(t, g.k);
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, t));
  return task;
}

// The pools' PPE registers as the compiler programs them (hw/pool.h): maxpool mult 1, shift 0,
// scale 1; avgpool bias 0, mult / shift within the registers, a positive finite float scale.
static Status ValidatePoolRegisters(const DpuTask& task) {
  const DpuTask::PpeRegisters& r = task.ppe_regs;
  const bool max = task.op.kind == NceKind::kMaxPool;
  const std::string kind = NceKindName(task.op.kind);
  if (!task.weight_table.empty()) {
    return InvalidArgument("weight_table: " + kind + " has none (the PPE registers hold its scale)");
  }
  if (IsIntegerPath(task.op)) {
    if (r.bias != 0 || (max && (r.mult != 1 || r.shift != 0))) {
      return InvalidArgument("ppe_regs: " + kind + " is programmed with bias 0" +
                             (max ? ", mult 1 and shift 0" : "") + " (got mult " + Str(r.mult) +
                             ", shift " + Str(r.shift) + ", bias " + Str(r.bias) + ")");
    }
    DPUEMU_RETURN_IF_ERROR(CheckRange("ppe_regs.mult", r.mult, 0, 65535));
    DPUEMU_RETURN_IF_ERROR(CheckRange("ppe_regs.shift", r.shift, 0, 63));
  } else if (r.fbias != 0 || (max && r.scale != 1) || !(r.scale > 0) || !std::isfinite(r.scale)) {
    return InvalidArgument("ppe_regs: " + kind + " is programmed with float bias 0 and " +
                           (max ? std::string("scale 1") : std::string("a positive finite scale")) +
                           " (got scale " + std::to_string(r.scale) + ", bias " +
                           std::to_string(r.fbias) + ")");
  }
  return OkStatus();
}

Status ValidateTask(const DpuTask& task, const Target& t) {
  const NceOp& op = task.op;
  DPUEMU_RETURN_IF_ERROR(ValidateOp(op));
  DPUEMU_RETURN_IF_ERROR(ValidateInvocation(op.g));
  const NceGeometry& g = op.g;
  if (!Supports(t.activation_dtypes, op.in_dtype) || !Supports(t.weight_dtypes, op.w_dtype) ||
      !Supports(t.output_dtypes, op.out_dtype)) {
    return InvalidArgument(std::string("dtypes: ") + t.name + " does not support this combination");
  }
  if (IsCompressedConv(op)) {
    if (g.c != kCompressedInputChannels) {
      return InvalidArgument("c (input channels) = " + Str(g.c) + ": the compressed convolution's "
                             "task reads 4 channels per pixel (LowerLayer pads C = 3 to 4)");
    }
    if (task.input_se_size != kCompressedInputChannels || !task.input_map.empty() ||
        !task.se_table.empty()) {
      return InvalidArgument("input: the compressed convolution (C = 4) reads its input dense "
                             "(input se_size 4, no map, no SE table): "
                             "NCECompressConvolutionOp::sparsitySupport allows sparse output only");
    }
  } else {
    DPUEMU_RETURN_IF_ERROR(CheckInputSeSize(t, task.input_se_size, op.in_dtype, g.c,
                                            !task.input_map.empty() && task.se_table.empty(),
                                            "input se_size"));
  }
  DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, task.output_se_size, "output se_size"));
  if (g.c % task.input_se_size != 0) {
    return InvalidArgument("input se_size = " + Str(task.input_se_size) + ": must divide C = " + Str(g.c));
  }
  if (g.k % task.output_se_size != 0) {
    return InvalidArgument("output se_size = " + Str(task.output_se_size) + ": must divide K = " +
                           Str(g.k));
  }
  // Sparse storage is an activation format; the i32 debug output has none (and no decoder).
  if (task.output_sparse && op.out_dtype == DType::kI32) {
    return InvalidArgument("output_sparse: output dtype i32 (acc + bias, no PPE) cannot be "
                           "written sparse");
  }
  if (!task.se_table.empty() && task.input_map.empty()) {
    return InvalidArgument("input: SE pointers need the sparse storage format (a map, all ones "
                           "when dense)");
  }
  if (task.input_tiles.empty() || static_cast<int64_t>(task.input_tiles.size()) > t.tiles) {
    return InvalidArgument("input_tiles: " + Str(task.input_tiles.size()) + " tile buffers, " +
                           t.name + " has " + Str(t.tiles) + " tiles");
  }
  const SparsitySupport sup = SupportedSparsity(op, t);
  if ((task.weights_sparse() && !sup.weights) || (!task.input_map.empty() && !sup.input) ||
      (task.output_sparse && !sup.output)) {
    return InvalidArgument(std::string("sparsity: ") + NceKindName(op.kind) + " " + sup.rule);
  }
  if (op.kind == NceKind::kEltwise) {
    const int64_t want = g.h * g.w * g.c * DTypeBytes(op.eltwise.in2_dtype);
    if (static_cast<int64_t>(task.input2.size()) != want) {
      return InvalidArgument("input2: " + Str(task.input2.size()) + " bytes, the eltwise's second "
                             "input [H, W, C] needs " + Str(want));
    }
    DPUEMU_RETURN_IF_ERROR(ValidateEltwiseRegisters(task));
  } else if (!task.input2.empty()) {
    return InvalidArgument(std::string("input2: only eltwise has a second input (op is ") +
                           NceKindName(op.kind) + ")");
  }
  if (op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool) {
    DPUEMU_RETURN_IF_ERROR(ValidatePoolRegisters(task));
  }
  if (task.weight_table.empty()) {
    if (op.kind == NceKind::kConv || op.kind == NceKind::kDwConv) {
      return InvalidArgument(std::string("weight_table: ") + NceKindName(op.kind) +
                             " needs a weight table (16 bytes per output channel)");
    }
    return OkStatus();
  }
  std::vector<WeightTableEntry> table;
  DPUEMU_ASSIGN_OR_RETURN(table, DecodeWeightTable(task.weight_table, g.k));
  if (op.kind == NceKind::kDwConv) {
    // Every channel's pointer selects a whole weight set inside the buffer (UnpackDwWeights).
    DPUEMU_RETURN_IF_ERROR(UnpackDwWeights(task.weights, table, g, op.w_dtype).status());
  }
  for (int64_t k = 0; k < g.k; ++k) {
    if ((table[k].sparsity_ptr != kDenseSparsityPtr) != task.weights_sparse()) {
      return InvalidArgument("weight_table[" + Str(k) + "].sparsity_ptr: " +
                             (task.weights_sparse() ? "0xFFFFFF (dense) but a weight map is given"
                                                    : "set but no weight map is given"));
    }
  }
  return OkStatus();
}

StatusOr<DpuOutput> StoreOutput(const DpuTask& task, Tensor dense) {
  DpuOutput out;
  out.se_size = task.output_se_size;
  if (!task.output_sparse) {
    out.data = std::move(dense);
    return out;
  }
  SparseActivations sa;
  DPUEMU_ASSIGN_OR_RETURN(sa, EncodeSparseActivations(dense, task.op.ppe.out_zp, task.output_se_size));
  out.data = Tensor(dense.dtype, dense.shape);
  out.data.bytes = std::move(sa.data);
  out.map = std::move(sa.map);
  return out;
}

StatusOr<Tensor> DenseOutput(const DpuOutput& out, int32_t out_zp) {
  if (!out.sparse()) return out.data;
  return DecodeSparseActivations(out.data.bytes, out.map, out.data.dtype, out.data.shape, out_zp,
                                 out.se_size);
}

}  // namespace dpuemu
