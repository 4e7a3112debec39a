// The fast ZMConv against the reference DPU, bit for bit, on every compiled Highway target.
#include "kernels/zmconv.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <xmmintrin.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "kernels/ref/nce_ref.h"
#include "tests/hwy_targets.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

struct Types {
  DType in, w, out;
};
const Types kTypes[] = {
    {DType::kU8, DType::kI8, DType::kU8},     {DType::kI8, DType::kI8, DType::kI8},
    {DType::kU8, DType::kU8, DType::kI32},    {DType::kI8, DType::kU8, DType::kU8},
    {DType::kFP16, DType::kFP16, DType::kFP16}, {DType::kFP16, DType::kFP16, DType::kFP32},
    {DType::kBF16, DType::kBF16, DType::kBF16}, {DType::kBF16, DType::kBF16, DType::kFP16},
    // Weight-only quantisation: float activations, integer weights (w - w_zp) in the fp32 MAC.
    {DType::kFP16, DType::kI8, DType::kFP16},   {DType::kFP16, DType::kU8, DType::kFP32},
    {DType::kBF16, DType::kI8, DType::kBF16},   {DType::kBF16, DType::kU8, DType::kFP16},
    // int4 weights (dense only, packed two per byte in the DPU's buffer).
    {DType::kU8, DType::kI4, DType::kU8},       {DType::kI8, DType::kU4, DType::kI32},
    {DType::kFP16, DType::kI4, DType::kFP16},   {DType::kBF16, DType::kU4, DType::kFP32},
};
constexpr int kNumTypes = sizeof(kTypes) / sizeof(kTypes[0]);

// Runs per KernelReport::isa, so tests can check that every tier really ran.
std::map<std::string, int> g_isa_runs;
int g_vnni_sparse_runs = 0;  // runs of the AVX-512 VNNI sparse-weights kernel

// Integer tiers (KernelOptions::isa) this CPU runs, fastest first; "highway" always.
std::vector<std::string> AvailableIntTiers() {
  std::vector<std::string> tiers;
  for (const char* isa : {"amx", "avx512vnni", "avxvnni", "avx2", "highway"}) {
    KernelOptions opts;
    opts.isa = isa;
    LayerSpec spec;
    spec.name = "probe";
    spec.h = spec.w = 1;
    spec.c = spec.k = 16;
    auto l = GenerateLayer(spec, 1);
    auto task = LowerLayer(*l, {}, GetTarget(TargetId::kNPU40XX));
    if (RunZMConv(*task, GetTarget(TargetId::kNPU40XX), opts).ok()) tiers.push_back(isa);
  }
  return tiers;
}

// Runs `layer` in `storage` through the reference and through RunZMConv with each kernel and each
// integer tier in `isas`, on the currently selected Highway target, and compares the dense
// outputs byte for byte.
void ExpectSameAsReference(const NceLayer& layer, const StorageOptions& storage, const Target& target,
                           const std::vector<std::string>& isas = {"highway"}) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref_out, RunReference(task, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor ref, DenseOutput(ref_out, layer.op.ppe.out_zp));
  for (const std::string& isa : isas)
  for (ConvKernel kernel : {ConvKernel::kAuto, ConvKernel::kDense, ConvKernel::kSparseWeights}) {
    SCOPED_TRACE(std::string("kernel ") + ConvKernelName(kernel) + ", isa option " + isa);
    KernelOptions opts;
    opts.kernel = kernel;
    opts.isa = isa;
    KernelReport report;
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunZMConv(task, target, opts, &report));
    ++g_isa_runs[report.isa];
    if (report.kernel == ConvKernel::kSparseWeights && report.isa == "AVX512-VNNI") ++g_vnni_sparse_runs;
    EXPECT_EQ(out.sparse(), storage.output_sparse);
    EXPECT_EQ(out.data.bytes, ref_out.data.bytes) << "storage differs; isa " << report.isa;
    EXPECT_EQ(out.map, ref_out.map);
    DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor got, DenseOutput(out, layer.op.ppe.out_zp));
    const std::string diff = FirstDifference(ref, got);
    ASSERT_TRUE(diff.empty()) << diff << " (isa " << report.isa << ", " << report.reason << ")";
  }
}

