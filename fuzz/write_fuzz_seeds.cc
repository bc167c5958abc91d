// Writes the seed corpora under DIR: small valid bundles (files and bare
// payloads) for bundle_loader_fuzz, and every message of a genuine five-client
// SecAgg+ round for secagg_fuzz, prefixed with the phase byte the target reads.
#include <filesystem>
#include <fstream>
#include <random>

#include "models/testing/random_bundle.h"
#include "tinyfed/models/bundle.h"
#include "fuzz/secagg_cohort.h"

namespace {

void WriteBundleSeeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(1);
  using K = tinyfed::v1::Op;
  int n = 0;
  for (auto kind : {K::kConv2D, K::kDepthwiseConv2D, K::kFullyConnected, K::kMaxPool, K::kAveragePool,
                    K::kGlobalAveragePool, K::kAdd, K::kReshape}) {
    tinyfed::models::testing::ConvSpec spec;
    spec.in_h = 5;
    spec.in_w = 4;
    spec.in_c = 3;
    spec.out_c = 4;
    const auto bundle = tinyfed::models::testing::RandomSingleOpBundle(kind, spec, rng);
    std::ofstream(dir / ("file_" + std::to_string(n))) << tinyfed::models::EncodeBundleFile(bundle);
    std::ofstream(dir / ("payload_" + std::to_string(n))) << bundle.SerializeAsString();
    ++n;
  }
}

void WriteSecAggSeeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  auto cohort = tinyfed::fuzz::MakeCohort();
  auto& clients = cohort.clients;
  auto& server = cohort.server;
  int n = 0;
  auto save = [&](uint8_t prefix, const std::string& bytes) {
    std::ofstream(dir / ("msg_" + std::to_string(n++))) << static_cast<char>(prefix) << bytes;
  };
  std::vector<tinyfed::v1::SecAggClientMessage> replies;
  for (auto& client : clients) replies.push_back(*client->AdvertiseKeys());
  for (int phase = 0; phase <= 3; ++phase) {
    for (const auto& r : replies) {
      save(static_cast<uint8_t>(phase), r.SerializeAsString());
      (void)server->Receive(r);
    }
    auto requests = server->AdvancePhase();
    if (!requests.ok()) return;
    replies.clear();
    for (const auto& req : *requests) {
      save(static_cast<uint8_t>(0x80 | ((phase + 1) % 4)), req.SerializeAsString());
      auto reply = clients[req.recipient()]->Handle(req);
      if (reply.ok()) replies.push_back(*reply);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::filesystem::path root = argv[1];
  WriteBundleSeeds(root / "bundle_loader_fuzz");
  WriteSecAggSeeds(root / "secagg_fuzz");
  return 0;
}
