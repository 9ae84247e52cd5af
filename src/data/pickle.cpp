// The safe pickle subset: a stack machine over a whitelist of opcodes and globals. See pickle.hpp
// for what is accepted; every other input is an InputError with the opcode and its byte offset.
#include "arcforge/data/pickle.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <limits>
#include <optional>
#include <unordered_map>

#include "arcforge/common/error.hpp"

namespace arcforge::data::pickle {
namespace {

constexpr Ref kNoneRef = 0;
constexpr Ref kFalseRef = 1;
constexpr Ref kTrueRef = 2;

const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

std::string hex_byte(uint8_t b) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "0x%02x", b);
  return buffer;
}

// Untrusted text in an error message: non-printable bytes escaped, long text cut.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x" + hex_byte(c).substr(2);
    }
  }
  if (s.size() > 80) out += "...";
  return out;
}

// The whole whitelist. Each entry builds data; none runs anything.
enum class Callable { kReconstruct, kNdArrayClass, kDtypeClass, kCodecsEncode, kBytesClass };

std::optional<Callable> whitelisted(std::string_view qualified) {
  if (qualified == "numpy.core.multiarray._reconstruct" ||
      qualified == "numpy._core.multiarray._reconstruct") {
    return Callable::kReconstruct;
  }
  if (qualified == "numpy.ndarray") return Callable::kNdArrayClass;
  if (qualified == "numpy.dtype") return Callable::kDtypeClass;
  if (qualified == "_codecs.encode") return Callable::kCodecsEncode;
  if (qualified == "__builtin__.bytes" || qualified == "builtins.bytes") return Callable::kBytesClass;
  return std::nullopt;
}

