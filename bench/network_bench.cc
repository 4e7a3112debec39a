// The example network (runtime/network.h WriteExampleNetwork: a pruned ResNet-style int8 model)
// end to end on the emulated NPU: images/s on 1 and 2 threads, and the share of the time spent in
// the DPU kernels (PreparedLayer::Run) against parsing, planning, preparing and measuring.
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <benchmark/benchmark.h>

#include "hw/target.h"
#include "runtime/network.h"

namespace dpuemu {
namespace {

void BM_Network(benchmark::State& state, TargetId id) {
  char tmpl[] = "/tmp/dpuemu-netbench-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  if (dir == nullptr) return state.SkipWithError("mkdtemp failed");
  const Target& target = GetTarget(id);
  StatusOr<std::string> path = WriteExampleNetwork(dir, target, /*seed=*/7);
  StatusOr<Network> net = path.ok() ? LoadNetwork(*path) : StatusOr<Network>(path.status());
  if (!net.ok()) return state.SkipWithError(net.status().ToString().c_str());
  RunOptions options;
  options.threads = static_cast<int>(state.range(0));
  double wall = 0, kernels = 0;
  for (auto _ : state) {
    StatusOr<NetworkResult> r = RunNetwork(*net, options);
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    wall += r->seconds;
    for (const NetworkLayerResult& l : r->layers) kernels += l.kernel_seconds;
  }
  state.counters["images/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
  // Branches run concurrently, so the kernels' summed time can exceed the wall time slightly.
  state.counters["kernel_share"] = wall > 0 ? kernels / wall : 0;
  state.SetLabel(std::string(target.name) + ", " + std::to_string(net->layers.size()) + " layers");
  std::filesystem::remove_all(dir);
}

BENCHMARK_CAPTURE(BM_Network, resnet_tiny_int8_npu37, TargetId::kNPU37XX)
    ->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Network, resnet_tiny_int8_npu40, TargetId::kNPU40XX)
    ->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace dpuemu

BENCHMARK_MAIN();
