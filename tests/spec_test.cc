#include "runtime/spec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/dtype.h"
#include "hw/formats.h"
#include "hw/rng.h"
#include "hw/se_ops.h"
#include "hw/tensor.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/execute.h"
#include "runtime/golden.h"
#include "runtime/npy.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

namespace dpuemu {
namespace {

using json = nlohmann::json;

std::string TmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp ? tmp : "/tmp";
}

Tensor Filled(DType t, std::vector<int64_t> shape) {
  Tensor x(t, std::move(shape));
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (IsFloat(t)) {
      StoreFloat(t, x.bytes.data(), i, static_cast<float>(i % 9 - 4) / 8);
    } else {
      StoreInt(t, x.bytes.data(), i, static_cast<int32_t>(i % 11));
    }
  }
  return x;
}

// A spec directory: tensors written as .npy next to the spec file.
class SpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TmpDir() + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    ASSERT_FALSE(ec) << dir_ << ": " << ec.message();
  }

  void Write(const std::string& name, const Tensor& t) {
    ASSERT_TRUE(WriteNpy(dir_ + "/" + name, t).ok());
  }

  // An integer layer: u8 input [6, 5, 16], i8 weights [32, 3, 3, 16], int32 bias.
  json IntSpec() {
    Write("x.npy", Filled(DType::kU8, {6, 5, 16}));
    Write("w.npy", Filled(DType::kI8, {32, 3, 3, 16}));
    Write("b.npy", Filled(DType::kI32, {32}));
    return json::parse(R"({
      "target": "NPU37XX",
      "input": {"npy": "x.npy", "dtype": "u8", "zero_point": 7},
      "weights": {"npy": "w.npy", "dtype": "i8", "zero_point": -3},
      "bias": {"npy": "b.npy"},
      "stride": [2, 1],
      "pad": [1, 0, 2, 1],
      "ppe": {"mult": 300, "shift": 12, "out_zero_point": 10, "clamp": [0, 200],
              "leaky_relu": {"mult": 5, "shift": 3}},
      "output": {"dtype": "u8", "sparse": true}
    })");
  }

  // A float layer: fp16 input [1, 4, 4, 32], fp16 weights [16, 1, 1, 32].
  json FloatSpec() {
    Write("xf.npy", Filled(DType::kFP16, {1, 4, 4, 32}));
    Write("wf.npy", Filled(DType::kFP16, {16, 1, 1, 32}));
    Write("bf.npy", Filled(DType::kFP32, {16}));
    return json::parse(R"({
      "target": "NPU40XX",
      "input": {"npy": "xf.npy", "dtype": "fp16"},
      "weights": {"npy": "wf.npy", "dtype": "fp16"},
      "bias": {"npy": "bf.npy"},
      "ppe": {"scale": 0.25, "clamp": [-6, 6]},
      "output": {"dtype": "fp16", "sparse": true}
    })");
  }

  StatusOr<Spec> Load(const json& spec, const std::string& name = "spec.json") {
    const std::string text = spec.dump(2);
    const Status w = WriteFileBytes(
        dir_ + "/" + name, ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    if (!w.ok()) return w;
    return LoadSpec(dir_ + "/" + name);
  }

  // Loads a spec that must fail; checks the message starts with the spec file and names `field`.
  std::string Error(const json& spec, const std::string& field) {
    StatusOr<Spec> s = Load(spec);
    EXPECT_FALSE(s.ok()) << "loaded a bad spec: " << spec.dump();
    if (s.ok()) return "";
    const std::string& m = s.status().message();
    EXPECT_EQ(m.rfind(dir_ + "/spec.json: ", 0), 0u) << m;
    EXPECT_TRUE(Contains(m, field)) << "field '" << field << "' not named: " << m;
    return m;
  }

  std::string dir_;
};

TEST_F(SpecTest, ParsesTheIntegerContract) {
  json j = IntSpec();
  j["ppe"]["mult"] = json::array();
  for (int k = 0; k < 32; ++k) j["ppe"]["mult"].push_back(100 + k);
  j["sparsity"] = {{"weights", "auto"}, {"heuristic", "ratio"}, {"input", "sparse"}};
  j["split"] = "SOH";
  j["tiles"] = 2;
  j["workloads_per_tile"] = 3;
  j["input"]["se_size"] = 16;
  j["output"]["se_size"] = 32;
  j["run"] = {{"threads", 3}, {"kernel", "sparse-weights"}, {"reference", true}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec s, Load(j, "my_layer.json"));
  EXPECT_EQ(s.path, dir_ + "/my_layer.json");
  EXPECT_EQ(s.layer.name, "my_layer");
  EXPECT_EQ(s.target->name, std::string("NPU37XX"));
  const NceOp& op = s.layer.op;
  EXPECT_EQ(op.g.h, 6);
  EXPECT_EQ(op.g.w, 5);
  EXPECT_EQ(op.g.c, 16);
  EXPECT_EQ(op.g.k, 32);
  EXPECT_EQ(op.g.ky, 3);
  EXPECT_EQ(op.g.kx, 3);
  EXPECT_EQ(op.g.stride_y, 2);
  EXPECT_EQ(op.g.stride_x, 1);
  EXPECT_EQ(op.g.pad_top, 1);
  EXPECT_EQ(op.g.pad_bottom, 0);
  EXPECT_EQ(op.g.pad_left, 2);
  EXPECT_EQ(op.g.pad_right, 1);
  EXPECT_EQ(op.in_dtype, DType::kU8);
  EXPECT_EQ(op.w_dtype, DType::kI8);
  EXPECT_EQ(op.out_dtype, DType::kU8);
  EXPECT_EQ(op.in_zp, 7);
  EXPECT_EQ(op.w_zp, -3);
  EXPECT_EQ(op.ppe.out_zp, 10);
  EXPECT_TRUE(op.ppe.leaky_relu);
  EXPECT_EQ(op.ppe.lrelu_mult, 5);
  EXPECT_EQ(op.ppe.lrelu_shift, 3);
  EXPECT_EQ(op.ppe.clamp_lo, 0);
  EXPECT_EQ(op.ppe.clamp_hi, 200);
  ASSERT_EQ(s.layer.quant.mult.size(), 32u);
  EXPECT_EQ(s.layer.quant.mult[31], 131);
  EXPECT_EQ(s.layer.quant.shift, std::vector<int32_t>(32, 12));
  const Tensor bias = Filled(DType::kI32, {32});
  EXPECT_EQ(s.layer.quant.bias,
            std::vector<int32_t>(bias.data<int32_t>(), bias.data<int32_t>() + 32));
  EXPECT_EQ(FirstDifference(s.layer.input, Filled(DType::kU8, {6, 5, 16})), "");
  EXPECT_EQ(FirstDifference(s.layer.weights, Filled(DType::kI8, {32, 3, 3, 16})), "");
  EXPECT_EQ(s.plan.heuristic, WeightHeuristic::kRatio);
  EXPECT_TRUE(s.plan.input_sparse);
  EXPECT_TRUE(s.plan.output_sparse);
  EXPECT_EQ(s.plan.input_se_size, 16);
  EXPECT_EQ(s.plan.output_se_size, 32);
  EXPECT_EQ(s.plan.split, SplitStrategy::kSoh);
  EXPECT_EQ(s.plan.tiles, 2);
  EXPECT_EQ(s.plan.workloads_per_tile, 3);
  EXPECT_EQ(s.run.threads, 3);
  EXPECT_EQ(s.run.kernel.kernel, ConvKernel::kSparseWeights);
  EXPECT_TRUE(s.run.reference);
}

