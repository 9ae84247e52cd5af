// Small pieces of the gallery: names, embeddings, metadata, hashes, time.
#include <openssl/evp.h>

#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "gallery_impl.hpp"

namespace arcforge::gallery {

void check_name(const std::string& what, const std::string& name) {
  if (name.empty()) throw InputError(what + " name is empty");
  if (name.size() > 128) throw InputError(what + " name is longer than 128 bytes");
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) throw InputError(what + " name \"" + name.substr(0, 40) + "\" holds a control character");
  }
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void normalise_embedding(std::vector<float>& v, const std::string& what) {
  double norm = 0;
  for (const float x : v) {
    if (!std::isfinite(x)) throw InputError(what + ": embedding holds a value that is not finite");
    norm += static_cast<double>(x) * x;
  }
  if (norm <= 1e-20) throw InputError(what + ": embedding is all zeros");
  const double scale = 1.0 / std::sqrt(norm);
  for (float& x : v) x = static_cast<float>(x * scale);
}

std::string compact_json_object(const std::string& json, const std::string& what) {
  const auto parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) throw InputError(what + ": metadata must be a JSON object");
  return parsed.dump();
}

std::string sha256_hex(const void* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data, size, digest, &length, EVP_sha256(), nullptr) != 1) throw Error("SHA-256 failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

}  // namespace arcforge::gallery
