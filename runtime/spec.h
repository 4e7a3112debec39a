// SPEC.json: one ZMConv layer for the dpuemu CLI, described by hardware teams with numpy tensors
// beside it (format and example in README.md, "The dpuemu CLI"). Parsing is strict: every field
// is checked for presence, type and range, an unknown field is an error, and each tensor's .npy
// dtype must be the declared dtype's (fp16: numpy float16; bf16: uint16 bit patterns). Every
// message starts with the spec file and the JSON field, e.g.
//   "layer.json: input.zero_point = 300: must be in [0, 255] (u8)".
//
// With "se" (storage-element pointer operations, hw/se_ops.h) input.npy is the SOURCE tensor and
// the DPU reads a virtual tensor through an SE pointer table: a generated one (upsample_nearest,
// interpolate_nearest, interpolate_bilinear, transposed, pad, roll, dilate) or a table and map made
// elsewhere (interpolate_bilinear also makes its own weights: hw/se_ops.h). The spec
// then runs as one or more ordinary ZMConv layers over virtual tensors (its "DPU layers": one,
// or one per phase of a dilated convolution), each planned and run like any layer; the virtual
// input each one computes on is gathered through the very table the DPU would read
// (LowerWithGather, then GatherActivations), so the result is the DPU's on the SE task.
#ifndef DPUEMU_RUNTIME_SPEC_H_
#define DPUEMU_RUNTIME_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/se_ops.h"
#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"
#include "runtime/execute.h"
#include "runtime/plan.h"

namespace dpuemu {

// The spec's "se" field, resolved against its tensors and target.
struct SeSpec {
  // upsample_nearest, interpolate_nearest, interpolate_bilinear, transposed, pad, roll, dilate;
  // "table" for a table and map given as .npy files.
  std::string op;
  std::string params;   // the op's parameters as the spec gave them, for printing
  int64_t se_size = 0;  // the storage-element size of the table (resolved, never 0)
  Tensor source;        // input.npy as [H, W, C]
  SourceLayout layout;  // source rows per tile (se.source_rows_per_tile; default all in tile 0)
  bool source_sparse = false;  // sparsity.input: the source is stored in sparse-activation slots

  // One DPU layer: an ordinary ZMConv over the virtual tensor `gather` reads. Its outputs
  // (q, r) land at (out_y0 + step_y * q, out_x0 + step_x * r) of the spec's output.
  struct Phase {
    SeGather gather;
    // The ZMConv over the virtual tensor (for transposed: stride 1, no padding, the kernel
    // flipped); input = the virtual tensor as the DPU reads it through the table.
    NceLayer layer;
    int64_t out_y0 = 0, out_x0 = 0, step_y = 1, step_x = 1;
    PlanSe accounting;  // the table, map and source rows read, for the planner
  };
  std::vector<Phase> phases;     // dilate: one per output phase; every other op: one
  int64_t out_h = 0, out_w = 0;  // the spec's output rows and columns
  // The spec's own convolution over the source (kernel, stride, pad as the spec gives them: for
  // transposed the transposed conv's, for dilate the dilated conv's) and its dilation.
  NceGeometry geometry;
  int64_t dilation_y = 1, dilation_x = 1;
  std::string dilated_plan;  // dilate: DilatedPlan::ToString()
};

struct Spec {
  std::string path;  // the spec file
  const Target* target = nullptr;
  // name: the spec's "name", else the file name without ".json". Without "se": the layer. With
  // "se": the first DPU layer (se->phases[0].layer, but with the spec's name); use
  // DpuLayerCount / DpuLayer for all of them.
  NceLayer layer;
  PlanOptions plan;  // storage (sparsity, SE sizes) and split requests
  RunOptions run;    // the spec's optional "run" object; CLI flags override it
  std::optional<SeSpec> se;
};

// A network layer's inputs (runtime/network.h): its producers' output tensors [H, W, C].
struct LayerInputs {
  const Target* target = nullptr;  // the network's
  Tensor input;
  int32_t input_zp = 0;
  std::string input_name;  // the producer, for messages ("layer 'conv1'")
  bool has_input2 = false;  // eltwise
  Tensor input2;
  int32_t input2_zp = 0;
  std::string input2_name;
};

// Reads the spec and the .npy files it names (paths relative to the spec's directory).
StatusOr<Spec> LoadSpec(const std::string& path);
// The same from the spec's text; `path` names the file in messages and anchors relative paths.
StatusOr<Spec> ParseSpec(const std::string& text, const std::string& path);

// One layer object of a network file `path` at `field` ("layers[2]"): the SPEC.json fields but
// target, input and input2 (and with name and inputs, which the network reads), its input tensors
// given. Errors start with the file and the field.
StatusOr<Spec> ParseNetworkLayer(const nlohmann::json& j, const std::string& path,
                                 const std::string& field, const LayerInputs& given);

// The SPEC.json object of a layer without its input(s) (a network layer, runtime/network.h): op,
// weights, bias, kernel, stride, pad, ppe (per-channel lists), eltwise and output, its tensors
// written as <dir>/<prefix>_w.npy and <prefix>_b.npy. The inverse of ParseNetworkLayer.
StatusOr<nlohmann::json> LayerSpecJson(const NceLayer& layer, const std::string& dir,
                                       const std::string& prefix);

// The ZMConv layers the spec runs on the DPU, in order: the layer, or the SE phases.
size_t DpuLayerCount(const Spec& spec);
const NceLayer& DpuLayer(const Spec& spec, size_t i);
// The plan options of DPU layer i: the spec's, plus (with "se") the SE table, map and the source
// rows each virtual row reads (PlanSe), and the table's SE size.
PlanOptions DpuLayerPlanOptions(const Spec& spec, size_t i);

// Plans every DPU layer (errors start with the spec file).
StatusOr<std::vector<Plan>> PlanSpec(const Spec& spec);
// The plan(s) as text and JSON: PlanToText / PlanToJson for one DPU layer; for a dilated
// convolution the phase decomposition, then each phase's plan ("phases": [{out_y0, out_x0,
// out_h, out_w, plan}], "cycles" and "time_us" summed: the phases run one after another).
std::string SpecPlanToText(const Spec& spec, const std::vector<Plan>& plans,
                           bool explain = false);  // explain: every workload's cost terms
nlohmann::json SpecPlanToJson(const Spec& spec, const std::vector<Plan>& plans);

// The spec's dense output [OH, OW, K] from each DPU layer's dense output, in order.
StatusOr<Tensor> AssembleSpecOutput(const Spec& spec, const std::vector<Tensor>& outputs);

// With "se": the DPU task of every phase as the hardware runs it (LowerWithGather: the source in
// its tiles, the table, the virtual map) with the plans' storage decisions (weights sparse or
// dense as planned; source sparsity, output sparsity and SE sizes from the spec).
StatusOr<std::vector<DpuTask>> LowerSeSpec(const Spec& spec, const std::vector<Plan>& plans);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_SPEC_H_