TEST_F(SpecTest, DefaultsAndForcedWeightStorage) {
  json j = IntSpec();
  for (const char* key : {"bias", "stride", "pad", "ppe"}) j.erase(key);
  j["input"].erase("zero_point");
  j["name"] = "named";
  j["sparsity"] = {{"weights", "sparse"}};
  j["output"] = {{"dtype", "i32"}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec s, Load(j));
  EXPECT_EQ(s.layer.name, "named");
  EXPECT_EQ(s.layer.op.in_zp, 0);
  EXPECT_EQ(s.layer.op.g.stride_y, 1);
  EXPECT_EQ(s.layer.op.g.pad_left, 0);
  EXPECT_EQ(s.layer.op.g.out_h(), 4);
  EXPECT_EQ(s.layer.quant.mult, std::vector<int32_t>(32, 1));
  EXPECT_EQ(s.layer.quant.shift, std::vector<int32_t>(32, 0));
  EXPECT_EQ(s.layer.quant.bias, std::vector<int32_t>(32, 0));
  EXPECT_FALSE(s.layer.op.ppe.leaky_relu);
  EXPECT_EQ(s.plan.heuristic, WeightHeuristic::kSparse);
  EXPECT_FALSE(s.plan.output_sparse);
  EXPECT_EQ(s.plan.split, SplitStrategy::kAuto);
  EXPECT_EQ(s.plan.tiles, 0);
  EXPECT_FALSE(s.run.reference);
  j["sparsity"] = {{"weights", "dense"}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.plan.heuristic, WeightHeuristic::kDense);
}

TEST_F(SpecTest, ParsesTheFloatContract) {
  json j = FloatSpec();
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec s, Load(j));
  EXPECT_EQ(s.layer.op.in_dtype, DType::kFP16);
  EXPECT_EQ(s.layer.input.shape, (std::vector<int64_t>{4, 4, 32}));  // [1, H, W, C] accepted
  EXPECT_EQ(s.layer.quant.scale, std::vector<float>(16, 0.25f));
  // bias is in output units: the weight table holds bias / scale (the PPE adds it before the scale).
  EXPECT_EQ(s.layer.quant.fbias[3], -0.125f / 0.25f);
  EXPECT_EQ(s.layer.op.ppe.clamp_lo, -6);
  EXPECT_FALSE(s.layer.op.ppe.leaky_relu);
  EXPECT_TRUE(s.plan.output_sparse);
  // bf16 tensors are uint16 bit patterns (numpy has no bfloat16).
  Write("xb.npy", Filled(DType::kBF16, {4, 4, 32}));
  Write("wb.npy", Filled(DType::kBF16, {16, 1, 1, 32}));
  j["input"] = {{"npy", "xb.npy"}, {"dtype", "bf16"}};
  j["weights"] = {{"npy", "wb.npy"}, {"dtype", "bf16"}};
  j["output"]["dtype"] = "fp32";
  j["ppe"]["scale"] = json::array();
  for (int k = 0; k < 16; ++k) j["ppe"]["scale"].push_back(k);
  // A non-zero bias in output units with scale 0 has no accumulator-units value.
  Error(j, "bias: [0]: bias -0.500000 in output units with scale 0.000000: bias / scale is not a finite fp32");
  j["bias"]["units"] = "accumulator";
  j["ppe"]["leaky_relu"] = {{"alpha", 0.125}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.layer.op.in_dtype, DType::kBF16);
  EXPECT_EQ(s.layer.quant.scale[15], 15.0f);
  EXPECT_EQ(s.layer.quant.fbias[0], -0.5f);  // as given
  EXPECT_TRUE(s.layer.op.ppe.leaky_relu);
  EXPECT_EQ(s.layer.op.ppe.lrelu_alpha, 0.125f);
  j["ppe"]["leaky_relu"] = {{"mult", 3}};
  Error(j, "ppe.leaky_relu.mult: unknown field for float layers");
  j["ppe"]["leaky_relu"] = {{"alpha", 0.125}};
  j["bias"]["units"] = "volts";
  Error(j, "bias.units");
  // Weight-only quantisation: fp16 activations with i8 weights and their zero point.
  Write("wq.npy", Filled(DType::kI8, {16, 1, 1, 32}));
  j = FloatSpec();
  j["weights"] = {{"npy", "wq.npy"}, {"dtype", "i8"}, {"zero_point", 3}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.layer.op.w_dtype, DType::kI8);
  EXPECT_EQ(s.layer.op.w_zp, 3);
  EXPECT_TRUE(IsMixedPrecision(s.layer.op));
  // int4 weights: an int8 array of values in [-8, 7] (values 0..10 here: 8..10 are not i4).
  j["weights"] = {{"npy", "wq.npy"}, {"dtype", "i4"}};
  Error(j, "element 8 = 8: not a i4 value [-8, 7]");
  Tensor w4(DType::kI8, {16, 1, 1, 32});
  for (int64_t i = 0; i < w4.numel(); ++i) StoreInt(DType::kI8, w4.bytes.data(), i, static_cast<int32_t>(i % 16) - 8);
  Write("w4.npy", w4);
  j["weights"] = {{"npy", "w4.npy"}, {"dtype", "i4"}, {"zero_point", -1}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.layer.op.w_dtype, DType::kI4);
  EXPECT_EQ(s.layer.weights.dtype, DType::kI4);
  EXPECT_EQ(s.layer.op.w_zp, -1);
  j["weights"]["zero_point"] = 8;
  Error(j, "weights.zero_point");
  j["weights"] = {{"npy", "w4.npy"}, {"dtype", "u4"}};
  Error(j, "holds |i1 (i8); weights.dtype needs |u1 (u8)");
}

TEST_F(SpecTest, MissingFields) {
  for (const char* key : {"target", "input", "weights", "output"}) {
    json j = IntSpec();
    j.erase(key);
    Error(j, std::string(key) + ": missing (required)");
  }
  json j = IntSpec();
  j["input"].erase("npy");
  Error(j, "input.npy: missing");
  j = IntSpec();
  j["weights"].erase("dtype");
  Error(j, "weights.dtype: missing");
  j = IntSpec();
  j["output"].erase("dtype");
  Error(j, "output.dtype: missing");
  j = IntSpec();
  j["bias"] = json::object();
  Error(j, "bias.npy: missing");
  j = IntSpec();
  j["ppe"]["leaky_relu"].erase("shift");
  Error(j, "ppe.leaky_relu.shift: missing");
}

TEST_F(SpecTest, WrongTypes) {
  struct Case {
    const char* pointer;  // JSON pointer of the field to replace
    json value;
    const char* error;
  };
  const Case cases[] = {
      {"/target", 37, "target: must be a string, got number 37"},
      {"/input", "x.npy", "input: must be an object"},
      {"/input/zero_point", "7", "input.zero_point: must be an integer, got string \"7\""},
      {"/input/npy", json::array({"x.npy"}), "input.npy: must be a string"},
      {"/stride", 2, "stride: must be a list, got number 2"},
      {"/stride", json::array({1, 1, 1}), "stride: must be a list of 2 values, got 3"},
      {"/pad/2", 1.5, "pad[2]: must be an integer, got number 1.5"},
      {"/ppe/mult", 2.5, "ppe.mult: must be an integer"},
      {"/ppe/shift", json::array({1, 2}),
       "ppe.shift: a list needs one value per output channel (K = 32), got 2"},
      {"/ppe/clamp/1", "hi", "ppe.clamp[1]: must be a number"},
      {"/output/sparse", 1, "output.sparse: must be true or false, got number 1"},
      {"/output/dtype", "int8",
       "output.dtype: must be one of u8|i8|i32|fp16|bf16|fp32, got 'int8'"},
      {"/tiles", "2", "tiles: must be an integer"},
      {"/split", "diagonal", "split: unknown split 'diagonal'"},
      {"/target", "NPU99", "target: unknown target 'NPU99'"},
  };
  for (const Case& c : cases) {
    json j = IntSpec();
    j[json::json_pointer(c.pointer)] = c.value;
    Error(j, c.error);
  }
}

TEST_F(SpecTest, UnknownFields) {
  json j = IntSpec();
  j["stide"] = {1, 1};
  std::string m = Error(j, "stide: unknown field");
  EXPECT_TRUE(Contains(m, "known: name, target, op, input")) << m;
  j = IntSpec();
  j["input"]["layout"] = "NHWC";
  Error(j, "input.layout: unknown field");
  j = IntSpec();
  j["ppe"]["scale"] = 1.0;
  Error(j, "ppe.scale: unknown field for integer layers");
  j = FloatSpec();
  j["ppe"]["mult"] = 3;
  Error(j, "ppe.mult: unknown field for float layers");
  j = IntSpec();
  j["sparsity"] = {{"output", "sparse"}};
  Error(j, "sparsity.output: unknown field");
  j = IntSpec();
  j["run"] = {{"repeat", 3}};
  Error(j, "run.repeat: unknown field");
}

