// Verification sets against the real files in /work/shared/faces (small_lfw.bin, LFW's pairs.txt,
// deepface's pairs.csv; reference counts from pickletools and Python's csv module) and against
// CPython's pickle module as an independent reader and writer of .bin files, when python3 exists.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/data/pickle.hpp"
#include "arcforge/data/verification_set.hpp"

namespace fs = std::filesystem;
namespace ad = arcforge::data;

namespace {

// Paths in a PairList are lexically normalised ("a/../b" is "b").
std::string norm(const std::string& path) { return fs::path(path).lexically_normal().string(); }

std::string shared_faces() {
  if (const char* env = std::getenv("ARCFORGE_SHARED_DIR")) return std::string(env) + "/faces";
  return std::string(ARCFORGE_SOURCE_DIR) + "/../shared/faces";
}

#define REQUIRE_FILE(path)                                                               \
  do {                                                                                   \
    if (!fs::exists(path)) GTEST_SKIP() << "SKIPPED: shared test data missing: " << (path); \
  } while (0)

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "'" << (haystack) << "' lacks '" << (needle) << "'"

template <size_t N>
std::string bytes(const char (&s)[N]) {
  return std::string(s, N - 1);
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("arcforge_vset_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

// A deterministic image-like byte string: every byte value, sizes around the 1-byte/4-byte
// length boundaries of the pickle opcodes. Python's generator in the cross-checks is the same formula.
std::string synthetic_image(size_t index, size_t size) {
  std::string s(size, '\0');
  for (size_t j = 0; j < size; ++j) s[j] = static_cast<char>((index * 37 + j * 11) % 256);
  return s;
}

const std::vector<size_t> kSizes = {1, 255, 256, 1000, 70000, 3, 0, 5};  // 4 pairs
const std::vector<bool> kIssame = {true, false, false, true};

ad::VerificationSet synthetic_set() {
  ad::VerificationSet set;
  for (size_t i = 0; i < kSizes.size(); ++i) set.images.push_back(synthetic_image(i, kSizes[i]));
  set.issame = kIssame;
  return set;
}

std::string error_of_bin(const std::string& data) {
  try {
    ad::parse_bin(data, "x.bin");
  } catch (const arcforge::InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

bool have_python3() {
  return std::system("python3 -c 'import pickle' > /dev/null 2>&1") == 0;
}

// Runs a shell command, returns its stdout.
std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return out;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

std::string pair_list_error(const std::string& text, bool csv) {
  try {
    if (csv) {
      ad::parse_pair_csv(text, "/root", "p.csv");
    } else {
      ad::parse_lfw_pairs(text, "/root", "pairs.txt");
    }
  } catch (const arcforge::InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

}  // namespace

// ------------------------------------------------------------------ .bin ----------

TEST(VerificationSetBin, ReadsRealSmallLfwNumpyForm) {
  const std::string path = shared_faces() + "/insightface/small_lfw.bin";
  REQUIRE_FILE(path);
  const ad::VerificationSet set = ad::read_bin(path);
  EXPECT_EQ(set.name, "small_lfw");
  ASSERT_EQ(set.images.size(), 20u);
  EXPECT_EQ(set.pair_count(), 10);
  EXPECT_EQ(set.same_count(), 10);
  // The BINBYTES lengths in the file, as pickletools.genops lists them.
  const std::vector<size_t> sizes = {4996, 5959, 5701, 5364, 5070, 5364, 5505, 6033, 4783, 5744,
                                     4783, 5029, 5519, 5241, 4806, 5241, 5549, 5468, 6785, 4543};
  for (size_t i = 0; i < set.images.size(); ++i) {
    const std::string& image = set.images[i];
    EXPECT_EQ(image.size(), sizes[i]) << i;
    ASSERT_GE(image.size(), 4u);
    EXPECT_EQ(image.substr(0, 3), bytes("\xff\xd8\xff")) << "image " << i << " lacks the JPEG SOI marker";
    EXPECT_EQ(image.substr(image.size() - 2), bytes("\xff\xd9")) << "image " << i << " lacks the JPEG EOI marker";
  }
}

TEST(VerificationSetBin, RoundTripsEveryProtocol) {
  const ad::VerificationSet set = synthetic_set();
  TempDir dir;
  for (int protocol : {2, 3, 4}) {
    SCOPED_TRACE(protocol);
    const std::string path = dir.file("agedb_" + std::to_string(protocol) + ".bin");
    ad::write_bin(path, set, protocol);
    const ad::VerificationSet back = ad::read_bin(path);
    EXPECT_EQ(back.images, set.images);
    EXPECT_EQ(back.issame, set.issame);
    EXPECT_EQ(back.name, "agedb_" + std::to_string(protocol));
    const arcforge::data::pickle::Document doc = arcforge::data::pickle::parse(arcforge::read_file(path), path);
    EXPECT_EQ(doc.protocol, protocol);
  }
  ad::VerificationSet bad = set;
  bad.issame.pop_back();
  EXPECT_THROW(ad::format_bin(bad), arcforge::InputError);
  EXPECT_THROW(ad::format_bin(ad::VerificationSet{}), arcforge::InputError);
}

TEST(VerificationSetBin, RoundTripsRealSmallLfw) {
  const std::string path = shared_faces() + "/insightface/small_lfw.bin";
  REQUIRE_FILE(path);
  const ad::VerificationSet set = ad::read_bin(path);
  TempDir dir;
  ad::write_bin(dir.file("copy.bin"), set);
  const ad::VerificationSet back = ad::read_bin(dir.file("copy.bin"));
  EXPECT_EQ(back.images, set.images);
  EXPECT_EQ(back.issame, set.issame);
}

TEST(VerificationSetBin, BatchesOfAppendsForLargeSets) {
  // 1200 pairs: 2400 images, more than one APPENDS batch of 1000 on both lists.
  ad::VerificationSet set;
  for (size_t i = 0; i < 2400; ++i) set.images.push_back(synthetic_image(i, i % 300));
  for (size_t i = 0; i < 1200; ++i) set.issame.push_back(i % 3 == 0);
  const ad::VerificationSet back = ad::parse_bin(ad::format_bin(set, 4), "big.bin");
  EXPECT_EQ(back.images, set.images);
  EXPECT_EQ(back.issame, set.issame);
}

TEST(VerificationSetBin, PythonReadsWhatWeWrite) {
  if (!have_python3()) GTEST_SKIP() << "SKIPPED LOUDLY: python3 is not available; the independent-reader check did not run";
  const ad::VerificationSet set = synthetic_set();
  size_t total = 0, byte_sum = 0;
  for (const std::string& image : set.images) {
    total += image.size();
    for (char c : image) byte_sum += static_cast<unsigned char>(c);
  }
  std::ostringstream expected;
  expected << set.images.size() << " " << set.same_count() << " " << total << " " << byte_sum << " bytes\n";
  TempDir dir;
  for (int protocol : {2, 4}) {
    SCOPED_TRACE(protocol);
    const std::string path = dir.file("p" + std::to_string(protocol) + ".bin");
    ad::write_bin(path, set, protocol);
    // The way InsightFace's verification.py loads a .bin under Python 3.
    const std::string out = run("python3 -c \"import pickle; b,s=pickle.load(open('" + path +
                                "','rb'),encoding='bytes'); print(len(b),sum(s),sum(len(x) for x in b),"
                                "sum(sum(x) for x in b),type(b[0]).__name__)\" 2>&1");
    EXPECT_EQ(out, expected.str());
  }
}

TEST(VerificationSetBin, ReadsWhatPythonWrites) {
  if (!have_python3()) GTEST_SKIP() << "SKIPPED LOUDLY: python3 is not available; the independent-writer check did not run";
  const ad::VerificationSet set = synthetic_set();
  TempDir dir;
  std::string sizes, flags;
  for (size_t s : kSizes) sizes += std::to_string(s) + ",";
  for (bool f : kIssame) flags += f ? "True," : "False,";
  // One Python run writes the set at every protocol: py0.bin ... py5.bin.
  const std::string script = "import pickle\nsizes=[" + sizes + "]\nflags=[" + flags +
                             "]\nbins=[bytes((i*37+j*11)%256 for j in range(n)) for i,n in enumerate(sizes)]\n"
                             "for p in range(6): pickle.dump((bins,flags),open('" + dir.file("py") +
                             "%d.bin' % p,'wb'),protocol=p)\n";
  arcforge::write_file_atomically(dir.file("make.py"), script);
  ASSERT_EQ(std::system(("python3 " + dir.file("make.py")).c_str()), 0);
  for (int protocol : {0, 1, 2, 3, 4, 5}) {
    SCOPED_TRACE(protocol);
    const ad::VerificationSet back = ad::read_bin(dir.file("py" + std::to_string(protocol) + ".bin"));
    EXPECT_EQ(back.images, set.images);
    EXPECT_EQ(back.issame, set.issame);
  }
}

TEST(VerificationSetBin, RejectsWrongShapes) {
  namespace pk = arcforge::data::pickle;
  auto pickled = [](auto build) {
    pk::Writer w(4);
    build(w);
    return w.finish();
  };
  EXPECT_CONTAINS(error_of_bin(bytes("\x80\x02K\x05.")), "expected a pickled (images, issame_list) pair, got a int");
  EXPECT_CONTAINS(error_of_bin(bytes("\x80\x02(]]]t.")), "got a tuple of 3 items");
  EXPECT_CONTAINS(error_of_bin(bytes("\x80\x02K\x01]\x86.")), "the image list is a int");
  EXPECT_CONTAINS(error_of_bin(pickled([](pk::Writer& w) {
                    w.empty_list();
                    w.mark();
                    w.bytes("a");
                    w.appends();
                    w.empty_list();
                    w.mark();
                    w.boolean(true);
                    w.appends();
                    w.tuple2();
                  })),
                  "1 images for 1 pairs");
  EXPECT_CONTAINS(error_of_bin(bytes("\x80\x02](K\x01K\x02""e](\x88""e\x86.")), "image 0 is a int");
  EXPECT_CONTAINS(error_of_bin(bytes("\x80\x02](C\x01""aC\x01""be](X\x01\x00\x00\x00ye\x86.")), "issame_list[0] is a str");
  EXPECT_CONTAINS(error_of_bin(bytes("\x80\x02]]\x86.")), "no pairs");
  EXPECT_CONTAINS(error_of_bin("cos\nsystem\n(S'echo hi'\ntR."), "x.bin: pickle: global 'os system' is not allowed");
  // A list of ints 0/1 is accepted as issame (some converters write them).
  const ad::VerificationSet s = ad::parse_bin(bytes("\x80\x02](C\x01""aC\x01""be](K\x00""e\x86."), "ints.bin");
  EXPECT_EQ(s.issame, std::vector<bool>{false});
}

// ------------------------------------------------------------------ LFW pairs.txt ----------

TEST(PairListLfw, RealPairsTxt) {
  const std::string root = shared_faces() + "/lfw";
  REQUIRE_FILE(root + "/pairs.txt");
  const ad::PairList list = ad::read_lfw_pairs(root + "/pairs.txt", root + "/images");
  ASSERT_EQ(list.pairs.size(), 6000u);
  EXPECT_EQ(list.same_count(), 3000);
  EXPECT_EQ(list.files.size(), 7701u);  // the README's count of images pairs.txt references
  // Fold structure: 300 same then 300 different, ten times.
  for (size_t i = 0; i < 6000; ++i) ASSERT_EQ(list.same[i], (i / 300) % 2 == 0) << i;
  EXPECT_EQ(list.files[list.pairs[0].first], norm(root + "/images/Abel_Pacheco/Abel_Pacheco_0001.jpg"));
  EXPECT_EQ(list.files[list.pairs[0].second], norm(root + "/images/Abel_Pacheco/Abel_Pacheco_0004.jpg"));
  EXPECT_EQ(list.files[list.pairs[5999].first], norm(root + "/images/Slobodan_Milosevic/Slobodan_Milosevic_0002.jpg"));
  EXPECT_EQ(list.files[list.pairs[5999].second], norm(root + "/images/Sok_An/Sok_An_0001.jpg"));
  EXPECT_TRUE(ad::missing_files(list).empty()) << ad::missing_files(list).size() << " missing, e.g. "
                                                << ad::missing_files(list)[0];
  // Without the images/ folder every file is missing: the check does look at the disk.
  EXPECT_EQ(ad::missing_files(ad::read_lfw_pairs(root + "/pairs.txt", root)).size(), 7701u);
}

TEST(PairListLfw, BothRowFormsHeadersAndDeduplication) {
  const ad::PairList a = ad::parse_lfw_pairs("A 1 2\r\n\nB\t3\tC   12345\nA 2 1\n", "/r", "p.txt");
  ASSERT_EQ(a.pairs.size(), 3u);
  EXPECT_EQ(a.files, (std::vector<std::string>{"/r/A/A_0001.jpg", "/r/A/A_0002.jpg", "/r/B/B_0003.jpg", "/r/C/C_12345.jpg"}));
  EXPECT_EQ(a.pairs[0], (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(a.pairs[1], (std::pair<int64_t, int64_t>{2, 3}));
  EXPECT_EQ(a.pairs[2], (std::pair<int64_t, int64_t>{1, 0}));
  EXPECT_EQ(a.same, (std::vector<bool>{true, false, true}));
  // "folds n" and View 1's single "n" headers.
  EXPECT_EQ(ad::parse_lfw_pairs("2 1\nA 1 2\nB 1 C 1\nD 1 2\nE 1 F 1\n", "", "p.txt").pairs.size(), 4u);
  EXPECT_EQ(ad::parse_lfw_pairs("1\nA 1 2\nB 1 C 1\n", "", "p.txt").files[0], "A/A_0001.jpg");
}

TEST(PairListLfw, ErrorsNameFileAndLine) {
  EXPECT_CONTAINS(pair_list_error("A 1 2\nB 1\n", false), "pairs.txt:2: expected 'name i j'");
  EXPECT_CONTAINS(pair_list_error("A 1 2\nB 1 2 C 4 5\n", false), "got 6 fields");
  EXPECT_CONTAINS(pair_list_error("A 0 2\n", false), "pairs.txt:1: image number '0'");
  EXPECT_CONTAINS(pair_list_error("A x 2\n", false), "image number 'x'");
  EXPECT_CONTAINS(pair_list_error("A 1 -2\n", false), "image number '-2'");
  EXPECT_CONTAINS(pair_list_error("../etc 1 2\n", false), "'../etc' is not a person's name");
  EXPECT_CONTAINS(pair_list_error("A 1 .. 2\n", false), "'..' is not a person's name");
  EXPECT_CONTAINS(pair_list_error("10 300\nA 1 2\n", false), "pairs.txt:1: the header promises 10 x 300");
  EXPECT_CONTAINS(pair_list_error("1 1\nA 1 2\nB 1 2\n", false), "of which 2 same");
  // Counts whose product overflows (a libFuzzer find): refused, not undefined behaviour.
  EXPECT_CONTAINS(pair_list_error("302000604 302000604000\nA 1 2\n", false), "(more than any file)");
  EXPECT_CONTAINS(pair_list_error("", false), "pairs.txt: no pairs");
  EXPECT_CONTAINS(pair_list_error("10 300\n", false), "no pairs");
}

// ------------------------------------------------------------------ CSV ----------

TEST(PairListCsv, RealDeepfacePairs) {
  const std::string path = shared_faces() + "/deepface/pairs.csv";
  REQUIRE_FILE(path);
  const ad::PairList list = ad::read_pair_csv(path);  // paths relative to the CSV's folder
  ASSERT_EQ(list.pairs.size(), 520u);
  EXPECT_EQ(list.same_count(), 140);
  EXPECT_EQ(list.files.size(), 61u);  // distinct files, counted with Python's csv module
  EXPECT_EQ(list.files[0], norm(shared_faces() + "/deepface/img1.jpg"));
  EXPECT_EQ(list.files[1], norm(shared_faces() + "/deepface/img10.jpg"));
  EXPECT_TRUE(ad::missing_files(list).empty());
  // read_pair_list picks the CSV reader by extension.
  EXPECT_EQ(ad::read_pair_list(path).pairs, list.pairs);
}

TEST(PairListCsv, QuotingAliasesAndLabels) {
  const std::string text = bytes("\xEF\xBB\xBF") +
                           "id, Left ,RIGHT,label\r\n"
                           "1,a.jpg,b.jpg,True\r\n"
                           "2,\"with, comma.jpg\",\"say \"\"hi\"\".jpg\",false\r\n"
                           "\r\n"
                           "3,\"multi\nline.jpg\" ,  a.jpg  ,TRUE\n"
                           "4,/abs/c.jpg,sub/../b.jpg,0";
  const ad::PairList list = ad::parse_pair_csv(text, "/data", "p.csv");
  ASSERT_EQ(list.pairs.size(), 4u);
  EXPECT_EQ(list.files, (std::vector<std::string>{"/data/a.jpg", "/data/b.jpg", "/data/with, comma.jpg",
                                                  "/data/say \"hi\".jpg", "/data/multi\nline.jpg", "/abs/c.jpg"}));
  EXPECT_EQ(list.same, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(list.pairs[2], (std::pair<int64_t, int64_t>{4, 0}));
  EXPECT_EQ(list.pairs[3], (std::pair<int64_t, int64_t>{5, 1}));  // sub/../b.jpg is b.jpg
}

TEST(PairListCsv, ErrorsNameFileAndLine) {
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\na,b,1\na,b,yes\n", true), "p.csv:3: unknown same-value 'yes'");
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\na,b\n", true), "p.csv:2: expected at least 3 fields, got 2");
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\n,b,1\n", true), "p.csv:2: an image file name is empty");
  EXPECT_CONTAINS(pair_list_error("a,b,c\nx,y,1\n", true), "p.csv:1: the header must name the columns file_x, file_y and same (found: a, b, c)");
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\n\"a,b,1\n", true), "p.csv:2: a quoted field is never closed");
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\n\"a\"x,b,1\n", true), "p.csv:2: text after the closing quote");
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\n", true), "no pairs");
  EXPECT_CONTAINS(pair_list_error("", true), "empty CSV");
  EXPECT_CONTAINS(pair_list_error("file_x,file_y,same\n\"a\nb\",c,1\nd,e,2\n", true), "p.csv:4: unknown same-value '2'");
}

TEST(PairListCsv, ListFilesByExtensionAndDefaultRoot) {
  TempDir dir;
  arcforge::write_file_atomically(dir.file("pairs.CSV"), "file_x,file_y,same\nx.jpg,y.jpg,1\n");
  arcforge::write_file_atomically(dir.file("pairs.txt"), "P 1 2\n");
  const ad::PairList csv = ad::read_pair_list(dir.file("pairs.CSV"));
  EXPECT_EQ(csv.files[0], dir.file("x.jpg"));
  const ad::PairList txt = ad::read_pair_list(dir.file("pairs.txt"));
  EXPECT_EQ(txt.files[0], dir.file("P/P_0001.jpg"));
  EXPECT_EQ(ad::read_pair_list(dir.file("pairs.txt"), "/elsewhere").files[1], "/elsewhere/P/P_0002.jpg");
  EXPECT_EQ(ad::missing_files(txt).size(), 2u);
}
