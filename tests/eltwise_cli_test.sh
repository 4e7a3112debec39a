#!/bin/bash
# End-to-end test of eltwise SPEC.jsons through the dpuemu CLI on both targets: numpy writes
# specs (u8 / i8 add, sub, mult with zero points and the compiler's LIT registers, fp16 add /
# sub / mult, dense and sparse outputs, layers that the planner splits over tiles); `dpuemu run`
# runs them; numpy checks
#   - output.npy against the eltwise computed from its definition in int64 (the PPE's round half
#     to even) and, for fp16, from inputs whose sums and products are exact in fp32 (multiples of
#     1/8) with power-of-two scales, so float64 rounded to fp16 is the definition's result;
#   - the golden set from its manifest alone: input.bin / input2.bin are the inputs, the
#     PPE registers and elop multipliers are the spec's, output.bin (+ output_map.bin decoded per
#     output SE) is output.npy;
#   - plan.json: CUBOID_8x16 on every tile and workload, never SOK.
# Malformed specs (bf16, mismatched input2 dtype, input2 shape, weights on an eltwise) exit 2 with
# one stderr line naming the file and the rule.
#
# Usage: eltwise_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error
PY=/usr/bin/python3  # Debian's python, which has numpy
T="${TEST_TMPDIR:-$(mktemp -d)}/eltwise_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"

"$PY" - <<'EOF'
import json
import numpy as np

rng = np.random.default_rng(13)
cases = {}

def add(name, target, dt, shape, typ, sparse_out, lit=False):
    H, W, C = shape
    s = {"target": target, "op": "eltwise", "eltwise": {"type": typ},
         "output": {"sparse": sparse_out}}
    if dt in ("u8", "i8"):
        lo, hi = (0, 255) if dt == "u8" else (-128, 127)
        npdt = np.uint8 if dt == "u8" else np.int8
        x = rng.integers(lo, hi + 1, shape).astype(npdt)
        y = rng.integers(lo, hi + 1, shape).astype(npdt)
        zp1, zp2 = (3, 130) if dt == "u8" else (-5, 9)
        if lit:    # EltwiseAddWithDifferentScales' registers
            m1, m2, mult, shift = 25877, 5312, 19219, 29
        elif typ == "mult":
            m1, m2, mult, shift = 1, 1, 23000, 22
        else:
            m1, m2 = int(rng.integers(1000, 65536)), int(rng.integers(1000, 65536))
            mult, shift = int(rng.integers(16384, 65536)), 31
        ozp = 100 if dt == "u8" else -3
        x[rng.random(shape) < 0.3] = zp1
        y[rng.random(shape) < 0.3] = zp2
        s["input"] = {"npy": name + "_x.npy", "dtype": dt, "zero_point": zp1}
        s["input2"] = {"npy": name + "_y.npy", "dtype": dt, "zero_point": zp2}
        ppe = {"mult": mult, "shift": shift, "out_zero_point": ozp, "clamp": [lo + 2, hi - 2]}
        if typ != "mult":
            ppe["in1_mult"], ppe["in2_mult"] = m1, m2
        s["ppe"] = ppe
        s["output"]["dtype"] = dt
        cases[name] = {"int": True, "type": typ, "dt": dt, "zp1": zp1, "zp2": zp2, "m1": m1,
                       "m2": m2, "mult": mult, "shift": shift, "ozp": ozp, "lo": lo + 2, "hi": hi - 2}
    else:
        x = (rng.integers(-16, 17, shape) / 8).astype(np.float16)
        y = (rng.integers(-16, 17, shape) / 8).astype(np.float16)
        x[rng.random(shape) < 0.3] = 0
        s["input"] = {"npy": name + "_x.npy", "dtype": "fp16"}
        s["input2"] = {"npy": name + "_y.npy", "dtype": "fp16"}
        s["ppe"] = {"scale": 0.5, "clamp": [-1.5, 3]}
        s["output"]["dtype"] = "fp16"
        cases[name] = {"int": False, "type": typ, "scale": 0.5, "lo": -1.5, "hi": 3.0}
    np.save("specs/%s_x.npy" % name, x)
    np.save("specs/%s_y.npy" % name, y)
    json.dump(s, open("specs/%s.json" % name, "w"), indent=1)

for target, t in (("NPU37XX", "37"), ("NPU40XX", "40")):
    add("lit_" + t, target, "u8", (28, 28, 64), "add", False, lit=True)
    add("add_u8_" + t, target, "u8", (9, 7, 48), "add", True)
    add("sub_i8_" + t, target, "i8", (6, 11, 32), "sub", False)
    add("mult_u8_" + t, target, "u8", (5, 5, 16), "mult", True)
    add("add_f16_" + t, target, "fp16", (7, 6, 32), "add", True)
    add("sub_f16_" + t, target, "fp16", (3, 4, 16), "sub", False)
    add("mult_f16_" + t, target, "fp16", (4, 9, 48), "mult", False)
json.dump(cases, open("cases.json", "w"))

# Malformed.
np.save("bad/x.npy", np.zeros((2, 2, 16), np.uint8))
np.save("bad/x3.npy", np.zeros((2, 3, 16), np.uint8))
np.save("bad/xi8.npy", np.zeros((2, 2, 16), np.int8))
np.save("bad/xbf.npy", np.zeros((2, 2, 16), np.uint16))
base = {"target": "NPU40XX", "op": "eltwise", "input": {"npy": "x.npy", "dtype": "u8"},
        "input2": {"npy": "x.npy", "dtype": "u8"}, "output": {"dtype": "u8"}}
