#include "runtime/plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>

#include "hw/formats.h"

namespace dpuemu {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

// 92160 -> "92,160": byte counts in reasons are read by people.
std::string Commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
  return (v < 0 ? "-" : "") + digits;
}

// 0.602 -> "60.2%", 0.125 -> "12.5%", 0.0625 -> "6.25%".
std::string Pct(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", fraction * 100);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s + "%";
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t NextPow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

std::string Range(int64_t begin, int64_t end) { return "[" + Str(begin) + ", " + Str(end) + ")"; }

std::string Tiles(size_t n) {
  return Str(static_cast<int64_t>(n)) + (n == 1 ? " tile" : " tiles");
}

// The input rows (or columns) that output rows [out_begin, out_end) read, clipped to the input,
// and the padding the clipped window needs on each side.
struct Window {
  int64_t begin, end, pad_before, pad_after;
  bool empty() const { return begin >= end; }
  int64_t size() const { return std::max<int64_t>(end - begin, 0); }
};
Window InputWindow(int64_t out_begin, int64_t out_end, int64_t stride, int64_t kernel, int64_t pad,
                   int64_t size) {
  const int64_t lo = out_begin * stride - pad;
  const int64_t hi = (out_end - 1) * stride - pad + kernel;
  return {std::max<int64_t>(lo, 0), std::min(hi, size), std::max<int64_t>(-lo, 0),
          std::max<int64_t>(hi - size, 0)};
}

// ---- MPE modes ----

struct Grain {
  MpeMode mode;
  int64_t w, h, k;
};
constexpr Grain kGrains[] = {{MpeMode::kCuboid16x16, 16, 16, 64},
                             {MpeMode::kCuboid8x16, 16, 8, 128},
                             {MpeMode::kCuboid4x16, 8, 8, 256}};
constexpr int64_t kCuboidVolume = 16384;  // outputs per cuboid, the same for every mode

struct ModeCost {
  MpeMode mode;
  int64_t cuboids;
  int64_t reads;  // 16-byte input grains
};

// Sum of the input windows of the chunks of `grain` outputs that cover n outputs: a chunk of m
// outputs reads (m - 1) * stride + kernel inputs.
int64_t WindowSum(int64_t n, int64_t grain, int64_t stride, int64_t kernel) {
  return n * stride + CeilDiv(n, grain) * (kernel - stride);
}

// The cuboids and input reads of covering rows x cols x channels outputs in mode `m`.
ModeCost CostIn(const NceOp& op, MpeMode m, int64_t rows, int64_t cols, int64_t channels);

const Grain& GrainOf(MpeMode m) {
  for (const Grain& g : kGrains) {
    if (g.mode == m) return g;
  }
  return kGrains[0];
}

ModeCost CostIn(const NceOp& op, MpeMode m, int64_t rows, int64_t cols, int64_t channels) {
  const NceGeometry& g = op.g;
  const Grain& gr = GrainOf(m);
  const int64_t k_passes = CeilDiv(channels, gr.k);
  // A convolution's cuboid reads all C input channels once per pass over K; a channel-wise
  // kind's reads its own channels (an eltwise both inputs').
  const int64_t read_channels = IsChannelwise(op.kind) ? channels : k_passes * g.c;
  const int64_t grains = read_channels * (op.kind == NceKind::kEltwise ? 2 : 1) *
                         DTypeBytes(op.in_dtype) / 16;  // channels are 16-aligned
  return {m, CeilDiv(cols, gr.w) * CeilDiv(rows, gr.h) * k_passes,
          WindowSum(rows, gr.h, g.stride_y, g.ky) * WindowSum(cols, gr.w, g.stride_x, g.kx) *
              grains};
}

// ---- Splits ----

struct TileRange {
  int64_t k_begin, k_end, row_begin, row_end;
  // Channel counts of the tile's workloads, in order (empty: one workload over [k_begin, k_end)).
  std::vector<int64_t> wl_channels = {};
};

std::string List(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + Str(v[i]);
  return s + "]";
}

// A split the planner considered: its ranges, or why the target's rules forbid it.
struct Candidate {
  SplitStrategy split = SplitStrategy::kClustering;
  std::string why_not;  // non-empty: not possible
  std::vector<TileRange> ranges;
  int64_t k_padded = 0;
  std::vector<std::string> notes;
  SplitRule rule = SplitRule::kCompiler;  // the tiling rule for sparse output
  bool output_dense = false;  // the compiler's rule removed the output sparsity
  // NPU37XX SOH: the input rows each tile's CMX segment holds (the compiler's SEGMENTED input).
  std::vector<std::pair<int64_t, int64_t>> in_segments;
  // Filled in by Planner::Build.
  std::vector<TilePlan> tiles;
  std::vector<Workload> workloads;
  int64_t cycles = 0;     // slowest tile
  int64_t cmx_total = 0;  // bytes over all tiles
  std::string cmx_problem;  // non-empty: a tile does not fit CMX
  std::string rule_reason;  // how split_rule chose this tiling
  // Tile channels and the workloads' channels, e.g. "K per tile [256, 256], 1 workload per tile
  // row band, slowest tile 3,136 cycles".
  std::string Tiling() const {
    std::vector<int64_t> k;
    for (const TileRange& r : ranges) k.push_back(r.k_end - r.k_begin);
    std::string wl;
    for (const TileRange& r : ranges) {
      if (!r.wl_channels.empty()) {
        wl = ", workloads " + List(r.wl_channels) + " on tile " + Str(&r - ranges.data());
        break;
      }
    }
    return "tiling K per tile " + List(k) + wl + (output_dense ? ", output sparsity removed" : "") +
           (why_not.empty() ? ", slowest tile " + Commas(cycles) + " cycles" : std::string());
  }
  std::string Summary() const {
    return std::string(SplitStrategyName(split)) + " over " + Tiles(ranges.size()) +
           " (slowest tile " + Commas(cycles) + " cycles, " + Commas(cmx_total) +
           " bytes in CMX)";
  }
};

Candidate Clustering(const NceGeometry& g, int n) {
  Candidate c;
  c.split = SplitStrategy::kClustering;
  c.k_padded = g.k;
  c.ranges.assign(static_cast<size_t>(n), TileRange{0, g.k, 0, g.out_h()});
  return c;
}

// Equal channel splits of `per` (the last may be shorter when per * used > k_padded).
void SplitChannels(Candidate* c, int64_t per, int64_t k_padded, int64_t out_h) {
  c->k_padded = k_padded;
  for (int64_t k = 0; k < k_padded; k += per) {
    c->ranges.push_back({k, std::min(k + per, k_padded), 0, out_h});
  }
}

// Ranges from consecutive segment sizes along K or the output rows.
void AddSegments(Candidate* c, const std::vector<int64_t>& seg, bool over_k, const NceGeometry& g) {
  int64_t at = 0;
  for (int64_t n : seg) {
    c->ranges.push_back(over_k ? TileRange{at, at + n, 0, g.out_h()}
                               : TileRange{0, g.k, at, at + n});
    at += n;
  }
}

// The seed's SOK (the seed notes; sparse output only): NPU37XX equal power-of-two splits, K padded;
// NPU40XX equal multiples of 16, fewer tiles or K padded, whichever gives the smaller split.
Candidate SeedSparseSok(const NceGeometry& g, const Target& t, int n) {
  Candidate c;
  c.split = SplitStrategy::kSok;
  c.rule = SplitRule::kSeed;
  const int64_t k = g.k;
  const int64_t min = t.sok_min_channels_per_tile;
  const std::string kstr = "K=" + Str(k);
  if (t.sok_sparse_output_pow2) {
    const int64_t per = std::max(min, NextPow2(CeilDiv(k, n)));
    const int64_t used = CeilDiv(k, per);
    if (used < 2) {
      c.why_not = std::string(t.name) + " SOK with sparse output needs equal power-of-two " +
                  "splits: " + kstr + " gives one split of " + Str(per);
      return c;
    }
    SplitChannels(&c, per, per * used, g.out_h());
    if (c.k_padded != k) {
      c.notes.push_back(kstr + " padded to " + Str(c.k_padded) + " with zero-weight channels: " +
                        t.name + " SOK with sparse output needs equal power-of-two splits (" +
                        Str(used) + " x " + Str(per) + "; seed rule)");
    }
    return c;
  }
  if (k % (min * n) == 0) {
    SplitChannels(&c, k / n, k, g.out_h());
    return c;
  }
  int64_t fewer = 0;
  for (int64_t m = n - 1; m >= 2 && fewer == 0; --m) {
    if (k % (min * m) == 0) fewer = m;
  }
  const int64_t padded = AlignUp(k, min * n);
  const std::string rule = std::string(t.name) + " SOK with sparse output needs equal splits " +
                           "in multiples of " + Str(min) + " (seed rule): " + kstr +
                           " is not a multiple of " + Str(n) + " x " + Str(min);
  if (fewer != 0 && k / fewer <= padded / n) {
    SplitChannels(&c, k / fewer, k, g.out_h());
    c.notes.push_back(rule + "; using " + Str(fewer) + " of " + Str(n) + " tiles (" + Str(fewer) +
                      " x " + Str(k / fewer) + "; padding K to " + Str(padded) + " would give " +
                      Str(padded / n) + " per tile)");
  } else {
    SplitChannels(&c, padded / n, padded, g.out_h());
    c.notes.push_back(
        rule + "; " + kstr + " padded to " + Str(padded) + " with zero-weight channels (" +
        Str(n) + " x " + Str(padded / n) +
        (fewer != 0 ? "; " + Str(fewer) + " tiles would need " + Str(k / fewer) + " per tile"
                    : std::string("; no smaller tile count divides it")) +
        ")");
  }
  return c;
}

// The compiler's SOK: getOptimalNumClusters -> SokClusters, then splitSegmentedShape with the
// channel alignment 16 (uniform on NPU40XX; for sparse output getUniformDistributedSegments tries
// the first-equal segments first and shouldRemoveOutputSparsity drops the sparsity otherwise).
Candidate CompilerSok(const NceGeometry& g, const Target& t, int n, bool output_sparse) {
  Candidate c;
  c.split = SplitStrategy::kSok;
  c.rule = SplitRule::kCompiler;
  c.k_padded = g.k;
  const bool uniform = t.id != TargetId::kNPU37XX;  // isUniformDistributedSegmentsSupported
  const int64_t used = SokClusters(g.k, n, uniform);
  if (used < 2) {
    c.why_not = "SOK: K=" + Str(g.k) + " fills one cluster of 16-aligned channels " +
                "(getNumberOfClustersForSOKToAvoidAlignment)";
    return c;
  }
  bool seg_uniform = uniform;
  if (output_sparse && uniform) {
    if (SegmentSizes(g.k, used, 16, false).ok()) {
      seg_uniform = false;
    } else {
      c.output_dense = true;
      c.notes.push_back("output sparsity removed: K=" + Str(g.k) + " over " + Str(used) +
                        " tiles has no first-equal 16-aligned segments, so the compiler uses " +
                        "uniform segments and removes the SOK output sparsity " +
                        "(getUniformDistributedSegments, shouldRemoveOutputSparsity in " +
                        "VPU/utils/sparsity_utils.cpp; compiler rule)");
    }
  }
  StatusOr<std::vector<int64_t>> seg = SegmentSizes(g.k, used, 16, seg_uniform);
  if (!seg.ok()) {
    c.why_not = seg.status().message();
    return c;
  }
  AddSegments(&c, *seg, /*over_k=*/true, g);
  if (used < n || (*seg)[0] != seg->back()) {
    c.notes.push_back("K=" + Str(g.k) + " over " + Str(used) + " of " + Str(n) + " tiles: " +
                      List(*seg) + " (" + (seg_uniform ? "uniform" : "first tiles equal and 16-aligned, the last the remainder") +
                      "; splitSegmentedShape, getNumberOfClustersForSOKToAvoidAlignment)");
  }
  return c;
}

Candidate SplitOverK(const NceGeometry& g, const Target& t, int n, bool output_sparse,
                     SplitRule rule) {
  const int64_t min = t.sok_min_channels_per_tile;
  if (n < 2 || g.k < 2 * min) {
    Candidate c;
    c.split = SplitStrategy::kSok;
    c.rule = rule;
    c.why_not = "SOK needs at least 2 tiles of >= " + Str(min) + " output channels (K=" +
                Str(g.k) + ", " + Str(n) + " tiles)";
    return c;
  }
  return output_sparse && rule == SplitRule::kSeed ? SeedSparseSok(g, t, n)
                                                   : CompilerSok(g, t, n, output_sparse);
}

// SOH as the compiler segments it: output rows by splitSegmentedShape over the clusters
// getNumberOfClustersForSpatialDim allows (first equal on NPU37XX, uniform on NPU40XX). NPU37XX
// also needs isSOHSupportedByDPU on the INPUT (distributed_tensor_utils.cpp): rows per cluster
// alignUp(ceil(IH / n), getSOHPerClusterHeightAlignment(IW, sparse)) must leave the last
// cluster rows; the input is then segmented with getSOHMinimalHeightAlignment (IW x rows a
// multiple of 4, dense, or 8, sparse: VPU_SEGMENT_SIZE_DENSE / _SPARSE).
// `input_sparse`: a map or an SE table (isSOHSupportedByDPU counts both as sparse); `data_h`: the
// rows of the data the table points into (the source with SE pointers).
Candidate SplitOverH(const NceGeometry& g, const Target& t, int n, bool input_sparse,
                     int64_t data_h) {
  Candidate c;
  c.split = SplitStrategy::kSoh;
  c.k_padded = g.k;
  const int64_t oh = g.out_h();
  if (n < 2 || oh < 2) {
    c.why_not = "SOH needs at least 2 tiles with an output row each (OH=" + Str(oh) + ", " +
                Str(n) + " tiles)";
    return c;
  }
  const bool uniform = t.id != TargetId::kNPU37XX;
  int64_t used = n;  // getNumberOfClustersForSpatialDim
  while (used > 1 && !(uniform ? oh / used > 0 : oh - (used - 1) * CeilDiv(oh, used) > 0)) --used;
  if (input_sparse && data_h < used) {  // isSOHSupportedByDPU, both targets
    c.why_not = "SOH: the input data has " + Str(data_h) + " rows for " + Str(used) +
                " tiles (isSOHSupportedByDPU: fewer data rows than clusters)";
    return c;
  }
  const int multiple = input_sparse ? t.soh_row_multiple_sparse : t.soh_row_multiple_dense;
  if (multiple > 0) {
    const int64_t ih = g.h, iw = g.w;
    // getSOHPerClusterHeightAlignment: multiple / the largest power of two <= multiple dividing IW.
    int64_t wa = multiple;
    while (wa > 1 && iw % wa != 0) wa /= 2;
    const int64_t align = multiple / wa;
    const int64_t per = AlignUp(CeilDiv(ih, used), align);
    const std::string rule = std::string(t.name) + " SOH needs IW x input-rows-per-tile a multiple of " +
                             Str(multiple) + " (" + (input_sparse ? "sparse" : "dense") +
                             " input; isSOHSupportedByDPU): IW=" + Str(iw) + " -> rows aligned to " +
                             Str(align) + ", " + Str(per) + " of IH=" + Str(ih) + " per tile";
    if (ih - per * (used - 1) <= 0) {
      c.why_not = rule + ", which leaves no input rows for the last tile";
      return c;
    }
    // getSOHMinimalHeightAlignment, applied only when in (1, IH) (getActivationTensorAlignment).
    int64_t min_align = align;
    for (int64_t a = 1; a < align; a *= 2) {
      if (AlignUp(CeilDiv(ih, used), a) * iw % multiple == 0) {
        min_align = a;
        break;
      }
    }
    if (min_align <= 1 || min_align >= ih) min_align = 1;
    StatusOr<std::vector<int64_t>> in_seg = SegmentSizes(ih, used, min_align, false);
    if (!in_seg.ok()) {
      c.why_not = rule + ": " + in_seg.status().message();
      return c;
    }
    int64_t at = 0;
    for (int64_t r : *in_seg) {
      c.in_segments.push_back({at, at + r});
      at += r;
    }
    if (min_align > 1) {
      c.notes.push_back(rule + ": input segments " + List(*in_seg) +
                        " (getSOHMinimalHeightAlignment " + Str(min_align) + ")");
    }
  }
  StatusOr<std::vector<int64_t>> seg = SegmentSizes(oh, used, 1, uniform);
  if (!seg.ok()) {
    c.why_not = "SOH: " + seg.status().message();
    return c;
  }
  AddSegments(&c, *seg, /*over_k=*/false, g);
  if (used < n) {
    c.notes.push_back("OH=" + Str(oh) + " rows fill " + Str(used) + " of " + Str(n) +
                      " tiles (getNumberOfClustersForSpatialDim)");
  }
  return c;
}

// ---- Costs ----

class Planner {
 public:
  Planner(const NceOp& op, const Target& t, const PlanOptions& o, const WeightDecision& w,
          double act_sparsity)
      : op_(op), g_(op.g), t_(t), o_(o), w_(w), act_sparsity_(act_sparsity) {}

  // Tiles, workloads, cycles and CMX footprint of a possible candidate.
  void Build(Candidate* c) const {
    const bool out_sparse = o_.output_sparse && !c->output_dense;
    if (out_sparse && c->rule == SplitRule::kCompiler) {
      // correct_nce_workloads: every workload's channels fit an SE (NPU37XX: a power of two).
      std::vector<int64_t> cluster_k;
      for (const TileRange& r : c->ranges) cluster_k.push_back(r.k_end - r.k_begin);
      StatusOr<std::vector<std::vector<int64_t>>> wl = SparseOutputWorkloadChannels(cluster_k, t_);
      if (!wl.ok()) {
        c->why_not = wl.status().message();
        return;
      }
      for (size_t i = 0; i < c->ranges.size(); ++i) {
        if ((*wl)[i].size() > 1) c->ranges[i].wl_channels = (*wl)[i];
      }
      for (size_t i = 0; i < c->ranges.size(); ++i) {
        if ((*wl)[i].size() > 1) {
          c->notes.push_back("sparse output on " + std::string(t_.name) + ": tile " + Str(i) +
                             " channels " + Str(cluster_k[i]) + " run as workloads of " +
                             List((*wl)[i]) + " (correct_nce_workloads.cpp, " +
                             "WorkloadSplitterBase::correctInvalidWorkload; compiler rule)");
          break;  // one note: the tiles' pieces differ only in the last
        }
      }
    }
    if (op_.kind == NceKind::kDwConv) {
      // Depthwise workloads of 16, 32 or 64 channels (DepthwiseWorkloadChannels), whatever the
      // split rule: a DPU constraint, corrected by correct_nce_workloads.cpp on both targets.
      std::vector<int64_t> cluster_k;
      for (const TileRange& r : c->ranges) cluster_k.push_back(r.k_end - r.k_begin);
      StatusOr<std::vector<std::vector<int64_t>>> wl = DepthwiseWorkloadChannels(cluster_k, out_sparse);
      if (!wl.ok()) {
        c->why_not = wl.status().message();
        return;
      }
      for (size_t i = 0; i < c->ranges.size(); ++i) c->ranges[i].wl_channels = (*wl)[i];
      c->notes.push_back("dwconv: tile 0 channels " + Str(cluster_k[0]) + " run as depthwise " +
                         "workloads of " + List((*wl)[0]) + " (supportedChannelsDW {64, 32, 16}, " +
                         "WorkloadSplitterBase::correctInvalidWorkload)");
    }
    for (size_t i = 0; i < c->ranges.size(); ++i) {
      const TileRange& r = c->ranges[i];
      TilePlan tp;
      tp.tile = static_cast<int>(i);
      tp.k_begin = r.k_begin;
      tp.k_end = r.k_end;
      tp.row_begin = r.row_begin;
      tp.row_end = r.row_end;
      const Window win = InputWindow(r.row_begin, r.row_end, g_.stride_y, g_.ky, g_.pad_top, g_.h);
      if (win.empty()) {
        c->why_not = "tile " + Str(i) + " output rows " + Range(r.row_begin, r.row_end) +
                     " read only padding rows";
        return;
      }
      tp.in_row_begin = win.begin;
      tp.in_row_end = win.end;
      if (!c->in_segments.empty()) {
        tp.in_seg_begin = c->in_segments[i].first;
        tp.in_seg_end = c->in_segments[i].second;
      }
      const int64_t kc = r.k_end - r.k_begin;
      if (o_.output_se_size != 0 && kc % o_.output_se_size != 0) {
        c->why_not = "output se_size = " + Str(o_.output_se_size) +
                     " must divide every tile's channel count (tile " + Str(i) + " has " +
                     Str(kc) + ")";
        return;
      }
      // Channels beyond one invocation run as equal parts (TileWorkloads): the SE size divides each.
      const int64_t per = InvocationChannels(kc), last = kc - (CeilDiv(kc, per) - 1) * per;
      if (o_.output_se_size != 0 && (per % o_.output_se_size != 0 || last % o_.output_se_size != 0)) {
        c->why_not = "output se_size = " + Str(o_.output_se_size) + " must divide every " +
                     "invocation's channel count (tile " + Str(i) + " runs " + Str(per) +
                     "-channel invocations)";
        return;
      }
      int64_t se_channels = std::gcd(per, last);
      for (int64_t wc : r.wl_channels) se_channels = std::gcd(se_channels, wc);  // dwconv pieces
      tp.output_se_size =
          o_.output_se_size != 0 ? o_.output_se_size : DefaultSeSize(t_, se_channels);
      if (o_.se.used()) {
        tp.input_bytes = SourceBytes(win.begin, win.end);
        tp.se_table_bytes = SeTableRowBytes(win.size());
        tp.input_map_bytes = ActivationMapBytes(win.size() * g_.w * g_.c);
      } else {
        tp.input_bytes = ActBytes(win.size() * g_.w * InputChannels(kc), op_.in_dtype, o_.input_sparse);
      }
      tp.weight_bytes = WeightBytes(r.k_begin, r.k_end);
      tp.output_bytes =
          ActBytes((r.row_end - r.row_begin) * g_.out_w() * kc, op_.out_dtype, out_sparse);
      // One DPU per tile on both targets: its workloads run one after another.
      std::vector<std::pair<int64_t, int64_t>> wl_k;
      for (int64_t kb = r.k_begin, j = 0; kb < r.k_end; ++j) {
        const int64_t ke = r.wl_channels.empty() ? r.k_end : kb + r.wl_channels[size_t(j)];
        if ((ke - kb) % tp.output_se_size != 0) {
          c->why_not = "output se_size = " + Str(tp.output_se_size) + " must divide every " +
                       "workload's channel count (tile " + Str(i) + " has a workload of " +
                       Str(ke - kb) + ")";
          return;
        }
        // A piece beyond one invocation's channels runs as equal parts of at most 8192.
        const int64_t part = InvocationChannels(ke - kb);
        for (int64_t pb = kb; pb < ke; pb += part) wl_k.push_back({pb, std::min(pb + part, ke)});
        kb = ke;
      }
      for (const Workload& w : TileWorkloads(&tp, wl_k, out_sparse)) {
        tp.cycles += w.cycles;
        c->workloads.push_back(w);
      }
      c->cycles = std::max(c->cycles, tp.cycles);
      c->cmx_total += tp.cmx_bytes();
      if (tp.cmx_bytes() > t_.cmx_bytes_per_tile && c->cmx_problem.empty()) {
        c->cmx_problem = std::string(SplitStrategyName(c->split)) + " on " +
                         Tiles(c->ranges.size()) + " needs " + Commas(tp.cmx_bytes()) +
 " bytes on tile " + Str(i) + " (input " + Commas(tp.input_bytes) +
                         (o_.se.used() ? " + SE table " + Commas(tp.se_table_bytes) + " + map " +
                                             Commas(tp.input_map_bytes)
                                       : std::string()) +
                         " + weights " + Commas(tp.weight_bytes) + " + output " +
                         Commas(tp.output_bytes) + ") > " + Commas(t_.cmx_bytes_per_tile) +
                         " bytes of CMX per tile on " + t_.name;
      }
      c->tiles.push_back(tp);
    }
  }

 private:
  int64_t ActBytes(int64_t elements, DType dtype, bool sparse) const {
    return elements * DTypeBytes(dtype) + (sparse ? ActivationMapBytes(elements) : 0);
  }

  // SE pointers: the table bytes of `rows` virtual input rows.
  int64_t SeTableRowBytes(int64_t rows) const {
    return rows * g_.w * (g_.c / o_.se.se_size) * 4;
  }

  // SE pointers: the source bytes virtual input rows [begin, end) read (source stored dense-sized,
  // sparse or not: the virtual map replaces the source's own).
  int64_t SourceBytes(int64_t begin, int64_t end) const {
    const PlanSe& se = o_.se;
    if (se.source_row_begin.empty()) return (end - begin) * g_.w * g_.c * DTypeBytes(op_.in_dtype);
    int64_t lo = se.source_h, hi = 0;
    for (int64_t y = begin; y < end; ++y) {
      const int64_t b = se.source_row_begin[static_cast<size_t>(y)];
      const int64_t e = se.source_row_end[static_cast<size_t>(y)];
      if (b >= e) continue;
      lo = std::min(lo, b);
      hi = std::max(hi, e);
    }
    return hi > lo ? (hi - lo) * se.source_w * g_.c * DTypeBytes(op_.in_dtype) : 0;
  }

  // The input channels a tile or workload of kc output channels reads: all C for a convolution,
  // its own for a channel-wise kind (both inputs' for an eltwise).
  int64_t InputChannels(int64_t kc) const {
    if (!IsChannelwise(op_.kind)) return g_.c;
    return op_.kind == NceKind::kEltwise ? 2 * kc : kc;
  }

  // Channels [kb, ke); those >= K are padding (no non-zeros).
  int64_t WeightBytes(int64_t kb, int64_t ke) const { return WeightBytes(kb, ke, w_.sparse); }
  int64_t WeightBytes(int64_t kb, int64_t ke, bool sparse) const {
    if (!HasWeights(op_.kind)) return 0;
    NceGeometry sub = g_;
    sub.k = ke - kb;
    if (op_.kind == NceKind::kDwConv) sub.c = 1;  // one KY x KX filter per channel
    if (!sparse) return DenseWeightBytes(sub, op_.w_dtype) + WeightTableBytes(sub);
    int64_t data = 0;
    for (int64_t k = kb; k < std::min(ke, g_.k); ++k) {
      data += AlignUp(w_.nonzeros[static_cast<size_t>(k)] * DTypeBytes(op_.w_dtype), 16);
    }
    return data + WeightMapBytes(sub) + WeightTableBytes(sub);
  }

  // The nonzero fraction of the weights of channels [kb, ke)'s real channels (1 without weights or
  // real channels). Padding channels are costed like the real ones: the MPE walks them all the same.
  double WeightDensity(int64_t kb, int64_t ke) const {
    const int64_t real_end = std::min(ke, g_.k);
    if (!HasWeights(op_.kind) || real_end <= kb || w_.nonzeros.empty()) return 1.0;
    int64_t nnz = 0;
    for (int64_t k = kb; k < real_end; ++k) nnz += w_.nonzeros[static_cast<size_t>(k)];
    return static_cast<double>(nnz) / static_cast<double>((real_end - kb) * op_.weight_taps());
  }

  // The tile's MPE mode as the compiler picks it: getMpeModeForConv over the output shape of the
  // tile on NPU37XX (split_nce_ops_onto_workloads.cpp passes the per-cluster shape there) and of
  // the whole layer on NPU40XX; every workload of the tile runs in it.
  MpeMode TileMode(const TilePlan& tp, std::string* reason) const {
    if (op_.kind == NceKind::kEltwise) {
      *reason = "eltwise: CUBOID_8x16 (NPU37XX Cuboid8MpeModeModel of NCEEltwiseOp, "
                "nce_op_interfaces.cpp; NPU40XX buildIDUNthwNtk: \"Hardware only supports "
                "MPE_Mode_CUBOID_8x16 for Elementwise addition\")";
      return MpeMode::kCuboid8x16;
    }
    if (op_.kind == NceKind::kDwConv) {
      *reason = "dwconv: CUBOID_16x16 (DepthConvolutionOpModel is a Cuboid16MpeModeModel, "
                "NPU37XX/dialect/VPU/impl/nce_op_interfaces.cpp, registered for NPU40XX too)";
      return MpeMode::kCuboid16x16;
    }
    if (op_.kind == NceKind::kMaxPool || op_.kind == NceKind::kAvgPool) {
      *reason = std::string(NceKindName(op_.kind)) + ": always CUBOID_16x16 (MaxPoolOpModel / "
                "AveragePoolOpModel are Cuboid16MpeModeModel, NPU37XX/dialect/VPU/impl/"
                "nce_op_interfaces.cpp, which NPU40XX uses too)";
      return MpeMode::kCuboid16x16;
    }
    const bool per_tile = t_.id == TargetId::kNPU37XX;
    const int64_t rows = per_tile ? tp.row_end - tp.row_begin : g_.out_h();
    const int64_t k = per_tile ? tp.k_end - tp.k_begin : g_.k;
    const MpeMode m = MpeModeForConv(rows, g_.out_w(), k);
    *reason = MpeModeReason(rows, g_.out_w(), k) + " over the " +
              (per_tile ? "tile's" : "layer's") + " output (split_nce_ops_onto_workloads.cpp: " +
              (per_tile ? "per cluster on NPU37XX" : "whole op on NPU40XX") + ")";
    return m;
  }

  // The tile's output cut into row bands aligned to the tile's MPE mode.
  // A tile's channels beyond kMaxInvocationChannels run as several invocations (the compiler
  // tiles K > VPU_DIMENSION_LIMIT, ensure_nce_ops_size_requirements.cpp): equal 16-aligned parts.
  static int64_t InvocationChannels(int64_t kc) {
    return AlignUp(CeilDiv(kc, CeilDiv(kc, kMaxInvocationChannels)), 16);
  }
  std::vector<Workload> TileWorkloads(TilePlan* tp,
                                      const std::vector<std::pair<int64_t, int64_t>>& wl_k,
                                      bool out_sparse) const {
    const int64_t rows = tp->row_end - tp->row_begin;
    tp->mpe_mode = TileMode(*tp, &tp->mpe_reason);
    const int64_t gh = GrainOf(tp->mpe_mode).h;
    const int64_t grains = CeilDiv(rows, gh);
    const int64_t bands = std::min<int64_t>(o_.workloads_per_tile, grains);
    const int64_t band_rows = CeilDiv(grains, bands) * gh;
    std::vector<Workload> out;
    for (int64_t r = tp->row_begin; r < tp->row_end; r += band_rows) {
      for (const auto& kr : wl_k) {
        out.push_back(MakeWorkload(tp->tile, tp->mpe_mode, kr.first, kr.second, r,
                                   std::min(r + band_rows, tp->row_end), out_sparse));
      }
    }
    return out;
  }

  Workload MakeWorkload(int tile, MpeMode mode, int64_t kb, int64_t ke, int64_t rb,
                        int64_t re, bool out_sparse) const {
    Workload w;
    w.tile = tile;
    w.k_begin = kb;
    w.k_end = ke;
    w.row_begin = rb;
    w.row_end = re;
    w.col_begin = 0;
    w.col_end = g_.out_w();
    const Window wr = InputWindow(rb, re, g_.stride_y, g_.ky, g_.pad_top, g_.h);
    const Window wc = InputWindow(0, g_.out_w(), g_.stride_x, g_.kx, g_.pad_left, g_.w);
    w.in_row_begin = wr.begin;
    w.in_row_end = std::max(wr.begin, wr.end);
    w.in_col_begin = wc.begin;
    w.in_col_end = std::max(wc.begin, wc.end);
    const int64_t rows = re - rb, cols = w.col_end - w.col_begin, kc = ke - kb;
    const ModeCost mc = CostIn(op_, mode, rows, cols, kc);
    w.mpe_mode = mc.mode;
    w.cuboids = mc.cuboids;
    w.input_reads = mc.reads;
    w.utilisation = static_cast<double>(rows * cols * kc) /
                    static_cast<double>(mc.cuboids * kCuboidVolume);
    w.input_bytes = o_.se.used() ? SourceBytes(wr.begin, std::max(wr.begin, wr.end)) +
                                       SeTableRowBytes(wr.size()) +
                                       ActivationMapBytes(wr.size() * g_.w * g_.c)
                                 : ActBytes(wr.size() * wc.size() * InputChannels(kc),
                                            op_.in_dtype, o_.input_sparse);
    w.weight_bytes = WeightBytes(kb, ke);
    w.output_bytes = ActBytes(rows * cols * kc, op_.out_dtype, out_sparse);
    w.cost = WorkloadCost(CostOf(w, w_.sparse), t_);
    w.cycles = w.cost.cycles;
    return w;
  }

 public:
  // The cost model's view of a workload (runtime/cost.h), its weights stored sparse or dense.
  CostWorkload CostOf(const Workload& w, bool weights_sparse) const {
    CostWorkload c;
    c.kind = op_.kind;
    c.in_dtype = op_.in_dtype;
    c.w_dtype = op_.w_dtype;
    c.out_dtype = op_.out_dtype;
    c.rows = w.row_end - w.row_begin;
    c.cols = w.col_end - w.col_begin;
    c.channels = w.k_end - w.k_begin;
    c.grid_w = GrainOf(w.mpe_mode).w;
    c.grid_h = GrainOf(w.mpe_mode).h;
    c.taps = op_.taps_per_output();
    c.weight_sparse = weights_sparse;
    c.weight_density = WeightDensity(w.k_begin, w.k_end);
    c.input_sparse = o_.input_sparse;
    c.input_sparsity = act_sparsity_;
    c.input_bytes = w.input_bytes;
    c.weight_bytes = weights_sparse == w_.sparse ? w.weight_bytes : WeightBytes(w.k_begin, w.k_end, weights_sparse);
    c.output_bytes = w.output_bytes;
    return c;
  }

 private:

  const NceOp& op_;
  const NceGeometry& g_;
  const Target& t_;
  const PlanOptions& o_;
  const WeightDecision& w_;
  double act_sparsity_;
};

Status CheckWeights(const NceOp& op, const Tensor& weights) {
  const NceGeometry& g = op.g;
  if (!HasWeights(op.kind)) {
    if (weights.shape.empty() && weights.bytes.empty()) return OkStatus();
    return InvalidArgument(std::string("weights: ") + NceKindName(op.kind) +
                           " has no weights (got " + weights.ShapeString() + ")");
  }
  const std::vector<int64_t> shape = op.kind == NceKind::kDwConv
                                         ? std::vector<int64_t>{g.c, g.ky, g.kx, 1}
                                         : std::vector<int64_t>{g.k, g.ky, g.kx, g.c};
  if (weights.dtype != op.w_dtype || weights.shape != shape ||
      static_cast<int64_t>(weights.bytes.size()) !=
          g.k * op.weight_taps() * DTypeBytes(op.w_dtype)) {
    Tensor expect;
    expect.shape = shape;
    return InvalidArgument(std::string("weights: expected ") + DTypeName(op.w_dtype) + " " +
                           expect.ShapeString() + ", got " + DTypeName(weights.dtype) + " " +
                           weights.ShapeString() + " with " + Str(weights.bytes.size()) + " bytes");
  }
  return OkStatus();
}

// The SE accounting must describe this layer's virtual input.
Status CheckPlanSe(const NceGeometry& g, const PlanOptions& o, const Target& t) {
  const PlanSe& se = o.se;
  if (!se.used()) return OkStatus();
  const std::string input = "the virtual input " + Str(g.h) + "x" + Str(g.w) + "x" + Str(g.c);
  DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, se.se_size, "se.se_size"));
  if (g.c % se.se_size != 0) {
    return InvalidArgument("se.se_size = " + Str(se.se_size) + ": must divide C = " + Str(g.c));
  }
  if (o.input_se_size != 0 && o.input_se_size != se.se_size) {
    return InvalidArgument("input se_size = " + Str(o.input_se_size) +
                           ": differs from se.se_size = " + Str(se.se_size) +
                           " (the SE table has one pointer per SE of that size)");
  }
  if (se.source_h < 1 || se.source_w < 1) {
    return InvalidArgument("se.source: " + Str(se.source_h) + "x" + Str(se.source_w) +
                           ": the source needs at least one row and column");
  }
  const int64_t table = SeTableBytes(g.h, g.w, g.c, se.se_size);
  if (se.table_bytes != table) {
    return InvalidArgument("se.table_bytes = " + Str(se.table_bytes) +
                           ": must be 4 * H * W * C / se_size = " + Str(table) + " for " + input);
  }
  const int64_t map = ActivationMapBytes(g.h * g.w * g.c);
  if (se.map_bytes != map) {
    return InvalidArgument("se.map_bytes = " + Str(se.map_bytes) +
                           ": must be align16(ceil(H * W * C / 8)) = " + Str(map) + " for " +
                           input);
  }
  if (se.source_row_begin.empty() && se.source_row_end.empty()) return OkStatus();
  if (static_cast<int64_t>(se.source_row_begin.size()) != g.h ||
      static_cast<int64_t>(se.source_row_end.size()) != g.h) {
    return InvalidArgument("se.source_row_begin/end: " + Str(se.source_row_begin.size()) + "/" +
                           Str(se.source_row_end.size()) +
                           " entries, need one per virtual row (H = " + Str(g.h) + ")");
  }
  for (int64_t y = 0; y < g.h; ++y) {
    const int64_t b = se.source_row_begin[static_cast<size_t>(y)];
    const int64_t e = se.source_row_end[static_cast<size_t>(y)];
    if (b < 0 || b > e || e > se.source_h) {
      return InvalidArgument("se.source_row_begin/end[" + Str(y) + "]: rows " + Range(b, e) +
                             " must be a range inside [0, source_h = " + Str(se.source_h) + "]");
    }
  }
  return OkStatus();
}

