#include "loop_layouts.hpp"

namespace arcforge::runtime::detail {

using tag = dnnl::memory::format_tag;

tag loop_format_of(const md_t& md) {
  const Dims d = md.dims();
  if (d.size() != 4) return tag::undef;
  for (const auto& [blocked, block] : {std::pair{tag::nChw16c, 16}, std::pair{tag::nChw8c, 8}}) {
    if (d[1] % block == 0 && md == md_t(d, md.data_type(), blocked)) return blocked;
  }
  return md == md_t(d, md.data_type(), tag::acdb) ? tag::acdb : tag::undef;
}

ActivationLayout loop_layout_of(const Dims& d, tag format) {
  const int64_t c = d[1], h = d[2], w = d[3];
  if (format == tag::acdb) return {c, 0, h * w * c, w * c, c};
  const int64_t block = format == tag::nChw16c ? 16 : 8;
  return {block, h * w * block, c * h * w, w * block, block};
}

}  // namespace arcforge::runtime::detail
