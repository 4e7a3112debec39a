#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefAvgPool(const DpuTask& task) {
  (void)task;
  return Unimplemented("avgpool: not implemented yet in the reference");
}

}  // namespace dpuemu
