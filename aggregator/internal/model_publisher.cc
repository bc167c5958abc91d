#include "aggregator/internal/model_publisher.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/head_release.h"

namespace tinyfed::aggregator::internal {

using absl::StrCat;

std::string HeadBlobOf(std::string_view blob) {
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) return "";
  absl::StatusOr<v1::SignedHead> head = models::SignedHeadOf(signed_bundle);
  return head.ok() ? head->SerializeAsString() : "";
}

v1::ModelRef ModelRefOf(uint64_t version, const std::string& bundle_sha256, std::string_view blob,
                        std::string_view head_blob) {
  v1::ModelRef ref;
  ref.set_version(version);
  ref.set_bundle_sha256(bundle_sha256);
  ref.set_download_size(blob.size());
  ref.set_download_sha256(base::Sha256(blob));
  v1::SignedHead head;
  if (head_blob.empty() || !head.ParseFromArray(head_blob.data(), static_cast<int>(head_blob.size()))) return ref;
  absl::StatusOr<v1::ReleaseMetadata> release = models::ParseRelease(head.release());
  if (!release.ok()) return ref;
  ref.set_backbone_sha256(release->backbone_sha256());
  ref.set_head_download_size(head_blob.size());
  ref.set_head_download_sha256(base::Sha256(head_blob));
  return ref;
}

std::vector<float> HeadParameters(const v1::Head& head) {
  std::vector<float> p(head.weights().begin(), head.weights().end());
  p.insert(p.end(), head.bias().begin(), head.bias().end());
  return p;
}

void SetHeadParameters(std::span<const float> p, v1::Head* head) {
  const size_t w = static_cast<size_t>(head->weights_size());
  for (size_t i = 0; i < w; ++i) head->set_weights(static_cast<int>(i), p[i]);
  for (int i = 0; i < head->bias_size(); ++i) head->set_bias(i, p[w + static_cast<size_t>(i)]);
}

ModelPublisher::ModelPublisher(const Config& config, base::Env& env, std::optional<models::SigningKey> key,
                               std::vector<v1::SignedMetadata> roots, models::TrustedRoot trusted)
    : config_(config), env_(env), key_(std::move(key)), roots_(std::move(roots)), trusted_(std::move(trusted)) {}

absl::StatusOr<std::unique_ptr<ModelPublisher>> ModelPublisher::Open(const Config& config, base::Env& env) {
  TINYFED_ASSIGN_OR_RETURN(models::SigningKey key, models::ReadSigningKey(config.publishing_key, env));
  TINYFED_ASSIGN_OR_RETURN(std::vector<v1::SignedMetadata> roots, models::ReadRootChain(config.roots_dir));
  TINYFED_ASSIGN_OR_RETURN(models::TrustedRoot trusted, models::TrustedRoot::Pin(roots.back()));
  const v1::RootMetadata& root = trusted.root();
  const auto& publishing = root.publishing().public_keys();
  if (std::find(publishing.begin(), publishing.end(), models::KeyBytes(key.public_key())) == publishing.end()) {
    return absl::PermissionDeniedError(StrCat(config.publishing_key.string(), " is not a publishing key of root v",
                                              root.version(), " in ", config.roots_dir.string()));
  }
  if (root.publishing().threshold() != 1) {
    return absl::InvalidArgumentError(
        StrCat("root v", root.version(), " asks for ", root.publishing().threshold(),
               " publishing signatures; the aggregator signs releases alone (threshold 1)"));
  }
  // Gateways refuse every model once the root expires: warn well before.
  const absl::Time root_expires = absl::FromUnixSeconds(root.expires_unix_seconds());
  if (root_expires - env.Now() < absl::Hours(24 * 30)) {
    spdlog::warn(
        "root v{} expires {}: sign the next root (tinyfed root new) before then, or gateways stop "
        "accepting models",
        root.version(), absl::FormatTime(root_expires));
  }
  return std::unique_ptr<ModelPublisher>(
      new ModelPublisher(config, env, std::move(key), std::move(roots), std::move(trusted)));
}

