#!/usr/bin/python3
"""onnx_import.py: a quantised (or fp16/fp32) ONNX model -> dpuemu NETWORK.json + .npy files.

  onnx_import.py model.onnx --target NPU40XX --out DIR [--input x.npy] [--seed N]

Writes DIR/NETWORK.json, one DIR/<layer>_{w,b}.npy per layer with tensors, DIR/input.npy and
DIR/import.json (what became what, channel padding, decisions with their reasons). README
"ONNX import" lists the supported ops and how each maps onto DPU operations.

Exit status: 0 ok; 2 for a model it cannot import (unsupported nodes, malformed protobuf,
inconsistent initialisers, shapes the DPU cannot run): one stderr line naming the file, the node
and the rule.
"""

import argparse
import json
import math
import os
import sys
import warnings

import numpy as np

try:
    import onnx
    from onnx import numpy_helper
except ImportError:  # pragma: no cover - set-up problem, not a model problem
    sys.stderr.write("onnx_import: error: the Python package onnx is missing "
                     "(Debian: apt-get install python3-onnx; see README Quick start)\n")
    sys.exit(2)

EXIT_BAD_MODEL = 2
TARGETS = ("NPU37XX", "NPU40XX")
# dpuemu's geometry limits (README "Arithmetic"): kernels up to 11x11, strides 1..8.
MAX_KERNEL = 11
MAX_STRIDE = 8
CHANNEL_ALIGN = 16  # C and K multiples of 16; C = 3 or 4 allowed for a first layer
SMALL_FIRST_C = (3, 4)


class ModelError(Exception):
    """A model the importer refuses; the message names the node and the rule."""


# --- scale approximation ------------------------------------------------------------------
# The compiler's QuantizationApproximation (src/vpux_compiler/src/utils/quantization.cpp,
# constructor; the template `approximate` in include/vpux/compiler/utils/quantization.hpp):
# frexp(target) = mantissa * 2^exponent with mantissa in [0.5, 1); mult = mantissa * 2^15
# converted to uint16 by checked_cast (a static_cast: truncation toward zero, not rounding);
# shift = 15 - exponent; exponent > 15 would need a post-shift, which it refuses.
MULT_BITS = 15


def approximate_scale(target, where):
    if not (target > 0 and math.isfinite(target)):
        raise ModelError(f"{where}: requantisation scale {target!r} must be positive and finite")
    mantissa, exponent = math.frexp(target)
    if exponent > MULT_BITS:
        raise ModelError(f"{where}: requantisation scale {target:g} >= 2^15 needs a post-shift, "
                         "which the compiler refuses (QuantizationApproximation)")
    mult = int(mantissa * (1 << MULT_BITS))  # truncation, as checked_cast<uint16_t>
    shift = MULT_BITS - exponent
    if shift > 63:
        raise ModelError(f"{where}: requantisation scale {target:g} needs shift {shift} > 63 "
                         "(the PPE shift register has 6 bits)")
    return mult, shift


def eltwise_approximation(s1, s2, s_out, where):
    """The compiler's EltwiseQuantizationApproximation (src/vpux_compiler/src/utils/
    quantization.cpp): in1/in2 = approximations of the input scales, out = of 1 / out scale;
    the input shifts are aligned to the larger one when every register still fits (mult 16
    bits, shift 6 bits), else to the smaller one, and added to the output shift.
    Returns (in1_mult, in2_mult, mult, shift)."""
    m1, sh1 = approximate_scale(s1, where + " (input 1 scale)")
    m2, sh2 = approximate_scale(s2, where + " (input 2 scale)")
    mo, sho = approximate_scale(1.0 / s_out, where + " (1 / output scale)")
    lo, hi = min(sh1, sh2), max(sh1, sh2)
    if (hi + sho <= 63 and m1 <= (65535 >> (hi - sh1)) and m2 <= (65535 >> (hi - sh2))):
        return (m1 << (hi - sh1)) & 0xFFFF, (m2 << (hi - sh2)) & 0xFFFF, mo, sho + hi
    if lo + sho < 63:
        return m1 >> (sh1 - lo), m2 >> (sh2 - lo), mo, sho + lo
    raise ModelError(f"{where}: eltwise in1_mult/in2_mult/output shift out of register range "
                     "(EltwiseQuantizationApproximation)")


# --- values flowing through the graph -----------------------------------------------------
class Const:
    def __init__(self, arr):
        self.arr = arr


class DQConst:
    """DequantizeLinear of a constant: integers q, scale (scalar or per-axis), zero point."""

    def __init__(self, q, scale, zp, axis):
        self.q, self.scale, self.zp, self.axis = q, scale, zp, axis


class Act:
    """A tensor dpuemu computes: `src` is "input" or a layer name. Integer activations carry
    ONNX's scale and zero point; fp16 ones scale None. `c` is the ONNX channel count, `cp` the
    stored count (padded to 16 where needed: the padding channels hold the zero point)."""

    def __init__(self, src, c, cp, h, w, dtype, scale=None, zp=0):
        self.src, self.c, self.cp, self.h, self.w = src, c, cp, h, w
        self.dtype, self.scale, self.zp = dtype, scale, zp


class DQAct:
    """DequantizeLinear of an integer activation: the real-valued view ONNX computes on."""

    def __init__(self, act):
        self.act = act


class FloatInput:
    """The float graph input of a QDQ model, before its QuantizeLinear."""

    def __init__(self, c, h, w):
        self.c, self.h, self.w = c, h, w


class PadVal:
    """A constant Pad of an activation (real value 0), waiting to fold into a convolution."""

    def __init__(self, inner, pads, node):
        self.inner, self.pads, self.node = inner, pads, node  # pads [top, bottom, left, right]


class Pending:
    """A DPU layer whose output quantisation is not known yet (QDQ: the QuantizeLinear that
    follows; float models: fp16). Relu and Clip narrow `clamp` (real values)."""

    def __init__(self, node, layer, inputs, out_c, out_h, out_w, finish):
        self.node, self.layer, self.inputs = node, layer, inputs
        self.out_c, self.out_h, self.out_w = out_c, out_h, out_w
        self.finish = finish  # finish(out_scale, out_zp, out_dtype) -> ppe dict
        self.clamp = (-math.inf, math.inf)


def text(x):
    """A protobuf string field as str (invalid UTF-8 comes back as bytes)."""
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def round_up(x, m):
    return (x + m - 1) // m * m


ONNX_INT_TYPES = {onnx.TensorProto.UINT8: "u8", onnx.TensorProto.INT8: "i8"}
DTYPE_RANGE = {"u8": (0, 255), "i8": (-128, 127)}
NP_DTYPE = {"u8": np.uint8, "i8": np.int8}