std::string GeometryText(const NceOp& op) {
  const NceGeometry& g = op.g;
  return Str(g.h) + "x" + Str(g.w) + "x" + Str(g.c) + " -> " + Str(g.out_h()) + "x" +
         Str(g.out_w()) + "x" + Str(g.k) + ", kernel " + Str(g.ky) + "x" + Str(g.kx) +
         ", stride " + Str(g.stride_y) + "x" + Str(g.stride_x) + ", pad " + Str(g.pad_top) + "/" +
         Str(g.pad_bottom) + "/" + Str(g.pad_left) + "/" + Str(g.pad_right) + ", " +
         DTypeName(op.in_dtype) + " x " + DTypeName(op.w_dtype) + " -> " + DTypeName(op.out_dtype);
}

// The cost heuristic's reason: both estimates and the weight bytes each moves.
std::string CostReason(const std::string& what, int64_t sparse_cycles, int64_t dense_cycles,
                       int64_t sparse_bytes, int64_t dense_bytes) {
  return "cost: " + what + " takes " + Commas(sparse_cycles) + " cycles with sparse weights (" +
         Commas(sparse_bytes) + " weight bytes: data + map + table) vs " + Commas(dense_cycles) +
         " dense (" + Commas(dense_bytes) + " bytes): " +
         (sparse_cycles < dense_cycles ? "sparse" : "dense") + " (runtime/cost.h)";
}
StatusOr<Plan> PlanOnce(const NceOp& op, const Tensor& weights, const Tensor* input,
                        const Target& t, const PlanOptions& o, const std::string& name) {
  DPUEMU_RETURN_IF_ERROR(ValidateOp(op));
  DPUEMU_RETURN_IF_ERROR(CheckWeights(op, weights));
  const NceGeometry& g = op.g;
  if (!Supports(t.activation_dtypes, op.in_dtype) || !Supports(t.weight_dtypes, op.w_dtype) ||
      !Supports(t.output_dtypes, op.out_dtype)) {
    return InvalidArgument(std::string("dtypes: ") + t.name + " does not support " +
                           DTypeName(op.in_dtype) + " x " + DTypeName(op.w_dtype) + " -> " +
                           DTypeName(op.out_dtype));
  }
  if (o.tiles < 0 || o.tiles > t.tiles) {
    return InvalidArgument("tiles = " + Str(o.tiles) + ": must be in [0, " + Str(t.tiles) +
                           "] on " + t.name + " (0 = all)");
  }
  if (o.workloads_per_tile < 1 || o.workloads_per_tile > 1024) {
    return InvalidArgument("workloads_per_tile = " + Str(o.workloads_per_tile) +
                           ": must be in [1, 1024]");
  }
  if (o.input_se_size != 0) {
    // Sparse input read without an SE table binds the fp16/bf16 IC = 8192 erratum too.
    DPUEMU_RETURN_IF_ERROR(CheckInputSeSize(t, o.input_se_size, op.in_dtype, g.c,
                                            o.input_sparse && !o.se.used(), "input se_size"));
    if (g.c % o.input_se_size != 0) {
      return InvalidArgument("input se_size = " + Str(o.input_se_size) + ": must divide C = " +
                             Str(g.c));
    }
  }
  if (o.output_se_size != 0) {
    DPUEMU_RETURN_IF_ERROR(CheckSeSize(t, o.output_se_size, "output se_size"));
  }
  DPUEMU_RETURN_IF_ERROR(CheckPlanSe(g, o, t));
  // IC beyond one invocation needs partial sums added across invocations, which no dpuemu
  // operation does (the compiler tiles IC and adds the results).
  if (g.c > kMaxInvocationChannels) {
    return InvalidArgument("c (input channels) = " + Str(g.c) + ": one DPU invocation reads at "
                           "most " + Str(kMaxInvocationChannels) + " (VPU_DIMENSION_LIMIT); the "
                           "compiler splits IC and adds the partial sums, which dpuemu does not "
                           "emulate");
  }

  Plan plan;
  plan.layer = name;
  plan.target = &t;
  plan.op = op;
  plan.options = o;
  plan.input_se_size = o.se.used()            ? o.se.se_size
                       : o.input_se_size != 0 ? o.input_se_size
                       // the compressed convolution reads its input dense, 4 channels per pixel
                       : IsCompressedConv(op) ? kCompressedInputChannels
                                              : DefaultSeSize(t, g.c, op.in_dtype);
  DPUEMU_ASSIGN_OR_RETURN(plan.weights, DecideWeightSparsity(op, weights, t, o.heuristic));
  if (input != nullptr && o.input_sparse) {
    int64_t zeros = 0;
    for (int64_t i = 0; i < input->numel(); ++i) {
      zeros += IsZeroPoint(input->dtype, input->bytes.data(), i, op.in_zp);
    }
    plan.input_sparsity = static_cast<double>(zeros) / static_cast<double>(input->numel());
  }

  const Planner planner(op, t, o, plan.weights, plan.input_sparsity);
  const int n = o.tiles != 0 ? o.tiles : t.tiles;
  auto build = [&](Candidate c) {
    if (c.why_not.empty()) planner.Build(&c);
    return c;
  };
  auto make = [&](SplitStrategy s, SplitRule r, int tiles) {
    Candidate c = s == SplitStrategy::kClustering ? Clustering(g, tiles)
                  : s == SplitStrategy::kSok      ? SplitOverK(g, t, tiles, o.output_sparse, r)
                                                  : SplitOverH(g, t, tiles, o.input_sparse || o.se.used(),
                                               o.se.used() ? o.se.source_h : g.h);
    c.rule = r;
    if (s == SplitStrategy::kSok && op.kind == NceKind::kEltwise) {
      c.why_not = "eltwise splits over H or clusters, not over K (NCEEltwiseOp::"
                  "checkStrategyCompatibility, nce_eltwise.cpp; NPU40XX: \"HW Eltwise does not "
                  "support workload segmentation over K\", compute_nce_ops_input_workload.cpp)";
    }
    return build(std::move(c));
  };
  // One strategy under split_rule: with sparse output and auto, the cheaper legal tiling of the
  // seed's and the compiler's, the other named in the reason.
  auto pick = [&](SplitStrategy s, int tiles) {
    if (!o.output_sparse) {
      Candidate c = make(s, SplitRule::kCompiler, tiles);
      c.rule_reason = "dense output: the compiler's segments (no sparse-output rule applies)";
      return c;
    }
    if (o.split_rule != SplitRule::kAuto) {
      Candidate c = make(s, o.split_rule, tiles);
      c.rule_reason = std::string("split_rule ") + SplitRuleName(o.split_rule) + " (forced): " +
                      c.Tiling();
      return c;
    }
    Candidate seed = make(s, SplitRule::kSeed, tiles);
    Candidate comp = make(s, SplitRule::kCompiler, tiles);
    auto viable = [](const Candidate& c) { return c.why_not.empty() && c.cmx_problem.empty(); };
    auto lost = [](const Candidate& c) {
      return std::string(SplitRuleName(c.rule)) + "'s " +
             (!c.why_not.empty()       ? "not possible: " + c.why_not
              : !c.cmx_problem.empty() ? "does not fit: " + c.cmx_problem
                                       : c.Tiling());
    };
    // A compiler tiling that drops the requested output sparsity only wins when the seed's
    // tiling is not possible: auto keeps the storage the user asked for.
    const bool take_comp =
        viable(comp) && (!viable(seed) || (!comp.output_dense &&
                                           (comp.cycles < seed.cycles ||
                                            (comp.cycles == seed.cycles &&
                                             comp.cmx_total <= seed.cmx_total))));
    const bool take_seed = !take_comp && (viable(seed) || comp.why_not.size() > 0);
    Candidate& won = take_seed ? seed : comp;
    const Candidate& other = take_seed ? comp : seed;
    won.rule_reason = std::string("split_rule auto: ") + SplitRuleName(won.rule) + "'s " +
                      won.Tiling() + (viable(won) && viable(other) ? " beats " : "; ") +
                      lost(other);
    return won;
  };
  Candidate chosen;
  std::string others;  // why the candidates not chosen lost
  const std::string target = std::string(" on ") + t.name;
  if (o.split != SplitStrategy::kAuto) {
    chosen = pick(o.split, n);
    plan.split_reason =
        o.split == SplitStrategy::kClustering
            ? "clustering (forced): each of the " + Tiles(n) + " computes the whole layer"
            : "forced: " + chosen.Summary();
  } else if (n == 1) {
    chosen = pick(SplitStrategy::kClustering, 1);
    plan.split_reason = "1 tile: the whole layer runs on tile 0";
  } else {
    std::vector<Candidate> cands = {pick(SplitStrategy::kSok, n), pick(SplitStrategy::kSoh, n)};
    const Candidate* best = nullptr;
    for (const Candidate& c : cands) {
      if (!c.why_not.empty() || !c.cmx_problem.empty()) continue;
      if (best == nullptr || c.cycles < best->cycles ||
          (c.cycles == best->cycles && c.cmx_total < best->cmx_total)) {
        best = &c;
      }
    }
    bool any_rule_ok = false;
    for (const Candidate& c : cands) {
      any_rule_ok |= c.why_not.empty();
      if (&c == best) continue;
      if (!c.why_not.empty()) {
        others += std::string("; ") + SplitStrategyName(c.split) + " not possible: " + c.why_not;
      } else if (!c.cmx_problem.empty()) {
        others += "; does not fit: " + c.cmx_problem;
      } else {
        others += "; beats " + c.Summary();  // a viable loser: `best` is set
      }
    }
    if (best != nullptr) {
      chosen = *best;
      plan.split_reason = "auto: " + best->Summary() + others + "; K=" + Str(g.k) +
                          " output channels vs " + Str(g.out_h()) + "x" + Str(g.out_w()) +
                          " output pixels";
    } else if (any_rule_ok) {
      return OutOfRange("cmx: no split of the layer fits" + target + others);
    } else {
      chosen = pick(SplitStrategy::kClustering, 1);
      plan.split_reason = "auto: clustering on tile 0 (fallback)" + others;
    }
  }
  if (!chosen.why_not.empty()) {
    return InvalidArgument(std::string("split = ") + SplitStrategyName(chosen.split) + target +
                           ": " + chosen.why_not + others);
  }
  if (!chosen.cmx_problem.empty()) return OutOfRange("cmx: " + chosen.cmx_problem + others);

  plan.split = chosen.split;
  plan.tiles_used = static_cast<int>(chosen.ranges.size());
  plan.k_padded = chosen.k_padded;
  plan.notes = std::move(chosen.notes);
  plan.split_rule = chosen.rule;
  plan.split_rule_reason = chosen.rule_reason;
  if (chosen.output_dense) plan.options.output_sparse = false;  // the note says why
  // Limits of one DPU invocation the runtime lowers (ValidateInvocation), shown in the plan.
  if (chosen.k_padded > kMaxInvocationChannels) {
    plan.notes.push_back("K=" + Str(chosen.k_padded) + " > " + Str(kMaxInvocationChannels) +
                         " (VPU_DIMENSION_LIMIT): a tile's channels run as invocations of at "
                         "most " + Str(kMaxInvocationChannels) + " (ensure_nce_ops_size_requirements.cpp)");
  }
  if (g.pad_top > g.ky / 2 || g.pad_bottom > g.ky / 2 || g.pad_left > g.kx / 2 ||
      g.pad_right > g.kx / 2) {
    plan.notes.push_back("pad " + Str(g.pad_top) + "/" + Str(g.pad_bottom) + "/" +
                         Str(g.pad_left) + "/" + Str(g.pad_right) + " exceeds kernel / 2 = " +
                         Str(g.ky / 2) + "/" + Str(g.kx / 2) + " (verifyPads): the DPU pads " +
                         "kernel / 2 and reads the excess as constant padding through an SE "
                         "pointer table (handle_large_pads.cpp moves it into the input)");
  }
  plan.tiles = std::move(chosen.tiles);
  plan.workloads = std::move(chosen.workloads);
  plan.cycles = chosen.cycles;
  // A channel-wise kind's workload reads only its own channels, so its input SE size must divide
  // them (e.g. dwconv's 16/32/64-channel workloads): the default then fits every workload.
  if (IsChannelwise(op.kind) && !o.se.used() && o.input_se_size == 0) {
    int64_t channels = g.c;
    for (const Workload& w : plan.workloads) channels = std::gcd(channels, w.k_end - w.k_begin);
    plan.input_se_size = DefaultSeSize(t, channels, op.in_dtype);
  }
  return plan;
}

