// The input checks of the public API, for the rows of README.md's "What is checked" table: each
// feeds the invalid input to every public entry point the rule guards (scalar and SIMD decoders,
// the reference DPU, the SIMD kernels, the planner and executor, the SE operations) and checks
// the error names the field and the rule. Under --config=asan the same inputs also prove the
// checks come before any arithmetic that could overflow or any read past a buffer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/se_ops.h"
#include "hw/target.h"
#include "kernels/bitmap.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "runtime/execute.h"
#include "runtime/plan.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

constexpr int64_t kHuge = std::numeric_limits<int64_t>::max() / 2;

std::string Message(const Status& s) { return s.ok() ? "(ok)" : s.ToString(); }
template <typename T>
std::string Message(const StatusOr<T>& s) {
  return Message(s.status());
}
template <typename T>
bool Failed(const StatusOr<T>& s) {
  return !s.ok();
}
bool Failed(const Status& s) { return !s.ok(); }

// Fails the test unless `result` is an error whose message contains `part`.
#define EXPECT_REJECTS(result, part)                                                    \
  do {                                                                                  \
    const auto& _r = (result);                                                          \
    EXPECT_TRUE(Failed(_r)) << #result << " was accepted";                              \
    EXPECT_NE(Message(_r).find(part), std::string::npos)                                \
        << #result << ": '" << Message(_r) << "' does not mention '" << (part) << "'";  \
  } while (0)

// A small valid layer: u8 x i8 -> u8, 4x4x32 -> 32, 3x3, with sparse-able weights and input.
NceLayer SmallLayer(DType in = DType::kU8, uint64_t seed = 5) {
  LayerSpec spec;
  spec.name = "small";
  spec.h = spec.w = 4;
  spec.c = 32;
  spec.k = 32;
  spec.ky = spec.kx = 3;
  spec.in_dtype = in;
  spec.w_dtype = in == DType::kU8 || in == DType::kI8 ? DType::kI8 : in;
  spec.out_dtype = in == DType::kU8 || in == DType::kI8 ? DType::kU8 : in;
  spec.weight_sparsity = 0.5;
  spec.input_sparsity = 0.4;
  return *GenerateLayer(spec, seed);
}

DpuTask Lower(const NceLayer& layer, bool weights_sparse, bool input_sparse, bool se_table,
              const Target& t = Npu40()) {
  StorageOptions s;
  s.weights_sparse = weights_sparse;
  s.input_sparse = input_sparse;
  s.input_se_table = se_table;
  return *LowerLayer(layer, s, t);
}

// Every runner of a DpuTask: the reference, the SIMD kernels, and their weight preparation.
void ExpectTaskRejected(const DpuTask& task, const std::string& part, const Target& t = Npu40()) {
  EXPECT_REJECTS(RunReference(task, t), part);
  EXPECT_REJECTS(RunZMConv(task, t), part);
}

// The decoders of weight buffers, scalar and SIMD.
void ExpectDecompressRejected(const DpuTask& task, const std::string& part) {
  EXPECT_REJECTS(DecompressWeights(task.weights, task.weight_map, task.weight_table, task.op.g,
                                   task.op.w_dtype, task.op.w_zp),
                 part);
  EXPECT_REJECTS(simd::DecompressWeights(task.weights, task.weight_map, task.weight_table,
                                         task.op.g, task.op.w_dtype, task.op.w_zp),
                 part);
}

// The gathers of an activation view, scalar and SIMD.
void ExpectGatherRejected(const ActivationView& v, DType t, const std::vector<int64_t>& shape,
                          const std::string& part, int32_t zp = 0) {
  EXPECT_REJECTS(GatherActivations(v, t, shape, zp), part);
  EXPECT_REJECTS(simd::GatherActivations(v, t, shape, zp), part);
  std::vector<uint8_t> out(1 << 16);
  EXPECT_REJECTS(simd::GatherRows(v, t, shape, zp, 0, -1, MutableByteSpan(out.data(), out.size())),
                 part);
}

// An SE source [h, w, c] of u8 and its gather through the identity (a pad of 0).
struct SeFixture {
  NceLayer layer;  // virtual layer over the gather
  Tensor source;
  SourceLayout layout;
  SeGather gather;
};
SeFixture MakeSeFixture(bool sparse, int tiles = 1) {
  SeFixture f;
  f.layer = SmallLayer();
  f.source = f.layer.input;
  f.layout = SplitRows(f.source.shape[0], tiles);
  const SeSource src = *MakeSeSource(f.source, f.layout, sparse, f.layer.op.in_zp);
  f.gather = *PadGather(src, Npu40(), 16, Pads{}, PadMode::kConstant);
  return f;
}
StatusOr<DpuTask> LowerGather(const SeFixture& f, bool sparse = false) {
  StorageOptions s;
  s.input_sparse = sparse;
  return LowerWithGather(f.layer, f.source, f.layout, f.gather, s, Npu40());
}

// ---- Shapes, ranges, types ----

TEST(ValidationTest, TensorShapesAndRanks) {
  const NceLayer layer = SmallLayer();
  // Activations: [H, W, C] or [1, H, W, C].
  ActivationView v;
  v.tiles = {layer.input.bytes};
  v.se_size = 16;
  ExpectGatherRejected(v, DType::kU8, {2, 4, 4, 32}, "shape must be [H, W, C] or [1, H, W, C]");
  ExpectGatherRejected(v, DType::kU8, {4, 128}, "shape must be [H, W, C]");
  EXPECT_REJECTS(EncodeSparseActivations(Tensor(DType::kU8, {512}), 0, 16), "shape must be");
  EXPECT_REJECTS(simd::EncodeSparseActivations(Tensor(DType::kU8, {512}), 0, 16), "shape must be");
  // Weights: [K, KY, KX, C], no negative dimension.
  EXPECT_REJECTS(CompressWeights(Tensor(DType::kI8, {16, 9, 32}), 0), "shape must be [K, KY, KX, C]");
  Tensor negative(DType::kI8, {1, 1, 1, 16});
  negative.shape = {-1, 1, 1, -16};
  EXPECT_REJECTS(simd::CompressWeights(negative, 0), "must have positive dimensions");
  // A layer's tensors must be the op's shapes and types, byte counts included.
  NceLayer bad = layer;
  bad.input.shape = {4, 4, 16};
  EXPECT_REJECTS(ValidateLayer(bad), "input: expected u8 [4, 4, 32]");
  EXPECT_REJECTS(LowerLayer(bad, {}, Npu40()), "input: expected u8 [4, 4, 32]");
  EXPECT_REJECTS(PlanLayer(bad, Npu40(), {}), "input: expected u8 [4, 4, 32]");
  bad = layer;
  bad.weights.bytes.pop_back();
  EXPECT_REJECTS(ValidateLayer(bad), "weights: expected i8 [32, 3, 3, 32]");
  // SE sources and the transposed-convolution helper.
  EXPECT_REJECTS(MakeSeSource(Tensor(DType::kU8, {1, 4, 4, 32}), {}, false, 0),
                 "source: shape must be [H, W, C]");
  SeFixture f = MakeSeFixture(false);
  Tensor wrong = f.source;
  wrong.shape = {4, 8, 16};
  EXPECT_REJECTS(LowerWithGather(f.layer, wrong, f.layout, f.gather, {}, Npu40()),
                 "source: expected u8 [4, 4, 32]");
  TransposedConv tc;
  tc.ky = tc.kx = 3;
  const SeSource src = *MakeSeSource(f.source, {}, false, 0);
  const SeGather zi = *ZeroInsertGather(src, Npu40(), 16, tc);
  EXPECT_REJECTS(TransposedConvAsZMConv(tc, zi, layer.op, layer.quant, Tensor(DType::kI8, {32, 3, 32})),
                 "weights: expected i8 [K, 3, 3, 32]");
}

