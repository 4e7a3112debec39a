#!/bin/bash
# End-to-end test of "op": "dwconv" in SPEC.json: numpy writes depthwise layers (int8 on NPU40XX
# and NPU37XX, fp16 on NPU37XX), `dpuemu plan` and `dpuemu run` process them, and numpy checks
# output.npy against its own depthwise convolution and PPE (int64, round half to even), the
# golden weights.bin against the compiler's depthwise layout (each channel's KY*KX weights padded
# with the zero point to 16 elements, alignDepthWiseWeightsTensor), weight_table.bin's pointers
# (one set apart, getWeightPtrStep) and requantisation words, and the plan's depthwise workload
# channels (16/32/64) and MPE mode (CUBOID_16x16). Malformed dwconv specs exit 2 naming the rule.
#
# Usage: dwconv_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error
PY=/usr/bin/python3
T="${TEST_TMPDIR:-$(mktemp -d)}/dwconv_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"

"$PY" - <<'EOF'
import json
import numpy as np

rng = np.random.default_rng(13)

def int_layer(name, target, h, w, c, k, stride, pad, sparse):
    x = (20 + rng.integers(-9, 10, (h, w, c))).astype(np.uint8)
    wt = (-3 + rng.integers(-9, 10, (c, k, k, 1))).astype(np.int8)
    b = rng.integers(-300, 300, c).astype(np.int32)
    np.save(f"specs/x_{name}.npy", x)
    np.save(f"specs/w_{name}.npy", wt)
    np.save(f"specs/b_{name}.npy", b)
    json.dump({
        "op": "dwconv",
        "target": target,
        "input": {"npy": f"x_{name}.npy", "dtype": "u8", "zero_point": 20},
        "weights": {"npy": f"w_{name}.npy", "dtype": "i8", "zero_point": -3},
        "bias": {"npy": f"b_{name}.npy"},
        "stride": stride,
        "pad": pad,
        # mult 1 with small shifts makes many exact halves: the rounding mode shows
        "ppe": {"mult": [2500 + i if i % 2 else 1 for i in range(c)],
                "shift": [13 if i % 2 else 1 + i % 3 for i in range(c)],
                "out_zero_point": 110, "clamp": [0, 250]},
        "output": {"dtype": "u8", "sparse": sparse},
    }, open(f"specs/{name}.json", "w"), indent=1)

int_layer("i8_40", "NPU40XX", 9, 7, 96, 3, [2, 1], [1, 1, 1, 0], True)
int_layer("i8_37", "NPU37XX", 8, 8, 144, 5, [1, 2], [2, 1, 2, 2], False)

# fp16: k/32 values and power-of-two scales keep every sum exact in fp32.
c = 48
xf = (rng.integers(-64, 65, (6, 6, c)) / 32).astype(np.float16)
wf = (rng.integers(-64, 65, (c, 3, 3, 1)) / 32).astype(np.float16)
bf = (rng.integers(-16, 17, c) / 8).astype(np.float32)
np.save("specs/x_f16.npy", xf)
np.save("specs/w_f16.npy", wf)
np.save("specs/b_f16.npy", bf)
json.dump({
    "op": "dwconv",
    "target": "NPU37XX",
    "input": {"npy": "x_f16.npy", "dtype": "fp16"},
    "weights": {"npy": "w_f16.npy", "dtype": "fp16"},
    "bias": {"npy": "b_f16.npy"},
    "pad": [1, 1, 1, 1],
    "ppe": {"scale": [0.5 if i % 2 else 0.25 for i in range(c)], "clamp": [-4, 4]},
    "output": {"dtype": "fp16", "sparse": True},
}, open("specs/f16.json", "w"), indent=1)

# Malformed: ZMConv-shaped weights; sparse weights; sparse input.
s = json.load(open("specs/i8_40.json"))
np.save("bad/w_conv.npy", np.zeros((96, 3, 3, 96), np.int8))
for f in ("x_i8_40.npy", "b_i8_40.npy"):
    np.save("bad/" + f, np.load("specs/" + f))
np.save("bad/w_i8_40.npy", np.load("specs/w_i8_40.npy"))
b = dict(s); b["weights"] = dict(s["weights"], npy="w_conv.npy")
json.dump(b, open("bad/conv_weights.json", "w"))
b = dict(s); b["sparsity"] = {"weights": "sparse"}
json.dump(b, open("bad/sparse_weights.json", "w"))
b = dict(s); b["sparsity"] = {"input": "sparse"}
json.dump(b, open("bad/sparse_input.json", "w"))
EOF

for name in i8_40 i8_37 f16; do
  "$DPUEMU" plan --json "specs/$name.json" >"plan_$name.json" || fail "plan $name exited $?"
  "$DPUEMU" run "specs/$name.json" --out "out_$name" >/dev/null || fail "run $name exited $?"
done

"$PY" - <<'EOF'
import json
import numpy as np

def fail(msg):
    raise SystemExit("FAIL: " + msg)

