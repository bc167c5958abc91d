// The in-process federation's world: a clock that jumps to each deadline
// instead of waiting for it; the real randomness and files.
#ifndef TINYFED_SIM_INTERNAL_SIM_ENV_H_
#define TINYFED_SIM_INTERNAL_SIM_ENV_H_

#include "absl/synchronization/mutex.h"
#include "tinyfed/base/env.h"

namespace tinyfed::sim::internal {

class SimEnv final : public base::Env {
 public:
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void RandomBytes(std::span<uint8_t> out) override { base::Env::Default().RandomBytes(out); }
  absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path, uint64_t max_bytes) override {
    return base::Env::Default().ReadFile(path, max_bytes);
  }
  absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes,
                                   unsigned mode = 0644) override {
    return base::Env::Default().WriteFileAtomically(path, bytes, mode);
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'799'971'200);  // midnight UTC: round 1's hour
};

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_SIM_ENV_H_
