#pragma once
// A safe subset of Python's pickle, enough for InsightFace .bin verification files: Python 2 and
// Python 3 pickles of protocols 0-5 (without protocol 5's out-of-band buffers) holding lists,
// tuples, dicts, numbers, text, byte strings and NumPy arrays of plain numeric dtypes.
//
// Nothing is ever called or imported. The only globals recognised are a fixed whitelist that builds
// plain data: numpy.core.multiarray._reconstruct / numpy._core.multiarray._reconstruct with
// numpy.ndarray, numpy.dtype, _codecs.encode(text, 'latin1') (how Python 3 writes bytes at protocol
// 2) and __builtin__.bytes() / builtins.bytes() (Python 3's protocol-2 form of b''). Any other
// GLOBAL, a REDUCE of anything else, INST/OBJ/NEWOBJ/NEWOBJ_EX, PERSID/BINPERSID and the extension
// registry opcodes are rejected with an InputError naming the file, the opcode and its byte offset.
//
// The result is a DAG of objects in one arena: a container may not be changed after it has been
// put inside another one (Python's pickler never does that except for self-referencing data), so
// cycles cannot be built and every nesting depth is exact.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace arcforge::data::pickle {

enum class Kind : uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kBytes,    // bytes; a Python 2 str (read as with encoding='bytes'); _codecs.encode(s, 'latin1')
  kStr,      // unicode text, held as UTF-8
  kList,
  kTuple,
  kDict,
  kNdArray,  // numpy.ndarray of a plain numeric dtype
  kDtype,    // numpy.dtype
  kGlobal,   // a whitelisted callable or class, by name (e.g. "numpy.ndarray")
};

// "NoneType", "bool", "int", ... as Python would name the type, for error messages.
const char* kind_name(Kind kind);

// A NumPy dtype of the kinds we accept: bool, signed/unsigned integers, floats.
struct DType {
  char byte_order = '|';  // '<' little-endian, '>' big-endian, '|' not applicable (1-byte types)
  char kind = 'i';        // 'b' bool, 'i' signed integer, 'u' unsigned integer, 'f' float
  int item_size = 1;      // bytes per element
  std::string str() const;  // NumPy's dtype.str, e.g. "|u1", "<f4"
};

using Ref = uint32_t;  // an index into Document::objects

struct Object {
  Kind kind = Kind::kNone;
  bool boolean = false;        // kBool
  int64_t integer = 0;         // kInt
  double real = 0.0;           // kFloat
  std::string data;            // kBytes; kStr (UTF-8); kNdArray raw data; kGlobal "module.name"
  std::vector<Ref> items;      // kList / kTuple elements; kDict key0, value0, key1, value1, ...
  std::vector<int64_t> shape;  // kNdArray
  bool fortran_order = false;  // kNdArray: data is in Fortran (column-major) order
  DType dtype;                 // kNdArray, kDtype
};

struct Document {
  std::vector<Object> objects;  // objects[0..2] are None, False and True, shared by every use
  Ref root = 0;                 // the value STOP returned
  int protocol = 0;             // from the PROTO opcode; 0 when the pickle has none
  std::size_t end_offset = 0;   // the byte just past STOP; like Python, later bytes are not read

  const Object& at(Ref ref) const { return objects.at(ref); }
  const Object& top() const { return objects.at(root); }
};

struct Limits {
  std::size_t max_input_bytes = std::size_t{16} << 30;  // lfw.bin is ~ 0.1 GB, the largest sets < 2 GB
  int max_depth = 100;                 // container nesting; real files nest 3 deep
  std::size_t max_marks = 100;         // open MARKs at once
  // lfw.bin needs ~ 20k objects and memo entries; these caps keep a hostile file under ~ 300 MB.
  std::size_t max_memo = std::size_t{1} << 21;
  std::size_t max_objects = std::size_t{1} << 21;
  std::size_t max_stack = std::size_t{1} << 21;
  // Bytes of strings and arrays materialised, all together. The effective cap is the smaller of
  // this and 4 x the input size + 1 MiB, so that memo references cannot multiply a big string.
  std::size_t max_total_bytes = std::size_t{32} << 30;
};

// Parses one pickle from `bytes`. Throws InputError ("<name>: pickle: <problem> (<OPCODE> at byte
// <offset>)") for a forbidden or unsupported opcode or global, truncated or malformed input, a
// broken limit, leftover values at STOP, or no STOP at all.
Document parse(std::string_view bytes, const std::string& name_for_errors, const Limits& limits = {});

// The bytes of a kBytes object, or of a uint8 NumPy array laid out as one run of bytes (at most one
// dimension larger than 1) -- the two ways .bin files store an encoded image. nullptr otherwise.
const std::string* byte_string(const Object& object);

// Writes the few things pack-bin needs. Protocol 2 stores byte strings as Python 2 str
// (SHORT_BINSTRING / BINSTRING: what the classic lfw.bin files hold; Python 3 reads them as bytes
// with encoding='bytes', the way InsightFace loads .bin files); protocols 3 and 4 store them as
// bytes (SHORT_BINBYTES / BINBYTES), which Python 3 reads with any encoding. No memo, no framing:
// both are optional in every protocol.
class Writer {
 public:
  explicit Writer(int protocol);  // 2, 3 or 4; emits PROTO

  void mark() { out_ += '('; }
  void empty_list() { out_ += ']'; }
  void appends() { out_ += 'e'; }                   // appends everything since the mark
  void tuple2() { out_ += '\x86'; }
  void boolean(bool value) { out_ += value ? '\x88' : '\x89'; }
  void bytes(std::string_view value);
  std::string finish();  // emits STOP and hands over the pickle

 private:
  int protocol_;
  std::string out_;
};

}  // namespace arcforge::data::pickle
