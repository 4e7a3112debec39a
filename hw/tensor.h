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
  // Zero-filled. A negative or overflowing shape gets no bytes (so every check rejects it); a
  // shape too large for memory throws std::bad_alloc like any allocation.
  Tensor(DType t, std::vector<int64_t> s);
  int64_t numel() const;  // ShapeElements(shape): -1 for a negative or overflowing shape
  std::string ShapeString() const;  // "[56, 56, 64]"
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  bool operator==(const Tensor& o) const {
    return dtype == o.dtype && shape == o.shape && bytes == o.bytes;
  }
};

// Elements of `shape`, or -1 when a dimension is negative or the product overflows int64: shapes
// come from files and callers, so sizes are compared through these, never by a raw product.
int64_t ShapeElements(const std::vector<int64_t>& shape);
// ShapeElements times `element_bytes`, or -1 as above.
int64_t ShapeBytes(const std::vector<int64_t>& shape, int64_t element_bytes);
// `t.bytes` holds exactly the tensor its dtype and shape describe (false for invalid shapes).
bool HasExactBytes(const Tensor& t);

}  // namespace dpuemu

#endif  // DPUEMU_HW_TENSOR_H_
