#include "tinyfed/client/client.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <numeric>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "spdlog/spdlog.h"
#include "client/internal/round_cost.h"
#include "tinyfed/base/seed.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/client/embedding_cache.h"
#include "tinyfed/client/head_trainer.h"
#include "tinyfed/client/private_head_trainer.h"
#include "tinyfed/dp/clipping.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/decision_threshold.h"
#include "tinyfed/models/directory_lock.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/proto/device_id.h"
#include "tinyfed/proto/plain_update.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/params.h"

namespace tinyfed::client {
namespace {

using absl::StrCat;

// Appends and flushes to disk, so a download survives a power cut chunk by chunk.
absl::Status AppendDurably(const std::filesystem::path& path, std::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(StrCat("cannot open ", path.string(), ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return absl::InternalError(StrCat("cannot write ", path.string(), ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fdatasync(fd) == 0;
  ::close(fd);
  if (!synced) return absl::InternalError(StrCat("cannot sync ", path.string()));
  return absl::OkStatus();
}

// A download that failed for want of a link is retried at the next
// check-in; any other failure is a refusal, already recorded for telemetry.
bool LinkLost(const absl::Status& s) { return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s); }

bool InHoldout(const SampleKey& key, double fraction) {
  const uint32_t v = (uint32_t{key[0]} << 8) | key[1];
  return v < fraction * 65536.0;
}

}  // namespace

struct Client::State {
  std::unique_ptr<models::DirectoryLock> data_dir_lock;  // for this process alone
  ClientConfig config;
  ClientHooks hooks;
  std::unique_ptr<Transport> transport;
  std::optional<models::TrustedRoot> trusted;  // the pinned root, advanced by rotations
  std::shared_ptr<const models::SigningKey> device_key;  // signs requests and SecAgg+ keys

  mutable absl::Mutex mu;
  std::unique_ptr<SampleStore> store ABSL_GUARDED_BY(mu);
  v1::ModelBundle bundle ABSL_GUARDED_BY(mu);
  std::unique_ptr<models::Interpreter> interpreter ABSL_GUARDED_BY(mu);
  uint64_t version ABSL_GUARDED_BY(mu) = 0;
  v1::ReleaseMetadata release ABSL_GUARDED_BY(mu);  // of the installed model
  std::string model_status ABSL_GUARDED_BY(mu);  // why the last offered model was refused
  std::unique_ptr<dp::PrivacyLedger> ledger;      // patient-level charges
  // config.positive_class's index and threshold, for the installed model
  // and stored samples; reset when either changes.
  std::optional<std::pair<int, double>> decision ABSL_GUARDED_BY(mu);
  int rounds_declined ABSL_GUARDED_BY(mu) = 0;
  std::string privacy_status ABSL_GUARDED_BY(mu);  // why the last round was declined

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;

  v1::RequestHeader Header(uint64_t round_id, v1::Phase phase) const {
    v1::RequestHeader h;
    h.set_device_id(config.device_id);
    h.set_round_id(round_id);
    h.set_phase(phase);
    return h;
  }

  // Sleeps unless stopped; returns false once stopped.
  bool SleepFor(absl::Duration d) {
    std::unique_lock lock(stop_mu);
    return !stop_cv.wait_for(lock, absl::ToChronoNanoseconds(d), [&] { return stopping; });
  }
  bool stopped() {
    std::lock_guard lock(stop_mu);
    return stopping;
  }

  void Install(models::VerifiedModel m, std::unique_ptr<models::Interpreter> in) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    bundle = std::move(m.bundle);
    release = std::move(m.release);
    interpreter = std::move(in);
    version = release.model_version();
    model_status.clear();
    decision.reset();
  }

  // The positive class and its threshold (computed on first use).
  absl::StatusOr<std::pair<int, double>> Decision() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Registers the device key with the enrollment token, once; the marker
  // file remembers it across restarts.
  absl::Status EnrollIfNeeded() {
    const auto marker = config.data_dir / "enrolled";
    if (config.enrollment_token.empty() || std::filesystem::exists(marker)) return absl::OkStatus();
    auto enrolled = transport->Enroll(SignedEnrollRequest(config.device_id, config.enrollment_token, *device_key));
    if (!enrolled.ok()) {
      return absl::Status(enrolled.status().code(), StrCat("enrollment: ", enrolled.status().message()));
    }
    spdlog::info("{}: enrolled with the aggregator", config.device_id);
    return base::WriteFileAtomically(marker, "enrolled\n");
  }

  // Roots newer than the trusted one, each checked and kept on disk before
  // the next: a rotation reaches gateways at their next check-in.
  void AdvanceRoots(const google::protobuf::RepeatedPtrField<v1::SignedMetadata>& roots) {
    for (const v1::SignedMetadata& next : roots) {
      auto parsed = models::ParseRoot(next);
      if (parsed.ok() && parsed->version() <= trusted->root().version()) continue;
      absl::Status s = parsed.ok() ? trusted->Advance(next) : parsed.status();
      if (s.ok()) s = models::WriteRoot(config.data_dir / "roots", next);
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        model_status = StrCat("root refused: ", s.message());
        spdlog::warn("{}: {}", config.device_id, model_status);
        return;
      }
      spdlog::info("{}: trusts root v{} now", config.device_id, trusted->root().version());
    }
  }

  dp::Seed SimulationSeed(uint64_t round_id, std::string_view purpose) const {
    dp::Seed seed;
    base::DeriveSeed(*config.simulation_seed, round_id, config.device_id, purpose, seed);
    return seed;
  }

  // Clip, then compress with error feedback: what compression drops this
  // round is added to next round's update (the residual stays on the
  // gateway, sealed like the samples).
  absl::StatusOr<v1::PlainUpdate> EncodePlain(const v1::RoundTask& task, std::vector<float> delta)
      ABSL_LOCKS_EXCLUDED(mu) {
    const v1::PlainSettings& p = task.plain();
    dp::ClipL2(delta, p.clip());
    absl::MutexLock lock(&mu);
    std::vector<float> residual(delta.size(), 0.0f);
    if (p.compression() != v1::COMPRESSION_NONE) {
      auto stored = store->ReadSealed("residual");
      if (stored.ok() && stored->size() == residual.size() * sizeof(float)) {
        std::memcpy(residual.data(), stored->data(), stored->size());
      }
    }
    for (size_t i = 0; i < delta.size(); ++i) delta[i] += residual[i];
    std::unique_ptr<dp::SecureRandom> rng;  // drawn from only by int8's stochastic rounding
    auto uniform = [&] {
      if (!rng) {
        rng = config.simulation_seed ? dp::SecureRandom::FromSeed(SimulationSeed(task.round_id(), "int8"))
                                     : dp::SecureRandom::FromOsEntropy();
      }
      return static_cast<double>(rng->Next64() >> 11) * 0x1.0p-53;
    };
    proto::EncodedUpdate encoded =
        proto::EncodePlainUpdate(task.round_id(), delta, p.compression(), p.topk_fraction(), uniform);
    v1::PlainUpdate& u = encoded.update;
    std::vector<float>& sent = encoded.sent;
    absl::Status saved;
    if (p.compression() != v1::COMPRESSION_NONE) {
      for (size_t i = 0; i < delta.size(); ++i) residual[i] = delta[i] - sent[i];
      saved = store->WriteSealed(
          "residual", std::string_view(reinterpret_cast<const char*>(residual.data()), residual.size() * sizeof(float)));
    }
    for (auto* v : {&delta, &residual, &sent}) sodium_memzero(v->data(), v->size() * sizeof(float));
    if (!saved.ok()) return saved;
    return u;
  }

  // The round's head delta from the samples outside the hold-out, or why
  // there is none (`skipped`).
  struct LocalUpdate {
    std::vector<float> delta;
    std::string skipped;
  };
  absl::StatusOr<LocalUpdate> TrainOnLocalSamples(const v1::RoundTask& task, RoundReport* report)
      ABSL_LOCKS_EXCLUDED(mu);
  // Records the round's cost in the clinic's own ledger, or returns why the
  // clinic declines it (client/internal/round_cost.h). Errors are the
  // ledger's own.
  absl::StatusOr<std::string> ChargeOrDecline(const v1::RoundTask& task) ABSL_LOCKS_EXCLUDED(mu);

  // Moves a damaged installed model aside; the model it claims to be (its
  // release, unverified) stays the floor for rollback protection, with that
  // version itself allowed again. DATA_LOSS if it cannot be moved.
  // Kept aside, it is read again at every start until a model installs.
  absl::Status SetAsideDamagedModel(const std::filesystem::path& file, const absl::Status& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Downloads (resuming a partial download of the same model), verifies and
  // installs `ref`. On refusal the installed model stays, and why is kept
  // for telemetry.
  absl::Status UpdateModel(const v1::ModelRef& ref, RoundTimings* t);
};

absl::Status Client::State::UpdateModel(const v1::ModelRef& ref, RoundTimings* t) {
  const auto& dir = config.data_dir;
  const auto partial = dir / "download.partial";
  const auto meta = dir / "download.meta";
  const std::string expected_meta = StrCat(ref.version(), " ", absl::BytesToHexString(ref.download_sha256()), "\n");
  auto refuse = [&](absl::Status s) {
    std::error_code ec;
    std::filesystem::remove(partial, ec);
    std::filesystem::remove(meta, ec);
    absl::MutexLock lock(&mu);
    model_status = StrCat("model v", ref.version(), " refused: ", s.message());
    spdlog::warn("{}: {}", config.device_id, model_status);
    return s;
  };
  if (ref.download_size() == 0 || ref.download_size() > (uint64_t{1} << 30)) {
    return refuse(absl::InvalidArgumentError(StrCat("announced size ", ref.download_size(), " is not plausible")));
  }
  auto current_meta = base::ReadFileBytes(meta, 4096);
  std::error_code ec;
  if (!current_meta.ok() || *current_meta != expected_meta) {
    std::filesystem::remove(partial, ec);
    if (auto s = base::WriteFileAtomically(meta, expected_meta); !s.ok()) return s;
  }
  uint64_t have = std::filesystem::exists(partial, ec) ? std::filesystem::file_size(partial, ec) : 0;
  if (have > ref.download_size()) {
    std::filesystem::remove(partial, ec);
    have = 0;
  }
  while (have < ref.download_size()) {
    v1::ModelChunkRequest request;
    *request.mutable_header() = Header(0, v1::PHASE_MODEL_DOWNLOAD);
    request.set_version(ref.version());
    request.set_offset(have);
    const absl::Time start = absl::Now();
    auto chunk = transport->GetModelChunk(request);
    t->transport += absl::Now() - start;
    if (!chunk.ok()) return chunk.status();  // a link problem: resume next time
    // Endless data: more bytes than announced, or a chunk for another model.
    if (chunk->version() != ref.version() || chunk->offset() != have || chunk->total_size() != ref.download_size() ||
        chunk->download_sha256() != ref.download_sha256() || chunk->data().empty() ||
        chunk->data().size() > ref.download_size() - have) {
      return refuse(absl::DataLossError("the server sent a chunk that does not match the announced model"));
    }
    if (auto s = AppendDurably(partial, chunk->data()); !s.ok()) return s;
    have += chunk->data().size();
  }
  auto blob = base::ReadFileBytes(partial, ref.download_size());
  if (!blob.ok()) return blob.status();
  if (base::Sha256(*blob) != ref.download_sha256()) {
    return refuse(absl::DataLossError("the download does not match its announced SHA-256"));
  }
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(*blob)) return refuse(absl::InvalidArgumentError("not a signed bundle"));
  v1::ReleaseMetadata installed;
  std::optional<std::pair<std::string, uint32_t>> installed_task;  // input shape, classes
  {
    absl::MutexLock lock(&mu);
    installed = release;
    if (interpreter) installed_task.emplace(bundle.input().shape().SerializeAsString(), bundle.head().num_classes());
  }
  auto verified = trusted->VerifyModel(signed_bundle, installed.model_version() == 0 ? nullptr : &installed, absl::Now());
  if (!verified.ok()) return refuse(verified.status());
  if (verified->release.model_version() != ref.version()) {
    return refuse(absl::PermissionDeniedError(StrCat("signed as v", verified->release.model_version(),
                                                     ", announced as v", ref.version())));
  }
  // A model for another task (other inputs or classes) would turn every
  // stored sample into garbage for it.
  if (installed_task && *installed_task != std::pair(verified->bundle.input().shape().SerializeAsString(),
                                                     verified->bundle.head().num_classes())) {
    return refuse(absl::FailedPreconditionError("it is a model for another task (inputs or classes differ)"));
  }
  auto runnable = models::Interpreter::Create(verified->bundle);
  if (!runnable.ok()) return refuse(runnable.status());
  if (auto s = base::WriteFileAtomically(config.data_dir / "model.signed", *blob); !s.ok()) return s;
  std::filesystem::remove(partial, ec);
  std::filesystem::remove(meta, ec);
  std::filesystem::remove(config.data_dir / "model.signed.damaged", ec);
  absl::MutexLock lock(&mu);
  Install(std::move(*verified), std::move(*runnable));
  spdlog::info("{}: installed model v{} (release {})", config.device_id, version, release.version());
  return absl::OkStatus();
}

absl::StatusOr<Client::State::LocalUpdate> Client::State::TrainOnLocalSamples(const v1::RoundTask& task,
                                                                            RoundReport* report) {
  absl::MutexLock lock(&mu);
  if (!interpreter) return LocalUpdate{.delta = {}, .skipped = "no model is installed"};
  auto samples = store->ReadAll();
  if (!samples.ok()) return LocalUpdate{.delta = {}, .skipped = StrCat("the sample store: ", samples.status().message())};
  // Decrypted samples and what is derived from them stay in memory only
  // as long as needed, and are wiped, not just freed.
  std::vector<Sample> train;
  struct Wipe {
    std::vector<Sample>& all;
    std::vector<Sample>& kept;
    ~Wipe() {
      for (auto* v : {&all, &kept}) {
        for (Sample& x : *v) sodium_memzero(x.features.data(), x.features.size() * sizeof(float));
      }
    }
  } wipe{*samples, train};
  size_t foreign = 0, held_out = 0;
  for (auto& sample : *samples) {
    if (sample.features.size() != interpreter->input_size() || sample.label < 0 ||
        sample.label >= interpreter->num_classes()) {
      ++foreign;  // stored for another model
    } else if (InHoldout(KeyOf(sample), config.holdout_fraction)) {
      ++held_out;
    } else {
      train.push_back(std::move(sample));
    }
  }
  if (train.empty()) {
    return LocalUpdate{.delta = {},
                       .skipped = StrCat("no samples to train on: ", samples->size(), " stored, ", foreign,
                                         " with features or labels model v", version, " does not take, ", held_out,
                                         " held out")};
  }
  absl::Time start = absl::Now();
  EmbeddingCache cache = EmbeddingCache::Load(*store, BackboneId(bundle));
  std::vector<float> embeddings = cache.Embed(train, *interpreter);
  if (cache.computed() > 0) {
    if (auto saved = cache.Save(*store); !saved.ok()) return saved;
  }
  report->timings.backbone = absl::Now() - start;
  std::vector<int> labels;
  labels.reserve(train.size());
  for (const Sample& sample : train) labels.push_back(sample.label);
  report->samples_trained = train.size();

  start = absl::Now();
  const auto& t = task.training();
  HeadTrainingTask training{.epochs = static_cast<int>(t.epochs()),
                            .batch_size = static_cast<int>(t.batch_size()),
                            .learning_rate = t.learning_rate(),
                            .momentum = t.momentum(),
                            .weight_decay = t.weight_decay(),
                            .seed = t.seed() ^ std::hash<std::string>()(config.device_id),
                            .cosine_decay = false};
  v1::Head head = bundle.head();
  absl::Status trained;
  if (task.has_patient_dp()) {
    const auto& p = task.patient_dp();
    PrivateTrainingTask private_task{.sampling_rate = p.sampling_rate(),
                                     .noise_multiplier = p.noise_multiplier(),
                                     .clip = p.clip(),
                                     .steps = static_cast<int64_t>(p.steps()),
                                     .learning_rate = t.learning_rate(),
                                     .momentum = t.momentum(),
                                     .weight_decay = t.weight_decay(),
                                     .class_weights = {t.class_weights().begin(), t.class_weights().end()}};
    auto rng = config.simulation_seed ? dp::SecureRandom::FromSeed(SimulationSeed(task.round_id(), "dp-sgd"))
                                      : dp::SecureRandom::FromOsEntropy();
    trained = TrainHeadPrivately(&head, embeddings, labels, private_task, *rng);
  } else {
    trained = TrainHead(&head, embeddings, labels, training);
  }
  if (!trained.ok()) {
    return LocalUpdate{.delta = {}, .skipped = StrCat("training failed: ", trained.message())};
  }
  std::vector<float> delta = HeadDelta(head, bundle.head());
  sodium_memzero(embeddings.data(), embeddings.size() * sizeof(float));
  sodium_memzero(head.mutable_weights()->mutable_data(), head.weights_size() * sizeof(float));
  sodium_memzero(head.mutable_bias()->mutable_data(), head.bias_size() * sizeof(float));
  report->timings.training = absl::Now() - start;
  return LocalUpdate{.delta = std::move(delta), .skipped = ""};
}

absl::StatusOr<std::string> Client::State::ChargeOrDecline(const v1::RoundTask& task) {
  const internal::RoundCost cost =
      internal::CostOfRound(task, ledger->orders(), std::isfinite(config.privacy_budget.epsilon));
  std::string why = cost.decline;
  if (cost.charge) {
    if (auto charged = ledger->Charge(*cost.charge); !charged.ok()) {
      if (absl::IsResourceExhausted(charged)) {
        why = StrCat("it would take this clinic ", charged.message());
      } else if (absl::IsAlreadyExists(charged) || absl::IsFailedPrecondition(charged)) {
        why = std::string(charged.message());  // a reused round id: train nothing twice
      } else {
        return charged;
      }
    }
  }
  if (why.empty()) return why;
  absl::MutexLock lock(&mu);
  ++rounds_declined;
  privacy_status = StrCat("declined round ", task.round_id(), ": ", why);
  spdlog::warn("{}: {}", config.device_id, privacy_status);
  return why;
}

absl::Status Client::State::SetAsideDamagedModel(const std::filesystem::path& file, const absl::Status& why) {
  const std::filesystem::path aside = file.string() + ".damaged";
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) std::filesystem::rename(file, aside, ec);
  if (ec) {
    return absl::DataLossError(StrCat(file.string(), " fails verification (", why.message(), ") and cannot be moved "
                                      "aside: ", ec.message()));
  }
  v1::SignedBundle damaged;
  auto bytes = base::ReadFileBytes(aside, 1 << 30);
  if (bytes.ok() && damaged.ParseFromString(*bytes)) {
    if (auto claimed = models::ParseRelease(damaged.release()); claimed.ok() && claimed->model_version() > 0) {
      release = *claimed;
      release.set_model_version(claimed->model_version() - 1);
      release.set_version(claimed->version() > 0 ? claimed->version() - 1 : 0);
    }
  }
  model_status = StrCat("the installed model failed verification (", why.message(), "); set aside as ",
                        aside.string(), ", to be fetched again");
  spdlog::warn("{}: {}", config.device_id, model_status);
  return absl::OkStatus();
}

Client::Client(std::unique_ptr<State> state) : state_(std::move(state)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientConfig& config, std::unique_ptr<Transport> transport,
                                                       ClientHooks hooks) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  if (!proto::IsValidDeviceId(config.device_id)) {
    return absl::InvalidArgumentError(StrCat("device id '", config.device_id,
                                             "' must be 1 to 64 letters, digits, '.', '_' or '-'"));
  }
  if (!(config.holdout_fraction >= 0.0 && config.holdout_fraction < 1.0)) {
    return absl::InvalidArgumentError(StrCat("holdout fraction must be in [0, 1), got ", config.holdout_fraction));
  }
  if (!transport) return absl::InvalidArgumentError("a client needs a transport");
  auto state = std::make_unique<State>();
  auto data_dir_lock = models::DirectoryLock::Acquire(config.data_dir, StrCat("tinyfed client ", config.device_id));
  if (!data_dir_lock.ok()) return data_dir_lock.status();
  state->data_dir_lock = std::move(*data_dir_lock);
  state->config = config;
  state->hooks = std::move(hooks);
  state->transport = std::move(transport);
  auto pinned_bytes = base::ReadFileBytes(config.trusted_root, 2 * models::kMaxMetadataBytes);
  if (!pinned_bytes.ok()) return pinned_bytes.status();
  v1::SignedMetadata pinned_root;
  if (!pinned_root.ParseFromString(*pinned_bytes)) {
    return absl::InvalidArgumentError(StrCat(config.trusted_root.string(), " is not signed root metadata"));
  }
  auto trusted = models::TrustedRoot::Pin(pinned_root);
  if (!trusted.ok()) {
    return absl::Status(trusted.status().code(), StrCat(config.trusted_root.string(), ": ", trusted.status().message()));
  }
  state->trusted.emplace(std::move(*trusted));
  std::vector<models::TrustedRoot> history = {*state->trusted};
  // Roots accepted since, again: the disk is not trusted either.
  for (uint64_t v = state->trusted->root().version() + 1;; ++v) {
    const auto file = models::RootFile(config.data_dir / "roots", v);
    auto bytes = base::ReadFileBytes(file, 2 * models::kMaxMetadataBytes);
    if (!bytes.ok() && bytes.status().code() == absl::StatusCode::kNotFound) break;
    v1::SignedMetadata next;
    absl::Status s = !bytes.ok() ? bytes.status()
                     : next.ParseFromString(*bytes) ? state->trusted->Advance(next)
                                                    : absl::InvalidArgumentError("not signed metadata");
    if (!s.ok()) return absl::DataLossError(StrCat(file.string(), " fails verification: ", s.message()));
    history.push_back(*state->trusted);
  }
  // The device key: made at first start, never leaves the gateway. Made
  // again only to enroll again: the aggregator knows the old one.
  const auto key_file = config.data_dir / "device_signing.key";
  const auto enrolled_marker = config.data_dir / "enrolled";
  if (!std::filesystem::exists(key_file)) {
    std::error_code ec;
    if (std::filesystem::exists(enrolled_marker, ec)) {
      if (config.enrollment_token.empty()) {
        return absl::FailedPreconditionError(StrCat(
            key_file.string(), " is missing, but this gateway enrolled as ", config.device_id,
            ": without its key the aggregator refuses every request. Re-enroll: the operator issues a token for it "
            "(tinyfed enroll --device-id ", config.device_id, "), which the gateway is started with (--enroll-token)"));
      }
      spdlog::warn("{}: {} is missing; making a new device key and enrolling again with the given token",
                   config.device_id, key_file.string());
      std::filesystem::remove(enrolled_marker, ec);
    }
    std::filesystem::create_directories(config.data_dir, ec);
    if (auto s = models::WriteSigningKey(models::SigningKey::Generate(), key_file, config.data_dir / "device_signing.pub");
        !s.ok()) {
      return s;
    }
  }
  auto key = models::ReadSigningKey(key_file);
  if (!key.ok()) return key.status();
  state->device_key = std::make_shared<const models::SigningKey>(std::move(*key));
  state->transport->SetDeviceKey(state->device_key);
  auto store = SampleStore::Open(config.data_dir / "store", config.max_samples);
  if (!store.ok()) return store.status();
  auto ledger = dp::PrivacyLedger::Open(config.data_dir / "privacy.db", config.privacy_budget);
  if (!ledger.ok()) return ledger.status();
  state->ledger = std::move(*ledger);
  absl::MutexLock lock(&state->mu);
  state->store = std::move(*store);
  // The installed model is verified again: the disk is not trusted either.
  // Expiry is not: a model accepted while fresh keeps serving.
  const auto installed_file = config.data_dir / "model.signed";
  auto blob = base::ReadFileBytes(installed_file, 1 << 30);
  if (blob.ok()) {
    v1::SignedBundle signed_bundle;
    absl::StatusOr<models::VerifiedModel> verified = absl::DataLossError("not a signed bundle");
    // A model installed before a rotation was signed under an older root:
    // it keeps serving (and says so) until a model under the current root
    // arrives, so a rotation never strands a gateway without a model.
    auto under = history.rbegin();
    if (signed_bundle.ParseFromString(*blob)) {
      verified = under->VerifyModel(signed_bundle, nullptr, std::nullopt);
      for (auto older = under + 1; !verified.ok() && older != history.rend(); ++older) {
        auto v = older->VerifyModel(signed_bundle, nullptr, std::nullopt);
        if (v.ok()) verified = std::move(v), under = older;
      }
    }
    auto interpreter = verified.ok() ? models::Interpreter::Create(verified->bundle)
                                     : absl::StatusOr<std::unique_ptr<models::Interpreter>>(verified.status());
    if (!interpreter.ok()) {
      // Damaged on disk: set aside, and fetched again at the next check-in.
      // Meanwhile the gateway serves nothing rather than something unverified.
      if (auto s = state->SetAsideDamagedModel(installed_file, interpreter.status()); !s.ok()) return s;
    } else {
      state->Install(std::move(*verified), std::move(*interpreter));
      if (under != history.rbegin()) {
        state->model_status = StrCat("model v", state->version, " was signed under root v", under->root().version(),
                                     ", not the current v", state->trusted->root().version(),
                                     "; it serves until the next model");
      }
    }
  } else if (blob.status().code() != absl::StatusCode::kNotFound ||
             std::filesystem::exists(installed_file.string() + ".damaged")) {
    if (auto s = state->SetAsideDamagedModel(installed_file, blob.status()); !s.ok()) return s;
  }
  return std::unique_ptr<Client>(new Client(std::move(state)));
}

