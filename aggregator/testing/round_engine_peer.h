// What only tests may see of a RoundEngine: each SecAgg+ round's raw secure
// sum and its survivors, to check it against the clients' encoded updates
// (client/testing/client_peer.h). In tinyfed::aggregator_testing only.
#ifndef TINYFED_AGGREGATOR_TESTING_ROUND_ENGINE_PEER_H_
#define TINYFED_AGGREGATOR_TESTING_ROUND_ENGINE_PEER_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tinyfed/aggregator/round_engine.h"

namespace tinyfed::aggregator::testing {

class RoundEnginePeer {
 public:
  using SumObserver =
      std::function<void(int64_t round_id, std::span<const uint32_t> sum, const std::vector<std::string>& survivors)>;
  // Called under the engine's lock as each round ends: it must not call the engine.
  static void ObserveSecureSums(RoundEngine& engine, SumObserver observer);
};

}  // namespace tinyfed::aggregator::testing

#endif  // TINYFED_AGGREGATOR_TESTING_ROUND_ENGINE_PEER_H_
