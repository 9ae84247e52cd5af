#pragma once
// Where the pipeline tests find ../shared (real photos and third-party models), and a loud skip
// when it is absent.
#include <cstdlib>
#include <filesystem>
#include <string>

namespace arcforge::pipeline::test {

inline std::string shared_dir() {
  if (const char* env = std::getenv("ARCFORGE_SHARED_DIR")) return env;
  return std::string(ARCFORGE_SOURCE_DIR) + "/../shared";
}
inline std::string shared_model(const std::string& name) { return shared_dir() + "/models/" + name; }
inline std::string shared_face(const std::string& name) { return shared_dir() + "/faces/" + name; }
inline std::string faces_dir() { return shared_dir() + "/faces"; }

}  // namespace arcforge::pipeline::test

// Skips the test (loudly) when a file of ../shared is missing.
#define REQUIRE_SHARED(path)                                                                     \
  do {                                                                                           \
    if (!std::filesystem::exists(path)) {                                                        \
      GTEST_SKIP() << "SKIPPED: " << (path) << " is absent (set ARCFORGE_SHARED_DIR to ../shared)"; \
    }                                                                                            \
  } while (0)

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <sys/wait.h>

namespace arcforge::pipeline::test {

// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("arcforge_pipeline_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs a shell command; returns stdout+stderr, and the exit status in *status.
inline std::string run_command(const std::string& command, int* status) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p != nullptr && fgets(buf, sizeof buf, p) != nullptr) out += buf;
  const int rc = p != nullptr ? pclose(p) : -1;
  *status = (rc != -1 && WIFEXITED(rc)) ? WEXITSTATUS(rc) : -1;
  return out;
}

}  // namespace arcforge::pipeline::test

namespace arcforge::pipeline::test {

// `jpeg` with an EXIF segment right after SOI whose IFD0 holds only the orientation tag (big-endian
// TIFF), as a camera tags a photo it stored turned.
inline std::string with_exif_orientation(const std::string& jpeg, int orientation) {
  const std::string tiff = std::string("MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0", 19) +
                           std::string(1, static_cast<char>(orientation)) + std::string(6, '\0');
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  return jpeg.substr(0, 2) + std::string("\xFF\xE1\0", 3) + std::string(1, static_cast<char>(payload.size() + 2)) +
         payload + jpeg.substr(2);
}

// The PNG specification's CRC-32 (reflected polynomial 0xEDB88320), bit by bit.
inline uint32_t png_crc(const std::string& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) {
    crc ^= static_cast<unsigned char>(c);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0xEDB88320u : 0u);
  }
  return crc ^ 0xFFFFFFFFu;
}

// A PNG chunk as the specification lays it out: big-endian length, type, data, CRC of type and
// data (decoders check it).
inline std::string png_chunk(const std::string& type, const std::string& data) {
  std::string chunk;
  const auto put32 = [&chunk](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) chunk.push_back(static_cast<char>((v >> shift) & 0xFF));
  };
  put32(static_cast<uint32_t>(data.size()));
  chunk.append(type).append(data);
  put32(png_crc(type + data));
  return chunk;
}

// `png` with `chunk` right after IHDR (8 bytes of signature, then IHDR's 25).
inline std::string with_png_chunk(const std::string& png, const std::string& chunk) {
  return png.substr(0, 33) + chunk + png.substr(33);
}

// `png` with an eXIf chunk holding the orientation tag, as with_exif_orientation's TIFF.
inline std::string with_png_exif_orientation(const std::string& png, int orientation) {
  const std::string tiff = std::string("MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0", 19) +
                           std::string(1, static_cast<char>(orientation)) + std::string(6, '\0');
  return with_png_chunk(png, png_chunk("eXIf", tiff));
}

// img49.jpg (4352x2903) stored as a camera stores a portrait: turned 90 degrees counter-clockwise
// by jpegtran (lossless) and tagged 6. Empty when jpegtran is missing.
inline std::string sideways_img49(const ScratchDir& dir) {
  const std::string out = dir.file("sideways.jpg");
  // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "literal" + string here.
  std::string command = "jpegtran -rotate 270 -trim -copy none -outfile '";
  command.append(out).append("' '").append(shared_face("deepface/img49.jpg")).append("' 2> /dev/null");
  if (std::system(command.c_str()) != 0) return "";
  std::ifstream in(out, std::ios::binary);
  const std::string stored((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string tagged = with_exif_orientation(stored, 6);
  std::ofstream(out, std::ios::binary | std::ios::trunc) << tagged;
  return out;
}

}  // namespace arcforge::pipeline::test
