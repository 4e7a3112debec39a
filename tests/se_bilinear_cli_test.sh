#!/bin/bash
# The CLI path of se.op interpolate_bilinear (hw/se_ops.h InterpolateBilinearAsZMConv): specs on
# both targets, u8 and fp16, every supported coordinate mode; `dpuemu run` writes output.npy and
# the golden set, and numpy checks
#   - output.npy against a bilinear resize on the dense source (per-axis weight matrices from the
#     ONNX coordinate transformation, clamped to the source), exactly where the box kernel's
#     1 / (KY * KX) is a power of two (the int PPE then divides exactly; fp16 sums of multiples of
#     1/8 are exact in fp32);
#   - the golden set: manifest se.op, the conv's kernel/stride, the SE table's size, the box
#     weights (1 on the diagonal channel for u8, fp16 1/(KY*KX) for fp16);
#   - SIMD vs --reference output files byte for byte on every spec (scale 3 included).
# Malformed bilinear specs exit 2 with one line naming the field.
#
# Usage: se_bilinear_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error
PY=/usr/bin/python3
T="${TEST_TMPDIR:-$(mktemp -d)}/se_bilinear_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"

"$PY" - <<'EOF'
import json
import numpy as np

rng = np.random.default_rng(5)
cases = {}

def add(name, target, dt, src, size, mode, sparse_source=False, sparse_out=False, exact=True,
        where="specs"):
    H, W, C = src
    s = {"target": target, "se": {"op": "interpolate_bilinear", "size": list(size), "mode": mode},
         "sparsity": {"input": "sparse" if sparse_source else "dense"}}
    if dt == "u8":
        x = rng.integers(0, 256, (H, W, C)).astype(np.uint8)
        x[rng.random(x.shape) < 0.3] = 20
        s["input"] = {"npy": name + "_x.npy", "dtype": "u8", "zero_point": 20}
        # mult 16384, shift 14: the interpolate's scale 1.0 (in_scale / out_scale)
        s["ppe"] = {"mult": [16384] * C, "shift": [14] * C, "out_zero_point": 20}
        s["output"] = {"dtype": "u8", "sparse": sparse_out}
    else:
        x = (rng.integers(-32, 33, (H, W, C)) / 8).astype(np.float16)
        x[rng.random(x.shape) < 0.3] = 0
        s["input"] = {"npy": name + "_x.npy", "dtype": "fp16"}
        s["output"] = {"dtype": "fp16", "sparse": sparse_out}
    np.save("%s/%s_x.npy" % (where, name), x)
    json.dump(s, open("%s/%s.json" % (where, name), "w"), indent=1)
    cases[name] = {"dt": dt, "size": list(size), "mode": mode, "exact": exact}

T37, T40 = "NPU37XX", "NPU40XX"
add("bl_37_u8_asym", T37, "u8", (3, 4, 16), (6, 8), "asymmetric", sparse_out=True)
add("bl_37_f16_half", T37, "fp16", (3, 3, 32), (6, 6), "half_pixel", sparse_source=True)
add("bl_40_u8_pyt", T40, "u8", (4, 2, 32), (8, 4), "pytorch_half_pixel", sparse_source=True)
add("bl_40_f16_ac", T40, "fp16", (3, 5, 16), (5, 9), "align_corners", sparse_out=True)
add("bl_40_f16_asym4", T40, "fp16", (2, 3, 16), (8, 3), "asymmetric")
add("bl_37_u8_half3", T37, "u8", (3, 3, 16), (9, 9), "half_pixel", exact=False)
json.dump(cases, open("cases.json", "w"))

# Malformed specs.
add("scale", T40, "u8", (3, 3, 16), (5, 6), "asymmetric", where="bad")
add("tf", T40, "u8", (3, 3, 16), (6, 6), "tf_half_pixel_for_nn", where="bad")
add("weights", T40, "fp16", (3, 3, 16), (6, 6), "asymmetric", where="bad")
s = json.load(open("bad/weights.json"))
s["weights"] = {"npy": "weights_x.npy", "dtype": "fp16"}
json.dump(s, open("bad/weights.json", "w"))
add("stride", T40, "fp16", (3, 3, 16), (6, 6), "asymmetric", where="bad")
s = json.load(open("bad/stride.json"))
s["stride"] = [2, 2]
json.dump(s, open("bad/stride.json", "w"))
EOF

