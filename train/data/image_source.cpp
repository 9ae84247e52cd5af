#include "train/data/image_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/data/image_folder.hpp"
#include "arcforge/data/recordio.hpp"

namespace arcforge::data {
namespace {

// The largest encoded image we read, as image::DecodeLimits::max_bytes.
constexpr uint64_t kMaxImageFileBytes = 256ull << 20;

std::string counts(int64_t images, int64_t classes) {
  return std::to_string(images) + " images, " + std::to_string(classes) + " classes";
}

// open/fstat/read: one allocation of the right size, the size cap checked before reading.
std::string read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(file_message(path, std::string("cannot open: ") + std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info{};
  if (::fstat(fd, &info) != 0) {
    throw InputError(file_message(path, std::string("cannot stat: ") + std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) throw InputError(file_message(path, "not a regular file"));
  const auto size = static_cast<uint64_t>(info.st_size);
  if (size > kMaxImageFileBytes) {
    throw InputError(file_message(path, "file is too large: " + std::to_string(size) + " bytes, over the limit of " +
                                            std::to_string(kMaxImageFileBytes)));
  }
  std::string bytes(size, '\0');
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, bytes.data() + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw InputError(file_message(path, std::string("read failed: ") + std::strerror(errno)));
    }
    if (n == 0) throw InputError(file_message(path, "file shrank while reading"));
    done += static_cast<size_t>(n);
  }
  return bytes;
}

void check_index(int64_t index, int64_t size, const std::string& where) {
  if (index < 0 || index >= size) {
    throw std::out_of_range(where + ": sample index " + std::to_string(index) + " outside [0, " +
                            std::to_string(size) + ")");
  }
}

class RecordSource final : public ImageSource {
 public:
  explicit RecordSource(const std::string& rec_path)
      : reader_(rec_path), dataset_(scan_record_dataset(reader_)) {}

  int64_t size() const override { return static_cast<int64_t>(dataset_.image_keys.size()); }
  int64_t num_classes() const override { return dataset_.num_classes; }
  int64_t label(int64_t index) const override {
    check_index(index, size(), reader_.rec_path());
    return dataset_.labels[static_cast<size_t>(index)];
  }
  std::string read(int64_t index) const override {
    check_index(index, size(), reader_.rec_path());
    const int64_t key = dataset_.image_keys[static_cast<size_t>(index)];
    std::string payload = reader_.read_payload(key);
    const ParsedPayload parsed = parse_payload(payload, reader_.describe(key));
    if (parsed.image.empty()) throw InputError(reader_.describe(key) + ": record holds no image bytes");
    // The image is the payload's tail: drop the header in place rather than copy the image out.
    const size_t image_size = parsed.image.size();
    payload.erase(0, static_cast<size_t>(parsed.image.data() - payload.data()));
    payload.resize(image_size);
    return payload;
  }
  std::string describe(int64_t index) const override {
    if (index < 0 || index >= size()) return reader_.rec_path() + ": sample " + std::to_string(index);
    return reader_.describe(dataset_.image_keys[static_cast<size_t>(index)]);
  }
  std::string summary() const override {
    return reader_.rec_path() + " (RecordIO): " + counts(size(), num_classes());
  }

 private:
  RecordIOReader reader_;
  RecordDataset dataset_;
};

class FolderSource final : public ImageSource {
 public:
  explicit FolderSource(const std::string& root) : folder_(scan_image_folder(root)) {}

  int64_t size() const override { return static_cast<int64_t>(folder_.samples.size()); }
  int64_t num_classes() const override { return folder_.num_classes(); }
  int64_t label(int64_t index) const override { return sample(index).label; }
  std::string read(int64_t index) const override { return read_whole_file(sample(index).path); }
  std::string describe(int64_t index) const override {
    if (index < 0 || index >= size()) return folder_.root + ": sample " + std::to_string(index);
    return folder_.samples[static_cast<size_t>(index)].path;
  }
  std::string summary() const override {
    return folder_.root + " (image folder): " + counts(size(), num_classes());
  }

 private:
  const ImageFolderSample& sample(int64_t index) const {
    check_index(index, size(), folder_.root);
    return folder_.samples[static_cast<size_t>(index)];
  }

  ImageFolder folder_;
};

}  // namespace

std::unique_ptr<ImageSource> open_image_source(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(file_message(path, "dataset does not exist"));
  if (fs::is_directory(path, ec)) {
    const fs::path rec = fs::path(path) / "train.rec";
    if (fs::exists(rec, ec)) return std::make_unique<RecordSource>(rec.string());
    return std::make_unique<FolderSource>(path);
  }
  if (fs::path(path).extension() == ".rec") return std::make_unique<RecordSource>(path);
  throw InputError(file_message(path, "not a dataset: expected a .rec file (with its .idx beside it), "
                                      "a folder holding train.rec, or an image folder root/<identity>/<image>"));
}

}  // namespace arcforge::data
