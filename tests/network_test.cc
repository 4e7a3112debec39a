#include "runtime/network.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/golden.h"
#include "runtime/npy.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

using json = nlohmann::json;

// A network directory: NETWORK.json with its .npy files, made from generated layers.
class NetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
  }

  std::string Npy(const std::string& name, const Tensor& t) {
    EXPECT_TRUE(WriteNpy(dir_ + "/" + name, t).ok());
    return name;
  }

  // A u8 conv layer of a network reading C channels: K outputs, kernel k, its ReLU-like clamp at
  // the output zero point making outputs sparse.
  json Conv(const std::string& name, int64_t c, int64_t k, int64_t kernel, uint64_t seed,
            int32_t in_zp, int32_t* out_zp) {
    LayerSpec s;
    s.h = s.w = 8;
    s.c = c;
    s.k = k;
    s.ky = s.kx = kernel;
    s.weight_sparsity = 0.5;
    StatusOr<NceLayer> l = GenerateLayer(s, seed);
    EXPECT_TRUE(l.ok());
    *out_zp = l->op.ppe.out_zp;
    json j = {{"name", name},
              {"weights", {{"npy", Npy(name + "_w.npy", l->weights)}, {"dtype", "i8"},
                           {"zero_point", l->op.w_zp}}},
              {"pad", {kernel / 2, kernel / 2, kernel / 2, kernel / 2}},
              {"ppe", {{"mult", l->quant.mult}, {"shift", l->quant.shift},
                       {"out_zero_point", l->op.ppe.out_zp}, {"clamp", {l->op.ppe.out_zp, 255}}}},
              {"output", {{"dtype", "u8"}}}};
    (void)in_zp;
    return j;
  }

  // input -> a (3x3, 16 -> 32) -> b (1x1, 32 -> 48) -> c (3x3, 48 -> 16); b also an output.
  json Chain(const std::string& sparsity) {
    LayerSpec in;
    in.h = in.w = 8;
    in.c = in.k = 16;
    in.input_sparsity = 0.3;
    StatusOr<NceLayer> x = GenerateLayer(in, 5);
    EXPECT_TRUE(x.ok());
    int32_t zp_a, zp_b, zp_c;
    json net = {{"name", "chain"},
                {"target", "NPU40XX"},
                {"activation_sparsity", sparsity},
                {"input", {{"npy", Npy("x.npy", x->input)}, {"dtype", "u8"},
                           {"zero_point", x->op.in_zp}}},
                {"layers", json::array()},
                {"outputs", {"b", "c"}}};
    net["layers"].push_back(Conv("a", 16, 32, 3, 11, x->op.in_zp, &zp_a));
    net["layers"].push_back(Conv("b", 32, 48, 1, 12, zp_a, &zp_b));
    net["layers"].push_back(Conv("c", 48, 16, 3, 13, zp_b, &zp_c));
    return net;
  }

  StatusOr<Network> Load(const json& net) {
    const std::string text = net.dump(2);
    EXPECT_TRUE(WriteFileBytes(dir_ + "/net.json",
                               ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
                    .ok());
    return LoadNetwork(dir_ + "/net.json");
  }

  std::string Error(const json& net, const std::string& want) {
    StatusOr<Network> n = Load(net);
    EXPECT_FALSE(n.ok()) << "loaded a bad network";
    if (n.ok()) return "";
    const std::string& m = n.status().message();
    EXPECT_EQ(m.rfind(dir_ + "/net.json: ", 0), 0u) << m;
    EXPECT_TRUE(Contains(m, want)) << "'" << want << "' not in: " << m;
    return m;
  }

  std::string dir_;
};

// Each layer's output equals that layer run alone (dense, on the reference) on its producer's
// output, for every activation-sparsity mode; sparse edges are where the mode says.
TEST_F(NetworkTest, ChainMatchesEachLayerAloneInEveryMode) {
  for (const char* mode : {"dense", "sparse", "auto"}) {
    SCOPED_TRACE(mode);
    DPUEMU_ASSERT_OK_AND_ASSIGN(Network net, Load(Chain(mode)));
    ASSERT_EQ(net.layers.size(), 3u);
    EXPECT_EQ(net.outputs, (std::vector<int>{1, 2}));
    RunOptions opts;
    opts.threads = 2;
    int calls = 0;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NetworkResult r,
                                RunNetwork(net, opts, [&](const std::string&) { ++calls; }));
    EXPECT_EQ(calls, 3);
    const Tensor* in = &net.input;
    for (size_t i = 0; i < r.layers.size(); ++i) {
      const NetworkLayerResult& l = r.layers[i];
      EXPECT_EQ(l.spec.layer.input, *in) << l.name;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task,
                                  LowerLayer(l.spec.layer, StorageOptions{}, *net.target));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, *net.target));
      EXPECT_EQ(l.output, ref.data) << l.name;
      const bool last = i + 1 == r.layers.size();
      if (std::string(mode) == "dense" || last) {
        EXPECT_FALSE(l.output_sparse) << l.name << ": " << l.activation_reason;
      } else if (std::string(mode) == "sparse") {
        EXPECT_TRUE(l.output_sparse) << l.name << ": " << l.activation_reason;
      } else {
        EXPECT_EQ(l.output_sparse, l.output_sparsity >= kActivationSparsityMin)
            << l.name << ": " << l.activation_reason;
      }
      if (i > 0) EXPECT_EQ(l.input_sparse, r.layers[i - 1].output_sparse);
      EXPECT_EQ(l.plans.front().options.output_sparse, l.output_sparse);
      EXPECT_GT(l.cycles, 0);
      EXPECT_GT(l.bytes_dense, 0);
      in = &l.output;
    }
    const json rep = NetworkReportJson(net, r);
    EXPECT_EQ(rep["layers"].size(), 3u);
    EXPECT_EQ(rep["outputs"], json({"b", "c"}));
    EXPECT_TRUE(Contains(NetworkReportText(net, r), "total: 3 layers"));
  }
}

