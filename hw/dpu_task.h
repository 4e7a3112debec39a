// A DpuTask is one DPU invocation (of any NceKind) as the DPU sees it: the op's registers plus
// every buffer in the hardware's memory formats (weights, weight map, weight table, input data
// per tile, input map, SE table, the eltwise's second input). LowerLayer builds one from a dense
// NceLayer; the reference and the fast kernels run it; the CLI writes it out as the golden set.
#ifndef DPUEMU_HW_DPU_TASK_H_
#define DPUEMU_HW_DPU_TASK_H_

#include <cstdint>
#include <vector>

#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/status.h"
#include "hw/target.h"

namespace dpuemu {

// How each tensor is stored. se sizes of 0 pick the default for the target.
struct StorageOptions {
  bool weights_sparse = false;
  bool input_sparse = false;
  bool input_se_table = false;  // read the input through an SE pointer table (identity order)
  int64_t input_se_size = 0;
  bool output_sparse = false;
  int64_t output_se_size = 0;
};

struct DpuTask {
  NceOp op;
  std::vector<uint8_t> weights;       // dense OYXI, or compressed runs
  std::vector<uint8_t> weight_map;    // empty when dense
  std::vector<uint8_t> weight_table;  // 16 bytes per output channel
  std::vector<std::vector<uint8_t>> input_tiles;  // CMX input data per tile
  std::vector<uint8_t> input_map;     // empty = dense input
  std::vector<int32_t> se_table;      // empty = no SE pointers
  int64_t input_se_size = 0;
  bool output_sparse = false;
  int64_t output_se_size = 0;
  std::vector<uint8_t> input2;        // eltwise: the second input, dense [H, W, C]
  // Kinds without a weight table (weight_table empty) requantise every channel alike with the
  // PPE's registers (the compiler's PPE attribute: quant mult / shift, bias, float scale).
  struct PpeRegisters {
    int32_t mult = 1, shift = 0, bias = 0;  // integer path
    float scale = 1.0f, fbias = 0.0f;       // float path
  } ppe_regs;

  ActivationView input_view() const;
  bool weights_sparse() const { return !weight_map.empty(); }
};

// The largest storage-element size the target allows that divides `channels` (the compiler's
// getSESize, VPU/utils/sparsity_utils.cpp). Given the input dtype, it also avoids the fp16/bf16
// IC = 8192 SE = 4096 erratum (IsSeErratum).
int64_t DefaultSeSize(const Target& t, int64_t channels, DType in_dtype = DType::kU8);

// One DPU invocation: the layer must pass ValidateInvocation (pads <= kernel / 2, C, K <= 8192).
StatusOr<DpuTask> LowerLayer(const NceLayer& layer, const StorageOptions& opts, const Target& t);

// Checks the registers and every buffer size/pointer against the op and the target.
Status ValidateTask(const DpuTask& task, const Target& t);

// What the DPU's output unit writes: [OH, OW, K] values (dense), or the dense-sized storage whose
// SEs hold the values that differ from the output zero point packed at their start, plus the map.
struct DpuOutput {
  Tensor data;
  std::vector<uint8_t> map;  // sparse output only
  int64_t se_size = 0;
  bool sparse() const { return !map.empty(); }
};
// Encodes a dense result as the task asks (dense, or sparse per output SE).
StatusOr<DpuOutput> StoreOutput(const DpuTask& task, Tensor dense);
// The dense values of an output in either storage.
StatusOr<Tensor> DenseOutput(const DpuOutput& out, int32_t out_zp);

}  // namespace dpuemu

#endif  // DPUEMU_HW_DPU_TASK_H_
