#include "train/dist/local_launcher.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "arcforge/common/error.hpp"

namespace arcforge::train::dist {

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
  return ntohs(address.sin_port);
}

int launch_local_ranks(int nproc, const std::vector<std::string>& args) {
  if (nproc < 1) throw ConfigError("--nproc must be at least 1, got " + std::to_string(nproc));
  const std::string port = std::to_string(free_local_port());
  std::vector<pid_t> children;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::cerr << "rank " << rank << ": cannot run /proc/self/exe: " << std::strerror(errno) << "\n";
      ::_exit(127);
    }
    children.push_back(pid);
  }
  int first_failure = 0;
  for (size_t alive = children.size(); alive > 0; --alive) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) break;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && first_failure == 0) {
      first_failure = code;
      int rank = 0;
      for (size_t k = 0; k < children.size(); ++k)
        if (children[k] == pid) rank = static_cast<int>(k);
      std::cerr << "arcforge train --nproc " << nproc << ": rank " << rank << " exited with status "
                << code << "; stopping the other ranks\n";
      for (pid_t other : children)
        if (other != pid) ::kill(other, SIGTERM);
    }
  }
  return first_failure;
}

}  // namespace arcforge::train::dist
