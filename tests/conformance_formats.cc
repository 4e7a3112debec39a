// Conformance with the public NPU compiler (openvinotoolkit/npu_compiler): formats and SE tables.
// Each test names the compiler test whose concrete values it checks; paths under src/vpux_compiler/
// unless they start with tests/. The SE offsets the compiler's unit tests state are the byte
// offsets computeSEOffsets returns (DATA_PTR << 4 in the table); the LIT test states the int32
// table entries themselves (DATA_PTR << 9 | BASE_PTR).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/formats.h"
#include "hw/se_ops.h"
#include "hw/target.h"
#include "runtime/plan.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

// A dense source [h, w, c] of `dtype`, rows split over tiles as given (empty: all in tile 0).
SeSource Source(int64_t h, int64_t w, int64_t c, DType dtype, std::vector<int64_t> rows = {}) {
  SeSource s;
  s.h = h;
  s.w = w;
  s.c = c;
  s.dtype = dtype;
  for (int64_t r : rows) s.layout.tiles.push_back({r, 0});
  return s;
}

std::vector<int32_t> Offsets(const SeGather& g) {
  std::vector<int32_t> out;
  for (int32_t e : g.table) out.push_back(static_cast<int32_t>(DecodeSePointer(e).offset));
  return out;
}

// Rows [begin, end) of a [h, w, ses] table's offsets.
std::vector<int32_t> OffsetRows(const SeGather& g, int64_t begin, int64_t end) {
  const std::vector<int32_t> all = Offsets(g);
  const int64_t per_row = g.w * (g.c / g.se_size);
  return std::vector<int32_t>(all.begin() + begin * per_row, all.begin() + end * per_row);
}

// ---- tests/unit/vpux_compiler/dialect/VPU/se_attr_interface_tests.cpp ----

// nearestAsymmetricParams: SEInterpolateAttr NEAREST, ASYMMETRIC, scale 2, data 1x16x3x3 u8, SE 16.
TEST(SeAttrInterfaceTests, InterpolateNearestAsymmetricModes) {
  const std::vector<int32_t> floor_like = {0,  0,  16, 16, 32,  32,  0,  0,  16,  16,  32,  32,
                                           48, 48, 64, 64, 80,  80,  48, 48, 64,  64,  80,  80,
                                           96, 96, 112, 112, 128, 128, 96, 96, 112, 112, 128, 128};
  const std::vector<int32_t> ceil_like = {0,  16,  16,  32,  32,  32,  48, 64,  64,  80,  80,  80,
                                          48, 64,  64,  80,  80,  80,  96, 112, 112, 128, 128, 128,
                                          96, 112, 112, 128, 128, 128, 96, 112, 112, 128, 128, 128};
  const struct {
    NearestMode mode;
    const std::vector<int32_t>& expected;
  } cases[] = {{NearestMode::kRoundPreferFloor, floor_like},
               {NearestMode::kRoundPreferCeil, ceil_like},
               {NearestMode::kFloor, floor_like},
               {NearestMode::kCeil, ceil_like}};
  for (const Target* t : AllTargets()) {
    for (const auto& c : cases) {
      DPUEMU_ASSERT_OK_AND_ASSIGN(
          const SeGather g, InterpolateNearestGather(Source(3, 3, 16, DType::kU8), *t, 16, 6, 6,
                                                     CoordMode::kAsymmetric, c.mode));
      EXPECT_EQ(Offsets(g), c.expected) << t->name << " " << NearestModeName(c.mode);
    }
  }
}

