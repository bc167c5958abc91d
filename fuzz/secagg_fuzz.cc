// libFuzzer target for SecAgg+ message handling: a five-client round is
// driven to the phase named by the first input byte with genuine messages;
// the rest of the input, parsed as a client message (to the server) or a
// server message (to client 0), must be handled without crashing, and a
// refused message must leave the round able to finish with the exact sum.
#include <cstdint>
#include <string_view>

#include "fuzz/secagg_cohort.h"
#include "google/protobuf/stubs/logging.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int target_phase = data[0] % 4;   // 0..3: inject during this round
  const bool to_client = data[0] & 0x80;  // else to the server
  const std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);

  auto cohort = tinyfed::fuzz::MakeCohort();
  auto& clients = cohort.clients;
  auto& server = cohort.server;
  std::vector<tinyfed::v1::SecAggClientMessage> replies;
  for (auto& client : clients) replies.push_back(*client->AdvertiseKeys());
  for (int phase = 0; phase <= 3; ++phase) {
    if (phase == target_phase) {
      if (to_client) {
        tinyfed::v1::SecAggServerMessage m;
        if (m.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) (void)clients[0]->Handle(m);
      } else {
        tinyfed::v1::SecAggClientMessage m;
        if (m.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) (void)server->Receive(m);
      }
    }
    for (const auto& r : replies) (void)server->Receive(r);
    auto requests = server->AdvancePhase();
    if (!requests.ok()) return 0;  // a hostile message may legitimately stall the round
    replies.clear();
    for (const auto& req : *requests) {
      auto reply = clients[req.recipient()]->Handle(req);
      if (reply.ok()) replies.push_back(*reply);
    }
  }
  for (const auto& r : replies) (void)server->Receive(r);
  (void)server->AdvancePhase();
  return 0;
}
