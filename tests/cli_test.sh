#!/bin/bash
# End-to-end test of the dpuemu CLI (runtime/cli.cc): numpy writes an int8 and an fp16 layer spec,
# `dpuemu plan` and `dpuemu run` process them, and numpy checks the results independently: the
# output against its own convolution and PPE (int64 math, round half to even), the golden set by
# decoding every .bin from the format description alone, plan.json and manifest.json by their
# keys and sizes. Bad specs must fail with exit status 2 and one stderr line naming file and field.
#
# Usage: cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"  # fail, expect_error (a data file beside this script)
PY=/usr/bin/python3  # Debian's python, which has numpy (a pyenv python on PATH may not)
T="${TEST_TMPDIR:-$(mktemp -d)}/cli"
rm -rf "$T"
mkdir -p "$T/specs"
cd "$T"


# ---- Inputs: two layers written by numpy ----
"$PY" - <<'EOF'
import json
import numpy as np

rng = np.random.default_rng(4)

# int8: u8 input within 8 of its zero point 20 (40% equal to it), i8 weights within 8 of theirs
# (60% equal). Channels 0-23 requantise with a large multiplier, channels 24-47 with mult 1 and
# shifts of 1-3, which makes many exact halves: the rounding mode shows.
x = (20 + rng.integers(-8, 9, (9, 7, 32))).astype(np.uint8)
x[rng.random(x.shape) < 0.4] = 20
w = (-2 + rng.integers(-8, 9, (48, 3, 3, 32))).astype(np.int8)
w[rng.random(w.shape) < 0.6] = -2
b = rng.integers(-200, 200, 48).astype(np.int32)
np.save("specs/x_i8.npy", x)
np.save("specs/w_i8.npy", w)
np.save("specs/b_i8.npy", b)
json.dump({
    "target": "NPU40XX",
    "input": {"npy": "x_i8.npy", "dtype": "u8", "zero_point": 20},
    "weights": {"npy": "w_i8.npy", "dtype": "i8", "zero_point": -2},
    "bias": {"npy": "b_i8.npy"},
    "stride": [2, 1],
    "pad": [1, 1, 1, 0],
    "ppe": {"mult": [3000 + k for k in range(24)] + [1] * 24,
            "shift": [14] * 24 + [1 + k % 3 for k in range(24)],
            "out_zero_point": 100, "clamp": [0, 250], "leaky_relu": {"mult": 7, "shift": 2}},
    "output": {"dtype": "u8", "sparse": True},
    "sparsity": {"weights": "sparse", "input": "sparse"},
}, open("specs/int8.json", "w"), indent=1)

# fp16: values k/32 and power-of-two scales keep every sum exact in fp32, so numpy's float64 result
# rounded to fp16 is the definition's result whatever the summation order.
xf = (rng.integers(-64, 65, (1, 6, 6, 16)) / 32).astype(np.float16)
xf[rng.random(xf.shape) < 0.3] = 0
wf = (rng.integers(-64, 65, (32, 3, 3, 16)) / 32).astype(np.float16)
wf[rng.random(wf.shape) < 0.5] = 0
bf = (rng.integers(-16, 17, 32) / 8).astype(np.float32)
np.save("specs/x_f16.npy", xf)
np.save("specs/w_f16.npy", wf)
np.save("specs/b_f16.npy", bf)
json.dump({
    "target": "NPU37XX",
    "input": {"npy": "x_f16.npy", "dtype": "fp16"},
    "weights": {"npy": "w_f16.npy", "dtype": "fp16"},
    "bias": {"npy": "b_f16.npy"},
    "pad": [1, 1, 1, 1],
    "ppe": {"scale": [0.5 if k % 2 else 0.25 for k in range(32)], "clamp": [-4, 4]},
    "output": {"dtype": "fp16", "sparse": True},
    "split": "sok",
}, open("specs/fp16.json", "w"), indent=1)
EOF

# ---- plan ----
"$DPUEMU" plan specs/int8.json >plan.txt || fail "plan exited $?"
grep -q "plan for layer 'int8' on NPU40XX" plan.txt || fail "plan text: $(cat plan.txt)"
"$DPUEMU" plan --json specs/fp16.json >plan_f16.json || fail "plan --json exited $?"
# split_rule: the spec's field, overridden by --split-rule; the plan names the rule it followed.
mkdir -p rule  # outside specs/, which the sweep below counts
"$PY" -c "
import json
s = json.load(open('specs/fp16.json'))
s['split_rule'] = 'seed'
for part in ('input', 'weights', 'bias'):
    s[part]['npy'] = '../specs/' + s[part]['npy']
