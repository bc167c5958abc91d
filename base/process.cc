#include "tinyfed/base/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

extern char** environ;

namespace tinyfed::base {

Process Process::Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  if (argv.empty()) return Process();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  if (pid <= 0) return Process();
  // The child cannot have been reaped yet (only Wait and running() reap), so
  // the pid still names it.
  // glibc 2.36 declares pidfd_open without C linkage, so call it directly.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Process();
  }
  return Process(pid, pidfd);
}

Process::Process(Process&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::exchange(o.pidfd_, -1)),
      status_(std::exchange(o.status_, {})),
      peak_rss_bytes_(std::exchange(o.peak_rss_bytes_, 0)) {}

Process& Process::operator=(Process&& o) noexcept {
  std::swap(pid_, o.pid_);
  std::swap(pidfd_, o.pidfd_);
  std::swap(status_, o.status_);
  std::swap(peak_rss_bytes_, o.peak_rss_bytes_);
  return *this;
}

Process::~Process() {
  if (running()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (pidfd_ >= 0) close(pidfd_);
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int s = 0;
  if (waitpid(pid_, &s, WNOHANG) == pid_) {
    status_ = s;
    return false;
  }
  return true;
}

std::optional<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (!running()) return status_;
  pollfd exited{.fd = pidfd_, .events = POLLIN, .revents = 0};
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    const int r = poll(&exited, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (r > 0 || (r < 0 && errno != EINTR) || left.count() <= 0) break;
  }
  running();
  return status_;
}

void Process::SampleMemory() {
  if (pid_ <= 0 || status_) return;
  std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) != 0) continue;
    const uint64_t kib = std::strtoull(line.c_str() + 6, nullptr, 10);
    peak_rss_bytes_ = std::max(peak_rss_bytes_, kib * 1024);
    return;
  }
}

void Process::Signal(int sig) {
  if (running()) kill(pid_, sig);
}

}  // namespace tinyfed::base
