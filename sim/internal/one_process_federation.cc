#include "sim/internal/one_process_federation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sim/internal/metrics.h"
#include "sim/internal/regions.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/in_process_transport.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/sim/dropout.h"

namespace tinyfed::sim::internal {
namespace {

using absl::StrCat;

double OnlineProbability(const ClinicsSpec& c, int round) {
  if (c.availability == Availability::kAlways) return 1.0;
  // Quietest at 03:00, busiest at 15:00; round 1 starts at midnight.
  const double hour = std::fmod((round - 1) * c.round_hours, 24.0);
  const double day = 0.5 * (1.0 - std::cos(2.0 * M_PI * (hour - 3.0) / 24.0));
  return c.min_availability + (1.0 - c.min_availability) * day;
}

// The phases in which clinics answer, and how long the aggregator waits for each.
struct PhaseDeadline {
  v1::Phase phase;
  absl::Duration aggregator::Config::*timeout;
};
constexpr PhaseDeadline kSecAggDeadlines[] = {
    {v1::PHASE_ADVERTISE_KEYS, &aggregator::Config::training_timeout},
    {v1::PHASE_SHARE_KEYS, &aggregator::Config::share_keys_timeout},
    {v1::PHASE_MASKED_INPUT, &aggregator::Config::masked_input_timeout},
    {v1::PHASE_UNMASKING, &aggregator::Config::unmasking_timeout},
};
constexpr PhaseDeadline kPlainDeadlines[] = {{v1::PHASE_UPDATE, &aggregator::Config::training_timeout}};

// Enrollment tokens are timed by the engine's Env, here the simulated clock.
constexpr absl::Duration kTokenLifetime = absl::Hours(24 * 365 * 10);

}  // namespace

OneProcessFederation::OneProcessFederation(const Scenario& s, const aggregator::Config& config,
                                           const std::vector<Clinic>& clinics, Scoring scoring)
    : s_(s),
      config_(config),
      clinics_(clinics),
      scoring_(scoring),
      inproc_(s.transport == TransportKind::kInProcess && s.regions.count == 0) {}

OneProcessFederation::~OneProcessFederation() {
  // Clients first (they call the server), then the links, then the server
  // and the engines.
  gateways_.clear();
  stopping_ = true;
  for (auto& link : links_) link->Stop();
  for (auto& t : threads_) t.join();
  links_.clear();
  server_.reset();
  regions_.clear();
  engine_.reset();
}

base::Env& OneProcessFederation::Clock() const {
  return inproc_ ? static_cast<base::Env&>(env_) : base::Env::Default();
}

client::DeviceConditions OneProcessFederation::ConditionsOf(size_t c) const {
  if (static_cast<double>(c) >= s_.clinics.solar_fraction * static_cast<double>(clinics_.size())) return {};
  const absl::CivilSecond t = absl::ToCivilSecond(Clock().Now(), absl::UTCTimeZone());
  return {.mains_power = false, .battery = SolarCharge(t.hour() + t.minute() / 60.0)};
}

aggregator::RoundEngine* OneProcessFederation::EngineOf(size_t c) const {
  if (regions_.empty()) return engine_.get();
  return regions_[static_cast<size_t>(RegionOf(c, clinics_.size(), s_.regions.count))].get();
}

absl::Status OneProcessFederation::StartRegions(const models::Repository& repository,
                                                const std::filesystem::path& work_dir) {
  const int count = s_.regions.count;
  aggregator::DeviceRegistry* national = engine_->devices();
  for (int r = 0; r < count; ++r) {
    const std::string id = RegionId(r);
    aggregator::Config rc = RegionalConfig(s_, config_, r, clinics_.size(), work_dir);
    rc.roots_dir = repository.roots_dir;
    TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<aggregator::RoundEngine> region, aggregator::RoundEngine::Create(rc));
    aggregator::RegionLinkOptions options;
    options.device_id = id;
    options.dir = rc.state_dir / "upstream";
    TINYFED_ASSIGN_OR_RETURN(options.enrollment_token, national->IssueToken(id, kTokenLifetime));
    options.poll_interval = absl::Milliseconds(5);
    options.simulation_seed = s_.seed;
    const RegionsSpec& g = s_.regions;
    if (g.kill_round > 0 && g.kill_region == r + 1) {
      options.on_phase = [g](uint64_t round_id, v1::Phase phase) {
        return !(round_id == static_cast<uint64_t>(g.kill_round) && phase == g.kill_phase);
      };
    }
    TINYFED_ASSIGN_OR_RETURN(
        std::unique_ptr<aggregator::RegionLink> link,
        aggregator::RegionLink::Create(*region, std::make_unique<aggregator::InProcessTransport>(engine_.get()),
                                       std::move(options)));
    regions_.push_back(std::move(region));
    links_.push_back(std::move(link));
  }
  for (auto& link : links_) threads_.emplace_back([l = link.get()] { l->Run(); });
  // The clock every engine's deadlines run on is real: tick them often.
  threads_.emplace_back([this] {
    while (!stopping_) {
      engine_->Tick();
      for (auto& region : regions_) region->Tick();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OneProcessFederation>> OneProcessFederation::Start(
    const Scenario& s, const aggregator::Config& config, const models::Repository& repository,
    const std::filesystem::path& work_dir, const std::vector<Clinic>& clinics, Scoring scoring) {
  auto f = std::unique_ptr<OneProcessFederation>(new OneProcessFederation(s, config, clinics, scoring));
  TINYFED_ASSIGN_OR_RETURN(
      f->engine_,
      aggregator::RoundEngine::Create(config, f->inproc_ ? static_cast<base::Env&>(f->env_) : base::Env::Default()));
  if (s.regions.count > 0) TINYFED_RETURN_IF_ERROR(f->StartRegions(repository, work_dir));
  if (!f->inproc_ && s.regions.count == 0) {
    // Loopback inside one process: plaintext, but every request signed.
    aggregator::SecurityConfig security = config.security;
    security.requests_per_minute = 1000000;  // clients poll every 5 ms
    TINYFED_ASSIGN_OR_RETURN(
        f->server_, aggregator::AggregatorServer::Start(f->engine_.get(), config.listen, security, /*insecure=*/true));
  }
  for (size_t i = 0; i < clinics.size(); ++i) {
    const Clinic& c = clinics[i];
    aggregator::RoundEngine* engine = f->EngineOf(i);
    client::ClientConfig cc;
    cc.device_id = c.id;
    cc.data_dir = work_dir / c.id;
    cc.trusted_root = repository.pinned_root;
    // The simulation scores on its own held-out slice, which the gateway
    // never sees; the gateway holds out some of its samples for itself.
    cc.holdout_fraction = s.clinics.holdout_fraction;
    cc.personal_head_epochs = s.personalization_epochs;
    cc.eligibility = s.clinics.eligibility;
    cc.time_zone = absl::UTCTimeZone();
    cc.max_samples = std::max<size_t>(c.train.size(), 1);
    cc.simulation_seed = s.seed;
    // Each clinic's ledger records what it spent; the simulation reports it
    // and sets no budget of the clinics' own.
    cc.privacy_budget = {.epsilon = std::numeric_limits<double>::infinity(), .delta = s.federation.dp.delta};
    client::ClientHooks hooks;
    hooks.on_phase = [f = f.get(), id = c.id](uint64_t round_id, v1::Phase phase) {
      const int at = DropPhase(f->s_.seed, id, round_id, f->s_.clinics.dropout);
      if (at < 0 || kDropPhases[at] != phase) return true;
      f->tracker_.Update(id, [at](Tracker::Device& d) { d.dropped_at = at; });
      return false;
    };
    // Every clinic enrolls its device key, whatever the transport: the
    // aggregator checks the signed SecAgg+ keys against it.
    // A clinic enrolls at its first check-in, which on a diurnal or stormy
    // federation may come many simulated hours in: the token outlives the run.
    TINYFED_ASSIGN_OR_RETURN(cc.enrollment_token, engine->devices()->IssueToken(c.id, kTokenLifetime));
    std::unique_ptr<client::Transport> base;
    if (!f->server_) {
      base = std::make_unique<aggregator::InProcessTransport>(engine);
    } else {
      TINYFED_ASSIGN_OR_RETURN(
          base, client::ConnectGrpc(StrCat("127.0.0.1:", f->server_->port()), client::ChannelSecurity::Plaintext()));
    }
    hooks.conditions = [f = f.get(), i] { return f->ConditionsOf(i); };
    TINYFED_ASSIGN_OR_RETURN(
        std::unique_ptr<client::Client> gateway,
        client::Client::Create(cc, std::make_unique<TrackingTransport>(std::move(base), &f->tracker_, c.id),
                               std::move(hooks), f->Clock()));
    TINYFED_RETURN_IF_ERROR(gateway->AddSamples(client::ToSamples(c.train)));
    f->gateways_.push_back(std::move(gateway));
  }
  f->installed_.resize(clinics.size());
  TINYFED_ASSIGN_OR_RETURN(f->state_, aggregator::AggregatorState::Open(config.state_dir));
  return f;
}

std::vector<size_t> OneProcessFederation::ChooseOnline(int round, RoundResult& rr) const {
  std::mt19937_64 rng(s_.seed * 1'000'003 + static_cast<uint64_t>(round));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double p_online = OnlineProbability(s_.clinics, round);
  std::vector<size_t> online;
  for (size_t c = 0; c < clinics_.size(); ++c) {
    if (u(rng) < p_online) online.push_back(c);
  }
  rr.available = static_cast<int>(online.size());
  // Those whose eligibility policy declines the round now stay out of it.
  std::erase_if(online, [&](size_t c) {
    return !client::WhyIneligible(s_.clinics.eligibility, ConditionsOf(c), Clock().Now(), absl::UTCTimeZone()).empty();
  });
  rr.ineligible = rr.available - static_cast<int>(online.size());
  std::shuffle(online.begin(), online.end(), rng);
  // With regions, each region's cohort is its clinics online.
  const size_t target = regions_.empty() ? aggregator::CohortTarget(config_) : clinics_.size();
  if (online.size() > target) online.resize(target);
  std::sort(online.begin(), online.end());
  rr.selected = static_cast<int>(online.size());
  return online;
}

std::vector<client::RoundReport> OneProcessFederation::RunClients(const std::vector<size_t>& online, double* waited) {
  std::vector<std::string> chosen;
  for (size_t c : online) chosen.push_back(clinics_[c].id);
  tracker_.Reset(chosen);
  std::vector<client::RoundReport> reports(online.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < online.size(); ++i) {
    threads.emplace_back([&, i] {
      client::Client& g = *gateways_[online[i]];
      // A region's clinics wait for the national round to reach their region.
      const int attempts = regions_.empty() ? 1000 : 30000;
      for (int attempt = 0; attempt < attempts; ++attempt) {
        auto r = g.ParticipateOnce();
        if (!r.ok()) {
          reports[i].outcome = client::RoundOutcome::kAborted;
          reports[i].detail = r.status().ToString();
          break;
        }
        reports[i] = *r;
        if (r->outcome != client::RoundOutcome::kNotSelected) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      installed_[online[i]].insert(g.model_version());
      tracker_.Update(chosen[i], [](Tracker::Device& d) { d.finished = true; });
    });
  }
  *waited = inproc_ ? AdvanceDeadlines(static_cast<int>(online.size())) : 0.0;
  for (auto& th : threads) th.join();
  return reports;
}

double OneProcessFederation::AdvanceDeadlines(int selected) {
  double waited = 0.0;
  // Selection: once everyone chosen is in, a short cohort starts at the deadline.
  tracker_.WaitFor([](const auto& devices) {
    return std::all_of(devices.begin(), devices.end(),
                       [](const auto& d) { return d.second.admitted || d.second.finished; });
  });
  const int target = static_cast<int>(aggregator::CohortTarget(config_));
  if (selected < target) {
    env_.Advance(config_.selection_timeout + absl::Seconds(1));
    engine_->Tick();
    waited += absl::ToDoubleSeconds(config_.selection_timeout);
  }
  // Each phase: when every clinic still in the round has answered, a phase
  // missing a dropped clinic closes at its deadline.
  const std::span<const PhaseDeadline> phases =
      config_.secure_aggregation ? std::span<const PhaseDeadline>(kSecAggDeadlines) : kPlainDeadlines;
  for (size_t p = 0; p < phases.size(); ++p) {
    const v1::Phase phase = phases[p].phase;
    tracker_.WaitFor([phase](const auto& devices) {
      return std::all_of(devices.begin(), devices.end(), [phase](const auto& d) {
        return d.second.finished || d.second.dropped_at >= 0 || d.second.submitted.contains(phase);
      });
    });
    const auto snapshot = tracker_.Snapshot();
    // Someone still in the round after the previous phase did not answer this one.
    const bool missing = std::any_of(snapshot.begin(), snapshot.end(), [&](const auto& d) {
      const bool was_in = p == 0 ? d.second.admitted : d.second.submitted.contains(phases[p - 1].phase);
      return was_in && !d.second.submitted.contains(phase);
    });
    if (missing) {
      const absl::Duration timeout = config_.*(phases[p].timeout);
      env_.Advance(timeout + absl::Seconds(1));
      engine_->Tick();
      waited += absl::ToDoubleSeconds(timeout);
    }
  }
  return waited;
}

void OneProcessFederation::Account(const std::vector<size_t>& online, const std::vector<client::RoundReport>& reports,
                                   double waited, RoundResult& rr) {
  const auto seen = tracker_.Snapshot();
  double slowest = 0.0, up = 0.0, down = 0.0, update = 0.0, model = 0.0;
  int took_part = 0;
  for (size_t i = 0; i < online.size(); ++i) {
    const auto& d = seen.at(clinics_[online[i]].id);
    if (d.calls > 0) {
      up += static_cast<double>(d.up);
      down += static_cast<double>(d.down);
      update += static_cast<double>(d.update_up);
      model += static_cast<double>(d.model_down);
      ++took_part;
    }
    if (reports[i].outcome != client::RoundOutcome::kCompleted) continue;
    const auto& tm = reports[i].timings;
    const double compute =
        absl::ToDoubleSeconds(tm.backbone + tm.training + tm.encoding + tm.secagg) / s_.clinics.compute_speed;
    const double network = d.up * 8.0 / (s_.clinics.uplink_kbps * 1000.0) +
                           d.down * 8.0 / (s_.clinics.downlink_kbps * 1000.0) + d.calls * s_.clinics.latency_ms / 1e3;
    slowest = std::max(slowest, compute + network);
  }
  rr.bytes_up_per_client = took_part ? up / took_part : 0.0;
  rr.bytes_down_per_client = took_part ? down / took_part : 0.0;
  rr.model_bytes_down_per_client = took_part ? model / took_part : 0.0;
  const v1::Head head = engine_->latest_head();
  const double coordinates = static_cast<double>(took_part) * (head.weights_size() + head.bias_size());
  if (coordinates > 0) {
    rr.update_bits_per_coordinate = 8.0 * update / coordinates;
    rr.protocol_bits_per_coordinate = 8.0 * (up - update) / coordinates;
  }
  rr.simulated_seconds = slowest + waited;
}

uint64_t OneProcessFederation::Record(const std::vector<client::RoundReport>& reports, const SimulationReport& report,
                                      RoundResult& rr) {
  const int64_t engine_round =
      static_cast<int64_t>(std::max_element(reports.begin(), reports.end(), [](const auto& a, const auto& b) {
                             return a.round_id < b.round_id;
                           })->round_id);
  std::optional<v1::AwaitResponse> outcome = engine_->Outcome(engine_round);
  if (!regions_.empty()) {
    // The national round the regions' rounds took part in; it ended before
    // they did, unless no region got that far.
    outcome = engine_->Outcome(national_round_ + 1);
    for (int i = 0; !outcome && i < 2000; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      outcome = engine_->Outcome(national_round_ + 1);
    }
    if (outcome) ++national_round_;
  }
  if (outcome && outcome->has_result()) {
    rr.completed = true;
    rr.survivors = static_cast<int>(outcome->result().survivors());
    rr.epsilon = outcome->result().epsilon_spent();
    participations_ += rr.survivors;
  } else {
    rr.reason = outcome && outcome->has_aborted() ? outcome->aborted().reason() : "the round did not finish";
    rr.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;
  }
  rr.dropouts = rr.selected - rr.survivors;
  const v1::Head head = engine_->latest_head();
  rr.test = Evaluate(head, scoring_.test_embeddings, scoring_.test_labels);
  if (!scoring_.validation->labels.empty()) {
    rr.validation_accuracy = Evaluate(head, scoring_.validation->embeddings, scoring_.validation->labels).accuracy;
  }
  return outcome && outcome->has_result() ? outcome->result().published().version() : 0;
}

void OneProcessFederation::ScoreServedHeads(const models::Dataset& test, const models::Dataset& validation,
                                            SimulationReport& report) {
  // A gateway checks in now and then whether or not it is chosen: each
  // installs the final model (the federation is closed, so no round
  // starts) and serves from it, as the federated head it is compared with.
  if (engine_->closed()) {
    for (auto& gateway : gateways_) (void)gateway->ParticipateOnce();
  }
  for (size_t c = 0; c < clinics_.size() && c < report.clinics.size(); ++c) {
    const models::Dataset& holdout = clinics_[c].holdout;
    ClinicResult& r = report.clinics[c];
    size_t right = 0;
    for (size_t i = 0; i < holdout.size(); ++i) {
      auto p = gateways_[c]->Predict(holdout.sample(i));
      if (!p.ok()) break;
      right += p->label == holdout.labels[i];
      r.served_personal = r.served_personal || p->head == client::Head::kPersonal;
    }
    r.served = holdout.size() ? static_cast<double>(right) / static_cast<double>(holdout.size()) : 0.0;
    if (!MeasuresOnCaseMix(s_)) continue;
    r.test_mix.served = ServedOnCaseMix(c, test);
    r.validation_mix.served = ServedOnCaseMix(c, validation);
  }
}

double OneProcessFederation::ServedOnCaseMix(size_t c, const models::Dataset& split) {
  std::vector<bool> right(split.size());
  for (size_t i = 0; i < split.size(); ++i) {
    auto p = gateways_[c]->Predict(split.sample(i));
    if (!p.ok()) return -1.0;
    right[i] = p->label == split.labels[i];
  }
  return CaseMix(clinics_[c], split.labels, split.label_names.size()).Accuracy(right);
}

void OneProcessFederation::Run(const Progress& progress, SimulationReport& report) {
  const absl::Time federation_started = absl::Now();
  const int rounds = s_.federation.max_rounds;
  for (int round = 1; round <= rounds; ++round) {
    const absl::Time round_started = absl::Now();
    RoundResult rr;
    rr.round = round;
    ServeCases(round);
    const std::vector<size_t> online = ChooseOnline(round, rr);
    if (rr.selected < config_.min_cohort) {
      rr.reason = StrCat("only ", rr.selected, " clinics online (", config_.min_cohort, " needed)");
      rr.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;
      rr.test = report.rounds.empty() ? report.initial : report.rounds.back().test;
      rr.validation_accuracy =
          report.rounds.empty() ? scoring_.initial_validation : report.rounds.back().validation_accuracy;
      rr.simulated_seconds = absl::ToDoubleSeconds(config_.selection_timeout);
      rr.wall_seconds = absl::ToDoubleSeconds(absl::Now() - round_started);
      report.rounds.push_back(rr);
      if (progress) progress(rr, rounds, absl::ZeroDuration());
      continue;
    }
    const bool flipped = round == s_.faults.flipped_labels_round;
    // A store that cannot take the samples fails the simulation's premise: said, not hidden.
    if (absl::Status s = flipped ? SetLabels(online, true) : absl::OkStatus(); !s.ok()) {
      spdlog::error("round {}: the flipped labels are not in place: {}", round, s.ToString());
    }
    double waited = 0.0;  // simulated seconds spent waiting for deadlines
    const std::vector<client::RoundReport> reports = RunClients(online, &waited);
    if (absl::Status s = flipped ? SetLabels(online, false) : absl::OkStatus(); !s.ok()) {
      spdlog::error("round {}: the true labels are not restored: {}", round, s.ToString());
    }
    // As Client::Run does, each member reports on the model the round left
    // it with (after a botched export, on its labels put right).
    for (size_t i = 0; i < online.size(); ++i) {
      if (reports[i].outcome == client::RoundOutcome::kCompleted) (void)gateways_[online[i]]->SendTelemetry();
    }
    Account(online, reports, waited, rr);
    FollowCanary(Record(reports, report, rr), rr);
    RecordDrift(rr);
    rr.wall_seconds = absl::ToDoubleSeconds(absl::Now() - round_started);
    if (inproc_) env_.Advance(absl::Hours(s_.clinics.round_hours));
    report.rounds.push_back(rr);
    if (progress) {
      const absl::Duration per_round = (absl::Now() - federation_started) / round;
      progress(rr, rounds, per_round * (rounds - round));
    }
  }
  const double federation_seconds = absl::ToDoubleSeconds(absl::Now() - federation_started);
  report.client_rounds_per_second = federation_seconds > 0 ? participations_ / federation_seconds : 0.0;
  report.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;
}

}  // namespace tinyfed::sim::internal
