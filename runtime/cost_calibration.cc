#include "runtime/cost_calibration.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace dpuemu {
namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

// "56x56x64" -> {56, 56, 64}; false when a field is not a positive integer.
bool Dims(const std::string& s, std::vector<int64_t>* out) {
  out->clear();
  for (const std::string& f : Split(s, 'x')) {
    char* end = nullptr;
    const long long v = std::strtoll(f.c_str(), &end, 10);
    if (f.empty() || *end != '\0' || v < 1) return false;
    out->push_back(v);
  }
  return true;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

StatusOr<std::vector<CalibrationRow>> ReadCalibration(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open the calibration table");
  std::vector<CalibrationRow> rows;
  std::string line;
  std::map<std::string, size_t> col;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = Split(line, '\t');
    const std::string where = path + ":" + std::to_string(n) + ": ";
    if (col.empty()) {
      for (size_t i = 0; i < f.size(); ++i) col[f[i]] = i;
      for (const char* need : {"name", "device", "dtype", "mode", "wsp", "wsp_en", "in", "out",
                               "k", "s", "cycles"}) {
        if (!col.count(need)) return InvalidArgument(where + "header lacks column " + need);
      }
      continue;
    }
    auto get = [&](const char* c) { return col[c] < f.size() ? f[col[c]] : std::string(); };
    if (get("cycles").rfind("ERR", 0) == 0) continue;  // VPUNN refused the workload
    CalibrationRow r;
    r.name = get("name");
    r.device = get("device");
    r.dtype = get("dtype");
    if (r.device == "VPU_2_7") {
      r.target = &GetTarget(TargetId::kNPU37XX);
    } else if (r.device == "VPU_4_0") {
      r.target = &GetTarget(TargetId::kNPU40XX);
    } else {
      return InvalidArgument(where + "device " + r.device + ": expected VPU_2_7 or VPU_4_0");
    }
    DType dt;
    if (r.dtype == "int8") {
      dt = DType::kI8;
    } else if (r.dtype == "fp16") {
      dt = DType::kFP16;
    } else {
      return InvalidArgument(where + "dtype " + r.dtype + ": expected int8 or fp16");
    }
    if (get("mode") != "CUBOID_16x16") {
      return InvalidArgument(where + "mode " + get("mode") + ": only CUBOID_16x16 is read");
    }
    std::vector<int64_t> iv, ov, kv, sv;
    if (!Dims(get("in"), &iv) || iv.size() != 3 || !Dims(get("out"), &ov) || ov.size() != 3 ||
        !Dims(get("k"), &kv) || kv.size() != 2 || !Dims(get("s"), &sv) || sv.size() != 2) {
      return InvalidArgument(where + "in/out (WxHxC) or k/s (XxY) malformed");
    }
    r.vpunn_cycles = std::strtod(get("cycles").c_str(), nullptr);
    const double wsp = std::strtod(get("wsp").c_str(), nullptr);
    if (r.vpunn_cycles <= 0 || wsp < 0 || wsp >= 1) {
      return InvalidArgument(where + "cycles must be > 0 and wsp in [0, 1)");
    }
    CostWorkload& w = r.workload;
    w.kind = NceKind::kConv;
    w.in_dtype = w.w_dtype = w.out_dtype = dt;
    w.cols = ov[0];
    w.rows = ov[1];
    w.channels = ov[2];
    w.taps = kv[0] * kv[1] * iv[2];
    w.weight_sparse = get("wsp_en") == "1";
    w.weight_density = 1.0 - wsp;
    const int64_t b = DTypeBytes(dt);
    w.input_bytes = iv[0] * iv[1] * iv[2] * b;  // the TSV's input includes the halo rows
    w.weight_bytes = EstimatedWeightBytes(w.channels, w.taps, dt, w.weight_sparse,
                                          w.weight_density * static_cast<double>(w.taps));
    w.output_bytes = w.rows * w.cols * w.channels * b;
    rows.push_back(r);
  }
  if (rows.empty()) return InvalidArgument(path + ": no calibration rows");
  return rows;
}

