#include "hw/tensor.h"

namespace dpuemu {

Tensor::Tensor(DType t, std::vector<int64_t> s) : dtype(t), shape(std::move(s)) {
  // An invalid shape leaves no bytes, which every function taking the tensor rejects
  // (HasExactBytes) with the shape in its message.
  const int64_t n = ShapeBytes(shape, DTypeBytes(t));
  if (n > 0) bytes.assign(static_cast<size_t>(n), 0);
}

int64_t Tensor::numel() const { return ShapeElements(shape); }

int64_t ShapeElements(const std::vector<int64_t>& shape) { return ShapeBytes(shape, 1); }

int64_t ShapeBytes(const std::vector<int64_t>& shape, int64_t element_bytes) {
  int64_t n = element_bytes;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
  }
  return n;
}

bool HasExactBytes(const Tensor& t) {
  const int64_t n = ShapeBytes(t.shape, DTypeBytes(t.dtype));
  return n >= 0 && static_cast<uint64_t>(n) == t.bytes.size();
}

std::string Tensor::ShapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace dpuemu
