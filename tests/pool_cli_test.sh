#!/bin/bash
# SPEC.json with op maxpool / avgpool through the dpuemu CLI on both targets, int8 and fp16, dense
# and sparse output: numpy writes the specs, `dpuemu run` runs them (and again on the reference
# DPU, which must agree byte for byte), and numpy checks
#   - output.npy against pools computed on dense arrays: max over the window's inside pixels;
#     the integer mean as the DPU forms it (sum of the stored values, padding reading the input
#     zero point, times mult / 2^shift from approximate(15, 1 / (KY * KX)) re-derived here with
#     math.frexp, rounded half to even, + out_zp, clamped); the fp16 mean from values whose sums
#     and scaled sums are exact, so float64 rounded to fp16 is the result;
#   - the golden manifest's op and PPE registers, and plan.json's MPE mode (CUBOID_16x16).
# Malformed pool specs exit 2 with one line naming the file and the rule.
#
# Usage: pool_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error
PY=/usr/bin/python3
T="${TEST_TMPDIR:-$(mktemp -d)}/pool_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"

"$PY" - <<'EOF2'
import json
import numpy as np

rng = np.random.default_rng(13)
cases = {}

def add(name, op, target, dt, shape, kernel, stride, pad, sparse_out=False, dir="specs"):
    H, W, C = shape
    s = {"op": op, "target": target, "kernel": list(kernel), "stride": list(stride),
         "pad": list(pad)}
    if dt == "int8":
        x = rng.integers(0, 256, (H, W, C)).astype(np.uint8)
        zp = 20
        x[rng.random(x.shape) < 0.3] = zp
        s["input"] = {"npy": name + "_x.npy", "dtype": "u8", "zero_point": zp}
        s["ppe"] = {"out_zero_point": zp if op == "maxpool" else 7, "clamp": [3, 240]}
        s["output"] = {"dtype": "u8", "sparse": sparse_out}
    else:
        x = (rng.integers(-64, 65, (H, W, C)) / 8).astype(np.float16)
        x[rng.random(x.shape) < 0.3] = 0
        s["input"] = {"npy": name + "_x.npy", "dtype": "fp16"}
        if op == "avgpool":
            s["ppe"] = {"clamp": [-6, 6]}
        s["output"] = {"dtype": "fp16", "sparse": sparse_out}
    np.save("%s/%s_x.npy" % (dir, name), x)
    json.dump(s, open("%s/%s.json" % (dir, name), "w"), indent=1)
    cases[name] = s

for t, tn in (("NPU37XX", "37"), ("NPU40XX", "40")):
    add("mp_%s_i8" % tn, "maxpool", t, "int8", (9, 11, 32), (3, 3), (2, 2), (1, 1, 1, 1), sparse_out=True)
    add("mp_%s_f16" % tn, "maxpool", t, "fp16", (8, 7, 16), (2, 3), (1, 2), (1, 0, 1, 1))
    add("ap_%s_i8" % tn, "avgpool", t, "int8", (7, 9, 48), (3, 3), (1, 1), (1, 1, 1, 1))
    add("ap_%s_f16" % tn, "avgpool", t, "fp16", (8, 8, 32), (2, 2), (2, 2), (0, 0, 0, 0), sparse_out=True)
    add("gap_%s_i8" % tn, "avgpool", t, "int8", (5, 5, 64), (5, 5), (1, 1), (0, 0, 0, 0))
json.dump(cases, open("cases.json", "w"), indent=1)

# Malformed: each must be refused with its rule.
def bad(name, op, dt, **kw):
    add(name, op, "NPU40XX", dt, (6, 6, 16), (3, 3), (1, 1), (1, 1, 1, 1), dir="bad")
    s = json.load(open("bad/%s.json" % name))
    for k, v in kw.items():
        if isinstance(v, dict) and k in s:
            s[k].update(v)
        else:
            s[k] = v
    json.dump(s, open("bad/%s.json" % name, "w"))
bad("mp_zp", "maxpool", "int8", ppe={"out_zero_point": 21})
bad("mp_out", "maxpool", "int8", output={"dtype": "i8"})
bad("ap_scale", "avgpool", "fp16", ppe={"scale": [0.5] * 16})
bad("ap_mult", "avgpool", "int8", ppe={"mult": [3] * 16})
bad("mp_weights", "maxpool", "int8", weights={"npy": "x.npy", "dtype": "i8"})
bad("ap_nokernel", "avgpool", "int8")
s = json.load(open("bad/ap_nokernel.json")); del s["kernel"]; json.dump(s, open("bad/ap_nokernel.json", "w"))
bad("ap_sparse_in", "avgpool", "int8", sparsity={"input": "sparse"})
EOF2