absl::StatusOr<std::unique_ptr<ModelPublisher>> ModelPublisher::OpenMirror(const Config& config, base::Env& env) {
  TINYFED_ASSIGN_OR_RETURN(std::vector<v1::SignedMetadata> roots, models::ReadRootChain(config.roots_dir));
  TINYFED_ASSIGN_OR_RETURN(models::TrustedRoot trusted, models::TrustedRoot::Pin(roots.front()));
  for (size_t i = 1; i < roots.size(); ++i) TINYFED_RETURN_IF_ERROR(trusted.Advance(roots[i]));
  // Rotations relayed from the national aggregator since, each verified
  // again: the disk is not trusted either.
  const std::filesystem::path relayed = config.state_dir / "roots";
  for (uint64_t v = trusted.root().version() + 1;; ++v) {
    const std::filesystem::path file = models::RootFile(relayed, v);
    auto bytes = env.ReadFile(file, 1 << 20);
    if (!bytes.ok() && absl::IsNotFound(bytes.status())) break;
    if (!bytes.ok()) return bytes.status();
    v1::SignedMetadata root;
    absl::Status advanced =
        root.ParseFromString(*bytes) ? trusted.Advance(root) : absl::DataLossError("not signed metadata");
    if (!advanced.ok()) {
      return absl::DataLossError(StrCat(file.string(), " does not follow the trusted roots: ", advanced.message()));
    }
    roots.push_back(std::move(root));
  }
  return std::unique_ptr<ModelPublisher>(
      new ModelPublisher(config, env, std::nullopt, std::move(roots), std::move(trusted)));
}

absl::Status ModelPublisher::AdvanceRoots(std::span<const v1::SignedMetadata> roots) {
  for (const v1::SignedMetadata& root : roots) {
    auto parsed = models::ParseRoot(root);
    if (!parsed.ok()) return parsed.status();
    if (parsed->version() <= trusted_.root().version()) continue;
    models::TrustedRoot next = trusted_;
    TINYFED_RETURN_IF_ERROR(next.Advance(root));
    TINYFED_RETURN_IF_ERROR(models::WriteRoot(config_.state_dir / "roots", root, env_));
    trusted_ = std::move(next);
    roots_.push_back(root);
    base::LogEvent(spdlog::level::info, "root_mirrored", {{"root_version", parsed->version()}},
                   fmt::format("root v{} of the national federation accepted and relayed", parsed->version()));
  }
  return absl::OkStatus();
}

absl::Status ModelPublisher::Mirror(std::string blob, const Commit& commit) {
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(blob))
    return absl::InvalidArgumentError("the national model is not a SignedBundle");
  TINYFED_ASSIGN_OR_RETURN(models::VerifiedModel verified,
                           trusted_.VerifyModel(signed_bundle, latest_ ? &latest_->release : nullptr, env_.Now()));
  const uint64_t version = verified.release.model_version();
  if (latest_ && version < latest_->ref.version()) {
    return absl::FailedPreconditionError(
        StrCat("model v", version, " is older than the mirrored v", latest_->ref.version()));
  }
  auto published = std::make_unique<Published>();
  published->release = verified.release;
  published->head_blob = HeadBlobOf(blob);
  published->ref = ModelRefOf(version, verified.release.bundle_sha256(), blob, published->head_blob);
  published->file = ModelFile(version);
  std::error_code ec;
  std::filesystem::create_directories(published->file.parent_path(), ec);
  if (ec)
    return absl::InternalError(StrCat("cannot create ", published->file.parent_path().string(), ": ", ec.message()));
  TINYFED_RETURN_IF_ERROR(env_.WriteFileAtomically(published->file, blob));
  const bool new_version = !latest_ || version > latest_->ref.version();
  if (new_version) {
    TINYFED_RETURN_IF_ERROR(commit(
        {.version = version, .round_id = 0, .bundle_sha256 = published->ref.bundle_sha256(), .file = published->file}));
  }
  published->blob = std::move(blob);
  bundle_ = std::move(verified.bundle);
  head_ = HeadParameters(bundle_.head());
  latest_ = std::move(published);
  base::LogEvent(spdlog::level::info, "model_mirrored", {{"model_version", version}},
                 fmt::format("model v{} (release {}) of the national aggregator verified and mirrored", version,
                             latest_->release.version()));
  return absl::OkStatus();
}

