// The safe pickle subset against pickles built here byte by byte from the pickle opcode table, and
// against pickles that CPython 3.11 wrote (pasted as literals; produced with pickle.dumps and checked
// with pickletools.dis), plus the attacks it must refuse.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/data/pickle.hpp"

namespace pk = arcforge::data::pickle;
using pk::Kind;

namespace {

// A string literal with its embedded NULs.
template <size_t N>
std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string le32(uint32_t v) {
  std::string out;
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

std::string le64(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

std::string binunicode(const std::string& utf8) {
  std::string out(1, 'X');  // appended piece by piece: GCC 12 warns falsely on "X" + std::string
  out += le32(static_cast<uint32_t>(utf8.size()));
  out += utf8;
  return out;
}

pk::Document parse(const std::string& data, const pk::Limits& limits = {}) {
  return pk::parse(data, "test.pkl", limits);
}

// The InputError message of parsing `data`; fails the test when it parses.
std::string error_of(const std::string& data, const pk::Limits& limits = {}) {
  try {
    parse(data, limits);
  } catch (const arcforge::InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "'" << (haystack) << "' lacks '" << (needle) << "'"

const pk::Object& item(const pk::Document& d, const pk::Object& o, size_t i) { return d.at(o.items.at(i)); }

// ([b'\xff\xd8ab', b'y'], [True, False]) as CPython 3.11 pickles it at protocols 0, 1, 2 and 4.
// Protocols 0-2 spell bytes as _codecs.encode(u'\xff\xd8ab', 'latin1'), 0 with UNICODE and PUT/GET.
const std::string kPy3Protocol0 = bytes(
    "((lp0\x0a""c_codecs\x0a""encode\x0a""p1\x0a""(V\xff""\xd8""ab\x0a""p2\x0a""Vlatin1\x0a""p3\x0a""tp4\x0a""Rp5\x0a"
    "ag1\x0a""(Vy\x0a""p6\x0a""g3\x0a""tp7\x0a""Rp8\x0a""a(lp9\x0a""I01\x0a""aI00\x0a""atp10\x0a"".");
const std::string kPy3Protocol1 = bytes(
    "(]q\x00""(c_codecs\x0a""encode\x0a""q\x01""(X\x06""\x00""\x00""\x00""\xc3""\xbf""\xc3""\x98""abq\x02""X\x06"
    "\x00""\x00""\x00""latin1q\x03""tq\x04""Rq\x05""h\x01""(X\x01""\x00""\x00""\x00""yq\x06""h\x03""tq\x07""Rq\x08"
    "e]q\x09""(I01\x0a""I00\x0a""etq\x0a"".");
const std::string kPy3Protocol2 = bytes(
    "\x80""\x02""]q\x00""(c_codecs\x0a""encode\x0a""q\x01""X\x06""\x00""\x00""\x00""\xc3""\xbf""\xc3""\x98""abq\x02"
    "X\x06""\x00""\x00""\x00""latin1q\x03""\x86""q\x04""Rq\x05""h\x01""X\x01""\x00""\x00""\x00""yq\x06""h\x03""\x86"
    "q\x07""Rq\x08""e]q\x09""(\x88""\x89""e\x86""q\x0a"".");
const std::string kPy3Protocol4 = bytes(
    "\x80""\x04""\x95""\x18""\x00""\x00""\x00""\x00""\x00""\x00""\x00""]\x94""(C\x04""\xff""\xd8""ab\x94""C\x01""y\x94"
    "e]\x94""(\x88""\x89""e\x86""\x94"".");

// (-5, 300, 70000, -2**31, 2**40, -2**63, 1.5, None, 'hé€', {'k': [1]}) from CPython at protocol 4.
const std::string kPy3ScalarsProtocol4 = bytes(
    "\x80""\x04""\x95""G\x00""\x00""\x00""\x00""\x00""\x00""\x00""(J\xfb""\xff""\xff""\xff""M,\x01""Jp\x11""\x01""\x00"
    "J\x00""\x00""\x00""\x80""\x8a""\x06""\x00""\x00""\x00""\x00""\x00""\x01""\x8a""\x08""\x00""\x00""\x00""\x00""\x00"
    "\x00""\x00""\x80""G\x3f""\xf8""\x00""\x00""\x00""\x00""\x00""\x00""N\x8c""\x06""h\xc3""\xa9""\xe2""\x82""\xac"
    "\x94""}\x94""\x8c""\x01""k\x94""]\x94""K\x01""ast\x94"".");
// The same with 'hé€\\\n' as the string, at protocol 0 (INT, LONG, FLOAT, UNICODE escapes, DICT).
const std::string kPy3ScalarsProtocol0 = bytes(
    "(I-5\x0a""I300\x0a""I70000\x0a""I-2147483648\x0a""L1099511627776L\x0a""L-9223372036854775808L\x0a""F1.5\x0a"
    "NVh\xe9""\x5c""u20ac\x5c""u005c\x5c""u000a\x0a""p0\x0a""(dp1\x0a""Vk\x0a""p2\x0a""(lp3\x0a""I1\x0a""astp4\x0a"".");

void expect_bytes_and_bools(const pk::Document& d) {
  const pk::Object& root = d.top();
  ASSERT_EQ(root.kind, Kind::kTuple);
  ASSERT_EQ(root.items.size(), 2u);
  const pk::Object& images = item(d, root, 0);
  ASSERT_EQ(images.kind, Kind::kList);
  ASSERT_EQ(images.items.size(), 2u);
  EXPECT_EQ(item(d, images, 0).kind, Kind::kBytes);
  EXPECT_EQ(item(d, images, 0).data, bytes("\xff\xd8""ab"));
  EXPECT_EQ(item(d, images, 1).data, "y");
  const pk::Object& flags = item(d, root, 1);
  ASSERT_EQ(flags.items.size(), 2u);
  EXPECT_EQ(item(d, flags, 0).kind, Kind::kBool);
  EXPECT_TRUE(item(d, flags, 0).boolean);
  EXPECT_FALSE(item(d, flags, 1).boolean);
}

// A NumPy array as numpy pickles it (the small_lfw.bin form): _reconstruct(ndarray, (0,), b'b'),
// then BUILD with (1, shape, dtype(name) BUILT with (3, order, None, None, None, -1, -1, 0), False, data).
std::string numpy_pickle(const std::string& module, const std::vector<int>& shape, const std::string& dtype,
                         const std::string& order, const std::string& data) {
  std::string p = bytes("\x80\x03") + "c" + module + "\n_reconstruct\nq\x01" + "cnumpy\nndarray\nq\x02" +
                  bytes("K\x00\x85""C\x01""b\x87""R(K\x01(");
  for (int d : shape) {
    p += 'M';
    p += le32(static_cast<uint32_t>(d)).substr(0, 2);
  }
  p += "tcnumpy\ndtype\n" + binunicode(dtype) + bytes("\x89\x88\x87R(K\x03") + binunicode(order) +
       bytes("NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89") + "B" + le32(static_cast<uint32_t>(data.size())) + data +
       "tb.";
  return p;
}

}  // namespace

// ------------------------------------------------------------------ opcode families ----------

TEST(PickleParse, ClassicPython2StrAtProtocol2) {
  // What Python 2's pickle.dump(..., HIGHEST_PROTOCOL) writes for lfw.bin: str as SHORT_BINSTRING
  // and BINSTRING, lists with APPENDS, a TUPLE2 root, BINPUT memo entries.
  const std::string big(300, '\xab');
  const std::string p = bytes("\x80\x02]q\x00(U\x03""ab\xffq\x01T") + le32(300) + big +
                        bytes("q\x02""e]q\x03(\x88\x89""e\x86q\x04.");
  const pk::Document d = parse(p);
  EXPECT_EQ(d.protocol, 2);
  EXPECT_EQ(d.end_offset, p.size());
  const pk::Object& images = item(d, d.top(), 0);
  ASSERT_EQ(images.items.size(), 2u);
  EXPECT_EQ(item(d, images, 0).kind, Kind::kBytes);
  EXPECT_EQ(item(d, images, 0).data, bytes("ab\xff"));
  EXPECT_EQ(item(d, images, 1).data, big);
  const pk::Object& flags = item(d, d.top(), 1);
  EXPECT_TRUE(item(d, flags, 0).boolean);
  EXPECT_FALSE(item(d, flags, 1).boolean);
}

TEST(PickleParse, Python3BytesAndMemoReferences) {
  // BINGET pushes the very object stored by BINPUT: the list holds one bytes object twice.
  const std::string p = bytes("\x80\x03]q\x00(C\x02hiq\x01h\x01""B\x03\x00\x00\x00""abcq\x02""eh\x02\x86.");
  const pk::Document d = parse(p);
  const pk::Object& list = item(d, d.top(), 0);
  ASSERT_EQ(list.items.size(), 3u);
  EXPECT_EQ(list.items[0], list.items[1]);
  EXPECT_EQ(item(d, list, 0).data, "hi");
  EXPECT_EQ(item(d, list, 2).data, "abc");
  EXPECT_EQ(d.top().items[1], list.items[2]);
}

TEST(PickleParse, CPythonWrittenBytesAtEveryProtocol) {
  for (const std::string* p : {&kPy3Protocol0, &kPy3Protocol1, &kPy3Protocol2, &kPy3Protocol4}) {
    SCOPED_TRACE(p == &kPy3Protocol0 ? "protocol 0" : p == &kPy3Protocol1 ? "protocol 1" : p == &kPy3Protocol2 ? "protocol 2" : "protocol 4");
    expect_bytes_and_bools(parse(*p));
  }
}

TEST(PickleParse, CPythonScalarsProtocol4AndProtocol0) {
  for (int protocol : {4, 0}) {
    SCOPED_TRACE(protocol);
    const pk::Document d = parse(protocol == 4 ? kPy3ScalarsProtocol4 : kPy3ScalarsProtocol0);
    const pk::Object& t = d.top();
    ASSERT_EQ(t.kind, Kind::kTuple);
    ASSERT_EQ(t.items.size(), 10u);
    const int64_t ints[] = {-5, 300, 70000, INT64_C(-2147483648), INT64_C(1099511627776), INT64_MIN};
    for (size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(item(d, t, i).kind, Kind::kInt);
      EXPECT_EQ(item(d, t, i).integer, ints[i]) << i;
    }
    EXPECT_EQ(item(d, t, 6).kind, Kind::kFloat);
    EXPECT_EQ(item(d, t, 6).real, 1.5);
    EXPECT_EQ(item(d, t, 7).kind, Kind::kNone);
    EXPECT_EQ(item(d, t, 8).kind, Kind::kStr);
    EXPECT_EQ(item(d, t, 8).data, protocol == 4 ? "h\xc3\xa9\xe2\x82\xac" : "h\xc3\xa9\xe2\x82\xac\\\n");
    const pk::Object& dict = item(d, t, 9);
    ASSERT_EQ(dict.kind, Kind::kDict);
    ASSERT_EQ(dict.items.size(), 2u);
    EXPECT_EQ(item(d, dict, 0).data, "k");
    const pk::Object& list = item(d, dict, 1);
    ASSERT_EQ(list.kind, Kind::kList);
    EXPECT_EQ(item(d, list, 0).integer, 1);
  }
}

TEST(PickleParse, IntegerOpcodes) {
  const std::string p = bytes("\x80\x02(K\xff""M\xff\xff""J\xff\xff\xff\xff""J\x00\x00\x00\x80") +
                        bytes("\x8a\x00") +                                   // LONG1 of no bytes: 0
                        bytes("\x8a\x01\xff") +                               // -1
                        bytes("\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff") +  // -1, sign-extended to 9 bytes
                        bytes("\x8a\x09\xff\xff\xff\xff\xff\xff\xff\x7f\x00") +  // INT64_MAX in 9 bytes
                        bytes("\x8b\x02\x00\x00\x00\x00\x01") +               // LONG4: 256
                        "I42\nI-7\nI01\nI00\nL123L\nL-4\n" + "t.";
  const pk::Document d = parse(p);
  const pk::Object& t = d.top();
  ASSERT_EQ(t.items.size(), 15u);
  const int64_t expected[] = {255, 65535, -1, INT32_MIN, 0, -1, -1, INT64_MAX, 256, 42, -7};
  for (size_t i = 0; i < 11; ++i) {
    EXPECT_EQ(item(d, t, i).kind, Kind::kInt) << i;
    EXPECT_EQ(item(d, t, i).integer, expected[i]) << i;
  }
  EXPECT_EQ(item(d, t, 11).kind, Kind::kBool);  // Python 2.2's "I01" spelling of True
  EXPECT_TRUE(item(d, t, 11).boolean);
  EXPECT_FALSE(item(d, t, 12).boolean);
  EXPECT_EQ(item(d, t, 13).integer, 123);
  EXPECT_EQ(item(d, t, 14).integer, -4);

  EXPECT_CONTAINS(error_of(bytes("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00.")), "64 bits");  // 2**63
  EXPECT_CONTAINS(error_of(bytes("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.")), "64 bits");  // 2**64
  EXPECT_CONTAINS(error_of("I99999999999999999999\n."), "64 bits");
  EXPECT_CONTAINS(error_of("I12x\n."), "bad INT");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02\x8b\xff\xff\xff\xff.")), "negative LONG4");
}

TEST(PickleParse, FloatOpcodes) {
  // BINFLOAT is a big-endian IEEE double: 1.5 = 3FF8..., -0.25 = BFD0...
  const pk::Document d = parse(bytes("\x80\x02(G\x3f\xf8\x00\x00\x00\x00\x00\x00G\xbf\xd0\x00\x00\x00\x00\x00\x00") +
                               "F0.1\nF-2e3\nt.");
  const pk::Object& t = d.top();
  ASSERT_EQ(t.items.size(), 4u);
  EXPECT_EQ(item(d, t, 0).real, 1.5);
  EXPECT_EQ(item(d, t, 1).real, -0.25);
  EXPECT_EQ(item(d, t, 2).real, 0.1);
  EXPECT_EQ(item(d, t, 3).real, -2000.0);
  EXPECT_CONTAINS(error_of("F1.5x\n."), "bad FLOAT");
}

TEST(PickleParse, TextAndBytesOpcodes) {
  const std::string p =
      "(S'a\\x41\\n\\'\\\\b\\101\\q'\n"   // STRING with escapes: a A \n ' \ b A \q
      "S\"it's\"\n"                       // STRING in double quotes
      "V\xe9\\u20ac\\U0001f600\n" +       // UNICODE: latin-1 byte, \u and \U escapes
      bytes("\x8c\x02hi") +               // SHORT_BINUNICODE
      bytes("\x8d") + le64(3) + "abc" +   // BINUNICODE8
      bytes("\x8e") + le64(2) + "xy" +    // BINBYTES8
      bytes("U\x00") +                    // SHORT_BINSTRING, empty
      "t.";
  const pk::Document d = parse(p);
  const pk::Object& t = d.top();
  ASSERT_EQ(t.items.size(), 7u);
  EXPECT_EQ(item(d, t, 0).kind, Kind::kBytes);
  EXPECT_EQ(item(d, t, 0).data, "aA\n'\\bA\\q");
  EXPECT_EQ(item(d, t, 1).data, "it's");
  EXPECT_EQ(item(d, t, 2).kind, Kind::kStr);
  EXPECT_EQ(item(d, t, 2).data, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  EXPECT_EQ(item(d, t, 3).data, "hi");
  EXPECT_EQ(item(d, t, 4).kind, Kind::kStr);
  EXPECT_EQ(item(d, t, 4).data, "abc");
  EXPECT_EQ(item(d, t, 5).kind, Kind::kBytes);
  EXPECT_EQ(item(d, t, 5).data, "xy");
  EXPECT_EQ(item(d, t, 6).data, "");

  EXPECT_CONTAINS(error_of("Sabc\n."), "must be quoted");
  EXPECT_CONTAINS(error_of("S'\\x4'\n."), "\\x escape");
  EXPECT_CONTAINS(error_of("V\\u12\n."), "truncated \\u");
  EXPECT_CONTAINS(error_of("V\\ud800\n."), "surrogate");
}

TEST(PickleParse, InvalidUtf8IsRejected) {
  EXPECT_CONTAINS(error_of(bytes("\x80\x03X\x02\x00\x00\x00\xc3\x28.")), "UTF-8");       // bad continuation
  EXPECT_CONTAINS(error_of(bytes("\x80\x03X\x02\x00\x00\x00\xc0\xaf.")), "UTF-8");       // overlong '/'
  EXPECT_CONTAINS(error_of(bytes("\x80\x03X\x03\x00\x00\x00\xed\xa0\x80.")), "UTF-8");   // a surrogate
  EXPECT_CONTAINS(error_of(bytes("\x80\x03X\x01\x00\x00\x00\xe2.")), "UTF-8");           // cut short
}

TEST(PickleParse, StackOpcodes) {
  // (1, 2 POP_MARK) 3 DUP TUPLE2 None POP STOP -> (3, 3) with one object twice.
  const pk::Document d = parse(bytes("\x80\x02(K\x01K\x02""1K\x03""2\x86N0."));
  ASSERT_EQ(d.top().kind, Kind::kTuple);
  ASSERT_EQ(d.top().items.size(), 2u);
  EXPECT_EQ(d.top().items[0], d.top().items[1]);
  EXPECT_EQ(item(d, d.top(), 0).integer, 3);
  // POP with nothing above the mark removes the mark: "( POP" leaves an empty stack.
  EXPECT_EQ(parse(bytes("\x80\x02(0N.")).top().kind, Kind::kNone);
  // Tuples of every arity.
  // ((1,), (1, 2), (1, 2, 3)), (), (4,) from TUPLE1/2/3, EMPTY_TUPLE and MARK ... TUPLE.
  const pk::Document t = parse(bytes("\x80\x02K\x01\x85K\x01K\x02\x86K\x01K\x02K\x03\x87\x87)(K\x04t\x87."));
  ASSERT_EQ(t.top().items.size(), 3u);
  const pk::Object& first = item(t, t.top(), 0);
  ASSERT_EQ(first.items.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(item(t, first, i).items.size(), i + 1);
    EXPECT_EQ(item(t, item(t, first, i), i).integer, static_cast<int64_t>(i + 1));
  }
  EXPECT_EQ(item(t, t.top(), 1).items.size(), 0u);
  EXPECT_EQ(item(t, item(t, t.top(), 2), 0).integer, 4);
}

TEST(PickleParse, DictOpcodes) {
  const std::string p = bytes("\x80\x02}q\x00(") + binunicode("a") + bytes("K\x01") + binunicode("b") +
                        bytes("K\x02u") + binunicode("c") + bytes("]s.");
  const pk::Document d = parse(p);
  const pk::Object& dict = d.top();
  ASSERT_EQ(dict.kind, Kind::kDict);
  ASSERT_EQ(dict.items.size(), 6u);
  EXPECT_EQ(item(d, dict, 0).data, "a");
  EXPECT_EQ(item(d, dict, 1).integer, 1);
  EXPECT_EQ(item(d, dict, 3).integer, 2);
  EXPECT_EQ(item(d, dict, 4).data, "c");
  EXPECT_EQ(item(d, dict, 5).kind, Kind::kList);
  EXPECT_CONTAINS(error_of(bytes("\x80\x02}]Ns.")), "unhashable");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02(NNNd.")), "odd number");
}

TEST(PickleParse, MemoOpcodes) {
  // MEMOIZE numbers entries by the memo's size; LONG_BINPUT / LONG_BINGET use 4-byte indices.
  const pk::Document d =
      parse(bytes("\x80\x04K\x07\x94K\x08\x94K\x09r\x00\x00\x01\x00""000h\x01h\x00j\x00\x00\x01\x00\x87."));
  const pk::Object& t = d.top();
  ASSERT_EQ(t.items.size(), 3u);
  EXPECT_EQ(item(d, t, 0).integer, 8);
  EXPECT_EQ(item(d, t, 1).integer, 7);
  EXPECT_EQ(item(d, t, 2).integer, 9);
  EXPECT_CONTAINS(error_of(bytes("\x80\x02h\x05.")), "memo entry 5 was never stored");
  EXPECT_CONTAINS(error_of("g3\n."), "memo entry 3 was never stored");
}

TEST(PickleParse, StopIsStrictAndLaterBytesAreIgnored) {
  EXPECT_CONTAINS(error_of(bytes("\x80\x02NN.")), "left over at STOP");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02(N.")), "left over at STOP");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02.")), "stack underflow");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02N")), "without a STOP");
  EXPECT_CONTAINS(error_of(""), "without a STOP");
  const pk::Document d = parse(bytes("\x80\x02N.garbage after the pickle"));
  EXPECT_EQ(d.end_offset, 4u);
  EXPECT_EQ(d.top().kind, Kind::kNone);
  EXPECT_CONTAINS(error_of(bytes("\x80\x06N.")), "unsupported pickle protocol 6");
}

// ------------------------------------------------------------------ whitelisted globals ----------

TEST(PickleParse, CodecsEncodeLatin1IsBytes) {
  // Python 3 at protocol 2: _codecs.encode(u'\xff\xd8', 'latin1') -> b'\xff\xd8'.
  const std::string p = bytes("\x80\x02""c_codecs\nencode\n") + binunicode("\xc3\xbf\xc3\x98") + binunicode("latin1") +
                        bytes("\x86R.");
  const pk::Document d = parse(p);
  EXPECT_EQ(d.top().kind, Kind::kBytes);
  EXPECT_EQ(d.top().data, bytes("\xff\xd8"));
  EXPECT_CONTAINS(error_of(bytes("\x80\x02""c_codecs\nencode\n") + binunicode("\xe2\x82\xac") + binunicode("latin1") +
                           bytes("\x86R.")),
                  "above U+00FF");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02""c_codecs\nencode\n") + binunicode("a") + binunicode("utf-8") + bytes("\x86R.")),
                  "only latin1");
}

TEST(PickleParse, BuiltinBytesWithoutArgumentsIsEmptyBytes) {
  // Python 3 writes b'' at protocol 2 as __builtin__.bytes().
  const pk::Document d = parse(bytes("\x80\x02""c__builtin__\nbytes\nq\x00)Rq\x01."));
  EXPECT_EQ(d.top().kind, Kind::kBytes);
  EXPECT_EQ(d.top().data, "");
  EXPECT_EQ(parse(bytes("\x80\x04\x8c\x08""builtins\x8c\x05""bytes\x93)R.")).top().kind, Kind::kBytes);
  EXPECT_CONTAINS(error_of(bytes("\x80\x02""c__builtin__\nbytes\nK\x05\x85R.")), "bytes() with arguments");
}

TEST(PickleParse, NumpyUint8ArrayIsAByteString) {
  const std::string data = bytes("\xff\xd8\x01\x02");
  for (const char* module : {"numpy.core.multiarray", "numpy._core.multiarray"}) {
    SCOPED_TRACE(module);
    const pk::Document d = parse(numpy_pickle(module, {4, 1}, "u1", "|", data));
    const pk::Object& a = d.top();
    ASSERT_EQ(a.kind, Kind::kNdArray);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 1}));
    EXPECT_EQ(a.dtype.str(), "|u1");
    EXPECT_FALSE(a.fortran_order);
    ASSERT_NE(pk::byte_string(a), nullptr);
    EXPECT_EQ(*pk::byte_string(a), data);
  }
}

