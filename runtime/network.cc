#include "runtime/network.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

#include "hw/formats.h"
#include "hw/layer.h"
#include "runtime/npy.h"

namespace dpuemu {
namespace {

using json = nlohmann::json;

std::string Str(int64_t v) { return std::to_string(v); }

std::string Shape(const std::vector<int64_t>& s) {
  std::string out;
  for (int64_t d : s) out += (out.empty() ? "" : "x") + Str(d);
  return out;
}

bool IsActivationDType(DType t) {
  return t == DType::kU8 || t == DType::kI8 || t == DType::kFP16 || t == DType::kBF16;
}

double ZeroFraction(const Tensor& t, int32_t zp) {
  const int64_t n = t.numel();
  if (n <= 0) return 0;
  int64_t zeros = 0;
  for (int64_t i = 0; i < n; ++i) zeros += IsZeroPoint(t.dtype, t.bytes.data(), i, zp);
  return static_cast<double>(zeros) / static_cast<double>(n);
}

// The dense output shape of a parsed layer: the SE ops' output placement, or the op's.
std::vector<int64_t> OutShape(const Spec& s) {
  if (s.se) return {s.se->out_h, s.se->out_w, s.layer.op.g.k};
  const NceGeometry& g = s.layer.op.g;
  return {g.out_h(), g.out_w(), g.k};
}

Tensor Zeros(DType t, const std::vector<int64_t>& shape) { return Tensor(t, shape); }

int64_t PlanBytes(const std::vector<Plan>& plans) {
  int64_t n = 0;
  for (const Plan& p : plans) {
    for (const Workload& w : p.workloads) n += w.input_bytes + w.weight_bytes + w.output_bytes;
  }
  return n;
}

Status Err(const Network& net, const std::string& where, const std::string& what) {
  return InvalidArgument(net.path + ": " + (where.empty() ? "" : where + ": ") + what);
}

// The layer's inputs as zero tensors or its producers' outputs.
LayerInputs InputsOf(const Network& net, const NetworkLayer& l,
                     const std::vector<const Tensor*>& tensors) {
  LayerInputs in;
  in.target = net.target;
  for (size_t i = 0; i < l.inputs.size() && i < 2; ++i) {
    const int p = l.inputs[i];
    const std::string name = p < 0 ? "the network input" : "layer '" + net.layers[p].name + "'";
    const int32_t zp = p < 0 ? net.input_zp : net.layers[p].out_zp;
    Tensor t = tensors[i] != nullptr ? *tensors[i]
               : p < 0           ? net.input
                                 : Zeros(net.layers[p].out_dtype, net.layers[p].out_shape);
    if (i == 0) {
      in.input = std::move(t);
      in.input_zp = zp;
      in.input_name = name;
    } else {
      in.has_input2 = true;
      in.input2 = std::move(t);
      in.input2_zp = zp;
      in.input2_name = name;
    }
  }
  return in;
}

}  // namespace

const char* ActivationSparsityName(ActivationSparsity a) {
  switch (a) {
    case ActivationSparsity::kAuto: return "auto";
    case ActivationSparsity::kDense: return "dense";
    case ActivationSparsity::kSparse: return "sparse";
  }
  return "?";
}

bool IsNetworkFile(const json& j) { return j.is_object() && j.contains("layers"); }

StatusOr<Network> LoadNetwork(const std::string& path) {
  Network net;
  net.path = path;
  const size_t slash = path.find_last_of('/');
  net.dir = slash == std::string::npos ? "" : path.substr(0, slash);
  std::vector<uint8_t> bytes;
  DPUEMU_ASSIGN_OR_RETURN(bytes, ReadFileBytes(path));
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Err(net, "", "not valid JSON");
  if (!j.is_object()) return Err(net, "", "must be an object");
  static const std::set<std::string> known = {"name",   "target",  "input",
                                              "layers", "outputs", "activation_sparsity"};
  for (const auto& item : j.items()) {
    if (!known.count(item.key())) {
      return Err(net, item.key(), "unknown field (known: name, target, input, "
                                  "activation_sparsity, layers, outputs)");
    }
  }
  const auto str = [&](const json& v, const std::string& where) -> StatusOr<std::string> {
    if (!v.is_string()) return Err(net, where, "must be a string, got " + std::string(v.type_name()));
    return v.get<std::string>();
  };
  net.name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  if (j.contains("name")) {
    DPUEMU_ASSIGN_OR_RETURN(net.name, str(j["name"], "name"));
  }
  if (!j.contains("target")) return Err(net, "target", "missing (required)");
  DPUEMU_ASSIGN_OR_RETURN(std::string target, str(j["target"], "target"));
  StatusOr<const Target*> t = TargetByName(target);
  if (!t.ok()) return Err(net, "target", t.status().message());
  net.target = *t;
  if (j.contains("activation_sparsity")) {
    DPUEMU_ASSIGN_OR_RETURN(std::string a, str(j["activation_sparsity"], "activation_sparsity"));
    if (a == "auto") net.activation_sparsity = ActivationSparsity::kAuto;
    else if (a == "dense") net.activation_sparsity = ActivationSparsity::kDense;
    else if (a == "sparse") net.activation_sparsity = ActivationSparsity::kSparse;
    else return Err(net, "activation_sparsity", "\"" + a + "\": must be auto, dense or sparse");
  }

  // The input: {npy, dtype, zero_point}.
  if (!j.contains("input") || !j["input"].is_object()) {
    return Err(net, "input", "missing or not an object {npy, dtype, zero_point}");
  }
  const json& in = j["input"];
  for (const auto& item : in.items()) {
    if (item.key() != "npy" && item.key() != "dtype" && item.key() != "zero_point") {
      return Err(net, "input." + item.key(), "unknown field (known: npy, dtype, zero_point)");
    }
  }
  if (!in.contains("npy") || !in.contains("dtype")) {
    return Err(net, "input", "needs npy and dtype");
  }
  DPUEMU_ASSIGN_OR_RETURN(std::string npy, str(in["npy"], "input.npy"));
  DPUEMU_ASSIGN_OR_RETURN(std::string dtype_name, str(in["dtype"], "input.dtype"));
  StatusOr<DType> dtype = ParseDType(dtype_name);
  if (!dtype.ok() || !IsActivationDType(*dtype)) {
    return Err(net, "input.dtype", "\"" + dtype_name + "\": must be u8, i8, fp16 or bf16");
  }
  if (in.contains("zero_point")) {
    const json& z = in["zero_point"];
    if (!z.is_number_integer()) return Err(net, "input.zero_point", "must be an integer");
    const int64_t v = z.get<int64_t>();
    const int64_t lo = IsFloat(*dtype) ? 0 : DTypeMin(*dtype), hi = IsFloat(*dtype) ? 0 : DTypeMax(*dtype);
    if (v < lo || v > hi) {
      return Err(net, "input.zero_point", Str(v) + ": must be in [" + Str(lo) + ", " + Str(hi) +
                                              "] (" + dtype_name + ")");
    }
    net.input_zp = static_cast<int32_t>(v);
  }
  const std::string file = !net.dir.empty() && !npy.empty() && npy[0] != '/' ? net.dir + "/" + npy : npy;
  StatusOr<Tensor> x = ReadNpy(file);
  if (!x.ok()) return Err(net, "input.npy", x.status().message());
  if (x->dtype != *dtype) {
    return Err(net, "input.npy", "'" + file + "' holds " + DTypeName(x->dtype) + ", input.dtype is " +
                                     dtype_name);
  }
  net.input = std::move(x).value();
  if (net.input.shape.size() == 4 && net.input.shape[0] == 1) net.input.shape.erase(net.input.shape.begin());
  if (net.input.shape.size() != 3) {
    return Err(net, "input.npy", "'" + file + "' has shape " + net.input.ShapeString() +
                                     ": needs [H, W, C] or [1, H, W, C]");
  }

  // The layers, each producer before its consumers.
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty()) {
    return Err(net, "layers", "must be a non-empty list of layers");
  }
  std::map<std::string, int> index;
  const json& layers = j["layers"];
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string field = "layers[" + Str(static_cast<int64_t>(i)) + "]";
    if (!layers[i].is_object()) return Err(net, field, "must be an object");
    if (!layers[i].contains("name")) return Err(net, field + ".name", "missing (required)");
    DPUEMU_ASSIGN_OR_RETURN(std::string name, str(layers[i]["name"], field + ".name"));
    if (name.empty() || name == "input" || name.find('/') != std::string::npos || name == "." ||
        name == "..") {
      return Err(net, field + ".name", "\"" + name + "\": must be non-empty, not \"input\", and a "
                                       "valid directory name");
    }
    if (index.count(name)) {
      return Err(net, field + ".name", "\"" + name + "\": used by layers[" + Str(index[name]) +
                                           "] too; layer names must be unique");
    }
    index[name] = static_cast<int>(i);
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    NetworkLayer l;
    l.field = "layers[" + Str(static_cast<int64_t>(i)) + "]";
    l.spec = layers[i];
    l.name = l.spec["name"].get<std::string>();
    const std::string where = l.field + " ('" + l.name + "')";
    if (l.spec.contains("inputs")) {
      const json& ins = l.spec["inputs"];
      if (!ins.is_array() || ins.empty()) {
        return Err(net, where + ".inputs", "must be a non-empty list of layer names or \"input\"");
      }
      for (const json& v : ins) {
        DPUEMU_ASSIGN_OR_RETURN(std::string p, str(v, where + ".inputs"));
        if (p == "input") {
          l.inputs.push_back(-1);
          continue;
        }
        const auto it = index.find(p);
        if (it == index.end()) return Err(net, where + ".inputs", "\"" + p + "\": no layer of that name");
        if (it->second >= static_cast<int>(i)) {
          return Err(net, where + ".inputs",
                     "\"" + p + "\" is layers[" + Str(it->second) + "], not before this layer: a "
                     "cycle, or producers listed after their consumers (list every producer first)");
        }
        l.inputs.push_back(it->second);
      }
    } else {
      l.inputs.push_back(static_cast<int>(i) - 1);  // the previous layer (-1: the input)
    }
    net.layers.push_back(std::move(l));
  }
  for (size_t i = 0; i < net.layers.size(); ++i) {
    NetworkLayer& l = net.layers[i];
    const std::string where = l.field + " ('" + l.name + "')";
    for (int p : l.inputs) {
      const DType pt = p < 0 ? net.input.dtype : net.layers[p].out_dtype;
      if (!IsActivationDType(pt)) {
        return Err(net, where, "reads layer '" + net.layers[p].name + "', whose output is " +
                                   DTypeName(pt) + "; a layer reads u8, i8, fp16 or bf16");
      }
      if (p >= 0) net.layers[p].consumers.push_back(static_cast<int>(i));
    }
    const std::string op = l.spec.contains("op") && l.spec["op"].is_string()
                               ? l.spec["op"].get<std::string>()
                               : "conv";
    const size_t want = op == "eltwise" ? 2 : 1;
    if (l.inputs.size() != want) {
      return Err(net, where + ".inputs", "op " + op + " takes " + Str(static_cast<int64_t>(want)) +
                                             " input(s), got " + Str(static_cast<int64_t>(l.inputs.size())));
    }
    if (want == 2) {
      const auto shape = [&](int p) { return p < 0 ? net.input.shape : net.layers[p].out_shape; };
      const auto name = [&](int p) { return p < 0 ? std::string("input") : net.layers[p].name; };
      if (shape(l.inputs[0]) != shape(l.inputs[1])) {
        return Err(net, where, "eltwise inputs '" + name(l.inputs[0]) + "' " + Shape(shape(l.inputs[0])) +
                                   " and '" + name(l.inputs[1]) + "' " + Shape(shape(l.inputs[1])) +
                                   " differ in shape");
      }
    }
    // The layer against its producers' outputs (zero tensors of their shapes).
    StatusOr<Spec> s = ParseNetworkLayer(l.spec, path, where, InputsOf(net, l, {nullptr, nullptr}));
    if (!s.ok()) return s.status();
    l.parsed = *s;
    l.op = s->layer.op;
    l.out_shape = OutShape(*s);
    l.out_dtype = l.op.out_dtype;
    l.out_zp = l.op.ppe.out_zp;
  }
  if (j.contains("outputs")) {
    const json& outs = j["outputs"];
    if (!outs.is_array() || outs.empty()) return Err(net, "outputs", "must be a non-empty list of layer names");
    for (const json& v : outs) {
      DPUEMU_ASSIGN_OR_RETURN(std::string o, str(v, "outputs"));
      const auto it = index.find(o);
      if (it == index.end()) return Err(net, "outputs", "\"" + o + "\": no layer of that name");
      net.outputs.push_back(it->second);
    }
  } else {
    net.outputs.push_back(static_cast<int>(net.layers.size()) - 1);
  }
  return net;
}