class Importer:
    SUPPORTED = {
        "QLinearConv", "QuantizeLinear", "DequantizeLinear", "Conv", "QLinearAdd", "Add",
        "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "Clip", "Resize", "Pad",
        "ConvTranspose", "Gemm", "MatMul", "Flatten", "Reshape", "Constant", "Identity",
    }

    def __init__(self, path, target, out_dir):
        self.path, self.target, self.out = path, target, out_dir
        self.layers, self.vals, self.notes = [], {}, []
        self.names = set()
        self.float_model = None
        self.input_info = None
        self.onnx_of_layer = {}
        self.layer_tensor = {}  # layer -> the ONNX tensor holding its output

    @staticmethod
    def domains(node):
        # QLinearAdd is a contrib op (ONNX Runtime's com.microsoft domain).
        return ("", "ai.onnx", "com.microsoft") if node.op_type == "QLinearAdd" else ("", "ai.onnx")

    def err(self, node, rule):
        who = f"node '{node.name or '(unnamed)'}' ({node.op_type})" if node is not None else "graph"
        return ModelError(f"{self.path}: {who}: {rule}")

    # ---- loading -------------------------------------------------------------------------
    def load(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelError(f"{self.path}: cannot read: {e.strerror}")
        model = onnx.ModelProto()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # protobuf's "not all data was converted"
                model.ParseFromString(data)
        except Exception as e:  # DecodeError, RecursionError on hostile nesting, ...
            raise ModelError(f"{self.path}: not a valid ONNX protobuf ({type(e).__name__}: "
                             f"{str(e)[:120]}); truncated or not an ONNX file")
        if not model.HasField("graph") or len(model.graph.node) == 0:
            raise ModelError(f"{self.path}: no graph nodes (truncated or not an ONNX model)")
        for op in model.opset_import:
            if op.domain not in ("", "ai.onnx"):
                continue
            if op.version < 10:
                raise ModelError(f"{self.path}: opset {op.version}: needs opset >= 10 "
                                 "(QuantizeLinear/QLinearConv)")
        self.graph = model.graph
        return model

    def tensor_array(self, t):
        """An initialiser as numpy, its size checked against its dims first."""
        where = f"{self.path}: initialiser '{t.name}'"
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"{where}: external data is not supported (save the model with "
                             "the weights inside)")
        if any(d < 0 for d in t.dims):
            raise ModelError(f"{where}: negative dimension in {list(t.dims)}")
        n = int(np.prod(t.dims, dtype=np.int64)) if len(t.dims) else 1
        if n > (1 << 31):
            raise ModelError(f"{where}: {n} elements is beyond any DPU layer")
        np_type = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE.get(t.data_type)
        if np_type is None or t.data_type in (onnx.TensorProto.STRING,):
            raise ModelError(f"{where}: element type {t.data_type} is not supported")
        if t.HasField("raw_data"):
            have = len(t.raw_data)
            want = n * np.dtype(np_type).itemsize
            if have != want:
                raise ModelError(f"{where}: raw_data holds {have} bytes, dims {list(t.dims)} of "
                                 f"{np.dtype(np_type).name} need {want}")
        else:
            fields = {onnx.TensorProto.FLOAT: t.float_data, onnx.TensorProto.DOUBLE: t.double_data,
                      onnx.TensorProto.INT64: t.int64_data, onnx.TensorProto.UINT64: t.uint64_data}
            field = fields.get(t.data_type, t.int32_data)
            want = 2 * n if t.data_type in (onnx.TensorProto.COMPLEX64,) else n
            if len(field) != want:
                raise ModelError(f"{where}: holds {len(field)} values, dims {list(t.dims)} "
                                 f"need {want}")
        try:
            return numpy_helper.to_array(t)
        except Exception as e:
            raise ModelError(f"{where}: cannot decode ({type(e).__name__}: {str(e)[:100]})")

    # ---- checks before interpretation ----------------------------------------------------
    def check_graph(self):
        g = self.graph
        inits = {t.name for t in g.initializer}
        for t in g.initializer:
            self.vals[t.name] = Const(self.tensor_array(t))
        bad = [f"'{n.name or '(unnamed)'}' ({n.domain + '.' if n.domain else ''}{n.op_type})"
               for n in g.node
               if n.op_type not in self.SUPPORTED or n.domain not in self.domains(n)]
        if bad:
            raise ModelError(f"{self.path}: unsupported nodes: {', '.join(bad)} (README "
                             "'ONNX import' lists the supported ops)")
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: graph: {len(inputs)} non-constant inputs "
                             f"({[i.name for i in inputs]}): one input image is supported")
        gi = inputs[0]
        tt = gi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) != 4 or any(d is None or d <= 0 for d in dims) or dims[0] != 1:
            raise ModelError(f"{self.path}: graph input '{gi.name}': shape {dims}: must be a "
                             "static [1, C, H, W]")
        _, c, h, w = dims
        et = tt.elem_type
        if et in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            self.vals[gi.name] = FloatInput(c, h, w)
        elif et in ONNX_INT_TYPES:
            raise ModelError(f"{self.path}: graph input '{gi.name}': integer inputs need their "
                             "scale: quantise them in the graph with QuantizeLinear")
        else:
            raise ModelError(f"{self.path}: graph input '{gi.name}': element type {et}: "
                             "float, float16 expected")
        self.graph_input = gi.name
        self.input_shape = (c, h, w)
        defined = set(inits) | {gi.name}
        self.consumers = {}
        for n in g.node:
            for x in n.input:
                if x and x not in defined:
                    raise self.err(n, f"input '{x}' is neither an initialiser, the graph input nor "
                                   "an earlier node's output (missing initialiser, or nodes not "
                                   "in topological order)")
                if x:
                    self.consumers[x] = self.consumers.get(x, 0) + 1
            for y in n.output:
                if y in defined:
                    raise self.err(n, f"output '{y}' is defined twice (the graph must be SSA)")
                defined.add(y)
        for o in g.output:
            if o.name not in defined:
                raise ModelError(f"{self.path}: graph output '{o.name}' is produced by no node")
            self.consumers[o.name] = self.consumers.get(o.name, 0) + 1
        # Float model: no QuantizeLinear / QLinear* anywhere.
        self.float_model = not any(n.op_type in ("QuantizeLinear", "QLinearConv", "QLinearAdd")
                                   for n in g.node)

    # ---- helpers -------------------------------------------------------------------------
    def get(self, node, i, optional=False):
        if i >= len(node.input) or not node.input[i]:
            if optional:
                return None
            raise self.err(node, f"input {i} is missing")
        return self.vals[node.input[i]]

    def const(self, node, i, optional=False):
        v = self.get(node, i, optional)
        if v is None:
            return None
        if not isinstance(v, Const):
            raise self.err(node, f"input {i} ('{node.input[i]}') must be a constant initialiser")
        return v.arr

    def attrs(self, node):
        try:
            return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        except Exception as e:
            raise self.err(node, f"malformed attribute ({str(e).splitlines()[0][:80]})")

    def layer_name(self, node):
        raw = node.name or (node.output[0] if len(node.output) else "")
        if not isinstance(raw, str):  # protobuf hands out invalid UTF-8 as bytes
            raw = raw.decode("utf-8", "replace")
        base = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-.") else "_" for ch in raw)
        base = base or node.op_type.lower()
        name, i = base, 1
        while name in self.names or name == "input":
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def save(self, name, arr):
        fn = f"{name}.npy"
        np.save(os.path.join(self.out, fn), np.ascontiguousarray(arr))
        return fn

    def scalar_quant(self, node, si, zi, what):
        s = self.const(node, si)
        z = self.const(node, zi, optional=True)
        if s.size != 1:
            raise self.err(node, f"{what}: per-axis scales are supported for weights only")
        zp = 0 if z is None else int(np.asarray(z).reshape(-1)[0])
        dtype = "u8" if z is None or z.dtype == np.uint8 else (
            "i8" if z.dtype == np.int8 else None)
        if dtype is None:
            raise self.err(node, f"{what}: zero point type {z.dtype}: uint8 or int8 expected")
        return float(np.asarray(s).reshape(-1)[0]), zp, dtype

    def act_of(self, node, v, i=0):
        """The dpuemu tensor behind an input: Act, DQAct or fp16 Act."""
        if isinstance(v, Pending):
            v = self.materialise(v)
        if isinstance(v, PadVal):
            v = self.materialise_pad(v)
        if isinstance(v, DQAct):
            return v.act
        if isinstance(v, Act):
            return v
        if isinstance(v, FloatInput):
            if self.float_model:
                return self.float_input_act()
            raise self.err(node, f"input {i} is the float graph input: quantise it with "
                           "QuantizeLinear first")
        raise self.err(node, f"input {i} ('{node.input[i]}') is a constant; an activation is "
                       "expected")

    def float_input_act(self):
        c, h, w = self.input_shape
        if self.input_info is None:
            self.input_info = {"dtype": "fp16", "zero_point": 0, "scale": None}
        return Act("input", c, self.input_cp(c), h, w, "fp16")

    def input_cp(self, c):
        return c if c in SMALL_FIRST_C or c % CHANNEL_ALIGN == 0 else round_up(c, CHANNEL_ALIGN)

    def note_padding(self, what, c, cp):
        if cp != c:
            self.notes.append(f"{what}: {c} channels stored as {cp} (dpuemu needs multiples of 16; "
                              "the extra channels hold the zero point and get zero-point weights)")

    # ---- materialising layers ------------------------------------------------------------
    def emit(self, layer):
        self.layers.append(layer)

    def out_clamp(self, p, scale, zp, dtype):
        lo, hi = DTYPE_RANGE[dtype]
        # ONNX: quantise(clip(x)) = clip(round(x / s) + zp, round(lo / s) + zp, ...): rounding is
        # monotone and round(0) = 0, so Relu is exactly clamp low = zp.
        if p.clamp[0] > -math.inf:
            lo = max(lo, int(np.round(p.clamp[0] / scale)) + zp)
        if p.clamp[1] < math.inf:
            hi = min(hi, int(np.round(p.clamp[1] / scale)) + zp)
        if lo > hi:
            raise self.err(p.node, f"the fused clamp is empty in the output type ({lo} > {hi})")
        return [lo, hi]

    def materialise(self, p, q=None):
        """Writes pending layer `p`; q = (scale, zp, dtype) of its QuantizeLinear, None for fp16."""
        if q is None and not self.float_model:
            raise self.err(p.node, "its float output is used without a QuantizeLinear: a "
                           "quantised model needs every DPU layer's output quantised")
        if getattr(p, "act", None) is not None:  # a float layer read by several consumers
            if q is not None:
                raise self.err(p.node, "its output is quantised twice")
            return p.act
        layer = p.layer
        if q is None:
            layer["ppe"] = p.finish(None, None, None)
            clamp = [max(p.clamp[0], -65504.0), min(p.clamp[1], 65504.0)]
            if p.clamp != (-math.inf, math.inf):
                layer["ppe"]["clamp"] = clamp
            layer["output"] = {"dtype": "fp16"}
            act = Act(layer["name"], p.out_c, round_up(p.out_c, CHANNEL_ALIGN), p.out_h, p.out_w,
                      "fp16")
        else:
            scale, zp, dtype = q
            layer["ppe"] = p.finish(scale, zp, dtype)
            layer["ppe"]["out_zero_point"] = zp
            layer["ppe"]["clamp"] = self.out_clamp(p, scale, zp, dtype)
            layer["output"] = {"dtype": dtype}
            act = Act(layer["name"], p.out_c, round_up(p.out_c, CHANNEL_ALIGN), p.out_h, p.out_w,
                      dtype, scale, zp)
        if q is None and getattr(p, "tensor", None):
            self.layer_tensor[layer["name"]] = p.tensor
        self.note_padding(f"layer '{layer['name']}' output", act.c, act.cp)
        self.emit(layer)
        p.act = act
        return act

    def materialise_pad(self, v):
        """A Pad no convolution absorbed: an identity 1x1 conv reading through SE pad."""
        a = self.act_of(v.node, v.inner)
        layer, p = self.identity_conv(v.node, a)
        layer["se"] = {"op": "pad", "pad": list(v.pads)}
        p.out_h = a.h + v.pads[0] + v.pads[1]
        p.out_w = a.w + v.pads[2] + v.pads[3]
        return self.materialise(p, self.same_quant(a))

    def same_quant(self, a):
        return None if a.dtype == "fp16" else (a.scale, a.zp, a.dtype)

    # ---- conv family ---------------------------------------------------------------------
    def weights_of(self, node, v, what):
        """Conv weights: (integers or floats, per-out-channel scales or None, zero point, dtype)."""
        if isinstance(v, DQConst):
            q = v.q
            if q.dtype not in (np.int8, np.uint8):
                raise self.err(node, f"{what}: weights of {q.dtype}: int8 or uint8 expected")
            zp = np.asarray(v.zp).reshape(-1)
            if zp.size > 1 and not np.all(zp == zp[0]):
                raise self.err(node, f"{what}: per-channel weight zero points differ: dpuemu "
                               "has one weight zero point per layer (use symmetric weights)")
            scale = np.asarray(v.scale, dtype=np.float64).reshape(-1)
            if scale.size not in (1, q.shape[0]) or (scale.size > 1 and v.axis != 0):
                raise self.err(node, f"{what}: weight scales must be per tensor or per output "
                               "channel (axis 0)")
            return q, scale, int(zp[0]), ("i8" if q.dtype == np.int8 else "u8")
        if isinstance(v, Const):
            if not self.float_model:
                raise self.err(node, f"{what}: float weights in a quantised model: wrap them in "
                               "DequantizeLinear of int8/uint8 initialisers")
            if v.arr.dtype not in (np.float32, np.float16, np.float64):
                raise self.err(node, f"{what}: weights of {v.arr.dtype}: float expected")
            return v.arr.astype(np.float32), None, 0, "fp16"
        raise self.err(node, f"{what}: weights must be a constant initialiser (or "
                       "DequantizeLinear of one)")

    def conv_common(self, node, a, wq, wscale, wzp, wdtype, bias, kind, k, ky, kx, stride, pads,
                    in_scale, se=None, out_hw=None):
        """One conv/dwconv layer over activation `a`; returns a Pending. wq: [K, KY, KX, C]."""
        name = self.layer_name(node)
        for s in stride:
            if not 1 <= s <= MAX_STRIDE:
                raise self.err(node, f"stride {stride}: dpuemu runs strides 1..{MAX_STRIDE}")
        if ky > MAX_KERNEL or kx > MAX_KERNEL:
            raise self.err(node, f"kernel {ky}x{kx}: dpuemu runs kernels up to 11x11")
        kp = round_up(k, CHANNEL_ALIGN)
        cin = a.c if kind == "conv" else 1
        if kind == "conv":
            # [K, KY, KX, C] padded: extra input channels (a.cp > a.c) and output channels get the
            # weight zero point, so they add nothing and the padded outputs are the zero point.
            w = np.full((kp, ky, kx, a.cp), wzp, dtype=wq.dtype)
            w[:k, :, :, :cin] = wq
        else:
            w = np.full((kp, ky, kx, 1), wzp, dtype=wq.dtype)
            w[:k] = wq
        if wdtype == "fp16":
            if not np.all(np.isfinite(w)) or np.any(np.abs(w) > 65504):
                raise self.err(node, "float weights beyond the fp16 range (|w| <= 65504) or "
                               "not finite")
            w = w.astype(np.float16)
        b = np.zeros(kp, dtype=np.float32 if wdtype == "fp16" else np.int32)
        if bias is not None:
            b[:k] = bias
        layer = {"name": name, "inputs": [a.src]}
        if kind != "conv":
            layer["op"] = kind
        layer["weights"] = {"npy": self.save(name + "_w", w), "dtype": wdtype, "zero_point": wzp}
        layer["bias"] = {"npy": self.save(name + "_b", b)}
        layer["stride"] = list(stride)
        layer["pad"] = list(pads)
        if se is not None:
            layer["se"] = se
        if out_hw is None:
            oh = (a.h + pads[0] + pads[1] - ky) // stride[0] + 1
            ow = (a.w + pads[2] + pads[3] - kx) // stride[1] + 1
        else:
            oh, ow = out_hw
        if oh <= 0 or ow <= 0:
            raise self.err(node, f"output {oh}x{ow}: the kernel is larger than the padded input")

        def finish(out_scale, out_zp, out_dtype):
            if out_scale is None:
                return {"scale": 1.0}
            ws = np.broadcast_to(wscale, (k,))
            mults, shifts = [], []
            for i in range(k):
                m, s = approximate_scale(in_scale * float(ws[i]) / out_scale,
                                         f"{self.path}: node '{node.name}' channel {i}")
                mults.append(m)
                shifts.append(s)
            # Padding channels: any legal requantisation (their accumulator is 0).
            mults += [mults[0]] * (kp - k)
            shifts += [shifts[0]] * (kp - k)
            uniform = len(set(mults)) == 1 and len(set(shifts)) == 1
            return {"mult": mults[0] if uniform else mults,
                    "shift": shifts[0] if uniform else shifts}

        self.onnx_of_layer[name] = text(node.name)
        return Pending(node, layer, [a], k, oh, ow, finish)

    def int_bias(self, node, bv, in_scale, wscale, k):
        if bv is None:
            return None
        if isinstance(bv, DQConst):
            q = np.asarray(bv.q)
            if q.dtype != np.int32:
                raise self.err(node, f"bias of {q.dtype}: int32 expected")
            if np.any(np.asarray(bv.zp) != 0):
                raise self.err(node, "bias zero point must be 0")
            want = in_scale * np.broadcast_to(wscale, (k,))
            got = np.broadcast_to(np.asarray(bv.scale, dtype=np.float64).reshape(-1), (k,))
            if not np.allclose(got, want, rtol=1e-3):
                raise self.err(node, "bias scale must be input scale x weight scale (the "
                               "accumulator's)")
            arr = q.reshape(-1)
        elif isinstance(bv, Const):
            arr = np.asarray(bv.arr).reshape(-1)
            if arr.dtype != np.int32:  # a float bias of a QDQ conv: quantise as the accumulator
                arr = np.round(arr / (in_scale * np.broadcast_to(wscale, (k,)))).astype(np.int64)
                if np.any(np.abs(arr) > 2**31 - 1):
                    raise self.err(node, "bias / (input scale x weight scale) overflows int32")
                arr = arr.astype(np.int32)
        else:
            raise self.err(node, "bias must be a constant initialiser")
        if arr.size != k:
            raise self.err(node, f"bias has {arr.size} values for {k} output channels")
        return arr

    def conv_geometry(self, node, at, ky, kx, rank_ok=2):
        strides = list(at.get("strides", [1, 1]))
        pads = list(at.get("pads", [0, 0, 0, 0]))
        dil = list(at.get("dilations", [1, 1]))
        if len(strides) != 2 or len(pads) != 4:
            raise self.err(node, "only 2-D convolutions and pools are supported")
        if dil != [1, 1]:
            raise self.err(node, f"dilations {dil}: not supported by the importer")
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise self.err(node, "auto_pad: give explicit pads")
        # ONNX pads [top, left, bottom, right] -> dpuemu [top, bottom, left, right]
        return strides, [pads[0], pads[2], pads[1], pads[3]]

    def absorb_pad(self, node, v, pads):
        if isinstance(v, PadVal):
            pads = [p + q for p, q in zip(pads, v.pads)]
            self.notes.append(f"Pad '{v.node.name}' folded into the padding of '{node.name}'")
            return v.inner, pads
        return v, pads

    def conv(self, node, xv, wv, bv, in_q, qlinear_out=None):
        at = self.attrs(node)
        wk = self.weights_of(node, wv, "weights")
        wq, wscale, wzp, wdtype = wk
        if wq.ndim != 4:
            raise self.err(node, f"weights of rank {wq.ndim}: 2-D convolution weights "
                           "[K, C/group, KY, KX] expected")
        k, cg, ky, kx = wq.shape
        strides, pads = self.conv_geometry(node, at, ky, kx)
        xv, pads = self.absorb_pad(node, xv, pads)
        a = self.act_of(node, xv)
        group = int(at.get("group", 1))
        if (a.dtype == "fp16") != (wdtype == "fp16"):
            raise self.err(node, "activations and weights must both be quantised or both float")
        if group == 1:
            if cg != a.c:
                raise self.err(node, f"weights have {cg} input channels, the input {a.c}")
            kind, wt = "conv", wq.transpose(0, 2, 3, 1)
        elif group == a.c and cg == 1 and k == a.c:
            kind, wt = "dwconv", wq.transpose(0, 2, 3, 1)
        else:
            raise self.err(node, f"group {group}: only 1 (conv) and C with one filter per "
                           "channel (depthwise) are supported")
        in_scale = in_q
        if wdtype != "fp16":
            bias = self.int_bias(node, bv, in_scale, wscale, k)
        elif bv is None:
            bias = None
        else:
            if not isinstance(bv, Const):
                raise self.err(node, "bias must be a constant initialiser")
            bias = np.asarray(bv.arr, dtype=np.float32).reshape(-1)
            if bias.size != k:
                raise self.err(node, f"bias has {bias.size} values for {k} output channels")
        if kind == "conv" and a.cp % CHANNEL_ALIGN and a.cp not in SMALL_FIRST_C:
            raise self.err(node, f"{a.cp} input channels: dpuemu needs multiples of 16")
        return self.conv_common(node, a, wt, wscale, wzp, wdtype, bias, kind, k, ky, kx, strides,
                                pads, in_scale)

    # ---- node handlers -------------------------------------------------------------------
    def run(self):
        for node in self.graph.node:
            try:
                outs = self.handle(node)
            except (TypeError, ValueError, IndexError, KeyError, OverflowError, AttributeError) as e:
                # An attribute or tensor of the wrong kind or rank that no rule above names.
                first = str(e).splitlines()[0][:100] if str(e) else ""
                raise self.err(node, f"malformed attributes or inputs ({type(e).__name__}: "
                               f"{first})")
            if not isinstance(outs, list):
                outs = [outs]
            for name, v in zip(node.output, outs):
                self.vals[name] = v
                if isinstance(v, Pending):
                    v.tensor = text(name)
                elif isinstance(v, Act) and v.src != "input":
                    self.layer_tensor.setdefault(v.src, text(name))
        outputs = []
        for o in self.graph.output:
            v = self.vals[o.name]
            if isinstance(v, Pending):
                v = self.materialise(v)
            if isinstance(v, DQAct):
                v = v.act
            if not isinstance(v, Act) or v.src == "input":
                raise ModelError(f"{self.path}: graph output '{o.name}' is not computed by a DPU "
                                 "layer")
            outputs.append((o.name, v))
        return outputs

    def handle(self, node):
        op = node.op_type
        at = self.attrs(node)
        if op == "Constant":
            if "value" not in at:
                raise self.err(node, "only the 'value' form of Constant is supported")
            return Const(self.tensor_array(at["value"]))
        if op == "Identity":
            return self.get(node, 0)
        if op == "QuantizeLinear":
            x = self.get(node, 0)
            scale, zp, dtype = self.scalar_quant(node, 1, 2, "output")
            if isinstance(x, Pending):
                return self.materialise(x, (scale, zp, dtype))
            if isinstance(x, FloatInput):
                if self.input_info is not None:
                    raise self.err(node, "the graph input is quantised twice")
                self.input_info = {"dtype": dtype, "zero_point": zp, "scale": scale}
                c, h, w = self.input_shape
                return Act("input", c, self.input_cp(c), h, w, dtype, scale, zp)
            if isinstance(x, DQAct) and self.same_params(x.act, scale, zp, dtype):
                return x.act  # Q(DQ(a)) with a's own parameters is a
            if isinstance(x, (DQAct, PadVal)):
                # A requantisation or a pad on its own: an identity 1x1 conv.
                src = x.inner if isinstance(x, PadVal) else x
                a = self.act_of(node, src)
                layer, p = self.identity_conv(node, a)
                if isinstance(x, PadVal):
                    layer["se"] = {"op": "pad", "pad": list(x.pads)}
                    p.out_h, p.out_w = a.h + x.pads[0] + x.pads[1], a.w + x.pads[2] + x.pads[3]
                return self.materialise(p, (scale, zp, dtype))
            raise self.err(node, "QuantizeLinear of a constant or an unsupported producer")
        if op == "DequantizeLinear":
            x = self.get(node, 0)
            if isinstance(x, Const):
                s = self.const(node, 1)
                z = self.const(node, 2, optional=True)
                return DQConst(x.arr, s, 0 if z is None else z, int(at.get("axis", 1)))
            if isinstance(x, Act):
                scale, zp, dtype = self.scalar_quant(node, 1, 2, "input")
                if not self.same_params(x, scale, zp, dtype):
                    raise self.err(node, f"dequantises '{node.input[0]}' with scale {scale:g} zp "
                                   f"{zp}, but it was quantised with scale {x.scale:g} zp {x.zp}")
                return DQAct(x)
            raise self.err(node, "DequantizeLinear of a non-quantised value")
        if op == "QLinearConv":
            x = self.get(node, 0)
            if not isinstance(x, Act) or x.dtype == "fp16":
                raise self.err(node, "input 0 must be a quantised activation")
            xs, xz, xd = self.scalar_quant(node, 1, 2, "input")
            if not self.same_params(x, xs, xz, xd):
                raise self.err(node, "input scale/zero point differ from its producer's")
            wv = DQConst(self.const(node, 3), self.const(node, 4), self.const(node, 5), 0)
            ys, yz, yd = self.scalar_quant(node, 6, 7, "output")
            bv = self.get(node, 8, optional=True)
            if bv is not None:
                if not isinstance(bv, Const):
                    raise self.err(node, "bias must be a constant initialiser")
                if bv.arr.dtype != np.int32:
                    raise self.err(node, f"bias of {bv.arr.dtype}: int32 expected")
            p = self.conv(node, x, wv, bv, xs)
            return self.materialise(p, (ys, yz, yd))
        if op == "Conv":
            x = self.get(node, 0)
            in_q = None
            inner = x.inner if isinstance(x, PadVal) else x
            if isinstance(inner, DQAct):
                in_q = inner.act.scale
            elif not self.float_model:
                raise self.err(node, "input 0 must be DequantizeLinear of a quantised activation")
            return self.conv(node, x, self.get(node, 1), self.get(node, 2, optional=True), in_q)
        if op in ("Relu", "Clip"):
            x = self.get(node, 0)
            if not isinstance(x, Pending) or self.consumers.get(node.input[0], 0) != 1:
                raise self.err(node, "Relu/Clip fuse into the PPE clamp of the layer before them; "
                               "this one follows no DPU layer (or its input has other consumers)")
            lo, hi = 0.0, math.inf
            if op == "Clip":
                lo, hi = float(at.get("min", -math.inf)), float(at.get("max", math.inf))
                mn, mx = self.const(node, 1, True), self.const(node, 2, True)
                lo = float(mn) if mn is not None else lo
                hi = float(mx) if mx is not None else hi
            x.clamp = (max(x.clamp[0], lo), min(x.clamp[1], hi))
            return x
        if op in ("Add", "QLinearAdd"):
            return self.add(node, at)
        if op in ("MaxPool", "AveragePool", "GlobalAveragePool"):
            return self.pool(node, at)
        if op == "Pad":
            return self.pad(node, at)
        if op in ("Flatten", "Reshape"):
            x = self.get(node, 0)
            if isinstance(x, FloatInput) and self.float_model:
                x = self.float_input_act()
            a = x.act if isinstance(x, DQAct) else x
            if isinstance(a, Pending):
                a = self.act_of(node, a)
                x = a
            if not isinstance(a, Act) or a.h != 1 or a.w != 1:
                raise self.err(node, "Flatten/Reshape is supported on 1x1 activations only "
                               "(e.g. after GlobalAveragePool): dpuemu tensors stay [H, W, C]")
            return x
        if op in ("Gemm", "MatMul"):
            return self.gemm(node, at)
        if op == "Resize":
            return self.resize(node, at)
        if op == "ConvTranspose":
            return self.conv_transpose(node, at)
        raise self.err(node, "unsupported")  # unreachable: check_graph lists them first

    def same_params(self, a, scale, zp, dtype):
        return (a.dtype == dtype and a.zp == zp and a.scale is not None and
                abs(a.scale - scale) <= 1e-6 * abs(scale))

    def identity_conv(self, node, a):
        """A 1x1 conv with identity weights over `a` (the compiler's NCEInterpolate and the SE
        ops run a convolution; identity weights make it a copy plus a requantisation)."""
        c = a.c
        if a.dtype == "fp16":
            w = np.eye(c, dtype=np.float32).reshape(c, 1, 1, c)
            wscale, wd = None, "fp16"
        else:
            w = np.eye(c, dtype=np.int8).reshape(c, 1, 1, c)
            wscale, wd = np.array([1.0]), "i8"
        p = self.conv_common(node, a, w, wscale, 0, wd, None, "conv", c, 1, 1, [1, 1],
                             [0, 0, 0, 0], a.scale)
        return p.layer, p

    def add(self, node, at):
        if node.op_type == "QLinearAdd":
            a1, a2 = self.get(node, 0), self.get(node, 3)
            q1 = self.scalar_quant(node, 1, 2, "input A")
            q2 = self.scalar_quant(node, 4, 5, "input B")
            for i, (a, q) in enumerate(((a1, q1), (a2, q2))):
                if not isinstance(a, Act) or not self.same_params(a, *q):
                    raise self.err(node, f"input {'AB'[i]} must be a quantised activation with "
                                   "the scale and zero point given")
            oq = self.scalar_quant(node, 6, 7, "output")
        else:
            x1, x2 = self.get(node, 0), self.get(node, 1)
            if self.float_model:
                a1, a2 = self.act_of(node, x1, 0), self.act_of(node, x2, 1)
            else:
                if not isinstance(x1, DQAct) or not isinstance(x2, DQAct):
                    raise self.err(node, "Add of a quantised model: both inputs must be "
                                   "DequantizeLinear of activations (a constant addend is not "
                                   "supported)")
                a1, a2 = x1.act, x2.act
            oq = None
        if (a1.c, a1.h, a1.w) != (a2.c, a2.h, a2.w):
            raise self.err(node, f"inputs of shapes {a1.c}x{a1.h}x{a1.w} and {a2.c}x{a2.h}x{a2.w}:"
                           " broadcasting is not supported")
        name = self.layer_name(node)
        layer = {"name": name, "inputs": [a1.src, a2.src], "op": "eltwise",
                 "eltwise": {"type": "add"}}

        def finish(out_scale, out_zp, out_dtype):
            if out_scale is None:
                return {"scale": 1.0}
            m1, m2, m, s = eltwise_approximation(a1.scale, a2.scale, out_scale,
                                                 f"{self.path}: node '{node.name}'")
            return {"in1_mult": m1, "in2_mult": m2, "mult": m, "shift": s}

        self.onnx_of_layer[name] = text(node.name)
        p = Pending(node, layer, [a1, a2], a1.c, a1.h, a1.w, finish)
        return self.materialise(p, oq) if node.op_type == "QLinearAdd" else p

    def pool(self, node, at):
        x = self.get(node, 0)
        op = node.op_type
        x_inner = x
        a = self.act_of(node, x)
        if op == "GlobalAveragePool":
            ky, kx, strides, pads = a.h, a.w, [1, 1], [0, 0, 0, 0]
            if ky > MAX_KERNEL or kx > MAX_KERNEL:
                raise self.err(node, f"GlobalAveragePool over {a.h}x{a.w}: the DPU's avgpool "
                               f"kernel is at most {MAX_KERNEL}x{MAX_KERNEL}")
        else:
            ks = list(at.get("kernel_shape", []))
            if len(ks) != 2:
                raise self.err(node, "kernel_shape must be 2-D")
            ky, kx = ks
            if ky > MAX_KERNEL or kx > MAX_KERNEL:
                raise self.err(node, f"kernel {ky}x{kx}: at most {MAX_KERNEL}x{MAX_KERNEL}")
            if int(at.get("ceil_mode", 0)):
                raise self.err(node, "ceil_mode = 1 is not supported")
            strides, pads = self.conv_geometry(node, at, ky, kx)
            if op == "AveragePool" and any(pads) and not int(at.get("count_include_pad", 0)):
                raise self.err(node, "padded AveragePool with count_include_pad = 0: the DPU "
                               "divides by the whole window; use count_include_pad = 1")
        for s in strides:
            if not 1 <= s <= MAX_STRIDE:
                raise self.err(node, f"stride {strides}: dpuemu runs strides 1..{MAX_STRIDE}")
        if a.dtype != "fp16" and op == "MaxPool" and any(pads):
            raise self.err(node, "padded quantised MaxPool: the DPU pads with the zero point, "
                           "ONNX ignores the padding; not supported")
        name = self.layer_name(node)
        kind = "maxpool" if op == "MaxPool" else "avgpool"
        layer = {"name": name, "inputs": [a.src], "op": kind, "kernel": [ky, kx],
                 "stride": strides, "pad": pads}
        oh = (a.h + pads[0] + pads[1] - ky) // strides[0] + 1
        ow = (a.w + pads[2] + pads[3] - kx) // strides[1] + 1

        def finish(out_scale, out_zp, out_dtype):
            if out_scale is not None and not (abs(out_scale - a.scale) <= 1e-6 * a.scale):
                raise self.err(node, f"output scale {out_scale:g} differs from the input's "
                               f"{a.scale:g}: the DPU's pools requantise only by the window")
            if out_scale is not None and out_dtype != a.dtype:
                raise self.err(node, "output type differs from the input's")
            if kind == "maxpool" and out_scale is not None and out_zp != a.zp:
                raise self.err(node, "MaxPool output zero point differs from the input's")
            return {} if out_scale is not None else {}

        self.onnx_of_layer[name] = text(node.name)
        p = Pending(node, layer, [a], a.c, oh, ow, finish)
        if isinstance(x_inner, Act) and a.dtype != "fp16":
            return self.materialise(p, self.same_quant(a))  # a QLinear model's integer pool
        return p

    def pad(self, node, at):
        x = self.get(node, 0)
        mode = at.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = self.const(node, 1, optional=True)
        if pads is None:
            pads = at.get("pads")
        pads = np.asarray(pads, dtype=np.int64).reshape(-1)
        if pads.size != 8 or pads[0] or pads[1] or pads[4] or pads[5]:
            raise self.err(node, "pads must be 8 values padding H and W only")
        if np.any(pads < 0):
            raise self.err(node, "negative pads (crops) are not supported")
        value = self.const(node, 2, optional=True)
        a = x.act if isinstance(x, DQAct) else x
        if not isinstance(a, (Act, FloatInput)):
            raise self.err(node, "Pad of a non-activation")
        hw = [int(pads[2]), int(pads[6]), int(pads[3]), int(pads[7])]  # top bottom left right
        if mode == "constant":
            v = 0 if value is None else float(np.asarray(value).reshape(-1)[0])
            zero = 0 if isinstance(x, DQAct) or (isinstance(a, Act) and a.dtype == "fp16") else (
                a.zp if isinstance(a, Act) else 0)
            if v != zero:
                raise self.err(node, f"constant pad value {v:g}: only the (real) zero is supported")
            return PadVal(x, hw, node)
        if mode in ("edge", "reflect"):
            aa = self.act_of(node, x)
            layer, p = self.identity_conv(node, aa)
            layer["se"] = {"op": "pad", "pad": hw, "mode": mode}
            p.out_h, p.out_w = aa.h + hw[0] + hw[1], aa.w + hw[2] + hw[3]
            return p if not isinstance(x, Act) or aa.dtype == "fp16" else self.materialise(
                p, self.same_quant(aa))
        raise self.err(node, f"mode {mode}: constant, edge or reflect expected")

    def gemm(self, node, at):
        x = self.get(node, 0)
        a = self.act_of(node, x)
        if a.h != 1 or a.w != 1:
            raise self.err(node, f"input is {a.c}x{a.h}x{a.w}: Gemm/MatMul run as a 1x1 "
                           "convolution over a [1, C] vector")
        wv = self.get(node, 1)
        wq, wscale, wzp, wdtype = self.weights_of(node, wv, "B")
        if wq.ndim != 2:
            raise self.err(node, "B must be a 2-D constant")
        trans_b = node.op_type == "Gemm" and int(at.get("transB", 0))
        if node.op_type == "Gemm" and int(at.get("transA", 0)):
            raise self.err(node, "transA = 1 is not supported")
        if node.op_type == "Gemm" and (float(at.get("alpha", 1.0)) != 1.0 or
                                       float(at.get("beta", 1.0)) != 1.0):
            raise self.err(node, "alpha and beta must be 1")
        wk = wq if trans_b else wq.T  # [K, C]
        if isinstance(wv, DQConst) and wscale.size > 1:
            axis = wv.axis
            if (trans_b and axis != 0) or (not trans_b and axis != 1):
                raise self.err(node, "per-channel B scales must run along the output axis")
        k, c = wk.shape
        if c != a.c:
            raise self.err(node, f"B has {c} input features, the input {a.c}")
        bv = self.get(node, 2, optional=True) if node.op_type == "Gemm" else None
        if wdtype == "fp16":
            bias = None if bv is None else np.asarray(bv.arr, np.float32).reshape(-1)
            if bias is not None and bias.size != k:
                raise self.err(node, f"C has {bias.size} values for {k} outputs")
        else:
            bias = self.int_bias(node, bv, a.scale, wscale, k)
        return self.conv_common(node, a, wk.reshape(k, 1, 1, c), wscale, wzp, wdtype, bias,
                                "conv", k, 1, 1, [1, 1], [0, 0, 0, 0], a.scale)

    def resize(self, node, at):
        x = self.get(node, 0)
        a = self.act_of(node, x)
        mode = at.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ctm = at.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        sizes = self.const(node, 3, optional=True)
        scales = self.const(node, 2, optional=True)
        if sizes is not None and sizes.size == 4:
            oh, ow = int(sizes[2]), int(sizes[3])
        elif scales is not None and scales.size == 4:
            if scales[0] != 1 or scales[1] != 1:
                raise self.err(node, "scales must keep N and C")
            oh, ow = int(math.floor(a.h * scales[2])), int(math.floor(a.w * scales[3]))
        else:
            raise self.err(node, "needs constant 4-value scales or sizes")
        if mode == "nearest":
            nm = at.get("nearest_mode", b"round_prefer_floor")
            nm = nm.decode() if isinstance(nm, bytes) else nm
            se = {"op": "interpolate_nearest", "size": [oh, ow], "mode": ctm, "nearest_mode": nm}
        elif mode == "linear":
            # dpuemu's interpolate_bilinear is the compiler's NCEInterpolate BILINEAR: the lowering
            # makes the box-kernel conv itself, so the layer has no weights, stride or pad; its
            # ppe is the interpolate's requantisation, in scale / out scale.
            name = self.layer_name(node)
            layer = {"name": name, "inputs": [a.src],
                     "se": {"op": "interpolate_bilinear", "size": [oh, ow], "mode": ctm}}

            def finish(out_scale, out_zp, out_dtype):
                if out_scale is None:
                    return {"scale": 1.0}
                m, sh = approximate_scale(a.scale / out_scale,
                                          f"{self.path}: node '{text(node.name)}'")
                return {"mult": m, "shift": sh}

            self.onnx_of_layer[name] = text(node.name)
            p = Pending(node, layer, [a], a.c, oh, ow, finish)
            return p if isinstance(x, DQAct) or a.dtype == "fp16" else self.materialise(
                p, self.same_quant(a))
        else:
            raise self.err(node, f"mode {mode}: nearest or linear expected")
        layer, p = self.identity_conv(node, a)
        layer["se"] = se
        p.out_h, p.out_w = oh, ow
        return p if isinstance(x, DQAct) or a.dtype == "fp16" else self.materialise(
            p, self.same_quant(a))

    def conv_transpose(self, node, at):
        x = self.get(node, 0)
        in_q = x.act.scale if isinstance(x, DQAct) else None
        if in_q is None and not self.float_model:
            raise self.err(node, "input 0 must be DequantizeLinear of a quantised activation")
        a = self.act_of(node, x)
        wq, wscale, wzp, wdtype = self.weights_of(node, self.get(node, 1), "weights")
        if wq.ndim != 4 or int(at.get("group", 1)) != 1:
            raise self.err(node, "2-D weights [C, K, KY, KX] with group 1 expected")
        c, k, ky, kx = wq.shape
        if c != a.c:
            raise self.err(node, f"weights have {c} input channels, the input {a.c}")
        if isinstance(self.get(node, 1), DQConst) and wscale.size > 1:
            raise self.err(node, "per-channel weight scales of ConvTranspose (axis 1) are not "
                           "supported; use per-tensor")
        strides, pads = self.conv_geometry(node, at, ky, kx)
        op_ = list(at.get("output_padding", [0, 0]))
        if "output_shape" in at:
            raise self.err(node, "output_shape: give pads and output_padding instead")
        oh = (a.h - 1) * strides[0] - pads[0] - pads[1] + ky + op_[0]
        ow = (a.w - 1) * strides[1] - pads[2] - pads[3] + kx + op_[1]
        bv = self.get(node, 2, optional=True)
        if wdtype == "fp16":
            bias = None if bv is None else np.asarray(bv.arr, np.float32).reshape(-1)
        else:
            bias = self.int_bias(node, bv, a.scale, wscale, k)
        # dpuemu's transposed SE op takes the transposed convolution's own weights [K, KY, KX, C]
        # and flips them itself (README "SPEC.json se").
        wt = wq.transpose(1, 2, 3, 0)
        return self.conv_common(node, a, wt, wscale, wzp, wdtype, bias, "conv", k, ky, kx,
                                strides, pads, in_q, se={"op": "transposed",
                                                         "output_padding": op_},
                                out_hw=(oh, ow))


