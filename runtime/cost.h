// The DPU cost model: estimated cycles of one DPU workload, per target, fitted to Intel's VPUNN
// (github.com/intel/npu-nn-cost-model) predictions in tests/data/vpunn-calibration.tsv (VPUNN's
// figures, not measurements). Analytic: a function of the workload and per-target constants,
// never a lookup of calibration rows.
//
//   cycles = max(mac, data) + overhead
//   mac    = padded outputs * taps / (int8 MACs per cycle * the dtype's rate) * sparse factor
//            padded outputs: rows, cols rounded up to the MPE mode's cell (its grid / 4: 16x16 ->
//            4x4, 8x16 -> 2x4 rows x cols, 4x16 -> 2x2), channels to 16;
//            sparse factor: 1 dense; with weight sparsity density d (or activation sparsity,
//            d = 1 - input sparsity) max(floor, 1 - gain * (1 - d)); with both, the cheaper of the
//            two single-sparsity factors (VPUNN does the same);
//   data   = (input bytes incl. halo and maps + weight bytes incl. map and table + output bytes)
//            / the dtype's bytes per cycle;
//   overhead = a fixed per-workload cost.
// The constants and how they were fitted: README "## Cost model" (bench/cost_fit rerun).
#ifndef DPUEMU_RUNTIME_COST_H_
#define DPUEMU_RUNTIME_COST_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "hw/dtype.h"
#include "hw/layer.h"
#include "hw/target.h"

namespace dpuemu {

// One workload as the cost model sees it.
struct CostWorkload {
  NceKind kind = NceKind::kConv;
  DType in_dtype = DType::kU8, w_dtype = DType::kI8, out_dtype = DType::kU8;
  int64_t rows = 0, cols = 0, channels = 0;  // output cuboid
  int64_t grid_w = 16, grid_h = 16;          // the MPE mode's grid (CUBOID_16x16 = 16 x 16)
  int64_t taps = 0;                          // MACs per output (KY * KX * C for a conv)
  double weight_density = 1.0;               // nonzero fraction, used when weight_sparse
  bool weight_sparse = false;
  double input_sparsity = 0.0;               // zero fraction, used when input_sparse
  bool input_sparse = false;
  // Bytes moved (the planner counts them: input window with halo, SE table and maps; weights
  // with map and table; output with its map).
  int64_t input_bytes = 0, weight_bytes = 0, output_bytes = 0;
};

// Every term of one estimate.
struct WorkloadCostTerms {
  int64_t padded_outputs = 0;
  double macs = 0;            // padded outputs * taps
  double dense_mac_cycles = 0;
  double weight_factor = 1, activation_factor = 1, sparse_factor = 1;  // applied: the min
  double mac_cycles = 0;
  int64_t data_bytes = 0;
  double data_cycles = 0;
  double overhead_cycles = 0;
  const char* bound = "mac";  // "mac" or "data"
  int64_t cycles = 0;
  std::string ToString() const;
  nlohmann::json ToJson() const;
};

// Per-dtype constants (integer types use int8's, float types fp16's).
struct DtypeCostConstants {
  double mac_rate = 1.0;  // fraction of the int8 MACs per cycle
  double bytes_per_cycle = 64;
  // Sparse MAC time / dense = max(sparse_floor, 1 - sparse_gain * (1 - density)): 1 at density 1.
  double sparse_gain = 1, sparse_floor = 0;
};
struct TargetCostConstants {
  DtypeCostConstants int8, fp16;
  double overhead_cycles = 0;
};

// The fitted constants of a target (README "## Cost model").
const TargetCostConstants& CostConstants(TargetId id);

WorkloadCostTerms WorkloadCost(const CostWorkload& w, const Target& t);
WorkloadCostTerms WorkloadCost(const CostWorkload& w, const Target& t,
                               const TargetCostConstants& c);

// Weight bytes of k output channels of `taps` weights: dense (data + table) or sparse with
// `nonzeros_per_channel` (16-aligned data + map + table), as the planner counts them.
int64_t EstimatedWeightBytes(int64_t k, int64_t taps, DType w, bool sparse,
                             double nonzeros_per_channel);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_COST_H_
