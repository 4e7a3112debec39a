#include <gtest/gtest.h>
#include <hwy/highway.h>
#include <tbb/parallel_for.h>
#include <atomic>
TEST(Smoke, Works) {
  std::atomic<int> n{0};
  tbb::parallel_for(0, 10, [&](int) { n++; });
  EXPECT_EQ(n.load(), 10);
  EXPECT_NE(hwy::SupportedTargets(), 0);
}
