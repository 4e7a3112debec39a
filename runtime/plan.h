// The planning half of the runtime. For one ZMConv layer on one target it decides
//   1. whether the weights are stored sparse (a named heuristic over CMX-granular byte counts),
//   2. how the layer is split across tiles (clustering, SOK = split over output channels,
//      SOH = split over output rows) under the target's split rules,
//   3. the DPU workloads of each tile (output cuboids, each with an MPE mode),
// and estimates cycles and bytes. Every decision is data with a reason a user can print
// (PlanToText, PlanToJson). A request no target can run is an error naming the rule; padding the
// planner adds for a rule shows in the plan (k_padded and a note), nothing is fixed silently.
//
// Decisions the NPU compiler makes the same way (openvinotoolkit/npu_compiler, src/vpux_compiler/;
// each named in the decision's reason):
//   - MPE mode: getMpeModeForConv (NPU37XX/dialect/VPU/impl/nce_op_interfaces.cpp, also registered
//     for NPU40XX) over the tile's output shape on NPU37XX and the layer's on NPU40XX (as
//     split_nce_ops_onto_workloads.cpp calls it); every workload of a tile runs in that mode.
//   - cmx heuristic: CMXConsumptionBasedWeightsSparsityStrategy's intervals over getTotalCMXSize.
//   - Segments: splitSegmentedShape (first equal, remainder last on NPU37XX; uniform on NPU40XX),
//     SOK cluster counts by getNumberOfClustersForSOKToAvoidAlignment, SOH by
//     getNumberOfClustersForSpatialDim; NPU37XX SOH legality and input segments by
//     isSOHSupportedByDPU / getSOHPerClusterHeightAlignment / getSOHMinimalHeightAlignment.
//   - Sparse output: split_rule (seed or compiler, see SplitRule).
//
// Cost model (the project's definition; sources in ../shared/dpu-facts.md):
//   - An MPE mode walks the output in cuboids of W x H x K elements (VPUNN's grid):
//       CUBOID_16x16 = 16 x 16 x 64, CUBOID_8x16 = 16 x 8 x 128, CUBOID_4x16 = 8 x 8 x 256;
//     all three hold 16384 outputs. Covering a region of R rows x Q cols x Kc channels takes
//       cuboids = ceil(Q / gw) * ceil(R / gh) * ceil(Kc / gk),
//     and each cuboid reads its input window ((n - 1) * stride + kernel per spatial dimension,
//     padding included) for all C input channels, so the input read is
//       reads = ceil(Kc / gk) * (sum of row windows) * (sum of col windows) * C * bytes / 16
//     16-byte grains (estimates only; the mode itself is the compiler's, above).
//     The cuboids and reads describe the walk (Workload::cuboids, utilisation, input_reads).
//   - cycles: the cost model (runtime/cost.h, fitted to VPUNN) per workload, over its output
//     cuboid, MPE mode, taps, dtypes, weight density (when stored sparse), input sparsity and the
//     bytes it moves (input window with halo and maps, weights with map and table, output);
//     Workload::cost keeps every term. A tile's cycles are the sum of its workloads', the plan's
//     the slowest tile's: split choice, SOK tilings and the NPU time all use them.
//   - A tile's output is cut into up to workloads_per_tile row bands whose heights are
//     multiples of the grain height of the tile's MPE mode; with sparse output under the
//     compiler's rule each band is further cut into the workload channel pieces.
//   - A tile holds its input rows (halo included), its weight slice (data, map, table) and its
//     output slice in CMX; the sum must fit cmx_bytes_per_tile.
#ifndef DPUEMU_RUNTIME_PLAN_H_
#define DPUEMU_RUNTIME_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/status.h"
#include "hw/target.h"
#include "hw/tensor.h"
#include "runtime/cost.h"

