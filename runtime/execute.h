// The execution half of the runtime: runs a planned layer the way the NPU runs it. Every DPU
// workload of the plan becomes its own ZMConv task - the layer sliced to the workload's output
// channels and rows (SliceLayer) and lowered in its tile's storage (TileStorage) - the tasks run
// in parallel on CPU threads (oneTBB), and their outputs are assembled into the layer's output.
// The result is byte-identical to the whole layer run as one task, for every split and thread
// count: the emulated split changes the memory formats and the work each DPU does, never a value.
//
// Scheduling (CPU side only; the plan is not changed):
//   - a work item is a workload of the plan; clustering replicas (tiles computing the same
//     output) are computed once, and workloads of padding channels only (k >= K) are skipped;
//   - when the plan has fewer than 4 work items per thread, each workload's rows are cut into
//     equal chunks so every thread stays busy (a chunk that would read only padding rows also
//     computes the nearest row that reads the input, and drops it);
//   - items run longest first (rows x channels), each thread taking the next one.
#ifndef DPUEMU_RUNTIME_EXECUTE_H_
#define DPUEMU_RUNTIME_EXECUTE_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "hw/layer.h"
#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"
#include "kernels/zmconv.h"
#include "runtime/plan.h"

namespace dpuemu {

struct RunOptions {
  int threads = 0;         // CPU threads; 0 = all cores
  KernelOptions kernel;    // for the SIMD kernels
  bool reference = false;  // run the reference DPU (kernels/ref) instead of the SIMD kernels
};

// One executed work item: a workload of the plan, or a row chunk of one.
struct WorkloadReport {
  int tile = 0;
  int64_t k_begin = 0, k_end = 0;      // output channels computed, padding included
  int64_t row_begin = 0, row_end = 0;  // output rows written
  int replicas = 0;     // other tiles computing the same output (clustering), not recomputed
  KernelReport kernel;  // which SIMD kernel ran and why (empty with RunOptions::reference)
  double seconds = 0;   // the item's kernel and output assembly
};

struct RunResult {
  Tensor output;  // dense [OH, OW, K] of the op's output dtype; padding channels dropped
  std::vector<WorkloadReport> workloads;  // plan order
  double seconds = 0;                     // wall time of the call
};

// A layer cut into its plan's work items, each sliced, lowered and (for the SIMD kernels) with
// its weights decoded once, so it can run many times; workloads with the same channels and input
// geometry share their decoded weights. Cheap to copy (shared, immutable).
class PreparedLayer {
 public:
  // Checks that the plan was made for this layer's op and this target and that its workloads
  // cover the output exactly once (clustering replicas aside). Prepares the items in parallel.
  static StatusOr<PreparedLayer> Create(const NceLayer& layer, const Plan& plan,
                                        const Target& target, const RunOptions& options);
  // Runs every item with the options given to Create. The first error in plan order is returned.
  StatusOr<RunResult> Run() const;
  int threads() const;  // threads Run uses (RunOptions::threads, or the core count)
  size_t items() const;

  struct Impl;

 private:
  PreparedLayer() = default;
  std::shared_ptr<const Impl> impl_;
};

// PreparedLayer::Create, then Run; RunResult::seconds includes the preparation.
StatusOr<RunResult> RunLayer(const NceLayer& layer, const Plan& plan, const Target& target,
                             const RunOptions& options);

// PlanLayer, then RunLayer. The plan is stored in *plan_out (when given) once planning succeeds.
StatusOr<RunResult> PlanAndRun(const NceLayer& layer, const Target& target,
                               const PlanOptions& plan_options, const RunOptions& run_options,
                               Plan* plan_out = nullptr);

// The pieces of the executor's lowering, shared with the per-tile golden set (runtime/golden.h)
// so both cut and lower a plan the same way.
//
// The plan must describe this very op on this target (geometry, types, zero points, PPE).
Status CheckPlanMatches(const NceOp& op, const Plan& plan, const Target& target);
// The rows a work item covering output rows [begin, end) computes: the smallest range around it
// that reads at least one input row (SliceLayer needs one; with pads >= the kernel a band at the
// edge may read only padding). Rows outside [begin, end) are computed and dropped.
std::pair<int64_t, int64_t> ComputedRows(const NceGeometry& g, int64_t begin, int64_t end);
// One work item's DPU task: SliceLayer(layer, k_begin, k_end, calc_begin, calc_end) lowered with
// `storage` (the tile's, TileStorage).
StatusOr<DpuTask> LowerSlice(const NceLayer& layer, const StorageOptions& storage,
                             int64_t k_begin, int64_t k_end, int64_t calc_begin, int64_t calc_end,
                             const Target& target);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_EXECUTE_H_