// The cost heuristic plans the layer with dense and with sparse weights and keeps the plan whose
// slowest tile the cost model says is faster (a tie keeps dense: no map to write); the other
// heuristics plan once.
StatusOr<Plan> PlanImpl(const NceOp& op, const Tensor& weights, const Tensor* input,
                        const Target& t, const PlanOptions& o, const std::string& name) {
  if (o.heuristic != WeightHeuristic::kCost || op.kind != NceKind::kConv) {
    return PlanOnce(op, weights, input, t, o, name);
  }
  PlanOptions dense_o = o, sparse_o = o;
  dense_o.heuristic = WeightHeuristic::kDense;
  sparse_o.heuristic = WeightHeuristic::kSparse;
  StatusOr<Plan> dense = PlanOnce(op, weights, input, t, dense_o, name);
  // Sparse weights past a precondition (CanSparsifyWeights) or out of CMX: the cost
  // heuristic's own reason (DecideWeightSparsity) or the dense plan.
  StatusOr<Plan> sparse = PlanOnce(op, weights, input, t, sparse_o, name);
  if (!sparse.ok() || !dense.ok()) {
    StatusOr<Plan> p = PlanOnce(op, weights, input, t, o, name);
    if (!p.ok()) return p;
    if (!dense.ok() && sparse.ok()) {
      p = std::move(sparse);
      p->weights.reason = "cost: dense weights do not plan (" + dense.status().message() +
                          "): sparse";
    } else if (!sparse.ok() && dense.ok() && p->weights.sparse) {
      p = std::move(dense);
      p->weights.reason = "cost: sparse weights do not plan (" + sparse.status().message() +
                          "): dense";
    }
    p->weights.heuristic = WeightHeuristic::kCost;
    p->options.heuristic = WeightHeuristic::kCost;
    return p;
  }
  const bool use_sparse = sparse->cycles < dense->cycles;
  Plan p = use_sparse ? std::move(sparse).value() : std::move(dense).value();
  const int64_t sc = use_sparse ? p.cycles : sparse->cycles;
  const int64_t dc = use_sparse ? dense->cycles : p.cycles;
  p.weights.heuristic = WeightHeuristic::kCost;
  p.options.heuristic = WeightHeuristic::kCost;
  p.weights.reason = CostReason("the slowest tile", sc, dc, p.weights.traffic.sparse_bytes,
                                p.weights.traffic.dense_bytes);
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names

const char* WeightHeuristicName(WeightHeuristic h) {
  switch (h) {
    case WeightHeuristic::kSas: return "sas";
    case WeightHeuristic::kRatio: return "ratio";
    case WeightHeuristic::kCmx: return "cmx";
    case WeightHeuristic::kDense: return "dense";
    case WeightHeuristic::kSparse: return "sparse";
    case WeightHeuristic::kCost: return "cost";
  }
  return "?";
}

StatusOr<WeightHeuristic> ParseWeightHeuristic(const std::string& name) {
  for (WeightHeuristic h : {WeightHeuristic::kSas, WeightHeuristic::kRatio, WeightHeuristic::kCmx,
                            WeightHeuristic::kDense, WeightHeuristic::kSparse,
                            WeightHeuristic::kCost}) {
    if (name == WeightHeuristicName(h)) return h;
  }
  return InvalidArgument("heuristic: unknown weight-sparsity heuristic '" + name +
                         "' (expected sas, ratio, cmx, cost, dense or sparse)");
}

const char* SplitStrategyName(SplitStrategy s) {
  switch (s) {
    case SplitStrategy::kAuto: return "auto";
    case SplitStrategy::kClustering: return "clustering";
    case SplitStrategy::kSok: return "SOK";
    case SplitStrategy::kSoh: return "SOH";
  }
  return "?";
}

StatusOr<SplitStrategy> ParseSplitStrategy(const std::string& name) {
  std::string lower = name;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (SplitStrategy s : {SplitStrategy::kAuto, SplitStrategy::kClustering, SplitStrategy::kSok,
                          SplitStrategy::kSoh}) {
    std::string n = SplitStrategyName(s);
    for (char& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == n) return s;
  }
  return InvalidArgument("split: unknown split '" + name +
                         "' (expected auto, clustering, sok or soh)");
}

const char* SplitRuleName(SplitRule r) {
  switch (r) {
    case SplitRule::kAuto: return "auto";
    case SplitRule::kSeed: return "seed";
    case SplitRule::kCompiler: return "compiler";
  }
  return "?";
}

StatusOr<SplitRule> ParseSplitRule(const std::string& name) {
  for (SplitRule r : {SplitRule::kAuto, SplitRule::kSeed, SplitRule::kCompiler}) {
    if (name == SplitRuleName(r)) return r;
  }
  return InvalidArgument("split_rule: unknown rule '" + name + "' (expected auto, seed or compiler)");
}

StatusOr<std::vector<int64_t>> SegmentSizes(int64_t size, int64_t clusters, int64_t alignment,
                                            bool uniform) {
  if (size < 1 || clusters < 1 || alignment < 1) {
    return InvalidArgument("segments: size " + Str(size) + ", clusters " + Str(clusters) +
                           ", alignment " + Str(alignment) + ": all must be >= 1");
  }
  const std::string what = Str(size) + " over " + Str(clusters) + " clusters (alignment " +
                           Str(alignment) + ", " + (uniform ? "uniform" : "first equal") + ")";
  std::vector<int64_t> seg;
  if (!uniform) {
    const int64_t per = AlignUp(CeilDiv(size, clusters), alignment);
    const int64_t last = size - per * (clusters - 1);
    if (last <= 0) {
      return InvalidArgument("segments: " + what + ": " + Str(clusters - 1) + " x " + Str(per) +
                             " leave nothing for the last (splitSegmentedShape)");
    }
    seg.assign(static_cast<size_t>(clusters - 1), per);
    seg.push_back(last);
    return seg;
  }
  const int64_t base = size / clusters / alignment * alignment;
  const int64_t rest = size - base * clusters;
  if (base <= 0 || rest % alignment != 0) {
    return InvalidArgument("segments: " + what + ": no aligned uniform split (splitSegmentedShape)");
  }
  for (int64_t i = 0; i < clusters; ++i) seg.push_back(base + (i < rest / alignment ? alignment : 0));
  return seg;
}

int64_t SokClusters(int64_t k, int64_t n, bool uniform) {
  for (int64_t c = n; c >= 1; --c) {
    if (uniform ? (k / c / 16 * 16 > 0 && (k - k / c / 16 * 16 * c) % 16 == 0)
                : k - (c - 1) * AlignUp(CeilDiv(k, c), 16) > 0) {
      return c;
    }
  }
  return 1;
}

namespace {
// SparsityConstraint::areChannelsFitForSESize (NPU37XX / NPU40XX impl/sparsity_constraint.cpp).
bool FitsSe(const Target& t, int64_t c) {
  return c >= 16 && c <= 8192 && c % 16 == 0 && (!t.se_size_power_of_two || (c & (c - 1)) == 0);
}
}  // namespace

StatusOr<std::vector<std::vector<int64_t>>> DepthwiseWorkloadChannels(
    const std::vector<int64_t>& cluster_k, bool sparse_output) {
  std::vector<int64_t> supported = {64, 32, 16};  // supportedChannelsDW
  auto has = [](const std::vector<int64_t>& v, int64_t c) {
    return std::find(v.begin(), v.end(), c) != v.end();
  };
  if (sparse_output && !cluster_k.empty()) {  // getSupportedChannels' output-sparsity filter
    std::vector<int64_t> kept;
    for (int64_t c : supported) {
      bool divides = true;
      for (size_t i = 0; divides && i + 1 < cluster_k.size(); ++i) divides = cluster_k[i] % c == 0;
      if (divides) kept.push_back(c);
    }
    const int64_t last = cluster_k.back();
    if (!has(kept, last)) {
      std::vector<int64_t> fit;
      for (int64_t c : kept) {
        if (last % c == 0 || has(kept, last % c)) fit.push_back(c);
      }
      kept = fit;
    }
    supported = kept;
  }
  std::vector<std::vector<int64_t>> out;
  for (int64_t c : cluster_k) {
    std::vector<int64_t> pieces;
    int64_t rest = c;
    if (has(supported, c)) {
      pieces.push_back(c);
      rest = 0;
    }
    for (int64_t sc : supported) {  // splitWorkloadChannel: largest first
      while (rest >= sc) {
        pieces.push_back(sc);
        rest -= sc;
      }
    }
    if (rest != 0) {
      return InvalidArgument("dwconv: " + Str(c) + " channels on a tile cannot be split into " +
                             "depthwise workloads of " + List(supported) + " channels " +
                             "(supportedChannelsDW, workload_splitter_base.cpp)");
    }
    out.push_back(pieces);
  }
  return out;
}

StatusOr<std::vector<std::vector<int64_t>>> SparseOutputWorkloadChannels(
    const std::vector<int64_t>& cluster_k, const Target& t) {
  std::vector<std::vector<int64_t>> out;
  if (cluster_k.empty()) return out;
  bool valid = true;  // findInvalidSparseOps
  for (int64_t c : cluster_k) valid &= c == cluster_k[0] && FitsSe(t, c);
  if (valid) {
    for (int64_t c : cluster_k) out.push_back({c});
    return out;
  }
  // getSupportedChannels: SE-fitting sizes, largest first, dividing every workload's channels
  // but the last's; the last's must be a supported size or one plus a supported remainder.
  std::vector<int64_t> supported;
  for (int64_t c = 8192; c >= 16; c -= 16) {
    bool divides = FitsSe(t, c);
    for (size_t i = 0; divides && i + 1 < cluster_k.size(); ++i) divides = cluster_k[i] % c == 0;
    if (divides) supported.push_back(c);
  }
  const int64_t last = cluster_k.back();
  auto has = [](const std::vector<int64_t>& v, int64_t c) {
    return std::find(v.begin(), v.end(), c) != v.end();
  };
  if (!has(supported, last)) {
    const std::vector<int64_t> before = supported;
    supported.clear();
    for (int64_t c : before) {
      if (last % c == 0 || has(before, last % c)) supported.push_back(c);
    }
  }
  for (int64_t c : cluster_k) {
    std::vector<int64_t> pieces;  // splitWorkloadChannel (VPUIP/interfaces/dpu_tiler.cpp)
    int64_t rest = c;
    if (has(supported, c)) {
      pieces.push_back(c);
      rest = 0;
    }
    for (int64_t sc : supported) {
      while (rest >= sc) {
        pieces.push_back(sc);
        rest -= sc;
      }
    }
    if (rest != 0) {
      return InvalidArgument(std::string("sparse output on ") + t.name + ": " + Str(c) +
                             " channels cannot be split into supported workload sizes " +
                             "(correct_nce_workloads.cpp splitWorkloadChannel)");
    }
    out.push_back(pieces);
  }
  return out;
}

const char* MpeModeName(MpeMode m) {
  switch (m) {
    case MpeMode::kCuboid16x16: return "CUBOID_16x16";
    case MpeMode::kCuboid8x16: return "CUBOID_8x16";
    case MpeMode::kCuboid4x16: return "CUBOID_4x16";
  }
  return "?";
}

namespace {
// getMpeModeForConv's read cost of one mode (nce_op_interfaces.cpp).
int64_t MpeCost(const Grain& gr, int64_t rows, int64_t cols, int64_t channels) {
  return CeilDiv(channels, gr.k) * rows * cols + CeilDiv(rows, gr.h) * CeilDiv(cols, gr.w) * channels;
}
}  // namespace

MpeMode MpeModeForConv(int64_t rows, int64_t cols, int64_t channels) {
  // kGrains is in MPEMode order (16x16, 8x16, 4x16): a strict < keeps the lower mode on ties.
  const Grain* best = &kGrains[0];
  for (const Grain& gr : kGrains) {
    if (MpeCost(gr, rows, cols, channels) < MpeCost(*best, rows, cols, channels)) best = &gr;
  }
  return best->mode;
}

std::string MpeModeReason(int64_t rows, int64_t cols, int64_t channels) {
  std::string s = "getMpeModeForConv " + Str(rows) + "x" + Str(cols) + "x" + Str(channels) +
                  " (reads ceil(K/gk)*H*W + ceil(H/gh)*ceil(W/gw)*K):";
  for (const Grain& gr : kGrains) {
    s += std::string(" ") + (MpeModeName(gr.mode) + 7) + " " +
         Commas(MpeCost(gr, rows, cols, channels));
  }
  return s + " -> " + MpeModeName(MpeModeForConv(rows, cols, channels));
}

// ---------------------------------------------------------------------------------------------
// Weight sparsity

double WeightTraffic::sparsity() const {
  return elements == 0 ? 0.0 : 1.0 - static_cast<double>(nonzeros) / static_cast<double>(elements);
}

double WeightTraffic::effective_sparsity() const {
  return dense_weight_bytes == 0 ? 0.0
                                 : 1.0 - static_cast<double>(sparse_data_bytes) /
                                             static_cast<double>(dense_weight_bytes);
}

int64_t CmxHeuristicBytes(const Target& target) {
  // getTotalCMXSize (VPU/IR/attributes.cpp): the workspace minus two profiling buffers of
  // HW_DMA (512) + HW_DPU (1024) + HW_ACT_SHAVE (256) bytes (VPUIP/utils/utils.hpp).
  return target.cmx_bytes_per_tile - 2 * (512 + 1024 + 256);
}

StatusOr<WeightDecision> DecideWeightSparsity(const NceOp& op, const Tensor& weights,
                                              const Target& target, WeightHeuristic heuristic) {
  DPUEMU_RETURN_IF_ERROR(ValidateOp(op));
  DPUEMU_RETURN_IF_ERROR(CheckWeights(op, weights));
  const NceGeometry& g = op.g;
  WeightDecision d;
  d.heuristic = heuristic;
  WeightTraffic& tr = d.traffic;
  if (op.kind != NceKind::kConv) {
    // Only ZMConv reads compressed weights (SupportedSparsity): the others have dense weights
    // or none; forcing sparse is an error naming the compiler's rule.
    const SparsitySupport sup = SupportedSparsity(op, target);
    if (heuristic == WeightHeuristic::kSparse) {
      return InvalidArgument("sparsity.weights = sparse: " + std::string(NceKindName(op.kind)) +
                             " " + sup.rule);
    }
    d.sparse = false;
    if (!HasWeights(op.kind)) {
      d.reason = std::string(NceKindName(op.kind)) + " has no weights";
      return d;
    }
    NceGeometry sub = g;
    sub.c = 1;
    tr.elements = g.k * op.weight_taps();
    tr.dense_weight_bytes = DenseWeightBytes(sub, op.w_dtype);
    tr.table_bytes = WeightTableBytes(g);
    tr.dense_bytes = tr.dense_weight_bytes + tr.table_bytes;
    for (int64_t k = 0; k < g.k; ++k) {
      int64_t nnz = 0;
      for (int64_t t = 0; t < op.weight_taps(); ++t) {
        nnz += !IsWeightZero(op.w_dtype, weights.bytes.data(), k * op.weight_taps() + t, op.w_zp);
      }
      d.nonzeros.push_back(nnz);
      tr.nonzeros += nnz;
    }
    tr.sparse_data_bytes = tr.dense_weight_bytes;
    tr.sparse_bytes = tr.dense_bytes;
    d.reason = std::string(NceKindName(op.kind)) + ": dense (" + sup.rule + ")";
    return d;
  }
  tr.elements = g.k * g.taps();
  tr.dense_weight_bytes = DenseWeightBytes(g, op.w_dtype);
  tr.map_bytes = WeightMapBytes(g);
  tr.table_bytes = WeightTableBytes(g);
  if (IsSubByte(op.w_dtype)) {
    // No compressed form (CanSparsifyWeights below keeps them dense): the non-zeros counted.
    for (int64_t k = 0; k < g.k; ++k) {
      int64_t nnz = 0;
      for (int64_t t = 0; t < g.taps(); ++t) {
        nnz += LoadInt(op.w_dtype, weights.bytes.data(), k * g.taps() + t) != op.w_zp;
      }
      d.nonzeros.push_back(nnz);
      tr.nonzeros += nnz;
    }
    tr.sparse_data_bytes = tr.dense_weight_bytes;
  } else {
    CompressedWeights cw;
    DPUEMU_ASSIGN_OR_RETURN(cw, CompressWeights(weights, op.w_zp));
    for (int64_t nnz : cw.nonzeros) tr.nonzeros += nnz;
    tr.sparse_data_bytes = static_cast<int64_t>(cw.data.size());  // channels 16-byte aligned
    d.nonzeros = std::move(cw.nonzeros);
  }
  tr.dense_bytes = tr.dense_weight_bytes + tr.table_bytes;
  tr.sparse_bytes = tr.sparse_data_bytes + tr.map_bytes + tr.table_bytes;

  const std::string name = WeightHeuristicName(heuristic);
  const int64_t eb = DTypeBytes(op.w_dtype);
  const int64_t zeros = tr.elements - tr.nonzeros;
  const int64_t dw = tr.dense_weight_bytes;
  const int64_t saved_data = dw - tr.sparse_data_bytes;  // effective sparsity * dw
  const std::string traffic = "sparse " + Commas(tr.sparse_bytes) + " vs dense " +
                              Commas(tr.dense_bytes) + " bytes";
  const std::string saves = "sparse saves " + Commas(tr.dense_bytes - tr.sparse_bytes) + " of " +
                            Commas(tr.dense_bytes) + " bytes";
  auto decide = [&](bool sparse, const std::string& reason) {
    d.sparse = sparse;
    d.reason = reason;
    return d;
  };

  // The compiler's preconditions (sub-8-bit, IC > 8192, an all-zero set: CanSparsifyWeights)
  // hold for every heuristic; forcing sparse weights past one is an error naming it.
  if (const Status can = CanSparsifyWeights(op.w_dtype, g.c, tr.nonzeros);
      !can.ok() && heuristic != WeightHeuristic::kDense) {
    if (heuristic == WeightHeuristic::kSparse) {
      return InvalidArgument("sparsity.weights = sparse: " + can.message());
    }
    return decide(false, name + ": " + can.message().substr(std::string("weights: ").size()) +
                             ": dense");
  }
  if (heuristic == WeightHeuristic::kDense) return decide(false, "dense (forced): " + traffic);
  if (heuristic == WeightHeuristic::kSparse) return decide(true, "sparse (forced): " + traffic);
  const std::string sparsity = "sparsity " + Pct(tr.sparsity());
  const std::string effective = "effective (16-byte aligned) sparsity " +
                                Pct(tr.effective_sparsity());
  switch (heuristic) {
    case WeightHeuristic::kSas: {
      // Break-even: the map costs 1 bit per weight, 1 / (8 * bytes) of the dense size.
      const std::string be = Pct(1.0 / (8.0 * eb)) + " break-even for " + Str(8 * eb) +
                             "-bit weights";
      if (g.k < 64) {
        return decide(false, "sas: K=" + Str(g.k) + " < 64 output channels: dense (the " +
                                 "sparsity map would fill few 16-byte writes)");
      }
      if (zeros * 8 * eb < tr.elements) {
        return decide(false, "sas: " + sparsity + " < " + be + ": dense");
      }
      if (tr.sparse_bytes >= tr.dense_bytes) {
        return decide(false, "sas: " + sparsity + " >= " + be + ", but at 16-byte granularity " +
                                 traffic + ": dense");
      }
      return decide(true, "sas: " + sparsity + " >= " + Pct(1.0 / (8.0 * eb)) +
                              " break-even and K=" + Str(g.k) + " >= 64: " + saves);
    }
    case WeightHeuristic::kRatio: {
      const bool integer = IsIntegerPath(op);
      const int64_t inv = integer ? 8 : 16;  // thresholds 1/8 and 1/16
      const std::string thr = Pct(1.0 / inv) + (integer ? " for integer" : " for float") +
                              " weights";
      const std::string src = " [sparsity_strategy.cpp RatioBasedWeightsSparsityStrategy]";
      if (saved_data * inv >= dw) {
        return decide(true, "ratio: " + effective + " >= " + thr + ": sparse (" + traffic + ")" +
                                src);
      }
      return decide(false,
                    "ratio: " + effective + " < " + thr + ": dense (" + traffic + ")" + src);
    }
    case WeightHeuristic::kCmx: {
      // The compiler's CMXConsumptionBasedWeightsSparsityStrategy (VPU/utils/strategy_manager/
      // sparsity_strategy.cpp): intervals keyed 0, 0.05, 0.5, 1.0; the dense weight bytes' share
      // r of getTotalCMXSize picks lower_bound(r) then one step back, so (0, 5%] -> never,
      // (5%, 50%] -> >= 30%, (50%, 100%] -> >= 20%, above 100% -> never.
      const int64_t cmx = CmxHeuristicBytes(target);
      const std::string share = "weights are " + Pct(static_cast<double>(dw) / cmx) + " of the " +
                                Commas(cmx) + "-byte CMX (getTotalCMXSize)";
      const std::string src = " [sparsity_strategy.cpp CMXConsumptionBasedWeightsSparsityStrategy]";
      if (dw * 20 <= cmx) {
        return decide(false, "cmx: " + share + " (<= 5%): never sparsified" + src);
      }
      if (dw > cmx) {
        return decide(false, "cmx: " + share + " (> 100%): never sparsified" + src);
      }
      const bool large = dw * 2 > cmx;
      const int64_t need_tenths = large ? 2 : 3;  // 20% or 30%
      const std::string band = large ? " (50-100%]" : " (5-50%]";
      const std::string thr = "the " + Str(need_tenths * 10) + "% required";
      // isgreaterequal(actualSparsityRatio, threshold) in double, as the compiler compares.
      const double ratio = 1.0 - static_cast<double>(tr.sparse_data_bytes) / static_cast<double>(dw);
      if (std::isgreaterequal(ratio, need_tenths / 10.0)) {
        return decide(true, "cmx: " + share + band + ", " + effective + " >= " + thr +
                                ": sparse (" + traffic + ")" + src);
      }
      return decide(false, "cmx: " + share + band + ", " + effective + " < " + thr +
                               ": dense (" + traffic + ")" + src);
    }
    case WeightHeuristic::kCost: {
      // Without a plan: the whole layer as one workload on one tile (PlanLayer/PlanOp compare
      // the slowest tiles of the two plans instead).
      const MpeMode mode = MpeModeForConv(g.out_h(), g.out_w(), g.k);
      CostWorkload w;
      w.kind = op.kind;
      w.in_dtype = op.in_dtype;
      w.w_dtype = op.w_dtype;
      w.out_dtype = op.out_dtype;
      w.rows = g.out_h();
      w.cols = g.out_w();
      w.channels = g.k;
      w.grid_w = GrainOf(mode).w;
      w.grid_h = GrainOf(mode).h;
      w.taps = op.taps_per_output();
      w.weight_density = 1.0 - tr.sparsity();
      w.input_bytes = g.h * g.w * g.c * DTypeBytes(op.in_dtype);
      w.output_bytes = g.out_h() * g.out_w() * g.k * DTypeBytes(op.out_dtype);
      w.weight_bytes = tr.dense_bytes;
      const WorkloadCostTerms dense = WorkloadCost(w, target);
      w.weight_sparse = true;
      w.weight_bytes = tr.sparse_bytes;
      const WorkloadCostTerms sparse = WorkloadCost(w, target);
      return decide(sparse.cycles < dense.cycles,
                    CostReason("the layer as one workload", sparse.cycles, dense.cycles,
                               tr.sparse_bytes, tr.dense_bytes));
    }
    default:
      break;
  }
  return Internal("weights: unhandled heuristic " + name);
}

// ---------------------------------------------------------------------------------------------
// Plans

double Plan::time_us() const {
  return target == nullptr ? 0.0 : static_cast<double>(cycles) / target->clock_mhz;
}

StatusOr<Plan> PlanLayer(const NceLayer& layer, const Target& target, const PlanOptions& options) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  return PlanImpl(layer.op, layer.weights, &layer.input, target, options, layer.name);
}

