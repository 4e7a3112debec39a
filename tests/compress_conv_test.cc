// The compressed convolution (C = 3 or 4 input channels, the compiler's NCECompressConvolution):
// LowerLayer pads C = 3 to 4 and strides each output channel's weight set to 16 elements; the
// reference must equal the textbook convolution on the unpadded layer, and RunZMConv (every
// integer tier, every Highway target) the reference byte for byte, on both targets, for integer,
// float and mixed dtypes, with dense and sparse output. Input and weight sparsity, SE pointers and
// other kinds with C < 16 are refused with the rule.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "tests/hwy_targets.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

#include "hwy/highway.h"
#include "hwy/targets.h"

namespace dpuemu {
namespace {

struct Types {
  DType in, w, out;
};
const Types kTypes[] = {
    {DType::kU8, DType::kI8, DType::kU8},       {DType::kI8, DType::kI8, DType::kI8},
    {DType::kU8, DType::kU8, DType::kI32},      {DType::kFP16, DType::kFP16, DType::kFP16},
    {DType::kFP16, DType::kFP16, DType::kFP32}, {DType::kFP16, DType::kI8, DType::kFP16},
    {DType::kBF16, DType::kBF16, DType::kBF16},
};

// "auto" and every integer tier this CPU runs (KernelOptions::isa).
std::vector<std::string> Tiers() {
  std::vector<std::string> tiers = {"auto"};
  for (const char* isa : {"avx512vnni", "avxvnni", "avx2", "highway"}) {
    KernelOptions o;
    o.isa = isa;
    LayerSpec spec;
    spec.name = "probe";
    spec.h = spec.w = 1;
    spec.c = 4;
    spec.k = 16;
    StatusOr<NceLayer> l = GenerateLayer(spec, 1);
    StatusOr<DpuTask> task = LowerLayer(*l, {}, Npu40());
    if (RunZMConv(*task, Npu40(), o).ok()) tiers.push_back(isa);
  }
  return tiers;
}

TEST(CompressConvTest, GeneratedLayersMatchTextbookAndSimdMatchesReference) {
  const uint64_t base = BaseSeed(4004);
  for (uint64_t n = 0; n < 48; ++n) {
    const uint64_t seed = base + n;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const Target& t = rng.Int(0, 1) ? Npu40() : Npu37();
    const Types ty = kTypes[rng.Int(0, sizeof(kTypes) / sizeof(kTypes[0]) - 1)];
    LayerSpec spec;
    spec.name = "rgb";
    spec.c = rng.Int(3, 4);
    spec.k = 16 * rng.Int(1, 3);
    spec.ky = rng.Int(1, 7);
    spec.kx = rng.Int(1, 7);
    spec.stride = rng.Int(1, 4);
    spec.h = rng.Int(spec.ky, 12);
    spec.w = rng.Int(spec.kx, 12);
    spec.pad = rng.Int(0, std::min(spec.ky, spec.kx) / 2);
    spec.in_dtype = ty.in;
    spec.w_dtype = ty.w;
    spec.out_dtype = ty.out;
    spec.weight_sparsity = rng.Int(0, 1) ? 0.5 : 0.0;
    spec.input_sparsity = rng.Int(0, 1) ? 0.3 : 0.0;
    StorageOptions opts;
    opts.output_sparse = ty.out != DType::kI32 && rng.Int(0, 1);
    SCOPED_TRACE(std::string(t.name) + " " + DTypeName(ty.in) + "x" + DTypeName(ty.w) + "->" +
                 DTypeName(ty.out) + " " + std::to_string(spec.h) + "x" + std::to_string(spec.w) +
                 "x" + std::to_string(spec.c) + " K=" + std::to_string(spec.k) + " kernel " +
                 std::to_string(spec.ky) + "x" + std::to_string(spec.kx) + " stride " +
                 std::to_string(spec.stride) + " pad " + std::to_string(spec.pad) +
                 (opts.output_sparse ? " sparse output" : ""));
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, seed));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, opts, t));

    // The DPU's layout: 4 channels per pixel, weight sets strided to 16 elements.
    const int64_t taps4 = spec.ky * spec.kx * kCompressedInputChannels;
    ASSERT_EQ(task.op.g.c, kCompressedInputChannels);
    ASSERT_EQ(static_cast<int64_t>(task.input_tiles[0].size()),
              spec.h * spec.w * 4 * DTypeBytes(ty.in));
    DPUEMU_ASSERT_OK_AND_ASSIGN(std::vector<WeightTableEntry> table,
                                DecodeWeightTable(task.weight_table, spec.k));
    const int64_t set = ((taps4 + 15) / 16 * 16 * DTypeBits(ty.w) / 8 + 15) / 16 * 16;
    for (int64_t k = 0; k < spec.k; ++k) ASSERT_EQ(table[k].weight_ptr, k * set) << "channel " << k;

    DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor want, TextbookConv(layer, false));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref_out, RunReference(task, t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor ref, DenseOutput(ref_out, layer.op.ppe.out_zp));
    const std::string diff = FirstDifference(want, ref);
    ASSERT_TRUE(diff.empty()) << "reference vs textbook: " << diff;
    ForEachHighwayTarget([&] {
      for (const std::string& isa : Tiers()) {
        for (ConvKernel kernel : {ConvKernel::kAuto, ConvKernel::kDense, ConvKernel::kSparseWeights}) {
          KernelOptions o;
          o.isa = isa;
          o.kernel = kernel;
          KernelReport report;
          DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunZMConv(task, t, o, &report));
          EXPECT_EQ(out.data.bytes, ref_out.data.bytes)
              << "isa " << report.isa << " (" << report.reason << ")";
          EXPECT_EQ(out.map, ref_out.map);
        }
      }
    });
  }
}

TEST(CompressConvTest, RefusesWhatTheCompressedConvolutionCannotDo) {
  LayerSpec spec;
  spec.name = "rgb";
  spec.h = spec.w = 8;
  spec.c = 3;
  spec.k = 16;
  spec.ky = spec.kx = 3;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 1));
  for (int i = 0; i < 3; ++i) {
    StorageOptions o;
    if (i == 0) o.input_sparse = true;
    if (i == 1) o.weights_sparse = true;
    if (i == 2) o.input_se_table = true;
    StatusOr<DpuTask> task = LowerLayer(layer, o, Npu40());
    ASSERT_FALSE(task.ok());
    EXPECT_TRUE(Contains(task.status().message(), "NCECompressConvolutionOp::sparsitySupport"))
        << task.status().message();
  }
  spec.c = 5;
  StatusOr<NceLayer> five = GenerateLayer(spec, 1);
  ASSERT_FALSE(five.ok());
  EXPECT_TRUE(Contains(five.status().message(), "c (input channels) = 5")) << five.status().message();
  spec.c = 4;
  spec.kind = NceKind::kMaxPool;
  StatusOr<NceLayer> pool = GenerateLayer(spec, 1);
  ASSERT_FALSE(pool.ok());
  EXPECT_TRUE(Contains(pool.status().message(), "channels) = 4")) << pool.status().message();
}

}  // namespace
}  // namespace dpuemu
