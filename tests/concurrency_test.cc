// One library instance used from many threads at once: plans, layer runs (RunLayer with its own
// oneTBB threads), shared PreparedLayer and PreparedWeights objects, called from std::threads and
// from a tbb::parallel_for of callers, must give byte-identical results to the same calls made one
// after the other. Under `bazel test --config=tsan` the same tests are the race check (oneTBB then
// runs on one thread, see tests/tsan_tbb.cc, and the threads TSan watches are these std::threads).
#include <gtest/gtest.h>
#include <oneapi/tbb/parallel_for.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "runtime/execute.h"
#include "runtime/plan.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

bool UnderTsan() {
  const char* s = std::getenv("DPUEMU_SANITIZER");
  return s != nullptr && std::strcmp(s, "tsan") == 0;
}

// One layer on one target with its plan options, and what sequential calls returned.
struct Case {
  std::string name;
  const Target* target = nullptr;
  NceLayer layer;
  PlanOptions plan_options;
  std::string plan_json;  // PlanToJson(PlanLayer(...)).dump()
  Plan plan;
  Tensor output;          // RunLayer(..., threads = 1).output
};

std::vector<Case> MakeCases() {
  struct Recipe {
    DType in, w, out;
    int64_t h, c, k, kernel;
    double weight_sparsity, input_sparsity;
    bool input_sparse, output_sparse;
    SplitStrategy split;
  };
  const Recipe recipes[] = {
      {DType::kU8, DType::kI8, DType::kU8, 9, 32, 48, 3, 0.6, 0.3, true, true, SplitStrategy::kSok},
      {DType::kI8, DType::kU8, DType::kI32, 12, 16, 32, 1, 0.0, 0.0, false, false,
       SplitStrategy::kSoh},
      {DType::kFP16, DType::kFP16, DType::kFP16, 8, 32, 64, 3, 0.9, 0.4, true, false,
       SplitStrategy::kAuto},
      {DType::kBF16, DType::kBF16, DType::kFP32, 7, 16, 32, 3, 0.5, 0.0, false, false,
       SplitStrategy::kClustering},
      {DType::kU8, DType::kI8, DType::kI8, 10, 48, 320, 1, 0.6, 0.3, false, true,
       SplitStrategy::kSok},
  };
  std::vector<Case> cases;
  uint64_t seed = 700;
  for (const Recipe& r : recipes) {
    for (const Target* target : AllTargets()) {
      LayerSpec spec;
      spec.name = "c" + std::to_string(seed);
      spec.h = r.h;
      spec.w = r.h - 1;
      spec.c = r.c;
      spec.k = r.k;
      spec.ky = spec.kx = r.kernel;
      spec.in_dtype = r.in;
      spec.w_dtype = r.w;
      spec.out_dtype = r.out;
      spec.weight_sparsity = r.weight_sparsity;
      spec.input_sparsity = r.input_sparsity;
      spec.leaky_relu = r.out == DType::kU8;
      StatusOr<NceLayer> layer = GenerateLayer(spec, seed++);
      EXPECT_TRUE(layer.ok()) << layer.status().ToString();
      if (!layer.ok()) continue;
      Case c;
      c.name = spec.name + " on " + target->name;
      c.target = target;
      c.layer = std::move(layer).value();
      c.plan_options.input_sparse = r.input_sparse;
      c.plan_options.output_sparse = r.output_sparse;
      c.plan_options.split = r.split;
      c.plan_options.heuristic = r.weight_sparsity > 0 ? WeightHeuristic::kSparse
                                                       : WeightHeuristic::kSas;
      StatusOr<Plan> plan = PlanLayer(c.layer, *target, c.plan_options);
      EXPECT_TRUE(plan.ok()) << c.name << ": " << plan.status().ToString();
      if (!plan.ok()) continue;
      c.plan = *plan;
      c.plan_json = PlanToJson(c.plan).dump();
      RunOptions ro;
      ro.threads = 1;
      StatusOr<RunResult> run = RunLayer(c.layer, c.plan, *target, ro);
      EXPECT_TRUE(run.ok()) << c.name << ": " << run.status().ToString();
      if (!run.ok()) continue;
      c.output = std::move(run->output);
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

// Failures seen on any thread, reported by the test's own thread.
class Failures {
 public:
  void Add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (list_.size() < 20) list_.push_back(what);
    ++count_;
  }
  void ExpectNone() const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& f : list_) ADD_FAILURE() << f;
    EXPECT_EQ(count_, 0);
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
  int count_ = 0;
};

// Plans and runs case c as a concurrent caller and compares with the sequential results.
void PlanAndRunCase(const Case& c, int threads, const std::string& who, Failures& failures) {
  StatusOr<Plan> plan = PlanLayer(c.layer, *c.target, c.plan_options);
  if (!plan.ok()) return failures.Add(who + " " + c.name + ": " + plan.status().ToString());
  if (PlanToJson(*plan).dump() != c.plan_json) {
    return failures.Add(who + " " + c.name + ": the plan differs from the sequential one");
  }
  RunOptions ro;
  ro.threads = threads;
  StatusOr<RunResult> run = RunLayer(c.layer, *plan, *c.target, ro);
  if (!run.ok()) return failures.Add(who + " " + c.name + ": " + run.status().ToString());
  const std::string diff = FirstDifference(c.output, run->output);
  if (!diff.empty()) {
    failures.Add(who + " " + c.name + " (threads " + std::to_string(threads) + "): " + diff);
  }
}

TEST(ConcurrencyTest, StdThreadsPlanAndRunDifferentLayersAtOnce) {
  const std::vector<Case> cases = MakeCases();
  ASSERT_EQ(cases.size(), 10u);
  Failures failures;
  std::atomic<int> runs{0};
  const int kThreads = 4, kRounds = UnderTsan() ? 1 : 2;
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (size_t i = 0; i < cases.size(); ++i) {
          // Each caller walks the cases from its own starting point with its own thread count.
          const Case& c = cases[(i + 3 * t) % cases.size()];
          PlanAndRunCase(c, 1 + (t + round) % 3, "thread " + std::to_string(t), failures);
          ++runs;
        }
      }
    });
  }
  for (std::thread& th : callers) th.join();
  failures.ExpectNone();
  EXPECT_EQ(runs.load(), kThreads * kRounds * static_cast<int>(cases.size()));
}

