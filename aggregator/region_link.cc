#include "tinyfed/aggregator/region_link.h"

#include <sodium.h>

#include <array>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/base/seed.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/params.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

// How long the link keeps calling a national aggregator it cannot reach
// within a round: the national aggregator resumes its round after a restart.
constexpr absl::Duration kOutagePatience = absl::Minutes(10);
// A national model larger than this is refused before it is downloaded.
constexpr uint64_t kMaxModelBytes = uint64_t{1} << 30;

bool Retryable(const absl::Status& s) { return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s); }

}  // namespace

// This region's part in one national round, one method per step; each
// returns the link's outcome once its part is over, nullopt to go on.
class RegionLink::NationalRound {
 public:
  NationalRound(RegionLink& link, uint64_t round_id) : link_(link), round_id_(round_id) {}
  ~NationalRound() {
    // Whatever ended the part, the region's own round must not wait on.
    if (regional_round_ > 0) link_.region_.EndRegionalRound(regional_round_, outcome_);
  }

  absl::StatusOr<LinkOutcome> Run() {
    for (Step (NationalRound::*step)() : {&NationalRound::AwaitTask, &NationalRound::RunRegionalRound,
                                          &NationalRound::SendSum, &NationalRound::AwaitResult}) {
      TINYFED_ASSIGN_OR_RETURN(std::optional<LinkOutcome> done, (this->*step)());
      if (done) return *done;
    }
    return LinkOutcome::kCompleted;
  }

 private:
  using Step = absl::StatusOr<std::optional<LinkOutcome>>;

  // The national round's task, mirrored model included.
  Step AwaitTask() {
    TINYFED_ASSIGN_OR_RETURN(v1::AwaitResponse r, Await(v1::PHASE_TASK));
    if (!r.has_task()) return Dropped(r);
    task_ = r.task();
    if (task_.model().version() != link_.region_.latest_model().version() ||
        task_.model().bundle_sha256() != link_.region_.latest_model().bundle_sha256()) {
      if (absl::Status mirrored = link_.Mirror(task_.model()); !mirrored.ok()) {
        if (Retryable(mirrored)) return mirrored;
        return Drop(StrCat("cannot mirror the round's model: ", mirrored.message()));
      }
    }
    deadline_ = link_.env_.Now() + absl::Milliseconds(task_.advertise_deadline_ms());
    return std::nullopt;
  }

  // The region's own round, under the national task, until its sum is in
  // (or the national deadline for it passes).
  Step RunRegionalRound() {
    absl::StatusOr<int64_t> regional = link_.region_.StartRegionalRound(task_);
    if (!regional.ok()) return Drop(StrCat("the regional round cannot start: ", regional.status().message()));
    regional_round_ = *regional;
    for (;;) {
      auto sum = link_.region_.AwaitRegionalSum(regional_round_, absl::Seconds(1));
      if (!sum.ok()) return Drop(StrCat("regional round ", regional_round_, ": ", sum.status().message()));
      if (*sum) {
        sum_ = **sum;
        return std::nullopt;
      }
      if (link_.env_.Now() > deadline_) {
        return Drop(StrCat("regional round ", regional_round_, " had no sum by the national training deadline"));
      }
      if (!link_.SleepFor(absl::ZeroDuration())) return absl::CancelledError("stopped");
    }
  }

