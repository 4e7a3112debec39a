#include "kernels/nce.h"

#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RunDwConvSimd(const DpuTask& task, KernelReport& report) {
  report.isa = "reference";
  report.reason = "no SIMD kernel for dwconv yet: ran the reference";
  return RefDwConv(task);
}

}  // namespace dpuemu