namespace {

// Whether the edge from layer `i` to its consumers may be sparse, and why not.
bool SparseEligible(const Network& net, int i, std::string* why) {
  const NetworkLayer& l = net.layers[i];
  if (net.activation_sparsity == ActivationSparsity::kDense) {
    *why = "activation_sparsity dense";
    return false;
  }
  if (!SupportedSparsity(l.op, *net.target).output) {
    *why = std::string(NceKindName(l.op.kind)) + " cannot write sparse output";
    return false;
  }
  if (l.op.out_dtype == DType::kI32 || l.op.out_dtype == DType::kFP32) {
    *why = std::string("output dtype ") + DTypeName(l.op.out_dtype) + " has no sparse format";
    return false;
  }
  if (l.consumers.empty()) {
    *why = "no DPU consumer (a network output)";
    return false;
  }
  for (int c : l.consumers) {
    const NetworkLayer& cl = net.layers[c];
    const SparsitySupport sup = SupportedSparsity(cl.op, *net.target);
    if (!sup.input) {
      *why = "consumer '" + cl.name + "' cannot read sparse input: " + sup.rule;
      return false;
    }
    if (cl.spec.contains("se")) {
      *why = "consumer '" + cl.name + "' reads its input through SE pointers (read dense here)";
      return false;
    }
  }
  return true;
}

}  // namespace

