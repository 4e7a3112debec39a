# Shared by the CLI's shell tests (sourced after DPUEMU is set and the test has cd'd to its
# scratch directory with its malformed specs under bad/).

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# expect_error SPEC TEXT: `dpuemu run bad/SPEC.json` exits 2 with one stderr line that names the
# file and contains TEXT.
expect_error() {
  local status=0
  "$DPUEMU" run "bad/$1.json" --out bad_out >/dev/null 2>err.txt || status=$?
  [ "$status" -eq 2 ] || fail "bad/$1.json: exit status $status, want 2: $(cat err.txt)"
  [ "$(wc -l <err.txt)" -eq 1 ] || fail "bad/$1.json: not one line: $(cat err.txt)"
  grep -qF "bad/$1.json: " err.txt || fail "bad/$1.json: file not named: $(cat err.txt)"
  grep -qF "$2" err.txt || fail "bad/$1.json: '$2' not in: $(cat err.txt)"
}
