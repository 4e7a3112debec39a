#include "kernels/nce.h"

#include "hw/fp_env.h"

namespace dpuemu {

StatusOr<DpuOutput> RunNce(const DpuTask& task, const Target& target, const KernelOptions& options,
                           KernelReport* report, const PreparedWeights* prepared) {
  if (task.op.kind == NceKind::kConv) return RunZMConv(task, target, options, report, prepared);
  if (prepared != nullptr) {
    return InvalidArgument(std::string("prepared weights: only for conv (op is ") +
                           NceKindName(task.op.kind) + ")");
  }
  const ScopedDpuFpEnv fp_env;
  DPUEMU_RETURN_IF_ERROR(ValidateTask(task, target));
  KernelReport local;
  KernelReport& rep = report ? *report : local;
  rep = KernelReport();
  switch (task.op.kind) {
    case NceKind::kDwConv: return RunDwConvSimd(task, rep);
    case NceKind::kMaxPool: return RunMaxPoolSimd(task, rep);
    case NceKind::kAvgPool: return RunAvgPoolSimd(task, rep);
    case NceKind::kEltwise: return RunEltwiseSimd(task, rep);
    case NceKind::kConv: break;
  }
  return Internal("RunNce: unknown op kind");
}

}  // namespace dpuemu
