#include "tinyfed/sim/simulation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/base/env.h"
#include "tinyfed/client/client.h"
#include "tinyfed/client/head_trainer.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/decision_threshold.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/base/process.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/sim/dropout.h"
#include "tinyfed/sim/partition.h"

namespace tinyfed::sim {
namespace {

using absl::StrCat;
using base::Process;

struct Clinic {
  std::string id;
  models::Dataset train, holdout;
  std::vector<float> train_embeddings, holdout_embeddings;
};

// ---------------------------------------------------------------- data

struct Splits {
  models::Dataset test, validation, public_data, pool;
};

struct EvaluationSet {
  std::vector<float> embeddings;
  std::vector<int> labels;
};

absl::StatusOr<Splits> LoadData(const Scenario& s) {
  models::CsvOptions csv;
  csv.label_column = s.data.label_column;
  absl::StatusOr<models::Dataset> all =
      s.data.labels.empty() ? models::ReadCsv(s.data.path, csv) : models::ReadIdx(s.data.path, s.data.labels);
  if (!all.ok()) return absl::Status(all.status().code(), StrCat("data.path: ", all.status().message()));
  if (s.data.max_samples > 0 && s.data.max_samples < all->size()) {
    const double keep = static_cast<double>(s.data.max_samples) / static_cast<double>(all->size());
    *all = models::StratifiedSplit(*all, keep, s.seed).holdout;
  }
  Splits out;
  models::Split first = models::StratifiedSplit(*all, s.data.test_fraction, s.seed);
  out.test = std::move(first.holdout);
  if (s.data.validation_fraction > 0) {
    models::Split rest = models::StratifiedSplit(first.train, s.data.validation_fraction, s.seed + 2);
    out.validation = std::move(rest.holdout);
    first.train = std::move(rest.train);
  }
  if (s.backbone.bundle.empty()) {
    models::Split second = models::StratifiedSplit(first.train, s.data.public_fraction, s.seed + 1);
    out.public_data = std::move(second.holdout);
    out.pool = std::move(second.train);
  } else {
    out.pool = std::move(first.train);
  }
  return out;
}

// The backbone before pretraining (or the given one): its shape.
absl::StatusOr<v1::ModelBundle> BackboneShape(const Scenario& s, const models::Dataset& public_data) {
  if (!s.backbone.bundle.empty()) return models::ReadBundleFile(s.backbone.bundle);
  auto arch = models::ParseArchitecture(s.backbone.arch);
  if (!arch.ok()) return arch.status();
  models::ArchitectureOptions options;
  options.mlp_hidden = s.backbone.hidden;
  return models::BuildBackbone(*arch, public_data, s.seed, options);
}

absl::StatusOr<v1::ModelBundle> MakeBackbone(const Scenario& s, const models::Dataset& public_data,
                                             std::string* description) {
  if (!s.backbone.bundle.empty()) {
    *description = StrCat("given: ", s.backbone.bundle.string());
    return models::ReadBundleFile(s.backbone.bundle);
  }
  auto bundle = BackboneShape(s, public_data);
  if (!bundle.ok()) return bundle.status();
  models::TrainOptions train;
  train.epochs = s.backbone.epochs;
  train.batch_size = s.backbone.batch_size;
  train.learning_rate = static_cast<float>(s.backbone.learning_rate);
  train.seed = s.seed;
  if (auto st = models::Train(&*bundle, public_data, train); !st.ok()) return st;
  *description = StrCat(s.backbone.arch, " pretrained on ", public_data.size(), " public samples for ",
                        s.backbone.epochs, " epochs, int8 (PTQ)");
  return models::QuantizePostTraining(*bundle, public_data, {});
}

// Per-clinic brightness/contrast (images) or sensor gain and noise (tabular):
// `scale` and `offset` are the clinic's, the noise is drawn per value.
void ShiftFeatures(models::Dataset& d, FeatureShift shift, double strength, double scale, double offset,
                   std::mt19937_64& rng, const models::Normalization& stats) {
  if (shift == FeatureShift::kNone || strength <= 0.0 || d.size() == 0) return;
  std::normal_distribution<double> noise(0.0, 1.0);
  const size_t channels = stats.mean.size(), width = d.feature_size();
  for (size_t i = 0; i < d.features.size(); ++i) {
    const size_t c = channels == 1 ? 0 : (i % width) % channels;
    const double mean = stats.mean[c], stddev = stats.stddev[c];
    double x = d.features[i];
    if (shift == FeatureShift::kBrightness) {
      x = mean + scale * (x - mean) + offset * stddev;
    } else {
      x = scale * x + strength * stddev * noise(rng);
    }
    d.features[i] = static_cast<float>(x);
  }
}

absl::StatusOr<std::vector<Clinic>> MakeClinics(const Scenario& s, const models::Dataset& pool) {
  absl::StatusOr<Partition> parts;
  const int n = s.clinics.count;
  if (s.partition.kind == PartitionKind::kDirichlet) {
    parts = DirichletLabelPartition(pool.labels, n, s.partition.alpha, s.seed, s.partition.min_samples);
  } else if (s.partition.quantity_skew > 0.0) {
    // Log-normal clinic sizes over a shuffled pool.
    std::mt19937_64 rng(s.seed);
    std::lognormal_distribution<double> size(0.0, s.partition.quantity_skew);
    std::vector<double> w(static_cast<size_t>(n));
    for (double& v : w) v = size(rng);
    const double total = std::accumulate(w.begin(), w.end(), 0.0);
    std::vector<size_t> order(pool.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    const size_t min = s.partition.min_samples;
    if (pool.size() < min * static_cast<size_t>(n)) {
      return absl::InvalidArgumentError(StrCat(pool.size(), " samples cannot give ", n, " clinics ", min, " each"));
    }
    const size_t spare = pool.size() - min * static_cast<size_t>(n);
    Partition p(static_cast<size_t>(n));
    size_t at = 0;
    for (size_t c = 0; c < p.size(); ++c) {
      const size_t take = c + 1 == p.size() ? pool.size() - at
                                            : min + static_cast<size_t>(std::floor(spare * w[c] / total));
      p[c].assign(order.begin() + static_cast<std::ptrdiff_t>(at), order.begin() + static_cast<std::ptrdiff_t>(at + take));
      at += take;
    }
    parts = std::move(p);
  } else {
    parts = IidPartition(pool.size(), n, s.seed);
  }
  if (!parts.ok()) return absl::InvalidArgumentError(StrCat("partition: ", parts.status().message()));
  const models::Normalization stats = models::ComputeNormalization(pool);
  std::vector<Clinic> clinics(static_cast<size_t>(n));
  for (int c = 0; c < n; ++c) {
    Clinic& clinic = clinics[static_cast<size_t>(c)];
    clinic.id = absl::StrFormat("clinic-%04d", c);
    std::vector<size_t> idx = (*parts)[static_cast<size_t>(c)];
    std::mt19937_64 rng(s.seed * 7919 + static_cast<uint64_t>(c));
    std::shuffle(idx.begin(), idx.end(), rng);
    const size_t held = std::max<size_t>(1, static_cast<size_t>(std::round(idx.size() * s.partition.holdout_fraction)));
    if (idx.size() <= held) return absl::InvalidArgumentError(StrCat(clinic.id, " has too few samples (", idx.size(), ")"));
    std::vector<size_t> hold(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(held));
    std::vector<size_t> train(idx.begin() + static_cast<std::ptrdiff_t>(held), idx.end());
    clinic.train = pool.Subset(train);
    clinic.holdout = pool.Subset(hold);
    // One clinic, one sensor: the same scale and offset on both of its
    // slices, fresh noise on every value.
    std::mt19937_64 shift_rng(s.seed * 104729 + static_cast<uint64_t>(c));
    std::uniform_real_distribution<double> spread(-s.partition.shift_strength, s.partition.shift_strength);
    const double scale = 1.0 + spread(shift_rng), offset = spread(shift_rng);
    for (models::Dataset* slice : {&clinic.train, &clinic.holdout}) {
      ShiftFeatures(*slice, s.partition.shift, s.partition.shift_strength, scale, offset, shift_rng, stats);
    }
  }
  return clinics;
}

// ---------------------------------------------------------------- heads

std::vector<float> Embed(models::Interpreter& interpreter, const models::Dataset& d) {
  std::vector<float> out;
  out.reserve(d.size() * interpreter.embedding_size());
  for (size_t i = 0; i < d.size(); ++i) {
    interpreter.SetInput(d.sample(i));
    interpreter.Invoke();
    const auto e = interpreter.embedding();
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

// The probability of class `c` for each sample.
std::vector<double> ClassProbabilities(const v1::Head& head, std::span<const float> embeddings, size_t samples,
                                       int c) {
  const size_t k = head.num_classes(), dim = head.in_features();
  std::vector<double> out, logits(k);
  for (size_t i = 0; i < samples; ++i) {
    const float* e = embeddings.data() + i * dim;
    for (size_t j = 0; j < k; ++j) {
      double z = head.bias(static_cast<int>(j));
      for (size_t d = 0; d < dim; ++d) z += head.weights(static_cast<int>(j * dim + d)) * e[d];
      logits[j] = z;
    }
    const double top = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (double z : logits) sum += std::exp(z - top);
    out.push_back(std::exp(logits[static_cast<size_t>(c)] - top) / sum);
  }
  return out;
}

// Positive when its probability reaches the threshold, otherwise the most
// likely other class.
Metrics EvaluateAtThreshold(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels,
                            int positive, double threshold) {
  const size_t k = head.num_classes(), dim = head.in_features();
  models::ConfusionMatrix confusion(static_cast<int>(k));
  std::vector<float> logits(k);
  for (size_t i = 0; i < labels.size(); ++i) {
    for (size_t c = 0; c < k; ++c) {
      double z = head.bias(static_cast<int>(c));
      for (size_t d = 0; d < dim; ++d) z += head.weights(static_cast<int>(c * dim + d)) * embeddings[i * dim + d];
      logits[c] = static_cast<float>(z);
    }
    float probability = 0.0f;
    confusion.Add(labels[i], models::DecideWithThreshold(logits, positive, threshold, &probability));
  }
  Metrics m;
  m.accuracy = confusion.accuracy();
  auto number = [](double v) { return std::isnan(v) ? 0.0 : v; };
  for (int c = 0; c < static_cast<int>(k); ++c) {
    m.sensitivity.push_back(number(confusion.sensitivity(c)));
    m.specificity.push_back(number(confusion.specificity(c)));
  }
  return m;
}

Metrics Evaluate(const v1::Head& head, std::span<const float> embeddings, std::span<const int> labels) {
  const size_t k = head.num_classes(), dim = head.in_features();
  models::ConfusionMatrix confusion(static_cast<int>(k));
  std::vector<double> logits(k);
  double loss = 0.0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* e = embeddings.data() + i * dim;
    for (size_t c = 0; c < k; ++c) {
      double z = head.bias(static_cast<int>(c));
      for (size_t j = 0; j < dim; ++j) z += head.weights(static_cast<int>(c * dim + j)) * e[j];
      logits[c] = z;
    }
    const size_t best = static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    double sum = 0.0;
    for (double z : logits) sum += std::exp(z - logits[best]);
    loss += std::log(sum) - (logits[static_cast<size_t>(labels[i])] - logits[best]);
    confusion.Add(labels[i], static_cast<int>(best));
  }
  Metrics m;
  m.accuracy = confusion.accuracy();
  m.loss = labels.empty() ? 0.0 : loss / static_cast<double>(labels.size());
  // A class absent from the data reports 0, not NaN, so JSON stays numeric.
  auto number = [](double v) { return std::isnan(v) ? 0.0 : v; };
  for (int c = 0; c < static_cast<int>(k); ++c) {
    m.sensitivity.push_back(number(confusion.sensitivity(c)));
    m.specificity.push_back(number(confusion.specificity(c)));
  }
  return m;
}

v1::Head TrainFrom(v1::Head head, std::span<const float> embeddings, std::span<const int> labels, int epochs,
                   const v1::TrainingSettings& t, uint64_t seed) {
  client::HeadTrainingTask task{.epochs = epochs,
                                .batch_size = static_cast<int>(t.batch_size()),
                                .learning_rate = t.learning_rate(),
                                .momentum = t.momentum(),
                                .weight_decay = t.weight_decay(),
                                .seed = seed,
                                .cosine_decay = true};
  if (epochs > 0 && !labels.empty()) {
    if (auto s = client::TrainHead(&head, embeddings, labels, task); !s.ok()) {
      spdlog::warn("head training failed: {}", s.ToString());
    }
  }
  return head;
}

// ---------------------------------------------------------------- federation

// What every clinic did in the current round, as seen at its transport.
class Tracker {
 public:
  struct Device {
    bool admitted = false;
    std::set<v1::Phase> submitted;
    int dropped_at = -1;  // phase index the clinic lost power at, -1: did not
    bool finished = false;
    uint64_t up = 0, down = 0;
    int calls = 0;
  };

  void Reset(const std::vector<std::string>& chosen) {
    absl::MutexLock lock(&mu_);
    devices_.clear();
    for (const auto& id : chosen) devices_[id];
  }
  template <typename F>
  void Update(const std::string& id, F&& f) {
    absl::MutexLock lock(&mu_);
    f(devices_[id]);
  }
  // Blocks until pred(devices) holds; gives up after a minute of real time.
  template <typename P>
  bool WaitFor(P&& pred) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pred(devices_); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Seconds(60));
  }
  std::map<std::string, Device> Snapshot() {
    absl::MutexLock lock(&mu_);
    return devices_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Device> devices_ ABSL_GUARDED_BY(mu_);
};

// Calls the round engine directly: the real protocol objects, no sockets.
class InProcessTransport : public client::Transport {
 public:
  explicit InProcessTransport(aggregator::RoundEngine* engine) : engine_(engine) {}
  absl::StatusOr<v1::EnrollResponse> Enroll(const v1::EnrollRequest& r) override {
    if (auto s = engine_->devices()->Enroll(r); !s.ok()) return s;
    return v1::EnrollResponse();
  }
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override { return engine_->CheckIn(r); }
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override { return engine_->Await(r); }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override { return engine_->Submit(r); }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    return engine_->GetModelChunk(r);
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return engine_->ReportTelemetry(r);
  }

 private:
  aggregator::RoundEngine* engine_;
};

// Counts each clinic's bytes and calls and tells the tracker what it did.
class TrackingTransport : public client::ForwardingTransport {
 public:
  TrackingTransport(std::unique_ptr<client::Transport> inner, Tracker* tracker, std::string id)
      : ForwardingTransport(std::move(inner)), tracker_(tracker), id_(std::move(id)) {}
  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& r) override {
    auto out = Count(r, ForwardingTransport::CheckIn(r));
    if (out.ok() && out->has_admitted()) tracker_->Update(id_, [](Tracker::Device& d) { d.admitted = true; });
    return out;
  }
  // Polls that only hear "wait" are not counted: how many there are depends
  // on the simulator's scheduling, not on the protocol.
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override {
    auto out = ForwardingTransport::Await(r);
    if (out.ok() && out->has_wait()) return out;
    return Count(r, std::move(out));
  }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override {
    auto out = Count(r, ForwardingTransport::Submit(r));
    if (out.ok()) tracker_->Update(id_, [&](Tracker::Device& d) { d.submitted.insert(r.header().phase()); });
    return out;
  }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& r) override {
    return Count(r, ForwardingTransport::GetModelChunk(r));
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& r) override {
    return Count(r, ForwardingTransport::ReportTelemetry(r));
  }

