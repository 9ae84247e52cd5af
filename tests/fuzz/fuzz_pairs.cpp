// libFuzzer target for the pair-list parsers (CSV and LFW pairs.txt) on arbitrary text.
// Only arcforge::Error may escape. A parsed list must be consistent (one label per pair, indices in
// range, each file once and non-empty), and a CSV list written back with every field quoted must
// parse to the same list.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_set>

#include "arcforge/common/error.hpp"
#include "arcforge/data/verification_set.hpp"

namespace {

namespace ad = arcforge::data;

void check_list(const ad::PairList& list) {
  if (list.pairs.empty() || list.pairs.size() != list.same.size()) std::abort();
  std::unordered_set<std::string> unique(list.files.begin(), list.files.end());
  if (unique.size() != list.files.size()) std::abort();
  for (const std::string& f : list.files) {
    if (f.empty()) std::abort();
  }
  const auto n = static_cast<int64_t>(list.files.size());
  for (const auto& [a, b] : list.pairs) {
    if (a < 0 || b < 0 || a >= n || b >= n) std::abort();
  }
}

std::string quoted(const std::string& field) {
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void check_csv(std::string_view text) {
  ad::PairList list;
  try {
    list = ad::parse_pair_csv(text, "", "fuzz.csv");
  } catch (const arcforge::Error&) {
    return;
  }
  check_list(list);
  std::string again = "file_x,file_y,same\n";
  for (size_t i = 0; i < list.pairs.size(); ++i) {
    again += quoted(list.files[list.pairs[i].first]) + "," + quoted(list.files[list.pairs[i].second]) + "," +
             (list.same[i] ? "1" : "0") + "\n";
  }
  const ad::PairList back = ad::parse_pair_csv(again, "", "again.csv");
  if (back.files != list.files || back.pairs != list.pairs || back.same != list.same) std::abort();
}

void check_lfw(std::string_view text) {
  try {
    const ad::PairList list = ad::parse_lfw_pairs(text, "root", "fuzz.txt");
    check_list(list);
    for (const std::string& f : list.files) {
      if (f.size() < 4 || f.compare(f.size() - 4, 4, ".jpg") != 0 || f.compare(0, 5, "root/") != 0) std::abort();
    }
  } catch (const arcforge::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_csv(text);
  check_lfw(text);
  return 0;
}