absl::Status ModelPublisher::CheckClassWeights(const v1::Head& head) const {
  const int weights = config_.training.class_weights_size();
  if (weights == 0 || weights == static_cast<int>(head.num_classes())) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("training.class_weights has ", weights, " weights; the model has ", head.num_classes(), " classes"));
}

absl::Status ModelPublisher::Load(AggregatorState& state) {
  TINYFED_ASSIGN_OR_RETURN(std::optional<PublishedModel> latest, state.LatestModel());
  if (!latest && !key_) return absl::OkStatus();  // a mirror awaits the national model
  if (!latest) {
    TINYFED_ASSIGN_OR_RETURN(v1::ModelBundle bundle, models::ReadBundleFile(config_.initial_model, env_));
    if (bundle.precision() != v1::PRECISION_INT8) {
      return absl::InvalidArgumentError(
          StrCat(config_.initial_model.string(), " is a float bundle; gateways run int8 (tinyfed model quantize)"));
    }
    TINYFED_RETURN_IF_ERROR(CheckClassWeights(bundle.head()));
    bundle_ = std::move(bundle);
    std::vector<float> head = HeadParameters(bundle_.head());
    if (config_.reset_head) std::fill(head.begin(), head.end(), 0.0f);
    return Publish(std::move(head), 0, [&](const PublishedModel& row) { return state.RecordModel(row); });
  }
  TINYFED_ASSIGN_OR_RETURN(std::string blob, env_.ReadFile(latest->file, 1 << 30));
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(blob) || base::Sha256(signed_bundle.bundle()) != latest->bundle_sha256) {
    return absl::DataLossError(StrCat(latest->file.string(), " is not the signed bundle of model v", latest->version,
                                      " recorded in the state"));
  }
  TINYFED_ASSIGN_OR_RETURN(v1::ModelBundle bundle, models::DecodeBundleFile(signed_bundle.bundle()));
  TINYFED_RETURN_IF_ERROR(CheckClassWeights(bundle.head()));
  auto release = models::ParseRelease(signed_bundle.release());
  bundle_ = std::move(bundle);
  head_ = HeadParameters(bundle_.head());
  latest_ = std::make_unique<Published>();
  latest_->blob = std::move(blob);
  latest_->file = latest->file;
  if (release.ok()) latest_->release = *release;
  latest_->head_blob = HeadBlobOf(latest_->blob);
  latest_->ref = ModelRefOf(latest->version, latest->bundle_sha256, latest_->blob, latest_->head_blob);
  // After a rotation of the publishing key, or a long stop, the release no
  // longer verifies: sign it again with the current key. A mirror waits for
  // the national aggregator's new release.
  if (auto verified = trusted_.VerifyModel(signed_bundle, nullptr, env_.Now()); !verified.ok()) {
    if (!key_) {
      spdlog::warn("mirrored model v{} no longer verifies ({}): waiting for the national release", latest->version,
                   verified.status().ToString());
      return absl::OkStatus();
    }
    spdlog::info("re-signing the release of model v{}: {}", latest->version, verified.status().ToString());
    return Resign();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelPublisher::Published>> ModelPublisher::Sign(std::string bundle_file,
                                                                                uint64_t release_version) {
  TINYFED_ASSIGN_OR_RETURN(v1::ReleaseMetadata release,
                           models::DescribeRelease(bundle_file, trusted_.root().federation()));
  release.set_version(release_version);
  release.set_expires_unix_seconds(absl::ToUnixSeconds(env_.Now() + config_.security.release_expiry));
  auto published = std::make_unique<Published>();
  v1::SignedBundle signed_bundle;
  signed_bundle.set_bundle(std::move(bundle_file));
  const models::SigningKey* key = &*key_;
  *signed_bundle.mutable_release() = models::SignRelease(release, {&key, 1});
  published->blob = signed_bundle.SerializeAsString();
  published->release = std::move(release);
  published->head_blob = HeadBlobOf(published->blob);
  published->ref = ModelRefOf(published->release.model_version(), published->release.bundle_sha256(), published->blob,
                              published->head_blob);
  return published;
}

absl::Status ModelPublisher::Resign() {
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(latest_->blob)) return absl::InternalError("the latest model's blob is damaged");
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<Published> published,
                           Sign(std::move(*signed_bundle.mutable_bundle()), latest_->release.version() + 1));
  published->file = latest_->file;
  TINYFED_RETURN_IF_ERROR(env_.WriteFileAtomically(published->file, published->blob));
  latest_ = std::move(published);
  spdlog::info("release {} of model v{} signed (expires {})", latest_->release.version(), latest_->ref.version(),
               absl::FormatTime(absl::FromUnixSeconds(latest_->release.expires_unix_seconds())));
  return absl::OkStatus();
}