TEST(PickleParse, NumpyOtherDtypesAndShapes) {
  // float32 [1.0, -2.0] little-endian: kept as an array, not a byte string.
  const std::string f32 = bytes("\x00\x00\x80\x3f\x00\x00\x00\xc0");
  const pk::Document d = parse(numpy_pickle("numpy.core.multiarray", {2}, "f4", "<", f32));
  EXPECT_EQ(d.top().dtype.str(), "<f4");
  EXPECT_EQ(d.top().data, f32);
  EXPECT_EQ(pk::byte_string(d.top()), nullptr);
  // A 2-D uint8 array is pixels, not an encoded buffer.
  EXPECT_EQ(pk::byte_string(parse(numpy_pickle("numpy.core.multiarray", {3, 2}, "u1", "|", "abcdef")).top()), nullptr);
  EXPECT_CONTAINS(error_of(numpy_pickle("numpy.core.multiarray", {5}, "u1", "|", "abcd")),
                  "data has 4 bytes, its shape and dtype |u1 need 5");
  EXPECT_CONTAINS(error_of(numpy_pickle("numpy.core.multiarray", {1}, "O8", "|", "abcdefgh")), "unsupported numpy dtype 'O8'");
  EXPECT_CONTAINS(error_of(numpy_pickle("numpy.core.multiarray", {1}, "u1", "?", "a")), "bad byte order");
}