def write_network(imp, outputs, input_npy, seed, model_name):
    info = imp.input_info
    if info is None:
        raise ModelError(f"{imp.path}: the graph input feeds no DPU layer")
    c, h, w = imp.input_shape
    cp = imp.input_cp(c)
    imp.note_padding("the graph input", c, cp)
    dtype, zp, scale = info["dtype"], info["zero_point"], info["scale"]
    # The input image: the user's (ONNX layout [1, C, H, W], float), quantised as the graph's
    # first QuantizeLinear does; or a seeded random one for a quick check.
    if input_npy:
        try:
            x = np.load(input_npy)
        except Exception as e:
            raise ModelError(f"{input_npy}: cannot read the input .npy ({e})")
        if x.shape != (1, c, h, w):
            raise ModelError(f"{input_npy}: shape {x.shape}: the model's input is {(1, c, h, w)}")
        x = x.astype(np.float32)
        origin = input_npy
    else:
        x = np.random.default_rng(seed).uniform(-1.0, 1.0, (1, c, h, w)).astype(np.float32)
        origin = f"random uniform [-1, 1), seed {seed}"
    x = x[0].transpose(1, 2, 0)  # HWC
    if dtype == "fp16":
        xs = x.astype(np.float16)
        pad_val = 0
    else:
        lo, hi = DTYPE_RANGE[dtype]
        xs = np.clip(np.round(x / scale) + zp, lo, hi).astype(NP_DTYPE[dtype])
        pad_val = zp
    if cp != c:
        full = np.full((h, w, cp), pad_val, dtype=xs.dtype)
        full[:, :, :c] = xs
        xs = full
    np.save(os.path.join(imp.out, "input.npy"), xs)
    np.save(os.path.join(imp.out, "input_float.npy"), x.transpose(2, 0, 1)[None])
    net = {"name": model_name, "target": imp.target,
           "input": {"npy": "input.npy", "dtype": dtype, "zero_point": zp},
           "layers": imp.layers,
           "outputs": [a.src for _, a in outputs]}
    with open(os.path.join(imp.out, "NETWORK.json"), "w") as f:
        json.dump(net, f, indent=1)
        f.write("\n")
    meta = {"model": os.path.abspath(imp.path), "input": origin,
            "input_quant": {"scale": scale, "zero_point": zp, "dtype": dtype},
            "outputs": [{"onnx": text(n), "layer": a.src, "channels": a.c, "stored_channels": a.cp,
                         "dtype": a.dtype, "scale": a.scale, "zero_point": a.zp}
                        for n, a in outputs],
            "layers": {k: {"node": v, "tensor": imp.layer_tensor.get(k)}
                       for k, v in imp.onnx_of_layer.items()},
            "notes": imp.notes}
    with open(os.path.join(imp.out, "import.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return net


def main(argv=None):
    ap = argparse.ArgumentParser(description="ONNX model -> dpuemu NETWORK.json")
    ap.add_argument("model")
    ap.add_argument("--target", required=True, choices=TARGETS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--input", help="input image .npy, [1, C, H, W] float (default: random)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        sys.stderr.write(f"onnx_import: error: --out {args.out}: cannot create: {e.strerror}\n")
        return 1
    imp = Importer(args.model, args.target, args.out)
    try:
        model = imp.load()
        imp.check_graph()
        outputs = imp.run()
        name = text(model.graph.name) or os.path.splitext(os.path.basename(args.model))[0]
        net = write_network(imp, outputs, args.input, args.seed, name)
    except ModelError as e:
        sys.stderr.write(f"onnx_import: error: {e}\n")
        return EXIT_BAD_MODEL
    except RecursionError:
        sys.stderr.write(f"onnx_import: error: {args.model}: nesting too deep (hostile model)\n")
        return EXIT_BAD_MODEL
    except Exception as e:  # a model no rule above names (the test's mutation run finds none)
        first = str(e).splitlines()[0][:100] if str(e) else ""
        sys.stderr.write(f"onnx_import: error: {args.model}: cannot import ({type(e).__name__}: "
                         f"{first}); no rule of the importer names this model's problem\n")
        return EXIT_BAD_MODEL
    print(f"{args.model}: {len(net['layers'])} DPU layers for {args.target} -> "
          f"{os.path.join(args.out, 'NETWORK.json')}")
    for n in imp.notes:
        print(f"  note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
