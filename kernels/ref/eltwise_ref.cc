#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefEltwise(const DpuTask& task) {
  (void)task;
  return Unimplemented("eltwise: not implemented yet in the reference");
}

}  // namespace dpuemu
