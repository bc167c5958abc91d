#include "tinyfed/models/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace tinyfed::models {

absl::StatusOr<std::unique_ptr<DirectoryLock>> DirectoryLock::Acquire(const std::filesystem::path& dir,
                                                                      const std::string& holder) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  const std::filesystem::path file = dir / "LOCK";
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", file.string(), ": ", std::strerror(errno)));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char text[256] = {};
    const ssize_t n = ::pread(fd, text, sizeof(text) - 1, 0);
    ::close(fd);
    if (error != EWOULDBLOCK) {
      return absl::InternalError(absl::StrCat("cannot lock ", file.string(), ": ", std::strerror(error)));
    }
    const absl::string_view who =
        absl::StripAsciiWhitespace(absl::string_view(text, n > 0 ? static_cast<size_t>(n) : 0));
    return absl::FailedPreconditionError(absl::StrCat(dir.string(), " is in use by another process (",
                                                      who.empty() ? "holder unknown" : who,
                                                      "); stop it first, or give this one its own directory"));
  }
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const std::string who = absl::StrCat(holder, ", pid ", ::getpid(), " on ", host, ", since ",
                                       absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()), "\n");
  // Should the note fail, the lock holds; only a second process's message is poorer.
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, who.data(), who.size(), 0);
  return std::unique_ptr<DirectoryLock>(new DirectoryLock(fd));
}

DirectoryLock::~DirectoryLock() { ::close(fd_); }

}  // namespace tinyfed::models
