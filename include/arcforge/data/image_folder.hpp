#pragma once
// Image-folder datasets: root/<identity>/<image>.{jpg,jpeg,png,webp} (extensions case-insensitive).
// Identities sorted by folder name (byte order) become labels 0..K-1; files are sorted by name
// within each identity. Other files, files directly under root, nested folders and names starting
// with '.' (hidden files, macOS "._x.jpg" resource forks) are ignored. Symlinks are followed.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace arcforge::data {

struct ImageFolderSample {
  std::string path;  // root/<identity>/<file>
  int64_t label = 0;
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> identities;     // label -> folder name
  std::vector<ImageFolderSample> samples;  // grouped by label, in label order
  int64_t empty_identities_skipped = 0;    // folders without a single image: no label
  int64_t num_classes() const { return static_cast<int64_t>(identities.size()); }
};

// Throws InputError for a missing root, a root that is not a folder, or no images at all.
ImageFolder scan_image_folder(const std::string& root);

// Whether a file name has one of the image extensions above.
bool has_image_extension(std::string_view filename);

// The extension the bytes' magic says ("jpg", "png", "webp"), or "" when none of them.
std::string sniff_image_extension(std::string_view bytes);

// ---- folder <-> InsightFace RecordIO (`arcforge pack` / `arcforge unpack`) ----

struct PackSummary {
  int64_t images = 0;
  int64_t identities = 0;
  int64_t empty_identities_skipped = 0;
  std::string rec, idx;
};

// Writes rec_path and its .idx in InsightFace's layout: record 0 (flag 2, labels [N+1, N+1+K]),
// image records 1..N (scalar label, id = key, the file's bytes unchanged), identity records
// N+1..N+K (labels [first image key, end image key)). A file whose bytes are not JPEG/PNG/WebP
// is an InputError naming it. Atomic: the targets appear only when everything was written.
PackSummary pack_image_folder(const ImageFolder& folder, const std::string& rec_path);

struct UnpackSummary {
  int64_t images = 0;
  int64_t classes = 0;
  int64_t skipped_unknown_format = 0;  // image bytes that are not JPEG/PNG/WebP: not written
  std::string out_dir;
};

// Writes out_dir/<label>/<key>.<jpg|png|webp> for every image record of the dataset view.
// Labels and keys are zero-padded to a common width so that name order is numeric order and
// packing the result again gives the same labels. out_dir must not exist or be empty.
UnpackSummary unpack_to_image_folder(const std::string& rec_path, const std::string& out_dir);

}  // namespace arcforge::data
