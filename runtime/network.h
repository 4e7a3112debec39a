// Whole networks: a chain (or graph) of DPU layers, each planned and run as a SPEC.json layer,
// with activations flowing from producer to consumer the way the NPU passes them (README
// "Networks").
//
// NETWORK.json: {name, target, input {npy, dtype, zero_point}, activation_sparsity
// (auto | dense | sparse, default auto), layers: [{name, inputs (producer names or "input";
// default the previous layer; eltwise takes two), and the SPEC.json layer fields but target,
// input and input2}], outputs (layer names; default the last layer)}. A layer's input dtype,
// zero point and shape are its producer's output's.
//
// Activation sparsity of an edge producer -> consumers (the producer's output unit writes the
// sparse format with its map, and every consumer reads those bytes):
//   dense:  never;
//   sparse: whenever the producer can write sparse output and every consumer can read sparse
//           input (SupportedSparsity);
//   auto:   as sparse, and the measured sparsity of the producer's output is at least
//           kActivationSparsityMin (the compiler enables activation sparsity for a consumer input
//           whose sparsity ratio is >= 0.2, ../shared/dpu-facts.md). The decision needs the
//           values, so an eligible producer is planned and run with sparse output and re-planned
//           dense when its output turns out denser (the values are the same either way).
// The network's result is identical to running every layer dense (the storage never changes a
// value). Layers whose inputs are ready run concurrently (oneTBB), each on all threads.
#ifndef DPUEMU_RUNTIME_NETWORK_H_
#define DPUEMU_RUNTIME_NETWORK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"
#include "runtime/execute.h"
#include "runtime/plan.h"
#include "runtime/spec.h"

namespace dpuemu {

constexpr double kActivationSparsityMin = 0.2;

enum class ActivationSparsity { kAuto, kDense, kSparse };
const char* ActivationSparsityName(ActivationSparsity a);  // "auto", "dense", "sparse"

struct NetworkLayer {
  std::string name;
  std::vector<int> inputs;   // producer indices; -1 = the network's input
  std::vector<int> consumers;  // layer indices reading this layer's output
  nlohmann::json spec;       // the layer's object, as given
  std::string field;         // "layers[3]", for messages
  // Resolved at load (the layer parsed with zero tensors of its producers' shapes).
  NceOp op;                 // the op of its (first) DPU layer
  std::vector<int64_t> out_shape;  // [OH, OW, K]
  DType out_dtype = DType::kU8;
  int32_t out_zp = 0;
  Spec parsed;  // the layer parsed with zero inputs; a run swaps its producers' tensors in
};

struct Network {
  std::string path;  // the file
  std::string dir;   // its directory (relative .npy paths)
  std::string name;
  const Target* target = nullptr;
  Tensor input;  // [H, W, C]
  int32_t input_zp = 0;
  ActivationSparsity activation_sparsity = ActivationSparsity::kAuto;
  std::vector<NetworkLayer> layers;  // in file order, every producer before its consumers
  std::vector<int> outputs;          // layer indices
};

// Reads NETWORK.json and every .npy it names, and checks the graph (unique names, known
// producers, no cycles, input counts) and every layer against its producers' outputs. Errors name
// the file, the layer and the rule.
StatusOr<Network> LoadNetwork(const std::string& path);
// Whether this JSON file is a network (has "layers") rather than one layer's SPEC.json.
bool IsNetworkFile(const nlohmann::json& j);

// One executed layer, for the report.
struct NetworkLayerResult {
  std::string name;
  Spec spec;                // the layer as run (its inputs, its storage decisions)
  std::vector<Plan> plans;  // one per DPU layer (SE dilate: per phase)
  std::vector<Tensor> dpu_outputs;  // each DPU layer's dense output
  Tensor output;                    // the layer's dense output [OH, OW, K]
  double input_sparsity = 0;   // measured: fraction of input values at the zero point
  double output_sparsity = 0;  // measured on the output
  bool input_sparse = false;   // read in sparse storage
  bool output_sparse = false;  // written in sparse storage
  std::string activation_reason;  // why the output is written sparse or dense
  int64_t cycles = 0;             // estimated NPU cycles (sum over DPU layers)
  int64_t bytes_planned = 0;      // bytes the plan moves (inputs, weights, outputs of workloads)
  int64_t bytes_dense = 0;        // the same plan's shape with every tensor dense
  double seconds = 0;             // emulation (parse, plan, prepare, run, measure)
  double kernel_seconds = 0;      // of which running the prepared DPU tasks (PreparedLayer::Run)
};

struct NetworkResult {
  std::vector<NetworkLayerResult> layers;  // file order
  double seconds = 0;                      // wall time
};

// Runs every layer (RunOptions as for one layer: threads, kernel, reference). `progress`, when
// given, is called after each layer with its name.
StatusOr<NetworkResult> RunNetwork(const Network& net, const RunOptions& options,
                                   const std::function<void(const std::string&)>& progress = {});

// A small pruned ResNet-style int8 network (RGB first layer through the compressed convolution,
// max pool, two residual blocks with eltwise adds, global average pool, classifier; weights 60%
// zero, ReLU clamps) written as <dir>/network.json and its .npy files, for the demo, the
// benchmark and the tests. Returns the file's path.
StatusOr<std::string> WriteExampleNetwork(const std::string& dir, const Target& target,
                                          uint64_t seed);

// The report: a table (text) and report.json (per layer and totals).
std::string NetworkReportText(const Network& net, const NetworkResult& r);
nlohmann::json NetworkReportJson(const Network& net, const NetworkResult& r);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_NETWORK_H_
