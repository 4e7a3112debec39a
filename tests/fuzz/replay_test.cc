// Replays every file of tests/fuzz/corpus/<target>/ through its fuzz entry point (the same
// functions the libFuzzer binaries of .ci/fuzz call), so the seeds and every crash ever found stay
// covered by `bazel test //...` with gcc, without clang. An entry point aborts on a failed
// invariant; the file being replayed is printed first so the log names it.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/npy.h"
#include "tests/fuzz/fuzz_targets.h"

namespace dpuemu {
namespace fuzz {
namespace {

std::vector<std::string> CorpusFiles(const std::string& target) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const std::string dir = std::string(srcdir ? srcdir : ".") + "/dpuemu/tests/fuzz/corpus/" + target;
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') files.push_back(dir + "/" + e->d_name);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}

class ReplayTest : public testing::TestWithParam<FuzzTarget> {};

TEST_P(ReplayTest, EveryCorpusFilePasses) {
  const FuzzTarget& target = GetParam();
  const std::vector<std::string> files = CorpusFiles(target.name);
  // Each corpus has its seeds (tests/fuzz/make_corpus.cc); an empty one means a packaging error.
  ASSERT_GE(files.size(), 3u) << "tests/fuzz/corpus/" << target.name;
  const int64_t accepted_before = AcceptedInputs();
  for (const std::string& file : files) {
    StatusOr<std::vector<uint8_t>> bytes = ReadFileBytes(file);
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    std::fprintf(stderr, "replay %s\n", file.c_str());
    EXPECT_EQ(target.run(bytes->data(), bytes->size()), 0) << file;
  }
  // The valid seeds (make_corpus.cc) must get past the input checks: an input layout that no
  // longer matches fuzz_targets.cc would leave the fuzzers testing nothing but the checks.
  const int64_t accepted = AcceptedInputs() - accepted_before;
  EXPECT_GE(accepted, 2) << target.name << ": too few corpus inputs decode";
  std::printf("[ replayed ] %zu inputs for %s, %lld accepted\n", files.size(), target.name,
              static_cast<long long>(accepted));
}

INSTANTIATE_TEST_SUITE_P(Corpus, ReplayTest, testing::ValuesIn(FuzzTargets()),
                         [](const testing::TestParamInfo<FuzzTarget>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace fuzz
}  // namespace dpuemu
