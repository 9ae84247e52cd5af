#pragma once
// Child processes for the tests that run the CLI (resume after SIGKILL, multi-process training).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace arcforge::test {

// Runs args[0] with args, plus environment variables; stdout/stderr go to the files when given.
// With own_group the child leads a new process group, so kill(-pid, sig) reaches it and every
// process it starts (a launcher and its ranks).
inline pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                   const std::string& out = "", const std::string& err = "", bool own_group = false) {
  pid_t pid = fork();
  if (pid == 0) {
    if (own_group) setpgid(0, 0);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    if (!out.empty()) dup2(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 1);
    if (!err.empty()) dup2(open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// The exit status, or minus the signal that ended the process.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

#ifdef ARCFORGE_CLI
// Runs the arcforge CLI with `args` (a shell word list) and waits; `output` gets its stdout and
// stderr together. Returns the exit status, or -1 when it did not exit normally.
inline int run_cli(const std::string& args, std::string* output = nullptr) {
  const std::string command = std::string(ARCFORGE_CLI) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return -1;
  std::string text;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) text.append(buffer, n);
  const int status = pclose(pipe);
  if (output) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
#endif

}  // namespace arcforge::test
