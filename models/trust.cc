#include "tinyfed/models/trust.h"

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::models {
namespace {

using absl::StrCat;

// Domain separation: a root signature can never pass for a release's.
constexpr std::string_view kRootDomain = "tinyfed root metadata v1";
constexpr std::string_view kReleaseDomain = "tinyfed release metadata v1";

std::string Message(std::string_view domain, std::string_view payload) {
  std::string m(domain);
  m.push_back('\0');
  m.append(payload);
  return m;
}

v1::SignedMetadata Sign(std::string_view domain, std::string payload, std::span<const SigningKey* const> keys) {
  v1::SignedMetadata out;
  const std::string message = Message(domain, payload);
  std::set<PublicKey> signed_by;
  for (const SigningKey* key : keys) {
    if (!signed_by.insert(key->public_key()).second) continue;
    v1::Signature* s = out.add_signatures();
    s->set_public_key(KeyBytes(key->public_key()));
    s->set_signature(key->Sign(message));
  }
  out.set_payload(std::move(payload));
  return out;
}

std::string Serialized(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

absl::Status CheckRole(const v1::KeyRole& role, const std::string& name) {
  if (role.public_keys_size() == 0 || role.public_keys_size() > 32) {
    return absl::InvalidArgumentError(
        StrCat("the ", name, " role lists ", role.public_keys_size(), " keys; 1 to 32 are allowed"));
  }
  std::set<std::string> distinct;
  for (const std::string& key : role.public_keys()) {
    if (key.size() != 32) return absl::InvalidArgumentError(StrCat("a ", name, " key is not 32 bytes"));
    if (!distinct.insert(key).second) return absl::InvalidArgumentError(StrCat("the ", name, " role repeats a key"));
  }
  if (role.threshold() < 1 || role.threshold() > static_cast<uint32_t>(role.public_keys_size())) {
    return absl::InvalidArgumentError(
        StrCat("the ", name, " threshold ", role.threshold(), " is not in 1..", role.public_keys_size()));
  }
  return absl::OkStatus();
}

// How many distinct keys of `role` signed `payload` correctly. Signatures
// by keys outside the role, repeated keys and bad signatures count nothing.
int ValidSignatures(const v1::SignedMetadata& m, std::string_view domain, const v1::KeyRole& role) {
  const std::string message = Message(domain, m.payload());
  const std::set<std::string> listed(role.public_keys().begin(), role.public_keys().end());
  std::set<std::string> counted;
  for (const v1::Signature& s : m.signatures()) {
    if (!listed.contains(s.public_key()) || counted.contains(s.public_key())) continue;
    auto key = PublicKeyFromBytes(s.public_key());
    if (key.ok() && VerifySignature(*key, message, s.signature())) counted.insert(s.public_key());
  }
  return static_cast<int>(counted.size());
}

absl::Status CheckThreshold(const v1::SignedMetadata& m, std::string_view domain, const v1::KeyRole& role,
                            const std::string& what) {
  const int valid = ValidSignatures(m, domain, role);
  if (valid < static_cast<int>(role.threshold())) {
    return absl::PermissionDeniedError(
        StrCat(what, " carries ", valid, " valid signature(s) of the ", role.threshold(), " required"));
  }
  return absl::OkStatus();
}

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes).substr(0, 16); }

}  // namespace

v1::SignedMetadata SignRoot(const v1::RootMetadata& root, std::span<const SigningKey* const> keys) {
  return Sign(kRootDomain, Serialized(root), keys);
}

v1::SignedMetadata SignRelease(const v1::ReleaseMetadata& release, std::span<const SigningKey* const> keys) {
  return Sign(kReleaseDomain, Serialized(release), keys);
}

std::string BackboneSha256(const v1::ModelBundle& bundle) {
  v1::ModelBundle backbone;
  backbone.set_format_version(bundle.format_version());
  backbone.set_precision(bundle.precision());
  *backbone.mutable_backbone() = bundle.backbone();
  *backbone.mutable_input() = bundle.input();
  *backbone.mutable_label_names() = bundle.label_names();
  return base::Sha256(Serialized(backbone));
}

std::string HeadSha256(const v1::ModelBundle& bundle) { return base::Sha256(Serialized(bundle.head())); }

absl::StatusOr<v1::ReleaseMetadata> DescribeRelease(std::string_view bundle_file, const std::string& federation) {
  auto bundle = DecodeBundleFile(bundle_file);
  if (!bundle.ok()) return bundle.status();
  v1::ReleaseMetadata r;
  r.set_federation(federation);
  r.set_model_version(bundle->metadata().version());
  r.set_bundle_length(bundle_file.size());
  r.set_bundle_sha256(base::Sha256(bundle_file));
  r.set_backbone_sha256(BackboneSha256(*bundle));
  r.set_head_sha256(HeadSha256(*bundle));
  return r;
}

