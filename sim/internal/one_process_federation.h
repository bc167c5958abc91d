// The federation inside this process: the real round engine (called
// directly on a simulated clock, or behind a loopback gRPC server) and one
// real client per clinic. Each round draws the clinics online, runs the
// chosen ones on threads, jumps the clock past every deadline a dropout
// leaves open, and accounts the round's traffic and simulated time.
//
// With regions (scenario [regions]), the engine is the national aggregator
// and each region has a regional engine of its own, joined to it by a
// region link on a thread; clinics call their region's engine. The clocks
// are then real (deadlines short), since rounds nest.
#ifndef TINYFED_SIM_INTERNAL_ONE_PROCESS_FEDERATION_H_
#define TINYFED_SIM_INTERNAL_ONE_PROCESS_FEDERATION_H_

#include <atomic>
#include <memory>
#include <set>
#include <span>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/internal/federation_data.h"
#include "sim/internal/sim_env.h"
#include "sim/internal/tracker.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/region_link.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/client/client.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/sim/simulation.h"

namespace tinyfed::sim::internal {

// What each round is scored on.
struct Scoring {
  std::span<const float> test_embeddings;
  std::span<const int> test_labels;
  const EvaluationSet* validation = nullptr;
  double initial_validation = 0.0;  // the zero head's accuracy on it
};

class OneProcessFederation {
 public:
  // Starts the engine (and its server for the gRPC transport) and one
  // client per clinic, enrolled and holding its training slice.
  static absl::StatusOr<std::unique_ptr<OneProcessFederation>> Start(
      const Scenario& s, const aggregator::Config& config, const models::Repository& repository,
      const std::filesystem::path& work_dir, const std::vector<Clinic>& clinics, Scoring scoring);
  ~OneProcessFederation();

  // Every round of the scenario into report.rounds (telling `progress`).
  void Run(const Progress& progress, SimulationReport& report);
  aggregator::Encoding encoding() const { return engine_->encoding(); }
  v1::Head latest_head() const { return engine_->latest_head(); }
  // What each clinic's gateway serves, on the clinic's held-out slice and
  // on `test` and `validation` weighted to its class shares (CaseMix), into
  // report.clinics (after FinishReport made them), once every gateway has
  // checked in for the final model.
  void ScoreServedHeads(const models::Dataset& test, const models::Dataset& validation, SimulationReport& report);

 private:
  OneProcessFederation(const Scenario& s, const aggregator::Config& config, const std::vector<Clinic>& clinics,
                       Scoring scoring);
  // Clinic c's gateway through Predict on `split`, weighted to the clinic's
  // class shares (CaseMix); -1 if it could not answer.
  double ServedOnCaseMix(size_t c, const models::Dataset& split);
  // The round's cohort: the clinics online, at most the cohort target.
  std::vector<size_t> ChooseOnline(int round, RoundResult& rr) const;
  // The chosen clinics' attempts, on one thread each; `waited` gets the
  // simulated seconds spent at deadlines.
  std::vector<client::RoundReport> RunClients(const std::vector<size_t>& online, double* waited);
  // With the in-process transport: once every chosen clinic acted, the
  // clock jumps past each deadline a dropout left open.
  // `selected`: clinics chosen this round (fewer than the cohort target: the
  // selection closes at its deadline).
  double AdvanceDeadlines(int selected);
  // Traffic per clinic and the slowest clinic's simulated time.
  void Account(const std::vector<size_t>& online, const std::vector<client::RoundReport>& reports, double waited,
               RoundResult& rr);
  // The regional engines, their links on threads, and the clock ticking them.
  absl::Status StartRegions(const models::Repository& repository, const std::filesystem::path& work_dir);
  // The clock clinics see: the simulated one in process, else the real one.
  base::Env& Clock() const;
  // Clinic `c`'s power now: a solar clinic's battery (clinics.solar_fraction).
  client::DeviceConditions ConditionsOf(size_t c) const;
  // The engine the clinic `c` calls: its region's, or the one engine.
  aggregator::RoundEngine* EngineOf(size_t c) const;
  // Between rounds (one_process_federation_field.cc). Each clinic with a
  // model answers clinics.cases_per_round cases (a shifted clinic's from
  // its new scanner from faults.input_shift_round on) and reports.
  void ServeCases(int round);
  // The clinics' samples with their true labels, or shifted by one.
  absl::Status SetLabels(const std::vector<size_t>& clinics, bool flipped);
  // While `version`, the round's model, is in canary, every clinic checks
  // in (and reports what it installed) until it is decided; into rr.
  void FollowCanary(uint64_t version, RoundResult& rr);
  // The drift flags raised now, into rr.
  void RecordDrift(RoundResult& rr) const;
  // The engine's outcome of the round and the model's scores after it.
  // Returns the version the round published, or 0.
  uint64_t Record(const std::vector<client::RoundReport>& reports, const SimulationReport& report, RoundResult& rr);

  const Scenario& s_;
  const aggregator::Config config_;
  const std::vector<Clinic>& clinics_;
  const Scoring scoring_;
  const bool inproc_;
  mutable SimEnv env_;
  std::unique_ptr<aggregator::RoundEngine> engine_;
  std::unique_ptr<aggregator::AggregatorServer> server_;
  std::vector<std::unique_ptr<aggregator::RoundEngine>> regions_;
  std::vector<std::unique_ptr<aggregator::RegionLink>> links_;
  std::vector<std::thread> threads_;  // the links' and the ticker's
  std::atomic<bool> stopping_ = false;
  int64_t national_round_ = 0;  // the last national round recorded
  Tracker tracker_;
  std::vector<std::unique_ptr<client::Client>> gateways_;
  std::vector<std::set<uint64_t>> installed_;           // every version each gateway installed
  std::unique_ptr<aggregator::AggregatorState> state_;  // the engine's, read for rollouts and drift
  int participations_ = 0;
};

}  // namespace tinyfed::sim::internal

#endif  // TINYFED_SIM_INTERNAL_ONE_PROCESS_FEDERATION_H_
