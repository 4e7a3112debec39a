// Tests of the target table (hw/target.h), the default SE size (hw/dpu_task.h) and the layer
// description (hw/layer.h): validation names the bad field, generation is deterministic and
// honours the requested sparsity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/target.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

const Target& N37() { return GetTarget(TargetId::kNPU37XX); }
const Target& N40() { return GetTarget(TargetId::kNPU40XX); }

void ExpectError(const Status& s, const std::string& field) {
  ASSERT_FALSE(s.ok()) << "expected an error naming '" << field << "'";
  EXPECT_NE(s.message().find(field), std::string::npos)
      << "message does not name '" << field << "': " << s.message();
}

TEST(Target, Table) {
  EXPECT_STREQ(N37().name, "NPU37XX");
  EXPECT_STREQ(N37().generation, "VPU2.7");
  EXPECT_EQ(N37().tiles, 2);
  EXPECT_EQ(N37().cmx_bytes_per_tile, 1936 * 1024);
  EXPECT_TRUE(N37().se_size_power_of_two);
  EXPECT_FALSE(N37().se_ptrs_enabled_by_default);
  EXPECT_STREQ(N40().name, "NPU40XX");
  EXPECT_STREQ(N40().generation, "VPU4.0");
  EXPECT_EQ(N40().tiles, 6);
  EXPECT_EQ(N40().cmx_bytes_per_tile, 1440 * 1024);
  EXPECT_FALSE(N40().se_size_power_of_two);
  EXPECT_TRUE(N40().se_ptrs_enabled_by_default);
  for (const Target* t : AllTargets()) {
    EXPECT_EQ(t->dpus_per_tile, 1);
    EXPECT_EQ(t->macs_per_cycle, 2048);
    EXPECT_EQ(t->cmx_granularity, 16);
    EXPECT_EQ(&GetTarget(t->id), t);
  }
  ASSERT_EQ(AllTargets().size(), 2u);
}

TEST(Target, ByName) {
  struct Case {
    const char* name;
    TargetId id;
  };
  for (const Case& c : {Case{"NPU37XX", TargetId::kNPU37XX}, Case{"VPU2.7", TargetId::kNPU37XX},
                        Case{"NPU40XX", TargetId::kNPU40XX}, Case{"VPU4.0", TargetId::kNPU40XX}}) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Target* t, TargetByName(c.name));
    EXPECT_EQ(t, &GetTarget(c.id)) << c.name;
  }
  for (const char* bad : {"NPU30XX", "npu37xx", "VPU2", ""}) {
    const StatusOr<const Target*> t = TargetByName(bad);
    ExpectError(t.status(), "target");
    ExpectError(t.status(), std::string("'") + bad + "'");
  }
}

TEST(Target, SeSizeRules) {
  for (int64_t ok : {16, 32, 64, 128, 4096}) {
    EXPECT_TRUE(CheckSeSize(N37(), ok, "se").ok()) << ok;
    EXPECT_TRUE(CheckSeSize(N40(), ok, "se").ok()) << ok;
  }
  // NPU37XX's se_z_split cannot encode 8192 (calc_se_size); NPU40XX can.
  EXPECT_TRUE(CheckSeSize(N40(), 8192, "se").ok());
  ExpectError(CheckSeSize(N37(), 8192, "input se_size"), "input se_size = 8192 on NPU37XX");
  ExpectError(CheckSeSize(N37(), 8192, "input se_size"), "calc_se_size");
  // The fp16/bf16 IC = 8192 SE = 4096 erratum binds sparse input read without an SE table only.
  for (const Target* t : AllTargets()) {
    for (DType d : {DType::kFP16, DType::kBF16}) {
      ExpectError(CheckInputSeSize(*t, 4096, d, 8192, true, "input se_size"), "E#102555");
      EXPECT_TRUE(CheckInputSeSize(*t, 4096, d, 8192, false, "se").ok());
      EXPECT_TRUE(CheckInputSeSize(*t, 4096, d, 4096, true, "se").ok());
      EXPECT_TRUE(CheckInputSeSize(*t, 2048, d, 8192, true, "se").ok());
    }
    EXPECT_TRUE(CheckInputSeSize(*t, 4096, DType::kU8, 8192, true, "se").ok());
  }
  // NPU37XX needs a power of two; NPU40XX only a multiple of 16.
  for (int64_t v : {48, 80, 320, 4080}) {
    ExpectError(CheckSeSize(N37(), v, "input se_size"), "input se_size = " + std::to_string(v));
    ExpectError(CheckSeSize(N37(), v, "input se_size"), "power-of-two");
    EXPECT_TRUE(CheckSeSize(N40(), v, "se").ok()) << v;
  }
  // Both: multiples of 16 in [16, 8192].
  for (const Target* t : AllTargets()) {
    for (int64_t v : {8, 8208, 0, -16, 24, 16384}) {
      ExpectError(CheckSeSize(*t, v, "output se_size"), "output se_size = " + std::to_string(v));
      ExpectError(CheckSeSize(*t, v, "output se_size"), "multiple of 16");
    }
  }
}