TEST(ZMConvTest, GeneratedLayersMatchReferenceOnEveryTarget) {
  const uint64_t base = BaseSeed(7001);
  const double sparsities[] = {0.0, 0.5, 0.9, 1.0};
  ForEachHighwayTarget([&] {
    for (int i = 0; i < 6 * kNumTypes; ++i) {
      const uint64_t seed = base + i;
      SCOPED_TRACE(SeedTrace(seed));
      Rng rng(seed);
      const Types& types = kTypes[i % kNumTypes];
      LayerSpec spec;
      spec.name = "gen";
      spec.c = 16 * rng.Int(1, 3);
      spec.k = 16 * rng.Int(1, 3);
      spec.ky = rng.Int(1, 3) * 2 - 1;
      spec.kx = rng.Bernoulli(0.8) ? spec.ky : rng.Int(1, 5);
      spec.stride = rng.Int(1, 3);
      spec.h = rng.Int(spec.ky, 9);
      // Output widths around the register blocks: 1, 3, 7, 8, 9, 15, 16, 17, 33 ...
      const int64_t ows[] = {1, 3, 7, 8, 9, 15, 16, 17, 33};
      const int64_t ow = ows[rng.Int(0, 8)];
      spec.pad = rng.Int(0, (std::min(spec.ky, spec.kx) - 1) / 2);
      spec.w = std::max<int64_t>((ow - 1) * spec.stride + spec.kx - 2 * spec.pad, 1);
      spec.in_dtype = types.in;
      spec.w_dtype = types.w;
      spec.out_dtype = types.out;
      spec.weight_sparsity = sparsities[rng.Int(0, 3)];
      spec.input_sparsity = sparsities[rng.Int(0, 2)];
      spec.leaky_relu = rng.Bernoulli(0.5);
      DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, seed));
      if (rng.Bernoulli(0.3) && types.out != DType::kI32) {
        layer.op.ppe.clamp_lo = IsFloat(types.out) ? -0.5 : static_cast<double>(layer.op.ppe.out_zp - 20);
        layer.op.ppe.clamp_hi = IsFloat(types.out) ? 1.25 : static_cast<double>(layer.op.ppe.out_zp + 30);
      }
      StorageOptions storage;
      storage.weights_sparse = rng.Bernoulli(0.5) && !IsSubByte(types.w);
      storage.input_sparse = rng.Bernoulli(0.5);
      storage.input_se_table = rng.Bernoulli(0.3);
      storage.output_sparse = types.out != DType::kI32 && rng.Bernoulli(0.5);  // i32 is never sparse
      const Target& target = *AllTargets()[(i / kNumTypes) % 2];
      ExpectSameAsReference(layer, storage, target);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

// Every integer tier this CPU has (AMX, AVX-512 VNNI, AVX-VNNI, AVX2, Highway) on generated
// integer layers: sizes below, at and above the register and AMX tile widths (6 pixels, 16 rows, 32
// pixels per AMX block; 64 taps per A tile, 16 / 32 / 64 channels), every type combination, extreme
// zero points, weights that do and do not fit a signed byte after w - w_zp, sparsity 0-100%.
TEST(ZMConvTest, GeneratedIntegerLayersMatchReferenceOnEveryTier) {
  const std::vector<std::string> tiers = AvailableIntTiers();
  for (const std::string& t : tiers) std::printf("[ tier     ] %s\n", t.c_str());
  ASSERT_FALSE(tiers.empty());
  const uint64_t base = BaseSeed(7301);
  const double sparsities[] = {0.0, 0.5, 0.9, 1.0};
  const DType ins[] = {DType::kU8, DType::kI8};
  const DType ws[] = {DType::kI8, DType::kU8, DType::kI4, DType::kU4};
  const DType outs[] = {DType::kU8, DType::kI8, DType::kI32};
  for (int i = 0; i < 120; ++i) {
    const uint64_t seed = base + i;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    LayerSpec spec;
    spec.name = "gen-int";
    spec.in_dtype = ins[rng.Int(0, 1)];
    spec.w_dtype = ws[rng.Int(0, 3)];
    spec.out_dtype = outs[rng.Int(0, 2)];
    spec.c = 16 * rng.Int(1, 8);
    spec.k = 16 * rng.Int(1, 5);
    spec.ky = rng.Int(1, 3) * 2 - 1;
    spec.kx = rng.Bernoulli(0.8) ? spec.ky : rng.Int(1, 4);
    spec.stride = rng.Int(1, 3);
    const int64_t ows[] = {1, 3, 5, 6, 7, 15, 16, 17, 31, 32, 33, 49};
    const int64_t ow = ows[rng.Int(0, 11)];
    spec.pad = rng.Int(0, std::min(spec.ky, spec.kx) / 2);  // one invocation: pad <= kernel / 2
    spec.w = std::max<int64_t>((ow - 1) * spec.stride + spec.kx - 2 * spec.pad, 1);
    spec.h = rng.Int(std::max<int64_t>(1, spec.ky - 2 * spec.pad), 5);
    spec.weight_sparsity = sparsities[rng.Int(0, 3)];
    spec.input_sparsity = sparsities[rng.Int(0, 2)];
    spec.leaky_relu = rng.Bernoulli(0.5);
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, seed));
    // Extreme zero points: the ends of the types' ranges, or 128 for u8 weights (w - w_zp fits i8).
    if (rng.Bernoulli(0.5)) {
      const bool xs = spec.in_dtype == DType::kI8;
      layer.op.in_zp = rng.Bernoulli(0.5) ? (xs ? -128 : 0) : (xs ? 127 : 255);
    }
    if (spec.w_dtype == DType::kU8 && rng.Bernoulli(0.5)) {
      const int zps[] = {0, 128, 255};
      layer.op.w_zp = zps[rng.Int(0, 2)];
      // Half of these keep every w - w_zp within [-128, 127] (no shift on the dot-product
      // tiers), the others leave the values as generated (shifted, with a per-pixel term).
      if (rng.Bernoulli(0.5)) {
        for (auto& b : layer.weights.bytes) {
          b = static_cast<uint8_t>(std::min(std::max(int{b}, layer.op.w_zp - 128), layer.op.w_zp + 127));
        }
      }
    } else if (spec.w_dtype == DType::kI8 && rng.Bernoulli(0.3)) {
      layer.op.w_zp = rng.Bernoulli(0.5) ? -128 : 127;
    }
    StorageOptions storage;
    storage.weights_sparse = rng.Bernoulli(0.5) && !IsSubByte(spec.w_dtype);
    storage.input_sparse = rng.Bernoulli(0.3);
    storage.output_sparse = spec.out_dtype != DType::kI32 && rng.Bernoulli(0.3);
    const Target& target = *AllTargets()[i % 2];
    ExpectSameAsReference(layer, storage, target, tiers);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Every dot-product tier the CPU has ran every auto and dense case (2 of 3 kernels x 120).
  const std::pair<const char*, const char*> dot[] = {
      {"amx", "AMX-INT8"}, {"avx512vnni", "AVX512-VNNI"}, {"avxvnni", "AVX-VNNI"}, {"avx2", "AVX2"}};
  for (const auto& [isa, shown] : dot) {
    if (std::find(tiers.begin(), tiers.end(), isa) == tiers.end()) continue;
    std::printf("[ ran      ] %s: %d runs\n", shown, g_isa_runs[shown]);
    EXPECT_GE(g_isa_runs[shown], 240) << shown;
  }
  // The AVX-512 VNNI sparse-weights kernel took the forced sparse cases with stride 1.
  if (std::find(tiers.begin(), tiers.end(), "avx512vnni") != tiers.end()) {
    std::printf("[ ran      ] AVX512-VNNI sparse weights: %d runs\n", g_vnni_sparse_runs);
    EXPECT_GE(g_vnni_sparse_runs, 30);
  }
}

TEST(ZMConvTest, ForcedTiersAreCheckedAndReported) {
  LayerSpec spec;
  spec.name = "tier";
  spec.h = spec.w = 4;
  spec.c = spec.k = 16;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 5));
  const Target& target = GetTarget(TargetId::kNPU40XX);
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, {}, target));
  KernelOptions opts;
  opts.isa = "avx1024";
  auto bad = RunZMConv(task, target, opts);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown tier 'avx1024'"), std::string::npos) << bad.status().message();
  const std::vector<std::string> tiers = AvailableIntTiers();
  const std::pair<const char*, const char*> names[] = {
      {"amx", "AMX-INT8"}, {"avx512vnni", "AVX512-VNNI"}, {"avxvnni", "AVX-VNNI"}, {"avx2", "AVX2"}};
  for (const auto& [isa, shown] : names) {
    opts.isa = isa;
    KernelReport report;
    auto out = RunZMConv(task, target, opts, &report);
    if (std::find(tiers.begin(), tiers.end(), isa) == tiers.end()) {
      // A tier this CPU lacks is refused with its name.
      ASSERT_FALSE(out.ok());
      EXPECT_NE(out.status().message().find(std::string("'") + isa + "'"), std::string::npos);
    } else {
      ASSERT_TRUE(out.ok()) << out.status().message();
      EXPECT_EQ(report.isa, shown) << report.reason;
    }
  }
  // The environment variable is read when the option is empty.
  setenv("DPUEMU_ISA", "no-such-tier", 1);
  opts.isa = "";
  auto env = RunZMConv(task, target, opts);
  unsetenv("DPUEMU_ISA");
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("DPUEMU_ISA"), std::string::npos) << env.status().message();
}

