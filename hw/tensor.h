// A dense tensor: dtype, shape and little-endian bytes in C order. fp16/bf16 elements are uint16
// bit patterns.
#ifndef DPUEMU_HW_TENSOR_H_
#define DPUEMU_HW_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "hw/dtype.h"

namespace dpuemu {

struct Tensor {
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  Tensor() = default;
  Tensor(DType t, std::vector<int64_t> s);  // zero-filled
  int64_t numel() const;
  std::string ShapeString() const;  // "[56, 56, 64]"
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  bool operator==(const Tensor& o) const {
    return dtype == o.dtype && shape == o.shape && bytes == o.bytes;
  }
};

}  // namespace dpuemu

#endif  // DPUEMU_HW_TENSOR_H_