StatusOr<Plan> PlanOp(const NceOp& op, const Tensor& weights, const Target& target,
                      const PlanOptions& options, const std::string& name) {
  return PlanImpl(op, weights, nullptr, target, options, name);
}

StorageOptions TileStorage(const Plan& plan, const TilePlan& tile) {
  StorageOptions s;
  s.weights_sparse = plan.weights.sparse;
  s.input_sparse = plan.options.input_sparse;
  s.input_se_size = plan.input_se_size;
  s.output_sparse = plan.options.output_sparse;
  s.output_se_size = tile.output_se_size;
  return s;
}

std::string PlanToText(const Plan& p, bool explain) {
  if (p.target == nullptr) return "empty plan (no target)\n";
  const NceGeometry& g = p.op.g;
  std::string s = "plan for layer '" + p.layer + "' on " + p.target->name + " (" +
                  p.target->generation + ")\n";
  s += "  conv " + GeometryText(p.op) + "\n";
  const WeightTraffic& tr = p.weights.traffic;
  s += std::string("  weights: ") + (p.weights.sparse ? "sparse" : "dense") + " - " +
       p.weights.reason + "\n";
  s += "    traffic: dense " + Commas(tr.dense_bytes) + " bytes (weights " +
       Commas(tr.dense_weight_bytes) + " + table " + Commas(tr.table_bytes) + "), sparse " +
       Commas(tr.sparse_bytes) + " bytes (data " + Commas(tr.sparse_data_bytes) + " + map " +
       Commas(tr.map_bytes) + " + table " + Commas(tr.table_bytes) + "); sparsity " +
       Pct(tr.sparsity()) + ", effective " + Pct(tr.effective_sparsity()) + "\n";
  s += std::string("  activations: input ") + (p.options.input_sparse ? "sparse" : "dense") +
       " (se_size " + Str(p.input_se_size) + (p.options.input_sparse ? ", measured sparsity " +
       Pct(p.input_sparsity) : std::string()) + "), output " +
       (p.options.output_sparse ? "sparse" : "dense") + "\n";
  const PlanSe& se = p.options.se;
  if (se.used()) {
    // Descriptions usually start with the op's name ("upsample_nearest fy=2 ...").
    const bool named = se.description.rfind(se.op, 0) == 0;
    s += "  se: " + (named ? se.description : se.op + ": " + se.description) +
         "\n    SE table " + Commas(se.table_bytes) + " bytes (" + Commas(se.table_bytes / 4) +
         " pointers x 4) + input map " + Commas(se.map_bytes) + " bytes over the virtual input " +
         Str(g.h) + "x" + Str(g.w) + "x" + Str(g.c) + " (source " + Str(se.source_h) + "x" +
         Str(se.source_w) + "x" + Str(g.c) +
         "), held in CMX beside the source rows each tile reads\n";
  }
  s += std::string("  split: ") + SplitStrategyName(p.split) + " over " + Str(p.tiles_used) +
       " tiles, K=" + Str(g.k) + (p.k_padded != g.k ? " padded to " + Str(p.k_padded) : "") +
       "\n    " + p.split_reason + "\n";
  s += std::string("    rule: ") + SplitRuleName(p.split_rule) + " - " + p.split_rule_reason + "\n";
  for (const std::string& note : p.notes) s += "  note: " + note + "\n";
  for (const TilePlan& t : p.tiles) {
    s += "  tile " + Str(t.tile) + ": k " + Range(t.k_begin, t.k_end) + ", rows " +
         Range(t.row_begin, t.row_end) + ", input rows " + Range(t.in_row_begin, t.in_row_end) +
         (t.in_seg_end > t.in_seg_begin ? " (segment " + Range(t.in_seg_begin, t.in_seg_end) + ")"
                                        : std::string()) +
         ", CMX " + Commas(t.cmx_bytes()) + " bytes (input " + Commas(t.input_bytes) +
         (se.used() ? " + SE table " + Commas(t.se_table_bytes) + " + map " +
                          Commas(t.input_map_bytes)
                    : std::string()) +
         " + weights " + Commas(t.weight_bytes) + " + output " + Commas(t.output_bytes) + "), " +
         Commas(t.cycles) + " cycles\n";
    s += "    mpe: " + t.mpe_reason + "\n";
    for (const Workload& w : p.workloads) {
      if (w.tile != t.tile) continue;
      char util[16];
      std::snprintf(util, sizeof(util), "%.0f%%", w.utilisation * 100);
      s += std::string("    ") + MpeModeName(w.mpe_mode) + " k " + Range(w.k_begin, w.k_end) +
           " rows " + Range(w.row_begin, w.row_end) + " cols " + Range(w.col_begin, w.col_end) +
           ", input rows " + Range(w.in_row_begin, w.in_row_end) + " cols " +
           Range(w.in_col_begin, w.in_col_end) + ": " + Str(w.cuboids) + " cuboids (" + util +
           " used), " + Commas(w.cycles) + " cycles, bytes in " + Commas(w.input_bytes) +
           " / weights " + Commas(w.weight_bytes) + " / out " + Commas(w.output_bytes) + "\n";
      if (explain) s += "      cost: " + w.cost.ToString() + "\n";
    }
  }
  char time[32];
  std::snprintf(time, sizeof(time), "%.2f", p.time_us());
  s += "  estimate: " + Commas(p.cycles) + " cycles (slowest tile) = " + time + " us at " +
       Str(static_cast<int64_t>(p.target->clock_mhz)) + " MHz\n";
  return s;
}

