// libFuzzer target for the safe pickle subset and the .bin reader on arbitrary bytes.
// Only arcforge::Error may escape; a crash, std::bad_alloc or sanitizer report is a bug. A parsed
// document must be an acyclic graph of in-range references no deeper than the limit, and a .bin
// that parses must survive format_bin -> parse_bin unchanged at protocols 2 and 4.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/data/pickle.hpp"
#include "arcforge/data/verification_set.hpp"

namespace {

namespace pk = arcforge::data::pickle;

// Depth of `ref` by depth-first search; aborts on a cycle or a reference out of range.
int depth_of(const pk::Document& doc, pk::Ref ref, std::vector<int>& depth, std::vector<char>& state) {
  if (ref >= doc.objects.size()) std::abort();
  if (state[ref] == 2) return depth[ref];
  if (state[ref] == 1) std::abort();  // a cycle: the parser promises a DAG
  state[ref] = 1;
  const pk::Object& o = doc.objects[ref];
  int d = 0;
  if (o.kind == pk::Kind::kList || o.kind == pk::Kind::kTuple || o.kind == pk::Kind::kDict) {
    d = 1;
    for (pk::Ref child : o.items) d = std::max(d, depth_of(doc, child, depth, state) + 1);
  } else if (!o.items.empty()) {
    std::abort();
  }
  state[ref] = 2;
  depth[ref] = d;
  return d;
}

void check_document(std::string_view input) {
  const pk::Limits limits;
  try {
    const pk::Document doc = pk::parse(input, "fuzz.pkl", limits);
    if (doc.end_offset > input.size() || doc.end_offset == 0) std::abort();
    std::vector<int> depth(doc.objects.size(), 0);
    std::vector<char> state(doc.objects.size(), 0);
    for (pk::Ref r = 0; r < doc.objects.size(); ++r) {
      if (depth_of(doc, r, depth, state) > limits.max_depth) std::abort();
      const pk::Object& o = doc.objects[r];
      if (const std::string* b = pk::byte_string(o)) {
        if (o.kind != pk::Kind::kBytes && !(o.kind == pk::Kind::kNdArray && o.dtype.item_size == 1)) std::abort();
        (void)b->size();
      }
    }
    if (doc.root >= doc.objects.size()) std::abort();
  } catch (const arcforge::Error&) {
  }
}

void check_bin(std::string_view input) {
  arcforge::data::VerificationSet set;
  try {
    set = arcforge::data::parse_bin(input, "fuzz.bin");
  } catch (const arcforge::Error&) {
    return;
  }
  if (set.issame.empty() || set.images.size() != 2 * set.issame.size()) std::abort();
  for (int protocol : {2, 4}) {
    const arcforge::data::VerificationSet back =
        arcforge::data::parse_bin(arcforge::data::format_bin(set, protocol), "round-trip.bin");
    if (back.images != set.images || back.issame != set.issame) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_document(input);
  check_bin(input);
  return 0;
}
