// Tests of the SE-pointer operations (hw/se_ops.h). Each gather is lowered with LowerWithGather
// and run by the reference DPU and the fast kernels; the result must equal a computation on dense
// arrays with no SE table at all: the virtual tensor built here by plain index arithmetic, then
// the textbook convolution, and for transposed and dilated convolutions also their definitions.
// Malformed gathers, tables and maps must be rejected with a message naming the field.
#include "hw/se_ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "hw/target.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

namespace dpuemu {
namespace {

// Passes when `text` contains `what`; prints both otherwise.
::testing::AssertionResult Contains(const std::string& text, const std::string& what) {
  if (text.find(what) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << what << "'";
}

struct DTypes {
  DType in, w, out;
};
// The brief's combinations: u8 x i8 -> u8 (full PPE) and -> i32 (raw accumulators), and fp16.
constexpr DTypes kDTypes[] = {{DType::kU8, DType::kI8, DType::kU8},
                              {DType::kU8, DType::kI8, DType::kI32},
                              {DType::kFP16, DType::kFP16, DType::kFP16}};

template <typename T, size_t N>
T Pick(Rng& rng, const T (&options)[N]) {
  return options[rng.Int(0, N - 1)];
}

// Storage-element sizes the target accepts that divide `channels`.
std::vector<int64_t> SeSizes(const Target& t, int64_t channels) {
  std::vector<int64_t> sizes;
  for (int64_t s = 16; s <= channels; s += 16) {
    if (channels % s == 0 && CheckSeSize(t, s, "se_size").ok()) sizes.push_back(s);
  }
  return sizes;
}

// One generated case: a source tensor with weights and requantisation, where the source lives,
// and how everything is stored. All of it follows from the seed.
struct GatherCase {
  const Target* t = nullptr;
  NceLayer layer;  // input = the source [H, W, C]; weights [K, ky, kx, C]; op types and PPE
  SourceLayout layout;
  StorageOptions opts;  // input_sparse: the source is stored sparse
  int64_t se_size = 0;  // 0 = the target's default

  std::string Describe() const {
    std::string s = std::string(t->name) + " " + DTypeName(layer.op.in_dtype) + "x" +
                    DTypeName(layer.op.w_dtype) + "->" + DTypeName(layer.op.out_dtype) +
                    ", source " + layer.input.ShapeString() + " in";
    if (layout.tiles.empty()) s += " tile 0";
    for (size_t i = 0; i < layout.tiles.size(); ++i) {
      s += " tile " + std::to_string(i) + " (" + std::to_string(layout.tiles[i].rows) +
           " rows at " + std::to_string(layout.tiles[i].base_offset) + ")";
    }
    return s + (opts.input_sparse ? ", sparse" : ", dense") + " source, weights " +
           (opts.weights_sparse ? "sparse" : "dense") + ", output " +
           (opts.output_sparse ? "sparse" : "dense") + ", se_size " + std::to_string(se_size);
  }
};

// c = 0 draws the channel count.
StatusOr<GatherCase> MakeCase(uint64_t seed, int64_t h, int64_t w, int64_t ky, int64_t kx, Rng& rng,
                              int64_t c = 0) {
  GatherCase s;
  s.t = AllTargets()[seed % AllTargets().size()];
  const DTypes& d = kDTypes[(seed / AllTargets().size()) % 3];
  static const int64_t kChannels[] = {16, 32, 48};
  static const int64_t kOutChannels[] = {16, 32};
  LayerSpec spec;
  spec.name = "se_ops";
  spec.h = h;
  spec.w = w;
  spec.c = c ? c : Pick(rng, kChannels);
  spec.k = Pick(rng, kOutChannels);
  spec.ky = ky;
  spec.kx = kx;
  spec.pad = std::max(ky, kx);  // any valid padding: each test sets its own geometry
  spec.in_dtype = d.in;
  spec.w_dtype = d.w;
  spec.out_dtype = d.out;
  spec.input_sparsity = rng.Bernoulli(0.5) ? 0.4 : 0.0;
  spec.weight_sparsity = rng.Bernoulli(0.5) ? 0.5 : 0.0;
  DPUEMU_ASSIGN_OR_RETURN(s.layer, GenerateLayer(spec, rng.Next()));
  if (h >= 2 && rng.Bernoulli(0.5)) {
    // Split by rows over two tiles; SE pointers of the lower rows carry BASE_PTR 1.
    static const int64_t kBases[] = {0, 16, 48};
    s.layout = SplitRows(h, 2, Pick(rng, kBases));
    s.layout.tiles[1].base_offset = Pick(rng, kBases);
  }
  s.opts.weights_sparse = rng.Bernoulli(0.5);
  s.opts.input_sparse = rng.Bernoulli(0.5);
  s.opts.output_sparse = d.out != DType::kI32 && rng.Bernoulli(0.5);
  const std::vector<int64_t> sizes = SeSizes(*s.t, spec.c);
  const int64_t pick = rng.Int(0, static_cast<int64_t>(sizes.size()));
  s.se_size = pick == static_cast<int64_t>(sizes.size()) ? 0 : sizes[pick];
  return s;
}

StatusOr<SeSource> SourceOf(const GatherCase& s) {
  return MakeSeSource(s.layer.input, s.layout, s.opts.input_sparse, s.layer.op.in_zp);
}

// A tensor of the given shape with every element the zero point (+0.0 for float).
Tensor ZeroPointTensor(DType dtype, std::vector<int64_t> shape, int32_t zp) {
  Tensor t(dtype, std::move(shape));
  if (DTypeBytes(dtype) == 1) std::fill(t.bytes.begin(), t.bytes.end(), static_cast<uint8_t>(zp));
  return t;
}

// Copies pixel (sy, sx) of src [H, W, C] to pixel (y, x) of dst [H', W', C].
void CopyPixel(const Tensor& src, int64_t sy, int64_t sx, Tensor& dst, int64_t y, int64_t x) {
  const int64_t run = src.shape[2] * DTypeBytes(src.dtype);
  std::memcpy(dst.bytes.data() + (y * dst.shape[1] + x) * run,
              src.bytes.data() + (sy * src.shape[1] + sx) * run, static_cast<size_t>(run));
}

// The virtual tensor [vh, vw, C] whose pixel (y, x) is source pixel (row(y), col(x)), or the zero
// point where either is negative.
Tensor Remap(const Tensor& src, int32_t zp, int64_t vh, int64_t vw,
             const std::function<int64_t(int64_t)>& row,
             const std::function<int64_t(int64_t)>& col) {
  Tensor out = ZeroPointTensor(src.dtype, {vh, vw, src.shape[2]}, zp);
  for (int64_t y = 0; y < vh; ++y) {
    for (int64_t x = 0; x < vw; ++x) {
      if (row(y) >= 0 && col(x) >= 0) CopyPixel(src, row(y), col(x), out, y, x);
    }
  }
  return out;
}

// The output of a task as dense values.
StatusOr<Tensor> Dense(const StatusOr<DpuOutput>& out, int32_t out_zp) {
  if (!out.ok()) return out.status();
  return DenseOutput(*out, out_zp);
}

// The reference and every fast kernel on `task` give `expected`.
void ExpectRunsGive(const DpuTask& task, const Target& t, const Tensor& expected) {
  const int32_t zp = task.op.ppe.out_zp;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor ref, Dense(RunReference(task, t), zp));
  EXPECT_EQ(FirstDifference(ref, expected), "") << "RunReference";
  for (ConvKernel k : {ConvKernel::kAuto, ConvKernel::kDense, ConvKernel::kSparseWeights}) {
    KernelOptions ko;
    ko.kernel = k;
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor fast, Dense(RunZMConv(task, t, ko), zp));
    EXPECT_EQ(FirstDifference(fast, expected), "") << "RunZMConv " << ConvKernelName(k);
  }
}

// An ordinary convolution over the gathered virtual tensor: the textbook convolution of the
// explicitly built `virtual_input` must equal the DPU reading the source through `gather`.
void ExpectGatherConv(const GatherCase& s, const SeGather& gather, const Tensor& virtual_input,
                      Rng& rng) {
  ASSERT_EQ(virtual_input.shape, (std::vector<int64_t>{gather.h, gather.w, gather.c}));
  NceLayer vl = s.layer;
  NceGeometry& g = vl.op.g;
  g.h = gather.h;
  g.w = gather.w;
  g.stride_y = rng.Int(1, 2);
  g.stride_x = rng.Int(1, 2);
  // One DPU invocation pads at most kernel / 2 per side (verifyPads).
  g.pad_top = rng.Int(0, g.ky / 2);
  g.pad_left = rng.Int(0, g.kx / 2);
  g.pad_bottom = std::max(rng.Int(0, g.ky / 2), g.ky - g.h - g.pad_top);
  g.pad_right = std::max(rng.Int(0, g.kx / 2), g.kx - g.w - g.pad_left);
  // A virtual tensor smaller than the kernel needs more padding than one invocation has.
  if (g.pad_bottom > g.ky / 2 || g.pad_right > g.kx / 2) return;
  vl.input = virtual_input;
  SCOPED_TRACE(gather.description);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor expected, TextbookConv(vl, false));
  vl.input = Tensor();  // LowerWithGather reads the source, never a materialised virtual input
  DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task,
                              LowerWithGather(vl, s.layer.input, s.layout, gather, s.opts, *s.t));
  EXPECT_EQ(task.input_se_size, gather.se_size);
  EXPECT_EQ(gather.se_size, s.se_size ? s.se_size : DefaultSeSize(*s.t, gather.c));
  EXPECT_EQ(task.input_tiles.size(), std::max<size_t>(1, s.layout.tiles.size()));
  ExpectRunsGive(task, *s.t, expected);
}

