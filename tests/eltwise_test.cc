// Eltwise (NCEEltwise): the reference against a textbook implementation on dense arrays, the
// Highway kernel against the reference on every compiled target, the compiler's register values
// (EltwiseQuantFromScales), and malformed ops refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/eltwise_quant.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"
#include "tests/hwy_targets.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

// ---- Textbook: the eltwise on the layer's dense arrays, written from the definition ----

// n / 2^s rounded half to even, by integer division (not shifts).
int64_t DivPow2HalfEven(int64_t n, int s) {
  if (s >= 62) return 0;
  const int64_t d = int64_t{1} << s;
  int64_t q = n / d, r = n % d;  // truncated
  if (r < 0) { q -= 1; r += d; }  // floor
  if (2 * r > d || (2 * r == d && (q % 2 != 0))) q += 1;
  return q;
}

Tensor TextbookEltwise(const NceLayer& layer) {
  const NceOp& op = layer.op;
  const EltwiseParams& e = op.eltwise;
  const ChannelQuant& q = layer.quant;
  Tensor out(op.out_dtype, layer.input.shape);
  const int64_t n = layer.input.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (!IsFloat(op.in_dtype)) {
      const int64_t a = LoadInt(op.in_dtype, layer.input.bytes.data(), i) - op.in_zp;
      const int64_t b = LoadInt(e.in2_dtype, layer.input2.bytes.data(), i) - e.in2_zp;
      const int64_t acc = e.type == EltwiseType::kAdd   ? a * e.in1_mult + b * e.in2_mult
                          : e.type == EltwiseType::kSub ? a * e.in1_mult - b * e.in2_mult
                                                        : a * b;
      if (op.out_dtype == DType::kI32) {
        StoreInt(op.out_dtype, out.bytes.data(), i, static_cast<int32_t>(acc + q.bias[0]));
        continue;
      }
      int64_t v = (acc + q.bias[0]) * q.mult[0];
      int s = q.shift[0];
      if (v < 0 && op.ppe.leaky_relu) {
        v *= op.ppe.lrelu_mult;
        s += op.ppe.lrelu_shift;
      }
      const double lo = std::max<double>(op.ppe.clamp_lo, DTypeMin(op.out_dtype));
      const double hi = std::min<double>(op.ppe.clamp_hi, DTypeMax(op.out_dtype));
      const double r = static_cast<double>(DivPow2HalfEven(v, s) + op.ppe.out_zp);
      StoreInt(op.out_dtype, out.bytes.data(), i, static_cast<int32_t>(std::min(std::max(r, lo), hi)));
    } else {
      const float a = LoadFloat(op.in_dtype, layer.input.bytes.data(), i);
      const float b = LoadFloat(e.in2_dtype, layer.input2.bytes.data(), i);
      float acc = e.type == EltwiseType::kAdd ? a + b : e.type == EltwiseType::kSub ? a - b : a * b;
      if (acc != acc) acc = std::numeric_limits<float>::quiet_NaN();
      float v = (acc + q.fbias[0]) * q.scale[0];
      if (op.ppe.leaky_relu && v < 0) v *= op.ppe.lrelu_alpha;
      double lo = op.ppe.clamp_lo, hi = op.ppe.clamp_hi;
      if (op.out_dtype == DType::kFP16) {
        lo = std::max(lo, -65504.0);
        hi = std::min(hi, 65504.0);
        lo = std::min(lo, 65504.0);
        hi = std::max(hi, -65504.0);
      }
      if (v < lo) v = static_cast<float>(lo);
      if (v > hi) v = static_cast<float>(hi);
      StoreFloat(op.out_dtype, out.bytes.data(), i, v);
    }
  }
  return out;
}

// ---- Generated layers ----

struct Case {
  NceLayer layer;
  StorageOptions opts;
  std::string what;
};