TEST(ConcurrencyTest, TbbParallelForOfCallers) {
  const std::vector<Case> cases = MakeCases();
  ASSERT_EQ(cases.size(), 10u);
  Failures failures;
  std::atomic<int> runs{0};
  const int n = 3 * static_cast<int>(cases.size());
  tbb::parallel_for(0, n, [&](int i) {
    PlanAndRunCase(cases[i % cases.size()], 1 + i % 3, "tbb caller " + std::to_string(i), failures);
    ++runs;
  });
  failures.ExpectNone();
  EXPECT_EQ(runs.load(), n);
}

// Two std::threads, each driving its own tbb::parallel_for of callers, at the same time.
TEST(ConcurrencyTest, StdThreadsEachWithATbbParallelForOfCallers) {
  const std::vector<Case> cases = MakeCases();
  ASSERT_EQ(cases.size(), 10u);
  Failures failures;
  std::atomic<int> runs{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t) {
    callers.emplace_back([&, t] {
      tbb::parallel_for(0, static_cast<int>(cases.size()), [&](int i) {
        PlanAndRunCase(cases[(i + 5 * t) % cases.size()], 2, "thread " + std::to_string(t),
                       failures);
        ++runs;
      });
    });
  }
  for (std::thread& th : callers) th.join();
  failures.ExpectNone();
  EXPECT_EQ(runs.load(), 2 * static_cast<int>(cases.size()));
}