  // The sum as this region's input to the national SecAgg+ round.
  Step SendSum() {
    auto params = secagg::ParamsOfTask(round_id_, task_.cohort_size(), task_.secagg());
    if (!params.ok()) return Drop(StrCat("the national SecAgg+ settings: ", params.status().message()));
    std::array<uint8_t, 32> seed;
    if (link_.options_.simulation_seed) {
      base::DeriveSeed(*link_.options_.simulation_seed, round_id_, link_.options_.device_id, "secagg", seed);
    } else {
      link_.env_.RandomBytes(seed);
    }
    auto client = secagg::Client::Create(*params, task_.secagg_id(), std::move(sum_.sum), secagg::SeededRandom(seed));
    sodium_memzero(seed.data(), seed.size());
    if (!client.ok()) return Drop(StrCat("SecAgg+: ", client.status().message()));
    TINYFED_ASSIGN_OR_RETURN(v1::SecAggClientMessage advertise, (*client)->AdvertiseKeys());
    auth::SignAdvertisedKeys(round_id_, task_.secagg_id(), link_.options_.device_id, *link_.key_,
                             advertise.mutable_advertise_keys());
    if (auto sent = Submit(v1::PHASE_ADVERTISE_KEYS, std::move(advertise)); !sent.ok() || *sent) return sent;
    for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
      TINYFED_ASSIGN_OR_RETURN(v1::AwaitResponse r, Await(phase));
      if (!r.has_secagg()) return Dropped(r);
      if (absl::Status signed_by = auth::CheckNeighborSignatures(round_id_, r.secagg()); !signed_by.ok()) {
        return Drop(std::string(signed_by.message()));
      }
      auto reply = (*client)->Handle(r.secagg());
      if (!reply.ok()) return Drop(StrCat("SecAgg+: ", reply.status().message()));
      if (auto sent = Submit(phase, *std::move(reply)); !sent.ok() || *sent) return sent;
    }
    return std::nullopt;
  }

  // The national model, mirrored; the region's gateways are told of it.
  Step AwaitResult() {
    TINYFED_ASSIGN_OR_RETURN(v1::AwaitResponse r, Await(v1::PHASE_RESULT));
    if (!r.has_result()) return Dropped(r);
    if (absl::Status mirrored = link_.Mirror(r.result().published()); !mirrored.ok()) {
      if (Retryable(mirrored)) return mirrored;
      return Drop(StrCat("cannot mirror the national model: ", mirrored.message()));
    }
    outcome_ = r;
    base::LogEvent(spdlog::level::info, "national_round_done",
                   {{"national_round", round_id_}, {"model_version", r.result().published().version()}},
                   fmt::format("national round {}: model v{} published with this region's {} clinics", round_id_,
                               r.result().published().version(), sum_.contributors));
    return LinkOutcome::kCompleted;
  }

  // `call`, repeated while the national aggregator is unreachable.
  template <typename Call>
  auto Persist(Call&& call) -> decltype(call()) {
    const absl::Time start = absl::Now();
    for (;;) {
      auto result = call();
      if (result.ok() || !Retryable(result.status()) || absl::Now() - start > kOutagePatience) return result;
      if (!link_.SleepFor(absl::Seconds(1))) return absl::CancelledError("stopped");
    }
  }

  // The national answer in `phase` once it is not a wait.
  absl::StatusOr<v1::AwaitResponse> Await(v1::Phase phase) {
    v1::AwaitRequest request;
    *request.mutable_header() = link_.Header(round_id_, phase);
    for (;;) {
      auto r = Persist([&] { return link_.national_->Await(request); });
      if (absl::IsFailedPrecondition(r.status())) {
        v1::AwaitResponse aborted;
        aborted.mutable_aborted()->set_reason(std::string(r.status().message()));
        return aborted;
      }
      if (!r.ok() || !r->has_wait()) return r;
      if (!link_.SleepFor(absl::Milliseconds(r->wait().delay_ms()))) return absl::CancelledError("stopped");
    }
  }

  // Sends this region's `phase` message (the masked input with its
  // contributors); an outcome if the region's part ends here.
  Step Submit(v1::Phase phase, v1::SecAggClientMessage message) {
    if (link_.options_.on_phase && !link_.options_.on_phase(round_id_, phase)) {
      return Drop(StrCat("stopped before its ", v1::Phase_Name(phase), " message"));
    }
    v1::SubmitRequest request;
    *request.mutable_header() = link_.Header(round_id_, phase);
    if (message.has_masked_input()) request.set_contributors(sum_.contributors);
    *request.mutable_message() = std::move(message);
    auto sent = Persist([&] { return link_.national_->Submit(request); });
    if (absl::IsFailedPrecondition(sent.status())) return Drop(std::string(sent.status().message()));
    if (!sent.ok()) return sent.status();
    return std::nullopt;
  }

  // The national aggregator's answer ended this region's part.
  Step Dropped(const v1::AwaitResponse& r) {
    outcome_ = r;
    if (r.has_aborted()) return Drop(r.aborted().reason());
    return Drop(r.has_result() ? "the national round finished without this region" : "an unexpected answer");
  }
  Step Drop(std::string why) {
    if (!outcome_.has_aborted() && !outcome_.has_result()) outcome_.mutable_aborted()->set_reason(why);
    base::LogEvent(spdlog::level::warn, "national_round_left", {{"national_round", round_id_}},
                   fmt::format("national round {}: this region takes no further part: {}", round_id_, why));
    return LinkOutcome::kDropped;
  }

  RegionLink& link_;
  const uint64_t round_id_;
  v1::RoundTask task_;
  absl::Time deadline_;
  int64_t regional_round_ = 0;
  RoundEngine::RegionalSum sum_;
  v1::AwaitResponse outcome_;  // the national outcome the regional round ends with
};

RegionLink::RegionLink(RoundEngine& region, std::unique_ptr<client::Transport> national, RegionLinkOptions options,
                       base::Env& env, std::shared_ptr<const models::SigningKey> key)
    : region_(region), national_(std::move(national)), options_(std::move(options)), env_(env), key_(std::move(key)) {}

RegionLink::~RegionLink() = default;

