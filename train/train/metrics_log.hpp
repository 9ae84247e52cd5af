#pragma once
// Append-only JSONL metrics: one JSON object per line, flushed per record.
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace arcforge::train {

class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool append);  // empty path: records nothing
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace arcforge::train
