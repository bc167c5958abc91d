#include "client/testing/client_peer.h"

#include "client/internal/gateway_state.h"

namespace tinyfed::client::testing {

void ClientPeer::ObserveEncodedUpdates(Client& client, EncodedObserver observer) {
  client.state_->encoded_update_observer = std::move(observer);
}

}  // namespace tinyfed::client::testing