def bad(name, **kw):
    s = json.loads(json.dumps(base))
    s.update(kw)
    json.dump(s, open("bad/%s.json" % name, "w"))
bad("bf16", input={"npy": "xbf.npy", "dtype": "bf16"}, input2={"npy": "xbf.npy", "dtype": "bf16"},
    output={"dtype": "bf16"})
bad("mixed", input2={"npy": "xi8.npy", "dtype": "i8"})
bad("shape", input2={"npy": "x3.npy", "dtype": "u8"})
bad("weights", weights={"npy": "x.npy", "dtype": "i8"})
bad("mult_scaled", eltwise={"type": "mult"}, ppe={"in1_mult": 3})
bad("in1_mult", ppe={"in1_mult": 70000})
EOF

for spec in specs/*.json; do
  name="$(basename "$spec" .json)"
  "$DPUEMU" run "$spec" --out "out/$name" >/dev/null 2>err.txt || fail "$spec: $(cat err.txt)"
done

"$PY" - <<'EOF'
import json
import numpy as np

cases = json.load(open("cases.json"))

def rne_shift(v, s):  # v / 2^s rounded half to even, int64
    if s == 0:
        return v
    q = v >> s
    r = v - (q << s)
    half = 1 << (s - 1)
    return q + ((r > half) | ((r == half) & (q & 1 == 1)))

def expected(name, c):
    x = np.load("specs/%s_x.npy" % name)
    y = np.load("specs/%s_y.npy" % name)
    if c["int"]:
        a = x.astype(np.int64) - c["zp1"]
        b = y.astype(np.int64) - c["zp2"]
        acc = {"add": a * c["m1"] + b * c["m2"], "sub": a * c["m1"] - b * c["m2"],
               "mult": a * b}[c["type"]]
        v = rne_shift(acc * c["mult"], c["shift"]) + c["ozp"]
        return np.clip(v, c["lo"], c["hi"]).astype(x.dtype)
    a = x.astype(np.float64)
    b = y.astype(np.float64)
    acc = {"add": a + b, "sub": a - b, "mult": a * b}[c["type"]]
    # The float PPE adds the bias (0 here) before scaling: -0.0 becomes +0.0.
    return np.clip((acc + 0.0) * c["scale"], c["lo"], c["hi"]).astype(np.float16)

def decode_sparse(data, bits, zp, se):
    flat_bits = np.unpackbits(bits, bitorder="little")[: data.size].reshape(-1, se)
    vals = data.reshape(-1, se)
    out = np.full_like(vals, zp)
    for i in range(vals.shape[0]):
        present = flat_bits[i].astype(bool)
        out[i, present] = vals[i, : present.sum()]
    return out.reshape(data.shape)

for name, c in cases.items():
    d = "out/%s/" % name
    got = np.load(d + "output.npy")
    want = expected(name, c)
    if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(
            got.view(np.uint8), want.view(np.uint8)):
        bad = np.argwhere(got != want)
        raise SystemExit("%s: output.npy differs from the definition at %s: %s vs %s" % (
            name, bad[0], got[tuple(bad[0])], want[tuple(bad[0])]))
    m = json.load(open(d + "manifest.json"))
    assert m["op"] == "eltwise", name
    files = {f["name"]: f for f in m["files"]}
    def load(f):
        return np.fromfile(d + f, dtype={"u8": np.uint8, "i8": np.int8, "fp16": np.float16}[
            files[f].get("dtype", "u8")] if files[f].get("dtype") in ("u8", "i8", "fp16") else np.uint8)
    x = np.load("specs/%s_x.npy" % name)
    y = np.load("specs/%s_y.npy" % name)
    assert np.array_equal(load("input.bin"), x.reshape(-1).view(load("input.bin").dtype)), name
    assert np.array_equal(load("input2.bin"), y.reshape(-1).view(load("input2.bin").dtype)), name
    assert m["eltwise"]["type"] == c["type"], name
    if c["int"]:
        assert m["eltwise"]["in1_mult"] == c["m1"] and m["eltwise"]["in2_mult"] == c["m2"], name
        assert m["eltwise"]["input2_zero_point"] == c["zp2"], name
        r = m["ppe_registers"]
        assert (r["mult"], r["shift"]) == (c["mult"], c["shift"]), (name, r)
    out = load("output.bin").reshape(got.shape)
    if m["output_sparse"]:
        zp = m["zero_points"]["output"] if c["int"] else 0
        out = decode_sparse(out, np.fromfile(d + "output_map.bin", np.uint8), zp,
                            m["se_sizes"]["output"])
    assert np.array_equal(out.view(np.uint8), got.view(np.uint8)), name + ": golden output.bin"
    plan = json.load(open(d + "plan.json"))
    assert plan["split"] != "SOK", name
    modes = {t["mpe_mode"] for t in plan["tiles"]} | {w["mpe_mode"] for w in plan["workloads"]}
    assert modes == {"CUBOID_8x16"}, (name, modes)
print("eltwise cli: %d specs match" % len(cases))
EOF

expect_error bf16 "isNCEEltwiseSupported"
expect_error mixed "input2 dtype"
expect_error shape "input2"
expect_error weights "weights"
expect_error mult_scaled "must be 1"
expect_error in1_mult "in1_mult"
echo "PASS"
