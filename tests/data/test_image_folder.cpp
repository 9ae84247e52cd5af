// Image folders (ordering, labels, what is ignored) and the pack/unpack round trip: the InsightFace
// layout of the packed file is checked record by record against what arcface_torch reads, the
// unpacked files byte for byte, and packing the unpacked folder again must give identical files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/data/image_folder.hpp"
#include "arcforge/data/recordio.hpp"

namespace ad = arcforge::data;
namespace fs = std::filesystem;

namespace {

const std::string kJpeg("\xFF\xD8\xFF\xE0", 4);
const std::string kPng("\x89PNG\r\n\x1A\n", 8);
const std::string kDmlcMagic("\x0a\x23\xd7\xce", 4);
std::string webp(const std::string& body) {
  return std::string("RIFF\x10\0\0\0WEBPVP8 ", 16) + body;  // the size field is not checked
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "arcforge_folder_XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path(const std::string& rel = "") const { return (fs::path(path_) / rel).string(); }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every regular file under `root`, as relative path -> bytes.
std::map<std::string, std::string> tree(const std::string& root) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), root).string()] = read_bytes(e.path());
  }
  return files;
}

std::string shared_dir() {
  if (const char* env = std::getenv("ARCFORGE_SHARED_DIR")) return env;
  return std::string(ARCFORGE_SOURCE_DIR) + "/../shared";
}

}  // namespace

TEST(ImageFolder, OrderingLabelsAndIgnoredEntries) {
  TempDir dir;
  const std::string root = dir.path("root");
  write_bytes(root + "/bob/b.JPG", kJpeg);
  write_bytes(root + "/bob/a.png", kPng);
  write_bytes(root + "/bob/c.txt", "notes");
  write_bytes(root + "/bob/._a.jpg", "macOS resource fork");
  write_bytes(root + "/bob/nested/deep.jpg", kJpeg);
  write_bytes(root + "/Alice/z.webp", webp("x"));
  write_bytes(root + "/Alice/y.Jpeg", kJpeg);
  write_bytes(root + "/Alice/10.jpg", kJpeg);
  write_bytes(root + "/Alice/9.jpg", kJpeg);
  write_bytes(root + "/carol/only.PNG", kPng);
  write_bytes(root + "/stray.jpg", kJpeg);        // not in an identity folder
  write_bytes(root + "/.cache/x.jpg", kJpeg);     // hidden folder
  write_bytes(root + "/empty_id/readme.md", "");  // no images: skipped, counted
  fs::create_directories(root + "/also_empty");

  const ad::ImageFolder f = ad::scan_image_folder(root);
  // Byte order: uppercase before lowercase, "10" before "9".
  EXPECT_EQ(f.identities, (std::vector<std::string>{"Alice", "bob", "carol"}));
  EXPECT_EQ(f.num_classes(), 3);
  EXPECT_EQ(f.empty_identities_skipped, 2);
  std::vector<std::pair<std::string, int64_t>> got;
  for (const auto& s : f.samples) got.emplace_back(fs::relative(s.path, root).string(), s.label);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, int64_t>>{{"Alice/10.jpg", 0},
                                                               {"Alice/9.jpg", 0},
                                                               {"Alice/y.Jpeg", 0},
                                                               {"Alice/z.webp", 0},
                                                               {"bob/a.png", 1},
                                                               {"bob/b.JPG", 1},
                                                               {"carol/only.PNG", 2}}));
}

TEST(ImageFolder, Errors) {
  TempDir dir;
  EXPECT_THROW(ad::scan_image_folder(dir.path("missing")), arcforge::InputError);
  try {
    ad::scan_image_folder(dir.path("missing"));
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path("missing") + ": image folder does not exist"),
              std::string::npos);
  }
  write_bytes(dir.path("file"), "x");
  EXPECT_THROW(ad::scan_image_folder(dir.path("file")), arcforge::InputError);
  fs::create_directories(dir.path("empty/a"));
  write_bytes(dir.path("empty/b/notes.txt"), "x");
  try {
    ad::scan_image_folder(dir.path("empty"));
    ADD_FAILURE() << "expected InputError";
  } catch (const arcforge::InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(dir.path("empty")), std::string::npos) << m;
    EXPECT_NE(m.find("no images found"), std::string::npos) << m;
    EXPECT_NE(m.find("2 identity folders without images"), std::string::npos) << m;
  }
}

