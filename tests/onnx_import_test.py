#!/usr/bin/python3
"""tools/onnx_import.py end to end: small models built with onnx.helper are imported; the
NETWORK.json and .npy files are checked against the ONNX model; the imported network is run on
dpuemu and compared with an independent numpy implementation of the ONNX operators (+-1 LSB where
the PPE's mult/shift approximation of the scale can move a value, exact otherwise); malformed and
unsupported models exit 2 with one clear line.

  onnx_import_test.py TOOL DPUEMU    (tests/BUILD runs it through onnx_import_test.sh)

How the network runs: `dpuemu run NETWORK.json --out DIR` when the CLI has the network runner;
otherwise layer by layer, one SPEC.json per layer fed with its producer's output.npy (possible
for chains of the kinds main runs). Which one ran is printed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOOL, DPUEMU = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="onnx_import_test_")
RNG = np.random.default_rng(14)
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print(f"FAIL: {what}")
    return cond


# --- model building -----------------------------------------------------------------------
class Builder:
    """A QDQ (or float) model: activations quantised u8 after every DPU operation."""

    def __init__(self, name, c, h, w, quant=True):
        self.name, self.quant = name, quant
        self.nodes, self.inits, self.n = [], [], 0
        self.x = "x"
        self.inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])

    def uid(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def init(self, arr, p="c"):
        name = self.uid(p)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, name=None, **attrs):
        out = self.uid(op.lower() + "_out")
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or self.uid(op), **attrs))
        return out

    def q(self, x, scale, zp=0, dtype=np.uint8):
        """QuantizeLinear then DequantizeLinear: the QDQ pair after a DPU operation."""
        s, z = self.init(np.float32(scale)), self.init(np.array(zp, dtype=dtype))
        qx = self.node("QuantizeLinear", [x, s, z])
        return self.node("DequantizeLinear", [qx, s, z])

    def conv(self, x, cin, k, ksize=3, stride=1, pad=1, group=1, act=None, out_scale=0.05,
             in_scale=0.05, per_channel=False, name=None):
        w = RNG.normal(0, 0.5, (k, cin // group, ksize, ksize)).astype(np.float32)
        b = RNG.normal(0, 0.2, (k,)).astype(np.float32)
        if self.quant:
            ws = (np.abs(w).reshape(k, -1).max(1) / 127).astype(np.float32)
            if not per_channel:
                ws = np.full(k, ws.max(), np.float32)
            wq = np.clip(np.round(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
            bq = np.round(b / (in_scale * ws)).astype(np.int32)
            ws_t = self.init(ws if per_channel else np.float32(ws[0]))
            wz = self.init(np.zeros(k, np.int8) if per_channel else np.int8(0))
            wi = self.node("DequantizeLinear", [self.init(wq, "w"), ws_t, wz], axis=0)
            bs = self.init((in_scale * ws).astype(np.float32) if per_channel
                           else np.float32(in_scale * ws[0]))
            bi = self.node("DequantizeLinear", [self.init(bq, "b"), bs,
                                                self.init(np.zeros(k, np.int32) if per_channel
                                                          else np.int32(0))], axis=0)
        else:
            wi, bi = self.init(w, "w"), self.init(b, "b")
        y = self.node("Conv", [x, wi, bi], name=name, kernel_shape=[ksize, ksize],
                      strides=[stride, stride], pads=[pad] * 4, group=group)
        y = self.activation(y, act)
        return self.q(y, out_scale) if self.quant else y

    def activation(self, y, act):
        if act == "relu":
            return self.node("Relu", [y])
        if act == "relu6":
            return self.node("Clip", [y, self.init(np.float32(0)), self.init(np.float32(6))])
        return y

    def add(self, a, b, act=None, out_scale=0.08):
        y = self.activation(self.node("Add", [a, b], name=self.uid("Add")), act)
        return self.q(y, out_scale) if self.quant else y

    def save(self, out, path):
        outv = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
        g = helper.make_graph(self.nodes, self.name, [self.inp], [outv], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        inferred = onnx.shape_inference.infer_shapes(m)  # the output's shape, for the checker
        m.graph.output[0].CopyFrom(inferred.graph.output[0])
        onnx.checker.check_model(m)
        onnx.save(m, path)
        return m


def resnet_block():
    b = Builder("resnet_block", 16, 8, 8)
    x = b.q("x", 0.05)
    y = b.conv(x, 16, 16, act="relu", out_scale=0.04, name="conv1")
    y = b.conv(y, 16, 16, in_scale=0.04, out_scale=0.06, name="conv2")
    return b, b.add(y, x, act="relu")


def mobilenet_v2_block():
    b = Builder("mbv2_block", 16, 8, 8)
    x = b.q("x", 0.05)
    y = b.conv(x, 16, 32, ksize=1, pad=0, act="relu6", out_scale=0.03, per_channel=True,
               name="expand")
    y = b.conv(y, 32, 32, group=32, act="relu6", in_scale=0.03, out_scale=0.03,
               per_channel=True, name="dw")
    y = b.conv(y, 32, 16, ksize=1, pad=0, in_scale=0.03, out_scale=0.05, name="project")
    return b, b.add(y, x, out_scale=0.07)


def first_layer_rgb():
    b = Builder("first_rgb", 3, 16, 16)
    x = b.q("x", 1 / 127)
    y = b.conv(x, 3, 16, stride=2, act="relu", in_scale=1 / 127, out_scale=0.05, name="stem")
    return b, b.q(b.node("MaxPool", [y], name="pool", kernel_shape=[2, 2], strides=[2, 2]), 0.05)


def se_chain():
    """SE operations on convolutions: Resize nearest x2, ConvTranspose stride 2, reflect Pad."""
    b = Builder("se_chain", 16, 4, 4)
    x = b.q("x", 0.05)
    r = b.q(b.node("Resize", [x, "", b.init(np.array([1, 1, 2, 2], np.float32))], name="up",
                   mode="nearest", coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor"), 0.05)
    w = RNG.integers(-40, 40, (16, 16, 2, 2)).astype(np.int8)
    wi = b.node("DequantizeLinear", [b.init(w, "w"), b.init(np.float32(0.01)), b.init(np.int8(0))])
    t = b.q(b.node("ConvTranspose", [r, wi], name="deconv", strides=[2, 2], kernel_shape=[2, 2]),
            0.06)
    p = b.node("Pad", [t, b.init(np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64))], name="rpad",
               mode="reflect")
    return b, b.q(p, 0.06)


def bilinear():
    """Resize linear x2 (half_pixel): se interpolate_bilinear."""
    b = Builder("bilinear", 16, 4, 4)
    x = b.q("x", 0.05)
    return b, b.q(b.node("Resize", [x, "", b.init(np.array([1, 1, 2, 2], np.float32))],
                         name="upl", mode="linear"), 0.04)


def conv_chain():
    """Only convolutions (pads folded, per-channel scales, Relu, Clip, stride 2): every layer
    runs on the conv kinds main has."""
    b = Builder("conv_chain", 16, 12, 12)
    x = b.q("x", 0.05)
    p = b.node("Pad", [x, b.init(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], name="pad0")
    y = b.conv(p, 16, 32, pad=0, act="relu", out_scale=0.1, per_channel=True, name="c1")
    y = b.conv(y, 32, 16, ksize=1, pad=0, act="relu6", in_scale=0.1, out_scale=0.03, name="c2")
    y = b.conv(y, 16, 16, stride=2, in_scale=0.03, out_scale=0.07, name="c3")
    return b, y


def classifier_head(pool=True):
    """GlobalAveragePool -> Flatten -> Gemm (10 classes: padded to 16 output channels)."""
    b = Builder("head", 32, 4 if pool else 1, 4 if pool else 1)
    x = b.q("x", 0.05)
    if pool:
        x = b.q(b.node("GlobalAveragePool", [x], name="gap"), 0.05)
    f = b.node("Flatten", [x], name="flatten", axis=1)
    w = RNG.normal(0, 0.3, (10, 32)).astype(np.float32)
    ws = np.float32(np.abs(w).max() / 127)
    wq = np.round(w / ws).astype(np.int8)
    bq = RNG.integers(-500, 500, 10).astype(np.int32)
    wi = b.node("DequantizeLinear", [b.init(wq, "w"), b.init(ws), b.init(np.int8(0))])
    bi = b.node("DequantizeLinear", [b.init(bq, "b"), b.init(np.float32(0.05 * ws)),
                                     b.init(np.int32(0))])
    y = b.node("Gemm", [f, wi, bi], name="fc", transB=1)
    return b, b.q(y, 0.1)


def float_matmul_head():
    """Float Flatten -> MatMul (B [C, K], constant) -> Relu: a 1x1 conv with 10 of 16 channels."""
    b = Builder("float_matmul", 32, 1, 1, quant=False)
    f = b.node("Flatten", ["x"], name="flatten", axis=1)
    y = b.node("MatMul", [f, b.init(RNG.normal(0, 0.3, (32, 10)).astype(np.float32), "w")],
               name="mm")
    return b, b.node("Relu", [y], name="relu")


def float_block():
    b = Builder("float_block", 16, 6, 6, quant=False)
    y = b.conv("x", 16, 16, act="relu", name="fc1")
    y = b.conv(y, 16, 16, name="fc2")
    return b, b.add(y, "x", act="relu")


def qlinear_model():
    """The QOperator form: QLinearConv then QLinearAdd with the input."""
    b = Builder("qlinear", 16, 6, 6)
    s, z = b.init(np.float32(0.05)), b.init(np.uint8(128))
    xq = b.node("QuantizeLinear", ["x", s, z])
    w = RNG.integers(-60, 60, (16, 16, 3, 3)).astype(np.int8)
    ws, wz = b.init(np.float32(0.01)), b.init(np.int8(0))
    ys, yz = b.init(np.float32(0.07)), b.init(np.uint8(100))
    bias = b.init(RNG.integers(-300, 300, 16).astype(np.int32))
    c = b.node("QLinearConv", [xq, s, z, b.init(w, "w"), ws, wz, ys, yz, bias], name="qconv",
               pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    os_, oz = b.init(np.float32(0.09)), b.init(np.uint8(120))
    a = b.node("QLinearAdd", [c, ys, yz, xq, s, z, os_, oz], name="qadd")
    b.nodes[-1].domain = "com.microsoft"
    return b, b.node("DequantizeLinear", [a, os_, oz])


# --- independent ONNX semantics in numpy --------------------------------------------------
def np_conv(x, w, b, stride, pads, group):
    n, c, h, wd = x.shape
    k, cg, ky, kx = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (xp.shape[2] - ky) // stride[0] + 1
    ow = (xp.shape[3] - kx) // stride[1] + 1
    out = np.zeros((1, k, oh, ow))
    kg = k // group
    for g in range(group):
        xs = xp[0, g * cg:(g + 1) * cg]
        for o in range(g * kg, (g + 1) * kg):
            for i in range(ky):
                for j in range(kx):
                    patch = xs[:, i:i + stride[0] * oh:stride[0], j:j + stride[1] * ow:stride[1]]
                    out[0, o] += np.tensordot(w[o, :, i, j], patch, axes=(0, 0))
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def onnx_eval(model, x):
    """The graph's value in float64: DequantizeLinear/QuantizeLinear as ONNX defines them."""
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env["x"] = x.astype(np.float64)
    env["x"] = x.astype(np.float64)
    for n in model.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [env[v] if v else None for v in n.input]
        op = n.op_type

        def quant(v, s, z):
            lo, hi = (0, 255) if z.dtype == np.uint8 else (-128, 127)
            return np.clip(np.round(v / np.float64(s)) + z.astype(np.int64), lo, hi).astype(
                z.dtype)

        def deq(q, s, z, axis=1):
            s = np.asarray(s, np.float64)
            z = np.asarray(z, np.int64)
            if s.ndim == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                s, z = s.reshape(shape), z.reshape(shape)
            return (q.astype(np.int64) - z) * s

        if op == "QuantizeLinear":
            r = quant(i[0], i[1], i[2])
        elif op == "DequantizeLinear":
            r = deq(i[0], i[1], i[2], a.get("axis", 1))
        elif op == "Conv":
            pads = a.get("pads", [0] * 4)
            r = np_conv(i[0], i[1].astype(np.float64), None if len(i) < 3 else i[2],
                        a.get("strides", [1, 1]), pads, a.get("group", 1))
        elif op == "QLinearConv":
            xr = deq(i[0], i[1], i[2])
            wr = deq(i[3], i[4], i[5], 0)
            br = None if len(i) < 9 else i[8] * np.float64(i[1]) * np.asarray(i[4], np.float64)
            r = quant(np_conv(xr, wr, br, a.get("strides", [1, 1]), a.get("pads", [0] * 4),
                              a.get("group", 1)), i[6], i[7])
        elif op == "QLinearAdd":
            r = quant(deq(i[0], i[1], i[2]) + deq(i[3], i[4], i[5]), i[6], i[7])
        elif op == "Relu":
            r = np.maximum(i[0], 0)
        elif op == "Clip":
            r = np.clip(i[0], i[1], i[2])
        elif op == "Add":
            r = i[0] + i[1]
        elif op == "Pad":
            p = i[1]
            mode = a.get("mode", b"constant").decode()
            r = np.pad(i[0], [(p[d], p[d + 4]) for d in range(4)], mode=mode)
        elif op == "Resize" and a.get("mode") == b"linear":
            # half_pixel (the default): source = (dst + 0.5) / scale - 0.5, clamped at 0; the
            # neighbours clamp at the border.
            assert a.get("coordinate_transformation_mode", b"half_pixel") == b"half_pixel"
            r = i[0]
            for axis in (2, 3):
                n_in = r.shape[axis]
                n_out = int(n_in * i[2][axis])
                src = np.maximum((np.arange(n_out) + 0.5) / i[2][axis] - 0.5, 0)
                i0 = np.floor(src).astype(int)
                i1 = np.minimum(i0 + 1, n_in - 1)
                lam = (src - i0).reshape([-1 if d == axis else 1 for d in range(4)])
                r = np.take(r, i0, axis) * (1 - lam) + np.take(r, i1, axis) * lam
        elif op == "Resize":
            assert a["mode"] == b"nearest" and a["coordinate_transformation_mode"] == b"asymmetric"
            assert a["nearest_mode"] == b"floor"
            sc = i[2]
            oh, ow = int(i[0].shape[2] * sc[2]), int(i[0].shape[3] * sc[3])
            ys = np.floor(np.arange(oh) / sc[2]).astype(int)
            xs = np.floor(np.arange(ow) / sc[3]).astype(int)
            r = i[0][:, :, ys][:, :, :, xs]
        elif op == "ConvTranspose":
            x, w = i[0], i[1].astype(np.float64)
            s_ = a.get("strides", [1, 1])
            c, k, ky, kx = w.shape
            h, wd = x.shape[2:]
            r = np.zeros((1, k, (h - 1) * s_[0] + ky, (wd - 1) * s_[1] + kx))
            for yy in range(h):
                for xx in range(wd):
                    r[0, :, yy * s_[0]:yy * s_[0] + ky, xx * s_[1]:xx * s_[1] + kx] += np.einsum(
                        "c,ckyx->kyx", x[0, :, yy, xx], w)
        elif op == "MaxPool":
            ky, kx = a["kernel_shape"]
            sy, sx = a.get("strides", [1, 1])
            h, wd = i[0].shape[2:]
            oh, ow = (h - ky) // sy + 1, (wd - kx) // sx + 1
            r = np.full((1, i[0].shape[1], oh, ow), -np.inf)
            for dy in range(ky):
                for dx in range(kx):
                    r = np.maximum(r, i[0][:, :, dy:dy + sy * oh:sy, dx:dx + sx * ow:sx])
        elif op == "GlobalAveragePool":
            r = i[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Flatten":
            r = i[0].reshape(1, -1)
        elif op == "MatMul":
            r = i[0] @ i[1]
        elif op == "Gemm":
            w = i[1].T if a.get("transB", 0) else i[1]
            r = i[0] @ w + (0 if len(i) < 3 else i[2])
        else:
            raise AssertionError(f"the test's ONNX semantics lack {op}")
        env[n.output[0]] = r
    return env  # every tensor


# --- running the importer and dpuemu ------------------------------------------------------
def import_model(model_path, out, target="NPU40XX", extra=()):
    return subprocess.run([DPUEMU, "import", model_path, "--target", target, "--out", out,
                           *extra], capture_output=True, text=True)


def run_network(net_dir, target):
    """Runs the imported network; returns ({layer: output [H, W, C]}, how). None: could not."""
    net = json.load(open(os.path.join(net_dir, "NETWORK.json")))
    out = os.path.join(net_dir, "run")
    names = [l["name"] for l in net["layers"]]
    r = subprocess.run([DPUEMU, "run", os.path.join(net_dir, "NETWORK.json"), "--out", out],
                       capture_output=True, text=True)
    if r.returncode == 0:
        got = {n: np.load(os.path.join(out, n, "output.npy")) for n in names}
        for o in net["outputs"]:  # DIR/<output>.npy is the output layer's output.npy
            check(np.array_equal(np.load(os.path.join(out, o + ".npy")), got[o]),
                  f"{net_dir}: {o}.npy differs from {o}/output.npy")
        return got, "dpuemu run NETWORK.json, every layer"
    check(False, f"dpuemu run {net_dir}/NETWORK.json: {r.stderr.strip()}")
    return None, "network runner failed"


def compare(name, model, net_dir, target):
    """dpuemu's output of every layer that ran vs the ONNX tensor it stands for."""
    meta = json.load(open(os.path.join(net_dir, "import.json")))
    x = np.load(os.path.join(net_dir, "input_float.npy"))
    got, how = run_network(net_dir, target)
    if got is None:
        return False
    env = onnx_eval(model, x)
    print(f"{name} on {target}: {how}: {len(got)} layer(s) compared")
    for lname, out in got.items():
        tensor = meta["layers"][lname]["tensor"]
        if not check(tensor in env, f"{name}/{lname}: import.json names tensor {tensor!r}"):
            continue
        ref = env[tensor]
        if ref.ndim == 2:
            ref = ref.reshape(1, -1, 1, 1)
        ref = ref[0].transpose(1, 2, 0)
        c = ref.shape[2]
        check(out.shape[:2] == ref.shape[:2] and out.shape[2] == round_up16(c),
              f"{name}/{lname}: dpuemu shape {out.shape} for ONNX {ref.shape}")
        pad = out[:, :, c:]
        out = out[:, :, :c].astype(np.float64)
        if out.dtype.kind == "f" and ref.dtype.kind == "f":
            err = np.abs(out - ref)
            # fp16 storage of the input and of every layer's output: a few fp16 ulps (2^-11) of
            # the layer's largest value, not of each element (sums cancel); a wrong layout or
            # scale is off by the order of the values themselves.
            tol = 2.0 ** -8 * (np.abs(ref).max() + np.abs(ref))
            check(np.all(err <= tol), f"{name}/{lname}: fp16 max error {err.max():g}")
            print(f"  {lname}: fp16, max |error| {err.max():.4f} (max |value| "
                  f"{np.abs(ref).max():.2f})")
            continue
        diff = np.abs(out - ref.astype(np.float64))
        print(f"  {lname}: {out.size} values, {100 * np.mean(diff == 0):.1f}% exact, "
              f"max |diff| {diff.max():g} LSB")
        check(diff.max() <= 1, f"{name}/{lname}: max |dpuemu - onnx| = {diff.max()} LSB > 1")
    return True


def round_up16(c):
    return c if c in (3, 4) else (c + 15) // 16 * 16


def main():
    models = {"resnet_block": resnet_block, "mbv2_block": mobilenet_v2_block,
              "first_rgb": first_layer_rgb, "conv_chain": conv_chain, "se_chain": se_chain,
              "bilinear": bilinear,
              "head": classifier_head, "fc_only": lambda: classifier_head(pool=False),
              "float_block": float_block, "float_matmul": float_matmul_head,
              "qlinear": qlinear_model}
    built = {}
    for name, fn in models.items():
        b, out = fn()
        path = os.path.join(TMP, name + ".onnx")
        m = b.save(out, path) if name != "qlinear" else save_unchecked(b, out, path)
        built[name] = (m, path)

    # Import every model for both targets and check the files.
    for name, (m, path) in built.items():
        for target in ("NPU37XX", "NPU40XX"):
            d = os.path.join(TMP, f"{name}_{target}")
            r = import_model(path, d, target)
            if not check(r.returncode == 0, f"import {name}: {r.returncode} {r.stderr.strip()}"):
                continue
            net = json.load(open(os.path.join(d, "NETWORK.json")))
            check(net["target"] == target, f"{name}: target")
            check_layers(name, net, d)
            compare(name, m, d, target)

    check_specifics(built)
    check_bad_models(built)
    check_mutations(built)
    print(f"{len(FAILURES)} failure(s)")
    shutil.rmtree(TMP, ignore_errors=True)
    return 1 if FAILURES else 0


def save_unchecked(b, out, path):
    outv = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    g = helper.make_graph(b.nodes, b.name, [b.inp], [outv], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("com.microsoft", 1)])
    onnx.save(m, path)
    return m