absl::Status ModelPublisher::ResignIfAging() {
  if (!key_ || !latest_) return absl::OkStatus();  // a mirror relays the national releases
  const absl::Time expires = absl::FromUnixSeconds(latest_->release.expires_unix_seconds());
  if (env_.Now() <= expires - config_.security.release_expiry / 2) return absl::OkStatus();
  return Resign();
}

absl::Status ModelPublisher::Publish(std::vector<float> head, int64_t round_id, const Commit& commit) {
  const uint64_t version = latest_ ? latest_->ref.version() + 1 : 1;
  v1::ModelBundle bundle = bundle_;
  SetHeadParameters(head, bundle.mutable_head());
  bundle.mutable_metadata()->set_version(version);
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<Published> published,
                           Sign(models::EncodeBundleFile(bundle), latest_ ? latest_->release.version() + 1 : 1));
  published->file = ModelFile(version);
  std::error_code ec;
  std::filesystem::create_directories(published->file.parent_path(), ec);
  if (ec)
    return absl::InternalError(StrCat("cannot create ", published->file.parent_path().string(), ": ", ec.message()));
  const PublishedModel row{.version = version,
                           .round_id = round_id,
                           .bundle_sha256 = published->ref.bundle_sha256(),
                           .file = published->file};
  TINYFED_RETURN_IF_ERROR(env_.WriteFileAtomically(row.file, published->blob));
  TINYFED_RETURN_IF_ERROR(commit(row));
  bundle_ = std::move(bundle);
  head_ = std::move(head);
  latest_ = std::move(published);
  base::LogEvent(spdlog::level::info, "model_published", {{"model_version", version}, {"round", round_id}},
                 fmt::format("model v{} published (round {}, release {}, sha256 {}, {} bytes)", version, round_id,
                             latest_->release.version(), absl::BytesToHexString(row.bundle_sha256).substr(0, 16),
                             latest_->blob.size()));
  return absl::OkStatus();
}

std::filesystem::path ModelPublisher::ModelFile(uint64_t version) const {
  return config_.state_dir / "models" / StrCat("model-v", version, ".signed");
}

absl::StatusOr<v1::ModelChunk> ModelPublisher::ChunkOf(std::string_view blob, const std::string& download_sha256,
                                                       const v1::ModelChunkRequest& request) {
  if (blob.empty()) {
    return absl::NotFoundError(
        StrCat("model v", request.version(), " has no ", request.head_only() ? "head-only download" : "download"));
  }
  if (request.offset() > blob.size()) {
    return absl::OutOfRangeError(StrCat("offset ", request.offset(), " is past the end of model v", request.version(),
                                        " (", blob.size(), " bytes)"));
  }
  const uint64_t max_bytes =
      request.max_bytes() == 0 ? kMaxChunkBytes : std::min<uint64_t>(request.max_bytes(), kMaxChunkBytes);
  v1::ModelChunk chunk;
  chunk.set_version(request.version());
  chunk.set_total_size(blob.size());
  chunk.set_download_sha256(download_sha256);
  chunk.set_offset(request.offset());
  chunk.set_data(std::string(blob.substr(request.offset(), max_bytes)));
  return chunk;
}

}  // namespace tinyfed::aggregator::internal
