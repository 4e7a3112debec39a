// The cost model (runtime/cost.h): the targets of issue 11 on VPUNN's calibration table, and
// properties on layer shapes the table does not hold (strides 2, 5x5, small and large channels).
#include "runtime/cost.h"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "runtime/cost_calibration.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

TEST(CostModel, MeetsTheVpunnTargetsPerTargetAndDtype) {
  StatusOr<std::vector<CalibrationRow>> rows = ReadCalibration("tests/data/vpunn-calibration.tsv");
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  const std::vector<CalibrationSummary> s = Summarise(*rows);
  ASSERT_EQ(s.size(), 4u) << SummaryToText(s);
  for (const CalibrationSummary& x : s) {
    EXPECT_GE(x.within_25, 0.75) << x.device << " " << x.dtype << "\n" << SummaryToText(s);
    EXPECT_LE(x.median_abs_log2, 0.25) << x.device << " " << x.dtype << "\n" << SummaryToText(s);
  }
}

TEST(CostModel, CalibrationReaderRefusesMalformedTables) {
  const std::string path = testing::TempDir() + "/bad.tsv";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("name\tdevice\tdtype\tmode\twsp\twsp_en\tin\tout\tk\ts\tcycles\n"
             "x\tVPU_9\tint8\tCUBOID_16x16\t0\t0\t8x8x16\t8x8x16\t1x1\t1x1\t100\n",
             f);
  std::fclose(f);
  StatusOr<std::vector<CalibrationRow>> rows = ReadCalibration(path);
  ASSERT_FALSE(rows.ok());
  EXPECT_TRUE(Contains(rows.status().message(), "device VPU_9")) << rows.status().message();
  EXPECT_FALSE(ReadCalibration(path + ".missing").ok());
}

// A convolution workload of rows x cols x k outputs reading c channels through a kernel x kernel
// window at `stride`, dense unless told; bytes as the planner counts them.
CostWorkload Conv(int64_t rows, int64_t cols, int64_t c, int64_t k, int64_t kernel,
                  int64_t stride, DType dt) {
  CostWorkload w;
  w.in_dtype = w.w_dtype = w.out_dtype = dt;
  w.rows = rows;
  w.cols = cols;
  w.channels = k;
  w.taps = kernel * kernel * c;
  const int64_t b = DTypeBytes(dt);
  w.input_bytes = ((rows - 1) * stride + kernel) * ((cols - 1) * stride + kernel) * c * b;
  w.weight_bytes = EstimatedWeightBytes(k, w.taps, dt, false, 0);
  w.output_bytes = rows * cols * k * b;
  return w;
}

void Sparsify(CostWorkload* w, double sparsity, DType dt) {
  w->weight_sparse = true;
  w->weight_density = 1 - sparsity;
  w->weight_bytes = EstimatedWeightBytes(w->channels, w->taps, dt, true,
                                         (1 - sparsity) * static_cast<double>(w->taps));
}

const std::vector<CostWorkload>& Shapes() {
  static const std::vector<CostWorkload> shapes = [] {
    std::vector<CostWorkload> v;
    for (DType dt : {DType::kI8, DType::kFP16}) {
      v.push_back(Conv(28, 28, 64, 64, 5, 1, dt));     // 5x5
      v.push_back(Conv(28, 28, 64, 128, 3, 2, dt));    // stride 2
      v.push_back(Conv(14, 14, 32, 32, 5, 2, dt));     // 5x5 stride 2, few channels
      v.push_back(Conv(56, 56, 16, 16, 3, 1, dt));     // 16 channels
      v.push_back(Conv(7, 7, 2048, 512, 1, 1, dt));    // many input channels
      v.push_back(Conv(7, 7, 512, 2048, 1, 1, dt));    // many output channels
      v.push_back(Conv(13, 17, 48, 80, 3, 1, dt));     // odd sizes
    }
    return v;
  }();
  return shapes;
}

TEST(CostModel, CostGrowsWithMacs) {
  for (const Target* t : AllTargets()) {
    for (DType dt : {DType::kI8, DType::kFP16}) {
      int64_t last = 0;
      for (int64_t k : {64, 128, 256, 512, 1024}) {
        const int64_t c = WorkloadCost(Conv(14, 14, 128, k, 3, 1, dt), *t).cycles;
        EXPECT_GT(c, last) << t->name << " " << DTypeName(dt) << " K=" << k;
        last = c;
      }
      last = 0;
      for (int64_t rows : {4, 8, 16, 32, 64}) {
        const int64_t c = WorkloadCost(Conv(rows, 32, 64, 64, 3, 1, dt), *t).cycles;
        EXPECT_GT(c, last) << t->name << " " << DTypeName(dt) << " rows=" << rows;
        last = c;
      }
      // A 5x5 kernel does 25/9 of a 3x3's MACs: the compute-bound cost grows about as much.
      const WorkloadCostTerms k3 = WorkloadCost(Conv(28, 28, 64, 64, 3, 1, dt), *t);
      const WorkloadCostTerms k5 = WorkloadCost(Conv(28, 28, 64, 64, 5, 1, dt), *t);
      EXPECT_NEAR(k5.mac_cycles / k3.mac_cycles, 25.0 / 9.0, 1e-9);
      EXPECT_GT(k5.cycles, 2 * k3.cycles) << t->name;
    }
  }
}