json.dump(s, open('rule/fp16_seed.json', 'w'))"
"$DPUEMU" plan --json rule/fp16_seed.json >plan_seed.json || fail "plan split_rule seed exited $?"
"$DPUEMU" plan --json --split-rule compiler rule/fp16_seed.json >plan_comp.json ||
  fail "plan --split-rule compiler exited $?"
"$PY" - <<'EOF2' || fail "split_rule in plan.json"
import json
seed, comp = json.load(open("plan_seed.json")), json.load(open("plan_comp.json"))
assert seed["split_rule"] == "seed" and seed["split_rule_requested"] == "seed", seed["split_rule"]
assert comp["split_rule"] == "compiler" and comp["split_rule_requested"] == "compiler", comp["split_rule"]
assert "split_rule" in comp["split_rule_reason"], comp["split_rule_reason"]
assert all("mpe_reason" in t and "getMpeModeForConv" in t["mpe_reason"] for t in comp["tiles"])
EOF2

# ---- run: SIMD kernels, the reference, other threads and kernels ----
"$DPUEMU" run specs/int8.json --out out_i8 --explain >run_i8.txt 2>run_i8.err ||
  fail "run int8: $(cat run_i8.err)"
[ ! -s run_i8.err ] || fail "a single run printed progress: $(cat run_i8.err)"
grep -q "kernels (" run_i8.txt || fail "--explain printed no kernels: $(cat run_i8.txt)"
grep -Eq "tile 0 .*(dense|sparse-weights) \[" run_i8.txt || fail "--explain: $(cat run_i8.txt)"
"$DPUEMU" run specs/int8.json --out ref_i8 --reference --explain >ref_i8.txt ||
  fail "run --reference exited $?"
grep -q "reference DPU" ref_i8.txt || fail "--explain with --reference: $(cat ref_i8.txt)"
"$DPUEMU" run specs/int8.json --out t1_i8 --threads 1 --kernel dense >/dev/null
"$DPUEMU" run specs/int8.json --out sw_i8 --kernel sparse-weights >/dev/null
"$DPUEMU" run specs/fp16.json --out out_f16 >/dev/null
"$DPUEMU" run specs/fp16.json --out ref_f16 --reference >/dev/null
"$DPUEMU" run rule/fp16_seed.json --split-rule compiler --out comp_f16 >/dev/null ||
  fail "run --split-rule compiler exited $?"
cmp -s out_f16/output.npy comp_f16/output.npy || fail "the compiler's tiling changed the output"
for d in ref_i8 t1_i8 sw_i8; do
  for f in output.npy weights.bin weight_map.bin weight_table.bin input.bin input_map.bin \
    output.bin output_map.bin manifest.json; do
    cmp -s "out_i8/$f" "$d/$f" || fail "$d/$f differs from out_i8/$f"
  done
done
for f in output.npy output.bin output_map.bin weights.bin weight_table.bin; do
  cmp -s "out_f16/$f" "ref_f16/$f" || fail "fp16: ref_f16/$f differs from out_f16/$f"
done

# ---- --repeat: timing on stdout, plain progress lines on a non-terminal stderr ----
"$DPUEMU" run specs/int8.json --out rep --repeat 3 >rep.txt 2>rep.err || fail "--repeat exited $?"
grep -q "timing: 3 runs: min" rep.txt || fail "--repeat timing: $(cat rep.txt)"
grep -q "^\[3/3\]" rep.err || fail "--repeat progress: $(cat rep.err)"
if grep -q $'\r' rep.err; then fail "progress redrew a bar on a non-terminal"; fi
cmp -s out_i8/output.npy rep/output.npy || fail "--repeat output differs"

# ---- numpy checks: output, golden set, plan.json, manifest.json ----
"$PY" - <<'EOF' || fail "numpy checks"
import json
import os
import sys
import numpy as np

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def spec_arrays(name):
    s = json.load(open("specs/%s.json" % name))
    load = lambda key: np.load("specs/" + s[key]["npy"])
    x = load("input")
    return s, x.reshape(x.shape[-3:]), load("weights"), load("bias")

