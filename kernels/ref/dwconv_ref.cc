#include "kernels/ref/nce_ref.h"

namespace dpuemu {

StatusOr<DpuOutput> RefDwConv(const DpuTask& task) {
  (void)task;
  return Unimplemented("dwconv: not implemented yet in the reference");
}

}  // namespace dpuemu
