#include "kernels/nce.h"

#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RunMaxPoolSimd(const DpuTask& task, KernelReport& report) {
  report.isa = "reference";
  report.reason = "no SIMD kernel for maxpool yet: ran the reference";
  return RefMaxPool(task);
}

StatusOr<DpuOutput> RunAvgPoolSimd(const DpuTask& task, KernelReport& report) {
  report.isa = "reference";
  report.reason = "no SIMD kernel for avgpool yet: ran the reference";
  return RefAvgPool(task);
}

}  // namespace dpuemu
