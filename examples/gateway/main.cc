// A minimal clinic gateway on the tinyfed client library: it stores the
// samples a clinician confirmed (here: rows of a CSV file), answers
// predictions with the installed model, and takes part in federated rounds
// until the aggregator closes the federation.
//
//   gateway --aggregator host:port --root 1.root --ca ca.pem --data-dir /var/lib/gw \
//           --device-id clinic-07 [--enroll-token T] [--samples confirmed.csv] [--rounds N]
#include <cstdio>
#include <cstring>
#include <string>

#include "tinyfed/client/client.h"
#include "tinyfed/models/dataset.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "gateway: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  tinyfed::client::ClientConfig config;
  std::string aggregator, samples_csv;
  tinyfed::client::ChannelSecurity security;
  long rounds = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--aggregator")
      aggregator = value;
    else if (flag == "--root")
      config.trusted_root = value;
    else if (flag == "--ca")
      security.ca_certificate = value;
    else if (flag == "--enroll-token")
      config.enrollment_token = value;
    else if (flag == "--data-dir")
      config.data_dir = value;
    else if (flag == "--device-id")
      config.device_id = value;
    else if (flag == "--samples")
      samples_csv = value;
    else if (flag == "--rounds")
      rounds = std::stol(value);
    else
      return Fail("unknown flag " + flag);
  }
  if (aggregator.empty() || config.data_dir.empty() || config.device_id.empty()) {
    return Fail(
        "usage: gateway --aggregator HOST:PORT --root ROOT --ca PEM --data-dir DIR --device-id ID "
        "[--enroll-token T] [--samples CSV] [--rounds N]");
  }
  auto transport = tinyfed::client::ConnectGrpc(aggregator, security);
  if (!transport.ok()) return Fail(std::string(transport.status().message()));
  auto client = tinyfed::client::Client::Create(config, std::move(*transport));
  if (!client.ok()) return Fail(std::string(client.status().message()));

  if (!samples_csv.empty()) {
    auto data = tinyfed::models::ReadCsv(samples_csv);
    if (!data.ok()) return Fail(std::string(data.status().message()));
    const std::vector<tinyfed::client::Sample> confirmed = tinyfed::client::ToSamples(*data);
    if (auto s = (*client)->AddSamples(confirmed); !s.ok()) return Fail(std::string(s.message()));
    std::printf("stored %zu confirmed samples (%zu in the store)\n", confirmed.size(), (*client)->sample_count());
  }

  if (auto s = (*client)->Run(rounds); !s.ok()) return Fail(std::string(s.message()));
  std::printf("model v%llu installed\n", static_cast<unsigned long long>((*client)->model_version()));
  if (!samples_csv.empty() && (*client)->model_version() > 0) {
    auto data = tinyfed::models::ReadCsv(samples_csv);
    auto p = (*client)->Predict(data->sample(0));
    if (p.ok()) std::printf("first sample: class %d, confidence %.3f\n", p->label, p->confidence);
  }
  return 0;
}
