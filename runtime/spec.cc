#include "runtime/spec.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "runtime/npy.h"

namespace dpuemu {
namespace {

using json = nlohmann::json;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

std::string Str(int64_t v) { return std::to_string(v); }

// "string \"abc\"" for messages; long values cut short.
std::string Describe(const json& j) {
  std::string d = j.dump();
  if (d.size() > 40) d = d.substr(0, 37) + "...";
  return std::string(j.type_name()) + " " + d;
}

// A JSON value and its path in the spec ("ppe.mult[3]"), so every message names the field.
class Node {
 public:
  Node(const json& j, std::string path) : j_(&j), path_(std::move(path)) {}
  const std::string& path() const { return path_; }

  Status Error(const std::string& what) const {
    return InvalidArgument(path_.empty() ? what : path_ + ": " + what);
  }

  // Checks that this is an object whose keys are all in `known`.
  Status Object(std::initializer_list<const char*> known, const std::string& note = "") const {
    if (!j_->is_object()) return Error("must be an object, got " + Describe(*j_));
    for (const auto& item : j_->items()) {
      bool ok = false;
      for (const char* k : known) ok = ok || item.key() == k;
      if (!ok) {
        std::string list;
        for (const char* k : known) list += std::string(list.empty() ? "" : ", ") + k;
        return Child(item.key()).Error("unknown field" + note + " (known: " + list + ")");
      }
    }
    return OkStatus();
  }
  std::optional<Node> Get(const std::string& key) const {
    const auto it = j_->find(key);
    if (it == j_->end()) return std::nullopt;
    return Node(*it, Join(key));
  }
  StatusOr<Node> Required(const std::string& key) const {
    std::optional<Node> n = Get(key);
    if (!n) return Child(key).Error("missing (required)");
    return *n;
  }

  StatusOr<int64_t> Int(int64_t lo, int64_t hi, const std::string& note = "") const {
    int64_t v;
    if (j_->is_number_unsigned()) {
      const uint64_t u = j_->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error(j_->dump() + ": must be in [" + Str(lo) + ", " + Str(hi) + "]" + note);
      }
      v = static_cast<int64_t>(u);
    } else if (j_->is_number_integer()) {
      v = j_->get<int64_t>();
    } else {
      return Error("must be an integer, got " + Describe(*j_));
    }
    if (v < lo || v > hi) {
      return InvalidArgument(path_ + " = " + Str(v) + ": must be in [" + Str(lo) + ", " + Str(hi) +
                             "]" + note);
    }
    return v;
  }
  StatusOr<double> Number() const {
    if (!j_->is_number()) return Error("must be a number, got " + Describe(*j_));
    return j_->get<double>();
  }
  StatusOr<float> Float32() const {
    DPUEMU_ASSIGN_OR_RETURN(double v, Number());
    if (std::fabs(v) > FLT_MAX) return Error(std::to_string(v) + ": does not fit fp32");
    return static_cast<float>(v);
  }
  StatusOr<bool> Bool() const {
    if (!j_->is_boolean()) return Error("must be true or false, got " + Describe(*j_));
    return j_->get<bool>();
  }
  StatusOr<std::string> String() const {
    if (!j_->is_string()) return Error("must be a string, got " + Describe(*j_));
    return j_->get<std::string>();
  }
  // The string, which must be one of `choices`.
  StatusOr<std::string> Choice(const std::vector<std::string>& choices) const {
    DPUEMU_ASSIGN_OR_RETURN(std::string s, String());
    std::string list;
    for (const std::string& c : choices) {
      if (s == c) return s;
      list += (list.empty() ? "" : "|") + c;
    }
    return Error("must be one of " + list + ", got '" + s + "'");
  }
  // The elements of an array of exactly `size` elements.
  StatusOr<std::vector<Node>> Array(size_t size) const {
    if (!j_->is_array()) return Error("must be a list, got " + Describe(*j_));
    if (j_->size() != size) {
      return Error("must be a list of " + Str(static_cast<int64_t>(size)) + " values, got " +
                   Str(static_cast<int64_t>(j_->size())));
    }
    std::vector<Node> out;
    for (size_t i = 0; i < size; ++i) {
      out.emplace_back((*j_)[i], path_ + "[" + Str(static_cast<int64_t>(i)) + "]");
    }
    return out;
  }
  // A scalar for every output channel, or a list of one value per output channel.
  StatusOr<std::vector<Node>> PerChannel(int64_t k) const {
    if (!j_->is_array()) return std::vector<Node>(static_cast<size_t>(k), *this);
    if (j_->size() != static_cast<size_t>(k)) {
      return Error("a list needs one value per output channel (K = " + Str(k) + "), got " +
                   Str(static_cast<int64_t>(j_->size())));
    }
    return Array(static_cast<size_t>(k));
  }