absl::Status Client::AddSamples(std::span<const Sample> samples) {
  absl::MutexLock lock(&state_->mu);
  if (state_->interpreter) {
    for (const Sample& s : samples) {
      if (s.features.size() != state_->interpreter->input_size()) {
        return absl::InvalidArgumentError(StrCat("a sample has ", s.features.size(), " features; the model takes ",
                                                 state_->interpreter->input_size()));
      }
      if (s.label < 0 || s.label >= state_->interpreter->num_classes()) {
        return absl::InvalidArgumentError(StrCat("label ", s.label, " is outside the model's ",
                                                 state_->interpreter->num_classes(), " classes"));
      }
    }
  }
  state_->decision.reset();
  return state_->store->Add(samples);
}

absl::StatusOr<std::pair<int, double>> Client::State::Decision() {
  if (decision) return *decision;
  if (config.positive_class.empty()) return absl::InvalidArgumentError("no positive_class is configured");
  if (!interpreter) return absl::FailedPreconditionError("no model is installed yet");
  const auto& names = bundle.label_names();
  const auto at = std::find(names.begin(), names.end(), config.positive_class);
  if (at == names.end()) {
    return absl::NotFoundError(StrCat("positive_class '", config.positive_class, "' is not one of model v", version,
                                      "'s ", names.size(), " labels"));
  }
  const int positive = static_cast<int>(at - names.begin());
  auto samples = store->ReadAll();
  if (!samples.ok()) return samples.status();
  std::vector<double> scores;
  for (Sample& sample : *samples) {
    if (sample.label == positive && sample.features.size() == interpreter->input_size() &&
        InHoldout(KeyOf(sample), config.holdout_fraction)) {
      interpreter->SetInput(sample.features);
      interpreter->Invoke();
      const auto logits = interpreter->logits();
      float p = 0.0f;
      (void)models::DecideWithThreshold(logits, positive, 0.0, &p);  // threshold 0: p is the positive's
      scores.push_back(p);
    }
    sodium_memzero(sample.features.data(), sample.features.size() * sizeof(float));
  }
  decision = {positive, models::ThresholdForSensitivity(scores, config.target_sensitivity)};
  return *decision;
}