// Kernel sizes for the ordinary convolutions over gathered tensors.
int64_t SmallKernel(Rng& rng) { return rng.Int(1, 3); }

constexpr int kCasesPerOp = 36;  // 3 dtype combinations x 2 targets, six times

TEST(SeOpsTest, UpsampleNearestMatchesDenseUpsampleThenConv) {
  const uint64_t base = BaseSeed(100);
  for (int i = 0; i < kCasesPerOp; ++i) {
    const uint64_t seed = base + i;
    Rng rng(seed);
    const int64_t h = rng.Int(1, 4), w = rng.Int(1, 4);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GatherCase s,
                                MakeCase(seed, h, w, SmallKernel(rng), SmallKernel(rng), rng));
    SCOPED_TRACE(SeedTrace(seed) + ": " + s.Describe());
    const int64_t fy = rng.Int(1, 3), fx = rng.Int(1, 3);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather gather,
                                UpsampleNearestGather(src, *s.t, s.se_size, fy, fx));
    const Tensor dense = Remap(
        s.layer.input, s.layer.op.in_zp, h * fy, w * fx, [&](int64_t y) { return y / fy; },
        [&](int64_t x) { return x / fx; });
    ExpectGatherConv(s, gather, dense, rng);
  }
}

// ONNX Resize (nearest) with the source coordinate as an exact fraction num / den, rounded by a
// search rather than by division.
int64_t OnnxNearest(int64_t x, int64_t in, int64_t out, CoordMode coord, NearestMode mode) {
  int64_t num = 0, den = 1;
  if (coord == CoordMode::kAsymmetric) {
    num = x * in, den = out;
  } else if (coord == CoordMode::kTfHalfPixelForNN) {
    num = (2 * x + 1) * in, den = 2 * out;
  } else if (coord == CoordMode::kAlignCorners) {
    if (out > 1) num = x * (in - 1), den = out - 1;
  } else if (coord == CoordMode::kHalfPixel || out > 1) {
    num = (2 * x + 1) * in - out, den = 2 * out;
  }
  int64_t f = 0;  // floor(num / den)
  while (f * den > num) --f;
  while ((f + 1) * den <= num) ++f;
  const int64_t twice = 2 * (num - f * den);
  int64_t r = f;
  if (mode == NearestMode::kCeil) r = twice == 0 ? f : f + 1;
  if (mode == NearestMode::kRoundPreferFloor) r = twice <= den ? f : f + 1;
  if (mode == NearestMode::kRoundPreferCeil) r = twice < den ? f : f + 1;
  return std::clamp<int64_t>(r, 0, in - 1);
}

TEST(SeOpsTest, InterpolateNearestMatchesDenseResizeThenConv) {
  const uint64_t base = BaseSeed(200);
  for (int i = 0; i < 2 * kCasesPerOp; ++i) {
    const uint64_t seed = base + i;
    Rng rng(seed);
    const int64_t h = rng.Int(1, 5), w = rng.Int(1, 5);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GatherCase s,
                                MakeCase(seed, h, w, SmallKernel(rng), SmallKernel(rng), rng));
    // Integer scales half the time, arbitrary sizes (down-sampling included) otherwise.
    const bool integer = rng.Bernoulli(0.5);
    const int64_t out_h = integer ? h * rng.Int(1, 3) : rng.Int(1, 9);
    const int64_t out_w = integer ? w * rng.Int(1, 3) : rng.Int(1, 9);
    const CoordMode coord = static_cast<CoordMode>(rng.Int(0, 4));
    const NearestMode mode = static_cast<NearestMode>(rng.Int(0, 3));
    SCOPED_TRACE(SeedTrace(seed) + ": " + s.Describe());
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const SeGather gather,
        InterpolateNearestGather(src, *s.t, s.se_size, out_h, out_w, coord, mode));
    const Tensor dense = Remap(
        s.layer.input, s.layer.op.in_zp, out_h, out_w,
        [&](int64_t y) { return OnnxNearest(y, h, out_h, coord, mode); },
        [&](int64_t x) { return OnnxNearest(x, w, out_w, coord, mode); });
    ExpectGatherConv(s, gather, dense, rng);
  }
}

