// Crash-safety tests: a forked writer killed with SIGKILL at a moment chosen
// by its progress, not by the clock. The writer reports each commit (a write
// its API has returned as durable); the parent kills it right after the
// `commits`-th report, while it is most likely in the middle of the next one.
#ifndef TINYFED_BASE_TESTING_KILL_NINE_H_
#define TINYFED_BASE_TESTING_KILL_NINE_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

namespace tinyfed::base::testing {

struct KilledWriter {
  int commits_reported = 0;  // every commit the writer reported before it died
  int wait_status = 0;
};

// `writer(committed)` runs in a child and calls committed() after each
// commit; it should not return (the child exits 3 if it does, as on an
// error). Returns early, with the child's real exit status, if the child dies
// before reaching `commits`.
inline KilledWriter KillNineAfter(int commits, const std::function<void(const std::function<void()>&)>& writer) {
  KilledWriter result;
  int fds[2];
  if (pipe(fds) != 0) return result;
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    writer([fd = fds[1]] {
      const char one = 1;
      if (write(fd, &one, 1) != 1) _exit(4);
    });
    _exit(3);
  }
  close(fds[1]);
  char buffer[256];
  ssize_t n = 0;
  while (result.commits_reported < commits && (n = read(fds[0], buffer, 1)) != 0) {
    if (n > 0)
      ++result.commits_reported;
    else if (errno != EINTR)
      break;
  }
  if (child > 0) {
    kill(child, SIGKILL);
    while (waitpid(child, &result.wait_status, 0) < 0 && errno == EINTR) {
    }
  }
  // Commits reported between the last read and the kill count too.
  while ((n = read(fds[0], buffer, sizeof buffer)) > 0) result.commits_reported += static_cast<int>(n);
  close(fds[0]);
  return result;
}

}  // namespace tinyfed::base::testing

#endif  // TINYFED_BASE_TESTING_KILL_NINE_H_
