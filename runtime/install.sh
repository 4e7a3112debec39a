#!/bin/bash
# Installs dpuemu for projects built without Bazel:
#   PREFIX/include/{hw,kernels,runtime}/...h   the public headers, at their source paths
#   PREFIX/lib/libdpuemu.so                     the library (needs Debian's libhwy1 and libtbb12)
#   PREFIX/lib/pkgconfig/dpuemu.pc              flags for Makefiles and CMake's pkg_check_modules
# Usage: bazel run -c opt //runtime:install -- PREFIX   (a relative PREFIX is taken from the
# directory bazel was run in).
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: bazel run -c opt //runtime:install -- PREFIX" >&2
  exit 2
fi
prefix=$1
# bazel run starts the script inside its runfiles tree, not where the user typed the command.
if [[ "$prefix" != /* ]]; then
  prefix="${BUILD_WORKING_DIRECTORY:-$PWD}/$prefix"
fi

# The files to install are this target's runfiles (or, under bazel test, the test's).
root="${RUNFILES_DIR:-$0.runfiles}/dpuemu"
if [[ ! -f "$root/runtime/libdpuemu.so" ]]; then
  echo "install.sh: runtime/libdpuemu.so not found under $root; run it as" \
       "bazel run -c opt //runtime:install -- PREFIX" >&2
  exit 1
fi

mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
headers=0
while IFS= read -r header; do
  install -D -m 644 "$root/$header" "$prefix/include/$header"
  headers=$((headers + 1))
done < <(cd "$root" && find -L hw kernels runtime -name '*.h' | sort)
install -m 755 "$root/runtime/libdpuemu.so" "$prefix/lib/libdpuemu.so"
cat > "$prefix/lib/pkgconfig/dpuemu.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: dpuemu
Description: Functional emulator of the Intel NPU DPU (ZMConv with sparse weights and activations)
Version: 0.1
Requires: nlohmann_json
Cflags: -std=c++17 -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -ldpuemu
PC
echo "dpuemu: installed $headers headers, lib/libdpuemu.so and lib/pkgconfig/dpuemu.pc into $prefix"
