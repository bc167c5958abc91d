// The models the aggregator publishes: the publishing key and the root
// chain it signs under, the latest signed bundle (served to gateways from
// memory), and the writing of the next version. The engine decides when to
// publish; this decides how, so that a model on disk is always one whose
// release verifies under the latest root.
//
// A regional aggregator's publisher is a mirror: it holds no key, and
// serves the national aggregator's signed bundles unchanged once they
// verify under the national roots, as its gateways will verify them. So a
// region can relay a model, or withhold one, but never forge one.
#ifndef TINYFED_AGGREGATOR_INTERNAL_MODEL_PUBLISHER_H_
#define TINYFED_AGGREGATOR_INTERNAL_MODEL_PUBLISHER_H_

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/env.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/v1/bundle.pb.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::aggregator::internal {

class ModelPublisher {
 public:
  // A model as gateways download it.
  struct Published {
    v1::ModelRef ref;
    v1::ReleaseMetadata release;
    std::string blob;       // the serialized SignedBundle
    std::string head_blob;  // its serialized SignedHead, for gateways that have the backbone
    std::filesystem::path file;
  };
  // Commits a written model file to the state (the round's row, or the
  // initial model's); the publication counts only if it succeeds.
  using Commit = std::function<absl::Status(const PublishedModel& row)>;

  // Reads the publishing key and the root chain; PERMISSION_DENIED if the
  // key is not a publishing key of the latest root.
  static absl::StatusOr<std::unique_ptr<ModelPublisher>> Open(const Config& config, base::Env& env);
  // A regional aggregator's mirror: roots_dir holds the national roots, and
  // the rotations relayed since are kept in state_dir/roots/.
  static absl::StatusOr<std::unique_ptr<ModelPublisher>> OpenMirror(const Config& config, base::Env& env);

  // Resumes from the latest model in `state` (re-signing its release if it
  // no longer verifies), or publishes config.initial_model as v1. A mirror
  // may have no model yet.
  absl::Status Load(AggregatorState& state);
  bool has_model() const { return latest_ != nullptr; }
  // Mirror: `blob`, a SignedBundle of the national aggregator, verified
  // under the latest root and not older than the latest model, becomes the
  // latest model; a new version is written and committed, a new release of
  // the same version (re-signed nationally) replaces the file. On error
  // nothing changes: PERMISSION_DENIED or FAILED_PRECONDITION say why the
  // model was refused.
  absl::Status Mirror(std::string blob, const Commit& commit);
  // Mirror: the roots after the latest, each verified by its predecessor
  // and kept on disk before the next is taken.
  absl::Status AdvanceRoots(std::span<const v1::SignedMetadata> roots);
  // Writes version latest + 1 with `head` and commits it; on any error the
  // latest model stays what it was.
  absl::Status Publish(std::vector<float> head, int64_t round_id, const Commit& commit);
  // The path model version `version` is kept at.
  std::filesystem::path ModelFile(uint64_t version) const;
  // Signs a new release of the latest model once half of its release's
  // life has passed (gateways refuse an expired release).
  absl::Status ResignIfAging();

  const Published& latest() const { return *latest_; }
  const v1::ModelBundle& bundle() const { return bundle_; }
  const std::vector<float>& head() const { return head_; }                 // the bundle's head, flattened
  const std::vector<v1::SignedMetadata>& roots() const { return roots_; }  // 1.root, 2.root, ...

  // The chunk of `blob` (the model's SignedBundle, or its SignedHead) a
  // download request asks for; OUT_OF_RANGE past its end, NOT_FOUND for an
  // empty blob (a head the model has none of).
  static absl::StatusOr<v1::ModelChunk> ChunkOf(std::string_view blob, const std::string& download_sha256,
                                                const v1::ModelChunkRequest& request);
  static constexpr uint32_t kMaxChunkBytes = 256 * 1024;

 private:
  ModelPublisher(const Config& config, base::Env& env, std::optional<models::SigningKey> key,
                 std::vector<v1::SignedMetadata> roots, models::TrustedRoot trusted);
  // `bundle_file` under a release signed by the publishing key.
  absl::StatusOr<std::unique_ptr<Published>> Sign(std::string bundle_file, uint64_t release_version);
  absl::Status Resign();
  absl::Status CheckClassWeights(const v1::Head& head) const;

  const Config& config_;
  base::Env& env_;
  std::optional<models::SigningKey> key_;  // none in a mirror
  std::vector<v1::SignedMetadata> roots_;
  models::TrustedRoot trusted_;  // the latest root
  v1::ModelBundle bundle_;       // the latest model
  std::vector<float> head_;
  std::unique_ptr<Published> latest_;
};

// The serialized SignedHead of the serialized SignedBundle `blob`; empty
// if `blob` is not one whose bundle decodes.
std::string HeadBlobOf(std::string_view blob);

// How gateways know model `version`: its bundle's hash, the size and hash
// of `blob` (the serialized SignedBundle), and when `head_blob` (its
// SignedHead) is not empty, its size and hash and the backbone's hash.
v1::ModelRef ModelRefOf(uint64_t version, const std::string& bundle_sha256, std::string_view blob,
                        std::string_view head_blob);

// A head's weights then biases, and back.
std::vector<float> HeadParameters(const v1::Head& head);
void SetHeadParameters(std::span<const float> parameters, v1::Head* head);

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_MODEL_PUBLISHER_H_
