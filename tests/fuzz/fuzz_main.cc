// libFuzzer main for one target of fuzz_targets.h, chosen at compile time by .ci/fuzz:
//   clang++ -fsanitize=fuzzer,... -DDPUEMU_FUZZ_TARGET=FuzzWeights tests/fuzz/fuzz_main.cc ...
#include "tests/fuzz/fuzz_targets.h"

#ifndef DPUEMU_FUZZ_TARGET
#error "define DPUEMU_FUZZ_TARGET to one of the entry points of tests/fuzz/fuzz_targets.h"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return dpuemu::fuzz::DPUEMU_FUZZ_TARGET(data, size);
}
