#include "runtime/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "hw/formats.h"

namespace dpuemu {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr DType kAllTypes[] = {DType::kU8,   DType::kI8,  DType::kFP16,
                               DType::kBF16, DType::kI32, DType::kFP32};

std::string Str(int64_t v) { return std::to_string(v); }

// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" as numpy writes it; keys may come
// in any order, strings in either quote, and the dict may be followed by whitespace only.
class HeaderParser {
 public:
  explicit HeaderParser(std::string text) : s_(std::move(text)) {}

  Status Parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    SkipSpace();
    if (!Eat('{')) return Error("expected '{'");
    for (;;) {
      SkipSpace();
      if (Eat('}')) break;
      std::string key;
      DPUEMU_RETURN_IF_ERROR(String(&key));
      SkipSpace();
      if (!Eat(':')) return Error("expected ':' after key '" + key + "'");
      SkipSpace();
      bool* seen = nullptr;
      if (key == "descr") {
        seen = &seen_descr;
        DPUEMU_RETURN_IF_ERROR(String(descr));
      } else if (key == "fortran_order") {
        seen = &seen_fortran;
        DPUEMU_RETURN_IF_ERROR(Bool(fortran));
      } else if (key == "shape") {
        seen = &seen_shape;
        DPUEMU_RETURN_IF_ERROR(Shape(shape));
      } else {
        return Error("unknown key '" + key + "'");
      }
      if (*seen) return Error("duplicate key '" + key + "'");
      *seen = true;
      SkipSpace();
      if (Eat(',')) continue;
      if (Eat('}')) break;
      return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != s_.size()) return Error("unexpected text after the dict");
    if (!seen_descr) return InvalidArgument("header: missing key 'descr'");
    if (!seen_fortran) return InvalidArgument("header: missing key 'fortran_order'");
    if (!seen_shape) return InvalidArgument("header: missing key 'shape'");
    return OkStatus();
  }

 private:
  Status Error(const std::string& what) const {
    return InvalidArgument("header: " + what + " at offset " + Str(static_cast<int64_t>(pos_)));
  }
  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool EatWord(const char* w) {
    const size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) != 0) return false;
    pos_ += n;
    return true;
  }
  Status String(std::string* out) {
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = s_[pos_++];
    const size_t end = s_.find(quote, pos_);
    if (end == std::string::npos) return Error("unterminated string");
    *out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return OkStatus();
  }
  Status Bool(bool* out) {
    if (EatWord("True")) {
      *out = true;
    } else if (EatWord("False")) {
      *out = false;
    } else {
      return Error("fortran_order: expected True or False");
    }
    return OkStatus();
  }
  Status Shape(std::vector<int64_t>* out) {
    out->clear();
    if (!Eat('(')) return Error("shape: expected '('");
    for (;;) {
      SkipSpace();
      if (Eat(')')) break;
      if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') {
        return Error("shape: expected a non-negative integer");
      }
      int64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s_[pos_] - '0', &v)) {
          return Error("shape: dimension overflows int64");
        }
        ++pos_;
      }
      out->push_back(v);
      SkipSpace();
      if (Eat(')')) break;
      if (!Eat(',')) return Error("shape: expected ',' or ')'");
    }
    return OkStatus();
  }

  std::string s_;
  size_t pos_ = 0;
};

StatusOr<DType> DescrType(const std::string& d) {
  for (DType t : kAllTypes) {
    const std::string want = NpyDescr(t);
    // One-byte types have no byte order: numpy writes '|', '<' means the same.
    if (d == want || (DTypeBytes(t) == 1 && d == "<" + want.substr(1))) return t;
  }
  if (!d.empty() && d[0] == '>') {
    return InvalidArgument("header: descr '" + d +
                           "' is big-endian; only little-endian is supported "
                           "(save arr.astype(arr.dtype.newbyteorder('<')))");
  }
  return InvalidArgument("header: descr '" + d +
                         "' is not supported (supported: |u1 |i1 <u2 <f2 <i4 <f4)");
}

