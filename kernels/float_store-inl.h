// One vector of fp32 values stored as the PPE's float output type, rounded as hw/dtype.h
// StoreFloat rounds: fp32 as is; bf16 and fp16 to nearest even, NaN stays NaN with the quiet bit
// set. Shared by every Highway kernel with float outputs (zmconv, dwconv, pool, eltwise).
// Per-target header: include it after "hwy/highway.h" in a file compiled with foreach_target.
#if defined(DPUEMU_KERNELS_FLOAT_STORE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef DPUEMU_KERNELS_FLOAT_STORE_INL_H_
#undef DPUEMU_KERNELS_FLOAT_STORE_INL_H_
#else
#define DPUEMU_KERNELS_FLOAT_STORE_INL_H_
#endif

#include <cstdint>
#include <cstring>

#include "hw/dtype.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace dpuemu {
namespace HWY_NAMESPACE {

// `t` is kFP32, kBF16 or kFP16; writes Lanes(d) elements of `t` at `dst` (any alignment).
template <class D>
HWY_INLINE void StoreFloatAs(D d, DType t, hwy::HWY_NAMESPACE::Vec<D> v, uint8_t* dst) {
  namespace hn = hwy::HWY_NAMESPACE;
  if (t == DType::kFP32) {
    hn::StoreU(v, d, reinterpret_cast<float*>(dst));
    return;
  }
  if (t == DType::kBF16) {
    const hn::RebindToUnsigned<D> du;
    const auto bits = hn::BitCast(du, v);
    const auto rounded = hn::ShiftRight<16>(
        hn::Add(bits, hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(bits), hn::Set(du, 1u)))));
    const auto nan = hn::Or(hn::ShiftRight<16>(bits), hn::Set(du, 0x40u));
    // IsNaN, not Ne(v, v): Highway 1.0.3's AVX2/AVX3 Ne is an ordered compare (false for NaN),
    // and rounding a NaN's bits can carry into the exponent and sign (0x7FFFE000 -> -0.0).
    const auto r = hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), nan, rounded);
    const hn::Rebind<uint16_t, D> d16;
    hn::StoreU(hn::DemoteTo(d16, hn::BitCast(hn::RebindToSigned<D>(), r)), d16,
               reinterpret_cast<uint16_t*>(dst));
    return;
  }
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  // F16C: round to nearest even, NaN quieted with its payload, like FloatToHalf.
  const hn::Rebind<hwy::float16_t, D> dh;
  hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(dst));
#else
  alignas(64) float tmp[16];
  hn::StoreU(v, d, tmp);
  for (size_t i = 0; i < hn::Lanes(d); ++i) {
    const uint16_t h = FloatToHalf(tmp[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace dpuemu
HWY_AFTER_NAMESPACE();

#endif  // DPUEMU_KERNELS_FLOAT_STORE_INL_H_