TEST_F(SpecTest, DTypeMustMatchTheNpy) {
  json j = IntSpec();
  j["input"]["dtype"] = "i8";
  std::string m =
      Error(j, "input.npy: '" + dir_ + "/x.npy' holds |u1 (u8); input.dtype needs |i1 (i8)");
  j = FloatSpec();
  Write("half_as_bf16.npy", Filled(DType::kFP16, {4, 4, 32}));
  j["input"] = {{"npy", "half_as_bf16.npy"}, {"dtype", "bf16"}};
  Error(j, "holds <f2 (fp16); input.dtype needs <u2 (bf16)");
  j = IntSpec();
  Write("fbias.npy", Filled(DType::kFP32, {32}));
  j["bias"]["npy"] = "fbias.npy";
  Error(j,
        "bias.npy: '" + dir_ + "/fbias.npy' holds <f4 (fp32); an integer layer's bias needs <i4");
  j = FloatSpec();
  j["bias"]["npy"] = "b.npy";
  Write("b.npy", Filled(DType::kI32, {16}));
  Error(j, "bias.npy");
}

TEST_F(SpecTest, ShapeMismatches) {
  json j = IntSpec();
  Write("flat.npy", Filled(DType::kU8, {30, 16}));
  j["input"]["npy"] = "flat.npy";
  Error(j,
        "input.npy: '" + dir_ + "/flat.npy' has shape [30, 16]: needs [H, W, C] or [1, H, W, C]");
  j = IntSpec();
  Write("batch2.npy", Filled(DType::kU8, {2, 6, 5, 16}));
  j["input"]["npy"] = "batch2.npy";
  Error(j, "input.npy");
  j = IntSpec();
  Write("w32c.npy", Filled(DType::kI8, {32, 3, 3, 32}));
  j["weights"]["npy"] = "w32c.npy";
  Error(j, "weights.npy: '" + dir_ +
               "/w32c.npy' has shape [32, 3, 3, 32]: needs [K, KY, KX, C] with C = 16");
  j = IntSpec();
  Write("b16.npy", Filled(DType::kI32, {16}));
  j["bias"]["npy"] = "b16.npy";
  Error(j, "bias.npy: '" + dir_ + "/b16.npy' has shape [16]: needs [K] = [32]");
  j = FloatSpec();
  j["ppe"]["scale"] = {1.0, 2.0};
  Error(j, "ppe.scale: a list needs one value per output channel (K = 16), got 2");
  // K is bounded before anything is sized by it (a fuzzer found an empty [2^40, 0, 1, 16]
  // weights file sizing the PPE lists: std::bad_alloc).
  j = IntSpec();
  Write("wbig.npy", Tensor(DType::kI8, {int64_t{1} << 40, 0, 1, 16}));
  j["weights"]["npy"] = "wbig.npy";
  Error(j, "[1099511627776, 0, 1, 16]: k (output channels) = 1099511627776: must be in [16, 16384]");
  j = IntSpec();
  Write("wempty.npy", Tensor(DType::kI8, {32, 0, 3, 16}));
  j["weights"]["npy"] = "wempty.npy";
  Error(j, "ky (kernel height) = 0: must be in [1, 11]");
}

TEST_F(SpecTest, OutOfRangeValues) {
  struct Case {
    const char* pointer;
    json value;
    const char* error;
  };
  const Case cases[] = {
      {"/input/zero_point", 300, "input.zero_point = 300: must be in [0, 255] (u8)"},
      {"/input/zero_point", -1, "input.zero_point = -1: must be in [0, 255] (u8)"},
      {"/weights/zero_point", -129, "weights.zero_point = -129: must be in [-128, 127] (i8)"},
      {"/ppe/out_zero_point", 256, "ppe.out_zero_point = 256: must be in [0, 255] (u8)"},
      {"/ppe/mult", 65536, "ppe.mult = 65536: must be in [0, 65535]"},
      {"/ppe/shift", 64, "ppe.shift = 64: must be in [0, 63]"},
      {"/ppe/leaky_relu/mult", 2048, "ppe.leaky_relu.mult = 2048: must be in [0, 2047]"},
      {"/stride/0", 0, "stride[0] = 0: must be in [1, "},
      {"/input/zero_point", 18446744073709551615u,
       "input.zero_point: 18446744073709551615: must be in [0, 255]"},
      {"/output/se_size", 48, "output.se_size = 48 on NPU37XX: this target needs a power-of-two"},
      {"/run", json({{"threads", -1}}), "run.threads = -1: must be in [0, 4096]"},
  };
  for (const Case& c : cases) {
    json j = IntSpec();
    j[json::json_pointer(c.pointer)] = c.value;
    Error(j, c.error);
  }
  json j = FloatSpec();
  j["input"]["zero_point"] = 1;
  Error(j, "input.zero_point = 1: must be in [0, 0] (fp16 has no zero point)");
  j = FloatSpec();
  j["ppe"]["scale"] = 1e39;
  Error(j, "ppe.scale: ");
}

TEST_F(SpecTest, LayerRulesAndOptionConflicts) {
  json j = IntSpec();
  j["sparsity"] = {{"weights", "dense"}, {"heuristic", "cmx"}};
  Error(j, "sparsity.heuristic: only applies with sparsity.weights = auto");
  j = IntSpec();
  j["sparsity"] = {{"heuristic", "best"}};
  Error(j, "sparsity.heuristic: must be one of sas|ratio|cmx");
  j = IntSpec();
  j["output"] = {{"dtype", "i32"}, {"sparse", true}};
  Error(j, "output.sparse: output dtype i32");
  j = IntSpec();
  j["weights"] = {{"npy", "wh.npy"}, {"dtype", "fp16"}};
  Write("wh.npy", Filled(DType::kFP16, {32, 3, 3, 16}));
  Error(j, "weights dtype = fp16");  // ValidateLayer's rule, under the spec's name
  j = IntSpec();
  Write("x20.npy", Filled(DType::kU8, {6, 5, 20}));
  Write("w20.npy", Filled(DType::kI8, {32, 3, 3, 20}));
  j["input"]["npy"] = "x20.npy";
  j["weights"]["npy"] = "w20.npy";
  Error(j, "c (input channels) = 20: must be a multiple of 16");
}