TEST(ImageFolder, ExtensionsAndMagic) {
  EXPECT_TRUE(ad::has_image_extension("a.jpg"));
  EXPECT_TRUE(ad::has_image_extension("a.b.JPEG"));
  EXPECT_TRUE(ad::has_image_extension("x.WebP"));
  EXPECT_TRUE(ad::has_image_extension("x.png"));
  EXPECT_FALSE(ad::has_image_extension("jpg"));
  EXPECT_FALSE(ad::has_image_extension(".jpg"));
  EXPECT_FALSE(ad::has_image_extension("a.jpg.txt"));
  EXPECT_FALSE(ad::has_image_extension("a.gif"));
  EXPECT_EQ(ad::sniff_image_extension(kJpeg), "jpg");
  EXPECT_EQ(ad::sniff_image_extension(kPng + "IHDR"), "png");
  EXPECT_EQ(ad::sniff_image_extension(webp("")), "webp");
  EXPECT_EQ(ad::sniff_image_extension(std::string("RIFF\x10\0\0\0WAVE", 12)), "");
  EXPECT_EQ(ad::sniff_image_extension(kPng.substr(0, 7)), "");
  EXPECT_EQ(ad::sniff_image_extension(""), "");
}

TEST(ImageFolder, PackWritesInsightFaceLayoutAndUnpackRoundTrips) {
  TempDir dir;
  const std::string root = dir.path("faces");
  // identity -> files; one image holds the dmlc magic at an aligned payload offset (24 + 8).
  const std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> spec =
      {
          {"ann", {{"1.jpg", kJpeg + "ann-one"}, {"2.png", kPng + "ann-two"}}},
          {"ben", {{"a.webp", webp("ben")}}},
          {"cid",
           {{"x.jpg", kJpeg + "abcd" + kDmlcMagic + "after"},
            {"y.jpg", kJpeg + "y"},
            {"z.jpg", kJpeg + "z"}}},
      };
  for (const auto& [id, files] : spec) {
    for (const auto& [name, bytes] : files) write_bytes(root + "/" + id + "/" + name, bytes);
  }
  fs::create_directories(root + "/dan");  // empty identity

  const ad::ImageFolder folder = ad::scan_image_folder(root);
  const std::string rec = dir.path("out/train.rec");
  const ad::PackSummary summary = ad::pack_image_folder(folder, rec);
  EXPECT_EQ(summary.images, 6);
  EXPECT_EQ(summary.identities, 3);
  EXPECT_EQ(summary.empty_identities_skipped, 1);
  EXPECT_EQ(summary.idx, dir.path("out/train.idx"));

  // The layout arcface_torch reads: record 0 = (flag 2, [N+1, N+1+K]); images 1..N with scalar
  // labels; identity records N+1.. with [first, end) image keys.
  ad::RecordIOReader reader(rec);
  EXPECT_EQ(reader.keys(), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  const ad::ParsedPayload h0 = ad::parse_payload(reader.read_payload(0), "record 0");
  EXPECT_EQ(h0.header.flag, 2u);
  EXPECT_EQ(h0.labels, (std::vector<float>{7.0f, 10.0f}));
  EXPECT_TRUE(h0.image.empty());
  int64_t key = 1;
  int64_t label = 0;
  for (const auto& [id, files] : spec) {
    for (const auto& [name, bytes] : files) {
      const std::string payload = reader.read_payload(key);
      const ad::ParsedPayload p = ad::parse_payload(payload, "record");
      EXPECT_EQ(p.header.flag, 0u) << key;
      EXPECT_EQ(p.header.label, static_cast<float>(label)) << key;
      EXPECT_EQ(p.header.id, static_cast<uint64_t>(key));
      EXPECT_EQ(p.header.id2, 0u);
      EXPECT_EQ(p.image, bytes) << id << "/" << name;
      ++key;
    }
    ++label;
  }
  const std::vector<std::vector<float>> identity_ranges = {{1, 3}, {3, 4}, {4, 7}};
  for (int64_t k = 0; k < 3; ++k) {
    const ad::ParsedPayload p = ad::parse_payload(reader.read_payload(7 + k), "identity");
    EXPECT_EQ(p.header.flag, 2u);
    EXPECT_EQ(p.header.id, static_cast<uint64_t>(7 + k));
    EXPECT_EQ(p.labels, identity_ranges[static_cast<size_t>(k)]);
  }
  // The split really happened on disk: the image with the magic takes two parts.
  const std::string raw = read_bytes(rec);
  const uint64_t off = reader.offset_of(4);
  EXPECT_EQ(static_cast<unsigned char>(raw[off + 7]) >> 5, 1) << "cflag of the first part";

  const ad::RecordDataset ds = ad::scan_record_dataset(reader);
  EXPECT_EQ(ds.image_keys, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(ds.labels, (std::vector<int64_t>{0, 0, 1, 2, 2, 2}));
  EXPECT_EQ(ds.num_classes, 3);
  EXPECT_EQ(ds.identity_records, 3);

  // Unpack: out/<label>/<key>.<ext from magic>, bytes unchanged.
  const std::string out = dir.path("unpacked");
  const ad::UnpackSummary u = ad::unpack_to_image_folder(rec, out);
  EXPECT_EQ(u.images, 6);
  EXPECT_EQ(u.classes, 3);
  EXPECT_EQ(u.skipped_unknown_format, 0);
  const std::map<std::string, std::string> expected = {
      {"0/1.jpg", kJpeg + "ann-one"}, {"0/2.png", kPng + "ann-two"},
      {"1/3.webp", webp("ben")},      {"2/4.jpg", kJpeg + "abcd" + kDmlcMagic + "after"},
      {"2/5.jpg", kJpeg + "y"},       {"2/6.jpg", kJpeg + "z"}};
  EXPECT_EQ(tree(out), expected);

  // Packing the unpacked folder gives the same .rec and .idx, byte for byte.
  const std::string rec2 = dir.path("again/train.rec");
  ad::pack_image_folder(ad::scan_image_folder(out), rec2);
  EXPECT_EQ(read_bytes(rec2), raw);
  EXPECT_EQ(read_bytes(dir.path("again/train.idx")), read_bytes(dir.path("out/train.idx")));

  // Unpacking into a folder that has files is refused.
  EXPECT_THROW(ad::unpack_to_image_folder(rec, out), arcforge::InputError);
}

TEST(ImageFolder, UnpackPadsNamesSoThatNameOrderIsNumericOrder) {
  TempDir dir;
  const std::string root = dir.path("r");
  for (int id = 0; id < 12; ++id)
    write_bytes(root + "/p" + std::to_string(100 + id) + "/a.jpg", kJpeg);
  const std::string rec = dir.path("p.rec");
  ad::pack_image_folder(ad::scan_image_folder(root), rec);
  const std::string out = dir.path("u");
  ad::unpack_to_image_folder(rec, out);
  EXPECT_TRUE(fs::exists(out + "/00/01.jpg"));
  EXPECT_TRUE(fs::exists(out + "/11/12.jpg"));
  const ad::ImageFolder again = ad::scan_image_folder(out);
  for (size_t i = 0; i < again.samples.size(); ++i) {
    EXPECT_EQ(again.samples[i].label, static_cast<int64_t>(i));
  }
}

TEST(ImageFolder, PackRefusesFilesThatAreNotImagesAndLeavesNoOutput) {
  TempDir dir;
  const std::string root = dir.path("r");
  write_bytes(root + "/a/good.jpg", kJpeg);
  write_bytes(root + "/a/bad.jpg", "this is text");
  try {
    ad::pack_image_folder(ad::scan_image_folder(root), dir.path("o/t.rec"));
    ADD_FAILURE() << "expected InputError";
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find(root + "/a/bad.jpg: not a JPEG, PNG or WebP"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::is_empty(dir.path("o")));
}

TEST(ImageFolder, RealPhotosPackUnpackRoundTrip) {
  const std::string faces = shared_dir() + "/faces/deepface";
  const std::string csv = faces + "/identities.csv";
  if (!fs::exists(csv))
    GTEST_SKIP() << "SKIPPED: " << csv << " is absent (set ARCFORGE_SHARED_DIR)";
  TempDir dir;
  const std::string root = dir.path("links");
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header: file,identity
  std::map<std::string, std::vector<std::string>> by_identity;
  while (std::getline(in, line)) {
    const size_t comma = line.find(',');
    ASSERT_NE(comma, std::string::npos) << line;
    const std::string file = line.substr(0, comma), id = line.substr(comma + 1);
    fs::create_directories(root + "/" + id);
    fs::create_symlink(faces + "/" + file, root + "/" + id + "/" + file);
    by_identity[id].push_back(file);
  }
  const ad::ImageFolder folder = ad::scan_image_folder(root);
  EXPECT_EQ(folder.num_classes(), static_cast<int64_t>(by_identity.size()));
  const ad::PackSummary s = ad::pack_image_folder(folder, dir.path("rec/train.rec"));
  EXPECT_EQ(s.images, static_cast<int64_t>(folder.samples.size()));
  EXPECT_EQ(s.images, 61) << "README: 61 labelled photos";
  EXPECT_EQ(s.identities, 13);

  const ad::UnpackSummary u = ad::unpack_to_image_folder(dir.path("rec/train.rec"), dir.path("u"));
  EXPECT_EQ(u.images, 61);
  const std::map<std::string, std::string> unpacked = tree(dir.path("u"));
  ASSERT_EQ(unpacked.size(), 61u);
  // Rebuild the expected names independently: identities in std::map (byte) order, files sorted.
  int64_t key = 1, label = 0, webp_files = 0;
  for (auto& [id, files] : by_identity) {
    std::sort(files.begin(), files.end());
    for (const std::string& file : files) {
      const std::string bytes = read_bytes(faces + "/" + file);
      const std::string ext = ad::sniff_image_extension(bytes);
      webp_files += ext == "webp";
      std::ostringstream name;
      name << (label < 10 ? "0" : "") << label << "/" << (key < 10 ? "0" : "") << key << "." << ext;
      const auto it = unpacked.find(name.str());
      ASSERT_NE(it, unpacked.end()) << name.str() << " (" << id << "/" << file << ")";
      EXPECT_TRUE(it->second == bytes) << name.str() << " differs from " << file;
      ++key;
    }
    ++label;
  }
  EXPECT_EQ(webp_files, 1) << "README: img47.jpg is really WebP";
}
