#!/bin/bash
# End-to-end test of SPEC.json's "se" field through the dpuemu CLI: numpy writes a small spec for
# every SE operation (upsample_nearest, interpolate_nearest, transposed, pad, roll, dilate) on both
# targets with int8 and fp16, plus SE tables made by hand (a source split over 2 tiles, so
# BASE_PTR = 1 appears); `dpuemu run` runs them all, and numpy checks
#   - output.npy against a direct computation on dense arrays with no SE tables (numpy.repeat,
#     index-based nearest resize, the transposed convolution's scatter definition, numpy.pad,
#     numpy.roll, the dilated convolution's definition), exactly: int8 in int64 with the PPE's
#     round half to even; fp16 from inputs whose products and sums are exact in fp32 (multiples
#     of 1/8 and power-of-two scales), so float64 rounded to fp16 is the definition's result;
#   - the golden set by decoding it from the format description alone: the SE pointers
#     (DATA_PTR/BASE_PTR) into the source tiles plus the virtual map give the virtual tensor numpy
#     built, and convolving it with weights.bin and weight_table.bin gives output.npy again;
#   - plan.json's se section and CMX figures.
# Malformed specs (pointer outside the tensor, BASE_PTR beyond the tile count, map of the wrong
# shape, op fields) must exit 2 with one stderr line naming the file and the field.
#
# Usage: se_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error (a data file beside this script)
PY=/usr/bin/python3  # Debian's python, which has numpy
T="${TEST_TMPDIR:-$(mktemp -d)}/se_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"


# ---- Specs: every op x target x dtype, and hand-made tables ----
"$PY" - <<'EOF'
import json
import numpy as np

rng = np.random.default_rng(11)
cases = {}