// The top-level "op" and the fields each kind has (kernel, input2, eltwise), and the kinds'
// rules (K = C, no weights, the sparsity each supports).
TEST_F(SpecTest, OpFieldsOfEachKind) {
  json j = IntSpec();
  j.erase("weights");
  j.erase("bias");
  j["op"] = "maxpool";
  j["kernel"] = {3, 2};
  // maxpool adds no zero point: the output's is the input's (7), the default when absent.
  j["ppe"] = {{"out_zero_point", 7}, {"clamp", {0, 200}}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec pool, Load(j));
  EXPECT_EQ(pool.layer.op.kind, NceKind::kMaxPool);
  EXPECT_EQ(pool.layer.op.g.k, 16);
  EXPECT_EQ(pool.layer.op.g.ky, 3);
  EXPECT_EQ(pool.layer.op.g.kx, 2);
  EXPECT_TRUE(pool.layer.weights.bytes.empty());
  json nozp = j;
  nozp["ppe"].erase("out_zero_point");
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec pool2, Load(nozp));
  EXPECT_EQ(pool2.layer.op.ppe.out_zp, 7);

  json bad = j;
  bad["weights"] = {{"npy", "w.npy"}, {"dtype", "i8"}};
  Error(bad, "weights: not a field of op maxpool");
  bad = j;
  bad["bias"] = {{"npy", "b.npy"}};
  Error(bad, "bias: not a field of op maxpool");
  bad = j;
  bad["ppe"]["mult"] = 3;
  Error(bad, "ppe.mult: unknown field");
  bad = j;
  bad.erase("kernel");
  Error(bad, "kernel");
  bad = j;
  bad["op"] = "softmax";
  Error(bad, "op: must be one of conv|dwconv|maxpool|avgpool|eltwise");
  bad = IntSpec();
  bad["kernel"] = {3, 3};
  Error(bad, "kernel: not a field of op conv");

  // Depthwise weights [C, KY, KX, 1]; only the output may be sparse.
  json dw = IntSpec();
  dw["op"] = "dwconv";
  Write("wd.npy", Filled(DType::kI8, {16, 3, 3, 1}));
  Write("bd.npy", Filled(DType::kI32, {16}));
  dw["weights"]["npy"] = "wd.npy";
  dw["bias"]["npy"] = "bd.npy";
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec d, Load(dw));
  EXPECT_EQ(d.layer.op.kind, NceKind::kDwConv);
  EXPECT_EQ(d.layer.op.g.k, 16);
  bad = dw;
  bad["weights"]["npy"] = "w.npy";
  Error(bad, "[C, KY, KX, 1] with C = 16");
  bad = dw;
  bad["sparsity"] = {{"input", "sparse"}};
  Error(bad, "sparsity.input: op dwconv on NPU37XX (NCEDepthConvolutionOp::sparsitySupport");
  bad = dw;
  bad["sparsity"] = {{"weights", "sparse"}};
  Error(bad, "sparsity.weights: op dwconv");

  // Eltwise: input2 of the input's shape, the type, the inputs' multipliers.
  json el = IntSpec();
  el.erase("weights");
  el.erase("bias");
  el.erase("stride");
  el.erase("pad");
  el["op"] = "eltwise";
  Write("x2.npy", Filled(DType::kU8, {6, 5, 16}));
  el["input2"] = {{"npy", "x2.npy"}, {"dtype", "u8"}, {"zero_point", 3}};
  el["eltwise"] = {{"type", "sub"}};
  el["ppe"] = {{"in1_mult", 25877}, {"in2_mult", 5312}, {"mult", 19219}, {"shift", 29}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec e, Load(el));
  EXPECT_EQ(e.layer.op.eltwise.type, EltwiseType::kSub);
  EXPECT_EQ(e.layer.op.eltwise.in1_mult, 25877);
  EXPECT_EQ(e.layer.op.eltwise.in2_mult, 5312);
  EXPECT_EQ(e.layer.op.eltwise.in2_zp, 3);
  EXPECT_EQ(e.layer.input2.shape, (std::vector<int64_t>{6, 5, 16}));
  bad = el;
  Write("x3.npy", Filled(DType::kU8, {6, 4, 16}));
  bad["input2"]["npy"] = "x3.npy";
  Error(bad, "input2.npy");
  bad = el;
  bad.erase("input2");
  Error(bad, "input2");
  bad = el;
  bad["stride"] = {2, 2};
  Error(bad, "eltwise: combines two inputs pixel by pixel");
  bad = el;
  bad["eltwise"] = {{"type", "max"}};
  Error(bad, "eltwise.type: must be one of add|sub|mult");
  bad = IntSpec();
  bad["eltwise"] = {{"type", "add"}};
  Error(bad, "eltwise: not a field of op conv");
}

TEST_F(SpecTest, FileErrorsNameTheFile) {
  json j = IntSpec();
  j["weights"]["npy"] = "nope.npy";
  std::string m = Error(j, "weights.npy: " + dir_ + "/nope.npy: cannot open");
  std::vector<uint8_t> cut;
  {
    DPUEMU_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> full, ReadFileBytes(dir_ + "/x.npy"));
    cut.assign(full.begin(), full.end() - 1);
  }
  DPUEMU_ASSERT_OK(WriteFileBytes(dir_ + "/cut.npy", cut));
  j = IntSpec();
  j["input"]["npy"] = "cut.npy";
  Error(j, "input.npy: " + dir_ + "/cut.npy: truncated");

  // Not JSON at all: the position of the syntax error.
  const std::string text = "{\"target\": \"NPU37XX\",\n \"input\": }";
  DPUEMU_ASSERT_OK(WriteFileBytes(
      dir_ + "/spec.json", ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  StatusOr<Spec> s = LoadSpec(dir_ + "/spec.json");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(
      Contains(s.status().message(), dir_ + "/spec.json: not valid JSON: parse error at line 2"))
      << s.status().message();
  s = LoadSpec(dir_ + "/absent.json");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s.status().message(), dir_ + "/absent.json: cannot open"));
  // A JSON value that is not an object.
  s = ParseSpec("[1, 2]", "list.json");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), "list.json: must be an object, got array [1,2]");
}

// ---- "se": storage-element pointer operations ----

// Values near the zero point (int) or small multiples of 1/8 (float), 30% equal to the zero point.
Tensor Varied(DType t, std::vector<int64_t> shape, uint64_t seed, int32_t zp = 0) {
  Tensor x(t, std::move(shape));
  Rng rng(seed);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const bool zero = rng.Bernoulli(0.3);
    if (IsFloat(t)) {
      StoreFloat(t, x.bytes.data(), i, zero ? 0.0f : static_cast<float>(rng.Int(-16, 16)) / 8);
    } else {
      StoreInt(t, x.bytes.data(), i, zero ? zp : zp + static_cast<int32_t>(rng.Int(-8, 8)));
    }
  }
  return x;
}

// What each SE test varies.
struct SeCase {
  const char* name;
  json se;
  std::vector<int64_t> stride, pad;
  bool input_sparse, output_sparse;
};

std::vector<SeCase> SeCases() {
  return {
      {"upsample",
       {{"op", "upsample_nearest"}, {"factor", {2, 1}}},
       {1, 1},
       {1, 1, 1, 1},
       true,
       false},
      {"interpolate",
       {{"op", "interpolate_nearest"},
        {"size", {7, 3}},
        {"mode", "half_pixel"},
        {"nearest_mode", "round_prefer_ceil"}},
       {1, 1},
       {0, 1, 1, 0},
       false,
       true},
      {"transposed",
       {{"op", "transposed"}, {"output_padding", {1, 0}}},
       {2, 2},
       {1, 0, 0, 1},
       true,
       true},
      {"pad",
       {{"op", "pad"}, {"pad", {1, 2, 3, 0}}, {"mode", "reflect"}, {"se_size", 16}},
       {1, 2},
       {0, 0, 0, 0},
       false,
       false},
      {"roll",
       {{"op", "roll"}, {"shift", {2, -1}}, {"source_rows_per_tile", {3, 2}}},
       {1, 1},
       {1, 1, 1, 1},
       true,
       false},
      {"dilate", {{"op", "dilate"}, {"dilation", {2, 2}}}, {1, 1}, {2, 2, 2, 2}, false, true},
      {"dilate_strided",
       {{"op", "dilate"}, {"dilation", {3, 2}}, {"source_rows_per_tile", {2, 3}}},
       {2, 1},
       {2, 1, 1, 2},
       true,
       false},
  };
}

class SeSpecTest : public SpecTest {
 protected:
  // A layer over a source [5, 4, 32] with weights [16, 3, 3, 32], on `target`, int or fp16.
  json SeLayer(bool fp, const std::string& target, uint64_t seed = 1) {
    if (fp) {
      Write("sx.npy", Varied(DType::kFP16, {5, 4, 32}, seed));
      Write("sw.npy", Varied(DType::kFP16, {16, 3, 3, 32}, seed + 1));
      Write("sb.npy", Filled(DType::kFP32, {16}));
      return json{{"target", target},
                  {"input", {{"npy", "sx.npy"}, {"dtype", "fp16"}}},
                  {"weights", {{"npy", "sw.npy"}, {"dtype", "fp16"}}},
                  {"bias", {{"npy", "sb.npy"}}},
                  {"ppe", {{"scale", 0.25}, {"clamp", {-20, 20}}}},
                  {"output", {{"dtype", "fp16"}}}};
    }
    Write("sx.npy", Varied(DType::kU8, {5, 4, 32}, seed, 40));
    Write("sw.npy", Varied(DType::kI8, {16, 3, 3, 32}, seed + 1, -2));
    Write("sb.npy", Filled(DType::kI32, {16}));
    return json{
        {"target", target},
        {"input", {{"npy", "sx.npy"}, {"dtype", "u8"}, {"zero_point", 40}}},
        {"weights", {{"npy", "sw.npy"}, {"dtype", "i8"}, {"zero_point", -2}}},
        {"bias", {{"npy", "sb.npy"}}},
        {"ppe", {{"mult", 1500}, {"shift", 12}, {"out_zero_point", 100}, {"clamp", {0, 255}}}},
        {"output", {{"dtype", "u8"}}}};
  }

  json WithCase(json j, const SeCase& c) {
    j["se"] = c.se;
    j["stride"] = c.stride;
    j["pad"] = c.pad;
    j["sparsity"] = {{"input", c.input_sparse ? "sparse" : "dense"}};
    j["output"]["sparse"] = c.output_sparse;
    return j;
  }
};