 private:
  Node Child(const std::string& key) const { return Node(*j_, Join(key)); }
  std::string Join(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  const json* j_;
  std::string path_;
};

StatusOr<DType> DTypeField(const Node& n, std::initializer_list<DType> allowed) {
  std::vector<std::string> names;
  for (DType t : allowed) names.push_back(DTypeName(t));
  DPUEMU_ASSIGN_OR_RETURN(std::string s, n.Choice(names));
  return ParseDType(s);
}

// A zero point: within the integer type's range, 0 (or absent) for float types.
StatusOr<int32_t> ZeroPoint(const Node& parent, DType t) {
  std::optional<Node> n = parent.Get("zero_point");
  if (!n) return 0;
  const std::string name = DTypeName(t);
  DPUEMU_ASSIGN_OR_RETURN(int64_t v, IsFloat(t)
                                         ? n->Int(0, 0, " (" + name + " has no zero point)")
                                         : n->Int(DTypeMin(t), DTypeMax(t), " (" + name + ")"));
  return static_cast<int32_t>(v);
}

struct TensorFile {
  Tensor tensor;
  std::string file;  // as opened, for messages
};

// The .npy file named by `n` (relative to `dir` unless absolute), which must hold `dtype`.
StatusOr<TensorFile> LoadTensor(const Node& n, const std::string& dir, DType dtype,
                                const std::string& why) {
  TensorFile tf;
  DPUEMU_ASSIGN_OR_RETURN(tf.file, n.String());
  if (!dir.empty() && (tf.file.empty() || tf.file[0] != '/')) tf.file = dir + "/" + tf.file;
  StatusOr<Tensor> t = ReadNpy(tf.file);
  if (!t.ok()) return t.status().Annotate(n.path());
  if (t->dtype != dtype) {
    return n.Error("'" + tf.file + "' holds " + NpyDescr(t->dtype) + " (" + DTypeName(t->dtype) +
                   "); " + why + " needs " + NpyDescr(dtype) + " (" + DTypeName(dtype) + ")");
  }
  tf.tensor = std::move(t).value();
  return tf;
}

Status ShapeError(const Node& n, const TensorFile& tf, const std::string& want) {
  return n.Error("'" + tf.file + "' has shape " + tf.tensor.ShapeString() + ": needs " + want);
}

// The "input" and "weights" objects: {npy, dtype, zero_point} (+ `extra` keys read elsewhere).
struct TensorField {
  DType dtype;
  int32_t zp;
  TensorFile npy;
  Node npy_node;
};
StatusOr<TensorField> ParseTensorField(const Node& root, const char* key,
                                       std::initializer_list<DType> dtypes, bool se_size,
                                       const std::string& dir) {
  DPUEMU_ASSIGN_OR_RETURN(Node n, root.Required(key));
  DPUEMU_RETURN_IF_ERROR(se_size ? n.Object({"npy", "dtype", "zero_point", "se_size"})
                                 : n.Object({"npy", "dtype", "zero_point"}));
  DPUEMU_ASSIGN_OR_RETURN(Node dtype_node, n.Required("dtype"));
  DPUEMU_ASSIGN_OR_RETURN(DType dtype, DTypeField(dtype_node, dtypes));
  DPUEMU_ASSIGN_OR_RETURN(int32_t zp, ZeroPoint(n, dtype));
  DPUEMU_ASSIGN_OR_RETURN(Node npy_node, n.Required("npy"));
  DPUEMU_ASSIGN_OR_RETURN(TensorFile npy, LoadTensor(npy_node, dir, dtype, dtype_node.path()));
  return TensorField{dtype, zp, std::move(npy), npy_node};
}

Status ParseTensors(const Node& root, const std::string& dir, ConvLayer& layer) {
  ConvOp& op = layer.op;
  ConvGeometry& g = op.g;
  DPUEMU_ASSIGN_OR_RETURN(
      TensorField in,
      ParseTensorField(root, "input", {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16},
                       /*se_size=*/true, dir));
  std::vector<int64_t> s = in.npy.tensor.shape;
  if (s.size() == 4 && s[0] == 1) s.erase(s.begin());
  if (s.size() != 3) return ShapeError(in.npy_node, in.npy, "[H, W, C] or [1, H, W, C]");
  DPUEMU_ASSIGN_OR_RETURN(
      TensorField w,
      ParseTensorField(root, "weights", {DType::kI8, DType::kU8, DType::kFP16, DType::kBF16},
                       /*se_size=*/false, dir));
  const std::vector<int64_t>& ws = w.npy.tensor.shape;
  if (ws.size() != 4) return ShapeError(w.npy_node, w.npy, "[K, KY, KX, C]");
  if (ws[3] != s[2]) {
    return ShapeError(w.npy_node, w.npy,
                      "[K, KY, KX, C] with C = " + Str(s[2]) + " (the input's channels)");
  }
  op.in_dtype = in.dtype;
  op.in_zp = in.zp;
  op.w_dtype = w.dtype;
  op.w_zp = w.zp;
  g.h = s[0];
  g.w = s[1];
  g.c = s[2];
  g.k = ws[0];
  g.ky = ws[1];
  g.kx = ws[2];
  layer.input = std::move(in.npy.tensor);
  layer.input.shape = s;
  layer.weights = std::move(w.npy.tensor);
  return OkStatus();
}

Status ParseGeometry(const Node& root, ConvGeometry& g) {
  if (std::optional<Node> n = root.Get("stride")) {
    DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->Array(2));
    DPUEMU_ASSIGN_OR_RETURN(g.stride_y, v[0].Int(1, kInt32Max));
    DPUEMU_ASSIGN_OR_RETURN(g.stride_x, v[1].Int(1, kInt32Max));
  }
  if (std::optional<Node> n = root.Get("pad")) {
    DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->Array(4));
    DPUEMU_ASSIGN_OR_RETURN(g.pad_top, v[0].Int(0, kInt32Max));
    DPUEMU_ASSIGN_OR_RETURN(g.pad_bottom, v[1].Int(0, kInt32Max));
    DPUEMU_ASSIGN_OR_RETURN(g.pad_left, v[2].Int(0, kInt32Max));
    DPUEMU_ASSIGN_OR_RETURN(g.pad_right, v[3].Int(0, kInt32Max));
  }
  return OkStatus();
}