TEST(ValidationTest, GeometryRanges) {
  const NceLayer base = SmallLayer();
  struct Case {
    void (*edit)(NceGeometry&);
    const char* part;
  };
  const Case cases[] = {
      {[](NceGeometry& g) { g.h = 0; }, "h (input height) = 0: must be in [1, 16384]"},
      {[](NceGeometry& g) { g.w = 16385; }, "w (input width) = 16385"},
      {[](NceGeometry& g) { g.ky = 12; }, "ky (kernel height) = 12: must be in [1, 11]"},
      {[](NceGeometry& g) { g.kx = 0; }, "kx (kernel width) = 0"},
      {[](NceGeometry& g) { g.stride_y = 9; }, "stride_y = 9: must be in [1, 8]"},
      {[](NceGeometry& g) { g.stride_x = 0; }, "stride_x = 0"},
      {[](NceGeometry& g) { g.pad_top = 256; }, "pad_top = 256: must be in [0, 255]"},
      {[](NceGeometry& g) { g.pad_right = -1; }, "pad_right = -1"},
      {[](NceGeometry& g) { g.h = 1, g.ky = 5, g.pad_top = g.pad_bottom = 1; },
       "ky (kernel height) = 5: larger than the padded input height 3"},
      {[](NceGeometry& g) { g.h = kHuge; }, "h (input height) = "},
  };
  for (const Case& c : cases) {
    NceOp op = base.op;
    c.edit(op.g);
    SCOPED_TRACE(c.part);
    EXPECT_REJECTS(ValidateOp(op), c.part);
    NceLayer layer = base;
    layer.op = op;
    EXPECT_REJECTS(LowerLayer(layer, {}, Npu40()), c.part);
    EXPECT_REJECTS(PlanLayer(layer, Npu37(), {}), c.part);
    DpuTask task = Lower(base, false, false, false);
    task.op = op;
    ExpectTaskRejected(task, c.part);
  }
}

// One DPU invocation (the library's DpuTask) pads at most kernel / 2 per side (verifyPads) and
// has C, K <= 8192 (VPU_DIMENSION_LIMIT); ValidateOp's wider layer limits are the runtime's,
// which lowers pads through an SE pad gather (LowerLayerForDpu) and K as several invocations.
TEST(ValidationTest, OneInvocationLimits) {
  const NceLayer base = SmallLayer();  // 3x3 kernel: pads up to 1
  struct Case {
    void (*edit)(NceGeometry&);
    const char* part;
  };
  const Case cases[] = {
      {[](NceGeometry& g) { g.pad_top = 2; }, "pad_top = 2: one DPU invocation pads at most ky / 2 = 1"},
      {[](NceGeometry& g) { g.pad_bottom = 2; }, "pad_bottom = 2"},
      {[](NceGeometry& g) { g.pad_left = 2; }, "pad_left = 2: one DPU invocation pads at most kx / 2 = 1"},
      {[](NceGeometry& g) { g.pad_right = 3; }, "verifyPads"},
      {[](NceGeometry& g) { g.ky = 2, g.pad_top = 1, g.pad_bottom = 0; }, "pad_top = 1: one DPU invocation pads at most ky / 2 = 1"},
  };
  for (const Case& c : cases) {
    NceOp op = base.op;
    c.edit(op.g);
    SCOPED_TRACE(c.part);
    EXPECT_TRUE(ValidateOp(op).ok());
    const Status inv = ValidateInvocation(op.g);
    if (op.g.pad_top <= op.g.ky / 2 && op.g.pad_bottom <= op.g.ky / 2 &&
        op.g.pad_left <= op.g.kx / 2 && op.g.pad_right <= op.g.kx / 2) {
      EXPECT_TRUE(inv.ok()) << inv.message();  // ky = 2: pad 1 is within ky / 2
      continue;
    }
    EXPECT_REJECTS(inv, c.part);
    NceLayer layer = base;
    layer.op = op;
    layer.weights = Tensor(op.w_dtype, {op.g.k, op.g.ky, op.g.kx, op.g.c});
    EXPECT_REJECTS(LowerLayer(layer, {}, Npu40()), c.part);
    DpuTask task = Lower(base, false, false, false);
    task.op = op;
    ExpectTaskRejected(task, c.part);
    // The runtime's lowering: the DPU pads kernel / 2, an SE table reads the excess as zeros.
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask lowered, LowerLayerForDpu(layer, {}, Npu40()));
    EXPECT_FALSE(lowered.se_table.empty());
    EXPECT_TRUE(ValidateInvocation(lowered.op.g).ok());
  }
  NceOp wide = base.op;
  wide.g.c = 8208;
  EXPECT_TRUE(ValidateOp(wide).ok());
  EXPECT_REJECTS(ValidateInvocation(wide.g), "c (input channels) = 8208: must be at most 8192");
  wide = base.op;
  wide.g.k = 16384;
  EXPECT_REJECTS(ValidateInvocation(wide.g), "k (output channels) = 16384: must be at most 8192");
  // The planner refuses IC beyond one invocation (no dpuemu operation adds partial sums).
  LayerSpec spec;
  spec.name = "ic";
  spec.h = spec.w = 1;
  spec.c = 8208;
  spec.k = 16;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer ic, GenerateLayer(spec, 1));
  EXPECT_REJECTS(PlanLayer(ic, Npu40(), {}), "c (input channels) = 8208: one DPU invocation reads at most 8192");
}

TEST(ValidationTest, ChannelsMultipleOf16) {
  const NceLayer base = SmallLayer();
  for (int64_t c : {20, 8, 16400}) {
    NceOp op = base.op;
    op.g.c = c;
    EXPECT_REJECTS(ValidateOp(op), "c (input channels) = " + std::to_string(c));
    DpuTask task = Lower(base, false, false, false);
    task.op = op;
    ExpectTaskRejected(task, "c (input channels)");
    op = base.op;
    op.g.k = c;
    EXPECT_REJECTS(ValidateOp(op), "k (output channels) = " + std::to_string(c));
    NceLayer layer = base;
    layer.op = op;
    EXPECT_REJECTS(PlanLayer(layer, Npu40(), {}), "k (output channels)");
  }
  EXPECT_REJECTS(ValidateOp([&] { NceOp op = base.op; op.g.c = 40; return op; }()),
                 "c (input channels) = 40: must be a multiple of 16");
  // SE sources.
  SeSource src = *MakeSeSource(base.input, {}, false, 0);
  src.c = 24;
  EXPECT_REJECTS(UpsampleNearestGather(src, Npu40(), 0, 2, 2), "source.c = 24: must be a multiple of 16");
  EXPECT_REJECTS(PadGather(src, Npu37(), 0, Pads{1, 1, 1, 1}, PadMode::kEdge), "source.c = 24");
}

