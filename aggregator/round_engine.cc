#include "tinyfed/aggregator/round_engine.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "aggregator/internal/log_limiter.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/noise.h"
#include "tinyfed/base/seed.h"
#include "tinyfed/aggregator/server_optimizer.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/clipping.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/rdp_accountant.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/directory_lock.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/proto/device_id.h"
#include "tinyfed/proto/device_text.h"
#include "tinyfed/secure_agg/params.h"
#include "tinyfed/secure_agg/server.h"

namespace tinyfed::aggregator {
namespace {

absl::Status CheckClassWeights(const Config& config, const v1::Head& head) {
  const int weights = config.training.class_weights_size();
  if (weights == 0 || weights == static_cast<int>(head.num_classes())) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("training.class_weights has ", weights, " weights; the model has ", head.num_classes(), " classes"));
}

// Devices rejected by this many distinct neighbors are left out of later
// cohorts: one neighbor alone may be the liar.
constexpr size_t kRejectionsToExclude = 2;

using absl::FailedPreconditionError;
using absl::InvalidArgumentError;
using absl::StrCat;

// kUpdate is the one phase of a round without SecAgg+.
enum class Stage { kSelecting, kAdvertise, kShareKeys, kMaskedInput, kUnmasking, kUpdate };

const char* StageName(Stage s) {
  switch (s) {
    case Stage::kSelecting: return "selecting";
    case Stage::kAdvertise: return "advertise_keys";
    case Stage::kShareKeys: return "share_keys";
    case Stage::kMaskedInput: return "masked_input";
    case Stage::kUnmasking: return "unmasking";
    case Stage::kUpdate: return "update";
  }
  return "?";
}

// The stage in which a client submits (or awaits the server's message of) `phase`.
std::optional<Stage> StageOf(v1::Phase phase) {
  switch (phase) {
    case v1::PHASE_ADVERTISE_KEYS: return Stage::kAdvertise;
    case v1::PHASE_SHARE_KEYS: return Stage::kShareKeys;
    case v1::PHASE_MASKED_INPUT: return Stage::kMaskedInput;
    case v1::PHASE_UNMASKING: return Stage::kUnmasking;
    case v1::PHASE_UPDATE: return Stage::kUpdate;
    default: return std::nullopt;
  }
}

v1::Phase PhaseOfMessage(const v1::SecAggClientMessage& m) {
  switch (m.phase_case()) {
    case v1::SecAggClientMessage::kAdvertiseKeys: return v1::PHASE_ADVERTISE_KEYS;
    case v1::SecAggClientMessage::kShareKeys: return v1::PHASE_SHARE_KEYS;
    case v1::SecAggClientMessage::kMaskedInput: return v1::PHASE_MASKED_INPUT;
    case v1::SecAggClientMessage::kUnmasking: return v1::PHASE_UNMASKING;
    default: return v1::PHASE_UNSPECIFIED;
  }
}

absl::Status CheckHeader(const v1::RequestHeader& h, std::initializer_list<v1::Phase> allowed) {
  if (!proto::IsValidDeviceId(h.device_id())) {
    return InvalidArgumentError(StrCat("header.device_id must be 1 to ", proto::kMaxDeviceIdLength,
                                       " letters, digits, '.', '_' or '-' (got ", h.device_id().size(),
                                       " characters)"));
  }
  if (std::find(allowed.begin(), allowed.end(), h.phase()) == allowed.end()) {
    return InvalidArgumentError(StrCat("header.phase ", v1::Phase_Name(h.phase()), " does not belong to this method"));
  }
  // Round ids are int64 in the state; a larger one is no round.
  if (h.round_id() > static_cast<uint64_t>(INT64_MAX)) {
    return InvalidArgumentError(StrCat("header.round_id ", h.round_id(), " is not a round id (at most 2^63 - 1)"));
  }
  return absl::OkStatus();
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

}  // namespace

struct RoundEngine::Resources {
  std::unique_ptr<models::DirectoryLock> state_dir_lock;  // for this process alone
  std::unique_ptr<AggregatorState> state;
  std::unique_ptr<dp::PrivacyLedger> ledger;
  std::optional<models::SigningKey> key;       // the publishing key
  std::vector<v1::SignedMetadata> roots;       // 1.root, 2.root, ...
  std::optional<models::TrustedRoot> trusted;  // the latest of them
  std::unique_ptr<DeviceRegistry> devices;
  std::optional<ServerOptimizer> optimizer;
  v1::ModelBundle bundle;     // the latest model (its head is the global head)
  std::vector<float> head;    // its head parameters, flattened
  internal::LogLimiter device_log;  // what devices report: a line a minute each at most
  // Devices whose SecAgg+ shares others rejected, and by whom (this process's
  // life; an operator revokes for good).
  std::map<std::string, std::set<std::string>> rejected_by;
};

struct RoundEngine::Published {
  v1::ModelRef ref;
  v1::ReleaseMetadata release;
  std::string blob;  // the serialized SignedBundle clients download
  std::filesystem::path file;
};

struct RoundEngine::Member {
  uint32_t id = 0;
  bool dropped = false;
  std::map<v1::Phase, std::string> submitted;  // serialized messages, for idempotent retries
  std::vector<float> update;                   // decoded, without SecAgg+
};

struct RoundEngine::Round {
  int64_t id = 0;
  Stage stage = Stage::kSelecting;
  absl::Time deadline;
  std::vector<std::string> admitted;
  std::map<std::string, Member> members;
  std::vector<std::string> device_of;  // SecAgg id -> device
  std::unique_ptr<secagg::Server> server;
  dp::DdgParams ddg;
  dp::Seed rotation_seed{};
  v1::RoundTask task;
  std::map<uint32_t, v1::SecAggServerMessage> outgoing;
  int min_survivors = 0;
};

RoundEngine::RoundEngine(const Config& config, Clock clock) : config_(config), clock_(std::move(clock)) {}
RoundEngine::~RoundEngine() = default;

absl::StatusOr<std::unique_ptr<RoundEngine>> RoundEngine::Create(const Config& config, Clock clock) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  auto engine = std::unique_ptr<RoundEngine>(new RoundEngine(config, std::move(clock)));
  if (auto s = engine->Init(); !s.ok()) return s;
  return engine;
}

