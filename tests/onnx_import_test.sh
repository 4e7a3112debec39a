#!/bin/bash
# tools/onnx_import.py through `dpuemu import`, then the imported networks run on dpuemu and
# compared with numpy's ONNX semantics (tests/onnx_import_test.py says how).
# Usage: onnx_import_test.sh DPUEMU TOOL. Needs Debian's python3-onnx (.ci/setup installs it).
set -euo pipefail
dpuemu=$(realpath "$1")
tool=$(realpath "$2")
here=$(dirname "$0")
python=${DPUEMU_PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import onnx, numpy' 2>/dev/null; then
  echo "onnx_import_test: $python lacks onnx or numpy: run .ci/setup (python3-onnx)" >&2
  exit 1
fi
exec "$python" "$here/onnx_import_test.py" "$tool" "$dpuemu"
