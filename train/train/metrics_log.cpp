#include "train/train/metrics_log.hpp"

#include <filesystem>

#include "arcforge/common/error.hpp"

namespace arcforge::train {

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  if (path.empty()) return;  // a log that records nothing (the non-leading ranks of a run)
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  if (!out_) throw Error(file_message(path, "cannot open metrics file for writing"));
}

void MetricsLog::write(const nlohmann::json& record) {
  if (path_.empty()) return;
  out_ << record.dump() << '\n';
  out_.flush();
}

}  // namespace arcforge::train
