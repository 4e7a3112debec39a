#include "hw/pool.h"

#include <cmath>
#include <string>

namespace dpuemu {

StatusOr<PpeIntScale> ApproximateScale15(double target) {
  if (!(target > 0) || !std::isfinite(target)) {
    return InvalidArgument("PPE scale = " + std::to_string(target) + ": must be finite and > 0");
  }
  int e = 0;
  const double m = std::frexp(target, &e);  // target = m * 2^e, m in [0.5, 1)
  if (e > 15) {
    return InvalidArgument("PPE scale = " + std::to_string(target) + ": at least 2^15 needs a "
                           "post-shift, which the compiler's QuantizationApproximation refuses");
  }
  PpeIntScale s;
  s.mult = static_cast<int32_t>(m * 32768.0);  // truncated, as checked_cast<uint16_t>
  s.shift = 15 - e;
  if (s.shift > 63) {
    return InvalidArgument("PPE scale = " + std::to_string(target) + ": shift " +
                           std::to_string(s.shift) + " exceeds the register's 63");
  }
  return s;
}

StatusOr<PpeIntScale> AvgPoolIntScale(double in_over_out, int64_t ky, int64_t kx) {
  if (ky < 1 || kx < 1) return InvalidArgument("avgpool: kernel must be at least 1x1");
  return ApproximateScale15(in_over_out * (1.0 / static_cast<double>(ky * kx)));
}

StatusOr<float> AvgPoolFloatScale(double inv_out_scale, int64_t ky, int64_t kx) {
  if (ky < 1 || kx < 1) return InvalidArgument("avgpool: kernel must be at least 1x1");
  const double s = inv_out_scale * (1.0 / static_cast<double>(ky * kx));
  if (!(s > 0) || !(s <= 3.4028234663852886e38)) {
    return InvalidArgument("avgpool scale = " + std::to_string(s) + ": must be a positive fp32");
  }
  return static_cast<float>(s);
}

}  // namespace dpuemu
