// Ed25519 signing of published models (libsodium), and the checks a client
// makes before it installs one. Trust comes only from the public key the
// client pinned; the key inside a SignedBundle merely names the signer.
#ifndef TINYFED_MODELS_SIGNING_H_
#define TINYFED_MODELS_SIGNING_H_

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

using PublicKey = std::array<uint8_t, 32>;

// SHA-256 of `data` (32 raw bytes): what a signature covers and what a
// download is announced with.
std::string Sha256(std::string_view data);

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

 private:
  friend absl::StatusOr<SigningKey> ReadSigningKey(const std::filesystem::path&);
  friend absl::Status WriteSigningKey(const SigningKey&, const std::filesystem::path&, const std::filesystem::path&);
  friend v1::SignedBundle SignBundle(const std::string&, uint64_t, const SigningKey&);
  SigningKey() = default;
  std::array<uint8_t, 64> secret_{};  // libsodium's seed || public key
  PublicKey public_{};
};

// Writes the secret key (mode 0600) and the public key, each atomically.
absl::Status WriteSigningKey(const SigningKey& key, const std::filesystem::path& secret_path,
                             const std::filesystem::path& public_path);
// INVALID_ARGUMENT for a file of the wrong size or a secret whose public half
// does not match its seed; NOT_FOUND for a missing file.
absl::StatusOr<SigningKey> ReadSigningKey(const std::filesystem::path& secret_path);
absl::StatusOr<PublicKey> ReadPublicKey(const std::filesystem::path& public_path);

// Signs the bundle file bytes as `version`.
v1::SignedBundle SignBundle(const std::string& bundle_file, uint64_t version, const SigningKey& key);

// Verifies and decodes a published model. Refuses (PERMISSION_DENIED) a bad or
// foreign signature or a hash that does not match the bytes; refuses
// (FAILED_PRECONDITION) a version not newer than `installed_version`
// (rollback or replay) and a hash other than the one the aggregator
// announced; refuses a bundle that fails validation (INVALID_ARGUMENT).
absl::StatusOr<v1::ModelBundle> VerifySignedBundle(const v1::SignedBundle& signed_bundle, const PublicKey& pinned,
                                                   uint64_t installed_version,
                                                   const std::optional<std::string>& announced_sha256 = std::nullopt);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_SIGNING_H_