TEST(ZMConvTest, LargeTapCountsFlushIntegerAccumulatorsExactly) {
  // 3x3x256 = 2304 taps: nine flushes of the fp32 partial sums; extreme values and zero points
  // make the sums large.
  ForEachHighwayTarget([&] {
    LayerSpec spec;
    spec.name = "deep";
    spec.h = spec.w = 5;
    spec.c = 256;
    spec.k = 32;
    spec.ky = spec.kx = 3;
    spec.in_dtype = DType::kU8;
    spec.w_dtype = DType::kU8;
    spec.out_dtype = DType::kI32;
    spec.weight_sparsity = 0.3;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 99));
    layer.op.in_zp = 0;
    layer.op.w_zp = 255;  // every weight - zp in [-255, 0]
    for (auto& b : layer.input.bytes) b = 255;
    ExpectSameAsReference(layer, StorageOptions{}, GetTarget(TargetId::kNPU40XX));
    StorageOptions sparse;
    sparse.weights_sparse = true;
    ExpectSameAsReference(layer, sparse, GetTarget(TargetId::kNPU37XX));
  });
}

TEST(ZMConvTest, WideRowsAndLargeLeakySumsMatchReference) {
  // Output rows longer than the dense kernels' epilogue chunk (60 pixels on AVX2), and integer
  // sums past 2^26 with leaky ReLU (the vector epilogue hands those pixels to the scalar PPE).
  ForEachHighwayTarget([&] {
    for (const DType out : {DType::kU8, DType::kI8, DType::kFP16}) {
      for (const int64_t k : {1, 3}) {
        LayerSpec spec;
        spec.name = "wide";
        spec.h = 3;
        spec.w = 131;
        spec.c = 32;
        spec.k = 32;
        spec.ky = spec.kx = k;
        spec.pad = k / 2;
        spec.in_dtype = out == DType::kFP16 ? DType::kFP16 : DType::kU8;
        spec.w_dtype = out == DType::kFP16 ? DType::kFP16 : DType::kI8;
        spec.out_dtype = out;
        spec.leaky_relu = out != DType::kFP16;
        DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 131 + k));
        ExpectSameAsReference(layer, StorageOptions{}, GetTarget(TargetId::kNPU40XX), AvailableIntTiers());
        if (::testing::Test::HasFatalFailure()) return;
      }
      if (out == DType::kFP16) continue;
      // A leaky product past 2^53: (acc + bias) * mult * lrelu_mult = -(185 * 2^46 + 1), so the
      // exact value is -(92.5 + 2^-47), -93 after rounding; a double product rounds it to -92.5,
      // which rounds half to even to -92. The kernels must take the exact path.
      LayerSpec spec;
      spec.name = "leaky-tie";
      spec.h = 2;
      spec.w = 7;
      spec.c = 16;
      spec.k = 16;
      spec.in_dtype = DType::kU8;
      spec.w_dtype = DType::kI8;
      spec.out_dtype = out;
      spec.leaky_relu = true;
      DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 185));
      for (auto& b : layer.input.bytes) b = static_cast<uint8_t>(layer.op.in_zp);  // acc = 0
      layer.op.ppe.lrelu_mult = 1341;
      layer.op.ppe.lrelu_shift = 7;
      layer.op.ppe.out_zp = out == DType::kU8 ? 100 : 0;
      layer.op.ppe.clamp_lo = -1e9;
      layer.op.ppe.clamp_hi = 1e9;
      for (auto& m : layer.quant.mult) m = 45997;
      for (auto& sh : layer.quant.shift) sh = 40;
      for (auto& b : layer.quant.bias) b = -211053833;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, {}, GetTarget(TargetId::kNPU40XX)));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, GetTarget(TargetId::kNPU40XX)));
      const int expect = out == DType::kU8 ? 100 - 93 : -93;
      ASSERT_EQ(static_cast<int>(out == DType::kU8 ? ref.data.bytes[0]
                                                   : static_cast<int8_t>(ref.data.bytes[0])),
                expect);
      ExpectSameAsReference(layer, StorageOptions{}, GetTarget(TargetId::kNPU40XX));
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

