// Max and average pooling: the reference against textbook pools on dense arrays, the Highway
// kernels against the reference on every compiled target (byte-identical, dense and sparse
// output, both NPU targets), the compiler's PPE values, and malformed ops refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "hw/dpu_task.h"
#include "hw/layer.h"
#include "hw/pool.h"
#include "hw/rng.h"
#include "hwy/targets.h"
#include "kernels/nce.h"
#include "kernels/ref/nce_ref.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

// ---- Textbook pools on dense arrays of real values ----

// Max over the window's inside pixels (padding excluded); values as doubles.
std::vector<double> TextbookMax(const std::vector<double>& x, const NceGeometry& g) {
  std::vector<double> out;
  for (int64_t oy = 0; oy < g.out_h(); ++oy)
    for (int64_t ox = 0; ox < g.out_w(); ++ox)
      for (int64_t c = 0; c < g.c; ++c) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t ky = 0; ky < g.ky; ++ky)
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y - g.pad_top + ky, ix = ox * g.stride_x - g.pad_left + kx;
            if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) m = std::max(m, x[(iy * g.w + ix) * g.c + c]);
          }
        out.push_back(m);
      }
  return out;
}

// Mean over all KY * KX taps, padding reading `pad` (include-pad).
std::vector<double> TextbookMean(const std::vector<double>& x, const NceGeometry& g, double pad) {
  std::vector<double> out;
  for (int64_t oy = 0; oy < g.out_h(); ++oy)
    for (int64_t ox = 0; ox < g.out_w(); ++ox)
      for (int64_t c = 0; c < g.c; ++c) {
        double s = 0;
        for (int64_t ky = 0; ky < g.ky; ++ky)
          for (int64_t kx = 0; kx < g.kx; ++kx) {
            const int64_t iy = oy * g.stride_y - g.pad_top + ky, ix = ox * g.stride_x - g.pad_left + kx;
            s += (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[(iy * g.w + ix) * g.c + c] : pad;
          }
        out.push_back(s / double(g.ky * g.kx));
      }
  return out;
}

std::vector<double> Values(const Tensor& t) {
  std::vector<double> v;
  for (int64_t i = 0; i < t.numel(); ++i) {
    v.push_back(IsFloat(t.dtype) ? double(LoadFloat(t.dtype, t.bytes.data(), i))
                                 : double(LoadInt(t.dtype, t.bytes.data(), i)));
  }
  return v;
}

LayerSpec PoolSpec(NceKind kind, int64_t h, int64_t w, int64_t c, int64_t k, int64_t s, int64_t pad,
                   DType in, DType out) {
  LayerSpec spec;
  spec.name = "pool";
  spec.kind = kind;
  spec.h = h; spec.w = w; spec.c = c; spec.k = c; spec.ky = spec.kx = k; spec.stride = s;
  spec.pad = pad;
  spec.in_dtype = in;
  spec.out_dtype = out;
  return spec;
}

StatusOr<Tensor> RunRef(const NceLayer& layer, const Target& t, bool sparse_out = false) {
  StorageOptions opts;
  opts.output_sparse = sparse_out;
  DpuTask task;
  DPUEMU_ASSIGN_OR_RETURN(task, LowerLayer(layer, opts, t));
  DpuOutput out;
  DPUEMU_ASSIGN_OR_RETURN(out, RunReference(task, t));
  return DenseOutput(out, layer.op.ppe.out_zp);
}

TEST(PoolTextbook, MaxPoolIntegerAndFloat) {
  const uint64_t base = BaseSeed(1300);
  for (uint64_t s = base; s < base + 24; ++s) {
    SCOPED_TRACE(SeedTrace(s));
    Rng rng(s);
    const DType dt = std::vector<DType>{DType::kU8, DType::kI8, DType::kFP16, DType::kBF16}[s % 4];
    const int64_t k = rng.Int(1, 4);
    LayerSpec spec = PoolSpec(NceKind::kMaxPool, rng.Int(k, 9), rng.Int(k, 9), 16 * rng.Int(1, 3), k,
                              rng.Int(1, 3), rng.Int(0, k / 2), dt, dt);
    NceLayer layer;
    DPUEMU_ASSERT_OK_AND_ASSIGN(layer, GenerateLayer(spec, s));
    if (!IsFloat(dt) && s % 2) layer.op.ppe.clamp_hi = DTypeMax(dt) - 30;  // the int clamp applies
    Tensor got;
    DPUEMU_ASSERT_OK_AND_ASSIGN(got, RunRef(layer, s % 3 ? Npu40() : Npu37(), s % 5 == 0));
    std::vector<double> want = TextbookMax(Values(layer.input), layer.op.g);
    const std::vector<double> v = Values(got);
    ASSERT_EQ(v.size(), want.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const double w = std::min(want[i], layer.op.ppe.clamp_hi);
      ASSERT_EQ(v[i], w) << "output " << i;
    }
  }
}

TEST(PoolTextbook, AvgPoolWithinOneStepOfTheMean) {
  const uint64_t base = BaseSeed(1400);
  for (uint64_t s = base; s < base + 32; ++s) {
    SCOPED_TRACE(SeedTrace(s));
    Rng rng(s);
    const DType dt = std::vector<DType>{DType::kU8, DType::kI8, DType::kFP16, DType::kBF16}[s % 4];
    const DType ot = IsFloat(dt) ? std::vector<DType>{DType::kFP16, DType::kBF16, DType::kFP32}[s % 3] : dt;
    const int64_t k = rng.Int(1, 5);
    LayerSpec spec = PoolSpec(NceKind::kAvgPool, rng.Int(k, 9), rng.Int(k, 9), 16 * rng.Int(1, 3), k,
                              rng.Int(1, 3), rng.Int(0, k / 2), dt, ot);
    NceLayer layer;
    DPUEMU_ASSERT_OK_AND_ASSIGN(layer, GenerateLayer(spec, s));
    const double ratio = 0.5 + rng.Uniform();
    const NceGeometry& g = layer.op.g;
    if (IsFloat(dt)) {
      float sc;
      DPUEMU_ASSERT_OK_AND_ASSIGN(sc, AvgPoolFloatScale(ratio, g.ky, g.kx));
      layer.quant.scale.assign(g.k, sc);
    } else {
      PpeIntScale sc;
      DPUEMU_ASSERT_OK_AND_ASSIGN(sc, AvgPoolIntScale(ratio, g.ky, g.kx));
      layer.quant.mult.assign(g.k, sc.mult);
      layer.quant.shift.assign(g.k, sc.shift);
    }
    Tensor got;
    DPUEMU_ASSERT_OK_AND_ASSIGN(got, RunRef(layer, s % 2 ? Npu40() : Npu37(), s % 3 == 0));
    // The integer DPU averages the stored values (no zero point subtracted), pads reading x_zp.
    const std::vector<double> mean = TextbookMean(Values(layer.input), g, layer.op.in_zp);
    const std::vector<double> v = Values(got);
    for (size_t i = 0; i < v.size(); ++i) {
      double want = mean[i] * ratio;
      if (!IsFloat(dt)) {
        want = std::min<double>(std::max<double>(want + layer.op.ppe.out_zp, DTypeMin(ot)), DTypeMax(ot));
        ASSERT_LE(std::fabs(v[i] - want), 1.0) << "output " << i << " want " << want;
      } else {
        const double tol = (ot == DType::kBF16 ? 1.0 / 128 : 1.0 / 512) * std::fabs(want) + 1e-5;
        ASSERT_LE(std::fabs(v[i] - want), tol) << "output " << i << " want " << want;
      }
    }
  }
}

// ---- The compiler's PPE values ----

TEST(PoolPpe, CompilerValues) {
  // LIT tests/lit/NPU/dialect/VPU/passes/cmx_concat_37XX.mlir: a 1x1 u8 AveragePool with the same
  // quantisation in and out has quant_mult = [16384], quant_shift = [14].
  PpeIntScale s;
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, AvgPoolIntScale(1.0, 1, 1));
  EXPECT_EQ(s.mult, 16384);
  EXPECT_EQ(s.shift, 14);
  // approximate(15, 1 / 9): frexp = 0.888.. * 2^-3 -> mult = trunc(0.888.. * 32768), shift 18.
  DPUEMU_ASSERT_OK_AND_ASSIGN(s, AvgPoolIntScale(1.0, 3, 3));
  EXPECT_EQ(s.mult, 29127);
  EXPECT_EQ(s.shift, 18);
  // LIT convert_IE_to_VPU_NCE_37XX_40XX.mlir: fp16 AveragePoolToNCE (2x2) quant_scale = [0.25],
  // AvgPoolToNCE (3x3) quant_scale = [0.1111111111111111].
  float f;
  DPUEMU_ASSERT_OK_AND_ASSIGN(f, AvgPoolFloatScale(1.0, 2, 2));
  EXPECT_EQ(f, 0.25f);
  DPUEMU_ASSERT_OK_AND_ASSIGN(f, AvgPoolFloatScale(1.0, 3, 3));
  EXPECT_EQ(f, static_cast<float>(0.1111111111111111));
  // Out of the approximation's reach.
  EXPECT_FALSE(ApproximateScale15(0.0).ok());
  EXPECT_FALSE(ApproximateScale15(40000.0).ok());
  EXPECT_FALSE(ApproximateScale15(std::nan("")).ok());
  // The registers LowerPpeRegisters writes.
  NceLayer layer;
  DPUEMU_ASSERT_OK_AND_ASSIGN(layer, GenerateLayer(PoolSpec(NceKind::kAvgPool, 8, 8, 32, 3, 1, 1,
                                                            DType::kU8, DType::kU8), 7));
  DpuTask task;
  DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(layer, {}, Npu40()));
  EXPECT_EQ(task.ppe_regs.mult, layer.quant.mult[0]);
  EXPECT_EQ(task.ppe_regs.shift, layer.quant.shift[0]);
  EXPECT_EQ(task.ppe_regs.bias, 0);
  EXPECT_TRUE(task.weight_table.empty());
  DPUEMU_ASSERT_OK_AND_ASSIGN(layer, GenerateLayer(PoolSpec(NceKind::kMaxPool, 8, 8, 32, 3, 2, 1,
                                                            DType::kI8, DType::kI8), 7));
  DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(layer, {}, Npu37()));
  EXPECT_EQ(task.ppe_regs.mult, 1);
  EXPECT_EQ(task.ppe_regs.shift, 0);
  EXPECT_TRUE(task.weight_table.empty());
}