StatusOr<Tensor> ParseNpyImpl(ByteSpan file) {
  if (file.size() < kMagicLen || std::memcmp(file.data(), kMagic, kMagicLen) != 0) {
    return InvalidArgument("not a .npy file (no \\x93NUMPY magic)");
  }
  if (file.size() < kMagicLen + 4) {
    return InvalidArgument("truncated: " + Str(static_cast<int64_t>(file.size())) +
                           " bytes, shorter than the version and header length");
  }
  const int major = file[6], minor = file[7];
  size_t header_len = 0, header_start = 0;
  if (major == 1 && minor == 0) {
    header_len = file[8] | (size_t{file[9]} << 8);
    header_start = 10;
  } else if (major == 2 && minor == 0) {
    if (file.size() < 12) return InvalidArgument("truncated: no room for the header length");
    header_len =
        file[8] | (size_t{file[9]} << 8) | (size_t{file[10]} << 16) | (size_t{file[11]} << 24);
    header_start = 12;
  } else {
    return InvalidArgument("format version " + Str(major) + "." + Str(minor) +
                           " is not supported (1.0 and 2.0 are)");
  }
  if (header_len > file.size() - header_start) {
    return InvalidArgument("truncated: header of " + Str(static_cast<int64_t>(header_len)) +
                           " bytes, file has " + Str(static_cast<int64_t>(file.size())));
  }
  const std::string header(reinterpret_cast<const char*>(file.data()) + header_start, header_len);
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  DPUEMU_RETURN_IF_ERROR(HeaderParser(header).Parse(&descr, &fortran, &shape));
  DType dtype;
  DPUEMU_ASSIGN_OR_RETURN(dtype, DescrType(descr));
  if (fortran) {
    return InvalidArgument(
        "header: fortran_order is True; only C order is supported "
        "(save np.ascontiguousarray(arr))");
  }
  int64_t bytes = DTypeBytes(dtype);
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(bytes, d, &bytes)) {
      Tensor t;
      t.shape = shape;
      return InvalidArgument("header: shape " + t.ShapeString() + " of " + descr +
                             " overflows int64 bytes");
    }
  }
  const size_t data_start = header_start + header_len;
  const int64_t have = static_cast<int64_t>(file.size() - data_start);
  if (have != bytes) {
    Tensor t;
    t.shape = shape;
    return InvalidArgument(std::string(have < bytes ? "truncated" : "trailing bytes") + ": shape " +
                           t.ShapeString() + " of " + descr + " needs " + Str(bytes) +
                           " data bytes, file has " + Str(have));
  }
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.assign(file.begin() + data_start, file.end());
  return t;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

}  // namespace

const char* NpyDescr(DType t) {
  switch (t) {
    case DType::kU8:
      return "|u1";
    case DType::kI8:
      return "|i1";
    case DType::kFP16:
      return "<f2";
    case DType::kBF16:
      return "<u2";
    case DType::kI32:
      return "<i4";
    case DType::kFP32:
      return "<f4";
    case DType::kI4:  // host tensors hold one int4 value per byte
      return "|i1";
    case DType::kU4:
      return "|u1";
  }
  return "?";
}

StatusOr<Tensor> ParseNpy(ByteSpan file, const std::string& name) {
  StatusOr<Tensor> t = ParseNpyImpl(file);
  if (!t.ok()) return t.status().Annotate(name);
  return t;
}

StatusOr<Tensor> ReadNpy(const std::string& path) {
  std::vector<uint8_t> bytes;
  DPUEMU_ASSIGN_OR_RETURN(bytes, ReadFileBytes(path));
  return ParseNpy(bytes, path);
}

StatusOr<std::vector<uint8_t>> EncodeNpy(const Tensor& t) {
  if (!HasExactBytes(t)) {
    return InvalidArgument("npy: tensor " + t.ShapeString() + " of " + DTypeName(t.dtype) +
                           " has " + Str(static_cast<int64_t>(t.bytes.size())) + " bytes");
  }
  std::string dict =
      std::string("{'descr': '") + NpyDescr(t.dtype) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.shape.size(); ++i) dict += (i ? ", " : "") + Str(t.shape[i]);
  dict += t.shape.size() == 1 ? ",), }" : "), }";
  // numpy pads the header with spaces and a newline so the data starts 64-byte aligned.
  const size_t total = static_cast<size_t>(AlignUp(static_cast<int64_t>(10 + dict.size() + 1), 64));
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  if (dict.size() > 0xFFFF) return InvalidArgument("npy: header too long for format 1.0");
  std::vector<uint8_t> out(kMagic, kMagic + kMagicLen);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(dict.size() & 0xFF));
  out.push_back(static_cast<uint8_t>(dict.size() >> 8));
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

Status WriteNpy(const std::string& path, const Tensor& t) {
  std::vector<uint8_t> bytes;
  DPUEMU_ASSIGN_OR_RETURN(bytes, EncodeNpy(t));
  return WriteFileBytes(path, bytes);
}

StatusOr<std::vector<uint8_t>> ReadFileBytes(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return NotFound(path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f.get())) > 0)
    bytes.insert(bytes.end(), buf, buf + n);
  if (std::ferror(f.get())) return InvalidArgument(path + ": read error");
  return bytes;
}

Status WriteFileBytes(const std::string& path, ByteSpan bytes) {
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) return NotFound(path + ": cannot create: " + std::strerror(errno));
  // fwrite with a null pointer is undefined even for 0 bytes (an empty tensor has no data).
  if ((!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) ||
      std::fclose(f.release()) != 0) {
    return Internal(path + ": write failed: " + std::strerror(errno));
  }
  return OkStatus();
}

}  // namespace dpuemu
