// Verification sets: .bin through the safe pickle subset, LFW pairs.txt and CSV pair lists.
#include "arcforge/data/verification_set.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/data/pickle.hpp"

namespace arcforge::data {
namespace {

namespace fs = std::filesystem;
using pickle::Kind;

constexpr int64_t kMaxLfwImageNumber = 99999;

[[noreturn]] void fail_line(const std::string& name, size_t line, const std::string& what) {
  throw InputError(file_message(name + ":" + std::to_string(line), what));
}

std::string stem_of(const std::string& path) { return fs::path(path).stem().string(); }

bool is_sequence(const pickle::Object& o) { return o.kind == Kind::kList || o.kind == Kind::kTuple; }

// issame as a list of bools (or 0/1 ints), or a NumPy bool array.
std::vector<bool> read_issame(const pickle::Document& doc, const pickle::Object& list, const std::string& name) {
  std::vector<bool> out;
  if (list.kind == Kind::kNdArray) {
    if (list.dtype.kind != 'b' && !(list.dtype.kind == 'u' && list.dtype.item_size == 1)) {
      throw InputError(file_message(name, "issame_list is a numpy array of " + list.dtype.str() + ", expected bools"));
    }
    for (char c : list.data) out.push_back(c != 0);
    return out;
  }
  if (!is_sequence(list)) {
    throw InputError(file_message(name, std::string("issame_list is a ") + pickle::kind_name(list.kind) + ", expected a list of bools"));
  }
  for (size_t i = 0; i < list.items.size(); ++i) {
    const pickle::Object& v = doc.at(list.items[i]);
    if (v.kind == Kind::kBool) {
      out.push_back(v.boolean);
    } else if (v.kind == Kind::kInt && (v.integer == 0 || v.integer == 1)) {
      out.push_back(v.integer == 1);
    } else {
      throw InputError(file_message(name, "issame_list[" + std::to_string(i) + "] is a " + pickle::kind_name(v.kind) +
                                              ", expected a bool"));
    }
  }
  return out;
}

// ------------------------------------------------------------------ pair lists ----------

// Collects files once each and pairs of their indices.
class PairListBuilder {
 public:
  void add(const std::string& a, const std::string& b, bool same) {
    const int64_t first = index_of(a);  // in this order: files are numbered by first use
    const int64_t second = index_of(b);
    list_.pairs.emplace_back(first, second);
    list_.same.push_back(same);
  }
  PairList take() { return std::move(list_); }
  size_t pair_count() const { return list_.pairs.size(); }