absl::StatusOr<double> Client::DecisionThreshold() {
  absl::MutexLock lock(&state_->mu);
  auto d = state_->Decision();
  if (!d.ok()) return d.status();
  return d->second;
}

absl::StatusOr<models::Prediction> Client::Predict(std::span<const float> features) {
  absl::MutexLock lock(&state_->mu);
  if (!state_->interpreter) return absl::FailedPreconditionError("no model is installed yet");
  if (features.size() != state_->interpreter->input_size()) {
    return absl::InvalidArgumentError(StrCat("got ", features.size(), " features; the model takes ",
                                             state_->interpreter->input_size()));
  }
  if (state_->config.positive_class.empty()) return state_->interpreter->Predict(features);
  auto decision = state_->Decision();
  if (!decision.ok()) return decision.status();
  state_->interpreter->SetInput(features);
  state_->interpreter->Invoke();
  models::Prediction p;
  p.label = models::DecideWithThreshold(state_->interpreter->logits(), decision->first, decision->second, &p.confidence);
  return p;
}

uint64_t Client::model_version() const {
  absl::MutexLock lock(&state_->mu);
  return state_->version;
}

size_t Client::sample_count() const {
  absl::MutexLock lock(&state_->mu);
  return state_->store->size();
}

void Client::Stop() {
  std::lock_guard lock(state_->stop_mu);
  state_->stopping = true;
  state_->stop_cv.notify_all();
}