double ModelRatio(const CalibrationRow& row, const TargetCostConstants& constants) {
  return static_cast<double>(WorkloadCost(row.workload, *row.target, constants).cycles) /
         row.vpunn_cycles;
}

std::vector<CalibrationSummary> Summarise(const std::vector<CalibrationRow>& rows) {
  std::vector<CalibrationSummary> out;
  for (const char* device : {"VPU_2_7", "VPU_4_0"}) {
    for (const char* dtype : {"int8", "fp16"}) {
      std::vector<double> logs;
      int within = 0;
      for (const CalibrationRow& r : rows) {
        if (r.device != device || r.dtype != dtype) continue;
        const double ratio = ModelRatio(r, CostConstants(r.target->id));
        logs.push_back(std::fabs(std::log2(ratio)));
        within += ratio >= 0.75 && ratio <= 1.25;
      }
      if (logs.empty()) continue;
      CalibrationSummary s;
      s.device = device;
      s.dtype = dtype;
      s.rows = static_cast<int>(logs.size());
      s.within_25 = static_cast<double>(within) / static_cast<double>(logs.size());
      s.median_abs_log2 = Median(logs);
      out.push_back(s);
    }
  }
  return out;
}

std::string SummaryToText(const std::vector<CalibrationSummary>& s) {
  std::string t = "device   dtype  rows  within 25%  median |log2|\n";
  for (const CalibrationSummary& x : s) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "%-8s %-6s %4d  %9.1f%%  %13.3f\n", x.device.c_str(),
                  x.dtype.c_str(), x.rows, 100 * x.within_25, x.median_abs_log2);
    t += buf;
  }
  return t;
}

TargetCostConstants FitConstants(const std::vector<CalibrationRow>& rows, TargetId target,
                                 const TargetCostConstants& start) {
  std::vector<const CalibrationRow*> mine;
  for (const CalibrationRow& r : rows) {
    if (r.target->id == target) mine.push_back(&r);
  }
  auto loss = [&](const TargetCostConstants& c) {
    double s = 0;
    for (const CalibrationRow* r : mine) {
      const double l = std::min(1.0, std::fabs(std::log2(ModelRatio(*r, c))));
      s += l * l;
    }
    return s;
  };
  TargetCostConstants best = start;
  double best_loss = loss(best);
  auto params = [](TargetCostConstants* c) {
    return std::vector<double*>{&c->int8.mac_rate,        &c->int8.bytes_per_cycle,
                                &c->int8.sparse_gain,     &c->int8.sparse_floor,
                                &c->fp16.mac_rate,        &c->fp16.bytes_per_cycle,
                                &c->fp16.sparse_gain,     &c->fp16.sparse_floor,
                                &c->overhead_cycles};
  };
  for (double step = 0.2; step >= 0.002; step /= 2) {
    for (bool improved = true; improved;) {
      improved = false;
      for (size_t p = 0; p < params(&best).size(); ++p) {
        for (double sign : {1.0, -1.0}) {
          TargetCostConstants trial = best;
          double* v = params(&trial)[p];
          // Constants at 0 (a floor, the overhead) move by absolute steps.
          *v = *v == 0 ? std::max(0.0, sign * step * (p == 8 ? 1000 : 0.5))
                       : std::max(0.0, *v * (1 + sign * step));
          const double l = loss(trial);
          if (l < best_loss - 1e-12) {
            best = trial;
            best_loss = l;
            improved = true;
          }
        }
      }
    }
  }
  return best;
}

std::string ConstantsToText(const TargetCostConstants& c) {
  auto d = [](const DtypeCostConstants& x) {
    return "{" + Fixed(x.mac_rate, 3) + ", " + Fixed(x.bytes_per_cycle, 1) + ", " +
           Fixed(x.sparse_gain, 3) + ", " + Fixed(x.sparse_floor, 3) + "}";
  };
  return "int8 " + d(c.int8) + ", fp16 " + d(c.fp16) + ", overhead " +
         Fixed(c.overhead_cycles, 0) +
         "  (mac_rate, bytes_per_cycle, sparse_gain, sparse_floor)";
}

}  // namespace dpuemu