 private:
  int64_t index_of(const std::string& path) {
    auto [it, inserted] = index_.emplace(path, static_cast<int64_t>(list_.files.size()));
    if (inserted) list_.files.push_back(path);
    return it->second;
  }
  PairList list_;
  std::unordered_map<std::string, int64_t> index_;
};

std::string join_path(const std::string& root, const std::string& relative) {
  return (fs::path(root) / fs::path(relative)).lexically_normal().string();
}

std::vector<std::string_view> split_whitespace(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool parse_count(std::string_view text, int64_t& value) {
  if (text.empty() || text.size() > 12) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && value >= 0;
}

// Splits text into lines; each keeps its 1-based number. A trailing '\r' is dropped.
std::vector<std::pair<size_t, std::string_view>> numbered_lines(std::string_view text) {
  std::vector<std::pair<size_t, std::string_view>> out;
  size_t number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.emplace_back(++number, line);
    start = end + 1;
  }
  return out;
}

std::string lfw_image(const std::string& root, std::string_view person, int64_t number) {
  char file[32];
  std::snprintf(file, sizeof file, "_%04lld.jpg", static_cast<long long>(number));
  std::string relative = std::string(person) + "/" + std::string(person) + file;
  return root.empty() ? relative : join_path(root, relative);
}

void check_person(std::string_view person, const std::string& name, size_t line) {
  if (person == "." || person == ".." || person.find_first_of(std::string_view("/\\\0", 3)) != std::string_view::npos) {
    std::string what(1, '\'');  // built by appending: GCC 12 warns falsely on "'" + std::string
    what += person;
    what += "' is not a person's name (LFW names are folder names)";
    fail_line(name, line, what);
  }
}

int64_t lfw_number(std::string_view text, const std::string& name, size_t line) {
  int64_t value = 0;
  if (!parse_count(text, value) || value < 1 || value > kMaxLfwImageNumber) {
    fail_line(name, line, "image number '" + std::string(text) + "' is not an integer in 1.." + std::to_string(kMaxLfwImageNumber));
  }
  return value;
}

// ------------------------------------------------------------------ CSV ----------

struct CsvRecord {
  size_t line = 0;  // where the record starts
  std::vector<std::string> fields;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 4180 records: fields separated by commas, records by LF or CRLF; a field that starts with a
// quote runs to the closing quote ("" is a quote) and may hold commas and newlines. Unquoted fields
// are trimmed of spaces and tabs. Empty lines are skipped.
std::vector<CsvRecord> read_csv_records(std::string_view text, const std::string& name) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a UTF-8 byte order mark
  std::vector<CsvRecord> records;
  size_t line = 1;
  size_t i = 0;
  while (i < text.size()) {
    CsvRecord record;
    record.line = line;
    while (true) {  // one field per turn
      size_t start = i;
      while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
      if (i < text.size() && text[i] == '"') {
        const size_t quote_line = line;
        std::string field;
        ++i;
        while (true) {
          if (i >= text.size()) fail_line(name, quote_line, "a quoted field is never closed");
          if (text[i] == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) ++i;
        if (i < text.size() && text[i] != ',' && text[i] != '\n') {
          fail_line(name, line, "text after the closing quote of a field");
        }
        record.fields.push_back(std::move(field));
      } else {
        i = start;
        while (i < text.size() && text[i] != ',' && text[i] != '\n') ++i;
        std::string_view raw = text.substr(start, i - start);
        if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
        record.fields.emplace_back(trim(raw));
      }
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      break;  // at '\n' or the end
    }
    if (i < text.size()) {  // the '\n'
      ++i;
      ++line;
    }
    const bool empty_line = record.fields.size() == 1 && record.fields[0].empty();
    if (!empty_line) records.push_back(std::move(record));
  }
  return records;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The first column whose header is one of `names`; -1 if none.
int find_column(const std::vector<std::string>& header, std::initializer_list<const char*> names) {
  for (size_t c = 0; c < header.size(); ++c) {
    const std::string h = lower(trim(header[c]));
    for (const char* n : names) {
      if (h == n) return static_cast<int>(c);
    }
  }
  return -1;
}

bool parse_same(std::string_view text, bool& value) {
  const std::string v = lower(trim(text));
  if (v == "1" || v == "true") {
    value = true;
    return true;
  }
  if (v == "0" || v == "false") {
    value = false;
    return true;
  }
  return false;
}

std::string default_root(const std::string& list_path, const std::string& image_root) {
  if (!image_root.empty()) return image_root;
  return fs::path(list_path).parent_path().string();
}

}  // namespace

// ------------------------------------------------------------------ .bin ----------

int64_t VerificationSet::same_count() const { return std::count(issame.begin(), issame.end(), true); }

VerificationSet parse_bin(std::string_view bytes, const std::string& name) {
  const pickle::Document doc = pickle::parse(bytes, name);
  const pickle::Object& root = doc.top();
  if (!is_sequence(root) || root.items.size() != 2) {
    throw InputError(file_message(name, std::string("expected a pickled (images, issame_list) pair, got a ") +
                                            pickle::kind_name(root.kind) +
                                            (is_sequence(root) ? " of " + std::to_string(root.items.size()) + " items" : "")));
  }
  const pickle::Object& bins = doc.at(root.items[0]);
  if (!is_sequence(bins)) {
    throw InputError(file_message(name, std::string("the image list is a ") + pickle::kind_name(bins.kind) + ", expected a list"));
  }
  VerificationSet set;
  set.name = stem_of(name);
  set.issame = read_issame(doc, doc.at(root.items[1]), name);
  if (set.issame.empty()) throw InputError(file_message(name, "the verification set has no pairs"));
  if (bins.items.size() != 2 * set.issame.size()) {
    throw InputError(file_message(name, std::to_string(bins.items.size()) + " images for " + std::to_string(set.issame.size()) +
                                            " pairs; a .bin holds two images per pair"));
  }
  set.images.reserve(bins.items.size());
  for (size_t i = 0; i < bins.items.size(); ++i) {
    const pickle::Object& image = doc.at(bins.items[i]);
    const std::string* data = pickle::byte_string(image);
    if (!data) {
      std::string what = pickle::kind_name(image.kind);
      if (image.kind == Kind::kNdArray) {
        what += " of " + image.dtype.str() + " with shape (";
        for (size_t d = 0; d < image.shape.size(); ++d) what += (d ? ", " : "") + std::to_string(image.shape[d]);
        what += ")";
      }
      throw InputError(file_message(name, "image " + std::to_string(i) + " is a " + what +
                                              ", expected encoded image bytes (bytes or a flat uint8 array)"));
    }
    set.images.push_back(*data);
  }
  return set;
}

VerificationSet read_bin(const std::string& path) {
  VerificationSet set = parse_bin(read_file(path), path);
  return set;
}

std::string format_bin(const VerificationSet& set, int protocol) {
  if (set.issame.empty()) throw InputError("cannot write a verification set without pairs");
  if (set.images.size() != 2 * set.issame.size()) {
    throw InputError("cannot write a verification set with " + std::to_string(set.images.size()) + " images for " +
                     std::to_string(set.issame.size()) + " pairs");
  }
  constexpr size_t kBatch = 1000;  // APPENDS per 1000 items, as Python's pickler does
  pickle::Writer w(protocol);
  w.empty_list();
  for (size_t i = 0; i < set.images.size(); i += kBatch) {
    w.mark();
    for (size_t k = i; k < std::min(set.images.size(), i + kBatch); ++k) w.bytes(set.images[k]);
    w.appends();
  }
  w.empty_list();
  for (size_t i = 0; i < set.issame.size(); i += kBatch) {
    w.mark();
    for (size_t k = i; k < std::min(set.issame.size(), i + kBatch); ++k) w.boolean(set.issame[k]);
    w.appends();
  }
  w.tuple2();
  return w.finish();
}

void write_bin(const std::string& path, const VerificationSet& set, int protocol) {
  write_file_atomically(path, format_bin(set, protocol));
}

// ------------------------------------------------------------------ pair lists ----------

int64_t PairList::same_count() const { return std::count(same.begin(), same.end(), true); }

PairList parse_lfw_pairs(std::string_view text, const std::string& image_root, const std::string& name) {
  PairListBuilder builder;
  int64_t header_folds = -1;  // -1: no header; 1 for a one-number header
  int64_t header_per_class = 0;
  size_t header_line = 0;
  bool first = true;
  for (const auto& [number, line] : numbered_lines(text)) {
    const std::vector<std::string_view> f = split_whitespace(line);
    if (f.empty()) continue;
    if (first) {
      first = false;
      int64_t a = 0, b = 0;
      if (f.size() == 1 && parse_count(f[0], a)) {
        header_folds = 1, header_per_class = a, header_line = number;
        continue;
      }
      if (f.size() == 2 && parse_count(f[0], a) && parse_count(f[1], b)) {
        header_folds = a, header_per_class = b, header_line = number;
        continue;
      }
    }
    if (f.size() == 3) {
      check_person(f[0], name, number);
      builder.add(lfw_image(image_root, f[0], lfw_number(f[1], name, number)),
                  lfw_image(image_root, f[0], lfw_number(f[2], name, number)), true);
    } else if (f.size() == 4) {
      check_person(f[0], name, number);
      check_person(f[2], name, number);
      builder.add(lfw_image(image_root, f[0], lfw_number(f[1], name, number)),
                  lfw_image(image_root, f[2], lfw_number(f[3], name, number)), false);
    } else {
      fail_line(name, number, "expected 'name i j' (same) or 'name1 i name2 j' (different), got " +
                                  std::to_string(f.size()) + " fields");
    }
  }
  PairList list = builder.take();
  if (list.pairs.empty()) throw InputError(file_message(name, "no pairs"));
  if (header_folds >= 0) {
    // Counts of up to 12 digits each: their product can overflow, and then no file matches it.
    int64_t same_expected = 0, expected = 0;
    const bool representable = !__builtin_mul_overflow(header_folds, header_per_class, &same_expected) &&
                               !__builtin_mul_overflow(same_expected, int64_t{2}, &expected);
    if (!representable || static_cast<int64_t>(list.pairs.size()) != expected ||
        list.same_count() != same_expected) {
      fail_line(name, header_line, "the header promises " + std::to_string(header_folds) + " x " +
                                       std::to_string(header_per_class) + " same and as many different pairs (" +
                                       (representable ? std::to_string(expected) : std::string("more than any file")) +
                                       "), the file has " + std::to_string(list.pairs.size()) +
                                       " pairs of which " + std::to_string(list.same_count()) + " same");
    }
  }
  return list;
}

PairList read_lfw_pairs(const std::string& path, const std::string& image_root) {
  return parse_lfw_pairs(read_file(path), image_root, path);
}

PairList parse_pair_csv(std::string_view text, const std::string& image_root, const std::string& name) {
  const std::vector<CsvRecord> records = read_csv_records(text, name);
  if (records.empty()) throw InputError(file_message(name, "empty CSV: expected a header and pairs"));
  const std::vector<std::string>& header = records[0].fields;
  const int col_a = find_column(header, {"file_x", "file1", "img1", "image1", "path1", "left"});
  const int col_b = find_column(header, {"file_y", "file2", "img2", "image2", "path2", "right"});
  const int col_same = find_column(header, {"same", "issame", "is_same", "label"});
  if (col_a < 0 || col_b < 0 || col_same < 0) {
    std::string found;
    for (const std::string& h : header) found += (found.empty() ? "" : ", ") + h;
    fail_line(name, records[0].line, "the header must name the columns file_x, file_y and same (found: " + found + ")");
  }
  const size_t needed = static_cast<size_t>(std::max({col_a, col_b, col_same})) + 1;
  PairListBuilder builder;
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& rec = records[r];
    if (rec.fields.size() < needed) {
      fail_line(name, rec.line, "expected at least " + std::to_string(needed) + " fields, got " + std::to_string(rec.fields.size()));
    }
    const std::string& a = rec.fields[col_a];
    const std::string& b = rec.fields[col_b];
    if (a.empty() || b.empty()) fail_line(name, rec.line, "an image file name is empty");
    bool same = false;
    if (!parse_same(rec.fields[col_same], same)) {
      fail_line(name, rec.line, "unknown same-value '" + rec.fields[col_same] + "' (expected 1/0/True/False)");
    }
    builder.add(join_path(image_root, a), join_path(image_root, b), same);
  }
  PairList list = builder.take();
  if (list.pairs.empty()) throw InputError(file_message(name, "no pairs after the header"));
  return list;
}

PairList read_pair_csv(const std::string& path, const std::string& image_root) {
  return parse_pair_csv(read_file(path), default_root(path, image_root), path);
}

PairList read_pair_list(const std::string& path, const std::string& image_root) {
  if (lower(fs::path(path).extension().string()) == ".csv") return read_pair_csv(path, image_root);
  return read_lfw_pairs(path, default_root(path, image_root));
}

std::vector<std::string> missing_files(const PairList& list) {
  std::vector<std::string> out;
  for (const std::string& f : list.files) {
    std::error_code ec;
    if (!fs::is_regular_file(f, ec)) out.push_back(f);
  }
  return out;
}

}  // namespace arcforge::data
