// Bilinear interpolation on the DPU (hw/se_ops.h InterpolateBilinear*): the compiler's
// NCEInterpolate BILINEAR lowering (an SE table repeating source pixels plus a box-kernel ZMConv)
// run by the reference and by RunZMConv on every Highway target must equal a textbook bilinear
// resize computed here on the dense source, with no SE table and no box kernel: per axis the ONNX
// coordinate transformation as an exact fraction, clamped to the source, gives the two
// neighbours i0, i1 and the weight of i1 as f / K (K = the axis' kernel; f must be whole). The
// arithmetic is the DPU's for these fixed weights: integer inputs accumulate (x - zp) once per tap
// (the weight is 1; i0 for K - f taps, i1 for f taps) in int32, then the PPE with the layer's
// multiplier; float inputs fmaf the taps in kernel order (y, then x) with the weight
// 1 / (KY * KX) rounded to the input type, then the float PPE. The SE table is also checked
// against the compiler's LIT test convert_se_tables_to_constants.mlir (SETableInterpolateBilinear).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/dtype.h"
#include "hw/formats.h"
#include "hw/layer.h"
#include "hw/rng.h"
#include "hw/se_ops.h"
#include "hw/target.h"
#include "kernels/ref/nce_ref.h"
#include "kernels/zmconv.h"
#include "tests/hwy_targets.h"
#include "tests/test_util.h"
#include "tests/textbook_conv.h"

#include "hwy/highway.h"
#include "hwy/targets.h"