// Per-channel integers of ppe.`key` (default `def`) in [lo, hi].
StatusOr<std::vector<int32_t>> ChannelInts(const Node& ppe, const char* key, int64_t k, int32_t def,
                                           int64_t lo, int64_t hi) {
  std::vector<int32_t> out(static_cast<size_t>(k), def);
  std::optional<Node> n = ppe.Get(key);
  if (!n) return out;
  DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->PerChannel(k));
  for (size_t i = 0; i < v.size(); ++i) {
    DPUEMU_ASSIGN_OR_RETURN(int64_t x, v[i].Int(lo, hi));
    out[i] = static_cast<int32_t>(x);
  }
  return out;
}

Status ParsePpe(const Node& root, const std::string& dir, ConvLayer& layer) {
  ConvOp& op = layer.op;
  const int64_t k = op.g.k;
  const bool integer = IsInteger(op.in_dtype);
  const json empty = json::object();
  Node ppe(empty, "ppe");
  if (std::optional<Node> n = root.Get("ppe")) ppe = *n;
  if (integer) {
    DPUEMU_RETURN_IF_ERROR(ppe.Object({"mult", "shift", "out_zero_point", "clamp", "leaky_relu"},
                                      " for integer layers"));
    DPUEMU_ASSIGN_OR_RETURN(layer.quant.mult, ChannelInts(ppe, "mult", k, 1, 0, 65535));
    DPUEMU_ASSIGN_OR_RETURN(layer.quant.shift, ChannelInts(ppe, "shift", k, 0, 0, 63));
    if (std::optional<Node> n = ppe.Get("out_zero_point")) {
      // i32 outputs have no PPE; ValidateOp explains why their zero point must be 0.
      const DType t = op.out_dtype;
      DPUEMU_ASSIGN_OR_RETURN(
          int64_t v, n->Int(DTypeMin(t), DTypeMax(t), " (" + std::string(DTypeName(t)) + ")"));
      op.ppe.out_zp = static_cast<int32_t>(v);
    }
    if (std::optional<Node> n = ppe.Get("leaky_relu")) {
      DPUEMU_RETURN_IF_ERROR(n->Object({"mult", "shift"}));
      DPUEMU_ASSIGN_OR_RETURN(Node m, n->Required("mult"));
      DPUEMU_ASSIGN_OR_RETURN(Node s, n->Required("shift"));
      DPUEMU_ASSIGN_OR_RETURN(int64_t mv, m.Int(0, 2047));
      DPUEMU_ASSIGN_OR_RETURN(int64_t sv, s.Int(0, 31));
      op.ppe.leaky_relu = true;
      op.ppe.lrelu_mult = static_cast<int32_t>(mv);
      op.ppe.lrelu_shift = static_cast<int32_t>(sv);
    }
  } else {
    DPUEMU_RETURN_IF_ERROR(ppe.Object({"scale", "clamp"}, " for float layers"));
    layer.quant.scale.assign(static_cast<size_t>(k), 1.0f);
    if (std::optional<Node> n = ppe.Get("scale")) {
      DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->PerChannel(k));
      for (size_t i = 0; i < v.size(); ++i) {
        DPUEMU_ASSIGN_OR_RETURN(layer.quant.scale[i], v[i].Float32());
      }
    }
  }
  if (std::optional<Node> n = ppe.Get("clamp")) {
    DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->Array(2));
    DPUEMU_ASSIGN_OR_RETURN(op.ppe.clamp_lo, v[0].Number());
    DPUEMU_ASSIGN_OR_RETURN(op.ppe.clamp_hi, v[1].Number());
  }

  // Bias: int32 on the integer path, fp32 on the float path; zeros when absent.
  const DType bias_type = integer ? DType::kI32 : DType::kFP32;
  Tensor bias(bias_type, {k});
  if (std::optional<Node> b = root.Get("bias")) {
    DPUEMU_RETURN_IF_ERROR(b->Object({"npy"}));
    DPUEMU_ASSIGN_OR_RETURN(Node npy, b->Required("npy"));
    DPUEMU_ASSIGN_OR_RETURN(
        TensorFile tf, LoadTensor(npy, dir, bias_type,
                                  integer ? "an integer layer's bias" : "a float layer's bias"));
    if (tf.tensor.shape != std::vector<int64_t>{k})
      return ShapeError(npy, tf, "[K] = [" + Str(k) + "]");
    bias = std::move(tf.tensor);
  }
  if (integer) {
    layer.quant.bias.assign(bias.data<int32_t>(), bias.data<int32_t>() + k);
  } else {
    layer.quant.fbias.assign(bias.data<float>(), bias.data<float>() + k);
  }
  return OkStatus();
}

