#include "runtime/cost.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hw/formats.h"

namespace dpuemu {
namespace {

// Fitted by bench/cost_fit --fit on tests/data/vpunn-calibration.tsv (README "## Cost model").
// NPU37XX = VPU2.7, NPU40XX = VPU4.0.
const TargetCostConstants kNpu37Cost = {
    /*int8=*/{0.924, 53.7, 0.770, 0.369},
    /*fp16=*/{0.493, 30.8, 0.687, 0.300},
    /*overhead_cycles=*/1197,
};
const TargetCostConstants kNpu40Cost = {
    /*int8=*/{1.083, 61.2, 0.822, 0.328},
    /*fp16=*/{0.532, 27.9, 0.861, 0.303},
    /*overhead_cycles=*/1143,
};

int64_t RoundUp(int64_t v, int64_t a) { return a <= 1 ? v : AlignUp(v, a); }

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

}  // namespace

const TargetCostConstants& CostConstants(TargetId id) {
  return id == TargetId::kNPU37XX ? kNpu37Cost : kNpu40Cost;
}

WorkloadCostTerms WorkloadCost(const CostWorkload& w, const Target& t) {
  return WorkloadCost(w, t, CostConstants(t.id));
}

WorkloadCostTerms WorkloadCost(const CostWorkload& w, const Target& t,
                               const TargetCostConstants& c) {
  const DtypeCostConstants& d =
      IsFloat(w.in_dtype) || IsFloat(w.w_dtype) ? c.fp16 : c.int8;
  WorkloadCostTerms r;
  // The MAC array's cell: a quarter of the mode's grid in rows and an eighth in columns (the
  // padding VPUNN shows for CUBOID_16x16: rows to 4, columns to 2), channels to 16.
  const int64_t cell_h = std::max<int64_t>(1, w.grid_h / 4);
  const int64_t cell_w = std::max<int64_t>(1, w.grid_w / 8);
  r.padded_outputs = RoundUp(w.rows, cell_h) * RoundUp(w.cols, cell_w) * RoundUp(w.channels, 16);
  r.macs = static_cast<double>(r.padded_outputs) * static_cast<double>(w.taps);
  r.dense_mac_cycles = r.macs / (static_cast<double>(t.macs_per_cycle) * d.mac_rate);
  auto factor = [&](double density) {
    density = std::clamp(density, 0.0, 1.0);
    return std::min(1.0, std::max(d.sparse_floor, 1.0 - d.sparse_gain * (1.0 - density)));
  };
  // Channel-wise kinds have no weight sparsity (SupportedSparsity); only conv skips zeros.
  const bool skips = w.kind == NceKind::kConv;
  if (skips && w.weight_sparse) r.weight_factor = factor(w.weight_density);
  if (skips && w.input_sparse) r.activation_factor = factor(1.0 - w.input_sparsity);
  r.sparse_factor = std::min(r.weight_factor, r.activation_factor);
  r.mac_cycles = r.dense_mac_cycles * r.sparse_factor;
  r.data_bytes = w.input_bytes + w.weight_bytes + w.output_bytes;
  r.data_cycles = static_cast<double>(r.data_bytes) / d.bytes_per_cycle;
  r.overhead_cycles = c.overhead_cycles;
  r.bound = r.data_cycles > r.mac_cycles ? "data" : "mac";
  r.cycles = static_cast<int64_t>(
      std::ceil(std::max(r.mac_cycles, r.data_cycles) + r.overhead_cycles));
  return r;
}

std::string WorkloadCostTerms::ToString() const {
  return "max(mac " + Fixed(mac_cycles, 0) + " = " + Fixed(dense_mac_cycles, 0) + " dense x " +
         Fixed(sparse_factor, 3) + " sparse, data " + Fixed(data_cycles, 0) + " = " +
         std::to_string(data_bytes) + " B) + overhead " + Fixed(overhead_cycles, 0) + " = " +
         std::to_string(cycles) + " (" + bound + "-bound)";
}

nlohmann::json WorkloadCostTerms::ToJson() const {
  return {{"padded_outputs", padded_outputs},
          {"macs", macs},
          {"dense_mac_cycles", dense_mac_cycles},
          {"weight_factor", weight_factor},
          {"activation_factor", activation_factor},
          {"sparse_factor", sparse_factor},
          {"mac_cycles", mac_cycles},
          {"data_bytes", data_bytes},
          {"data_cycles", data_cycles},
          {"overhead_cycles", overhead_cycles},
          {"bound", bound},
          {"cycles", cycles}};
}

int64_t EstimatedWeightBytes(int64_t k, int64_t taps, DType w, bool sparse,
                             double nonzeros_per_channel) {
  const int64_t bits = DTypeBits(w);
  const int64_t table = 16 * k;
  if (!sparse) return k * AlignUp((taps * bits + 7) / 8, 16) + table;
  const int64_t data = AlignUp(
      static_cast<int64_t>(std::ceil(nonzeros_per_channel * static_cast<double>(bits) / 8)), 16);
  const int64_t map = AlignUp((taps + 7) / 8, 16);
  return k * (data + map) + table;
}

}  // namespace dpuemu
