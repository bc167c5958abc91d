#include "tinyfed/base/sodium.h"

#include <sodium.h>

namespace tinyfed::base {

absl::Status InitSodium() {
  // sodium_init is itself idempotent and thread-safe: 0 the first time, 1 after.
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialize (no entropy source?)");
  return absl::OkStatus();
}

}  // namespace tinyfed::base
