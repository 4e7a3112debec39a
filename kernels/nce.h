// The fast DPU: every NceKind on CPU SIMD, bit-identical to the reference (kernels/ref) for every
// task it accepts. ZMConv is kernels/zmconv.h; each other kind has its own file (dwconv.cc,
// pool.cc, eltwise.cc) with Highway kernels chosen at run time.
#ifndef DPUEMU_KERNELS_NCE_H_
#define DPUEMU_KERNELS_NCE_H_

#include "hw/dpu_task.h"
#include "hw/status.h"
#include "hw/target.h"
#include "kernels/zmconv.h"

namespace dpuemu {

// Validates the task like the reference, then runs its kind's kernel. `options` and `prepared`
// apply to ZMConv (prepared must be null for other kinds); the report says what ran and why.
StatusOr<DpuOutput> RunNce(const DpuTask& task, const Target& target,
                           const KernelOptions& options = {}, KernelReport* report = nullptr,
                           const PreparedWeights* prepared = nullptr);

// The kinds' kernels, for a task ValidateTask accepted (RunNce calls them).
StatusOr<DpuOutput> RunDwConvSimd(const DpuTask& task, KernelReport& report);
StatusOr<DpuOutput> RunMaxPoolSimd(const DpuTask& task, KernelReport& report);
StatusOr<DpuOutput> RunAvgPoolSimd(const DpuTask& task, KernelReport& report);
StatusOr<DpuOutput> RunEltwiseSimd(const DpuTask& task, KernelReport& report);

}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_NCE_H_
