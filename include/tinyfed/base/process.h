// Child processes (the simulator's aggregator and clinics, integration
// tests): spawn with output to a log file,
// wait with a timeout, kill.
#ifndef TINYFED_BASE_PROCESS_H_
#define TINYFED_BASE_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tinyfed::base {

class Process {
 public:
  // argv[0] is the program path. Returns pid <= 0 on failure.
  static Process Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
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
    return Process(pid);
  }

  Process() = default;
  Process(Process&& o) noexcept : pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }
  Process& operator=(Process&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(status_, o.status_);
    return *this;
  }
  ~Process() {
    if (running()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  // Reaps the process if it exited; true while it runs.
  bool running() {
    if (pid_ <= 0 || status_) return false;
    int s = 0;
    if (waitpid(pid_, &s, WNOHANG) == pid_) {
      status_ = s;
      return false;
    }
    return true;
  }
  // The wait status once exited, or nullopt after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (running() && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status_;
  }
  void Signal(int sig) {
    if (running()) kill(pid_, sig);
  }

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  std::optional<int> status_;
};

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_PROCESS_H_