TEST(PoolRef, FloatMaxTotalOrder) {
  // -0 < +0 and the max keeps the bit pattern; a 1x1 window on one pixel pair via 2x1 kernel.
  NceLayer layer;
  DPUEMU_ASSERT_OK_AND_ASSIGN(layer, GenerateLayer(PoolSpec(NceKind::kMaxPool, 2, 1, 16, 1, 1, 0,
                                                            DType::kFP16, DType::kFP16), 3));
  layer.op.g.ky = 2;
  const uint16_t a[4] = {0x8000, 0x0000, 0xBC00, 0x7C00};  // -0, +0, -1, +inf
  const uint16_t b[4] = {0x0000, 0x8000, 0xC000, 0x3C00};  // +0, -0, -2, 1
  const uint16_t want[4] = {0x0000, 0x0000, 0xBC00, 0x7C00};
  for (int i = 0; i < 16; ++i) {
    std::memcpy(layer.input.bytes.data() + 2 * i, &a[i % 4], 2);
    std::memcpy(layer.input.bytes.data() + 32 + 2 * i, &b[i % 4], 2);
  }
  DpuTask task;
  DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(layer, {}, Npu40()));
  DpuOutput out;
  DPUEMU_ASSERT_OK_AND_ASSIGN(out, RunReference(task, Npu40()));
  KernelReport rep;
  DpuOutput simd;
  DPUEMU_ASSERT_OK_AND_ASSIGN(simd, RunNce(task, Npu40(), {}, &rep));
  for (int i = 0; i < 16; ++i) {
    uint16_t r, v;
    std::memcpy(&r, out.data.bytes.data() + 2 * i, 2);
    std::memcpy(&v, simd.data.bytes.data() + 2 * i, 2);
    EXPECT_EQ(r, want[i % 4]) << i;
    EXPECT_EQ(v, want[i % 4]) << i;
  }
}