absl::Status RoundEngine::Init() {
  absl::MutexLock lock(&mu_);
  res_ = std::make_unique<Resources>();
  auto state_dir_lock = models::DirectoryLock::Acquire(config_.state_dir, "tinyfed aggregator");
  if (!state_dir_lock.ok()) return state_dir_lock.status();
  res_->state_dir_lock = std::move(*state_dir_lock);
  auto state = AggregatorState::Open(config_.state_dir);
  if (!state.ok()) return state.status();
  res_->state = std::move(*state);
  auto devices = DeviceRegistry::Open(config_.state_dir);
  if (!devices.ok()) return devices.status();
  res_->devices = std::move(*devices);
  auto key = models::ReadSigningKey(config_.publishing_key);
  if (!key.ok()) return key.status();
  res_->key.emplace(std::move(*key));
  auto roots = models::ReadRootChain(config_.roots_dir);
  if (!roots.ok()) return roots.status();
  res_->roots = std::move(*roots);
  auto trusted = models::TrustedRoot::Pin(res_->roots.back());
  if (!trusted.ok()) return trusted.status();
  res_->trusted.emplace(std::move(*trusted));
  const v1::RootMetadata& root = res_->trusted->root();
  const auto& publishing = root.publishing().public_keys();
  if (std::find(publishing.begin(), publishing.end(), models::KeyBytes(res_->key->public_key())) == publishing.end()) {
    return absl::PermissionDeniedError(StrCat(config_.publishing_key.string(), " is not a publishing key of root v",
                                              root.version(), " in ", config_.roots_dir.string()));
  }
  if (root.publishing().threshold() != 1) {
    return InvalidArgumentError(StrCat("root v", root.version(), " asks for ", root.publishing().threshold(),
                                       " publishing signatures; the aggregator signs releases alone (threshold 1)"));
  }
  // Gateways refuse every model once the root expires: warn well before.
  const absl::Time root_expires = absl::FromUnixSeconds(root.expires_unix_seconds());
  if (root_expires - absl::Now() < absl::Hours(24 * 30)) {
    spdlog::warn("root v{} expires {}: sign the next root (tinyfed root new) before then, or gateways stop "
                 "accepting models",
                 root.version(), absl::FormatTime(root_expires));
  }
  auto ledger = dp::PrivacyLedger::Open(config_.state_dir / "ledger.db",
                                        {.epsilon = config_.dp.epsilon_budget, .delta = config_.dp.delta});
  if (!ledger.ok()) return ledger.status();
  res_->ledger = std::move(*ledger);
  // A previous process may have died between charging a round and publishing it.
  if (auto s = ReconcileLedgerLocked(); !s.ok()) return s;

  auto latest = res_->state->LatestModel();
  if (!latest.ok()) return latest.status();
  if (!latest->has_value()) {
    auto bundle = models::ReadBundleFile(config_.initial_model);
    if (!bundle.ok()) return bundle.status();
    if (bundle->precision() != v1::PRECISION_INT8) {
      return InvalidArgumentError(StrCat(config_.initial_model.string(),
                                         " is a float bundle; gateways run int8 (tinyfed model quantize)"));
    }
    res_->bundle = std::move(*bundle);
    if (auto s = CheckClassWeights(config_, res_->bundle.head()); !s.ok()) return s;
    std::vector<float> head = HeadParameters(res_->bundle.head());
    if (config_.reset_head) std::fill(head.begin(), head.end(), 0.0f);
    if (auto s = PublishLocked(std::move(head), 0, nullptr); !s.ok()) return s;
  } else {
    const PublishedModel& m = **latest;
    auto blob = base::ReadFileBytes(m.file, 1 << 30);
    if (!blob.ok()) return blob.status();
    v1::SignedBundle signed_bundle;
    if (!signed_bundle.ParseFromString(*blob) || base::Sha256(signed_bundle.bundle()) != m.bundle_sha256) {
      return absl::DataLossError(StrCat(m.file.string(), " is not the signed bundle of model v", m.version,
                                        " recorded in the state"));
    }
    auto bundle = models::DecodeBundleFile(signed_bundle.bundle());
    if (!bundle.ok()) return bundle.status();
    auto release = models::ParseRelease(signed_bundle.release());
    res_->bundle = std::move(*bundle);
    res_->head = HeadParameters(res_->bundle.head());
    if (auto s = CheckClassWeights(config_, res_->bundle.head()); !s.ok()) return s;
    latest_ = std::make_unique<Published>();
    latest_->blob = std::move(*blob);
    latest_->file = m.file;
    if (release.ok()) latest_->release = *release;
    latest_->ref.set_version(m.version);
    latest_->ref.set_bundle_sha256(m.bundle_sha256);
    latest_->ref.set_download_size(latest_->blob.size());
    latest_->ref.set_download_sha256(base::Sha256(latest_->blob));
    // After a rotation of the publishing key, or a long stop, the release
    // no longer verifies: sign it again with the current key.
    auto verified = res_->trusted->VerifyModel(signed_bundle, nullptr, absl::Now());
    if (!verified.ok()) {
      spdlog::info("re-signing the release of model v{}: {}", m.version, verified.status().ToString());
      if (auto s = ResignLocked(); !s.ok()) return s;
    }
  }

  head_size_ = res_->head.size();
  auto optimizer = ServerOptimizer::Create(config_.optimizer, head_size_);
  if (!optimizer.ok()) return optimizer.status();
  res_->optimizer.emplace(std::move(*optimizer));
  std::vector<float> m1, m2;
  if (auto s = res_->state->LoadOptimizer(&m1, &m2); !s.ok()) return s;
  if (!m1.empty()) {
    if (auto s = res_->optimizer->Restore(std::move(m1), std::move(m2)); !s.ok()) return s;
  }

  auto aborted = res_->state->AbortUnfinishedRounds("the aggregator restarted");
  if (!aborted.ok()) return aborted.status();
  if (*aborted > 0) spdlog::warn("aborted {} round(s) left running by a previous aggregator process", *aborted);
  auto completed = res_->state->CompletedRounds();
  if (!completed.ok()) return completed.status();
  completed_rounds_ = *completed;
  auto next = res_->state->NextRoundId();
  if (!next.ok()) return next.status();
  next_round_id_ = *next;

  auto z = ResolveNoiseMultiplier(config_, res_->head.size());
  if (!z.ok()) return z.status();
  noise_multiplier_ = *z;
  auto spent = res_->ledger->Spent();
  if (!spent.ok()) return spent.status();
  spdlog::info("aggregator ready: model v{}, {} rounds done, epsilon spent {:.4f} (delta {}), noise multiplier {:.4f}",
               latest_->ref.version(), completed_rounds_, spent->epsilon, config_.dp.delta, noise_multiplier_);
  if (config_.max_rounds > 0 && completed_rounds_ >= config_.max_rounds) {
    CloseLocked(StrCat("all ", config_.max_rounds, " rounds are done"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RoundEngine::Published>> RoundEngine::SignLocked(std::string bundle_file,
                                                                               uint64_t release_version) const {
  auto release = models::DescribeRelease(bundle_file, res_->trusted->root().federation());
  if (!release.ok()) return release.status();
  release->set_version(release_version);
  // Expiry is wall-clock time on every gateway, whatever clock drives rounds.
  release->set_expires_unix_seconds(absl::ToUnixSeconds(absl::Now() + config_.security.release_expiry));
  auto published = std::make_unique<Published>();
  v1::SignedBundle signed_bundle;
  signed_bundle.set_bundle(std::move(bundle_file));
  const models::SigningKey* key = &*res_->key;
  *signed_bundle.mutable_release() = models::SignRelease(*release, {&key, 1});
  published->blob = signed_bundle.SerializeAsString();
  published->release = std::move(*release);
  published->ref.set_version(published->release.model_version());
  published->ref.set_bundle_sha256(published->release.bundle_sha256());
  published->ref.set_download_size(published->blob.size());
  published->ref.set_download_sha256(base::Sha256(published->blob));
  return published;
}

absl::Status RoundEngine::ResignLocked() {
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(latest_->blob)) return absl::InternalError("the latest model's blob is damaged");
  auto published = SignLocked(std::move(*signed_bundle.mutable_bundle()), latest_->release.version() + 1);
  if (!published.ok()) return published.status();
  (*published)->file = latest_->file;
  if (auto s = base::WriteFileAtomically((*published)->file, (*published)->blob); !s.ok()) return s;
  latest_ = std::move(*published);
  spdlog::info("release {} of model v{} signed (expires {})", latest_->release.version(), latest_->ref.version(),
               absl::FormatTime(absl::FromUnixSeconds(latest_->release.expires_unix_seconds())));
  return absl::OkStatus();
}

absl::Status RoundEngine::PublishLocked(std::vector<float> head, int64_t round_id, const RoundRecord* record) {
  const uint64_t version = latest_ ? latest_->ref.version() + 1 : 1;
  v1::ModelBundle bundle = res_->bundle;
  SetHeadParameters(head, bundle.mutable_head());
  bundle.mutable_metadata()->set_version(version);
  auto published = SignLocked(models::EncodeBundleFile(bundle), latest_ ? latest_->release.version() + 1 : 1);
  if (!published.ok()) return published.status();

  const std::filesystem::path dir = config_.state_dir / "models";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", dir.string(), ": ", ec.message()));
  (*published)->file = dir / StrCat("model-v", version, ".signed");
  PublishedModel row{.version = version, .round_id = round_id, .bundle_sha256 = (*published)->ref.bundle_sha256(),
                     .file = (*published)->file};
  if (auto s = base::WriteFileAtomically(row.file, (*published)->blob); !s.ok()) return s;
  absl::Status recorded = record == nullptr
                              ? res_->state->RecordInitialModel(row)
                              : res_->state->CompleteRound(*record, row, res_->optimizer->first_moment(),
                                                           res_->optimizer->second_moment());
  if (!recorded.ok()) return recorded;
  res_->bundle = std::move(bundle);
  res_->head = std::move(head);
  latest_ = std::move(*published);
  spdlog::info("model v{} published (round {}, release {}, sha256 {}, {} bytes)", version, round_id,
               latest_->release.version(), absl::BytesToHexString(row.bundle_sha256).substr(0, 16),
               latest_->blob.size());
  return absl::OkStatus();
}

absl::Status RoundEngine::ReconcileLedgerLocked() {
  auto models = res_->state->Models();
  if (!models.ok()) return models.status();
  std::vector<int64_t> published;
  for (const PublishedModel& m : *models) {
    if (m.round_id > 0) published.push_back(m.round_id);
  }
  auto reconciled = res_->ledger->Reconcile(published);
  if (!reconciled.ok()) {
    spdlog::error("privacy ledger: cannot void the charges of unpublished rounds yet: {}",
                  reconciled.status().ToString());
    return reconciled.status();
  }
  if (reconciled->voided > 0 || reconciled->restored > 0) {
    spdlog::warn("privacy ledger: voided the charges of {} round(s) that published nothing, restored {}",
                 reconciled->voided, reconciled->restored);
  }
  return absl::OkStatus();
}

bool RoundEngine::closed() const {
  absl::MutexLock lock(&mu_);
  return !closed_reason_.empty();
}

DeviceRegistry* RoundEngine::devices() const {
  absl::MutexLock lock(&mu_);
  return res_->devices.get();
}

v1::ModelRef RoundEngine::latest_model() const {
  absl::MutexLock lock(&mu_);
  return latest_->ref;
}

v1::Head RoundEngine::latest_head() const {
  absl::MutexLock lock(&mu_);
  return res_->bundle.head();
}

std::optional<v1::AwaitResponse> RoundEngine::Outcome(int64_t round_id) const {
  absl::MutexLock lock(&mu_);
  auto it = finished_.find(round_id);
  if (it == finished_.end()) return std::nullopt;
  return it->second;
}

size_t RoundEngine::MaxRequestBytes(Method method) const {
  switch (method) {
    case Method::kCheckIn:
    case Method::kAwait:
    case Method::kGetModelChunk:
      return 1024;
    case Method::kReportTelemetry:
      return 64 * 1024;
    case Method::kSubmit: {
      // A masked input of the padded head at `bits`, or k encrypted shares.
      const size_t padded = std::bit_ceil(std::max<size_t>(head_size_, 1));
      const size_t admitted = static_cast<size_t>(std::ceil(config_.cohort_size * (1.0 + config_.over_selection)));
      return 64 * 1024 + (padded * static_cast<size_t>(config_.dp.bits) + 7) / 8 + admitted * 256;
    }
  }
  return 1024;
}

v1::RetryLater RoundEngine::RetryAfter(absl::Duration delay, std::string reason) {
  v1::RetryLater r;
  const absl::Duration d = std::clamp(delay, absl::Milliseconds(10), absl::Hours(1));
  r.set_delay_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(d)));
  r.set_reason(std::move(reason));
  return r;
}

void RoundEngine::CloseLocked(const std::string& reason) {
  if (!closed_reason_.empty()) return;
  closed_reason_ = reason;
  spdlog::info("federation closed: {}", reason);
}

absl::Status RoundEngine::StartRoundLocked() {
  auto round = std::make_unique<Round>();
  round->id = next_round_id_;
  round->deadline = clock_() + config_.selection_timeout;
  (void)ReconcileLedgerLocked();
  if (auto s = res_->state->StartRound(round->id); !s.ok()) return s;
  ++next_round_id_;
  auto population = res_->state->PopulationSize();
  spdlog::info("round {} started: selecting up to {} of a population of {}", round->id,
               static_cast<int>(std::ceil(config_.cohort_size * (1.0 + config_.over_selection))),
               population.ok() ? *population : -1);
  round_ = std::move(round);
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckInResponse> RoundEngine::CheckIn(const v1::CheckInRequest& request) {
  if (auto s = CheckHeader(request.header(), {v1::PHASE_CHECK_IN}); !s.ok()) return s;
  const std::string& device = request.header().device_id();
  absl::MutexLock lock(&mu_);
  auto added = res_->state->AddDevice(device);
  if (!added.ok()) return added.status();
  if (*added) spdlog::info("device {} joined the population", device);
  v1::CheckInResponse response;
  *response.mutable_latest_model() = latest_->ref;
  for (uint64_t v = request.trusted_root_version(); v < res_->roots.size(); ++v) {
    *response.add_roots() = res_->roots[v];
  }
  if (!closed_reason_.empty()) {
    response.mutable_closed()->set_reason(closed_reason_);
    return response;
  }
  if (!round_) {
    if (auto s = StartRoundLocked(); !s.ok()) return s;
  }
  Round& r = *round_;
  const auto member = r.members.find(device);
  if (const auto rejected = res_->rejected_by.find(device);
      rejected != res_->rejected_by.end() && rejected->second.size() >= kRejectionsToExclude) {
    *response.mutable_retry_later() =
        RetryAfter(absl::Hours(1), StrCat("excluded from cohorts: ", rejected->second.size(),
                                          " devices rejected its SecAgg+ key shares"));
    return response;
  }
  if (r.stage == Stage::kSelecting) {
    const size_t target = static_cast<size_t>(std::ceil(config_.cohort_size * (1.0 + config_.over_selection)));
    if (std::find(r.admitted.begin(), r.admitted.end(), device) == r.admitted.end()) {
      if (r.admitted.size() >= target) {
        *response.mutable_retry_later() = RetryAfter(config_.selection_timeout, "the cohort is full");
        return response;
      }
      r.admitted.push_back(device);
    }
    response.mutable_admitted()->set_round_id(static_cast<uint64_t>(r.id));
    if (r.admitted.size() >= target) CloseSelectionLocked();
    return response;
  }
  // A member that restarted before sending anything in the round's first
  // phase (its keys, or its update without SecAgg+) can still take part.
  const v1::Phase first = r.stage == Stage::kUpdate ? v1::PHASE_UPDATE : v1::PHASE_ADVERTISE_KEYS;
  if (member != r.members.end() && !member->second.dropped &&
      (r.stage == Stage::kAdvertise || r.stage == Stage::kUpdate) && !member->second.submitted.contains(first)) {
    response.mutable_admitted()->set_round_id(static_cast<uint64_t>(r.id));
    return response;
  }
  *response.mutable_retry_later() =
      RetryAfter(r.deadline - clock_() + config_.poll_interval, StrCat("round ", r.id, " is in progress"));
  return response;
}

void RoundEngine::CloseSelectionLocked() {
  Round& r = *round_;
  const int n = static_cast<int>(r.admitted.size());
  // SecAgg ids in a random order, so an id says nothing about check-in time.
  std::vector<uint32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0u);
  std::array<uint8_t, 32> id_seed;
  RoundSeed(r.id, "ids", id_seed);
  uint64_t shuffle_seed = 0;
  std::memcpy(&shuffle_seed, id_seed.data(), sizeof(shuffle_seed));
  // Sorted first, so the assignment depends on who was admitted, not on arrival order.
  std::sort(r.admitted.begin(), r.admitted.end());
  std::mt19937_64 shuffle_rng(shuffle_seed);
  std::shuffle(ids.begin(), ids.end(), shuffle_rng);
  r.device_of.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    r.members[r.admitted[static_cast<size_t>(i)]].id = ids[static_cast<size_t>(i)];
    r.device_of[ids[static_cast<size_t>(i)]] = r.admitted[static_cast<size_t>(i)];
  }
  if (auto s = res_->state->UpdateRoundSelected(r.id, n); !s.ok()) {
    AbortRoundLocked(std::string(s.message()));
    return;
  }

  if (!config_.secure_aggregation) {
    StartPlainRoundLocked();
    return;
  }
  dp::DdgConfig ddg =
      FederationDdgConfig(config_, res_->head.size(), static_cast<int>(n * (1.0 - config_.max_dropout)));
  ddg.noise_multiplier = ddg.noiseless ? 0.0 : noise_multiplier_;
  auto ddg_params = dp::ChooseDdgParams(ddg);
  if (!ddg_params.ok()) {
    AbortRoundLocked(StrCat("distributed DP settings do not fit ", n, " clients: ", ddg_params.status().message()));
    return;
  }
  r.ddg = *ddg_params;
  RoundSeed(r.id, "rotation", r.rotation_seed);

  secagg::SecAggConfig sc;
  sc.round_id = static_cast<uint64_t>(r.id);
  sc.num_clients = n;
  sc.bits = config_.dp.bits;
  sc.vector_length = r.ddg.padded_dimension;
  sc.max_dropout = config_.max_dropout;
  sc.max_corrupted = config_.max_corrupted;
  RoundSeed(r.id, "graph", sc.graph_seed);
  auto params = secagg::ChooseParams(sc);
  if (!params.ok()) {
    AbortRoundLocked(StrCat("SecAgg+ parameters for ", n, " clients: ", params.status().message()));
    return;
  }
  r.min_survivors = std::max(config_.min_cohort, params->threshold());
  if (n < r.min_survivors) {
    AbortRoundLocked(StrCat("only ", n, " devices checked in; at least ", r.min_survivors, " must survive"));
    return;
  }
  // Refuse up front a round whose worst case (the fewest survivors, hence the
  // least noise) would take the ledger past its budget.
  auto worst = RoundChargeLocked(r.min_survivors);
  if (!worst.ok()) {
    AbortRoundLocked(std::string(worst.status().message()));
    return;
  }
  auto after = res_->ledger->SpentAfter(*worst);
  if (!after.ok() || after->epsilon > config_.dp.epsilon_budget) {
    const std::string why =
        after.ok() ? StrCat("with ", r.min_survivors, " survivors this round would bring epsilon to ", after->epsilon,
                            ", past the budget of ", config_.dp.epsilon_budget)
                   : std::string(after.status().message());
    AbortRoundLocked(why);
    CloseLocked(StrCat("the privacy budget cannot pay for another round (", why, ")"));
    return;
  }
  auto server = secagg::Server::Create(*params, r.min_survivors);
  if (!server.ok()) {
    AbortRoundLocked(std::string(server.status().message()));
    return;
  }
  r.server = std::move(*server);

  v1::RoundTask& t = r.task;
  t.set_round_id(static_cast<uint64_t>(r.id));
  t.set_cohort_size(static_cast<uint32_t>(n));
  auto* s = t.mutable_secagg();
  s->set_degree(static_cast<uint32_t>(params->degree()));
  s->set_threshold(static_cast<uint32_t>(params->threshold()));
  s->set_bits(static_cast<uint32_t>(sc.bits));
  s->set_vector_length(sc.vector_length);
  s->set_graph_seed(sc.graph_seed.data(), sc.graph_seed.size());
  s->set_max_dropout(sc.max_dropout);
  s->set_max_corrupted(sc.max_corrupted);
  *t.mutable_ddg() = dp::DdgSettingsOf(ddg);
  t.mutable_ddg()->set_rotation_seed(r.rotation_seed.data(), r.rotation_seed.size());
  if (PatientUnit()) {
    auto* p = t.mutable_patient_dp();
    p->set_sampling_rate(config_.dp.sampling_rate);
    p->set_noise_multiplier(noise_multiplier_);
    p->set_clip(config_.dp.clip);
    p->set_steps(static_cast<uint64_t>(PatientStepsPerRound(config_)));
    p->set_delta(config_.dp.delta);
  }
  *t.mutable_training() = config_.training;
  t.mutable_training()->set_seed(static_cast<uint64_t>(r.id));
  *t.mutable_model() = latest_->ref;

  r.stage = Stage::kAdvertise;
  r.deadline = clock_() + config_.training_timeout;
  spdlog::info("round {} cohort: {} devices (SecAgg+ k={} t={}, {} bits, {} values; noise multiplier {:.4f})", r.id, n,
               params->degree(), params->threshold(), sc.bits, sc.vector_length, noise_multiplier_);
}

