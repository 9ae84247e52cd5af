// .npy reader/writer for float32 arrays. The header is a Python dict literal; we parse exactly the
// three keys NumPy writes ('descr', 'fortran_order', 'shape') and reject anything else.
#include "arcforge/common/npy.hpp"

#include <bit>
#include <cctype>
#include <cstring>
#include <limits>
#include <map>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"

namespace arcforge {
namespace {

static_assert(std::endian::native == std::endian::little, "the .npy code assumes a little-endian host");

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;
constexpr int64_t kMaxElements = int64_t{1} << 32;  // 16 GiB of float32: far beyond any tensor we run

// A cursor over the header dict: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  std::map<std::string, std::string> parse_dict() {
    std::map<std::string, std::string> out;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') { ++pos_; break; }
      std::string key = parse_string();
      expect(':');
      skip_space();
      std::string value = parse_value();
      if (!out.emplace(key, value).second) fail("key '" + key + "' appears twice");
      skip_space();
      if (peek() == ',') { ++pos_; continue; }
      expect('}');
      break;
    }
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the header dict");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(file_message(name_, "bad .npy header: " + what));
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string parse_string() {
    skip_space();
    char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted key");
    std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return s;
  }
  // Returns the raw text of a value: a quoted string (without quotes), a tuple "(...)" or a word.
  std::string parse_value() {
    char c = peek();
    if (c == '\'' || c == '"') {
      std::string marked(1, '\'');  // a leading quote marks "was a string"
      marked += parse_string();
      return marked;
    }
    if (c == '(') {
      std::size_t end = text_.find(')', pos_);
      if (end == std::string_view::npos) fail("unterminated shape tuple");
      std::string s(text_.substr(pos_, end - pos_ + 1));
      pos_ = end + 1;
      return s;
    }
    std::size_t start = pos_;
    while (pos_ < text_.size() && std::isalnum(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    if (start == pos_) fail("expected a value");
    return std::string(text_.substr(start, pos_ - start));
  }

  std::string_view text_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

std::vector<int64_t> parse_shape(const std::string& tuple, const std::string& name) {
  auto fail = [&](const std::string& what) {
    throw InputError(file_message(name, "bad .npy shape " + tuple + ": " + what));
  };
  std::vector<int64_t> shape;
  std::size_t i = 1;  // past '('
  const std::size_t end = tuple.size() - 1;  // at ')'
  bool expect_number = true;
  while (i < end) {
    char c = tuple[i];
    if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
    if (expect_number) {
      if (!std::isdigit(static_cast<unsigned char>(c))) fail("expected a non-negative integer");
      int64_t v = 0;
      while (i < end && std::isdigit(static_cast<unsigned char>(tuple[i]))) {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("dimension too large");
        v = v * 10 + (tuple[i] - '0');
        ++i;
      }
      shape.push_back(v);
      expect_number = false;
    } else {
      if (c != ',') fail("expected ','");
      ++i;
      expect_number = true;
    }
  }
  // "(3)" is not a tuple in Python; NumPy writes "(3,)".
  if (shape.size() == 1 && expect_number == false) fail("a 1-d shape needs a trailing comma");
  return shape;
}

}  // namespace

NpyArray parse_npy(std::string_view bytes, const std::string& name) {
  auto fail = [&](const std::string& what) { throw InputError(file_message(name, what)); };
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0) fail("not a .npy file (bad magic)");
  const auto major = static_cast<unsigned char>(bytes[6]);
  const auto minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    fail("unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor));
  }
  std::size_t header_len = 0;
  std::size_t prefix = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    prefix = 10;
  } else {
    if (bytes.size() < 12) fail("truncated .npy header");
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    prefix = 12;
  }
  if (header_len > 65536) fail("header length " + std::to_string(header_len) + " is implausibly large");
  if (bytes.size() < prefix + header_len) fail("truncated .npy header");
  std::string_view header = bytes.substr(prefix, header_len);
  if (header.empty() || header.back() != '\n') fail("bad .npy header: it must end with a newline");

  auto dict = HeaderParser(header, name).parse_dict();
  for (const auto& [key, value] : dict) {
    if (key != "descr" && key != "fortran_order" && key != "shape") fail("bad .npy header: unknown key '" + key + "'");
  }
  if (!dict.count("descr") || !dict.count("fortran_order") || !dict.count("shape")) {
    fail("bad .npy header: 'descr', 'fortran_order' and 'shape' are all required");
  }
  const std::string& descr = dict["descr"];
  if (descr != "'<f4") {
    fail("unsupported dtype " + (descr.empty() ? descr : descr.substr(1)) + " (only little-endian float32 '<f4')");
  }
  if (dict["fortran_order"] == "True") fail("Fortran-order arrays are not supported");
  if (dict["fortran_order"] != "False") fail("bad .npy header: fortran_order must be True or False");
  const std::string& shape_text = dict["shape"];
  if (shape_text.empty() || shape_text.front() != '(') fail("bad .npy header: shape must be a tuple");

  NpyArray out;
  out.shape = parse_shape(shape_text, name);
  int64_t count = 1;
  for (int64_t d : out.shape) {
    if (d != 0 && count > kMaxElements / d) fail("shape " + shape_text + " has too many elements");
    count *= d;
  }
  if (count > kMaxElements) fail("shape " + shape_text + " has too many elements");
  const std::size_t data_bytes = static_cast<std::size_t>(count) * sizeof(float);
  const std::size_t have = bytes.size() - prefix - header_len;
  if (have != data_bytes) {
    fail("data size mismatch: shape " + shape_text + " needs " + std::to_string(data_bytes) + " bytes, file has " +
         std::to_string(have));
  }
  out.data.resize(static_cast<std::size_t>(count));
  if (count > 0) std::memcpy(out.data.data(), bytes.data() + prefix + header_len, data_bytes);
  return out;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

std::string format_npy(const std::vector<int64_t>& shape, const float* data) {
  std::string shape_text = "(";
  int64_t count = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) throw InputError("write_npy: negative dimension " + std::to_string(shape[i]));
    shape_text += std::to_string(shape[i]);
    if (i + 1 < shape.size() || shape.size() == 1) shape_text += shape.size() == 1 ? "," : ", ";
    count *= shape[i];
  }
  shape_text += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // Pad so that magic + version + length + header is a multiple of 64 bytes, ending in '\n'.
  const bool v2 = header.size() + 1 + 10 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(v2 ? 2 : 1));
  out.push_back('\0');
  const std::size_t len = header.size();
  out.push_back(static_cast<char>(len & 0xff));
  out.push_back(static_cast<char>((len >> 8) & 0xff));
  if (v2) {
    out.push_back(static_cast<char>((len >> 16) & 0xff));
    out.push_back(static_cast<char>((len >> 24) & 0xff));
  }
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(count) * sizeof(float));
  return out;
}

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  write_file_atomically(path, format_npy(shape, data));
}

}  // namespace arcforge