namespace dpuemu {
namespace {

int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// One axis of the textbook resize: for each output index, the source index each of the K taps
// reads (K - f taps i0, then f taps i1).
struct AxisTaps {
  std::vector<std::vector<int64_t>> taps;
};
AxisTaps TextbookAxis(int64_t in, int64_t out, int64_t k, CoordMode coord) {
  AxisTaps a;
  for (int64_t o = 0; o < out; ++o) {
    // ONNX Resize: the source coordinate num / den.
    int64_t num = 0, den = 1;
    if (in == out) {
      num = o;
    } else if (coord == CoordMode::kAsymmetric) {
      num = o * in;
      den = out;
    } else if (coord == CoordMode::kAlignCorners) {
      if (out > 1) {
        num = o * (in - 1);
        den = out - 1;
      }
    } else if (coord == CoordMode::kHalfPixel || out > 1) {  // half_pixel, pytorch_half_pixel
      num = (2 * o + 1) * in - out;
      den = 2 * out;
    }
    // Clamped to [0, in - 1] (the coordinate outside the source reads the border pixel).
    if (num < 0) num = 0;
    if (num > (in - 1) * den) num = (in - 1) * den;
    const int64_t i0 = FloorDiv(num, den);
    const int64_t rem = num - i0 * den;
    const int64_t i1 = std::min(i0 + 1, in - 1);
    // The weight of i1, rem / den, in units of 1 / k.
    EXPECT_EQ((rem * k) % den, 0) << "weight " << rem << "/" << den << " is not a multiple of 1/"
                                  << k << " (o " << o << ", in " << in << ", out " << out << ")";
    const int64_t f = rem * k / den;
    std::vector<int64_t> t;
    for (int64_t j = 0; j < k; ++j) t.push_back(j < k - f ? i0 : i1);
    a.taps.push_back(t);
  }
  return a;
}

// The resize of layer.input (the source) with the fixed weights' arithmetic; `conv` is the
// lowered layer (its quant and weight type are the DPU's).
Tensor TextbookBilinear(const Tensor& src, const BilinearInterp& b, const NceLayer& conv) {
  const NceOp& op = conv.op;
  const int64_t c = src.shape[2], w = src.shape[1];
  const AxisTaps ys = TextbookAxis(b.in_h, b.out_h, b.ky, b.coord);
  const AxisTaps xs = TextbookAxis(b.in_w, b.out_w, b.kx, b.coord);
  Tensor out(op.out_dtype, {b.out_h, b.out_w, c});
  const bool integer = IsInteger(op.in_dtype);
  float wf = 0;
  if (!integer) {
    Tensor one(op.w_dtype, {1});
    StoreFloat(op.w_dtype, one.bytes.data(), 0, 1.0f / static_cast<float>(b.ky * b.kx));
    wf = LoadFloat(op.w_dtype, one.bytes.data(), 0);
  }
  for (int64_t oy = 0; oy < b.out_h; ++oy) {
    for (int64_t ox = 0; ox < b.out_w; ++ox) {
      for (int64_t ch = 0; ch < c; ++ch) {
        int32_t iacc = 0;
        float facc = 0.0f;
        for (int64_t sy : ys.taps[oy]) {
          for (int64_t sx : xs.taps[ox]) {
            const int64_t i = (sy * w + sx) * c + ch;
            if (integer) {
              iacc += LoadInt(op.in_dtype, src.bytes.data(), i) - op.in_zp;
            } else {
              facc = std::fmaf(LoadFloat(op.in_dtype, src.bytes.data(), i), wf, facc);
            }
          }
        }
        const int64_t o = (oy * b.out_w + ox) * c + ch;
        if (integer) {
          StoreInt(op.out_dtype, out.bytes.data(), o,
                   TextbookPpeInt(iacc, conv.quant.bias[ch], conv.quant.mult[ch],
                                  conv.quant.shift[ch], op));
        } else {
          StoreFloat(op.out_dtype, out.bytes.data(), o,
                     TextbookPpeFloat(facc, conv.quant.scale[ch], conv.quant.fbias[ch], op));
        }
      }
    }
  }
  return out;
}

constexpr CoordMode kModes[] = {CoordMode::kAsymmetric, CoordMode::kHalfPixel,
                                CoordMode::kAlignCorners, CoordMode::kPytorchHalfPixel};
constexpr DType kDTypes[] = {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16};

TEST(SeBilinearTest, GeneratedResizesMatchTextbookOnBothTargetsAndEveryHighwayTarget) {
  const uint64_t base = BaseSeed(13013);
  for (uint64_t n = 0; n < 60; ++n) {
    const uint64_t seed = base + n;
    SCOPED_TRACE(SeedTrace(seed));
    Rng rng(seed);
    const Target& t = rng.Int(0, 1) ? Npu40() : Npu37();
    const CoordMode coord = kModes[rng.Int(0, 3)];
    const DType dt = kDTypes[rng.Int(0, 3)];
    const int64_t c = 16 * rng.Int(1, 3);
    const int64_t in_h = rng.Int(coord == CoordMode::kAlignCorners ? 2 : 1, 5);
    const int64_t in_w = rng.Int(coord == CoordMode::kAlignCorners ? 2 : 1, 5);
    const int64_t sy = rng.Int(1, 4), sx = rng.Int(1, 4);
    const int64_t out_h = coord == CoordMode::kAlignCorners ? (in_h - 1) * sy + 1 : in_h * sy;
    const int64_t out_w = coord == CoordMode::kAlignCorners ? (in_w - 1) * sx + 1 : in_w * sx;
    const bool integer = IsInteger(dt);

    // The source, with some zero points (so sparse storage has something to drop).
    NceOp op;
    op.in_dtype = dt;
    op.out_dtype = dt;
    if (integer) {
      op.in_zp = static_cast<int32_t>(rng.Int(DTypeMin(dt) / 2, DTypeMax(dt) / 2));
      op.ppe.out_zp = static_cast<int32_t>(rng.Int(DTypeMin(dt) / 2, DTypeMax(dt) / 2));
    }
    Tensor src(dt, {in_h, in_w, c});
    for (int64_t i = 0; i < src.numel(); ++i) {
      const bool zero = rng.Int(0, 3) == 0;
      if (integer) {
        StoreInt(dt, src.bytes.data(), i,
                 zero ? op.in_zp : static_cast<int32_t>(rng.Int(DTypeMin(dt), DTypeMax(dt))));
      } else {
        StoreFloat(dt, src.bytes.data(), i,
                   zero ? 0.0f : static_cast<float>(rng.Int(-4096, 4096)) / 512.0f);
      }
    }
    ChannelQuant q;
    for (int64_t k = 0; k < c; ++k) {
      if (integer) {
        q.mult.push_back(static_cast<int32_t>(rng.Int(16384, 32767)));
        q.shift.push_back(static_cast<int32_t>(rng.Int(14, 16)));
        q.bias.push_back(static_cast<int32_t>(rng.Int(-20, 20)));
      } else {
        q.scale.push_back(static_cast<float>(rng.Int(256, 1024)) / 512.0f);
        q.fbias.push_back(static_cast<float>(rng.Int(-64, 64)) / 64.0f);
      }
    }
    StorageOptions opts;
    opts.input_sparse = rng.Int(0, 1);
    opts.weights_sparse = rng.Int(0, 1);
    opts.output_sparse = rng.Int(0, 1);
    const SourceLayout layout = SplitRows(in_h, static_cast<int>(rng.Int(1, t.tiles)));

    DPUEMU_ASSERT_OK_AND_ASSIGN(BilinearInterp b,
                                PlanInterpolateBilinear(in_h, in_w, out_h, out_w, coord));
    SCOPED_TRACE(std::string(t.name) + " " + DTypeName(dt) + " C=" + std::to_string(c) + " " +
                 b.ToString() + (opts.input_sparse ? ", sparse source" : "") +
                 (opts.weights_sparse ? ", sparse weights" : "") +
                 (opts.output_sparse ? ", sparse output" : ""));
    DPUEMU_ASSERT_OK_AND_ASSIGN(SeSource s, MakeSeSource(src, layout, opts.input_sparse, op.in_zp));
    DPUEMU_ASSERT_OK_AND_ASSIGN(SeGather g, InterpolateBilinearGather(s, t, 0, b));
    DPUEMU_ASSERT_OK_AND_ASSIGN(NceLayer conv, InterpolateBilinearAsZMConv(b, g, op, q));
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuTask task, LowerWithGather(conv, src, layout, g, opts, t));
    const Tensor want = TextbookBilinear(src, b, conv);
    DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput ref_out, RunReference(task, t));
    DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor ref, DenseOutput(ref_out, op.ppe.out_zp));
    ASSERT_EQ(ref.shape, want.shape);
    const std::string diff = FirstDifference(want, ref);
    ASSERT_TRUE(diff.empty()) << "reference vs textbook: " << diff;
    ForEachHighwayTarget([&] {
      KernelReport report;
      DPUEMU_ASSERT_OK_AND_ASSIGN(DpuOutput out, RunZMConv(task, t, {}, &report));
      EXPECT_EQ(out.data.bytes, ref_out.data.bytes) << report.isa;
      EXPECT_EQ(out.map, ref_out.map);
    });
  }
}