// ------------------------------------------------------------------ refusals ----------

TEST(PickleReject, OsSystemPayloadIsNeverRun) {
  const std::string marker = (std::filesystem::temp_directory_path() / "arcforge_pickle_pwned").string();
  std::filesystem::remove(marker);
  const std::string classic = "cos\nsystem\n(S'echo hi'\ntR.";
  const std::string message = error_of(classic);
  EXPECT_CONTAINS(message, "test.pkl");
  EXPECT_CONTAINS(message, "'os system' is not allowed");
  EXPECT_CONTAINS(message, "(GLOBAL at byte 0)");
  error_of("cos\nsystem\n(S'touch " + marker + "'\ntR.");
  EXPECT_FALSE(std::filesystem::exists(marker));
  // posix.system, subprocess, eval, getattr: all names outside the whitelist.
  EXPECT_CONTAINS(error_of("cposix\nsystem\n(S'id'\ntR."), "'posix system' is not allowed");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02""c__builtin__\ngetattr\n.")), "'__builtin__ getattr'");
  // STACK_GLOBAL (protocol 4) takes the names from the stack; its offset is after the two strings.
  const std::string stack_global = bytes("\x80\x04\x8c\x08""builtins\x8c\x04""eval\x93.");
  const std::string m = error_of(stack_global);
  EXPECT_CONTAINS(m, "'builtins eval' is not allowed");
  EXPECT_CONTAINS(m, "(STACK_GLOBAL at byte 18)");
  // A whitelisted module with another name, and a prefix trick, are refused too.
  EXPECT_CONTAINS(error_of("cnumpy\nload\n."), "'numpy load' is not allowed");
  EXPECT_CONTAINS(error_of("cnumpy.core.multiarray\n_reconstruct.x\n."), "is not allowed");
}

