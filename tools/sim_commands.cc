// `tinyfed sim`: a multi-clinic experiment on the real client and aggregator.
#include <fmt/format.h>
#include <unistd.h>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/sim/scenario.h"
#include "tinyfed/sim/simulation.h"
#include "tools/commands.h"

namespace tinyfed::tools {
namespace {

struct SimFlags {
  std::string scenario, out, work, transport;
  int clinics = 0;
  int regions = -1;
  int rounds = 0;
  int64_t seed = -1;
  bool verbose = false;
  bool no_faults = false;
};

void RunSim(const SimFlags& f) {
  auto scenario = sim::ReadScenario(f.scenario);
  if (!scenario.ok()) throw CommandError(scenario.status());
  if (f.transport == "grpc") scenario->transport = sim::TransportKind::kGrpc;
  if (f.transport == "inproc") scenario->transport = sim::TransportKind::kInProcess;
  if (f.transport == "processes") scenario->transport = sim::TransportKind::kProcesses;
  if (f.clinics > 0) {
    scenario->clinics.count = f.clinics;
    scenario->federation.cohort_size = std::min(scenario->federation.cohort_size, f.clinics);
    scenario->federation.min_cohort = std::min(scenario->federation.min_cohort, scenario->federation.cohort_size);
  }
  if (f.rounds > 0) scenario->federation.max_rounds = f.rounds;
  if (f.regions >= 0) scenario->regions.count = f.regions;
  if (f.seed >= 0) scenario->seed = static_cast<uint64_t>(f.seed);
  if (f.no_faults) scenario->faults = {};
  spdlog::set_level(f.verbose ? spdlog::level::info : spdlog::level::warn);
  const std::filesystem::path work =
      f.work.empty() ? std::filesystem::path(f.out) / "work" : std::filesystem::path(f.work);
  const bool tty = isatty(fileno(stderr));
  fmt::print(stderr, "tinyfed sim: {} ({} clinics, {} rounds, {})\n", scenario->name, scenario->clinics.count,
             scenario->federation.max_rounds,
             scenario->transport == sim::TransportKind::kInProcess ? "inproc"
             : scenario->transport == sim::TransportKind::kGrpc    ? "grpc"
                                                                   : "processes");
  auto progress = [tty](const sim::RoundResult& r, int total, absl::Duration eta) {
    fmt::print(stderr, "{}round {:>3}/{}  accuracy {:6.2f}%  epsilon {:8.3f}  survivors {:>3}/{:<3} ETA {:>4}s{}",
               tty ? "\r" : "", r.round, total, 100 * r.test.accuracy, r.epsilon, r.survivors, r.selected,
               static_cast<int>(absl::ToDoubleSeconds(eta)), r.completed ? "" : "  (" + r.reason + ")");
    if (!tty || r.round == total) std::fputc('\n', stderr);
  };
  // The processes transport runs this very binary as aggregator and clinics.
  auto report = sim::RunSimulation(*scenario, work, progress, std::filesystem::read_symlink("/proc/self/exe"));
  if (!report.ok()) throw CommandError(report.status());
  if (auto s = sim::WriteReport(*report, f.out); !s.ok()) throw CommandError(s);
  std::error_code ec;
  if (f.work.empty()) std::filesystem::remove_all(work, ec);
  auto summary = base::ReadFileBytes(std::filesystem::path(f.out) / "summary.md", 1 << 20);
  if (summary.ok()) fmt::print("\n{}\n", *summary);
  fmt::print("report: {}/summary.md (report.json, rounds.csv, plots)\n", f.out);
}

}  // namespace

void AddSimCommands(CLI::App* app) {
  auto flags = std::make_shared<SimFlags>();
  auto* cmd = app->add_subcommand("sim", "simulate a multi-clinic federation on real data");
  cmd->add_option("--scenario", flags->scenario, "scenario TOML file (see sim/scenarios/)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", flags->out, "report directory")->required();
  cmd->add_option("--work", flags->work, "keep the clinics' stores and aggregator state here");
  cmd->add_option("--transport", flags->transport, "override the scenario: inproc, grpc or processes")
      ->check(CLI::IsMember({"inproc", "grpc", "processes"}));
  cmd->add_option("--clinics", flags->clinics, "override the number of clinics")->check(CLI::Range(2, 100000));
  cmd->add_option("--regions", flags->regions, "override the number of regions (0: one flat federation)")
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--rounds", flags->rounds, "override the number of rounds")->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", flags->seed, "override the scenario's seed (data splits, partition, noise)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 62));
  cmd->add_flag("--no-faults", flags->no_faults, "leave out the scenario's [faults]: the control run");
  cmd->add_flag("--verbose", flags->verbose, "log the aggregator's and clients' events");
  cmd->callback([flags] { RunSim(*flags); });
}

}  // namespace tinyfed::tools
