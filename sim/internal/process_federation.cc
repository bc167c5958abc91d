#include "sim/internal/process_federation.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sim/internal/metrics.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/await_path.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/process.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/client/sample_store.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::sim::internal {

using absl::StrCat;
using base::Process;

absl::StatusOr<v1::Head> RunProcesses(const Scenario& s, aggregator::Config config, const std::vector<Clinic>& clinics,
                                      const std::filesystem::path& work_dir, const std::filesystem::path& tinyfed,
                                      std::span<const float> test_embeddings, std::span<const int> test_labels,
                                      const Progress& progress, SimulationReport& report) {
  if (tinyfed.empty()) return absl::InvalidArgumentError("the processes transport needs the tinyfed binary");
  config.listen = "127.0.0.1:0";
  config.poll_interval = absl::Milliseconds(20);
  // Real time: short deadlines, so a dropout costs a second or two.
  config.selection_timeout = absl::Milliseconds(500);
  config.training_timeout = absl::Seconds(4);
  config.share_keys_timeout = config.masked_input_timeout = config.unmasking_timeout = absl::Seconds(1);
  config.security.requests_per_minute = 1000000;  // clients poll every 20 ms
  if (auto st = base::WriteFileAtomically(work_dir / "aggregator.toml", aggregator::FormatConfig(config)); !st.ok()) {
    return st;
  }
  auto devices = aggregator::DeviceRegistry::Open(config.state_dir);
  if (!devices.ok()) return devices.status();
  for (const Clinic& c : clinics) {
    auto store = client::SampleStore::Open(work_dir / c.id / "store", std::max<size_t>(c.train.size(), 1));
    if (!store.ok()) return store.status();
    if (auto st = (*store)->Add(client::ToSamples(c.train)); !st.ok()) return st;
  }
  Process aggregator_process = Process::Spawn(
      {tinyfed.string(), "aggregator", "--config", (work_dir / "aggregator.toml").string(), "--insecure"},
      work_dir / "aggregator.log");
  std::string address;
  if (base::AwaitPath(config.state_dir / "listening", std::chrono::seconds(10), &aggregator_process).ok()) {
    auto text = base::ReadFileBytes(config.state_dir / "listening", 256);
    if (text.ok()) address = std::string(absl::StripTrailingAsciiWhitespace(*text));
  }
  if (address.empty()) {
    return absl::InternalError(StrCat("the aggregator did not start; see ", (work_dir / "aggregator.log").string()));
  }
  const auto& p = s.clinics.dropout;
  std::vector<Process> clients;
  for (const Clinic& c : clinics) {
    auto token = (*devices)->IssueToken(c.id, absl::Hours(1));
    if (!token.ok()) return token.status();
    clients.push_back(Process::Spawn({tinyfed.string(),
                                      "client",
                                      "run",
                                      "--device-id",
                                      c.id,
                                      "--data-dir",
                                      (work_dir / c.id).string(),
                                      "--aggregator",
                                      address,
                                      "--insecure",
                                      "--enroll-token",
                                      *token,
                                      "--root",
                                      models::RootFile(config.roots_dir, 1).string(),
                                      "--max-samples",
                                      std::to_string(std::max<size_t>(c.train.size(), 1)),
                                      "--simulation-seed",
                                      std::to_string(s.seed),
                                      "--dropout",
                                      absl::StrFormat("%.17g,%.17g,%.17g,%.17g", p[0], p[1], p[2], p[3])},
                                     work_dir / (c.id + ".log")));
  }
  // Follow the rounds from the aggregator's database while it runs.
  const absl::Time started = absl::Now();
  size_t reported = 0;
  auto follow = [&]() -> absl::Status {
    auto state = aggregator::AggregatorState::Open(config.state_dir);
    if (!state.ok()) return state.status();
    auto rounds = (*state)->Rounds();
    auto published = (*state)->Models();
    if (!rounds.ok() || !published.ok()) return absl::OkStatus();  // busy: next time
    for (; reported < rounds->size() && (*rounds)[reported].state != "running"; ++reported) {
      const aggregator::RoundRecord& x = (*rounds)[reported];
      RoundResult rr;
      rr.round = static_cast<int>(reported + 1);
      rr.completed = x.state == "done";
      rr.reason = x.reason;
      rr.available = static_cast<int>(clinics.size());
      rr.selected = x.selected;
      rr.survivors = x.survivors;
      rr.dropouts = x.selected - x.survivors;
      rr.epsilon = rr.completed ? x.epsilon : (report.rounds.empty() ? 0.0 : report.rounds.back().epsilon);
      rr.test = report.rounds.empty() ? report.initial : report.rounds.back().test;
      for (const auto& m : *published) {
        if (m.version != x.model_version || !rr.completed) continue;
        auto bundle = aggregator::ReadPublishedBundle(m);
        if (bundle.ok()) rr.test = Evaluate(bundle->head(), test_embeddings, test_labels);
      }
      rr.wall_seconds = absl::ToDoubleSeconds(absl::Now() - started) / static_cast<double>(reported + 1);
      report.rounds.push_back(rr);
      if (progress) progress(rr, s.federation.max_rounds, absl::ZeroDuration());
    }
    return absl::OkStatus();
  };
  const absl::Time deadline = absl::Now() + absl::Minutes(30);
  // Returns at the aggregator's exit, else every 200 ms to follow.
  while (!aggregator_process.Wait(std::chrono::milliseconds(200)) && absl::Now() < deadline) {
    if (auto st = follow(); !st.ok()) return st;
  }
  if (aggregator_process.running()) {
    aggregator_process.Signal(SIGTERM);
    aggregator_process.Wait(std::chrono::seconds(10));
  }
  for (auto& c : clients) {
    if (!c.Wait(std::chrono::seconds(10))) c.Signal(SIGTERM);
  }
  if (auto st = follow(); !st.ok()) return st;
  int participations = 0;
  for (const auto& r : report.rounds) participations += r.survivors;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  report.client_rounds_per_second = seconds > 0 ? participations / seconds : 0.0;
  report.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;
  auto state = aggregator::AggregatorState::Open(config.state_dir);
  if (!state.ok()) return state.status();
  auto published = (*state)->Models();
  if (!published.ok() || published->empty()) return absl::InternalError("no model was published");
  TINYFED_ASSIGN_OR_RETURN(v1::ModelBundle last, aggregator::ReadPublishedBundle(published->back()));
  return last.head();
}

}  // namespace tinyfed::sim::internal