TEST(CostModel, ComputeBoundCyclesStayNearTheIdealMacRate) {
  // Dense compute-bound shapes: between the ideal MAC time and 3x it (int8) / 6x (fp16).
  for (const Target* t : AllTargets()) {
    for (const CostWorkload& w : Shapes()) {
      const WorkloadCostTerms c = WorkloadCost(w, *t);
      const double ideal = static_cast<double>(w.rows * w.cols * w.channels * w.taps) /
                           t->macs_per_cycle;
      const bool fp = IsFloat(w.in_dtype);
      EXPECT_GE(static_cast<double>(c.cycles), ideal * (fp ? 1.5 : 0.8)) << c.ToString();
      EXPECT_LE(static_cast<double>(c.cycles), ideal * (fp ? 6 : 3) + 2 * c.overhead_cycles +
                                                   c.data_cycles)
          << c.ToString();
    }
  }
}

TEST(CostModel, Fp16IsNeverCheaperThanInt8) {
  for (const Target* t : AllTargets()) {
    for (size_t i = 0; i < Shapes().size() / 2; ++i) {
      const CostWorkload& i8 = Shapes()[i];
      const CostWorkload& f16 = Shapes()[i + Shapes().size() / 2];
      ASSERT_EQ(f16.in_dtype, DType::kFP16);
      EXPECT_GE(WorkloadCost(f16, *t).cycles, WorkloadCost(i8, *t).cycles)
          << t->name << " shape " << i;
      EXPECT_GE(WorkloadCost(f16, *t).mac_cycles, 1.8 * WorkloadCost(i8, *t).mac_cycles);
    }
  }
}

TEST(CostModel, SparsityNeverIncreasesMacTimeAndSaturates) {
  for (const Target* t : AllTargets()) {
    for (const CostWorkload& dense : Shapes()) {
      const WorkloadCostTerms d = WorkloadCost(dense, *t);
      double last = d.mac_cycles;
      for (double sp : {0.0, 0.1, 0.3, 0.5, 0.75, 0.9, 0.99}) {
        CostWorkload w = dense;
        Sparsify(&w, sp, w.w_dtype);
        const WorkloadCostTerms s = WorkloadCost(w, *t);
        EXPECT_LE(s.mac_cycles, last + 1e-9) << t->name << " sparsity " << sp << " " << s.ToString();
        last = s.mac_cycles;
        // The gain levels off: never the ideal 1 - sparsity at high sparsity (VPUNN: 0.27-0.42 of
        // dense for 3x3 at 90%).
        if (sp >= 0.9) EXPECT_GE(s.sparse_factor, 0.2) << t->name << " " << s.ToString();
      }
    }
  }
}

TEST(CostModel, BothSparsitiesTakeTheCheaperSingleSparsity) {
  for (const Target* t : AllTargets()) {
    CostWorkload w = Conv(28, 28, 128, 128, 3, 1, DType::kI8);
    Sparsify(&w, 0.5, DType::kI8);
    const WorkloadCostTerms weights_only = WorkloadCost(w, *t);
    w.input_sparse = true;
    w.input_sparsity = 0.8;
    const WorkloadCostTerms both = WorkloadCost(w, *t);
    EXPECT_LT(both.activation_factor, both.weight_factor);
    EXPECT_DOUBLE_EQ(both.sparse_factor, both.activation_factor);
    EXPECT_LT(both.mac_cycles, weights_only.mac_cycles);
    w.input_sparsity = 0.1;
    EXPECT_DOUBLE_EQ(WorkloadCost(w, *t).sparse_factor, weights_only.weight_factor);
    // Channel-wise kinds skip nothing.
    w.kind = NceKind::kDwConv;
    EXPECT_DOUBLE_EQ(WorkloadCost(w, *t).sparse_factor, 1.0);
  }
}

TEST(CostModel, ThinOneByOneLayersAreBoundByDataMovement) {
  for (const Target* t : AllTargets()) {
    for (DType dt : {DType::kI8, DType::kFP16}) {
      const WorkloadCostTerms c = WorkloadCost(Conv(56, 56, 16, 32, 1, 1, dt), *t);
      EXPECT_STREQ(c.bound, "data") << t->name << " " << c.ToString();
      EXPECT_GT(c.data_cycles, 2 * c.mac_cycles) << c.ToString();
      // More output bytes cost more even though the MACs stay.
      CostWorkload w = Conv(56, 56, 16, 32, 1, 1, dt);
      w.output_bytes *= 2;
      EXPECT_GT(WorkloadCost(w, *t).cycles, c.cycles);
    }
  }
}

TEST(CostModel, PaddingFollowsTheModeCell) {
  for (const Target* t : AllTargets()) {
    // CUBOID_16x16: rows to 4, columns to 2, channels to 16.
    const WorkloadCostTerms a = WorkloadCost(Conv(13, 13, 64, 60, 3, 1, DType::kI8), *t);
    EXPECT_EQ(a.padded_outputs, 16 * 14 * 64);
    CostWorkload w = Conv(13, 13, 64, 60, 3, 1, DType::kI8);
    w.grid_w = 8;
    w.grid_h = 8;  // CUBOID_4x16: rows to 2, columns to 1
    EXPECT_EQ(WorkloadCost(w, *t).padded_outputs, 14 * 13 * 64);
  }
}

TEST(CostModel, TermsPrint) {
  const WorkloadCostTerms c = WorkloadCost(Conv(28, 28, 64, 64, 3, 1, DType::kI8), Npu37());
  EXPECT_TRUE(Contains(c.ToString(), "dense")) << c.ToString();
  EXPECT_EQ(c.ToJson()["cycles"], c.cycles);
  EXPECT_EQ(c.ToJson()["bound"], "mac");
}

}  // namespace
}  // namespace dpuemu
