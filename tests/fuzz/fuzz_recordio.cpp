// libFuzzer target for the RecordIO reader (hostile .rec + .idx) and the writer/reader pair.
// Input: uint16 little-endian n, then n bytes of .idx text, then the .rec bytes. The files live in
// memfds (no disk traffic per run), opened by their /proc/self/fd path like ordinary files.
// Only arcforge::Error may escape the reader; anything else (a crash, std::bad_alloc, a sanitizer
// report) is a bug. The payload round trip frame_record -> read_payload must be the identity.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "arcforge/common/error.hpp"
#include "arcforge/data/recordio.hpp"

namespace {

struct MemFile {
  int fd = -1;
  std::string path;
  explicit MemFile(const char* name) {
    fd = ::memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) std::abort();
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void set(std::string_view bytes) const {
    if (::ftruncate(fd, 0) != 0) std::abort();
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n =
          ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
};

void read_everything(const std::string& rec, const std::string& idx) {
  try {
    const arcforge::data::RecordIOReader reader(rec, idx);
    size_t budget = 64;  // keys to read per input, so one run stays fast
    for (int64_t key : reader.keys()) {
      if (budget-- == 0) break;
      try {
        const arcforge::data::ImageRecord r = reader.read(key);
        if (r.labels.empty()) std::abort();
      } catch (const arcforge::Error&) {
      }
      try {
        reader.read_header(key, 3);
        reader.read_payload_prefix(key, 30);
      } catch (const arcforge::Error&) {
      }
    }
    const arcforge::data::RecordDataset ds = arcforge::data::scan_record_dataset(reader);
    if (ds.labels.size() != ds.image_keys.size()) std::abort();
  } catch (const arcforge::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const MemFile rec_file("fuzz.rec");
  static const MemFile idx_file("fuzz.idx");
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // 1. Hostile files.
  if (size >= 2) {
    const size_t idx_len = std::min<size_t>(size - 2, size_t{data[0]} | size_t{data[1]} << 8);
    idx_file.set(input.substr(2, idx_len));
    rec_file.set(input.substr(2 + idx_len));
    read_everything(rec_file.path, idx_file.path);
  }

  // 2. The whole input as a payload: parse must not crash; frame + read must give it back.
  try {
    arcforge::data::parse_payload(input, "fuzz");
  } catch (const arcforge::Error&) {
  }
  const std::string framed = arcforge::data::frame_record(input);
  if (framed.size() % 4 != 0) std::abort();
  rec_file.set(framed);
  idx_file.set("3\t0\n");
  const arcforge::data::RecordIOReader reader(rec_file.path, idx_file.path);
  if (reader.read_payload(3) != input) std::abort();
  return 0;
}
