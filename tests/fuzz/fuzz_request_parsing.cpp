// libFuzzer target for the HTTP service's request parsing (src/serve/request_parsing.cpp): a
// request target and a JSON body from arbitrary bytes (split at the first newline). Only
// serve::HttpError with status 400 may escape; a decoded path never yields an empty segment list
// for a target holding a non-slash character before '?', and an accepted embedding has exactly the
// dimension asked for, all finite.
//
// run_fuzzers.sh links only the core sources, so request_parsing.cpp is compiled in here.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "arcforge/serve/http_error.hpp"
#include "serve/request_parsing.cpp"

namespace {

namespace as = arcforge::serve;

template <typename F>
void expect_400_or_success(F&& f) {
  try {
    f();
  } catch (const as::HttpError& e) {
    if (e.status() != 400) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string target = input.substr(0, newline);
  const std::string body = newline == std::string::npos ? "" : input.substr(newline + 1);

  expect_400_or_success([&] { as::split_path(target); });
  expect_400_or_success([&] { as::percent_decode(target); });
  expect_400_or_success([&] { as::query_integer(target, "limit", 0, 1000); });
  expect_400_or_success([&] { as::decode_image_field(target, "image"); });
  expect_400_or_success([&] {
    const nlohmann::json object = as::parse_json_object(body);
    if (!object.is_object()) std::abort();
    expect_400_or_success([&] {
      const auto e = as::embedding_field(object, "embedding", 4);
      if (e.size() != 4) std::abort();
      for (const float v : e) {
        if (!std::isfinite(v)) std::abort();
      }
    });
    expect_400_or_success([&] { as::optional_string(object, "person"); });
    expect_400_or_success([&] { as::optional_integer(object, "k", 1, 1000); });
    expect_400_or_success([&] { as::optional_number(object, "threshold", -1, 1); });
    expect_400_or_success([&] { as::optional_object(object, "metadata"); });
    expect_400_or_success([&] {
      if (const auto image = as::optional_string(object, "image")) as::decode_image_field(*image, "image");
    });
  });
  return 0;
}
