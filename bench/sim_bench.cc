// Simulated client-rounds per second: 20 clinics on Fashion-MNIST (6,000
// images, CNN backbone pretrained on a public slice, Dirichlet 0.5), cohort
// 20, 10 rounds with SecAgg+ and distributed DP, through the in-process
// transport and through gRPC on loopback. The counter is participations
// divided by the wall time of the federated rounds (data loading, backbone
// pretraining and baselines excluded).
#include <benchmark/benchmark.h>

#include "spdlog/spdlog.h"
#include "tinyfed/sim/scenario.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim {
namespace {

constexpr const char* kScenario = R"(
name = "bench"
seed = 1
baseline_epochs = 1
personalization_epochs = 0
[data]
path = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
labels = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
max_samples = 6000
[backbone]
arch = "cnn"
epochs = 1
[partition]
kind = "dirichlet"
alpha = 0.5
[clinics]
count = 20
[rounds]
max_rounds = 10
cohort_size = 20
min_cohort = 15
[training]
epochs = 2
[dp]
noise_multiplier = 1.0
[secagg]
max_dropout = 0.2
)";

void BM_Simulation(benchmark::State& state) {
  auto scenario = ParseScenario(kScenario, "/tmp/bench.toml");
  if (!scenario.ok()) std::abort();
  scenario->transport = state.range(0) ? TransportKind::kGrpc : TransportKind::kInProcess;
  double rate = 0.0;
  for (auto _ : state) {
    auto report = RunSimulation(*scenario, std::filesystem::temp_directory_path() / "tinyfed-sim-bench");
    if (!report.ok()) {
      state.SkipWithError(std::string(report.status().message()).c_str());
      return;
    }
    rate = report->client_rounds_per_second;
  }
  std::filesystem::remove_all(std::filesystem::temp_directory_path() / "tinyfed-sim-bench");
  state.counters["client_rounds_per_s"] = rate;
  state.SetLabel(state.range(0) ? "grpc" : "inproc");
}
BENCHMARK(BM_Simulation)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
}  // namespace tinyfed::sim

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