absl::StatusOr<v1::AwaitResponse> RoundEngine::Await(const v1::AwaitRequest& request) {
  const v1::RequestHeader& h = request.header();
  if (auto s = CheckHeader(h, {v1::PHASE_TASK, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING,
                               v1::PHASE_RESULT});
      !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  const int64_t round_id = static_cast<int64_t>(h.round_id());
  if (auto it = finished_.find(round_id); it != finished_.end()) return it->second;
  if (!round_ || round_->id != round_id) {
    return FailedPreconditionError(StrCat("round ", round_id, " is not running",
                                          round_ ? StrCat(" (round ", round_->id, " is)") : ""));
  }
  Round& r = *round_;
  v1::AwaitResponse response;
  auto wait = [&](std::string why) {
    *response.mutable_wait() = RetryAfter(std::min(config_.poll_interval, r.deadline - clock_()), std::move(why));
    return response;
  };
  if (r.stage == Stage::kSelecting) {
    if (std::find(r.admitted.begin(), r.admitted.end(), h.device_id()) == r.admitted.end()) {
      return FailedPreconditionError(StrCat("device ", h.device_id(), " is not admitted to round ", r.id));
    }
    return wait("the cohort is being selected");
  }
  const auto member = r.members.find(h.device_id());
  if (member == r.members.end()) {
    return FailedPreconditionError(StrCat("device ", h.device_id(), " is not in the cohort of round ", r.id));
  }
  if (member->second.dropped) {
    response.mutable_aborted()->set_round_id(static_cast<uint64_t>(r.id));
    response.mutable_aborted()->set_reason("dropped from the round after missing a deadline");
    return response;
  }
  if (h.phase() == v1::PHASE_TASK) {
    *response.mutable_task() = r.task;
    response.mutable_task()->set_secagg_id(member->second.id);
    if (r.stage == Stage::kAdvertise) {
      response.mutable_task()->set_advertise_deadline_ms(
          static_cast<uint32_t>(std::max<int64_t>(0, absl::ToInt64Milliseconds(r.deadline - clock_()))));
    }
    return response;
  }
  if (h.phase() == v1::PHASE_RESULT) return wait(StrCat("round ", r.id, " is in ", StageName(r.stage)));
  const Stage awaited = *StageOf(h.phase());
  if (r.stage < awaited) return wait(StrCat("round ", r.id, " is in ", StageName(r.stage)));
  if (r.stage > awaited) {
    return FailedPreconditionError(StrCat("round ", r.id, " is in ", StageName(r.stage), ", past ",
                                          v1::Phase_Name(h.phase())));
  }
  const auto out = r.outgoing.find(member->second.id);
  if (out == r.outgoing.end()) {
    response.mutable_aborted()->set_round_id(static_cast<uint64_t>(r.id));
    response.mutable_aborted()->set_reason("dropped from the round");
    return response;
  }
  *response.mutable_secagg() = out->second;
  return response;
}

absl::StatusOr<v1::SubmitResponse> RoundEngine::Submit(const v1::SubmitRequest& request) {
  const v1::RequestHeader& h = request.header();
  if (auto s = CheckHeader(h, {v1::PHASE_ADVERTISE_KEYS, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT,
                               v1::PHASE_UNMASKING, v1::PHASE_UPDATE});
      !s.ok()) {
    return s;
  }
  if (h.phase() == v1::PHASE_UPDATE || request.has_update()) return SubmitUpdate(request);
  const v1::SecAggClientMessage& message = request.message();
  if (PhaseOfMessage(message) != h.phase()) {
    return InvalidArgumentError(StrCat("header.phase is ", v1::Phase_Name(h.phase()), " but the message carries ",
                                       v1::Phase_Name(PhaseOfMessage(message))));
  }
  if (message.round_id() != h.round_id()) {
    return InvalidArgumentError(StrCat("message.round_id ", message.round_id(), " differs from header.round_id ",
                                       h.round_id()));
  }
  absl::MutexLock lock(&mu_);
  auto m = SubmitterLocked(h, message.sender());
  if (!m.ok()) return m.status();
  std::string bytes;
  message.SerializeToString(&bytes);
  auto retry = IsRetryLocked(**m, h, bytes);
  if (!retry.ok()) return retry.status();
  if (*retry) return v1::SubmitResponse();
  if (message.has_advertise_keys()) {
    // Neighbours check this signature too; refusing a bad one here names
    // the culprit instead of failing the neighbours' rounds.
    const v1::AdvertiseKeys& a = message.advertise_keys();
    auto key = res_->devices->KeyOf(h.device_id());
    if (!key.ok()) return key.status();
    if (!models::VerifySignature(*key, proto::AdvertiseKeysSigningMessage(h.round_id(), message.sender(), h.device_id(),
                                                                          a.encryption_public_key(),
                                                                          a.masking_public_key()),
                                 a.signature())) {
      return InvalidArgumentError(StrCat("advertise_keys.signature is not device ", h.device_id(), "'s"));
    }
  }
  if (auto s = round_->server->Receive(message); !s.ok()) return s;
  (*m)->submitted.emplace(h.phase(), std::move(bytes));
  if (AllSubmittedLocked(h.phase())) AdvanceLocked();
  return v1::SubmitResponse();
}

absl::StatusOr<RoundEngine::Member*> RoundEngine::SubmitterLocked(const v1::RequestHeader& h,
                                                                   std::optional<uint32_t> sender) {
  const int64_t round_id = static_cast<int64_t>(h.round_id());
  if (!round_ || round_->id != round_id) {
    return FailedPreconditionError(StrCat("round ", round_id, " is not running",
                                          round_ ? StrCat(" (round ", round_->id, " is)") : ""));
  }
  Round& r = *round_;
  const auto member = r.members.find(h.device_id());
  if (member == r.members.end()) {
    return FailedPreconditionError(StrCat("device ", h.device_id(), " is not in the cohort of round ", r.id));
  }
  Member& m = member->second;
  if (sender && *sender != m.id) {
    return InvalidArgumentError(StrCat("message.sender ", *sender, " is not device ", h.device_id(), "'s SecAgg id"));
  }
  if (m.dropped) return FailedPreconditionError(StrCat("device ", h.device_id(), " was dropped from round ", r.id));
  if (*StageOf(h.phase()) != r.stage) {
    return FailedPreconditionError(StrCat("round ", r.id, " is in ", StageName(r.stage), ", not ",
                                          v1::Phase_Name(h.phase())));
  }
  return &m;
}

absl::StatusOr<bool> RoundEngine::IsRetryLocked(const Member& m, const v1::RequestHeader& h,
                                                const std::string& bytes) const {
  const auto previous = m.submitted.find(h.phase());
  if (previous == m.submitted.end()) return false;
  if (previous->second == bytes) return true;
  return FailedPreconditionError(StrCat("device ", h.device_id(), " already submitted a different ",
                                        v1::Phase_Name(h.phase()), " message in round ", round_->id));
}

bool RoundEngine::AllSubmittedLocked(v1::Phase phase) const {
  return std::all_of(round_->members.begin(), round_->members.end(), [&](const auto& entry) {
    return entry.second.dropped || entry.second.submitted.contains(phase);
  });
}

void RoundEngine::RoundSeed(int64_t round_id, std::string_view purpose, std::span<uint8_t> out) const {
  if (!config_.simulation_seed) {
    randombytes_buf(out.data(), out.size());
    return;
  }
  base::DeriveSeed(*config_.simulation_seed, static_cast<uint64_t>(round_id), "", purpose, out);
}

void RoundEngine::Tick() {
  absl::MutexLock lock(&mu_);
  const absl::Time expires = absl::FromUnixSeconds(latest_->release.expires_unix_seconds());
  if (absl::Now() > expires - config_.security.release_expiry / 2) {
    if (auto s = ResignLocked(); !s.ok()) spdlog::error("cannot re-sign the release of model v{}: {}",
                                                        latest_->ref.version(), s.ToString());
  }
  if (!round_ || clock_() < round_->deadline) return;
  if (round_->stage == Stage::kSelecting) {
    if (static_cast<int>(round_->admitted.size()) >= config_.min_cohort) {
      CloseSelectionLocked();
    } else {
      // Keep selecting: a round needs min_cohort devices to start at all.
      round_->deadline = clock_() + config_.selection_timeout;
    }
    return;
  }
  AdvanceLocked();
}

void RoundEngine::AdvanceLocked() {
  Round& r = *round_;
  if (r.stage == Stage::kUpdate) {
    FinishPlainRoundLocked();
    return;
  }
  const Stage closing = r.stage;
  const v1::Phase phase = closing == Stage::kAdvertise     ? v1::PHASE_ADVERTISE_KEYS
                          : closing == Stage::kShareKeys   ? v1::PHASE_SHARE_KEYS
                          : closing == Stage::kMaskedInput ? v1::PHASE_MASKED_INPUT
                                                           : v1::PHASE_UNMASKING;
  int answered = 0, dropped_now = 0;
  for (auto& [device, m] : r.members) {
    if (m.dropped) continue;
    if (m.submitted.contains(phase)) {
      ++answered;
    } else {
      m.dropped = true;
      ++dropped_now;
      spdlog::info("round {}: device {} dropped (no {} message by the deadline)", r.id, device, StageName(closing));
    }
  }
  auto out = r.server->AdvancePhase();
  if (!out.ok()) {
    AbortRoundLocked(StrCat(StageName(closing), " closed with ", answered, " clients: ", out.status().message()));
    return;
  }
  if (closing == Stage::kUnmasking) {
    FinishRoundLocked();
    return;
  }
  if (closing == Stage::kMaskedInput) NameRejectedLocked();
  r.outgoing.clear();
  for (auto& message : *out) {
    // Name each neighbour's device and enrolled key next to its signed keys.
    if (message.has_share_keys()) {
      for (v1::NeighborKeys& nk : *message.mutable_share_keys()->mutable_neighbors()) {
        if (nk.id() >= r.device_of.size()) continue;
        nk.set_device_id(r.device_of[nk.id()]);
        auto key = res_->devices->KeyOf(nk.device_id());
        if (key.ok()) nk.set_device_public_key(models::KeyBytes(*key));
      }
    }
    r.outgoing.emplace(message.recipient(), std::move(message));
  }
  r.stage = static_cast<Stage>(static_cast<int>(closing) + 1);
  const absl::Duration timeout = r.stage == Stage::kShareKeys     ? config_.share_keys_timeout
                                 : r.stage == Stage::kMaskedInput ? config_.masked_input_timeout
                                                                  : config_.unmasking_timeout;
  r.deadline = clock_() + timeout;
  spdlog::info("round {} phase {}: {} of {} answered {}, {} dropped", r.id, StageName(r.stage), answered,
               r.members.size(), StageName(closing), dropped_now);
}

void RoundEngine::NameRejectedLocked() {
  Round& r = *round_;
  std::map<uint32_t, std::vector<std::string>> accusers;
  for (const secagg::Accusation& a : r.server->Accusations()) {
    if (a.accuser < r.device_of.size() && a.accused < r.device_of.size()) {
      accusers[a.accused].push_back(r.device_of[a.accuser]);
    }
  }
  for (const auto& [id, by] : accusers) {
    const std::string& device = r.device_of[id];
    r.members[device].dropped = true;
    std::set<std::string>& all = res_->rejected_by[device];
    all.insert(by.begin(), by.end());
    spdlog::warn("round {}: device {} is left out of the sum: its key shares failed authentication at {} ({}){}", r.id,
                 device, absl::StrJoin(by, ", "), by.size() == 1 ? "or that device lies" : "several neighbors",
                 all.size() >= kRejectionsToExclude ? StrCat("; excluded from later cohorts (rejected by ", all.size(),
                                                             " devices)")
                                                    : "");
  }
}

absl::StatusOr<dp::PrivacyCharge> RoundEngine::RoundChargeLocked(int survivors) const {
  const Round& r = *round_;
  if (PatientUnit()) {
    // Every patient of every surviving clinic took `steps` DP-SGD steps.
    const dp::SampledGaussianSteps steps{config_.dp.sampling_rate, noise_multiplier_, PatientStepsPerRound(config_)};
    auto rdp = dp::SampledGaussianRdp(steps.sampling_rate, steps.noise_multiplier, steps.steps,
                                      res_->ledger->orders());
    if (!rdp.ok()) return rdp.status();
    nlohmann::json params = {{"clients", survivors},
                             {"sampling_rate", steps.sampling_rate},
                             {"noise_multiplier", steps.noise_multiplier},
                             {"steps", steps.steps},
                             {"clip", config_.dp.clip},
                             {"update_clip", config_.dp.update_clip}};
    return dp::PrivacyCharge{.round = r.id, .mechanism = "patient_dp_sgd", .parameters = params.dump(),
                             .rdp = *std::move(rdp), .pld = {steps}};
  }
  auto rdp = dp::DdgRdp(r.ddg, survivors, 1, res_->ledger->orders());
  if (!rdp.ok()) return rdp.status();
  nlohmann::json params = {{"clients", survivors},
                           {"noise_multiplier", r.ddg.noise_multiplier},
                           {"clip", r.ddg.config.clip},
                           {"bits", r.ddg.config.bits},
                           {"scale", r.ddg.scale},
                           {"padded_dimension", r.ddg.padded_dimension},
                           {"local_only", r.ddg.config.local_only}};
  return dp::PrivacyCharge{.round = r.id, .mechanism = "distributed_discrete_gaussian", .parameters = params.dump(),
                           .rdp = *std::move(rdp), .pld = {}};
}

void RoundEngine::FinishRoundLocked() {
  Round& r = *round_;
  auto sum = r.server->Result();
  const std::vector<uint32_t> survivors = r.server->Survivors();
  if (!sum.ok() || survivors.empty()) {
    AbortRoundLocked(StrCat("no secure sum: ", sum.status().message()));
    return;
  }
  const int s = static_cast<int>(survivors.size());
  auto decoded = dp::DdgDecodeSum(r.ddg, *sum, r.rotation_seed);
  if (!decoded.ok()) {
    AbortRoundLocked(StrCat("decoding the sum: ", decoded.status().message()));
    return;
  }
  std::vector<float> mean(decoded->size());
  double norm2 = 0.0;
  for (size_t i = 0; i < mean.size(); ++i) {
    mean[i] = static_cast<float>((*decoded)[i] / s);
    norm2 += static_cast<double>(mean[i]) * mean[i];
  }
  // One wrapped sum or unclipped update must not wreck the model.
  if (const double bound = dp::DdgMeanNormBound(r.ddg, s); std::sqrt(norm2) > bound) {
    AbortRoundLocked(StrCat("the mean update's norm ", std::sqrt(norm2), " exceeds ", bound,
                            ", the most clipped updates and the noise allow: a wrapped sum or an unclipped update; "
                            "nothing is published"));
    return;
  }

  // Charge before anything derived from the sum leaves the aggregator.
  auto charge = RoundChargeLocked(s);
  if (!charge.ok()) {
    AbortRoundLocked(std::string(charge.status().message()));
    return;
  }
  if (!config_.record_dir.empty()) {
    std::string sum_bytes(reinterpret_cast<const char*>(sum->data()), sum->size() * sizeof(uint32_t));
    std::string names;
    for (uint32_t id : survivors) absl::StrAppend(&names, r.device_of[id], "\n");
    std::error_code ec;
    std::filesystem::create_directories(config_.record_dir, ec);
    for (const auto& [suffix, bytes] : {std::pair{".survivors", &names}, std::pair{".sum", &sum_bytes}}) {
      const auto file = config_.record_dir / StrCat("round-", r.id, suffix);
      if (auto written = base::WriteFileAtomically(file, *bytes); !written.ok()) {
        spdlog::warn("round {}: cannot record {}: {}", r.id, file.string(), written.ToString());
      }
    }
  }
  PublishRoundLocked(mean, s, &*charge);
}

void RoundEngine::PublishRoundLocked(std::span<const float> mean, int s, const dp::PrivacyCharge* charge) {
  Round& r = *round_;
  if (charge != nullptr) {
    if (auto charged = res_->ledger->Charge(*charge); !charged.ok()) {
      AbortRoundLocked(StrCat("privacy ledger: ", charged.message()));
      if (charged.code() == absl::StatusCode::kResourceExhausted) CloseLocked("the privacy budget is spent");
      return;
    }
  }
  auto spent = res_->ledger->Spent();
  const double epsilon = spent.ok() ? spent->epsilon : std::nan("");

  std::vector<float> head = res_->head;
  const std::vector<float> m1 = res_->optimizer->first_moment(), m2 = res_->optimizer->second_moment();
  if (auto applied = res_->optimizer->Apply(head, mean); !applied.ok()) {
    AbortRoundLocked(StrCat("server optimizer: ", applied.message()));
    return;
  }
  RoundRecord record{.round_id = r.id,
                     .state = "done",
                     .selected = static_cast<int>(r.members.size()),
                     .survivors = s,
                     .model_version = latest_->ref.version() + 1,
                     .epsilon = epsilon,
                     .reason = ""};
  if (auto published = PublishLocked(std::move(head), r.id, &record); !published.ok()) {
    if (auto restored = res_->optimizer->Restore(m1, m2); !restored.ok()) {
      spdlog::error("round {}: the server optimizer's moments cannot be restored after a failed publication: {}",
                    r.id, restored.ToString());
    }
    AbortRoundLocked(StrCat("publishing: ", published.message()));
    return;
  }
  spdlog::info("round {} done: {} of {} survived, epsilon spent {:.4f} (delta {}), model v{} published", r.id, s,
               r.members.size(), epsilon, config_.dp.delta, latest_->ref.version());
  v1::AwaitResponse outcome;
  auto* result = outcome.mutable_result();
  result->set_round_id(static_cast<uint64_t>(r.id));
  result->set_survivors(static_cast<uint32_t>(s));
  *result->mutable_published() = latest_->ref;
  result->set_epsilon_spent(epsilon);
  finished_[r.id] = std::move(outcome);
  while (finished_.size() > 16) finished_.erase(finished_.begin());
  round_.reset();
  ++completed_rounds_;
  if (config_.max_rounds > 0 && completed_rounds_ >= config_.max_rounds) {
    CloseLocked(StrCat("all ", config_.max_rounds, " rounds are done"));
  }
}

void RoundEngine::StartPlainRoundLocked() {
  Round& r = *round_;
  const int n = static_cast<int>(r.members.size());
  r.min_survivors = config_.min_cohort;
  if (n < r.min_survivors) {
    AbortRoundLocked(StrCat("only ", n, " devices checked in; at least ", r.min_survivors, " must survive"));
    return;
  }
  if (config_.dp.mode == DpMode::kCentral) {
    auto rdp = dp::SampledGaussianRdp(1.0, noise_multiplier_, 1, res_->ledger->orders());
    auto after = rdp.ok() ? res_->ledger->SpentAfter({.round = r.id, .mechanism = "central_gaussian", .parameters = "",
                                                      .rdp = *rdp, .pld = {{1.0, noise_multiplier_, 1}}})
                          : absl::StatusOr<dp::PrivacySpent>(rdp.status());
    if (!after.ok() || after->epsilon > config_.dp.epsilon_budget) {
      AbortRoundLocked("the privacy budget cannot pay for another round");
      CloseLocked(StrCat("the privacy budget (epsilon ", config_.dp.epsilon_budget, ") cannot pay for another round"));
      return;
    }
  }
  v1::RoundTask& t = r.task;
  t.set_round_id(static_cast<uint64_t>(r.id));
  t.set_cohort_size(static_cast<uint32_t>(n));
  auto* plain = t.mutable_plain();
  plain->set_clip(config_.dp.clip);
  plain->set_compression(config_.compression);
  plain->set_topk_fraction(config_.topk_fraction);
  *t.mutable_training() = config_.training;
  t.mutable_training()->set_seed(static_cast<uint64_t>(r.id));
  *t.mutable_model() = latest_->ref;
  r.stage = Stage::kUpdate;
  r.deadline = clock_() + config_.training_timeout;
  spdlog::info("round {} cohort: {} devices (no SecAgg+: trusted aggregator, DP {}, compression {})", r.id, n,
               config_.dp.mode == DpMode::kCentral ? "central" : "off", v1::Compression_Name(config_.compression));
}

absl::StatusOr<v1::SubmitResponse> RoundEngine::SubmitUpdate(const v1::SubmitRequest& request) {
  const v1::RequestHeader& h = request.header();
  if (h.phase() != v1::PHASE_UPDATE || !request.has_update()) {
    return InvalidArgumentError("an update goes with header.phase PHASE_UPDATE and an update payload");
  }
  const v1::PlainUpdate& u = request.update();
  if (u.round_id() != h.round_id()) {
    return InvalidArgumentError(StrCat("update.round_id ", u.round_id(), " differs from header.round_id ", h.round_id()));
  }
  if (u.dimension() != head_size_) {
    return InvalidArgumentError(StrCat("update.dimension ", u.dimension(), " is not the head's ", head_size_));
  }
  // Decode before taking the lock: it depends only on the request.
  std::vector<float> values(head_size_, 0.0f);
  auto floats = [](const std::string& bytes, size_t count) -> std::optional<std::vector<float>> {
    if (bytes.size() != count * sizeof(float)) return std::nullopt;
    std::vector<float> v(count);
    std::memcpy(v.data(), bytes.data(), bytes.size());
    return v;
  };
  switch (u.values_case()) {
    case v1::PlainUpdate::kDense: {
      auto v = floats(u.dense().values(), head_size_);
      if (!v) return InvalidArgumentError(StrCat("update.dense needs ", head_size_, " float32 values"));
      values = std::move(*v);
      break;
    }
    case v1::PlainUpdate::kInt8: {
      const std::string& q = u.int8().values();
      if (q.size() != head_size_ || !std::isfinite(u.int8().scale()) || u.int8().scale() < 0) {
        return InvalidArgumentError(StrCat("update.int8 needs ", head_size_, " values and a finite scale >= 0"));
      }
      for (size_t i = 0; i < q.size(); ++i) values[i] = u.int8().scale() * static_cast<int8_t>(q[i]);
      break;
    }
    case v1::PlainUpdate::kSparse: {
      const auto& idx = u.sparse().indices();
      auto v = floats(u.sparse().values(), static_cast<size_t>(idx.size()));
      if (!v) return InvalidArgumentError("update.sparse needs one float32 value per index");
      for (int i = 0; i < idx.size(); ++i) {
        if (idx[i] >= head_size_ || (i > 0 && idx[i] <= idx[i - 1])) {
          return InvalidArgumentError("update.sparse indices must increase and lie below the dimension");
        }
        values[idx[i]] = (*v)[static_cast<size_t>(i)];
      }
      break;
    }
    default:
      return InvalidArgumentError("update carries no values");
  }
  if (!std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); })) {
    return InvalidArgumentError("update has a value that is not finite");
  }
  absl::MutexLock lock(&mu_);
  auto m = SubmitterLocked(h, std::nullopt);
  if (!m.ok()) return m.status();
  std::string bytes;
  u.SerializeToString(&bytes);
  auto retry = IsRetryLocked(**m, h, bytes);
  if (!retry.ok()) return retry.status();
  if (*retry) return v1::SubmitResponse();
  // The aggregator enforces the clip itself: the DP noise is calibrated to it.
  dp::ClipL2(values, config_.dp.clip);
  (*m)->submitted.emplace(v1::PHASE_UPDATE, std::move(bytes));
  (*m)->update = std::move(values);
  if (AllSubmittedLocked(v1::PHASE_UPDATE)) FinishPlainRoundLocked();
  return v1::SubmitResponse();
}