// nearestAsymmetricParams "Scales" (3), "Element byte sizes" (2) and "Storage element sizes".
TEST(SeAttrInterfaceTests, InterpolateNearestScalesElementAndSeSizes) {
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const SeGather x3, InterpolateNearestGather(Source(3, 3, 16, DType::kU8), Npu40(), 16, 9, 9,
                                                  CoordMode::kAsymmetric, NearestMode::kFloor));
  std::vector<int32_t> want;
  for (int r = 0; r < 3; ++r) {
    for (int rep = 0; rep < 3; ++rep) {
      for (int c = 0; c < 3; ++c) {
        for (int k = 0; k < 3; ++k) want.push_back(48 * r + 16 * c);
      }
    }
  }
  EXPECT_EQ(Offsets(x3), want);

  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const SeGather fp16, InterpolateNearestGather(Source(3, 3, 16, DType::kFP16), Npu40(), 16,
                                                    6, 6, CoordMode::kAsymmetric,
                                                    NearestMode::kFloor));
  EXPECT_EQ(Offsets(fp16), (std::vector<int32_t>{0,   0,   32,  32,  64,  64,  0,   0,   32,
                                                 32,  64,  64,  96,  96,  128, 128, 160, 160,
                                                 96,  96,  128, 128, 160, 160, 192, 192, 224,
                                                 224, 256, 256, 192, 192, 224, 224, 256, 256}));

  DPUEMU_ASSERT_OK_AND_ASSIGN(
      const SeGather se16, InterpolateNearestGather(Source(3, 3, 32, DType::kU8), Npu37(), 16, 6,
                                                    6, CoordMode::kAsymmetric, NearestMode::kFloor));
  EXPECT_EQ(Offsets(se16),
            (std::vector<int32_t>{
                0,   16,  0,   16,  32,  48,  32,  48,  64,  80,  64,  80,  0,   16,  0,   16,  32,
                48,  32,  48,  64,  80,  64,  80,  96,  112, 96,  112, 128, 144, 128, 144, 160, 176,
                160, 176, 96,  112, 96,  112, 128, 144, 128, 144, 160, 176, 160, 176, 192, 208, 192,
                208, 224, 240, 224, 240, 256, 272, 256, 272, 192, 208, 192, 208, 224, 240, 224, 240,
                256, 272, 256, 272}));
}

