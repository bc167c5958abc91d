#include "tinyfed/base/await_path.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace tinyfed::base {
namespace {

// Closes the inotify descriptor on every return.
class Watch {
 public:
  Watch() : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {}
  ~Watch() {
    if (fd_ >= 0) close(fd_);
  }
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  int fd() const { return fd_; }
  // Discards the events read so far: the caller re-checks the path itself.
  void Drain() const {
    alignas(inotify_event) char buffer[4096];
    while (read(fd_, buffer, sizeof buffer) > 0) {
    }
  }

 private:
  int fd_;
};

}  // namespace

absl::Status AwaitPath(const std::filesystem::path& path, std::chrono::milliseconds timeout, Process* unless_exited) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  Watch watch;
  if (watch.fd() < 0) return absl::InternalError(absl::StrCat("inotify: ", std::strerror(errno)));
  if (inotify_add_watch(watch.fd(), dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot watch ", dir.string(), " for ", path.filename().string(), ": ", std::strerror(errno)));
  }
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Checked after the watch is in place, so a file created in between is
    // seen either here or as an event.
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return absl::OkStatus();
    if (unless_exited && !unless_exited->running()) {
      return absl::AbortedError(
          absl::StrCat("process ", unless_exited->pid(), " exited before ", path.string(), " appeared"));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat(path.string(), " did not appear within ", timeout.count(), " ms"));
    }
    pollfd fds[2] = {{.fd = watch.fd(), .events = POLLIN, .revents = 0},
                     {.fd = unless_exited ? unless_exited->exit_fd() : -1, .events = POLLIN, .revents = 0}};
    if (poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    }
    watch.Drain();
  }
}

}  // namespace tinyfed::base
