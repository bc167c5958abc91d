#include "tinyfed/sim/simulation.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "sim/internal/federation_data.h"
#include "sim/internal/metrics.h"
#include "sim/internal/one_process_federation.h"
#include "sim/internal/process_federation.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::sim {

using absl::StrCat;
using internal::Clinic;
using internal::Embed;
using internal::Evaluate;
using internal::EvaluationSet;
using internal::FinishReport;

namespace {

// report.positive_class from the scenario's [decision], checked against
// the data's labels; a threshold needs a validation split to be chosen on.
absl::Status SetPositiveClass(const Scenario& s, size_t validation_samples, SimulationReport& report) {
  if (s.decision.positive_class.empty()) return absl::OkStatus();
  const auto& names = report.label_names;
  const auto at = std::find(names.begin(), names.end(), s.decision.positive_class);
  if (at == names.end()) {
    return absl::InvalidArgumentError(StrCat(s.source.string(), ": decision.positive_class '",
                                             s.decision.positive_class, "' is not one of the data's ", names.size(),
                                             " labels"));
  }
  if (validation_samples == 0) {
    return absl::InvalidArgumentError(StrCat(s.source.string(),
                                             ": decision.positive_class needs a validation split "
                                             "(data.validation_fraction > 0) to choose its threshold on"));
  }
  report.positive_class = static_cast<int>(at - names.begin());
  return absl::OkStatus();
}

// The scenario's federation on this run's files, with deadlines for the
// transport: simulated time in process, real (and short) otherwise.
aggregator::Config FederationConfig(const Scenario& s, const models::Repository& repository,
                                    const std::filesystem::path& work_dir) {
  aggregator::Config config = s.federation;
  config.listen = "127.0.0.1:0";
  config.state_dir = work_dir / "aggregator";
  config.initial_model = work_dir / "backbone.bundle";
  config.publishing_key = repository.publishing_key;
  config.roots_dir = repository.roots_dir;
  config.reset_head = true;
  config.simulation_seed = s.seed;
  const bool simulated_clock = s.transport == TransportKind::kInProcess && s.regions.count == 0;
  config.poll_interval = absl::Milliseconds(simulated_clock ? 1 : 5);
  if (!simulated_clock) {
    // Real time: deadlines short enough that a dropout costs seconds, not minutes.
    config.selection_timeout = absl::Milliseconds(300);
    config.training_timeout = absl::Seconds(4);
    config.share_keys_timeout = config.masked_input_timeout = config.unmasking_timeout = absl::Seconds(1);
  }
  if (s.regions.count > 0) {
    // The national aggregator: the regions are its participants, its noise
    // planned for the clinics the flat federation's cohort would have, and
    // its training deadline holds a whole regional round.
    config.national_clinics = config.cohort_size;
    config.cohort_size = s.regions.count;
    config.min_cohort = std::max(2, s.regions.count - 1);
    config.over_selection = 0.0;
    config.selection_timeout = absl::Seconds(2);
    config.training_timeout = absl::Seconds(60);
  }
  return config;
}

}  // namespace

absl::StatusOr<FederationShape> DescribeFederation(const Scenario& s) {
  auto splits = internal::LoadData(s);
  if (!splits.ok()) return splits.status();
  auto backbone = internal::BackboneShape(s, splits->public_data);
  if (!backbone.ok()) return absl::Status(backbone.status().code(), StrCat("backbone: ", backbone.status().message()));
  auto clinics = internal::MakeClinics(s, splits->pool);
  if (!clinics.ok()) return clinics.status();
  FederationShape shape;
  shape.embedding_size = backbone->head().in_features();
  shape.classes = backbone->head().num_classes();
  for (const Clinic& c : *clinics) shape.clinic_train_sizes.push_back(c.train.size());
  return shape;
}

