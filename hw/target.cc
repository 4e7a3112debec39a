#include "hw/target.h"

#include <algorithm>

namespace dpuemu {
namespace {

const std::vector<DType> kActs = {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16};
// int4 weights on both: the IDU's weight modes include I4 and U4 (VpuInputTensorDType in
// NPU37XX/dialect/NPUReg37XX/firmware_headers/details/api/vpu_nce_hw_37xx.h, likewise 40xx), and the
// compiler's I4WeightsConvToNCE LIT test runs for NPU37XX and NPU40XX.
const std::vector<DType> kWeights = {DType::kU8, DType::kI8, DType::kI4, DType::kU4, DType::kFP16,
                                     DType::kBF16};
const std::vector<DType> kOutputs = {DType::kU8,   DType::kI8,   DType::kI32,
                                     DType::kFP16, DType::kBF16, DType::kFP32};

const Target kNPU37XX = {
    TargetId::kNPU37XX, "NPU37XX", "VPU2.7",
    /*tiles=*/2, /*dpus_per_tile=*/1,
    /*cmx_bytes_per_tile=*/1936 * 1024,
    /*macs_per_cycle=*/2048, /*clock_mhz=*/1300.0,
    /*cmx_granularity=*/16,
    // se_z_split cannot encode 8192 (VPUMI37XX runtime_dpu_parser_imports.cpp.inc calc_se_size
    // refuses it), so 4096 is the largest power of two.
    /*se_size_max=*/4096, /*se_size_power_of_two=*/true,
    /*sok_sparse_output_pow2=*/true,
    /*soh_row_multiple_dense=*/4, /*soh_row_multiple_sparse=*/8,
    /*sok_min_channels_per_tile=*/16,
    /*se_ptrs_enabled_by_default=*/false,
    kActs, kWeights, kOutputs};

const Target kNPU40XX = {
    TargetId::kNPU40XX, "NPU40XX", "VPU4.0",
    /*tiles=*/6, /*dpus_per_tile=*/1,
    /*cmx_bytes_per_tile=*/1440 * 1024,
    /*macs_per_cycle=*/2048, /*clock_mhz=*/1700.0,
    /*cmx_granularity=*/16,
    /*se_size_max=*/8192, /*se_size_power_of_two=*/false,
    /*sok_sparse_output_pow2=*/false,
    /*soh_row_multiple_dense=*/0, /*soh_row_multiple_sparse=*/0,
    /*sok_min_channels_per_tile=*/16,
    /*se_ptrs_enabled_by_default=*/true,
    kActs, kWeights, kOutputs};

}  // namespace

const Target& GetTarget(TargetId id) { return id == TargetId::kNPU37XX ? kNPU37XX : kNPU40XX; }

const std::vector<const Target*>& AllTargets() {
  static const std::vector<const Target*> all = {&kNPU37XX, &kNPU40XX};
  return all;
}

StatusOr<const Target*> TargetByName(const std::string& name) {
  for (const Target* t : AllTargets()) {
    if (name == t->name || name == t->generation) return t;
  }
  return InvalidArgument("target: unknown target '" + name + "' (expected NPU37XX or NPU40XX)");
}

Status CheckSeSize(const Target& t, int64_t se_size, const std::string& field) {
  const std::string where = field + " = " + std::to_string(se_size) + " on " + t.name + ": ";
  if (se_size % 16 == 0 && se_size > t.se_size_max && se_size <= 8192) {
    return InvalidArgument(where + "the largest storage-element size is " +
                           std::to_string(t.se_size_max) + " (the se_z_split register cannot " +
                           "encode 8192: VPUMI37XX calc_se_size)");
  }
  if (se_size < 16 || se_size % 16 != 0 || se_size > t.se_size_max) {
    return InvalidArgument(where + "a storage-element size must be a multiple of 16 in [16, " +
                           std::to_string(t.se_size_max) + "]");
  }
  if (t.se_size_power_of_two && (se_size & (se_size - 1)) != 0) {
    return InvalidArgument(where + "this target needs a power-of-two storage-element size");
  }
  return OkStatus();
}

Status CheckInputSeSize(const Target& t, int64_t se_size, DType in_dtype, int64_t c,
                        bool dense_se, const std::string& field) {
  DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, se_size, field));
  if (dense_se && IsSeErratum(in_dtype, c, se_size)) {
    return InvalidArgument(field + " = 4096 on " + t.name + ": fp16/bf16 sparse input with IC = " +
                           "8192 cannot use SE size 4096 (IDU erratum E#102555, " +
                           "sparsity_constraint.cpp areChannelsFitForSESize)");
  }
  return OkStatus();
}

bool IsSeErratum(DType in_dtype, int64_t c, int64_t se_size) {
  return (in_dtype == DType::kFP16 || in_dtype == DType::kBF16) && c == 8192 && se_size == 4096;
}

bool Supports(const std::vector<DType>& list, DType t) {
  return std::find(list.begin(), list.end(), t) != list.end();
}

}  // namespace dpuemu
