#include "tinyfed/base/env.h"

#include <sodium.h>

#include "absl/time/clock.h"
#include "tinyfed/base/file_io.h"

namespace tinyfed::base {
namespace {

class RealEnv final : public Env {
 public:
  absl::Time Now() override { return absl::Now(); }
  // Callers passed base::InitSodium at their entry point.
  void RandomBytes(std::span<uint8_t> out) override { randombytes_buf(out.data(), out.size()); }
  absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path, uint64_t max_bytes) override {
    return ReadFileBytes(path, max_bytes);
  }
  absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes,
                                   unsigned mode = 0644) override {
    return base::WriteFileAtomically(path, bytes, mode);
  }
};

}  // namespace

Env& Env::Default() {
  static RealEnv* env = new RealEnv;  // never destroyed: threads may outlive main's locals
  return *env;
}

}  // namespace tinyfed::base