absl::StatusOr<v1::RootMetadata> ParseRoot(const v1::SignedMetadata& signed_root) {
  if (signed_root.payload().size() > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(
        StrCat("root metadata of ", signed_root.payload().size(), " bytes exceeds ", kMaxMetadataBytes));
  }
  v1::RootMetadata root;
  if (!root.ParseFromString(signed_root.payload())) return absl::InvalidArgumentError("malformed root metadata");
  if (root.version() == 0) return absl::InvalidArgumentError("root metadata has version 0");
  if (root.federation().empty()) return absl::InvalidArgumentError("root metadata names no federation");
  if (auto s = CheckRole(root.root(), "root"); !s.ok()) return s;
  if (auto s = CheckRole(root.publishing(), "publishing"); !s.ok()) return s;
  return root;
}

absl::StatusOr<v1::ReleaseMetadata> ParseRelease(const v1::SignedMetadata& signed_release) {
  if (signed_release.payload().size() > kMaxMetadataBytes) {
    return absl::InvalidArgumentError(
        StrCat("release metadata of ", signed_release.payload().size(), " bytes exceeds ", kMaxMetadataBytes));
  }
  v1::ReleaseMetadata r;
  if (!r.ParseFromString(signed_release.payload())) return absl::InvalidArgumentError("malformed release metadata");
  if (r.version() == 0 || r.model_version() == 0) {
    return absl::InvalidArgumentError("release metadata has version 0");
  }
  if (r.bundle_sha256().size() != 32 || r.backbone_sha256().size() != 32 || r.head_sha256().size() != 32) {
    return absl::InvalidArgumentError("release metadata has a hash that is not 32 bytes");
  }
  return r;
}

absl::StatusOr<TrustedRoot> TrustedRoot::Pin(const v1::SignedMetadata& signed_root) {
  auto root = ParseRoot(signed_root);
  if (!root.ok()) return root.status();
  if (auto s = CheckThreshold(signed_root, kRootDomain, root->root(), StrCat("root v", root->version())); !s.ok()) {
    return s;
  }
  return TrustedRoot(std::move(*root));
}

absl::Status TrustedRoot::Advance(const v1::SignedMetadata& next) {
  auto root = ParseRoot(next);
  if (!root.ok()) return root.status();
  if (root->version() != root_.version() + 1) {
    return absl::FailedPreconditionError(
        StrCat("root v", root->version(), " does not follow the trusted root v", root_.version()));
  }
  if (root->federation() != root_.federation()) {
    return absl::FailedPreconditionError(StrCat("root v", root->version(), " is for federation '", root->federation(),
                                                "', not '", root_.federation(), "'"));
  }
  const std::string what = StrCat("root v", root->version());
  if (auto s =
          CheckThreshold(next, kRootDomain, root_.root(), StrCat(what, " (by the keys of v", root_.version(), ")"));
      !s.ok()) {
    return s;
  }
  if (auto s = CheckThreshold(next, kRootDomain, root->root(), StrCat(what, " (by its own keys)")); !s.ok()) return s;
  root_ = std::move(*root);
  return absl::OkStatus();
}

absl::StatusOr<VerifiedModel> TrustedRoot::VerifyModel(const v1::SignedBundle& signed_bundle,
                                                       const v1::ReleaseMetadata* installed,
                                                       std::optional<absl::Time> now) const {
  auto release = ParseRelease(signed_bundle.release());
  if (!release.ok()) return absl::PermissionDeniedError(release.status().message());
  const std::string what = StrCat("model v", release->model_version(), " (release ", release->version(), ")");
  // Signatures first: nothing else in unsigned metadata is worth reading.
  if (auto s = CheckThreshold(signed_bundle.release(), kReleaseDomain, root_.publishing(),
                              StrCat(what, ", checked against the publishing keys of root v", root_.version()));
      !s.ok()) {
    return s;
  }
  if (release->federation() != root_.federation()) {
    return absl::FailedPreconditionError(
        StrCat(what, " is for federation '", release->federation(), "', not '", root_.federation(), "'"));
  }
  if (now) {
    if (absl::FromUnixSeconds(root_.expires_unix_seconds()) <= *now) {
      return absl::FailedPreconditionError(
          StrCat("the trusted root v", root_.version(), " expired at ",
                 absl::FormatTime(absl::FromUnixSeconds(root_.expires_unix_seconds()))));
    }
    if (absl::FromUnixSeconds(release->expires_unix_seconds()) <= *now) {
      return absl::FailedPreconditionError(
          StrCat(what, " expired at ", absl::FormatTime(absl::FromUnixSeconds(release->expires_unix_seconds())),
                 " (a frozen or replayed release)"));
    }
  }
  if (installed != nullptr) {
    if (release->model_version() <= installed->model_version()) {
      return absl::FailedPreconditionError(
          StrCat(what, " is not newer than the installed v", installed->model_version(), " (rollback or replay)"));
    }
    if (release->version() < installed->version()) {
      return absl::FailedPreconditionError(
          StrCat(what, " is older metadata than the installed release ", installed->version(), " (rollback)"));
    }
  }
  if (signed_bundle.bundle().size() != release->bundle_length()) {
    return absl::DataLossError(StrCat(what, ": the bundle is ", signed_bundle.bundle().size(),
                                      " bytes, the release signs ", release->bundle_length()));
  }
  if (base::Sha256(signed_bundle.bundle()) != release->bundle_sha256()) {
    return absl::PermissionDeniedError(
        StrCat(what, ": the bundle's SHA-256 is not the signed ", Hex(release->bundle_sha256())));
  }
  auto bundle = DecodeBundleFile(signed_bundle.bundle());
  if (!bundle.ok()) return bundle.status();
  if (BackboneSha256(*bundle) != release->backbone_sha256() || HeadSha256(*bundle) != release->head_sha256()) {
    return absl::PermissionDeniedError(StrCat(what, ": the backbone or head is not the one the release signs"));
  }
  if (bundle->metadata().version() != release->model_version()) {
    return absl::PermissionDeniedError(StrCat(what, ": the bundle says it is v", bundle->metadata().version()));
  }
  return VerifiedModel{.bundle = std::move(*bundle), .release = std::move(*release)};
}