TEST(ValidationTest, DTypes) {
  const NceLayer base = SmallLayer();
  NceOp op = base.op;
  op.out_dtype = DType::kFP16;
  EXPECT_REJECTS(ValidateOp(op), "output dtype = fp16: integer input needs an output of u8, i8 or i32");
  op = base.op;
  op.w_dtype = DType::kFP16;
  EXPECT_REJECTS(ValidateOp(op), "weights dtype = fp16");
  op = base.op;
  op.in_dtype = DType::kI32;
  EXPECT_REJECTS(ValidateOp(op), "input dtype = i32: must be u8, i8, fp16 or bf16");
  const NceLayer fl = SmallLayer(DType::kFP16);
  op = fl.op;
  op.w_dtype = DType::kBF16;
  EXPECT_REJECTS(ValidateOp(op), "weights dtype = bf16");
  op = fl.op;
  op.out_dtype = DType::kU8;
  EXPECT_REJECTS(ValidateOp(op), "output dtype = u8: float input needs an output of fp16, bf16 or fp32");
  // A target without the type.
  Target no_fp16 = Npu40();
  no_fp16.activation_dtypes = {DType::kU8, DType::kI8};
  const DpuTask task = Lower(fl, false, false, false);
  ExpectTaskRejected(task, "does not support", no_fp16);
  EXPECT_REJECTS(PlanLayer(fl, no_fp16, {}), "does not support");
  // Format decoders: element types they have no format for.
  DpuTask w = Lower(base, true, false, false);
  w.op.w_dtype = DType::kI32;
  ExpectDecompressRejected(w, "weights: dtype i32 is not a weight type");
  EXPECT_REJECTS(CompressWeights(Tensor(DType::kFP32, {1, 1, 1, 16}), 0), "dtype fp32 cannot be compressed");
  EXPECT_REJECTS(CompressWeights(Tensor(DType::kI4, {1, 1, 1, 16}), 0),
                 "sub-byte weights are never sparsified");
  // An int4 host tensor holds one value per byte, in the type's range.
  NceLayer w4 = SmallLayer();
  w4.op.w_dtype = DType::kI4;
  w4.op.w_zp = 0;
  w4.weights.dtype = DType::kI4;
  for (auto& b : w4.weights.bytes) b = static_cast<uint8_t>(static_cast<int8_t>(b) / 32);
  DPUEMU_ASSERT_OK(ValidateLayer(w4));
  w4.weights.bytes[3] = 9;
  EXPECT_REJECTS(ValidateLayer(w4), "weights[3] = 9: not a i4 value [-8, 7]");
  ActivationView v;
  v.tiles = {std::vector<uint8_t>(4 * 4 * 32 * 4)};
  v.se_size = 16;
  ExpectGatherRejected(v, DType::kI32, {4, 4, 32}, "dtype i32 is not an activation type");
  EXPECT_REJECTS(MakeSeSource(Tensor(DType::kI32, {4, 4, 32}), {}, false, 0).status().ok()
                     ? UpsampleNearestGather(*MakeSeSource(Tensor(DType::kI32, {4, 4, 32}), {}, false, 0),
                                             Npu40(), 0, 2, 2)
                     : StatusOr<SeGather>(InvalidArgument("source.dtype")),
                 "source.dtype = i32");
}

TEST(ValidationTest, ZeroPointsInRange) {
  const NceLayer base = SmallLayer();
  struct Case {
    void (*edit)(NceOp&);
    const char* part;
  };
  const Case cases[] = {
      {[](NceOp& o) { o.in_zp = 256; }, "input zero_point = 256: must be in [0, 255]"},
      {[](NceOp& o) { o.in_zp = -1; }, "input zero_point = -1"},
      {[](NceOp& o) { o.w_zp = 128; }, "weights zero_point = 128: must be in [-128, 127]"},
      {[](NceOp& o) { o.ppe.out_zp = 300; }, "ppe.out_zero_point = 300: must be in [0, 255]"},
      {[](NceOp& o) { o.in_dtype = DType::kI8, o.in_zp = -129; }, "input zero_point = -129"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.part);
    NceOp op = base.op;
    c.edit(op);
    EXPECT_REJECTS(ValidateOp(op), c.part);
    DpuTask task = Lower(base, true, true, false);
    task.op = op;
    ExpectTaskRejected(task, c.part);
  }
  // Float types have no zero point.
  const NceLayer fl = SmallLayer(DType::kBF16);
  for (int which = 0; which < 3; ++which) {
    NceOp op = fl.op;
    (which == 0 ? op.in_zp : which == 1 ? op.w_zp : op.ppe.out_zp) = 1;
    EXPECT_REJECTS(ValidateOp(op), "float types have no zero point");
  }
  // The map of a sparse SE source is made against the zero point.
  EXPECT_REJECTS(MakeSeSource(base.input, {}, true, 256), "source: zero_point = 256: must be in [0, 255] (u8)");
  EXPECT_REJECTS(MakeSeSource(fl.input, {}, true, 3), "source: zero_point = 3: must be in [0, 0] (bf16, a float type)");
  // The format functions, scalar and SIMD: the zero point is the value of absent elements.
  const DpuTask task = Lower(base, true, true, false);
  DpuTask bad = task;
  bad.op.w_zp = 128;
  ExpectDecompressRejected(bad, "weights: zero_point = 128: must be in [-128, 127] (i8)");
  EXPECT_REJECTS(CompressWeights(base.weights, -129), "weights: zero_point = -129");
  EXPECT_REJECTS(simd::CompressWeights(base.weights, -129), "weights: zero_point = -129");
  EXPECT_REJECTS(EncodeSparseActivations(base.input, 256, 16), "activations: zero_point = 256: must be in [0, 255] (u8)");
  EXPECT_REJECTS(simd::EncodeSparseActivations(base.input, -1, 16), "activations: zero_point = -1");
  ExpectGatherRejected(task.input_view(), DType::kU8, {4, 4, 32}, "activations: zero_point = 300", 300);
  EXPECT_REJECTS(simd::EncodeSparseActivations(fl.input, 1, 16), "activations: zero_point = 1: must be in [0, 0] (bf16, a float type)");
}

