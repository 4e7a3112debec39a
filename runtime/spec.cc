#include "runtime/spec.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "hw/formats.h"
#include "hw/pool.h"
#include "kernels/bitmap.h"
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
    return ObjectOf(std::vector<std::string>(known.begin(), known.end()), note);
  }
  Status ObjectOf(const std::vector<std::string>& known, const std::string& note = "") const {
    if (!j_->is_object()) return Error("must be an object, got " + Describe(*j_));
    for (const auto& item : j_->items()) {
      if (std::find(known.begin(), known.end(), item.key()) == known.end()) {
        return Child(item.key())
            .Error("unknown field" + note + " (known: " + JoinNames(known) + ")");
      }
    }
    return OkStatus();
  }
  static std::string JoinNames(const std::vector<std::string>& names) {
    std::string list;
    for (const std::string& k : names) list += (list.empty() ? "" : ", ") + k;
    return list;
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
  // The elements of a list of any length.
  StatusOr<std::vector<Node>> List() const {
    if (!j_->is_array()) return Error("must be a list, got " + Describe(*j_));
    return Array(j_->size());
  }
  std::vector<std::string> Keys() const {
    std::vector<std::string> keys;
    if (j_->is_object()) {
      for (const auto& item : j_->items()) keys.push_back(item.key());
    }
    return keys;
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
  // int4 weights come as an int8 / uint8 array of values in the type's range (one per byte, as a
  // host tensor holds them); the DPU buffers pack them two per byte.
  const DType file_dtype = dtype == DType::kI4 ? DType::kI8 : dtype == DType::kU4 ? DType::kU8 : dtype;
  DPUEMU_ASSIGN_OR_RETURN(TensorFile npy, LoadTensor(npy_node, dir, file_dtype, dtype_node.path()));
  if (IsSubByte(dtype)) {
    npy.tensor.dtype = dtype;
    for (int64_t i = 0; i < npy.tensor.numel(); ++i) {
      const int32_t v = LoadInt(dtype, npy.tensor.bytes.data(), i);
      if (v < DTypeMin(dtype) || v > DTypeMax(dtype)) {
        return npy_node.Error("'" + npy.file + "' element " + Str(i) + " = " + Str(v) + ": not a " +
                              DTypeName(dtype) + " value [" + Str(DTypeMin(dtype)) + ", " +
                              Str(DTypeMax(dtype)) + "]");
      }
    }
  }
  return TensorField{dtype, zp, std::move(npy), npy_node};
}

// se.op interpolate_bilinear: the lowering makes the box kernel (InterpolateBilinearAsZMConv), so
// the spec gives no weights, stride or pad.
bool SeGeneratesWeights(const Node& root) {
  const std::optional<Node> se = root.Get("se");
  if (!se) return false;
  const std::optional<Node> op = se->Get("op");
  if (!op) return false;
  const StatusOr<std::string> name = op->String();
  return name.ok() && *name == "interpolate_bilinear";
}

// The tensors and the shape they give: input [H, W, C] (or [1, H, W, C]), then by kind: conv
// weights [K, KY, KX, C]; dwconv weights [C, KY, KX, 1]; pools "kernel" [KY, KX]; eltwise
// input2 of the input's shape. Channel-wise kinds have K = C.
Status ParseTensors(const Node& root, const std::string& dir, const LayerInputs* given,
                    NceLayer& layer) {
  NceOp& op = layer.op;
  NceGeometry& g = op.g;
  const std::string kind = NceKindName(op.kind);
  const auto input_field = [&]() -> StatusOr<TensorField> {
    if (given != nullptr) {  // a network layer: the producer's tensor
      return TensorField{given->input.dtype, given->input_zp, {given->input, given->input_name},
                         root};
    }
    return ParseTensorField(root, "input", {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16},
                            /*se_size=*/true, dir);
  };
  DPUEMU_ASSIGN_OR_RETURN(TensorField in, input_field());
  std::vector<int64_t> s = in.npy.tensor.shape;
  if (s.size() == 4 && s[0] == 1) s.erase(s.begin());
  if (s.size() != 3) return ShapeError(in.npy_node, in.npy, "[H, W, C] or [1, H, W, C]");
  op.in_dtype = in.dtype;
  op.in_zp = in.zp;
  g.h = s[0];
  g.w = s[1];
  g.c = s[2];
  g.k = g.c;
  std::string shapes = "'" + in.npy.file + "' " + in.npy.tensor.ShapeString();
  for (const char* key : {"weights", "kernel", "input2"}) {
    const bool wanted = std::string(key) == "weights" ? HasWeights(op.kind)
                        : std::string(key) == "kernel" ? op.kind == NceKind::kMaxPool ||
                                                             op.kind == NceKind::kAvgPool
                                                       : op.kind == NceKind::kEltwise;
    if (!wanted || (given != nullptr && std::string(key) == "input2")) {
      if (std::optional<Node> n = root.Get(key)) {
        return n->Error(wanted ? "a network layer's second input comes from its inputs"
                               : "not a field of op " + kind);
      }
    }
  }
  const bool generated = SeGeneratesWeights(root);
  if (generated) {
    for (const char* key : {"weights", "stride", "pad"}) {
      if (std::optional<Node> n = root.Get(key)) {
        return n->Error(
            "not given with se.op interpolate_bilinear: the lowering makes the box-kernel "
            "convolution itself (weights 1 / (KY * KX), its kernel and stride from the scale)");
      }
    }
  }
  if (HasWeights(op.kind) && !generated) {
    DPUEMU_ASSIGN_OR_RETURN(
        TensorField w,
        ParseTensorField(root, "weights", {DType::kI8, DType::kU8, DType::kI4, DType::kU4, DType::kFP16, DType::kBF16},
                         /*se_size=*/false, dir));
    const std::vector<int64_t>& ws = w.npy.tensor.shape;
    const bool dw = op.kind == NceKind::kDwConv;
    const char* form = dw ? "[C, KY, KX, 1]" : "[K, KY, KX, C]";
    if (ws.size() != 4) return ShapeError(w.npy_node, w.npy, form);
    if (dw ? (ws[0] != s[2] || ws[3] != 1) : ws[3] != s[2]) {
      return ShapeError(w.npy_node, w.npy,
                        std::string(form) + " with C = " + Str(s[2]) + " (the input's channels)");
    }
    op.w_dtype = w.dtype;
    op.w_zp = w.zp;
    g.k = ws[0];
    g.ky = ws[1];
    g.kx = ws[2];
    shapes += " with '" + w.npy.file + "' " + w.npy.tensor.ShapeString();
    layer.weights = std::move(w.npy.tensor);
  }
  if (op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool) {
    DPUEMU_ASSIGN_OR_RETURN(Node kn, root.Required("kernel"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, kn.Array(2));
    DPUEMU_ASSIGN_OR_RETURN(g.ky, v[0].Int(1, kMaxKernel));
    DPUEMU_ASSIGN_OR_RETURN(g.kx, v[1].Int(1, kMaxKernel));
  }
  if (op.kind == NceKind::kEltwise) {
    const auto input2_field = [&]() -> StatusOr<TensorField> {
      if (given == nullptr) {
        return ParseTensorField(root, "input2",
                                {DType::kU8, DType::kI8, DType::kFP16, DType::kBF16},
                                /*se_size=*/false, dir);
      }
      if (!given->has_input2) return root.Error("inputs: eltwise takes two inputs (got one)");
      return TensorField{given->input2.dtype, given->input2_zp,
                         {given->input2, given->input2_name}, root};
    };
    DPUEMU_ASSIGN_OR_RETURN(TensorField in2, input2_field());
    std::vector<int64_t> s2 = in2.npy.tensor.shape;
    if (s2.size() == 4 && s2[0] == 1) s2.erase(s2.begin());
    if (s2 != s) {
      return ShapeError(in2.npy_node, in2.npy, "the input's shape " + in.npy.tensor.ShapeString());
    }
    op.eltwise.in2_dtype = in2.dtype;
    op.eltwise.in2_zp = in2.zp;
    layer.input2 = std::move(in2.npy.tensor);
    layer.input2.shape = s;
  }
  // Bounded here, before the PPE's per-channel lists and the bias are sized by K.
  if (const Status dims = ValidateDims(g, op.kind); !dims.ok()) {
    return root.Error(shapes + ": " + dims.message());
  }
  layer.input = std::move(in.npy.tensor);
  layer.input.shape = s;
  return OkStatus();
}

// The eltwise's "eltwise" object: {type}.
Status ParseEltwise(const Node& root, NceOp& op) {
  std::optional<Node> n = root.Get("eltwise");
  if (op.kind != NceKind::kEltwise) {
    if (n) return n->Error(std::string("not a field of op ") + NceKindName(op.kind));
    return OkStatus();
  }
  if (!n) return OkStatus();  // add
  DPUEMU_RETURN_IF_ERROR(n->Object({"type"}));
  if (std::optional<Node> t = n->Get("type")) {
    DPUEMU_ASSIGN_OR_RETURN(std::string type, t->Choice({"add", "sub", "mult"}));
    DPUEMU_ASSIGN_OR_RETURN(op.eltwise.type, ParseEltwiseType(type));
  }
  return OkStatus();
}

Status ParseGeometry(const Node& root, NceGeometry& g) {
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

Status ParsePpe(const Node& root, const std::string& dir, NceLayer& layer) {
  NceOp& op = layer.op;
  const int64_t k = op.g.k;
  const bool integer = IsInteger(op.in_dtype);
  const json empty = json::object();
  Node ppe(empty, "ppe");
  std::vector<double> scale_given;  // float path: the scales as written, before rounding to fp32
  if (std::optional<Node> n = root.Get("ppe")) ppe = *n;
  if (integer) {
    // The pools' requantisation is the hardware's own (maxpool: none; avgpool: the window's
    // 1 / (KY * KX) as the compiler lowers it); the eltwise adds its inputs' multipliers.
    switch (op.kind) {
      case NceKind::kMaxPool:
      case NceKind::kAvgPool:
        DPUEMU_RETURN_IF_ERROR(ppe.Object({"out_zero_point", "clamp"},
                                          std::string(" for integer ") + NceKindName(op.kind)));
        break;
      case NceKind::kEltwise:
        DPUEMU_RETURN_IF_ERROR(ppe.Object({"in1_mult", "in2_mult", "mult", "shift",
                                           "out_zero_point", "clamp", "leaky_relu"},
                                          " for integer eltwise"));
        for (const auto& f : {std::make_pair("in1_mult", &op.eltwise.in1_mult),
                              std::make_pair("in2_mult", &op.eltwise.in2_mult)}) {
          if (std::optional<Node> n = ppe.Get(f.first)) {
            DPUEMU_ASSIGN_OR_RETURN(int64_t v, n->Int(0, 65535));
            *f.second = static_cast<int32_t>(v);
          }
        }
        break;
      default:
        DPUEMU_RETURN_IF_ERROR(ppe.Object(
            {"mult", "shift", "out_zero_point", "clamp", "leaky_relu"}, " for integer layers"));
    }
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
    DPUEMU_RETURN_IF_ERROR(ppe.Object({"scale", "clamp", "leaky_relu"}, " for float layers"));
    layer.quant.scale.assign(static_cast<size_t>(k), 1.0f);
    scale_given.assign(static_cast<size_t>(k), 1.0);
    if (std::optional<Node> n = ppe.Get("scale")) {
      DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->PerChannel(k));
      for (size_t i = 0; i < v.size(); ++i) {
        DPUEMU_ASSIGN_OR_RETURN(layer.quant.scale[i], v[i].Float32());
        DPUEMU_ASSIGN_OR_RETURN(scale_given[i], v[i].Number());
      }
    }
    // The float PPE's negative slope (fp_prelu_alpha), an fp32 multiply after the scale.
    if (std::optional<Node> n = ppe.Get("leaky_relu")) {
      DPUEMU_RETURN_IF_ERROR(n->Object({"alpha"}, " for float layers"));
      DPUEMU_ASSIGN_OR_RETURN(Node a, n->Required("alpha"));
      DPUEMU_ASSIGN_OR_RETURN(op.ppe.lrelu_alpha, a.Float32());
      op.ppe.leaky_relu = true;
    }
  }
  if (std::optional<Node> n = ppe.Get("clamp")) {
    DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->Array(2));
    DPUEMU_ASSIGN_OR_RETURN(op.ppe.clamp_lo, v[0].Number());
    DPUEMU_ASSIGN_OR_RETURN(op.ppe.clamp_hi, v[1].Number());
  }
  // The pools' scale is the hardware's (hw/pool.h), never a spec field: maxpool none; avgpool the
  // window's, as the compiler derives it for equal input and output quantisation
  // (computeAvgPoolQuantScale, then QuantizationApproximation or the fp32 PPE scale).
  if (op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool) {
    if (std::optional<Node> n = ppe.Get("scale")) {
      return n->Error(std::string("not a field of op ") + NceKindName(op.kind) +
                      " (its PPE scale follows from the kernel: hw/pool.h)");
    }
    if (op.kind == NceKind::kMaxPool && integer && !ppe.Get("out_zero_point")) {
      op.ppe.out_zp = op.in_zp;  // the stored max passes through: the input's zero point
    }
    if (op.kind == NceKind::kAvgPool && integer) {
      DPUEMU_ASSIGN_OR_RETURN(PpeIntScale s, AvgPoolIntScale(1.0, op.g.ky, op.g.kx));
      layer.quant.mult.assign(static_cast<size_t>(k), s.mult);
      layer.quant.shift.assign(static_cast<size_t>(k), s.shift);
    } else if (op.kind == NceKind::kAvgPool) {
      DPUEMU_ASSIGN_OR_RETURN(float s, AvgPoolFloatScale(1.0, op.g.ky, op.g.kx));
      layer.quant.scale.assign(static_cast<size_t>(k), s);
      scale_given.assign(static_cast<size_t>(k), s);
    }
  }

  // Bias: int32 on the integer path, fp32 on the float path; zeros when absent.
  const DType bias_type = integer ? DType::kI32 : DType::kFP32;
  Tensor bias(bias_type, {k});
  bool accumulator_units = integer;
  const std::optional<Node> b = root.Get("bias");
  if (b && !HasWeights(op.kind)) {
    return b->Error(std::string("not a field of op ") + NceKindName(op.kind) +
                    " (only conv and dwconv have a weight table with a bias)");
  }
  if (b) {
    DPUEMU_RETURN_IF_ERROR(integer ? b->Object({"npy"}, " for integer layers (accumulator units)")
                                   : b->Object({"npy", "units"}));
    if (std::optional<Node> u = b->Get("units")) {
      DPUEMU_ASSIGN_OR_RETURN(std::string units, u->Choice({"output", "accumulator"}));
      accumulator_units = units == "accumulator";
    }
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
  } else if (accumulator_units) {
    layer.quant.fbias.assign(bias.data<float>(), bias.data<float>() + k);
  } else {
    // The PPE adds the bias before the scale: the weight table holds bias / scale (FloatBiasWord).
    for (int64_t i = 0; i < k; ++i) {
      StatusOr<float> word = FloatBiasWord(bias.data<float>()[i], scale_given[static_cast<size_t>(i)]);
      if (!word.ok()) return b->Error("[" + Str(i) + "]: " + word.status().message() + " (or give bias.units = accumulator)");
      layer.quant.fbias.push_back(*word);
    }
  }
  return OkStatus();
}

Status ParseOutput(const Node& root, const Target& target, NceOp& op, PlanOptions& plan) {
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
      DPUEMU_ASSIGN_OR_RETURN(std::string h, n->Choice({"sas", "ratio", "cmx", "cost"}));
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
  if (std::optional<Node> n = root.Get("split_rule")) {
    DPUEMU_ASSIGN_OR_RETURN(std::string r, n->Choice({"auto", "seed", "compiler"}));
    DPUEMU_ASSIGN_OR_RETURN(plan.split_rule, ParseSplitRule(r));
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

// ---- "se": storage-element pointer operations ----

std::string Shape3(int64_t h, int64_t w, int64_t c) {
  return "[" + Str(h) + ", " + Str(w) + ", " + Str(c) + "]";
}

constexpr const char* kSeOps[] = {
    "upsample_nearest", "interpolate_nearest", "interpolate_bilinear", "transposed", "pad", "roll",
    "dilate"};
// Fields every form takes, and each form's own.
const std::vector<std::string> kSeCommon = {"se_size", "source_rows_per_tile"};
struct SeForm {
  std::string op;
  std::vector<std::string> fields;
};
const std::vector<SeForm>& SeForms() {
  static const std::vector<SeForm> forms = {
      {"upsample_nearest", {"op", "factor"}},
      {"interpolate_nearest", {"op", "size", "mode", "nearest_mode"}},
      {"interpolate_bilinear", {"op", "size", "mode"}},
      {"transposed", {"op", "output_padding"}},
      {"pad", {"op", "pad", "mode"}},
      {"roll", {"op", "shift"}},
      {"dilate", {"op", "dilation"}},
      {"table", {"table", "map"}},
  };
  return forms;
}

// "[2, 3]" of a list of integers.
std::string IntList(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + Str(v[i]);
  return s + "]";
}

// A list of `n` integers in [lo, hi] (note appended to range errors).
StatusOr<std::vector<int64_t>> Ints(const Node& n, size_t size, int64_t lo, int64_t hi,
                                    const std::string& note = "") {
  DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n.Array(size));
  std::vector<int64_t> out;
  for (const Node& e : v) {
    DPUEMU_ASSIGN_OR_RETURN(int64_t x, e.Int(lo, hi, note));
    out.push_back(x);
  }
  return out;
}

template <typename E>
std::vector<std::string> EnumNames(const char* (*name)(E), int count) {
  std::vector<std::string> names;
  for (int i = 0; i < count; ++i) names.push_back(name(static_cast<E>(i)));
  return names;
}

// An error of LowerWithGather: "gather.table[...]" / "gather.map: ..." name the spec's se.table
// and se.map; anything else is about the convolution over the virtual tensor.
Status LoweringError(const Status& s, const SeGather& g) {
  const std::string& m = s.message();
  if (m.rfind("gather.", 0) == 0) return Status(s.code(), "se." + m.substr(7));
  return s.Annotate("se: the ZMConv over the virtual input " + Shape3(g.h, g.w, g.c));
}

// The source rows each virtual row's SEs with any map bit set read (LowerWithGather has checked
// every pointer against the layout).
void SourceRowsRead(const SeSpec& se, const SeGather& g, PlanSe* out) {
  const std::vector<SourceLayout::Part> parts =
      se.layout.tiles.empty() ? std::vector<SourceLayout::Part>{{g.source_h, 0}} : se.layout.tiles;
  std::vector<int64_t> first_row;
  int64_t row = 0;
  for (const SourceLayout::Part& p : parts) {
    first_row.push_back(row);
    row += p.rows;
  }
  const int64_t row_bytes = g.source_w * g.c * DTypeBytes(se.source.dtype);
  const int64_t ses = g.c / g.se_size, se_map_bytes = g.se_size / 8;
  out->source_row_begin.assign(static_cast<size_t>(g.h), 0);
  out->source_row_end.assign(static_cast<size_t>(g.h), 0);
  for (int64_t y = 0; y < g.h; ++y) {
    int64_t lo = g.source_h, hi = 0;
    for (int64_t s = y * g.w * ses; s < (y + 1) * g.w * ses; ++s) {
      const uint8_t* bits = g.map.data() + s * se_map_bytes;
      bool any = false;
      for (int64_t b = 0; b < se_map_bytes && !any; ++b) any = bits[b] != 0;
      if (!any) continue;
      const SePointer p = DecodeSePointer(g.table[static_cast<size_t>(s)]);
      const size_t tile = static_cast<size_t>(p.tile);
      const int64_t r = first_row[tile] + (p.offset - parts[tile].base_offset) / row_bytes;
      lo = std::min(lo, r);
      hi = std::max(hi, r + 1);
    }
    if (hi > lo) {
      out->source_row_begin[static_cast<size_t>(y)] = lo;
      out->source_row_end[static_cast<size_t>(y)] = hi;
    }
  }
}

// se.table + se.map: a gather made elsewhere.
StatusOr<SeGather> ParseSeTable(const Node& se, const std::string& dir, const Target& target,
                                const SeSpec& s, int64_t se_size, std::string* params) {
  const int64_t c = s.source.shape[2];
  DPUEMU_ASSIGN_OR_RETURN(Node table_node, se.Required("table"));
  DPUEMU_ASSIGN_OR_RETURN(Node map_node, se.Required("map"));
  DPUEMU_ASSIGN_OR_RETURN(TensorFile table,
                          LoadTensor(table_node, dir, DType::kI32, "se.table (SE pointers)"));
  const std::vector<int64_t>& ts = table.tensor.shape;
  if (ts.size() != 3 || ts[0] < 1 || ts[1] < 1 || ts[2] < 1) {
    return ShapeError(table_node, table, "[H', W', C / se_size] with every dimension >= 1");
  }
  if (se_size == 0) {
    if (c % ts[2] != 0) {
      return ShapeError(table_node, table,
                        "[H', W', C / se_size]: its last dimension must divide C = " + Str(c) +
                            " (the input's channels)");
    }
    se_size = c / ts[2];
    DPUEMU_RETURN_IF_ERROR(CheckSeSize(
        target, se_size,
        "se.se_size (C / the table's last dimension = " + Str(c) + " / " + Str(ts[2]) + ")"));
  } else if (ts[2] * se_size != c) {
    return ShapeError(table_node, table,
                      "[H', W', C / se_size] with C / se_size = " + Str(c) + " / " + Str(se_size) +
                          " = " + (c % se_size ? "(not whole)" : Str(c / se_size)));
  }
  DPUEMU_ASSIGN_OR_RETURN(
      TensorFile map,
      LoadTensor(map_node, dir, DType::kU8, "se.map (1 = present, 0 = reads as the zero point)"));
  const std::vector<int64_t> want = {ts[0], ts[1], c};
  if (map.tensor.shape != want) {
    return ShapeError(
        map_node, map,
        "[H', W', C] = " + Shape3(ts[0], ts[1], c) + " (the table's H' and W', the input's C)");
  }
  SeGather g;
  g.h = ts[0];
  g.w = ts[1];
  g.c = c;
  g.source_h = s.source.shape[0];
  g.source_w = s.source.shape[1];
  g.se_size = se_size;
  const int64_t n = g.h * g.w * g.c;
  if (n > kMaxInputElements) {
    return map_node.Error("the virtual tensor " + Shape3(g.h, g.w, g.c) +
                          " has more than 2^31 elements");
  }
  g.map.assign(static_cast<size_t>(ActivationMapBytes(n)), 0);
  const uint8_t* m = map.tensor.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    if (m[i] > 1) {
      const int64_t px = i / c;
      return map_node.Error("'" + map.file + "' holds " + Str(m[i]) + " at " +
                            Shape3(px / g.w, px % g.w, i % c) + ": must be 0 or 1");
    }
    if (m[i]) g.map[static_cast<size_t>(i >> 3)] |= static_cast<uint8_t>(1u << (i & 7));
  }
  g.table.resize(static_cast<size_t>(table.tensor.numel()));
  std::memcpy(g.table.data(), table.tensor.bytes.data(), g.table.size() * 4);  // little-endian
  for (int32_t& e : g.table) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&e);
    e = static_cast<int32_t>(uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 |
                             uint32_t{b[3]} << 24);
  }
  *params = "table '" + table.file + "', map '" + map.file + "'";
  g.description = "table: source " + Shape3(g.source_h, g.source_w, c) + " -> virtual " +
                  Shape3(g.h, g.w, g.c) + ", se_size " + Str(se_size) + " (" +
                  Str(static_cast<int64_t>(g.table.size())) + " SE pointers, map " +
                  Str(static_cast<int64_t>(g.map.size())) + " bytes)";
  return g;
}