// ---- SIMD against the reference on every compiled Highway target ----

class PoolSimd : public testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

TEST_P(PoolSimd, MatchesReference) {
  const uint64_t base = BaseSeed(1500);
  for (uint64_t s = base; s < base + 80; ++s) {
    SCOPED_TRACE(SeedTrace(s));
    Rng rng(s);
    const NceKind kind = s % 2 ? NceKind::kMaxPool : NceKind::kAvgPool;
    const DType dt = std::vector<DType>{DType::kU8, DType::kI8, DType::kFP16, DType::kBF16}[(s / 2) % 4];
    DType ot = dt;
    if (kind == NceKind::kAvgPool && IsFloat(dt)) {
      ot = std::vector<DType>{DType::kFP16, DType::kBF16, DType::kFP32}[rng.Int(0, 2)];
    } else if (kind == NceKind::kAvgPool) {
      ot = rng.Int(0, 1) ? DType::kU8 : DType::kI8;
    }
    const int64_t ky = rng.Int(1, 11), kx = rng.Int(1, 6);
    LayerSpec spec = PoolSpec(kind, rng.Int(ky, ky + 12), rng.Int(kx, kx + 12), 16 * rng.Int(1, 6),
                              1, rng.Int(1, 4), 0, dt, ot);
    spec.ky = ky;
    spec.kx = kx;
    spec.leaky_relu = kind == NceKind::kAvgPool && rng.Int(0, 2) == 0;
    NceLayer layer;
    DPUEMU_ASSERT_OK_AND_ASSIGN(layer, GenerateLayer(spec, s));
    NceGeometry& g = layer.op.g;
    g.stride_x = rng.Int(1, 4);
    g.pad_top = rng.Int(0, ky / 2); g.pad_bottom = rng.Int(0, ky / 2);
    g.pad_left = rng.Int(0, kx / 2); g.pad_right = rng.Int(0, kx / 2);
    if (rng.Int(0, 2) == 0 && !(kind == NceKind::kMaxPool && IsFloat(dt))) {
      layer.op.ppe.clamp_lo = IsFloat(ot) ? -0.5 : DTypeMin(ot) + 20;
      layer.op.ppe.clamp_hi = IsFloat(ot) ? 0.75 : DTypeMax(ot) - 40;
    }
    const Target& t = rng.Int(0, 1) ? Npu40() : Npu37();
    StorageOptions opts;
    opts.output_sparse = rng.Int(0, 1);
    DpuTask task;
    DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(layer, opts, t));
    DpuOutput want, got;
    DPUEMU_ASSERT_OK_AND_ASSIGN(want, RunReference(task, t));
    KernelReport rep;
    DPUEMU_ASSERT_OK_AND_ASSIGN(got, RunNce(task, t, {}, &rep));
    ASSERT_EQ(rep.isa, hwy::TargetName(GetParam())) << rep.reason;
    ASSERT_EQ(FirstDifference(got.data, want.data), "") << NceKindName(kind) << " " << DTypeName(dt)
                                                        << " -> " << DTypeName(ot);
    ASSERT_EQ(got.map, want.map);
  }
}

