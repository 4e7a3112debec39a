// The reference DPU: one DPU task computed straight from the hardware's memory formats, written
// to be read by a hardware engineer. It is the definition every fast kernel is tested against.
// One function per kind (NceKind), each in its own file (zmconv_ref.cc, dwconv_ref.cc, ...);
// RunReference validates the task and runs its kind's.
//
// ZMConv accumulation:
//   integer: acc = int32 (wrapping) sum over (ky, kx, c) of (x - x_zp) * (w - w_zp); padding
//            pixels and elements whose input-map bit is 0 read as x_zp.
//   float:   acc = 0; for (ky, kx, c) in that order: acc = fmaf(x, w, acc) in fp32; padding and
//            map-0 inputs read as 0; with sparse weights, weights absent from the map are skipped
//            (the hardware does no work for them).
// Then the PPE of kernels/ppe.h, and the output unit writes dense or sparse storage.
#ifndef DPUEMU_KERNELS_REF_NCE_REF_H_
#define DPUEMU_KERNELS_REF_NCE_REF_H_

#include "hw/dpu_task.h"
#include "hw/status.h"
#include "hw/target.h"

namespace dpuemu {

// Validates the task against the target, then computes the whole output.
StatusOr<DpuOutput> RunReference(const DpuTask& task, const Target& target);

// The kinds' references, for a task ValidateTask accepted (RunReference calls them).
StatusOr<DpuOutput> RefZMConv(const DpuTask& task);
StatusOr<DpuOutput> RefDwConv(const DpuTask& task);
StatusOr<DpuOutput> RefMaxPool(const DpuTask& task);
StatusOr<DpuOutput> RefAvgPool(const DpuTask& task);
StatusOr<DpuOutput> RefEltwise(const DpuTask& task);

}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_REF_NCE_REF_H_