absl::StatusOr<RoundReport> Client::ParticipateOnce() {
  State& s = *state_;
  RoundReport report;
  auto timed = [&](auto&& call) {
    const absl::Time start = absl::Now();
    auto result = call();
    report.timings.transport += absl::Now() - start;
    return result;
  };
  auto finish = [&](RoundOutcome outcome, std::string detail) {
    report.outcome = outcome;
    report.detail = std::move(detail);
    report.model_version = model_version();
    return report;
  };
  // False: the hook cut the power here.
  auto phase_hook = [&](v1::Phase phase) {
    return !s.hooks.on_phase || s.hooks.on_phase(report.round_id, phase);
  };
  auto power_cut = [&] { return finish(RoundOutcome::kAborted, "stopped by the on_phase hook"); };

  // 1. Check in; update the installed model if a newer one is out.
  if (auto e = s.EnrollIfNeeded(); !e.ok()) return e;
  v1::CheckInRequest checkin;
  *checkin.mutable_header() = s.Header(0, v1::PHASE_CHECK_IN);
  checkin.set_installed_model_version(model_version());
  checkin.set_trusted_root_version(s.trusted->root().version());
  auto response = timed([&] { return s.transport->CheckIn(checkin); });
  if (!response.ok()) return response.status();
  s.AdvanceRoots(response->roots());
  if (response->latest_model().version() > model_version()) {
    if (auto u = s.UpdateModel(response->latest_model(), &report.timings); !u.ok()) {
      if (LinkLost(u)) return u;
    }
  }
  if (response->has_closed()) return finish(RoundOutcome::kClosed, response->closed().reason());
  if (response->has_retry_later()) {
    report.retry_after = absl::Milliseconds(response->retry_later().delay_ms());
    return finish(RoundOutcome::kNotSelected, response->retry_later().reason());
  }
  report.round_id = response->admitted().round_id();

  // Waits for the server's answer in `phase`, polling as it asks.
  auto await = [&](v1::Phase phase) -> absl::StatusOr<v1::AwaitResponse> {
    v1::AwaitRequest request;
    *request.mutable_header() = s.Header(report.round_id, phase);
    for (;;) {
      auto r = timed([&] { return s.transport->Await(request); });
      if (!r.ok() || !r->has_wait()) return r;
      const absl::Time start = absl::Now();
      if (!s.SleepFor(absl::Milliseconds(r->wait().delay_ms()))) return absl::CancelledError("stopped");
      report.timings.waiting += absl::Now() - start;
    }
  };
  auto submit = [&](v1::Phase phase, v1::SubmitRequest request) -> absl::Status {
    *request.mutable_header() = s.Header(report.round_id, phase);
    return timed([&] { return s.transport->Submit(request); }).status();
  };
  auto secagg_request = [](v1::SecAggClientMessage message) {
    v1::SubmitRequest request;
    *request.mutable_message() = std::move(message);
    return request;
  };
  // The aggregator refusing a call out of turn ends this client's part in
  // the round; any other failure goes to the caller, which retries later.
  auto refused = [&](const absl::Status& st) -> absl::StatusOr<RoundReport> {
    if (absl::IsFailedPrecondition(st)) return finish(RoundOutcome::kAborted, std::string(st.message()));
    return st;
  };

  auto await_result_and_install = [&]() -> absl::StatusOr<RoundReport> {
    auto result = await(v1::PHASE_RESULT);
    if (!result.ok()) return result.status();
    if (result->has_aborted()) return finish(RoundOutcome::kAborted, result->aborted().reason());
    if (!result->has_result()) return finish(RoundOutcome::kAborted, "unexpected answer");
    if (!phase_hook(v1::PHASE_RESULT)) return power_cut();
    if (auto u = s.UpdateModel(result->result().published(), &report.timings); !u.ok()) {
      if (LinkLost(u)) return u;
    }
    return finish(RoundOutcome::kCompleted, "");
  };

  // 2. The task, once the cohort is fixed.
  auto task_response = await(v1::PHASE_TASK);
  if (!task_response.ok()) return task_response.status();
  if (task_response->has_aborted()) return finish(RoundOutcome::kAborted, task_response->aborted().reason());
  if (!task_response->has_task()) return finish(RoundOutcome::kAborted, "no task in the answer");
  const v1::RoundTask task = task_response->task();
  if (!phase_hook(v1::PHASE_TASK)) return power_cut();

  // 3. The round's model.
  if (task.model().version() != model_version()) {
    if (task.model().version() < model_version()) {
      return finish(RoundOutcome::kSkipped, StrCat("the round trains v", task.model().version(),
                                                   " but v", model_version(), " is installed"));
    }
    if (auto u = s.UpdateModel(task.model(), &report.timings); !u.ok()) {
      if (LinkLost(u)) return u;
      return finish(RoundOutcome::kSkipped, StrCat("cannot install the round's model: ", u.message()));
    }
  }

  // 4. Local training on cached embeddings, paid for first in the clinic's own ledger.
  auto declined = s.ChargeOrDecline(task);
  if (!declined.ok()) return declined.status();
  if (!declined->empty()) return finish(RoundOutcome::kSkipped, StrCat("declined: ", *declined));
  auto trained = s.TrainOnLocalSamples(task, &report);
  if (!trained.ok()) return trained.status();
  if (!trained->skipped.empty()) return finish(RoundOutcome::kSkipped, trained->skipped);
  std::vector<float> delta = std::move(trained->delta);

  if (task.has_plain()) {
    // 5'. A trusted-aggregator round: clip, compress with error feedback, send.
    absl::Time start = absl::Now();
    auto update = s.EncodePlain(task, std::move(delta));
    report.timings.encoding = absl::Now() - start;
    if (!update.ok()) return finish(RoundOutcome::kSkipped, StrCat("encoding: ", update.status().message()));
    if (!phase_hook(v1::PHASE_UPDATE)) return power_cut();
    v1::SubmitRequest request;
    *request.mutable_update() = std::move(*update);
    if (auto sent = submit(v1::PHASE_UPDATE, std::move(request)); !sent.ok()) return refused(sent);
    return await_result_and_install();
  }

  // 5. Encoding: clipping, rotation, rounding, discrete Gaussian noise, mod 2^b.
  absl::Time start = absl::Now();
  const auto& d = task.ddg();
  auto ddg = internal::DdgParamsOf(task);
  if (!ddg.ok()) return finish(RoundOutcome::kSkipped, StrCat("the round's DP settings: ", ddg.status().message()));
  if (delta.size() != d.dimension() || ddg->padded_dimension != task.secagg().vector_length() ||
      d.rotation_seed().size() != 32) {
    return finish(RoundOutcome::kSkipped, StrCat("the round expects ", d.dimension(), " values; this head has ",
                                                 delta.size()));
  }
  dp::Seed rotation_seed;
  std::memcpy(rotation_seed.data(), d.rotation_seed().data(), 32);
  auto rng = s.config.simulation_seed ? dp::SecureRandom::FromSeed(s.SimulationSeed(report.round_id, "dp"))
                                      : dp::SecureRandom::FromOsEntropy();
  auto encoded = dp::DdgEncode(*ddg, delta, rotation_seed, *rng);
  sodium_memzero(delta.data(), delta.size() * sizeof(float));
  if (!encoded.ok()) return finish(RoundOutcome::kSkipped, StrCat("encoding: ", encoded.status().message()));
  report.timings.encoding = absl::Now() - start;
  if (s.hooks.on_encoded_update) s.hooks.on_encoded_update(report.round_id, *encoded);

  // 6. SecAgg+.
  start = absl::Now();
  const auto& sa = task.secagg();
  secagg::SecAggConfig sc{.round_id = report.round_id,
                          .num_clients = static_cast<int>(task.cohort_size()),
                          .bits = static_cast<int>(sa.bits()),
                          .vector_length = sa.vector_length(),
                          .max_dropout = sa.max_dropout(),
                          .max_corrupted = sa.max_corrupted(),
                          .graph_seed = {}};
  if (sa.graph_seed().size() != sc.graph_seed.size()) return finish(RoundOutcome::kSkipped, "bad SecAgg+ graph seed");
  std::memcpy(sc.graph_seed.data(), sa.graph_seed().data(), sc.graph_seed.size());
  auto params = secagg::SecAggParams::Create(sc, static_cast<int>(sa.degree()), static_cast<int>(sa.threshold()));
  if (!params.ok()) return finish(RoundOutcome::kSkipped, StrCat("SecAgg+ settings: ", params.status().message()));
  auto secagg_client = secagg::Client::Create(
      *params, task.secagg_id(), std::move(*encoded),
      s.config.simulation_seed ? secagg::SeededRandom(s.SimulationSeed(report.round_id, "secagg")) : secagg::OsRandom());
  if (!secagg_client.ok()) return finish(RoundOutcome::kSkipped, std::string(secagg_client.status().message()));
  auto advertise = (*secagg_client)->AdvertiseKeys();
  if (!advertise.ok()) return advertise.status();
  {
    v1::AdvertiseKeys* keys = advertise->mutable_advertise_keys();
    keys->set_signature(s.device_key->Sign(proto::AdvertiseKeysSigningMessage(
        report.round_id, task.secagg_id(), s.config.device_id, keys->encryption_public_key(),
        keys->masking_public_key())));
  }
  report.timings.secagg += absl::Now() - start;
  if (!phase_hook(v1::PHASE_ADVERTISE_KEYS)) return power_cut();
  if (auto sent = submit(v1::PHASE_ADVERTISE_KEYS, secagg_request(*advertise)); !sent.ok()) return refused(sent);
  for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
    auto r = await(phase);
    if (!r.ok()) return refused(r.status());
    if (r->has_aborted()) return finish(RoundOutcome::kAborted, r->aborted().reason());
    if (r->has_result()) return finish(RoundOutcome::kAborted, "the round finished without this client");
    if (!r->has_secagg()) return finish(RoundOutcome::kAborted, "unexpected answer");
    if (!phase_hook(phase)) return power_cut();
    start = absl::Now();
    // Agree on nothing with keys their device did not sign for this round.
    for (const v1::NeighborKeys& nk : r->secagg().share_keys().neighbors()) {
      auto device_key = models::PublicKeyFromBytes(nk.device_public_key());
      if (!device_key.ok() ||
          !models::VerifySignature(*device_key, proto::AdvertiseKeysSigningMessage(
                                                    report.round_id, nk.id(), nk.device_id(),
                                                    nk.encryption_public_key(), nk.masking_public_key()),
                                   nk.signature())) {
        return finish(RoundOutcome::kAborted,
                      StrCat("SecAgg+: neighbour ", nk.id(), "'s keys are not signed by device '", nk.device_id(), "'"));
      }
    }
    auto reply = (*secagg_client)->Handle(r->secagg());
    report.timings.secagg += absl::Now() - start;
    if (!reply.ok()) return finish(RoundOutcome::kAborted, StrCat("SecAgg+: ", reply.status().message()));
    if (auto sent = submit(phase, secagg_request(*reply)); !sent.ok()) return refused(sent);
  }

  // 7. The result: install the new model.
  return await_result_and_install();
}