void RoundEngine::FinishPlainRoundLocked() {
  Round& r = *round_;
  std::vector<double> sum(head_size_, 0.0);
  int s = 0;
  for (auto& [device, m] : r.members) {
    if (!m.submitted.contains(v1::PHASE_UPDATE)) {
      m.dropped = true;
      spdlog::info("round {}: device {} dropped (no update by the deadline)", r.id, device);
      continue;
    }
    ++s;
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += m.update[i];
  }
  if (s < r.min_survivors) {
    AbortRoundLocked(StrCat("only ", s, " updates arrived; at least ", r.min_survivors, " are needed"));
    return;
  }
  std::vector<float> mean(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) mean[i] = static_cast<float>(sum[i]);
  std::optional<dp::PrivacyCharge> charge;
  if (config_.dp.mode == DpMode::kCentral) {
    // Central DP: the trusted aggregator adds N(0, (zC)^2) to the sum once.
    dp::Seed seed;
    RoundSeed(r.id, "central", seed);
    auto rng = dp::SecureRandom::FromSeed(seed);
    dp::AddGaussianNoise(mean, noise_multiplier_ * config_.dp.clip, *rng);
    auto rdp = dp::SampledGaussianRdp(1.0, noise_multiplier_, 1, res_->ledger->orders());
    if (!rdp.ok()) {
      AbortRoundLocked(std::string(rdp.status().message()));
      return;
    }
    nlohmann::json params = {{"clients", s}, {"noise_multiplier", noise_multiplier_}, {"clip", config_.dp.clip}};
    charge = dp::PrivacyCharge{.round = r.id, .mechanism = "central_gaussian", .parameters = params.dump(), .rdp = *rdp,
                               .pld = {{1.0, noise_multiplier_, 1}}};
  }
  for (float& v : mean) v /= static_cast<float>(s);
  PublishRoundLocked(mean, s, charge ? &*charge : nullptr);
}