Case MakeCase(uint64_t seed) {
  Rng rng(seed);
  LayerSpec s;
  s.kind = NceKind::kEltwise;
  s.name = "gen";
  s.h = rng.Int(1, 9);
  s.w = rng.Int(1, 9);
  s.c = 16 * rng.Int(1, 5);
  const EltwiseType types[] = {EltwiseType::kAdd, EltwiseType::kSub, EltwiseType::kMult};
  s.eltwise = types[rng.Int(0, 2)];
  const DType ins[] = {DType::kU8, DType::kI8, DType::kFP16};
  s.in_dtype = ins[rng.Int(0, 2)];
  if (IsFloat(s.in_dtype)) {
    const DType outs[] = {DType::kFP16, DType::kBF16, DType::kFP32};
    s.out_dtype = outs[rng.Int(0, 2)];
  } else {
    const DType outs[] = {DType::kU8, DType::kI8, DType::kI32, DType::kU8, DType::kI8};
    s.out_dtype = outs[rng.Int(0, 4)];
  }
  s.leaky_relu = rng.Int(0, 2) == 0;
  s.zero_points = rng.Int(0, 3) != 0;
  s.input_sparsity = rng.Int(0, 1) ? 0.0 : 0.5;
  Case c;
  auto made = GenerateLayer(s, seed);
  EXPECT_TRUE(made.ok()) << made.status().ToString();
  c.layer = std::move(made).value();
  NceOp& op = c.layer.op;
  // A bias (GenerateLayer gives the kinds without a weight table none): the PPE registers have one.
  if (rng.Int(0, 1)) {
    const double acc = IsFloat(op.in_dtype) ? 1.0 : 74.0 * std::max(op.eltwise.in1_mult, op.eltwise.in2_mult);
    const int32_t bias = static_cast<int32_t>(rng.Int(-4, 4) * acc);
    const float fbias = static_cast<float>(rng.Int(-8, 8)) / 8;
    for (int64_t k = 0; k < op.g.k; ++k) {
      if (IsFloat(op.in_dtype)) {
        c.layer.quant.fbias[k] = fbias;
      } else {
        c.layer.quant.bias[k] = bias;
      }
    }
  }
  // Registers at their extremes now and then: the SIMD kernel's exactness limits.
  if (!IsFloat(op.in_dtype) && rng.Int(0, 4) == 0) {
    if (op.eltwise.type != EltwiseType::kMult) {
      op.eltwise.in1_mult = rng.Int(0, 1) ? 65535 : static_cast<int32_t>(rng.Int(0, 65535));
      op.eltwise.in2_mult = rng.Int(0, 1) ? 65535 : static_cast<int32_t>(rng.Int(0, 65535));
    }
    const int32_t mult = static_cast<int32_t>(rng.Int(0, 65535));
    const int32_t shift = static_cast<int32_t>(rng.Int(0, 63));
    const int32_t bias = static_cast<int32_t>(rng.Int(INT32_MIN, INT32_MAX) >> rng.Int(0, 20));
    for (int64_t k = 0; k < op.g.k; ++k) {
      c.layer.quant.mult[k] = mult;
      c.layer.quant.shift[k] = shift;
      c.layer.quant.bias[k] = bias;
    }
    if (op.ppe.leaky_relu) op.ppe.lrelu_mult = static_cast<int32_t>(rng.Int(0, 2047));
  }
  if (op.out_dtype != DType::kI32 && rng.Int(0, 3) == 0) {
    const double lo = IsFloat(op.out_dtype) ? -rng.Uniform() * 4 : static_cast<double>(std::max<int64_t>(op.ppe.out_zp - rng.Int(0, 60), DTypeMin(op.out_dtype)));
    op.ppe.clamp_lo = lo;
    op.ppe.clamp_hi = lo + (IsFloat(op.out_dtype) ? rng.Uniform() * 8 : static_cast<double>(rng.Int(0, 120)));
  }
  // Float specials: infinities, NaN, values beyond the fp16 range after scaling.
  if (IsFloat(op.in_dtype) && rng.Int(0, 3) == 0) {
    const float specials[] = {std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(),
                              std::numeric_limits<float>::quiet_NaN(), 65504.0f, -65504.0f, 6e-8f, -0.0f};
    for (Tensor* t : {&c.layer.input, &c.layer.input2}) {
      for (int j = 0; j < 12; ++j) {
        StoreFloat(t->dtype, t->bytes.data(), rng.Int(0, t->numel() - 1), specials[rng.Int(0, 6)]);
      }
    }
    if (rng.Int(0, 1)) for (float& v : c.layer.quant.scale) v = 3000.0f;
  }
  c.opts.output_sparse = op.out_dtype != DType::kI32 && rng.Int(0, 2) == 0;
  c.what = std::string(EltwiseTypeName(op.eltwise.type)) + " " + DTypeName(op.in_dtype) + "->" +
           DTypeName(op.out_dtype) + " [" + std::to_string(op.g.h) + "," + std::to_string(op.g.w) +
           "," + std::to_string(op.g.c) + "]" + (op.ppe.leaky_relu ? " leaky" : "") +
           (c.opts.output_sparse ? " sparse-out" : "");
  return c;
}