Status ParseOutput(const Node& root, const Target& target, ConvOp& op, PlanOptions& plan) {
  DPUEMU_ASSIGN_OR_RETURN(Node out, root.Required("output"));
  DPUEMU_RETURN_IF_ERROR(out.Object({"dtype", "sparse", "se_size"}));
  DPUEMU_ASSIGN_OR_RETURN(Node dtype, out.Required("dtype"));
  DPUEMU_ASSIGN_OR_RETURN(op.out_dtype,
                          DTypeField(dtype, {DType::kU8, DType::kI8, DType::kI32, DType::kFP16,
                                             DType::kBF16, DType::kFP32}));
  if (std::optional<Node> n = out.Get("sparse")) {
    DPUEMU_ASSIGN_OR_RETURN(plan.output_sparse, n->Bool());
    if (plan.output_sparse && op.out_dtype == DType::kI32) {
      return n->Error("output dtype i32 (acc + bias, no PPE) cannot be written sparse");
    }
  }
  if (std::optional<Node> n = out.Get("se_size")) {
    DPUEMU_ASSIGN_OR_RETURN(plan.output_se_size, n->Int(0, kInt32Max));
    DPUEMU_RETURN_IF_ERROR(CheckSeSize(target, plan.output_se_size, n->path()));
  }
  return OkStatus();
}

