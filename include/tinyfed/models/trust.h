// Model distribution with The Update Framework's guarantees
// (proto/tinyfed/v1/trust.proto has the metadata and its roles).
//
// The operator, offline, signs root metadata with the root keys
// (`tinyfed root new`); the aggregator, online, signs one release per
// published model with its publishing key. A gateway pins a root and, before
// installing a model, calls TrustedRoot::VerifyModel, which refuses:
//   arbitrary models        unsigned, or signed by keys the root does not list
//                           for publishing, or by fewer than the threshold;
//   rollback                a model version not newer than the installed one,
//                           or release metadata older than the installed one's;
//   fast-forward            a version the publishing keys never signed (the
//                           signature covers the version), and after a root
//                           rotation anything signed by a retired key;
//   indefinite freeze       release or root metadata past its expiry;
//   endless data            a bundle longer (or shorter) than the signed length;
//   mix-and-match           a bundle whose hash, backbone hash or head hash is
//                           not the release's;
//   wrong model             a release for another federation, or a bundle
//                           whose metadata names another model version;
//   a compromised key       below the threshold: k-1 of k signatures do not do.
// A newer root is accepted (TrustedRoot::Advance) only if it is the next
// version and signed by a threshold of both the current and the new root keys.
#ifndef TINYFED_MODELS_TRUST_H_
#define TINYFED_MODELS_TRUST_H_

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/base/env.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/v1/bundle.pb.h"
#include "tinyfed/v1/trust.pb.h"

namespace tinyfed::models {

// Metadata larger than this is refused before it is parsed.
inline constexpr size_t kMaxMetadataBytes = 64 * 1024;

// Signs with every key given (each key signs once).
v1::SignedMetadata SignRoot(const v1::RootMetadata& root, std::span<const SigningKey* const> keys);
v1::SignedMetadata SignRelease(const v1::ReleaseMetadata& release, std::span<const SigningKey* const> keys);

// The hashes that bind a bundle's parts: the backbone (graph, input spec,
// label names, precision) and the head.
std::string BackboneSha256(const v1::ModelBundle& bundle);
std::string HeadSha256(const v1::ModelBundle& bundle);

// A release of `bundle_file` for `federation`: model version (from the
// bundle's metadata), length and hashes filled; the caller sets the metadata
// version and expiry. INVALID_ARGUMENT if the file is not a valid bundle.
absl::StatusOr<v1::ReleaseMetadata> DescribeRelease(std::string_view bundle_file, const std::string& federation);

// Structural checks only (sizes, thresholds, distinct keys), no signatures:
// for tools that display metadata and for the parsers' fuzzer.
absl::StatusOr<v1::RootMetadata> ParseRoot(const v1::SignedMetadata& signed_root);
absl::StatusOr<v1::ReleaseMetadata> ParseRelease(const v1::SignedMetadata& signed_release);

// Root files live in one directory as 1.root, 2.root, ... (each a
// serialized SignedMetadata). ReadRootChain returns them in order after
// checking that each is signed as TrustedRoot::Advance requires; NOT_FOUND
// without 1.root. WriteRoot refuses to replace an existing version.
absl::StatusOr<std::vector<v1::SignedMetadata>> ReadRootChain(const std::filesystem::path& dir);
absl::Status WriteRoot(const std::filesystem::path& dir, const v1::SignedMetadata& signed_root,
                       base::Env& env = base::Env::Default());
std::filesystem::path RootFile(const std::filesystem::path& dir, uint64_t version);

// A repository with one root key (threshold 1) for simulations and tests,
// valid for `lifetime`: the root key, the publishing key and root 1 under
// `dir`. Deployments keep several root keys offline (`tinyfed root new`).
struct Repository {
  std::filesystem::path publishing_key;  // the aggregator's publishing_key
  std::filesystem::path roots_dir;       // its roots_dir
  std::filesystem::path pinned_root;     // 1.root, a gateway's trusted_root
};
absl::StatusOr<Repository> CreateSingleKeyRepository(const std::filesystem::path& dir, const std::string& federation,
                                                     absl::Duration lifetime = absl::Hours(24 * 365));

// A model that passed every check.
struct VerifiedModel {
  v1::ModelBundle bundle;
  v1::ReleaseMetadata release;
};

class TrustedRoot {
 public:
  // The root a gateway ships with: it must carry a threshold of signatures
  // of its own root keys. Its expiry is checked by VerifyModel, not here: an
  // old pinned root can still be advanced.
  static absl::StatusOr<TrustedRoot> Pin(const v1::SignedMetadata& signed_root);

  // Replaces the trusted root by `next`, which must be version + 1, for the
  // same federation, and signed by a threshold of the current root keys and
  // a threshold of its own. On error the trusted root is unchanged.
  absl::Status Advance(const v1::SignedMetadata& next);

  const v1::RootMetadata& root() const { return root_; }

  // Verifies a downloaded model against this root. `installed` is the
  // release of the installed model (nullptr if none). With `now`, expired
  // root or release metadata is refused; without it (re-verifying the
  // installed model after a restart) expiry is not checked, since a model
  // accepted while fresh keeps serving. Codes: PERMISSION_DENIED for
  // signatures and hashes, FAILED_PRECONDITION for rollback, expiry and
  // federation, DATA_LOSS for a wrong length, INVALID_ARGUMENT for a bundle
  // that fails validation.
  absl::StatusOr<VerifiedModel> VerifyModel(const v1::SignedBundle& signed_bundle, const v1::ReleaseMetadata* installed,
                                            std::optional<absl::Time> now) const;

 private:
  explicit TrustedRoot(v1::RootMetadata root) : root_(std::move(root)) {}
  v1::RootMetadata root_;
};

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_TRUST_H_