// upsamplingParams: SEUpsamplingAttr, data 1x16xHxW u8 (case 5: 2-byte elements; case 6: 32
// channels, SE 16). factors = stride - 1; padding [left, top, right, bottom] = the zero
// insertion's border (kernel - 1 - pad, + output_padding). Inserted zeros and the border point at
// the pixel backInferInputCoord picks: the one before, clamped to the tensor.
TEST(SeAttrInterfaceTests, UpsamplingOffsets) {
  struct Case {
    int64_t h, w, c;
    DType dtype;
    TransposedConv tc;
    std::vector<int32_t> expected;
  };
  auto tc = [](int64_t stride, int64_t ky, int64_t kx, Pads pads) {
    TransposedConv t;
    t.stride_y = t.stride_x = stride;
    t.ky = ky;
    t.kx = kx;
    t.pads = pads;
    return t;
  };
  const std::vector<Case> cases = {
      // factors {1, 1}, padding {0, 0, 0, 0}.
      {3, 3, 16, DType::kU8, tc(2, 1, 1, {}),
       {0, 0, 16, 16, 32, 0, 0, 16, 16, 32, 48, 48, 64, 64, 80, 48, 48, 64, 64, 80, 96, 96, 112,
        112, 128}},
      // factors {1, 1}, padding {1, 1, 1, 1}.
      {3, 3, 16, DType::kU8, tc(2, 2, 2, {}),
       {0,  0,  0,  16, 16, 32, 32, 0,  0,  0,  16,  16,  32,  32,  0,  0,  0,
        16, 16, 32, 32, 48, 48, 48, 64, 64, 80, 80,  48,  48,  48,  64,  64, 80,
        80, 96, 96, 96, 112, 112, 128, 128, 96, 96, 96, 112, 112, 128, 128}},
      // factors {1, 1}, padding {0, 2, 2, 1} on 4x4: top 2, bottom 1, left 0, right 2.
      {4, 4, 16, DType::kU8, tc(2, 3, 3, Pads{0, 1, 2, 0}),
       {0,   0,   16,  16,  32,  32,  48,  48,  48,  0,   0,   16,  16,  32,  32,  48,  48,  48,
        0,   0,   16,  16,  32,  32,  48,  48,  48,  0,   0,   16,  16,  32,  32,  48,  48,  48,
        64,  64,  80,  80,  96,  96,  112, 112, 112, 64,  64,  80,  80,  96,  96,  112, 112, 112,
        128, 128, 144, 144, 160, 160, 176, 176, 176, 128, 128, 144, 144, 160, 160, 176, 176, 176,
        192, 192, 208, 208, 224, 224, 240, 240, 240, 192, 192, 208, 208, 224, 224, 240, 240, 240}},
      // factors {2, 2}, padding {1, 1, 1, 1}.
      {3, 3, 16, DType::kU8, tc(3, 2, 2, {}),
       {0,  0,  0,  0,  16,  16,  16,  32,  32,  0,  0,  0,  0,  16,  16,  16,  32,  32,
        0,  0,  0,  0,  16,  16,  16,  32,  32,  0,  0,  0,  0,  16,  16,  16,  32,  32,
        48, 48, 48, 48, 64,  64,  64,  80,  80,  48, 48, 48, 48, 64,  64,  64,  80,  80,
        48, 48, 48, 48, 64,  64,  64,  80,  80,  96, 96, 96, 96, 112, 112, 112, 128, 128,
        96, 96, 96, 96, 112, 112, 112, 128, 128}},
      // Element byte size 2, factors {1, 1}, padding {1, 1, 1, 1}.
      {3, 3, 16, DType::kFP16, tc(2, 2, 2, {}),
       {0,   0,   0,   32,  32,  64,  64,  0,   0,   0,   32,  32,  64,  64,  0,   0,   0,
        32,  32,  64,  64,  96,  96,  96,  128, 128, 160, 160, 96,  96,  96,  128, 128, 160,
        160, 192, 192, 192, 224, 224, 256, 256, 192, 192, 192, 224, 224, 256, 256}},
  };
  for (const Case& c : cases) {
    for (const Target* t : AllTargets()) {
      DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g,
                                  ZeroInsertGather(Source(c.h, c.w, c.c, c.dtype), *t, 16, c.tc));
      EXPECT_EQ(Offsets(g), c.expected) << t->name << " stride " << c.tc.stride_y << " kernel "
                                        << c.tc.ky << "x" << c.tc.kx;
    }
  }
  // Storage element size 16 over 32 channels, factors {1, 1}, padding {1, 1, 1, 1}: two SEs per
  // pixel, each pointing into the same source pixel.
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g,
                              ZeroInsertGather(Source(3, 3, 32, DType::kU8), Npu37(), 16,
                                               tc(2, 2, 2, {})));
  const std::vector<int32_t> row0 = {0, 16, 0, 16, 0, 16, 32, 48, 32, 48, 64, 80, 64, 80};
  const std::vector<int32_t> row3 = {96,  112, 96,  112, 96,  112, 128,
                                     144, 128, 144, 160, 176, 160, 176};
  const std::vector<int32_t> row5 = {192, 208, 192, 208, 192, 208, 224,
                                     240, 224, 240, 256, 272, 256, 272};
  for (int64_t y : {0, 1, 2}) EXPECT_EQ(OffsetRows(g, y, y + 1), row0) << y;
  for (int64_t y : {3, 4}) EXPECT_EQ(OffsetRows(g, y, y + 1), row3) << y;
  for (int64_t y : {5, 6}) EXPECT_EQ(OffsetRows(g, y, y + 1), row5) << y;
}

