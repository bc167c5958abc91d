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

namespace tinyfed::aggregator::internal {

using absl::StrCat;

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

ModelPublisher::ModelPublisher(const Config& config, base::Env& env, models::SigningKey key,
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

absl::Status ModelPublisher::CheckClassWeights(const v1::Head& head) const {
  const int weights = config_.training.class_weights_size();
  if (weights == 0 || weights == static_cast<int>(head.num_classes())) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("training.class_weights has ", weights, " weights; the model has ", head.num_classes(), " classes"));
}

absl::Status ModelPublisher::Load(AggregatorState& state) {
  TINYFED_ASSIGN_OR_RETURN(std::optional<PublishedModel> latest, state.LatestModel());
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
    return Publish(std::move(head), 0, [&](const PublishedModel& row) { return state.RecordInitialModel(row); });
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
  latest_->ref.set_version(latest->version);
  latest_->ref.set_bundle_sha256(latest->bundle_sha256);
  latest_->ref.set_download_size(latest_->blob.size());
  latest_->ref.set_download_sha256(base::Sha256(latest_->blob));
  // After a rotation of the publishing key, or a long stop, the release no
  // longer verifies: sign it again with the current key.
  if (auto verified = trusted_.VerifyModel(signed_bundle, nullptr, env_.Now()); !verified.ok()) {
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
  const models::SigningKey* key = &key_;
  *signed_bundle.mutable_release() = models::SignRelease(release, {&key, 1});
  published->blob = signed_bundle.SerializeAsString();
  published->release = std::move(release);
  published->ref.set_version(published->release.model_version());
  published->ref.set_bundle_sha256(published->release.bundle_sha256());
  published->ref.set_download_size(published->blob.size());
  published->ref.set_download_sha256(base::Sha256(published->blob));
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
  const std::filesystem::path dir = config_.state_dir / "models";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", dir.string(), ": ", ec.message()));
  published->file = dir / StrCat("model-v", version, ".signed");
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

absl::StatusOr<v1::ModelChunk> ModelPublisher::ChunkOf(std::string_view blob, const std::string& download_sha256,
                                                       const v1::ModelChunkRequest& request) {
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