// One PreparedLayer (its decoded weights, lowered tasks and TBB arena) run by many threads.
TEST(ConcurrencyTest, StdThreadsShareOnePreparedLayer) {
  const std::vector<Case> cases = MakeCases();
  ASSERT_EQ(cases.size(), 10u);
  // Two callers in one TBB arena may run each other's tasks, a hand-off TSan cannot see in
  // Debian's uninstrumented oneTBB: under TSan the shared layer runs on its callers' threads.
  const int layer_threads = UnderTsan() ? 1 : 2;
  for (size_t i : {size_t{0}, size_t{5}, size_t{9}}) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.name);
    RunOptions ro;
    ro.threads = layer_threads;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const PreparedLayer prepared,
                                PreparedLayer::Create(c.layer, c.plan, *c.target, ro));
    Failures failures;
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&, t] {
        for (int r = 0; r < 3; ++r) {
          StatusOr<RunResult> run = prepared.Run();
          if (!run.ok()) return failures.Add(run.status().ToString());
          const std::string diff = FirstDifference(c.output, run->output);
          if (!diff.empty()) failures.Add("thread " + std::to_string(t) + ": " + diff);
        }
      });
    }
    for (std::thread& th : callers) th.join();
    failures.ExpectNone();
  }
}

// One PreparedWeights shared by RunZMConv calls on different inputs, from std::threads and from
// a tbb::parallel_for; each result is the reference's for its input.
TEST(ConcurrencyTest, SharedPreparedWeightsAcrossThreads) {
  const Target& target = GetTarget(TargetId::kNPU40XX);
  for (DType in : {DType::kU8, DType::kFP16}) {
    SCOPED_TRACE(DTypeName(in));
    LayerSpec spec;
    spec.h = 8;
    spec.w = 7;
    spec.c = 32;
    spec.k = 48;
    spec.ky = spec.kx = 3;
    spec.in_dtype = in;
    spec.w_dtype = in == DType::kU8 ? DType::kI8 : in;
    spec.out_dtype = in;
    spec.weight_sparsity = 0.85;
    spec.input_sparsity = 0.3;
    StorageOptions storage;
    storage.weights_sparse = true;
    storage.input_sparse = true;
    storage.output_sparse = true;
    // Same weights and op, eight different inputs.
    std::vector<DpuTask> tasks;
    std::vector<DpuOutput> expected;
    for (uint64_t seed = 0; seed < 8; ++seed) {
      DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 42));
      DPUEMU_ASSERT_OK_AND_ASSIGN(const NceLayer other, GenerateLayer(spec, 1000 + seed));
      layer.input = other.input;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, target));
      tasks.push_back(std::move(task));
      expected.push_back(std::move(ref));
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const PreparedWeights weights,
                                PreparedWeights::Create(tasks[0], target));
    Failures failures;
    auto run = [&](size_t i, const std::string& who) {
      const ConvKernel kernels[] = {ConvKernel::kAuto, ConvKernel::kDense,
                                    ConvKernel::kSparseWeights};
      KernelOptions opts;
      opts.kernel = kernels[i % 3];
      KernelReport report;
      StatusOr<DpuOutput> out = RunZMConv(tasks[i % tasks.size()], target, opts, &report, &weights);
      if (!out.ok()) return failures.Add(who + ": " + out.status().ToString());
      const DpuOutput& want = expected[i % tasks.size()];
      if (out->data.bytes != want.data.bytes || out->map != want.map) {
        failures.Add(who + ": input " + std::to_string(i % tasks.size()) + " with kernel " +
                     ConvKernelName(opts.kernel) + " differs from the reference");
      }
    };
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&, t] {
        for (size_t i = 0; i < 3 * tasks.size(); ++i) run(i + t, "thread " + std::to_string(t));
      });
    }
    for (std::thread& th : callers) th.join();
    tbb::parallel_for(0, static_cast<int>(3 * tasks.size()),
                      [&](int i) { run(static_cast<size_t>(i), "tbb caller"); });
    failures.ExpectNone();
  }
}

}  // namespace
}  // namespace dpuemu
