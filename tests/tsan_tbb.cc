// Linked into the tests that use oneTBB. Under `bazel test --config=tsan` (DPUEMU_SANITIZER=tsan,
// set by .bazelrc) it limits oneTBB to one thread for the whole process, before any test runs.
//
// Why: Debian's libtbb is not built with -fsanitize=thread, so the hand-off of a task from the
// thread that spawns it to a thread that steals it happens through atomics ThreadSanitizer cannot
// see, and TSan reports every access of a stolen task as a race (743 false reports in
// execute_test; the first is TBB's own partitioner, check_being_stolen in partitioner.h, against
// the splitting constructor on the spawning thread). No suppression can tell those from real
// races: the stolen task's stack cannot even be restored. With one TBB thread every arena and
// parallel_for still runs, through the same code, but each on the thread that called it, so the
// concurrency TSan checks is the callers' own (std::thread in tests/concurrency_test.cc): shared
// PreparedWeights and PreparedLayer objects, thread_local scratch, static tables, Highway's
// dispatch. The multi-threaded TBB runs are checked for identical bytes by the same tests in the
// default and asan configurations.
#include <cstdlib>
#include <cstring>
#include <memory>

#include <oneapi/tbb/global_control.h>

namespace {

std::unique_ptr<tbb::global_control> SerializeTbbUnderTsan() {
  const char* s = std::getenv("DPUEMU_SANITIZER");
  if (s == nullptr || std::strcmp(s, "tsan") != 0) return nullptr;
  return std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, 1);
}

const std::unique_ptr<tbb::global_control> kSerialTbb = SerializeTbbUnderTsan();

}  // namespace