absl::StatusOr<std::unique_ptr<RegionLink>> RegionLink::Create(RoundEngine& region,
                                                               std::unique_ptr<client::Transport> national,
                                                               RegionLinkOptions options, base::Env& env) {
  const std::filesystem::path secret = options.dir / "device.key";
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return absl::InternalError(StrCat("cannot create ", options.dir.string(), ": ", ec.message()));
  if (!std::filesystem::exists(secret)) {
    TINYFED_RETURN_IF_ERROR(
        models::WriteSigningKey(models::SigningKey::Generate(), secret, options.dir / "device.pub"));
  }
  TINYFED_ASSIGN_OR_RETURN(models::SigningKey key, models::ReadSigningKey(secret, env));
  auto shared = std::make_shared<const models::SigningKey>(std::move(key));
  national->SetDeviceKey(shared);
  return std::unique_ptr<RegionLink>(
      new RegionLink(region, std::move(national), std::move(options), env, std::move(shared)));
}

v1::RequestHeader RegionLink::Header(uint64_t round_id, v1::Phase phase) const {
  v1::RequestHeader h;
  h.set_device_id(options_.device_id);
  h.set_round_id(round_id);
  h.set_phase(phase);
  return h;
}

bool RegionLink::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

void RegionLink::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::Status RegionLink::EnrollIfNeeded() {
  const std::filesystem::path marker = options_.dir / "enrolled";
  if (options_.enrollment_token.empty() || std::filesystem::exists(marker)) return absl::OkStatus();
  auto enrolled = national_->Enroll(auth::SignedEnrollRequest(options_.device_id, options_.enrollment_token, *key_));
  if (!enrolled.ok()) {
    return absl::Status(enrolled.status().code(),
                        StrCat("enrolling with the national aggregator: ", enrolled.status().message()));
  }
  spdlog::info("region {} enrolled with the national aggregator", options_.device_id);
  return env_.WriteFileAtomically(marker, "enrolled\n");
}

absl::Status RegionLink::Mirror(const v1::ModelRef& ref) {
  if (ref.download_size() == 0 || ref.download_size() > kMaxModelBytes) {
    return absl::InvalidArgumentError(
        StrCat("model v", ref.version(), "'s announced size ", ref.download_size(), " is not plausible"));
  }
  std::string blob;
  while (blob.size() < ref.download_size()) {
    v1::ModelChunkRequest request;
    *request.mutable_header() = Header(0, v1::PHASE_MODEL_DOWNLOAD);
    request.set_version(ref.version());
    request.set_offset(blob.size());
    TINYFED_ASSIGN_OR_RETURN(v1::ModelChunk chunk, national_->GetModelChunk(request));
    if (chunk.version() != ref.version() || chunk.offset() != blob.size() ||
        chunk.download_sha256() != ref.download_sha256() || chunk.data().empty() ||
        chunk.data().size() > ref.download_size() - blob.size()) {
      return absl::DataLossError(StrCat("model v", ref.version(), ": a chunk does not match the announced model"));
    }
    blob += chunk.data();
  }
  if (base::Sha256(blob) != ref.download_sha256()) {
    return absl::DataLossError(StrCat("model v", ref.version(), " does not match its announced SHA-256"));
  }
  return region_.MirrorModel(std::move(blob));
}

absl::StatusOr<LinkOutcome> RegionLink::RunOnce() {
  TINYFED_RETURN_IF_ERROR(EnrollIfNeeded());
  v1::CheckInRequest checkin;
  *checkin.mutable_header() = Header(0, v1::PHASE_CHECK_IN);
  const v1::ModelRef mirrored = region_.latest_model();
  checkin.set_installed_model_version(mirrored.version());
  TINYFED_ASSIGN_OR_RETURN(v1::CheckInResponse response, national_->CheckIn(checkin));
  if (response.roots_size() > 0) {
    if (absl::Status relayed =
            region_.MirrorRoots(std::vector<v1::SignedMetadata>(response.roots().begin(), response.roots().end()));
        !relayed.ok()) {
      spdlog::error("national roots refused: {}", relayed.ToString());
    }
  }
  // A newer model, or a new release of the same one (re-signed nationally).
  const v1::ModelRef& latest = response.latest_model();
  if (latest.version() > mirrored.version() ||
      (latest.version() == mirrored.version() && latest.download_sha256() != mirrored.download_sha256())) {
    if (absl::Status m = Mirror(latest); !m.ok()) {
      spdlog::error("national model v{} not mirrored: {}", latest.version(), m.ToString());
      if (Retryable(m)) return m;
    }
  }
  if (response.has_closed()) {
    region_.CloseFederation(response.closed().reason());
    return LinkOutcome::kClosed;
  }
  if (!response.has_admitted()) return LinkOutcome::kIdle;
  NationalRound round(*this, response.admitted().round_id());
  return round.Run();
}

void RegionLink::Run() {
  for (;;) {
    absl::StatusOr<LinkOutcome> outcome = RunOnce();
    if (outcome.ok() && *outcome == LinkOutcome::kClosed) return;
    if (!outcome.ok()) spdlog::warn("link to the national aggregator: {}", outcome.status().ToString());
    const bool busy = outcome.ok() && *outcome != LinkOutcome::kIdle;
    if (!SleepFor(busy ? absl::ZeroDuration() : options_.poll_interval)) return;
  }
}

}  // namespace tinyfed::aggregator