TEST(Target, DefaultSeSize) {
  struct Case {
    int64_t channels, n37, n40;
  };
  for (const Case& c : {Case{320, 64, 320}, Case{16, 16, 16}, Case{48, 16, 48}, Case{80, 16, 80},
                        Case{96, 32, 96}, Case{256, 256, 256}, Case{8192, 4096, 8192},
                        Case{16384, 4096, 8192}, Case{8208, 16, 2736}, Case{12288, 4096, 6144}}) {
    EXPECT_EQ(DefaultSeSize(N37(), c.channels), c.n37) << c.channels;
    EXPECT_EQ(DefaultSeSize(N40(), c.channels), c.n40) << c.channels;
    for (const Target* t : AllTargets()) {
      const int64_t se = DefaultSeSize(*t, c.channels);
      EXPECT_EQ(c.channels % se, 0);
      EXPECT_TRUE(CheckSeSize(*t, se, "se").ok());
    }
  }
}

TEST(Target, DefaultSeSizeAvoidsTheErratum) {
  // fp16/bf16 with IC = 8192: NPU37XX's largest legal size, 4096, is the erratum's.
  for (DType d : {DType::kFP16, DType::kBF16}) {
    EXPECT_EQ(DefaultSeSize(N37(), 8192, d), 2048);
    EXPECT_EQ(DefaultSeSize(N40(), 8192, d), 8192);
  }
  EXPECT_EQ(DefaultSeSize(N37(), 8192, DType::kU8), 4096);
}

// ---------------------------------------------------------------------------------------------
// Layer validation

NceLayer SmallLayer(DType in, DType w, DType out) {
  LayerSpec s;
  s.name = "small";
  s.h = 5;
  s.w = 7;
  s.c = 32;
  s.k = 16;
  s.ky = s.kx = 3;
  s.in_dtype = in;
  s.w_dtype = w;
  s.out_dtype = out;
  s.leaky_relu = !IsFloat(in) && out != DType::kI32;
  return GenerateLayer(s, 1).value();
}

struct OpCase {
  const char* what;
  std::function<void(NceOp&)> mutate;
  const char* field;
};

TEST(ValidateOp, AcceptsTheBaseOps) {
  for (DType out : {DType::kU8, DType::kI8, DType::kI32}) {
    DPUEMU_ASSERT_OK(ValidateOp(SmallLayer(DType::kU8, DType::kI8, out).op));
  }
  for (DType f : {DType::kFP16, DType::kBF16}) {
    for (DType out : {DType::kFP16, DType::kBF16, DType::kFP32}) {
      DPUEMU_ASSERT_OK(ValidateOp(SmallLayer(f, f, out).op));
    }
  }
}

