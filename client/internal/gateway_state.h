// Everything a Client holds, shared by the parts of client/internal that
// act on it (the round, model download, local training, telemetry).
//
// Three locks, each held briefly, taken in this order:
//   round_mu  one round at a time; the trust store and the transport's
//             round calls. Held for a whole round: Predict never takes it.
//   mu        the installed model and what is derived from it (Predict).
//   store_mu  the sample store (decrypting and sealing).
// Training copies the model under `mu` and decrypts under `store_mu`, then
// embeds and trains holding neither, so inference never waits for training.
#ifndef TINYFED_CLIENT_INTERNAL_GATEWAY_STATE_H_
#define TINYFED_CLIENT_INTERNAL_GATEWAY_STATE_H_

#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "tinyfed/client/client.h"
#include "tinyfed/client/embedding_cache.h"
#include "tinyfed/client/sample_store.h"
#include "tinyfed/client/transport.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/dp/secure_random.h"
#include "tinyfed/models/directory_lock.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::client::internal {

// A download that failed for want of a link is retried at the next
// check-in; any other failure is a refusal, already recorded for telemetry.
inline bool LinkLost(const absl::Status& s) { return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s); }

// Whether a sample is in the clinic's hold-out (a fixed share of its keys):
// never trained on, used for the decision threshold and telemetry.
inline bool InHoldout(const SampleKey& key, double fraction) {
  const uint32_t v = (uint32_t{key[0]} << 8) | key[1];
  return v < fraction * 65536.0;
}

// The clinic's own head (personal_head.h), and how it and the global head
// did on the clinic's samples, cross-validated: `wins` samples only the
// personal head got right, `losses` only the global one.
struct PersonalHead {
  uint64_t for_version = 0;
  v1::Head head;
  uint32_t samples = 0;  // scored by cross-validation
  double global_accuracy = 0.0;
  double personal_accuracy = 0.0;
  uint32_t wins = 0, losses = 0;
  bool served = false;
};

// A prediction Confirm may still label.
struct PendingPrediction {
  uint64_t id = 0;
  std::vector<float> features;
  int label = 0;  // predicted
};

struct GatewayState {
  explicit GatewayState(base::Env& e) : env(e) {}
  base::Env& env;                                        // time for release expiry, randomness, model files
  std::unique_ptr<models::DirectoryLock> data_dir_lock;  // for this process alone
  ClientConfig config;
  ClientHooks hooks;
  // Tests only (client/testing/client_peer.h): the encoded update in the
  // clear, before masking. Set before the first round.
  std::function<void(uint64_t round_id, std::span<const uint32_t> encoded)> encoded_update_observer;
  std::shared_ptr<const models::SigningKey> device_key;  // signs requests and SecAgg+ keys
  std::unique_ptr<dp::PrivacyLedger> ledger;             // patient-level charges (thread-safe)

  mutable absl::Mutex round_mu ABSL_ACQUIRED_BEFORE(mu);
  std::unique_ptr<Transport> transport;                                  // thread-safe; round calls under round_mu
  std::optional<models::TrustedRoot> trusted ABSL_GUARDED_BY(round_mu);  // the pinned root, advanced by rotations

  mutable absl::Mutex mu ABSL_ACQUIRED_BEFORE(store_mu);
  v1::ModelBundle bundle ABSL_GUARDED_BY(mu);
  std::unique_ptr<models::Interpreter> interpreter ABSL_GUARDED_BY(mu);  // for Predict
  uint64_t version ABSL_GUARDED_BY(mu) = 0;
  v1::ReleaseMetadata release ABSL_GUARDED_BY(mu);  // of the installed model
  std::string model_status ABSL_GUARDED_BY(mu);     // why the last offered model was refused
  // The head this model replaced, on the same backbone, so that telemetry
  // compares the two on the same held-out slice (the aggregator's canary).
  struct ReplacedHead {
    uint64_t version = 0;
    v1::Head head;
  };
  std::optional<ReplacedHead> replaced ABSL_GUARDED_BY(mu);
  // config.positive_class's index and threshold, for the installed model
  // and stored samples; reset when either changes.
  std::optional<std::pair<int, double>> decision ABSL_GUARDED_BY(mu);
  // The training settings of the last task, which the personal head reuses.
  std::optional<v1::TrainingSettings> training ABSL_GUARDED_BY(mu);
  // The personal head fitted for the installed model, if any (personal_head.h).
  std::optional<PersonalHead> personal ABSL_GUARDED_BY(mu);
  // Recent predictions' features, for Confirm; and what clinicians said.
  std::deque<PendingPrediction> pending ABSL_GUARDED_BY(mu);
  uint64_t predictions ABSL_GUARDED_BY(mu) = 0;
  uint64_t confirmations ABSL_GUARDED_BY(mu) = 0;
  uint64_t overrides ABSL_GUARDED_BY(mu) = 0;
  // The global head's view of the cases predicted since the last report
  // sent (telemetry's recent_* fields).
  std::vector<uint32_t> recent_confidence ABSL_GUARDED_BY(mu) = std::vector<uint32_t>(10, 0);
  std::vector<uint32_t> recent_classes ABSL_GUARDED_BY(mu);
  int rounds_declined ABSL_GUARDED_BY(mu) = 0;
  int rounds_ineligible ABSL_GUARDED_BY(mu) = 0;       // declined by the eligibility policy
  std::string eligibility_status ABSL_GUARDED_BY(mu);  // why, the last time
  std::string privacy_status ABSL_GUARDED_BY(mu);      // why the last round was declined

  mutable absl::Mutex store_mu;
  std::unique_ptr<SampleStore> store ABSL_GUARDED_BY(store_mu);

  absl::Mutex stop_mu;
  bool stopping ABSL_GUARDED_BY(stop_mu) = false;

  v1::RequestHeader Header(uint64_t round_id, v1::Phase phase) const;
  // Sleeps unless stopped; returns false once stopped.
  bool SleepFor(absl::Duration d);
  bool stopped();
  uint64_t installed_version() const;

  void Install(models::VerifiedModel m, std::unique_ptr<models::Interpreter> in) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Whether the personal head answers: it won for the installed model.
  bool ServesPersonalHead() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The logits of the head that answers the case: the personal head's
  // where it serves, else the global head's.
  std::vector<float> ServingLogits(std::span<const float> features) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Counts the case ServingLogits just ran in recent_confidence and
  // recent_classes, by the global head's logits.
  void RecordRecentCase() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // The positive class and its threshold (computed on first use).
  absl::StatusOr<std::pair<int, double>> Decision() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Registers the device key with the enrollment token, once; the marker
  // file remembers it across restarts.
  absl::Status EnrollIfNeeded();
  // A reproducible seed for `purpose` (config.simulation_seed must be set).
  dp::Seed SimulationSeed(uint64_t round_id, std::string_view purpose) const;
  // From the simulation seed for `purpose`, or the Env's randomness.
  std::unique_ptr<dp::SecureRandom> Random(uint64_t round_id, std::string_view purpose) const;
  // Moves a damaged installed model aside; the model it claims to be (its
  // release, unverified) stays the floor for rollback protection, with that
  // version itself allowed again. DATA_LOSS if it cannot be moved.
  // Kept aside, it is read again at every start until a model installs.
  absl::Status SetAsideDamagedModel(const std::filesystem::path& file, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_GATEWAY_STATE_H_