expect_error mp_zp "must equal the input zero_point"
expect_error mp_out "maxpool writes the input's type"
expect_error ap_scale "its PPE scale follows from the kernel"
expect_error ap_mult "mult"
expect_error mp_weights "weights"
expect_error ap_nokernel "kernel"
expect_error ap_sparse_in "sparse output only"

"$DPUEMU" run specs --out out >run.txt 2>run.err || fail "sweep: $(cat run.err)"
n=$(ls specs/*.json | wc -l)
grep -q "$n specs: $n ok, 0 failed" run.txt || fail "sweep summary: $(cat run.txt)"
for s in mp_37_i8 ap_40_i8 ap_37_f16 mp_40_f16; do
  "$DPUEMU" run "specs/$s.json" --out "ref/$s" --reference --threads 1 >/dev/null || fail "reference run of $s"
  cmp -s "out/$s/output.npy" "ref/$s/output.npy" || fail "$s: --reference output.npy differs"
done

"$PY" - <<'EOF2' || fail "numpy checks"
import json, math, os, sys
import numpy as np

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def windows(x, s):
    H, W, C = x.shape
    KY, KX = s["kernel"]
    SY, SX = s["stride"]
    T, B, L, R = s["pad"]
    OH, OW = (H + T + B - KY) // SY + 1, (W + L + R - KX) // SX + 1
    for oy in range(OH):
        for ox in range(OW):
            taps = [(oy * SY - T + ky, ox * SX - L + kx) for ky in range(KY) for kx in range(KX)]
            yield oy, ox, taps
    return

def approx15(target):  # the compiler's approximate(15, target)
    m, e = math.frexp(target)
    return int(m * 32768), 15 - e

cases = json.load(open("cases.json"))
for name, s in cases.items():
    x = np.load("specs/%s_x.npy" % name)
    out = np.load("out/%s/output.npy" % name)
    H, W, C = x.shape
    KY, KX = s["kernel"]
    want = np.zeros(out.shape, np.float64)
    for oy, ox, taps in windows(x, s):
        inside = [(y, xx) for y, xx in taps if 0 <= y < H and 0 <= xx < W]
        vals = np.array([x[y, xx].astype(np.float64) for y, xx in inside])
        if s["op"] == "maxpool":
            v = vals.max(axis=0)
            if x.dtype == np.uint8:
                v = np.clip(v, *s["ppe"]["clamp"])
        elif x.dtype == np.uint8:
            zp = s["input"]["zero_point"]
            acc = vals.sum(axis=0).astype(np.int64) + (len(taps) - len(inside)) * zp
            mult, shift = approx15(1.0 / (KY * KX))
            v = acc * mult
            q = v >> shift
            r = v - (q << shift)
            half = 1 << (shift - 1)
            q = q + ((r > half) | ((r == half) & (q & 1 == 1)))
            v = np.clip(q + s["ppe"]["out_zero_point"], *s["ppe"]["clamp"])
        else:
            v = np.clip(vals.sum(axis=0) / (KY * KX), *s["ppe"]["clamp"])
        want[oy, ox] = v
    if x.dtype == np.uint8:
        check(out.dtype == np.uint8, name + " dtype")
        check(np.array_equal(out.astype(np.int64), want.astype(np.int64)),
              "%s: output differs from the textbook pool at %s" % (name, np.argwhere(out != want)[:3]))
    else:
        check(out.dtype == np.float16, name + " dtype")
        check(np.array_equal(out, want.astype(np.float16)), name + ": fp16 output differs")
    m = json.load(open("out/%s/manifest.json" % name))
    mans = m if "op" in m else None
    txt = json.dumps(m)
    check('"op": "%s"' % s["op"] in txt, name + ": manifest op")
    regs = None
    def find(o):
        global regs
        if isinstance(o, dict):
            if "ppe_registers" in o:
                regs = o["ppe_registers"]
            for v in o.values():
                find(v)
        elif isinstance(o, list):
            for v in o:
                find(v)
    find(m)
    check(regs is not None, name + ": manifest has ppe_registers")
    if s["op"] == "maxpool":
        check(regs.get("mult", 1) == 1 and regs.get("shift", 0) == 0 and regs.get("scale", 1) == 1,
              name + ": maxpool registers %s" % regs)
    elif x.dtype == np.uint8:
        check((regs["mult"], regs["shift"]) == approx15(1.0 / (KY * KX)), name + ": avgpool registers %s" % regs)
    else:
        check(regs["scale"] == float(np.float32(1.0 / (KY * KX))), name + ": avgpool scale %s" % regs)
    plan = json.dumps(json.load(open("out/%s/plan.json" % name)))
    check("CUBOID_16x16" in plan and "CUBOID_8x16" not in plan and "CUBOID_4x16" not in plan,
          name + ": pools run CUBOID_16x16")
print("pool cli checks ok: %d specs" % len(cases))
EOF2
echo PASS