TEST(ValidateOp, IntegerPathRejectsEachBadField) {
  const NceOp base = SmallLayer(DType::kU8, DType::kI8, DType::kU8).op;
  DPUEMU_ASSERT_OK(ValidateOp(base));
  const std::vector<OpCase> cases = {
      {"C=20", [](NceOp& o) { o.g.c = 20; }, "c (input channels) = 20"},
      {"C=0", [](NceOp& o) { o.g.c = 0; }, "c (input channels)"},
      {"K=0", [](NceOp& o) { o.g.k = 0; }, "k (output channels) = 0"},
      {"K=24", [](NceOp& o) { o.g.k = 24; }, "k (output channels) = 24"},
      {"H=0", [](NceOp& o) { o.g.h = 0; }, "h (input height)"},
      {"W=-1", [](NceOp& o) { o.g.w = -1; }, "w (input width)"},
      {"ky=12", [](NceOp& o) { o.g.ky = 12; }, "ky (kernel height) = 12"},
      {"kx=12", [](NceOp& o) { o.g.kx = 12; }, "kx (kernel width) = 12"},
      {"kx=0", [](NceOp& o) { o.g.kx = 0; }, "kx (kernel width) = 0"},
      {"stride_y=9", [](NceOp& o) { o.g.stride_y = 9; }, "stride_y = 9"},
      {"stride_x=9", [](NceOp& o) { o.g.stride_x = 9; }, "stride_x = 9"},
      {"stride_x=0", [](NceOp& o) { o.g.stride_x = 0; }, "stride_x = 0"},
      {"pad_top=256", [](NceOp& o) { o.g.pad_top = 256; }, "pad_top"},
      {"pad_right=-1", [](NceOp& o) { o.g.pad_right = -1; }, "pad_right"},
      {"kernel taller than padded input",
       [](NceOp& o) {
         o.g.ky = 9;
         o.g.pad_top = o.g.pad_bottom = 1;
       },
       "ky (kernel height) = 9"},
      {"in_zp out of u8", [](NceOp& o) { o.in_zp = 256; }, "input zero_point"},
      {"w_zp out of i8", [](NceOp& o) { o.w_zp = -129; }, "weights zero_point"},
      {"out_zp out of u8", [](NceOp& o) { o.ppe.out_zp = -1; }, "ppe.out_zero_point"},
      {"fp16 weights with u8 input", [](NceOp& o) { o.w_dtype = DType::kFP16; }, "weights dtype"},
      {"fp16 output for u8 input", [](NceOp& o) { o.out_dtype = DType::kFP16; }, "output dtype"},
      {"i32 input", [](NceOp& o) { o.in_dtype = DType::kI32; }, "input dtype"},
      {"i32 output with zero point",
       [](NceOp& o) {
         o.out_dtype = DType::kI32;
         o.ppe.leaky_relu = false;
         o.ppe.out_zp = 3;
       },
       "out_zero_point"},
      {"lrelu mult", [](NceOp& o) { o.ppe.lrelu_mult = 2048; }, "ppe.leaky_relu.mult"},
      {"lrelu shift", [](NceOp& o) { o.ppe.lrelu_shift = 32; }, "ppe.leaky_relu.shift"},
      {"fractional clamp", [](NceOp& o) { o.ppe.clamp_lo = 1.5; }, "ppe.clamp"},
      {"clamp lo > hi",
       [](NceOp& o) {
         o.ppe.clamp_lo = 10;
         o.ppe.clamp_hi = 9;
       },
       "ppe.clamp"},
      {"NaN clamp", [](NceOp& o) { o.ppe.clamp_hi = NAN; }, "ppe.clamp"},
  };
  for (const OpCase& c : cases) {
    SCOPED_TRACE(c.what);
    NceOp op = base;
    c.mutate(op);
    ExpectError(ValidateOp(op), c.field);
  }
}