// The compiler's LIT test SETableInterpolateBilinear (tests/lit/NPU/dialect/VPUIP/passes/
// convert_se_tables_to_constants.mlir): f16 [3, 3, 32] source, asymmetric scale 2, SE size 32, the
// virtual 7x7 rows split 4 / 3 over two clusters (source rows 0-1 in cluster 0, row 2 in cluster
// 1, offsets restarting per cluster).
TEST(SeBilinearTest, SeTableMatchesCompilerLitTest) {
  Tensor src(DType::kFP16, {3, 3, 32});
  DPUEMU_ASSERT_OK_AND_ASSIGN(BilinearInterp b,
                              PlanInterpolateBilinear(3, 3, 6, 6, CoordMode::kAsymmetric));
  EXPECT_EQ(b.ky, 2);
  EXPECT_EQ(b.kx, 2);
  EXPECT_EQ(b.stride_y, 1);
  SourceLayout layout;
  layout.tiles = {{2, 0}, {1, 0}};
  DPUEMU_ASSERT_OK_AND_ASSIGN(SeSource s, MakeSeSource(src, layout, false, 0));
  DPUEMU_ASSERT_OK_AND_ASSIGN(SeGather g, InterpolateBilinearGather(s, Npu37(), 32, b));
  const std::vector<int32_t> lit = {
      0,    0,    2048,  2048,  4096,  4096,  4096,   //
      0,    0,    2048,  2048,  4096,  4096,  4096,   //
      6144, 6144, 8192,  8192,  10240, 10240, 10240,  //
      6144, 6144, 8192,  8192,  10240, 10240, 10240,  //
      1,    1,    2049,  2049,  4097,  4097,  4097,   //
      1,    1,    2049,  2049,  4097,  4097,  4097,   //
      1,    1,    2049,  2049,  4097,  4097,  4097};
  EXPECT_EQ(g.h, 7);
  EXPECT_EQ(g.w, 7);
  EXPECT_EQ(g.table, lit);
}

