// .npy reader/writer: round trip, the exact bytes NumPy writes, and every kind of bad header.
#include <gtest/gtest.h>

#include <cstring>

#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"
#include "onnx_builder.hpp"

namespace arcforge::test {
namespace {

std::string header_file(const std::string& dict, const std::string& data, char major = 1) {
  std::string h = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  h.append((64 - (prefix + h.size() + 1) % 64) % 64, ' ');
  h.push_back('\n');
  std::string out("\x93NUMPY", 6);
  out.push_back(major);
  out.push_back('\0');
  out.push_back(static_cast<char>(h.size() & 0xff));
  out.push_back(static_cast<char>(h.size() >> 8));
  if (major != 1) out.append(2, '\0');
  return out + h + data;
}

std::string floats(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * sizeof(float));
}

TEST(Npy, RoundTripKeepsShapeAndValues) {
  TempDir dir;
  const std::vector<float> v = random_values(2 * 3 * 4, 5);
  write_npy(dir.file("a.npy"), {2, 3, 4}, v.data());
  const NpyArray a = read_npy(dir.file("a.npy"));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(a.data, v);
  // 1-d and scalar shapes use NumPy's spelling, "(5,)" and "()".
  const std::string one = format_npy({5}, v.data());
  EXPECT_NE(one.find("'shape': (5,)"), std::string::npos);
  EXPECT_EQ(parse_npy(one, "one").shape, (std::vector<int64_t>{5}));
  const NpyArray s = parse_npy(format_npy({}, v.data()), "scalar");
  EXPECT_TRUE(s.shape.empty());
  ASSERT_EQ(s.data.size(), 1u);
  EXPECT_EQ(s.data[0], v[0]);
}

TEST(Npy, HeaderIsPaddedTo64BytesLikeNumpy) {
  const std::vector<float> v(6, 1.0f);
  const std::string bytes = format_npy({2, 3}, v.data());
  const std::size_t header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);
  EXPECT_EQ(bytes[10 + header_len - 1], '\n');
  EXPECT_EQ(bytes.substr(10, 60).rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0), 0u);
  EXPECT_EQ(bytes.size(), 10 + header_len + 6 * sizeof(float));
}

TEST(Npy, AcceptsVersion2AndReorderedKeys) {
  const std::string f = header_file("{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}", floats({1.5f, -2.0f}), 2);
  const NpyArray a = parse_npy(f, "v2");
  EXPECT_EQ(a.data, (std::vector<float>{1.5f, -2.0f}));
}

void expect_rejected(const std::string& bytes, const std::string& needle) {
  try {
    parse_npy(bytes, "bad.npy");
    FAIL() << "accepted a bad file, expected an error mentioning '" << needle << "'";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad.npy"), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << "expected '" << needle << "' in: " << what;
  }
}

TEST(Npy, RejectsCorruptHeaders) {
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data = floats({1, 2});
  expect_rejected("not numpy at all", "bad magic");
  std::string bad_magic = header_file(ok_dict, data);
  bad_magic[0] = 'X';
  expect_rejected(bad_magic, "bad magic");
  std::string v9 = header_file(ok_dict, data);
  v9[6] = 9;
  expect_rejected(v9, "version");
  expect_rejected(header_file(ok_dict, data).substr(0, 40), "truncated");
  expect_rejected(header_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", data), "dtype");
  expect_rejected(header_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data), "dtype");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data), "Fortran");
  expect_rejected(header_file("{'descr': '<f4', 'shape': (2,), }", data), "required");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", data), "unknown key");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data), "shape");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", data), "trailing comma");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,,3), }", data), "shape");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data), "size mismatch");
  expect_rejected(header_file(ok_dict, data + "xx"), "size mismatch");
  expect_rejected(header_file("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", data),
                  "too many elements");
  expect_rejected(header_file("{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }", data), "expected");
  std::string no_newline = header_file(ok_dict, data);
  no_newline[10 + static_cast<unsigned char>(no_newline[8]) - 1] = ' ';  // the header's last byte
  expect_rejected(no_newline, "newline");
}

TEST(Npy, ReadNamesTheMissingFile) {
  try {
    read_npy("/nonexistent/x.npy");
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.npy"), std::string::npos);
  }
}

}  // namespace
}  // namespace arcforge::test
