// Writes the seed corpora under DIR: small valid bundles (files and bare
// payloads) for bundle_loader_fuzz, and every message of a genuine five-client
// SecAgg+ round for secagg_fuzz, prefixed with the phase byte the target
// reads, request sequences for aggregator_fuzz, signed metadata for
// metadata_fuzz, clinic exports for csv_fuzz, and the small ONNX test
// models for onnx_import_fuzz.
#include <filesystem>
#include <fstream>
#include <random>

#include "fuzz/secagg_cohort.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/v1/service.pb.h"

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

// Request sequences for aggregator_fuzz: three devices check in (closing
// the cohort), await their tasks, advertise keys, let deadlines pass, fetch
// the model and report telemetry.
void WriteAggregatorSeeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  auto record = [](std::string& out, uint8_t method, const google::protobuf::Message& m) {
    const std::string bytes = m.SerializeAsString();
    out.push_back(static_cast<char>(method));
    out.push_back(static_cast<char>(bytes.size() & 0xff));
    out.push_back(static_cast<char>(bytes.size() >> 8));
    out += bytes;
  };
  auto header = [](const std::string& device, uint64_t round, tinyfed::v1::Phase phase) {
    tinyfed::v1::RequestHeader h;
    h.set_device_id(device);
    h.set_round_id(round);
    h.set_phase(phase);
    return h;
  };
  std::string seq;
  for (const char* device : {"a", "b", "c"}) {
    tinyfed::v1::CheckInRequest c;
    *c.mutable_header() = header(device, 0, tinyfed::v1::PHASE_CHECK_IN);
    record(seq, 0, c);
  }
  for (const char* device : {"a", "b", "c"}) {
    tinyfed::v1::AwaitRequest a;
    *a.mutable_header() = header(device, 1, tinyfed::v1::PHASE_TASK);
    record(seq, 1, a);
  }
  std::ofstream(dir / "cohort") << seq;
  for (uint32_t id = 0; id < 3; ++id) {
    tinyfed::v1::SubmitRequest r;
    *r.mutable_header() = header(std::string(1, static_cast<char>('a' + id)), 1, tinyfed::v1::PHASE_ADVERTISE_KEYS);
    r.mutable_message()->set_round_id(1);
    r.mutable_message()->set_sender(id);
    r.mutable_message()->mutable_advertise_keys()->set_encryption_public_key(std::string(32, 'e'));
    r.mutable_message()->mutable_advertise_keys()->set_masking_public_key(std::string(32, 'm'));
    record(seq, 2, r);
  }
  seq += std::string("\x05\x90\x01", 3);  // 400 s pass
  tinyfed::v1::ModelChunkRequest chunk;
  *chunk.mutable_header() = header("a", 0, tinyfed::v1::PHASE_MODEL_DOWNLOAD);
  chunk.set_version(1);
  chunk.set_max_bytes(100);
  record(seq, 3, chunk);
  tinyfed::v1::TelemetryRequest t;
  *t.mutable_header() = header("b", 0, tinyfed::v1::PHASE_TELEMETRY);
  t.mutable_telemetry()->set_model_version(1);
  t.mutable_telemetry()->add_class_counts(4);
  t.mutable_telemetry()->set_holdout_accuracy(0.5f);
  record(seq, 4, t);
  std::ofstream(dir / "round") << seq;
}

// For metadata_fuzz: a root (modes 0 and 1) and a published model (modes 2
// and 3), each prefixed with its mode byte. The keys are not the fuzzer's,
// so mode 3 (re-signed) is the one that reaches past the signatures.
void WriteMetadataSeeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const auto root_key = tinyfed::models::SigningKey::Generate();
  tinyfed::v1::RootMetadata r;
  r.set_version(2);
  r.set_federation("fuzz");
  r.set_expires_unix_seconds(4'000'000'000);
  r.mutable_root()->add_public_keys(tinyfed::models::KeyBytes(root_key.public_key()));
  r.mutable_root()->set_threshold(1);
  r.mutable_publishing()->add_public_keys(tinyfed::models::KeyBytes(root_key.public_key()));
  r.mutable_publishing()->set_threshold(1);
  const tinyfed::models::SigningKey* signer = &root_key;
  const std::string root = tinyfed::models::SignRoot(r, {&signer, 1}).SerializeAsString();
  std::ofstream(dir / "root_advance") << '\0' << root;
  std::ofstream(dir / "root_pin") << '\1' << root;
  std::mt19937 rng(2);
  tinyfed::v1::ModelBundle bundle = tinyfed::models::testing::RandomSingleOpBundle(
      tinyfed::v1::Op::kFullyConnected, tinyfed::models::testing::ConvSpec{}, rng);
  bundle.mutable_metadata()->set_version(3);
  tinyfed::v1::SignedBundle b;
  b.set_bundle(tinyfed::models::EncodeBundleFile(bundle));
  auto release = tinyfed::models::DescribeRelease(b.bundle(), "fuzz");
  if (!release.ok()) std::abort();
  release->set_version(3);
  release->set_expires_unix_seconds(1'900'000'000);
  *b.mutable_release() = tinyfed::models::SignRelease(*release, {&signer, 1});
  std::ofstream(dir / "bundle") << '\2' << b.SerializeAsString();
  std::ofstream(dir / "bundle_resigned") << '\3' << b.SerializeAsString();
}

// For csv_fuzz: the option byte, then files as clinics export them.
void WriteCsvSeeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const std::pair<const char*, std::string> seeds[] = {
      {"r_write_csv", std::string("\x05") + "\"\",\"a\",\"b\",\"y\"\r\n\"1\",1.5,NA,\"M\"\r\n\"2\",2,3,\"B\"\r\n"},
      {"semicolons", std::string("\x02") + "x;y;label\n1,5;2;4\n2,5;?;2\n3;1;4\n"},
      {"quoted", std::string("\x00") + "id,\"note, long\",v,y\n1,\"say \"\"hi\"\"\n2nd\",3,0\n2,\"\",4,1\n"},
      {"sklearn", std::string("\x20") + "3,4,benign,malignant\n1,2,3,4,0\n5,6,7,8,1\n9,8,7,6,0\n"},
      {"tabs", std::string("\x03") + "a\tb\ty\n1\t2\t-1\n3\t4\t1\n"},
  };
  for (const auto& [name, bytes] : seeds) std::ofstream(dir / name, std::ios::binary) << bytes;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::filesystem::path root = argv[1];
  WriteBundleSeeds(root / "bundle_loader_fuzz");
  WriteSecAggSeeds(root / "secagg_fuzz");
  WriteAggregatorSeeds(root / "aggregator_fuzz");
  WriteMetadataSeeds(root / "metadata_fuzz");
  WriteCsvSeeds(root / "csv_fuzz");
  std::filesystem::create_directories(root / "onnx_import_fuzz");
  // Small models: every float op, a Pad with the constant shape arithmetic
  // PyTorch writes, and PyTorch's QDQ int8 export.
  for (const char* name : {"mobile.onnx", "grouped.onnx", "fire.onnx", "niid_cnn_int8.onnx", "ds_cnn_int8.onnx"}) {
    std::filesystem::copy_file(std::filesystem::path(TINYFED_ONNX_TESTDATA) / name, root / "onnx_import_fuzz" / name,
                               std::filesystem::copy_options::overwrite_existing);
  }
  return 0;
}
