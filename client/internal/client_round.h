// One attempt at a round, from check-in to the new model, one method per
// phase. Each step returns true to go on, false when the client's part in
// the round is over (the report says how), or an error (a link or storage
// failure that outlasted the transport's retries; the caller retries later).
// Holds g.round_mu throughout: one round at a time per gateway.
#ifndef TINYFED_CLIENT_INTERNAL_CLIENT_ROUND_H_
#define TINYFED_CLIENT_INTERNAL_CLIENT_ROUND_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/internal/gateway_state.h"

namespace tinyfed::client::internal {

class ClientRound {
 public:
  explicit ClientRound(GatewayState& g) : g_(g) {}
  absl::StatusOr<RoundReport> Run() ABSL_LOCKS_EXCLUDED(g_.round_mu);

 private:
  using Step = absl::StatusOr<bool>;
  // Checks in; updates the installed model if a newer one is out.
  Step CheckIn() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);
  // The task, once the cohort is fixed.
  Step AwaitTask() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);
  // The round's model installed.
  Step PrepareModel() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);
  // Paid for first in the clinic's own ledger, then trained.
  Step Train() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);
  // A trusted-aggregator round: clip, compress with error feedback, send.
  Step SendPlainUpdate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);
  // Distributed-DP encoding, then the four SecAgg+ phases.
  Step SendSecureUpdate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);
  // The result: install the new model.
  Step AwaitResult() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_.round_mu);

  // Records the clinic's decline (and why) if the round costs more than its
  // budget allows; the reason, empty when it pays.
  absl::StatusOr<std::string> ChargeOrDecline();
  // The plain update of `delta`, with the residual of earlier rounds added
  // and this round's residual sealed for the next.
  absl::StatusOr<v1::PlainUpdate> EncodePlain(std::vector<float> delta) ABSL_LOCKS_EXCLUDED(g_.store_mu);

  // `call` (a transport call of this round), timed, and repeated while the
  // aggregator is unreachable, up to a patience that outlasts its restart.
  template <typename Call>
  auto Persist(Call&& call) -> decltype(call());
  // Waits for the server's answer in `phase`, polling as it asks.
  absl::StatusOr<v1::AwaitResponse> Await(v1::Phase phase);
  absl::Status Submit(v1::Phase phase, v1::SubmitRequest request);
  // Ends the client's part in the round.
  bool Finish(RoundOutcome outcome, std::string detail);
  // The aggregator refusing a call out of turn ends this client's part in
  // the round; any other failure goes to the caller.
  Step Refused(const absl::Status& s);
  // False: the on_phase hook cut the power here.
  bool PhaseHook(v1::Phase phase);
  Step PowerCut() { return Finish(RoundOutcome::kAborted, "stopped by the on_phase hook"); }

  GatewayState& g_;
  RoundReport report_;
  std::optional<v1::RoundTask> task_;
  std::vector<float> delta_;
};

}  // namespace tinyfed::client::internal

#endif  // TINYFED_CLIENT_INTERNAL_CLIENT_ROUND_H_
