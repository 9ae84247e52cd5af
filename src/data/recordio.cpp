#include "arcforge/data/recordio.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"

namespace arcforge::data {
namespace {

constexpr uint32_t kLengthMask = (uint32_t{1} << 29) - 1;
constexpr size_t kWriterBufferBytes = size_t{4} << 20;

// The format is little endian whatever the host; spell the byte order out.
uint32_t get_u32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

uint64_t get_u64(const char* p) { return uint64_t{get_u32(p)} | uint64_t{get_u32(p + 4)} << 32; }

float get_f32(const char* p) { return std::bit_cast<float>(get_u32(p)); }

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_u64(std::string& out, uint64_t v) {
  put_u32(out, static_cast<uint32_t>(v));
  put_u32(out, static_cast<uint32_t>(v >> 32));
}

void put_f32(std::string& out, float v) { put_u32(out, std::bit_cast<uint32_t>(v)); }

uint64_t padded(uint64_t length) { return (length + 3) & ~uint64_t{3}; }

std::string hex32(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", v);
  return text;
}

std::string float_text(float v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", static_cast<double>(v));
  return text;
}

IRHeader decode_header(const char* p) {
  IRHeader h;
  h.flag = get_u32(p);
  h.label = get_f32(p + 4);
  h.id = get_u64(p + 8);
  h.id2 = get_u64(p + 16);
  return h;
}

bool is_magic_at(std::string_view data, size_t i) {
  return get_u32(data.data() + i) == kRecordIOMagic;
}

[[noreturn]] void system_fail(const std::string& path, const std::string& what) {
  throw Error(file_message(path, what + ": " + std::strerror(errno)));
}

void fsync_directory_of(const std::string& path) {
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems refuse directory fds
  ::fsync(fd);
  ::close(fd);
}

// Strict decimal: the whole field must be digits (an optional leading '-' only for error text).
template <typename Int>
bool parse_decimal(std::string_view text, Int& out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  while (!s.empty() && (s.front() == ' ')) s.remove_prefix(1);
  return s;
}

}  // namespace

// ------------------------------------------------------------------ payload and framing ----------

std::string pack_payload(const IRHeader& header, std::span<const float> labels,
                         std::string_view image) {
  // Like mx.recordio.pack: a label array sets flag to its size and zeroes the scalar label.
  std::string out;
  out.reserve(kIRHeaderSize + labels.size() * 4 + image.size());
  put_u32(out, static_cast<uint32_t>(labels.size()));
  put_f32(out, labels.empty() ? header.label : 0.0f);
  put_u64(out, header.id);
  put_u64(out, header.id2);
  for (float v : labels) put_f32(out, v);
  out.append(image);
  return out;
}

ParsedPayload parse_payload(std::string_view payload, const std::string& where) {
  if (payload.size() < kIRHeaderSize) {
    throw InputError(where + ": record payload is " + std::to_string(payload.size()) +
                     " bytes, shorter than the 24-byte IRHeader");
  }
  ParsedPayload out;
  out.header = decode_header(payload.data());
  const uint64_t label_bytes = uint64_t{out.header.flag} * 4;
  if (label_bytes > payload.size() - kIRHeaderSize) {
    throw InputError(where + ": IRHeader flag " + std::to_string(out.header.flag) + " announces " +
                     std::to_string(label_bytes) + " label bytes but only " +
                     std::to_string(payload.size() - kIRHeaderSize) + " bytes follow the header");
  }
  if (out.header.flag == 0) {
    out.labels.push_back(out.header.label);
  } else {
    out.labels.resize(out.header.flag);
    for (uint32_t i = 0; i < out.header.flag; ++i) {
      out.labels[i] = get_f32(payload.data() + kIRHeaderSize + 4 * i);
    }
  }
  out.image = payload.substr(kIRHeaderSize + label_bytes);
  return out;
}

std::string frame_record(std::string_view payload) {
  if (payload.size() > kMaxRecordPayload) {
    throw InputError("RecordIO: a record payload of " + std::to_string(payload.size()) +
                     " bytes exceeds the format's limit of 2^29-1 bytes");
  }
  std::string out;
  out.reserve(padded(payload.size()) + 8);
  // dmlc checks every 4-aligned word for the magic; each hit ends a part (cflag 1 first, 2 middle)
  // and the magic itself is dropped: the reader puts it back between parts.
  const size_t aligned_end = payload.size() & ~size_t{3};
  size_t part_start = 0;
  for (size_t i = 0; i < aligned_end; i += 4) {
    if (!is_magic_at(payload, i)) continue;
    const uint32_t cflag = part_start == 0 ? 1 : 2;
    put_u32(out, kRecordIOMagic);
    put_u32(out, cflag << 29 | static_cast<uint32_t>(i - part_start));
    out.append(payload.substr(part_start, i - part_start));  // a multiple of 4, no padding
    part_start = i + 4;
  }
  const uint32_t cflag = part_start == 0 ? 0 : 3;
  const size_t rest = payload.size() - part_start;
  put_u32(out, kRecordIOMagic);
  put_u32(out, cflag << 29 | static_cast<uint32_t>(rest));
  out.append(payload.substr(part_start));
  out.append(padded(rest) - rest, '\0');
  return out;
}

int64_t float_to_index(float value, const std::string& where, const std::string& what) {
  constexpr double kLimit = 9007199254740992.0;  // 2^53
  const double v = value;
  if (!std::isfinite(v) || v < 0 || v > kLimit || std::floor(v) != v) {
    throw InputError(where + ": " + what + " " + float_text(value) +
                     " is not a non-negative integer");
  }
  return static_cast<int64_t>(v);
}

std::string idx_path_for(const std::string& rec_path) {
  constexpr std::string_view kSuffix = ".rec";
  if (rec_path.size() > kSuffix.size() &&
      std::string_view(rec_path).substr(rec_path.size() - kSuffix.size()) == kSuffix) {
    return rec_path.substr(0, rec_path.size() - kSuffix.size()) + ".idx";
  }
  return rec_path + ".idx";
}

// ------------------------------------------------------------------------------ reader ----------

RecordIOReader::RecordIOReader(const std::string& rec_path, const std::string& idx_path)
    : rec_path_(rec_path), idx_path_(idx_path.empty() ? idx_path_for(rec_path) : idx_path) {
  fd_ = ::open(rec_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    throw InputError(file_message(rec_path_, std::string("cannot open: ") + std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw InputError(file_message(rec_path_, "not a regular file"));
  }
  file_size_ = static_cast<uint64_t>(st.st_size);

  try {
    const std::string text = read_file(idx_path_);
    size_t line_start = 0;
    int64_t line_number = 0;
    while (line_start < text.size()) {
      size_t line_end = text.find('\n', line_start);
      if (line_end == std::string::npos) line_end = text.size();
      const std::string_view line =
          trim(std::string_view(text).substr(line_start, line_end - line_start));
      line_start = line_end + 1;
      ++line_number;
      if (line.empty()) continue;
      const std::string at = "line " + std::to_string(line_number) + ": ";
      const size_t tab = line.find('\t');
      if (tab == std::string_view::npos) {
        throw InputError(file_message(idx_path_, at + "expected \"key<TAB>offset\""));
      }
      int64_t key = 0;
      uint64_t offset = 0;
      if (!parse_decimal(trim(line.substr(0, tab)), key) || key < 0) {
        throw InputError(file_message(idx_path_, at + "key '" + std::string(line.substr(0, tab)) +
                                                     "' is not a non-negative integer"));
      }
      if (!parse_decimal(trim(line.substr(tab + 1)), offset)) {
        throw InputError(file_message(idx_path_, at + "offset '" +
                                                     std::string(line.substr(tab + 1)) +
                                                     "' is not a non-negative integer"));
      }
      if (offset > file_size_ || file_size_ - offset < 8) {
        throw InputError(file_message(idx_path_, at + "key " + std::to_string(key) + ": offset " +
                                                     std::to_string(offset) +
                                                     " is beyond the end of " + rec_path_ + " (" +
                                                     std::to_string(file_size_) + " bytes)"));
      }
      if (!offsets_.emplace(key, offset).second) {
        throw InputError(
            file_message(idx_path_, at + "key " + std::to_string(key) + " appears twice"));
      }
      keys_.push_back(key);
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

RecordIOReader::~RecordIOReader() {
  if (fd_ >= 0) ::close(fd_);
}

std::string RecordIOReader::describe(int64_t key) const {
  const auto it = offsets_.find(key);
  if (it == offsets_.end()) return rec_path_ + ": key " + std::to_string(key);
  return rec_path_ + ": key " + std::to_string(key) + " at offset " + std::to_string(it->second);
}

uint64_t RecordIOReader::offset_of(int64_t key) const {
  const auto it = offsets_.find(key);
  if (it == offsets_.end()) {
    throw InputError(rec_path_ + ": key " + std::to_string(key) + " is missing from " + idx_path_);
  }
  return it->second;
}

void RecordIOReader::pread_exact(char* out, size_t bytes, uint64_t offset, int64_t key) const {
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd_, out + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw InputError(describe(key) + ": read failed: " + std::strerror(errno));
    }
    if (n == 0) throw InputError(describe(key) + ": truncated record (file shrank while reading?)");
    done += static_cast<size_t>(n);
  }
}

std::string RecordIOReader::read_at(int64_t key, uint64_t offset, size_t limit) const {
  std::string out;
  uint64_t position = offset;
  uint64_t total = 0;  // payload length of the whole record, magics between parts included
  for (bool first = true;; first = false) {
    if (position > file_size_ || file_size_ - position < 8) {
      throw InputError(describe(key) + ": truncated record: the part header at offset " +
                       std::to_string(position) + " runs past the end of the file (" +
                       std::to_string(file_size_) + " bytes)");
    }
    char head[8];
    pread_exact(head, sizeof head, position, key);
    const uint32_t magic = get_u32(head);
    if (magic != kRecordIOMagic) {
      throw InputError(describe(key) + ": bad magic " + hex32(magic) + " at offset " +
                       std::to_string(position) + " (expected " + hex32(kRecordIOMagic) + ")");
    }
    const uint32_t lrecord = get_u32(head + 4);
    const uint32_t cflag = lrecord >> 29;
    const uint32_t length = lrecord & kLengthMask;
    if (cflag > 3) {
      throw InputError(describe(key) + ": invalid continuation flag " + std::to_string(cflag) +
                       " at offset " + std::to_string(position));
    }
    if (first && (cflag == 2 || cflag == 3)) {
      throw InputError(describe(key) + ": offset points into the middle of a split record (cflag " +
                       std::to_string(cflag) + ")");
    }
    if (!first && (cflag == 0 || cflag == 1)) {
      throw InputError(describe(key) + ": split record broken: part at offset " +
                       std::to_string(position) + " has cflag " + std::to_string(cflag) +
                       ", expected 2 (middle) or 3 (last)");
    }
    if (file_size_ - position - 8 < padded(length)) {
      throw InputError(describe(key) + ": truncated record: part at offset " +
                       std::to_string(position) + " needs " + std::to_string(padded(length)) +
                       " bytes but the file ends " + std::to_string(file_size_ - position - 8) +
                       " bytes later");
    }
    total += length;
    if (total > kMaxRecordPayload) {
      throw InputError(describe(key) + ": record payload exceeds the format's 2^29-1 bytes");
    }
    if (out.size() < limit) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(length, limit - out.size()));
      const size_t at = out.size();
      out.resize(at + take);
      pread_exact(out.data() + at, take, position + 8, key);
    }
    if (cflag == 0 || cflag == 3) break;
    total += 4;
    if (out.size() < limit) put_u32(out, kRecordIOMagic);  // the magic dmlc split at
    if (out.size() >= limit) break;                        // a prefix read needs no more parts
    position += 8 + padded(length);
  }
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::string RecordIOReader::read_payload(int64_t key) const {
  return read_at(key, offset_of(key), std::numeric_limits<size_t>::max());
}

std::string RecordIOReader::read_payload_prefix(int64_t key, size_t limit) const {
  return read_at(key, offset_of(key), limit);
}

ImageRecord RecordIOReader::read(int64_t key) const {
  const std::string payload = read_payload(key);
  const ParsedPayload parsed = parse_payload(payload, describe(key));
  ImageRecord record;
  record.label = float_to_index(parsed.labels[0], describe(key), "label");
  record.labels = parsed.labels;
  record.id = parsed.header.id;
  record.id2 = parsed.header.id2;
  record.image.assign(parsed.image);
  return record;
}

ParsedPayload RecordIOReader::read_header(int64_t key, size_t max_labels) const {
  max_labels = std::min<size_t>(max_labels, 1 << 20);
  const std::string prefix = read_payload_prefix(key, kIRHeaderSize + 4 * max_labels);
  if (prefix.size() < kIRHeaderSize) {
    throw InputError(describe(key) + ": record payload is " + std::to_string(prefix.size()) +
                     " bytes, shorter than the 24-byte IRHeader");
  }
  const uint32_t flag = get_u32(prefix.data());
  const size_t wanted = std::min<size_t>(flag, max_labels);
  if (prefix.size() < kIRHeaderSize + 4 * wanted) {
    throw InputError(describe(key) + ": IRHeader flag " + std::to_string(flag) + " announces " +
                     std::to_string(uint64_t{flag} * 4) + " label bytes but only " +
                     std::to_string(prefix.size() - kIRHeaderSize) + " bytes follow the header");
  }
  ParsedPayload parsed;
  parsed.header = decode_header(prefix.data());
  if (flag == 0) {
    parsed.labels.push_back(parsed.header.label);
  } else {
    for (size_t i = 0; i < wanted; ++i) {
      parsed.labels.push_back(get_f32(prefix.data() + kIRHeaderSize + 4 * i));
    }
  }
  return parsed;
}

// -------------------------------------------------------------------- dataset view ----------

RecordDataset scan_record_dataset(const RecordIOReader& reader) {
  RecordDataset dataset;
  if (reader.contains(0)) {
    const ParsedPayload head = reader.read_header(0, 2);
    if (head.header.flag > 0) {
      const std::string where = reader.describe(0);
      if (head.header.flag < 2) {
        throw InputError(where +
                         ": record 0 has 1 label; an InsightFace header needs 2 "
                         "([first identity key, end key])");
      }
      const int64_t first_identity =
          float_to_index(head.labels[0], where, "record 0 label[0] (first identity key)");
      const int64_t end = float_to_index(head.labels[1], where, "record 0 label[1] (end key)");
      if (first_identity < 1 || end < first_identity) {
        throw InputError(where + ": record 0 labels [" + std::to_string(first_identity) + ", " +
                         std::to_string(end) + "] are not a key range with first >= 1");
      }
      const int64_t images = first_identity - 1;
      if (static_cast<uint64_t>(images) > reader.keys().size()) {
        throw InputError(where + ": record 0 says images are keys 1.." + std::to_string(images) +
                         " but " + reader.idx_path() + " has only " +
                         std::to_string(reader.keys().size()) + " entries");
      }
      dataset.insightface_header = true;
      dataset.identity_records = end - first_identity;
      dataset.image_keys.reserve(static_cast<size_t>(images));
      for (int64_t key = 1; key <= images; ++key) {
        if (!reader.contains(key)) {
          throw InputError(reader.rec_path() + ": key " + std::to_string(key) +
                           " is missing from " + reader.idx_path() +
                           " (record 0 says images are keys 1.." + std::to_string(images) + ")");
        }
        dataset.image_keys.push_back(key);
      }
    }
  }
  if (!dataset.insightface_header) dataset.image_keys = reader.keys();
  if (dataset.image_keys.empty()) {
    throw InputError(file_message(reader.rec_path(), "no image records"));
  }
  dataset.labels.reserve(dataset.image_keys.size());
  int64_t max_label = -1;
  for (int64_t key : dataset.image_keys) {
    const ParsedPayload head = reader.read_header(key, 1);
    const int64_t label = float_to_index(head.labels[0], reader.describe(key), "label");
    dataset.labels.push_back(label);
    max_label = std::max(max_label, label);
  }
  dataset.num_classes = max_label + 1;
  return dataset;
}

// ------------------------------------------------------------------------------ writer ----------

RecordIOWriter::RecordIOWriter(const std::string& rec_path, const std::string& idx_path)
    : rec_path_(rec_path), idx_path_(idx_path.empty() ? idx_path_for(rec_path) : idx_path) {
  const std::filesystem::path dir = std::filesystem::path(rec_path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  rec_tmp_ = rec_path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(rec_tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) system_fail(rec_tmp_, "cannot create");
}

RecordIOWriter::~RecordIOWriter() {
  if (!committed_) abandon();
}

void RecordIOWriter::abandon() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(rec_tmp_.c_str());
}

void RecordIOWriter::write(int64_t key, std::string_view payload) {
  if (committed_ || fd_ < 0) throw Error(file_message(rec_path_, "write after commit"));
  if (key < 0) throw InputError(file_message(rec_path_, "negative key " + std::to_string(key)));
  if (seen_.count(key) != 0) {
    throw InputError(file_message(rec_path_, "key " + std::to_string(key) + " written twice"));
  }
  const std::string framed = frame_record(payload);  // throws for oversized payloads
  seen_.insert(key);
  index_text_ += std::to_string(key) + "\t" + std::to_string(position_) + "\n";
  buffer_ += framed;
  position_ += framed.size();
  if (buffer_.size() >= kWriterBufferBytes) flush_buffer();
}

void RecordIOWriter::flush_buffer() {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      system_fail(rec_tmp_, "write failed");
    }
    done += static_cast<size_t>(n);
  }
  buffer_.clear();
}

void RecordIOWriter::commit() {
  if (committed_ || fd_ < 0) throw Error(file_message(rec_path_, "commit twice"));
  flush_buffer();
  if (::fsync(fd_) != 0) system_fail(rec_tmp_, "fsync failed");
  ::close(fd_);
  fd_ = -1;
  if (::rename(rec_tmp_.c_str(), rec_path_.c_str()) != 0) system_fail(rec_path_, "rename failed");
  committed_ = true;
  fsync_directory_of(rec_path_);
  write_file_atomically(idx_path_, index_text_);
}

}  // namespace arcforge::data