// One code point of strict UTF-8 at s[i] (no overlongs, no surrogates); advances i.
bool next_code_point(std::string_view s, size_t& i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    ++i;
    return true;
  }
  size_t extra = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    extra = 1, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    extra = 2, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    extra = 3, cp = b0 & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (s.size() - i <= extra) return false;
  for (size_t k = 1; k <= extra; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += extra + 1;
  return true;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Unpickler {
 public:
  Unpickler(std::string_view in, const std::string& name, const Limits& limits)
      : in_(in), name_(name), limits_(limits) {
    const size_t relative = in.size() <= (std::numeric_limits<size_t>::max() - (1u << 20)) / 4
                                ? in.size() * 4 + (1u << 20)
                                : std::numeric_limits<size_t>::max();
    byte_budget_ = std::min(limits.max_total_bytes, relative);
    max_objects_ = std::min<size_t>(limits.max_objects, std::numeric_limits<Ref>::max());
  }

  Document run() {
    if (in_.size() > limits_.max_input_bytes) {
      throw InputError(file_message(name_, "pickle: " + std::to_string(in_.size()) +
                                               " bytes is more than the limit of " +
                                               std::to_string(limits_.max_input_bytes)));
    }
    add_constant(Kind::kNone, false);
    add_constant(Kind::kBool, false);
    add_constant(Kind::kBool, true);
    while (true) {
      op_offset_ = pos_;
      if (pos_ >= in_.size()) {
        have_op_ = false;
        fail("truncated: the data ends at byte " + std::to_string(pos_) + " without a STOP opcode");
      }
      op_ = static_cast<uint8_t>(in_[pos_++]);
      have_op_ = true;
      if (step()) break;
    }
    doc_.end_offset = pos_;
    return std::move(doc_);
  }

 private:
  enum : uint8_t { kSealed = 1, kBuilt = 2 };

  [[noreturn]] void fail(const std::string& what) const {
    std::string where = have_op_ ? std::string(opcode_name(op_) ? opcode_name(op_) : hex_byte(op_).c_str()) +
                                       " at byte " + std::to_string(op_offset_)
                                 : "at byte " + std::to_string(op_offset_);
    throw InputError(file_message(name_, "pickle: " + what + " (" + where + ")"));
  }

  // ---------------------------------------------------------------- input ----------
  size_t remaining() const { return in_.size() - pos_; }
  std::string_view take(uint64_t n) {
    if (n > remaining()) {
      fail("truncated: needs " + std::to_string(n) + " bytes, " + std::to_string(remaining()) + " left");
    }
    std::string_view out = in_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return out;
  }
  uint64_t little_endian(size_t n) {
    std::string_view b = take(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
    return v;
  }
  uint8_t u8() { return static_cast<uint8_t>(little_endian(1)); }
  uint32_t u32() { return static_cast<uint32_t>(little_endian(4)); }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  // A protocol-0 argument: the text up to the next newline.
  std::string_view line() {
    const size_t end = in_.find('\n', pos_);
    if (end == std::string_view::npos) fail("truncated: no end of line after the argument");
    std::string_view out = in_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  int64_t decimal(std::string_view text, const char* what) {
    int64_t value = 0;
    const char* first = text.data();
    if (!text.empty() && text[0] == '+') ++first;
    auto [end, ec] = std::from_chars(first, text.data() + text.size(), value);
    if (ec == std::errc::result_out_of_range) fail(std::string(what) + " '" + printable(text) + "' does not fit in 64 bits");
    if (ec != std::errc() || end != text.data() + text.size() || first == end) {
      fail(std::string("bad ") + what + " '" + printable(text) + "'");
    }
    return value;
  }

  // ---------------------------------------------------------------- objects ----------
  void add_constant(Kind kind, bool value) {
    Object o;
    o.kind = kind;
    o.boolean = value;
    make(std::move(o), 0);
  }
  Ref make(Object&& object, int depth) {
    if (doc_.objects.size() >= max_objects_) fail("more than " + std::to_string(max_objects_) + " objects (limit)");
    doc_.objects.push_back(std::move(object));
    depth_.push_back(depth);
    flags_.push_back(0);
    return static_cast<Ref>(doc_.objects.size() - 1);
  }
  const Object& obj(Ref ref) const { return doc_.objects[ref]; }
  const char* kind_of(Ref ref) const { return kind_name(obj(ref).kind); }
  void charge(size_t bytes) {
    if (bytes > byte_budget_ - bytes_used_) {
      fail("more than " + std::to_string(byte_budget_) + " bytes of strings and arrays in total (limit)");
    }
    bytes_used_ += bytes;
  }
  Ref new_int(int64_t value) {
    Object o;
    o.kind = Kind::kInt;
    o.integer = value;
    return make(std::move(o), 0);
  }
  Ref new_float(double value) {
    Object o;
    o.kind = Kind::kFloat;
    o.real = value;
    return make(std::move(o), 0);
  }
  Ref new_text(Kind kind, std::string&& data) {  // kBytes or kStr; the caller charged
    Object o;
    o.kind = kind;
    o.data = std::move(data);
    return make(std::move(o), 0);
  }
  Ref new_bytes(std::string_view data) {
    charge(data.size());
    return new_text(Kind::kBytes, std::string(data));
  }
  Ref new_str_utf8(std::string_view data) {
    size_t i = 0;
    char32_t cp = 0;
    while (i < data.size()) {
      if (!next_code_point(data, i, cp)) fail("text is not valid UTF-8 (at its byte " + std::to_string(i) + ")");
    }
    charge(data.size());
    return new_text(Kind::kStr, std::string(data));
  }
  // Marks `child` as placed inside another object: from now on it may not change, which keeps the
  // object graph acyclic and every depth exact.
  int seal(Ref child) {
    flags_[child] |= kSealed;
    return depth_[child] + 1;
  }
  void check_depth(int depth) {
    if (depth > limits_.max_depth) fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels (limit)");
  }
  Ref new_container(Kind kind, std::vector<Ref>&& items) {
    int depth = 1;
    for (Ref r : items) depth = std::max(depth, seal(r));
    check_depth(depth);
    charge(items.size() * sizeof(Ref));
    Object o;
    o.kind = kind;
    o.items = std::move(items);
    return make(std::move(o), depth);
  }
  void check_mutable(Ref target) {
    if (flags_[target] & kSealed) {
      fail("changing a " + std::string(kind_of(target)) +
           " after it was put inside another object (a cyclic or reordered pickle) is not supported");
    }
  }
  // Adds items to the list or dict `target` (dict items come as key, value, key, value, ...).
  void extend(Ref target, const std::vector<Ref>& items, Kind expected) {
    if (obj(target).kind != expected) {
      fail(std::string("expected a ") + kind_name(expected) + " to add to, got a " + kind_of(target));
    }
    check_mutable(target);
    int depth = depth_[target];
    for (Ref r : items) {
      if (r == target) fail("a container that contains itself (a cyclic pickle) is not supported");
      depth = std::max(depth, seal(r));
    }
    if (expected == Kind::kDict) check_dict_items(items);
    check_depth(depth);
    charge(items.size() * sizeof(Ref));
    depth_[target] = depth;
    auto& dest = doc_.objects[target].items;
    dest.insert(dest.end(), items.begin(), items.end());
  }
  void check_dict_items(const std::vector<Ref>& items) {
    if (items.size() % 2 != 0) fail("a dict needs key, value pairs, got an odd number of items");
    for (size_t i = 0; i < items.size(); i += 2) {
      const Kind k = obj(items[i]).kind;
      if (k == Kind::kList || k == Kind::kDict || k == Kind::kNdArray) {
        fail(std::string("a ") + kind_name(k) + " cannot be a dict key (unhashable)");
      }
    }
  }

  // ---------------------------------------------------------------- stack ----------
  size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Ref ref) {
    if (stack_.size() >= limits_.max_stack) fail("more than " + std::to_string(limits_.max_stack) + " stack entries (limit)");
    stack_.push_back(ref);
  }
  Ref pop() {
    if (stack_.size() <= fence()) fail("stack underflow");
    const Ref r = stack_.back();
    stack_.pop_back();
    return r;
  }
  Ref peek() const {
    if (stack_.size() <= fence()) fail("stack underflow");
    return stack_.back();
  }
  void push_mark() {
    if (marks_.size() >= limits_.max_marks) fail("more than " + std::to_string(limits_.max_marks) + " open MARKs (limit)");
    marks_.push_back(stack_.size());
  }
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("no MARK to collect items from");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Ref> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  std::vector<Ref> pop_n(size_t n) {
    if (stack_.size() - fence() < n) fail("stack underflow");
    std::vector<Ref> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return items;
  }

  // ---------------------------------------------------------------- memo ----------
  void memo_put(uint64_t index) {
    if (index > std::numeric_limits<uint32_t>::max()) fail("memo index " + std::to_string(index) + " is too large");
    const Ref value = peek();
    auto it = memo_.find(static_cast<uint32_t>(index));
    if (it != memo_.end()) {
      it->second = value;
      return;
    }
    if (memo_.size() >= limits_.max_memo) fail("more than " + std::to_string(limits_.max_memo) + " memo entries (limit)");
    memo_.emplace(static_cast<uint32_t>(index), value);
  }
  void memo_get(uint64_t index) {
    auto it = index <= std::numeric_limits<uint32_t>::max() ? memo_.find(static_cast<uint32_t>(index)) : memo_.end();
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  // ---------------------------------------------------------------- scalars ----------
  // LONG1/LONG4: little-endian two's complement of any length; must fit in int64.
  int64_t long_bytes(std::string_view b) {
    if (b.empty()) return 0;
    const bool negative = static_cast<unsigned char>(b.back()) & 0x80;
    for (size_t i = 8; i < b.size(); ++i) {
      if (static_cast<unsigned char>(b[i]) != (negative ? 0xFF : 0x00)) fail("integer does not fit in 64 bits");
    }
    if (b.size() > 8 && ((static_cast<unsigned char>(b[7]) & 0x80) != 0) != negative) {
      fail("integer does not fit in 64 bits");
    }
    uint64_t v = negative ? ~uint64_t{0} : 0;
    for (size_t i = 0; i < std::min<size_t>(b.size(), 8); ++i) {
      v &= ~(uint64_t{0xFF} << (8 * i));
      v |= uint64_t{static_cast<unsigned char>(b[i])} << (8 * i);
    }
    return static_cast<int64_t>(v);
  }
  // STRING: a Python repr of a str, decoded like codecs.escape_decode.
  std::string unescape_string(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\') {
        out += s[i];
        continue;
      }
      if (++i == s.size()) fail("STRING argument ends with a lone backslash");
      const char c = s[i];
      switch (c) {
        case '\n': break;  // a line continuation
        case '\\': case '\'': case '"': out += c; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': {
          const int hi = i + 1 < s.size() ? hex_value(s[i + 1]) : -1;
          const int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
          if (hi < 0 || lo < 0) fail("invalid \\x escape in a STRING argument");
          out += static_cast<char>(hi * 16 + lo);
          i += 2;
          break;
        }
        default:
          if (c >= '0' && c <= '7') {
            int value = c - '0';
            for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) {
              value = value * 8 + (s[++i] - '0');
            }
            out += static_cast<char>(value & 0xFF);
          } else {
            out += '\\';  // unknown escapes are kept, as Python does
            out += c;
          }
      }
    }
    return out;
  }
  // UNICODE: raw-unicode-escape (latin-1 bytes plus \uXXXX and \UXXXXXXXX) to UTF-8.
  std::string raw_unicode_escape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
        const size_t digits = s[i + 1] == 'u' ? 4 : 8;
        if (s.size() - (i + 2) < digits) fail("truncated \\u escape in a UNICODE argument");
        char32_t cp = 0;
        for (size_t k = 0; k < digits; ++k) {
          const int h = hex_value(s[i + 2 + k]);
          if (h < 0) fail("bad \\u escape in a UNICODE argument");
          cp = cp * 16 + static_cast<char32_t>(h);
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("\\u escape outside Unicode or a surrogate");
        append_utf8(out, cp);
        i += 1 + digits;
      } else {
        append_utf8(out, c);
      }
    }
    return out;
  }
  // The value of a text argument that Python 2 pickles may hold as str (bytes) and Python 3 as str.
  const std::string* text_value(Ref ref) const {
    const Object& o = obj(ref);
    return o.kind == Kind::kStr || o.kind == Kind::kBytes ? &o.data : nullptr;
  }

  // ---------------------------------------------------------------- globals and calls ----------
  void push_global(std::string_view module, std::string_view name) {
    std::string qualified = std::string(module) + "." + std::string(name);
    if (!whitelisted(qualified)) {
      fail("global '" + printable(module) + " " + printable(name) +
           "' is not allowed: only NumPy arrays and byte strings are read, nothing is imported or called "
           "(loading this file in Python could run code)");
    }
    charge(qualified.size());
    Object o;
    o.kind = Kind::kGlobal;
    o.data = std::move(qualified);
    push(make(std::move(o), 0));
  }

  void reduce() {
    const Ref args = pop();
    const Ref callable = pop();
    if (obj(callable).kind != Kind::kGlobal) {
      fail(std::string("REDUCE calls a ") + kind_of(callable) + "; only whitelisted NumPy and codecs globals may be called");
    }
    if (obj(args).kind != Kind::kTuple) fail(std::string("REDUCE arguments must be a tuple, got a ") + kind_of(args));
    seal(args);
    const std::vector<Ref> a = obj(args).items;
    switch (*whitelisted(obj(callable).data)) {
      case Callable::kReconstruct: push(reconstruct(a)); break;
      case Callable::kDtypeClass: push(new_dtype(a)); break;
      case Callable::kCodecsEncode: push(codecs_encode(a)); break;
      case Callable::kBytesClass:
        if (!a.empty()) fail("bytes() with arguments is not supported (Python writes only bytes() for b'')");
        push(new_bytes(""));
        break;
      case Callable::kNdArrayClass:
        fail("calling numpy.ndarray directly is not supported (NumPy pickles arrays through _reconstruct)");
    }
  }

  // numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b'): an empty array that BUILD fills.
  Ref reconstruct(const std::vector<Ref>& a) {
    if (a.size() != 3) fail("_reconstruct takes 3 arguments, got " + std::to_string(a.size()));
    if (obj(a[0]).kind != Kind::kGlobal || obj(a[0]).data != "numpy.ndarray") {
      fail("_reconstruct of anything but numpy.ndarray is not supported");
    }
    if (obj(a[1]).kind != Kind::kTuple) fail("_reconstruct's shape must be a tuple");
    if (!text_value(a[2])) fail("_reconstruct's type code must be a byte string");
    Object o;
    o.kind = Kind::kNdArray;
    o.shape = {0};
    o.dtype = DType{'|', 'i', 1};  // type code 'b' is int8
    return make(std::move(o), 1);
  }

  DType parse_dtype_name(const std::string& name) {
    std::string_view s = name;
    DType t;
    char order = 0;
    if (!s.empty() && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
      order = s[0];
      s.remove_prefix(1);
    }
    int size = 0;
    if (s.size() >= 2) {
      auto [end, ec] = std::from_chars(s.data() + 1, s.data() + s.size(), size);
      if (ec != std::errc() || end != s.data() + s.size()) size = 0;
    }
    const char kind = s.empty() ? 0 : s[0];
    const bool ok = (kind == 'b' && size == 1) ||
                    ((kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8)) ||
                    (kind == 'f' && (size == 2 || size == 4 || size == 8));
    if (!ok) fail("unsupported numpy dtype '" + printable(name) + "' (only bool, integer and float arrays are read)");
    t.kind = kind;
    t.item_size = size;
    t.byte_order = size == 1 ? '|' : (order == '>' ? '>' : '<');  // '=' / none: a little-endian writer
    return t;
  }

  // numpy.dtype('u1', False, True)
  Ref new_dtype(const std::vector<Ref>& a) {
    if (a.empty() || a.size() > 3) fail("numpy.dtype takes 1 to 3 arguments, got " + std::to_string(a.size()));
    const std::string* name = text_value(a[0]);
    if (!name) fail("numpy.dtype's first argument must be a string");
    Object o;
    o.kind = Kind::kDtype;
    o.dtype = parse_dtype_name(*name);
    return make(std::move(o), 0);
  }

  // _codecs.encode(u'...', 'latin1'): how Python 3 writes bytes at protocol 0-2.
  Ref codecs_encode(const std::vector<Ref>& a) {
    if (a.size() != 2) fail("_codecs.encode takes (text, 'latin1') here, got " + std::to_string(a.size()) + " arguments");
    if (obj(a[0]).kind != Kind::kStr || obj(a[1]).kind != Kind::kStr) fail("_codecs.encode needs two str arguments");
    const std::string& encoding = obj(a[1]).data;
    if (encoding != "latin1" && encoding != "latin-1") {
      fail("_codecs.encode with encoding '" + printable(encoding) + "' is not supported (only latin1)");
    }
    const std::string& text = obj(a[0]).data;  // valid UTF-8: checked when it was read
    charge(text.size());
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    char32_t cp = 0;
    while (i < text.size()) {
      next_code_point(text, i, cp);
      if (cp > 0xFF) fail("_codecs.encode: the text has a character above U+00FF, which latin1 cannot encode");
      out += static_cast<char>(cp);
    }
    return new_text(Kind::kBytes, std::move(out));
  }

  void build() {
    const Ref state = pop();
    const Ref target = peek();
    const Kind kind = obj(target).kind;
    if (kind != Kind::kNdArray && kind != Kind::kDtype) {
      fail(std::string("BUILD on a ") + kind_name(kind) +
           " is not allowed: it would call __setstate__ (only NumPy arrays and dtypes are built)");
    }
    check_mutable(target);
    if (flags_[target] & kBuilt) fail(std::string("a ") + kind_name(kind) + " is built twice");
    if (obj(state).kind != Kind::kTuple) fail(std::string("BUILD state must be a tuple, got a ") + kind_of(state));
    seal(state);
    if (kind == Kind::kDtype) {
      build_dtype(target, obj(state).items);
    } else {
      build_array(target, obj(state).items);
    }
    flags_[target] |= kBuilt;
  }

  // (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata])
  void build_dtype(Ref target, const std::vector<Ref>& s) {
    if (s.size() != 8 && s.size() != 9) fail("numpy.dtype state must have 8 or 9 items, got " + std::to_string(s.size()));
    const std::string* order = text_value(s[1]);
    if (!order || order->size() != 1 || std::string_view("<>|=").find((*order)[0]) == std::string_view::npos) {
      fail("numpy.dtype state has a bad byte order");
    }
    for (int i = 2; i <= 4; ++i) {
      if (s[i] != kNoneRef) fail("structured or sub-array numpy dtypes are not supported");
    }
    DType& t = doc_.objects[target].dtype;
    if (t.item_size > 1) t.byte_order = (*order)[0] == '>' ? '>' : '<';
  }

  // ([version,] shape, dtype, is_fortran, raw data)
  void build_array(Ref target, const std::vector<Ref>& s) {
    if (s.size() != 4 && s.size() != 5) fail("numpy.ndarray state must have 4 or 5 items, got " + std::to_string(s.size()));
    const size_t o = s.size() == 5 ? 1 : 0;
    const Object& shape = obj(s[o]);
    const Object& dtype = obj(s[o + 1]);
    const Object& fortran = obj(s[o + 2]);
    const Object& data = obj(s[o + 3]);
    if (shape.kind != Kind::kTuple || shape.items.size() > 32) fail("numpy.ndarray shape must be a tuple of at most 32 ints");
    if (dtype.kind != Kind::kDtype) fail(std::string("numpy.ndarray dtype must be a numpy.dtype, got a ") + kind_name(dtype.kind));
    if (fortran.kind != Kind::kBool && fortran.kind != Kind::kInt) fail("numpy.ndarray fortran flag must be a bool");
    if (data.kind == Kind::kList) fail("numpy object arrays are not supported");
    if (data.kind != Kind::kBytes) fail(std::string("numpy.ndarray data must be bytes, got a ") + kind_name(data.kind));
    std::vector<int64_t> dims;
    uint64_t count = 1;
    for (Ref r : shape.items) {
      const Object& d = obj(r);
      if (d.kind != Kind::kInt || d.integer < 0) fail("numpy.ndarray shape must hold non-negative ints");
      dims.push_back(d.integer);
      if (d.integer != 0 && count > std::numeric_limits<uint64_t>::max() / 8 / static_cast<uint64_t>(d.integer)) {
        fail("numpy.ndarray shape is too large");
      }
      count *= static_cast<uint64_t>(d.integer);
    }
    const uint64_t need = count * static_cast<uint64_t>(dtype.dtype.item_size);
    if (need != data.data.size()) {
      fail("numpy.ndarray data has " + std::to_string(data.data.size()) + " bytes, its shape and dtype " +
           dtype.dtype.str() + " need " + std::to_string(need));
    }
    charge(data.data.size());
    Object& array = doc_.objects[target];
    array.shape = std::move(dims);
    array.dtype = dtype.dtype;
    array.fortran_order = fortran.kind == Kind::kBool ? fortran.boolean : fortran.integer != 0;
    array.data = data.data;
  }

  // ---------------------------------------------------------------- the machine ----------
  // Runs the opcode in op_; true at STOP.
  bool step() {
    switch (op_) {
      case 0x80: {  // PROTO
        const int p = u8();
        if (p > 5) fail("unsupported pickle protocol " + std::to_string(p));
        doc_.protocol = p;
        break;
      }
      case 0x95: {  // FRAME: a length prefix for buffering; the opcodes inside are read as usual
        const uint64_t n = little_endian(8);
        if (n > remaining()) fail("truncated: the frame needs " + std::to_string(n) + " bytes, " + std::to_string(remaining()) + " left");
        break;
      }
      case '.': {
        const Ref value = pop();
        if (!stack_.empty() || !marks_.empty()) {
          fail(std::to_string(stack_.size()) + " values and " + std::to_string(marks_.size()) +
               " MARKs left over at STOP (a malformed pickle)");
        }
        doc_.root = value;
        return true;
      }
      case '(': push_mark(); break;
      case '0':  // POP: the top item, or the mark when nothing is above it
        if (stack_.size() > fence()) {
          pop();
        } else {
          pop_mark();
        }
        break;
      case '1': pop_mark(); break;
      case '2': push(peek()); break;
      case 'N': push(kNoneRef); break;
      case 0x88: push(kTrueRef); break;
      case 0x89: push(kFalseRef); break;
      case 'K': push(new_int(u8())); break;
      case 'M': push(new_int(static_cast<int64_t>(little_endian(2)))); break;
      case 'J': push(new_int(i32())); break;
      case 0x8a: push(new_int(long_bytes(take(u8())))); break;
      case 0x8b: {
        const int32_t n = i32();
        if (n < 0) fail("negative LONG4 length");
        push(new_int(long_bytes(take(static_cast<uint64_t>(n)))));
        break;
      }
      case 'I': {
        const std::string_view text = line();
        if (text == "00") {  // Python 2.2's bools
          push(kFalseRef);
        } else if (text == "01") {
          push(kTrueRef);
        } else {
          push(new_int(decimal(text, "INT")));
        }
        break;
      }
      case 'L': {
        std::string_view text = line();
        if (!text.empty() && text.back() == 'L') text.remove_suffix(1);
        push(new_int(decimal(text, "LONG")));
        break;
      }
      case 'F': {
        const std::string_view text = line();
        double value = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size()) fail("bad FLOAT '" + printable(text) + "'");
        push(new_float(value));
        break;
      }
      case 'G': {
        const std::string_view b = take(8);
        uint64_t bits = 0;
        for (char c : b) bits = (bits << 8) | static_cast<unsigned char>(c);  // big-endian
        push(new_float(std::bit_cast<double>(bits)));
        break;
      }
      case 'S': {  // a Python 2 str, quoted
        const std::string_view text = line();
        if (text.size() < 2 || text.front() != text.back() || (text.front() != '\'' && text.front() != '"')) {
          fail("the STRING argument must be quoted");
        }
        std::string value = unescape_string(text.substr(1, text.size() - 2));
        charge(value.size());
        push(new_text(Kind::kBytes, std::move(value)));
        break;
      }
      case 'T': {
        const int32_t n = i32();
        if (n < 0) fail("negative BINSTRING length");
        push(new_bytes(take(static_cast<uint64_t>(n))));
        break;
      }
      case 'U': push(new_bytes(take(u8()))); break;
      case 'C': push(new_bytes(take(u8()))); break;
      case 'B': push(new_bytes(take(u32()))); break;
      case 0x8e: push(new_bytes(take(little_endian(8)))); break;
      case 'V': {
        std::string value = raw_unicode_escape(line());
        charge(value.size());
        push(new_text(Kind::kStr, std::move(value)));
        break;
      }
      case 0x8c: push(new_str_utf8(take(u8()))); break;
      case 'X': push(new_str_utf8(take(u32()))); break;
      case 0x8d: push(new_str_utf8(take(little_endian(8)))); break;
      case ']': push(new_container(Kind::kList, {})); break;
      case ')': push(new_container(Kind::kTuple, {})); break;
      case '}': push(new_container(Kind::kDict, {})); break;
      case 'l': push(new_container(Kind::kList, pop_mark())); break;
      case 't': push(new_container(Kind::kTuple, pop_mark())); break;
      case 0x85: push(new_container(Kind::kTuple, pop_n(1))); break;
      case 0x86: push(new_container(Kind::kTuple, pop_n(2))); break;
      case 0x87: push(new_container(Kind::kTuple, pop_n(3))); break;
      case 'd': {
        std::vector<Ref> items = pop_mark();
        check_dict_items(items);
        push(new_container(Kind::kDict, std::move(items)));
        break;
      }
      case 'a': {
        const std::vector<Ref> item = pop_n(1);
        extend(peek(), item, Kind::kList);
        break;
      }
      case 'e': {
        const std::vector<Ref> items = pop_mark();
        extend(peek(), items, Kind::kList);
        break;
      }
      case 's': {
        const std::vector<Ref> item = pop_n(2);
        extend(peek(), item, Kind::kDict);
        break;
      }
      case 'u': {
        const std::vector<Ref> items = pop_mark();
        extend(peek(), items, Kind::kDict);
        break;
      }
      case 'p': {
        const int64_t index = decimal(line(), "PUT index");
        if (index < 0) fail("negative memo index");
        memo_put(static_cast<uint64_t>(index));
        break;
      }
      case 'q': memo_put(u8()); break;
      case 'r': memo_put(u32()); break;
      case 0x94: memo_put(memo_.size()); break;
      case 'g': {
        const int64_t index = decimal(line(), "GET index");
        if (index < 0) fail("negative memo index");
        memo_get(static_cast<uint64_t>(index));
        break;
      }
      case 'h': memo_get(u8()); break;
      case 'j': memo_get(u32()); break;
      case 'c': {
        const std::string_view module = line();
        const std::string_view name = line();
        push_global(module, name);
        break;
      }
      case 0x93: {
        const Ref name = pop();
        const Ref module = pop();
        if (obj(name).kind != Kind::kStr || obj(module).kind != Kind::kStr) fail("STACK_GLOBAL needs two str");
        push_global(obj(module).data, obj(name).data);
        break;
      }
      case 'R': reduce(); break;
      case 'b': build(); break;
      case 'i': case 'o': case 0x81: case 0x92:
        fail("creating class instances is not allowed: it would import and call code");
      case 'P': case 'Q':
        fail("persistent ids are not allowed: they need a loader hook that runs code");
      case 0x82: case 0x83: case 0x84:
        fail("the extension registry is not allowed: it names globals that would be imported");
      case 0x8f: case 0x90: case 0x91:
        fail("sets are not supported");
      case 0x96: case 0x97: case 0x98:
        fail("protocol 5 out-of-band buffers are not supported");
      default:
        fail("unknown opcode " + hex_byte(op_) + ": not a pickle, or corrupt");
    }
    return false;
  }

  std::string_view in_;
  const std::string& name_;
  const Limits& limits_;
  size_t byte_budget_ = 0;
  size_t bytes_used_ = 0;
  size_t max_objects_ = 0;

  size_t pos_ = 0;
  size_t op_offset_ = 0;
  uint8_t op_ = 0;
  bool have_op_ = false;

  Document doc_;
  std::vector<int> depth_;      // per object: 0 for scalars, 1 + the deepest item for containers
  std::vector<uint8_t> flags_;  // per object: kSealed, kBuilt
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;   // stack sizes at each open MARK
  std::unordered_map<uint32_t, Ref> memo_;
};

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kBytes: return "bytes";
    case Kind::kStr: return "str";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kNdArray: return "numpy.ndarray";
    case Kind::kDtype: return "numpy.dtype";
    case Kind::kGlobal: return "global";
  }
  return "?";
}