TEST(PickleReject, CodeRunningOpcodes) {
  struct Case {
    std::string data;
    std::string where;
  };
  const std::vector<Case> cases = {
      {"(S'echo hi'\nios\nsystem\n.", "(INST at byte 12)"},
      {"(]o.", "(OBJ at byte 2)"},
      {bytes("\x80\x02])\x81."), "(NEWOBJ at byte 4)"},
      {bytes("\x80\x04])}\x92."), "(NEWOBJ_EX at byte 5)"},
      {"Pabc\n.", "(PERSID at byte 0)"},
      {bytes("\x80\x02K\x01Q."), "(BINPERSID at byte 4)"},
      {bytes("\x80\x02\x82\x01."), "(EXT1 at byte 2)"},
      {bytes("\x80\x02\x83\x01\x00."), "(EXT2 at byte 2)"},
      {bytes("\x80\x02\x84\x01\x00\x00\x00."), "(EXT4 at byte 2)"},
      {bytes("\x80\x02])R."), "(REDUCE at byte 4)"},
      {bytes("\x80\x02""cnumpy\nndarray\n)R."), "(REDUCE at byte 18)"},
      {bytes("\x80\x02]}b."), "(BUILD at byte 4)"},
      {bytes("\x80\x04\x8f."), "(EMPTY_SET at byte 2)"},
      {bytes("\x80\x05\x96") + le64(0) + ".", "(BYTEARRAY8 at byte 2)"},
      {bytes("\x80\x02\xff."), "unknown opcode 0xff"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.where);
    EXPECT_CONTAINS(error_of(c.data), c.where);
  }
  // A numpy array may be built once, and only before it is inside another object.
  std::string twice = numpy_pickle("numpy.core.multiarray", {1}, "u1", "|", "a");
  twice.pop_back();
  EXPECT_CONTAINS(error_of(twice + bytes("(K\x01(K\x01tcnumpy\ndtype\n") + binunicode("u1") + bytes("\x89\x88\x87R\x89U\x01""atb.")),
                  "built twice");
}