TEST(ValidationTest, PpeRanges) {
  const NceLayer base = SmallLayer();
  struct Case {
    void (*edit)(Ppe&);
    const char* part;
  };
  const double inf = std::numeric_limits<double>::infinity();
  (void)inf;
  const Case cases[] = {
      {[](Ppe& p) { p.leaky_relu = true, p.lrelu_mult = 2048; }, "ppe.leaky_relu.mult = 2048"},
      {[](Ppe& p) { p.leaky_relu = true, p.lrelu_shift = 32; }, "ppe.leaky_relu.shift = 32"},
      {[](Ppe& p) { p.clamp_lo = 10, p.clamp_hi = 5; }, "ppe.clamp: needs lo <= hi"},
      {[](Ppe& p) { p.clamp_lo = std::nan(""); }, "ppe.clamp = nan: integer outputs need whole-number"},
      {[](Ppe& p) { p.clamp_hi = 7.5; }, "integer outputs need whole-number clamp bounds"},
      {[](Ppe& p) { p.clamp_lo = 300, p.clamp_hi = 400; }, "must overlap the u8 range [0, 255]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.part);
    NceOp op = base.op;
    c.edit(op.ppe);
    EXPECT_REJECTS(ValidateOp(op), c.part);
    DpuTask task = Lower(base, false, false, false);
    task.op = op;
    ExpectTaskRejected(task, c.part);
  }
  NceOp fl = SmallLayer(DType::kFP16).op;
  fl.ppe.leaky_relu = true;
  fl.ppe.lrelu_alpha = std::numeric_limits<float>::infinity();
  EXPECT_REJECTS(ValidateOp(fl), "ppe.leaky_relu.alpha = inf: must be finite");
  fl = SmallLayer(DType::kFP16).op;
  fl.ppe.clamp_hi = std::nan("");
  EXPECT_REJECTS(ValidateOp(fl), "ppe.clamp: needs lo <= hi (got [-inf, nan])");
}

TEST(ValidationTest, QuantPerChannel) {
  const NceLayer base = SmallLayer();
  ChannelQuant q = base.quant;
  q.mult.pop_back();
  EXPECT_REJECTS(ValidateQuant(base.op, q), "quant: mult, shift and bias need one entry per output channel (k = 32)");
  q = base.quant;
  q.mult[3] = 65536;
  EXPECT_REJECTS(ValidateQuant(base.op, q), "quant.mult[3] = 65536: must be in [0, 65535]");
  q = base.quant;
  q.shift[0] = 64;
  EXPECT_REJECTS(ValidateQuant(base.op, q), "quant.shift[0] = 64: must be in [0, 63]");
  NceLayer layer = base;
  layer.quant = q;
  EXPECT_REJECTS(LowerLayer(layer, {}, Npu40()), "quant.shift[0] = 64");
  EXPECT_REJECTS(PlanLayer(layer, Npu40(), {}), "quant.shift[0] = 64");
  const NceLayer fl = SmallLayer(DType::kFP16);
  q = fl.quant;
  q.fbias.clear();
  EXPECT_REJECTS(ValidateQuant(fl.op, q), "quant: scale and bias need one entry per output channel");
  // The weight table is built from one pointer per channel, 16-byte aligned.
  std::vector<uint32_t> ptrs(32, 0);
  EXPECT_REJECTS(MakeWeightTable(base.op, base.quant, std::vector<uint32_t>(31, 0), {}),
                 "need one weight (and sparsity) pointer per output channel");
  EXPECT_REJECTS(MakeWeightTable(base.op, base.quant, ptrs, std::vector<uint32_t>(30, 0)),
                 "need one weight (and sparsity) pointer per output channel");
  ptrs[5] = 24;
  EXPECT_REJECTS(MakeWeightTable(base.op, base.quant, ptrs, {}), "weight table[5]: pointers must be 16-byte aligned");
}

// ---- Weights in the hardware's formats ----

TEST(ValidationTest, WeightTableSize) {
  const NceLayer base = SmallLayer();
  for (bool sparse : {false, true}) {
    DpuTask task = Lower(base, sparse, false, false);
    task.weight_table.resize(task.weight_table.size() - 16);
    ExpectTaskRejected(task, "weight_table: 496 bytes, expected 16 per output channel = 512");
    ExpectDecompressRejected(task, "weight_table: 496 bytes");
    EXPECT_REJECTS(PreparedWeights::Create(task, Npu40()), "weight_table: 496 bytes");
    task.weight_table.resize(513);
    EXPECT_REJECTS(ValidateTask(task, Npu40()), "weight_table: 513 bytes");
  }
  EXPECT_REJECTS(DecodeWeightTable(std::vector<uint8_t>(32), 0), "expected 16 per output channel = 0 (K = 0)");
  EXPECT_REJECTS(DecodeWeightTable(std::vector<uint8_t>(32), -2), "weight_table: 32 bytes");
}

TEST(ValidationTest, WeightTablePointersAligned) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, true, false, false);
  task.weight_table[2 * 16] |= 8;  // channel 2 weight_ptr
  ExpectTaskRejected(task, "weight_table[2].weight_ptr = ");
  ExpectDecompressRejected(task, "must be 16-byte aligned");
  task = Lower(base, true, false, false);
  task.weight_table[3 * 16 + 4] |= 4;  // channel 3 sparsity_ptr
  ExpectTaskRejected(task, "weight_table[3].sparsity_ptr = ");
  ExpectDecompressRejected(task, "must be 16-byte aligned or 0xFFFFFF (dense)");
}

TEST(ValidationTest, WeightPointersInRange) {
  const NceLayer base = SmallLayer();
  // Dense channel past the weights buffer.
  DpuTask task = Lower(base, false, false, false);
  task.weights.resize(task.weights.size() - 1);
  ExpectTaskRejected(task, "weight_table[31].weight_ptr = 8928: dense channel of 288 bytes ends past the weights buffer");
  ExpectDecompressRejected(task, "ends past the weights buffer");
  EXPECT_REJECTS(PreparedWeights::Create(task, Npu40()), "ends past the weights buffer");
  // Sparse channel whose map lies past the map buffer.
  task = Lower(base, true, false, false);
  task.weight_table[7 * 16 + 5] = 0x40;  // sparsity_ptr += 16 KiB
  ExpectTaskRejected(task, "weight_table[7].sparsity_ptr = ");
  ExpectDecompressRejected(task, "ends past the map buffer");
  // Huge pointers stay pointers: no overflow when adding the channel size.
  task = Lower(base, false, false, false);
  for (int b = 0; b < 4; ++b) task.weight_table[b] = 0xF0;
  ExpectDecompressRejected(task, "weight_table[0].weight_ptr = 4042322160");
}

TEST(ValidationTest, WeightMapPopcountMatchesPackedData) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, true, false, false);
  // The last channel's map claims every weight present: more non-zeros than its packed run.
  const int64_t map_per_k = WeightMapBytesPerChannel(task.op.g);
  const int64_t taps = task.op.g.taps();
  for (int64_t b = 0; b < taps / 8; ++b) task.weight_map[31 * map_per_k + b] = 0xFF;
  ExpectTaskRejected(task, "weight_table[31].weight_ptr = ");
  ExpectDecompressRejected(task, "the map's 288 non-zeros end past the weights buffer");
  EXPECT_REJECTS(PreparedWeights::Create(task, Npu40()), "non-zeros end past the weights buffer");
}

TEST(ValidationTest, WeightMapPaddingBits) {
  const NceLayer base = SmallLayer();  // 288 taps: 36 map bytes, padded to 48
  DpuTask task = Lower(base, true, false, false);
  const int64_t map_per_k = WeightMapBytesPerChannel(task.op.g);
  ASSERT_EQ(map_per_k, 48);
  task.weight_map[4 * map_per_k + 40] = 0x10;
  ExpectTaskRejected(task, "weight_table[4]: sparsity map padding bit 324 is set (only 288 weights per channel)");
  ExpectDecompressRejected(task, "sparsity map padding bit 324");
}

TEST(ValidationTest, WeightMapPresenceMatchesTable) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, false, false, false);
  task.weight_map.assign(static_cast<size_t>(WeightMapBytes(task.op.g)), 0xFF);
  ExpectTaskRejected(task, "weight_table[0].sparsity_ptr: 0xFFFFFF (dense) but a weight map is given");
  task = Lower(base, true, false, false);
  task.weight_map.clear();
  ExpectTaskRejected(task, "weight_table[0].sparsity_ptr: set but no weight map is given");
}

// ---- Activations, SE pointers ----

TEST(ValidationTest, ActivationMapLengthAndPadding) {
  const NceLayer base = SmallLayer();  // 4x4x32 = 512 elements: 64 map bytes, no padding
  LayerSpec spec;
  spec.h = spec.w = 3;
  spec.c = 16;
  spec.k = 16;
  const NceLayer odd = *GenerateLayer(spec, 3);  // 144 elements: 18 map bytes, padded to 32
  DpuTask task = Lower(base, false, true, false);
  task.input_map.pop_back();
  ExpectTaskRejected(task, "activations.map: 63 bytes, expected 64 (one bit per element of [4, 4, 32]");
  task = Lower(odd, false, true, false);
  ASSERT_EQ(task.input_map.size(), 32u);
  task.input_map[20] = 0x02;
  ExpectTaskRejected(task, "activations.map: padding bit 161 is set (tensor has 144 elements)");
  ExpectGatherRejected(task.input_view(), DType::kU8, {3, 3, 16}, "padding bit 161");
  EXPECT_REJECTS(DenseOutput(DpuOutput{odd.input, task.input_map, 16}, 0), "padding bit 161");
  // An SE source's map.
  SeSource src = *MakeSeSource(odd.input, {}, true, odd.op.in_zp);
  src.map[25] = 1;
  EXPECT_REJECTS(UpsampleNearestGather(src, Npu40(), 0, 1, 1), "source.map: padding bit 200 is set");
  src.map.pop_back();
  EXPECT_REJECTS(RollGather(src, Npu40(), 0, 1, 1), "source.map: 31 bytes, expected 32");
}