// The gather hw/se_ops.h makes for a case, called directly.
StatusOr<SeGather> DirectGather(const SeCase& c, const Spec& spec, const SeSource& src) {
  const Target& t = *spec.target;
  const json& se = c.se;
  const int64_t se_size = se.contains("se_size") ? se["se_size"].get<int64_t>() : 0;
  const std::string op = se["op"];
  if (op == "upsample_nearest") {
    return UpsampleNearestGather(src, t, se_size, se["factor"][0], se["factor"][1]);
  }
  if (op == "interpolate_nearest") {
    DPUEMU_ASSIGN_OR_RETURN(CoordMode cm, ParseCoordMode(se["mode"]));
    DPUEMU_ASSIGN_OR_RETURN(NearestMode nm, ParseNearestMode(se["nearest_mode"]));
    return InterpolateNearestGather(src, t, se_size, se["size"][0], se["size"][1], cm, nm);
  }
  if (op == "pad") {
    DPUEMU_ASSIGN_OR_RETURN(PadMode pm, ParsePadMode(se["mode"]));
    return PadGather(src, t, se_size, Pads{se["pad"][0], se["pad"][1], se["pad"][2], se["pad"][3]},
                     pm);
  }
  if (op == "roll") return RollGather(src, t, se_size, se["shift"][0], se["shift"][1]);
  return InvalidArgument("no direct gather for " + op);
}

SourceLayout CaseLayout(const SeCase& c) {
  SourceLayout layout;
  if (c.se.contains("source_rows_per_tile")) {
    for (const auto& r : c.se["source_rows_per_tile"])
      layout.tiles.push_back({r.get<int64_t>(), 0});
  }
  return layout;
}

// The spec run the way the CLI runs it: every DPU layer planned and run, outputs assembled.
StatusOr<Tensor> RunSpec(const Spec& spec, bool reference, std::vector<Tensor>* phase_outputs,
                         std::vector<Plan>* plans_out) {
  DPUEMU_ASSIGN_OR_RETURN(std::vector<Plan> plans, PlanSpec(spec));
  std::vector<Tensor> outputs;
  for (size_t i = 0; i < plans.size(); ++i) {
    RunOptions o;
    o.threads = 2;
    o.reference = reference;
    DPUEMU_ASSIGN_OR_RETURN(RunResult r, RunLayer(DpuLayer(spec, i), plans[i], *spec.target, o));
    outputs.push_back(std::move(r.output));
  }
  DPUEMU_ASSIGN_OR_RETURN(Tensor out, AssembleSpecOutput(spec, outputs));
  if (phase_outputs) *phase_outputs = std::move(outputs);
  if (plans_out) *plans_out = std::move(plans);
  return out;
}

const GoldenFile* FindFile(const GoldenSet& set, const std::string& name) {
  for (const GoldenFile& f : set.files) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::vector<uint8_t> LeBytes(const std::vector<int32_t>& v) {
  std::vector<uint8_t> out;
  for (int32_t w : v) {
    for (int b = 0; b < 4; ++b)
      out.push_back(static_cast<uint8_t>(static_cast<uint32_t>(w) >> (8 * b)));
  }
  return out;
}

// Every op, both targets, int8 and fp16: the runtime (plan + parallel run over the gathered
// virtual tensor, SIMD kernels and reference) gives byte for byte what the reference DPU computes
// on the whole SE task (LowerWithGather of the gather hw/se_ops.h makes; for dilate,
// RunDilatedConv), and the golden set holds exactly that task's source, table and map.
TEST_F(SeSpecTest, EveryOpRunsLikeTheReferenceOnTheSeTask) {
  int checked = 0;
  for (const Target* target : AllTargets()) {
    for (bool fp : {false, true}) {
      for (const SeCase& c : SeCases()) {
        SCOPED_TRACE(std::string(c.name) + " on " + target->name + (fp ? " fp16" : " int8"));
        const json base = SeLayer(fp, target->name, 7 + checked);
        DPUEMU_ASSERT_OK_AND_ASSIGN(const Spec spec, Load(WithCase(base, c)));
        json plain = base;  // the same layer without se: the source-shaped layer
        plain["stride"] = c.stride;
        plain["pad"] = c.pad;
        DPUEMU_ASSERT_OK_AND_ASSIGN(const Spec src_spec, Load(plain, "plain.json"));
        ASSERT_TRUE(spec.se.has_value());
        const SeSpec& se = *spec.se;
        EXPECT_EQ(se.op, c.se["op"].get<std::string>());
        EXPECT_EQ(FirstDifference(se.source, src_spec.layer.input), "");
        const SourceLayout layout = CaseLayout(c);
        StorageOptions storage;
        storage.input_sparse = c.input_sparse;
        storage.input_se_size = c.se.contains("se_size") ? c.se["se_size"].get<int64_t>() : 0;
        storage.output_sparse = c.output_sparse;

        std::vector<Tensor> phase_outputs;
        std::vector<Plan> plans;
        DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor got, RunSpec(spec, false, &phase_outputs, &plans));
        DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor got_ref, RunSpec(spec, true, nullptr, nullptr));
        EXPECT_EQ(FirstDifference(got, got_ref), "");

        const std::string op = c.se["op"];
        Tensor want;
        DpuTask direct_task;
        if (op == "dilate") {
          DilatedPlan dp;
          DPUEMU_ASSERT_OK_AND_ASSIGN(
              want,
              RunDilatedConv(
                  src_spec.layer, c.se["dilation"][0], c.se["dilation"][1], layout, storage,
                  *target, [](const DpuTask& t, const Target& tg) { return RunReference(t, tg); },
                  &dp));
          ASSERT_EQ(se.phases.size(), dp.phases.size());
          EXPECT_GT(se.phases.size(), 1u);
          EXPECT_EQ(se.dilated_plan, dp.ToString());
          for (size_t i = 0; i < dp.phases.size(); ++i) {
            EXPECT_EQ(se.phases[i].gather.table, dp.phases[i].gather.table);
            EXPECT_EQ(se.phases[i].gather.map, dp.phases[i].gather.map);
            EXPECT_EQ(se.phases[i].out_y0, dp.phases[i].out_y0);
            EXPECT_EQ(se.phases[i].out_x0, dp.phases[i].out_x0);
          }
        } else {
          ASSERT_EQ(se.phases.size(), 1u);
          DPUEMU_ASSERT_OK_AND_ASSIGN(
              const SeSource src,
              MakeSeSource(src_spec.layer.input, layout, c.input_sparse, src_spec.layer.op.in_zp));
          SeGather g;
          NceLayer virtual_layer = src_spec.layer;
          if (op == "transposed") {
            TransposedConv tc;
            tc.stride_y = c.stride[0];
            tc.stride_x = c.stride[1];
            tc.pads = {c.pad[0], c.pad[1], c.pad[2], c.pad[3]};
            tc.output_padding_y = c.se["output_padding"][0];
            tc.output_padding_x = c.se["output_padding"][1];
            tc.ky = tc.kx = 3;
            DPUEMU_ASSERT_OK_AND_ASSIGN(g, ZeroInsertGather(src, *target, 0, tc));
            DPUEMU_ASSERT_OK_AND_ASSIGN(
                virtual_layer,
                TransposedConvAsZMConv(tc, g, src_spec.layer.op, src_spec.layer.quant,
                                       src_spec.layer.weights));
          } else {
            DPUEMU_ASSERT_OK_AND_ASSIGN(g, DirectGather(c, spec, src));
            virtual_layer.op.g.h = g.h;
            virtual_layer.op.g.w = g.w;
          }
          EXPECT_EQ(se.phases[0].gather.table, g.table);
          EXPECT_EQ(se.phases[0].gather.map, g.map);
          EXPECT_EQ(se.se_size, g.se_size);
          DPUEMU_ASSERT_OK_AND_ASSIGN(
              direct_task,
              LowerWithGather(virtual_layer, src_spec.layer.input, layout, g, storage, *target));
          DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput out, RunReference(direct_task, *target));
          DPUEMU_ASSERT_OK_AND_ASSIGN(want, DenseOutput(out, virtual_layer.op.ppe.out_zp));
          // The virtual layer computes on the tensor the DPU reads through the table.
          DPUEMU_ASSERT_OK_AND_ASSIGN(
              const Tensor gathered,
              GatherActivations(direct_task.input_view(), virtual_layer.op.in_dtype,
                                {g.h, g.w, g.c}, virtual_layer.op.in_zp));
          EXPECT_EQ(FirstDifference(spec.layer.input, gathered), "");
        }
        ASSERT_EQ(FirstDifference(got, want), "");

        // The golden set is the lowered SE task.
        DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<DpuTask> tasks, LowerSeSpec(spec, plans));
        DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet golden,
                                    MakeSeGoldenSet(spec, plans, phase_outputs));
        const bool phased = tasks.size() > 1;
        for (size_t i = 0; i < tasks.size(); ++i) {
          const std::string sfx = phased ? "_phase" + std::to_string(i) : "";
          const GoldenFile* table = FindFile(golden, "se_table" + sfx + ".bin");
          const GoldenFile* map = FindFile(golden, "input_map" + sfx + ".bin");
          ASSERT_TRUE(table && map) << sfx;
          EXPECT_EQ(table->bytes, LeBytes(tasks[i].se_table));
          EXPECT_EQ(map->bytes, tasks[i].input_map);
          EXPECT_EQ(tasks[i].se_table, se.phases[i].gather.table);
          EXPECT_EQ(tasks[i].weights_sparse(), plans[i].weights.sparse);
        }
        if (!phased) {
          EXPECT_EQ(tasks[0].se_table, direct_task.se_table);
          EXPECT_EQ(tasks[0].input_map, direct_task.input_map);
          EXPECT_EQ(tasks[0].input_tiles, direct_task.input_tiles);
        }
        const size_t n_tiles = tasks[0].input_tiles.size();
        EXPECT_EQ(n_tiles, layout.tiles.empty() ? 1u : layout.tiles.size());
        for (size_t i = 0; i < n_tiles; ++i) {
          const GoldenFile* f = FindFile(
              golden, n_tiles == 1 ? "input.bin" : "input_tile" + std::to_string(i) + ".bin");
          ASSERT_TRUE(f != nullptr) << i;
          EXPECT_EQ(f->bytes, tasks[0].input_tiles[i]);
        }
        EXPECT_EQ(golden.manifest["se"]["op"], op);
        EXPECT_EQ(golden.manifest["se"]["source_tiles"].size(), n_tiles);
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 28);
}