Status ParseStorageAndSplit(const Node& root, const Target& target, PlanOptions& plan) {
  if (std::optional<Node> in = root.Get("input")) {
    if (std::optional<Node> n = in->Get("se_size")) {
      DPUEMU_ASSIGN_OR_RETURN(plan.input_se_size, n->Int(0, kInt32Max));
      DPUEMU_RETURN_IF_ERROR(CheckSeSize(target, plan.input_se_size, n->path()));
    }
  }
  if (std::optional<Node> sp = root.Get("sparsity")) {
    DPUEMU_RETURN_IF_ERROR(sp->Object({"weights", "input", "heuristic"}));
    std::string weights = "auto";
    if (std::optional<Node> n = sp->Get("weights")) {
      DPUEMU_ASSIGN_OR_RETURN(weights, n->Choice({"auto", "dense", "sparse"}));
    }
    if (std::optional<Node> n = sp->Get("heuristic")) {
      if (weights != "auto") {
        return n->Error("only applies with sparsity.weights = auto (weights is '" + weights + "')");
      }
      DPUEMU_ASSIGN_OR_RETURN(std::string h, n->Choice({"sas", "ratio", "cmx"}));
      DPUEMU_ASSIGN_OR_RETURN(plan.heuristic, ParseWeightHeuristic(h));
    } else if (weights != "auto") {
      DPUEMU_ASSIGN_OR_RETURN(plan.heuristic, ParseWeightHeuristic(weights));
    }
    if (std::optional<Node> n = sp->Get("input")) {
      DPUEMU_ASSIGN_OR_RETURN(std::string in, n->Choice({"dense", "sparse"}));
      plan.input_sparse = in == "sparse";
    }
  }
  if (std::optional<Node> n = root.Get("split")) {
    DPUEMU_ASSIGN_OR_RETURN(std::string s, n->String());
    DPUEMU_ASSIGN_OR_RETURN(plan.split, ParseSplitStrategy(s));  // case-insensitive
  }
  // The planner checks these against the target and names them.
  if (std::optional<Node> n = root.Get("tiles")) {
    DPUEMU_ASSIGN_OR_RETURN(int64_t v, n->Int(0, kInt32Max));
    plan.tiles = static_cast<int>(v);
  }
  if (std::optional<Node> n = root.Get("workloads_per_tile")) {
    DPUEMU_ASSIGN_OR_RETURN(int64_t v, n->Int(1, kInt32Max));
    plan.workloads_per_tile = static_cast<int>(v);
  }
  return OkStatus();
}