TEST(EltwiseTest, ReferenceMatchesTextbook) {
  const uint64_t base = BaseSeed(13001);
  for (uint64_t i = 0; i < 300; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE(SeedTrace(seed));
    Case c = MakeCase(seed);
    ASSERT_FALSE(::testing::Test::HasFailure());
    SCOPED_TRACE(c.what);
    const Target& t = (i % 2) ? Npu40() : Npu37();
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(c.layer, c.opts, t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunReference(task, t));
    EXPECT_EQ(out.sparse(), c.opts.output_sparse);
    DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor got, DenseOutput(out, c.layer.op.ppe.out_zp));
    const std::string diff = FirstDifference(TextbookEltwise(c.layer), got);
    ASSERT_TRUE(diff.empty()) << diff;
  }
}

TEST(EltwiseTest, SimdMatchesReferenceOnEveryTarget) {
  const uint64_t base = BaseSeed(13501);
  std::vector<Case> cases;
  std::vector<DpuTask> tasks;
  std::vector<DpuOutput> refs;
  for (uint64_t i = 0; i < 200; ++i) {
    cases.push_back(MakeCase(base + i));
    ASSERT_FALSE(::testing::Test::HasFailure()) << SeedTrace(base + i);
    const Target& t = (i % 2) ? Npu40() : Npu37();
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(cases.back().layer, cases.back().opts, t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, t));
    tasks.push_back(std::move(task));
    refs.push_back(std::move(ref));
  }
  ForEachHighwayTarget([&](const char* target) {
    for (size_t i = 0; i < cases.size(); ++i) {
      SCOPED_TRACE(SeedTrace(base + i) + " " + cases[i].what);
      const Target& t = (i % 2) ? Npu40() : Npu37();
      KernelReport rep;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunNce(tasks[i], t, {}, &rep));
      ASSERT_EQ(rep.isa, target);
      ASSERT_EQ(out.map, refs[i].map);
      ASSERT_EQ(out.data.bytes, refs[i].data.bytes)
          << FirstDifference(refs[i].data, out.data) << " (" << rep.reason << ")";
    }
  });
}