TEST_F(SeSpecTest, ParsesEveryOpsFields) {
  const json base = SeLayer(false, "NPU40XX");
  json j = base;
  j["se"] = {{"op", "upsample_nearest"}, {"factor", {3, 2}}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(Spec s, Load(j, "up.json"));
  EXPECT_EQ(s.se->params, "factor [3, 2]");
  EXPECT_EQ(s.se->se_size, 32);  // NPU40XX default: the largest legal divisor of C
  EXPECT_EQ(s.layer.name, "up");
  EXPECT_EQ(s.layer.op.g.h, 15);
  EXPECT_EQ(s.layer.op.g.w, 8);
  EXPECT_EQ(s.layer.input.shape, (std::vector<int64_t>{15, 8, 32}));
  EXPECT_EQ(DpuLayerCount(s), 1u);
  EXPECT_EQ(s.se->out_h, 13);
  const PlanOptions po = DpuLayerPlanOptions(s, 0);
  EXPECT_EQ(po.se.op, "upsample_nearest");
  EXPECT_EQ(po.input_se_size, 32);
  EXPECT_EQ(po.se.table_bytes, 15 * 8 * 1 * 4);
  EXPECT_EQ(po.se.map_bytes, 15 * 8 * 32 / 8);
  EXPECT_EQ(po.se.source_row_begin[14], 4);  // virtual row 14 reads source row 14 / 3
  EXPECT_EQ(po.se.source_row_end[14], 5);

  j = base;
  j["se"] = {{"op", "interpolate_nearest"}, {"size", {3, 9}}, {"mode", "asymmetric"}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.se->params, "size [3, 9], mode asymmetric, nearest_mode round_prefer_floor");
  EXPECT_EQ(s.layer.op.g.h, 3);

  j = base;
  j["se"] = {{"op", "transposed"}, {"se_size", 16}};
  j["stride"] = {3, 2};
  j["pad"] = {0, 1, 2, 0};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.se->se_size, 16);
  EXPECT_EQ(s.layer.op.g.stride_y, 1);  // the ZMConv over the zero insertion
  EXPECT_EQ(s.layer.op.g.pad_left, 0);
  EXPECT_EQ(s.layer.op.g.out_h(), (5 - 1) * 3 - 0 - 1 + 3);
  EXPECT_EQ(s.layer.op.g.out_w(), (4 - 1) * 2 - 2 - 0 + 3);

  j = base;
  j["se"] = {{"op", "pad"}, {"pad", {0, 3, 1, 1}}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.se->params, "pad [0, 3, 1, 1], mode constant");
  EXPECT_EQ(s.layer.op.g.h, 8);
  // Inserted rows read no source row.
  EXPECT_EQ(DpuLayerPlanOptions(s, 0).se.source_row_begin[7],
            DpuLayerPlanOptions(s, 0).se.source_row_end[7]);

  j = base;
  j["se"] = {{"op", "roll"}, {"shift", {-9, 123456789012}}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.layer.op.g.h, 5);

  j = base;
  j["se"] = {{"op", "dilate"}, {"dilation", {2, 1}}};
  j["pad"] = {2, 2, 1, 1};
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(DpuLayerCount(s), 2u);
  EXPECT_EQ(s.se->out_h, 5);
  EXPECT_EQ(s.se->out_w, 4);
  EXPECT_EQ(s.layer.name, "spec");
  EXPECT_EQ(DpuLayer(s, 1).name, "spec phase (1, 0)");
  EXPECT_EQ(s.se->phases[1].step_y, 2);
  DPUEMU_ASSERT_OK_AND_ASSIGN(std::vector<Plan> plans, PlanSpec(s));
  const json pj = SpecPlanToJson(s, plans);
  ASSERT_EQ(pj["phases"].size(), 2u);
  EXPECT_EQ(pj["phases"][1]["out_y0"], 1);
  EXPECT_EQ(pj["phases"][1]["plan"]["se"]["op"], "dilate");
  EXPECT_EQ(pj["cycles"], plans[0].cycles + plans[1].cycles);
  const std::string text = SpecPlanToText(s, plans);
  EXPECT_TRUE(Contains(text, "se dilate dilation [2, 1], 2 DPU layers")) << text;
  EXPECT_TRUE(Contains(text, "== phase 1 (outputs [1 + 2q][0 + 1r])")) << text;

  // input.se_size names the table's SE size too.
  j = base;
  j["se"] = {{"op", "roll"}, {"shift", {1, 1}}};
  j["input"]["se_size"] = 16;
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.se->se_size, 16);
  EXPECT_EQ(s.se->phases[0].gather.table.size(), 5u * 4 * 2);
}

// The spec's own pads beyond kernel / 2 (one DPU invocation's limit, verifyPads) become a
// constant border of the virtual tensor read through the same table (PadVirtual): its pointers
// repeat the nearest virtual pixel's, its map bits are 0, and the result is the convolution with
// the spec's pads over the unpadded virtual tensor.
TEST_F(SeSpecTest, PadsBeyondHalfTheKernelBecomeAVirtualBorder) {
  for (const Target* target : AllTargets()) {
    SCOPED_TRACE(target->name);
    json j = SeLayer(false, target->name);
    j["se"] = {{"op", "upsample_nearest"}, {"factor", {2, 2}}};
    j["pad"] = {2, 3, 1, 4};  // 3x3 kernel: 1 in the DPU, the rest in the table
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Spec s, Load(j));
    const NceGeometry& g = s.layer.op.g;
    EXPECT_EQ(g.pad_top, 1);
    EXPECT_EQ(g.pad_bottom, 1);
    EXPECT_EQ(g.pad_left, 1);
    EXPECT_EQ(g.pad_right, 1);
    EXPECT_EQ(g.h, 10 + 1 + 2);
    EXPECT_EQ(g.w, 8 + 0 + 3);
    const SeGather& gather = s.se->phases[0].gather;
    EXPECT_EQ(gather.table[0], gather.table[1 * g.w + 0]);  // border row 0 = virtual row 0
    EXPECT_FALSE(MapBit(gather.map.data(), 0));
    std::vector<Tensor> outputs;
    std::vector<Plan> plans;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor got, RunSpec(s, false, &outputs, &plans));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor got_ref, RunSpec(s, true, nullptr, nullptr));
    EXPECT_EQ(FirstDifference(got, got_ref), "");
    // The unpadded virtual tensor (rows 1..10, columns 0..7 of the gathered one) with the spec's
    // pads, by the textbook.
    NceLayer direct = s.layer;
    direct.op.g.h = 10;
    direct.op.g.w = 8;
    direct.op.g.pad_top = 2;
    direct.op.g.pad_bottom = 3;
    direct.op.g.pad_left = 1;
    direct.op.g.pad_right = 4;
    direct.input = Tensor(s.layer.input.dtype, {10, 8, 32});
    for (int64_t y = 0; y < 10; ++y) {
      std::memcpy(direct.input.bytes.data() + y * 8 * 32,
                  s.layer.input.bytes.data() + ((y + 1) * g.w) * 32, 8 * 32);
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor want, TextbookConv(direct, false));
    EXPECT_EQ(FirstDifference(got, want), "");
  }
}