def taps(x, fill, w, stride, pad):
    """For each kernel tap (ky, kx): the (OH, OW, C) input it meets, padding filled with `fill`."""
    H, W, C = x.shape
    _, KY, KX, _ = w.shape
    pt, pb, pl, pr = pad
    xp = np.full((H + pt + pb, W + pl + pr, C), fill, dtype=x.dtype)
    xp[pt:pt + H, pl:pl + W] = x
    oh = (H + pt + pb - KY) // stride[0] + 1
    ow = (W + pl + pr - KX) // stride[1] + 1
    for ky in range(KY):
        for kx in range(KX):
            yield ky, kx, xp[ky:ky + stride[0] * (oh - 1) + 1:stride[0],
                             kx:kx + stride[1] * (ow - 1) + 1:stride[1]]

# int8: accumulate in int64, then the PPE with int64 math and round half to even.
s, x, w, bias = spec_arrays("int8")
xzp, wzp = s["input"]["zero_point"], s["weights"]["zero_point"]
acc = 0
for ky, kx, win in taps(x.astype(np.int64), xzp, w, s["stride"], s["pad"]):
    acc = acc + (win - xzp) @ (w[:, ky, kx, :].astype(np.int64) - wzp).T
ppe = s["ppe"]
v = (acc + bias.astype(np.int64)) * np.array(ppe["mult"], dtype=np.int64)
shift = np.broadcast_to(np.array(ppe["shift"], dtype=np.int64), v.shape)
neg = v < 0
v = np.where(neg, v * ppe["leaky_relu"]["mult"], v)
shift = np.where(neg, shift + ppe["leaky_relu"]["shift"], shift)
q = v >> shift  # floor
r = v - (q << shift)
half = np.int64(1) << (shift - 1)
lo, hi = max(ppe["clamp"][0], 0), min(ppe["clamp"][1], 255)
want = np.clip(q + ((r > half) | ((r == half) & ((q & 1) == 1))) + ppe["out_zero_point"], lo, hi)
half_up = np.clip(q + (r >= half) + ppe["out_zero_point"], lo, hi)
check(np.count_nonzero(want != half_up) > 10, "too few exact halves to tell rounding modes apart")
got = np.load("out_i8/output.npy")
check(got.dtype == np.uint8 and got.shape == want.shape, "int8 output dtype/shape %s %s" % (got.dtype, got.shape))
check(np.array_equal(got, want.astype(np.uint8)),
      "int8 output differs from numpy at %d elements" % np.count_nonzero(got != want))
check(len(np.unique(got)) > 50 and np.count_nonzero(got == 100) > 0,
      "int8 output too uniform to test anything")

# fp16: exact sums, then the float PPE: + bias (held in accumulator units: bias / scale, as the
# compiler writes the weight table), x scale, clamp, fp16 rounding, each step in fp32.
s, xf, wf, bf = spec_arrays("fp16")
acc = 0
for ky, kx, win in taps(xf.astype(np.float64), 0.0, wf, [1, 1], s["pad"]):
    acc = acc + win @ wf[:, ky, kx, :].astype(np.float64).T
scale = np.array(s["ppe"]["scale"], np.float32)
bias_acc = (bf.astype(np.float64) / scale.astype(np.float64)).astype(np.float32)
v = (acc.astype(np.float32) + bias_acc) * scale
v = np.clip(v, *s["ppe"]["clamp"]).astype(np.float16)
got = np.load("out_f16/output.npy")
check(got.dtype == np.float16 and got.shape == v.shape, "fp16 output dtype/shape")
check(np.array_equal(got.view(np.uint16), v.view(np.uint16)), "fp16 output differs from numpy")

def decode_activations(data, amap, dtype, shape, zp, se):
    """Sparse activations -> dense, from the format: each SE's present values packed at its start."""
    n = int(np.prod(shape))
    vals = np.frombuffer(data, dtype=dtype)
    bits = np.unpackbits(np.frombuffer(amap, np.uint8), bitorder="little")
    check(len(bits) >= n and not bits[n:].any(), "activation map padding")
    out = np.full(n, zp, dtype=dtype)
    for start in range(0, n, se):
        present = bits[start:start + se].astype(bool)
        out[start:start + se][present] = vals[start:start + int(present.sum())]
    return out.reshape(shape)