// IntFast's fp32 rounding near ties and clamp bounds: every shift, multipliers with low bits set
// (ties k + 1/2 at small shifts, sums beyond 2^24 that fp32 rounds), large biases.
TEST(EltwiseTest, IntegerFastPathAtTiesAndBoundsOnEveryTarget) {
  const uint64_t base = BaseSeed(13901);
  std::vector<DpuTask> tasks;
  std::vector<DpuOutput> refs;
  for (int shift = 0; shift <= 63; ++shift) {
    const uint64_t seed = base + static_cast<uint64_t>(shift);
    Rng rng(seed);
    LayerSpec s;
    s.kind = NceKind::kEltwise;
    s.h = 8;
    s.w = 8;
    s.c = 32;
    s.eltwise = shift % 3 == 0 ? EltwiseType::kMult : shift % 3 == 1 ? EltwiseType::kAdd : EltwiseType::kSub;
    s.in_dtype = shift % 2 ? DType::kI8 : DType::kU8;
    s.out_dtype = shift % 4 < 2 ? DType::kU8 : DType::kI8;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(s, seed));
    if (s.eltwise != EltwiseType::kMult) {
      layer.op.eltwise.in1_mult = static_cast<int32_t>(rng.Int(1, 65535)) | 1;
      layer.op.eltwise.in2_mult = static_cast<int32_t>(rng.Int(1, 65535)) | 1;
    }
    // |acc| * mult * 2^-shift around the output range: most lanes unclamped.
    const double acc = s.eltwise == EltwiseType::kMult ? 5000.0 : 74.0 * 40000;
    const int32_t mult = static_cast<int32_t>(
        std::min(65535.0, std::max(1.0, std::ldexp(100.0 / acc, shift)))) | 1;
    layer.quant.mult.assign(32, mult);
    layer.quant.shift.assign(32, shift);
    layer.quant.bias.assign(32, static_cast<int32_t>(rng.Int(-1000000, 1000000)));
    const Target& t = Npu40();
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, {}, t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, t));
    tasks.push_back(std::move(task));
    refs.push_back(std::move(ref));
  }
  // Just off a tie, closer than fp32 resolves: t = (2k + 1) * 2^25 +- 1 with shift 26 is
  // k + 1/2 +- 2^-26, which fp32 rounds onto the tie itself (then to even: wrong half the time).
  for (int k : {10, 11}) {
    for (int d : {-1, 1}) {
      LayerSpec s;
      s.kind = NceKind::kEltwise;
      s.h = s.w = 2;
      s.c = 16;
      DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(s, 3));
      layer.op.eltwise.in1_mult = layer.op.eltwise.in2_mult = 1;
      layer.op.ppe.out_zp = 0;
      for (int64_t j = 0; j < layer.input.numel(); ++j) {
        layer.input.bytes[j] = static_cast<uint8_t>(layer.op.in_zp);
        layer.input2.bytes[j] = static_cast<uint8_t>(layer.op.eltwise.in2_zp);
      }
      layer.quant.mult.assign(16, 1);
      layer.quant.shift.assign(16, 26);
      layer.quant.bias.assign(16, (2 * k + 1) * (1 << 25) + d);
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, {}, Npu40()));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, Npu40()));
      ASSERT_EQ(ref.data.bytes[0], d > 0 ? k + 1 : k);
      tasks.push_back(std::move(task));
      refs.push_back(std::move(ref));
    }
  }
  ForEachHighwayTarget([&](const char*) {
    for (size_t i = 0; i < tasks.size(); ++i) {
      SCOPED_TRACE("case " + std::to_string(i) + " " + SeedTrace(base + i));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunNce(tasks[i], Npu40()));
      ASSERT_EQ(out.data.bytes, refs[i].data.bytes) << FirstDifference(refs[i].data, out.data);
    }
  });
}

// ---- The compiler's values ----

