// The SecAgg+ server, one class per round behind this facade: collects each
// round's messages, closes the round at
// its deadline (AdvancePhase), and in the end recovers the sum of the
// survivors' inputs mod 2^b. It learns nothing about one client's input
// beyond that sum (honest-but-curious server; Bell et al. 2020).
//
//   auto server = Server::Create(params, min_survivors);
//   server->Receive(msg) ...;             // round 0 messages
//   auto out = server->AdvancePhase();    // -> round 1 requests, one per client
//   ... rounds 1, 2, 3 likewise; after round 3 AdvancePhase computes Result().
//
// Every client must share with all its neighbors that advertised keys. A
// client that rejects a neighbor's share (MaskedInputResponse.rejected)
// added no mask with it; the neighbor is then left out of the sum and its
// masking key rebuilt as for a client that dropped, so one insider sending
// shares nobody can open costs the round only that insider.
//
// Receive refuses a message of another round (INVALID_ARGUMENT), of another
// phase (FAILED_PRECONDITION), from a client that did not complete the
// previous phase or already sent this one (replay or duplicate sender), or
// one that is malformed (INVALID_ARGUMENT); a refused message leaves the
// state unchanged. AdvancePhase aborts the round (ABORTED, state kAborted)
// when fewer than min_survivors remain or a secret cannot be reconstructed.
// Thread-safe.
#ifndef TINYFED_SECURE_AGG_SERVER_H_
#define TINYFED_SECURE_AGG_SERVER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tinyfed/secure_agg/params.h"
#include "tinyfed/v1/secagg.pb.h"

namespace tinyfed::secagg {

enum class ServerPhase { kAdvertise, kShareKeys, kMaskedInput, kUnmasking, kDone, kAborted };

// A client reported that `accused`'s share to it failed authentication. The
// accused is left out of the sum; the accuser may be the liar.
struct Accusation {
  uint32_t accuser = 0;
  uint32_t accused = 0;
};

class ServerState;  // one subclass per round, in server.cc

class Server {
 public:
  // min_survivors: the fewest clients that may finish a round, at least t.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const SecAggParams& params, int min_survivors);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  absl::Status Receive(const v1::SecAggClientMessage& message);
  absl::StatusOr<std::vector<v1::SecAggServerMessage>> AdvancePhase();

  ServerPhase phase() const;
  // After kDone: the sum of the survivors' inputs mod 2^bits.
  absl::StatusOr<std::vector<uint32_t>> Result() const;
  // After kDone: the clients whose inputs are in the sum.
  std::vector<uint32_t> Survivors() const;
  // From the unmasking phase on: who rejected whose share.
  std::vector<Accusation> Accusations() const;

 private:
  Server(const SecAggParams& params, int min_survivors);
  const SecAggParams params_;
  const int min_survivors_;
  mutable absl::Mutex mu_;
  std::unique_ptr<ServerState> state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::secagg

#endif  // TINYFED_SECURE_AGG_SERVER_H_