TEST(PickleReject, TruncatedInputAtEveryLength) {
  const std::vector<std::string> valid = {kPy3Protocol0, kPy3Protocol2, kPy3Protocol4, kPy3ScalarsProtocol4,
                                          numpy_pickle("numpy.core.multiarray", {3}, "u1", "|", "abc")};
  for (const std::string& p : valid) {
    ASSERT_NO_THROW(parse(p));
    for (size_t n = 0; n < p.size(); ++n) {
      EXPECT_THROW(parse(p.substr(0, n)), arcforge::InputError) << "prefix of " << n << " bytes";
    }
  }
  EXPECT_CONTAINS(error_of(bytes("\x80\x03""B\xff\xff\xff\x7f""abc.")), "truncated: needs 2147483647 bytes");
  EXPECT_CONTAINS(error_of(bytes("\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00N.")), "truncated: the frame");
}

TEST(PickleReject, DepthBombs) {
  const auto nested_lists = [](int n) { return bytes("\x80\x02") + std::string(n, ']') + std::string(n - 1, 'a') + "."; };
  EXPECT_NO_THROW(parse(nested_lists(100)));  // the default limit is 100 levels
  EXPECT_CONTAINS(error_of(nested_lists(101)), "nesting deeper than 100 levels");
  EXPECT_CONTAINS(error_of(nested_lists(100000)), "nesting deeper than 100 levels");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02)") + std::string(100000, '\x85') + "."), "nesting deeper");
  EXPECT_CONTAINS(error_of(std::string(100000, '(')), "open MARKs (limit)");
  // A memo reference keeps its depth: 60 nested lists fetched by BINGET and wrapped 50 times.
  EXPECT_CONTAINS(error_of(bytes("\x80\x02") + std::string(60, ']') + std::string(59, 'a') + bytes("q\x01""0h\x01") +
                           std::string(50, '\x85') + "."),
                  "nesting deeper");
}