TEST_F(SeSpecTest, FieldErrorsNameTheField) {
  struct Case {
    json se;
    const char* error;
    const char* target = "NPU40XX";
  };
  const Case cases[] = {
      {json::array(), "se: must be an object"},
      {{{"fy", 2}}, "se.fy: unknown field (known: op, factor, size, mode"},
      {{{"factor", {2, 2}}}, "se: needs either op (upsample_nearest|interpolate_nearest|"},
      {{{"op", "nearest"}}, "se.op: must be one of upsample_nearest|"},
      {{{"op", 3}}, "se.op: must be a string"},
      {{{"op", "upsample_nearest"}}, "se.factor: missing (required)"},
      {{{"op", "upsample_nearest"}, {"factor", {2}}}, "se.factor: must be a list of 2 values"},
      {{{"op", "upsample_nearest"}, {"factor", {0, 2}}}, "se.factor[0] = 0: must be in [1, 16384]"},
      {{{"op", "upsample_nearest"}, {"factor", {2, 2}}, {"mode", "edge"}},
       "se.mode: not a field of se.op 'upsample_nearest' (its fields: op, factor, se_size, "
       "source_rows_per_tile)"},
      {{{"op", "upsample_nearest"}, {"factor", {4000, 1}}},
       "se (upsample_nearest): fy: virtual height H * fy = 20000 must be in [1, 16384]"},
      {{{"op", "interpolate_nearest"}, {"size", {4, 4}}}, "se.mode: missing (required)"},
      {{{"op", "interpolate_nearest"}, {"size", {4, 4}}, {"mode", "nearest"}},
       "se.mode: must be one of asymmetric|half_pixel|align_corners|pytorch_half_pixel|"
       "tf_half_pixel_for_nn, got 'nearest'"},
      {{{"op", "interpolate_nearest"},
        {"size", {4, 4}},
        {"mode", "asymmetric"},
        {"nearest_mode", "round"}},
       "se.nearest_mode: must be one of round_prefer_floor|round_prefer_ceil|floor|ceil"},
      {{{"op", "interpolate_nearest"}, {"size", {4, 0}}, {"mode", "asymmetric"}},
       "se.size[1] = 0: must be in [1, 16384]"},
      {{{"op", "interpolate_nearest"}, {"factor", {4, 4}}, {"mode", "asymmetric"}},
       "se.factor: not a field of se.op 'interpolate_nearest'"},
      {{{"op", "transposed"}, {"pad", {1, 1, 1, 1}}},
       "se.pad: not a field of se.op 'transposed' (its fields: op, output_padding, se_size"},
      {{{"op", "transposed"}, {"output_padding", {0, 1}}},
       "se.output_padding[1] = 1: must be in [0, 0] (below stride[1] = 1)"},
      {{{"op", "pad"}, {"pad", {1, 1, 1}}}, "se.pad: must be a list of 4 values"},
      {{{"op", "pad"}, {"pad", {1, 1, 1, -1}}}, "se.pad[3] = -1: must be in [0, 16384]"},
      {{{"op", "pad"}, {"pad", {1, 1, 1, 1}}, {"mode", "wrap"}},
       "se.mode: must be one of constant|edge|reflect|symmetric, got 'wrap'"},
      {{{"op", "pad"}, {"pad", {1, 1, 1, 1}}, {"shift", {1, 1}}},
       "se.shift: not a field of se.op 'pad'"},
      {{{"op", "roll"}}, "se.shift: missing (required)"},
      {{{"op", "roll"}, {"shift", {1, 1.5}}}, "se.shift[1]: must be an integer"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"dilation", {2, 2}}},
       "se.dilation: not a field of se.op 'roll'"},
      {{{"op", "dilate"}, {"dilation", {2, 0}}}, "se.dilation[1] = 0: must be in [1, 1024]"},
      {{{"op", "dilate"}, {"dilation", {3, 1}}},
       "se (dilate; stride and pad are the dilated conv's): dilation_y: the dilated kernel (ky - "
       "1) * dilation_y + 1 = 7 is larger than the padded input (5)"},
      {{{"op", "dilate"}, {"dilation", {2, 2}}, {"table", "t.npy"}},
       "se.table: not a field of se.op 'dilate'"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"se_size", 24}},
       "se.se_size = 24 on NPU40XX: a storage-element size must be a multiple of 16 in [16, "
       "8192]"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"se_size", 48}},
       "se.se_size = 48 on NPU37XX: this target needs a power-of-two storage-element size",
       "NPU37XX"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"se_size", 48}},
       "se.se_size = 48: must divide C = 32 (the input's channels)"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"source_rows_per_tile", {2, 2}}},
       "se.source_rows_per_tile: rows add up to 4, input.npy has H = 5"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"source_rows_per_tile", {4, 0, 1}}},
       "se.source_rows_per_tile[1] = 0: must be in [1, 5] (input.npy has H = 5 rows)"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"source_rows_per_tile", {1, 1, 3}}},
       "se.source_rows_per_tile: 3 parts: must be 1 to 2 (NPU37XX has 2 tiles)",
       "NPU37XX"},
      {{{"op", "roll"}, {"shift", {1, 1}}, {"source_rows_per_tile", 5}},
       "se.source_rows_per_tile: must be a list"},
  };
  for (const Case& c : cases) {
    json j = SeLayer(false, c.target);
    j["se"] = c.se;
    Error(j, c.error);
  }
  // se.se_size and input.se_size must agree.
  json j = SeLayer(false, "NPU40XX");
  j["se"] = {{"op", "roll"}, {"shift", {1, 1}}, {"se_size", 32}};
  j["input"]["se_size"] = 16;
  Error(j, "se.se_size = 32: differs from input.se_size = 16");
  // The convolution over the virtual tensor still follows ZMConv's rules, named as such.
  j = SeLayer(false, "NPU40XX");
  j["se"] = {{"op", "upsample_nearest"}, {"factor", {2, 2}}};
  j["stride"] = {9, 1};
  Error(j, "se: the ZMConv over the virtual input [10, 8, 32]: stride_y");
}

