#include "tinyfed/aggregator/devices.h"

#include <sodium.h>

#include "SQLiteCpp/SQLiteCpp.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/proto/device_id.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS enrollment_tokens (
  token_sha256 BLOB PRIMARY KEY, device_id TEXT, expires_ms INTEGER NOT NULL, used_ms INTEGER);
CREATE TABLE IF NOT EXISTS device_keys (
  device_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, enrolled_ms INTEGER NOT NULL, revoked_ms INTEGER);
)sql";

absl::Status DbError(const std::string& what, const std::exception& e) {
  return absl::InternalError(StrCat("device registry: ", what, ": ", e.what()));
}

int64_t Millis(absl::Time t) { return absl::ToUnixMillis(t); }

}  // namespace

DeviceRegistry::DeviceRegistry(std::unique_ptr<SQLite::Database> db, base::Env& env) : env_(env), db_(std::move(db)) {}
DeviceRegistry::~DeviceRegistry() = default;

absl::StatusOr<std::unique_ptr<DeviceRegistry>> DeviceRegistry::Open(const std::filesystem::path& state_dir,
                                                                     base::Env& env) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec) return absl::FailedPreconditionError(StrCat("cannot create ", state_dir.string(), ": ", ec.message()));
  const std::string file = (state_dir / "devices.db").string();
  try {
    auto db = std::make_unique<SQLite::Database>(file, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db->setBusyTimeout(5000);  // the CLI and the server share the file
    db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    db->exec(kSchema);
    return std::unique_ptr<DeviceRegistry>(new DeviceRegistry(std::move(db), env));
  } catch (const std::exception& e) {
    return DbError(StrCat("opening ", file), e);
  }
}

absl::StatusOr<std::string> DeviceRegistry::IssueToken(const std::optional<std::string>& device_id,
                                                       absl::Duration lifetime) {
  if (device_id && !proto::IsValidDeviceId(*device_id)) {
    return absl::InvalidArgumentError(StrCat("device id '", *device_id, "' must be 1 to 64 of [A-Za-z0-9._-]"));
  }
  std::string raw(32, '\0');
  env_.RandomBytes(std::span(reinterpret_cast<uint8_t*>(raw.data()), raw.size()));
  const std::string token = absl::BytesToHexString(raw);
  sodium_memzero(raw.data(), raw.size());
  absl::MutexLock lock(&mu_);
  try {
    SQLite::Statement q(*db_, "INSERT INTO enrollment_tokens (token_sha256, device_id, expires_ms) VALUES (?, ?, ?)");
    const std::string hash = base::Sha256(token);
    q.bind(1, hash.data(), static_cast<int>(hash.size()));
    if (device_id) q.bind(2, *device_id);
    q.bind(3, Millis(env_.Now() + lifetime));
    q.exec();
  } catch (const std::exception& e) {
    return DbError("storing a token", e);
  }
  return token;
}

absl::Status DeviceRegistry::Enroll(const v1::EnrollRequest& r) {
  if (!proto::IsValidDeviceId(r.device_id())) {
    return absl::InvalidArgumentError("device_id must be 1 to 64 of [A-Za-z0-9._-]");
  }
  auto key = models::PublicKeyFromBytes(r.device_public_key());
  if (!key.ok()) return absl::InvalidArgumentError(StrCat("device_public_key: ", key.status().message()));
  if (!models::VerifySignature(*key, proto::EnrollmentProofMessage(r.device_id(), r.token()), r.proof())) {
    return absl::UnauthenticatedError("the proof is not the device key's signature over the token");
  }
  const std::string hash = base::Sha256(r.token());
  const int64_t now = Millis(env_.Now());
  absl::MutexLock lock(&mu_);
  try {
    // Immediate: it reads, then writes; a deferred transaction would fail
    // with "database is locked" while `tinyfed enroll` writes a token.
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement token(*db_,
                            "SELECT device_id, expires_ms, used_ms FROM enrollment_tokens WHERE token_sha256 = ?");
    token.bind(1, hash.data(), static_cast<int>(hash.size()));
    // One message for unknown, used and expired tokens: no oracle.
    const auto refused = absl::UnauthenticatedError("the enrollment token is unknown, used or expired");
    if (!token.executeStep() || token.getColumn(1).getInt64() <= now) return refused;
    if (!token.getColumn(2).isNull()) {
      // A gateway that lost the answer retries with the same token and key:
      // the enrollment that used the token is this one.
      SQLite::Statement same(*db_,
                             "SELECT 1 FROM device_keys WHERE device_id = ? AND public_key = ? AND enrolled_ms = ?");
      same.bind(1, r.device_id());
      same.bind(2, r.device_public_key().data(), static_cast<int>(r.device_public_key().size()));
      same.bind(3, token.getColumn(2).getInt64());
      return same.executeStep() ? absl::OkStatus() : refused;
    }
    const bool bound = !token.getColumn(0).isNull();
    if (bound && token.getColumn(0).getString() != r.device_id()) {
      return absl::PermissionDeniedError(StrCat("the enrollment token is for another device, not ", r.device_id()));
    }
    SQLite::Statement existing(*db_, "SELECT public_key FROM device_keys WHERE device_id = ?");
    existing.bind(1, r.device_id());
    if (existing.executeStep() && !bound) {
      return absl::AlreadyExistsError(
          StrCat("device ", r.device_id(), " is enrolled already; re-enrolling it needs a token issued for it"));
    }
    SQLite::Statement use(*db_, "UPDATE enrollment_tokens SET used_ms = ? WHERE token_sha256 = ?");
    use.bind(1, now);
    use.bind(2, hash.data(), static_cast<int>(hash.size()));
    use.exec();
    SQLite::Statement put(*db_,
                          "INSERT OR REPLACE INTO device_keys (device_id, public_key, enrolled_ms, revoked_ms) "
                          "VALUES (?, ?, ?, NULL)");
    put.bind(1, r.device_id());
    put.bind(2, r.device_public_key().data(), static_cast<int>(r.device_public_key().size()));
    put.bind(3, now);
    put.exec();
    tx.commit();
    cache_.erase(r.device_id());
  } catch (const std::exception& e) {
    return DbError("enrolling a device", e);
  }
  return absl::OkStatus();
}