// Parses "se" into spec.se and replaces spec.layer by the first DPU layer.
Status ParseSe(const Node& se, const std::string& dir, Spec& spec) {
  const Target& target = *spec.target;
  std::vector<std::string> known;
  for (const SeForm& f : SeForms()) {
    for (const std::string& k : f.fields) {
      if (std::find(known.begin(), known.end(), k) == known.end()) known.push_back(k);
    }
  }
  known.insert(known.end(), kSeCommon.begin(), kSeCommon.end());
  DPUEMU_RETURN_IF_ERROR(se.ObjectOf(known));
  const std::vector<std::string> ops(std::begin(kSeOps), std::end(kSeOps));
  std::string op;
  if (std::optional<Node> n = se.Get("op")) {
    DPUEMU_ASSIGN_OR_RETURN(op, n->Choice(ops));
  } else if (se.Get("table")) {
    op = "table";
  } else {
    std::string list;
    for (const std::string& o : ops) list += (list.empty() ? "" : "|") + o;
    return se.Error("needs either op (" + list + ") or table and map (an SE table made elsewhere)");
  }
  const SeForm& form = *std::find_if(SeForms().begin(), SeForms().end(),
                                     [&](const SeForm& f) { return f.op == op; });
  std::vector<std::string> fields = form.fields;
  fields.insert(fields.end(), kSeCommon.begin(), kSeCommon.end());
  for (const std::string& key : se.Keys()) {
    if (std::find(fields.begin(), fields.end(), key) != fields.end()) continue;
    return se.Get(key)->Error((op == "table"
                                   ? std::string("not a field of an SE table given as se.table")
                                   : "not a field of se.op '" + op + "'") +
                              " (its fields: " + Node::JoinNames(fields) + ")");
  }

  SeSpec s;
  s.op = op;
  s.source = spec.layer.input;
  s.source_sparse = spec.plan.input_sparse;
  const NceLayer& base = spec.layer;  // the spec's layer over the source
  const int64_t h = s.source.shape[0], c = s.source.shape[2];
  s.geometry = base.op.g;

  // The table's storage-element size: se.se_size or input.se_size (0: the target's default).
  int64_t se_size = spec.plan.input_se_size;
  if (se_size != 0 && c % se_size != 0) {
    return InvalidArgument("input.se_size = " + Str(se_size) + ": must divide C = " + Str(c) +
                           " (the input's channels)");
  }
  if (std::optional<Node> n = se.Get("se_size")) {
    DPUEMU_ASSIGN_OR_RETURN(int64_t v, n->Int(0, kInt32Max));
    DPUEMU_RETURN_IF_ERROR(CheckSeSize(target, v, n->path()));
    if (c % v != 0) {
      return InvalidArgument(n->path() + " = " + Str(v) + ": must divide C = " + Str(c) +
                             " (the input's channels)");
    }
    if (se_size != 0 && se_size != v) {
      return InvalidArgument(n->path() + " = " + Str(v) +
                             ": differs from input.se_size = " + Str(se_size) +
                             " (with se, both name the SE table's storage-element "
                             "size)");
    }
    se_size = v;
  }

  // Where the source rows live.
  if (std::optional<Node> n = se.Get("source_rows_per_tile")) {
    DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->List());
    if (v.empty() || static_cast<int64_t>(v.size()) > target.tiles) {
      return n->Error(Str(static_cast<int64_t>(v.size())) + " parts: must be 1 to " +
                      Str(target.tiles) + " (" + target.name + " has " + Str(target.tiles) +
                      " tiles)");
    }
    int64_t sum = 0;
    for (const Node& e : v) {
      DPUEMU_ASSIGN_OR_RETURN(int64_t rows,
                              e.Int(1, h, " (input.npy has H = " + Str(h) + " rows)"));
      s.layout.tiles.push_back({rows, 0});
      sum += rows;
    }
    if (sum != h) {
      return n->Error("rows add up to " + Str(sum) + ", input.npy has H = " + Str(h));
    }
  }
  StatusOr<SeSource> src_or = MakeSeSource(s.source, s.layout, s.source_sparse, base.op.in_zp);
  if (!src_or.ok()) return src_or.status().Annotate("se");
  const SeSource& src = *src_or;

  // The phases: one virtual layer each.
  auto add = [&](StatusOr<SeGather> g, NceLayer layer) -> Status {
    if (!g.ok()) return g.status().Annotate("se (" + op + ")");
    SeSpec::Phase ph;
    layer.op.g.h = g->h;
    layer.op.g.w = g->w;
    layer.input = Tensor();
    ph.layer = std::move(layer);
    ph.gather = std::move(g).value();
    s.phases.push_back(std::move(ph));
    return OkStatus();
  };
  auto required = [&](const char* key) { return se.Required(key); };
  if (op == "upsample_nearest") {
    DPUEMU_ASSIGN_OR_RETURN(Node n, required("factor"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<int64_t> f, Ints(n, 2, 1, kMaxSpatial));
    s.params = "factor " + IntList(f);
    DPUEMU_RETURN_IF_ERROR(add(UpsampleNearestGather(src, target, se_size, f[0], f[1]), base));
  } else if (op == "interpolate_nearest") {
    DPUEMU_ASSIGN_OR_RETURN(Node n, required("size"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<int64_t> size, Ints(n, 2, 1, kMaxSpatial));
    DPUEMU_ASSIGN_OR_RETURN(Node mode_node, required("mode"));
    DPUEMU_ASSIGN_OR_RETURN(std::string mode,
                            mode_node.Choice(EnumNames<CoordMode>(CoordModeName, 5)));
    std::string nearest = NearestModeName(NearestMode::kRoundPreferFloor);
    if (std::optional<Node> nm = se.Get("nearest_mode")) {
      DPUEMU_ASSIGN_OR_RETURN(nearest, nm->Choice(EnumNames<NearestMode>(NearestModeName, 4)));
    }
    DPUEMU_ASSIGN_OR_RETURN(const CoordMode cm, ParseCoordMode(mode));
    DPUEMU_ASSIGN_OR_RETURN(const NearestMode nmode, ParseNearestMode(nearest));
    s.params = "size " + IntList(size) + ", mode " + mode + ", nearest_mode " + nearest;
    DPUEMU_RETURN_IF_ERROR(
        add(InterpolateNearestGather(src, target, se_size, size[0], size[1], cm, nmode), base));
  } else if (op == "interpolate_bilinear") {
    // The compiler's NCEInterpolate BILINEAR (hw/se_ops.h InterpolateBilinearAsZMConv): the
    // spec's ppe is the interpolate's own requantisation; the box kernel's 1 / (KY * KX) is
    // folded into it.
    DPUEMU_ASSIGN_OR_RETURN(Node n, required("size"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<int64_t> size, Ints(n, 2, 1, kMaxSpatial));
    DPUEMU_ASSIGN_OR_RETURN(Node mode_node, required("mode"));
    DPUEMU_ASSIGN_OR_RETURN(
        std::string mode,
        mode_node.Choice({"asymmetric", "half_pixel", "align_corners", "pytorch_half_pixel"}));
    DPUEMU_ASSIGN_OR_RETURN(const CoordMode cm, ParseCoordMode(mode));
    StatusOr<BilinearInterp> b = PlanInterpolateBilinear(src.h, src.w, size[0], size[1], cm);
    if (!b.ok()) return b.status().Annotate(n.path());
    s.params = "size " + IntList(size) + ", mode " + mode + "; " + b->ToString();
    StatusOr<SeGather> g_or = InterpolateBilinearGather(src, target, se_size, *b);
    if (!g_or.ok()) return g_or.status().Annotate("se (interpolate_bilinear)");
    StatusOr<NceLayer> layer = InterpolateBilinearAsZMConv(*b, *g_or, base.op, base.quant);
    if (!layer.ok()) return layer.status().Annotate("se (interpolate_bilinear: ppe)");
    layer->name = base.name;
    DPUEMU_RETURN_IF_ERROR(add(std::move(g_or), std::move(layer).value()));
  } else if (op == "transposed") {
    const NceGeometry& g = base.op.g;
    TransposedConv tc;
    tc.stride_y = g.stride_y;
    tc.stride_x = g.stride_x;
    tc.pads = {g.pad_top, g.pad_bottom, g.pad_left, g.pad_right};
    tc.ky = g.ky;
    tc.kx = g.kx;
    if (std::optional<Node> n = se.Get("output_padding")) {
      DPUEMU_ASSIGN_OR_RETURN(std::vector<Node> v, n->Array(2));
      DPUEMU_ASSIGN_OR_RETURN(
          tc.output_padding_y,
          v[0].Int(0, tc.stride_y - 1, " (below stride[0] = " + Str(tc.stride_y) + ")"));
      DPUEMU_ASSIGN_OR_RETURN(
          tc.output_padding_x,
          v[1].Int(0, tc.stride_x - 1, " (below stride[1] = " + Str(tc.stride_x) + ")"));
    }
    s.params = "stride " + IntList({tc.stride_y, tc.stride_x}) + ", pad " +
               IntList({tc.pads.top, tc.pads.bottom, tc.pads.left, tc.pads.right}) +
               ", output_padding " + IntList({tc.output_padding_y, tc.output_padding_x}) +
               ", kernel " + Str(tc.ky) + "x" + Str(tc.kx) +
               " (the DPU runs the kernel flipped in y and x, stride 1, no padding)";
    StatusOr<SeGather> g_or = ZeroInsertGather(src, target, se_size, tc);
    if (!g_or.ok()) {
      return g_or.status().Annotate("se (transposed; stride and pad are the transposed conv's)");
    }
    StatusOr<NceLayer> layer =
        TransposedConvAsZMConv(tc, *g_or, base.op, base.quant, base.weights);
    if (!layer.ok()) return layer.status().Annotate("se (transposed)");
    layer->name = base.name;
    DPUEMU_RETURN_IF_ERROR(add(std::move(g_or), std::move(layer).value()));
  } else if (op == "pad") {
    DPUEMU_ASSIGN_OR_RETURN(Node n, required("pad"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<int64_t> p, Ints(n, 4, 0, kMaxSpatial));
    std::string mode = PadModeName(PadMode::kConstant);
    if (std::optional<Node> m = se.Get("mode")) {
      DPUEMU_ASSIGN_OR_RETURN(mode, m->Choice(EnumNames<PadMode>(PadModeName, 4)));
    }
    DPUEMU_ASSIGN_OR_RETURN(const PadMode pm, ParsePadMode(mode));
    s.params = "pad " + IntList(p) + ", mode " + mode;
    DPUEMU_RETURN_IF_ERROR(
        add(PadGather(src, target, se_size, Pads{p[0], p[1], p[2], p[3]}, pm), base));
  } else if (op == "roll") {
    DPUEMU_ASSIGN_OR_RETURN(Node n, required("shift"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<int64_t> sh, Ints(n, 2, std::numeric_limits<int64_t>::min(),
                                                          std::numeric_limits<int64_t>::max()));
    s.params = "shift " + IntList(sh);
    DPUEMU_RETURN_IF_ERROR(add(RollGather(src, target, se_size, sh[0], sh[1]), base));
  } else if (op == "dilate") {
    DPUEMU_ASSIGN_OR_RETURN(Node n, required("dilation"));
    DPUEMU_ASSIGN_OR_RETURN(std::vector<int64_t> d, Ints(n, 2, 1, 1024));
    s.params = "dilation " + IntList(d);
    s.dilation_y = d[0];
    s.dilation_x = d[1];
    StatusOr<DilatedPlan> plan = PlanDilatedConv(src, target, se_size, base.op.g, d[0], d[1]);
    if (!plan.ok())
      return plan.status().Annotate("se (dilate; stride and pad are the dilated conv's)");
    s.dilated_plan = plan->ToString();
    s.out_h = plan->out_h;
    s.out_w = plan->out_w;
    for (DilatedPhase& p : plan->phases) {
      NceLayer sub = base;
      sub.name = base.name + " phase (" + Str(p.out_y0) + ", " + Str(p.out_x0) + ")";
      sub.op.g.stride_y = plan->stride_y;
      sub.op.g.stride_x = plan->stride_x;
      sub.op.g.pad_top = sub.op.g.pad_bottom = sub.op.g.pad_left = sub.op.g.pad_right = 0;
      DPUEMU_RETURN_IF_ERROR(add(std::move(p.gather), std::move(sub)));
      SeSpec::Phase& ph = s.phases.back();
      ph.out_y0 = p.out_y0;
      ph.out_x0 = p.out_x0;
      ph.step_y = plan->step_y;
      ph.step_x = plan->step_x;
    }
  } else {  // table
    StatusOr<SeGather> g = ParseSeTable(se, dir, target, s, se_size, &s.params);
    if (!g.ok()) return g.status();  // names se.table / se.map itself
    DPUEMU_RETURN_IF_ERROR(add(std::move(g), base));
  }

  // Lower each phase as the DPU runs it and gather its virtual input through the table. Pads
  // beyond kernel / 2 (one invocation's limit, verifyPads) become a constant border of the
  // virtual tensor, read through the same table.
  for (SeSpec::Phase& ph : s.phases) {
    if (NeedsPadGather(ph.layer.op.g)) {
      const Pads e = ExcessPads(ph.layer.op.g);
      StatusOr<SeGather> padded = PadVirtual(ph.gather, e);
      if (!padded.ok()) return LoweringError(padded.status(), ph.gather);
      ph.gather = std::move(padded).value();
      ph.layer.op.g = GeometryOverBorder(ph.layer.op.g, ph.gather, e);
    }
    const SeGather& g = ph.gather;
    StorageOptions storage;
    storage.input_sparse = s.source_sparse;
    storage.input_se_size = g.se_size;
    StatusOr<DpuTask> task = LowerWithGather(ph.layer, s.source, s.layout, g, storage, target);
    if (!task.ok()) return LoweringError(task.status(), g);
    const NceOp& vop = ph.layer.op;
    StatusOr<Tensor> input =
        simd::GatherActivations(task->input_view(), vop.in_dtype, {g.h, g.w, g.c}, vop.in_zp);
    if (!input.ok()) return input.status().Annotate("se: gathering the virtual input");
    ph.layer.input = std::move(input).value();
    const Status valid = ValidateLayer(ph.layer);
    if (!valid.ok()) return LoweringError(valid, g);
    PlanSe& a = ph.accounting;
    a.op = op;
    a.description = g.description + (op == "transposed" ? "; " + s.params : std::string());
    a.se_size = g.se_size;
    a.source_h = g.source_h;
    a.source_w = g.source_w;
    a.table_bytes = SeTableBytes(g.h, g.w, g.c, g.se_size);
    a.map_bytes = ActivationMapBytes(g.h * g.w * g.c);
    SourceRowsRead(s, g, &a);
  }
  s.se_size = s.phases.front().gather.se_size;
  if (op != "dilate") {
    s.out_h = s.phases.front().layer.op.g.out_h();
    s.out_w = s.phases.front().layer.op.g.out_w();
  }
  const std::string name = base.name;
  spec.layer = s.phases.front().layer;
  spec.layer.name = name;  // a dilated phase's layer names its phase
  spec.se = std::move(s);
  return OkStatus();
}

StatusOr<Spec> ParseRoot(const json& j, const std::string& path, const std::string& field,
                         const LayerInputs* given) {
  const Node root(j, field);
  if (given == nullptr) {
    DPUEMU_RETURN_IF_ERROR(
        root.Object({"name", "target", "op", "input", "weights", "kernel", "input2", "eltwise",
                     "bias", "stride", "pad", "ppe", "output", "sparsity", "split", "split_rule",
                     "tiles", "workloads_per_tile", "run", "se"}));
  } else {
    // A network layer: its target is the network's, its inputs its producers' outputs.
    DPUEMU_RETURN_IF_ERROR(
        root.Object({"name", "inputs", "op", "weights", "kernel", "eltwise", "bias", "stride",
                     "pad", "ppe", "output", "sparsity", "split", "split_rule", "tiles",
                     "workloads_per_tile", "run", "se"}));
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
  if (given != nullptr) {
    spec.target = given->target;
  } else {
    DPUEMU_ASSIGN_OR_RETURN(Node target, root.Required("target"));
    DPUEMU_ASSIGN_OR_RETURN(std::string target_name, target.String());
    DPUEMU_ASSIGN_OR_RETURN(spec.target, TargetByName(target_name));
  }

  if (std::optional<Node> n = root.Get("op")) {
    DPUEMU_ASSIGN_OR_RETURN(
        std::string kind, n->Choice({"conv", "dwconv", "maxpool", "avgpool", "eltwise"}));
    DPUEMU_ASSIGN_OR_RETURN(spec.layer.op.kind, ParseNceKind(kind));
    if (spec.layer.op.kind != NceKind::kConv && root.Get("se")) {
      return n->Error("se: storage-element pointer operations run convolutions (op conv)");
    }
  }

  // Output first: the PPE's fields depend on the output type.
  DPUEMU_RETURN_IF_ERROR(ParseOutput(root, *spec.target, spec.layer.op, spec.plan));
  DPUEMU_RETURN_IF_ERROR(ParseTensors(root, dir, given, spec.layer));
  DPUEMU_RETURN_IF_ERROR(ParseEltwise(root, spec.layer.op));
  DPUEMU_RETURN_IF_ERROR(ParseGeometry(root, spec.layer.op.g));
  DPUEMU_RETURN_IF_ERROR(ParsePpe(root, dir, spec.layer));
  DPUEMU_RETURN_IF_ERROR(ParseStorageAndSplit(root, *spec.target, spec.plan));
  // Sparse storage the operation cannot have is refused with the compiler's rule.
  const SparsitySupport sup = SupportedSparsity(spec.layer.op, *spec.target);
  if ((spec.plan.input_sparse && !sup.input) ||
      (spec.plan.heuristic == WeightHeuristic::kSparse && !sup.weights) ||
      (spec.plan.output_sparse && !sup.output)) {
    const char* which = spec.plan.input_sparse && !sup.input ? "sparsity.input"
                        : spec.plan.output_sparse && !sup.output ? "output.sparse"
                                                                 : "sparsity.weights";
    return InvalidArgument(std::string(which) + ": op " + NceKindName(spec.layer.op.kind) + " " +
                           sup.rule);
  }
  DPUEMU_RETURN_IF_ERROR(ParseRun(root, spec.run));
  if (std::optional<Node> se = root.Get("se")) {
    // input.npy is the source; the layers to validate are those over the virtual tensor.
    DPUEMU_RETURN_IF_ERROR(ParseSe(*se, dir, spec));
  } else {
    DPUEMU_RETURN_IF_ERROR(ValidateLayer(spec.layer));
  }
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
  StatusOr<Spec> spec = ParseRoot(j, path, "", nullptr);
  if (!spec.ok()) return spec.status().Annotate(path);
  return spec;
}

StatusOr<json> LayerSpecJson(const NceLayer& layer, const std::string& dir,
                             const std::string& prefix) {
  DPUEMU_RETURN_IF_ERROR(ValidateLayer(layer));
  const NceOp& op = layer.op;
  const NceGeometry& g = op.g;
  const bool integer = IsIntegerPath(op);
  json j;
  j["op"] = NceKindName(op.kind);
  if (HasWeights(op.kind)) {
    Tensor w = layer.weights;
    // int4 host tensors are stored as int8 / uint8 arrays of the values.
    if (op.w_dtype == DType::kI4) w.dtype = DType::kI8;
    if (op.w_dtype == DType::kU4) w.dtype = DType::kU8;
    DPUEMU_RETURN_IF_ERROR(WriteNpy(dir + "/" + prefix + "_w.npy", w));
    j["weights"] = {{"npy", prefix + "_w.npy"}, {"dtype", DTypeName(op.w_dtype)}};
    if (!IsFloat(op.w_dtype)) j["weights"]["zero_point"] = op.w_zp;
    Tensor b(integer ? DType::kI32 : DType::kFP32, {g.k});
    if (integer) {
      std::memcpy(b.bytes.data(), layer.quant.bias.data(), b.bytes.size());
    } else {
      std::memcpy(b.bytes.data(), layer.quant.fbias.data(), b.bytes.size());
    }
    DPUEMU_RETURN_IF_ERROR(WriteNpy(dir + "/" + prefix + "_b.npy", b));
    j["bias"] = {{"npy", prefix + "_b.npy"}};
    if (!integer) j["bias"]["units"] = "accumulator";
  }
  if (op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool) j["kernel"] = {g.ky, g.kx};
  if (op.kind != NceKind::kEltwise) {
    j["stride"] = {g.stride_y, g.stride_x};
    j["pad"] = {g.pad_top, g.pad_bottom, g.pad_left, g.pad_right};
  } else {
    j["eltwise"] = {{"type", EltwiseTypeName(op.eltwise.type)}};
  }
  json ppe = json::object();
  const bool pool = op.kind == NceKind::kMaxPool || op.kind == NceKind::kAvgPool;
  if (integer) {
    if (!pool) {
      ppe["mult"] = layer.quant.mult;
      ppe["shift"] = layer.quant.shift;
    }
    if (op.kind == NceKind::kEltwise) {
      ppe["in1_mult"] = op.eltwise.in1_mult;
      ppe["in2_mult"] = op.eltwise.in2_mult;
    }
    // A maxpool's output zero point is its input's (the spec's default; a producer's in a network).
    if (op.out_dtype != DType::kI32 && op.kind != NceKind::kMaxPool) {
      ppe["out_zero_point"] = op.ppe.out_zp;
    }
    if (op.ppe.leaky_relu && !pool) {
      ppe["leaky_relu"] = {{"mult", op.ppe.lrelu_mult}, {"shift", op.ppe.lrelu_shift}};
    }
  } else {
    if (!pool) ppe["scale"] = layer.quant.scale;
    if (op.ppe.leaky_relu && !pool) ppe["leaky_relu"] = {{"alpha", op.ppe.lrelu_alpha}};
  }
  if (std::isfinite(op.ppe.clamp_lo) || std::isfinite(op.ppe.clamp_hi)) {
    const double lo = std::isfinite(op.ppe.clamp_lo) ? op.ppe.clamp_lo : -1e300;
    const double hi = std::isfinite(op.ppe.clamp_hi) ? op.ppe.clamp_hi : 1e300;
    ppe["clamp"] = {lo, hi};
  }
  if (!ppe.empty()) j["ppe"] = ppe;
  j["output"] = {{"dtype", DTypeName(op.out_dtype)}};
  return j;
}

StatusOr<Spec> ParseNetworkLayer(const nlohmann::json& j, const std::string& path,
                                 const std::string& field, const LayerInputs& given) {
  if (given.target == nullptr) return InvalidArgument(path + ": " + field + ": no target");
  StatusOr<Spec> spec = ParseRoot(j, path, field, &given);
  if (!spec.ok()) return spec.status().Annotate(path);
  return spec;
}

StatusOr<Spec> LoadSpec(const std::string& path) {
  std::vector<uint8_t> bytes;
  DPUEMU_ASSIGN_OR_RETURN(bytes, ReadFileBytes(path));
  return ParseSpec(std::string(bytes.begin(), bytes.end()), path);
}

size_t DpuLayerCount(const Spec& spec) { return spec.se ? spec.se->phases.size() : 1; }

const NceLayer& DpuLayer(const Spec& spec, size_t i) {
  return spec.se ? spec.se->phases.at(i).layer : spec.layer;
}

PlanOptions DpuLayerPlanOptions(const Spec& spec, size_t i) {
  PlanOptions o = spec.plan;
  if (spec.se) {
    o.input_se_size = spec.se->se_size;
    o.se = spec.se->phases.at(i).accounting;
  }
  return o;
}

namespace {

// "phase 1 (outputs [0 + 2q][1 + 2r])" of a dilated spec, "" otherwise.
std::string PhaseName(const Spec& spec, size_t i) {
  if (DpuLayerCount(spec) < 2) return "";
  const SeSpec::Phase& p = spec.se->phases[i];
  return "phase " + Str(static_cast<int64_t>(i)) + " (outputs [" + Str(p.out_y0) + " + " +
         Str(p.step_y) + "q][" + Str(p.out_x0) + " + " + Str(p.step_x) + "r])";
}

}  // namespace

StatusOr<std::vector<Plan>> PlanSpec(const Spec& spec) {
  if (spec.target == nullptr) return InvalidArgument(spec.path + ": spec has no target");
  std::vector<Plan> plans;
  for (size_t i = 0; i < DpuLayerCount(spec); ++i) {
    StatusOr<Plan> p = PlanLayer(DpuLayer(spec, i), *spec.target, DpuLayerPlanOptions(spec, i));
    if (!p.ok()) {
      const std::string phase = PhaseName(spec, i);
      return p.status().Annotate(phase.empty() ? spec.path : spec.path + ": se " + phase);
    }
    plans.push_back(std::move(p).value());
  }
  return plans;
}

std::string SpecPlanToText(const Spec& spec, const std::vector<Plan>& plans, bool explain) {
  if (plans.size() == 1 && DpuLayerCount(spec) == 1) return PlanToText(plans[0], explain);
  std::string s = "plan for layer '" + spec.layer.name + "' on " +
                  (spec.target ? spec.target->name : "?") + ": se " +
                  (spec.se ? spec.se->op + " " + spec.se->params : std::string()) + ", " +
                  Str(static_cast<int64_t>(plans.size())) +
                  " DPU layers, each planned and run as its own ZMConv, one after another\n";
  if (spec.se && !spec.se->dilated_plan.empty()) {
    std::string d = spec.se->dilated_plan;
    for (size_t at = 0; at < d.size(); at = d.find('\n', at) + 1) {
      d.insert(at, "  ");
      if (d.find('\n', at) == std::string::npos) break;
    }
    s += d;
  }
  int64_t cycles = 0;
  double us = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    s += "== " + PhaseName(spec, i) + "\n" + PlanToText(plans[i], explain);
    cycles += plans[i].cycles;
    us += plans[i].time_us();
  }
  char time[64];
  std::snprintf(time, sizeof(time), "%.2f", us);
  s += "total estimate: " + Str(cycles) + " cycles = " + time + " us (phases one after another)\n";
  return s;
}

nlohmann::json SpecPlanToJson(const Spec& spec, const std::vector<Plan>& plans) {
  using nlohmann::json;
  if (plans.size() == 1 && DpuLayerCount(spec) == 1) return PlanToJson(plans[0]);
  json j;
  j["layer"] = spec.layer.name;
  j["target"] = spec.target ? spec.target->name : "";
  if (spec.se) {
    const SeSpec& se = *spec.se;
    j["se"] = {{"op", se.op},
               {"params", se.params},
               {"se_size", se.se_size},
               {"source", se.source.shape},
               {"out_h", se.out_h},
               {"out_w", se.out_w},
               {"description", se.dilated_plan}};
  }
  j["phases"] = json::array();
  int64_t cycles = 0;
  double us = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    json p;
    if (spec.se && i < spec.se->phases.size()) {
      const SeSpec::Phase& ph = spec.se->phases[i];
      const NceGeometry& g = ph.layer.op.g;
      p = {{"out_y0", ph.out_y0}, {"out_x0", ph.out_x0}, {"step_y", ph.step_y},
           {"step_x", ph.step_x}, {"out_h", g.out_h()},  {"out_w", g.out_w()}};
    }
    p["plan"] = PlanToJson(plans[i]);
    j["phases"].push_back(std::move(p));
    cycles += plans[i].cycles;
    us += plans[i].time_us();
  }
  j["cycles"] = cycles;
  j["time_us"] = us;
  return j;
}

StatusOr<Tensor> AssembleSpecOutput(const Spec& spec, const std::vector<Tensor>& outputs) {
  if (outputs.size() != DpuLayerCount(spec)) {
    return InvalidArgument("outputs: " + Str(static_cast<int64_t>(outputs.size())) +
                           " given, the spec runs " +
                           Str(static_cast<int64_t>(DpuLayerCount(spec))) + " DPU layers");
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    const NceOp& op = DpuLayer(spec, i).op;
    const std::vector<int64_t> want = {op.g.out_h(), op.g.out_w(), op.g.k};
    if (outputs[i].dtype != op.out_dtype || outputs[i].shape != want ||
        static_cast<int64_t>(outputs[i].bytes.size()) !=
            outputs[i].numel() * DTypeBytes(op.out_dtype)) {
      return InvalidArgument("outputs[" + Str(static_cast<int64_t>(i)) +
                             "]: " + DTypeName(outputs[i].dtype) + " " + outputs[i].ShapeString() +
                             ", DPU layer " + Str(static_cast<int64_t>(i)) + " writes " +
                             DTypeName(op.out_dtype) + " " + Shape3(want[0], want[1], want[2]));
    }
  }
  if (!spec.se) return outputs[0];
  const SeSpec& se = *spec.se;
  const DType dt = spec.layer.op.out_dtype;
  const int64_t k = spec.layer.op.g.k, run = k * DTypeBytes(dt);
  Tensor out(dt, {se.out_h, se.out_w, k});
  for (size_t i = 0; i < outputs.size(); ++i) {
    const SeSpec::Phase& p = se.phases[i];
    const int64_t oh = outputs[i].shape[0], ow = outputs[i].shape[1];
    for (int64_t q = 0; q < oh; ++q) {
      for (int64_t r = 0; r < ow; ++r) {
        const int64_t y = p.out_y0 + p.step_y * q, x = p.out_x0 + p.step_x * r;
        if (y >= se.out_h || x >= se.out_w) {
          return Internal("se phase " + Str(static_cast<int64_t>(i)) + ": output (" + Str(q) +
                          ", " + Str(r) + ") lands outside the " + Str(se.out_h) + "x" +
                          Str(se.out_w) + " output");
        }
        std::memcpy(out.bytes.data() + (y * se.out_w + x) * run,
                    outputs[i].bytes.data() + (q * ow + r) * run, static_cast<size_t>(run));
      }
    }
  }
  return out;
}

StatusOr<std::vector<DpuTask>> LowerSeSpec(const Spec& spec, const std::vector<Plan>& plans) {
  if (!spec.se) return InvalidArgument(spec.path + ": the spec has no se field");
  const SeSpec& se = *spec.se;
  if (plans.size() != se.phases.size()) {
    return InvalidArgument("plans: " + Str(static_cast<int64_t>(plans.size())) +
                           " given, the spec runs " + Str(static_cast<int64_t>(se.phases.size())) +
                           " DPU layers");
  }
  std::vector<DpuTask> tasks;
  for (size_t i = 0; i < plans.size(); ++i) {
    const SeSpec::Phase& ph = se.phases[i];
    StorageOptions storage;
    storage.weights_sparse = plans[i].weights.sparse;
    storage.input_sparse = se.source_sparse;
    storage.input_se_size = ph.gather.se_size;
    storage.output_sparse = plans[i].options.output_sparse;
    storage.output_se_size = plans[i].options.output_se_size;
    StatusOr<DpuTask> task =
        LowerWithGather(ph.layer, se.source, se.layout, ph.gather, storage, *spec.target);
    if (!task.ok()) return task.status().Annotate(spec.path);
    tasks.push_back(std::move(task).value());
  }
  return tasks;
}

}  // namespace dpuemu
