// Conformance with the public NPU compiler (openvinotoolkit/npu_compiler, paths under
// src/vpux_compiler/ unless they start with tests/): the concrete values its unit and LIT tests
// state, each test naming its source. This file: PPE arithmetic and mixed precision. The other
// areas are in conformance_*.cc beside it (same test binary).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

// A 16x16x16 fp16 -> fp16 1x1 convolution with 16 output channels, as in the compiler's
// convert_IE_to_VPU_NCE LIT tests; weights of `w_dtype` all equal to `w`.
NceLayer LitLayer(DType w_dtype, int32_t w) {
  NceLayer l;
  l.op.g.h = l.op.g.w = l.op.g.c = l.op.g.k = 16;
  l.op.in_dtype = DType::kFP16;
  l.op.w_dtype = w_dtype;
  l.op.out_dtype = DType::kFP16;
  l.input = Tensor(DType::kFP16, {16, 16, 16});
  l.weights = Tensor(w_dtype, {16, 1, 1, 16});
  for (int64_t i = 0; i < l.weights.numel(); ++i) StoreInt(w_dtype, l.weights.bytes.data(), i, w);
  return l;
}

std::vector<uint32_t> TableWords(const DpuTask& task) {
  std::vector<uint32_t> words(task.weight_table.size() / 4);
  std::memcpy(words.data(), task.weight_table.data(), task.weight_table.size());
  return words;
}

// tests/lit/NPU/conversion/passes/IE2VPU/convert_IE_to_VPU_NCE_37XX_40XX.mlir, @BiasFuncForI8Weights:
// fp16 activations, i8 weights of scale 0.078737745098039214 (weight-only quantisation), bias 1.0
// and LeakyRelu 0.1. The compiler's weight table per channel: [16 * k, 0, 1033978177, 1095447755]
// (the scale as fp32 bits, the bias divided by the scale), fp_prelu_alpha = 0.10000000149011612
// (0.1 as fp32). The sparsity word is 0 at that stage; VPUIP patch_weights_table.cpp writes
// SPARSITY_PTR_WHEN_NO_SPARSITY = 0xFFFFFF (VPU/utils/nce_sparsity.hpp) for dense weights, as we do.
TEST(PpeConformance, BiasFuncForI8Weights) {
  const double w_scale = 0.078737745098039214;
  NceLayer l = LitLayer(DType::kI8, 1);
  l.op.ppe.leaky_relu = true;
  l.op.ppe.lrelu_alpha = static_cast<float>(0.1);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const float bias_word, FloatBiasWord(1.0, w_scale));
  l.quant.scale.assign(16, static_cast<float>(w_scale));
  l.quant.fbias.assign(16, bias_word);
  EXPECT_EQ(FloatBits(l.op.ppe.lrelu_alpha), FloatBits(static_cast<float>(0.10000000149011612)));
  // Inputs +1 and -1: accumulators +16 and -16 in fp32.
  for (int64_t i = 0; i < l.input.numel(); ++i) {
    StoreFloat(DType::kFP16, l.input.bytes.data(), i, (i / 16) % 2 ? -1.0f : 1.0f);
  }
  for (const Target* t : AllTargets()) {
    SCOPED_TRACE(t->name);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayer(l, StorageOptions{}, *t));
    const std::vector<uint32_t> w = TableWords(task);
    for (uint32_t k = 0; k < 16; ++k) {
      EXPECT_EQ(w[4 * k + 0], 16 * k);
      EXPECT_EQ(w[4 * k + 1], kDenseSparsityPtr);
      EXPECT_EQ(w[4 * k + 2], 1033978177u);
      EXPECT_EQ(w[4 * k + 3], 1095447755u);
    }
    // The PPE: (acc + bias), x scale, the slope for negatives, each in fp32, then fp16.
    const float pos = (16.0f + bias_word) * static_cast<float>(w_scale);
    const float neg = ((-16.0f + bias_word) * static_cast<float>(w_scale)) * l.op.ppe.lrelu_alpha;
    ASSERT_LT(neg, 0.0f);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput ref, RunReference(task, *t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput simd, RunZMConv(task, *t));
    EXPECT_EQ(simd.data.bytes, ref.data.bytes);
    for (int64_t px = 0; px < 256; ++px) {
      const float want = HalfToFloat(FloatToHalf(px % 2 ? neg : pos));
      ASSERT_EQ(LoadFloat(DType::kFP16, ref.data.bytes.data(), px * 16 + px % 16), want) << "pixel " << px;
    }
  }
}

