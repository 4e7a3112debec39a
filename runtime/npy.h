// numpy .npy files for the CLI: a reader for format versions 1.0 and 2.0 and a 1.0 writer, both
// little-endian and C order only. Each DType maps to one .npy descriptor:
//   u8 |u1   i8 |i1   fp16 <f2   bf16 <u2 (numpy has no bfloat16: the bit patterns as uint16)
//   i32 <i4  fp32 <f4
// so a file read back keeps its DType. Every error names the file and what is wrong with it.
#ifndef DPUEMU_RUNTIME_NPY_H_
#define DPUEMU_RUNTIME_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "hw/span.h"
#include "hw/status.h"
#include "hw/tensor.h"

namespace dpuemu {

const char* NpyDescr(DType t);  // "|u1", "<f2", ...

// Parses a whole .npy file's bytes; `name` (the file) prefixes every error message.
StatusOr<Tensor> ParseNpy(ByteSpan file, const std::string& name);
StatusOr<Tensor> ReadNpy(const std::string& path);

// Fails when the tensor's byte count does not match its shape and dtype.
StatusOr<std::vector<uint8_t>> EncodeNpy(const Tensor& t);
Status WriteNpy(const std::string& path, const Tensor& t);

// Whole-file helpers shared by the CLI's readers and writers; errors name the path.
StatusOr<std::vector<uint8_t>> ReadFileBytes(const std::string& path);
Status WriteFileBytes(const std::string& path, ByteSpan bytes);

}  // namespace dpuemu

#endif  // DPUEMU_RUNTIME_NPY_H_