 private:
  template <typename Request, typename Response>
  absl::StatusOr<Response> Count(const Request& request, absl::StatusOr<Response> response) {
    const uint64_t up = request.ByteSizeLong(), down = response.ok() ? response->ByteSizeLong() : 0;
    tracker_->Update(id_, [&](Tracker::Device& d) {
      d.up += up;
      d.down += down;
      ++d.calls;
    });
    return response;
  }
  Tracker* tracker_;
  std::string id_;
};

// The in-process federation's world: a clock that jumps to each deadline
// instead of waiting for it; the real randomness and files.
class SimEnv final : public base::Env {
 public:
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void RandomBytes(std::span<uint8_t> out) override { base::Env::Default().RandomBytes(out); }
  absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path, uint64_t max_bytes) override {
    return base::Env::Default().ReadFile(path, max_bytes);
  }
  absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes,
                                   unsigned mode = 0644) override {
    return base::Env::Default().WriteFileAtomically(path, bytes, mode);
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

double OnlineProbability(const ClinicsSpec& c, int round) {
  if (c.availability == Availability::kAlways) return 1.0;
  // Quietest at 03:00, busiest at 15:00; round 1 starts at midnight.
  const double hour = std::fmod((round - 1) * c.round_hours, 24.0);
  const double day = 0.5 * (1.0 - std::cos(2.0 * M_PI * (hour - 3.0) / 24.0));
  return c.min_availability + (1.0 - c.min_availability) * day;
}

constexpr v1::Phase kSubmitPhases[] = {v1::PHASE_ADVERTISE_KEYS, v1::PHASE_SHARE_KEYS, v1::PHASE_MASKED_INPUT,
                                       v1::PHASE_UNMASKING};

}  // namespace

