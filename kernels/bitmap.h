// Vectorized sparsity-bitmap kernels: the memory formats of hw/formats.h, decoded and encoded with
// Highway (runtime dispatch to the best target the CPU supports). Every function takes the same
// arguments as its namesake in hw/formats.h, runs the same input checks (the Check* functions
// there) and returns byte-identical results; only the speed differs.
//
// Two paths, chosen at run time (BitmapPath below):
// - avx512vbmi2 (kernels/bitmap_x86.cc; x86 CPUs with AVX-512 VBMI2, e.g. Ice Lake and later
//   Xeons): 64 bytes per step, vpexpandb / vpexpandw expanding a packed run into the dense
//   elements the map bits select, vpcompressb / vpcompressw packing them back, vpcmpb making
//   the map; ends handled with masked loads and stores.
// - table: Highway, dynamic dispatch over its targets. Expansion is a byte shuffle per 16 output
//   bytes whose index vector comes from a table keyed by 8 map bits; compression is the inverse
//   shuffle. Highway 1.0.3 has no Expand, hence the tables.
// Both run on 1- and 2-byte elements; 4-byte elements (fp32, i32) take the element-at-a-time
// loop of the table path.
#ifndef DPUEMU_KERNELS_BITMAP_H_
#define DPUEMU_KERNELS_BITMAP_H_

#include <cstdint>
#include <string>
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
                                   const NceGeometry& g, DType dtype, int32_t zp);

// ---- Paths and targets (for tests and benchmarks) ----
enum class BitmapPath {
  kAuto,   // avx512vbmi2 when the CPU has it (with BMI2 and POPCNT) and DPUEMU_ISA allows it
  kTable,  // the Highway table-driven path
  kVbmi2,  // the AVX-512 VBMI2 path; only where HasVbmi2()
};
// Whether this build and CPU can run the VBMI2 path.
bool HasVbmi2();
// Forces the path of every later call (process-wide; tests and benchmarks). kVbmi2 where
// !HasVbmi2() is an error and leaves the setting unchanged. DPUEMU_ISA, read by kAuto: unset,
// empty, "native", "amx", "avx512vnni" or "avx512vbmi2" allow the VBMI2 path (the CPU decides);
// any other tier name ("avxvnni", "avx2", "table", ...) is below VBMI2 and selects the table
// path (whose Highway target is still the best the CPU has; tests pin it with
// hwy::SetSupportedTargetsForTest). Read once, at the first call.
Status SetBitmapPath(BitmapPath path);
// The path the next call takes: "avx512vbmi2", or "table/" + the Highway target's name.
std::string ActivePath();

// The Highway targets (HWY_AVX2, ...) compiled into these kernels that this CPU supports; tests
// run each one through hwy::SetSupportedTargetsForTest.
std::vector<int64_t> CompiledTargets();
// The target the next call dispatches to.
int64_t ActiveTarget();

}  // namespace simd
}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_BITMAP_H_