TEST(EltwiseTest, QuantFromScalesReproducesTheCompilersLitTests) {
  // EltwiseAddWithDifferentScales (convert_IE_to_VPU_NCE_37XX_40XX.mlir): input scales
  // 0.04936 / 0.01013, output 0.05328 -> quant_mult 19219, quant_shift 29, in1 25877, in2 5312
  // (the input multipliers move to the smaller shift: 25877 << 2 would not fit 16 bits).
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      EltwiseQuant q, EltwiseQuantFromScales(0.049356617647058822, 0.01013327205882353,
                                             0.053278186274509802));
  EXPECT_EQ(q.in1_mult, 25877);
  EXPECT_EQ(q.in2_mult, 5312);
  EXPECT_EQ(q.mult, 19219);
  EXPECT_EQ(q.shift, 29);
  // AddWithDifferentScales (same file): 0.0392 and 0.0784 into an fp16 output (scale 1): the
  // multipliers move to the larger shift -> quant_mult 16384, shift 33, in1 20560, in2 41120.
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      EltwiseQuant q2, EltwiseQuantFromScales(0.039215686274509803, 0.078431372549019607, 1.0));
  EXPECT_EQ(q2.in1_mult, 20560);
  EXPECT_EQ(q2.in2_mult, 41120);
  EXPECT_EQ(q2.mult, 16384);
  EXPECT_EQ(q2.shift, 33);
  // QuantizationApproximation: truncated 15-bit mantissa; >= 2^15 needs a post-shift (refused).
  DPUEMU_ASSERT_OK_AND_ASSIGN(QuantMultShift a, ApproximateScale(0.1, "x"));
  EXPECT_EQ(a.mult, 26214);  // 0.8 * 2^15 = 26214.4
  EXPECT_EQ(a.shift, 18);
  EXPECT_FALSE(ApproximateScale(40000.0, "x").ok());
  EXPECT_FALSE(EltwiseQuantFromScales(0.05, 0.05, 0.0).ok());
  // A shift sum beyond the 6-bit register at both alignments.
  const auto far = EltwiseQuantFromScales(1e-12, 1e-12, 1e6);
  ASSERT_FALSE(far.ok());
  EXPECT_TRUE(Contains(far.status().ToString(), "register range")) << far.status().ToString();
}

// The registers of the LIT test on a whole layer: the DPU's result is the real-valued sum
// requantised (within one unit: the multipliers are truncated approximations).
TEST(EltwiseTest, CompilerRegistersComputeTheQuantizedSum) {
  const double s1 = 0.049356617647058822, s2 = 0.01013327205882353, so = 0.053278186274509802;
  DPUEMU_ASSERT_OK_AND_ASSIGN(EltwiseQuant q, EltwiseQuantFromScales(s1, s2, so));
  LayerSpec s;
  s.kind = NceKind::kEltwise;
  s.h = 28;
  s.w = 28;
  s.c = 64;
  s.zero_points = false;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(s, 5));
  layer.op.in_zp = 3;
  layer.op.eltwise.in2_zp = 130;
  layer.op.ppe.out_zp = 7;
  layer.op.eltwise.in1_mult = q.in1_mult;
  layer.op.eltwise.in2_mult = q.in2_mult;
  layer.quant.mult.assign(64, q.mult);
  layer.quant.shift.assign(64, q.shift);
  layer.quant.bias.assign(64, 0);
  for (const Target* t : {&Npu37(), &Npu40()}) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, {}, *t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunNce(task, *t));
    int exact = 0;
    for (int64_t i = 0; i < layer.input.numel(); ++i) {
      const double real = s1 * (LoadInt(DType::kU8, layer.input.bytes.data(), i) - 3) +
                          s2 * (LoadInt(DType::kU8, layer.input2.bytes.data(), i) - 130);
      const double want = std::min(255.0, std::max(0.0, std::nearbyint(real / so) + 7));
      const int32_t got = LoadInt(DType::kU8, out.data.bytes.data(), i);
      ASSERT_LE(std::fabs(got - want), 1.0) << "element " << i;
      exact += got == want;
    }
    EXPECT_GT(exact, layer.input.numel() * 9 / 10);
  }
}

// ---- Malformed ----

NceLayer ValidLayer(DType dtype = DType::kU8) {
  LayerSpec s;
  s.kind = NceKind::kEltwise;
  s.h = s.w = 4;
  s.c = 32;
  s.in_dtype = dtype;
  s.out_dtype = IsFloat(dtype) ? DType::kFP16 : DType::kU8;
  return GenerateLayer(s, 1).value();
}

void ExpectRefused(const NceLayer& layer, const std::string& part, StorageOptions opts = {}) {
  for (const Target* t : {&Npu37(), &Npu40()}) {
    const auto r = LowerLayer(layer, opts, *t);
    ASSERT_FALSE(r.ok()) << "accepted; expected an error with '" << part << "'";
    EXPECT_TRUE(Contains(r.status().ToString(), part)) << r.status().ToString();
  }
}

