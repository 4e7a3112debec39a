#include "kernels/ref/nce_ref.h"

#include "hw/fp_env.h"

namespace dpuemu {

StatusOr<DpuOutput> RunReference(const DpuTask& task, const Target& target) {
  const ScopedDpuFpEnv fp_env;
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, target));
  switch (task.op.kind) {
    case NceKind::kConv: return RefZMConv(task);
    case NceKind::kDwConv: return RefDwConv(task);
    case NceKind::kMaxPool: return RefMaxPool(task);
    case NceKind::kAvgPool: return RefAvgPool(task);
    case NceKind::kEltwise: return RefEltwise(task);
  }
  return Internal("RunReference: unknown op kind");
}

}  // namespace dpuemu
