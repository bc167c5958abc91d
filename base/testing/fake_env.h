// An Env for tests: a clock that moves only when told,
// randomness derived from a seed (the same run twice draws the same bytes),
// and the real file system, with writes under a chosen directory made to
// fail on cue (a full disk).
#ifndef TINYFED_BASE_TESTING_FAKE_ENV_H_
#define TINYFED_BASE_TESTING_FAKE_ENV_H_

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tinyfed/base/env.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/seed.h"

namespace tinyfed::base::testing {

class FakeEnv final : public Env {
 public:
  explicit FakeEnv(uint64_t seed = 1, absl::Time start = absl::FromUnixSeconds(1'800'000'000))
      : seed_(seed), now_(start) {}

  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void RandomBytes(std::span<uint8_t> out) override {
    absl::MutexLock lock(&mu_);
    for (size_t at = 0; at < out.size(); at += 64) {
      DeriveSeed(seed_, draws_++, "", "fake-env", out.subspan(at, std::min<size_t>(64, out.size() - at)));
    }
  }
  absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path, uint64_t max_bytes) override {
    return ReadFileBytes(path, max_bytes);
  }
  absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes,
                                   unsigned mode = 0644) override {
    {
      absl::MutexLock lock(&mu_);
      if (failing_dir_ && path.string().starts_with(failing_dir_->string())) {
        return absl::InternalError(absl::StrCat("write ", path.string(), ": No space left on device"));
      }
    }
    return base::WriteFileAtomically(path, bytes, mode);
  }
  // Every later write of a file under `dir` fails; nullopt ends that.
  void FailWritesUnder(std::optional<std::filesystem::path> dir) {
    absl::MutexLock lock(&mu_);
    failing_dir_ = std::move(dir);
  }

 private:
  const uint64_t seed_;
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  uint64_t draws_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<std::filesystem::path> failing_dir_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::base::testing

#endif  // TINYFED_BASE_TESTING_FAKE_ENV_H_