TEST(ValidateOp, FloatPathRejectsEachBadField) {
  const NceOp base = SmallLayer(DType::kFP16, DType::kFP16, DType::kFP16).op;
  DPUEMU_ASSERT_OK(ValidateOp(base));
  const std::vector<OpCase> cases = {
      {"float input zero point", [](NceOp& o) { o.in_zp = 1; }, "zero_point"},
      {"float weight zero point", [](NceOp& o) { o.w_zp = -1; }, "zero_point"},
      {"float output zero point", [](NceOp& o) { o.ppe.out_zp = 5; }, "zero_point"},
      {"u8 output for fp16 input", [](NceOp& o) { o.out_dtype = DType::kU8; },
       "output dtype = u8"},
      {"i32 output for fp16 input", [](NceOp& o) { o.out_dtype = DType::kI32; }, "output dtype"},
      {"bf16 weights for fp16 input", [](NceOp& o) { o.w_dtype = DType::kBF16; }, "weights dtype"},
      {"fp32 weights for fp16 input", [](NceOp& o) { o.w_dtype = DType::kFP32; }, "weights dtype"},
      {"i8 weights' zero point out of range",
       [](NceOp& o) {
         o.w_dtype = DType::kI8;
         o.w_zp = 128;
       },
       "weights zero_point"},
      {"fp32 input", [](NceOp& o) { o.in_dtype = o.w_dtype = DType::kFP32; }, "input dtype"},
      {"leaky relu with a NaN slope",
       [](NceOp& o) {
         o.ppe.leaky_relu = true;
         o.ppe.lrelu_alpha = std::nanf("");
       },
       "ppe.leaky_relu.alpha"},
      {"clamp lo > hi",
       [](NceOp& o) {
         o.ppe.clamp_lo = 1;
         o.ppe.clamp_hi = -1;
       },
       "ppe.clamp"},
  };
  for (const OpCase& c : cases) {
    SCOPED_TRACE(c.what);
    NceOp op = base;
    c.mutate(op);
    ExpectError(ValidateOp(op), c.field);
  }
  // Fractional clamps are fine for float outputs.
  NceOp op = base;
  op.ppe.clamp_lo = -0.5;
  op.ppe.clamp_hi = 6.25;
  DPUEMU_ASSERT_OK(ValidateOp(op));
}

TEST(ValidateQuant, RejectsBadSizesAndRanges) {
  const NceLayer il = SmallLayer(DType::kI8, DType::kU8, DType::kI8);
  DPUEMU_ASSERT_OK(ValidateQuant(il.op, il.quant));
  struct Case {
    const char* what;
    std::function<void(ChannelQuant&)> mutate;
    const char* field;
  };
  const std::vector<Case> int_cases = {
      {"short mult", [](ChannelQuant& q) { q.mult.pop_back(); }, "mult, shift and bias"},
      {"long shift", [](ChannelQuant& q) { q.shift.push_back(0); }, "mult, shift and bias"},
      {"no bias", [](ChannelQuant& q) { q.bias.clear(); }, "mult, shift and bias"},
      {"mult 65536", [](ChannelQuant& q) { q.mult[3] = 65536; }, "quant.mult[3] = 65536"},
      {"mult -1", [](ChannelQuant& q) { q.mult[0] = -1; }, "quant.mult[0]"},
      {"shift 64", [](ChannelQuant& q) { q.shift[15] = 64; }, "quant.shift[15] = 64"},
      {"shift -1", [](ChannelQuant& q) { q.shift[2] = -1; }, "quant.shift[2]"},
  };
  for (const Case& c : int_cases) {
    SCOPED_TRACE(c.what);
    ChannelQuant q = il.quant;
    c.mutate(q);
    ExpectError(ValidateQuant(il.op, q), c.field);
  }
  const NceLayer fl = SmallLayer(DType::kBF16, DType::kBF16, DType::kFP32);
  DPUEMU_ASSERT_OK(ValidateQuant(fl.op, fl.quant));
  const std::vector<Case> float_cases = {
      {"short scale", [](ChannelQuant& q) { q.scale.pop_back(); }, "scale and bias"},
      {"long bias", [](ChannelQuant& q) { q.fbias.push_back(0); }, "scale and bias"},
  };
  for (const Case& c : float_cases) {
    SCOPED_TRACE(c.what);
    ChannelQuant q = fl.quant;
    c.mutate(q);
    ExpectError(ValidateQuant(fl.op, q), c.field);
  }
}

