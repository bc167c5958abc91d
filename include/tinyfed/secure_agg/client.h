// The SecAgg+ client: one participant's side of the four rounds.
//
//   auto client = Client::Create(params, id, input, OsRandom());
//   send(client->AdvertiseKeys());                  // round 0
//   for each server message m: send(client->Handle(m));  // rounds 1-3
//
// The client is a state machine with one class per round (phase()); this
// facade owns the current state and replaces it only when a transition
// succeeds. A message for another phase, round
// or recipient gets FAILED_PRECONDITION or INVALID_ARGUMENT and leaves the
// state unchanged, so a retry with the right message still works. After
// answering the unmasking request it is done: a second unmasking request is
// refused, so it never reveals both shares for the same peer. It also refuses
// an unmasking request that names fewer than t survivors or that puts a
// client in both lists. Secrets are wiped when no longer needed and on
// destruction. Thread-safe.
#ifndef TINYFED_SECURE_AGG_CLIENT_H_
#define TINYFED_SECURE_AGG_CLIENT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tinyfed/secure_agg/params.h"
#include "tinyfed/secure_agg/random.h"
#include "tinyfed/v1/secagg.pb.h"

namespace tinyfed::secagg {

enum class ClientPhase { kAdvertise, kShareKeys, kMaskedInput, kUnmasking, kDone };

class ClientState;  // one subclass per round, in client.cc

class Client {
 public:
  // `input` holds vector_length values below 2^bits.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const SecAggParams& params, uint32_t id,
                                                        std::vector<uint32_t> input, std::unique_ptr<Random> rng);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  absl::StatusOr<v1::SecAggClientMessage> AdvertiseKeys();
  absl::StatusOr<v1::SecAggClientMessage> Handle(const v1::SecAggServerMessage& message);
  ClientPhase phase() const;

 private:
  Client(const SecAggParams& params, uint32_t id, std::unique_ptr<Random> rng, std::unique_ptr<ClientState> state);
  const SecAggParams params_;
  const uint32_t id_;
  mutable absl::Mutex mu_;
  std::unique_ptr<Random> rng_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ClientState> state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::secagg

#endif  // TINYFED_SECURE_AGG_CLIENT_H_
