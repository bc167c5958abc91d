// Child processes (the simulator's aggregator and clinics, integration
// tests): spawn with output to a log file, wait for the exit with a timeout,
// signal. Waiting blocks on the kernel's exit notification (a pidfd), not on
// a polling loop.
#ifndef TINYFED_BASE_PROCESS_H_
#define TINYFED_BASE_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tinyfed::base {

class Process {
 public:
  // argv[0] is the program path; stdout and stderr go to `log`. Returns a
  // Process with pid() <= 0 on failure.
  static Process Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log);

  Process() = default;
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Kills and reaps a process still running.
  ~Process();

  pid_t pid() const { return pid_; }
  // Reaps the process if it exited; true while it runs.
  bool running();
  // The wait status once exited, or nullopt if it still runs after `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  void Signal(int sig);
  // Readable (poll(2)) once the process has exited; -1 if none was spawned.
  int exit_fd() const { return pidfd_; }
  // Reads the process's resident-memory high-water mark (VmHWM in
  // /proc/PID/status: of its own image, not its children's). Sample while it
  // runs: the mark only grows, and an exited process has none. (The kernel's
  // ru_maxrss would not do: a spawned child starts with its parent's.)
  void SampleMemory();
  // The largest mark sampled so far; 0 before the first.
  uint64_t peak_rss_bytes() const { return peak_rss_bytes_; }

 private:
  Process(pid_t pid, int pidfd) : pid_(pid), pidfd_(pidfd) {}
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
  uint64_t peak_rss_bytes_ = 0;
};

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_PROCESS_H_
