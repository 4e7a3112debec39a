// dpuemu: the command line for hardware teams (README.md, "The dpuemu CLI").
//   dpuemu plan SPEC.json|DIR [--json] [--split-rule R]
//   dpuemu run  SPEC.json|NETWORK.json|DIR --out OUT [--threads N] [--reference] [--kernel K] [--explain]
//                                       [--repeat N] [--golden layer|tiles] [--split-rule R]
// Exit status: 0 ok, 2 usage or spec errors (bad flags, spec, tensor file, or a layer the planner
// refuses), 1 when running or writing the results fails.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "hw/status.h"
#include "runtime/execute.h"
#include "runtime/golden.h"
#include "runtime/network.h"
#include "runtime/npy.h"
#include "runtime/plan.h"
#include "runtime/spec.h"

namespace dpuemu {
namespace {

namespace fs = std::filesystem;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

struct Flags {
  std::string spec;  // a spec file or a directory of them
  bool json = false;
  std::string out;
  int threads = -1;  // -1: the spec's
  bool reference = false;
  std::string kernel;  // empty: the spec's
  bool explain = false;
  int repeat = 1;
  std::string golden = "layer";  // layer: the whole layer as one task; tiles: per tile (golden.h)
  std::string split_rule;  // empty: the spec's
  std::string heuristic;   // empty: the spec's sparsity.weights / heuristic
};

// A failed step: the exit status it calls for and the message.
struct Failure {
  int exit = 0;
  Status status;
};

void PrintError(const Status& s) {
  std::string m = s.message();
  std::replace(m.begin(), m.end(), '\n', ' ');
  std::fprintf(stderr, "dpuemu: error: %s\n", m.c_str());
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Progress of a long command (more than one run) on stderr: on a terminal a bar redrawn in place
// (Clear it before printing anything else), otherwise plain lines, at most one per tenth of the
// work so logs stay short.
class Progress {
 public:
  explicit Progress(int64_t total)
      : total_(total),
        tty_(isatty(fileno(stderr)) != 0),
        start_(std::chrono::steady_clock::now()) {}
  ~Progress() { Clear(); }

  // `n` more units of work done, the last on `label`.
  void Step(const std::string& label, int64_t n = 1) {
    done_ += n;
    if (total_ < 2 || n < 1) return;
    const double elapsed = Seconds(start_);
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(kWidth * done_ / total_);
      const double eta = elapsed / done_ * (total_ - done_);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld  %.1f s, eta %.1f s  %s\033[K",
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                   static_cast<long long>(done_), static_cast<long long>(total_), elapsed, eta,
                   label.c_str());
      drawn_ = true;
    } else if (done_ == total_ || 10 * done_ / total_ != 10 * (done_ - n) / total_) {
      std::fprintf(stderr, "[%lld/%lld] %.1f s %s\n", static_cast<long long>(done_),
                   static_cast<long long>(total_), elapsed, label.c_str());
    }
    std::fflush(stderr);
  }

  // Erases the bar so other output starts on a clean line; the next Step redraws it.
  void Clear() {
    if (!drawn_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    drawn_ = false;
  }
  int64_t done() const { return done_; }

 private:
  int64_t total_, done_ = 0;
  bool tty_, drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

// The spec files a command works on: the file itself, or every *.json of a directory in name order.
struct SpecList {
  std::vector<std::string> files;
  bool directory = false;
};

StatusOr<SpecList> SpecFiles(const std::string& arg) {
  std::error_code ec;
  SpecList list;
  list.directory = fs::is_directory(arg, ec);
  if (!list.directory) {
    list.files = {arg};
    return list;
  }
  for (fs::directory_iterator it(arg, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".json" && it->is_regular_file(ec)) {
      list.files.push_back(it->path().string());
    }
  }
  if (ec) return NotFound(arg + ": cannot list the directory: " + ec.message());
  if (list.files.empty()) return NotFound(arg + ": no *.json spec files in the directory");
  std::sort(list.files.begin(), list.files.end());
  return list;
}

// A spec and the plans of its DPU layers (one, or one per phase of a dilated convolution).
struct Planned {
  Spec spec;
  std::vector<Plan> plans;
};

StatusOr<Planned> LoadAndPlan(const std::string& path, const Flags& f) {
  Planned p;
  DPUEMU_ASSIGN_OR_RETURN(p.spec, LoadSpec(path));
  if (!f.split_rule.empty()) {
    DPUEMU_ASSIGN_OR_RETURN(p.spec.plan.split_rule, ParseSplitRule(f.split_rule));
  }
  if (!f.heuristic.empty()) {
    DPUEMU_ASSIGN_OR_RETURN(p.spec.plan.heuristic, ParseWeightHeuristic(f.heuristic));
  }
  DPUEMU_ASSIGN_OR_RETURN(p.plans, PlanSpec(p.spec));
  return p;
}

bool IsNetworkPath(const std::string& path) {
  StatusOr<std::vector<uint8_t>> bytes = ReadFileBytes(path);
  if (!bytes.ok()) return false;
  const nlohmann::json j =
      nlohmann::json::parse(bytes->begin(), bytes->end(), nullptr, /*allow_exceptions=*/false);
  return !j.is_discarded() && IsNetworkFile(j);
}

int PlanCommand(const Flags& f) {
  StatusOr<SpecList> specs = SpecFiles(f.spec);
  if (!specs.ok()) {
    PrintError(specs.status());
    return kExitUsage;
  }
  const bool many = specs->directory;
  nlohmann::json all = nlohmann::json::object();
  int exit = 0;
  for (const std::string& path : specs->files) {
    if (IsNetworkPath(path)) {
      PrintError(InvalidArgument(path + ": a network's plans depend on the activation sparsity "
                                 "measured while it runs: use dpuemu run (each layer's plan.json "
                                 "and report.json)"));
      exit = kExitUsage;
      continue;
    }
    StatusOr<Planned> p = LoadAndPlan(path, f);
    if (!p.ok()) {
      PrintError(p.status());
      exit = kExitUsage;
      continue;
    }
    if (f.json && many) {
      all[fs::path(path).stem().string()] = SpecPlanToJson(p->spec, p->plans);
    } else if (f.json) {
      std::printf("%s\n", SpecPlanToJson(p->spec, p->plans).dump(2).c_str());
    } else {
      std::printf("%s%s", many ? ("== " + path + "\n").c_str() : "",
                  SpecPlanToText(p->spec, p->plans, f.explain).c_str());
    }
  }
  if (f.json && many) std::printf("%s\n", all.dump(2).c_str());
  return exit;
}

void Explain(const RunOptions& options, const RunResult& r, const std::string& what_ran) {
  std::printf("  kernels%s (%zu work items):\n", what_ran.c_str(), r.workloads.size());
  for (const WorkloadReport& w : r.workloads) {
    std::string what = options.reference ? std::string("reference DPU (--reference)")
                                         : std::string(ConvKernelName(w.kernel.kernel)) + " [" +
                                               w.kernel.isa + "]: " + w.kernel.reason;
    if (w.replicas > 0) what += " (+" + std::to_string(w.replicas) + " clustering replicas)";
    std::printf("    tile %d  k [%lld, %lld)  rows [%lld, %lld)  %8.3f ms  %s\n", w.tile,
                static_cast<long long>(w.k_begin), static_cast<long long>(w.k_end),
                static_cast<long long>(w.row_begin), static_cast<long long>(w.row_end),
                w.seconds * 1e3, what.c_str());
  }
}

void PrintTiming(std::vector<double> runs, double prepare) {
  std::sort(runs.begin(), runs.end());
  double sum = 0;
  for (double s : runs) sum += s;
  std::printf(
      "  timing: %zu runs: min %.3f ms, median %.3f ms, mean %.3f ms, max %.3f ms "
      "(preparation %.3f ms, once)\n",
      runs.size(), runs.front() * 1e3, runs[runs.size() / 2] * 1e3, sum / runs.size() * 1e3,
      runs.back() * 1e3, prepare * 1e3);
}

Status WriteText(const std::string& path, const std::string& text) {
  return WriteFileBytes(path, ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

// output.npy, plan.json and the golden set of one layer (its DPU layers' dense outputs and the
// assembled output) into `out_dir`.
Status WriteLayerDir(const Spec& spec, const std::vector<Plan>& plans,
                     const std::vector<Tensor>& outputs, const Tensor& output,
                     const std::string& out_dir, const std::string& golden_mode) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return InvalidArgument("--out " + out_dir + ": cannot create: " + ec.message());
  DPUEMU_RETURN_IF_ERROR(WriteNpy(out_dir + "/output.npy", output));
  DPUEMU_RETURN_IF_ERROR(
      WriteText(out_dir + "/plan.json", SpecPlanToJson(spec, plans).dump(2) + "\n"));
  StatusOr<GoldenSet> golden =
      golden_mode == "tiles" ? (spec.se ? MakeSeTileGoldenSet(spec, plans, outputs)
                                        : MakeTileGoldenSet(spec.layer, plans.front(), output))
      : spec.se              ? MakeSeGoldenSet(spec, plans, outputs)
                             : MakeGoldenSet(spec.layer, plans.front(), output);
  return golden.ok() ? WriteGoldenSet(*golden, out_dir) : golden.status();
}

// Runs a NETWORK.json into `out_dir`: <layer>/ (output.npy, plan.json, golden set) per layer,
// <output>.npy per network output, report.json, and the table on stdout.
Failure RunNetworkFile(const std::string& path, const std::string& out_dir, const Flags& f) {
  StatusOr<Network> net = LoadNetwork(path);
  if (!net.ok()) return {kExitUsage, net.status()};
  if (f.repeat != 1 || !f.kernel.empty() || !f.split_rule.empty()) {
    return {kExitUsage, InvalidArgument(path + ": a network runs once with each layer's own "
                                        "kernel and split_rule (--repeat, --kernel and "
                                        "--split-rule apply to single-layer specs)")};
  }
  RunOptions options;
  if (f.threads >= 0) options.threads = f.threads;
  options.reference = f.reference;
  Progress progress(static_cast<int64_t>(net->layers.size()));
  StatusOr<NetworkResult> r =
      RunNetwork(*net, options, [&](const std::string& name) { progress.Step(name); });
  progress.Clear();
  if (!r.ok()) return {kExitFailed, r.status()};
  for (const NetworkLayerResult& l : r->layers) {
    if (Status st = WriteLayerDir(l.spec, l.plans, l.dpu_outputs, l.output, out_dir + "/" + l.name,
                                  f.golden);
        !st.ok()) {
      return {kExitFailed, st.Annotate(path + ": layer '" + l.name + "'")};
    }
  }
  for (int o : net->outputs) {
    const NetworkLayerResult& l = r->layers[static_cast<size_t>(o)];
    if (Status st = WriteNpy(out_dir + "/" + l.name + ".npy", l.output); !st.ok()) {
      return {kExitFailed, st};
    }
  }
  if (Status st = WriteText(out_dir + "/report.json",
                            NetworkReportJson(*net, *r).dump(2) + "\n");
      !st.ok()) {
    return {kExitFailed, st};
  }
  std::printf("%s", NetworkReportText(*net, *r).c_str());
  std::printf("%s: %zu layers -> %s/\n", path.c_str(), r->layers.size(), out_dir.c_str());
  std::fflush(stdout);
  return {};
}


// Runs one spec into `out_dir`: output.npy, plan.json and the golden set.
Failure RunOne(const std::string& path, const std::string& out_dir, const Flags& f,
               Progress& progress) {
  if (IsNetworkPath(path)) return RunNetworkFile(path, out_dir, f);
  StatusOr<Planned> planned = LoadAndPlan(path, f);
  if (!planned.ok()) return {kExitUsage, planned.status()};
  const Spec& spec = planned->spec;
  const std::vector<Plan>& plans = planned->plans;
  const Plan& plan = plans.front();
  if (f.golden == "tiles" && spec.se && plans.size() > 1) {
    return {kExitUsage, InvalidArgument(path + ": --golden tiles: '" + spec.layer.name +
                                        "' runs as " + std::to_string(plans.size()) +
                                        " DPU layers (dilate phases); per-tile golden sets "
                                        "cover one DPU layer: use --golden layer")};
  }
  RunOptions options = spec.run;
  if (f.threads >= 0) options.threads = f.threads;
  if (f.reference) options.reference = true;
  if (!f.kernel.empty()) {
    StatusOr<ConvKernel> k = ParseConvKernel(f.kernel);
    if (!k.ok()) return {kExitUsage, k.status()};
    options.kernel.kernel = *k;
  }

  auto fail = [&path](const Status& s) { return Failure{kExitFailed, s.Annotate(path)}; };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<PreparedLayer> prepared;  // one per DPU layer
  for (size_t i = 0; i < plans.size(); ++i) {
    StatusOr<PreparedLayer> p =
        PreparedLayer::Create(DpuLayer(spec, i), plans[i], *spec.target, options);
    if (!p.ok()) return fail(p.status());
    prepared.push_back(std::move(p).value());
  }
  const double prepare = Seconds(t0);
  std::vector<double> runs;
  std::vector<RunResult> results(prepared.size());
  for (int i = 0; i < f.repeat; ++i) {
    double seconds = 0;
    for (size_t l = 0; l < prepared.size(); ++l) {
      StatusOr<RunResult> r = prepared[l].Run();
      if (!r.ok()) return fail(r.status());
      seconds += r->seconds;
      results[l] = std::move(r).value();
    }
    runs.push_back(seconds);
    progress.Step(spec.layer.name);
  }
  std::vector<Tensor> outputs;
  size_t items = 0;
  for (const RunResult& r : results) {
    outputs.push_back(r.output);
    items += r.workloads.size();
  }
  StatusOr<Tensor> output = AssembleSpecOutput(spec, outputs);
  if (!output.ok()) return fail(output.status());

  progress.Clear();
  if (Status st = WriteLayerDir(spec, plans, outputs, *output, out_dir, f.golden); !st.ok()) {
    return fail(st);
  }

  std::string se;
  if (spec.se) {
    se = ", se " + spec.se->op +
         (plans.size() > 1 ? " in " + std::to_string(plans.size()) + " phases" : std::string());
  }
  std::printf(
      "%s: '%s' on %s%s: %s over %d tile(s), weights %s, %zu work items on %d thread(s), "
      "%.3f ms -> %s/\n",
      path.c_str(), spec.layer.name.c_str(), spec.target->name, se.c_str(),
      SplitStrategyName(plan.split), plan.tiles_used, plan.weights.sparse ? "sparse" : "dense",
      items, prepared.front().threads(), (prepare + runs.front()) * 1e3, out_dir.c_str());
  if (f.explain) {
    for (size_t l = 0; l < results.size(); ++l) {
      Explain(options, results[l],
              results.size() > 1 ? " of phase " + std::to_string(l) : std::string());
    }
  }
  if (f.repeat > 1) PrintTiming(runs, prepare);
  std::fflush(stdout);
  return {};
}

int RunCommand(const Flags& f) {
  StatusOr<SpecList> specs = SpecFiles(f.spec);
  if (!specs.ok()) {
    PrintError(specs.status());
    return kExitUsage;
  }
  const std::vector<std::string>& files = specs->files;
  Progress progress(static_cast<int64_t>(files.size()) * f.repeat);
  int exit = 0, failed = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string name = fs::path(files[i]).stem().string();
    const Failure r = RunOne(files[i], specs->directory ? f.out + "/" + name : f.out, f, progress);
    if (r.exit != 0) {
      // The runs it did not do count as done.
      progress.Step(name + ": failed", static_cast<int64_t>(i + 1) * f.repeat - progress.done());
      progress.Clear();
      PrintError(r.status);
      exit = std::max(exit, r.exit);
      ++failed;
    }
  }
  if (specs->directory) {
    std::printf("%zu specs: %zu ok, %d failed\n", files.size(), files.size() - failed, failed);
  }
  return exit;
}

int Main(int argc, char** argv) {
  Flags f;
  CLI::App app{"dpuemu: functional emulator of the Intel NPU DPU (ZMConv on NPU37XX, NPU40XX)"};
  app.require_subcommand(1);
  CLI::App* plan = app.add_subcommand("plan", "print the plan of a layer spec");
  plan->add_option("spec", f.spec, "SPEC.json, or a directory of *.json specs")->required();
  plan->add_flag("--json", f.json, "print the plan as JSON");
  plan->add_flag("--explain", f.explain, "print every workload's cost-model terms");
  CLI::App* run =
      app.add_subcommand("run", "run a layer spec; write output.npy, plan.json and the golden set");
  run->add_option("spec", f.spec,
                  "SPEC.json, or a directory of *.json specs (each into OUT/<name>/)")
      ->required();
  run->add_option("--out,-o", f.out, "output directory (created if missing)")->required();
  run->add_option("--threads", f.threads,
                  "CPU threads, 0 = all cores (default: the spec's run.threads)")
      ->check(CLI::Range(0, 4096));
  run->add_flag("--reference", f.reference,
                "run the scalar reference DPU instead of the SIMD kernels");
  run->add_option("--kernel", f.kernel, "SIMD kernel: auto|dense|sparse-weights")
      ->check(CLI::IsMember({"auto", "dense", "sparse-weights"}));
  run->add_flag("--explain", f.explain, "print which kernel ran for each workload and why");
  run->add_option("--repeat", f.repeat, "run N times and print the timing")
      ->check(CLI::Range(1, 1000000));
  run->add_option("--golden", f.golden,
                  "golden set: layer (the whole layer as one DPU task, default) or tiles (every "
                  "tile's CMX image and its workloads' variants)")
      ->check(CLI::IsMember({"layer", "tiles"}));
  for (CLI::App* sub : {plan, run}) {
    sub->add_option("--split-rule", f.split_rule,
                    "SOK / workload tiling with sparse output: auto|seed|compiler "
                    "(default: the spec's split_rule)")
        ->check(CLI::IsMember({"auto", "seed", "compiler"}));
    sub->add_option("--heuristic", f.heuristic,
                    "weight storage: sas|ratio|cmx|cost|dense|sparse (default: the spec's "
                    "sparsity.weights / heuristic)")
        ->check(CLI::IsMember({"sas", "ratio", "cmx", "cost", "dense", "sparse"}));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help, or the error
    return code == 0 ? 0 : kExitUsage;
  }
  return plan->parsed() ? PlanCommand(f) : RunCommand(f);
}

}  // namespace
}  // namespace dpuemu

int main(int argc, char** argv) { return dpuemu::Main(argc, argv); }