// Source pixel column each virtual column of row 0 reads (-1: inserted zero), for a gather over a
// source of one row in tile 0 at offset 0.
std::vector<int64_t> GatheredColumns(const SeGather& g, DType dtype) {
  std::vector<int64_t> cols;
  const int64_t ses = g.c / g.se_size;
  for (int64_t x = 0; x < g.w; ++x) {
    const SePointer p = DecodeSePointer(g.table[x * ses]);
    cols.push_back(MapBit(g.map.data(), x * g.c) ? p.offset / (g.c * DTypeBytes(dtype)) : -1);
  }
  return cols;
}

StatusOr<std::vector<int64_t>> ColumnsOf(
    int64_t w, const std::function<StatusOr<SeGather>(const SeSource&)>& make) {
  SeSource src;
  src.h = 1;
  src.w = w;
  src.c = 16;
  SeGather g;
  DPUEMU_ASSIGN_OR_RETURN(g, make(src));
  return GatheredColumns(g, src.dtype);
}

// Known answers from the ONNX Resize backend tests (resize_*_nearest*), indices 0-based.
TEST(SeOpsTest, InterpolateNearestMatchesOnnxExamples) {
  const Target& t = GetTarget(TargetId::kNPU40XX);
  struct Example {
    int64_t in, out;
    CoordMode coord;
    NearestMode mode;
    std::vector<int64_t> expected;
  };
  const Example examples[] = {
      // resize_upsample_sizes_nearest: 2x2 -> 7x8, half_pixel, round_prefer_floor.
      {2, 7, CoordMode::kHalfPixel, NearestMode::kRoundPreferFloor, {0, 0, 0, 0, 1, 1, 1}},
      {2, 8, CoordMode::kHalfPixel, NearestMode::kRoundPreferFloor, {0, 0, 0, 0, 1, 1, 1, 1}},
      // resize_downsample_sizes_nearest: 2x4 -> 1x2.
      {2, 1, CoordMode::kHalfPixel, NearestMode::kRoundPreferFloor, {0}},
      {4, 2, CoordMode::kHalfPixel, NearestMode::kRoundPreferFloor, {0, 2}},
      // resize_upsample_sizes_nearest_ceil_half_pixel: 4 -> 8.
      {4, 8, CoordMode::kHalfPixel, NearestMode::kCeil, {0, 1, 1, 2, 2, 3, 3, 3}},
      // resize_upsample_sizes_nearest_floor_align_corners: 4 -> 8.
      {4, 8, CoordMode::kAlignCorners, NearestMode::kFloor, {0, 0, 0, 1, 1, 2, 2, 3}},
      // resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric: 4 -> 8.
      {4, 8, CoordMode::kAsymmetric, NearestMode::kRoundPreferCeil, {0, 1, 1, 2, 2, 3, 3, 3}},
  };
  for (const Example& e : examples) {
    SCOPED_TRACE(std::string(CoordModeName(e.coord)) + " " + NearestModeName(e.mode) + " " +
                 std::to_string(e.in) + " -> " + std::to_string(e.out));
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const std::vector<int64_t> cols, ColumnsOf(e.in, [&](const SeSource& src) {
          return InterpolateNearestGather(src, t, 0, 1, e.out, e.coord, e.mode);
        }));
    EXPECT_EQ(cols, e.expected);
  }
}

// numpy.pad's documented examples on [1, 2, 3, 4, 5] with pads (2, 3), indices 0-based.
TEST(SeOpsTest, PadMatchesNumpyExamples) {
  const Target& t = GetTarget(TargetId::kNPU37XX);
  const std::pair<PadMode, std::vector<int64_t>> examples[] = {
      {PadMode::kConstant, {-1, -1, 0, 1, 2, 3, 4, -1, -1, -1}},
      {PadMode::kEdge, {0, 0, 0, 1, 2, 3, 4, 4, 4, 4}},
      {PadMode::kReflect, {2, 1, 0, 1, 2, 3, 4, 3, 2, 1}},
      {PadMode::kSymmetric, {1, 0, 0, 1, 2, 3, 4, 4, 3, 2}},
  };
  for (const auto& [mode, expected] : examples) {
    SCOPED_TRACE(PadModeName(mode));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const std::vector<int64_t> cols,
                                ColumnsOf(5, [&, mode = mode](const SeSource& src) {
                                  Pads pads;
                                  pads.left = 2;
                                  pads.right = 3;
                                  return PadGather(src, t, 0, pads, mode);
                                }));
    EXPECT_EQ(cols, expected);
  }
}

// numpy.pad's index for position i of an axis of n (pads wider than n included): mirror step by
// step until inside; -1 for constant padding.
int64_t NumpyPadIndex(int64_t i, int64_t n, PadMode mode) {
  if (mode == PadMode::kConstant) return i >= 0 && i < n ? i : -1;
  if (mode == PadMode::kEdge || (mode == PadMode::kReflect && n == 1)) {
    return std::clamp<int64_t>(i, 0, n - 1);
  }
  while (i < 0 || i >= n) {
    if (mode == PadMode::kReflect) {
      i = i < 0 ? -i : 2 * (n - 1) - i;
    } else {
      i = i < 0 ? -i - 1 : 2 * n - 1 - i;
    }
  }
  return i;
}

TEST(SeOpsTest, PadMatchesDensePadThenConv) {
  const uint64_t base = BaseSeed(300);
  for (int i = 0; i < 2 * kCasesPerOp; ++i) {
    const uint64_t seed = base + i;
    Rng rng(seed);
    const int64_t h = rng.Int(1, 4), w = rng.Int(1, 4);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GatherCase s,
                                MakeCase(seed, h, w, SmallKernel(rng), SmallKernel(rng), rng));
    Pads pads;
    // Up to twice the source, so the mirror modes wrap more than once.
    pads.top = rng.Int(0, 2 * h);
    pads.bottom = rng.Int(0, 2 * h);
    pads.left = rng.Int(0, 2 * w);
    pads.right = rng.Int(0, 2 * w);
    const PadMode mode = static_cast<PadMode>(rng.Int(0, 3));
    SCOPED_TRACE(SeedTrace(seed) + ": " + s.Describe());
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather gather, PadGather(src, *s.t, s.se_size, pads, mode));
    const Tensor dense = Remap(
        s.layer.input, s.layer.op.in_zp, h + pads.top + pads.bottom, w + pads.left + pads.right,
        [&](int64_t y) { return NumpyPadIndex(y - pads.top, h, mode); },
        [&](int64_t x) { return NumpyPadIndex(x - pads.left, w, mode); });
    ExpectGatherConv(s, gather, dense, rng);
  }
}

