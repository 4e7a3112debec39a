#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefMaxPool(const DpuTask& task) {
  (void)task;
  return Unimplemented("maxpool: not implemented yet in the reference");
}

}  // namespace dpuemu