// paddingParams: SEPaddingAttr, data 1x16x3x3 u8, SE 16; padding [left, top, right, bottom].
TEST(SeAttrInterfaceTests, PaddingOffsets) {
  struct Case {
    PadMode mode;
    Pads pads;  // top, bottom, left, right
    std::vector<int32_t> expected;
  };
  const std::vector<Case> cases = {
      // REFLECT {1, 2, 2, 1}.
      {PadMode::kReflect, Pads{2, 1, 1, 2},
       {112, 96, 112, 128, 112, 96, 64, 48, 64, 80, 64, 48, 16,  0,  16,  32,  16,  0,
        64,  48, 64,  80,  64,  48, 112, 96, 112, 128, 112, 96, 64, 48, 64, 80, 64, 48}},
      // SYMMETRIC {2, 1, 1, 2}.
      {PadMode::kSymmetric, Pads{1, 2, 2, 1},
       {16,  0,  0,  16,  32,  32,  16, 0,  0,  16, 32, 32, 64,  48, 48, 64,  80,  80,
        112, 96, 96, 112, 128, 128, 112, 96, 96, 112, 128, 128, 64, 48, 48, 64, 80, 80}},
  };
  for (const Case& c : cases) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const SeGather g, PadGather(Source(3, 3, 16, DType::kU8), Npu40(), 16, c.pads, c.mode));
    EXPECT_EQ(Offsets(g), c.expected) << PadModeName(c.mode);
  }
  // EDGE {2, 1, 3, 4}: 8x8.
  const std::vector<int32_t> edge = {
      0,  0,  0,  16,  32,  32,  32,  32,  0,  0,  0,  16,  32,  32,  32,  32,
      48, 48, 48, 64,  80,  80,  80,  80,  96, 96, 96, 112, 128, 128, 128, 128,
      96, 96, 96, 112, 128, 128, 128, 128, 96, 96, 96, 112, 128, 128, 128, 128,
      96, 96, 96, 112, 128, 128, 128, 128, 96, 96, 96, 112, 128, 128, 128, 128};
  DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather e, PadGather(Source(3, 3, 16, DType::kU8), Npu40(),
                                                          16, Pads{1, 4, 2, 3}, PadMode::kEdge));
  EXPECT_EQ(Offsets(e), edge);
  // CONSTANT and EDGE {2, 1, 3, 4} over data 1x16x1x3, the tile at offsets [0, 0, 1, 0] with
  // sizes [1, 16, 3, 8] (rows 1-3 of the padded tensor): constant padding points at the nearest
  // source pixel, exactly as edge padding does; only its map bits are 0.
  const std::vector<int32_t> tile = {0, 0, 0, 16, 32, 32, 32, 32, 0, 0, 0, 16, 32, 32, 32, 32,
                                     0, 0, 0, 16, 32, 32, 32, 32};
  for (PadMode mode : {PadMode::kConstant, PadMode::kEdge}) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g, PadGather(Source(1, 3, 16, DType::kU8), Npu37(),
                                                            16, Pads{1, 4, 2, 3}, mode));
    EXPECT_EQ(OffsetRows(g, 1, 4), tile) << PadModeName(mode);
    // Map: only virtual row 1, columns 2-4, read the source under constant padding.
    for (int64_t y = 0; y < g.h; ++y) {
      for (int64_t x = 0; x < g.w; ++x) {
        const bool inside = mode == PadMode::kEdge || (y == 1 && x >= 2 && x <= 4);
        EXPECT_EQ(MapBit(g.map.data(), (y * g.w + x) * 16), inside) << y << ", " << x;
      }
    }
  }
}

// rollParams: SERollAttr, data 1x16x4x4 u8 (2-byte elements, 32 channels with SE 16 as stated).
TEST(SeAttrInterfaceTests, RollOffsets) {
  struct Case {
    int64_t dy, dx, c;
    DType dtype;
    std::vector<int32_t> expected;
  };
  const std::vector<Case> cases = {
      {2, 2, 16, DType::kU8,
       {160, 176, 128, 144, 224, 240, 192, 208, 32, 48, 0, 16, 96, 112, 64, 80}},
      {3, 3, 16, DType::kU8,
       {80, 96, 112, 64, 144, 160, 176, 128, 208, 224, 240, 192, 16, 32, 48, 0}},
      {1, 1, 16, DType::kU8,
       {240, 192, 208, 224, 48, 0, 16, 32, 112, 64, 80, 96, 176, 128, 144, 160}},
      {1, 1, 16, DType::kFP16,
       {480, 384, 416, 448, 96, 0, 32, 64, 224, 128, 160, 192, 352, 256, 288, 320}},
      {2, 2, 32, DType::kU8,
       {320, 336, 352, 368, 256, 272, 288, 304, 448, 464, 480, 496, 384, 400, 416, 432,
        64,  80,  96,  112, 0,   16,  32,  48,  192, 208, 224, 240, 128, 144, 160, 176}},
      {0, 2, 16, DType::kU8,
       {32, 48, 0, 16, 96, 112, 64, 80, 160, 176, 128, 144, 224, 240, 192, 208}},
  };
  for (const Case& c : cases) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(const SeGather g,
                                RollGather(Source(4, 4, c.c, c.dtype), Npu37(), 16, c.dy, c.dx));
    EXPECT_EQ(Offsets(g), c.expected) << "shift " << c.dy << ", " << c.dx;
  }
}

// ---- tests/lit/NPU/dialect/VPUIP/passes/convert_se_tables_to_constants.mlir ----

