#include "runtime/execute.h"

#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>

#include "hw/dpu_task.h"
#include "hw/se_ops.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"

namespace dpuemu {
namespace {

using Clock = std::chrono::steady_clock;

std::string Str(int64_t v) { return std::to_string(v); }
std::string Range(int64_t begin, int64_t end) { return "[" + Str(begin) + ", " + Str(end) + ")"; }
double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Below this many work items per thread, workloads are cut into row chunks.
constexpr size_t kItemsPerThread = 4;

}  // namespace

// The plan must describe this very op on this target: its splits, padding and storage follow
// from the geometry and types.
Status CheckPlanMatches(const NceOp& op, const Plan& plan, const Target& target) {
  if (plan.target == nullptr) {
    return InvalidArgument("plan: empty (no target); make one with PlanLayer");
  }
  if (plan.target->id != target.id) {
    return InvalidArgument(std::string("plan: made for ") + plan.target->name + ", running on " +
                           target.name);
  }
  const std::string hint = " (plan this layer with PlanLayer)";
  const NceOp& p = plan.op;
  struct Field {
    const char* name;
    int64_t plan, layer;
  };
  const Field fields[] = {
      {"op (kind)", static_cast<int64_t>(p.kind), static_cast<int64_t>(op.kind)},
      {"h", p.g.h, op.g.h},
      {"w", p.g.w, op.g.w},
      {"c", p.g.c, op.g.c},
      {"k", p.g.k, op.g.k},
      {"ky", p.g.ky, op.g.ky},
      {"kx", p.g.kx, op.g.kx},
      {"stride_y", p.g.stride_y, op.g.stride_y},
      {"stride_x", p.g.stride_x, op.g.stride_x},
      {"pad_top", p.g.pad_top, op.g.pad_top},
      {"pad_bottom", p.g.pad_bottom, op.g.pad_bottom},
      {"pad_left", p.g.pad_left, op.g.pad_left},
      {"pad_right", p.g.pad_right, op.g.pad_right},
      {"in_zp", p.in_zp, op.in_zp},
      {"w_zp", p.w_zp, op.w_zp},
      {"ppe.out_zp", p.ppe.out_zp, op.ppe.out_zp},
      {"ppe.leaky_relu", p.ppe.leaky_relu, op.ppe.leaky_relu},
      {"ppe.lrelu_mult", p.ppe.lrelu_mult, op.ppe.lrelu_mult},
      {"ppe.lrelu_shift", p.ppe.lrelu_shift, op.ppe.lrelu_shift},
  };
  const std::pair<const char*, std::pair<DType, DType>> types[] = {
      {"in_dtype", {p.in_dtype, op.in_dtype}},
      {"w_dtype", {p.w_dtype, op.w_dtype}},
      {"out_dtype", {p.out_dtype, op.out_dtype}},
  };
  for (const auto& [name, t] : types) {
    if (t.first != t.second) {
      return InvalidArgument(std::string("plan: made for a layer with ") + name + " = " +
                             DTypeName(t.first) + ", this layer has " + DTypeName(t.second) + hint);
    }
  }
  for (const Field& f : fields) {
    if (f.plan != f.layer) {
      return InvalidArgument(std::string("plan: made for a layer with ") + f.name + " = " +
                             Str(f.plan) + ", this layer has " + f.name + " = " + Str(f.layer) +
                             hint);
    }
  }
  if (p.ppe.clamp_lo != op.ppe.clamp_lo || p.ppe.clamp_hi != op.ppe.clamp_hi) {
    return InvalidArgument("plan: made for a layer with clamp [" + std::to_string(p.ppe.clamp_lo) +
                           ", " + std::to_string(p.ppe.clamp_hi) + "], this layer has [" +
                           std::to_string(op.ppe.clamp_lo) + ", " +
                           std::to_string(op.ppe.clamp_hi) + "]" + hint);
  }
  return OkStatus();
}

// The smallest row range around [begin, end) that reads at least one input row: SliceLayer needs
// one, and with large padding a workload at the edge may read only padding rows. Rows outside
// [begin, end) are computed and dropped.
std::pair<int64_t, int64_t> ComputedRows(const NceGeometry& g, int64_t begin, int64_t end) {
  if (begin * g.stride_y - g.pad_top >= g.h) {  // below the input: take the last row reading it
    begin = std::min(begin, (g.h + g.pad_top + g.stride_y - 1) / g.stride_y - 1);
  }
  if ((end - 1) * g.stride_y - g.pad_top + g.ky <= 0) {  // above it: take the first one
    const int64_t first = g.pad_top < g.ky ? 0 : (g.pad_top - g.ky) / g.stride_y + 1;
    end = std::min(std::max(end, first + 1), g.out_h());
  }
  return {begin, end};
}

StatusOr<DpuTask> LowerSlice(const NceLayer& layer, const StorageOptions& storage,
                             int64_t k_begin, int64_t k_end, int64_t calc_begin, int64_t calc_end,
                             const Target& target) {
  DPUEMU_ASSIGN_OR_RETURN(const NceLayer slice,
                          SliceLayer(layer, k_begin, k_end, calc_begin, calc_end));
  // A channel-wise slice reads only its own channels, which the layer's input SE size need not
  // divide (K [0, 16) of C = 32 with SE 32): such inputs are dense (SupportedSparsity), so the
  // slice takes the target's default SE size for its channels.
  StorageOptions st = storage;
  if (IsChannelwise(layer.op.kind) && st.input_se_size != 0 &&
      slice.op.g.c % st.input_se_size != 0) {
    st.input_se_size = DefaultSeSize(target, slice.op.g.c, slice.op.in_dtype);
  }
  // Pads beyond kernel / 2 are read through an SE pad gather, as one DPU invocation needs.
  return LowerLayerForDpu(slice, st, target);
}

struct PreparedLayer::Impl {
  struct Item {
    size_t workload = 0;  // index in plan.workloads
    int64_t k_begin = 0, k_end = 0, row_begin = 0, row_end = 0;
    int64_t calc_begin = 0, calc_end = 0;  // rows computed, a superset of the rows written
    StorageOptions storage;
    DpuTask task;
    PreparedWeights weights;  // SIMD kernels only
    std::string Name() const {
      return "plan.workloads[" + Str(static_cast<int64_t>(workload)) + "] (k " +
             Range(k_begin, k_end) + ", rows " + Range(row_begin, row_end) + ")";
    }
  };