// A sparse edge: the consumer's golden input is the producer's sparse output bytes and map.
TEST_F(NetworkTest, SparseEdgeGoldenInputIsTheProducersOutput) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(Network net, Load(Chain("sparse")));
  DPUEMU_ASSERT_OK_AND_ASSIGN(NetworkResult r, RunNetwork(net, RunOptions{}));
  const NetworkLayerResult& a = r.layers[0];
  const NetworkLayerResult& b = r.layers[1];
  ASSERT_TRUE(a.output_sparse);
  ASSERT_TRUE(b.input_sparse);
  DPUEMU_ASSERT_OK_AND_ASSIGN(GoldenSet ga, MakeGoldenSet(a.spec.layer, a.plans.front(), a.output));
  DPUEMU_ASSERT_OK_AND_ASSIGN(GoldenSet gb, MakeGoldenSet(b.spec.layer, b.plans.front(), b.output));
  const auto file = [](const GoldenSet& g, const std::string& name) -> const GoldenFile* {
    for (const GoldenFile& f : g.files) {
      if (f.name == name) return &f;
    }
    return nullptr;
  };
  ASSERT_NE(file(ga, "output_map.bin"), nullptr);
  ASSERT_NE(file(gb, "input_map.bin"), nullptr);
  EXPECT_EQ(file(ga, "output.bin")->bytes, file(gb, "input.bin")->bytes);
  EXPECT_EQ(file(ga, "output_map.bin")->bytes, file(gb, "input_map.bin")->bytes);
}

// LayerSpecJson writes what ParseNetworkLayer reads back: the same op, tensors and PPE.
TEST_F(NetworkTest, LayerSpecJsonRoundTrips) {
  struct Case {
    NceKind kind;
    DType in, w;
  };
  const Case cases[] = {{NceKind::kConv, DType::kU8, DType::kI8},
                        {NceKind::kConv, DType::kFP16, DType::kFP16},
                        {NceKind::kConv, DType::kI8, DType::kU8},
                        {NceKind::kDwConv, DType::kU8, DType::kI8},
                        {NceKind::kMaxPool, DType::kU8, DType::kI8},
                        {NceKind::kEltwise, DType::kI8, DType::kI8}};
  int n = 0;
  for (const Case& c : cases) {
    LayerSpec s;
    s.kind = c.kind;
    s.h = 6;
    s.w = 5;
    s.c = 32;
    s.k = 48;
    s.ky = s.kx = c.kind == NceKind::kEltwise ? 1 : 3;
    s.stride = c.kind == NceKind::kEltwise ? 1 : 2;
    s.in_dtype = s.out_dtype = c.in;
    s.w_dtype = c.w;
    s.leaky_relu = c.kind == NceKind::kConv;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer l, GenerateLayer(s, 40 + n));
    if (c.kind != NceKind::kEltwise) l.op.ppe.clamp_lo = IsFloat(c.in) ? -3.5 : l.op.ppe.out_zp;
    const std::string prefix = "l" + std::to_string(n++);
    DPUEMU_ASSERT_OK_AND_ASSIGN(json j, LayerSpecJson(l, dir_, prefix));
    LayerInputs in;
    in.target = &GetTarget(TargetId::kNPU40XX);
    in.input = l.input;
    in.input_zp = l.op.in_zp;
    in.input_name = "input";
    if (c.kind == NceKind::kEltwise) {
      in.has_input2 = true;
      in.input2 = l.input2;
      in.input2_zp = l.op.eltwise.in2_zp;
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(Spec back, ParseNetworkLayer(j, dir_ + "/net.json", "layers[0]", in));
    SCOPED_TRACE(j.dump());
    const NceOp& a = l.op;
    const NceOp& b = back.layer.op;
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.g.h, b.g.h);
    EXPECT_EQ(a.g.k, b.g.k);
    EXPECT_EQ(a.g.ky, b.g.ky);
    EXPECT_EQ(a.g.stride_y, b.g.stride_y);
    EXPECT_EQ(a.g.pad_left, b.g.pad_left);
    EXPECT_EQ(a.out_dtype, b.out_dtype);
    EXPECT_EQ(a.ppe.out_zp, b.ppe.out_zp);
    EXPECT_EQ(a.ppe.clamp_lo, b.ppe.clamp_lo);
    EXPECT_EQ(a.ppe.leaky_relu, b.ppe.leaky_relu);
    EXPECT_EQ(a.eltwise.in1_mult, b.eltwise.in1_mult);
    EXPECT_EQ(a.eltwise.in2_zp, b.eltwise.in2_zp);
    EXPECT_EQ(l.weights, back.layer.weights);
    EXPECT_EQ(l.input2, back.layer.input2);
    if (HasWeights(c.kind) || c.kind == NceKind::kEltwise) {
      EXPECT_EQ(l.quant.mult, back.layer.quant.mult);
      EXPECT_EQ(l.quant.bias, back.layer.quant.bias);
      EXPECT_EQ(l.quant.scale, back.layer.quant.scale);
      EXPECT_EQ(l.quant.fbias, back.layer.quant.fbias);
    }
  }
}

