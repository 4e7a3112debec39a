// Runs a test body (taking nothing, or the target's name) once per compiled Highway target this
// CPU supports (the kernels' dynamic dispatch follows hwy::SetSupportedTargetsForTest); fails
// when none ran.
#ifndef DPUEMU_TESTS_HWY_TARGETS_H_
#define DPUEMU_TESTS_HWY_TARGETS_H_

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cstdio>
#include <string>
#include <type_traits>

namespace dpuemu {

template <class F>
void ForEachHighwayTarget(F&& body) {
  int ran = 0;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(std::string("target ") + hwy::TargetName(target));
    std::printf("[ target   ] %s\n", hwy::TargetName(target));
    if constexpr (std::is_invocable_v<F>) {
      body();
    } else {
      body(hwy::TargetName(target));
    }
    ++ran;
    if (::testing::Test::HasFatalFailure()) break;
  }
  hwy::SetSupportedTargetsForTest(0);
  ASSERT_GT(ran, 0) << "no Highway target ran";
}

}  // namespace dpuemu

#endif  // DPUEMU_TESTS_HWY_TARGETS_H_
