// What a part needs from the world beyond its inputs: the time, randomness
// and files. Each part takes an Env instead of calling absl::Now,
// randombytes_buf or the file system itself, so that a test or the simulator
// can drive it on a clock of its own, with repeatable randomness, and make a
// disk fail on cue (base/testing/fake_env.h). Env::Default() is the real world.
#ifndef TINYFED_BASE_ENV_H_
#define TINYFED_BASE_ENV_H_

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tinyfed::base {

class Env {
 public:
  virtual ~Env() = default;

  // The time that deadlines, expiries and timestamps are read against.
  virtual absl::Time Now() = 0;
  // Bytes no one can predict (libsodium's randombytes_buf in the default):
  // the source of SecAgg+ ids, DDG rotation seeds and central noise.
  virtual void RandomBytes(std::span<uint8_t> out) = 0;
  // As base/file_io.h: the whole file, or NOT_FOUND, OUT_OF_RANGE past max_bytes, ...
  virtual absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path, uint64_t max_bytes) = 0;
  // As base/file_io.h: all of `bytes` or nothing, durably.
  virtual absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes,
                                           unsigned mode = 0644) = 0;

  // The wall clock, the OS's entropy and the real file system. Thread-safe;
  // lives as long as the process.
  static Env& Default();
};

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_ENV_H_
