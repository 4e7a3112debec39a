// Conformance with the public NPU compiler (openvinotoolkit/npu_compiler, paths under
// src/vpux_compiler/ unless they start with tests/): the concrete values its unit and LIT tests
// state, each test naming its source. This file: PPE arithmetic and mixed precision. The other
// areas are in conformance_*.cc beside it (same test binary).
#include <gtest/gtest.h>
