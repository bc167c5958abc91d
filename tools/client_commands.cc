// `tinyfed client ...`: a gateway's side of the round from the command line,
// for gateway integrators and tests.
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <limits>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/client/client.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/directory_lock.h"
#include "tinyfed/sim/dropout.h"
#include "tools/commands.h"
#include "tools/logging.h"
#include "tools/reading_flags.h"
#include "tools/stop_signals.h"
#include "tools/systemd_notifier.h"
#include <nlohmann/json.hpp>

namespace tinyfed::tools {
namespace {

struct ClientFlags {
  std::string device_id, data_dir, aggregator_address, root, ca, enroll_token;
  bool insecure = false;
  int64_t max_rounds = 0;
  size_t max_samples = 20000;
  int64_t simulation_seed = -1;
  std::vector<double> dropout;  // simulation: per-phase probabilities
  std::vector<std::string> idx;
  std::string csv;
  ReadingFlags reading;
  double epsilon_budget = std::numeric_limits<double>::infinity();  // the clinic's own; infinite: none
  double delta = 1e-5;
  std::string positive_class;
  double target_sensitivity = 0.95;
  bool json = false;
  LogFormat log_format = LogFormat::kText;
};

// Reads the ledger a gateway keeps (client/client.h, privacy.db) without
// its lock: SQLite lets a reader in beside the running gateway.
void PrintClientStatus(const ClientFlags& f) {
  const std::filesystem::path file = std::filesystem::path(f.data_dir) / "privacy.db";
  if (!std::filesystem::exists(file)) {
    throw CommandError(absl::NotFoundError(fmt::format(
        "{}: no privacy ledger (not a gateway's data directory, or the gateway has never started)", file.string())));
  }
  // The budget is the running gateway's setting; reading needs only delta.
  auto ledger = OrThrow(dp::PrivacyLedger::Open(file, {.epsilon = 1e300, .delta = f.delta}));
  const auto spent = OrThrow(ledger->Spent());
  const auto charges = OrThrow(ledger->Charges());
  // Per unit. A patient: every round bounds what it reveals about one
  // patient (the whole ledger). The clinic as a whole: only the clinic-level
  // rounds bound it; one DP-SGD round, which hides a patient and not a
  // dataset, leaves it unbounded.
  int64_t steps = 0, patient_rounds = 0;
  std::vector<double> clinic_rdp(ledger->orders().size(), 0.0);
  for (const auto& c : charges) {
    for (const auto& e : c.pld) steps += e.steps;
    if (c.mechanism == "patient_dp_sgd") {
      ++patient_rounds;
    } else {
      for (size_t i = 0; i < clinic_rdp.size(); ++i) clinic_rdp[i] += c.rdp[i];
    }
  }
  const int64_t clinic_rounds = static_cast<int64_t>(charges.size()) - patient_rounds;
  const double clinic_epsilon = patient_rounds > 0
                                    ? std::numeric_limits<double>::infinity()
                                    : OrThrow(dp::EpsilonFromRdp(ledger->orders(), clinic_rdp, f.delta)).epsilon;
  if (f.json) {
    nlohmann::json patient = {{"epsilon", spent.epsilon},
                              {"delta", f.delta},
                              {"accountant", spent.accountant},
                              {"rounds", charges.size()},
                              {"dp_sgd_steps", steps}};
    nlohmann::json clinic = {
        {"delta", f.delta}, {"accountant", "rdp"}, {"rounds", clinic_rounds}, {"bounded", patient_rounds == 0}};
    clinic["epsilon"] = patient_rounds > 0 ? nlohmann::json(nullptr) : nlohmann::json(clinic_epsilon);
    nlohmann::json rounds = nlohmann::json::array();
    for (const auto& c : charges) {
      rounds.push_back(
          {{"round_id", c.round}, {"mechanism", c.mechanism}, {"parameters", nlohmann::json::parse(c.parameters)}});
    }
    fmt::print("{}\n", nlohmann::json{{"patient", patient}, {"clinic", clinic}, {"charged_rounds", rounds}}.dump(2));
    return;
  }
  fmt::print("patient level: epsilon {:.4f} at delta {} ({} accountant) over {} rounds, {} DP-SGD steps\n",
             spent.epsilon, f.delta, spent.accountant == std::string("pld") ? "PLD" : "RDP", charges.size(), steps);
  if (patient_rounds > 0) {
    fmt::print("clinic level: not bounded ({} patient-level rounds hide a patient, not the clinic's dataset)\n",
               patient_rounds);
  } else {
    fmt::print("clinic level: epsilon {:.4f} at delta {} (RDP accountant) over {} rounds\n", clinic_epsilon, f.delta,
               clinic_rounds);
  }
  for (const auto& c : charges) fmt::print("round {:>5}  {}  {}\n", c.round, c.mechanism, c.parameters);
}

void RunClient(const ClientFlags& f, const TestingExtension* testing) {
  SetUpLogging(f.log_format);
  client::ClientConfig config;
  config.device_id = f.device_id;
  config.data_dir = f.data_dir;
  config.trusted_root = f.root;
  config.enrollment_token = f.enroll_token;
  config.max_samples = f.max_samples;
  config.privacy_budget = {.epsilon = f.epsilon_budget, .delta = f.delta};
  config.positive_class = f.positive_class;
  config.target_sensitivity = f.target_sensitivity;
  client::ClientHooks hooks;
  if (f.simulation_seed >= 0) {
    config.simulation_seed = static_cast<uint64_t>(f.simulation_seed);
    if (!f.dropout.empty()) {
      if (f.dropout.size() != 4 ||
          !std::all_of(f.dropout.begin(), f.dropout.end(), [](double p) { return p >= 0.0 && p <= 1.0; })) {
        throw CommandError(absl::InvalidArgumentError(
            "--dropout wants 4 probabilities in [0, 1]: training,share_keys,masked_input,unmasking"));
      }
      const std::array<double, 4> p = {f.dropout[0], f.dropout[1], f.dropout[2], f.dropout[3]};
      const uint64_t seed = static_cast<uint64_t>(f.simulation_seed);
      const std::string device = f.device_id;
      hooks.on_phase = [p, seed, device](uint64_t round, v1::Phase phase) {
        const int at = sim::DropPhase(seed, device, round, p);
        return at < 0 || sim::kDropPhases[at] != phase;
      };
    }
  }
  if (testing && testing->on_client_hooks) testing->on_client_hooks(f.device_id, &hooks);
  if (f.insecure) spdlog::warn("{}: PLAINTEXT connection (--insecure): for tests only", f.device_id);
  auto transport = OrThrow(client::ConnectGrpc(f.aggregator_address, {.ca_certificate = f.ca, .insecure = f.insecure}));
  auto c = OrThrow(client::Client::Create(config, std::move(transport), std::move(hooks)));
  if (testing && testing->on_client) testing->on_client(f.device_id, *c);
  InstallSignalHandlers();
  SystemdNotifier systemd;
  systemd.Ready(fmt::format("{} taking part in rounds", f.device_id));
  client::Client* raw = c.get();
  std::thread watcher([raw, &systemd] {
    while (!StopRequested()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      systemd.KeepAlive(absl::Now());
    }
    raw->Stop();
  });
  absl::Status status = c->Run(f.max_rounds);
  RequestStop();
  watcher.join();
  if (!status.ok()) throw CommandError(status);
}

void AddSamples(const ClientFlags& f) {
  models::Dataset data;
  if (!f.idx.empty()) {
    data = OrThrow(models::ReadIdx(f.idx[0], f.idx[1], {}, f.reading.Limits()));
  } else if (!f.csv.empty()) {
    data = OrThrow(models::ReadCsv(f.csv, f.reading.Csv()));
    LogReadingWarnings(data);
  } else {
    throw CommandError(absl::InvalidArgumentError("give --idx IMAGES LABELS or --csv FILE"));
  }
  // A running gateway writes the same store: one process at a time.
  auto lock = OrThrow(models::DirectoryLock::Acquire(f.data_dir, "tinyfed client add-samples"));
  auto store = OrThrow(client::SampleStore::Open(std::filesystem::path(f.data_dir) / "store", f.max_samples));
  const std::vector<client::Sample> samples = client::ToSamples(data);
  if (auto s = store->Add(samples); !s.ok()) throw CommandError(s);
  fmt::print("stored {} samples; the store holds {}\n", samples.size(), store->size());
}

}  // namespace

void AddClientCommands(CLI::App* app, const TestingExtension* testing) {
  auto flags = std::make_shared<ClientFlags>();
  auto* cl = app->add_subcommand("client", "a gateway's side: store samples, take part in rounds");
  cl->require_subcommand(1);
  auto* run = cl->add_subcommand("run", "take part in rounds until the federation closes");
  run->add_option("--device-id", flags->device_id, "this gateway's id")->required();
  run->add_option("--data-dir", flags->data_dir, "the gateway's data directory")->required();
  run->add_option("--aggregator", flags->aggregator_address, "host:port")->required();
  run->add_option("--root", flags->root, "the pinned root metadata (the federation's 1.root)")
      ->required()
      ->check(CLI::ExistingFile);
  run->add_option("--ca", flags->ca, "PEM file of the CA of the aggregator's TLS certificate (default: system roots)");
  run->add_flag("--insecure", flags->insecure, "plaintext connection (tests only)");
  run->add_option("--enroll-token", flags->enroll_token, "one-time token from `tinyfed enroll` (first run)");
  run->add_option("--max-rounds", flags->max_rounds, "stop after this many completed rounds (0: no limit)");
  run->add_option("--max-samples", flags->max_samples, "replay buffer size");
  run->add_option("--simulation-seed", flags->simulation_seed,
                  "simulation only: reproducible DP noise and SecAgg+ keys (never on a real gateway)");
  run->add_option("--dropout", flags->dropout,
                  "simulation only: drop probabilities for training,share_keys,masked_input,unmasking")
      ->delimiter(',')
      ->needs("--simulation-seed");
  run->add_option("--epsilon-budget", flags->epsilon_budget,
                  "this clinic's own privacy budget: rounds past it, and rounds without DP of the gateway's own, are "
                  "declined (default: none)");
  run->add_option("--delta", flags->delta, "delta of the clinic's budget (default 1e-5)");
  run->add_option("--positive-class", flags->positive_class,
                  "a label the gateway must not miss: decided by a threshold set on its held-out samples");
  run->add_option("--target-sensitivity", flags->target_sensitivity, "share of that class to catch (default 0.95)")
      ->check(CLI::Range(0.5, 0.999));
  AddLogFormatFlag(run, &flags->log_format);
  run->callback([flags, testing] { RunClient(*flags, testing); });

  auto* client_status = cl->add_subcommand("status", "the privacy this gateway spent, from its own ledger");
  client_status->add_option("--data-dir", flags->data_dir, "the gateway's data directory")->required();
  client_status->add_option("--delta", flags->delta, "delta to state epsilon at (default 1e-5, the gateway's default)");
  client_status->add_flag("--json", flags->json, "print JSON");
  client_status->callback([flags] { PrintClientStatus(*flags); });

  auto* add = cl->add_subcommand("add-samples", "store labelled samples, encrypted, in the gateway's data directory");
  add->add_option("--data-dir", flags->data_dir, "the gateway's data directory")->required();
  add->add_option("--idx", flags->idx, "IDX images and labels files")->expected(2);
  add->add_option("--csv", flags->csv, "CSV file");
  flags->reading.Add(add);
  add->add_option("--max-samples", flags->max_samples, "replay buffer size");
  add->callback([flags] { AddSamples(*flags); });
}

}  // namespace tinyfed::tools