void RoundEngine::AbortRoundLocked(const std::string& reason) {
  const int64_t id = round_->id;
  spdlog::warn("round {} aborted: {}", id, reason);
  if (auto s = res_->state->AbortRound(id, reason); !s.ok()) spdlog::error("round {}: {}", id, s.ToString());
  v1::AwaitResponse outcome;
  outcome.mutable_aborted()->set_round_id(static_cast<uint64_t>(id));
  outcome.mutable_aborted()->set_reason(reason);
  finished_[id] = std::move(outcome);
  while (finished_.size() > 16) finished_.erase(finished_.begin());
  round_.reset();
  // An aborted round may have been charged before publishing failed. Should
  // voiding fail too (the disk still full), the next round's start or the
  // next process's settles it; meanwhile the ledger errs on the side of spent.
  (void)ReconcileLedgerLocked();
}

absl::StatusOr<v1::ModelChunk> RoundEngine::GetModelChunk(const v1::ModelChunkRequest& request) {
  if (auto s = CheckHeader(request.header(), {v1::PHASE_MODEL_DOWNLOAD}); !s.ok()) return s;
  auto chunk_of = [&](std::string_view blob, const std::string& sha256) -> absl::StatusOr<v1::ModelChunk> {
    if (request.offset() > blob.size()) {
      return absl::OutOfRangeError(StrCat("offset ", request.offset(), " is past the end of model v",
                                          request.version(), " (", blob.size(), " bytes)"));
    }
    const uint64_t max_bytes =
        request.max_bytes() == 0 ? kMaxChunkBytes : std::min(request.max_bytes(), kMaxChunkBytes);
    v1::ModelChunk chunk;
    chunk.set_version(request.version());
    chunk.set_total_size(blob.size());
    chunk.set_download_sha256(sha256);
    chunk.set_offset(request.offset());
    chunk.set_data(std::string(blob.substr(request.offset(), max_bytes)));
    return chunk;
  };
  // The latest model is served from memory with its known hash; an older one
  // (only a lagging client asks) is read and hashed on demand.
  std::filesystem::path file;
  {
    absl::MutexLock lock(&mu_);
    if (request.version() == latest_->ref.version()) return chunk_of(latest_->blob, latest_->ref.download_sha256());
    auto published = res_->state->Models();
    if (!published.ok()) return published.status();
    auto it = std::find_if(published->begin(), published->end(),
                           [&](const PublishedModel& m) { return m.version == request.version(); });
    if (it == published->end()) {
      return absl::NotFoundError(StrCat("model version ", request.version(), " was never published"));
    }
    file = it->file;
  }
  auto bytes = base::ReadFileBytes(file, 1 << 30);
  if (!bytes.ok()) return bytes.status();
  return chunk_of(*bytes, base::Sha256(*bytes));
}

