#!/bin/bash
# The shared library as a project without Bazel uses it: runtime/install.sh puts the headers and
# libdpuemu.so under a prefix, plain g++ builds tests/shared_lib_example.cc against them, and the
# program must run from the installed library and print that its output matches the reference.
set -euo pipefail

root="$TEST_SRCDIR/dpuemu"
prefix="$TEST_TMPDIR/prefix"
"$root/runtime/install" "$prefix"

# Built from a copy, so no header can come from next to the source in the Bazel tree.
cp "$root/tests/shared_lib_example.cc" "$TEST_TMPDIR/example.cc"
# Under bazel test --config=asan/tsan the library is instrumented: the program must link the same
# sanitizer runtime (.bazelrc sets DPUEMU_SANITIZE).
sanitize=()
if [[ -n "${DPUEMU_SANITIZE:-}" ]]; then sanitize=(-fsanitize="$DPUEMU_SANITIZE"); fi
g++ -std=c++17 -O1 "${sanitize[@]}" "$TEST_TMPDIR/example.cc" -o "$TEST_TMPDIR/example" \
  -I"$prefix/include" -L"$prefix/lib" -ldpuemu -Wl,-rpath,"$prefix/lib"

# grep reads ldd's whole output from a file: `ldd | grep -q` under pipefail can fail on SIGPIPE.
ldd "$TEST_TMPDIR/example" > "$TEST_TMPDIR/ldd.txt"
if ! grep -q "libdpuemu.so => $prefix/lib/libdpuemu.so" "$TEST_TMPDIR/ldd.txt"; then
  echo "FAIL: the example does not load $prefix/lib/libdpuemu.so:" >&2
  ldd "$TEST_TMPDIR/example" >&2
  exit 1
fi

out=$("$TEST_TMPDIR/example")
echo "$out"
expect="k320_1x1_28 on NPU37XX: SOK over 2 tiles, K=320 padded to 512, "
if [[ "$out" != "$expect"*"output [8, 8, 320] identical to the reference" ]]; then
  echo "FAIL: expected a line starting '$expect' and ending" \
       "'output [8, 8, 320] identical to the reference'" >&2
  exit 1
fi

# The pkg-config file gives the same flags.
libs=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --libs dpuemu)
if [[ "$libs" != *"-L$prefix/lib"*"-ldpuemu"* ]]; then
  echo "FAIL: pkg-config --libs dpuemu gave '$libs'" >&2
  exit 1
fi
echo "PASS"