def add(name, target, dt, src_shape, k, kernel, se, stride=(1, 1), pad=(0, 0, 0, 0),
        sparse_source=False, sparse_out=False, weights="auto", extra=None):
    H, W, C = src_shape
    KY, KX = kernel
    s = {"target": target, "se": se, "stride": list(stride), "pad": list(pad),
         "sparsity": {"weights": weights, "input": "sparse" if sparse_source else "dense"}}
    if dt == "int8":
        x = (30 + rng.integers(-8, 9, (H, W, C))).astype(np.uint8)
        x[rng.random(x.shape) < 0.3] = 30
        w = (-1 + rng.integers(-6, 7, (k, KY, KX, C))).astype(np.int8)
        w[rng.random(w.shape) < 0.4] = -1
        b = rng.integers(-300, 300, k).astype(np.int32)
        s["input"] = {"npy": name + "_x.npy", "dtype": "u8", "zero_point": 30}
        s["weights"] = {"npy": name + "_w.npy", "dtype": "i8", "zero_point": -1}
        s["ppe"] = {"mult": [2000 + 37 * i for i in range(k // 2)] + [1] * (k - k // 2),
                    "shift": [13] * (k // 2) + [1 + i % 3 for i in range(k - k // 2)],
                    "out_zero_point": 90, "clamp": [0, 250],
                    "leaky_relu": {"mult": 5, "shift": 2}}
        s["output"] = {"dtype": "u8", "sparse": sparse_out}
    else:
        x = (rng.integers(-16, 17, (H, W, C)) / 8).astype(np.float16)
        x[rng.random(x.shape) < 0.3] = 0
        w = (rng.integers(-16, 17, (k, KY, KX, C)) / 8).astype(np.float16)
        w[rng.random(w.shape) < 0.4] = 0
        b = (rng.integers(-32, 33, k) / 8).astype(np.float32)
        s["input"] = {"npy": name + "_x.npy", "dtype": "fp16"}
        s["weights"] = {"npy": name + "_w.npy", "dtype": "fp16"}
        s["ppe"] = {"scale": [0.5 if i % 2 else 0.25 for i in range(k)], "clamp": [-24, 24]}
        s["output"] = {"dtype": "fp16", "sparse": sparse_out}
    if extra:
        s.update(extra)
    np.save("specs/%s_x.npy" % name, x)
    np.save("specs/%s_w.npy" % name, w)
    np.save("specs/%s_b.npy" % name, b)
    s["bias"] = {"npy": name + "_b.npy"}
    json.dump(s, open("specs/%s.json" % name, "w"), indent=1)
    cases[name] = {"op": se.get("op", "table")}

T37, T40 = "NPU37XX", "NPU40XX"
# upsample_nearest
add("up_37_i8", T37, "int8", (3, 2, 16), 32, (3, 3), {"op": "upsample_nearest", "factor": [2, 3]},
    pad=(1, 1, 1, 1), sparse_source=True, sparse_out=True)
add("up_37_f16", T37, "fp16", (3, 2, 32), 16, (3, 3),
    {"op": "upsample_nearest", "factor": [2, 2], "se_size": 16}, pad=(1, 0, 0, 1))
add("up_40_i8", T40, "int8", (3, 3, 48), 16, (2, 2),
    {"op": "upsample_nearest", "factor": [3, 2], "source_rows_per_tile": [2, 1]}, stride=(2, 1))
add("up_40_f16", T40, "fp16", (2, 3, 16), 32, (3, 3), {"op": "upsample_nearest", "factor": [1, 2]},
    pad=(1, 1, 1, 1), sparse_source=True, weights="sparse")
# interpolate_nearest (ONNX Resize, nearest)
add("interp_37_i8", T37, "int8", (3, 4, 16), 16, (3, 3),
    {"op": "interpolate_nearest", "size": [5, 7], "mode": "half_pixel",
     "nearest_mode": "round_prefer_ceil"}, pad=(1, 1, 1, 1))
add("interp_37_f16", T37, "fp16", (4, 3, 16), 16, (1, 1),
    {"op": "interpolate_nearest", "size": [7, 5], "mode": "asymmetric", "nearest_mode": "floor"},
    sparse_source=True)
add("interp_40_i8", T40, "int8", (4, 5, 32), 32, (3, 3),
    {"op": "interpolate_nearest", "size": [6, 3], "mode": "align_corners"}, pad=(0, 1, 1, 0),
    sparse_out=True)
add("interp_40_f16", T40, "fp16", (3, 3, 16), 16, (2, 2),
    {"op": "interpolate_nearest", "size": [8, 4], "mode": "pytorch_half_pixel",
     "nearest_mode": "ceil"})
add("interp_40_tf_i8", T40, "int8", (5, 3, 16), 16, (1, 1),
    {"op": "interpolate_nearest", "size": [2, 7], "mode": "tf_half_pixel_for_nn"})
# transposed: stride/pad are the transposed conv's, weights its [K, KY, KX, C]
add("tconv_37_i8", T37, "int8", (3, 3, 16), 32, (3, 3),
    {"op": "transposed", "output_padding": [1, 0]}, stride=(2, 2), pad=(1, 0, 0, 1))
add("tconv_37_f16", T37, "fp16", (2, 3, 16), 16, (2, 3), {"op": "transposed"}, stride=(2, 1),
    pad=(0, 0, 1, 1), sparse_source=True, sparse_out=True)
add("tconv_40_i8", T40, "int8", (2, 2, 32), 16, (4, 4),
    {"op": "transposed", "output_padding": [2, 1], "se_size": 16}, stride=(3, 2), pad=(1, 2, 0, 1),
    sparse_source=True, weights="sparse")
add("tconv_40_f16", T40, "fp16", (3, 2, 16), 32, (3, 3), {"op": "transposed"}, stride=(1, 2),
    pad=(2, 1, 0, 0))
# pad: numpy.pad modes, then the spec's own convolution padding
add("pad_37_i8", T37, "int8", (3, 4, 16), 16, (3, 3), {"op": "pad", "pad": [2, 1, 0, 3]},
    stride=(1, 2), pad=(0, 1, 1, 0), sparse_source=True)
add("pad_37_f16", T37, "fp16", (3, 3, 16), 32, (3, 3),
    {"op": "pad", "pad": [1, 4, 2, 2], "mode": "reflect"})
add("pad_40_i8", T40, "int8", (2, 3, 32), 16, (2, 2),
    {"op": "pad", "pad": [3, 2, 4, 1], "mode": "symmetric"}, sparse_out=True)
add("pad_40_f16", T40, "fp16", (3, 2, 16), 16, (3, 3),
    {"op": "pad", "pad": [1, 2, 3, 0], "mode": "edge", "source_rows_per_tile": [1, 1, 1]},
    pad=(1, 1, 1, 1))
# roll
add("roll_37_i8", T37, "int8", (4, 5, 16), 32, (3, 3), {"op": "roll", "shift": [1, -2]},
    pad=(1, 1, 1, 1), sparse_source=True)
add("roll_37_f16", T37, "fp16", (3, 4, 16), 16, (1, 1), {"op": "roll", "shift": [-7, 9]})
add("roll_40_i8", T40, "int8", (5, 3, 32), 16, (2, 3), {"op": "roll", "shift": [2, 1]},
    stride=(2, 1), pad=(0, 1, 1, 1), sparse_out=True)
add("roll_40_f16", T40, "fp16", (4, 4, 16), 16, (3, 3), {"op": "roll", "shift": [0, 3]},
    pad=(1, 1, 1, 1), sparse_source=True)
# dilate: stride/pad are the dilated conv's; it runs as phases
add("dil_37_i8", T37, "int8", (6, 5, 16), 16, (3, 3), {"op": "dilate", "dilation": [2, 2]},
    pad=(2, 2, 1, 1), sparse_source=True)
add("dil_37_f16", T37, "fp16", (7, 6, 16), 32, (2, 2), {"op": "dilate", "dilation": [2, 3]},
    stride=(2, 1), pad=(1, 0, 0, 2))
add("dil_40_i8", T40, "int8", (6, 6, 32), 16, (3, 2), {"op": "dilate", "dilation": [3, 2]},
    stride=(1, 2), pad=(1, 1, 1, 1), sparse_out=True, weights="sparse")
add("dil_40_f16", T40, "fp16", (5, 7, 16), 16, (3, 3), {"op": "dilate", "dilation": [1, 2]},
    pad=(1, 1, 2, 2), sparse_source=True)

# Hand-made tables: a source [4, 3, 32] split over two tiles (rows 2 + 2), se_size 16, a virtual
# [3, 5] whose SEs read random source SEs of either tile or are inserted zeros (map 0).
def table_case(name, target, dt):
    H, W, C, se, rows = 4, 3, 32, 16, [2, 2]
    if dt == "int8":
        x = (30 + rng.integers(-8, 9, (H, W, C))).astype(np.uint8)
    else:
        x = (rng.integers(-16, 17, (H, W, C)) / 8).astype(np.float16)
    eb = x.dtype.itemsize
    Hv, Wv = 3, 5
    table = np.zeros((Hv, Wv, C // se), np.int32)
    vmap = np.zeros((Hv, Wv, C), np.uint8)
    for y in range(Hv):
        for xx in range(Wv):
            for s in range(C // se):
                sy, sx, ss = rng.integers(0, H), rng.integers(0, W), rng.integers(0, C // se)
                tile = int(sy >= rows[0])
                off = (((sy - rows[0] * tile) * W + sx) * C + ss * se) * eb
                table[y, xx, s] = ((off >> 4) << 9) | tile
                vmap[y, xx, s * se:(s + 1) * se] = 0 if (y + xx + s) % 4 == 3 else 1
    tiles = (table & 0x1FF)
    assert (tiles == 1).any() and (tiles == 0).any()
    np.save("specs/%s_table.npy" % name, table)
    np.save("specs/%s_map.npy" % name, vmap)
    np.save("specs/%s_src.npy" % name, x)
    s = json.load(open("specs/%s.json" % ("up_37_i8" if dt == "int8" else "up_37_f16")))
    s["target"] = target
    s["input"]["npy"] = name + "_src.npy"
    s["se"] = {"table": name + "_table.npy", "map": name + "_map.npy",
               "source_rows_per_tile": rows}
    s["stride"], s["pad"] = [1, 1], [1, 1, 0, 1]
    s["sparsity"] = {"weights": "auto", "input": "dense"}
    w = np.load("specs/" + s["weights"]["npy"])
    np.save("specs/%s_w.npy" % name, np.concatenate([w, w], axis=3)[..., :C] if w.shape[3] < C else w)
    s["weights"]["npy"] = name + "_w.npy"
    json.dump(s, open("specs/%s.json" % name, "w"), indent=1)
    cases[name] = {"op": "table"}

table_case("table_40_i8", T40, "int8")
table_case("table_37_f16", T37, "fp16")
table_case("table_37_i8", T37, "int8")
json.dump(cases, open("cases.json", "w"))
EOF

# ---- plan: text and JSON carry the se section ----
"$DPUEMU" plan specs/up_37_i8.json >plan_up.txt || fail "plan exited $?"
grep -q "se: upsample_nearest fy=2 fx=3: source \[3, 2, 16\] -> virtual \[6, 6, 16\]" plan_up.txt ||
  fail "plan text has no se section: $(cat plan_up.txt)"
grep -Eq "SE table [0-9,]+ bytes \([0-9,]+ pointers x 4\) \+ input map" plan_up.txt || fail "plan text: $(cat plan_up.txt)"
grep -Eq "CMX [0-9,]+ bytes \(input [0-9,]+ \+ SE table [0-9,]+ \+ map [0-9,]+ \+ weights" plan_up.txt ||
  fail "plan text tiles: $(cat plan_up.txt)"
"$DPUEMU" plan specs/dil_37_f16.json >plan_dil.txt || fail "plan dilate exited $?"
grep -q "dilated conv over \[7, 6, 16\], kernel 2x2, dilation 2x3" plan_dil.txt || fail "dilate plan: $(cat plan_dil.txt)"
grep -q "== phase 1 (outputs" plan_dil.txt || fail "dilate plan phases: $(cat plan_dil.txt)"
grep -q "total estimate: " plan_dil.txt || fail "dilate plan total: $(cat plan_dil.txt)"

# ---- run every spec in one sweep, and a few again on the reference DPU ----
"$DPUEMU" run specs --out out >run.txt 2>run.err || fail "sweep: $(cat run.err)"
n=$(ls specs/*.json | wc -l)
grep -q "$n specs: $n ok, 0 failed" run.txt || fail "sweep summary: $(cat run.txt)"
grep -q "se dilate in " run.txt || fail "run line names the phases: $(cat run.txt)"
for s in tconv_40_i8 dil_37_f16 table_40_i8 pad_40_f16; do
  "$DPUEMU" run "specs/$s.json" --out "ref/$s" --reference --threads 1 >/dev/null || fail "reference run of $s"
  for f in output.npy manifest.json se_table.bin se_table_phase0.bin output.bin output_phase1.bin; do
    if [ -f "out/$s/$f" ]; then cmp -s "out/$s/$f" "ref/$s/$f" || fail "$s: --reference $f differs"; fi
  done
done

# ---- numpy: outputs against the definitions, golden sets decoded, plan.json ----
"$PY" - <<'EOF' || fail "numpy checks"
import json
import os
import sys
from fractions import Fraction
import numpy as np

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

cases = json.load(open("cases.json"))

def ppe_int(acc, s, bias):
    p = s["ppe"]
    v = (acc + bias.astype(np.int64)) * np.array(p["mult"], np.int64)
    shift = np.broadcast_to(np.array(p["shift"], np.int64), v.shape)
    neg = v < 0
    v = np.where(neg, v * p["leaky_relu"]["mult"], v)
    shift = np.where(neg, shift + p["leaky_relu"]["shift"], shift)
    q = v >> shift
    r = v - (q << shift)
    half = np.int64(1) << (shift - 1)
    q = q + ((r > half) | ((r == half) & ((q & 1) == 1))) + p["out_zero_point"]
    return np.clip(q, max(p["clamp"][0], 0), min(p["clamp"][1], 255)).astype(np.uint8)

def ppe_float(acc, s, bias):
    v = acc.astype(np.float32) * np.array(s["ppe"]["scale"], np.float32) + bias
    return np.clip(v, *s["ppe"]["clamp"]).astype(np.float16)

def centred(s, x, w):
    """(x - x_zp, w - w_zp) as int64, or float64 for fp16."""
    if s["input"]["dtype"] == "fp16":
        return x.astype(np.float64), w.astype(np.float64)
    return (x.astype(np.int64) - s["input"]["zero_point"],
            w.astype(np.int64) - s["weights"]["zero_point"])

def conv(xc, wc, stride, pad, dil=(1, 1)):
    """Convolution of centred arrays: xc [H, W, C], wc [K, KY, KX, C]; padding reads as 0."""
    H, W, C = xc.shape
    K, KY, KX, _ = wc.shape
    pt, pb, pl, pr = pad
    xp = np.zeros((H + pt + pb, W + pl + pr, C), xc.dtype)
    xp[pt:pt + H, pl:pl + W] = xc
    oh = (H + pt + pb - ((KY - 1) * dil[0] + 1)) // stride[0] + 1
    ow = (W + pl + pr - ((KX - 1) * dil[1] + 1)) // stride[1] + 1
    acc = np.zeros((oh, ow, K), xc.dtype)
    for ky in range(KY):
        for kx in range(KX):
            y0, x0 = ky * dil[0], kx * dil[1]
            win = xp[y0:y0 + stride[0] * (oh - 1) + 1:stride[0], x0:x0 + stride[1] * (ow - 1) + 1:stride[1]]
            acc = acc + win @ wc[:, ky, kx, :].T
    return acc

def nearest_index(o, n_in, n_out, coord, mode):
    """ONNX Resize nearest: the source index for output index o, in exact fractions."""
    scale = Fraction(n_out, n_in)
    if coord == "asymmetric":
        f = o / scale
    elif coord == "half_pixel" or (coord == "pytorch_half_pixel" and n_out > 1):
        f = (o + Fraction(1, 2)) / scale - Fraction(1, 2)
    elif coord == "pytorch_half_pixel":
        f = Fraction(0)
    elif coord == "align_corners":
        f = Fraction(0) if n_out == 1 else Fraction(o * (n_in - 1), n_out - 1)
    elif coord == "tf_half_pixel_for_nn":
        f = (o + Fraction(1, 2)) / scale
    fl = f.numerator // f.denominator
    frac = f - fl
    i = {"round_prefer_floor": fl + (frac > Fraction(1, 2)),
         "round_prefer_ceil": fl + (frac >= Fraction(1, 2)),
         "floor": fl, "ceil": fl + (frac > 0)}[mode]
    return min(max(i, 0), n_in - 1)

def virtual_tensor(s, x, op):
    """The virtual tensor numpy builds with no SE tables (zero point where inserted)."""
    se = s["se"]
    zp = s["input"].get("zero_point", 0)
    H, W, C = x.shape
    if op == "upsample_nearest":
        return np.repeat(np.repeat(x, se["factor"][0], 0), se["factor"][1], 1)
    if op == "interpolate_nearest":
        nm = se.get("nearest_mode", "round_prefer_floor")
        ys = [nearest_index(o, H, se["size"][0], se["mode"], nm) for o in range(se["size"][0])]
        xs = [nearest_index(o, W, se["size"][1], se["mode"], nm) for o in range(se["size"][1])]
        return x[ys][:, xs]
    if op == "pad":
        t, b, l, r = se["pad"]
        mode = se.get("mode", "constant")
        kw = {"constant_values": zp} if mode == "constant" else {}
        return np.pad(x, ((t, b), (l, r), (0, 0)), mode=mode, **kw)
    if op == "roll":
        return np.roll(x, tuple(se["shift"]), axis=(0, 1))
    return None

def expected(name):
    s = json.load(open("specs/%s.json" % name))
    op = cases[name]["op"]
    x = np.load("specs/" + s["input"]["npy"])
    w = np.load("specs/" + s["weights"]["npy"])
    b = np.load("specs/" + s["bias"]["npy"])
    stride, pad = s["stride"], s["pad"]
    v = virtual_tensor(s, x, op)
    if op == "table":
        zp = s["input"].get("zero_point", 0)
        table = np.load("specs/" + s["se"]["table"])
        vmap = np.load("specs/" + s["se"]["map"])
        rows = s["se"]["source_rows_per_tile"]
        C, se_size = x.shape[2], x.shape[2] // table.shape[2]
        v = np.full(vmap.shape, zp, x.dtype)
        for (y, xx, j), e in np.ndenumerate(table):
            tile, off = int(e) & 0x1FF, (int(e) >> 9) << 4
            el = off // x.dtype.itemsize  # element offset within the tile
            pix, c0 = divmod(el, C)
            sy, sx = divmod(pix, x.shape[1])
            sy += sum(rows[:tile])
            m = vmap[y, xx, j * se_size:(j + 1) * se_size].astype(bool)
            v[y, xx, j * se_size:(j + 1) * se_size][m] = x[sy, sx, c0:c0 + se_size][m]
    xc, wc = centred(s, x, w)
    if op == "transposed":
        # out[y*s + ky - pt][x*s + kx - pl] += in[y][x] . W[:, ky, kx]
        H, W, C = x.shape
        K, KY, KX, _ = w.shape
        opad = s["se"].get("output_padding", [0, 0])
        oh = (H - 1) * stride[0] - pad[0] - pad[1] + KY + opad[0]
        ow = (W - 1) * stride[1] - pad[2] - pad[3] + KX + opad[1]
        acc = np.zeros((oh, ow, K), xc.dtype)
        for y in range(H):
            for xx in range(W):
                for ky in range(KY):
                    for kx in range(KX):
                        oy, ox = y * stride[0] + ky - pad[0], xx * stride[1] + kx - pad[2]
                        if 0 <= oy < oh and 0 <= ox < ow:
                            acc[oy, ox] += wc[:, ky, kx, :] @ xc[y, xx]
    elif op == "dilate":
        acc = conv(xc, wc, stride, pad, tuple(s["se"]["dilation"]))
    else:
        vc, _ = centred(s, v, w)
        acc = conv(vc, wc, stride, pad)
    out = ppe_float(acc, s, b) if s["input"]["dtype"] == "fp16" else ppe_int(acc, s, b)
    return s, x, w, v, out

def decode_activations(data, amap, dtype, shape, zp, se):
    n = int(np.prod(shape))
    vals = np.frombuffer(data, dtype=dtype)
    bits = np.unpackbits(np.frombuffer(amap, np.uint8), bitorder="little")
    check(len(bits) >= n and not bits[n:].any(), "activation map padding")
    out = np.full(n, zp, dtype=dtype)
    for start in range(0, n, se):
        present = bits[start:start + se].astype(bool)
        out[start:start + se][present] = vals[start:start + int(present.sum())]
    return out.reshape(shape)

def golden_virtual(d, m, files, sfx, dtype, zp):
    """The virtual tensor as the DPU reads it: each SE through its pointer into its tile."""
    table_f = files["se_table%s.bin" % sfx]
    table = np.frombuffer(open(os.path.join(d, table_f["name"]), "rb").read(), "<i4").reshape(table_f["shape"])
    Hv, Wv, C = files["input_map%s.bin" % sfx]["tensor"]
    se = C // table.shape[2]
    check(se == table_f["se_size"] == m["se"]["se_size"], "se_size in the manifest")
    bits = np.unpackbits(np.frombuffer(open(os.path.join(d, "input_map%s.bin" % sfx), "rb").read(), np.uint8),
                         bitorder="little")
    tiles = {t["tile"]: np.frombuffer(open(os.path.join(d, t["file"]), "rb").read(), dtype)
             for t in m["se"]["source_tiles"]}
    eb = np.dtype(dtype).itemsize
    v = np.full((Hv, Wv, C), zp, dtype)
    for (y, x, j), e in np.ndenumerate(table):
        e = int(e)
        check(e >> 29 == 0, "pointer bits [31:29]")
        tile, off = e & 0x1FF, (e >> 9) << 4
        check(tile in tiles, "BASE_PTR %d names a golden tile" % tile)
        base = ((y * Wv + x) * C + j * se)
        present = bits[base:base + se].astype(bool)
        slot = tiles[tile][off // eb:off // eb + se]
        v[y, x, j * se:(j + 1) * se][present] = slot[:int(present.sum())]  # packed at the start
    return v

def golden_weights(d, files, m, dtype):
    wf = files["weights.bin"]
    K, KY, KX, C = wf["shape"]
    data = np.frombuffer(open(os.path.join(d, "weights.bin"), "rb").read(), dtype)
    if not m["weights_sparse"]:
        return data.reshape(K, KY, KX, C)
    table = np.frombuffer(open(os.path.join(d, "weight_table.bin"), "rb").read(), "<u4").reshape(K, 4)
    wmap = np.frombuffer(open(os.path.join(d, "weight_map.bin"), "rb").read(), np.uint8)
    per = files["weight_map.bin"]["shape"][1]
    n = KY * KX * C
    zp = m["zero_points"]["weights"]
    w = np.full((K, n), zp, dtype)
    eb = np.dtype(dtype).itemsize
    for k in range(K):
        bits = np.unpackbits(wmap[table[k, 1]:table[k, 1] + per], bitorder="little")[:n].astype(bool)
        w[k][bits] = data[table[k, 0] // eb:table[k, 0] // eb + int(bits.sum())]
    return w.reshape(K, KY, KX, C)

ran = 0
for name in sorted(cases):
    op = cases[name]["op"]
    s, x, w, v, want = expected(name)
    d = "out/" + name
    got = np.load(d + "/output.npy")
    check(got.dtype == want.dtype and got.shape == want.shape,
          "%s: output %s %s, want %s %s" % (name, got.dtype, got.shape, want.dtype, want.shape))
    bad = np.count_nonzero(got.view(np.uint8) != want.view(np.uint8))
    check(bad == 0, "%s: output.npy differs from numpy at %d bytes" % (name, bad))
    check(len(np.unique(got)) > 8, "%s: output too uniform to test anything" % name)

    # Golden set: decode the source tiles through the tables; convolve again.
    m = json.load(open(d + "/manifest.json"))
    files = {f["name"]: f for f in m["files"]}
    for f in m["files"]:
        check(os.path.getsize(os.path.join(d, f["name"])) == f["bytes"], name + ": size of " + f["name"])
    check(m["se_table"] and m["se"]["op"] == op, name + ": manifest se")
    dtype = x.dtype
    zp = s["input"].get("zero_point", 0)
    src_tiles = m["se"]["source_tiles"]
    want_tiles = len(s["se"].get("source_rows_per_tile", [0]))
    check(len(src_tiles) == want_tiles, name + ": %d source tiles" % len(src_tiles))
    check(("input.bin" in files) == (want_tiles == 1), name + ": input.bin vs input_tile<i>.bin")
    for t in src_tiles:  # each tile holds its rows: dense, or sparse slots decoded with the source map
        raw = np.frombuffer(open(os.path.join(d, t["file"]), "rb").read(), dtype)
        rows = x[t["first_row"]:t["first_row"] + t["rows"]]
        if not m["input_sparse"]:
            check(np.array_equal(raw.view(np.uint8), rows.reshape(-1).view(np.uint8)), name + ": " + t["file"])
    wg = golden_weights(d, files, m, w.dtype)
    if op == "transposed":
        check(np.array_equal(wg.view(np.uint8), w[:, ::-1, ::-1, :].view(np.uint8)), name + ": flipped weights")
    else:
        check(np.array_equal(wg.view(np.uint8), w.view(np.uint8)), name + ": weights.bin")
    phases = m["se"].get("phases", [None])
    check((op == "dilate") == ("phases" in m["se"]), name + ": phases only for dilate")
    if op == "dilate":
        check(m["conv"]["dilation"] == s["se"]["dilation"] and m["conv"]["stride"] == s["stride"] and
              m["conv"]["pad"] == s["pad"] and [m["conv"]["out_h"], m["conv"]["out_w"]] == list(got.shape[:2]),
              name + ": manifest conv of the dilated convolution")
    rebuilt = np.zeros_like(got)
    for i, ph in enumerate(phases):
        sfx = "" if ph is None else "_phase%d" % i
        gv = golden_virtual(d, m, files, sfx, dtype, zp)
        if v is not None:
            check(np.array_equal(gv.view(np.uint8), v.view(np.uint8)), name + ": golden virtual tensor")
        conv_g = m["conv"] if ph is None else ph["conv"]
        check(list(gv.shape) == [conv_g["h"], conv_g["w"], conv_g["c"]], name + ": conv geometry")
        vc, wc = centred(s, gv, wg)
        acc = conv(vc, wc, conv_g["stride"], conv_g["pad"])
        b = np.load("specs/" + s["bias"]["npy"])
        out = ppe_float(acc, s, b) if s["input"]["dtype"] == "fp16" else ppe_int(acc, s, b)
        oy0, ox0 = (0, 0) if ph is None else (ph["out_y0"], ph["out_x0"])
        sy, sx = (1, 1) if ph is None else (ph["step_y"], ph["step_x"])
        rebuilt[oy0::sy, ox0::sx] = out
        # The output as the output unit wrote it.
        of = files["output%s.bin" % sfx]
        data = open(os.path.join(d, of["name"]), "rb").read()
        ozp = s["ppe"].get("out_zero_point", 0)
        if m["output_sparse"]:
            amap = open(os.path.join(d, "output_map%s.bin" % sfx), "rb").read()
            dec = decode_activations(data, amap, got.dtype, out.shape, ozp, of["se_size"])
        else:
            dec = np.frombuffer(data, got.dtype).reshape(out.shape)
        check(np.array_equal(dec.view(np.uint8), out.view(np.uint8)), name + ": " + of["name"])
    check(np.array_equal(rebuilt.view(np.uint8), got.view(np.uint8)),
          name + ": convolving the golden set does not give output.npy")

    # plan.json: the se section and its CMX share.
    p = json.load(open(d + "/plan.json"))
    plans = [ph["plan"] for ph in p["phases"]] if op == "dilate" else [p]
    if op == "dilate":
        check(p["se"]["op"] == "dilate" and len(p["phases"]) == len(phases) > 1, name + ": plan phases")
    for pl in plans:
        se = pl["se"]
        Hv, Wv, C = se["virtual"]
        check(se["table_bytes"] == 4 * Hv * Wv * C // se["se_size"], name + ": plan se table bytes")
        check(se["map_bytes"] == -(-(Hv * Wv * C) // 128) * 16, name + ": plan map bytes")
        check(se["source"] == list(x.shape), name + ": plan source shape")
        check(pl["input_se_size"] == se["se_size"], name + ": plan input se size")
        for t in pl["tiles"]:
            check(t["se_table_bytes"] > 0 and t["input_map_bytes"] > 0, name + ": tile se bytes")
            check(t["cmx_bytes"] == t["input_bytes"] + t["se_table_bytes"] + t["input_map_bytes"] +
                  t["weight_bytes"] + t["output_bytes"], name + ": tile cmx sum")
    ran += 1
check(ran == len(cases) >= 27, "ran %d cases" % ran)
ops = {c["op"] for c in cases.values()}
check(ops == {"upsample_nearest", "interpolate_nearest", "transposed", "pad", "roll", "dilate",
              "table"}, "ops covered")
print("numpy checks passed: %d specs" % ran)
EOF

# ---- malformed SE specs: exit 2, one stderr line naming the spec file and the field ----
"$PY" - <<'EOF'
import json
import numpy as np

good = json.load(open("specs/table_40_i8.json"))
for key in ("input", "weights", "bias"):
    good[key]["npy"] = "../specs/" + good[key]["npy"]
table = np.load("specs/table_40_i8_table.npy")
vmap = np.load("specs/table_40_i8_map.npy")

def write(name, edit, table=None, vmap=None):
    s = json.loads(json.dumps(good))
    s["se"]["table"] = "../specs/table_40_i8_table.npy"
    s["se"]["map"] = "../specs/table_40_i8_map.npy"
    if table is not None:
        np.save("bad/%s_table.npy" % name, table)
        s["se"]["table"] = "%s_table.npy" % name
    if vmap is not None:
        np.save("bad/%s_map.npy" % name, vmap)
        s["se"]["map"] = "%s_map.npy" % name
    edit(s)
    json.dump(s, open("bad/%s.json" % name, "w"))

t = table.copy(); t[1, 2, 0] = ((4096 >> 4) << 9) | 1  # beyond tile 1's two rows
write("ptr_outside", lambda s: None, table=t)
t = table.copy(); t[0, 3, 1] = (t[0, 3, 1] & ~0x1FF) | 2  # tile 2: the source has two
write("base_ptr", lambda s: None, table=t)
t = table.copy(); t[2, 0, 0] = t[2, 0, 0] | (1 << 30)
write("high_bits", lambda s: None, table=t)

# fp16 with se_size 16: 32-byte storage elements, so byte 16 of a tile is inside one.
good16 = json.load(open("specs/table_37_f16.json"))
for key in ("input", "weights", "bias"):
    good16[key]["npy"] = "../specs/" + good16[key]["npy"]
t = np.load("specs/table_37_f16_table.npy")
t[0, 0, 0] = (1 << 9) | 0
np.save("bad/misaligned_table.npy", t)
good16["se"]["table"] = "misaligned_table.npy"
good16["se"]["map"] = "../specs/table_37_f16_map.npy"
json.dump(good16, open("bad/misaligned.json", "w"))
write("map_shape", lambda s: None, vmap=vmap[:, :4])
m = vmap.copy(); m[1, 1, 3] = 2
write("map_value", lambda s: None, vmap=m)
m = vmap.copy(); m[1, 1, 3] = 1 - m[1, 1, 3]
write("map_partial", lambda s: None, vmap=m)
write("table_dtype", lambda s: None, table=table.astype(np.float32))
write("rows_sum", lambda s: s["se"].update(source_rows_per_tile=[2, 1]))
write("rows_tiles", lambda s: s["se"].update(source_rows_per_tile=[1, 1, 1, 1, 0, 1, 0]))
write("se_size_40", lambda s: s["se"].update(se_size=24))
write("op_field", lambda s: s.update(se={"op": "roll", "shift": [1, 1], "factor": [2, 2]}))
write("op_name", lambda s: s.update(se={"op": "upsample", "factor": [2, 2]}))
write("op_missing", lambda s: s.update(se={"factor": [2, 2]}))
write("op_required", lambda s: s.update(se={"op": "pad", "mode": "edge"}))
write("pad_mode", lambda s: s.update(se={"op": "pad", "pad": [1, 1, 1, 1], "mode": "wrap"}))
write("unknown", lambda s: s["se"].update(scale=[2, 2]))
write("out_pad", lambda s: s.update(se={"op": "transposed", "output_padding": [1, 0]}, stride=[1, 1]))
s37 = json.loads(json.dumps(good))
s37["target"] = "NPU37XX"
json.dump(dict(s37, se={"op": "upsample_nearest", "factor": [2, 2], "se_size": 48}),
          open("bad/se_size_37.json", "w"))
EOF
expect_error ptr_outside "se.table[14] (virtual pixel (1, 2) SE 0): DATA_PTR offset 4096 is outside the source rows held by tile 1"
expect_error base_ptr "se.table[7] (virtual pixel (0, 3) SE 1): BASE_PTR = 2 is beyond the source's tile count 2"
expect_error high_bits "se.table[20] (virtual pixel (2, 0) SE 0)"
expect_error high_bits "bits [31:29] are unused and must be 0"
expect_error misaligned "se.table[0] (virtual pixel (0, 0) SE 0): DATA_PTR offset"
expect_error misaligned "is not at a storage element of the source"
expect_error map_shape "se.map: 'bad/map_shape_map.npy' has shape [3, 4, 32]: needs [H', W', C] = [3, 5, 32]"
expect_error map_value "se.map: 'bad/map_value_map.npy' holds 2 at [1, 1, 3]: must be 0 or 1"
expect_error map_partial "se.map: the bits of virtual pixel (1, 1) SE 0 must be all 0 or what its slot"
expect_error table_dtype "se.table: 'bad/table_dtype_table.npy' holds <f4 (fp32); se.table (SE pointers) needs <i4 (i32)"
expect_error rows_sum "se.source_rows_per_tile: rows add up to 3, input.npy has H = 4"
expect_error rows_tiles "se.source_rows_per_tile: 7 parts: must be 1 to 6 (NPU40XX has 6 tiles)"
expect_error se_size_40 "se.se_size = 24 on NPU40XX: a storage-element size must be a multiple of 16"
expect_error se_size_37 "se.se_size = 48 on NPU37XX: this target needs a power-of-two storage-element size"
expect_error op_field "se.factor: not a field of se.op 'roll' (its fields: op, shift, se_size, source_rows_per_tile)"
expect_error op_name "se.op: must be one of upsample_nearest|interpolate_nearest|interpolate_bilinear|transposed|pad|roll|dilate, got 'upsample'"
expect_error op_missing "se: needs either op ("
expect_error op_required "se.pad: missing (required)"
expect_error pad_mode "se.mode: must be one of constant|edge|reflect|symmetric, got 'wrap'"
expect_error unknown "se.scale: unknown field"
expect_error out_pad "se.output_padding[0] = 1: must be in [0, 0] (below stride[0] = 1)"

echo "se_cli_test: all checks passed"
