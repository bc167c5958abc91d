// libsodium, initialized once per process. Every entry point of a library
// that uses it (a Create or an Open) calls InitSodium and returns its error;
// the functions beneath an entry point (signing, verifying, drawing random
// bytes) assume it was called and never abort on their own.
#ifndef TINYFED_BASE_SODIUM_H_
#define TINYFED_BASE_SODIUM_H_

#include "absl/status/status.h"

namespace tinyfed::base {

// INTERNAL if libsodium cannot run here (no entropy source): nothing that
// signs, encrypts or draws noise can then work. Idempotent, thread-safe.
absl::Status InitSodium();

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_SODIUM_H_