// The compiler's example in se_attributes.cpp (backInferInputCoord): pytorch_half_pixel scale 2
// over 3 pixels repeats them 5, 4, 5 times (factor 4, pads 1, kernel 4, stride 2).
TEST(SeBilinearTest, HalfPixelEvenScaleRepeatsAsCompilerExample) {
  Tensor src(DType::kU8, {3, 3, 16});
  for (int64_t i = 0; i < 9; ++i) StoreInt(DType::kU8, src.bytes.data(), i * 16, static_cast<int32_t>(i + 1));
  DPUEMU_ASSERT_OK_AND_ASSIGN(BilinearInterp b,
                              PlanInterpolateBilinear(3, 3, 6, 6, CoordMode::kPytorchHalfPixel));
  EXPECT_EQ(b.factor_y, 4);
  EXPECT_EQ(b.pads.top, 1);
  EXPECT_EQ(b.pads.bottom, 1);
  EXPECT_EQ(b.ky, 4);
  EXPECT_EQ(b.stride_y, 2);
  DPUEMU_ASSERT_OK_AND_ASSIGN(SeSource s, MakeSeSource(src, {}, false, 0));
  DPUEMU_ASSERT_OK_AND_ASSIGN(SeGather g, InterpolateBilinearGather(s, Npu40(), 16, b));
  ASSERT_EQ(g.w, 14);
  std::vector<int64_t> cols;
  for (int64_t x = 0; x < g.w; ++x) cols.push_back(DecodeSePointer(g.table[x]).offset / 16);
  EXPECT_EQ(cols, (std::vector<int64_t>{0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2}));
}

TEST(SeBilinearTest, EncodePpeScale) {
  int32_t m = 0, s = 0;
  DPUEMU_ASSERT_OK(EncodePpeScale(1.0 / 9.0, &m, &s));
  EXPECT_EQ(m, 29127);  // 0.888... x 2^15
  EXPECT_EQ(s, 18);     // 1/9 = 0.888 x 2^-3
  DPUEMU_ASSERT_OK(EncodePpeScale(0.25, &m, &s));  // 0.5 x 2^-1
  EXPECT_EQ(m, 16384);
  EXPECT_EQ(s, 16);
  DPUEMU_ASSERT_OK(EncodePpeScale(0.99999999, &m, &s));  // mantissa rounds up to 1
  EXPECT_EQ(m, 16384);
  EXPECT_EQ(s, 14);
  EXPECT_FALSE(EncodePpeScale(1 << 20, &m, &s).ok());
  EXPECT_FALSE(EncodePpeScale(0, &m, &s).ok());
}

TEST(SeBilinearTest, RefusesWhatTheDpuCannotRun) {
  auto err = [](int64_t ih, int64_t iw, int64_t oh, int64_t ow, CoordMode m) {
    StatusOr<BilinearInterp> b = PlanInterpolateBilinear(ih, iw, oh, ow, m);
    return b.ok() ? std::string("ok") : b.status().message();
  };
  EXPECT_TRUE(Contains(err(3, 3, 5, 6, CoordMode::kAsymmetric), "size[0] = 5"));
  EXPECT_TRUE(Contains(err(3, 3, 5, 6, CoordMode::kAsymmetric), "whole number"));
  EXPECT_TRUE(Contains(err(3, 3, 6, 6, CoordMode::kTfHalfPixelForNN), "tf_half_pixel_for_nn"));
  EXPECT_TRUE(Contains(err(2, 2, 12, 2, CoordMode::kHalfPixel), "kernel limit"));  // 2 x 6 = 12
  EXPECT_TRUE(Contains(err(1, 2, 3, 2, CoordMode::kAlignCorners), "at least 2"));
  EXPECT_TRUE(Contains(err(3, 3, 2, 3, CoordMode::kAsymmetric), "size[0] = 2"));  // downscale
}

}  // namespace
}  // namespace dpuemu