absl::StatusOr<SimulationReport> RunSimulation(const Scenario& s, const std::filesystem::path& work_dir,
                                               const Progress& progress, const std::filesystem::path& tinyfed_binary) {
  const absl::Time started = absl::Now();
  SimulationReport report;
  report.scenario = s;
  report.delta = s.federation.dp.delta;
  std::error_code ec;
  std::filesystem::remove_all(work_dir, ec);
  std::filesystem::create_directories(work_dir, ec);
  if (ec) return absl::FailedPreconditionError(StrCat("cannot create ", work_dir.string(), ": ", ec.message()));

  auto splits = internal::LoadData(s);
  if (!splits.ok()) return splits.status();
  auto backbone = internal::MakeBackbone(s, splits->public_data, &report.backbone);
  if (!backbone.ok()) return absl::Status(backbone.status().code(), StrCat("backbone: ", backbone.status().message()));
  // Every head starts from zero: the federation has to learn the task.
  for (auto& w : *backbone->mutable_head()->mutable_weights()) w = 0.0f;
  for (auto& b : *backbone->mutable_head()->mutable_bias()) b = 0.0f;
  auto clinics = internal::MakeClinics(s, splits->pool);
  if (!clinics.ok()) return clinics.status();
  auto interpreter = models::Interpreter::Create(*backbone);
  if (!interpreter.ok()) return interpreter.status();
  report.embedding_size = (*interpreter)->embedding_size();
  const std::vector<float> test_embeddings = Embed(**interpreter, splits->test);
  report.test_samples = splits->test.size();
  report.label_names = splits->test.label_names;
  TINYFED_RETURN_IF_ERROR(SetPositiveClass(s, splits->validation.size(), report));
  const v1::Head zero = backbone->head();
  report.initial = Evaluate(zero, test_embeddings, splits->test.labels);
  const EvaluationSet validation{Embed(**interpreter, splits->validation), splits->validation.labels};
  report.validation_samples = splits->validation.size();
  const double initial_validation =
      validation.labels.empty() ? 0.0 : Evaluate(zero, validation.embeddings, validation.labels).accuracy;

  for (Clinic& c : *clinics) {
    c.train_embeddings = Embed(**interpreter, c.train);
    c.holdout_embeddings = Embed(**interpreter, c.holdout);
  }
  internal::ScoreBaselines(s, *clinics, zero, test_embeddings, splits->test.labels, validation, report);

  // The federation: aggregator and clinics on the real code.
  if (auto st = models::WriteBundleFile(work_dir / "backbone.bundle", *backbone); !st.ok()) return st;
  auto repository = models::CreateSingleKeyRepository(work_dir / "trust", "simulation/" + s.name);
  if (!repository.ok()) return repository.status();
  if (s.regions.count == 1 || s.regions.count * 3 > s.clinics.count) {
    return absl::InvalidArgumentError(StrCat("regions: ", s.regions.count, " regions of ", s.clinics.count,
                                             " clinics; a federation has 0 (flat) or "
                                             "2 and more regions, of at least 3 clinics each (SecAgg+ needs 3)"));
  }
  if (s.regions.count > 0 && s.transport == TransportKind::kGrpc) {
    return absl::InvalidArgumentError("regions run over the inproc and processes transports, not grpc");
  }
  const aggregator::Config config = FederationConfig(s, *repository, work_dir);
  if (s.transport == TransportKind::kProcesses) {
    TINYFED_ASSIGN_OR_RETURN(v1::Head last,
                             internal::RunProcesses(s, config, *clinics, work_dir, tinyfed_binary, test_embeddings,
                                                    splits->test.labels, progress, report));
    FinishReport(s, *clinics, last, test_embeddings, splits->test.labels, validation, report);
    report.wall_seconds = absl::ToDoubleSeconds(absl::Now() - started);
    return report;
  }
  internal::Scoring scoring{.test_embeddings = test_embeddings,
                            .test_labels = splits->test.labels,
                            .validation = &validation,
                            .initial_validation = initial_validation};
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<internal::OneProcessFederation> federation,
                           internal::OneProcessFederation::Start(s, config, *repository, work_dir, *clinics, scoring));
  report.noise_multiplier = federation->encoding().noise_multiplier;
  report.bits = federation->encoding().bits;
  federation->Run(progress, report);
  FinishReport(s, *clinics, federation->latest_head(), test_embeddings, splits->test.labels, validation, report);
  federation->ScoreServedHeads(splits->test, splits->validation, report);
  federation.reset();
  report.wall_seconds = absl::ToDoubleSeconds(absl::Now() - started);
  return report;
}

}  // namespace tinyfed::sim
