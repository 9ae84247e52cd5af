#pragma once
// What a benchmark prints about the machine it ran on, so that figures carry their context:
// the CPU model and the load average (on shared 2-core VMs the neighbours move results by 2x).
#include <fstream>
#include <string>

namespace arcforge::bench {

// The "model name" line of /proc/cpuinfo, or "?".
inline std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "?";
}

// The 1, 5 and 15-minute load averages, as /proc/loadavg gives them.
inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

}  // namespace arcforge::bench