TEST(SeOpsTest, RollMatchesDenseRollThenConv) {
  const uint64_t base = BaseSeed(400);
  for (int i = 0; i < kCasesPerOp; ++i) {
    const uint64_t seed = base + i;
    Rng rng(seed);
    const int64_t h = rng.Int(1, 5), w = rng.Int(1, 5);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GatherCase s,
                                MakeCase(seed, h, w, SmallKernel(rng), SmallKernel(rng), rng));
    const int64_t dy = rng.Int(-12, 12), dx = rng.Int(-12, 12);
    SCOPED_TRACE(SeedTrace(seed) + ": " + s.Describe() + ", roll " + std::to_string(dy) + ", " +
                 std::to_string(dx));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather gather, RollGather(src, *s.t, s.se_size, dy, dx));
    // numpy.roll moves element y to (y + dy) mod H.
    Tensor dense(s.layer.input.dtype, s.layer.input.shape);
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        CopyPixel(s.layer.input, y, x, dense, (y + dy % h + h) % h, (x + dx % w + w) % w);
      }
    }
    ExpectGatherConv(s, gather, dense, rng);
  }
}

// The output of a convolution-like op from per-output accumulators (integer: exact int64 sums,
// wrapped to int32; float: fp64 sums, exact for the generated values) through the PPE.
Tensor FinishOutput(const NceLayer& l, int64_t oh, int64_t ow, const std::vector<int64_t>& iacc,
                    const std::vector<double>& facc) {
  const NceOp& op = l.op;
  const int64_t k = op.g.k;
  Tensor out(op.out_dtype, {oh, ow, k});
  for (int64_t i = 0; i < oh * ow * k; ++i) {
    const int64_t kk = i % k;
    if (IsIntegerPath(op)) {
      const int32_t acc = static_cast<int32_t>(static_cast<uint32_t>(iacc[i]));
      StoreInt(op.out_dtype, out.bytes.data(), i,
               TextbookPpeInt(acc, l.quant.bias[kk], l.quant.mult[kk], l.quant.shift[kk], op));
    } else {
      StoreFloat(
          op.out_dtype, out.bytes.data(), i,
          TextbookPpeFloat(static_cast<float>(facc[i]), l.quant.scale[kk], l.quant.fbias[kk], op));
    }
  }
  return out;
}

// acc[(oy, ox, k)] += (x[iy][ix][c] - x_zp) * (w[k][ky][kx][c] - w_zp) for every c and k.
void AccumulatePixel(const NceLayer& l, int64_t iy, int64_t ix, int64_t ky, int64_t kx,
                     int64_t out_index, std::vector<int64_t>& iacc, std::vector<double>& facc) {
  const NceOp& op = l.op;
  const int64_t c = l.input.shape[2], kn = l.weights.shape[0];
  const int64_t wky = l.weights.shape[1], wkx = l.weights.shape[2];
  for (int64_t k = 0; k < kn; ++k) {
    for (int64_t ci = 0; ci < c; ++ci) {
      const int64_t xi = (iy * l.input.shape[1] + ix) * c + ci;
      const int64_t wi = ((k * wky + ky) * wkx + kx) * c + ci;
      if (IsIntegerPath(op)) {
        iacc[out_index * kn + k] +=
            int64_t{LoadInt(op.in_dtype, l.input.bytes.data(), xi) - op.in_zp} *
            (LoadInt(op.w_dtype, l.weights.bytes.data(), wi) - op.w_zp);
      } else {
        facc[out_index * kn + k] += double{LoadFloat(op.in_dtype, l.input.bytes.data(), xi)} *
                                    LoadFloat(op.w_dtype, l.weights.bytes.data(), wi);
      }
    }
  }
}

// Transposed convolution in scatter form: out[y * s + ky - pad][x * s + kx - pad] += in * w.
Tensor TransposedByDefinition(const NceLayer& l, const TransposedConv& tc) {
  const int64_t h = l.input.shape[0], w = l.input.shape[1];
  const int64_t oh =
      (h - 1) * tc.stride_y - tc.pads.top - tc.pads.bottom + tc.ky + tc.output_padding_y;
  const int64_t ow =
      (w - 1) * tc.stride_x - tc.pads.left - tc.pads.right + tc.kx + tc.output_padding_x;
  std::vector<int64_t> iacc(static_cast<size_t>(oh * ow * l.op.g.k), 0);
  std::vector<double> facc(iacc.size(), 0.0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t ky = 0; ky < tc.ky; ++ky) {
        for (int64_t kx = 0; kx < tc.kx; ++kx) {
          const int64_t oy = y * tc.stride_y + ky - tc.pads.top;
          const int64_t ox = x * tc.stride_x + kx - tc.pads.left;
          if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
          AccumulatePixel(l, y, x, ky, kx, oy * ow + ox, iacc, facc);
        }
      }
    }
  }
  return FinishOutput(l, oh, ow, iacc, facc);
}

TEST(SeOpsTest, TransposedConvMatchesDefinition) {
  const uint64_t base = BaseSeed(500);
  for (int i = 0; i < 2 * kCasesPerOp; ++i) {
    const uint64_t seed = base + i;
    Rng rng(seed);
    const int64_t h = rng.Int(1, 4), w = rng.Int(1, 4);
    TransposedConv tc;
    tc.ky = rng.Int(1, 4);
    tc.kx = rng.Int(1, 4);
    tc.stride_y = rng.Int(1, 3);
    tc.stride_x = rng.Int(1, 3);
    // Pads up to the kernel size: a pad of ky crops a row of the zero-inserted input.
    tc.pads.top = rng.Int(0, tc.ky);
    tc.pads.bottom = rng.Int(0, tc.ky);
    tc.pads.left = rng.Int(0, tc.kx);
    tc.pads.right = rng.Int(0, tc.kx);
    tc.output_padding_y = rng.Int(0, tc.stride_y - 1);
    tc.output_padding_x = rng.Int(0, tc.stride_x - 1);
    if ((h - 1) * tc.stride_y + tc.ky + tc.output_padding_y <= tc.pads.top + tc.pads.bottom ||
        (w - 1) * tc.stride_x + tc.kx + tc.output_padding_x <= tc.pads.left + tc.pads.right) {
      tc.pads = Pads{};  // the output would be empty
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const GatherCase s, MakeCase(seed, h, w, tc.ky, tc.kx, rng));
    SCOPED_TRACE(SeedTrace(seed) + ": " + s.Describe());
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather gather, ZeroInsertGather(src, *s.t, s.se_size, tc));
    SCOPED_TRACE(gather.description);
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const NceLayer vl,
        TransposedConvAsZMConv(tc, gather, s.layer.op, s.layer.quant, s.layer.weights));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task,
                                LowerWithGather(vl, s.layer.input, s.layout, gather, s.opts, *s.t));
    const Tensor by_definition = TransposedByDefinition(s.layer, tc);
    ExpectRunsGive(task, *s.t, by_definition);

    // The float order as the reference defines it: the textbook convolution over the explicitly
    // zero-inserted input, kernel flipped here, no padding.
    const int64_t top = tc.ky - 1 - tc.pads.top, left = tc.kx - 1 - tc.pads.left;
    NceLayer dense = s.layer;
    dense.op.g = vl.op.g;
    dense.input =
        ZeroPointTensor(s.layer.op.in_dtype, {gather.h, gather.w, gather.c}, s.layer.op.in_zp);
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const int64_t vy = top + y * tc.stride_y, vx = left + x * tc.stride_x;
        if (vy >= 0 && vy < gather.h && vx >= 0 && vx < gather.w) {
          CopyPixel(s.layer.input, y, x, dense.input, vy, vx);
        }
      }
    }
    for (int64_t k = 0; k < dense.op.g.k; ++k) {
      for (int64_t ky = 0; ky < tc.ky; ++ky) {
        for (int64_t kx = 0; kx < tc.kx; ++kx) {
          const int64_t run = gather.c * DTypeBytes(s.layer.op.w_dtype);
          std::memcpy(dense.weights.bytes.data() + ((k * tc.ky + ky) * tc.kx + kx) * run,
                      s.layer.weights.bytes.data() +
                          ((k * tc.ky + tc.ky - 1 - ky) * tc.kx + tc.kx - 1 - kx) * run,
                      static_cast<size_t>(run));
        }
      }
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor textbook, TextbookConv(dense, false));
    EXPECT_EQ(FirstDifference(textbook, by_definition), "") << "textbook over zero-inserted input";
  }
}

