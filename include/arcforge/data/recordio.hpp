#pragma once
// InsightFace's training data format: MXNet RecordIO (dmlc-core framing) plus a text index.
//
// .rec  a sequence of records. Each record on disk is
//         uint32 magic 0xced7230a, uint32 lrecord = (cflag << 29) | length, payload, zero pad to 4.
//       dmlc splits a payload wherever the magic appears at a 4-aligned position (so a reader that
//       resyncs on the magic never mistakes data for a record start): cflag 0 = whole record,
//       1/2/3 = first/middle/last part; the magic itself is dropped and restored on reading.
// .idx  text lines "key\toffset" (MXIndexedRecordIO), offset = byte position of the record.
// payload = IRHeader {uint32 flag, float32 label, uint64 id, uint64 id2} (struct 'IfQQ', 24 bytes),
//       then `flag` float32 labels when flag > 0 (the scalar label is then unused), then the
//       encoded image bytes.
// InsightFace layout (what arcface_torch's MXFaceDataset reads): record 0 has flag 2 and labels
// [N+1, N+1+K]; records 1..N are the images; N+1..N+K are identity records (flag 2, labels
// [first image key, end image key) of that identity).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace arcforge::data {

inline constexpr uint32_t kRecordIOMagic = 0xced7230a;
inline constexpr size_t kIRHeaderSize = 24;
// lrecord keeps the length in 29 bits; dmlc refuses larger payloads, and so do we (reader too).
inline constexpr uint64_t kMaxRecordPayload = (uint64_t{1} << 29) - 1;
// Labels and keys travel as float32 in record 0 and the identity records: exact up to 2^24.
inline constexpr int64_t kMaxExactFloatInteger = int64_t{1} << 24;

struct IRHeader {
  uint32_t flag = 0;   // number of float labels that follow the header; 0 = scalar label
  float label = 0.0f;  // the label when flag == 0
  uint64_t id = 0;
  uint64_t id2 = 0;
};

// A payload split into its parts. `image` views into the payload it was parsed from.
struct ParsedPayload {
  IRHeader header;
  std::vector<float> labels;  // `flag` labels, or {label} when flag == 0
  std::string_view image;
};

// One record as a training loop wants it.
struct ImageRecord {
  int64_t label = 0;          // labels[0], checked to be a non-negative integer
  std::vector<float> labels;  // the float array, or {scalar label}
  uint64_t id = 0;
  uint64_t id2 = 0;
  std::string image;  // encoded image bytes (JPEG/PNG/WebP), empty for header-only records
};

// mx.recordio.pack: header, then the label array when not empty (flag = its size), then data.
std::string pack_payload(const IRHeader& header, std::span<const float> labels,
                         std::string_view image);

// mx.recordio.unpack. `where` names the file and key for error messages.
ParsedPayload parse_payload(std::string_view payload, const std::string& where);

// The dmlc on-disk bytes of one payload (magic, lrecord, data, padding; split at inner magics).
std::string frame_record(std::string_view payload);

// A float that must hold an integer (a label or a key): finite, integral, 0 <= v <= 2^53.
int64_t float_to_index(float value, const std::string& where, const std::string& what);

// "x/train.rec" -> "x/train.idx" (arcface_torch: path[0:-4] + ".idx"); other names get ".idx".
std::string idx_path_for(const std::string& rec_path);

// Random access to a .rec through its .idx. Reads use pread on one descriptor, so any number of
// threads may read concurrently; nothing is mutated after construction.
class RecordIOReader {
 public:
  // idx_path empty: idx_path_for(rec_path).
  explicit RecordIOReader(const std::string& rec_path, const std::string& idx_path = "");
  ~RecordIOReader();
  RecordIOReader(const RecordIOReader&) = delete;
  RecordIOReader& operator=(const RecordIOReader&) = delete;

  const std::string& rec_path() const { return rec_path_; }
  const std::string& idx_path() const { return idx_path_; }
  uint64_t file_size() const { return file_size_; }

  // Keys in .idx order (MXIndexedRecordIO.keys).
  const std::vector<int64_t>& keys() const { return keys_; }
  bool contains(int64_t key) const { return offsets_.count(key) != 0; }
  uint64_t offset_of(int64_t key) const;

  // The whole payload, multi-part records reassembled.
  std::string read_payload(int64_t key) const;
  // At most `limit` leading payload bytes (cheap header reads for a dataset scan).
  std::string read_payload_prefix(int64_t key, size_t limit) const;
  // read_payload + parse_payload + label check.
  ImageRecord read(int64_t key) const;
  // Header and at most `max_labels` labels; `image` stays empty. Reads only those bytes.
  ParsedPayload read_header(int64_t key, size_t max_labels = 2) const;

  // "train.rec: key 5 at offset 1234", the prefix of every error about that record.
  std::string describe(int64_t key) const;

 private:
  std::string read_at(int64_t key, uint64_t offset, size_t limit) const;
  void pread_exact(char* out, size_t bytes, uint64_t offset, int64_t key) const;

  std::string rec_path_;
  std::string idx_path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  std::vector<int64_t> keys_;
  std::unordered_map<int64_t, uint64_t> offsets_;
};

// The sample list arcface_torch's MXFaceDataset builds: with an InsightFace record 0 (flag > 0) the
// images are keys 1..label[0]-1; otherwise every key of the index, in index order.
struct RecordDataset {
  std::vector<int64_t> image_keys;
  std::vector<int64_t> labels;  // per image, 0-based class
  int64_t num_classes = 0;      // max label + 1
  bool insightface_header = false;
  int64_t identity_records = 0;  // label[1] - label[0] of record 0 (0 without the header)
};

// Reads every image record's header (not the image bytes) and validates the labels.
RecordDataset scan_record_dataset(const RecordIOReader& reader);

// Appends records to a temp .rec, then commit() fsyncs and renames .rec and .idx into place
// (.rec first). Destroyed without commit(): the temp files are removed, the targets untouched.
class RecordIOWriter {
 public:
  RecordIOWriter(const std::string& rec_path, const std::string& idx_path = "");
  ~RecordIOWriter();
  RecordIOWriter(const RecordIOWriter&) = delete;
  RecordIOWriter& operator=(const RecordIOWriter&) = delete;

  // Keys must be unique, non-negative; records are written in call order.
  void write(int64_t key, std::string_view payload);
  void commit();
  uint64_t bytes_written() const { return position_; }

 private:
  void flush_buffer();
  void abandon() noexcept;

  std::string rec_path_, idx_path_, rec_tmp_;
  int fd_ = -1;
  uint64_t position_ = 0;
  std::string buffer_;
  std::string index_text_;
  std::unordered_set<int64_t> seen_;
  bool committed_ = false;
};

}  // namespace arcforge::data
