// The emulated NPU generations as data (sources in README.md and ../shared/dpu-facts.md).
#ifndef DPUEMU_HW_TARGET_H_
#define DPUEMU_HW_TARGET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "hw/status.h"

namespace dpuemu {

enum class TargetId { kNPU37XX, kNPU40XX };

struct Target {
  TargetId id;
  const char* name;        // "NPU37XX"
  const char* generation;  // "VPU2.7"
  int tiles;               // clusters
  int dpus_per_tile;
  int64_t cmx_bytes_per_tile;  // usable by the compiler
  int macs_per_cycle;          // int8 MACs per DPU per cycle
  double clock_mhz;            // DPU clock (VPUNN)
  int cmx_granularity;         // minimum CMX read, bytes
  // Storage-element sizes: multiples of 16 in [16, max]; NPU37XX also needs a power of two.
  int se_size_max;
  bool se_size_power_of_two;
  // Split rules.
  bool sok_sparse_output_pow2;  // SOK with sparse output: equal power-of-two splits (pads K)
  int soh_row_multiple_dense;   // W x rows-per-tile must be a multiple of this (0 = no rule)
  int soh_row_multiple_sparse;
  int sok_min_channels_per_tile;
  bool se_ptrs_enabled_by_default;
  std::vector<DType> activation_dtypes;
  std::vector<DType> weight_dtypes;
  std::vector<DType> output_dtypes;
};

const Target& GetTarget(TargetId id);
StatusOr<const Target*> TargetByName(const std::string& name);  // "NPU37XX" / "VPU2.7" ...
const std::vector<const Target*>& AllTargets();

// Checks a storage-element size against the target's rule; the message names `field`.
Status CheckSeSize(const Target& t, int64_t se_size, const std::string& field);
// An input SE size: CheckSeSize, and for sparse input read without an SE table (dense_se, the
// IDU's DENSE_SE = 1) the erratum E#102555 of both targets: fp16/bf16 input with IC = 8192 cannot
// use SE size 4096 (NPU37XX/NPU40XX sparsity_constraint.cpp areChannelsFitForSESize).
Status CheckInputSeSize(const Target& t, int64_t se_size, DType in_dtype, int64_t c, bool dense_se,
                        const std::string& field);
bool IsSeErratum(DType in_dtype, int64_t c, int64_t se_size);
// Whether the target supports the type as activations, weights, output.
bool Supports(const std::vector<DType>& list, DType t);

}  // namespace dpuemu

#endif  // DPUEMU_HW_TARGET_H_