Status ParseRun(const Node& root, RunOptions& run) {
  std::optional<Node> r = root.Get("run");
  if (!r) return OkStatus();
  DPUEMU_RETURN_IF_ERROR(r->Object({"threads", "kernel", "reference"}));
  if (std::optional<Node> n = r->Get("threads")) {
    DPUEMU_ASSIGN_OR_RETURN(int64_t v, n->Int(0, 4096));
    run.threads = static_cast<int>(v);
  }
  if (std::optional<Node> n = r->Get("kernel")) {
    DPUEMU_ASSIGN_OR_RETURN(std::string s, n->Choice({"auto", "dense", "sparse-weights"}));
    DPUEMU_ASSIGN_OR_RETURN(run.kernel.kernel, ParseConvKernel(s));
  }
  if (std::optional<Node> n = r->Get("reference")) {
    DPUEMU_ASSIGN_OR_RETURN(run.reference, n->Bool());
  }
  return OkStatus();
}

StatusOr<Spec> ParseRoot(const json& j, const std::string& path) {
  const Node root(j, "");
  DPUEMU_RETURN_IF_ERROR(
      root.Object({"name", "target", "input", "weights", "bias", "stride", "pad", "ppe", "output",
                   "sparsity", "split", "tiles", "workloads_per_tile", "run", "se"}));
  if (root.Get("se")) {
    return Unimplemented(
        "se: storage-element operations (interpolate, transposed convolution, "
        "padding modes) are not supported yet");
  }
  Spec spec;
  spec.path = path;
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  spec.layer.name = base.size() > 5 && base.compare(base.size() - 5, 5, ".json") == 0
                        ? base.substr(0, base.size() - 5)
                        : base;
  if (std::optional<Node> n = root.Get("name")) {
    DPUEMU_ASSIGN_OR_RETURN(spec.layer.name, n->String());
  }
  DPUEMU_ASSIGN_OR_RETURN(Node target, root.Required("target"));
  DPUEMU_ASSIGN_OR_RETURN(std::string target_name, target.String());
  DPUEMU_ASSIGN_OR_RETURN(spec.target, TargetByName(target_name));

  // Output first: the PPE's fields depend on the output type.
  DPUEMU_RETURN_IF_ERROR(ParseOutput(root, *spec.target, spec.layer.op, spec.plan));
  DPUEMU_RETURN_IF_ERROR(ParseTensors(root, dir, spec.layer));
  DPUEMU_RETURN_IF_ERROR(ParseGeometry(root, spec.layer.op.g));
  DPUEMU_RETURN_IF_ERROR(ParsePpe(root, dir, spec.layer));
  DPUEMU_RETURN_IF_ERROR(ParseStorageAndSplit(root, *spec.target, spec.plan));
  DPUEMU_RETURN_IF_ERROR(ParseRun(root, spec.run));
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(spec.layer));
  return spec;
}

}  // namespace

StatusOr<Spec> ParseSpec(const std::string& text, const std::string& path) {
  json j;
  // nlohmann reports the position of a syntax error only through its exception.
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    const size_t end = what.find("] ");
    if (end != std::string::npos) what = what.substr(end + 2);
    return InvalidArgument(path + ": not valid JSON: " + what);
  }
  StatusOr<Spec> spec = ParseRoot(j, path);
  if (!spec.ok()) return spec.status().Annotate(path);
  return spec;
}

StatusOr<Spec> LoadSpec(const std::string& path) {
  std::vector<uint8_t> bytes;
  DPUEMU_ASSIGN_OR_RETURN(bytes, ReadFileBytes(path));
  return ParseSpec(std::string(bytes.begin(), bytes.end()), path);
}

}  // namespace dpuemu
