// Fuzzes every request handler of the aggregator: the round engine's and
// enrollment. An input is a sequence of records [method byte][length, 2
// bytes LE][request bytes]: methods 0..4 are CheckIn, Await, Submit,
// GetModelChunk and ReportTelemetry (the bytes parsed as that request, as the
// gRPC server does after its size check and signature check); method 5
// advances the clock by `length` seconds and ticks, so deadlines pass;
// method 6 is Enroll. Devices a, b and c are enrolled, and their unsigned
// AdvertiseKeys are signed here with their keys, so that inputs reach the
// SecAgg+ phases behind the signature check. Each input starts from a fresh state directory, so a crash
// reproduces from its input alone. The engine must never crash, whatever the
// order and content of requests.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "base/testing/fake_env.h"
#include "google/protobuf/stubs/logging.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/proto/authentication.h"

namespace {

using tinyfed::aggregator::RoundEngine;

// The initial model and the keys, made once per process.
struct Fixture {
  std::filesystem::path dir;
  tinyfed::models::Repository repository;
};

const Fixture& Files() {
  static const Fixture fixture = [] {
    // Invalid UTF-8 in string fields is refused by the parser, which logs
    // each refusal; millions of them would drown the fuzzer's output.
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    auto d = std::filesystem::temp_directory_path() / ("tinyfed-aggregator-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    auto repository = tinyfed::models::CreateSingleKeyRepository(d / "trust", "fuzz");
    if (!tinyfed::models::WriteBundleFile(d / "model.bundle", tinyfed::models::testing::TinyClassifier()).ok() ||
        !repository.ok()) {
      std::abort();
    }
    return Fixture{d, *repository};
  }();
  return fixture;
}

template <typename Request, typename Handler>
void Call(const uint8_t* data, size_t size, Handler&& handler) {
  Request request;
  if (request.ParseFromArray(data, static_cast<int>(size))) (void)handler(request);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixture& files = Files();
  const std::filesystem::path& dir = files.dir;
  std::filesystem::remove_all(dir / "state");
  tinyfed::aggregator::Config config = tinyfed::aggregator::DefaultConfig();
  config.state_dir = dir / "state";
  config.initial_model = dir / "model.bundle";
  config.publishing_key = files.repository.publishing_key;
  config.roots_dir = files.repository.roots_dir;
  config.cohort_size = 3;
  config.min_cohort = 2;
  config.max_rounds = 2;
  config.max_dropout = 0.4;
  config.dp.bits = 16;
  config.dp.epsilon_budget = 1e6;
  config.simulation_seed = 1;
  tinyfed::base::testing::FakeEnv env;  // declared first: it outlives the engine
  auto engine = RoundEngine::Create(config, env);
  if (!engine.ok()) std::abort();
  RoundEngine& e = **engine;
  static const auto* keys = [] {
    auto* k = new std::map<std::string, tinyfed::models::SigningKey>;
    for (const char* d : {"a", "b", "c"}) k->emplace(d, tinyfed::models::SigningKey::Generate());
    return k;
  }();
  for (const auto& [device, key] : *keys) {
    const auto token = e.devices()->IssueToken(device, absl::Hours(1));
    if (!token.ok() || !e.devices()->Enroll(tinyfed::auth::SignedEnrollRequest(device, *token, key)).ok()) std::abort();
  }
  while (size >= 3) {
    const uint8_t method = data[0] % 7;
    const size_t length = std::min<size_t>(size - 3, data[1] | (size_t{data[2]} << 8));
    const uint8_t* body = data + 3;
    switch (method) {
      case 0:
        Call<tinyfed::v1::CheckInRequest>(body, length, [&](const auto& r) { return e.CheckIn(r); });
        break;
      case 1:
        Call<tinyfed::v1::AwaitRequest>(body, length, [&](const auto& r) { return e.Await(r); });
        break;
      case 2:
        Call<tinyfed::v1::SubmitRequest>(body, length, [&](tinyfed::v1::SubmitRequest r) {
          auto key = keys->find(r.header().device_id());
          if (r.message().has_advertise_keys() && r.message().advertise_keys().signature().empty() &&
              key != keys->end()) {
            auto* a = r.mutable_message()->mutable_advertise_keys();
            a->set_signature(key->second.Sign(tinyfed::proto::AdvertiseKeysSigningMessage(
                r.header().round_id(), r.message().sender(), r.header().device_id(), a->encryption_public_key(),
                a->masking_public_key())));
          }
          return e.Submit(r);
        });
        break;
      case 3:
        Call<tinyfed::v1::ModelChunkRequest>(body, length, [&](const auto& r) { return e.GetModelChunk(r); });
        break;
      case 4:
        Call<tinyfed::v1::TelemetryRequest>(body, length, [&](const auto& r) { return e.ReportTelemetry(r); });
        break;
      case 6:
        Call<tinyfed::v1::EnrollRequest>(body, length, [&](const auto& r) { return e.devices()->Enroll(r); });
        break;
      default:
        env.Advance(absl::Seconds(data[1] | (data[2] << 8)));
        e.Tick();
        break;
    }
    const size_t used = method == 5 ? 3 : 3 + length;
    data += used;
    size -= used;
  }
  return 0;
}