TEST(ValidationTest, DenseInputLength) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, false, false, false);
  task.input_tiles[0].resize(511);
  ExpectTaskRejected(task, "activations: data of 511 bytes, expected 512");
  ExpectGatherRejected(task.input_view(), DType::kU8, {4, 4, 32}, "data of 511 bytes");
}

TEST(ValidationTest, SeTableLength) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, false, false, true);
  const size_t entries = task.se_table.size();
  task.se_table.pop_back();
  ExpectTaskRejected(task, "se_table: " + std::to_string(entries - 1) + " entries, expected H * W * C / se_size = " +
                               std::to_string(entries));
  SeFixture f = MakeSeFixture(false);
  f.gather.table.push_back(f.gather.table[0]);
  EXPECT_REJECTS(LowerGather(f), "gather.table: 33 entries, expected H * W * C / se_size = 32");
}

TEST(ValidationTest, SePointerUnusedBits) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, false, false, true);
  task.se_table[5] |= int32_t{1} << 31;
  ExpectTaskRejected(task, "se_table[5] = ");
  ExpectGatherRejected(task.input_view(), DType::kU8, {4, 4, 32}, "bits [31:29] are unused and must be 0");
  SeFixture f = MakeSeFixture(false);
  f.gather.table[7] |= int32_t{1} << 29;
  EXPECT_REJECTS(LowerGather(f), "gather.table[7] (virtual pixel (0, 3) SE 1) = ");
}

TEST(ValidationTest, SePointerBasePtrBelowTileCount) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, false, false, true);
  task.se_table[9] = *EncodeSePointer(0, 1);
  ExpectTaskRejected(task, "se_table[9]: BASE_PTR = 1 is beyond the tile count 1");
  task.se_table[9] = *EncodeSePointer(0, 511);
  task.input_tiles.resize(6, task.input_tiles[0]);
  ExpectGatherRejected(task.input_view(), DType::kU8, {4, 4, 32}, "BASE_PTR = 511 is beyond the tile count 6");
  SeFixture f = MakeSeFixture(false, 2);
  f.gather.table[0] = *EncodeSePointer(0, 2);
  EXPECT_REJECTS(LowerGather(f), "gather.table[0] (virtual pixel (0, 0) SE 0): BASE_PTR = 2 is beyond the source's tile count 2");
}

TEST(ValidationTest, SePointerInsideTheSource) {
  const NceLayer base = SmallLayer();
  DpuTask task = Lower(base, false, false, true);
  const int64_t tile = static_cast<int64_t>(task.input_tiles[0].size());
  ASSERT_EQ(task.input_se_size, 32);
  task.se_table[3] = *EncodeSePointer(tile - 32, 0);  // the last slot of 32 bytes: fine
  task.se_table[4] = *EncodeSePointer(tile - 16, 0);  // straddles the end of the tile
  ExpectTaskRejected(task, "se_table[4]: DATA_PTR offset 496 + 32 bytes is outside tile 0 (512 bytes)");
  task.se_table[4] = *EncodeSePointer(kSeMaxOffset, 0);
  ExpectGatherRejected(task.input_view(), DType::kU8, {4, 4, 32}, "is outside tile 0");
  // Gathers: inside the rows the pointer's tile holds, at an SE boundary of the source.
  SeFixture f = MakeSeFixture(false, 2);  // rows 0-1 in tile 0, rows 2-3 in tile 1
  f.gather.table[0] = *EncodeSePointer(2 * 4 * 32, 0);
  EXPECT_REJECTS(LowerGather(f), "DATA_PTR offset 256 is outside the source rows held by tile 0 (bytes [0, 256))");
  f = MakeSeFixture(false);
  f.gather.table[1] = *EncodeSePointer(48, 0);  // SEs of 16 u8 start at multiples of 16: ok
  EXPECT_TRUE(LowerGather(f).ok()) << Message(LowerGather(f));
  SeFixture g = MakeSeFixture(false);
  const SeSource src = *MakeSeSource(g.source, g.layout, false, 0);
  g.gather = *PadGather(src, Npu40(), 32, Pads{}, PadMode::kConstant);
  g.gather.table[1] = *EncodeSePointer(16, 0);  // inside an SE of 32 channels
  EXPECT_REJECTS(LowerGather(g), "is not at a storage element of the source");
}

TEST(ValidationTest, SePointerEncodingLimits) {
  EXPECT_REJECTS(EncodeSePointer(8, 0), "se pointer: offset 8 must be 16-byte aligned");
  EXPECT_REJECTS(EncodeSePointer(-16, 0), "offset -16");
  EXPECT_REJECTS(EncodeSePointer(kSeMaxOffset + 16, 0), "at most 16777200");
  EXPECT_REJECTS(EncodeSePointer(0, 512), "se pointer: tile 512 must be in [0, 511]");
  EXPECT_REJECTS(EncodeSePointer(0, -1), "tile -1");
  EXPECT_TRUE(EncodeSePointer(kSeMaxOffset, kSeMaxTile).ok());
  EXPECT_REJECTS(MakeIdentitySeTable(2, 2, 16, 8, DType::kU8), "se_size * element bytes = 8 must be a multiple of 16");
  EXPECT_REJECTS(MakeIdentitySeTable(2, 2, 16, 16, DType::kU8, 0, 8), "offset 8 must be 16-byte aligned");
  // A source laid out beyond what DATA_PTR addresses.
  SourceLayout layout;
  layout.tiles = {{4, kSeMaxOffset}};
  const NceLayer base = SmallLayer();
  EXPECT_REJECTS(MakeSeSource(base.input, layout, false, 0).status().ok()
                     ? UpsampleNearestGather(*MakeSeSource(base.input, layout, false, 0), Npu40(), 0, 1, 1)
                     : StatusOr<SeGather>(InvalidArgument("")),
                 "beyond what DATA_PTR addresses");
}

TEST(ValidationTest, SeMapBitsMatchTheSlot) {
  SeFixture f = MakeSeFixture(true);
  ASSERT_TRUE(LowerGather(f, true).ok());
  // Virtual pixel (0, 1)'s first SE: flip one of its bits, so it is neither all 0 nor the slot's.
  f.gather.map[4] ^= 0x01;
  EXPECT_REJECTS(LowerGather(f, true), "gather.map: the bits of virtual pixel (0, 1) SE 0 must be all 0 or what its slot");
  SeFixture d = MakeSeFixture(false);
  d.gather.map[0] = 0x0F;
  EXPECT_REJECTS(LowerGather(d), "all 1 (the source is stored dense)");
}