for name, out, npdt in (("int8", "out_i8", np.uint8), ("fp16", "out_f16", np.float16)):
    s = json.load(open("specs/%s.json" % name))
    m = json.load(open(out + "/manifest.json"))
    check(m["target"] == s["target"], "manifest target")
    files = {f["name"]: f for f in m["files"]}
    for f in m["files"]:
        check(os.path.getsize(os.path.join(out, f["name"])) == f["bytes"], "size of " + f["name"])
        for key in ("shape", "dtype", "format"):
            check(key in f, "%s has no %s" % (f["name"], key))
    read = lambda n: open(os.path.join(out, n), "rb").read()
    # Output in ODU storage decodes to output.npy.
    dense = np.load(out + "/output.npy")
    zp = s["ppe"].get("out_zero_point", 0)
    check(m["output_sparse"] and "output_map.bin" in files, name + ": sparse output files")
    got = decode_activations(read("output.bin"), read("output_map.bin"), npdt, dense.shape, zp,
                             m["se_sizes"]["output"])
    check(np.array_equal(got.view(np.uint8), dense.view(np.uint8)), name + ": output.bin")

    # Weights from the weight table's pointers.
    w = np.load("specs/" + s["weights"]["npy"])
    K, n_taps = w.shape[0], int(np.prod(w.shape[1:]))
    table = np.frombuffer(read("weight_table.bin"), "<u4").reshape(K, 4)
    wt = files["weight_table.bin"]
    check(list(table[:, 0]) == wt["weight_offsets"], name + ": weight_offsets")
    check(list(table[:, 1]) == wt["sparsity_offsets"], name + ": sparsity_offsets")
    wzp = s["weights"].get("zero_point", 0)
    data = np.frombuffer(read("weights.bin"), w.dtype)
    eb = w.dtype.itemsize
    if m["weights_sparse"]:
        wmap = np.frombuffer(read("weight_map.bin"), np.uint8)
        per_ch = files["weight_map.bin"]["shape"][1]
        check(per_ch % 16 == 0, "weight map channel stride")
        for k in range(K):
            wptr, sptr = int(table[k, 0]), int(table[k, 1])
            check(wptr % 16 == 0 and sptr % 16 == 0, "pointer alignment")
            bits = np.unpackbits(wmap[sptr:sptr + per_ch], bitorder="little")[:n_taps]
            vals = data[wptr // eb:wptr // eb + int(bits.sum())]
            ch = np.full(n_taps, wzp, w.dtype)
            ch[bits.astype(bool)] = vals
            check(np.array_equal(ch.view(np.uint8), w[k].reshape(-1).view(np.uint8)), "weights channel %d" % k)
    else:
        check((table[:, 1] == 0xFFFFFF).all(), name + ": dense sparsity pointers")
        check(np.array_equal(data.reshape(w.shape).view(np.uint8), w.view(np.uint8)), name + ": dense weights")
    if name == "int8":
        ppe = s["ppe"]
        check(list(table[:, 2]) == [(mu << 16) | (sh << 8) for mu, sh in zip(ppe["mult"], ppe["shift"])],
              "scale words")
        check(np.array_equal(table[:, 3].copy().view("<i4"), np.load("specs/b_i8.npy")), "bias words")
        check(m["weights_sparse"], "int8 asks for sparse weights")
        # Sparse input in storage format with its map.
        x = np.load("specs/x_i8.npy")
        check(m["input_sparse"], "int8 asks for sparse input")
        got = decode_activations(read("input.bin"), read("input_map.bin"), np.uint8, x.shape,
                                 s["input"]["zero_point"], m["se_sizes"]["input"])
        check(np.array_equal(got, x), "input.bin")
    else:
        scale = np.array(s["ppe"]["scale"], np.float32)
        check(np.array_equal(table[:, 2].copy().view("<f4"), scale), "fp32 scale words")
        bias_acc = (np.load("specs/b_f16.npy").astype(np.float64) / scale).astype(np.float32)
        check(np.array_equal(table[:, 3].copy().view("<f4"), bias_acc), "fp32 bias words (bias / scale)")

    # plan.json: the keys the contract names.
    p = json.load(open(out + "/plan.json"))
    for key in ("target", "weights_sparse", "reason", "traffic", "split", "k_padded", "tiles", "workloads"):
        check(key in p, "plan.json has no " + key)
    check(p["target"] == s["target"], "plan target")
    check(p["weights_sparse"] == m["weights_sparse"], "plan and golden agree on weight storage")
    check({"dense_bytes", "sparse_bytes"} <= set(p["traffic"]), "plan traffic keys")
    check(len(p["tiles"]) > 0 and len(p["workloads"]) > 0, "plan has tiles and workloads")
    for t in p["tiles"]:
        check({"tile", "k_begin", "k_end", "row_begin", "row_end"} <= set(t), "tile keys")
    for wl in p["workloads"]:
        check({"tile", "mpe_mode", "k_begin", "k_end", "row_begin", "row_end", "col_begin",
               "col_end"} <= set(wl), "workload keys")

check(json.load(open("plan_f16.json"))["split"] == "SOK", "plan --json honours split sok")
print("numpy checks passed")
EOF

# ---- a terminal gets a progress bar redrawn in place ----
"$PY" - "$DPUEMU" <<'EOF' || fail "terminal progress bar"
import os, pty, subprocess, sys
master, slave = pty.openpty()
p = subprocess.run([sys.argv[1], "run", "specs/int8.json", "--out", "tty", "--repeat", "4"],
                   stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
err = os.read(master, 65536).decode()
if p.returncode != 0 or "\r[" not in err or "4/4" not in err or "#" not in err:
    sys.exit("no progress bar on a terminal: %r" % err)
EOF

# ---- a directory of specs: each into OUT/<name>/ ----
"$DPUEMU" run specs --out sweep >sweep.txt 2>sweep.err || fail "sweep: $(cat sweep.err)"
grep -q "2 specs: 2 ok, 0 failed" sweep.txt || fail "sweep summary: $(cat sweep.txt)"
grep -q "^\[2/2\]" sweep.err || fail "sweep progress: $(cat sweep.err)"
cmp -s sweep/int8/output.npy out_i8/output.npy || fail "sweep int8 output"
cmp -s sweep/fp16/output.npy out_f16/output.npy || fail "sweep fp16 output"

# ---- bad specs: exit 2, one stderr line naming the spec file and the field ----
mkdir -p bad
SPECS="$T/specs"
"$PY" - "$SPECS" <<'EOF'
import json, sys
specs = sys.argv[1]
good = json.load(open(specs + "/int8.json"))
for key in ("input", "weights", "bias"):
    good[key]["npy"] = specs + "/" + good[key]["npy"]

def write(name, edit):
    s = json.loads(json.dumps(good))
    edit(s)
    json.dump(s, open("bad/%s.json" % name, "w"))

write("a_good", lambda s: None)
write("missing", lambda s: s.pop("output"))
write("zero_point", lambda s: s["input"].update(zero_point=300))
write("unknown", lambda s: s.update(strides=[1, 1]))
write("dtype", lambda s: s["input"].update(dtype="i8"))
write("se", lambda s: s.update(se={"op": "interpolate"}))
write("mult_type", lambda s: s["ppe"].update(mult="800"))
open("bad/truncated.npy", "wb").write(open(specs + "/x_i8.npy", "rb").read()[:-10])
write("truncated", lambda s: s["input"].update(npy="truncated.npy"))
open("bad/syntax.json", "w").write('{"target": "NPU40XX",')
EOF
expect_error missing "output: missing"
expect_error zero_point "input.zero_point = 300: must be in [0, 255]"
expect_error unknown "strides: unknown field"
expect_error dtype "input.npy: '$SPECS/x_i8.npy' holds |u1 (u8); input.dtype needs |i1 (i8)"
expect_error se "se.op: must be one of upsample_nearest|interpolate_nearest|interpolate_bilinear|transposed|pad|roll|dilate, got 'interpolate'"
expect_error mult_type "ppe.mult: must be an integer"
expect_error truncated "input.npy: bad/truncated.npy: truncated"
expect_error syntax "not valid JSON"
status=0
"$DPUEMU" plan bad/zero_point.json >/dev/null 2>err.txt || status=$?
[ "$status" -eq 2 ] && grep -q "input.zero_point" err.txt || fail "plan of a bad spec: $status $(cat err.txt)"

# A sweep keeps going past bad specs and reports them.
status=0
"$DPUEMU" run bad --out bad_sweep >bad_sweep.txt 2>/dev/null || status=$?
[ "$status" -eq 2 ] || fail "sweep with bad specs: exit $status, want 2"
grep -q "9 specs: 1 ok, 8 failed" bad_sweep.txt || fail "bad sweep summary: $(cat bad_sweep.txt)"
cmp -s bad_sweep/a_good/output.npy out_i8/output.npy || fail "good spec of a bad sweep"

# Usage errors.
for args in "run specs/int8.json" "frobnicate" "run specs/int8.json --out x --kernel fastest" \
  "run specs/int8.json --out x --repeat 0" "plan" "plan specs/int8.json --split-rule fastest"; do
  status=0
  # shellcheck disable=SC2086
  "$DPUEMU" $args >/dev/null 2>&1 || status=$?
  [ "$status" -eq 2 ] || fail "dpuemu $args: exit $status, want 2"
done
"$DPUEMU" --help >help.txt || fail "--help exited $?"
grep -q "run" help.txt || fail "--help: $(cat help.txt)"

# ---- weight-only quantisation: fp16 activations, i4 weights, bias in output units, float slope ----
mkdir -p mixed
"$PY" - <<'EOF' || fail "mixed precision spec"
import json
import numpy as np
rng = np.random.default_rng(9)
x = (rng.integers(-64, 65, (5, 6, 32)) / 32).astype(np.float16)
w = rng.integers(-8, 8, (16, 3, 3, 32)).astype(np.int8)  # i4 values, zero point -1
b = (rng.integers(-16, 17, 16) / 8).astype(np.float32)
np.save("mixed/x.npy", x); np.save("mixed/w.npy", w); np.save("mixed/b.npy", b)
json.dump({"target": "NPU40XX", "input": {"npy": "x.npy", "dtype": "fp16"},
           "weights": {"npy": "w.npy", "dtype": "i4", "zero_point": -1}, "bias": {"npy": "b.npy"},
           "pad": [1, 1, 1, 1], "ppe": {"scale": 0.1, "leaky_relu": {"alpha": 0.3}},
           "output": {"dtype": "fp16"}}, open("mixed/spec.json", "w"))
EOF
"$DPUEMU" run mixed/spec.json --out mixed/out >/dev/null || fail "run mixed spec"
"$DPUEMU" run mixed/spec.json --out mixed/ref --reference >/dev/null || fail "run mixed spec --reference"
cmp -s mixed/out/output.npy mixed/ref/output.npy || fail "mixed: SIMD and reference differ"
"$PY" - <<'EOF' || fail "mixed precision numpy check"
import sys
import numpy as np
x = np.load("mixed/x.npy").astype(np.float64)
w = np.load("mixed/w.npy").astype(np.int64) + 1  # w - w_zp
b = np.load("mixed/b.npy")
xp = np.zeros((7, 8, 32)); xp[1:6, 1:7] = x
# Sums of k/32 times small integers are exact in fp32 whatever the order.
acc = sum(xp[ky:ky + 5, kx:kx + 6] @ w[:, ky, kx, :].T.astype(np.float64) for ky in range(3) for kx in range(3))
f32 = np.float32
bias_acc = (b.astype(np.float64) / 0.1).astype(f32)  # the weight table's bias word
v = (acc.astype(f32) + bias_acc) * f32(0.1)
v = np.where(v < 0, v * f32(0.3), v)
want = np.clip(v, -65504, 65504).astype(np.float16)
got = np.load("mixed/out/output.npy")
if got.shape != want.shape or not np.array_equal(got.view(np.uint16), want.view(np.uint16)):
    sys.exit("mixed: output differs from numpy at %d elements" % np.count_nonzero(got != want))
table = np.fromfile("mixed/out/weight_table.bin", "<u4").reshape(16, 4)
if not np.array_equal(table[:, 3].view("<f4"), bias_acc): sys.exit("mixed: bias words")
if not np.array_equal(table[:, 0], np.arange(16) * 144): sys.exit("mixed: weight pointers")
packed = np.fromfile("mixed/out/weights.bin", np.uint8).reshape(16, 144)
nib = (np.load("mixed/w.npy").reshape(16, -1) & 0xF).astype(np.uint8)
if not np.array_equal(packed, nib[:, 0::2] | (nib[:, 1::2] << 4)): sys.exit("mixed: int4 packing")
EOF

# ---- --golden tiles: every tile's CMX image and its variants, checked by numpy from the files ----
"$DPUEMU" run specs/int8.json --out tiles_i8 --golden tiles >/dev/null || fail "--golden tiles int8"
"$DPUEMU" run specs/fp16.json --out tiles_f16 --golden tiles >/dev/null || fail "--golden tiles fp16"
"$DPUEMU" run specs/int8.json --out layer_i8 --golden layer >/dev/null || fail "--golden layer"
for f in output.npy weights.bin weight_table.bin input.bin output.bin manifest.json; do
  cmp -s "out_i8/$f" "layer_i8/$f" || fail "--golden layer is not the default: $f"
done
cmp -s out_i8/output.npy tiles_i8/output.npy || fail "--golden tiles changed output.npy"
[ ! -e tiles_i8/weights.bin ] || fail "--golden tiles also wrote the whole-layer set"
status=0
"$DPUEMU" run specs/int8.json --out x --golden cmx >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "--golden cmx: exit $status, want 2"
"$PY" - <<'EOF' || fail "numpy checks of --golden tiles"
import json, os, sys
import numpy as np

def check(cond, what):
    if not cond:
        sys.exit("check failed: " + what)

def decode(data, amap, dtype, shape, zp, se):
    n = int(np.prod(shape))
    vals = np.frombuffer(data, dtype=dtype)
    bits = np.unpackbits(np.frombuffer(amap, np.uint8), bitorder="little")
    out = np.full(n, zp, dtype=dtype)
    for start in range(0, n, se):
        present = bits[start:start + se].astype(bool)
        out[start:start + se][present] = vals[start:start + int(present.sum())]
    return out.reshape(shape)

for name, out, npdt in (("int8", "tiles_i8", np.uint8), ("fp16", "tiles_f16", np.float16)):
    s = json.load(open("specs/%s.json" % name))
    m = json.load(open(out + "/manifest.json"))
    check(m["golden"] == "tiles", name + ": manifest golden")
    plan = json.load(open(out + "/plan.json"))
    check(len(m["tiles"]) == len(plan["tiles"]), name + ": one entry per tile")
    x = np.load("specs/" + s["input"]["npy"])
    x = x.reshape(x.shape[-3:])
    w = np.load("specs/" + s["weights"]["npy"])
    K, taps = w.shape[0], int(np.prod(w.shape[1:]))
    wzp, xzp = s["weights"].get("zero_point", 0), s["input"].get("zero_point", 0)
    ozp = s["ppe"].get("out_zero_point", 0)
    dense = np.load(out + "/output.npy")
    cmx_end = m["cmx"]["end"]
    check(cmx_end <= m["cmx"]["bytes_per_tile"], name + ": CMX size")
    seen = 0
    for t in m["tiles"]:
        img = np.zeros(cmx_end, np.uint8)
        bufs = {}
        for b in t["buffers"]:
            data = np.fromfile(os.path.join(out, b["file"]), np.uint8)
            check(data.size == b["bytes"] and b["offset"] % 16 == 0, b["file"] + " size/alignment")
            img[b["offset"]:b["offset"] + data.size] = data
            bufs[b["buffer"]] = b
        k0, k1 = t["k"]
        r0, r1 = t["rows"]
        i0, i1 = t["input_rows"]
        # Weights of every channel through the RELOCATED table: absolute offsets in the image.
        tab = img[bufs["weight_table"]["offset"]:][:16 * (k1 - k0)].view("<u4").reshape(-1, 4)
        eb = w.dtype.itemsize
        per_ch = (taps + 127) // 128 * 16
        for k in range(k1 - k0):
            want = w[k0 + k].reshape(-1) if k0 + k < K else np.full(taps, wzp, w.dtype)
            wp, sp = int(tab[k, 0]), int(tab[k, 1])
            if m["weights_sparse"]:
                bits = np.unpackbits(img[sp:sp + per_ch], bitorder="little")[:taps].astype(bool)
                ch = np.full(taps, wzp, w.dtype)
                ch[bits] = img[wp:wp + int(bits.sum()) * eb].view(w.dtype)
            else:
                check(sp == 0xFFFFFF, "dense sparsity pointer")
                ch = img[wp:wp + taps * eb].view(w.dtype)
            check(np.array_equal(ch.view(np.uint8), want.view(np.uint8)),
                  "%s tile %d channel %d through the relocated table" % (name, t["tile"], k0 + k))
        # The input slice with its halo, in storage format.
        ib = bufs["input"]
        raw = img[ib["offset"]:ib["offset"] + ib["bytes"]].tobytes()
        if m["input_sparse"]:
            mb = bufs["input_map"]
            got = decode(raw, img[mb["offset"]:mb["offset"] + mb["bytes"]].tobytes(), x.dtype,
                         (i1 - i0,) + x.shape[1:], xzp, m["se_sizes"]["input"])
        else:
            got = np.frombuffer(raw, x.dtype).reshape((i1 - i0,) + x.shape[1:])
        check(np.array_equal(got.view(np.uint8), x[i0:i1].view(np.uint8)), name + " tile input")
        # The tile's output region, as the ODU writes it.
        ob = bufs["output"]
        raw = img[ob["offset"]:ob["offset"] + ob["bytes"]].tobytes()
        shape = (r1 - r0, dense.shape[1], k1 - k0)
        if m["output_sparse"]:
            mb = bufs["output_map"]
            got = decode(raw, img[mb["offset"]:mb["offset"] + mb["bytes"]].tobytes(), npdt,
                         shape, ozp, t["output_se_size"])
        else:
            got = np.frombuffer(raw, npdt).reshape(shape)
        kr = min(k1, K) - k0
        check(np.array_equal(got[:, :, :kr].view(np.uint8),
                             dense[r0:r1, :, k0:k0 + kr].view(np.uint8)),
              name + " tile output region")
        for v in t["variants"]:
            for key in ("mpe_mode", "out_start", "out_end", "pad", "k", "input_rows",
                        "input_offset", "weight_table_offset"):
                check(key in v, "variant has no " + key)
            check(k0 <= v["k"][0] < v["k"][1] <= k1 and
                  r0 <= v["out_start"][1] <= v["out_end"][1] < r1, "variant inside its tile")
            seen += 1
    check(seen == len(plan["workloads"]), name + ": one variant per workload")
print("--golden tiles numpy checks passed")
EOF
# SE-pointer specs: one DPU layer gets per-tile SE tables; a dilated one (phases) is refused.
mkdir -p se_specs
"$PY" - <<'EOF'
import json
s = json.load(open("specs/int8.json"))
for key in ("input", "weights", "bias"):
    s[key]["npy"] = "../specs/" + s[key]["npy"]
s["stride"] = [1, 1]
s["se"] = {"op": "upsample_nearest", "factor": [2, 2], "source_rows_per_tile": [5, 4]}
json.dump(s, open("se_specs/up.json", "w"))
s["se"] = {"op": "dilate", "dilation": [2, 2]}
json.dump(s, open("se_specs/dilate.json", "w"))
EOF
"$DPUEMU" run se_specs/up.json --out tiles_se --golden tiles >/dev/null || fail "--golden tiles se"
"$PY" - <<'EOF' || fail "--golden tiles se manifest"
import json, os, sys
m = json.load(open("tiles_se/manifest.json"))
parts = m["se"]["source_tiles"]
if len(parts) != 2 or [p["rows"] for p in parts] != [5, 4]:
    sys.exit("se source_tiles: %s" % parts)
for t in m["tiles"]:
    names = {b["buffer"] for b in t["buffers"]}
    if not {"se_table", "input_map"} <= names or "se_table_offset" not in t["variants"][0]:
        sys.exit("tile %d has no SE table: %s" % (t["tile"], sorted(names)))
for p in parts:
    if not os.path.exists(os.path.join("tiles_se", p["file"])):
        sys.exit("no " + p["file"])
EOF
status=0
"$DPUEMU" run se_specs/dilate.json --out x --golden tiles >/dev/null 2>err.txt || status=$?
[ "$status" -eq 2 ] && grep -q "dilate phases" err.txt ||
  fail "--golden tiles of a dilated spec: exit $status: $(cat err.txt)"

echo "cli_test: all checks passed"
