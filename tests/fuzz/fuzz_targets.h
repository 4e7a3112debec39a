// Fuzz entry points, one per decoder or parser, shared by the libFuzzer mains (tests/fuzz/
// fuzz_main.cc, built with clang by .ci/fuzz) and the corpus replay test (tests/fuzz/
// replay_test.cc, built by Bazel with gcc, part of `bazel test //...`).
//
// Each entry decodes its input into the function's arguments (tables, maps, tiles and shapes all
// come from the input, see FuzzReader and the per-target layout in fuzz_targets.cc), calls the
// scalar function of hw/formats.h and its SIMD twin of kernels/bitmap.h where one exists, and
// aborts (a crash for libFuzzer, a failed test for the replay) when they disagree - in success,
// in the result's bytes, or in the error message - or when an encode/decode round trip does not
// give back its input. Memory errors and undefined behaviour are the sanitizers' to report.
#ifndef DPUEMU_TESTS_FUZZ_FUZZ_TARGETS_H_
#define DPUEMU_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace dpuemu {
namespace fuzz {

// DecompressWeights (hw/formats.h) against simd::DecompressWeights, and CompressWeights (both)
// round trips.
int FuzzWeights(const uint8_t* data, size_t size);
// DecodeSparseActivations against simd::DecodeSparseActivations, and EncodeSparseActivations
// (both) round trips.
int FuzzActivations(const uint8_t* data, size_t size);
// GatherActivations against simd::GatherActivations and simd::GatherRows: SE tables, maps, tile
// buffers and shapes from the input.
int FuzzGather(const uint8_t* data, size_t size);
// ParseNpy (runtime/npy.h); what it accepts must survive EncodeNpy -> ParseNpy unchanged.
int FuzzNpy(const uint8_t* data, size_t size);
// LoadSpec (runtime/spec.h) on a SPEC.json and up to five .npy files taken from the input and
// written to a temporary directory; an accepted small spec is planned and every DPU layer run on
// the SIMD kernels and on the reference, which must agree byte for byte (with "se": also the
// tasks LowerSeSpec builds from the source tiles, table and map).
int FuzzSpec(const uint8_t* data, size_t size);
// LoadNetwork (runtime/network.h) on a NETWORK.json and up to five .npy files from the input; an
// accepted small network is run on the SIMD kernels and on the reference, which must agree (and
// every error must name the file).
int FuzzNetwork(const uint8_t* data, size_t size);

struct FuzzTarget {
  const char* name;  // also the corpus directory: tests/fuzz/corpus/<name>/
  int (*run)(const uint8_t* data, size_t size);
};
const std::vector<FuzzTarget>& FuzzTargets();

// Inputs whose main call succeeded (a valid weight buffer decoded, a spec loaded, ...), so the
// replay test can tell that the seeds still reach past the input checks.
int64_t AcceptedInputs();

// Aborts with a message naming the broken invariant (what libFuzzer and the replay test report).
[[noreturn]] void Fail(const std::string& what);

// Reads the fuzz input front to back; past its end every read returns zeros, so any input is a
// complete (if mostly zero) argument list.
class FuzzReader {
 public:
  FuzzReader(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t U8() { return n_ ? (--n_, *p_++) : 0; }
  // Low part first, in separate statements: the operands of | are evaluated in no set order.
  uint16_t U16() {
    const uint16_t lo = U8();
    return static_cast<uint16_t>(lo | U8() << 8);
  }
  uint32_t U32() {
    const uint32_t lo = U16();
    return lo | static_cast<uint32_t>(U16()) << 16;
  }
  uint64_t U64() {
    const uint64_t lo = U32();
    return lo | static_cast<uint64_t>(U32()) << 32;
  }
  // A dimension or size: one byte 0..239 as itself, a tag byte >= 240 followed by an arbitrary
  // int64 (negative, huge: the overflow cases).
  int64_t Dim() {
    const uint8_t b = U8();
    return b < 240 ? b : static_cast<int64_t>(U64());
  }
  // `len` bytes, zeros past the end of the input.
  std::vector<uint8_t> Bytes(size_t len) {
    std::vector<uint8_t> out(len, 0);
    const size_t take = len < n_ ? len : n_;
    if (take) std::memcpy(out.data(), p_, take);
    p_ += take;
    n_ -= take;
    return out;
  }
  std::vector<uint8_t> Rest() { return Bytes(n_); }
  size_t remaining() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

// The inverse of FuzzReader, for the seed corpus generator.
class FuzzWriter {
 public:
  FuzzWriter& U8(uint8_t v) { out_.push_back(v); return *this; }
  FuzzWriter& U16(uint16_t v) { return U8(v & 0xFF).U8(v >> 8); }
  FuzzWriter& U32(uint32_t v) { return U16(v & 0xFFFF).U16(v >> 16); }
  FuzzWriter& U64(uint64_t v) { return U32(v & 0xFFFFFFFFu).U32(v >> 32); }
  FuzzWriter& Dim(int64_t v) {
    if (v >= 0 && v < 240) return U8(static_cast<uint8_t>(v));
    return U8(240).U64(static_cast<uint64_t>(v));
  }
  FuzzWriter& Bytes(const std::vector<uint8_t>& b) {
    out_.insert(out_.end(), b.begin(), b.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return out_; }

 private:
  std::vector<uint8_t> out_;
};

}  // namespace fuzz
}  // namespace dpuemu

#endif  // DPUEMU_TESTS_FUZZ_FUZZ_TARGETS_H_