// Dilated convolution by its definition: out[oy][ox] += xp[oy * s + ky * d][ox * s + kx * d] * w.
Tensor DilatedByDefinition(const NceLayer& l, int64_t dy, int64_t dx) {
  const NceGeometry& g = l.op.g;
  const int64_t oh = (g.h + g.pad_top + g.pad_bottom - (g.ky - 1) * dy - 1) / g.stride_y + 1;
  const int64_t ow = (g.w + g.pad_left + g.pad_right - (g.kx - 1) * dx - 1) / g.stride_x + 1;
  std::vector<int64_t> iacc(static_cast<size_t>(oh * ow * g.k), 0);
  std::vector<double> facc(iacc.size(), 0.0);
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int64_t ox = 0; ox < ow; ++ox) {
      for (int64_t ky = 0; ky < g.ky; ++ky) {
        for (int64_t kx = 0; kx < g.kx; ++kx) {
          const int64_t iy = oy * g.stride_y + ky * dy - g.pad_top;
          const int64_t ix = ox * g.stride_x + kx * dx - g.pad_left;
          if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
          AccumulatePixel(l, iy, ix, ky, kx, oy * ow + ox, iacc, facc);
        }
      }
    }
  }
  return FinishOutput(l, oh, ow, iacc, facc);
}

// The same convolution with the kernel dilated explicitly (zero-point taps in between).
StatusOr<Tensor> DilatedByTextbook(const NceLayer& l, int64_t dy, int64_t dx) {
  NceLayer d = l;
  NceGeometry& g = d.op.g;
  g.ky = (l.op.g.ky - 1) * dy + 1;
  g.kx = (l.op.g.kx - 1) * dx + 1;
  d.weights = ZeroPointTensor(l.op.w_dtype, {g.k, g.ky, g.kx, g.c}, l.op.w_zp);
  for (int64_t k = 0; k < g.k; ++k) {
    for (int64_t ky = 0; ky < l.op.g.ky; ++ky) {
      for (int64_t kx = 0; kx < l.op.g.kx; ++kx) {
        const int64_t run = g.c * DTypeBytes(l.op.w_dtype);
        std::memcpy(d.weights.bytes.data() + ((k * g.ky + ky * dy) * g.kx + kx * dx) * run,
                    l.weights.bytes.data() + ((k * l.op.g.ky + ky) * l.op.g.kx + kx) * run,
                    static_cast<size_t>(run));
      }
    }
  }
  return TextbookConv(d, false);
}

TEST(SeOpsTest, DilatedConvMatchesDefinition) {
  const uint64_t base = BaseSeed(600);
  for (int i = 0; i < 2 * kCasesPerOp; ++i) {
    const uint64_t seed = base + i;
    Rng rng(seed);
    const int64_t ky = rng.Int(1, 3), kx = rng.Int(1, 3);
    const int64_t dy = rng.Int(1, 3), dx = rng.Int(1, 3);
    const int64_t h = rng.Int(1, 7), w = rng.Int(1, 7);
    DPUEMU_ASSERT_OK_AND_ASSIGN(GatherCase s, MakeCase(seed, h, w, ky, kx, rng));
    NceGeometry& g = s.layer.op.g;
    g.stride_y = rng.Int(1, 3);
    g.stride_x = rng.Int(1, 3);
    g.pad_top = rng.Int(0, 2);
    g.pad_left = rng.Int(0, 2);
    g.pad_bottom = std::max(rng.Int(0, 2), (ky - 1) * dy + 1 - h - g.pad_top);
    g.pad_right = std::max(rng.Int(0, 2), (kx - 1) * dx + 1 - w - g.pad_left);
    SCOPED_TRACE(SeedTrace(seed) + ": " + s.Describe() + ", dilation " + std::to_string(dy) + "x" +
                 std::to_string(dx));
    const Tensor expected = DilatedByDefinition(s.layer, dy, dx);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const Tensor textbook, DilatedByTextbook(s.layer, dy, dx));
    EXPECT_EQ(FirstDifference(textbook, expected), "") << "textbook with a dilated kernel";

    StorageOptions opts = s.opts;
    opts.input_se_size = s.se_size;
    const ConvRunner fast = [](const DpuTask& task, const Target& t) { return RunZMConv(task, t); };
    for (const ConvRunner& run : {ConvRunner(RunReference), fast}) {
      DilatedPlan plan;
      DPUEMU_ASSERT_OK_AND_ASSIGN(
          const Tensor got, RunDilatedConv(s.layer, dy, dx, s.layout, opts, *s.t, run, &plan));
      EXPECT_EQ(FirstDifference(got, expected), "") << plan.ToString();
      // Every output comes from exactly one phase.
      int64_t outputs = 0;
      for (const DilatedPhase& p : plan.phases) outputs += p.out_h * p.out_w;
      EXPECT_EQ(outputs, plan.out_h * plan.out_w) << plan.ToString();
    }
  }
}