absl::Status Client::Run(int64_t max_completed_rounds) {
  State& s = *state_;
  int64_t completed = 0;
  absl::Duration backoff = absl::Seconds(1);
  while (!s.stopped()) {
    auto report = ParticipateOnce();
    if (!report.ok()) {
      if (absl::IsCancelled(report.status())) break;
      // A revoked device is shut out for good, and one whose key the
      // aggregator does not know (lost, or never enrolled) until it
      // re-enrolls; anything else may pass.
      if (absl::IsPermissionDenied(report.status())) return report.status();
      if (absl::IsUnauthenticated(report.status())) {
        return absl::UnauthenticatedError(StrCat(
            report.status().message(), " (the aggregator refuses this gateway's signed requests: if their timestamp is "
            "off, set the gateway's clock; if it lost its data directory or key, re-enroll it with a token from "
            "tinyfed enroll --device-id ", s.config.device_id, ")"));
      }
      spdlog::warn("{}: round attempt failed: {} (retrying in {})", s.config.device_id, report.status().ToString(),
                   absl::FormatDuration(backoff));
      if (!s.SleepFor(backoff)) break;
      // Capped low: an aggregator back from a restart should see its
      // gateways within seconds, not minutes.
      backoff = std::min(backoff * 2, absl::Seconds(10));
      continue;
    }
    backoff = absl::Seconds(1);
    if (report->outcome == RoundOutcome::kCompleted) {
      ++completed;
      spdlog::info("{}: round {} completed on {} samples; model v{}", s.config.device_id, report->round_id,
                   report->samples_trained, report->model_version);
    } else if (report->outcome != RoundOutcome::kNotSelected) {
      spdlog::info("{}: round {}: {}", s.config.device_id, report->round_id, report->detail);
    }
    if (report->outcome == RoundOutcome::kCompleted || report->outcome == RoundOutcome::kSkipped) {
      // Telemetry is best effort: the next round sends it again.
      if (auto sent = SendTelemetry(); !sent.ok()) {
        spdlog::info("{}: telemetry not sent: {}", s.config.device_id, sent.ToString());
      }
    }
    if (report->outcome == RoundOutcome::kClosed) return absl::OkStatus();
    if (max_completed_rounds > 0 && completed >= max_completed_rounds) return absl::OkStatus();
    const absl::Duration pause = std::max(report->retry_after, absl::Milliseconds(50));
    if (!s.SleepFor(pause)) break;
  }
  return absl::OkStatus();
}