absl::StatusOr<v1::TelemetryResponse> RoundEngine::ReportTelemetry(const v1::TelemetryRequest& request) {
  if (auto s = CheckHeader(request.header(), {v1::PHASE_TELEMETRY}); !s.ok()) return s;
  const v1::Telemetry& t = request.telemetry();
  if (t.class_counts_size() > 4096) return InvalidArgumentError("telemetry.class_counts holds more than 4096 classes");
  if (t.confidence_histogram_size() > 100) return InvalidArgumentError("telemetry.confidence_histogram has over 100 bins");
  if (!(t.holdout_accuracy() >= 0.0f && t.holdout_accuracy() <= 1.0f)) {
    return InvalidArgumentError(StrCat("telemetry.holdout_accuracy must be in [0, 1], got ", t.holdout_accuracy()));
  }
  if (t.model_status().size() > 512) return InvalidArgumentError("telemetry.model_status is over 512 characters");
  nlohmann::json report = {{"model_version", t.model_version()},
                           {"class_counts", std::vector<uint64_t>(t.class_counts().begin(), t.class_counts().end())},
                           {"confidence_histogram",
                            std::vector<uint32_t>(t.confidence_histogram().begin(), t.confidence_histogram().end())},
                           {"holdout_samples", t.holdout_samples()},
                           {"holdout_accuracy", t.holdout_accuracy()},
                           {"model_status", t.model_status()}};
  absl::MutexLock lock(&mu_);
  if (auto s = res_->state->RecordTelemetry(request.header().device_id(), report.dump()); !s.ok()) return s;
  if (!t.model_status().empty()) {
    const std::string& device = request.header().device_id();
    res_->device_log.Warn(StrCat("telemetry ", device), StrCat("device ", device, " keeps model v", t.model_version(), ": '",
                                                          proto::DeviceText(t.model_status()), "'"));
  }
  return v1::TelemetryResponse();
}

}  // namespace tinyfed::aggregator