StatusOr<NetworkResult> RunNetwork(const Network& net, const RunOptions& options,
                                   const std::function<void(const std::string&)>& progress) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const int n = static_cast<int>(net.layers.size());
  NetworkResult r;
  r.layers.resize(static_cast<size_t>(n));
  // Waves of layers whose producers are done: independent branches run together.
  std::vector<int> level(static_cast<size_t>(n), 0);
  int levels = 0;
  for (int i = 0; i < n; ++i) {
    for (int p : net.layers[i].inputs) {
      if (p >= 0) level[i] = std::max(level[i], level[p] + 1);
    }
    levels = std::max(levels, level[i] + 1);
  }
  std::vector<Status> status(static_cast<size_t>(n), OkStatus());
  for (int lv = 0; lv < levels; ++lv) {
    std::vector<int> wave;
    for (int i = 0; i < n; ++i) {
      if (level[i] == lv) wave.push_back(i);
    }
    tbb::parallel_for(0, static_cast<int>(wave.size()), [&](int wi) {
      const int i = wave[static_cast<size_t>(wi)];
      const NetworkLayer& l = net.layers[i];
      NetworkLayerResult& res = r.layers[static_cast<size_t>(i)];
      const Clock::time_point t0 = Clock::now();
      status[i] = [&]() -> Status {
        std::vector<const Tensor*> tensors;
        for (int p : l.inputs) tensors.push_back(p < 0 ? &net.input : &r.layers[p].output);
        tensors.resize(2, nullptr);
        const std::string where = l.field + " ('" + l.name + "')";
        if (l.spec.contains("se")) {
          // The SE operations gather their virtual input from the source while parsing.
          DPUEMU_ASSIGN_OR_RETURN(
              res.spec, ParseNetworkLayer(l.spec, net.path, where, InputsOf(net, l, tensors)));
        } else {
          // The parsed layer with its producers' tensors (same dtypes and shapes as at load).
          res.spec = l.parsed;
          res.spec.layer.input = *tensors[0];
          if (tensors[1] != nullptr) res.spec.layer.input2 = *tensors[1];
        }
        res.name = l.name;
        Spec& spec = res.spec;
        // The input is read sparse when its producer wrote it sparse.
        const int p0 = l.inputs.front();
        res.input_sparse = p0 >= 0 && r.layers[p0].output_sparse;
        spec.plan.input_sparse = spec.plan.input_sparse || res.input_sparse;
        std::string why;
        const bool eligible = SparseEligible(net, i, &why);
        res.output_sparse = spec.plan.output_sparse || eligible;
        spec.plan.output_sparse = res.output_sparse;
        DPUEMU_ASSIGN_OR_RETURN(res.plans, PlanSpec(spec));
        for (size_t d = 0; d < res.plans.size(); ++d) {
          StatusOr<PreparedLayer> prep =
              PreparedLayer::Create(DpuLayer(spec, d), res.plans[d], *net.target, options);
          if (!prep.ok()) return prep.status().Annotate(net.path + ": " + where);
          StatusOr<RunResult> run = prep->Run();
          if (!run.ok()) return run.status().Annotate(net.path + ": " + where);
          res.kernel_seconds += run->seconds;
          res.dpu_outputs.push_back(std::move(run->output));
        }
        DPUEMU_ASSIGN_OR_RETURN(res.output, AssembleSpecOutput(spec, res.dpu_outputs));
        res.input_sparsity = ZeroFraction(spec.se ? spec.se->source : spec.layer.input,
                                          spec.layer.op.in_zp);
        res.output_sparsity = ZeroFraction(res.output, spec.layer.op.ppe.out_zp);
        if (!eligible) {
          res.activation_reason = res.output_sparse ? "sparse (the layer's output.sparse)" : "dense: " + why;
        } else if (net.activation_sparsity == ActivationSparsity::kAuto &&
                   res.output_sparsity < kActivationSparsityMin) {
          res.activation_reason = "dense: measured sparsity " + std::to_string(res.output_sparsity) +
                                  " < 0.2 (auto)";
          res.output_sparse = false;
          spec.plan.output_sparse = false;
          DPUEMU_ASSIGN_OR_RETURN(res.plans, PlanSpec(spec));
        } else {
          res.activation_reason = net.activation_sparsity == ActivationSparsity::kAuto
                                      ? "sparse: measured sparsity >= 0.2 and every consumer "
                                        "reads sparse input (auto)"
                                      : "sparse: every consumer reads sparse input";
        }
        for (const Plan& p : res.plans) res.cycles += p.cycles;
        res.bytes_planned = PlanBytes(res.plans);
        Spec dense = spec;
        dense.plan.input_sparse = dense.plan.output_sparse = false;
        dense.plan.heuristic = WeightHeuristic::kDense;
        DPUEMU_ASSIGN_OR_RETURN(std::vector<Plan> dense_plans, PlanSpec(dense));
        res.bytes_dense = PlanBytes(dense_plans);
        return OkStatus();
      }();
      res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      if (progress && status[i].ok()) progress(l.name);
    });
    for (int i : wave) {
      if (!status[i].ok()) return status[i];
    }
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

std::string NetworkReportText(const Network& net, const NetworkResult& r) {
  std::string s;
  char line[512];
  std::snprintf(line, sizeof(line), "%s on %s (%s), activation sparsity %s\n", net.name.c_str(),
                net.target->name, net.target->generation,
                ActivationSparsityName(net.activation_sparsity));
  s += line;
  std::snprintf(line, sizeof(line), "%-14s %-8s %-26s %-7s %-9s %-9s %-11s %4s %10s %12s %12s %9s\n",
                "layer", "op", "shape", "weights", "in sp.", "out sp.", "split", "wl", "cycles",
                "bytes", "dense bytes", "emu ms");
  s += line;
  int64_t cycles = 0, bytes = 0, dense = 0;
  double secs = 0;
  for (const NetworkLayerResult& l : r.layers) {
    const Plan& p = l.plans.front();
    const NceGeometry& g = l.spec.layer.op.g;
    size_t wl = 0;
    for (const Plan& q : l.plans) wl += q.workloads.size();
    const std::vector<int64_t> out = OutShape(l.spec);
    const std::string shape = Str(g.h) + "x" + Str(g.w) + "x" + Str(g.c) + "->" + Shape(out);
    char in_sp[32], out_sp[32];
    std::snprintf(in_sp, sizeof(in_sp), "%.0f%%%s", l.input_sparsity * 100, l.input_sparse ? " S" : "");
    std::snprintf(out_sp, sizeof(out_sp), "%.0f%%%s", l.output_sparsity * 100, l.output_sparse ? " S" : "");
    const std::string split = std::string(SplitStrategyName(p.split)) + "/" + Str(p.tiles_used);
    std::snprintf(line, sizeof(line), "%-14s %-8s %-26s %-7s %-9s %-9s %-11s %4zu %10lld %12lld %12lld %9.2f\n",
                  l.name.c_str(), NceKindName(l.spec.layer.op.kind), shape.c_str(),
                  !HasWeights(l.spec.layer.op.kind) ? "-" : p.weights.sparse ? "sparse" : "dense",
                  in_sp, out_sp, split.c_str(), wl, static_cast<long long>(l.cycles),
                  static_cast<long long>(l.bytes_planned), static_cast<long long>(l.bytes_dense),
                  l.seconds * 1e3);
    s += line;
    cycles += l.cycles;
    bytes += l.bytes_planned;
    dense += l.bytes_dense;
    secs += l.seconds;
  }
  std::snprintf(line, sizeof(line),
                "total: %zu layers, %lld cycles (%.1f us at %.0f MHz), %lld bytes moved vs %lld "
                "all dense (%.1f%% saved), emulation %.2f ms (wall %.2f ms)\n",
                r.layers.size(), static_cast<long long>(cycles),
                static_cast<double>(cycles) / net.target->clock_mhz, net.target->clock_mhz,
                static_cast<long long>(bytes), static_cast<long long>(dense),
                dense > 0 ? 100.0 * static_cast<double>(dense - bytes) / static_cast<double>(dense) : 0.0,
                secs * 1e3, r.seconds * 1e3);
  s += line;
  s += "  in sp./out sp.: measured fraction at the zero point; S = stored sparse. Reasons in "
       "report.json.\n";
  return s;
}

json NetworkReportJson(const Network& net, const NetworkResult& r) {
  json j;
  j["network"] = net.name;
  j["target"] = net.target->name;
  j["activation_sparsity"] = ActivationSparsityName(net.activation_sparsity);
  j["layers"] = json::array();
  int64_t cycles = 0, bytes = 0, dense = 0;
  double secs = 0;
  for (const NetworkLayerResult& l : r.layers) {
    const Plan& p = l.plans.front();
    json lj;
    lj["name"] = l.name;
    lj["op"] = NceKindName(l.spec.layer.op.kind);
    const NceGeometry& g = l.spec.layer.op.g;
    lj["input_shape"] = {g.h, g.w, g.c};
    lj["output_shape"] = OutShape(l.spec);
    lj["weights"] = {{"sparse", p.weights.sparse}, {"reason", p.weights.reason}};
    lj["input"] = {{"sparsity", l.input_sparsity}, {"sparse", l.input_sparse}};
    lj["output"] = {{"sparsity", l.output_sparsity},
                    {"sparse", l.output_sparse},
                    {"reason", l.activation_reason}};
    lj["split"] = {{"strategy", SplitStrategyName(p.split)},
                   {"tiles", p.tiles_used},
                   {"reason", p.split_reason}};
    size_t wl = 0;
    for (const Plan& q : l.plans) wl += q.workloads.size();
    lj["workloads"] = wl;
    lj["cycles"] = l.cycles;
    lj["bytes_planned"] = l.bytes_planned;
    lj["bytes_dense"] = l.bytes_dense;
    lj["emulation_ms"] = l.seconds * 1e3;
    j["layers"].push_back(lj);
    cycles += l.cycles;
    bytes += l.bytes_planned;
    dense += l.bytes_dense;
    secs += l.seconds;
  }
  j["totals"] = {{"cycles", cycles},
                 {"time_us", static_cast<double>(cycles) / net.target->clock_mhz},
                 {"bytes_planned", bytes},
                 {"bytes_dense", dense},
                 {"emulation_ms", secs * 1e3},
                 {"wall_ms", r.seconds * 1e3}};
  json outs = json::array();
  for (int o : net.outputs) outs.push_back(net.layers[o].name);
  j["outputs"] = outs;
  return j;
}

namespace {

// A layer of the example network: GenerateLayer's tensors and PPE for the spec, written as a
// network layer object.
StatusOr<json> ExampleLayer(const std::string& dir, const std::string& name,
                            const std::vector<std::string>& inputs, LayerSpec s, uint64_t seed,
                            bool relu) {
  s.name = name;
  s.weight_sparsity = HasWeights(s.kind) ? 0.6 : 0.0;  // pruned
  DPUEMU_ASSIGN_OR_RETURN(NceLayer l, GenerateLayer(s, seed));
  if (relu) l.op.ppe.clamp_lo = l.op.ppe.out_zp;  // ReLU: the output zero point and above
  DPUEMU_ASSIGN_OR_RETURN(json j, LayerSpecJson(l, dir, name));
  j["name"] = name;
  j["inputs"] = inputs;
  return j;
}

}  // namespace

StatusOr<std::string> WriteExampleNetwork(const std::string& dir, const Target& target,
                                          uint64_t seed) {
  const auto spec = [](NceKind kind, int64_t hw, int64_t c, int64_t k, int64_t kernel,
                       int64_t stride, int64_t pad) {
    LayerSpec s;
    s.kind = kind;
    s.h = s.w = hw;
    s.c = c;
    s.k = k;
    s.ky = s.kx = kernel;
    s.stride = stride;
    s.pad = pad;
    return s;
  };
  using K = NceKind;
  struct L {
    const char* name;
    std::vector<std::string> inputs;
    LayerSpec s;
    bool relu;
  };
  const std::vector<L> layers = {
      {"stem", {"input"}, spec(K::kConv, 32, 3, 16, 3, 1, 1), true},  // RGB: compressed conv
      {"pool", {"stem"}, spec(K::kMaxPool, 32, 16, 16, 3, 2, 1), false},
      {"b1_conv1", {"pool"}, spec(K::kConv, 16, 16, 16, 3, 1, 1), true},
      {"b1_conv2", {"b1_conv1"}, spec(K::kConv, 16, 16, 16, 3, 1, 1), false},
      {"b1_add", {"pool", "b1_conv2"}, spec(K::kEltwise, 16, 16, 16, 1, 1, 0), true},
      {"b2_conv1", {"b1_add"}, spec(K::kConv, 16, 16, 32, 3, 2, 1), true},
      {"b2_conv2", {"b2_conv1"}, spec(K::kConv, 8, 32, 32, 3, 1, 1), false},
      {"b2_short", {"b1_add"}, spec(K::kConv, 16, 16, 32, 1, 2, 0), false},
      {"b2_add", {"b2_short", "b2_conv2"}, spec(K::kEltwise, 8, 32, 32, 1, 1, 0), true},
      {"gap", {"b2_add"}, spec(K::kAvgPool, 8, 32, 32, 8, 1, 0), false},
      {"fc", {"gap"}, spec(K::kConv, 1, 32, 16, 1, 1, 0), false},
  };
  json net = {{"name", "resnet_tiny_int8"},
              {"target", target.name},
              {"activation_sparsity", "auto"},
              {"layers", json::array()},
              {"outputs", {"fc"}}};
  LayerSpec in = spec(K::kConv, 32, 3, 16, 3, 1, 1);
  in.input_sparsity = 0.1;
  DPUEMU_ASSIGN_OR_RETURN(NceLayer x, GenerateLayer(in, seed));
  DPUEMU_RETURN_IF_ERROR(WriteNpy(dir + "/input.npy", x.input));
  net["input"] = {{"npy", "input.npy"}, {"dtype", "u8"}, {"zero_point", x.op.in_zp}};
  uint64_t n = 0;
  for (const L& l : layers) {
    DPUEMU_ASSIGN_OR_RETURN(json j, ExampleLayer(dir, l.name, l.inputs, l.s, seed + ++n, l.relu));
    net["layers"].push_back(j);
  }
  const std::string path = dir + "/network.json";
  const std::string text = net.dump(2) + "\n";
  DPUEMU_RETURN_IF_ERROR(
      WriteFileBytes(path, ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  return path;
}

}  // namespace dpuemu
