// The cost model (runtime/cost.h) against VPUNN's predictions: one line per calibration row
// (model cycles, VPUNN cycles, ratio, the model's terms), then the summary per target x dtype.
//   bazel run //bench:cost_fit                 # the fitted constants
//   bazel run //bench:cost_fit -- --fit        # search the constants again from the fitted ones
//   bazel run //bench:cost_fit -- PATH.tsv     # another table in the same format
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "runtime/cost.h"
#include "runtime/cost_calibration.h"

int main(int argc, char** argv) {
  using namespace dpuemu;
  std::string path = "tests/data/vpunn-calibration.tsv";
  bool fit = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--fit") == 0) {
      fit = true;
    } else {
      path = argv[i];
    }
  }
  StatusOr<std::vector<CalibrationRow>> rows = ReadCalibration(path);
  if (!rows.ok()) {
    std::fprintf(stderr, "cost_fit: %s\n", rows.status().message().c_str());
    return 1;
  }
  if (fit) {
    for (TargetId id : {TargetId::kNPU37XX, TargetId::kNPU40XX}) {
      const TargetCostConstants c = FitConstants(*rows, id, CostConstants(id));
      std::printf("%s fitted: %s\n", GetTarget(id).name, ConstantsToText(c).c_str());
    }
    return 0;
  }
  std::printf("%-24s %-7s %-4s %4s %9s %9s %6s  terms\n", "workload", "device", "type", "wsp",
              "model", "vpunn", "ratio");
  for (const CalibrationRow& r : *rows) {
    const WorkloadCostTerms t = WorkloadCost(r.workload, *r.target);
    std::printf("%-24s %-7s %-4s %4.2f %9lld %9.0f %6.3f  %s\n", r.name.c_str(), r.device.c_str(),
                r.dtype.c_str(), r.workload.weight_sparse ? 1 - r.workload.weight_density : 0.0,
                static_cast<long long>(t.cycles), r.vpunn_cycles,
                static_cast<double>(t.cycles) / r.vpunn_cycles, t.ToString().c_str());
  }
  for (TargetId id : {TargetId::kNPU37XX, TargetId::kNPU40XX}) {
    std::printf("%s constants: %s\n", GetTarget(id).name, ConstantsToText(CostConstants(id)).c_str());
  }
  std::printf("\n%s", SummaryToText(Summarise(*rows)).c_str());
  return 0;
}
