// Fuzzes model distribution's metadata parsers and checks (models/trust.h)
// as a gateway meets them: the first byte picks what the rest is.
//   0  a root, advanced to from a pinned root (as a check-in delivers it)
//   1  a root to pin (a gateway's shipped file)
//   2  a downloaded SignedBundle, verified as is
//   3  a SignedBundle whose release payload the harness signs with the real
//      publishing key, so that inputs get past the signature to the
//      federation, expiry, rollback, length, hash and bundle checks
// Nothing may crash, and a root the pinned keys did not sign may never be
// accepted.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tinyfed/models/trust.h"

namespace {

using tinyfed::models::SigningKey;

struct Repository {
  SigningKey root_key = SigningKey::Generate();
  SigningKey publishing = SigningKey::Generate();
  tinyfed::v1::SignedMetadata root;
  tinyfed::v1::ReleaseMetadata installed;

  Repository() {
    tinyfed::v1::RootMetadata r;
    r.set_version(1);
    r.set_federation("fuzz");
    r.set_expires_unix_seconds(4'000'000'000);
    r.mutable_root()->add_public_keys(tinyfed::models::KeyBytes(root_key.public_key()));
    r.mutable_root()->set_threshold(1);
    r.mutable_publishing()->add_public_keys(tinyfed::models::KeyBytes(publishing.public_key()));
    r.mutable_publishing()->set_threshold(1);
    const SigningKey* signer = &root_key;
    root = tinyfed::models::SignRoot(r, {&signer, 1});
    installed.set_version(2);
    installed.set_model_version(2);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Repository* repo = new Repository;
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  const std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto trusted = tinyfed::models::TrustedRoot::Pin(repo->root);
  if (!trusted.ok()) std::abort();
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  if (mode <= 1) {
    tinyfed::v1::SignedMetadata m;
    if (!m.ParseFromString(bytes)) return 0;
    (void)tinyfed::models::ParseRoot(m);
    (void)tinyfed::models::ParseRelease(m);
    if (mode == 1) {
      (void)tinyfed::models::TrustedRoot::Pin(m);
    } else if (trusted->Advance(m).ok() && !m.signatures().empty()) {
      // Only a root carrying the pinned key's signature may be accepted.
      bool signed_by_root = false;
      for (const auto& s : m.signatures()) {
        signed_by_root |= s.public_key() == tinyfed::models::KeyBytes(repo->root_key.public_key());
      }
      if (!signed_by_root) std::abort();
    }
    return 0;
  }
  tinyfed::v1::SignedBundle b;
  if (!b.ParseFromString(bytes)) return 0;
  if (mode == 3) {
    const SigningKey* signer = &repo->publishing;
    tinyfed::v1::ReleaseMetadata release;
    if (!release.ParseFromString(b.release().payload())) return 0;
    *b.mutable_release() = tinyfed::models::SignRelease(release, {&signer, 1});
  }
  (void)trusted->VerifyModel(b, nullptr, now);
  (void)trusted->VerifyModel(b, &repo->installed, now);
  (void)trusted->VerifyModel(b, nullptr, std::nullopt);
  return 0;
}