// SETableInterpolateNearestSingleCluster and SETableInterpolateNearest: NEAREST ASYMMETRIC FLOOR,
// scale 2, data 1x32x3x3xf16, seSize 32. One cluster, then SEGMENTED over 2 clusters (rows 2 + 1):
// the offsets restart in cluster 1 and BASE_PTR = 1 fills the low 9 bits.
TEST(ConvertSeTablesToConstants, InterpolateNearestOneAndTwoClusters) {
  const std::vector<int32_t> one = {
      0,    0,    2048, 2048, 4096,  4096,  0,     0,     2048,  2048,  4096,  4096,
      6144, 6144, 8192, 8192, 10240, 10240, 6144,  6144,  8192,  8192,  10240, 10240,
      12288, 12288, 14336, 14336, 16384, 16384, 12288, 12288, 14336, 14336, 16384, 16384};
  const std::vector<int32_t> two = {
      0,    0,    2048, 2048, 4096,  4096,  0,    0,    2048, 2048, 4096,  4096,
      6144, 6144, 8192, 8192, 10240, 10240, 6144, 6144, 8192, 8192, 10240, 10240,
      1,    1,    2049, 2049, 4097,  4097,  1,    1,    2049, 2049, 4097,  4097};
  for (const Target* t : AllTargets()) {
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const SeGather g1, InterpolateNearestGather(Source(3, 3, 32, DType::kFP16), *t, 32, 6, 6,
                                                    CoordMode::kAsymmetric, NearestMode::kFloor));
    EXPECT_EQ(g1.table, one) << t->name;
    DPUEMU_ASSERT_OK_AND_ASSIGN(
        const SeGather g2,
        InterpolateNearestGather(Source(3, 3, 32, DType::kFP16, {2, 1}), *t, 32, 6, 6,
                                 CoordMode::kAsymmetric, NearestMode::kFloor));
    EXPECT_EQ(g2.table, two) << t->name;
  }
}

// ---- SE sizes: VPUMI37XX/ops/external/runtime_dpu_parser_imports.cpp.inc calc_se_size;
// NPU37XX/NPU40XX dialect/VPU/impl/sparsity_constraint.cpp (erratum E#102555) ----

TEST(SeSize, Npu37xxCannotEncode8192AndTheErratum) {
  EXPECT_FALSE(CheckSeSize(Npu37(), 8192, "se").ok());
  EXPECT_TRUE(CheckSeSize(Npu37(), 4096, "se").ok());
  EXPECT_TRUE(CheckSeSize(Npu40(), 8192, "se").ok());
  // A sparse fp16 input with IC = 8192 read without an SE table cannot use SE size 4096.
  for (const Target* t : AllTargets()) {
    DpuTask task;
    task.op.g.h = task.op.g.w = 1;
    task.op.g.c = 8192;
    task.op.g.k = 16;
    task.op.in_dtype = task.op.w_dtype = DType::kFP16;
    task.op.out_dtype = DType::kFP16;
    task.weights.assign(16 * 8192 * 2, 0);
    task.weight_table.assign(16 * 16, 0);
    for (int k = 0; k < 16; ++k) {
      const uint32_t ptr = static_cast<uint32_t>(k * 8192 * 2), dense = kDenseSparsityPtr;
      for (int b = 0; b < 4; ++b) {
        task.weight_table[k * 16 + b] = static_cast<uint8_t>(ptr >> (8 * b));
        task.weight_table[k * 16 + 4 + b] = static_cast<uint8_t>(dense >> (8 * b));
      }
    }
    task.input_tiles = {std::vector<uint8_t>(8192 * 2, 0)};
    task.input_map.assign(static_cast<size_t>(ActivationMapBytes(8192)), 0);
    task.input_se_size = 4096;
    task.output_se_size = 16;
    const Status s = ValidateTask(task, *t);
    ASSERT_FALSE(s.ok()) << t->name;
    EXPECT_NE(s.message().find("E#102555"), std::string::npos) << s.message();
    task.input_se_size = 2048;
    EXPECT_TRUE(ValidateTask(task, *t).ok()) << t->name << ": " << ValidateTask(task, *t).message();
  }
}

// ---- const/attributes/sparsify.cpp, VPU/transforms/passes/sparsify_weights.cpp,
// tests/lit/NPU/dialect/VPU/passes/sparsify_weights.mlir ----