TEST(ZMConvTest, LayersIgnoreTheCallersFloatingPointEnvironment) {
  // A caller running with another rounding mode (fesetround) or with flush-to-zero and
  // denormals-are-zero (what -ffast-math code sets at startup) gets the same bytes, and gets its
  // own environment back (hw/fp_env.h).
  ForEachHighwayTarget([&] {
    for (const DType out : {DType::kU8, DType::kI8, DType::kI32, DType::kFP16, DType::kBF16}) {
      LayerSpec spec;
      spec.name = "rounding";
      spec.h = 5;
      spec.w = 70;
      spec.c = 32;
      spec.k = 32;
      spec.ky = spec.kx = 3;
      spec.pad = 1;
      spec.in_dtype = IsFloat(out) ? out : DType::kU8;
      spec.w_dtype = IsFloat(out) ? out : DType::kI8;
      spec.out_dtype = out;
      spec.leaky_relu = out == DType::kU8 || out == DType::kI8;
      spec.weight_sparsity = 0.5;
      DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 4242));
      if (IsFloat(out)) {
        // Subnormal fp16/bf16 inputs (which DAZ would read as 0) and inexact sums.
        for (size_t i = 0; i + 1 < layer.input.bytes.size(); i += 14) {
          layer.input.bytes[i] = static_cast<uint8_t>(i * 7 + 1);
          layer.input.bytes[i + 1] = static_cast<uint8_t>(i % 3);
        }
      }
      const Target& target = GetTarget(TargetId::kNPU40XX);
      StorageOptions storage;
      storage.weights_sparse = true;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, target));
      const unsigned csr = _mm_getcsr();
      for (const int mode : {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO}) {
        // Tiny float products leave the normal fp32 range, where only the storage's own kernel
        // is exact: the automatic choice stands in for the dense kernel there.
        for (ConvKernel kernel : {IsFloat(out) ? ConvKernel::kAuto : ConvKernel::kDense,
                                  ConvKernel::kSparseWeights}) {
          KernelOptions opts;
          opts.kernel = kernel;
          ASSERT_EQ(std::fesetround(mode), 0);
          _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ | DAZ
          const unsigned caller = _mm_getcsr();
          StatusOr<DpuOutput> got = RunZMConv(task, target, opts);
          StatusOr<DpuOutput> again = RunReference(task, target);
          const unsigned after = _mm_getcsr();
          _mm_setcsr(csr);
          EXPECT_EQ(after, caller) << "the caller's MXCSR was not restored";
          DPUEMU_ASSERT_OK(got.status());
          DPUEMU_ASSERT_OK(again.status());
          EXPECT_EQ(got->data.bytes, ref.data.bytes)
              << "rounding mode " << mode << ", kernel " << ConvKernelName(kernel);
          EXPECT_EQ(again->data.bytes, ref.data.bytes) << "reference, rounding mode " << mode;
        }
      }
    }
  });
}

