// What only tests may see of a Client: the encoded update of each round in
// the clear (the client's noised contribution before SecAgg+ masks it), to
// check that the aggregator's secure sum is exactly the sum of the survivors'.
// In the testing library tinyfed::client_testing, never in a gateway.
#ifndef TINYFED_CLIENT_TESTING_CLIENT_PEER_H_
#define TINYFED_CLIENT_TESTING_CLIENT_PEER_H_

#include <cstdint>
#include <functional>
#include <span>

#include "tinyfed/client/client.h"

namespace tinyfed::client::testing {

class ClientPeer {
 public:
  using EncodedObserver = std::function<void(uint64_t round_id, std::span<const uint32_t> encoded)>;
  // Called on the round's thread; set it before the client's first round.
  static void ObserveEncodedUpdates(Client& client, EncodedObserver observer);
};

}  // namespace tinyfed::client::testing

#endif  // TINYFED_CLIENT_TESTING_CLIENT_PEER_H_