TEST(ValidationTest, SeSizeRules) {
  EXPECT_REJECTS(CheckSeSize(Npu40(), 24, "se"), "se = 24 on NPU40XX: a storage-element size must be a multiple of 16 in [16, 8192]");
  EXPECT_REJECTS(CheckSeSize(Npu40(), 8208, "se"), "se = 8208");
  EXPECT_REJECTS(CheckSeSize(Npu40(), 0, "se"), "se = 0");
  EXPECT_REJECTS(CheckSeSize(Npu37(), 48, "se"), "se = 48 on NPU37XX: this target needs a power-of-two");
  EXPECT_TRUE(CheckSeSize(Npu40(), 48, "se").ok());
  const NceLayer base = SmallLayer();  // C = K = 32
  StorageOptions s;
  s.input_sparse = true;
  s.input_se_size = 48;
  EXPECT_REJECTS(LowerLayer(base, s, Npu40()), "input se_size = 48: must divide C = 32");
  s.input_se_size = 48;
  EXPECT_REJECTS(LowerLayer(base, s, Npu37()), "input se_size = 48 on NPU37XX");
  DpuTask task = Lower(base, false, true, false);
  task.output_sparse = true;
  task.output_se_size = 48;
  ExpectTaskRejected(task, "output se_size = 48: must divide K = 32");
  task.output_se_size = 8;
  ExpectTaskRejected(task, "output se_size = 8");
  PlanOptions po;
  po.input_se_size = 24;
  EXPECT_REJECTS(PlanLayer(base, Npu40(), po), "input se_size = 24");
  const SeSource src = *MakeSeSource(base.input, {}, false, 0);
  EXPECT_REJECTS(UpsampleNearestGather(src, Npu37(), 48, 2, 2), "se_size = 48 on NPU37XX");
  EXPECT_REJECTS(PadGather(src, Npu40(), 48, Pads{}, PadMode::kEdge), "se_size = 48: must divide C = 32");
  // The format functions only know "divides C".
  ActivationView v;
  v.tiles = {base.input.bytes};
  v.se_size = 0;
  ExpectGatherRejected(v, DType::kU8, {4, 4, 32}, "se_size = 0 must divide C = 32");
  EXPECT_REJECTS(EncodeSparseActivations(base.input, 0, 24), "se_size = 24 must divide C = 32");
}

TEST(ValidationTest, SeTableNeedsSparseStorage) {
  DpuTask task = Lower(SmallLayer(), false, false, true);
  task.input_map.clear();
  ExpectTaskRejected(task, "input: SE pointers need the sparse storage format");
}

TEST(ValidationTest, TileCountsAndSourceLayout) {
  DpuTask task = Lower(SmallLayer(), false, false, false);
  task.input_tiles.clear();
  ExpectTaskRejected(task, "input_tiles: 0 tile buffers, NPU40XX has 6 tiles");
  task = Lower(SmallLayer(), false, false, false, Npu37());
  task.input_tiles.resize(3, task.input_tiles[0]);
  ExpectTaskRejected(task, "input_tiles: 3 tile buffers, NPU37XX has 2 tiles", Npu37());
  ActivationView none;
  none.se_size = 16;
  ExpectGatherRejected(none, DType::kU8, {4, 4, 32}, "activations: no tile buffers given");
  // SE source layouts.
  const NceLayer base = SmallLayer();
  auto upsample = [&](const SourceLayout& layout) -> StatusOr<SeGather> {
    DPUEMU_ASSIGN_OR_RETURN(const SeSource src, MakeSeSource(base.input, layout, false, 0));
    return UpsampleNearestGather(src, Npu37(), 0, 2, 2);
  };
  SourceLayout l;
  l.tiles = {{1, 0}, {1, 0}, {2, 0}};
  EXPECT_REJECTS(upsample(l), "layout.tiles: 3 parts, NPU37XX has 2 tiles");
  l.tiles = {{4, 8}};
  EXPECT_REJECTS(upsample(l), "layout.tiles[0].base_offset = 8: must be a multiple of 16");
  l.tiles = {{0, 0}, {4, 0}};
  EXPECT_REJECTS(upsample(l), "layout.tiles[0].rows = 0: must be in [1, 4]");
  l.tiles = {{1, 0}, {1, 0}};
  EXPECT_REJECTS(upsample(l), "layout.tiles: rows add up to 2, the source has H = 4");
  SeFixture f = MakeSeFixture(false, 2);
  f.layout.tiles.pop_back();
  EXPECT_REJECTS(LowerGather(f), "layout.tiles: rows add up to 2, the source has H = 4");
}

TEST(ValidationTest, SizeProductsBoundedBeforeUse) {
  // Ops: elements of the input and of the weights.
  NceOp op = SmallLayer().op;
  op.g.h = 8192;
  op.g.w = 16384;
  op.g.c = 16;
  op.g.k = 16;
  EXPECT_TRUE(ValidateOp(op).ok()) << Message(ValidateOp(op));  // 2^31 elements: the limit
  op.g.h = 16384;
  EXPECT_REJECTS(ValidateOp(op), "input: h * w * c = 4294967296 elements exceeds 2^31");
  op = SmallLayer().op;
  op.g.h = op.g.w = 16;
  op.g.c = op.g.k = 16384;
  op.g.ky = op.g.kx = 11;
  EXPECT_REJECTS(ValidateOp(op), "weights: k * ky * kx * c = 32480690176 elements exceeds 2^28");
  // Decoders: shapes far beyond memory are refused, not multiplied into garbage.
  ActivationView v;
  v.tiles = {std::vector<uint8_t>(64)};
  v.se_size = 16;
  ExpectGatherRejected(v, DType::kU8, {1 << 20, 1 << 20, 1 << 20}, "must be positive with at most 2^31 elements");
  DpuTask t = Lower(SmallLayer(), true, false, false);
  t.op.g.c = int64_t{1} << 40;
  ExpectDecompressRejected(t, "must be positive with at most 2 GiB per output channel");
  t = Lower(SmallLayer(), true, false, false);
  t.op.g.ky = t.op.g.kx = 11;
  t.op.g.c = int64_t{1} << 20;  // 32 channels of 121 Mi taps x 1 byte > 2 GiB
  ExpectDecompressRejected(t, "weights: K = 32 channels of 126877696 bytes are larger than 2 GiB");
  // SE operations: source dims are bounded before they are multiplied (an unchecked H * fy or
  // (H - 1) * stride overflows int64: hw/se_ops.cc checks them first).
  SeSource src = *MakeSeSource(SmallLayer().input, {}, false, 0);
  src.h = kHuge;
  EXPECT_REJECTS(UpsampleNearestGather(src, Npu40(), 0, 4, 1), "source.h = ");
  EXPECT_REJECTS(InterpolateNearestGather(src, Npu40(), 0, 8, 8, CoordMode::kHalfPixel, NearestMode::kFloor), "source.h = ");
  EXPECT_REJECTS(PadGather(src, Npu40(), 0, Pads{}, PadMode::kReflect), "source.h = ");
  EXPECT_REJECTS(RollGather(src, Npu40(), 0, 1, 1), "source.h = ");
  src.h = 4;
  EXPECT_REJECTS(UpsampleNearestGather(src, Npu40(), 0, 16384, 1), "fy: virtual height H * fy = 65536 must be in [1, 16384]");
  EXPECT_REJECTS(PadGather(src, Npu40(), 0, Pads{0, 16384, 0, 0}, PadMode::kConstant), "pads: virtual height H + top + bottom = 16388");
  TransposedConv tc;
  tc.ky = tc.kx = 3;
  SeGather zi = *ZeroInsertGather(src, Npu40(), 16, tc);
  const NceLayer base = SmallLayer();
  zi.source_h = kHuge;
  tc.stride_y = 4;  // (H - 1) * 4 would overflow
  EXPECT_REJECTS(TransposedConvAsZMConv(tc, zi, base.op, base.quant, base.weights), "gather.source_h = ");
  tc.stride_y = 16384;
  EXPECT_REJECTS(ZeroInsertGather(src, Npu40(), 16, tc), "transposed: virtual height (H - 1) * stride_y");
  // A dilated plan must place every phase's outputs inside the output.
  NceLayer layer = SmallLayer();
  layer.op.g.pad_top = layer.op.g.pad_bottom = layer.op.g.pad_left = layer.op.g.pad_right = 2;
  DilatedPlan plan;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor out,
                              RunDilatedConv(layer, 2, 2, {}, {}, Npu40(), RunReference, &plan));
  std::vector<DpuOutput> outputs;
  for (const DilatedPhase& p : plan.phases) {
    outputs.push_back(DpuOutput{Tensor(layer.op.out_dtype, {p.out_h, p.out_w, 32}), {}, 0});
  }
  ASSERT_TRUE(AssembleDilatedOutput(plan, outputs, 0).ok());
  DilatedPlan bad = plan;
  bad.phases[1].out_x0 = plan.out_w;
  EXPECT_REJECTS(AssembleDilatedOutput(bad, outputs, 0), "plan.phases[1].out_x0 = ");
  bad = plan;
  bad.step_y = 40;
  EXPECT_REJECTS(AssembleDilatedOutput(bad, outputs, 0), "plan.phases[0].out_h = ");
  bad = plan;
  bad.out_h = kHuge;
  EXPECT_REJECTS(AssembleDilatedOutput(bad, outputs, 0), "plan.out_h = ");
  (void)out;
}

