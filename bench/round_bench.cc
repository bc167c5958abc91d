// One federated round over loopback gRPC, with the real aggregator and
// client code.
//
// BM_ClientRound/<cold>: a gateway-sized client (1,000 local samples of
// Fashion-MNIST shape through the CNN backbone, 84-dim embeddings, 10
// classes, 5 local epochs, batch 32) in a cohort of 10; counters split its
// round into backbone (embeddings; cold = cache emptied first), training,
// encoding (clip, rotation, rounding, discrete Gaussian noise), SecAgg+
// (client crypto), transport (time inside gRPC calls, including the new
// model's download) and waiting (for the other clients, polling every 20 ms).
// Milliseconds per round, after one warm-up round.
//
// BM_AggregatorRound/<n>: the wall time of a whole round with n in-process
// clients (threads, 20 samples each) against one aggregator: check-in,
// selection, four SecAgg+ phases, decoding, server optimizer, ledger charge,
// signing and publishing, and every client installing the new model. All of
// it shares this machine's cores, so it is an upper bound on the server's
// own work.
#include <benchmark/benchmark.h>

#include <random>
#include <thread>

#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/client/client.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/models/trust.h"

namespace tinyfed {
namespace {

models::Dataset ImageData(size_t n, uint64_t seed) {
  models::Dataset d;
  d.height = 28;
  d.width = 28;
  d.label_names = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> pixel(0.0f, 255.0f);
  for (size_t i = 0; i < n; ++i) {
    for (int p = 0; p < 28 * 28; ++p) d.features.push_back(pixel(rng));
    d.labels.push_back(static_cast<int>(i % 10));
  }
  return d;
}

// A federation on loopback: aggregator state, keys and the CNN bundle in a
// temporary directory.
struct Federation {
  std::filesystem::path dir;
  std::unique_ptr<aggregator::RoundEngine> engine;
  std::unique_ptr<aggregator::AggregatorServer> server;
  std::string address;
  std::filesystem::path pinned_root;

  explicit Federation(int cohort) {
    dir = std::filesystem::temp_directory_path() /
          ("tinyfed-round-bench-" + std::to_string(getpid()) + "-" + std::to_string(cohort));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const models::Dataset calibration = ImageData(64, 1);
    auto float_bundle = models::BuildBackbone(models::Architecture::kCnn, calibration, 1);
    auto int8 = models::QuantizePostTraining(*float_bundle, calibration, {});
    if (!int8.ok() || !models::WriteBundleFile(dir / "cnn.tfb", *int8).ok()) std::abort();
    auto repo = models::CreateSingleKeyRepository(dir / "trust", "bench");
    if (!repo.ok()) std::abort();
    pinned_root = repo->pinned_root;
    aggregator::Config c = aggregator::DefaultConfig();
    c.listen = "127.0.0.1:0";
    c.state_dir = dir / "state";
    c.initial_model = dir / "cnn.tfb";
    c.publishing_key = repo->publishing_key;
    c.roots_dir = repo->roots_dir;
    c.cohort_size = cohort;
    c.min_cohort = std::max(2, cohort / 2);
    c.poll_interval = absl::Milliseconds(20);
    c.dp.epsilon_budget = 1e9;
    c.max_dropout = 0.1;
    c.security.requests_per_minute = 1000000;
    engine = std::move(*aggregator::RoundEngine::Create(c));
    // Plaintext loopback; requests are signed and verified as in production.
    server = std::move(*aggregator::AggregatorServer::Start(engine.get(), c.listen, c.security, /*insecure=*/true));
    address = "127.0.0.1:" + std::to_string(server->port());
  }
  ~Federation() {
    server.reset();
    engine.reset();
    std::filesystem::remove_all(dir);
  }

  std::unique_ptr<client::Client> NewClient(const std::string& id, size_t samples) {
    client::ClientConfig cc;
    cc.device_id = id;
    cc.data_dir = dir / id;
    cc.trusted_root = pinned_root;
    cc.holdout_fraction = 0.0;
    cc.enrollment_token = *engine->devices()->IssueToken(id, absl::Hours(1));
    auto c = client::Client::Create(cc, std::move(*client::ConnectGrpc(address, client::ChannelSecurity::Plaintext())));
    if (!c.ok()) std::abort();
    const models::Dataset data = ImageData(samples, std::hash<std::string>()(id));
    if (!(*c)->AddSamples(client::ToSamples(data)).ok()) std::abort();
    return std::move(*c);
  }
};

// Runs ParticipateOnce until the client takes part in a round.
client::RoundReport Participate(client::Client& c) {
  for (;;) {
    auto r = c.ParticipateOnce();
    if (!r.ok()) std::abort();
    if (r->outcome == client::RoundOutcome::kCompleted) return *r;
    if (r->outcome != client::RoundOutcome::kNotSelected) std::abort();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void BM_ClientRound(benchmark::State& state) {
  const bool cold = state.range(0) != 0;
  constexpr int kCohort = 10;
  Federation f(kCohort);
  auto gateway = f.NewClient("gateway", 1000);
  std::vector<std::unique_ptr<client::Client>> others;
  for (int i = 1; i < kCohort; ++i) others.push_back(f.NewClient("peer-" + std::to_string(i), 20));
  auto round = [&] {
    std::vector<std::thread> peers;
    for (auto& o : others) peers.emplace_back([&o] { Participate(*o); });
    const client::RoundReport r = Participate(*gateway);
    for (auto& t : peers) t.join();
    return r;
  };
  round();  // every client installs the model and fills its cache once
  client::RoundTimings total;
  for (auto _ : state) {
    if (cold) std::filesystem::remove(f.dir / "gateway" / "store" / "embeddings");
    const client::RoundReport r = round();
    total.backbone += r.timings.backbone;
    total.training += r.timings.training;
    total.encoding += r.timings.encoding;
    total.secagg += r.timings.secagg;
    total.transport += r.timings.transport;
    total.waiting += r.timings.waiting;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["backbone_ms"] = absl::ToDoubleMilliseconds(total.backbone) / n;
  state.counters["training_ms"] = absl::ToDoubleMilliseconds(total.training) / n;
  state.counters["encoding_ms"] = absl::ToDoubleMilliseconds(total.encoding) / n;
  state.counters["secagg_ms"] = absl::ToDoubleMilliseconds(total.secagg) / n;
  state.counters["transport_ms"] = absl::ToDoubleMilliseconds(total.transport) / n;
  state.counters["waiting_ms"] = absl::ToDoubleMilliseconds(total.waiting) / n;
}
BENCHMARK(BM_ClientRound)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_AggregatorRound(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Federation f(n);
  std::vector<std::unique_ptr<client::Client>> clients;
  for (int i = 0; i < n; ++i) clients.push_back(f.NewClient("clinic-" + std::to_string(i), 20));
  auto round = [&] {
    std::vector<std::thread> threads;
    for (auto& c : clients) threads.emplace_back([&c] { Participate(*c); });
    for (auto& t : threads) t.join();
  };
  round();  // first download of the model
  for (auto _ : state) round();
  state.counters["clients"] = n;
}
BENCHMARK(BM_AggregatorRound)->Arg(20)->Arg(100)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

}  // namespace
}  // namespace tinyfed

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // one line per client per round would drown the table
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