def check_layers(name, net, d):
    """Every weight file has the declared dtype and [K, KY, KX, C] shape with K, C multiples of
    16 (C = 3 allowed), every producer is defined before use."""
    seen = {"input"}
    prev = "input"
    for layer in net["layers"]:
        for i in layer.get("inputs", [prev]):
            check(i in seen, f"{name}: layer '{layer['name']}' reads '{i}' before it is written")
        seen.add(layer["name"])
        prev = layer["name"]
        if "weights" in layer:
            w = np.load(os.path.join(d, layer["weights"]["npy"]))
            want = {"i8": np.int8, "u8": np.uint8, "fp16": np.float16}[layer["weights"]["dtype"]]
            check(w.dtype == want, f"{name}/{layer['name']}: weights dtype {w.dtype}")
            check(w.shape[0] % 16 == 0, f"{name}/{layer['name']}: K = {w.shape[0]}")
            if layer.get("op", "conv") == "conv":
                check(w.shape[3] % 16 == 0 or w.shape[3] == 3,
                      f"{name}/{layer['name']}: C = {w.shape[3]}")
            b = np.load(os.path.join(d, layer["bias"]["npy"]))
            check(b.shape == (w.shape[0],), f"{name}/{layer['name']}: bias shape {b.shape}")


def layer(net, name):
    return next(l for l in net["layers"] if l["name"] == name)