// se.table + se.map: a table made elsewhere over a source split across two tiles.
TEST_F(SeSpecTest, TableAndMapSpec) {
  const std::vector<int64_t> rows = {3, 2};
  const int64_t h = 5, w = 4, c = 32, se = 16, vh = 4, vw = 6;
  for (bool fp : {false, true}) {
    for (const Target* target : AllTargets()) {
      SCOPED_TRACE(std::string(target->name) + (fp ? " fp16" : " int8"));
      json j = SeLayer(fp, target->name, 40);
      const DType dt = fp ? DType::kFP16 : DType::kU8;
      const int64_t eb = DTypeBytes(dt);
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor source, ReadNpy(dir_ + "/sx.npy"));
      // Virtual (y, x) SE j reads source ((3y + x) % 5, (x + y) % 4) SE 1 - j; every fifth
      // pixel is an inserted zero.
      Tensor table(DType::kI32, {vh, vw, c / se});
      Tensor map(DType::kU8, {vh, vw, c});
      Tensor expect(dt, {vh, vw, c});
      const int32_t zp = fp ? 0 : 40;
      bool tile1 = false;
      for (int64_t y = 0; y < vh; ++y) {
        for (int64_t x = 0; x < vw; ++x) {
          const int64_t sy = (3 * y + x) % h, sx = (x + y) % w;
          const int32_t tile = sy >= rows[0] ? 1 : 0;
          tile1 |= tile == 1;
          const bool present = (y * vw + x) % 5 != 0;
          for (int64_t s = 0; s < c / se; ++s) {
            const int64_t off = (((sy - tile * rows[0]) * w + sx) * c + (1 - s) * se) * eb;
            table.data<int32_t>()[(y * vw + x) * 2 + s] =
                static_cast<int32_t>((off >> 4) << 9) | tile;
            for (int64_t e = 0; e < se; ++e) {
              const int64_t vi = (y * vw + x) * c + s * se + e;
              map.bytes[vi] = present ? 1 : 0;
              const int64_t si = (sy * w + sx) * c + (1 - s) * se + e;
              if (fp) {
                StoreFloat(dt, expect.bytes.data(), vi,
                           present ? LoadFloat(dt, source.bytes.data(), si) : 0.0f);
              } else {
                StoreInt(dt, expect.bytes.data(), vi,
                         present ? LoadInt(dt, source.bytes.data(), si) : zp);
              }
            }
          }
        }
      }
      ASSERT_TRUE(tile1);
      Write("table.npy", table);
      Write("map.npy", map);
      j["se"] = {{"table", "table.npy"}, {"map", "map.npy"}, {"source_rows_per_tile", rows}};
      j["pad"] = {1, 0, 1, 1};
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Spec s, Load(j));
      EXPECT_EQ(s.se->op, "table");
      EXPECT_EQ(s.se->se_size, 16);  // C / the table's last dimension
      EXPECT_EQ(s.se->layout.tiles.size(), 2u);
      EXPECT_EQ(FirstDifference(s.layer.input, expect), "");

      // The runtime against the reference DPU on the SE task itself.
      SeGather g;
      g.h = vh;
      g.w = vw;
      g.c = c;
      g.source_h = h;
      g.source_w = w;
      g.se_size = se;
      g.table.assign(table.data<int32_t>(), table.data<int32_t>() + table.numel());
      g.map.assign(static_cast<size_t>(ActivationMapBytes(vh * vw * c)), 0);
      for (int64_t i = 0; i < map.numel(); ++i) {
        if (map.bytes[i]) g.map[i / 8] |= static_cast<uint8_t>(1 << (i % 8));
      }
      EXPECT_EQ(s.se->phases[0].gather.map, g.map);
      SourceLayout layout;
      for (int64_t r : rows) layout.tiles.push_back({r, 0});
      NceLayer virtual_layer = s.layer;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task,
                                  LowerWithGather(virtual_layer, source, layout, g, {}, *target));
      ASSERT_EQ(task.input_tiles.size(), 2u);
      DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput out, RunReference(task, *target));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor want, DenseOutput(out, s.layer.op.ppe.out_zp));
      std::vector<Plan> plans;
      std::vector<Tensor> outs;
      DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor got, RunSpec(s, false, &outs, &plans));
      EXPECT_EQ(FirstDifference(got, want), "");
      DPUEMU_ASSERT_OK_AND_ASSIGN(const GoldenSet golden, MakeSeGoldenSet(s, plans, outs));
      ASSERT_TRUE(FindFile(golden, "input_tile1.bin") != nullptr);
      EXPECT_EQ(FindFile(golden, "input_tile1.bin")->bytes, task.input_tiles[1]);
      EXPECT_EQ(FindFile(golden, "input_tile0.bin")->bytes, task.input_tiles[0]);
      EXPECT_EQ(FindFile(golden, "se_table.bin")->bytes, LeBytes(task.se_table));
      EXPECT_EQ(FindFile(golden, "input.bin"), nullptr);
      EXPECT_EQ(golden.manifest["se"]["source_tiles"][1]["first_row"], 3);

      // The plan counts the source rows each virtual row's pointers read.
      const PlanSe& a = s.se->phases[0].accounting;
      EXPECT_EQ(a.table_bytes, vh * vw * 2 * 4);
      EXPECT_EQ(plans[0].options.se.table_bytes, a.table_bytes);
      for (int64_t y = 0; y < vh; ++y) EXPECT_LT(a.source_row_begin[y], a.source_row_end[y]);

      // Malformed tables and maps.
      auto bad = [&](const std::string& what, const std::function<void(Tensor&, Tensor&)>& edit,
                     const std::string& error) {
        SCOPED_TRACE(what);
        Tensor t = table, m = map;
        edit(t, m);
        Write("bad_table.npy", t);
        Write("bad_map.npy", m);
        json b = j;
        b["se"]["table"] = "bad_table.npy";
        b["se"]["map"] = "bad_map.npy";
        Error(b, error);
      };
      bad(
          "outside", [&](Tensor& t, Tensor&) { t.data<int32_t>()[3] = (4096 << 5) | 1; },
          "se.table[3] (virtual pixel (0, 1) SE 1): DATA_PTR offset 4096 is outside the source "
          "rows held by tile 1");
      bad(
          "base_ptr", [&](Tensor& t, Tensor&) { t.data<int32_t>()[5] |= 2; },
          "se.table[5] (virtual pixel (0, 2) SE 1): BASE_PTR = ");
      bad(
          "map_shape",
          [&](Tensor&, Tensor& m) {
            m.shape = {vh, vw * c};
          },
          "se.map: '" + dir_ + "/bad_map.npy' has shape [4, 192]: needs [H', W', C] = [4, 6, 32]");
      bad(
          "table_rank",
          [&](Tensor& t, Tensor&) {
            t.shape = {vh * vw, 2};
          },
          "se.table: '" + dir_ + "/bad_table.npy' has shape [24, 2]: needs [H', W', C / se_size]");
      bad(
          "table_dim",
          [&](Tensor& t, Tensor&) {
            t.shape = {vh, vw / 3, 6};
          },
          "its last dimension must divide C = 32");
      bad(
          "map_value", [&](Tensor&, Tensor& m) { m.bytes[33] = 7; },
          "se.map: '" + dir_ + "/bad_map.npy' holds 7 at [0, 1, 1]: must be 0 or 1");
      bad(
          "map_partial", [&](Tensor&, Tensor& m) { m.bytes[40] ^= 1; },
          "se.map: the bits of virtual pixel (0, 1) SE 0 must be all 0 or what its slot");
      bad(
          "map_dtype", [&](Tensor&, Tensor& m) { m.dtype = DType::kI8; },
          "se.map: '" + dir_ +
              "/bad_map.npy' holds |i1 (i8); se.map (1 = present, 0 = reads as "
              "the zero point) needs |u1 (u8)");
      json b = j;
      b["se"]["se_size"] = 32;
      Error(b, "se.table: '" + dir_ +
                   "/table.npy' has shape [4, 6, 2]: needs [H', W', C / "
                   "se_size] with C / se_size = 32 / 32 = 1");
      b = j;
      b["se"]["op"] = "roll";
      Error(b, "se.map: not a field of se.op 'roll'");
      b = j;
      b["se"].erase("map");
      Error(b, "se.map: missing (required)");
      b = j;
      b["se"]["factor"] = {2, 2};
      Error(b,
            "se.factor: not a field of an SE table given as se.table (its fields: table, map, "
            "se_size, source_rows_per_tile)");
    }
  }
  // NPU37XX: a table of one pointer per pixel over C = 48 means se_size 48, not a power of two.
  json j = SeLayer(false, "NPU37XX");
  Write("sx.npy", Varied(DType::kU8, {2, 2, 48}, 3, 40));
  Write("sw.npy", Varied(DType::kI8, {16, 1, 1, 48}, 4, -2));
  Write("table.npy", Tensor(DType::kI32, {2, 2, 1}));
  Write("map.npy", Tensor(DType::kU8, {2, 2, 48}));
  j["se"] = {{"table", "table.npy"}, {"map", "map.npy"}};
  Error(j,
        "se.se_size (C / the table's last dimension = 48 / 1) = 48 on NPU37XX: this target "
        "needs a power-of-two storage-element size");
  j["target"] = "NPU40XX";
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Spec s, Load(j));
  EXPECT_EQ(s.se->se_size, 48);
}

}  // namespace
}  // namespace dpuemu