namespace {

// The final model on the test set and on each clinic's slice, and personalized.
void FinishReport(const Scenario& s, const std::vector<Clinic>& clinics, const v1::Head& federated,
                  std::span<const float> test_embeddings, std::span<const int> test_labels,
                  const EvaluationSet& validation, SimulationReport& report) {
  report.federated = Evaluate(federated, test_embeddings, test_labels);
  if (!validation.labels.empty()) report.federated_validation = Evaluate(federated, validation.embeddings, validation.labels);
  if (report.positive_class >= 0 && !validation.labels.empty()) {
    const auto p = ClassProbabilities(federated, validation.embeddings, validation.labels.size(), report.positive_class);
    std::vector<double> positives;
    for (size_t i = 0; i < p.size(); ++i) {
      if (validation.labels[i] == report.positive_class) positives.push_back(p[i]);
    }
    report.threshold = models::ThresholdForSensitivity(positives, s.decision.target_sensitivity);
    report.federated_at_threshold =
        EvaluateAtThreshold(federated, test_embeddings, test_labels, report.positive_class, report.threshold);
  }
  for (size_t c = 0; c < clinics.size(); ++c) {
    const Clinic& clinic = clinics[c];
    ClinicResult& r = report.clinics[c];
    r.federated = Evaluate(federated, clinic.holdout_embeddings, clinic.holdout.labels).accuracy;
    const v1::Head mine = TrainFrom(federated, clinic.train_embeddings, clinic.train.labels, s.personalization_epochs,
                                    s.federation.training, s.seed);
    r.personalized = Evaluate(mine, clinic.holdout_embeddings, clinic.holdout.labels).accuracy;
  }
}

// The federation as separate processes: `tinyfed aggregator` and one
// `tinyfed client run` per clinic, every clinic online; results are read back
// from the aggregator's state directory (traffic is not measured here).
absl::Status RunProcesses(const Scenario& s, aggregator::Config config, const std::vector<Clinic>& clinics,
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
  for (int i = 0; i < 500 && address.empty() && aggregator_process.running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
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
    clients.push_back(Process::Spawn(
        {tinyfed.string(), "client", "run", "--device-id", c.id, "--data-dir", (work_dir / c.id).string(),
         "--aggregator", address, "--insecure", "--enroll-token", *token,
         "--root", models::RootFile(config.roots_dir, 1).string(),
         "--max-samples", std::to_string(std::max<size_t>(c.train.size(), 1)), "--simulation-seed",
         std::to_string(s.seed), "--dropout", absl::StrFormat("%.17g,%.17g,%.17g,%.17g", p[0], p[1], p[2], p[3])},
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
        v1::SignedBundle signed_bundle;
        auto bytes = base::ReadFileBytes(m.file, 1 << 30);
        if (!bytes.ok() || !signed_bundle.ParseFromString(*bytes)) continue;
        auto bundle = models::DecodeBundleFile(signed_bundle.bundle());
        if (bundle.ok()) rr.test = Evaluate(bundle->head(), test_embeddings, test_labels);
      }
      rr.wall_seconds = absl::ToDoubleSeconds(absl::Now() - started) / static_cast<double>(reported + 1);
      report.rounds.push_back(rr);
      if (progress) progress(rr, s.federation.max_rounds, absl::ZeroDuration());
    }
    return absl::OkStatus();
  };
  const absl::Time deadline = absl::Now() + absl::Minutes(30);
  while (aggregator_process.running() && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
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
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FederationShape> DescribeFederation(const Scenario& s) {
  auto splits = LoadData(s);
  if (!splits.ok()) return splits.status();
  auto backbone = BackboneShape(s, splits->public_data);
  if (!backbone.ok()) return absl::Status(backbone.status().code(), StrCat("backbone: ", backbone.status().message()));
  auto clinics = MakeClinics(s, splits->pool);
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

  auto splits = LoadData(s);
  if (!splits.ok()) return splits.status();
  auto backbone = MakeBackbone(s, splits->public_data, &report.backbone);
  if (!backbone.ok()) return absl::Status(backbone.status().code(), StrCat("backbone: ", backbone.status().message()));
  // Every head starts from zero: the federation has to learn the task.
  for (auto& w : *backbone->mutable_head()->mutable_weights()) w = 0.0f;
  for (auto& b : *backbone->mutable_head()->mutable_bias()) b = 0.0f;
  auto clinics = MakeClinics(s, splits->pool);
  if (!clinics.ok()) return clinics.status();
  auto interpreter = models::Interpreter::Create(*backbone);
  if (!interpreter.ok()) return interpreter.status();
  report.embedding_size = (*interpreter)->embedding_size();
  const std::vector<float> test_embeddings = Embed(**interpreter, splits->test);
  report.test_samples = splits->test.size();
  report.label_names = splits->test.label_names;
  if (!s.decision.positive_class.empty()) {
    const auto& names = report.label_names;
    const auto at = std::find(names.begin(), names.end(), s.decision.positive_class);
    if (at == names.end()) {
      return absl::InvalidArgumentError(StrCat(s.source.string(), ": decision.positive_class '",
                                               s.decision.positive_class, "' is not one of the data's ",
                                               names.size(), " labels"));
    }
    if (splits->validation.size() == 0) {
      return absl::InvalidArgumentError(StrCat(s.source.string(), ": decision.positive_class needs a validation split "
                                               "(data.validation_fraction > 0) to choose its threshold on"));
    }
    report.positive_class = static_cast<int>(at - names.begin());
  }
  const v1::Head zero = backbone->head();
  report.initial = Evaluate(zero, test_embeddings, splits->test.labels);
  const EvaluationSet validation{Embed(**interpreter, splits->validation), splits->validation.labels};
  report.validation_samples = splits->validation.size();
  const double initial_validation =
      validation.labels.empty() ? 0.0 : Evaluate(zero, validation.embeddings, validation.labels).accuracy;

  // Baselines: the union of the clinics' data (centralized) and each alone.
  std::vector<float> union_embeddings;
  std::vector<int> union_labels;
  for (Clinic& c : *clinics) {
    c.train_embeddings = Embed(**interpreter, c.train);
    c.holdout_embeddings = Embed(**interpreter, c.holdout);
    union_embeddings.insert(union_embeddings.end(), c.train_embeddings.begin(), c.train_embeddings.end());
    union_labels.insert(union_labels.end(), c.train.labels.begin(), c.train.labels.end());
  }
  const v1::TrainingSettings& t = s.federation.training;
  const v1::Head centralized = TrainFrom(zero, union_embeddings, union_labels, s.baseline_epochs, t, s.seed);
  report.centralized = Evaluate(centralized, test_embeddings, splits->test.labels);
  if (!validation.labels.empty()) {
    report.centralized_validation = Evaluate(centralized, validation.embeddings, validation.labels);
  }
  for (const Clinic& c : *clinics) {
    ClinicResult r;
    r.id = c.id;
    r.train_samples = c.train.size();
    r.holdout_samples = c.holdout.size();
    const v1::Head local = TrainFrom(zero, c.train_embeddings, c.train.labels, s.baseline_epochs, t, s.seed);
    r.local_only = Evaluate(local, c.holdout_embeddings, c.holdout.labels).accuracy;
    r.local_only_on_test = Evaluate(local, test_embeddings, splits->test.labels).accuracy;
    report.mean_local_only_on_test += r.local_only_on_test / static_cast<double>(clinics->size());
    report.clinics.push_back(r);
  }

  // The federation: aggregator and clinics on the real code.
  if (auto st = models::WriteBundleFile(work_dir / "backbone.bundle", *backbone); !st.ok()) return st;
  auto repository = models::CreateSingleKeyRepository(work_dir / "trust", "simulation/" + s.name);
  if (!repository.ok()) return repository.status();
  aggregator::Config config = s.federation;
  config.listen = "127.0.0.1:0";
  config.state_dir = work_dir / "aggregator";
  config.initial_model = work_dir / "backbone.bundle";
  config.publishing_key = repository->publishing_key;
  config.roots_dir = repository->roots_dir;
  config.reset_head = true;
  config.simulation_seed = s.seed;
  const bool inproc = s.transport == TransportKind::kInProcess;
  config.poll_interval = absl::Milliseconds(inproc ? 1 : 5);
  if (!inproc) {
    // Real time: deadlines short enough that a dropout costs seconds, not minutes.
    config.selection_timeout = absl::Milliseconds(300);
    config.training_timeout = absl::Seconds(4);
    config.share_keys_timeout = config.masked_input_timeout = config.unmasking_timeout = absl::Seconds(1);
  }
  if (s.transport == TransportKind::kProcesses) {
    if (auto st = RunProcesses(s, config, *clinics, work_dir, tinyfed_binary, test_embeddings, splits->test.labels,
                               progress, report);
        !st.ok()) {
      return st;
    }
    auto state = aggregator::AggregatorState::Open(config.state_dir);
    if (!state.ok()) return state.status();
    auto published = (*state)->Models();
    if (!published.ok() || published->empty()) return absl::InternalError("no model was published");
    v1::SignedBundle last;
    auto bytes = base::ReadFileBytes(published->back().file, 1 << 30);
    if (!bytes.ok() || !last.ParseFromString(*bytes)) return absl::DataLossError("cannot read the last model");
    auto bundle = models::DecodeBundleFile(last.bundle());
    if (!bundle.ok()) return bundle.status();
    FinishReport(s, *clinics, bundle->head(), test_embeddings, splits->test.labels, validation, report);
    report.wall_seconds = absl::ToDoubleSeconds(absl::Now() - started);
    return report;
  }
  SimEnv sim_env;
  auto engine = aggregator::RoundEngine::Create(config, inproc ? static_cast<base::Env&>(sim_env) : base::Env::Default());
  if (!engine.ok()) return engine.status();
  report.noise_multiplier = (*engine)->noise_multiplier();
  std::unique_ptr<aggregator::AggregatorServer> server;
  aggregator::DeviceRegistry* registry = (*engine)->devices();
  if (!inproc) {
    // Loopback inside one process: plaintext, but every request signed.
    aggregator::SecurityConfig security = config.security;
    security.requests_per_minute = 1000000;  // clients poll every 5 ms
    auto started_server = aggregator::AggregatorServer::Start(engine->get(), config.listen, security,
                                                              /*insecure=*/true);
    if (!started_server.ok()) return started_server.status();
    server = std::move(*started_server);
  }

  Tracker tracker;
  std::vector<std::unique_ptr<client::Client>> gateways;
  for (const Clinic& c : *clinics) {
    client::ClientConfig cc;
    cc.device_id = c.id;
    cc.data_dir = work_dir / c.id;
    cc.trusted_root = repository->pinned_root;
    cc.holdout_fraction = 0.0;  // the simulation keeps its own held-out slice
    cc.max_samples = std::max<size_t>(c.train.size(), 1);
    cc.simulation_seed = s.seed;
    // Each clinic's ledger records what it spent; the simulation reports it
    // and sets no budget of the clinics' own.
    cc.privacy_budget = {.epsilon = std::numeric_limits<double>::infinity(), .delta = s.federation.dp.delta};
    client::ClientHooks hooks;
    hooks.on_phase = [&, id = c.id](uint64_t round_id, v1::Phase phase) {
      const int at = DropPhase(s.seed, id, round_id, s.clinics.dropout);
      if (at < 0 || kDropPhases[at] != phase) return true;
      tracker.Update(id, [at](Tracker::Device& d) { d.dropped_at = at; });
      return false;
    };
    // Every clinic enrolls its device key, whatever the transport: the
    // aggregator checks the signed SecAgg+ keys against it.
    auto token = registry->IssueToken(c.id, absl::Hours(1));
    if (!token.ok()) return token.status();
    cc.enrollment_token = *token;
    std::unique_ptr<client::Transport> base;
    if (inproc) {
      base = std::make_unique<InProcessTransport>(engine->get());
    } else {
      auto grpc = client::ConnectGrpc(StrCat("127.0.0.1:", server->port()), client::ChannelSecurity::Plaintext());
      if (!grpc.ok()) return grpc.status();
      base = std::move(*grpc);
    }
    auto gateway = client::Client::Create(
        cc, std::make_unique<TrackingTransport>(std::move(base), &tracker, c.id), std::move(hooks));
    if (!gateway.ok()) return gateway.status();
    if (auto st = (*gateway)->AddSamples(client::ToSamples(c.train)); !st.ok()) return st;
    gateways.push_back(std::move(*gateway));
  }

  const int target = static_cast<int>(std::ceil(config.cohort_size * (1.0 + config.over_selection)));
  // The phases in which clinics answer, and how long the aggregator waits for each.
  const std::vector<v1::Phase> submit_phases =
      config.secure_aggregation ? std::vector<v1::Phase>(std::begin(kSubmitPhases), std::end(kSubmitPhases))
                                : std::vector<v1::Phase>{v1::PHASE_UPDATE};
  const std::vector<absl::Duration> timeouts =
      config.secure_aggregation ? std::vector<absl::Duration>{config.training_timeout, config.share_keys_timeout,
                                                              config.masked_input_timeout, config.unmasking_timeout}
                                : std::vector<absl::Duration>{config.training_timeout};
  const absl::Time federation_started = absl::Now();
  int participations = 0;
  for (int round = 1; round <= s.federation.max_rounds; ++round) {
    const absl::Time round_started = absl::Now();
    RoundResult rr;
    rr.round = round;
    std::mt19937_64 rng(s.seed * 1'000'003 + static_cast<uint64_t>(round));
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const double p_online = OnlineProbability(s.clinics, round);
    std::vector<size_t> online;
    for (size_t c = 0; c < clinics->size(); ++c) {
      if (u(rng) < p_online) online.push_back(c);
    }
    rr.available = static_cast<int>(online.size());
    std::shuffle(online.begin(), online.end(), rng);
    if (static_cast<int>(online.size()) > target) online.resize(static_cast<size_t>(target));
    std::sort(online.begin(), online.end());
    rr.selected = static_cast<int>(online.size());
    std::vector<std::string> chosen;
    for (size_t c : online) chosen.push_back((*clinics)[c].id);
    if (rr.selected < config.min_cohort) {
      rr.reason = StrCat("only ", rr.selected, " clinics online (", config.min_cohort, " needed)");
      rr.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;
      rr.test = report.rounds.empty() ? report.initial : report.rounds.back().test;
      rr.validation_accuracy = report.rounds.empty() ? initial_validation : report.rounds.back().validation_accuracy;
      rr.simulated_seconds = absl::ToDoubleSeconds(config.selection_timeout);
      rr.wall_seconds = absl::ToDoubleSeconds(absl::Now() - round_started);
      report.rounds.push_back(rr);
      if (progress) progress(rr, s.federation.max_rounds, absl::ZeroDuration());
      continue;
    }
    tracker.Reset(chosen);
    std::vector<client::RoundReport> reports(online.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < online.size(); ++i) {
      threads.emplace_back([&, i] {
        client::Client& g = *gateways[online[i]];
        for (int attempt = 0; attempt < 1000; ++attempt) {
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
        tracker.Update(chosen[i], [](Tracker::Device& d) { d.finished = true; });
      });
    }
    double waited = 0.0;  // simulated seconds spent waiting for deadlines
    if (inproc) {
      // Selection: once everyone chosen is in, a short cohort starts at the deadline.
      tracker.WaitFor([](const auto& devices) {
        return std::all_of(devices.begin(), devices.end(),
                           [](const auto& d) { return d.second.admitted || d.second.finished; });
      });
      if (rr.selected < target) {
        sim_env.Advance(config.selection_timeout + absl::Seconds(1));
        (*engine)->Tick();
        waited += absl::ToDoubleSeconds(config.selection_timeout);
      }
      // Each phase: when every clinic still in the round has answered, a
      // phase missing a dropped clinic closes at its deadline.
      for (size_t p = 0; p < submit_phases.size(); ++p) {
        const v1::Phase phase = submit_phases[p];
        tracker.WaitFor([phase](const auto& devices) {
          return std::all_of(devices.begin(), devices.end(), [phase](const auto& d) {
            return d.second.finished || d.second.dropped_at >= 0 || d.second.submitted.contains(phase);
          });
        });
        const auto snapshot = tracker.Snapshot();
        // Someone still in the round after the previous phase did not answer this one.
        const bool missing = std::any_of(snapshot.begin(), snapshot.end(), [&](const auto& d) {
          const bool was_in = p == 0 ? d.second.admitted : d.second.submitted.contains(submit_phases[p - 1]);
          return was_in && !d.second.submitted.contains(phase);
        });
        if (missing) {
          sim_env.Advance(timeouts[p] + absl::Seconds(1));
          (*engine)->Tick();
          waited += absl::ToDoubleSeconds(timeouts[p]);
        }
      }
    }
    for (auto& th : threads) th.join();
    const auto seen = tracker.Snapshot();
    const int64_t engine_round = static_cast<int64_t>(
        std::max_element(reports.begin(), reports.end(), [](const auto& a, const auto& b) {
          return a.round_id < b.round_id;
        })->round_id);
    const auto outcome = (*engine)->Outcome(engine_round);
    double slowest = 0.0, up = 0.0, down = 0.0;
    int took_part = 0;
    for (size_t i = 0; i < online.size(); ++i) {
      const auto& d = seen.at(chosen[i]);
      if (d.calls > 0) {
        up += static_cast<double>(d.up);
        down += static_cast<double>(d.down);
        ++took_part;
      }
      if (reports[i].outcome != client::RoundOutcome::kCompleted) continue;
      const auto& tm = reports[i].timings;
      const double compute =
          absl::ToDoubleSeconds(tm.backbone + tm.training + tm.encoding + tm.secagg) / s.clinics.compute_speed;
      const double network = d.up * 8.0 / (s.clinics.uplink_kbps * 1000.0) +
                             d.down * 8.0 / (s.clinics.downlink_kbps * 1000.0) + d.calls * s.clinics.latency_ms / 1e3;
      slowest = std::max(slowest, compute + network);
    }
    rr.bytes_up_per_client = took_part ? up / took_part : 0.0;
    rr.bytes_down_per_client = took_part ? down / took_part : 0.0;
    rr.simulated_seconds = slowest + waited;
    if (outcome && outcome->has_result()) {
      rr.completed = true;
      rr.survivors = static_cast<int>(outcome->result().survivors());
      rr.epsilon = outcome->result().epsilon_spent();
      participations += rr.survivors;
    } else {
      rr.reason = outcome && outcome->has_aborted() ? outcome->aborted().reason() : "the round did not finish";
      rr.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;
    }
    rr.dropouts = rr.selected - rr.survivors;
    rr.test = Evaluate((*engine)->latest_head(), test_embeddings, splits->test.labels);
    if (!validation.labels.empty()) {
      rr.validation_accuracy = Evaluate((*engine)->latest_head(), validation.embeddings, validation.labels).accuracy;
    }
    rr.wall_seconds = absl::ToDoubleSeconds(absl::Now() - round_started);
    if (inproc) sim_env.Advance(absl::Hours(s.clinics.round_hours));
    report.rounds.push_back(rr);
    if (progress) {
      const absl::Duration per_round = (absl::Now() - federation_started) / round;
      progress(rr, s.federation.max_rounds, per_round * (s.federation.max_rounds - round));
    }
  }
  const double federation_seconds = absl::ToDoubleSeconds(absl::Now() - federation_started);
  report.client_rounds_per_second = federation_seconds > 0 ? participations / federation_seconds : 0.0;
  report.epsilon = report.rounds.empty() ? 0.0 : report.rounds.back().epsilon;

  FinishReport(s, *clinics, (*engine)->latest_head(), test_embeddings, splits->test.labels, validation, report);
  server.reset();
  gateways.clear();
  engine->reset();
  report.wall_seconds = absl::ToDoubleSeconds(absl::Now() - started);
  return report;
}

}  // namespace tinyfed::sim
