#include "aggregator/testing/round_engine_peer.h"

namespace tinyfed::aggregator::testing {

void RoundEnginePeer::ObserveSecureSums(RoundEngine& engine, SumObserver observer) {
  absl::MutexLock lock(&engine.mu_);
  engine.secure_sum_observer_ = std::move(observer);
}

}  // namespace tinyfed::aggregator::testing
