// The tinyfed client: what a clinic gateway embeds.
//
//   tinyfed::client::ClientConfig config;
//   config.device_id = "clinic-07";
//   config.data_dir = "/var/lib/tinyfed";
//   config.trusted_root = "/etc/tinyfed/1.root";  // shipped with the gateway
//   config.enrollment_token = "...";  // from the operator's `tinyfed enroll`, used once
//   auto transport = tinyfed::client::ConnectGrpc("aggregator.region:7443",
//                                                 {.ca_certificate = "/etc/tinyfed/ca.pem"});
//   auto client = tinyfed::client::Client::Create(config, std::move(*transport));
//
//   // A clinician confirmed a diagnosis: keep the sample for local training.
//   (*client)->AddSamples({{features, label}});
//   // Inference with the installed model, no network needed.
//   auto prediction = (*client)->Predict(features);  // label, confidence, head, id
//   // The clinician's answer: confirms or corrects it, kept to train on.
//   (*client)->Confirm(prediction->id, label);
//   // Take part in federated rounds until the aggregator closes the federation.
//   std::thread rounds([&] { (*client)->Run(); });
//   ...
//   (*client)->Stop();  rounds.join();
//
// What stays on the gateway (config.data_dir):
//   store/           the labelled samples, encrypted (client/sample_store.h),
//                    and the embedding cache, encrypted under the same key
//   model.signed     the installed model and its signed release
//   roots/           root metadata accepted after the pinned one (rotations)
//   download.*       a model download in progress, resumed after a restart
//   device_signing.key  the device's Ed25519 key (0600): signs every request
//                    and its SecAgg+ keys; `enrolled` once it is registered
//   LOCK             held by the process using the directory (one at a time)
//   model.signed.damaged  an installed model that failed verification at
//                    start, set aside until the model is fetched again
//   privacy.db       the clinic's privacy ledger (dp/ledger.h): each
//                    round it trained for, and what it cost
// What leaves it: SecAgg+-masked, clipped and noised head updates, and
// aggregate telemetry (sample counts per class, a confidence histogram and
// accuracy on a held-out slice, for the global and the personal head, and
// how often clinicians corrected predictions). Never a sample, a label or an
// embedding, and never the personal head.
//
// The personal head: after each model it installs, the gateway fits two
// heads of its own from the global one on its samples: the global head
// recalibrated to the clinic (its logits rescaled, its class biases
// refitted: a clinic that sees conditions in other proportions than the
// federation), and the global head fine-tuned for personal_head_epochs (a
// clinic whose cases differ in kind). Each is scored by 5-fold
// cross-validation, every sample answered by heads fitted without it, and
// the simplest head that no other beats beyond chance serves: the
// recalibrated head must beat the global head, the fine-tuned head
// whichever of those won, each in an exact one-sided McNemar test on the
// samples the two disagree on, at p <= 0.25 (docs/gateway.md says why). A
// clinic with few samples therefore keeps the federation's head. The head
// chosen is fitted on every sample, and a served personal head answers
// every case. Each prediction says which head answered.
//
// A model is installed only if its release verifies against the trusted
// root (models/trust.h: signatures, threshold, versions, expiry, lengths and
// hashes, federation) and it serves the installed model's task; otherwise
// the installed model stays and the reason goes into the next telemetry
// report.
//
// Thread-safe: AddSamples and Predict may run while a round is in progress.
#ifndef TINYFED_CLIENT_CLIENT_H_
#define TINYFED_CLIENT_CLIENT_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tinyfed/base/env.h"
#include "tinyfed/client/eligibility.h"
#include "tinyfed/client/sample_store.h"
#include "tinyfed/client/transport.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::client {

struct ClientConfig {
  std::string device_id;  // 1..64 of [A-Za-z0-9._-]
  std::filesystem::path data_dir;
  std::filesystem::path trusted_root;  // root metadata the gateway ships with (`tinyfed root new`)
  // One-time token from `tinyfed enroll`; used at the first check-in.
  std::string enrollment_token;
  size_t max_samples = 20000;     // the replay buffer keeps the newest
  double holdout_fraction = 0.1;  // of samples, for local accuracy and the decision threshold
  // Epochs the fine-tuned personal head trains for from each installed
  // global head (a cosine schedule at the task's learning rate); 0: no
  // personal head at all.
  int personal_head_epochs = 5;
  EligibilityPolicy eligibility;
  absl::TimeZone time_zone = absl::LocalTimeZone();  // of the eligibility window
  // The clinic's own budget. Its ledger (privacy.db) charges every round
  // before training: a patient-level round by its DP-SGD, a clinic-level
  // one by the noise its cohort claims to add. The gateway declines a round
  // that would take it past the budget, and with a finite budget any round
  // whose update would leave without noise of its own (trusted-aggregator
  // and DP-off rounds), whatever the aggregator asks. Infinite: no budget.
  dp::PrivacyBudget privacy_budget{.epsilon = std::numeric_limits<double>::infinity(), .delta = 1e-5};
  // A screening class Predict must not miss (a label name of the model):
  // Predict decides it by a threshold on its probability, set on the
  // held-out slice so that target_sensitivity of its cases score above it
  // (models/decision_threshold.h). Empty: the most likely class.
  std::string positive_class;
  double target_sensitivity = 0.95;
  // Simulation only: derive the DP noise and SecAgg+ keys from this seed,
  // the device id and the round, so that a simulation can be repeated
  // exactly. A real gateway must leave it unset: predictable noise and keys
  // void both the privacy guarantee and secure aggregation.
  std::optional<uint64_t> simulation_seed;
};

