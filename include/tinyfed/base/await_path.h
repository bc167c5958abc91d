// Waiting for another process to create a file (an aggregator's `listening`
// file, a round's record) by inotify events on its directory rather than by
// polling on the clock.
#ifndef TINYFED_BASE_AWAIT_PATH_H_
#define TINYFED_BASE_AWAIT_PATH_H_

#include <chrono>
#include <filesystem>

#include "absl/status/status.h"
#include "tinyfed/base/process.h"

namespace tinyfed::base {

// OK once `path` exists; DeadlineExceeded after `timeout`; Aborted if
// `unless_exited` (when given) exits first. The parent directory of `path`
// must exist (created or renamed files in it are what wakes the wait), else
// FailedPrecondition.
absl::Status AwaitPath(const std::filesystem::path& path, std::chrono::milliseconds timeout,
                       Process* unless_exited = nullptr);

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_AWAIT_PATH_H_
