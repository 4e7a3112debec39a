// Vectorized sparsity-bitmap kernels: the memory formats of hw/formats.h, decoded and encoded with
// Highway (runtime dispatch to the best target the CPU supports). Every function takes the same
// arguments as its namesake in hw/formats.h, runs the same input checks (the Check* functions
// there) and returns byte-identical results; only the speed differs.
//
// Expansion (packed bytes + map -> dense) is a byte shuffle per 16 output bytes whose index
// vector comes from a table keyed by 8 map bits; compression is the inverse shuffle. Highway
// 1.0.3 has no Expand, hence the tables.
#ifndef DPUEMU_KERNELS_BITMAP_H_
#define DPUEMU_KERNELS_BITMAP_H_

#include <cstdint>
#include <vector>

#include "hw/formats.h"
#include "hw/span.h"
#include "hw/status.h"
#include "hw/tensor.h"

namespace dpuemu {
namespace simd {

// ---- Activations ----
StatusOr<SparseActivations> EncodeSparseActivations(const Tensor& t, int32_t zp, int64_t se_size);
StatusOr<Tensor> DecodeSparseActivations(ByteSpan data, ByteSpan map, DType dtype,
                                         const std::vector<int64_t>& shape, int32_t zp,
                                         int64_t se_size);
StatusOr<Tensor> GatherActivations(const ActivationView& view, DType dtype,
                                   const std::vector<int64_t>& shape, int32_t zp);
// Writes input rows [row_begin, row_end) (row_end < 0: through the last row) of the gathered
// [H, W, C] tensor, dense NHWC, to the start of `out` (any alignment; at least
// (row_end - row_begin) * W * C * element bytes). Only the SE pointers of those rows are checked
// and read, so a workload pays for its own rows.
Status GatherRows(const ActivationView& view, DType dtype, const std::vector<int64_t>& shape,
                  int32_t zp, int64_t row_begin, int64_t row_end, MutableByteSpan out);

// ---- Weights ----
StatusOr<CompressedWeights> CompressWeights(const Tensor& weights, int32_t zp);
StatusOr<Tensor> DecompressWeights(ByteSpan data, ByteSpan map, ByteSpan table,
                                   const ConvGeometry& g, DType dtype, int32_t zp);

// ---- Targets (for tests and benchmarks) ----
// The Highway targets (HWY_AVX2, ...) compiled into these kernels that this CPU supports; tests
// run each one through hwy::SetSupportedTargetsForTest.
std::vector<int64_t> CompiledTargets();
// The target the next call dispatches to.
int64_t ActiveTarget();

}  // namespace simd
}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_BITMAP_H_