// tests/lit/NPU/conversion/passes/IE2VPU/convert_IE_to_VPU_NCE_37XX_40XX.mlir, @I4WeightsConvToNCE:
// 16 i4 weights per channel (scale 1.3385416666666667, no bias) are padded to 32 elements = 16
// bytes per channel (PadWithZero), so the table reads [16 * k, 0, 1068193109, 0].
TEST(PpeConformance, I4WeightsConvToNCE) {
  NceLayer l = LitLayer(DType::kI4, 1);
  l.quant.scale.assign(16, static_cast<float>(1.3385416666666667));
  l.quant.fbias.assign(16, 0.0f);
  for (int64_t i = 0; i < l.input.numel(); ++i) {
    StoreFloat(DType::kFP16, l.input.bytes.data(), i, static_cast<float>(i % 7) - 3.0f);
  }
  for (const Target* t : AllTargets()) {
    SCOPED_TRACE(t->name);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayer(l, StorageOptions{}, *t));
    const std::vector<uint32_t> w = TableWords(task);
    for (uint32_t k = 0; k < 16; ++k) {
      EXPECT_EQ(w[4 * k + 0], 16 * k);
      EXPECT_EQ(w[4 * k + 2], 1068193109u);
      EXPECT_EQ(w[4 * k + 3], 0u);
    }
    // Two weights of 1 per byte, then the set's zero padding.
    ASSERT_EQ(task.weights.size(), 16u * 16u);
    for (size_t i = 0; i < task.weights.size(); ++i) {
      EXPECT_EQ(task.weights[i], i % 16 < 8 ? 0x11 : 0x00) << "byte " << i;
    }
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput ref, RunReference(task, *t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput simd, RunZMConv(task, *t));
    EXPECT_EQ(simd.data.bytes, ref.data.bytes);
  }
  // Sub-byte weights are never sparsified (VPU/transforms/passes/sparsify_weights.cpp).
  StorageOptions sparse;
  sparse.weights_sparse = true;
  EXPECT_FALSE(LowerLayer(l, sparse, *AllTargets()[1]).ok());
}

// Const::BitPackAttr::transform (dialect/const/attributes/bit_pack.cpp): element 2i in the low
// nibble, 2i + 1 in the high one, i4 as two's complement nibbles.
TEST(PpeConformance, Int4BitPackOrder) {
  Tensor w(DType::kI4, {1, 1, 1, 32});
  const int32_t values[] = {1, -2, 3, -8, 7, 0, -1, 5};
  for (int64_t i = 0; i < 32; ++i) StoreInt(DType::kI4, w.bytes.data(), i, values[i % 8]);
  const std::vector<uint8_t> packed = PackDenseWeights(w);
  ASSERT_EQ(packed.size(), 16u);
  const uint8_t want[] = {0xE1, 0x83, 0x07, 0x5F};
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(packed[i], want[i % 4]) << "byte " << i;
}

// The fp16 output clamp: NPU37XX registers set ppe_fp16_clamp = 1
// (dialect/VPUMI37XX/ops/external/runtime_dpu_parser_imports.cpp.inc), NPU40XX lowers PPEFpConvert
// with clamp mode on (NPU40XX/dialect/VPUIPDPU/lower_to_registers.hpp): results beyond the fp16
// range, infinities included, become +-65504; NaN stays NaN.
TEST(PpeConformance, Fp16OutputSaturates) {
  NceLayer l = LitLayer(DType::kFP16, 0);
  for (int64_t i = 0; i < l.weights.numel(); ++i) StoreFloat(DType::kFP16, l.weights.bytes.data(), i, 1.0f);
  l.quant.scale.assign(16, 2.0f);  // 60000 * 2 leaves the fp16 range
  l.quant.fbias.assign(16, 0.0f);
  const float inf = std::numeric_limits<float>::infinity();
  const float values[] = {60000.0f, -60000.0f, inf, -inf, std::nanf(""), 1.0f};
  for (int64_t px = 0; px < 256; ++px) {
    for (int64_t c = 0; c < 16; ++c) {
      StoreFloat(DType::kFP16, l.input.bytes.data(), px * 16 + c, c == 0 ? values[px % 6] : 0.0f);
    }
  }
  for (const Target* t : AllTargets()) {
    SCOPED_TRACE(t->name);
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuTask task, LowerLayer(l, StorageOptions{}, *t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput ref, RunReference(task, *t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(const DpuOutput simd, RunZMConv(task, *t));
    EXPECT_EQ(simd.data.bytes, ref.data.bytes);
    const float want[] = {65504.0f, -65504.0f, 65504.0f, -65504.0f, std::nanf(""), 2.0f};
    for (int64_t px = 0; px < 256; ++px) {
      const float got = LoadFloat(DType::kFP16, ref.data.bytes.data(), px * 16 + 3);
      if (std::isnan(want[px % 6])) {
        EXPECT_TRUE(std::isnan(got)) << "pixel " << px;
      } else {
        EXPECT_EQ(got, want[px % 6]) << "pixel " << px;
      }
    }
  }
}

}  // namespace
}  // namespace dpuemu
