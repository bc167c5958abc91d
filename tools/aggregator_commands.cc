// `tinyfed aggregator ...`, `tinyfed enroll` and `tinyfed device ...`: the
// regional server and what its operator runs beside it.
#include <fmt/format.h>

#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/backup.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/health_check.h"
#include "tinyfed/aggregator/operator_server.h"
#include "tinyfed/aggregator/region_link.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/log_event.h"
#include "tinyfed/client/transport.h"
#include "tinyfed/dp/ledger.h"
#include "tools/commands.h"
#include "tools/logging.h"
#include "tools/stop_signals.h"
#include "tools/systemd_notifier.h"

namespace tinyfed::tools {
namespace {

struct AggregatorFlags {
  std::string config;
  bool insecure = false;
  LogFormat log_format = LogFormat::kText;
  bool json = false;
  bool serving_or_draining = false;
  std::string out, backup, state_dir, address, ca, tls_server_name;
};

// SIGHUP: the config is read again and what can change while rounds run is
// taken; anything else that changed is named as needing a restart.
void Reload(const std::string& config_path, const aggregator::Config& running, aggregator::RoundEngine& engine,
            aggregator::AggregatorServer& server) {
  auto fresh = aggregator::ReadConfig(config_path);
  if (!fresh.ok()) {
    spdlog::error("reload refused, the running config stays: {}", fresh.status().ToString());
    return;
  }
  std::vector<std::string> changed = engine.ReloadDeadlines(*fresh);
  for (std::string& c : server.ReloadLimits(fresh->security)) changed.push_back(std::move(c));
  // What else differs takes effect only at the next start.
  aggregator::Config compared = *fresh;
  compared.selection_timeout = running.selection_timeout;
  compared.training_timeout = running.training_timeout;
  compared.share_keys_timeout = running.share_keys_timeout;
  compared.masked_input_timeout = running.masked_input_timeout;
  compared.unmasking_timeout = running.unmasking_timeout;
  compared.poll_interval = running.poll_interval;
  compared.security.requests_per_minute = running.security.requests_per_minute;
  compared.security.max_concurrent_calls = running.security.max_concurrent_calls;
  const bool restart_needed = aggregator::FormatConfig(compared) != aggregator::FormatConfig(running);
  base::LogEvent(
      spdlog::level::info, "config_reloaded", {},
      fmt::format("config reloaded from {}: {}{}", config_path,
                  changed.empty() ? "nothing that can change while running changed" : absl::StrJoin(changed, "; "),
                  restart_needed ? "; other changes need a restart and are not in effect" : ""));
}

// A regional aggregator's link to the national aggregator, over TLS (or
// plaintext with --insecure, tests only), enrolled at its first start with
// the token in upstream.enrollment_token_file.
std::unique_ptr<aggregator::RegionLink> ConnectUpstream(const aggregator::Config& config,
                                                        aggregator::RoundEngine& engine, bool insecure) {
  const aggregator::UpstreamConfig& u = *config.upstream;
  aggregator::RegionLinkOptions options;
  options.device_id = u.device_id;
  options.dir = config.state_dir / "upstream";
  options.poll_interval = std::max(config.poll_interval, absl::Seconds(1));
  options.simulation_seed = config.simulation_seed;
  if (!u.enrollment_token_file.empty() && !std::filesystem::exists(options.dir / "enrolled")) {
    options.enrollment_token =
        std::string(absl::StripAsciiWhitespace(OrThrow(base::ReadFileBytes(u.enrollment_token_file, 4096))));
  }
  auto national = OrThrow(client::ConnectGrpc(u.address, {.ca_certificate = u.ca_certificate, .insecure = insecure}));
  return OrThrow(aggregator::RegionLink::Create(engine, std::move(national), std::move(options)));
}

void RunAggregator(const AggregatorFlags& f, const TestingExtension* testing) {
  SetUpLogging(f.log_format);
  SystemdNotifier systemd;
  aggregator::Config config = OrThrow(aggregator::ReadConfig(f.config));
  auto engine = OrThrow(aggregator::RoundEngine::Create(config));
  if (testing && testing->on_engine) testing->on_engine(*engine);
  auto server = OrThrow(aggregator::AggregatorServer::Start(engine.get(), config.listen, config.security, f.insecure));
  std::unique_ptr<aggregator::OperatorServer> operator_port;
  if (!config.operator_port.listen.empty()) {
    operator_port = OrThrow(aggregator::OperatorServer::Start(config, &engine->metrics()));
  }
  // Tests and scripts that asked for port 0 learn the real ones here.
  auto host_of = [](const std::string& listen) { return listen.substr(0, listen.rfind(':')); };
  if (operator_port) {
    if (auto s = base::WriteFileAtomically(
            config.state_dir / "operator_listening",
            fmt::format("{}:{}\n", host_of(config.operator_port.listen), operator_port->port()));
        !s.ok()) {
      throw CommandError(s);
    }
  }
  if (auto s = base::WriteFileAtomically(config.state_dir / "listening",
                                         fmt::format("{}:{}\n", host_of(config.listen), server->port()));
      !s.ok()) {
    throw CommandError(s);
  }
  std::unique_ptr<aggregator::RegionLink> link;
  std::thread link_thread;
  if (config.upstream) {
    link = ConnectUpstream(config, *engine, f.insecure);
    link_thread = std::thread([&link] { link->Run(); });
  }
  InstallSignalHandlers();
  systemd.Ready(fmt::format("serving on port {}", server->port()));
  // After the federation closes, linger so that clients collect the last
  // result and model (and fit their personal heads to it) and hear that it
  // closed at their next check-in, then exit.
  std::optional<absl::Time> closed_at;
  const absl::Duration linger = config.poll_interval * 4 + absl::Seconds(5);
  while (!StopRequested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (TakeReloadRequest()) Reload(f.config, config, *engine, *server);
    // closed() takes the engine's lock: a hung engine stops the pings.
    const bool closed = engine->closed();
    systemd.KeepAlive(absl::Now());
    if (!closed) continue;
    if (!closed_at) closed_at = absl::Now();
    if (absl::Now() - *closed_at > linger) break;
  }
  if (StopRequested()) {
    // Probes and load balancers see NOT_SERVING first, then the port closes.
    systemd.Stopping("draining");
    server->Drain();
    const absl::Time until = absl::Now() + config.operator_port.drain_timeout;
    while (absl::Now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      systemd.KeepAlive(absl::Now());
    }
  }
  base::LogEvent(spdlog::level::info, "aggregator_stopping", {}, "aggregator stopping");
  if (link) {
    link->Stop();
    link_thread.join();
  }
  if (operator_port) operator_port->Shutdown();
  server->Shutdown();
}

void PrintStatus(const std::string& config_path, bool json) {
  const aggregator::Config config = OrThrow(aggregator::ReadConfig(config_path));
  auto state = OrThrow(aggregator::AggregatorState::Open(config.state_dir));
  auto ledger = OrThrow(dp::PrivacyLedger::Open(config.state_dir / "ledger.db",
                                                {.epsilon = config.dp.epsilon_budget, .delta = config.dp.delta}));
  const auto rounds = OrThrow(state->Rounds());
  const auto models_published = OrThrow(state->Models());
  const auto spent = OrThrow(ledger->Spent());
  const auto charges = OrThrow(ledger->Charges());
  const int64_t population = OrThrow(state->PopulationSize());
  if (json) {
    nlohmann::json out = {{"population", population},
                          {"epsilon", spent.epsilon},
                          {"accountant", spent.accountant},
                          {"unit", config.dp.unit == aggregator::DpUnit::kPatient ? "patient" : "clinic"},
                          {"delta", config.dp.delta},
                          {"epsilon_budget", config.dp.epsilon_budget}};
    out["charged_rounds"] = nlohmann::json::array();
    for (const auto& c : charges) out["charged_rounds"].push_back(c.round);
    out["rounds"] = nlohmann::json::array();
    for (const auto& r : rounds) {
      out["rounds"].push_back({{"round_id", r.round_id},
                               {"state", r.state},
                               {"selected", r.selected},
                               {"survivors", r.survivors},
                               {"model_version", r.model_version},
                               {"epsilon", r.epsilon},
                               {"reason", r.reason}});
    }
    out["models"] = nlohmann::json::array();
    for (const auto& m : models_published) {
      out["models"].push_back({{"version", m.version},
                               {"round_id", m.round_id},
                               {"file", m.file.string()},
                               {"bundle_sha256", absl::BytesToHexString(m.bundle_sha256)}});
    }
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("population {} devices; epsilon spent {:.4f} of {} (delta {}, {} level, {} accountant)\n", population,
             spent.epsilon, config.dp.epsilon_budget, config.dp.delta,
             config.dp.unit == aggregator::DpUnit::kPatient ? "patient" : "clinic",
             spent.accountant == std::string("pld") ? "PLD" : "RDP");
  for (const auto& r : rounds) {
    fmt::print("round {:>4}  {:<8} selected {:>4}  survivors {:>4}  model v{}  epsilon {:.4f}  {}\n", r.round_id,
               r.state, r.selected, r.survivors, r.model_version, r.epsilon, r.reason);
  }
  if (!models_published.empty()) {
    fmt::print("latest model v{} in {}\n", models_published.back().version, models_published.back().file.string());
  }
}

void Backup(const AggregatorFlags& f) {
  const aggregator::Config config = OrThrow(aggregator::ReadConfig(f.config));
  const aggregator::BackupSummary s = OrThrow(aggregator::BackupState(config.state_dir, f.out));
  fmt::print("backed up {} to {}: model v{}, {} rounds, {} files, {} bytes ({} attempt{})\n", config.state_dir.string(),
             f.out, s.latest_model_version, s.rounds, s.files, s.bytes, s.attempts, s.attempts == 1 ? "" : "s");
}

void Restore(const AggregatorFlags& f) {
  std::filesystem::path dir = f.state_dir;
  if (dir.empty()) {
    if (f.config.empty()) throw CommandError(absl::InvalidArgumentError("give --config or --state-dir"));
    dir = OrThrow(aggregator::ReadConfig(f.config)).state_dir;
  }
  const aggregator::BackupSummary s = OrThrow(aggregator::RestoreState(f.backup, dir));
  fmt::print("restored {} into {}: model v{}, {} rounds, {} files; start the aggregator on it\n", f.backup,
             dir.string(), s.latest_model_version, s.rounds, s.files);
}

void Health(const AggregatorFlags& f) {
  const auto health = aggregator::CheckHealth(
      f.address, {.ca_certificate = f.ca, .insecure = f.insecure, .tls_server_name = f.tls_server_name});
  if (!health.ok()) throw CommandError(health.status());
  if (*health != aggregator::Health::kServing && f.serving_or_draining) {
    fmt::print("NOT_SERVING (draining)\n");
    return;
  }
  if (*health != aggregator::Health::kServing) {
    throw CommandError(absl::UnavailableError(fmt::format("{} is NOT_SERVING (starting or draining)", f.address)));
  }
  fmt::print("SERVING\n");
}

void IssueToken(const std::string& config_path, const std::string& device_id, double hours) {
  const aggregator::Config config = OrThrow(aggregator::ReadConfig(config_path));
  auto devices = OrThrow(aggregator::DeviceRegistry::Open(config.state_dir));
  const absl::Duration lifetime = hours > 0 ? absl::Hours(hours) : config.security.enrollment_token_lifetime;
  const std::string token =
      OrThrow(devices->IssueToken(device_id.empty() ? std::nullopt : std::optional<std::string>(device_id), lifetime));
  fmt::print("{}\n", token);
  fmt::print(stderr, "one-time enrollment token{}, valid for {}; give it to the gateway (client run --enroll-token)\n",
             device_id.empty() ? "" : " for " + device_id, absl::FormatDuration(lifetime));
}

void AddDeviceCommands(CLI::App* app) {
  struct Flags {
    std::string config, device_id;
    double hours = 0;
  };
  auto f = std::make_shared<Flags>();
  auto* enroll = app->add_subcommand("enroll", "issue a one-time enrollment token for a gateway");
  enroll->add_option("--config", f->config, "the aggregator's TOML configuration")
      ->required()
      ->check(CLI::ExistingFile);
  enroll->add_option("--device-id", f->device_id, "bind the token to this device (needed to re-enroll one)");
  enroll->add_option("--hours", f->hours, "lifetime (default: security.enrollment_token_hours)");
  enroll->callback([f] { IssueToken(f->config, f->device_id, f->hours); });

  auto* device = app->add_subcommand("device", "enrolled gateways");
  device->require_subcommand(1);
  auto* revoke = device->add_subcommand("revoke", "shut a gateway out from its next call on");
  revoke->add_option("--config", f->config, "the aggregator's TOML configuration")
      ->required()
      ->check(CLI::ExistingFile);
  revoke->add_option("--device-id", f->device_id, "the device")->required();
  revoke->callback([f] {
    const aggregator::Config config = OrThrow(aggregator::ReadConfig(f->config));
    auto devices = OrThrow(aggregator::DeviceRegistry::Open(config.state_dir));
    if (auto s = devices->Revoke(f->device_id); !s.ok()) throw CommandError(s);
    fmt::print("device {} revoked\n", f->device_id);
  });
  auto* rollout = app->add_subcommand("rollout", "the canary rollout of the latest model ([rollout])");
  rollout->require_subcommand(1);
  const std::pair<const char*, const char*> rollout_actions[] = {
      {"promote", "send the model in canary to every gateway"},
      {"rollback", "roll back the model in canary"},
      {"list", "rollouts and how they were decided"}};
  for (const auto& [action, help] : rollout_actions) {
    auto* sub = rollout->add_subcommand(action, help);
    sub->add_option("--config", f->config, "the aggregator's TOML configuration")->required()->check(CLI::ExistingFile);
    sub->callback([f, action = std::string(action)] {
      const aggregator::Config config = OrThrow(aggregator::ReadConfig(f->config));
      auto state = OrThrow(aggregator::AggregatorState::Open(config.state_dir));
      if (action == "list") {
        for (const auto& r : OrThrow(state->Rollouts())) {
          fmt::print("v{:<6} {:<12} others kept v{}{}{}{}\n", r.version, r.state, r.previous,
                     r.decided_by.empty() ? "" : fmt::format("; by {}", r.decided_by),
                     r.rollback_version ? fmt::format("; rolled back as v{}", r.rollback_version) : "",
                     r.reason.empty() ? "" : fmt::format(": {}", r.reason));
        }
        return;
      }
      if (auto s = state->RequestRolloutDecision(action); !s.ok()) throw CommandError(s);
      fmt::print("requested: {}; the running aggregator acts on it within a second\n", action);
    });
  }
  auto* list = device->add_subcommand("list", "enrolled gateways and their keys");
  list->add_option("--config", f->config, "the aggregator's TOML configuration")->required()->check(CLI::ExistingFile);
  list->callback([f] {
    const aggregator::Config config = OrThrow(aggregator::ReadConfig(f->config));
    auto devices = OrThrow(aggregator::DeviceRegistry::Open(config.state_dir));
    for (const auto& d : OrThrow(devices->List())) {
      fmt::print("{:<24} key {}  enrolled {}{}\n", d.device_id, d.public_key_hex.substr(0, 16),
                 absl::FormatTime("%Y-%m-%d %H:%M", d.enrolled, absl::UTCTimeZone()),
                 d.revoked ? absl::FormatTime("  REVOKED %Y-%m-%d %H:%M", *d.revoked, absl::UTCTimeZone()) : "");
    }
  });
}

}  // namespace

void AddAggregatorCommands(CLI::App* app, const TestingExtension* testing) {
  auto f = std::make_shared<AggregatorFlags>();
  auto* agg = app->add_subcommand("aggregator", "run the regional aggregator (gRPC server)");
  agg->add_option("--config", f->config, "TOML configuration file")->check(CLI::ExistingFile);
  agg->add_flag("--insecure", f->insecure, "serve plaintext when no TLS certificate is configured (tests only)");
  AddLogFormatFlag(agg, &f->log_format);

  auto* status = agg->add_subcommand("status", "rounds, models and privacy spent, from the state directory");
  status->add_option("--config", f->config, "the aggregator's TOML configuration")
      ->required()
      ->check(CLI::ExistingFile);
  status->add_flag("--json", f->json, "print JSON");
  status->callback([f] { PrintStatus(f->config, f->json); });

  auto* check =
      agg->add_subcommand("check-config", "read a configuration as the aggregator would, and say if it is valid");
  check->add_option("--config", f->config, "the aggregator's TOML configuration")->required()->check(CLI::ExistingFile);
  check->callback([f] {
    OrThrow(aggregator::ReadConfig(f->config));
    fmt::print("{}: valid\n", f->config);
  });

  auto* backup = agg->add_subcommand("backup", "copy the state directory into one file, while the aggregator runs");
  backup->add_option("--config", f->config, "the aggregator's TOML configuration")
      ->required()
      ->check(CLI::ExistingFile);
  backup->add_option("--out", f->out, "the backup file to write (must not exist)")->required();
  backup->callback([f] { Backup(*f); });

  auto* restore = agg->add_subcommand("restore", "write a backup into a new or empty state directory");
  restore->add_option("--backup", f->backup, "a file from `tinyfed aggregator backup`")
      ->required()
      ->check(CLI::ExistingFile);
  restore->add_option("--config", f->config, "restore into this configuration's state_dir")->check(CLI::ExistingFile);
  restore->add_option("--state-dir", f->state_dir, "restore into this directory instead");
  restore->callback([f] { Restore(*f); });

  auto* health = agg->add_subcommand("health", "ask an aggregator's grpc.health.v1 service; exit 0 if SERVING");
  health->add_option("--address", f->address, "host:port of the aggregator")->required();
  health->add_option("--ca", f->ca, "PEM file of the CA of its TLS certificate (default: system roots)");
  health->add_flag("--insecure", f->insecure, "plaintext (tests only)");
  health->add_option("--tls-server-name", f->tls_server_name,
                     "the name its certificate carries, if not the address's host (a probe inside a pod)");
  health->add_flag("--serving-or-draining", f->serving_or_draining,
                   "exit 0 while draining too (a liveness probe: alive, just not taking new work)");
  health->callback([f] { Health(*f); });

  agg->callback([agg, f, testing] {
    if (!agg->get_subcommands().empty()) return;
    if (f->config.empty()) throw CLI::RequiredError("--config");
    RunAggregator(*f, testing);
  });
  AddDeviceCommands(app);
}

}  // namespace tinyfed::tools
