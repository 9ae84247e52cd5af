// Named margin presets (the values InsightFace and the AdaFace paper train with).
#include "train/nn/margin.hpp"

#include "arcforge/common/error.hpp"

namespace arcforge::nn {
namespace {

struct Preset {
  const char* name;
  MarginOptions options;
};

std::vector<Preset> presets() {
  auto make = [](MarginType type) {
    MarginOptions o;
    o.type = type;
    o.scale = 64.0;
    o.m1 = 1.0;
    o.m2 = 0.0;
    o.m3 = 0.0;
    return o;
  };
  MarginOptions softmax = make(MarginType::softmax);
  MarginOptions arcface = make(MarginType::arcface);
  arcface.m2 = 0.5;
  MarginOptions cosface = make(MarginType::cosface);
  cosface.m3 = 0.4;
  MarginOptions combined = make(MarginType::combined);  // InsightFace's combined margin
  combined.m1 = 1.0;
  combined.m2 = 0.3;
  combined.m3 = 0.2;
  MarginOptions dynamic = make(MarginType::dynamic);
  dynamic.m_min = 0.1;
  dynamic.m_max = 0.5;
  dynamic.dynamic_mode = DynamicMarginMode::angular;
  MarginOptions dynamic_additive = dynamic;
  dynamic_additive.dynamic_mode = DynamicMarginMode::additive;
  MarginOptions adaface = make(MarginType::adaface);
  adaface.adaface_m = 0.4;
  adaface.adaface_h = 0.333;
  adaface.adaface_t_alpha = 0.01;
  return {{"softmax", softmax},   {"arcface", arcface}, {"cosface", cosface},
          {"combined", combined}, {"dynamic", dynamic}, {"dynamic_additive", dynamic_additive},
          {"adaface", adaface}};
}

}  // namespace

std::vector<std::string> margin_names() {
  std::vector<std::string> names;
  for (const Preset& p : presets()) names.emplace_back(p.name);
  return names;
}

MarginOptions margin_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (name == p.name) return p.options;
  std::string known;
  for (const std::string& n : margin_names()) known += (known.empty() ? "" : ", ") + n;
  throw ConfigError("unknown margin '" + name + "' (known: " + known + ")");
}

// The preset name of the margin family; the numbers themselves are not part of the name.
std::string margin_name(const MarginOptions& options) {
  switch (options.type) {
    case MarginType::softmax: return "softmax";
    case MarginType::arcface: return "arcface";
    case MarginType::cosface: return "cosface";
    case MarginType::combined: return "combined";
    case MarginType::dynamic:
      return options.dynamic_mode == DynamicMarginMode::angular ? "dynamic" : "dynamic_additive";
    case MarginType::adaface: return "adaface";
  }
  throw ConfigError("margin_name: unknown margin type " +
                    std::to_string(static_cast<int>(options.type)));
}

}  // namespace arcforge::nn