// The example network (conv, maxpool, eltwise, avgpool; a residual graph): on the SIMD kernels with activation
// sparsity auto it gives what the reference gives with every activation dense, on both targets.
TEST_F(NetworkTest, ExampleNetworkSparseSimdEqualsDenseReference) {
  for (const Target* t : AllTargets()) {
    SCOPED_TRACE(t->name);
    DPUEMU_ASSERT_OK_AND_ASSIGN(std::string path, WriteExampleNetwork(dir_, *t, 3));
    DPUEMU_ASSERT_OK_AND_ASSIGN(Network net, LoadNetwork(path));
    std::set<NceKind> kinds;
    for (const NetworkLayer& l : net.layers) kinds.insert(l.op.kind);
    EXPECT_EQ(kinds.size(), 4u);  // conv, maxpool, eltwise, avgpool
    EXPECT_EQ(net.layers.front().op.g.c, 3);  // the compressed convolution
    DPUEMU_ASSERT_OK_AND_ASSIGN(NetworkResult fast, RunNetwork(net, RunOptions{}));
    Network dense = net;
    dense.activation_sparsity = ActivationSparsity::kDense;
    RunOptions ref;
    ref.reference = true;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NetworkResult slow, RunNetwork(dense, ref));
    int sparse_edges = 0;
    for (size_t i = 0; i < fast.layers.size(); ++i) {
      EXPECT_EQ(fast.layers[i].output, slow.layers[i].output) << fast.layers[i].name;
      EXPECT_FALSE(slow.layers[i].output_sparse);
      sparse_edges += fast.layers[i].output_sparse;
    }
    EXPECT_GT(sparse_edges, 0) << NetworkReportText(net, fast);
  }
}

TEST_F(NetworkTest, MalformedNetworksNameTheLayerAndTheRule) {
  json net = Chain("auto");
  json bad = net;
  bad["layers"][1]["inputs"] = {"nope"};
  Error(bad, "layers[1] ('b').inputs: \"nope\": no layer of that name");
  bad = net;
  bad["layers"][0]["inputs"] = {"c"};
  Error(bad, "layers[0] ('a').inputs: \"c\" is layers[2], not before this layer: a cycle");
  bad = net;
  bad["layers"][2]["name"] = "a";
  Error(bad, "layers[2].name: \"a\": used by layers[0] too");
  bad = net;
  bad["layers"][1]["inputs"] = {"input"};  // 16 channels, b's weights want 32
  Error(bad, "layers[1] ('b')");
  bad = net;
  bad["layers"][0]["output"]["dtype"] = "i32";
  bad["layers"][0]["ppe"].erase("out_zero_point");
  bad["layers"][0]["ppe"].erase("clamp");
  Error(bad, "reads layer 'a', whose output is i32");
  bad = net;
  bad["layers"][1]["input"] = {{"npy", "x.npy"}, {"dtype", "u8"}};
  Error(bad, "layers[1] ('b').input: unknown field");
  bad = net;
  bad["layers"][1]["target"] = "NPU37XX";
  Error(bad, "layers[1] ('b').target: unknown field");
  bad = net;
  bad["outputs"] = {"zz"};
  Error(bad, "outputs: \"zz\": no layer of that name");
  bad = net;
  bad["activation_sparsity"] = "some";
  Error(bad, "activation_sparsity: \"some\": must be auto, dense or sparse");
  bad = net;
  bad["layers"] = json::array();
  Error(bad, "layers: must be a non-empty list");
  bad = net;
  bad["layers"][1]["inputs"] = {"a", "a"};
  Error(bad, "op conv takes 1 input(s), got 2");
  bad = net;
  bad["colour"] = 1;
  Error(bad, "colour: unknown field");
  bad = net;
  bad["input"]["dtype"] = "i32";
  Error(bad, "input.dtype");
}

}  // namespace
}  // namespace dpuemu
