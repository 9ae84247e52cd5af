// MXNet/dmlc RecordIO against bytes built by hand here (magic, lrecord, IRHeader fields, padding,
// dmlc's split at an inner magic), and every kind of broken file the reader must refuse.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/data/recordio.hpp"

namespace ad = arcforge::data;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------- independent byte builders ----------

std::string le32(uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}
std::string le64(uint64_t v) {
  return le32(static_cast<uint32_t>(v)) + le32(static_cast<uint32_t>(v >> 32));
}
std::string f32(float v) { return le32(std::bit_cast<uint32_t>(v)); }

const std::string kMagic = le32(0xced7230a);

// struct.pack('IfQQ', flag, label, id, id2) + labels + image
std::string payload(uint32_t flag, float label, uint64_t id, uint64_t id2,
                    const std::vector<float>& labels, const std::string& image) {
  std::string s = le32(flag) + f32(label) + le64(id) + le64(id2);
  for (float v : labels) s += f32(v);
  return s + image;
}

// One dmlc part: magic, (cflag << 29) | length, data, zero padding to 4.
std::string part(uint32_t cflag, const std::string& data) {
  std::string s = kMagic + le32(cflag << 29 | static_cast<uint32_t>(data.size())) + data;
  s.append((4 - data.size() % 4) % 4, '\0');
  return s;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "arcforge_recordio_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes `records` (key, on-disk bytes) back to back and the matching .idx; returns the .rec path.
std::string write_rec(const TempDir& dir,
                      const std::vector<std::pair<int64_t, std::string>>& records,
                      const std::string& name = "train") {
  std::string rec, idx;
  for (const auto& [key, bytes] : records) {
    idx += std::to_string(key) + "\t" + std::to_string(rec.size()) + "\n";
    rec += bytes;
  }
  write_bytes(dir.file(name + ".rec"), rec);
  write_bytes(dir.file(name + ".idx"), idx);
  return dir.file(name + ".rec");
}

// Runs `body`, expects an InputError whose message names `file` and contains `what`.
template <typename Body>
void expect_input_error(Body body, const std::string& file, const std::string& what) {
  try {
    body();
    ADD_FAILURE() << "no InputError; expected one naming " << file << " with '" << what << "'";
  } catch (const arcforge::InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(file), std::string::npos) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

// The InsightFace layout of a 2-image, 2-identity dataset, with image 2 carrying a float-array
// label and the magic inside its image bytes (so dmlc split it in two parts).
struct HandDataset {
  std::string split_image = std::string("\xFF\xD8\xFF\xE0", 4) + kMagic + "tail!";  // magic at +4
  std::string image1 = std::string("\x89PNG\r\n\x1A\n", 8) + "pixels";
  std::vector<std::pair<int64_t, std::string>> records() const {
    const std::string p2 = payload(2, 0.0f, 2, 0, {1.0f, 0.5f}, split_image);
    // payload offset of the magic: 24 header + 8 labels + 4 = 36 (4-aligned) -> split there
    return {
        {0, part(0, payload(2, 0.0f, 0, 0, {3.0f, 5.0f}, ""))},
        {1, part(0, payload(0, 0.0f, 1, 0, {}, image1))},
        {2, part(1, p2.substr(0, 36)) + part(3, p2.substr(40))},
        {3, part(0, payload(2, 0.0f, 3, 0, {1.0f, 2.0f}, ""))},
        {4, part(0, payload(2, 0.0f, 4, 0, {2.0f, 3.0f}, ""))},
    };
  }
};

}  // namespace

// ------------------------------------------------------------------------- writing ----------

TEST(RecordIO, PackPayloadMatchesStructPackIfQQ) {
  ad::IRHeader h;
  h.label = 3.0f;
  h.id = 7;
  h.id2 = 0x0102030405060708ull;
  EXPECT_EQ(ad::pack_payload(h, {}, "img"), payload(0, 3.0f, 7, 0x0102030405060708ull, {}, "img"));
  // A label array sets flag to its size and zeroes the scalar label (mx.recordio.pack).
  const float labels[3] = {4.0f, 0.25f, -1.0f};
  EXPECT_EQ(ad::pack_payload(h, labels, "x"),
            payload(3, 0.0f, 7, 0x0102030405060708ull, {4.0f, 0.25f, -1.0f}, "x"));
  EXPECT_EQ(ad::pack_payload(h, {}, "").size(), 24u);
}

TEST(RecordIO, FrameIsMagicLengthPayloadPadding) {
  const std::string p =
      payload(0, 3.0f, 7, 0, {}, std::string("\xFF\xD8\xFF", 3) + "abcd");  // 31 bytes
  const std::string expected = kMagic + le32(31) + p + std::string(1, '\0');
  EXPECT_EQ(ad::frame_record(p), expected);
  EXPECT_EQ(ad::frame_record(std::string(24, 'a')), kMagic + le32(24) + std::string(24, 'a'));
  EXPECT_EQ(ad::frame_record(""), kMagic + le32(0));
}

TEST(RecordIO, FrameSplitsAtAlignedMagicLikeDmlc) {
  // Magic at offsets 8 and 16 (aligned: split), and at 21 (unaligned: kept as data).
  const std::string p = "AAAAAAAA" + kMagic + "BBBB" + kMagic + "C" + kMagic + "DD";
  ASSERT_EQ(p.size(), 27u);
  const std::string expected = part(1, "AAAAAAAA") + part(2, "BBBB") + part(3, "C" + kMagic + "DD");
  EXPECT_EQ(ad::frame_record(p), expected);
  // Magic first: an empty first part.
  EXPECT_EQ(ad::frame_record(kMagic + "xy"), part(1, "") + part(3, "xy"));
  // Magic last: an empty last part.
  EXPECT_EQ(ad::frame_record("abcd" + kMagic), part(1, "abcd") + part(3, ""));
}

TEST(RecordIO, WriterOutputIsByteExact) {
  TempDir dir;
  const std::string rec = dir.file("out.rec");
  const std::string p0 = payload(2, 0.0f, 0, 0, {3.0f, 4.0f}, "");
  const std::string p5 = payload(0, 1.0f, 5, 0, {}, "abcde");
  const std::string p2 = payload(0, 0.0f, 2, 0, {}, "1234" + kMagic + "5678");
  {
    ad::RecordIOWriter writer(rec);
    writer.write(0, p0);
    writer.write(5, p5);
    writer.write(2, p2);
    writer.commit();
  }
  const std::string r0 = part(0, p0);
  const std::string r5 = part(0, p5);
  const std::string r2 = part(1, p2.substr(0, 28)) + part(3, p2.substr(32));
  EXPECT_EQ(read_bytes(rec), r0 + r5 + r2);
  EXPECT_EQ(read_bytes(dir.file("out.idx")), "0\t0\n5\t" + std::to_string(r0.size()) + "\n2\t" +
                                                 std::to_string(r0.size() + r5.size()) + "\n");
  EXPECT_FALSE(fs::exists(rec + ".tmp." + std::to_string(::getpid())));
}

TEST(RecordIO, WriterWithoutCommitLeavesTargetsUntouched) {
  TempDir dir;
  const std::string rec = dir.file("keep.rec");
  write_bytes(rec, "old");
  {
    ad::RecordIOWriter writer(rec);
    writer.write(1, payload(0, 0.0f, 1, 0, {}, "new"));
  }
  EXPECT_EQ(read_bytes(rec), "old");
  EXPECT_FALSE(fs::exists(dir.file("keep.idx")));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.file("")), fs::directory_iterator()), 1);
}

