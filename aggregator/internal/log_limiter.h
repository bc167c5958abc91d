// At most one warning a minute per key, with how many were held back since:
// what devices (or anyone) can make the aggregator say, they cannot make it
// say often. Keys should be few (a kind of refusal, an enrolled device); a
// flood of distinct keys is forgotten wholesale past 100,000 rather than
// held. Thread-safe.
#ifndef TINYFED_AGGREGATOR_INTERNAL_LOG_LIMITER_H_
#define TINYFED_AGGREGATOR_INTERNAL_LOG_LIMITER_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "spdlog/spdlog.h"

namespace tinyfed::aggregator::internal {

class LogLimiter {
 public:
  void Warn(const std::string& key, const std::string& message) {
    absl::MutexLock lock(&mu_);
    Entry& e = entries_[key];
    const absl::Time now = absl::Now();
    if (e.logged_at + absl::Minutes(1) > now) {
      ++e.suppressed;
      return;
    }
    if (e.suppressed > 0) {
      spdlog::warn("{} ({} more like it in the last minute)", message, e.suppressed);
    } else {
      spdlog::warn("{}", message);
    }
    e.logged_at = now;
    e.suppressed = 0;
    if (entries_.size() > 100000) entries_.clear();
  }

 private:
  struct Entry {
    absl::Time logged_at = absl::InfinitePast();
    int64_t suppressed = 0;
  };
  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tinyfed::aggregator::internal

#endif  // TINYFED_AGGREGATOR_INTERNAL_LOG_LIMITER_H_