std::string TargetParamName(const testing::TestParamInfo<int64_t>& info) {
  return hwy::TargetName(info.param);
}
INSTANTIATE_TEST_SUITE_P(AllTargets, PoolSimd, testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                         TargetParamName);

// ---- Malformed ops are refused with the rule ----

TEST(PoolValidate, RefusesMalformed) {
  NceLayer mp;
  DPUEMU_ASSERT_OK_AND_ASSIGN(mp, GenerateLayer(PoolSpec(NceKind::kMaxPool, 8, 8, 32, 3, 2, 1,
                                                         DType::kU8, DType::kU8), 11));
  NceLayer ap;
  DPUEMU_ASSERT_OK_AND_ASSIGN(ap, GenerateLayer(PoolSpec(NceKind::kAvgPool, 8, 8, 32, 3, 1, 1,
                                                         DType::kU8, DType::kU8), 11));
  const auto refused = [](NceLayer l, const std::string& part) {
    const Status st = LowerLayer(l, {}, Npu40()).status();
    EXPECT_FALSE(st.ok()) << part;
    EXPECT_TRUE(Contains(st.ToString(), part)) << st.ToString();
  };
  { NceLayer l = mp; l.op.out_dtype = DType::kI8; refused(l, "maxpool writes the input's type"); }
  { NceLayer l = mp; l.op.ppe.out_zp = mp.op.in_zp + 1; refused(l, "must equal the input zero_point"); }
  { NceLayer l = mp; l.op.ppe.leaky_relu = true; refused(l, "maxpool takes no ReLU"); }
  { NceLayer l = mp; l.quant.mult[3] = 2; refused(l, "mult 1, shift 0"); }
  { NceLayer l = mp; l.op.g.k = 48; refused(l, "k must equal c"); }
  { NceLayer l = mp; l.weights = Tensor(DType::kI8, {32, 3, 3, 1}); refused(l, "has no weights"); }
  { NceLayer l = ap; l.op.out_dtype = DType::kI32; l.op.ppe.out_zp = 0; refused(l, "i32"); }
  { NceLayer l = ap; l.quant.shift[5] += 1; refused(l, "every channel the same mult and shift"); }
  { NceLayer l = ap; l.quant.bias[0] = 4; refused(l, "bias 0"); }
  { NceLayer l = ap; l.op.g.pad_top = 2; refused(l, "pads at most ky / 2"); }
  NceLayer fmp;
  DPUEMU_ASSERT_OK_AND_ASSIGN(fmp, GenerateLayer(PoolSpec(NceKind::kMaxPool, 8, 8, 32, 3, 2, 1,
                                                          DType::kFP16, DType::kFP16), 11));
  { NceLayer l = fmp; l.op.ppe.clamp_hi = 1.0; refused(l, "bypasses the float PPE"); }
  { NceLayer l = fmp; l.quant.scale[0] = 2.0f; refused(l, "scale 1"); }
  NceLayer fap;
  DPUEMU_ASSERT_OK_AND_ASSIGN(fap, GenerateLayer(PoolSpec(NceKind::kAvgPool, 8, 8, 32, 3, 1, 1,
                                                          DType::kBF16, DType::kFP16), 11));
  { NceLayer l = fap; l.quant.fbias[2] = 0.5f; refused(l, "bias 0"); }
  // Sparse input is not a pool's (sparsitySupport): refused, sparse output accepted.
  for (const Target* t : {&Npu37(), &Npu40()}) {
    StorageOptions in;
    in.input_sparse = true;
    const Status st = LowerLayer(ap, in, *t).status();
    EXPECT_TRUE(Contains(st.ToString(), "sparse output only")) << st.ToString();
    StorageOptions out;
    out.output_sparse = true;
    EXPECT_TRUE(LowerLayer(mp, out, *t).ok());
  }
  // A task whose registers were changed after lowering.
  DpuTask task;
  DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(mp, {}, Npu40()));
  task.ppe_regs.shift = 3;
  EXPECT_TRUE(Contains(RunReference(task, Npu40()).status().ToString(), "mult 1 and shift 0"));
  KernelReport rep;
  EXPECT_FALSE(RunNce(task, Npu40(), {}, &rep).ok());
  DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(ap, {}, Npu37()));
  task.ppe_regs.mult = 70000;
  EXPECT_TRUE(Contains(RunReference(task, Npu37()).status().ToString(), "ppe_regs.mult"));
  DPUEMU_ASSERT_OK_AND_ASSIGN(task, LowerLayer(ap, {}, Npu37()));
  task.weight_table.assign(32 * 16, 0);
  EXPECT_TRUE(Contains(RunReference(task, Npu37()).status().ToString(), "has none"));
}

}  // namespace
}  // namespace dpuemu