// A NaN whose fp32 payload has its low 16 bits >= 0x8000 (fp16 0x7FFF: every mantissa bit set)
// must stay NaN in a bf16 output: rounding its bit pattern would carry into the sign (-0.0).
TEST(ZMConvTest, NanPayloadsStayNanInBf16Outputs) {
  LayerSpec spec;
  spec.name = "nan";
  spec.h = spec.w = 4;
  spec.c = spec.k = 16;
  spec.ky = spec.kx = 1;
  spec.in_dtype = spec.w_dtype = DType::kFP16;
  spec.out_dtype = DType::kBF16;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 5));
  for (int i : {0, 17, 40}) {  // pixels 0, 1 and 2: one NaN channel each
    layer.input.bytes[2 * i] = 0xFF;
    layer.input.bytes[2 * i + 1] = 0x7F;
  }
  const Target& target = GetTarget(TargetId::kNPU40XX);
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, {}, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, target));
  ForEachHighwayTarget([&] {
    for (ConvKernel kernel : {ConvKernel::kDense, ConvKernel::kSparseWeights}) {
      KernelOptions opts;
      opts.kernel = kernel;
      const StatusOr<DpuOutput> got = RunZMConv(task, target, opts);
      if (!got.ok()) continue;  // a kernel that would change the result is refused
      EXPECT_EQ(got->data.bytes, ref.data.bytes) << ConvKernelName(kernel);
    }
  });
}

