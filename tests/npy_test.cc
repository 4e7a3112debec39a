#include "runtime/npy.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "hw/dtype.h"
#include "hw/tensor.h"
#include "tests/test_util.h"

namespace dpuemu {
namespace {

constexpr DType kAll[] = {DType::kU8,   DType::kI8,  DType::kFP16,
                          DType::kBF16, DType::kI32, DType::kFP32};

std::vector<uint8_t> Bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A .npy file with the given version, header text (as is) and data bytes.
std::vector<uint8_t> NpyFile(const std::string& header, size_t data_bytes, int major = 1) {
  std::vector<uint8_t> f = Bytes(std::string("\x93NUMPY", 6));
  f.push_back(static_cast<uint8_t>(major));
  f.push_back(0);
  const size_t n = header.size();
  f.push_back(static_cast<uint8_t>(n));
  f.push_back(static_cast<uint8_t>(n >> 8));
  if (major == 2) {
    f.push_back(static_cast<uint8_t>(n >> 16));
    f.push_back(static_cast<uint8_t>(n >> 24));
  }
  f.insert(f.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) f.push_back(static_cast<uint8_t>(i * 7 + 1));
  return f;
}

// The error of parsing `file`; fails the test when it parses.
std::string ParseError(const std::vector<uint8_t>& file) {
  StatusOr<Tensor> t = ParseNpy(file, "bad.npy");
  EXPECT_FALSE(t.ok()) << "parsed: " << (t.ok() ? t->ShapeString() : "");
  if (t.ok()) return "";
  EXPECT_EQ(t.status().message().rfind("bad.npy: ", 0), 0u) << t.status().message();
  return t.status().message();
}

TEST(NpyTest, RoundTripsEveryDTypeAndRank) {
  const std::vector<std::vector<int64_t>> shapes = {{},         {5},           {3, 4},
                                                    {2, 3, 16}, {1, 2, 3, 16}, {0, 7}};
  for (DType t : kAll) {
    for (const auto& shape : shapes) {
      Tensor x(t, shape);
      for (size_t i = 0; i < x.bytes.size(); ++i) x.bytes[i] = static_cast<uint8_t>(i * 37 + 11);
      DPUEMU_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> file, EncodeNpy(x));
      // numpy's layout: 10-byte preamble + header padded so the data is 64-byte aligned.
      EXPECT_EQ((file.size() - x.bytes.size()) % 64, 0u);
      EXPECT_EQ(file[6], 1);
      EXPECT_EQ(file[7], 0);
      EXPECT_EQ(file[file.size() - x.bytes.size() - 1], '\n');
      DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor y, ParseNpy(file, "x.npy"));
      EXPECT_EQ(FirstDifference(x, y), "") << DTypeName(t) << " " << x.ShapeString();
    }
  }
}

TEST(NpyTest, WritesNumpysHeader) {
  Tensor x(DType::kFP16, {3});
  DPUEMU_ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> file, EncodeNpy(x));
  const std::string header(file.begin() + 10, file.end() - 6);
  EXPECT_EQ(header.substr(0, header.find('}') + 1),
            "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }");
  EXPECT_EQ(header.find_first_not_of(' ', header.find('}') + 1), header.size() - 1);
  Tensor y(DType::kBF16, {2, 3});
  DPUEMU_ASSERT_OK_AND_ASSIGN(file, EncodeNpy(y));
  EXPECT_TRUE(Contains(std::string(file.begin(), file.end()), "'descr': '<u2'"));
  EXPECT_TRUE(Contains(std::string(file.begin(), file.end()), "'shape': (2, 3)"));
}

TEST(NpyTest, DescriptorsMapOneToOne) {
  EXPECT_STREQ(NpyDescr(DType::kU8), "|u1");
  EXPECT_STREQ(NpyDescr(DType::kI8), "|i1");
  EXPECT_STREQ(NpyDescr(DType::kFP16), "<f2");
  EXPECT_STREQ(NpyDescr(DType::kBF16), "<u2");
  EXPECT_STREQ(NpyDescr(DType::kI32), "<i4");
  EXPECT_STREQ(NpyDescr(DType::kFP32), "<f4");
}

TEST(NpyTest, ReadsOtherWritersHeaders) {
  // Version 2.0, keys in another order, double quotes, no trailing comma, '<' for a 1-byte type.
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      Tensor t,
      ParseNpy(NpyFile("{\"shape\": (2,3), \"fortran_order\": False, \"descr\": \"<u1\"}\n", 6, 2),
               "v2.npy"));
  EXPECT_EQ(t.dtype, DType::kU8);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.bytes[1], 8);
  DPUEMU_ASSERT_OK_AND_ASSIGN(
      t, ParseNpy(NpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (), }   \n", 4),
                  "s.npy"));
  EXPECT_EQ(t.dtype, DType::kI32);
  EXPECT_TRUE(t.shape.empty());
}

