// Enrolled gateways: one-time enrollment tokens, device keys, revocation.
// Its own SQLite file (state_dir/devices.db, WAL), so that `tinyfed enroll`
// and `tinyfed device revoke` work while the aggregator runs: the server
// reads a device's key on every call, so a revocation takes effect at the
// device's next call. Thread-safe.
//
// Why signed requests rather than mutual TLS: gateways already hold an
// Ed25519 key (it also signs their SecAgg+ keys), a signature survives a
// TLS-terminating proxy in front of the aggregator, and revocation is one
// row here instead of a certificate authority and revocation lists that a
// clinic network without IT staff would have to run.
#ifndef TINYFED_AGGREGATOR_DEVICES_H_
#define TINYFED_AGGREGATOR_DEVICES_H_

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tinyfed/base/env.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/v1/service.pb.h"

namespace SQLite {
class Database;
}

namespace tinyfed::aggregator {

struct Device {
  std::string device_id;
  std::string public_key_hex;
  absl::Time enrolled;
  std::optional<absl::Time> revoked;
};

class DeviceRegistry {
 public:
  // Token lifetimes, enrollments and revocations are timed by `env`, which
  // outlives the registry.
  static absl::StatusOr<std::unique_ptr<DeviceRegistry>> Open(const std::filesystem::path& state_dir,
                                                              base::Env& env = base::Env::Default());
  ~DeviceRegistry();

  // A one-time token (64 hex characters) valid for `lifetime`. Only its
  // SHA-256 is stored. Bound to `device_id` if given: re-enrolling an
  // existing or revoked device (a replaced gateway) needs a bound token.
  absl::StatusOr<std::string> IssueToken(const std::optional<std::string>& device_id, absl::Duration lifetime);

  // Registers the request's key if the token is unused, unexpired and
  // allowed for the device id, and the proof is the key's signature.
  // UNAUTHENTICATED for a bad token or proof; ALREADY_EXISTS for a device
  // enrolled under another key without a token bound to it.
  absl::Status Enroll(const v1::EnrollRequest& request);

  // UNAUTHENTICATED for a device never enrolled, PERMISSION_DENIED for a
  // revoked one.
  absl::StatusOr<models::PublicKey> KeyOf(const std::string& device_id);

  // NOT_FOUND for a device never enrolled.
  absl::Status Revoke(const std::string& device_id);
  absl::StatusOr<std::vector<Device>> List();

 private:
  DeviceRegistry(std::unique_ptr<SQLite::Database> db, base::Env& env);
  // Forgets cached keys if any connection (the CLI's too) wrote since.
  void RefreshCacheLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  base::Env& env_;
  absl::Mutex mu_;
  std::unique_ptr<SQLite::Database> db_ ABSL_GUARDED_BY(mu_);
  // Keys and revocations of devices asked for, valid while the database's
  // data_version stays the same: a call costs no query, a revocation still
  // counts from the next call.
  std::map<std::string, absl::StatusOr<models::PublicKey>> cache_ ABSL_GUARDED_BY(mu_);
  int64_t data_version_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_DEVICES_H_