TEST(ZMConvTest, InfInputKeepsTheStorageSemantics) {
  LayerSpec spec;
  spec.name = "inf";
  spec.h = spec.w = 4;
  spec.c = spec.k = 16;
  spec.ky = spec.kx = 1;
  spec.in_dtype = spec.w_dtype = DType::kFP16;
  spec.out_dtype = DType::kFP32;
  spec.weight_sparsity = 0.5;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 5));
  StoreFloat(DType::kFP16, layer.input.bytes.data(), 3, std::numeric_limits<float>::infinity());
  const Target& target = GetTarget(TargetId::kNPU40XX);
  for (bool sparse : {false, true}) {
    StorageOptions storage;
    storage.weights_sparse = sparse;
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, target));
    KernelReport report;
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput got, RunZMConv(task, target, {}, &report));
    EXPECT_EQ(got.data.bytes, ref.data.bytes);
    EXPECT_EQ(report.kernel, sparse ? ConvKernel::kSparseWeights : ConvKernel::kDense) << report.reason;
    KernelOptions cross;
    cross.kernel = sparse ? ConvKernel::kDense : ConvKernel::kSparseWeights;
    const auto refused = RunZMConv(task, target, cross);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("kernel"), std::string::npos);
  }
  // Dense storage multiplies inf by the +0.0 weights (NaN); sparse storage skips them.
  StorageOptions dense, sparse;
  sparse.weights_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask td, LowerLayer(layer, dense, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask ts, LowerLayer(layer, sparse, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput od, RunZMConv(td, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput os, RunZMConv(ts, target));
  EXPECT_NE(od.data.bytes, os.data.bytes);
}

TEST(ZMConvTest, AutoChoiceFollowsDensity) {
  const Target& target = GetTarget(TargetId::kNPU37XX);
  for (double sparsity : {0.0, 0.9}) {
    LayerSpec spec = *StandardLayer("r50_3x3_14");
    spec.h = spec.w = 4;
    spec.weight_sparsity = sparsity;
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 3));
    StorageOptions storage;
    storage.weights_sparse = true;
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
    KernelReport report;
    KernelOptions highway;  // the Highway tier's choice follows density
    highway.isa = "highway";
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunZMConv(task, target, highway, &report));
    EXPECT_EQ(report.kernel, sparsity > 0.5 ? ConvKernel::kSparseWeights : ConvKernel::kDense)
        << report.reason;
    EXPECT_FALSE(report.isa.empty());
    EXPECT_NEAR(report.weight_density, 1 - sparsity, 0.05);
    // On the AVX-512 tiers (AMX hosts run VNNI's sparse kernel) 10% density takes the VNNI
    // sparse-weights kernel; on AVX-VNNI the dense kernel is faster at any density.
    for (const std::string& isa : AvailableIntTiers()) {
      if (isa == "avx2" || isa == "highway") continue;
      KernelOptions opts;
      opts.isa = isa;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput o, RunZMConv(task, target, opts, &report));
      const bool vnni_sparse = (isa == "avx512vnni" || isa == "amx") && sparsity > 0.5;
      EXPECT_EQ(report.kernel, vnni_sparse ? ConvKernel::kSparseWeights : ConvKernel::kDense) << report.reason;
      EXPECT_EQ(report.isa, vnni_sparse ? "AVX512-VNNI" : report.isa);
      EXPECT_EQ(o.data.bytes, out.data.bytes);
    }
  }
}

