#include "arcforge/data/image_folder.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/data/recordio.hpp"

namespace arcforge::data {
namespace fs = std::filesystem;
namespace {

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string zero_padded(int64_t value, size_t width) {
  std::string text = std::to_string(value);
  if (text.size() < width) text.insert(0, width - text.size(), '0');
  return text;
}

bool is_hidden(const std::string& name) { return !name.empty() && name.front() == '.'; }

// Sorted names of the entries of `dir` that pass `keep`. Errors name the folder.
template <typename Keep>
std::vector<std::string> sorted_entries(const fs::path& dir, Keep keep) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(dir, fs::directory_options::none, ec);
  if (ec) throw InputError(file_message(dir.string(), "cannot list folder: " + ec.message()));
  for (const fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) throw InputError(file_message(dir.string(), "cannot list folder: " + ec.message()));
    const std::string name = it->path().filename().string();
    if (is_hidden(name)) continue;
    if (keep(*it)) names.push_back(name);
  }
  if (ec) throw InputError(file_message(dir.string(), "cannot list folder: " + ec.message()));
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

bool has_image_extension(std::string_view filename) {
  const size_t dot = filename.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  const std::string ext = lowercase(filename.substr(dot + 1));
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp";
}

std::string sniff_image_extension(std::string_view bytes) {
  if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xFF\xD8\xFF") return "jpg";
  if (bytes.size() >= 8 && bytes.substr(0, 8) == std::string_view("\x89PNG\r\n\x1A\n", 8)) {
    return "png";
  }
  if (bytes.size() >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP") {
    return "webp";
  }
  return "";
}

ImageFolder scan_image_folder(const std::string& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) throw InputError(file_message(root, "image folder does not exist"));
  if (!fs::is_directory(root, ec)) throw InputError(file_message(root, "not a folder"));

  ImageFolder folder;
  folder.root = root;
  const auto is_folder = [](const fs::directory_entry& e) {
    std::error_code e_ec;
    return e.is_directory(e_ec);  // follows symlinks
  };
  const auto is_image_file = [](const fs::directory_entry& e) {
    std::error_code e_ec;
    return e.is_regular_file(e_ec) && has_image_extension(e.path().filename().string());
  };
  for (const std::string& identity : sorted_entries(fs::path(root), is_folder)) {
    const fs::path dir = fs::path(root) / identity;
    const std::vector<std::string> files = sorted_entries(dir, is_image_file);
    if (files.empty()) {
      ++folder.empty_identities_skipped;
      continue;
    }
    const auto label = static_cast<int64_t>(folder.identities.size());
    folder.identities.push_back(identity);
    for (const std::string& file : files) folder.samples.push_back({(dir / file).string(), label});
  }
  if (folder.samples.empty()) {
    throw InputError(
        file_message(root, "no images found (expected root/<identity>/<image>.jpg|jpeg|png|webp; " +
                               std::to_string(folder.empty_identities_skipped) +
                               " identity folders without images)"));
  }
  return folder;
}

PackSummary pack_image_folder(const ImageFolder& folder, const std::string& rec_path) {
  const auto images = static_cast<int64_t>(folder.samples.size());
  const int64_t identities = folder.num_classes();
  const int64_t first_identity_key = images + 1;
  const int64_t end_key = first_identity_key + identities;
  // Record 0 and the identity records carry keys as float32: beyond 2^24 they would round.
  if (end_key > kMaxExactFloatInteger) {
    throw InputError(file_message(folder.root, std::to_string(images) + " images and " +
                                                   std::to_string(identities) +
                                                   " identities: keys would exceed 2^24, which "
                                                   "the float32 labels of record 0 cannot hold"));
  }
  RecordIOWriter writer(rec_path);
  const auto key_as_float = [](int64_t key) { return static_cast<float>(key); };
  const float header0[2] = {key_as_float(first_identity_key), key_as_float(end_key)};
  writer.write(0, pack_payload(IRHeader{}, header0, {}));

  std::vector<int64_t> first_key_of_label(static_cast<size_t>(identities) + 1, 0);
  for (int64_t i = 0; i < images; ++i) {
    const ImageFolderSample& sample = folder.samples[static_cast<size_t>(i)];
    const int64_t key = i + 1;
    if (i == 0 || folder.samples[static_cast<size_t>(i - 1)].label != sample.label) {
      first_key_of_label[static_cast<size_t>(sample.label)] = key;
    }
    const std::string bytes = read_file(sample.path);
    if (sniff_image_extension(bytes).empty()) {
      throw InputError(file_message(sample.path, "not a JPEG, PNG or WebP file (magic bytes)"));
    }
    IRHeader header;
    header.label = static_cast<float>(sample.label);
    header.id = static_cast<uint64_t>(key);
    writer.write(key, pack_payload(header, {}, bytes));
  }
  first_key_of_label[static_cast<size_t>(identities)] = first_identity_key;
  for (int64_t label = 0; label < identities; ++label) {
    const int64_t key = first_identity_key + label;
    const float range[2] = {key_as_float(first_key_of_label[static_cast<size_t>(label)]),
                            key_as_float(first_key_of_label[static_cast<size_t>(label) + 1])};
    IRHeader header;
    header.id = static_cast<uint64_t>(key);
    writer.write(key, pack_payload(header, range, {}));
  }
  writer.commit();
  return PackSummary{images, identities, folder.empty_identities_skipped, rec_path,
                     idx_path_for(rec_path)};
}

UnpackSummary unpack_to_image_folder(const std::string& rec_path, const std::string& out_dir) {
  const RecordIOReader reader(rec_path);
  const RecordDataset dataset = scan_record_dataset(reader);
  std::error_code ec;
  if (fs::exists(out_dir, ec)) {
    if (!fs::is_directory(out_dir, ec)) throw InputError(file_message(out_dir, "not a folder"));
    if (!fs::is_empty(out_dir, ec)) {
      throw InputError(file_message(out_dir, "output folder exists and is not empty"));
    }
  }
  const size_t label_width = std::to_string(std::max<int64_t>(dataset.num_classes - 1, 0)).size();
  const size_t key_width =
      std::to_string(*std::max_element(dataset.image_keys.begin(), dataset.image_keys.end()))
          .size();

  UnpackSummary summary;
  summary.classes = dataset.num_classes;
  summary.out_dir = out_dir;
  for (size_t i = 0; i < dataset.image_keys.size(); ++i) {
    const int64_t key = dataset.image_keys[i];
    const ImageRecord record = reader.read(key);
    const std::string ext = sniff_image_extension(record.image);
    if (ext.empty()) {
      ++summary.skipped_unknown_format;
      continue;
    }
    const fs::path dir = fs::path(out_dir) / zero_padded(dataset.labels[i], label_width);
    fs::create_directories(dir);
    const fs::path file = dir / (zero_padded(key, key_width) + "." + ext);
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(record.image.data(), static_cast<std::streamsize>(record.image.size()));
    out.close();
    if (!out) throw Error(file_message(file.string(), "write failed"));
    ++summary.images;
  }
  return summary;
}

}  // namespace arcforge::data
