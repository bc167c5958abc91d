#include "client/internal/client_round.h"

#include <sodium.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/internal/local_training.h"
#include "client/internal/model_download.h"
#include "client/internal/retry.h"
#include "client/internal/round_cost.h"
#include "client/internal/trust_store.h"
#include "spdlog/spdlog.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/dp/clipping.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/proto/plain_update.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/params.h"

namespace tinyfed::client::internal {
namespace {

using absl::StrCat;

v1::SubmitRequest SecAggRequest(v1::SecAggClientMessage message) {
  v1::SubmitRequest request;
  *request.mutable_message() = std::move(message);
  return request;
}

// Times `call` into `total`.
template <typename Call>
auto Timed(absl::Duration& total, Call&& call) {
  const absl::Time start = absl::Now();
  auto result = call();
  total += absl::Now() - start;
  return result;
}

// How long a gateway in a round keeps calling an aggregator it cannot
// reach. A restarted aggregator resumes the round from its journal, so the
// SecAgg+ state this round holds in memory is worth waiting for: a service
// manager restarts a killed process in seconds, a cluster reschedules one in
// a minute or two.
constexpr absl::Duration kOutagePatience = absl::Minutes(10);

}  // namespace

template <typename Call>
auto ClientRound::Persist(Call&& call) -> decltype(call()) {
  const absl::Time start = absl::Now();
  for (;;) {
    auto result = Timed(report_.timings.transport, call);
    if (result.ok() || !Retryable(result.status()) || absl::Now() - start > kOutagePatience) return result;
    // The transport backed off up to seconds already; a jittered second more
    // keeps a fleet that lost the aggregator together from returning together.
    uint8_t jitter = 0;
    g_.env.RandomBytes(std::span(&jitter, 1));
    if (!g_.SleepFor(absl::Milliseconds(500 + 4 * jitter))) return absl::CancelledError("stopped");
  }
}

absl::StatusOr<RoundReport> ClientRound::Run() {
  absl::MutexLock lock(&g_.round_mu);
  for (Step (ClientRound::*step)() :
       {&ClientRound::CheckIn, &ClientRound::AwaitTask, &ClientRound::PrepareModel, &ClientRound::Train}) {
    TINYFED_ASSIGN_OR_RETURN(bool go_on, (this->*step)());
    if (!go_on) return report_;
  }
  TINYFED_ASSIGN_OR_RETURN(bool sent, task_->has_plain() ? SendPlainUpdate() : SendSecureUpdate());
  if (!sent) return report_;
  TINYFED_ASSIGN_OR_RETURN(bool done, AwaitResult());
  (void)done;
  return report_;
}

bool ClientRound::Finish(RoundOutcome outcome, std::string detail) {
  report_.outcome = outcome;
  report_.detail = std::move(detail);
  report_.model_version = g_.installed_version();
  return false;
}

ClientRound::Step ClientRound::Refused(const absl::Status& s) {
  if (absl::IsFailedPrecondition(s)) return Finish(RoundOutcome::kAborted, std::string(s.message()));
  return s;
}

bool ClientRound::PhaseHook(v1::Phase phase) {
  return !g_.hooks.on_phase || g_.hooks.on_phase(report_.round_id, phase);
}

absl::StatusOr<v1::AwaitResponse> ClientRound::Await(v1::Phase phase) {
  v1::AwaitRequest request;
  *request.mutable_header() = g_.Header(report_.round_id, phase);
  for (;;) {
    auto r = Persist([&] { return g_.transport->Await(request); });
    if (!r.ok() || !r->has_wait()) return r;
    const absl::Time start = absl::Now();
    if (!g_.SleepFor(absl::Milliseconds(r->wait().delay_ms()))) return absl::CancelledError("stopped");
    report_.timings.waiting += absl::Now() - start;
  }
}

absl::Status ClientRound::Submit(v1::Phase phase, v1::SubmitRequest request) {
  *request.mutable_header() = g_.Header(report_.round_id, phase);
  return Persist([&] { return g_.transport->Submit(request); }).status();
}

ClientRound::Step ClientRound::CheckIn() {
  const DeviceConditions now = g_.hooks.conditions ? g_.hooks.conditions() : DeviceConditions();
  if (std::string why = WhyIneligible(g_.config.eligibility, now, g_.env.Now(), g_.config.time_zone); !why.empty()) {
    {
      absl::MutexLock lock(&g_.mu);
      ++g_.rounds_ineligible;
      g_.eligibility_status = why;
    }
    spdlog::info("{}: not taking part now: {}", g_.config.device_id, why);
    // Power, links and use change over minutes: look again then.
    report_.retry_after = absl::Minutes(5);
    return Finish(RoundOutcome::kIneligible, std::move(why));
  }
  TINYFED_RETURN_IF_ERROR(g_.EnrollIfNeeded());
  v1::CheckInRequest checkin;
  *checkin.mutable_header() = g_.Header(0, v1::PHASE_CHECK_IN);
  checkin.set_installed_model_version(g_.installed_version());
  checkin.set_trusted_root_version(g_.trusted->root().version());
  TINYFED_ASSIGN_OR_RETURN(v1::CheckInResponse response,
                           Timed(report_.timings.transport, [&] { return g_.transport->CheckIn(checkin); }));
  AdvanceRoots(g_, response.roots());
  if (response.latest_model().version() > g_.installed_version()) {
    if (absl::Status u = UpdateModel(g_, response.latest_model(), &report_.timings); !u.ok() && LinkLost(u)) return u;
  }
  if (response.has_closed()) return Finish(RoundOutcome::kClosed, response.closed().reason());
  if (response.has_retry_later()) {
    report_.retry_after = absl::Milliseconds(response.retry_later().delay_ms());
    return Finish(RoundOutcome::kNotSelected, response.retry_later().reason());
  }
  report_.round_id = response.admitted().round_id();
  return true;
}

ClientRound::Step ClientRound::AwaitTask() {
  TINYFED_ASSIGN_OR_RETURN(v1::AwaitResponse response, Await(v1::PHASE_TASK));
  if (response.has_aborted()) return Finish(RoundOutcome::kAborted, response.aborted().reason());
  if (!response.has_task()) return Finish(RoundOutcome::kAborted, "no task in the answer");
  task_ = response.task();
  {
    absl::MutexLock lock(&g_.mu);
    g_.training = task_->training();
  }
  if (!PhaseHook(v1::PHASE_TASK)) return PowerCut();
  return true;
}

ClientRound::Step ClientRound::PrepareModel() {
  const uint64_t installed = g_.installed_version();
  if (task_->model().version() == installed) return true;
  if (task_->model().version() < installed) {
    return Finish(RoundOutcome::kSkipped,
                  StrCat("the round trains v", task_->model().version(), " but v", installed, " is installed"));
  }
  if (absl::Status u = UpdateModel(g_, task_->model(), &report_.timings); !u.ok()) {
    if (LinkLost(u)) return u;
    return Finish(RoundOutcome::kSkipped, StrCat("cannot install the round's model: ", u.message()));
  }
  return true;
}

absl::StatusOr<std::string> ClientRound::ChargeOrDecline() {
  const RoundCost cost = CostOfRound(*task_, g_.ledger->orders(), std::isfinite(g_.config.privacy_budget.epsilon));
  std::string why = cost.decline;
  if (cost.charge) {
    if (absl::Status charged = g_.ledger->Charge(*cost.charge); !charged.ok()) {
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
  absl::MutexLock lock(&g_.mu);
  ++g_.rounds_declined;
  g_.privacy_status = StrCat("declined round ", task_->round_id(), ": ", why);
  spdlog::warn("{}: {}", g_.config.device_id, g_.privacy_status);
  return why;
}

ClientRound::Step ClientRound::Train() {
  TINYFED_ASSIGN_OR_RETURN(std::string declined, ChargeOrDecline());
  if (!declined.empty()) return Finish(RoundOutcome::kSkipped, StrCat("declined: ", declined));
  TINYFED_ASSIGN_OR_RETURN(LocalUpdate trained, TrainOnLocalSamples(g_, *task_, &report_));
  if (!trained.skipped.empty()) return Finish(RoundOutcome::kSkipped, trained.skipped);
  delta_ = std::move(trained.delta);
  return true;
}

absl::StatusOr<v1::PlainUpdate> ClientRound::EncodePlain(std::vector<float> delta) {
  // Clip, then compress with error feedback: what compression drops this
  // round is added to next round's update (the residual stays on the
  // gateway, sealed like the samples).
  const v1::PlainSettings& p = task_->plain();
  dp::ClipL2(delta, p.clip());
  absl::MutexLock lock(&g_.store_mu);
  std::vector<float> residual(delta.size(), 0.0f);
  if (p.compression() != v1::COMPRESSION_NONE) {
    auto stored = g_.store->ReadSealed("residual");
    if (stored.ok() && stored->size() == residual.size() * sizeof(float)) {
      std::memcpy(residual.data(), stored->data(), stored->size());
    }
  }
  for (size_t i = 0; i < delta.size(); ++i) delta[i] += residual[i];
  std::unique_ptr<dp::SecureRandom> rng;  // drawn from only by int8's stochastic rounding
  auto uniform = [&] {
    if (!rng) rng = g_.Random(task_->round_id(), "int8");
    return static_cast<double>(rng->Next64() >> 11) * 0x1.0p-53;
  };
  proto::EncodedUpdate encoded =
      proto::EncodePlainUpdate(task_->round_id(), delta, p.compression(), p.topk_fraction(), uniform);
  absl::Status saved;
  if (p.compression() != v1::COMPRESSION_NONE) {
    for (size_t i = 0; i < delta.size(); ++i) residual[i] = delta[i] - encoded.sent[i];
    saved = g_.store->WriteSealed(
        "residual", std::string_view(reinterpret_cast<const char*>(residual.data()), residual.size() * sizeof(float)));
  }
  for (auto* v : {&delta, &residual, &encoded.sent}) sodium_memzero(v->data(), v->size() * sizeof(float));
  if (!saved.ok()) return saved;
  return std::move(encoded.update);
}

ClientRound::Step ClientRound::SendPlainUpdate() {
  absl::StatusOr<v1::PlainUpdate> update =
      Timed(report_.timings.encoding, [&] { return EncodePlain(std::move(delta_)); });
  if (!update.ok()) return Finish(RoundOutcome::kSkipped, StrCat("encoding: ", update.status().message()));
  if (!PhaseHook(v1::PHASE_UPDATE)) return PowerCut();
  v1::SubmitRequest request;
  *request.mutable_update() = *std::move(update);
  if (absl::Status sent = Submit(v1::PHASE_UPDATE, std::move(request)); !sent.ok()) return Refused(sent);
  return true;
}

ClientRound::Step ClientRound::SendSecureUpdate() {
  const v1::RoundTask& task = *task_;
  // Encoding: clipping, rotation, rounding, discrete Gaussian noise, mod 2^b.
  absl::Time start = absl::Now();
  const auto& d = task.ddg();
  auto ddg = dp::DdgParamsOf(task.ddg());
  if (!ddg.ok()) return Finish(RoundOutcome::kSkipped, StrCat("the round's DP settings: ", ddg.status().message()));
  if (delta_.size() != d.dimension() || dp::EncodedDimension(ddg->config) != task.secagg().vector_length() ||
      d.rotation_seed().size() != 32) {
    return Finish(RoundOutcome::kSkipped, StrCat("the round expects ", d.dimension(), " values encoded as ",
                                                 task.secagg().vector_length(), "; this head has ", delta_.size()));
  }
  dp::Seed rotation_seed;
  std::memcpy(rotation_seed.data(), d.rotation_seed().data(), 32);
  auto encoded = dp::DdgEncode(*ddg, delta_, rotation_seed, *g_.Random(report_.round_id, "dp"));
  sodium_memzero(delta_.data(), delta_.size() * sizeof(float));
  if (!encoded.ok()) return Finish(RoundOutcome::kSkipped, StrCat("encoding: ", encoded.status().message()));
  report_.timings.encoding = absl::Now() - start;
  if (g_.encoded_update_observer) g_.encoded_update_observer(report_.round_id, *encoded);

  // SecAgg+: advertise keys signed by the device, then three phases.
  start = absl::Now();
  auto params = secagg::ParamsOfTask(report_.round_id, task.cohort_size(), task.secagg());
  if (!params.ok()) return Finish(RoundOutcome::kSkipped, StrCat("SecAgg+ settings: ", params.status().message()));
  // The SecAgg+ keys' randomness: from the simulation seed, or 32 bytes of the Env's.
  dp::Seed secagg_seed;
  if (g_.config.simulation_seed) {
    secagg_seed = g_.SimulationSeed(report_.round_id, "secagg");
  } else {
    g_.env.RandomBytes(secagg_seed);
  }
  auto secagg_client =
      secagg::Client::Create(*params, task.secagg_id(), std::move(*encoded), secagg::SeededRandom(secagg_seed));
  sodium_memzero(secagg_seed.data(), secagg_seed.size());
  if (!secagg_client.ok()) return Finish(RoundOutcome::kSkipped, std::string(secagg_client.status().message()));
  TINYFED_ASSIGN_OR_RETURN(v1::SecAggClientMessage advertise, (*secagg_client)->AdvertiseKeys());
  auth::SignAdvertisedKeys(report_.round_id, task.secagg_id(), g_.config.device_id, *g_.device_key,
                           advertise.mutable_advertise_keys());
  report_.timings.secagg += absl::Now() - start;
  if (!PhaseHook(v1::PHASE_ADVERTISE_KEYS)) return PowerCut();
  if (absl::Status sent = Submit(v1::PHASE_ADVERTISE_KEYS, SecAggRequest(advertise)); !sent.ok()) return Refused(sent);
  for (v1::Phase phase : {v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT, v1::PHASE_UNMASKING}) {
    auto r = Await(phase);
    if (!r.ok()) return Refused(r.status());
    if (r->has_aborted()) return Finish(RoundOutcome::kAborted, r->aborted().reason());
    if (r->has_result()) return Finish(RoundOutcome::kAborted, "the round finished without this client");
    if (!r->has_secagg()) return Finish(RoundOutcome::kAborted, "unexpected answer");
    if (!PhaseHook(phase)) return PowerCut();
    start = absl::Now();
    if (absl::Status signed_by = auth::CheckNeighborSignatures(report_.round_id, r->secagg()); !signed_by.ok()) {
      return Finish(RoundOutcome::kAborted, std::string(signed_by.message()));
    }
    auto reply = (*secagg_client)->Handle(r->secagg());
    report_.timings.secagg += absl::Now() - start;
    if (!reply.ok()) return Finish(RoundOutcome::kAborted, StrCat("SecAgg+: ", reply.status().message()));
    if (absl::Status sent = Submit(phase, SecAggRequest(*reply)); !sent.ok()) return Refused(sent);
  }
  return true;
}

ClientRound::Step ClientRound::AwaitResult() {
  TINYFED_ASSIGN_OR_RETURN(v1::AwaitResponse result, Await(v1::PHASE_RESULT));
  if (result.has_aborted()) return Finish(RoundOutcome::kAborted, result.aborted().reason());
  if (!result.has_result()) return Finish(RoundOutcome::kAborted, "unexpected answer");
  if (!PhaseHook(v1::PHASE_RESULT)) return PowerCut();
  // Outside a canary the aggregator names the model this gateway has: no update.
  if (result.result().published().version() > g_.installed_version()) {
    if (absl::Status u = UpdateModel(g_, result.result().published(), &report_.timings); !u.ok() && LinkLost(u)) {
      return u;
    }
  }
  return Finish(RoundOutcome::kCompleted, "");
}

}  // namespace tinyfed::client::internal