namespace dpuemu {

// How the weight storage is chosen.
//   sas:    the seed's rules: K < 64 -> dense; sparsity below the break-even 1 / (8 * bytes)
//           (12.5% for 8-bit, 6.25% for 16-bit weights) -> dense; dense when the CMX-granular
//           sparse traffic is not smaller than the dense traffic.
//   ratio:  the NPU compiler's default: sparse when the effective sparsity
//           1 - (packed data, 16-byte aligned per channel) / (dense weight bytes)
//           is >= 0.125 for integer weights, >= 0.0625 for float weights.
//   cmx:    the compiler's CMX-share table (sparsity_strategy.hpp/.cpp,
//           CMXConsumptionBasedWeightsSparsityStrategy: lower_bound over the keys 0, 0.05, 0.5,
//           1.0, then one step back) over r = dense weight bytes / CmxHeuristicBytes:
//           r <= 5% -> never; (5%, 50%] -> effective sparsity >= 30%; (50%, 100%] -> >= 20%;
//           r > 100% -> never.
//   cost:   the cost model (runtime/cost.h): PlanLayer/PlanOp plan the layer with dense and with
//           sparse weights and keep sparse when its slowest tile is estimated faster (weight map
//           and table traffic counted); DecideWeightSparsity alone costs the layer as one workload.
//           The reason prints both estimates.
//   dense, sparse: forced.
// Every heuristic keeps dense weights when IC > 8192 (forcing sparse is then an error) or all
// weights equal the zero point.
enum class WeightHeuristic { kSas, kRatio, kCmx, kDense, kSparse, kCost };
// "sas", "ratio", "cmx", "dense", "sparse", "cost"
const char* WeightHeuristicName(WeightHeuristic h);
StatusOr<WeightHeuristic> ParseWeightHeuristic(const std::string& name);

// Split rules:
//   SOK: >= 16 output channels per tile. The compiler's segments (CompilerSok): SokClusters
//        clusters, SegmentSizes(K, clusters, 16, uniform on NPU40XX): NPU37XX 320 on 2 ->
//        160 + 160, 80 on 2 -> 48 + 32; NPU40XX 352 on 6 -> 64, 64, 64, 64, 48, 48. Sparse output
//        follows split_rule (SplitRule): the seed's equal (NPU37XX power-of-two, K padded: 320 on
//        2 tiles -> 2 x 256, k_padded 512) splits, or the compiler's.
//   SOH: output rows SegmentSizes(OH, tiles, 1, uniform on NPU40XX) (getNumberOfClustersForSpatialDim
//        tiles). NPU37XX also needs isSOHSupportedByDPU on the INPUT: IW x input rows per tile a
//        multiple of 4 (dense input) or 8 (sparse input, VPU_SEGMENT_SIZE_DENSE/_SPARSE): the
//        input rows per tile alignUp(ceil(IH / tiles), getSOHPerClusterHeightAlignment(IW)) must
//        leave rows for the last tile, and TilePlan::in_seg_begin/end hold the input segments
//        with getSOHMinimalHeightAlignment (IH=10, IW=6 dense: [0, 6) and [6, 10); the output
//        rows stay 5 + 5). The halo beyond a segment is read from the neighbour tile.
enum class SplitStrategy { kAuto, kClustering, kSok, kSoh };
const char* SplitStrategyName(SplitStrategy s);  // "auto", "clustering", "SOK", "SOH"
StatusOr<SplitStrategy> ParseSplitStrategy(const std::string& name);  // case-insensitive

// Which tiling rule SOK with sparse output (and, on NPU37XX, the channels of every workload with
// sparse output) follows; both are legal tilings:
//   seed:     the seed notes: one workload per tile; NPU37XX needs equal power-of-two channel
//             splits (K=320 on 2 tiles -> 256/256, K padded to 512), no rule without a channel
//             split; NPU40XX equal splits in multiples of 16 (160/160; fewer tiles or K padded
//             when K does not divide).
//   compiler: the NPU compiler: cluster segments by SokSegments (alignUp(ceil(K / n), 16) with
//             the remainder last on NPU37XX; on NPU40XX the same when the remainder is > 0, else
//             the compiler removes the output sparsity, shouldRemoveOutputSparsity), then the
//             workloads' channels by SparseOutputWorkloadChannels (correct_nce_workloads.cpp).
//   auto:     the tiling with fewer estimated cycles (fewer CMX bytes, then the compiler's, on a
//             tie), except that a compiler tiling that removes the requested output sparsity
//             is only taken when the seed's is not possible; the other tiling is named in
//             Plan::split_rule_reason.
// Without sparse output both rules give the compiler's segments.
enum class SplitRule { kAuto, kSeed, kCompiler };
const char* SplitRuleName(SplitRule r);  // "auto", "seed", "compiler"
StatusOr<SplitRule> ParseSplitRule(const std::string& name);

// The compiler's segmentation of `size` elements over `clusters` (VPU::splitSegmentedShape,
// dialect/VPU/IR/attributes.cpp): not uniform (NPU37XX): the first clusters - 1 get
// alignUp(ceil(size / clusters), alignment), the last the remainder, which must be > 0; uniform
// (NPU40XX): alignDown(size / clusters, alignment) each, the remainder handed out in steps of
// `alignment` to the first clusters (e.g. 13 over 4 -> [4, 3, 3, 3]). An error when it has no
// such segmentation (the compiler returns nullopt).
StatusOr<std::vector<int64_t>> SegmentSizes(int64_t size, int64_t clusters, int64_t alignment,
                                            bool uniform);
// getNumberOfClustersForSOKToAvoidAlignment (VPU/utils/distributed_tensor_utils.cpp): the most
// clusters <= n that split K in 16-aligned segments (NPU37XX: remainder > 0; NPU40XX: baseline > 0).
int64_t SokClusters(int64_t k, int64_t n, bool uniform);
// The workloads' channel counts of an op with sparse output whose clusters compute `cluster_k`
// channels (one workload each, as split_nce_ops_onto_workloads makes them with one DPU per tile),
// as WorkloadSplitterBase::correctInvalidWorkload (VPU/interfaces/workload_splitter_base.cpp, run by
// NPU37XX and NPU40XX correct_nce_workloads.cpp) corrects them: valid when all are equal and fit an
// SE size (NPU37XX also a power of two, SparsityConstraint::areChannelsFitForSESize); otherwise
// the supported sizes are those fitting an SE that divide every cluster's channels but the last's
// (and add up to the last's), and each cluster is split greedily, largest first.
// K=384 on one NPU37XX tile -> {{256, 128}}.
StatusOr<std::vector<std::vector<int64_t>>> SparseOutputWorkloadChannels(
    const std::vector<int64_t>& cluster_k, const Target& t);

enum class MpeMode { kCuboid16x16, kCuboid8x16, kCuboid4x16 };
const char* MpeModeName(MpeMode m);  // "CUBOID_16x16", ...

// The compiler's MPE mode for a convolution output of rows x cols x channels: getMpeModeForConv
// (NPU37XX/dialect/VPU/impl/nce_op_interfaces.cpp, registered for NPU40XX too). Grids (W, H, K):
// 16x16 = (16, 16, 64), 8x16 = (16, 8, 128), 4x16 = (8, 8, 256); cost = ceil(K / gk) * H * W +
// ceil(H / gh) * ceil(W / gw) * K; the smallest cost wins, ties to the lower MPEMode value
// (CUBOID_16x16 < CUBOID_8x16 < CUBOID_4x16, std::min_element over (cost, mode) pairs).
MpeMode MpeModeForConv(int64_t rows, int64_t cols, int64_t channels);
// The three costs and the winner as text, e.g. "getMpeModeForConv 14x14x256: 16x16 1040, ...".
std::string MpeModeReason(int64_t rows, int64_t cols, int64_t channels);

// Storage-element pointers (SPEC.json "se", runtime/spec.h): the layer's input [H, W, C] is a
// virtual tensor the DPU reads through an SE pointer table (4 bytes per pointer, one per
// se_size channels of a pixel) and a sparsity map over the virtual tensor. Both sit in CMX beside
// the input, so each tile holds the table and map rows of its input window (counted in
// TilePlan::se_table_bytes / input_map_bytes and in every workload's input bytes), and the input
// data it holds is the SOURCE rows those pointers address, not the virtual rows.
struct PlanSe {
  std::string op;           // "upsample_nearest", ..., "table"; empty = no SE pointers
  std::string description;  // what the table gathers, for the plan's text
  int64_t se_size = 0;      // the table's storage-element size; becomes Plan::input_se_size
  int64_t source_h = 0, source_w = 0;  // the source tensor [source_h, source_w, C]
  int64_t table_bytes = 0;  // 4 * H * W * C / se_size over the virtual input
  int64_t map_bytes = 0;    // ActivationMapBytes(H * W * C)
  // Per virtual input row y: the source rows [source_row_begin[y], source_row_end[y]) that its
  // SEs with any map bit set address (begin == end: the row is inserted zeros only). Both empty:
  // the source rows are counted as if they were the virtual rows.
  std::vector<int64_t> source_row_begin, source_row_end;
  bool used() const { return !op.empty(); }
};

struct PlanOptions {
  WeightHeuristic heuristic = WeightHeuristic::kSas;
  // kAuto picks SOK or SOH by estimated cycles among the splits that obey the target's rules
  // and fit CMX, and falls back to clustering on one tile when neither split is possible.
  // kClustering runs the whole layer on every tile used.
  SplitStrategy split = SplitStrategy::kAuto;
  int tiles = 0;               // tiles to use; 0 = all of the target's
  int workloads_per_tile = 4;  // most workloads (row bands) a tile's output is cut into
  bool input_sparse = false;
  bool output_sparse = false;
  int64_t input_se_size = 0;   // 0 = the target's default for C
  int64_t output_se_size = 0;  // 0 = the target's default for each tile's channel count
  PlanSe se;                   // SE pointers (se.used()); input_se_size must be 0 or se.se_size
  SplitRule split_rule = SplitRule::kAuto;  // SOK / workload channels with sparse output
};

// Weight DMA traffic of the whole layer at CMX granularity.
struct WeightTraffic {
  int64_t elements = 0;            // K * KY * KX * C
  int64_t nonzeros = 0;            // elements that differ from the zero point
  int64_t dense_weight_bytes = 0;  // elements * bytes
  int64_t sparse_data_bytes = 0;   // sum over channels of align16(nonzeros_k * bytes)
  int64_t map_bytes = 0;           // K * align16(ceil(KY * KX * C / 8))
  int64_t table_bytes = 0;         // 16 * K
  int64_t dense_bytes = 0;         // dense_weight_bytes + table_bytes
  int64_t sparse_bytes = 0;        // sparse_data_bytes + map_bytes + table_bytes
  double sparsity() const;            // 1 - nonzeros / elements
  double effective_sparsity() const;  // 1 - sparse_data_bytes / dense_weight_bytes
};

struct WeightDecision {
  WeightHeuristic heuristic = WeightHeuristic::kSas;
  bool sparse = false;
  std::string reason;
  WeightTraffic traffic;
  std::vector<int64_t> nonzeros;  // per output channel
};

// The CMX size the cmx heuristic divides by: the compiler's getTotalCMXSize (VPU/IR/attributes.cpp),
// the tile's workspace minus 2 x (512 + 1024 + 256) bytes of profiling buffers.
int64_t CmxHeuristicBytes(const Target& target);

// The weight decision alone. `weights` is [K, KY, KX, C] of op.w_dtype.
StatusOr<WeightDecision> DecideWeightSparsity(const NceOp& op, const Tensor& weights,
                                              const Target& target, WeightHeuristic heuristic);

// One tile's share of the layer. Channels in [K, k_padded) are padding: zero-point weights and
// zero requantisation, computed by the DPU and discarded (SliceLayer builds them).
struct TilePlan {
  int tile = 0;
  int64_t k_begin = 0, k_end = 0;            // output channels
  int64_t row_begin = 0, row_end = 0;        // output rows
  int64_t in_row_begin = 0, in_row_end = 0;  // input rows read, halo included
  // NPU37XX SOH: the input rows the tile's CMX segment holds as the compiler segments the input
  // (getSOHMinimalHeightAlignment); the halo rows beyond it are read from the neighbour's CMX.
  // Both 0 otherwise.
  int64_t in_seg_begin = 0, in_seg_end = 0;
  int64_t output_se_size = 0;
  int64_t input_bytes = 0, weight_bytes = 0, output_bytes = 0;  // CMX footprint
  // With SE pointers: the table and map rows of the tile's input window (0 otherwise); the
  // input bytes are then the source rows the window reads.
  int64_t se_table_bytes = 0, input_map_bytes = 0;
  int64_t cycles = 0;  // sum of its workloads
  // The MPE mode all the tile's workloads run in, and why (the compiler's cost, its source).
  MpeMode mpe_mode = MpeMode::kCuboid16x16;
  std::string mpe_reason;
  int64_t cmx_bytes() const {
    return input_bytes + se_table_bytes + input_map_bytes + weight_bytes + output_bytes;
  }
};

// One DPU workload: an output cuboid walked in one MPE mode.
struct Workload {
  int tile = 0;
  MpeMode mpe_mode = MpeMode::kCuboid16x16;
  int64_t k_begin = 0, k_end = 0;
  int64_t row_begin = 0, row_end = 0;  // output rows
  int64_t col_begin = 0, col_end = 0;  // output columns
  int64_t in_row_begin = 0, in_row_end = 0;  // input window inside the input, halo included
  int64_t in_col_begin = 0, in_col_end = 0;
  int64_t cuboids = 0;      // MPE cuboids covering the output volume
  int64_t input_reads = 0;  // 16-byte input grains the cuboids read
  double utilisation = 0;   // output volume / cuboids' volume
  int64_t cycles = 0;
  // Bytes read: input (with SE pointers: the source rows read plus the table and map rows of the
  // input window), weights (data, map, table), output.
  int64_t input_bytes = 0, weight_bytes = 0, output_bytes = 0;
  WorkloadCostTerms cost;  // the cost model's terms (runtime/cost.h); cycles == cost.cycles
};

struct Plan {
  std::string layer;  // the layer's name
  const Target* target = nullptr;
  NceOp op;
  PlanOptions options;
  WeightDecision weights;
  double input_sparsity = 0;  // measured on the layer's input when input_sparse, else 0
  SplitStrategy split = SplitStrategy::kClustering;
  std::string split_reason;
  int tiles_used = 0;
  int64_t k_padded = 0;  // output channels computed, padding included (>= op.g.k)
  int64_t input_se_size = 0;
  std::vector<std::string> notes;  // rules that changed the split (padding, fewer tiles)
  // The tiling rule the plan follows (seed or compiler; auto is resolved) and why; with the
  // compiler's rule removing output sparsity, options.output_sparse is false and a note says so.
  SplitRule split_rule = SplitRule::kCompiler;
  std::string split_rule_reason;
  std::vector<TilePlan> tiles;
  std::vector<Workload> workloads;
  int64_t cycles = 0;  // slowest tile
  double time_us() const;
};

// Plans a layer; the input tensor gives the activation sparsity the cycle estimate uses.
StatusOr<Plan> PlanLayer(const NceLayer& layer, const Target& target, const PlanOptions& options);
// Plans from the op and its weights alone (activations counted dense in the cycle estimate).
StatusOr<Plan> PlanOp(const NceOp& op, const Tensor& weights, const Target& target,
                      const PlanOptions& options, const std::string& name = "");

// explain: each workload's cost-model terms (WorkloadCostTerms::ToString) under it.
std::string PlanToText(const Plan& plan, bool explain = false);
nlohmann::json PlanToJson(const Plan& plan);

// How to lower the sub-layer of `tile` (SliceLayer of its ranges) with LowerLayer.
StorageOptions TileStorage(const Plan& plan, const TilePlan& tile);

// The layer one tile or workload computes: output channels [k_begin, k_end) (16-aligned;
// channels >= K are padding with zero-point weights and zero requantisation) and output rows
// [out_row_begin, out_row_end), reading the input rows that window needs with the padding
// adjusted, so the slice's output equals those rows and channels of the whole layer's output.
StatusOr<NceLayer> SliceLayer(const NceLayer& layer, int64_t k_begin, int64_t k_end,
                               int64_t out_row_begin, int64_t out_row_end);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_PLAN_H_
