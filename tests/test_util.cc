#include "tests/test_util.h"

#include "hw/dtype.h"

namespace dpuemu {

std::string FirstDifference(const Tensor& a, const Tensor& b) {
  if (a.dtype != b.dtype) return std::string("dtype ") + DTypeName(a.dtype) + " vs " + DTypeName(b.dtype);
  if (a.shape != b.shape) return "shape " + a.ShapeString() + " vs " + b.ShapeString();
  if (a.bytes.size() != b.bytes.size()) return "byte sizes differ";
  const int64_t eb = DTypeBytes(a.dtype);
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(a.bytes.data() + i * eb, b.bytes.data() + i * eb, static_cast<size_t>(eb)) == 0) {
      continue;
    }
    // Flat index to coordinates.
    std::string at;
    int64_t r = i;
    for (size_t d = a.shape.size(); d-- > 0;) {
      at = std::to_string(r % a.shape[d]) + (at.empty() ? "" : ", ") + at;
      r /= a.shape[d];
    }
    auto value = [&](const Tensor& t) {
      return IsFloat(t.dtype) ? std::to_string(LoadFloat(t.dtype, t.bytes.data(), i))
                              : std::to_string(LoadInt(t.dtype, t.bytes.data(), i));
    };
    return "element [" + at + "]: " + value(a) + " vs " + value(b);
  }
  return "";
}

}  // namespace dpuemu
