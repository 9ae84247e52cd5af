#pragma once
// Verification sets: InsightFace .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...), LFW-style
// pairs.txt lists and CSV pair lists.
//
// A .bin is a pickle of (bins, issame_list): bins are encoded images (JPEG/PNG bytes, or NumPy uint8
// arrays of those bytes), images 2i and 2i+1 form pair i, issame_list[i] says whether they show the
// same person. Pair lists name image files instead; PairList holds each file once so that an
// evaluation can embed every file once and then score the pairs.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace arcforge::data {

struct VerificationSet {
  std::vector<std::string> images;  // encoded image bytes; images[2i], images[2i+1] are pair i
  std::vector<bool> issame;         // one per pair
  std::string name;                 // the file's stem, e.g. "lfw"; InsightFace reports by it

  int64_t pair_count() const { return static_cast<int64_t>(issame.size()); }
  int64_t same_count() const;
};

// Reads a .bin through the safe pickle subset (arcforge/data/pickle.hpp). Accepts a tuple or list
// of two sequences; images as bytes, Python 2 str or flat NumPy uint8 arrays; issame as bools, 0/1
// ints or a NumPy bool array. Throws InputError naming the file for anything else, for an image
// count that is not twice the pair count, and for a set without pairs.
VerificationSet read_bin(const std::string& path);
VerificationSet parse_bin(std::string_view bytes, const std::string& name_for_errors);

// Writes `set` as InsightFace writes it: protocol 2 stores the images as Python 2 str (the classic
// files' form, read by Python 2 and by Python 3 with pickle.load(f, encoding='bytes')); protocol 3
// or 4 stores bytes objects (Python 3 only, any encoding). The file is replaced atomically.
void write_bin(const std::string& path, const VerificationSet& set, int protocol = 2);
std::string format_bin(const VerificationSet& set, int protocol = 2);

struct PairList {
  std::vector<std::string> files;                      // each image path once, in first-use order
  std::vector<std::pair<int64_t, int64_t>> pairs;      // indices into files
  std::vector<bool> same;                              // one per pair

  int64_t same_count() const;
};

// LFW pairs.txt: an optional header "folds n" (10 300: 10 folds of 300 same and 300 different
// pairs) or "n" (View 1: n same then n different), then rows "name i j" (same person) or
// "name1 i name2 j" (different) separated by spaces or tabs; image i of name is
// <image_root>/<name>/<name>_<i as %04d>.jpg. A header must agree with the rows. Errors name the
// file and line.
PairList parse_lfw_pairs(std::string_view text, const std::string& image_root, const std::string& name_for_errors);
PairList read_lfw_pairs(const std::string& path, const std::string& image_root);

// CSV with a header naming the two file columns and the label column (file_x, file_y, same as in
// deepface's pairs.csv; also file1/file2, img1/img2, image1/image2, path1/path2, left/right and
// issame/is_same/label); other columns are ignored. Fields may be quoted ("" inside quotes is a
// quote). The label is 1/0 or true/false in any case. Relative paths are joined to image_root.
PairList parse_pair_csv(std::string_view text, const std::string& image_root, const std::string& name_for_errors);
// image_root empty: the CSV's own folder.
PairList read_pair_csv(const std::string& path, const std::string& image_root = "");

// By extension: .csv is a CSV pair list, anything else an LFW pairs.txt. image_root empty: the
// list's own folder.
PairList read_pair_list(const std::string& path, const std::string& image_root = "");

// The files of `list` that do not exist as regular files.
std::vector<std::string> missing_files(const PairList& list);

}  // namespace arcforge::data