def dwconv(x, w, stride, pad):
    h, wd, c = x.shape
    ky, kx = w.shape[1], w.shape[2]
    pt, pb, pl, pr = pad
    xp = np.zeros((h + pt + pb, wd + pl + pr, c), x.dtype)
    xp[pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - ky) // stride[0] + 1
    ow = (wd + pl + pr - kx) // stride[1] + 1
    acc = np.zeros((oh, ow, c), x.dtype)
    for i in range(ky):
        for j in range(kx):
            acc += xp[i:i + stride[0] * (oh - 1) + 1:stride[0],
                      j:j + stride[1] * (ow - 1) + 1:stride[1]] * w[:, i, j, 0]
    return acc

def round_shift_even(v, s):
    out = np.empty_like(v)
    for idx, (vv, ss) in enumerate(zip(v.ravel(), np.broadcast_to(s, v.shape).ravel())):
        ss = int(ss); vv = int(vv)
        if ss == 0:
            out.flat[idx] = vv; continue
        q = vv >> ss; r = vv - (q << ss); half = 1 << (ss - 1)
        out.flat[idx] = q + 1 if (r > half or (r == half and q & 1)) else q
    return out

for name in ("i8_40", "i8_37"):
    s = json.load(open(f"specs/{name}.json"))
    x = np.load(f"specs/x_{name}.npy").astype(np.int64) - 20
    w = np.load(f"specs/w_{name}.npy").astype(np.int64) + 3
    b = np.load(f"specs/b_{name}.npy").astype(np.int64)
    mult = np.array(s["ppe"]["mult"], np.int64); shift = np.array(s["ppe"]["shift"], np.int64)
    acc = dwconv(x, w, s["stride"], s["pad"])
    v = round_shift_even((acc + b) * mult, shift) + 110
    want = np.clip(v, 0, 250).astype(np.uint8)
    got = np.load(f"out_{name}/output.npy")
    if got.shape != want.shape or not np.array_equal(got, want):
        fail(f"{name}: output.npy differs from numpy's depthwise convolution "
             f"({int((got != want).sum()) if got.shape == want.shape else got.shape} elements)")
    # Golden weights: each channel's taps then the zero point up to 16-element sets.
    c, ky, kx, _ = np.load(f"specs/w_{name}.npy").shape
    taps = ky * kx; set_el = -(-taps // 16) * 16
    wraw = np.load(f"specs/w_{name}.npy").reshape(c, taps)
    want_w = np.full((c, set_el), -3, np.int8); want_w[:, :taps] = wraw
    got_w = np.fromfile(f"out_{name}/weights.bin", np.int8)
    if not np.array_equal(got_w, want_w.ravel()):
        fail(f"{name}: weights.bin is not the compiler's depthwise layout")
    table = np.fromfile(f"out_{name}/weight_table.bin", np.uint32).reshape(c, 4)
    if not np.array_equal(table[:, 0], np.arange(c) * set_el):
        fail(f"{name}: weight pointers {table[:4, 0]} are not one {set_el}-byte set apart")
    if not (table[:, 1] == 0xFFFFFF).all():
        fail(f"{name}: sparsity pointers are not dense")
    if not np.array_equal(table[:, 2], (mult << 16) | (shift << 8)):
        fail(f"{name}: scale words differ")
    if not np.array_equal(table[:, 3].astype(np.int32), b.astype(np.int32)):
        fail(f"{name}: bias words differ")
    manifest = json.load(open(f"out_{name}/manifest.json"))
    if manifest["op"] != "dwconv":
        fail(f"{name}: manifest op {manifest['op']}")
    wfile = [f for f in manifest["files"] if f["name"] == "weights.bin"][0]
    if wfile["shape"] != [c, set_el]:
        fail(f"{name}: weights.bin shape {wfile['shape']} in the manifest")
    # The plan: depthwise workloads of 16, 32 or 64 channels, CUBOID_16x16.
    plan = json.load(open(f"plan_{name}.json"))
    for wl in plan["workloads"]:
        kc = wl["k"][1] - wl["k"][0] if "k" in wl else wl["k_end"] - wl["k_begin"]
        if kc not in (16, 32, 64):
            fail(f"{name}: a workload of {kc} channels")
        if wl["mpe_mode"] != "CUBOID_16x16":
            fail(f"{name}: workload MPE mode {wl['mpe_mode']}")

s = json.load(open("specs/f16.json"))
x = np.load("specs/x_f16.npy").astype(np.float64)
w = np.load("specs/w_f16.npy").astype(np.float64)
b = np.load("specs/b_f16.npy").astype(np.float64)
scale = np.array(s["ppe"]["scale"])
want = np.clip(dwconv(x, w, [1, 1], s["pad"]) * scale + b, -4, 4).astype(np.float16)
got = np.load("out_f16/output.npy")
if got.shape != want.shape or not np.array_equal(got.view(np.uint16), want.view(np.uint16)):
    fail("f16: output.npy differs from numpy's depthwise convolution")
print("numpy checks passed")
EOF

expect_error conv_weights "needs [C, KY, KX, 1]"
expect_error sparse_weights "NCEDepthConvolutionOp::sparsitySupport"
expect_error sparse_input "NCEDepthConvolutionOp::sparsitySupport"
echo "PASS"
