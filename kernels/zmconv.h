// Fast ZMConv: the DPU's convolution on CPU SIMD (Highway, dynamic dispatch), bit-identical to the
// reference DPU (kernels/ref) for every task it accepts.
//
// Two microkernel families share one accumulation scheme:
//  - "dense": vectorised over 16 output channels, each input element broadcast (work ~ all MACs);
//  - "sparse-weights": vectorised over output pixels, each non-zero weight broadcast (work ~
//    non-zero weights), used when the weights are sparse enough to pay for it.
// Both accumulate in fp32 FMA in (ky, kx, c) order, which is the float definition. For integers
// every product (x - x_zp) * (w - w_zp) is an integer of magnitude <= 65025, so sums of up to 256
// products are exact in fp32; the kernels move the partial sum into an int32 accumulator every
// 256 taps, which makes the integer result exact (int32, wrapping) as well.
#ifndef DPUEMU_KERNELS_ZMCONV_H_
#define DPUEMU_KERNELS_ZMCONV_H_

#include <memory>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/status.h"
#include "hw/target.h"

namespace dpuemu {

enum class ConvKernel { kAuto, kDense, kSparseWeights };

const char* ConvKernelName(ConvKernel k);  // "auto", "dense", "sparse-weights"
StatusOr<ConvKernel> ParseConvKernel(const std::string& name);

struct KernelOptions {
  ConvKernel kernel = ConvKernel::kAuto;
  // Highest integer tier to use: "" (then the environment variable DPUEMU_ISA, else "auto"),
  // "auto", "amx", "avx512vnni", "avxvnni", "avx2" or "highway" (Highway's own target choice).
  // The fastest tier at or below it that this CPU and layer allow runs; naming a tier this CPU
  // lacks is an error naming it. Float layers and the sparse-weights kernel always run Highway.
  std::string isa;
};

// What ran and why, for users who ask (CLI --explain, benchmarks).
struct KernelReport {
  ConvKernel kernel = ConvKernel::kAuto;
  std::string isa;     // what ran: "AMX-INT8", "AVX512-VNNI", "AVX-VNNI", or the Highway target ("AVX2")
  std::string reason;  // e.g. "weight density 24.8% < 60%: work proportional to non-zeros"
  double weight_density = 1.0;
};

// A task's weights decoded from the hardware formats and packed for the kernels, for callers that
// run the same weights on many inputs (the decode is O(K * KY * KX * C) per call otherwise).
class PreparedWeights {
 public:
  // Validates the task's weight buffers and weight table like the reference.
  static StatusOr<PreparedWeights> Create(const DpuTask& task, const Target& target);
  double weight_density() const;
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// Validates the task like the reference, then computes it. A forced kernel that would change the
// result (the float skip semantics differ when the input holds inf/NaN) is refused with an error.
// `prepared`, if given, must come from a task with the same op (its input height and vertical
// pads may differ: row slices of a layer share prepared weights) and weight buffers (checked).
StatusOr<DpuOutput> RunZMConv(const DpuTask& task, const Target& target,
                              const KernelOptions& options = {}, KernelReport* report = nullptr,
                              const PreparedWeights* prepared = nullptr);

// Weight density below which the auto choice takes the sparse-weights kernel (measured crossovers
// on the benchmark layers, see README).
constexpr double kSparseKernelMaxDensityInt = 0.2;
constexpr double kSparseKernelMaxDensityFloat = 0.27;
// Integer layers on the AVX-512 VNNI sparse-weights kernel (AVX-512 VNNI and AMX hosts).
constexpr double kSparseKernelMaxDensityVnni = 0.12;
// ... and, for integer layers, at least this many non-zeros per output channel on average.
constexpr double kSparseKernelMinNonzerosInt = 16;

}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_ZMCONV_H_