TEST(ValidateLayer, RejectsMismatchedTensors) {
  const NceLayer base = SmallLayer(DType::kU8, DType::kI8, DType::kU8);
  DPUEMU_ASSERT_OK(ValidateLayer(base));
  NceLayer l = base;
  l.input.dtype = DType::kI8;
  ExpectError(ValidateLayer(l), "input");
  l = base;
  l.input.shape = {7, 5, 32};
  ExpectError(ValidateLayer(l), "input");
  l = base;
  l.input.bytes.pop_back();
  ExpectError(ValidateLayer(l), "input");
  l = base;
  l.weights.shape = {16, 3, 3, 16};
  ExpectError(ValidateLayer(l), "weights");
  l = base;
  l.weights.bytes.push_back(0);
  ExpectError(ValidateLayer(l), "weights");
  // Op and quant errors come through too.
  l = base;
  l.op.g.stride_x = 9;
  ExpectError(ValidateLayer(l), "stride_x");
  l = base;
  l.quant.shift[0] = 99;
  ExpectError(ValidateLayer(l), "quant.shift[0]");
}

// ---------------------------------------------------------------------------------------------
// Layer generation

double ZeroPointFraction(const Tensor& t, int32_t zp) {
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += IsZeroPoint(t.dtype, t.bytes.data(), i, zp);
  return static_cast<double>(n) / t.numel();
}

TEST(GenerateLayer, DeterministicForASeed) {
  const uint64_t seed = BaseSeed(42);
  SCOPED_TRACE(SeedTrace(seed));
  for (DType in : {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16}) {
    LayerSpec s;
    s.name = "det";
    s.h = 9;
    s.w = 11;
    s.c = 48;
    s.k = 32;
    s.ky = s.kx = 3;
    s.stride = 2;
    s.in_dtype = in;
    s.w_dtype = IsFloat(in) ? in : DType::kI8;
    s.out_dtype = IsFloat(in) ? DType::kFP32 : DType::kI8;
    s.weight_sparsity = 0.5;
    s.input_sparsity = 0.3;
    s.leaky_relu = !IsFloat(in);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer a, GenerateLayer(s, seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer b, GenerateLayer(s, seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer c, GenerateLayer(s, seed + 1));
    EXPECT_EQ(a.input, b.input);
    EXPECT_EQ(a.weights, b.weights);
    EXPECT_EQ(a.quant.mult, b.quant.mult);
    EXPECT_EQ(a.quant.shift, b.quant.shift);
    EXPECT_EQ(a.quant.bias, b.quant.bias);
    EXPECT_EQ(a.quant.scale, b.quant.scale);
    EXPECT_EQ(a.quant.fbias, b.quant.fbias);
    EXPECT_EQ(a.op.in_zp, b.op.in_zp);
    EXPECT_EQ(a.op.w_zp, b.op.w_zp);
    EXPECT_EQ(a.op.ppe.out_zp, b.op.ppe.out_zp);
    EXPECT_EQ(a.op.ppe.lrelu_mult, b.op.ppe.lrelu_mult);
    EXPECT_EQ(a.name, "det");
    // Another seed gives other data.
    EXPECT_FALSE(a.input == c.input);
    EXPECT_FALSE(a.weights == c.weights);
    // The spec's geometry, "same" padding for pad = -1.
    EXPECT_EQ(a.op.g.pad_top, 1);
    EXPECT_EQ(a.op.g.pad_left, 1);
    EXPECT_EQ(a.op.g.stride_y, 2);
    DPUEMU_ASSERT_OK(ValidateLayer(a));
  }
}

TEST(GenerateLayer, HonoursSparsity) {
  const uint64_t base = BaseSeed(100);
  int64_t case_index = 0;
  for (DType in : {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16}) {
    for (double ws : {0.0, 0.25, 0.5, 0.9, 1.0}) {
      for (bool zero_points : {false, true}) {
        const uint64_t seed = base + case_index++;
        SCOPED_TRACE(SeedTrace(seed));
        SCOPED_TRACE(std::string(DTypeName(in)) + " weight_sparsity " + std::to_string(ws));
        LayerSpec s;
        s.h = s.w = 15;
        s.c = 64;
        s.k = 64;
        s.ky = s.kx = 3;
        s.in_dtype = in;
        s.w_dtype = IsFloat(in) ? in : DType::kU8;
        s.out_dtype = IsFloat(in) ? DType::kBF16 : DType::kU8;
        s.weight_sparsity = ws;
        s.input_sparsity = 1.0 - ws;
        s.zero_points = zero_points;
        DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer l, GenerateLayer(s, seed));
        DPUEMU_ASSERT_OK(ValidateLayer(l));
        if (!IsFloat(in) && !zero_points) {
          EXPECT_EQ(l.op.in_zp, 0);
          EXPECT_EQ(l.op.w_zp, 128);  // u8 weights are centred on 128
        }
        // 36864 weights and 14400 inputs: 5 standard deviations of a binomial fraction.
        const double wf = ZeroPointFraction(l.weights, l.op.w_zp);
        const double xf = ZeroPointFraction(l.input, l.op.in_zp);
        EXPECT_NEAR(wf, ws, 5 * std::sqrt(ws * (1 - ws) / l.weights.numel()) + 1e-12);
        EXPECT_NEAR(xf, 1 - ws, 5 * std::sqrt(ws * (1 - ws) / l.input.numel()) + 1e-12);
      }
    }
  }
}