// Observers, for gateway status displays and simulations. Called on the
// thread running the round.
struct ClientHooks {
  // Before the client acts in `phase` of `round_id` (PHASE_TASK: training
  // starts). Returning false makes the client stop taking part in the round
  // there, silently, as a power cut would (simulations use it for dropouts).
  std::function<bool(uint64_t round_id, v1::Phase phase)> on_phase;
  // The gateway's power, link and use now, asked before each round for the
  // eligibility policy. Unset: on mains power, unmetered, idle.
  std::function<DeviceConditions()> conditions;
};

// Which head answered a prediction.
enum class Head { kGlobal, kPersonal };

struct Prediction {
  uint64_t id = 0;  // for Confirm; unique within the process
  int label = 0;
  float confidence = 0.0f;  // the softmax probability of `label`
  Head head = Head::kGlobal;
};

enum class RoundOutcome {
  kCompleted,    // took part and installed the new model
  kNotSelected,  // no room in the cohort, or a round is in progress
  kAborted,      // the round was aborted or this client was dropped
  kSkipped,      // admitted but could not take part (no usable model or data)
  kClosed,       // the federation has ended
  kIneligible,   // not eligible now (config.eligibility): no call was made
};

struct RoundTimings {
  absl::Duration backbone;   // embeddings of samples not in the cache
  absl::Duration training;   // local epochs of the head
  absl::Duration encoding;   // delta, clipping, distributed-DP encoding
  absl::Duration secagg;     // SecAgg+ client computation
  absl::Duration transport;  // calls to the aggregator
  absl::Duration waiting;    // for the other clients
};

struct RoundReport {
  RoundOutcome outcome = RoundOutcome::kNotSelected;
  uint64_t round_id = 0;
  std::string detail;          // why, for anything but kCompleted
  absl::Duration retry_after;  // when to check in again
  uint64_t model_version = 0;  // installed after the attempt
  size_t samples_trained = 0;
  RoundTimings timings;
};

namespace internal {
struct GatewayState;
}  // namespace internal
namespace testing {
class ClientPeer;  // client/testing/client_peer.h: what only tests may see
}  // namespace testing

// Thread-safe. Predict, AddSamples and the accessors may be called while a
// round runs on another thread: inference never waits for training.
class Client {
 public:
  // Locks data_dir, opens the store, loads and re-verifies the installed
  // model if any (one that fails is set aside and fetched again: the client
  // starts without a model and says why in its telemetry).
  // FAILED_PRECONDITION when another process holds data_dir, and when the
  // device key is missing after enrollment and no enrollment token is given
  // (re-enroll); DATA_LOSS for a damaged store.
  // `env` (the clock releases expire by, the randomness of DP noise and
  // SecAgg+ keys, the model files) outlives the client.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientConfig& config,
                                                        std::unique_ptr<Transport> transport, ClientHooks hooks = {},
                                                        base::Env& env = base::Env::Default());
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Stores labelled samples (raw features, as Predict takes them). With a
  // model installed, feature counts and labels are checked against it.
  absl::Status AddSamples(std::span<const Sample> samples);
  // FAILED_PRECONDITION before the first model is installed. The features
  // of the last 1,024 predictions are kept in memory for Confirm.
  absl::StatusOr<Prediction> Predict(std::span<const float> features);
  // The clinician's answer to prediction `id`: `label` confirms it or
  // corrects it (an override), and is stored with its features as a
  // labelled sample. Telemetry reports the override rate. NOT_FOUND for an
  // id not among the last 1,024 predictions of this process (or confirmed
  // already), INVALID_ARGUMENT for a label the model does not have.
  absl::Status Confirm(uint64_t prediction_id, int label);
  // With config.positive_class: the threshold Predict applies to it, from the
  // installed model and the held-out samples (0.5 with fewer than 3 of that
  // class held out). FAILED_PRECONDITION without a model, NOT_FOUND for a
  // class the model does not have; INVALID_ARGUMENT without positive_class.
  absl::StatusOr<double> DecisionThreshold();
  uint64_t model_version() const;
  size_t sample_count() const;

  // Checks in once and, if admitted, takes part in the round to its end.
  // Within the round an unreachable aggregator is called again for up to 10
  // minutes: a restarted one resumes the round, and this client carries on
  // with the state it kept. Errors are transport failures that outlasted
  // that, or local storage failures; everything the aggregator decides is an
  // outcome.
  absl::StatusOr<RoundReport> ParticipateOnce();
  // ParticipateOnce in a loop, waiting as the aggregator asks and backing off
  // (1 s doubling to 10 s) when it is unreachable, until the federation
  // closes, Stop() is called or `max_completed_rounds` rounds completed (0: no
  // limit). Returns PERMISSION_DENIED once revoked and UNAUTHENTICATED when
  // the aggregator does not know the device's key: both need an operator.
  absl::Status Run(int64_t max_completed_rounds = 0);
  void Stop();
  // Sends the aggregate telemetry now (Run does after each round and after
  // each model it installs).
  absl::Status SendTelemetry();

 private:
  friend class testing::ClientPeer;
  explicit Client(std::unique_ptr<internal::GatewayState> state);
  std::unique_ptr<internal::GatewayState> state_;  // client/internal/gateway_state.h
};

}  // namespace tinyfed::client

#endif  // TINYFED_CLIENT_CLIENT_H_
