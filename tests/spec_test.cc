#include "runtime/spec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "hw/tensor.h"
#include "runtime/npy.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

using json = nlohmann::json;

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

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
  const ConvOp& op = s.layer.op;
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
  EXPECT_EQ(s.layer.quant.fbias[3], -0.125f);
  EXPECT_EQ(s.layer.op.ppe.clamp_lo, -6);
  EXPECT_TRUE(s.plan.output_sparse);
  // bf16 tensors are uint16 bit patterns (numpy has no bfloat16).
  Write("xb.npy", Filled(DType::kBF16, {4, 4, 32}));
  Write("wb.npy", Filled(DType::kBF16, {16, 1, 1, 32}));
  j["input"] = {{"npy", "xb.npy"}, {"dtype", "bf16"}};
  j["weights"] = {{"npy", "wb.npy"}, {"dtype", "bf16"}};
  j["output"]["dtype"] = "fp32";
  j["ppe"]["scale"] = json::array();
  for (int k = 0; k < 16; ++k) j["ppe"]["scale"].push_back(k);
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, Load(j));
  EXPECT_EQ(s.layer.op.in_dtype, DType::kBF16);
  EXPECT_EQ(s.layer.quant.scale[15], 15.0f);
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
  EXPECT_TRUE(Contains(m, "known: name, target, input")) << m;
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

TEST_F(SpecTest, SeIsNotSupportedYet) {
  json j = IntSpec();
  j["se"] = {{"op", "interpolate"}};
  StatusOr<Spec> s = Load(j);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnimplemented);
  EXPECT_TRUE(Contains(s.status().message(), "spec.json: se: "));
  EXPECT_TRUE(Contains(s.status().message(), "not supported yet"));
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

}  // namespace
}  // namespace dpuemu