TEST(PickleReject, CyclesAndLateMutation) {
  EXPECT_CONTAINS(error_of(bytes("\x80\x02]q\x00h\x00""a.")), "contains itself");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02}q\x00h\x00Ns.")), "contains itself");
  // L0 goes inside L1, then something is appended to L0.
  EXPECT_CONTAINS(error_of(bytes("\x80\x02]q\x00]h\x00""aa.")), "after it was put inside another object");
}

TEST(PickleReject, ResourceLimits) {
  pk::Limits small;
  small.max_memo = 1000;
  small.max_objects = 1000;
  small.max_stack = 1000;
  std::string memo = bytes("\x80\x02N");
  for (uint32_t i = 0; i < 2000; ++i) {
    memo += 'r';
    memo += le32(i * 7919);
  }
  EXPECT_CONTAINS(error_of(memo + "0.", small), "memo entries (limit)");
  std::string objects = bytes("\x80\x02");
  for (int i = 0; i < 2000; ++i) objects += "]0";
  EXPECT_CONTAINS(error_of(objects + "N.", small), "objects (limit)");
  EXPECT_CONTAINS(error_of(bytes("\x80\x02N") + std::string(2000, '2') + ".", small), "stack entries (limit)");
  small.max_input_bytes = 10;
  EXPECT_CONTAINS(error_of(bytes("\x80\x02N") + std::string(20, ' '), small), "more than the limit of 10");

  // Memo references cannot multiply a big string: 20000 _codecs.encode calls on one 1000-char text
  // would make 20 MB from 100 kB of input.
  std::string bomb = bytes("\x80\x02""c_codecs\nencode\nq\x00") + binunicode(std::string(1000, 'a')) + binunicode("latin1") +
                     bytes("\x86q\x01""00");
  for (int i = 0; i < 20000; ++i) bomb += bytes("h\x00h\x01R0");
  bomb += "N.";
  EXPECT_CONTAINS(error_of(bomb), "bytes of strings and arrays in total (limit)");
}