TEST(SeOpsTest, DilatedPlanShape) {
  const Target& t = GetTarget(TargetId::kNPU40XX);
  SeSource src;
  src.h = src.w = 9;
  src.c = 32;
  NceGeometry g;
  g.h = g.w = 9;
  g.c = 32;
  g.ky = g.kx = 3;
  g.pad_top = g.pad_bottom = g.pad_left = g.pad_right = 2;
  // (stride, dilation) -> phases per axis and sub-conv stride: dilation / gcd, stride / gcd.
  const int64_t cases[][4] = {{1, 2, 2, 1}, {2, 2, 1, 1}, {2, 3, 3, 2}, {1, 1, 1, 1}, {3, 2, 2, 3}};
  for (const auto& c : cases) {
    g.stride_y = g.stride_x = c[0];
    SCOPED_TRACE("stride " + std::to_string(c[0]) + ", dilation " + std::to_string(c[1]));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DilatedPlan plan, PlanDilatedConv(src, t, 0, g, c[1], c[1]));
    EXPECT_EQ(plan.step_y, c[2]);
    EXPECT_EQ(plan.stride_y, c[3]);
    EXPECT_EQ(plan.out_h, (9 + 4 - 2 * c[1] - 1) / c[0] + 1);
    EXPECT_EQ(static_cast<int64_t>(plan.phases.size()),
              std::min(c[2], plan.out_h) * std::min(c[2], plan.out_w));
    EXPECT_TRUE(Contains(plan.ToString(), std::to_string(plan.phases.size()) + " phase(s)"));
  }
}

// ---------------------------------------------------------------------------------------------
// Sparse sources, tiles and SE sizes

TEST(SeOpsTest, SparseSourceMapBitsFollowTheSourcePixel) {
  Rng rng(7);
  DPUEMU_ASSERT_OK_AND_ASSIGN(GatherCase s, MakeCase(1, 3, 2, 1, 1, rng));
  // Zero out a pattern so the map is far from all ones.
  for (int64_t i = 0; i < s.layer.input.numel(); i += 3) {
    StoreInt(s.layer.op.in_dtype, s.layer.input.bytes.data(), i, s.layer.op.in_zp);
  }
  s.opts.input_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g, UpsampleNearestGather(src, *s.t, 0, 2, 3));
  const int64_t c = g.c;
  for (int64_t y = 0; y < g.h; ++y) {
    for (int64_t x = 0; x < g.w; ++x) {
      for (int64_t ci = 0; ci < c; ++ci) {
        const int64_t si = ((y / 2) * src.w + x / 3) * c + ci;
        ASSERT_EQ(MapBit(g.map.data(), (y * g.w + x) * c + ci), MapBit(src.map.data(), si))
            << "virtual (" << y << ", " << x << ", " << ci << ")";
      }
    }
  }
}

TEST(SeOpsTest, SplitSourceUsesBasePtrOfTheRowsTile) {
  const Target& t = GetTarget(TargetId::kNPU37XX);
  SeSource src;
  src.h = 5;
  src.w = 3;
  src.c = 64;
  src.layout = SplitRows(5, 2, 32);  // rows 0..2 in tile 0, 3..4 in tile 1
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g, UpsampleNearestGather(src, t, 32, 2, 1));
  ASSERT_EQ(g.se_size, 32);
  const int64_t ses = 2;
  for (int64_t y = 0; y < g.h; ++y) {
    for (int64_t x = 0; x < g.w; ++x) {
      for (int64_t s = 0; s < ses; ++s) {
        const SePointer p = DecodeSePointer(g.table[(y * g.w + x) * ses + s]);
        const int64_t sy = y / 2, row = sy < 3 ? sy : sy - 3;
        EXPECT_EQ(p.tile, sy < 3 ? 0 : 1);
        EXPECT_EQ(p.offset, 32 + (row * 3 + x) * 64 + s * 32);
      }
    }
  }
}

// Inserted zeros (transposed convolution) and constant padding point at the source pixel the
// compiler's SE attributes back-infer (se_attributes.cpp: SEUpsamplingAttr (v - border) / stride
// clamped to the tensor; SEPaddingAttr the nearest border pixel), with BASE_PTR = the tile holding
// that row and the offset restarting at the tile's rows (compute_se_base_ptrs.cpp,
// convert_se_tables_to_constants.cpp): generated sources split over tiles, both targets.
TEST(SeOpsTest, InsertedZerosPointAtTheCompilersPixelOverTiles) {
  const uint64_t base = BaseSeed(7300);
  for (uint64_t i = 0; i < 40; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const Target& t = GetTarget(rng.Bernoulli(0.5) ? TargetId::kNPU37XX : TargetId::kNPU40XX);
    SeSource src;
    src.h = rng.Int(1, 7);
    src.w = rng.Int(1, 6);
    src.c = 16 * rng.Int(1, 4);
    src.dtype = rng.Bernoulli(0.5) ? DType::kU8 : DType::kFP16;
    const int tiles = static_cast<int>(rng.Int(1, std::min<int64_t>(t.tiles, src.h)));
    src.layout = SplitRows(src.h, tiles, 16 * rng.Int(0, 3));
    const int64_t se = 16, ses = src.c / se, eb = DTypeBytes(src.dtype);
    // Tile and local row of every source row, from the layout.
    std::vector<int> tile_of;
    std::vector<int64_t> local, base_of;
    for (size_t p = 0; p < src.layout.tiles.size(); ++p) {
      for (int64_t r = 0; r < src.layout.tiles[p].rows; ++r) {
        tile_of.push_back(static_cast<int>(p));
        local.push_back(r);
        base_of.push_back(src.layout.tiles[p].base_offset);
      }
    }
    auto expect_points_at = [&](const SeGather& g, int64_t y, int64_t x, int64_t sy, int64_t sx) {
      for (int64_t s = 0; s < ses; ++s) {
        const SePointer p = DecodeSePointer(g.table[(y * g.w + x) * ses + s]);
        ASSERT_EQ(p.tile, tile_of[sy]) << "virtual (" << y << ", " << x << ")";
        ASSERT_EQ(p.offset, base_of[sy] + ((local[sy] * src.w + sx) * src.c + s * se) * eb)
            << "virtual (" << y << ", " << x << ")";
      }
    };
    auto clamp = [](int64_t v, int64_t n) { return std::min<int64_t>(std::max<int64_t>(v, 0), n - 1); };

    TransposedConv tc;
    tc.stride_y = rng.Int(1, 3);
    tc.stride_x = rng.Int(1, 3);
    tc.ky = rng.Int(1, 4);
    tc.kx = rng.Int(1, 4);
    tc.pads = Pads{rng.Int(0, tc.ky - 1), rng.Int(0, tc.ky - 1), rng.Int(0, tc.kx - 1),
                   rng.Int(0, tc.kx - 1)};
    tc.output_padding_y = rng.Int(0, tc.stride_y - 1);
    tc.output_padding_x = rng.Int(0, tc.stride_x - 1);
    StatusOr<SeGather> zi = ZeroInsertGather(src, t, se, tc);
    if (zi.ok()) {
      const int64_t by = tc.ky - 1 - tc.pads.top, bx = tc.kx - 1 - tc.pads.left;
      for (int64_t y = 0; y < zi->h; ++y) {
        for (int64_t x = 0; x < zi->w; ++x) {
          const int64_t uy = y - by, ux = x - bx;
          expect_points_at(*zi, y, x, clamp(uy >= 0 ? uy / tc.stride_y : 0, src.h),
                           clamp(ux >= 0 ? ux / tc.stride_x : 0, src.w));
        }
      }
    }
    const Pads pads{rng.Int(0, 3), rng.Int(0, 3), rng.Int(0, 3), rng.Int(0, 3)};
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather pg, PadGather(src, t, se, pads, PadMode::kConstant));
    for (int64_t y = 0; y < pg.h; ++y) {
      for (int64_t x = 0; x < pg.w; ++x) {
        expect_points_at(pg, y, x, clamp(y - pads.top, src.h), clamp(x - pads.left, src.w));
      }
    }
  }
}