absl::StatusOr<std::vector<v1::SignedMetadata>> ReadRootChain(const std::filesystem::path& dir) {
  std::vector<v1::SignedMetadata> chain;
  std::optional<TrustedRoot> trusted;
  for (uint64_t version = 1;; ++version) {
    const std::filesystem::path file = RootFile(dir, version);
    auto bytes = base::ReadFileBytes(file, 2 * kMaxMetadataBytes);
    if (!bytes.ok() && bytes.status().code() == absl::StatusCode::kNotFound && version > 1) break;
    if (!bytes.ok()) return bytes.status();
    v1::SignedMetadata m;
    if (!m.ParseFromString(*bytes)) return absl::DataLossError(StrCat(file.string(), " is not signed metadata"));
    absl::Status s;
    if (!trusted) {
      auto pinned = TrustedRoot::Pin(m);
      if (pinned.ok()) trusted.emplace(std::move(*pinned));
      s = pinned.status();
    } else {
      s = trusted->Advance(m);
    }
    if (s.ok() && trusted->root().version() != version) {
      s = absl::InvalidArgumentError(StrCat("it holds root v", trusted->root().version()));
    }
    if (!s.ok()) return absl::Status(s.code(), StrCat(file.string(), ": ", s.message()));
    chain.push_back(std::move(m));
  }
  return chain;
}

std::filesystem::path RootFile(const std::filesystem::path& dir, uint64_t version) {
  return dir / StrCat(version, ".root");
}

absl::Status WriteRoot(const std::filesystem::path& dir, const v1::SignedMetadata& signed_root, base::Env& env) {
  auto root = ParseRoot(signed_root);
  if (!root.ok()) return root.status();
  const std::filesystem::path file = RootFile(dir, root->version());
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) {
    return absl::AlreadyExistsError(StrCat(file.string(), " exists; a root version is never replaced"));
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", dir.string(), ": ", ec.message()));
  return env.WriteFileAtomically(file, signed_root.SerializeAsString());
}

absl::StatusOr<Repository> CreateSingleKeyRepository(const std::filesystem::path& dir, const std::string& federation,
                                                     absl::Duration lifetime) {
  const Repository repository{
      .publishing_key = dir / "publishing.key", .roots_dir = dir / "roots", .pinned_root = RootFile(dir / "roots", 1)};
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", dir.string(), ": ", ec.message()));
  const SigningKey root_key = SigningKey::Generate();
  const SigningKey publishing = SigningKey::Generate();
  if (auto s = WriteSigningKey(root_key, dir / "root.key", dir / "root.pub"); !s.ok()) return s;
  if (auto s = WriteSigningKey(publishing, repository.publishing_key, dir / "publishing.pub"); !s.ok()) return s;
  v1::RootMetadata root;
  root.set_version(1);
  root.set_federation(federation);
  root.set_expires_unix_seconds(absl::ToUnixSeconds(absl::Now() + lifetime));
  root.mutable_root()->add_public_keys(KeyBytes(root_key.public_key()));
  root.mutable_root()->set_threshold(1);
  root.mutable_publishing()->add_public_keys(KeyBytes(publishing.public_key()));
  root.mutable_publishing()->set_threshold(1);
  const SigningKey* signer = &root_key;
  if (auto s = WriteRoot(repository.roots_dir, SignRoot(root, {&signer, 1})); !s.ok()) return s;
  return repository;
}

}  // namespace tinyfed::models