"$DPUEMU" run specs --out out >run.txt 2>run.err || fail "sweep: $(cat run.err)"
n=$(ls specs/*.json | wc -l)
grep -q "$n specs: $n ok, 0 failed" run.txt || fail "sweep summary: $(cat run.txt)"
for s in $(ls specs/*.json | xargs -n1 basename | sed 's/\.json$//'); do
  "$DPUEMU" run "specs/$s.json" --out "ref/$s" --reference --threads 1 >/dev/null || fail "reference run of $s"
  for f in output.npy output.bin se_table.bin weights.bin; do
    [ -f "out/$s/$f" ] || fail "$s: no $f"
    cmp -s "out/$s/$f" "ref/$s/$f" || fail "$s: --reference $f differs"
  done
done

"$PY" - <<'EOF' || fail "numpy checks"
import json
import sys
import numpy as np

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def axis_matrix(n_in, n_out, mode):
    A = np.zeros((n_out, n_in))
    for o in range(n_out):
        if n_in == n_out:
            r = float(o)
        elif mode == "asymmetric":
            r = o * n_in / n_out
        elif mode == "align_corners":
            r = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            r = (o + 0.5) * n_in / n_out - 0.5
        r = min(max(r, 0.0), n_in - 1)
        i0 = int(np.floor(r))
        i1 = min(i0 + 1, n_in - 1)
        f = r - i0
        A[o, i0] += 1 - f
        A[o, i1] += f
    return A

cases = json.load(open("cases.json"))
for name, c in cases.items():
    s = json.load(open("specs/%s.json" % name))
    x = np.load("specs/%s_x.npy" % name)
    got = np.load("out/%s/output.npy" % name)
    H, W, C = x.shape
    oh, ow = c["size"]
    check(got.shape == (oh, ow, C), name + ": output shape %s" % (got.shape,))
    Ay = axis_matrix(H, oh, c["mode"])
    Ax = axis_matrix(W, ow, c["mode"])
    xv = x.astype(np.float64) - (20 if c["dt"] == "u8" else 0)
    v = np.einsum("oh,hwc,pw->opc", Ay, xv, Ax)
    if c["dt"] == "u8":
        want = np.clip(np.round(v) + 20, 0, 255).astype(np.uint8)  # np.round: half to even
    else:
        want = v.astype(np.float16)
    if c["exact"]:
        check(np.array_equal(got.view(np.uint8), want.view(np.uint8)),
              name + ": output.npy differs from the bilinear resize, max |d| = %g" %
              np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    else:  # 1/9 as mult/shift: within one step of the exact resize
        check(np.max(np.abs(got.astype(np.int64) - want.astype(np.int64))) <= 1,
              name + ": output.npy more than 1 from the bilinear resize")
    m = json.load(open("out/%s/manifest.json" % name))
    check(m["se"]["op"] == "interpolate_bilinear", name + ": manifest se.op")
    conv = m["conv"]
    def kernel(n_in, n_out):
        if n_in == n_out:
            return 1
        sc = (n_out - 1) // (n_in - 1) if c["mode"] == "align_corners" else n_out // n_in
        return sc if c["mode"] in ("asymmetric", "align_corners") or sc % 2 else 2 * sc
    check([conv["ky"], conv["kx"], conv["k"]] == [kernel(H, oh), kernel(W, ow), C],
          name + ": manifest conv kernel %s" % conv)
    table = np.fromfile("out/%s/se_table.bin" % name, np.int32)
    vh, vw = m["se"]["virtual"][:2]
    check(table.size * m["se"]["se_size"] == vh * vw * C, name + ": se_table.bin size")
EOF

expect_error scale "whole number"
expect_error tf "se.mode"
expect_error weights "weights: not given with se.op interpolate_bilinear"
expect_error stride "stride: not given with se.op interpolate_bilinear"
echo "PASS"
