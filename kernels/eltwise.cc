#include "kernels/nce.h"

#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RunEltwiseSimd(const DpuTask& task, KernelReport& report) {
  report.isa = "reference";
  report.reason = "no SIMD kernel for eltwise yet: ran the reference";
  return RefEltwise(task);
}

}  // namespace dpuemu
