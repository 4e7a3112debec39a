#!/bin/bash
# The CLI path of the compressed convolution (C = 3, 4): SPEC.json with an [H, W, 3] or [H, W, 4]
# input on both targets, u8 and fp16, split over tiles by the planner; `dpuemu run` writes
# output.npy (checked against a numpy convolution: int64 sums with the PPE's round half to even;
# fp16 from multiples of 1/8, exact in fp32, with a power-of-two scale) and the golden set
# (manifest compressed_conv, input.bin 4 channels per pixel, weights.bin sets strided to 16
# elements), SIMD vs --reference byte for byte. Input sparsity is refused with the rule.
#
# Usage: compress_conv_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error
PY=/usr/bin/python3
T="${TEST_TMPDIR:-$(mktemp -d)}/compress_conv_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"

"$PY" - <<'EOF'
import json
import numpy as np

rng = np.random.default_rng(9)
cases = {}

def add(name, target, dt, src, k, kernel, stride, pad, sparse_out=False, where="specs", extra=None):
    H, W, C = src
    KY, KX = kernel
    s = {"target": target, "stride": list(stride), "pad": list(pad)}
    if dt == "u8":
        x = rng.integers(0, 256, (H, W, C)).astype(np.uint8)
        w = rng.integers(-20, 20, (k, KY, KX, C)).astype(np.int8)
        s["input"] = {"npy": name + "_x.npy", "dtype": "u8", "zero_point": 12}
        s["weights"] = {"npy": name + "_w.npy", "dtype": "i8", "zero_point": 1}
        s["ppe"] = {"mult": [1] * k, "shift": [6] * k, "out_zero_point": 3}
        s["output"] = {"dtype": "u8", "sparse": sparse_out}
    else:
        x = (rng.integers(-16, 17, (H, W, C)) / 8).astype(np.float16)
        w = (rng.integers(-16, 17, (k, KY, KX, C)) / 8).astype(np.float16)
        s["input"] = {"npy": name + "_x.npy", "dtype": "fp16"}
        s["weights"] = {"npy": name + "_w.npy", "dtype": "fp16"}
        s["ppe"] = {"scale": [0.25] * k}
        s["output"] = {"dtype": "fp16", "sparse": sparse_out}
    if extra:
        s.update(extra)
    np.save("%s/%s_x.npy" % (where, name), x)
    np.save("%s/%s_w.npy" % (where, name), w)
    json.dump(s, open("%s/%s.json" % (where, name), "w"), indent=1)
    cases[name] = {"dt": dt, "stride": list(stride), "pad": list(pad)}

add("rgb_40_u8", "NPU40XX", "u8", (13, 12, 3), 32, (7, 7), (2, 2), (3, 3, 3, 3), sparse_out=True)
add("rgb_37_f16", "NPU37XX", "fp16", (9, 8, 3), 16, (3, 3), (1, 1), (1, 1, 1, 1))
add("rgba_37_u8", "NPU37XX", "u8", (8, 9, 4), 48, (3, 3), (2, 1), (1, 0, 1, 1))
add("rgba_40_f16", "NPU40XX", "fp16", (10, 7, 4), 32, (5, 5), (1, 2), (2, 2, 2, 2), sparse_out=True)
json.dump(cases, open("cases.json", "w"))
add("sparse_in", "NPU40XX", "u8", (8, 8, 3), 16, (3, 3), (1, 1), (1, 1, 1, 1), where="bad",
    extra={"sparsity": {"input": "sparse"}})
EOF

"$DPUEMU" run specs --out out >run.txt 2>run.err || fail "sweep: $(cat run.err)"
n=$(ls specs/*.json | wc -l)
grep -q "$n specs: $n ok, 0 failed" run.txt || fail "sweep summary: $(cat run.txt)"
for s in $(ls specs/*.json | xargs -n1 basename | sed 's/\.json$//'); do
  "$DPUEMU" run "specs/$s.json" --out "ref/$s" --reference --threads 1 >/dev/null || fail "reference run of $s"
  for f in output.npy output.bin weights.bin weight_table.bin; do
    [ -f "out/$s/$f" ] || fail "$s: no $f"
    cmp -s "out/$s/$f" "ref/$s/$f" || fail "$s: --reference $f differs"
  done
done

"$PY" - <<'EOF' || fail "numpy checks"
import json
import os
import sys
import numpy as np

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def conv(x, w, stride, pad):
    H, W, C = x.shape
    K, KY, KX, _ = w.shape
    xp = np.pad(x, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    OH = (H + pad[0] + pad[1] - KY) // stride[0] + 1
    OW = (W + pad[2] + pad[3] - KX) // stride[1] + 1
    out = np.zeros((OH, OW, K), x.dtype)
    for oy in range(OH):
        for ox in range(OW):
            p = xp[oy * stride[0]:oy * stride[0] + KY, ox * stride[1]:ox * stride[1] + KX, :]
            out[oy, ox] = np.tensordot(w, p, axes=([1, 2, 3], [0, 1, 2]))
    return out

cases = json.load(open("cases.json"))
for name, c in cases.items():
    x = np.load("specs/%s_x.npy" % name)
    w = np.load("specs/%s_w.npy" % name)
    got = np.load("out/%s/output.npy" % name)
    if c["dt"] == "u8":
        acc = conv(x.astype(np.int64) - 12, w.astype(np.int64) - 1, c["stride"], c["pad"])
        q = acc >> 6
        r = acc - (q << 6)
        q = q + ((r > 32) | ((r == 32) & ((q & 1) == 1)))
        want = np.clip(q + 3, 0, 255).astype(np.uint8)
    else:
        want = (conv(x.astype(np.float64), w.astype(np.float64), c["stride"], c["pad"]) * 0.25).astype(np.float16)
    check(got.shape == want.shape, name + ": shape %s vs %s" % (got.shape, want.shape))
    check(np.array_equal(got.view(np.uint8), want.view(np.uint8)), name + ": output.npy differs")
    m = json.load(open("out/%s/manifest.json" % name))
    cc = m["compressed_conv"]
    K, KY, KX, C = w.shape
    eb = 1 if c["dt"] == "u8" else 2
    check(cc["input_channels"] == 4 and cc["cm_sp_pattern"] == 15, name + ": manifest compressed_conv")
    check(cc["weight_set_bytes"] == -(-(-(-KY * KX * 4 // 16) * 16 * eb) // 16) * 16, name + ": weight set bytes")
    check(os.path.getsize("out/%s/input.bin" % name) == x.shape[0] * x.shape[1] * 4 * eb, name + ": input.bin")
    if not m["weights_sparse"]:
        check(os.path.getsize("out/%s/weights.bin" % name) == K * cc["weight_set_bytes"], name + ": weights.bin")
EOF

expect_error sparse_in "NCECompressConvolutionOp::sparsitySupport"
echo "PASS"