TEST(SeOpsTest, DefaultAndForbiddenSeSizes) {
  SeSource src;
  src.h = src.w = 2;
  src.c = 96;
  // 96 = 3 * 32: NPU37XX needs a power of two (32), NPU40XX takes 96 itself.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather a,
                              RollGather(src, GetTarget(TargetId::kNPU37XX), 0, 1, 1));
  EXPECT_EQ(a.se_size, 32);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather b,
                              RollGather(src, GetTarget(TargetId::kNPU40XX), 0, 1, 1));
  EXPECT_EQ(b.se_size, 96);
  const auto bad = RollGather(src, GetTarget(TargetId::kNPU37XX), 48, 1, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status().message(), "se_size = 48 on NPU37XX"));
  EXPECT_TRUE(Contains(bad.status().message(), "power-of-two"));
  const auto nodiv = RollGather(src, GetTarget(TargetId::kNPU40XX), 64, 1, 1);
  ASSERT_FALSE(nodiv.ok());
  EXPECT_TRUE(Contains(nodiv.status().message(), "must divide C = 96"));
}

// ---------------------------------------------------------------------------------------------
// Malformed input

// A small lowered upsample over a source split across both tiles of NPU37XX.
struct Lowered {
  GatherCase s;
  SeGather gather;
  NceLayer vl;
  DpuTask task;
};

StatusOr<Lowered> MakeLowered() {
  Lowered l;
  Rng rng(11);
  DPUEMU_ASSIGN_OR_RETURN(l.s, MakeCase(0, 4, 3, 1, 1, rng, 16));  // NPU37XX, u8 x i8 -> u8
  l.s.layout = SplitRows(4, 2, 16);
  l.s.opts = StorageOptions();
  l.s.se_size = 16;
  SeSource src;
  DPUEMU_ASSIGN_OR_RETURN(src, SourceOf(l.s));
  DPUEMU_ASSIGN_OR_RETURN(l.gather, UpsampleNearestGather(src, *l.s.t, 16, 2, 2));
  l.vl = l.s.layer;
  l.vl.op.g.h = l.gather.h;
  l.vl.op.g.w = l.gather.w;
  l.vl.op.g.pad_top = l.vl.op.g.pad_bottom = l.vl.op.g.pad_left = l.vl.op.g.pad_right = 0;
  DPUEMU_ASSIGN_OR_RETURN(
      l.task, LowerWithGather(l.vl, l.s.layer.input, l.s.layout, l.gather, l.s.opts, *l.s.t));
  return l;
}

// Both the reference and the fast kernels refuse the task with a message containing `what`.
void ExpectRunsFail(const DpuTask& task, const Target& t, const std::string& what) {
  const auto ref = RunReference(task, t);
  ASSERT_FALSE(ref.ok());
  EXPECT_TRUE(Contains(ref.status().message(), what));
  const auto fast = RunZMConv(task, t);
  ASSERT_FALSE(fast.ok());
  EXPECT_TRUE(Contains(fast.status().message(), what));
}

TEST(SeOpsTest, RunRejectsMalformedLoweredTasks) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(const Lowered l, MakeLowered());
  ASSERT_EQ(l.task.input_tiles.size(), 2u);
  {
    DpuTask t = l.task;  // a pointer past the end of tile 1
    t.se_table[5] = *EncodeSePointer(AlignUp(static_cast<int64_t>(t.input_tiles[1].size()), 16), 1);
    ExpectRunsFail(t, *l.s.t, "se_table[5]: DATA_PTR offset");
  }
  {
    DpuTask t = l.task;  // BASE_PTR 2 on a two-tile input
    t.se_table[0] = *EncodeSePointer(16, 2);
    ExpectRunsFail(t, *l.s.t, "se_table[0]: BASE_PTR = 2 is beyond the tile count 2");
  }
  {
    DpuTask t = l.task;
    t.input_map.resize(t.input_map.size() + 16, 0);
    ExpectRunsFail(t, *l.s.t, "activations.map");
  }
  {
    DpuTask t = l.task;
    t.se_table.pop_back();
    ExpectRunsFail(t, *l.s.t, "se_table: ");
  }
}

// LowerWithGather on a gather/setup modified by `edit` fails with a message containing `what`.
void ExpectLowerFails(const std::function<void(Lowered&)>& edit, const std::string& what) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(Lowered l, MakeLowered());
  edit(l);
  const auto task = LowerWithGather(l.vl, l.s.layer.input, l.s.layout, l.gather, l.s.opts, *l.s.t);
  ASSERT_FALSE(task.ok()) << "expected an error containing: " << what;
  EXPECT_TRUE(Contains(task.status().message(), what));
}

TEST(SeOpsTest, LowerWithGatherRejectsMalformedGathers) {
  const int64_t row_bytes = 3 * 16;  // source [4, 3, 16] u8, rows 0-1 in tile 0, 2-3 in tile 1
  ExpectLowerFails([](Lowered& l) { l.gather.table[3] = *EncodeSePointer(0, 0); },
                   "gather.table[3] (virtual pixel (0, 3) SE 0): DATA_PTR offset 0 is outside the "
                   "source rows held by tile 0 (bytes [16, 112))");
  ExpectLowerFails([&](Lowered& l) { l.gather.table[0] = *EncodeSePointer(16 + 2 * row_bytes, 0); },
                   "outside the source rows held by tile 0");
  ExpectLowerFails([](Lowered& l) { l.gather.table[1] = *EncodeSePointer(16, 2); },
                   "BASE_PTR = 2 is beyond the source's tile count 2");
  ExpectLowerFails([](Lowered& l) { l.gather.table[1] |= 1 << 30; }, "bits [31:29]");
  ExpectLowerFails([](Lowered& l) { l.s.opts.input_se_size = 32; },
                   "storage.input_se_size = 32: differs from the gather's se_size 16");
  ExpectLowerFails([](Lowered& l) { l.gather.map.resize(l.gather.map.size() + 16, 0); },
                   "gather.map: ");
  ExpectLowerFails([](Lowered& l) { l.gather.table.pop_back(); }, "gather.table: ");
  ExpectLowerFails([](Lowered& l) { l.gather.map[2] = 0x0F; },
                   "gather.map: the bits of virtual pixel (0, 1) SE 0 must be all 0 or what its "
                   "slot, source pixel (0, 0) SE 0, holds: all 1");
  ExpectLowerFails(
      [](Lowered& l) {
        StoreInt(DType::kU8, l.s.layer.input.bytes.data(), 0, l.s.layer.op.in_zp);
        l.s.opts.input_sparse = true;  // the gather was built for the dense source
      },
      "source pixel (0, 0) SE 0, holds: the source's map bits");
  ExpectLowerFails([](Lowered& l) { l.gather.se_size = 48; }, "gather.se_size = 48 on NPU37XX");
  ExpectLowerFails([](Lowered& l) { l.vl.op.g.h += 1; }, "virtual_layer.op.g: input");
  ExpectLowerFails([](Lowered& l) { l.s.layout.tiles[1].rows = 1; },
                   "layout.tiles: rows add up to 3, the source has H = 4");
  ExpectLowerFails([](Lowered& l) { l.s.layout.tiles[0].base_offset = 8; },
                   "layout.tiles[0].base_offset = 8: must be a multiple of 16");
  ExpectLowerFails([](Lowered& l) { l.s.layout = SplitRows(4, 3); },
                   "layout.tiles: 3 parts, NPU37XX has 2 tiles");
  ExpectLowerFails(
      [](Lowered& l) {
        l.s.layer.input = Tensor(DType::kU8, {4, 2, 16});
      },
      "source: expected u8 [4, 3, 16] (the gather's source)");
}