nlohmann::json PlanToJson(const Plan& p) {
  using nlohmann::json;
  if (p.target == nullptr) return json::object();
  const NceGeometry& g = p.op.g;
  const WeightTraffic& tr = p.weights.traffic;
  json j;
  j["layer"] = p.layer;
  j["target"] = p.target->name;
  j["conv"] = {{"h", g.h},           {"w", g.w},
               {"c", g.c},           {"k", g.k},
               {"ky", g.ky},         {"kx", g.kx},
               {"stride_y", g.stride_y}, {"stride_x", g.stride_x},
               {"pad", {g.pad_top, g.pad_bottom, g.pad_left, g.pad_right}},
               {"out_h", g.out_h()}, {"out_w", g.out_w()},
               {"in_dtype", DTypeName(p.op.in_dtype)}, {"w_dtype", DTypeName(p.op.w_dtype)},
               {"out_dtype", DTypeName(p.op.out_dtype)}};
  j["heuristic"] = WeightHeuristicName(p.weights.heuristic);
  j["weights_sparse"] = p.weights.sparse;
  j["reason"] = p.weights.reason;
  j["traffic"] = {{"dense_bytes", tr.dense_bytes},
                  {"sparse_bytes", tr.sparse_bytes},
                  {"dense_weight_bytes", tr.dense_weight_bytes},
                  {"sparse_data_bytes", tr.sparse_data_bytes},
                  {"map_bytes", tr.map_bytes},
                  {"table_bytes", tr.table_bytes},
                  {"elements", tr.elements},
                  {"nonzeros", tr.nonzeros},
                  {"sparsity", tr.sparsity()},
                  {"effective_sparsity", tr.effective_sparsity()}};
  j["input_sparse"] = p.options.input_sparse;
  j["input_sparsity"] = p.input_sparsity;
  j["input_se_size"] = p.input_se_size;
  j["output_sparse"] = p.options.output_sparse;
  if (p.options.se.used()) {
    const PlanSe& se = p.options.se;
    j["se"] = {{"op", se.op},
               {"description", se.description},
               {"se_size", se.se_size},
               {"source", {se.source_h, se.source_w, g.c}},
               {"virtual", {g.h, g.w, g.c}},
               {"table_entries", se.table_bytes / 4},
               {"table_bytes", se.table_bytes},
               {"map_bytes", se.map_bytes}};
  }
  j["split"] = SplitStrategyName(p.split);
  j["split_reason"] = p.split_reason;
  j["split_rule"] = SplitRuleName(p.split_rule);
  j["split_rule_requested"] = SplitRuleName(p.options.split_rule);
  j["split_rule_reason"] = p.split_rule_reason;
  j["tiles_used"] = p.tiles_used;
  j["k"] = g.k;
  j["k_padded"] = p.k_padded;
  j["notes"] = p.notes;
  j["cycles"] = p.cycles;
  j["time_us"] = p.time_us();
  j["tiles"] = json::array();
  for (const TilePlan& t : p.tiles) {
    j["tiles"].push_back({{"tile", t.tile},
                          {"k_begin", t.k_begin},
                          {"k_end", t.k_end},
                          {"row_begin", t.row_begin},
                          {"row_end", t.row_end},
                          {"in_row_begin", t.in_row_begin},
                          {"in_row_end", t.in_row_end},
                          {"in_seg_begin", t.in_seg_begin},
                          {"in_seg_end", t.in_seg_end},
                          {"output_se_size", t.output_se_size},
                          {"input_bytes", t.input_bytes},
                          {"weight_bytes", t.weight_bytes},
                          {"output_bytes", t.output_bytes},
                          {"se_table_bytes", t.se_table_bytes},
                          {"input_map_bytes", t.input_map_bytes},
                          {"cmx_bytes", t.cmx_bytes()},
                          {"cycles", t.cycles},
                          {"mpe_mode", MpeModeName(t.mpe_mode)},
                          {"mpe_reason", t.mpe_reason}});
  }
  j["workloads"] = json::array();
  for (const Workload& w : p.workloads) {
    j["workloads"].push_back({{"tile", w.tile},
                              {"mpe_mode", MpeModeName(w.mpe_mode)},
                              {"k_begin", w.k_begin},
                              {"k_end", w.k_end},
                              {"row_begin", w.row_begin},
                              {"row_end", w.row_end},
                              {"col_begin", w.col_begin},
                              {"col_end", w.col_end},
                              {"in_row_begin", w.in_row_begin},
                              {"in_row_end", w.in_row_end},
                              {"in_col_begin", w.in_col_begin},
                              {"in_col_end", w.in_col_end},
                              {"cuboids", w.cuboids},
                              {"input_reads", w.input_reads},
                              {"utilisation", w.utilisation},
                              {"cycles", w.cycles},
                              {"input_bytes", w.input_bytes},
                              {"weight_bytes", w.weight_bytes},
                              {"output_bytes", w.output_bytes},
                              {"cost", w.cost.ToJson()}});
  }
  return j;
}

