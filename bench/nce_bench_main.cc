// nce_bench: the DPU's other operations (dwconv, pools, eltwise, ...) beside oneDNN's equivalent
// primitive in the same run. Each kind registers its rows in its own nce_bench_<kind>.cc; this
// file names the host (CPU model, the SIMD target that runs) in the benchmark context.
#include <fstream>
#include <string>

#include <benchmark/benchmark.h>
#include <hwy/targets.h>

namespace {

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("cpu_model", CpuModel());
  benchmark::AddCustomContext("highway_target", hwy::TargetName(hwy::SupportedAndGeneratedTargets()[0]));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
