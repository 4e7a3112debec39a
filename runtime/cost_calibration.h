// The cost model against VPUNN's predictions (tests/data/vpunn-calibration.tsv): the rows as
// workloads, the per-row ratios and the summary per target x dtype, and the constants search
// (bench/cost_fit prints them; tests/cost_model_test checks the targets of issue 11).
#ifndef DPUEMU_RUNTIME_COST_CALIBRATION_H_
#define DPUEMU_RUNTIME_COST_CALIBRATION_H_

#include <string>
#include <vector>

#include "hw/status.h"
#include "runtime/cost.h"

namespace dpuemu {

struct CalibrationRow {
  std::string name, device, dtype;  // device "VPU_2_7" / "VPU_4_0"; dtype "int8" / "fp16"
  const Target* target = nullptr;
  CostWorkload workload;
  double vpunn_cycles = 0;
};

// The TSV's rows; rows VPUNN refused (cycles "ERR:...") are skipped. An error names the line.
StatusOr<std::vector<CalibrationRow>> ReadCalibration(const std::string& path);

struct CalibrationSummary {
  std::string device, dtype;
  int rows = 0;
  double within_25 = 0;       // fraction of rows with model / VPUNN in [0.75, 1.25]
  double median_abs_log2 = 0; // median |log2(model / VPUNN)|
};

// model / VPUNN per row, with the target's constants (or `constants` for that target).
double ModelRatio(const CalibrationRow& row, const TargetCostConstants& constants);
std::vector<CalibrationSummary> Summarise(const std::vector<CalibrationRow>& rows);
std::string SummaryToText(const std::vector<CalibrationSummary>& s);

// Coordinate search over one target's constants from `start`, minimising the sum over its rows
// of min(|log2 ratio|, 1)^2: each constant in turn is scaled by factors 1 +- step while the sum
// falls, the step halving from 0.2 to 0.002.
TargetCostConstants FitConstants(const std::vector<CalibrationRow>& rows, TargetId target,
                                 const TargetCostConstants& start);
std::string ConstantsToText(const TargetCostConstants& c);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_COST_CALIBRATION_H_
