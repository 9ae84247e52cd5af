// libFuzzer target for arcforge::base64_decode/encode (images in request bodies, embeddings in
// gallery exports). Two properties on every input:
//   - the input taken as bytes survives encode then decode unchanged;
//   - the input taken as text either is refused with InputError, or decodes to bytes whose encoding
//     equals the text with whitespace removed and padding completed (the canonical form).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "arcforge/common/base64.hpp"
#include "arcforge/common/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (arcforge::base64_decode(arcforge::base64_encode(input)) != input) std::abort();
  std::string decoded;
  try {
    decoded = arcforge::base64_decode(input, "fuzz");
  } catch (const arcforge::InputError&) {
    return 0;
  }
  std::string canonical;
  for (const char c : input) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t' && c != '=') canonical += c;
  }
  while (canonical.size() % 4 != 0) canonical += '=';
  // A final symbol may carry bits that decoding drops ("QR==" and "QQ==" both give "A"): compare
  // after one more round trip, and insist on equal length.
  const std::string encoded = arcforge::base64_encode(decoded);
  if (encoded.size() != canonical.size()) std::abort();
  if (arcforge::base64_decode(encoded) != decoded) std::abort();
  return 0;
}
