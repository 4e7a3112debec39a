// Helpers for generated-case tests: every case has a seed that is printed on failure, and
// DPUEMU_SEED=<n> in the environment re-runs a sweep from that seed.
#ifndef DPUEMU_TESTS_TEST_UTIL_H_
#define DPUEMU_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"

namespace dpuemu {

// Base seed of a sweep: DPUEMU_SEED if set, otherwise `fallback`.
inline uint64_t BaseSeed(uint64_t fallback) {
  const char* env = std::getenv("DPUEMU_SEED");
  return env ? std::strtoull(env, nullptr, 0) : fallback;
}

// "seed=123 (re-run: DPUEMU_SEED=123)" for SCOPED_TRACE.
inline std::string SeedTrace(uint64_t seed) {
  return "seed=" + std::to_string(seed) + " (re-run with DPUEMU_SEED=" + std::to_string(seed) + ")";
}

inline const Target& Npu37() { return GetTarget(TargetId::kNPU37XX); }
inline const Target& Npu40() { return GetTarget(TargetId::kNPU40XX); }
inline bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// First differing element of two tensors, or "" when byte-identical.
std::string FirstDifference(const Tensor& a, const Tensor& b);

}  // namespace dpuemu

#define DPUEMU_ASSERT_OK(expr)                                   \
  do {                                                           \
    const ::dpuemu::Status _s = (expr);                          \
    ASSERT_TRUE(_s.ok()) << _s.ToString();                       \
  } while (0)

// Unwraps a StatusOr into `lhs`, failing the test with the status message otherwise.
#define DPUEMU_ASSERT_OK_AND_ASSIGN(lhs, expr)                                         \
  auto DPUEMU_CONCAT_(_so_, __LINE__) = (expr);                                        \
  ASSERT_TRUE(DPUEMU_CONCAT_(_so_, __LINE__).ok())                                     \
      << DPUEMU_CONCAT_(_so_, __LINE__).status().ToString();                           \
  lhs = std::move(DPUEMU_CONCAT_(_so_, __LINE__)).value()

#endif  // DPUEMU_TESTS_TEST_UTIL_H_
