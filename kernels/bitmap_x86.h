// Internal to kernels/bitmap*.cc: the AVX-512 VBMI2 path (kernels/bitmap_x86.cc). Same contracts
// as the per-target functions of kernels/bitmap.cc, for 1- and 2-byte elements only; callers
// check Vbmi2CpuSupported() first.
#ifndef DPUEMU_KERNELS_BITMAP_X86_H_
#define DPUEMU_KERNELS_BITMAP_X86_H_

#include <cstdint>

#include "hw/formats.h"
#include "hw/layer.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define DPUEMU_BITMAP_VBMI2 1
#else
#define DPUEMU_BITMAP_VBMI2 0
#endif

namespace dpuemu {
namespace bitmap_x86 {

// The CPU (and OS) run AVX-512 F/BW/VL/VBMI2 with BMI2 and POPCNT; false where not compiled.
bool Vbmi2CpuSupported();

#if DPUEMU_BITMAP_VBMI2
// Whether SE pointers [s_begin, s_end) of the view's table all pass CheckGather's pointer
// rules for slots of slot_bytes (false also where this pass does not decide: > 15 tiles).
bool SePointersPass(const ActivationView& view, int64_t slot_bytes, int64_t s_begin,
                    int64_t s_end);
// A sparse view (non-empty map) only.
void GatherSes(const ActivationView& view, DType dtype, int32_t zp, int64_t s_begin,
               int64_t s_end, uint8_t* out);
// After CheckDecompressWeightsExceptChannels: false where a channel breaks a rule of
// CheckDecompressWeights (table: the 16 * k table bytes).
bool DecompressChannels(ByteSpan data, ByteSpan map, const uint8_t* table, int64_t k,
                        int64_t taps, int64_t map_per_k, DType dtype, int32_t zp, uint8_t* out);
// data (n * element bytes and 16 of room) and map (map_bytes) zeroed on entry.
void EncodeSes(const uint8_t* src, DType dtype, int64_t n, int32_t zp, int64_t se, uint8_t* data,
               uint8_t* map, int64_t map_bytes);
int64_t CompressChannels(const uint8_t* src, DType dtype, int64_t k, int64_t taps, int32_t zp,
                         int64_t map_per_k, uint8_t* data, uint8_t* map, uint32_t* data_offset,
                         int64_t* nonzeros);
#endif

}  // namespace bitmap_x86
}  // namespace dpuemu

#endif  // DPUEMU_KERNELS_BITMAP_X86_H_