def check_specifics(built):
    d = os.path.join(TMP, "resnet_block_NPU40XX")
    net = json.load(open(os.path.join(d, "NETWORK.json")))
    check([l.get("op", "conv") for l in net["layers"]] == ["conv", "conv", "eltwise"],
          f"resnet block ops {[l.get('op') for l in net['layers']]}")
    c1 = layer(net, "conv1")
    check(c1["ppe"]["clamp"] == [0, 255], f"conv1 clamp (Relu at zero point 0) {c1['ppe']['clamp']}")
    # 0.05 * weight scale / 0.04 as the compiler approximates it (truncated 15-bit mantissa).
    add = net["layers"][2]
    check(add["inputs"] == ["conv2", "input"], f"add inputs {add['inputs']}")
    for f in ("in1_mult", "in2_mult", "mult", "shift"):
        check(f in add["ppe"], f"add ppe has {f}")
    # in1 = 0.06 (conv2), in2 = 0.05 (input), out 0.08: recompute the compiler's rule here.
    m1, e1 = np.frexp(0.06)
    m2, e2 = np.frexp(0.05)
    mo, eo = np.frexp(1 / 0.08)
    i1, s1 = int(m1 * 32768), 15 - e1
    i2, s2 = int(m2 * 32768), 15 - e2
    hi = max(s1, s2)
    check((add["ppe"]["in1_mult"], add["ppe"]["in2_mult"], add["ppe"]["mult"], add["ppe"]["shift"])
          == (i1 << (hi - s1), i2 << (hi - s2), int(mo * 32768), 15 - eo + hi),
          f"add multipliers {add['ppe']}")

    d = os.path.join(TMP, "mbv2_block_NPU40XX")
    net = json.load(open(os.path.join(d, "NETWORK.json")))
    dw = layer(net, "dw")
    check(dw.get("op") == "dwconv", "mbv2: grouped conv -> dwconv")
    check(np.load(os.path.join(d, dw["weights"]["npy"])).shape == (32, 3, 3, 1), "dw weights shape")
    ex = layer(net, "expand")
    check(isinstance(ex["ppe"]["mult"], list) and len(ex["ppe"]["mult"]) == 32,
          "per-channel weight scales give per-channel mult")
    lo, hi = ex["ppe"]["clamp"]
    check((lo, hi) == (0, min(255, round(6 / 0.03))), f"relu6 clamp {ex['ppe']['clamp']}")

    d = os.path.join(TMP, "first_rgb_NPU40XX")
    net = json.load(open(os.path.join(d, "NETWORK.json")))
    check(np.load(os.path.join(d, "input.npy")).shape == (16, 16, 3), "first layer keeps C = 3")
    check(net["layers"][0]["stride"] == [2, 2], "stem stride")

    d = os.path.join(TMP, "conv_chain_NPU40XX")
    net = json.load(open(os.path.join(d, "NETWORK.json")))
    check(net["layers"][0]["pad"] == [1, 1, 1, 1], f"Pad folded into c1 {net['layers'][0]['pad']}")

    d = os.path.join(TMP, "head_NPU40XX")
    net = json.load(open(os.path.join(d, "NETWORK.json")))
    check([l.get("op", "conv") for l in net["layers"]] == ["avgpool", "conv"], "head ops")
    check(net["layers"][0]["kernel"] == [4, 4], "GlobalAveragePool -> avgpool 4x4")
    fc = layer(net, "fc")
    w = np.load(os.path.join(d, fc["weights"]["npy"]))
    check(w.shape == (16, 1, 1, 32) and np.all(w[10:] == 0), "Gemm: 10 classes padded to 16")
    meta = json.load(open(os.path.join(d, "import.json")))
    check(meta["outputs"][0]["channels"] == 10 and meta["outputs"][0]["stored_channels"] == 16,
          "import.json says 10 of 16 channels")
    check(any("10 channels stored as 16" in n for n in meta["notes"]), "padding noted")

    d = os.path.join(TMP, "float_block_NPU40XX")
    net = json.load(open(os.path.join(d, "NETWORK.json")))
    check(net["input"]["dtype"] == "fp16" and net["layers"][0]["weights"]["dtype"] == "fp16",
          "float model -> fp16")
    check(net["layers"][0]["ppe"]["clamp"][0] == 0, "float Relu -> clamp [0, ...]")

    # SE operations: Resize nearest / linear, ConvTranspose, reflect Pad (JSON only: which SE op).
    b = Builder("se", 16, 4, 4)
    x = b.q("x", 0.05)
    r = b.q(b.node("Resize", [x, "", b.init(np.array([1, 1, 2, 2], np.float32))], name="up",
                   mode="nearest", coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor"), 0.05)
    rl = b.q(b.node("Resize", [r, "", b.init(np.array([1, 1, 2, 2], np.float32))], name="upl",
                    mode="linear"), 0.05)
    w = RNG.integers(-20, 20, (16, 16, 2, 2)).astype(np.int8)
    wi = b.node("DequantizeLinear", [b.init(w, "w"), b.init(np.float32(0.01)), b.init(np.int8(0))])
    t = b.q(b.node("ConvTranspose", [rl, wi], name="deconv", strides=[2, 2],
                   kernel_shape=[2, 2]), 0.05)
    p = b.q(b.node("Pad", [t, b.init(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))],
                   name="rpad", mode="reflect"), 0.05)
    path = os.path.join(TMP, "se.onnx")
    b.save(p, path)
    d = os.path.join(TMP, "se_out")
    res = import_model(path, d)
    if check(res.returncode == 0, f"import se model: {res.stderr.strip()}"):
        net = json.load(open(os.path.join(d, "NETWORK.json")))
        ses = [(l["name"], l.get("se", {}).get("op")) for l in net["layers"]]
        check(ses == [("up", "interpolate_nearest"), ("upl", "interpolate_bilinear"),
                      ("deconv", "transposed"), ("rpad", "pad")], f"se ops {ses}")
        up = layer(net, "up")
        check(up["se"]["size"] == [8, 8] and up["se"]["nearest_mode"] == "floor",
              f"resize fields {up['se']}")
        wt = np.load(os.path.join(d, layer(net, "deconv")["weights"]["npy"]))
        check(np.array_equal(wt, w.transpose(1, 2, 3, 0)), "ConvTranspose weights [K, KY, KX, C]")
        upl = layer(net, "upl")
        check("weights" not in upl and "stride" not in upl and upl["se"]["mode"] == "half_pixel"
              and upl["se"]["size"] == [16, 16] and upl["ppe"]["mult"] == 16384 and
              upl["ppe"]["shift"] == 14, f"bilinear layer {upl}")
        iw = np.load(os.path.join(d, up["weights"]["npy"]))
        check(np.array_equal(iw[:, 0, 0, :], np.eye(16, dtype=np.int8)), "identity conv weights")
        check(up["ppe"]["mult"] == 16384 and up["ppe"]["shift"] == 14, "identity scale 1.0")


def expect_error(what, path, *needles, extra=()):
    r = import_model(path, os.path.join(TMP, "bad_out"), extra=extra)
    msg = r.stderr.strip()
    ok = r.returncode == 2 and "Traceback" not in msg and len(msg.splitlines()) == 1
    ok = ok and all(n in msg for n in needles)
    check(ok, f"{what}: exit {r.returncode}, stderr: {msg!r} (want exit 2 naming {needles})")


def check_bad_models(built):
    m, path = built["resnet_block"]
    data = open(path, "rb").read()
    bad = os.path.join(TMP, "bad.onnx")
    open(bad, "wb").write(data[: len(data) // 2])
    expect_error("truncated protobuf", bad, "bad.onnx")
    open(bad, "wb").write(bytes(RNG.integers(0, 256, 4096, dtype=np.uint8)))
    expect_error("random bytes", bad, "bad.onnx")
    open(bad, "wb").write(b"\x0a" + b"\xff" * 9 + b"\x01")  # a length beyond the file
    expect_error("hostile length", bad, "bad.onnx")
    expect_error("missing file", os.path.join(TMP, "nope.onnx"), "nope.onnx", "cannot read")
    r = subprocess.run([DPUEMU, "import", path, "--target", "NPU99XX", "--out", TMP],
                       capture_output=True, text=True)
    check(r.returncode == 2 and "--target" in r.stderr, f"bad --target: {r.returncode}")

    # An initialiser whose raw_data is shorter than its dims.
    m2 = onnx.load(path)
    t = m2.graph.initializer[next(i for i, t in enumerate(m2.graph.initializer)
                                  if t.name.startswith("w"))]
    t.raw_data = t.raw_data[:-5]
    onnx.save(m2, bad)
    expect_error("wrong-size initialiser", bad, f"initialiser '{t.name}'", "bytes")

    # A missing initialiser.
    m3 = onnx.load(path)
    gone = m3.graph.initializer[3].name
    del m3.graph.initializer[3]
    onnx.save(m3, bad)
    expect_error("missing initialiser", bad, gone, "missing initialiser")

    # Unsupported nodes, all listed by name and type.
    b = Builder("unsup", 16, 4, 4)
    x = b.q("x", 0.05)
    s = b.node("Softmax", [x], name="sm")
    y = b.node("Sigmoid", [s], name="sig")
    p = os.path.join(TMP, "unsup.onnx")
    b.save(y, p)
    expect_error("unsupported ops", p, "'sm' (Softmax)", "'sig' (Sigmoid)")

    # GlobalAveragePool over 12x12 exceeds the avgpool kernel.
    b = Builder("gap12", 16, 12, 12)
    x = b.q("x", 0.05)
    y = b.q(b.node("GlobalAveragePool", [x], name="gap"), 0.05)
    p = os.path.join(TMP, "gap12.onnx")
    b.save(y, p)
    expect_error("GAP 12x12", p, "'gap'", "12x12", "11x11")

    # 20 channels in the middle of a network: padded (not refused); 20 input channels padded too.
    b = Builder("c20", 20, 4, 4)
    x = b.q("x", 0.05)
    y = b.conv(x, 20, 20, name="a")
    y = b.conv(y, 20, 16, name="b")
    p = os.path.join(TMP, "c20.onnx")
    b.save(y, p)
    d = os.path.join(TMP, "c20_out")
    r = import_model(p, d)
    if check(r.returncode == 0, f"c20 import: {r.stderr.strip()}"):
        net = json.load(open(os.path.join(d, "NETWORK.json")))
        wa = np.load(os.path.join(d, layer(net, "a")["weights"]["npy"]))
        wb = np.load(os.path.join(d, layer(net, "b")["weights"]["npy"]))
        check(wa.shape == (32, 3, 3, 32) and np.all(wa[20:] == 0) and np.all(wa[..., 20:] == 0),
              "20 channels padded to 32 with zero-point weights")
        check(wb.shape == (16, 3, 3, 32) and np.all(wb[..., 20:] == 0), "consumer pad")
        check(np.load(os.path.join(d, "input.npy")).shape == (4, 4, 32), "input padded to 32")
        compare("c20", onnx.load(p), d, "NPU40XX")


def varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def nested_graphs(depth):
    """ModelProto.graph -> GraphProto.node -> NodeProto.attribute -> AttributeProto.g -> ...,
    `depth` levels: a hostile file that recurses the parser."""
    msg = b""
    for _ in range(depth):
        attr = b"\x32" + varint(len(msg)) + msg       # AttributeProto.g (6)
        node = b"\x2a" + varint(len(attr)) + attr     # NodeProto.attribute (5)
        msg = b"\x0a" + varint(len(node)) + node      # GraphProto.node (1)
    return b"\x3a" + varint(len(msg)) + msg           # ModelProto.graph (7)


def check_mutations(built, n=400):
    """Bytes of valid models mutated at random: every one is imported or refused with a
    ModelError (the importer's named rules), never another exception. Seed printed."""
    import importlib.util
    import traceback
    spec = importlib.util.spec_from_file_location("onnx_import", TOOL)
    oi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oi)
    seed = int(os.environ.get("ONNX_IMPORT_TEST_SEED", RNG.integers(1 << 30)))
    rng = np.random.default_rng(seed)
    srcs = [open(p, "rb").read() for _, p in built.values()]
    path, out = os.path.join(TMP, "mut.onnx"), os.path.join(TMP, "mut_out")
    os.makedirs(out, exist_ok=True)
    counts = {"imported": 0, "refused": 0}
    for i in range(n):
        data = bytearray(srcs[i % len(srcs)])
        for _ in range(rng.integers(1, 6)):
            pos = int(rng.integers(0, len(data)))
            kind = rng.integers(0, 3)
            if kind == 0:
                data[pos] = int(rng.integers(0, 256))
            elif kind == 1:
                del data[pos:pos + int(rng.integers(1, 50))]
            else:
                data[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 20)), np.uint8))
        open(path, "wb").write(data)
        imp = oi.Importer(path, "NPU40XX", out)
        try:
            imp.load()
            imp.check_graph()
            outs = imp.run()
            oi.write_network(imp, outs, None, 1, "m")
            counts["imported"] += 1
        except oi.ModelError:
            counts["refused"] += 1
        except Exception as e:
            check(False, f"mutation {i} (ONNX_IMPORT_TEST_SEED={seed}): "
                  f"{''.join(traceback.format_exception_only(type(e), e)).strip()}")
    print(f"mutations (seed {seed}): {counts}")
    bad = os.path.join(TMP, "deep.onnx")
    open(bad, "wb").write(nested_graphs(3000))
    expect_error("3000 nested graphs", bad, "deep.onnx")


if __name__ == "__main__":
    sys.exit(main())