// ---------------------------------------------------------------------------------------------
// Slices

StatusOr<NceLayer> SliceLayer(const NceLayer& layer, int64_t k_begin, int64_t k_end,
                               int64_t out_row_begin, int64_t out_row_end) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  if (k_begin < 0 || k_begin >= g.k || k_end <= k_begin || k_begin % 16 != 0 ||
      k_end % 16 != 0) {
    return InvalidArgument("slice: channels " + Range(k_begin, k_end) +
                           ": need 0 <= k_begin < K = " + Str(g.k) +
                           ", k_begin < k_end, both multiples of 16");
  }
  if (out_row_begin < 0 || out_row_end > g.out_h() || out_row_begin >= out_row_end) {
    return InvalidArgument("slice: output rows " + Range(out_row_begin, out_row_end) +
                           ": must be a non-empty range inside [0, OH = " + Str(g.out_h()) + ")");
  }
  const Window win = InputWindow(out_row_begin, out_row_end, g.stride_y, g.ky, g.pad_top, g.h);
  if (win.empty()) {
    return InvalidArgument("slice: output rows " + Range(out_row_begin, out_row_end) +
                           " read only padding rows; a slice needs at least one input row");
  }
  const int64_t kc = k_end - k_begin;
  const int64_t k_real = std::min(k_end, g.k) - k_begin;

  NceLayer s;
  s.name = layer.name + "[k" + Range(k_begin, k_end) + " rows" +
           Range(out_row_begin, out_row_end) + "]";
  s.op = op;
  NceGeometry& sg = s.op.g;
  sg.k = kc;
  sg.h = win.end - win.begin;
  sg.pad_top = win.pad_before;
  sg.pad_bottom = win.pad_after;

  if (!IsChannelwise(op.kind)) {
    const size_t row_bytes = static_cast<size_t>(g.w * g.c * DTypeBytes(op.in_dtype));
    s.input = Tensor(op.in_dtype, {sg.h, g.w, g.c});
    std::memcpy(s.input.bytes.data(), layer.input.bytes.data() + win.begin * row_bytes,
                static_cast<size_t>(sg.h) * row_bytes);
  } else {
    // Output channel k reads input channel k: the slice's input is channels [k_begin, k_end) of
    // the window's rows, padding channels at the zero point (+0.0 for float).
    sg.c = kc;
    const auto slice_channels = [&](const Tensor& t, int32_t zp) {
      const int64_t eb = DTypeBytes(t.dtype);
      Tensor out(t.dtype, {sg.h, g.w, kc});
      if (eb == 1) std::fill(out.bytes.begin(), out.bytes.end(), static_cast<uint8_t>(zp));
      for (int64_t p = 0; p < sg.h * g.w; ++p) {
        std::memcpy(out.bytes.data() + p * kc * eb,
                    t.bytes.data() + ((win.begin * g.w + p) * g.c + k_begin) * eb,
                    static_cast<size_t>(k_real * eb));
      }
      return out;
    };
    s.input = slice_channels(layer.input, op.in_zp);
    if (op.kind == NceKind::kEltwise) s.input2 = slice_channels(layer.input2, op.eltwise.in2_zp);
  }

  if (HasWeights(op.kind)) {
    const int64_t eb = DTypeBytes(op.w_dtype);
    const size_t channel_bytes = static_cast<size_t>(op.weight_taps() * eb);
    s.weights = op.kind == NceKind::kDwConv ? Tensor(op.w_dtype, {kc, g.ky, g.kx, 1})
                                            : Tensor(op.w_dtype, {kc, g.ky, g.kx, g.c});
    std::memcpy(s.weights.bytes.data(), layer.weights.bytes.data() + k_begin * channel_bytes,
                static_cast<size_t>(k_real) * channel_bytes);
    if (eb == 1) {  // padding channels hold the zero point (+0.0, all zero bytes, for float)
      std::fill(s.weights.bytes.begin() + k_real * channel_bytes, s.weights.bytes.end(),
                static_cast<uint8_t>(op.w_zp));
    }
  }

  const ChannelQuant& q = layer.quant;
  auto slice = [&](const auto& v) {
    using V = std::decay_t<decltype(v)>;
    V out(v.begin() + k_begin, v.begin() + k_begin + k_real);
    // Padding channels: zero requantisation in a weight table; kinds with one set of PPE
    // registers for all channels repeat the real channels' (the outputs are dropped either way).
    out.resize(static_cast<size_t>(kc),
               HasWeights(op.kind) ? typename V::value_type{} : out.back());
    return out;
  };
  if (IsIntegerPath(op)) {
    s.quant.mult = slice(q.mult);
    s.quant.shift = slice(q.shift);
    s.quant.bias = slice(q.bias);
  } else {
    s.quant.scale = slice(q.scale);
    s.quant.fbias = slice(q.fbias);
  }
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(s));
  return s;
}

}  // namespace dpuemu
