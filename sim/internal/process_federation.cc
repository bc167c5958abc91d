#include "sim/internal/process_federation.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sim/internal/metrics.h"
#include "sim/internal/regions.h"
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

namespace {

// The "host:port" an aggregator whose state is in `state_dir` listens on,
// once it says so; empty if it does not start within 10 s.
std::string AwaitListening(const std::filesystem::path& state_dir, Process* process) {
  if (!base::AwaitPath(state_dir / "listening", std::chrono::seconds(10), process).ok()) return "";
  auto text = base::ReadFileBytes(state_dir / "listening", 256);
  return text.ok() ? std::string(absl::StripTrailingAsciiWhitespace(*text)) : "";
}

Process SpawnAggregator(const std::filesystem::path& tinyfed, const std::filesystem::path& config,
                        const std::filesystem::path& log) {
  return Process::Spawn({tinyfed.string(), "aggregator", "--config", config.string(), "--insecure"}, log);
}

// A region's aggregator process: its config written, its clinics' tokens
// issued, the national aggregator's token for it in a file.
struct RegionProcess {
  aggregator::Config config;
  std::filesystem::path config_file;
  Process process;
  std::string address;
};

absl::StatusOr<RegionProcess> StartRegion(const Scenario& s, const aggregator::Config& national,
                                          const std::string& national_address, aggregator::DeviceRegistry& devices,
                                          int r, size_t clinics, const std::filesystem::path& work_dir,
                                          const std::filesystem::path& tinyfed) {
  RegionProcess region;
  region.config = RegionalConfig(s, national, r, clinics, work_dir);
  region.config.upstream->address = national_address;
  region.config.upstream->enrollment_token_file = work_dir / (RegionId(r) + ".token");
  TINYFED_ASSIGN_OR_RETURN(std::string token, devices.IssueToken(RegionId(r), absl::Hours(1)));
  TINYFED_RETURN_IF_ERROR(base::WriteFileAtomically(region.config.upstream->enrollment_token_file, token));
  region.config_file = work_dir / (RegionId(r) + ".toml");
  TINYFED_RETURN_IF_ERROR(base::WriteFileAtomically(region.config_file, aggregator::FormatConfig(region.config)));
  region.process = SpawnAggregator(tinyfed, region.config_file, work_dir / (RegionId(r) + ".log"));
  region.address = AwaitListening(region.config.state_dir, &region.process);
  if (region.address.empty()) {
    return absl::InternalError(
        StrCat(RegionId(r), " did not start; see ", (work_dir / (RegionId(r) + ".log")).string()));
  }
  // A restart (the region killed) comes back on the same port.
  region.config.listen = region.address;
  TINYFED_RETURN_IF_ERROR(base::WriteFileAtomically(region.config_file, aggregator::FormatConfig(region.config)));
  return region;
}

}  // namespace

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
  const int regions = s.regions.count;
  const aggregator::Config regional_base = config;  // regions take these deadlines
  if (regions > 0) {
    config.selection_timeout = absl::Seconds(2);
    config.training_timeout = absl::Seconds(60);  // a whole regional round
  }
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
  Process aggregator_process = SpawnAggregator(tinyfed, work_dir / "aggregator.toml", work_dir / "aggregator.log");
  const std::string national_address = AwaitListening(config.state_dir, &aggregator_process);
  if (national_address.empty()) {
    return absl::InternalError(StrCat("the aggregator did not start; see ", (work_dir / "aggregator.log").string()));
  }
  // With regions, clinics call their region's aggregator, which joins the
  // national one's rounds.
  std::vector<RegionProcess> region_processes;
  std::vector<std::unique_ptr<aggregator::DeviceRegistry>> region_devices;
  for (int r = 0; r < regions; ++r) {
    aggregator::Config rc = RegionalConfig(s, regional_base, r, clinics.size(), work_dir);
    TINYFED_ASSIGN_OR_RETURN(auto registry, aggregator::DeviceRegistry::Open(rc.state_dir));
    region_devices.push_back(std::move(registry));
  }
  auto devices_of = [&](size_t c) {
    return regions > 0 ? region_devices[static_cast<size_t>(RegionOf(c, clinics.size(), regions))].get()
                       : devices->get();
  };
  std::vector<std::string> client_tokens;
  for (size_t c = 0; c < clinics.size(); ++c) {
    TINYFED_ASSIGN_OR_RETURN(std::string token, devices_of(c)->IssueToken(clinics[c].id, absl::Hours(1)));
    client_tokens.push_back(std::move(token));
  }
  region_devices.clear();  // the regions' own processes hold their state from here
  for (int r = 0; r < regions; ++r) {
    TINYFED_ASSIGN_OR_RETURN(RegionProcess region, StartRegion(s, regional_base, national_address, **devices, r,
                                                               clinics.size(), work_dir, tinyfed));
    region_processes.push_back(std::move(region));
  }
  auto address_of = [&](size_t c) {
    return regions > 0 ? region_processes[static_cast<size_t>(RegionOf(c, clinics.size(), regions))].address
                       : national_address;
  };
  const auto& p = s.clinics.dropout;
  std::vector<Process> clients;
  for (size_t i = 0; i < clinics.size(); ++i) {
    const Clinic& c = clinics[i];
    clients.push_back(Process::Spawn({tinyfed.string(),
                                      "client",
                                      "run",
                                      "--device-id",
                                      c.id,
                                      "--data-dir",
                                      (work_dir / c.id).string(),
                                      "--aggregator",
                                      address_of(i),
                                      "--insecure",
                                      "--enroll-token",
                                      client_tokens[i],
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
      // A national round's participants are the regions; its clinics are all.
      rr.selected = regions > 0 ? rr.available : x.selected;
      rr.survivors = x.survivors;
      rr.dropouts = rr.selected - rr.survivors;
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
  // A region killed (SIGKILL) once national round kill_round has drawn its
  // cohort, and started again at once: it rejoins the round if it had not
  // sent its keys yet, else the round goes on without it.
  bool killed = s.regions.kill_round == 0 || regions == 0;
  auto kill_region = [&]() -> absl::Status {
    if (killed) return absl::OkStatus();
    auto state = aggregator::AggregatorState::Open(config.state_dir);
    if (!state.ok()) return absl::OkStatus();
    auto rounds = (*state)->Rounds();
    if (!rounds.ok()) return absl::OkStatus();
    // Once the national cohort is drawn: the region is in the round.
    const bool under_way = std::any_of(rounds->begin(), rounds->end(), [&](const aggregator::RoundRecord& x) {
      return x.round_id == s.regions.kill_round && x.state == "running" && x.selected > 0;
    });
    if (!under_way) return absl::OkStatus();
    killed = true;
    RegionProcess& region = region_processes[static_cast<size_t>(s.regions.kill_region - 1)];
    region.process.Signal(SIGKILL);
    region.process.Wait(std::chrono::seconds(10));
    std::filesystem::remove(region.config.state_dir / "listening");
    region.process = SpawnAggregator(tinyfed, region.config_file,
                                     work_dir / StrCat(RegionId(s.regions.kill_region - 1), ".restarted.log"));
    if (AwaitListening(region.config.state_dir, &region.process).empty()) {
      return absl::InternalError(StrCat(RegionId(s.regions.kill_region - 1), " did not restart"));
    }
    return absl::OkStatus();
  };
  const absl::Time deadline = absl::Now() + absl::Minutes(30);
  // Returns at the aggregator's exit, else every 20 ms to follow (a round
  // takes a few hundred milliseconds: the kill lands within it).
  auto sample_memory = [&] {
    for (auto& c : clients) c.SampleMemory();
  };
  while (!aggregator_process.Wait(std::chrono::milliseconds(20)) && absl::Now() < deadline) {
    sample_memory();
    if (auto st = follow(); !st.ok()) return st;
    if (auto st = kill_region(); !st.ok()) return st;
  }
  if (aggregator_process.running()) {
    aggregator_process.Signal(SIGTERM);
    aggregator_process.Wait(std::chrono::seconds(10));
  }
  // The gateways fit their personal heads to the last model before they
  // exit: their memory is sampled until then.
  const absl::Time gateways_deadline = absl::Now() + absl::Seconds(10);
  for (auto& c : clients) {
    while (!c.Wait(std::chrono::milliseconds(20)) && absl::Now() < gateways_deadline) sample_memory();
    if (c.running()) c.Signal(SIGTERM);
  }
  for (const auto& c : clients) {
    if (c.peak_rss_bytes() > 0) report.gateway_peak_rss_bytes.push_back(c.peak_rss_bytes());
  }
  for (auto& region : region_processes) {
    if (!region.process.Wait(std::chrono::seconds(10))) region.process.Signal(SIGTERM);
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