TEST(RecordIO, WriterRejectsDuplicateAndNegativeKeys) {
  TempDir dir;
  ad::RecordIOWriter writer(dir.file("dup.rec"));
  writer.write(1, payload(0, 0.0f, 1, 0, {}, ""));
  EXPECT_THROW(writer.write(1, payload(0, 0.0f, 1, 0, {}, "")), arcforge::InputError);
  EXPECT_THROW(writer.write(-1, payload(0, 0.0f, 1, 0, {}, "")), arcforge::InputError);
}

TEST(RecordIO, IdxPathFollowsArcfaceTorch) {
  EXPECT_EQ(ad::idx_path_for("/data/ms1m/train.rec"), "/data/ms1m/train.idx");
  EXPECT_EQ(ad::idx_path_for("x.bin"), "x.bin.idx");
  EXPECT_EQ(ad::idx_path_for(".rec"), ".rec.idx");
}

// ------------------------------------------------------------------------- reading ----------

TEST(RecordIO, ReadsHandWrittenInsightFaceFile) {
  TempDir dir;
  HandDataset hand;
  const std::string rec = write_rec(dir, hand.records());
  ad::RecordIOReader reader(rec);
  EXPECT_EQ(reader.idx_path(), dir.file("train.idx"));
  EXPECT_EQ(reader.keys(), (std::vector<int64_t>{0, 1, 2, 3, 4}));

  const ad::ImageRecord r1 = reader.read(1);
  EXPECT_EQ(r1.label, 0);
  EXPECT_EQ(r1.labels, std::vector<float>{0.0f});
  EXPECT_EQ(r1.id, 1u);
  EXPECT_EQ(r1.image, hand.image1);

  const ad::ImageRecord r2 = reader.read(2);  // two parts, reassembled with the magic restored
  EXPECT_EQ(r2.label, 1);
  EXPECT_EQ(r2.labels, (std::vector<float>{1.0f, 0.5f}));
  EXPECT_EQ(r2.id, 2u);
  EXPECT_EQ(r2.image, hand.split_image);
  EXPECT_EQ(reader.read_payload(2), payload(2, 0.0f, 2, 0, {1.0f, 0.5f}, hand.split_image));

  const ad::ParsedPayload h0 = reader.read_header(0);
  EXPECT_EQ(h0.header.flag, 2u);
  EXPECT_EQ(h0.labels, (std::vector<float>{3.0f, 5.0f}));

  const ad::RecordDataset ds = ad::scan_record_dataset(reader);
  EXPECT_TRUE(ds.insightface_header);
  EXPECT_EQ(ds.image_keys, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(ds.labels, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(ds.num_classes, 2);
  EXPECT_EQ(ds.identity_records, 2);
}

TEST(RecordIO, HeaderReadAcrossASplitInsideTheIRHeader) {
  // id = 0xced7230a puts the magic at payload offset 8: dmlc splits inside the header itself.
  TempDir dir;
  const std::string p = payload(0, 6.0f, 0xced7230a, 9, {}, "img");
  const std::string rec_bytes = ad::frame_record(p);
  ASSERT_EQ(rec_bytes, part(1, p.substr(0, 8)) + part(3, p.substr(12)));
  const std::string rec = write_rec(dir, {{7, rec_bytes}});
  ad::RecordIOReader reader(rec);
  const ad::ParsedPayload h = reader.read_header(7);
  EXPECT_EQ(h.header.id, 0xced7230aull);
  EXPECT_EQ(h.header.id2, 9u);
  EXPECT_EQ(h.labels, std::vector<float>{6.0f});
  EXPECT_EQ(reader.read(7).image, "img");
  EXPECT_EQ(reader.read_payload_prefix(7, 10), p.substr(0, 10));
}

TEST(RecordIO, WithoutHeaderEveryKeyIsAnImageInIndexOrder) {
  // A plain im2rec file: record 0 is an image (flag 0); arcface_torch then uses imgrec.keys.
  TempDir dir;
  const std::string rec = write_rec(dir, {{0, part(0, payload(0, 2.0f, 0, 0, {}, "a"))},
                                          {9, part(0, payload(0, 0.0f, 9, 0, {}, "b"))},
                                          {4, part(0, payload(1, 0.0f, 4, 0, {5.0f}, "c"))}});
  ad::RecordIOReader reader(rec);
  const ad::RecordDataset ds = ad::scan_record_dataset(reader);
  EXPECT_FALSE(ds.insightface_header);
  EXPECT_EQ(ds.image_keys, (std::vector<int64_t>{0, 9, 4}));
  EXPECT_EQ(ds.labels, (std::vector<int64_t>{2, 0, 5}));
  EXPECT_EQ(ds.num_classes, 6);
}

TEST(RecordIO, WriterThenReaderRoundTripWithRandomPayloads) {
  TempDir dir;
  const std::string rec = dir.file("rt.rec");
  std::mt19937 rng(123);
  std::vector<std::string> images(300);
  {
    ad::RecordIOWriter writer(rec);
    for (size_t k = 0; k < images.size(); ++k) {
      std::string& img = images[k];
      img.resize(rng() % 97);
      for (char& c : img) c = static_cast<char>(rng());
      // Plant magics at random positions, aligned or not, to exercise splitting.
      for (int m = 0; m < 3 && img.size() >= 8; ++m)
        img.replace(rng() % (img.size() - 4), 4, kMagic);
      ad::IRHeader h;
      h.label = static_cast<float>(k % 17);
      h.id = k;
      writer.write(static_cast<int64_t>(k), ad::pack_payload(h, {}, img));
    }
    writer.commit();
  }
  ad::RecordIOReader reader(rec);
  ASSERT_EQ(reader.keys().size(), images.size());
  // Concurrent readers see the same bytes (pread on one descriptor).
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t k = t; k < images.size(); k += 1 + (t + round) % 3) {
          const ad::ImageRecord r = reader.read(static_cast<int64_t>(k));
          if (r.image != images[k] || r.label != static_cast<int64_t>(k % 17) || r.id != k) {
            ++failures[t];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, (std::vector<int>{0, 0, 0, 0}));
}

// -------------------------------------------------------------------------- errors ----------

TEST(RecordIO, ErrorsBadMagic) {
  TempDir dir;
  std::string bytes = part(0, payload(0, 0.0f, 1, 0, {}, "x"));
  bytes[0] = 'Z';
  const std::string rec = write_rec(dir, {{1, bytes}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { reader.read(1); }, rec, "bad magic");
  expect_input_error([&] { reader.read(1); }, rec, "key 1");
}

TEST(RecordIO, ErrorsTruncatedRecord) {
  TempDir dir;
  const std::string full = part(0, payload(0, 0.0f, 1, 0, {}, "abcdefgh"));
  const std::string rec = write_rec(dir, {{1, full.substr(0, full.size() - 5)}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { reader.read(1); }, rec, "truncated record");
  // Missing padding counts as truncation too (dmlc reads the padded length).
  const std::string odd = part(0, payload(0, 0.0f, 1, 0, {}, "abc"));
  const std::string rec2 = write_rec(dir, {{1, odd.substr(0, odd.size() - 1)}}, "nopad");
  ad::RecordIOReader reader2(rec2);
  expect_input_error([&] { reader2.read(1); }, rec2, "truncated record");
  // A split record whose last part is missing.
  const std::string split = ad::frame_record("abcd" + kMagic + "efgh");
  const std::string rec3 = write_rec(dir, {{1, split.substr(0, 12)}}, "nolast");
  ad::RecordIOReader reader3(rec3);
  expect_input_error([&] { reader3.read_payload(1); }, rec3, "truncated record");
}

TEST(RecordIO, ErrorsIndexOffsetBeyondFile) {
  TempDir dir;
  write_bytes(dir.file("b.rec"), part(0, payload(0, 0.0f, 1, 0, {}, "x")));
  write_bytes(dir.file("b.idx"), "1\t0\n2\t4096\n");
  expect_input_error([&] { ad::RecordIOReader r(dir.file("b.rec")); }, dir.file("b.idx"),
                     "offset 4096 is beyond the end");
  // An offset that leaves no room for the 8-byte part header.
  write_bytes(dir.file("b.idx"), "1\t36\n");
  expect_input_error([&] { ad::RecordIOReader r(dir.file("b.rec")); }, dir.file("b.idx"),
                     "beyond the end");
}

TEST(RecordIO, ErrorsMalformedIndex) {
  TempDir dir;
  write_bytes(dir.file("m.rec"), part(0, payload(0, 0.0f, 1, 0, {}, "x")));
  const std::string idx = dir.file("m.idx");
  for (const auto& [text, what] : std::vector<std::pair<std::string, std::string>>{
           {"1 0\n", "line 1: expected \"key<TAB>offset\""},
           {"\n\nx\t0\n", "line 3: key 'x'"},
           {"-1\t0\n", "key '-1'"},
           {"1\t-4\n", "offset '-4'"},
           {"1\t0x10\n", "offset '0x10'"},
           {"1\t0\n1\t0\n", "key 1 appears twice"},
           {"99999999999999999999\t0\n", "not a non-negative integer"}}) {
    write_bytes(idx, text);
    expect_input_error([&] { ad::RecordIOReader r(dir.file("m.rec")); }, idx, what);
  }
  // Windows line ends and a trailing blank line are fine.
  write_bytes(idx, "1\t0\r\n\r\n");
  ad::RecordIOReader ok(dir.file("m.rec"));
  EXPECT_EQ(ok.keys(), std::vector<int64_t>{1});
}

TEST(RecordIO, ErrorsMissingFiles) {
  TempDir dir;
  expect_input_error([&] { ad::RecordIOReader r(dir.file("none.rec")); }, dir.file("none.rec"),
                     "cannot open");
  write_bytes(dir.file("noidx.rec"), "");
  expect_input_error([&] { ad::RecordIOReader r(dir.file("noidx.rec")); }, dir.file("noidx.idx"),
                     "cannot open");
}

TEST(RecordIO, ErrorsKeyMissing) {
  TempDir dir;
  // Record 0 says the images are keys 1..3 but key 2 is not in the index.
  const std::string rec = write_rec(dir, {{0, part(0, payload(2, 0.0f, 0, 0, {4.0f, 5.0f}, ""))},
                                          {1, part(0, payload(0, 0.0f, 1, 0, {}, "a"))},
                                          {3, part(0, payload(0, 0.0f, 3, 0, {}, "c"))},
                                          {4, part(0, payload(2, 0.0f, 4, 0, {1.0f, 4.0f}, ""))}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { reader.read(42); }, rec, "key 42 is missing");
  expect_input_error([&] { ad::scan_record_dataset(reader); }, rec, "key 2 is missing");
}

TEST(RecordIO, ErrorsHeaderClaimsMoreImagesThanTheIndexHas) {
  TempDir dir;
  const std::string rec = write_rec(dir, {{0, part(0, payload(2, 0.0f, 0, 0, {1e6f, 2e6f}, ""))}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { ad::scan_record_dataset(reader); }, rec, "has only 1 entries");
}

TEST(RecordIO, ErrorsLabelsThatAreNotIntegers) {
  TempDir dir;
  const std::string rec =
      write_rec(dir, {{1, part(0, payload(0, 1.5f, 1, 0, {}, "a"))},
                      {2, part(0, payload(0, -1.0f, 2, 0, {}, "b"))},
                      {3, part(0, payload(1, 0.0f, 3, 0, {std::nanf("")}, "c"))},
                      {4, part(0, payload(1, 0.0f, 4, 0, {INFINITY}, "d"))}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { reader.read(1); }, rec, "label 1.5 is not a non-negative integer");
  expect_input_error([&] { reader.read(2); }, rec, "label -1 is not");
  expect_input_error([&] { reader.read(3); }, rec, "key 3");
  expect_input_error([&] { reader.read(4); }, rec, "label inf is not");
  expect_input_error([&] { ad::scan_record_dataset(reader); }, rec, "key 1");
}

TEST(RecordIO, ErrorsHeaderFieldsOutOfBounds) {
  TempDir dir;
  const std::string rec =
      write_rec(dir, {{1, part(0, std::string(20, 'a'))},
                      {2, part(0, payload(1000, 0.0f, 2, 0, {}, "only a few bytes"))},
                      {3, part(0, payload(0xffffffffu, 0.0f, 3, 0, {}, ""))}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { reader.read(1); }, rec, "shorter than the 24-byte IRHeader");
  expect_input_error([&] { reader.read_header(1); }, rec, "shorter than the 24-byte IRHeader");
  expect_input_error([&] { reader.read(2); }, rec, "flag 1000 announces 4000 label bytes");
  expect_input_error([&] { reader.read_header(2, 8); }, rec, "flag 1000");
  expect_input_error([&] { reader.read(3); }, rec, "flag 4294967295");
}

TEST(RecordIO, ErrorsBrokenContinuationFlags) {
  TempDir dir;
  const std::string a = part(1, "abcd"), b = part(2, "efgh"), c = part(3, "ijkl");
  const std::string whole = part(0, payload(0, 0.0f, 1, 0, {}, ""));
  std::string bad_flag = whole;
  bad_flag[7] = static_cast<char>(bad_flag[7] | 0xa0);     // cflag 5
  const std::string rec = write_rec(dir, {{1, b + c},      // starts in the middle
                                          {2, a + whole},  // continues with a whole record
                                          {3, a + a + c},  // a second "first" part
                                          {4, bad_flag}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { reader.read_payload(1); }, rec, "middle of a split record (cflag 2)");
  expect_input_error([&] { reader.read_payload(2); }, rec, "has cflag 0, expected 2");
  expect_input_error([&] { reader.read_payload(3); }, rec, "has cflag 1, expected 2");
  expect_input_error([&] { reader.read_payload(4); }, rec, "invalid continuation flag 5");
}

TEST(RecordIO, ErrorsRecordZeroWithOneLabelAndEmptyIndex) {
  TempDir dir;
  const std::string rec = write_rec(dir, {{0, part(0, payload(1, 0.0f, 0, 0, {3.0f}, ""))}});
  ad::RecordIOReader reader(rec);
  expect_input_error([&] { ad::scan_record_dataset(reader); }, rec, "record 0 has 1 label");
  const std::string empty = write_rec(dir, {}, "empty");
  ad::RecordIOReader empty_reader(empty);
  expect_input_error([&] { ad::scan_record_dataset(empty_reader); }, empty, "no image records");
}

TEST(RecordIO, FloatToIndexBounds) {
  EXPECT_EQ(ad::float_to_index(0.0f, "f", "label"), 0);
  EXPECT_EQ(ad::float_to_index(16777216.0f, "f", "label"), 16777216);
  EXPECT_THROW(ad::float_to_index(-0.5f, "f", "label"), arcforge::InputError);
  EXPECT_THROW(ad::float_to_index(1e30f, "f", "label"), arcforge::InputError);
  EXPECT_THROW(ad::float_to_index(0.999f, "f", "label"), arcforge::InputError);
}