// Inputs the fuzzers found (tests/fuzz/corpus/*/regress-*): each used to overflow a product,
// loop for hours or be accepted; now each is an error naming the shape.
TEST(ValidationTest, FuzzerFindingsStayRejected) {
  const int64_t big = int64_t{1} << 40;
  auto weights = [](std::vector<int64_t> shape, size_t bytes) {
    Tensor w;
    w.dtype = DType::kI8;
    w.shape = std::move(shape);
    w.bytes.assign(bytes, 1);
    return w;
  };
  auto compress_rejects = [](const Tensor& w, const std::string& part) {
    EXPECT_REJECTS(CompressWeights(w, 0), part);
    EXPECT_REJECTS(simd::CompressWeights(w, 0), part);
  };
  auto encode_rejects = [](const Tensor& t, int64_t se, const std::string& part) {
    EXPECT_REJECTS(EncodeSparseActivations(t, 0, se), part);
    EXPECT_REJECTS(simd::EncodeSparseActivations(t, 0, se), part);
  };
  // Shape products past int64 (were signed overflow in Tensor::numel and CheckGather).
  compress_rejects(weights({big, big, 1, 16}, 16), "weights: 16 bytes for i8 shape");
  Tensor act = weights({big, big, 16}, 16);
  act.dtype = DType::kU8;
  encode_rejects(act, 16, "activations: 16 bytes for u8 shape");
  ActivationView v;
  v.tiles = {std::vector<uint8_t>(64)};
  v.se_size = 16;
  ExpectGatherRejected(v, DType::kU8, {1 << 30, 1 << 30, 1 << 30},
                       "must be positive with at most 2^31 elements");
  // A weight table for a K whose 16 * K overflows.
  EXPECT_REJECTS(DecodeWeightTable(std::vector<uint8_t>(32), std::numeric_limits<int64_t>::max() / 4),
                 "expected 16 per output channel (K = 2305843009213693951)");
  // Empty tensors: [2^48, 0, 0, 0] weights compressed channel by channel for hours; C = 0 let
  // any se_size divide it; a negative dimension beside a 0 matched the byte count.
  compress_rejects(weights({int64_t{1} << 48, 0, 0, 0}, 0), "must have positive dimensions");
  act = weights({1, 1, 0}, 0);
  act.dtype = DType::kFP16;
  encode_rejects(act, int64_t{1} << 62, "activations: shape [1, 1, 0] must have positive dimensions");
  act.shape = {0, 0, -4177919986};
  encode_rejects(act, 2, "must have positive dimensions");
  // Sizes from a shape: -1 for anything that is not a valid tensor.
  EXPECT_EQ(ShapeElements({3, 5, 7}), 105);
  EXPECT_EQ(ShapeBytes({3, 5, 7}, 4), 420);
  EXPECT_EQ(ShapeElements({}), 1);
  EXPECT_EQ(ShapeElements({big, 0}), 0);
  EXPECT_EQ(ShapeElements({0, -1}), -1);
  EXPECT_EQ(ShapeElements({big, big}), -1);
  EXPECT_EQ(ShapeBytes({int64_t{1} << 62}, 2), -1);
  EXPECT_FALSE(HasExactBytes(act));
  // A tensor built with an invalid shape has no bytes and is rejected, not allocated.
  const Tensor invalid(DType::kI8, {big, big, 1, 16});
  EXPECT_TRUE(invalid.bytes.empty());
  compress_rejects(invalid, "weights: 0 bytes for i8 shape [1099511627776, 1099511627776, 1, 16]");
}

bool SameTask(const DpuTask& a, const DpuTask& b) {
  return a.weights == b.weights && a.weight_map == b.weight_map &&
         a.weight_table == b.weight_table && a.input_tiles == b.input_tiles &&
         a.input_map == b.input_map && a.se_table == b.se_table &&
         a.input_se_size == b.input_se_size && a.output_sparse == b.output_sparse &&
         a.output_se_size == b.output_se_size && a.op.g.k == b.op.g.k && a.op.in_zp == b.op.in_zp;
}

// Nothing the caller passes is modified, by runs that succeed and by runs that fail.
TEST(ValidationTest, CallersDataIsNotModified) {
  for (bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "failing calls" : "succeeding calls");
    NceLayer layer = SmallLayer();
    DpuTask task = Lower(layer, true, true, true);
    if (fail) {
      task.weight_table.resize(task.weight_table.size() - 16);
      layer.quant.mult.pop_back();
    }
    const NceLayer layer_copy = layer;
    const DpuTask task_copy = task;
    EXPECT_EQ(RunReference(task, Npu40()).ok(), !fail);
    EXPECT_EQ(RunZMConv(task, Npu40()).ok(), !fail);
    EXPECT_EQ(DecompressWeights(task.weights, task.weight_map, task.weight_table, task.op.g,
                                task.op.w_dtype, task.op.w_zp).ok(), !fail);
    EXPECT_EQ(simd::GatherActivations(task.input_view(), DType::kU8, {4, 4, 32}, 0).ok(), true);
    EXPECT_TRUE(SameTask(task, task_copy));
    Plan plan;
    EXPECT_EQ(PlanAndRun(layer, Npu40(), {}, {}, &plan).ok(), !fail);
    EXPECT_EQ(simd::CompressWeights(layer.weights, layer.op.w_zp).ok(), true);
    EXPECT_EQ(simd::EncodeSparseActivations(layer.input, layer.op.in_zp, 16).ok(), true);
    EXPECT_TRUE(layer.input == layer_copy.input);
    EXPECT_TRUE(layer.weights == layer_copy.weights);
    EXPECT_EQ(layer.quant.mult, layer_copy.quant.mult);
    EXPECT_EQ(layer.quant.bias, layer_copy.quant.bias);
  }
}

