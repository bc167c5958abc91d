// A grpc.health.v1 client for the aggregator's port: what a container
// health check, a script or a test asks (`tinyfed aggregator health`).
// Kubernetes probes speak the same protocol natively.
#ifndef TINYFED_AGGREGATOR_HEALTH_CHECK_H_
#define TINYFED_AGGREGATOR_HEALTH_CHECK_H_

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tinyfed::aggregator {

enum class Health { kServing, kNotServing };

struct HealthCheckOptions {
  std::filesystem::path ca_certificate;  // PEM; empty: the system's roots
  bool insecure = false;                 // plaintext (tests)
  // The name the certificate must carry, when it differs from the address
  // (a probe inside the pod dials 127.0.0.1).
  std::string tls_server_name;
  absl::Duration timeout = absl::Seconds(3);
};

// UNAVAILABLE (or DEADLINE_EXCEEDED) if nothing answers at `address`.
absl::StatusOr<Health> CheckHealth(const std::string& address, const HealthCheckOptions& options);

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_HEALTH_CHECK_H_