TEST(SeOpsTest, LowerWithGatherRejectsPointersInsideAnSe) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(Lowered l, MakeLowered());
  // With 32-channel SEs a pointer 16 bytes into an SE is aligned for DATA_PTR but not an SE.
  l.s.layer.input = Tensor(DType::kU8, {4, 3, 32});
  SeSource src;
  DPUEMU_ASSERT_OK_AND_ASSIGN(src, SourceOf(l.s));
  DPUEMU_ASSERT_OK_AND_ASSIGN(l.gather, UpsampleNearestGather(src, *l.s.t, 32, 1, 1));
  l.vl.op.g = {4, 3, 32, l.vl.op.g.k, 1, 1};
  l.vl.weights = Tensor(DType::kI8, {l.vl.op.g.k, 1, 1, 32});
  ASSERT_TRUE(LowerWithGather(l.vl, l.s.layer.input, l.s.layout, l.gather, l.s.opts, *l.s.t).ok());
  l.gather.table[0] = *EncodeSePointer(32, 0);
  const auto task = LowerWithGather(l.vl, l.s.layer.input, l.s.layout, l.gather, l.s.opts, *l.s.t);
  ASSERT_FALSE(task.ok());
  EXPECT_TRUE(Contains(task.status().message(),
                       "DATA_PTR offset 32 is not at a storage element of the source (tile base "
                       "16 + a multiple of 32 bytes)"));
}

TEST(SeOpsTest, GeneratorsRejectOutOfRangeParameters) {
  const Target& t = GetTarget(TargetId::kNPU40XX);
  SeSource src;
  src.h = 4;
  src.w = 4;
  src.c = 16;
  auto expect = [](const Status& st, const std::string& what) {
    ASSERT_FALSE(st.ok()) << "expected an error containing: " << what;
    EXPECT_TRUE(Contains(st.message(), what));
  };
  expect(UpsampleNearestGather(src, t, 0, 0, 1).status(), "fy = 0: must be in [1, 16384]");
  expect(UpsampleNearestGather(src, t, 0, 1, 5000).status(),
         "fx: virtual width W * fx = 20000 must be in [1, 16384]");
  expect(InterpolateNearestGather(src, t, 0, 0, 3, CoordMode::kHalfPixel, NearestMode::kFloor)
             .status(),
         "out_h = 0");
  Pads pads;
  pads.left = -1;
  expect(PadGather(src, t, 0, pads, PadMode::kEdge).status(), "pads.left = -1");
  TransposedConv tc;
  tc.stride_y = 2;
  tc.output_padding_y = 2;
  expect(ZeroInsertGather(src, t, 0, tc).status(),
         "transposed.output_padding_y = 2: must be in [0, 1]");
  tc = TransposedConv();
  tc.ky = 3;
  tc.pads.top = tc.pads.bottom = 5;
  expect(ZeroInsertGather(src, t, 0, tc).status(), "transposed: virtual height");
  tc = TransposedConv();
  tc.kx = 12;
  expect(ZeroInsertGather(src, t, 0, tc).status(), "transposed.kx = 12");
  NceGeometry g;
  g.h = g.w = 4;
  g.c = 16;
  g.ky = 3;
  expect(PlanDilatedConv(src, t, 0, g, 0, 1).status(), "dilation_y = 0");
  expect(PlanDilatedConv(src, t, 0, g, 2, 1).status(),
         "dilation_y: the dilated kernel (ky - 1) * dilation_y + 1 = 5 is larger than the padded "
         "input (4)");
  SeSource bad = src;
  bad.map.assign(8, 0xFF);
  expect(RollGather(bad, t, 0, 1, 1).status(), "source.map: 8 bytes, expected 32");
  bad = src;
  bad.c = 24;
  expect(RollGather(bad, t, 0, 1, 1).status(), "source.c = 24: must be a multiple of 16");
  bad = src;
  bad.dtype = DType::kI32;
  expect(RollGather(bad, t, 0, 1, 1).status(), "source.dtype = i32");
  expect(ParsePadMode("wrap").status(), "pad mode: must be one of constant|edge|reflect|symmetric");
  expect(ParseCoordMode("x").status(), "coordinate_transformation_mode");
}

TEST(SeOpsTest, TransposedHelperChecksItsGather) {
  const Target& t = GetTarget(TargetId::kNPU40XX);
  Rng rng(3);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const GatherCase s, MakeCase(1, 3, 3, 3, 3, rng));
  TransposedConv tc;
  tc.ky = tc.kx = 3;
  tc.stride_y = tc.stride_x = 2;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeSource src, SourceOf(s));
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g, ZeroInsertGather(src, t, 0, tc));
  EXPECT_EQ(g.h, (3 - 1) * 2 + 1 + 2 * 2);
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const NceLayer vl,
      TransposedConvAsZMConv(tc, g, s.layer.op, s.layer.quant, s.layer.weights));
  EXPECT_EQ(vl.op.g.stride_y, 1);
  EXPECT_EQ(vl.op.g.pad_top, 0);
  TransposedConv other = tc;
  other.stride_y = 3;
  const auto mismatch =
      TransposedConvAsZMConv(other, g, s.layer.op, s.layer.quant, s.layer.weights);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_TRUE(Contains(mismatch.status().message(), "is not the zero insertion"));
  const auto wrong_weights = TransposedConvAsZMConv(tc, g, s.layer.op, s.layer.quant,
                                                    Tensor(s.layer.op.w_dtype, {16, 2, 3, g.c}));
  ASSERT_FALSE(wrong_weights.ok());
  EXPECT_TRUE(Contains(wrong_weights.status().message(), "weights: expected"));
}

}  // namespace
}  // namespace dpuemu