TEST(ZMConvTest, RejectsMalformedTasksLikeTheReference) {
  LayerSpec spec = *StandardLayer("r50_3x3_14");
  spec.h = spec.w = 4;
  spec.weight_sparsity = 0.5;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 4));
  const Target& target = GetTarget(TargetId::kNPU37XX);
  StorageOptions storage;
  storage.weights_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
  DpuTask bad = task;
  bad.weight_table.pop_back();
  EXPECT_FALSE(RunZMConv(bad, target).ok());
  bad = task;
  bad.weights.resize(16);
  const auto r = RunZMConv(bad, target);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("weight"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(ParseConvKernel("fastest").ok());
}

}  // namespace
}  // namespace dpuemu

namespace dpuemu {
namespace {

TEST(ZMConvTest, PreparedWeightsAreReusedAndChecked) {
  LayerSpec spec = *StandardLayer("r50_3x3_14");
  spec.h = spec.w = 5;
  spec.weight_sparsity = 0.8;
  const Target& target = GetTarget(TargetId::kNPU40XX);
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 11));
  StorageOptions storage;
  storage.weights_sparse = true;
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(PreparedWeights prepared, PreparedWeights::Create(task, target));
  EXPECT_NEAR(prepared.weight_density(), 0.2, 0.05);
  // A second input through the same prepared weights.
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer other, GenerateLayer(spec, 12));
  other.weights = layer.weights;
  other.quant = layer.quant;
  other.op = layer.op;
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task2, LowerLayer(other, storage, target));
  for (const DpuTask* t : {&task, &task2}) {
    for (ConvKernel kernel : {ConvKernel::kDense, ConvKernel::kSparseWeights}) {
      KernelOptions opts;
      opts.kernel = kernel;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput got, RunZMConv(*t, target, opts, nullptr, &prepared));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(*t, target));
      EXPECT_EQ(got.data.bytes, ref.data.bytes);
    }
  }
  // A row slice of the layer (other input height and vertical pads) shares the prepared weights,
  // on every tier and kernel; another input width is refused.
  NceLayer rows = layer;
  rows.op.g.h = 3;
  rows.op.g.pad_top = 0;
  rows.op.g.pad_bottom = 0;
  const int64_t row_bytes = layer.op.g.w * layer.op.g.c;
  rows.input = Tensor(layer.input.dtype, {3, layer.op.g.w, layer.op.g.c});
  std::copy_n(layer.input.bytes.begin() + row_bytes, 3 * row_bytes, rows.input.bytes.begin());
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task_rows, LowerLayer(rows, storage, target));
  for (const std::string& isa : AvailableIntTiers()) {
    for (ConvKernel kernel : {ConvKernel::kAuto, ConvKernel::kSparseWeights}) {
      SCOPED_TRACE(isa + " " + ConvKernelName(kernel));
      KernelOptions opts;
      opts.kernel = kernel;
      opts.isa = isa;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput got, RunZMConv(task_rows, target, opts, nullptr, &prepared));
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task_rows, target));
      EXPECT_EQ(got.data.bytes, ref.data.bytes);
    }
  }
  NceLayer narrow = rows;
  narrow.op.g.w = 4;
  narrow.input = Tensor(layer.input.dtype, {3, 4, layer.op.g.c});
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task_narrow, LowerLayer(narrow, storage, target));
  EXPECT_FALSE(RunZMConv(task_narrow, target, {}, nullptr, &prepared).ok());
  // Weights that differ from the prepared ones are refused.
  DpuTask changed = task;
  changed.weights[0] ^= 1;
  const auto r = RunZMConv(changed, target, {}, nullptr, &prepared);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("prepared weights"), std::string::npos);
}

}  // namespace
}  // namespace dpuemu