  Target target;  // a copy: the caller's may not outlive the prepared layer
  RunOptions options;
  int threads = 1;
  std::unique_ptr<tbb::task_arena> arena;  // kept: its threads stay warm between runs
  NceOp op;
  std::vector<Item> items;               // plan order
  std::vector<size_t> longest_first;     // item indices by estimated work (rows x channels)
  std::vector<WorkloadReport> reports;  // ranges filled in; kernel and seconds by Run

  // Calls body(i) for every item, longest first; each thread takes the next item, so uneven
  // items balance. Returns the error of the first failing item in plan order; items after a
  // failed one are not started.
  template <typename Body>
  Status ForEachItem(const Body& body) const {
    std::vector<Status> status(items.size());
    std::atomic<size_t> first_error{items.size()};
    std::atomic<size_t> next{0};
    auto worker = [&](int) {
      for (size_t n = next++; n < longest_first.size(); n = next++) {
        const size_t i = longest_first[n];
        if (i > first_error.load()) continue;
        status[i] = body(i);
        size_t seen = first_error.load();
        while (!status[i].ok() && i < seen && !first_error.compare_exchange_weak(seen, i)) {
        }
      }
    };
    if (threads == 1) {
      worker(0);
    } else {
      arena->execute([&] { tbb::parallel_for(0, threads, worker); });
    }
    const size_t bad = first_error.load();
    return bad == items.size() ? OkStatus() : status[bad].Annotate(items[bad].Name());
  }
};

namespace {

using Item = PreparedLayer::Impl::Item;

// The plan's workloads as work items: each checked against the op and the plan, clustering
// replicas (the same output range on another tile) merged, padding-only workloads dropped, and
// every real output channel of every row covered exactly once.
StatusOr<std::vector<Item>> PlanItems(const NceGeometry& g, const Plan& plan,
                                      std::vector<int>* replicas) {
  const int64_t oh = g.out_h(), ow = g.out_w();
  if (plan.k_padded < g.k || plan.k_padded % 16 != 0) {
    return InvalidArgument("plan.k_padded = " + Str(plan.k_padded) +
                           ": must be a multiple of 16 and >= K = " + Str(g.k));
  }
  const int64_t blocks = plan.k_padded / 16;
  std::vector<int> owner(static_cast<size_t>(blocks * oh), -1);  // [row][16-channel block]
  std::vector<Item> items;
  std::vector<int> item_of(plan.workloads.size(), -1);
  for (size_t i = 0; i < plan.workloads.size(); ++i) {
    const Workload& w = plan.workloads[i];
    const std::string where = "plan.workloads[" + Str(static_cast<int64_t>(i)) + "]";
    const auto tile = std::find_if(plan.tiles.begin(), plan.tiles.end(),
                                   [&](const TilePlan& t) { return t.tile == w.tile; });
    if (tile == plan.tiles.end()) {
      return InvalidArgument(where + ".tile = " + Str(w.tile) + ": no such tile in plan.tiles");
    }
    if (w.k_begin < 0 || w.k_begin >= w.k_end || w.k_end > plan.k_padded || w.k_begin % 16 != 0 ||
        w.k_end % 16 != 0) {
      return InvalidArgument(where + ": channels " + Range(w.k_begin, w.k_end) +
                             " must be a non-empty, 16-aligned range inside [0, k_padded = " +
                             Str(plan.k_padded) + ")");
    }
    if (w.row_begin < 0 || w.row_begin >= w.row_end || w.row_end > oh) {
      return InvalidArgument(where + ": rows " + Range(w.row_begin, w.row_end) +
                             " must be a non-empty range inside [0, OH = " + Str(oh) + ")");
    }
    if (w.col_begin != 0 || w.col_end != ow) {
      return InvalidArgument(where + ": columns " + Range(w.col_begin, w.col_end) +
                             " must be the whole output width [0, OW = " + Str(ow) +
                             ") (workloads split over columns cannot be sliced)");
    }
    // Another workload with the same range is a replica; any other overlap is an error.
    int replica_of = -1;
    for (int64_t r = w.row_begin; r < w.row_end; ++r) {
      for (int64_t b = w.k_begin / 16; b < w.k_end / 16; ++b) {
        int& o = owner[static_cast<size_t>(r * blocks + b)];
        if (o < 0) {
          o = static_cast<int>(i);
          continue;
        }
        const Workload& other = plan.workloads[static_cast<size_t>(o)];
        if (other.k_begin != w.k_begin || other.k_end != w.k_end ||
            other.row_begin != w.row_begin || other.row_end != w.row_end) {
          return InvalidArgument(where + " (k " + Range(w.k_begin, w.k_end) + ", rows " +
                                 Range(w.row_begin, w.row_end) + ") overlaps plan.workloads[" +
                                 Str(o) + "] (k " + Range(other.k_begin, other.k_end) +
                                 ", rows " + Range(other.row_begin, other.row_end) +
                                 "): an output is written by one workload only");
        }
        replica_of = o;
      }
    }
    if (replica_of >= 0) {
      const int item = item_of[static_cast<size_t>(replica_of)];
      if (item >= 0) ++(*replicas)[static_cast<size_t>(item)];
      continue;
    }
    if (w.k_begin >= g.k) continue;  // padding channels only: computed and discarded
    Item it;
    it.workload = i;
    it.k_begin = w.k_begin;
    it.k_end = w.k_end;
    it.row_begin = w.row_begin;
    it.row_end = w.row_end;
    it.storage = TileStorage(plan, *tile);
    item_of[i] = static_cast<int>(items.size());
    items.push_back(std::move(it));
    replicas->push_back(0);
  }
  for (int64_t r = 0; r < oh; ++r) {
    for (int64_t b = 0; b < g.k / 16; ++b) {
      if (owner[static_cast<size_t>(r * blocks + b)] < 0) {
        return InvalidArgument("plan.workloads: output row " + Str(r) + ", channels " +
                               Range(b * 16, b * 16 + 16) + " are computed by no workload");
      }
    }
  }
  return items;
}

}  // namespace

StatusOr<PreparedLayer> PreparedLayer::Create(const NceLayer& layer, const Plan& plan,
                                              const Target& target, const RunOptions& options) {
  if (options.threads < 0) {
    return InvalidArgument("threads = " + Str(options.threads) + ": must be >= 0 (0 = all cores)");
  }
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  DPUEMU_RETURN_IF_ERROR(CheckPlanMatches(layer.op, plan, target));
  const NceGeometry& g = layer.op.g;
  auto impl = std::make_shared<Impl>();
  Impl& s = *impl;
  s.target = target;
  s.options = options;
  s.threads = options.threads > 0 ? options.threads : tbb::info::default_concurrency();
  if (s.threads > 1) s.arena = std::make_unique<tbb::task_arena>(s.threads);
  s.op = layer.op;
  std::vector<int> replicas;
  std::vector<Item> workloads;
  std::vector<int64_t> cost;
  DPUEMU_ASSIGN_OR_RETURN(workloads, PlanItems(g, plan, &replicas));

  // Too few workloads to keep every thread busy: cut each into equal row chunks.
  const size_t want = kItemsPerThread * static_cast<size_t>(s.threads);
  int64_t parts = 1;
  if (s.threads > 1 && !workloads.empty() && workloads.size() < want) {
    parts = static_cast<int64_t>((want + workloads.size() - 1) / workloads.size());
  }
  for (size_t i = 0; i < workloads.size(); ++i) {
    const Item& w = workloads[i];
    const int64_t rows = w.row_end - w.row_begin, n = std::min(parts, rows);
    for (int64_t p = 0; p < n; ++p) {
      Item it = w;
      it.row_begin = w.row_begin + rows * p / n;
      it.row_end = w.row_begin + rows * (p + 1) / n;
      std::tie(it.calc_begin, it.calc_end) = ComputedRows(g, it.row_begin, it.row_end);
      WorkloadReport rep;
      rep.tile = plan.workloads[w.workload].tile;
      rep.k_begin = it.k_begin;
      rep.k_end = it.k_end;
      rep.row_begin = it.row_begin;
      rep.row_end = it.row_end;
      rep.replicas = replicas[i];
      s.reports.push_back(rep);
      cost.push_back((it.calc_end - it.calc_begin) * (it.k_end - it.k_begin));
      s.items.push_back(std::move(it));
    }
  }

  s.longest_first.resize(s.items.size());
  std::iota(s.longest_first.begin(), s.longest_first.end(), size_t{0});
  std::stable_sort(s.longest_first.begin(), s.longest_first.end(),
                   [&](size_t a, size_t b) { return cost[a] > cost[b]; });

  DPUEMU_RETURN_IF_ERROR(s.ForEachItem([&](size_t i) -> Status {
    Item& it = s.items[i];
    DPUEMU_ASSIGN_OR_RETURN(it.task, LowerSlice(layer, it.storage, it.k_begin, it.k_end,
                                                it.calc_begin, it.calc_end, target));
    return OkStatus();
  }));
  if (!options.reference && layer.op.kind == NceKind::kConv) {
    // Items with the same channels and weight storage have the same weight buffers, and ops that
    // differ at most in the input rows (height, vertical pads), which prepared weights allow:
    // their weights are decoded once.
    std::map<std::array<int64_t, 3>, size_t> first;
    std::vector<size_t> source(s.items.size());
    for (size_t i = 0; i < s.items.size(); ++i) {
      const Item& it = s.items[i];
      const std::array<int64_t, 3> key = {it.k_begin, it.k_end, it.storage.weights_sparse};
      source[i] = first.emplace(key, i).first->second;
    }
    DPUEMU_RETURN_IF_ERROR(s.ForEachItem([&](size_t i) -> Status {
      if (source[i] != i) return OkStatus();
      DPUEMU_ASSIGN_OR_RETURN(s.items[i].weights, PreparedWeights::Create(s.items[i].task, target));
      return OkStatus();
    }));
    for (size_t i = 0; i < s.items.size(); ++i) s.items[i].weights = s.items[source[i]].weights;
  }
  PreparedLayer out;
  out.impl_ = std::move(impl);
  return out;
}

int PreparedLayer::threads() const { return impl_->threads; }
size_t PreparedLayer::items() const { return impl_->items.size(); }

StatusOr<RunResult> PreparedLayer::Run() const {
  const Clock::time_point start = Clock::now();
  const Impl& s = *impl_;
  const NceGeometry& g = s.op.g;
  const int64_t ow = g.out_w(), eb = DTypeBytes(s.op.out_dtype);
  RunResult r;
  r.output = Tensor(s.op.out_dtype, {g.out_h(), ow, g.k});
  r.workloads = s.reports;
  DPUEMU_RETURN_IF_ERROR(s.ForEachItem([&](size_t i) -> Status {
    const Clock::time_point t0 = Clock::now();
    const Impl::Item& it = s.items[i];
    WorkloadReport& rep = r.workloads[i];
    DpuOutput out;
    if (s.options.reference) {
      DPUEMU_ASSIGN_OR_RETURN(out, RunReference(it.task, s.target));
    } else {
      DPUEMU_ASSIGN_OR_RETURN(
          out, RunNce(it.task, s.target, s.options.kernel, &rep.kernel,
                      it.task.op.kind == NceKind::kConv ? &it.weights : nullptr));
    }
    Tensor decoded;
    const Tensor* dense = &out.data;
    if (out.sparse()) {
      DPUEMU_ASSIGN_OR_RETURN(decoded, DenseOutput(out, s.op.ppe.out_zp));
      dense = &decoded;
    }
    // [calc rows, OW, kc] -> rows [row_begin, row_end), channels [k_begin, min(k_end, K)).
    const int64_t kc = it.k_end - it.k_begin;
    const size_t bytes = static_cast<size_t>((std::min(it.k_end, g.k) - it.k_begin) * eb);
    for (int64_t y = it.row_begin; y < it.row_end; ++y) {
      const uint8_t* src = dense->bytes.data() + (y - it.calc_begin) * ow * kc * eb;
      uint8_t* dst = r.output.bytes.data() + (y * ow * g.k + it.k_begin) * eb;
      for (int64_t x = 0; x < ow; ++x) std::memcpy(dst + x * g.k * eb, src + x * kc * eb, bytes);
    }
    rep.seconds = SecondsSince(t0);
    return OkStatus();
  }));
  r.seconds = SecondsSince(start);
  return r;
}

StatusOr<RunResult> RunLayer(const NceLayer& layer, const Plan& plan, const Target& target,
                             const RunOptions& options) {
  const Clock::time_point start = Clock::now();
  DPUEMU_ASSIGN_OR_RETURN(const PreparedLayer prepared,
                          PreparedLayer::Create(layer, plan, target, options));
  RunResult r;
  DPUEMU_ASSIGN_OR_RETURN(r, prepared.Run());
  r.seconds = SecondsSince(start);
  return r;
}

StatusOr<RunResult> PlanAndRun(const NceLayer& layer, const Target& target,
                               const PlanOptions& plan_options, const RunOptions& run_options,
                               Plan* plan_out) {
  Plan plan;
  DPUEMU_ASSIGN_OR_RETURN(plan, PlanLayer(layer, target, plan_options));
  if (plan_out != nullptr) *plan_out = plan;
  return RunLayer(layer, plan, target, run_options);
}

}  // namespace dpuemu
