// Ed25519 keys (libsodium): the root and publishing keys of model
// distribution (models/trust.h) and the device keys of gateways. Secrets are
// wiped from memory when a key is destroyed.
#ifndef TINYFED_MODELS_SIGNING_H_
#define TINYFED_MODELS_SIGNING_H_

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tinyfed/base/env.h"

namespace tinyfed::models {

using PublicKey = std::array<uint8_t, 32>;

// Wipes its secret on destruction; not copyable.
class SigningKey {
 public:
  static SigningKey Generate();
  ~SigningKey();
  SigningKey(SigningKey&& other) noexcept;
  SigningKey& operator=(SigningKey&&) = delete;
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;
  const PublicKey& public_key() const { return public_; }
  // A detached signature (64 bytes) over `message`.
  std::string Sign(std::string_view message) const;

 private:
  friend absl::StatusOr<SigningKey> ReadSigningKey(const std::filesystem::path&, base::Env&);
  friend absl::Status WriteSigningKey(const SigningKey&, const std::filesystem::path&, const std::filesystem::path&,
                                      base::Env&);
  SigningKey() = default;
  std::array<uint8_t, 64> secret_{};  // libsodium's seed || public key
  PublicKey public_{};
};

// Writes the secret key (mode 0600) and the public key, each atomically,
// through `env`.
absl::Status WriteSigningKey(const SigningKey& key, const std::filesystem::path& secret_path,
                             const std::filesystem::path& public_path, base::Env& env = base::Env::Default());
// INVALID_ARGUMENT for a file of the wrong size or a secret whose public half
// does not match its seed; NOT_FOUND for a missing file.
absl::StatusOr<SigningKey> ReadSigningKey(const std::filesystem::path& secret_path,
                                          base::Env& env = base::Env::Default());
absl::StatusOr<PublicKey> ReadPublicKey(const std::filesystem::path& public_path);

// True if `signature` is `key`'s detached signature over `message`.
bool VerifySignature(const PublicKey& key, std::string_view message, std::string_view signature);

// The 32 bytes of a key as a string (how keys travel in protobufs), and back.
std::string KeyBytes(const PublicKey& key);
absl::StatusOr<PublicKey> PublicKeyFromBytes(std::string_view bytes);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_SIGNING_H_
