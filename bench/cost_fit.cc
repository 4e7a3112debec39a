// The cost model (runtime/cost.h) against VPUNN's predictions: one line per calibration row
// (model cycles, VPUNN cycles, ratio, the model's terms), then the summary per target x dtype.
//   bazel run //bench:cost_fit                 # the fitted constants
//   bazel run //bench:cost_fit -- --fit        # search the constants again from the fitted ones
//   bazel run //bench:cost_fit -- --holdout    # leave one layer out: fit on the other four
//                                              # from neutral constants, score the one left out
//   bazel run //bench:cost_fit -- PATH.tsv     # another table in the same format
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "runtime/cost.h"
#include "runtime/cost_calibration.h"

int main(int argc, char** argv) {
  using namespace dpuemu;
  std::string path = "tests/data/vpunn-calibration.tsv";
  bool fit = false, holdout = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--fit") == 0) {
      fit = true;
    } else if (std::strcmp(argv[i], "--holdout") == 0) {
      holdout = true;
    } else {
      path = argv[i];
    }
  }
  StatusOr<std::vector<CalibrationRow>> rows = ReadCalibration(path);
  if (!rows.ok()) {
    std::fprintf(stderr, "cost_fit: %s\n", rows.status().message().c_str());
    return 1;
  }
  if (holdout) {
    // Neutral start: the nominal MAC rates, 64 B/cycle, ideal sparsity, no overhead.
    TargetCostConstants neutral;
    neutral.int8 = {1.0, 64, 1.0, 0.0};
    neutral.fp16 = {0.5, 64, 1.0, 0.0};
    std::vector<std::string> layers;
    for (const CalibrationRow& r : *rows) {
      const std::string layer = r.name.substr(0, r.name.find('/'));
      if (std::find(layers.begin(), layers.end(), layer) == layers.end()) layers.push_back(layer);
    }
    std::printf("%-18s %-8s %5s %11s %14s\n", "held-out layer", "target", "rows", "within 25%",
                "median |log2|");
    for (const std::string& layer : layers) {
      std::vector<CalibrationRow> train, test;
      for (const CalibrationRow& r : *rows) {
        (r.name.rfind(layer + "/", 0) == 0 ? test : train).push_back(r);
      }
      for (TargetId id : {TargetId::kNPU37XX, TargetId::kNPU40XX}) {
        const TargetCostConstants c = FitConstants(train, id, neutral);
        std::vector<double> logs;
        int within = 0;
        for (const CalibrationRow& r : test) {
          if (r.target->id != id) continue;
          const double ratio = ModelRatio(r, c);
          logs.push_back(std::fabs(std::log2(ratio)));
          within += ratio >= 0.75 && ratio <= 1.25;
        }
        std::sort(logs.begin(), logs.end());
        const size_t n = logs.size();
        const double median = n == 0 ? 0 : n % 2 ? logs[n / 2] : (logs[n / 2 - 1] + logs[n / 2]) / 2;
        std::printf("%-18s %-8s %5zu %10.1f%% %14.3f\n", layer.c_str(), GetTarget(id).name, n,
                    n == 0 ? 0.0 : 100.0 * within / static_cast<double>(n), median);
      }
    }
    return 0;
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
