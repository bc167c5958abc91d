// The aggregator's metrics, rendered in Prometheus's text exposition format
// (version 0.0.4) for a scrape of the operator port (operator_server.h).
//
//   Metrics metrics;
//   metrics.AddCounter("tinyfed_rounds_total", {{"outcome", "done"}});
//   std::string body = metrics.Render();
//
// Every family is declared once below with its type and help text, so a
// dashboard can rely on the names; recording into an undeclared name is a
// programming error (it aborts in debug builds and is dropped otherwise).
// Label values are escaped as the format requires; nothing a device sends
// becomes a label (device ids would make a series per device). Thread-safe.
#ifndef TINYFED_AGGREGATOR_METRICS_H_
#define TINYFED_AGGREGATOR_METRICS_H_

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tinyfed::aggregator {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  enum class Type { kCounter, kGauge, kHistogram };

  Metrics();  // declares the aggregator's families (metrics.cc lists them)

  void AddCounter(std::string_view name, const MetricLabels& labels, double by = 1.0);
  void SetGauge(std::string_view name, const MetricLabels& labels, double value);
  void AddGauge(std::string_view name, const MetricLabels& labels, double by);
  void Observe(std::string_view name, const MetricLabels& labels, double value);

  // Runs just before each Render(): for gauges read at scrape time (the
  // database's size). Set once, before the server starts.
  void SetCollector(std::function<void(Metrics&)> collector);

  // The exposition text: families in declaration order, each with HELP and TYPE.
  std::string Render();

 private:
  struct Series {
    double value = 0.0;                 // counter or gauge
    std::vector<double> bucket_counts;  // histogram: cumulative at render time
    double sum = 0.0;
    double count = 0.0;
  };
  struct Family {
    std::string name, help;
    Type type = Type::kCounter;
    std::vector<double> buckets;  // upper bounds, histograms only
    std::map<MetricLabels, Series> series;
  };
  void Declare(std::string name, Type type, std::string help, std::vector<double> buckets = {});
  Family* Find(std::string_view name, Type type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::vector<Family> families_ ABSL_GUARDED_BY(mu_);
  std::function<void(Metrics&)> collector_;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_METRICS_H_