TEST(GenerateLayer, RejectsBadSpecs) {
  LayerSpec s = StandardLayers()[0];
  s.weight_sparsity = 1.5;
  ExpectError(GenerateLayer(s, 1).status(), "sparsity");
  s.weight_sparsity = NAN;
  ExpectError(GenerateLayer(s, 1).status(), "sparsity");
  s = StandardLayers()[0];
  s.input_sparsity = -0.1;
  ExpectError(GenerateLayer(s, 1).status(), "sparsity");
  s = StandardLayers()[0];
  s.c = 20;
  ExpectError(GenerateLayer(s, 1).status(), "c (input channels)");
  s = StandardLayers()[0];
  s.w_dtype = DType::kFP16;
  ExpectError(GenerateLayer(s, 1).status(), "weights dtype");
}

TEST(StandardLayers, EveryEntryGeneratesAValidLayer) {
  const std::vector<std::string> names = {"r50_3x3_56", "r50_3x3_28", "r50_3x3_14", "r50_1x1_56",
                                          "k320_1x1_28"};
  ASSERT_EQ(StandardLayers().size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(StandardLayers()[i].name, names[i]);
  const uint64_t seed = BaseSeed(7);
  SCOPED_TRACE(SeedTrace(seed));
  for (const LayerSpec& spec : StandardLayers()) {
    SCOPED_TRACE(spec.name);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const LayerSpec by_name, StandardLayer(spec.name));
    EXPECT_EQ(by_name.k, spec.k);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer l, GenerateLayer(spec, seed));
    DPUEMU_ASSERT_OK(ValidateLayer(l));
    EXPECT_EQ(l.name, spec.name);
    EXPECT_EQ(l.op.g.out_h(), spec.h);  // stride 1, "same" padding
    EXPECT_EQ(l.op.g.out_w(), spec.w);
    EXPECT_EQ(l.op.g.k, spec.k);
    EXPECT_EQ(l.op.g.taps(), spec.ky * spec.kx * spec.c);
  }
  DPUEMU_ASSERT_OK_AND_ASSIGN(const LayerSpec k320, StandardLayer("k320_1x1_28"));
  EXPECT_EQ(k320.k, 320);
  const StatusOr<LayerSpec> missing = StandardLayer("r50_7x7_112");
  ExpectError(missing.status(), "'r50_7x7_112'");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace dpuemu