// Weights compare by value in their storage type: fp16 -0.0 == 0 is dropped like +0.0. Each
// channel's packed run is aligned to VPU_WEIGHT_SET_BYTE_ALIGNMENT (compressType).
TEST(Sparsify, Fp16ComparesByValueAndAlignsEachChannel) {
  Tensor w(DType::kFP16, {2, 1, 1, 16});
  auto set = [&](int64_t i, uint16_t bits) {
    w.bytes[2 * i] = static_cast<uint8_t>(bits);
    w.bytes[2 * i + 1] = static_cast<uint8_t>(bits >> 8);
  };
  for (int64_t i = 0; i < 16; ++i) set(i, 0x8000);  // channel 0: all -0.0
  set(16, 0x3C00);                                   // channel 1: 1.0, -0.0, -2.0
  set(17, 0x8000);
  set(18, 0xC000);
  DPUEMU_ASSERT_OK_AND_ASSIGN(const CompressedWeights cw, CompressWeights(w, 0));
  EXPECT_EQ(cw.nonzeros, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(cw.data_offset, (std::vector<uint32_t>{0, 0}));
  EXPECT_EQ(cw.data.size(), 16u);  // 2 x 2 bytes aligned to 16; channel 0 takes none
  EXPECT_EQ(cw.data[0], 0x00);
  EXPECT_EQ(cw.data[1], 0x3C);
  EXPECT_EQ(cw.data[2], 0x00);
  EXPECT_EQ(cw.data[3], 0xC0);
  EXPECT_EQ(cw.map[16], 0x05);  // channel 1's map: elements 0 and 2
}

// DoNotSparsifyFullyDense / SparsifyFullySparse / SparsifyWithMultiUsers: 16x16x1x1 fp16 weights;
// an all-zero set is never sparsified (sparsity_strategy.cpp shouldSparsifyWeights, ratio 1), a
// set with 6 of 16 weights per channel present is, with a 128-bit map per output channel.
TEST(Sparsify, AllZeroSetsStayDenseAndPartlyZeroSetsAreSparsified) {
  NceOp op;
  op.g.h = op.g.w = 16;
  op.g.c = op.g.k = 16;
  op.in_dtype = op.w_dtype = op.out_dtype = DType::kFP16;
  Tensor zeros(DType::kFP16, {16, 1, 1, 16});
  for (size_t i = 1; i < zeros.bytes.size(); i += 2) zeros.bytes[i] = 0x80;  // -0.0 counts as 0
  DPUEMU_ASSERT_OK_AND_ASSIGN(const WeightDecision z,
                              DecideWeightSparsity(op, zeros, Npu40(), WeightHeuristic::kRatio));
  EXPECT_FALSE(z.sparse) << z.reason;
  EXPECT_NE(z.reason.find("all-zero weight set is never sparsified"), std::string::npos) << z.reason;
  EXPECT_FALSE(DecideWeightSparsity(op, zeros, Npu40(), WeightHeuristic::kSparse).ok());

  Tensor ones(DType::kFP16, {16, 1, 1, 16});
  for (int64_t k = 0; k < 16; ++k) {
    for (int64_t c = 0; c < 6; ++c) ones.bytes[2 * (k * 16 + c) + 1] = 0x3C;
  }
  DPUEMU_ASSERT_OK_AND_ASSIGN(const WeightDecision d,
                              DecideWeightSparsity(op, ones, Npu40(), WeightHeuristic::kRatio));
  EXPECT_TRUE(d.sparse) << d.reason;
  EXPECT_EQ(d.traffic.map_bytes, 16 * 128 / 8);
  EXPECT_EQ(d.traffic.sparse_data_bytes, 16 * 16);  // 6 x 2 bytes, aligned to 16, per channel

  Tensor dense(DType::kFP16, {16, 1, 1, 16});
  for (size_t i = 1; i < dense.bytes.size(); i += 2) dense.bytes[i] = 0x3C;
  DPUEMU_ASSERT_OK_AND_ASSIGN(const WeightDecision full,
                              DecideWeightSparsity(op, dense, Npu40(), WeightHeuristic::kRatio));
  EXPECT_FALSE(full.sparse) << full.reason;
}

}  // namespace
}  // namespace dpuemu
