#!/bin/bash
# The cost model through the CLI: `dpuemu plan --explain` prints every workload's cost terms,
# plan --json and run's plan.json carry them as "cost", the weight heuristic "cost" works from
# SPEC.json (sparsity.heuristic) and from --heuristic, on both targets; a bad name is refused.
#
# Usage: cost_cli_test.sh path/to/dpuemu
set -euo pipefail

DPUEMU="$(realpath "$1")"
source "$(dirname "$0")/cli_lib.sh"
PY=/usr/bin/python3
T="${TEST_TMPDIR:-$(mktemp -d)}/cost_cli"
rm -rf "$T"
mkdir -p "$T/specs" "$T/bad"
cd "$T"

"$PY" - <<'EOF2'
import json
import numpy as np
rng = np.random.default_rng(11)
x = rng.integers(0, 255, (14, 14, 64)).astype(np.uint8)
w = rng.integers(-8, 9, (96, 3, 3, 64)).astype(np.int8)
w[rng.random(w.shape) < 0.7] = 0
np.save("specs/x.npy", x)
np.save("specs/w.npy", w)
for target in ("NPU37XX", "NPU40XX"):
    json.dump({
        "target": target,
        "input": {"npy": "x.npy", "dtype": "u8"},
        "weights": {"npy": "w.npy", "dtype": "i8"},
        "pad": [1, 1, 1, 1],
        "ppe": {"mult": [1] * 96, "shift": [8] * 96},
        "output": {"dtype": "u8"},
        "sparsity": {"heuristic": "cost"},
    }, open("specs/%s.json" % target, "w"), indent=1)
s = json.load(open("specs/NPU37XX.json"))
s["sparsity"]["heuristic"] = "vpunn"
json.dump(s, open("bad/heuristic.json", "w"))
EOF2

for t in NPU37XX NPU40XX; do
  "$DPUEMU" plan --explain "specs/$t.json" >"plan_$t.txt" || fail "plan --explain exited $?"
  grep -q "cost: max(mac " "plan_$t.txt" || fail "$t: no cost terms: $(cat "plan_$t.txt")"
  grep -q "cycles with sparse weights" "plan_$t.txt" || fail "$t: no cost reason: $(cat "plan_$t.txt")"
  "$DPUEMU" plan "specs/$t.json" | grep -q "cost: max(mac " && fail "$t: terms without --explain"
  "$DPUEMU" run "specs/$t.json" --out "out_$t" >/dev/null || fail "$t: run exited $?"
  "$DPUEMU" plan --json --heuristic sas "specs/$t.json" >"sas_$t.json" || fail "--heuristic sas"
  "$PY" - "$t" <<'EOF2' || fail "$t: plan.json cost"
import json, sys
t = sys.argv[1]
p = json.load(open("out_%s/plan.json" % t))
p = p.get("plan", p)
assert p["heuristic"] == "cost", p["heuristic"]
assert p["reason"].startswith("cost: the slowest tile"), p["reason"]
for w in p["workloads"]:
    c = w["cost"]
    assert c["cycles"] == w["cycles"], (c, w["cycles"])
    assert c["bound"] in ("mac", "data"), c
    assert c["mac_cycles"] <= c["dense_mac_cycles"] + 1e-9, c
assert p["cycles"] == max(sum(w["cycles"] for w in p["workloads"] if w["tile"] == i)
                          for i in range(p["tiles_used"]))
s = json.load(open("sas_%s.json" % t))
assert s["heuristic"] == "sas", s["heuristic"]
EOF2
done
expect_error heuristic "heuristic"
echo PASS
