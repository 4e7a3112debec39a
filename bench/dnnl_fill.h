// Copies a dpuemu host tensor into plain (user-layout) oneDNN memory for the benchmarks' peers:
// fp16/bf16 values converted to f32 when the memory is f32, every other type copied bit for bit
// (u8 / s8 / f16 have the same bytes in both).
#ifndef DPUEMU_BENCH_DNNL_FILL_H_
#define DPUEMU_BENCH_DNNL_FILL_H_

#include <cstring>
#include <dnnl.hpp>

#include "hw/dtype.h"
#include "hw/tensor.h"

namespace dpuemu {

inline void FillDnnl(const Tensor& t, dnnl::memory& m) {
  if (m.get_desc().data.data_type == dnnl_f32 && DTypeBytes(t.dtype) != 4) {
    float* out = static_cast<float*>(m.get_data_handle());
    for (int64_t i = 0; i < t.numel(); ++i) out[i] = LoadFloat(t.dtype, t.bytes.data(), i);
  } else {
    std::memcpy(m.get_data_handle(), t.bytes.data(), t.bytes.size());
  }
}

}  // namespace dpuemu

#endif  // DPUEMU_BENCH_DNNL_FILL_H_
