// An enrolled gateway turned insider, for tests/attacker_test.sh: the real
// client over TLS, except that every key share it deals is garbled, so that
// no neighbour can open it. It runs until the federation closes or shuts it
// out, and exits 0 either way; the test judges the aggregator, not it.
//
//   insider_gateway DEVICE_ID DATA_DIR HOST:PORT ROOT CA TOKEN SAMPLES.csv
#include <cstdio>

#include "tinyfed/client/client.h"
#include "tinyfed/client/transport.h"
#include "tinyfed/models/dataset.h"

namespace {

class GarblingTransport : public tinyfed::client::ForwardingTransport {
 public:
  using ForwardingTransport::ForwardingTransport;
  absl::StatusOr<tinyfed::v1::SubmitResponse> Submit(const tinyfed::v1::SubmitRequest& r) override {
    tinyfed::v1::SubmitRequest garbled = r;
    if (garbled.message().has_share_keys()) {
      std::string& sealed = *garbled.mutable_message()->mutable_share_keys()->mutable_sealed_shares();
      for (size_t at = 0; at < sealed.size(); at += 64) {
        sealed[at] ^= 0x5a;  // each neighbour's record
      }
    }
    return ForwardingTransport::Submit(garbled);
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fprintf(stderr, "usage: insider_gateway DEVICE_ID DATA_DIR HOST:PORT ROOT CA TOKEN SAMPLES.csv\n");
    return 2;
  }
  tinyfed::client::ClientConfig config;
  config.device_id = argv[1];
  config.data_dir = argv[2];
  config.trusted_root = argv[4];
  config.enrollment_token = argv[6];
  tinyfed::client::ChannelSecurity security;
  security.ca_certificate = argv[5];
  auto grpc = tinyfed::client::ConnectGrpc(argv[3], security);
  if (!grpc.ok()) {
    std::fprintf(stderr, "insider: %s\n", grpc.status().ToString().c_str());
    return 1;
  }
  auto client = tinyfed::client::Client::Create(config, std::make_unique<GarblingTransport>(std::move(*grpc)));
  if (!client.ok()) {
    std::fprintf(stderr, "insider: %s\n", client.status().ToString().c_str());
    return 1;
  }
  auto data = tinyfed::models::ReadCsv(argv[7]);
  if (!data.ok() || !(*client)->AddSamples(tinyfed::client::ToSamples(*data)).ok()) {
    std::fprintf(stderr, "insider: cannot store %s\n", argv[7]);
    return 1;
  }
  const absl::Status run = (*client)->Run(0);
  std::fprintf(stderr, "insider: done: %s\n", run.ToString().c_str());
  return 0;
}