TEST(NpyTest, RejectsBigEndian) {
  const std::string m =
      ParseError(NpyFile("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 8));
  EXPECT_TRUE(Contains(m, "big-endian")) << m;
  EXPECT_TRUE(Contains(m, "'>f4'")) << m;
}

TEST(NpyTest, RejectsFortranOrder) {
  const std::string m =
      ParseError(NpyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16));
  EXPECT_TRUE(Contains(m, "fortran_order is True")) << m;
}

TEST(NpyTest, RejectsUnsupportedDTypes) {
  for (const char* d : {"<f8", "<i2", "|b1", "<u4", "|S3", "<c8", ""}) {
    const std::string m = ParseError(NpyFile(
        std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': (1,), }\n", 8));
    EXPECT_TRUE(Contains(m, "not supported")) << d << ": " << m;
  }
}

TEST(NpyTest, RejectsTruncatedAndTrailingData) {
  const std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
  std::string m = ParseError(NpyFile(h, 23));
  EXPECT_TRUE(Contains(m, "truncated")) << m;
  EXPECT_TRUE(Contains(m, "needs 24 data bytes, file has 23")) << m;
  m = ParseError(NpyFile(h, 25));
  EXPECT_TRUE(Contains(m, "trailing bytes")) << m;
  // The header itself cut short.
  std::vector<uint8_t> f = NpyFile(h, 0);
  f.resize(f.size() - 5);
  m = ParseError(f);
  EXPECT_TRUE(Contains(m, "truncated: header")) << m;
  m = ParseError(Bytes(std::string("\x93NUMPY\x02\x00\x01", 9)));
  EXPECT_TRUE(Contains(m, "truncated: 9 bytes")) << m;  // too short for any header length
}

TEST(NpyTest, RejectsBadMagicAndVersion) {
  std::vector<uint8_t> f =
      NpyFile("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }\n", 1);
  std::vector<uint8_t> bad = f;
  bad[1] = 'X';
  EXPECT_TRUE(Contains(ParseError(bad), "not a .npy file"));
  bad = f;
  bad[6] = 3;
  const std::string m = ParseError(bad);
  EXPECT_TRUE(Contains(m, "format version 3.0 is not supported")) << m;
  EXPECT_TRUE(Contains(ParseError({}), "not a .npy file"));
}

TEST(NpyTest, RejectsHeaderGarbage) {
  struct Case {
    const char* header;
    const char* error;
  };
  const Case cases[] = {
      {"", "expected '{'"},
      {"['descr']", "expected '{'"},
      {"{'descr' '|u1'}", "expected ':' after key 'descr'"},
      {"{descr: '|u1'}", "expected a quoted string"},
      {"{'descr': '|u1", "unterminated string"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
       "unknown key 'extra'"},
      {"{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1,)}",
       "duplicate key 'descr'"},
      {"{'descr': '|u1', 'fortran_order': False}", "missing key 'shape'"},
      {"{'fortran_order': False, 'shape': (1,)}", "missing key 'descr'"},
      {"{'descr': '|u1', 'shape': (1,)}", "missing key 'fortran_order'"},
      {"{'descr': '|u1', 'fortran_order': 0, 'shape': (1,)}", "expected True or False"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': [1]}", "shape: expected '('"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1, -1)}", "non-negative integer"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1 2)}", "expected ',' or ')'"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (,)}", "non-negative integer"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1,) 'x'}", "expected ',' or '}'"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1,)} x",
       "unexpected text after the dict"},
  };
  for (const Case& c : cases) {
    const std::string m = ParseError(NpyFile(c.header, 1));
    EXPECT_TRUE(Contains(m, c.error)) << c.header << " -> " << m;
    EXPECT_TRUE(Contains(m, "header")) << m;
  }
}

TEST(NpyTest, RejectsShapesThatOverflow) {
  std::string m = ParseError(NpyFile(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n", 0));
  EXPECT_TRUE(Contains(m, "overflows int64 bytes")) << m;
  // The product fits int64 but not with the element size.
  m = ParseError(
      NpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (4611686018427387904,), }\n", 0));
  EXPECT_TRUE(Contains(m, "overflows int64 bytes")) << m;
  m = ParseError(
      NpyFile("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", 0));
  EXPECT_TRUE(Contains(m, "dimension overflows int64")) << m;
}

TEST(NpyTest, EncodeRejectsInconsistentTensor) {
  Tensor t(DType::kI32, {2, 2});
  t.bytes.pop_back();
  StatusOr<std::vector<uint8_t>> f = EncodeNpy(t);
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(Contains(f.status().message(), "[2, 2] of i32 has 15 bytes")) << f.status().message();
}

TEST(NpyTest, FilesRoundTripAndErrorsNameThePath) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp ? tmp : "/tmp";
  Tensor x(DType::kBF16, {4, 16});
  for (size_t i = 0; i < x.bytes.size(); ++i) x.bytes[i] = static_cast<uint8_t>(i);
  DPUEMU_ASSERT_OK(WriteNpy(dir + "/x.npy", x));
  DPUEMU_ASSERT_OK_AND_ASSIGN(Tensor y, ReadNpy(dir + "/x.npy"));
  EXPECT_EQ(FirstDifference(x, y), "");

  StatusOr<Tensor> missing = ReadNpy(dir + "/missing.npy");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(Contains(missing.status().message(), dir + "/missing.npy: cannot open"));
  const Status w = WriteNpy(dir + "/no/such/dir/x.npy", x);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(Contains(w.message(), dir + "/no/such/dir/x.npy: cannot create")) << w.message();

  DPUEMU_ASSERT_OK(WriteFileBytes(dir + "/cut.npy", Bytes("\x93NUMPY")));
  StatusOr<Tensor> cut = ReadNpy(dir + "/cut.npy");
  ASSERT_FALSE(cut.ok());
  EXPECT_TRUE(Contains(cut.status().message(), dir + "/cut.npy: truncated"))
      << cut.status().message();
}

}  // namespace
}  // namespace dpuemu
