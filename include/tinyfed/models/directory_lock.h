// An exclusive lock on a directory that one process owns (an aggregator's
// state_dir, a gateway's data_dir): two processes writing the same SQLite
// files, sample store or model would each believe its own view.
//
// The lock is flock(2) on DIR/LOCK, which also names the holder (pid, host,
// when, what) for the message the next process gets. The kernel releases it
// when the holder exits, however it exits, so a kill -9 leaves no stale lock.
// Two locks on one directory conflict within a process too.
#ifndef TINYFED_MODELS_DIRECTORY_LOCK_H_
#define TINYFED_MODELS_DIRECTORY_LOCK_H_

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tinyfed::models {

class DirectoryLock {
 public:
  // Creates `dir` if missing. FAILED_PRECONDITION naming the holder when
  // another lock is held; `holder` says what this one is ("aggregator").
  static absl::StatusOr<std::unique_ptr<DirectoryLock>> Acquire(const std::filesystem::path& dir,
                                                                const std::string& holder);
  ~DirectoryLock();  // Releases.
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_DIRECTORY_LOCK_H_
