#include "tinyfed/aggregator/metrics.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <cmath>

namespace tinyfed::aggregator {
namespace {

void AppendNumber(double v, std::string* out) {
  if (std::isnan(v)) {
    *out += "NaN";
  } else if (std::isinf(v)) {
    *out += v > 0 ? "+Inf" : "-Inf";
  } else {
    // Shortest round-trip text, in plain notation where that stays short
    // ("0.0005", not "5e-04"), as Prometheus's own clients write bucket bounds.
    std::array<char, 64> buf;
    auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::fixed);
    if (r.ec != std::errc() || r.ptr - buf.data() > 24) r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    out->append(buf.data(), r.ptr);
  }
}

// The exposition format escapes backslash, double quote and newline in label values.
void AppendEscaped(std::string_view value, std::string* out) {
  for (const char c : value) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '"') {
      *out += "\\\"";
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      *out += c;
    }
  }
}

void AppendSample(std::string_view name, const MetricLabels& labels, const std::pair<std::string, std::string>* extra,
                  double value, std::string* out) {
  *out += name;
  if (!labels.empty() || extra != nullptr) {
    *out += '{';
    bool first = true;
    auto add = [&](const std::pair<std::string, std::string>& l) {
      if (!first) *out += ',';
      first = false;
      *out += l.first;
      *out += "=\"";
      AppendEscaped(l.second, out);
      *out += '"';
    };
    for (const auto& l : labels) add(l);
    if (extra != nullptr) add(*extra);
    *out += '}';
  }
  *out += ' ';
  AppendNumber(value, out);
  *out += '\n';
}

const char* TypeName(Metrics::Type type) {
  switch (type) {
    case Metrics::Type::kCounter:
      return "counter";
    case Metrics::Type::kGauge:
      return "gauge";
    case Metrics::Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

Metrics::Metrics() {
  using T = Type;
  const std::vector<double> phase_seconds = {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800};
  const std::vector<double> call_seconds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
  Declare("tinyfed_rounds_total", T::kCounter, "Rounds that ended, by outcome (done or aborted).");
  Declare("tinyfed_rounds_resumed_total", T::kCounter, "Rounds a restarted aggregator took up again from its journal.");
  Declare("tinyfed_round_phase_seconds", T::kHistogram, "How long each round phase took to close.", phase_seconds);
  Declare("tinyfed_round_cohort_size", T::kGauge, "Devices admitted to the latest round.");
  Declare("tinyfed_round_survivors", T::kGauge, "Members still in the latest round after each phase.");
  Declare("tinyfed_round_dropouts_total", T::kCounter, "Members dropped, by the phase whose deadline they missed.");
  Declare("tinyfed_epsilon_spent", T::kGauge, "Privacy spent so far (epsilon at the configured delta).");
  Declare("tinyfed_epsilon_remaining", T::kGauge, "Privacy budget left (epsilon).");
  Declare("tinyfed_models_published_total", T::kCounter, "Models published since the process started.");
  Declare("tinyfed_model_version", T::kGauge, "Version of the latest published model.");
  Declare("tinyfed_rollouts_total", T::kCounter, "Canary rollouts decided, by outcome (promoted, rolled_back).");
  Declare("tinyfed_drift_flagged_devices", T::kGauge, "Devices whose inputs are flagged as drifted now.");
  Declare("tinyfed_drift_fleet_flagged", T::kGauge, "1 while the fleet's inputs are flagged as drifted.");
  Declare("tinyfed_refusals_total", T::kCounter, "Calls refused before the round engine, by kind.");
  Declare("tinyfed_calls_total", T::kCounter, "gRPC calls answered, by method and status code.");
  Declare("tinyfed_call_seconds", T::kHistogram, "Time to answer a gRPC call, by method.", call_seconds);
  Declare("tinyfed_open_connections", T::kGauge, "Open client connections.");
  Declare("tinyfed_population", T::kGauge, "Devices that ever checked in.");
  Declare("tinyfed_state_bytes", T::kGauge, "Size of the state directory's databases, in bytes.");
  Declare("tinyfed_serving", T::kGauge, "1 while the health service says SERVING, 0 while starting or draining.");
}

void Metrics::Declare(std::string name, Type type, std::string help, std::vector<double> buckets) {
  absl::MutexLock lock(&mu_);
  Family f{.name = std::move(name), .help = std::move(help), .type = type, .buckets = std::move(buckets), .series = {}};
  families_.push_back(std::move(f));
}

Metrics::Family* Metrics::Find(std::string_view name, Type type) {
  for (auto& f : families_) {
    if (f.name == name && f.type == type) return &f;
  }
  assert(false && "a metric recorded under a name Metrics() does not declare");
  return nullptr;
}

void Metrics::AddCounter(std::string_view name, const MetricLabels& labels, double by) {
  absl::MutexLock lock(&mu_);
  if (Family* f = Find(name, Type::kCounter); f != nullptr && by >= 0) f->series[labels].value += by;
}

void Metrics::SetGauge(std::string_view name, const MetricLabels& labels, double value) {
  absl::MutexLock lock(&mu_);
  if (Family* f = Find(name, Type::kGauge); f != nullptr) f->series[labels].value = value;
}

void Metrics::AddGauge(std::string_view name, const MetricLabels& labels, double by) {
  absl::MutexLock lock(&mu_);
  if (Family* f = Find(name, Type::kGauge); f != nullptr) f->series[labels].value += by;
}

void Metrics::Observe(std::string_view name, const MetricLabels& labels, double value) {
  absl::MutexLock lock(&mu_);
  Family* f = Find(name, Type::kHistogram);
  if (f == nullptr) return;
  Series& s = f->series[labels];
  s.bucket_counts.resize(f->buckets.size());
  for (size_t i = 0; i < f->buckets.size(); ++i) {
    if (value <= f->buckets[i]) ++s.bucket_counts[i];
  }
  s.sum += value;
  s.count += 1;
}

void Metrics::SetCollector(std::function<void(Metrics&)> collector) { collector_ = std::move(collector); }

std::string Metrics::Render() {
  if (collector_) collector_(*this);
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const Family& f : families_) {
    out += "# HELP " + f.name + " " + f.help + "\n";
    out += "# TYPE " + f.name + " " + TypeName(f.type) + "\n";
    for (const auto& [labels, s] : f.series) {
      if (f.type != Type::kHistogram) {
        AppendSample(f.name, labels, nullptr, s.value, &out);
        continue;
      }
      for (size_t i = 0; i < f.buckets.size(); ++i) {
        std::string le;
        AppendNumber(f.buckets[i], &le);
        const std::pair<std::string, std::string> bound{"le", le};
        AppendSample(f.name + "_bucket", labels, &bound, s.bucket_counts[i], &out);
      }
      const std::pair<std::string, std::string> inf{"le", "+Inf"};
      AppendSample(f.name + "_bucket", labels, &inf, s.count, &out);
      AppendSample(f.name + "_sum", labels, nullptr, s.sum, &out);
      AppendSample(f.name + "_count", labels, nullptr, s.count, &out);
    }
  }
  return out;
}

}  // namespace tinyfed::aggregator