absl::Status Client::SendTelemetry() {
  State& s = *state_;
  v1::TelemetryRequest request;
  *request.mutable_header() = s.Header(0, v1::PHASE_TELEMETRY);
  v1::Telemetry* t = request.mutable_telemetry();
  {
    absl::MutexLock lock(&s.mu);
    t->set_model_version(s.version);
    t->set_model_status(s.model_status);
    auto spent = s.ledger->Spent();
    if (spent.ok()) t->set_epsilon_spent(spent->epsilon);
    t->set_epsilon_budget(s.config.privacy_budget.epsilon);
    t->set_rounds_declined(static_cast<uint32_t>(s.rounds_declined));
    t->set_privacy_status(s.privacy_status);
    if (s.interpreter) {
      auto samples = s.store->ReadAll();
      if (!samples.ok()) return samples.status();
      std::vector<uint64_t> counts(static_cast<size_t>(s.interpreter->num_classes()), 0);
      std::vector<uint32_t> histogram(10, 0);
      uint32_t held = 0, correct = 0;
      for (const Sample& sample : *samples) {
        if (sample.label < 0 || sample.label >= s.interpreter->num_classes() ||
            sample.features.size() != s.interpreter->input_size()) {
          continue;
        }
        ++counts[static_cast<size_t>(sample.label)];
        if (!InHoldout(KeyOf(sample), s.config.holdout_fraction)) continue;
        const models::Prediction p = s.interpreter->Predict(sample.features);
        ++held;
        correct += p.label == sample.label;
        ++histogram[std::min<size_t>(9, static_cast<size_t>(p.confidence * 10.0f))];
      }
      for (uint64_t c : counts) t->add_class_counts(c);
      for (uint32_t h : histogram) t->add_confidence_histogram(h);
      t->set_holdout_samples(held);
      t->set_holdout_accuracy(held ? static_cast<float>(correct) / held : 0.0f);
    }
  }
  return s.transport->ReportTelemetry(request).status();
}

}  // namespace tinyfed::client
