#pragma once
// Base64 (RFC 4648, standard alphabet, '=' padding): images in JSON request bodies, embeddings in
// gallery exports.
#include <string>
#include <string_view>

namespace arcforge {

std::string base64_encode(std::string_view bytes);
// Throws InputError naming `what` on a character outside the alphabet, bad padding or a bad length.
// ASCII whitespace (line breaks of wrapped base64) is skipped.
std::string base64_decode(std::string_view text, const std::string& what = "base64");

}  // namespace arcforge