TEST(EltwiseTest, MalformedOpsAreRefused) {
  {
    LayerSpec s;
    s.kind = NceKind::kEltwise;
    s.h = s.w = 2;
    s.c = 16;
    s.in_dtype = DType::kBF16;
    s.out_dtype = DType::kBF16;
    const auto r = GenerateLayer(s, 1);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(Contains(r.status().ToString(), "isNCEEltwiseSupported")) << r.status().ToString();
  }
  NceLayer l = ValidLayer();
  DPUEMU_ASSERT_OK(LowerLayer(l, {}, Npu37()).status());
  { NceLayer b = l; b.op.eltwise.in2_dtype = DType::kI8; b.input2.dtype = DType::kI8; ExpectRefused(b, "input2 dtype"); }
  { NceLayer b = l; b.op.eltwise.in2_zp = 256; ExpectRefused(b, "input2 zero_point"); }
  { NceLayer b = l; b.op.eltwise.in1_mult = 65536; ExpectRefused(b, "in1_mult"); }
  { NceLayer b = l; b.op.eltwise.in2_mult = -1; ExpectRefused(b, "in2_mult"); }
  { NceLayer b = l; b.op.eltwise.type = EltwiseType::kMult; b.op.eltwise.in1_mult = 2; b.op.eltwise.in2_mult = 1; ExpectRefused(b, "must be 1"); }
  { NceLayer b = l; b.op.g.ky = b.op.g.kx = 3; b.op.g.pad_top = b.op.g.pad_bottom = b.op.g.pad_left = b.op.g.pad_right = 1; ExpectRefused(b, "1x1"); }
  { NceLayer b = l; b.quant.mult[5] += 1; ExpectRefused(b, "quant.mult[5]"); }
  { NceLayer b = l; b.quant.bias[31] += 1; ExpectRefused(b, "quant.bias[31]"); }
  { NceLayer b = l; b.input2 = Tensor(DType::kU8, {4, 4, 16}); ExpectRefused(b, "input2"); }
  { NceLayer b = l; b.op.g.k = 64; ExpectRefused(b, "k must equal c"); }
  {
    StorageOptions o;
    o.input_sparse = true;
    ExpectRefused(l, "E#66913", o);
    o.input_sparse = false;
    o.input_se_table = true;
    ExpectRefused(l, "E#66913", o);
  }
  NceLayer f = ValidLayer(DType::kFP16);
  DPUEMU_ASSERT_OK(LowerLayer(f, {}, Npu40()).status());
  { NceLayer b = f; b.op.eltwise.in2_zp = 1; ExpectRefused(b, "float types have no zero point"); }
  { NceLayer b = f; b.op.eltwise.in1_mult = 3; ExpectRefused(b, "no input multipliers"); }
  { NceLayer b = f; b.quant.scale[1] *= 2; ExpectRefused(b, "quant.scale[1]"); }
  { NceLayer b = f; b.op.out_dtype = DType::kU8; ExpectRefused(b, "output dtype"); }
  // Tasks edited after lowering: the registers and the second input are checked again.
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(l, {}, Npu40()));
  {
    DpuTask b = task;
    b.ppe_regs.shift = 64;
    const auto r = RunNce(b, Npu40());
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(Contains(r.status().ToString(), "ppe_regs.shift")) << r.status().ToString();
    EXPECT_FALSE(RunReference(b, Npu40()).ok());
  }
  {
    DpuTask b = task;
    b.ppe_regs.mult = 70000;
    EXPECT_FALSE(RunNce(b, Npu40()).ok());
  }
  {
    DpuTask b = task;
    b.input2.pop_back();
    const auto r = RunNce(b, Npu40());
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(Contains(r.status().ToString(), "input2")) << r.status().ToString();
  }
}

}  // namespace
}  // namespace dpuemu