// ------------------------------------------------------------------ writer ----------

TEST(PickleWriter, ByteExactProtocol2And4) {
  const std::string big(300, 'x');
  for (int protocol : {2, 3, 4}) {
    SCOPED_TRACE(protocol);
    pk::Writer w(protocol);
    w.empty_list();
    w.mark();
    w.bytes("ab");
    w.bytes(big);
    w.appends();
    w.empty_list();
    w.mark();
    w.boolean(true);
    w.boolean(false);
    w.appends();
    w.tuple2();
    const std::string got = w.finish();
    // Protocol 2: SHORT_BINSTRING 'U' / BINSTRING 'T'; 3 and 4: SHORT_BINBYTES 'C' / BINBYTES 'B'.
    const char short_op = protocol == 2 ? 'U' : 'C';
    const char long_op = protocol == 2 ? 'T' : 'B';
    const std::string expected = std::string("\x80") + static_cast<char>(protocol) + "](" + short_op + "\x02" + "ab" +
                                 long_op + bytes("\x2c\x01\x00\x00") + big + bytes("e](\x88\x89""e\x86.");
    EXPECT_EQ(got, expected);
    const pk::Document d = parse(got);
    EXPECT_EQ(item(d, item(d, d.top(), 0), 1).data, big);
  }
  EXPECT_THROW(pk::Writer(1), arcforge::Error);
  EXPECT_THROW(pk::Writer(5), arcforge::Error);
}
