#pragma once
// The oneDNN memory formats the runtime's own loops take (channels-last, nChw16c, nChw8c), and the
// loops' view of them (activation_layout.hpp).
#include "activation_layout.hpp"
#include "plan.hpp"

namespace arcforge::runtime::detail {

// The format of a 4-D activation in one of those formats, or `undef`.
dnnl::memory::format_tag loop_format_of(const md_t& md);
// The loops' view of dims N, C, H, W in one of those formats.
ActivationLayout loop_layout_of(const Dims& dims, dnnl::memory::format_tag format);

}  // namespace arcforge::runtime::detail