TEST(ValidationTest, I32OutputRules) {
  LayerSpec spec;
  spec.h = spec.w = 3;
  spec.c = spec.k = 16;
  spec.out_dtype = DType::kI32;
  const NceLayer layer = *GenerateLayer(spec, 1);
  NceOp op = layer.op;
  op.ppe.out_zp = 3;
  EXPECT_REJECTS(ValidateOp(op), "ppe: output dtype i32 is acc + bias with no PPE");
  op = layer.op;
  op.ppe.leaky_relu = true;
  EXPECT_REJECTS(ValidateOp(op), "ppe: output dtype i32 is acc + bias with no PPE");
  op = layer.op;
  op.ppe.clamp_lo = 0;
  EXPECT_REJECTS(ValidateOp(op), "ppe.clamp: output dtype i32 is acc + bias with no PPE");
  DpuTask task = Lower(layer, false, false, false);
  task.output_sparse = true;
  ExpectTaskRejected(task, "output_sparse: output dtype i32 (acc + bias, no PPE) cannot be written sparse");
  PlanOptions po;
  po.output_sparse = true;
  RunOptions ro;
  ro.threads = 1;
  EXPECT_REJECTS(PlanAndRun(layer, Npu40(), po, ro), "output_sparse: output dtype i32");
}

// ---- Kernels and runtime ----

TEST(ValidationTest, PreparedWeightsMatchTheTask) {
  const NceLayer base = SmallLayer();
  const DpuTask task = Lower(base, true, false, false);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const PreparedWeights prepared, PreparedWeights::Create(task, Npu40()));
  DpuTask other = task;
  other.op.ppe.out_zp += 1;
  EXPECT_REJECTS(RunZMConv(other, Npu40(), {}, nullptr, &prepared),
                 "prepared weights: made from a different op or weight buffers than the task");
  other = task;
  other.weight_table[12] ^= 1;  // a scale word
  EXPECT_REJECTS(RunZMConv(other, Npu40(), {}, nullptr, &prepared), "prepared weights");
  EXPECT_TRUE(RunZMConv(task, Npu40(), {}, nullptr, &prepared).ok());
}

TEST(ValidationTest, ForcedKernelThatWouldChangeTheResult) {
  NceLayer layer = SmallLayer(DType::kFP16);
  StoreFloat(DType::kFP16, layer.input.bytes.data(), 0, std::numeric_limits<float>::infinity());
  const DpuTask task = Lower(layer, false, false, false);  // dense weights: the dense kernel's
  KernelOptions forced;
  forced.kernel = ConvKernel::kSparseWeights;
  EXPECT_REJECTS(RunZMConv(task, Npu40(), forced), "kernel: 'sparse-weights' would change the result");
  forced.kernel = ConvKernel::kDense;
  EXPECT_TRUE(RunZMConv(task, Npu40(), forced).ok());
  EXPECT_REJECTS(ParseConvKernel("turbo"), "kernel: unknown kernel 'turbo'");
}

TEST(ValidationTest, PlanMatchesTheLayerAndCoversItOnce) {
  const NceLayer layer = SmallLayer();
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Plan plan, PlanLayer(layer, Npu40(), {}));
  RunOptions ro;
  ro.threads = 1;
  EXPECT_REJECTS(RunLayer(layer, plan, Npu37(), ro), "plan: made for NPU40XX, running on NPU37XX");
  NceLayer other = SmallLayer();
  other.op.in_zp = (other.op.in_zp + 1) % 256;
  EXPECT_REJECTS(RunLayer(other, plan, Npu40(), ro), "plan: made for a layer with in_zp = ");
  EXPECT_REJECTS(RunLayer(layer, Plan{}, Npu40(), ro), "plan: empty");
  Plan bad = plan;
  bad.workloads.pop_back();
  EXPECT_REJECTS(RunLayer(layer, bad, Npu40(), ro), "are computed by no workload");
  bad = plan;
  bad.workloads[0].k_end -= 8;
  EXPECT_REJECTS(PreparedLayer::Create(layer, bad, Npu40(), ro), "must be a non-empty, 16-aligned range");
  bad = plan;
  bad.workloads.push_back(plan.workloads[0]);
  bad.workloads.back().row_end = bad.workloads.back().row_begin + 1;
  if (plan.workloads[0].row_end - plan.workloads[0].row_begin > 1) {
    EXPECT_REJECTS(RunLayer(layer, bad, Npu40(), ro), "an output is written by one workload only");
  }
  ro.threads = -1;
  EXPECT_REJECTS(RunLayer(layer, plan, Npu40(), ro), "threads = -1: must be >= 0");
}

TEST(ValidationTest, PlanOptionRanges) {
  const NceLayer layer = SmallLayer();
  PlanOptions po;
  po.tiles = 3;
  EXPECT_REJECTS(PlanLayer(layer, Npu37(), po), "tiles = 3: must be in [0, 2] on NPU37XX");
  po = PlanOptions{};
  po.tiles = -1;
  EXPECT_REJECTS(PlanLayer(layer, Npu40(), po), "tiles = -1");
  po = PlanOptions{};
  po.workloads_per_tile = 0;
  EXPECT_REJECTS(PlanLayer(layer, Npu40(), po), "workloads_per_tile = 0: must be in [1, 1024]");
  po = PlanOptions{};
  po.input_se_size = 64;
  EXPECT_REJECTS(PlanLayer(layer, Npu40(), po), "input se_size = 64: must divide C = 32");
  EXPECT_REJECTS(ParseWeightHeuristic("magic"), "heuristic: unknown weight-sparsity heuristic 'magic'");
  EXPECT_REJECTS(ParseSplitStrategy("diagonal"), "split: unknown split 'diagonal'");
}

TEST(ValidationTest, SliceRanges) {
  const NceLayer layer = SmallLayer();
  EXPECT_REJECTS(SliceLayer(layer, 8, 32, 0, 2), "slice: channels [8, 32)");
  EXPECT_REJECTS(SliceLayer(layer, 0, 20, 0, 2), "both multiples of 16");
  EXPECT_REJECTS(SliceLayer(layer, 32, 48, 0, 2), "need 0 <= k_begin < K = 32");
  EXPECT_REJECTS(SliceLayer(layer, 0, 32, 1, 1), "slice: output rows [1, 1)");
  EXPECT_REJECTS(SliceLayer(layer, 0, 32, 0, 5), "must be a non-empty range inside [0, OH = 4)");
  EXPECT_REJECTS(SliceLayer(layer, 0, 32, -1, 2), "slice: output rows [-1, 2)");
  EXPECT_TRUE(SliceLayer(layer, 16, 48, 0, 4).ok());  // channels past K are padding
}

TEST(ValidationTest, GatherRowRangeAndOutputSize) {
  const DpuTask task = Lower(SmallLayer(), false, true, true);
  const ActivationView v = task.input_view();
  std::vector<uint8_t> out(4 * 32);
  EXPECT_REJECTS(CheckGather(v, DType::kU8, {4, 4, 32}, 0, 3, 2), "rows: [3, 2) must lie within [0, H = 4]");
  EXPECT_REJECTS(simd::GatherRows(v, DType::kU8, {4, 4, 32}, 0, 0, 5, MutableByteSpan(out.data(), out.size())),
                 "rows: [0, 5)");
  EXPECT_REJECTS(simd::GatherRows(v, DType::kU8, {4, 4, 32}, 0, 1, 2, MutableByteSpan(out.data(), out.size() - 1)),
                 "out: 127 bytes, rows [1, 2) need 128");
  EXPECT_TRUE(simd::GatherRows(v, DType::kU8, {4, 4, 32}, 0, 1, 2, MutableByteSpan(out.data(), out.size())).ok());
}

}  // namespace
}  // namespace dpuemu