void DeviceRegistry::RefreshCacheLocked() {
  const int64_t version = db_->execAndGet("PRAGMA data_version").getInt64();
  if (version != data_version_) cache_.clear();
  data_version_ = version;
}

absl::StatusOr<models::PublicKey> DeviceRegistry::KeyOf(const std::string& device_id) {
  absl::MutexLock lock(&mu_);
  try {
    RefreshCacheLocked();
    if (auto it = cache_.find(device_id); it != cache_.end()) return it->second;
    SQLite::Statement q(*db_, "SELECT public_key, revoked_ms FROM device_keys WHERE device_id = ?");
    q.bind(1, device_id);
    // Ids nobody enrolled are not cached: an attacker chooses how many there are.
    if (!q.executeStep()) return absl::UnauthenticatedError(StrCat("device ", device_id, " is not enrolled"));
    absl::StatusOr<models::PublicKey> key = absl::PermissionDeniedError(StrCat("device ", device_id, " is revoked"));
    if (q.getColumn(1).isNull()) {
      const SQLite::Column blob = q.getColumn(0);
      key = models::PublicKeyFromBytes(std::string(static_cast<const char*>(blob.getBlob()), blob.getBytes()));
    }
    cache_.emplace(device_id, key);
    return key;
  } catch (const std::exception& e) {
    return DbError("reading a device key", e);
  }
}

absl::Status DeviceRegistry::Revoke(const std::string& device_id) {
  absl::MutexLock lock(&mu_);
  try {
    SQLite::Statement q(*db_, "UPDATE device_keys SET revoked_ms = ? WHERE device_id = ? AND revoked_ms IS NULL");
    q.bind(1, Millis(env_.Now()));
    q.bind(2, device_id);
    cache_.erase(device_id);
    if (q.exec() == 0) {
      SQLite::Statement known(*db_, "SELECT 1 FROM device_keys WHERE device_id = ?");
      known.bind(1, device_id);
      if (!known.executeStep()) return absl::NotFoundError(StrCat("device ", device_id, " was never enrolled"));
    }
  } catch (const std::exception& e) {
    return DbError("revoking a device", e);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Device>> DeviceRegistry::List() {
  absl::MutexLock lock(&mu_);
  std::vector<Device> out;
  try {
    SQLite::Statement q(*db_,
                        "SELECT device_id, public_key, enrolled_ms, revoked_ms FROM device_keys ORDER BY device_id");
    while (q.executeStep()) {
      Device d;
      d.device_id = q.getColumn(0).getString();
      const SQLite::Column key = q.getColumn(1);
      d.public_key_hex = absl::BytesToHexString(std::string(static_cast<const char*>(key.getBlob()), key.getBytes()));
      d.enrolled = absl::FromUnixMillis(q.getColumn(2).getInt64());
      if (!q.getColumn(3).isNull()) d.revoked = absl::FromUnixMillis(q.getColumn(3).getInt64());
      out.push_back(std::move(d));
    }
  } catch (const std::exception& e) {
    return DbError("listing devices", e);
  }
  return out;
}

}  // namespace tinyfed::aggregator
