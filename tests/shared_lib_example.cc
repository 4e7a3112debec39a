// A program built outside Bazel against the installed library (tests/shared_lib_test.sh): plans
// the seed's K=320 layer (shrunk) for NPU37XX with SOK and sparse output, runs the plan on two
// threads, and checks the result against the reference DPU on the whole layer.
#include <cstdio>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "runtime/execute.h"

namespace {

int Fail(const dpuemu::Status& status) {
  std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  auto spec = dpuemu::StandardLayer("k320_1x1_28");
  if (!spec.ok()) return Fail(spec.status());
  spec->h = spec->w = 8;
  spec->c = 64;
  spec->weight_sparsity = 0.6;
  auto layer = dpuemu::GenerateLayer(*spec, /*seed=*/7);
  if (!layer.ok()) return Fail(layer.status());
  const dpuemu::Target& npu = dpuemu::GetTarget(dpuemu::TargetId::kNPU37XX);

  dpuemu::PlanOptions plan_options;
  plan_options.split = dpuemu::SplitStrategy::kSok;
  plan_options.output_sparse = true;
  dpuemu::RunOptions run_options;
  run_options.threads = 2;
  dpuemu::Plan plan;
  auto run = dpuemu::PlanAndRun(*layer, npu, plan_options, run_options, &plan);
  if (!run.ok()) return Fail(run.status());

  auto task = dpuemu::LowerLayer(*layer, dpuemu::StorageOptions{}, npu);
  if (!task.ok()) return Fail(task.status());
  auto ref = dpuemu::RunReference(*task, npu);
  if (!ref.ok()) return Fail(ref.status());
  auto expected = dpuemu::DenseOutput(*ref, layer->op.ppe.out_zp);
  if (!expected.ok()) return Fail(expected.status());

  const bool same = run->output == *expected;
  std::printf("%s on %s: %s over %d tiles, K=%lld padded to %lld, %zu work items on %d threads: "
              "output %s %s the reference\n",
              layer->name.c_str(), npu.name, dpuemu::SplitStrategyName(plan.split),
              plan.tiles_used, static_cast<long long>(layer->op.g.k),
              static_cast<long long>(plan.k_padded), run->workloads.size(), run_options.threads,
              run->output.ShapeString().c_str(), same ? "identical to" : "DIFFERS from");
  return same ? 0 : 1;
}
