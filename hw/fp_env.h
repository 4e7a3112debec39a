// The floating-point environment dpuemu's arithmetic is defined in (README "Arithmetic"):
// round to nearest even, subnormals kept. A host program may run with another rounding mode
// (fesetround) or with flush-to-zero / denormals-are-zero (set at startup by code built with
// -ffast-math); the DPU does neither, so every run of a layer sets the environment for its own
// thread and restores the caller's afterwards.
#ifndef DPUEMU_HW_FP_ENV_H_
#define DPUEMU_HW_FP_ENV_H_

#include <cfenv>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace dpuemu {

class ScopedDpuFpEnv {
 public:
  ScopedDpuFpEnv() {
#if defined(__x86_64__) || defined(__i386__)
    saved_csr_ = _mm_getcsr();
    _mm_setcsr(kDefaultCsr);
#endif
    saved_round_ = std::fegetround();
    if (saved_round_ != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  }
  ~ScopedDpuFpEnv() {
    if (saved_round_ != FE_TONEAREST) std::fesetround(saved_round_);
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(saved_csr_);
#endif
  }
  ScopedDpuFpEnv(const ScopedDpuFpEnv&) = delete;
  ScopedDpuFpEnv& operator=(const ScopedDpuFpEnv&) = delete;

 private:
#if defined(__x86_64__) || defined(__i386__)
  // MXCSR at reset: every exception masked, round to nearest, no FTZ, no DAZ.
  static constexpr unsigned kDefaultCsr = 0x1F80;
  unsigned saved_csr_ = kDefaultCsr;
#endif
  int saved_round_ = FE_TONEAREST;
};

}  // namespace dpuemu

#endif  // DPUEMU_HW_FP_ENV_H_