namespace dpuemu {
namespace {

// Every fp16 bit pattern (inf, NaN payloads, subnormals, -0) passes through the input conversion
// of the kernels: a 1x1 identity convolution with sparse weights (one present weight per output
// channel) makes each output the input value itself.
TEST(ZMConvTest, EveryHalfInputPatternConvertsLikeTheReference) {
  LayerSpec spec;
  spec.name = "identity";
  spec.h = spec.w = 64;
  spec.c = spec.k = 16;
  spec.in_dtype = spec.w_dtype = DType::kFP16;
  spec.out_dtype = DType::kFP32;
  DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer layer, GenerateLayer(spec, 1));
  for (int64_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    std::memcpy(layer.input.bytes.data() + 2 * i, &h, 2);
  }
  for (int64_t k = 0; k < 16; ++k) {
    for (int64_t c = 0; c < 16; ++c) StoreFloat(DType::kFP16, layer.weights.bytes.data(), k * 16 + c, k == c ? 1.0f : 0.0f);
    layer.quant.scale[k] = 1.0f;
    layer.quant.fbias[k] = 0.0f;
  }
  StorageOptions storage;
  storage.weights_sparse = true;
  const Target& target = GetTarget(TargetId::kNPU40XX);
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerLayer(layer, storage, target));
  DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref, RunReference(task, target));
  ForEachHighwayTarget([&] {
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput got, RunZMConv(task, target));
    const std::string diff = FirstDifference(ref.data, got.data);
    EXPECT_TRUE(diff.empty()) << diff;
  });
}

}  // namespace
}  // namespace dpuemu