std::string DType::str() const {
  return std::string(1, byte_order) + kind + std::to_string(item_size);
}

Document parse(std::string_view bytes, const std::string& name_for_errors, const Limits& limits) {
  return Unpickler(bytes, name_for_errors, limits).run();
}

const std::string* byte_string(const Object& object) {
  if (object.kind == Kind::kBytes) return &object.data;
  if (object.kind == Kind::kNdArray && object.dtype.kind == 'u' && object.dtype.item_size == 1) {
    const auto long_dims = std::count_if(object.shape.begin(), object.shape.end(), [](int64_t d) { return d > 1; });
    if (long_dims <= 1) return &object.data;
  }
  return nullptr;
}

Writer::Writer(int protocol) : protocol_(protocol) {
  if (protocol < 2 || protocol > 4) throw Error("pickle writer: protocol must be 2, 3 or 4, got " + std::to_string(protocol));
  out_ += '\x80';
  out_ += static_cast<char>(protocol);
}

void Writer::bytes(std::string_view value) {
  const bool py2_str = protocol_ == 2;
  if (value.size() < 256) {
    out_ += py2_str ? 'U' : 'C';
    out_ += static_cast<char>(value.size());
  } else {
    const uint64_t max = py2_str ? uint64_t{std::numeric_limits<int32_t>::max()} : uint64_t{std::numeric_limits<uint32_t>::max()};
    if (value.size() > max) {
      throw Error("pickle writer: a byte string of " + std::to_string(value.size()) + " bytes is too large for protocol " +
                  std::to_string(protocol_));
    }
    out_ += py2_str ? 'T' : 'B';
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((value.size() >> (8 * i)) & 0xFF);
  }
  out_.append(value);
}

std::string Writer::finish() {
  out_ += '.';
  return std::move(out_);
}

}  // namespace arcforge::data::pickle
