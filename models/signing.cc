#include "tinyfed/models/signing.h"

#include <sodium.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::models {
SigningKey SigningKey::Generate() {
  SigningKey k;
  crypto_sign_keypair(k.public_.data(), k.secret_.data());
  return k;
}

SigningKey::~SigningKey() { sodium_memzero(secret_.data(), secret_.size()); }

SigningKey::SigningKey(SigningKey&& other) noexcept : secret_(other.secret_), public_(other.public_) {
  sodium_memzero(other.secret_.data(), other.secret_.size());
}

absl::Status WriteSigningKey(const SigningKey& key, const std::filesystem::path& secret_path,
                             const std::filesystem::path& public_path, base::Env& env) {
  std::string secret(reinterpret_cast<const char*>(key.secret_.data()), key.secret_.size());
  absl::Status s = env.WriteFileAtomically(secret_path, secret, 0600);
  sodium_memzero(secret.data(), secret.size());
  if (!s.ok()) return s;
  return env.WriteFileAtomically(
      public_path, std::string_view(reinterpret_cast<const char*>(key.public_.data()), key.public_.size()));
}

absl::StatusOr<SigningKey> ReadSigningKey(const std::filesystem::path& secret_path, base::Env& env) {
  auto bytes = env.ReadFile(secret_path, 1024);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != crypto_sign_SECRETKEYBYTES) {
    return absl::InvalidArgumentError(absl::StrCat(secret_path.string(), " is ", bytes->size(),
                                                   " bytes, not an Ed25519 secret key (", crypto_sign_SECRETKEYBYTES,
                                                   ")"));
  }
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  SigningKey k;
  std::memcpy(k.secret_.data(), bytes->data(), k.secret_.size());
  sodium_memzero(bytes->data(), bytes->size());
  crypto_sign_ed25519_sk_to_pk(k.public_.data(), k.secret_.data());
  // The secret embeds its public half; a mismatch means a damaged file.
  std::array<uint8_t, 32> seed;
  crypto_sign_ed25519_sk_to_seed(seed.data(), k.secret_.data());
  std::array<uint8_t, 32> derived;
  std::array<uint8_t, 64> scratch;
  crypto_sign_seed_keypair(derived.data(), scratch.data(), seed.data());
  sodium_memzero(seed.data(), seed.size());
  sodium_memzero(scratch.data(), scratch.size());
  if (derived != k.public_) {
    return absl::InvalidArgumentError(
        absl::StrCat(secret_path.string(), " is damaged: its public half does not match"));
  }
  return k;
}

absl::StatusOr<PublicKey> ReadPublicKey(const std::filesystem::path& public_path) {
  auto bytes = base::ReadFileBytes(public_path, 1024);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != crypto_sign_PUBLICKEYBYTES) {
    return absl::InvalidArgumentError(
        absl::StrCat(public_path.string(), " is ", bytes->size(), " bytes, not an Ed25519 public key (32)"));
  }
  PublicKey k;
  std::memcpy(k.data(), bytes->data(), k.size());
  return k;
}

std::string SigningKey::Sign(std::string_view message) const {
  std::string signature(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(signature.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(), secret_.data());
  return signature;
}

bool VerifySignature(const PublicKey& key, std::string_view message, std::string_view signature) {
  return signature.size() == crypto_sign_BYTES &&
         crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                     reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                     key.data()) == 0;
}

std::string KeyBytes(const PublicKey& key) {
  return std::string(reinterpret_cast<const char*>(key.data()), key.size());
}

absl::StatusOr<PublicKey> PublicKeyFromBytes(std::string_view bytes) {
  if (bytes.size() != crypto_sign_PUBLICKEYBYTES) {
    return absl::InvalidArgumentError(absl::StrCat("a public key of ", bytes.size(), " bytes, not 32"));
  }
  PublicKey k;
  std::memcpy(k.data(), bytes.data(), k.size());
  return k;
}

}  // namespace tinyfed::models
