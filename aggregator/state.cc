#include "tinyfed/aggregator/state.h"

#include <chrono>
#include <cstring>

#include "SQLiteCpp/SQLiteCpp.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/v1/trust.pb.h"

namespace tinyfed::aggregator {
namespace {

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status DbError(const std::string& what, const std::exception& e) {
  return absl::InternalError(absl::StrCat("aggregator state: ", what, ": ", e.what()));
}

std::string FloatsToBlob(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::vector<float> BlobToFloats(const SQLite::Column& c) {
  std::vector<float> v(static_cast<size_t>(c.getBytes()) / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), c.getBlob(), v.size() * sizeof(float));
  return v;
}

PublishedModel ModelFrom(SQLite::Statement& q) {
  PublishedModel m;
  m.version = static_cast<uint64_t>(q.getColumn(0).getInt64());
  m.round_id = q.getColumn(1).getInt64();
  m.bundle_sha256 = q.getColumn(2).getString();
  m.file = q.getColumn(3).getString();
  return m;
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS devices (
  device_id TEXT PRIMARY KEY, first_seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
  round_id INTEGER PRIMARY KEY, state TEXT NOT NULL, started_ms INTEGER NOT NULL,
  finished_ms INTEGER, selected INTEGER NOT NULL DEFAULT 0, survivors INTEGER NOT NULL DEFAULT 0,
  model_version INTEGER NOT NULL DEFAULT 0, epsilon REAL NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS models (
  version INTEGER PRIMARY KEY, round_id INTEGER NOT NULL, bundle_sha256 BLOB NOT NULL,
  file TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS optimizer (
  id INTEGER PRIMARY KEY CHECK (id = 1), first_moment BLOB NOT NULL, second_moment BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (
  device_id TEXT PRIMARY KEY, reported_ms INTEGER NOT NULL, report TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
  version INTEGER PRIMARY KEY, previous INTEGER NOT NULL, state TEXT NOT NULL, started_ms INTEGER NOT NULL,
  decided_ms INTEGER NOT NULL DEFAULT 0, decided_by TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
  rollback_version INTEGER NOT NULL DEFAULT 0, operator_request TEXT NOT NULL DEFAULT '',
  canary TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS drift (
  scope TEXT PRIMARY KEY, flagged_ms INTEGER NOT NULL, reason TEXT NOT NULL);
)sql";

}  // namespace

AggregatorState::AggregatorState(std::filesystem::path dir, std::unique_ptr<SQLite::Database> db)
    : dir_(std::move(dir)), db_(std::move(db)) {}
AggregatorState::~AggregatorState() = default;

absl::StatusOr<std::unique_ptr<AggregatorState>> AggregatorState::Open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create state directory ", dir.string(), ": ", ec.message()));
  try {
    auto db = std::make_unique<SQLite::Database>((dir / "aggregator.db").string(),
                                                 SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    // Readers (`tinyfed aggregator status`, the simulator following a
    // running federation) share the file with the aggregator's writes.
    db->setBusyTimeout(5000);
    db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    db->exec(kSchema);
    return std::unique_ptr<AggregatorState>(new AggregatorState(dir, std::move(db)));
  } catch (const std::exception& e) {
    return DbError(absl::StrCat("opening ", (dir / "aggregator.db").string()), e);
  }
}

absl::StatusOr<std::optional<PublishedModel>> AggregatorState::LatestModel() const {
  try {
    SQLite::Statement q(*db_,
                        "SELECT version, round_id, bundle_sha256, file FROM models ORDER BY version DESC LIMIT 1");
    if (!q.executeStep()) return std::optional<PublishedModel>();
    return std::optional<PublishedModel>(ModelFrom(q));
  } catch (const std::exception& e) {
    return DbError("reading the latest model", e);
  }
}

absl::StatusOr<std::vector<PublishedModel>> AggregatorState::Models() const {
  try {
    SQLite::Statement q(*db_, "SELECT version, round_id, bundle_sha256, file FROM models ORDER BY version");
    std::vector<PublishedModel> out;
    while (q.executeStep()) out.push_back(ModelFrom(q));
    return out;
  } catch (const std::exception& e) {
    return DbError("reading models", e);
  }
}

absl::Status AggregatorState::RecordModel(const PublishedModel& m) {
  try {
    SQLite::Statement q(*db_, "INSERT INTO models VALUES (?, 0, ?, ?, ?)");
    q.bind(1, static_cast<int64_t>(m.version));
    q.bind(2, m.bundle_sha256.data(), static_cast<int>(m.bundle_sha256.size()));
    q.bind(3, m.file.string());
    q.bind(4, NowMillis());
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("recording the initial model", e);
  }
}

absl::StatusOr<std::vector<RoundRecord>> AggregatorState::Rounds() const {
  try {
    SQLite::Statement q(*db_,
                        "SELECT round_id, state, selected, survivors, model_version, epsilon, reason, started_ms, "
                        "COALESCE(finished_ms, 0) FROM rounds ORDER BY round_id");
    std::vector<RoundRecord> out;
    while (q.executeStep()) {
      RoundRecord r;
      r.round_id = q.getColumn(0).getInt64();
      r.state = q.getColumn(1).getString();
      r.selected = q.getColumn(2).getInt();
      r.survivors = q.getColumn(3).getInt();
      r.model_version = static_cast<uint64_t>(q.getColumn(4).getInt64());
      r.epsilon = q.getColumn(5).getDouble();
      r.reason = q.getColumn(6).getString();
      r.started_ms = q.getColumn(7).getInt64();
      r.finished_ms = q.getColumn(8).getInt64();
      out.push_back(std::move(r));
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading rounds", e);
  }
}

absl::StatusOr<int64_t> AggregatorState::NextRoundId() const {
  try {
    return db_->execAndGet("SELECT COALESCE(MAX(round_id), 0) + 1 FROM rounds").getInt64();
  } catch (const std::exception& e) {
    return DbError("reading the round counter", e);
  }
}

absl::StatusOr<int64_t> AggregatorState::CompletedRounds() const {
  try {
    return db_->execAndGet("SELECT COUNT(*) FROM rounds WHERE state = 'done'").getInt64();
  } catch (const std::exception& e) {
    return DbError("counting rounds", e);
  }
}

absl::Status AggregatorState::StartRound(int64_t round_id) {
  try {
    SQLite::Statement q(*db_, "INSERT INTO rounds (round_id, state, started_ms) VALUES (?, 'running', ?)");
    q.bind(1, round_id);
    q.bind(2, NowMillis());
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError(absl::StrCat("starting round ", round_id), e);
  }
}

absl::Status AggregatorState::UpdateRoundSelected(int64_t round_id, int selected) {
  try {
    SQLite::Statement q(*db_, "UPDATE rounds SET selected = ? WHERE round_id = ?");
    q.bind(1, selected);
    q.bind(2, round_id);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError(absl::StrCat("updating round ", round_id), e);
  }
}

absl::Status AggregatorState::AbortRound(int64_t round_id, const std::string& reason) {
  try {
    SQLite::Statement q(*db_,
                        "UPDATE rounds SET state = 'aborted', reason = ?, finished_ms = ? WHERE round_id = ? "
                        "AND state = 'running'");
    q.bind(1, reason);
    q.bind(2, NowMillis());
    q.bind(3, round_id);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError(absl::StrCat("aborting round ", round_id), e);
  }
}

absl::StatusOr<bool> AggregatorState::IsRunning(int64_t round_id) const {
  try {
    SQLite::Statement q(*db_, "SELECT 1 FROM rounds WHERE round_id = ? AND state = 'running'");
    q.bind(1, round_id);
    return q.executeStep();
  } catch (const std::exception& e) {
    return DbError(absl::StrCat("reading round ", round_id), e);
  }
}

absl::StatusOr<int> AggregatorState::AbortUnfinishedRounds(const std::string& reason, int64_t resuming) {
  try {
    SQLite::Statement q(*db_,
                        "UPDATE rounds SET state = 'aborted', reason = ?, finished_ms = ? WHERE state = 'running' "
                        "AND round_id != ?");
    q.bind(1, reason);
    q.bind(2, NowMillis());
    q.bind(3, resuming);
    return q.exec();
  } catch (const std::exception& e) {
    return DbError("aborting unfinished rounds", e);
  }
}

absl::Status AggregatorState::MarkRoundDone(const RoundRecord& r) {
  SQLite::Statement round(*db_,
                          "UPDATE rounds SET state = 'done', finished_ms = ?, selected = ?, survivors = ?, "
                          "model_version = ?, epsilon = ? WHERE round_id = ?");
  round.bind(1, NowMillis());
  round.bind(2, r.selected);
  round.bind(3, r.survivors);
  round.bind(4, static_cast<int64_t>(r.model_version));
  round.bind(5, r.epsilon);
  round.bind(6, r.round_id);
  if (round.exec() != 1) return absl::FailedPreconditionError(absl::StrCat("round ", r.round_id, " is not recorded"));
  return absl::OkStatus();
}

absl::Status AggregatorState::CompleteForwardedRound(const RoundRecord& r) {
  try {
    return MarkRoundDone(r);
  } catch (const std::exception& e) {
    return DbError("completing a forwarded round", e);
  }
}

absl::Status AggregatorState::CompleteRound(const RoundRecord& r, const PublishedModel& m,
                                            const std::vector<float>& first_moment,
                                            const std::vector<float>& second_moment) {
  try {
    SQLite::Transaction tx(*db_);
    SQLite::Statement model(*db_, "INSERT INTO models VALUES (?, ?, ?, ?, ?)");
    model.bind(1, static_cast<int64_t>(m.version));
    model.bind(2, m.round_id);
    model.bind(3, m.bundle_sha256.data(), static_cast<int>(m.bundle_sha256.size()));
    model.bind(4, m.file.string());
    model.bind(5, NowMillis());
    model.exec();
    if (absl::Status done = MarkRoundDone(r); !done.ok()) return done;
    SQLite::Statement opt(*db_, "INSERT OR REPLACE INTO optimizer VALUES (1, ?, ?)");
    const std::string m1 = FloatsToBlob(first_moment), m2 = FloatsToBlob(second_moment);
    opt.bind(1, m1.data(), static_cast<int>(m1.size()));
    opt.bind(2, m2.data(), static_cast<int>(m2.size()));
    opt.exec();
    tx.commit();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError(absl::StrCat("completing round ", r.round_id), e);
  }
}

absl::Status AggregatorState::LoadOptimizer(std::vector<float>* first_moment, std::vector<float>* second_moment) const {
  try {
    SQLite::Statement q(*db_, "SELECT first_moment, second_moment FROM optimizer WHERE id = 1");
    first_moment->clear();
    second_moment->clear();
    if (q.executeStep()) {
      *first_moment = BlobToFloats(q.getColumn(0));
      *second_moment = BlobToFloats(q.getColumn(1));
    }
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("reading optimizer state", e);
  }
}

absl::StatusOr<bool> AggregatorState::AddDevice(const std::string& device_id) {
  try {
    SQLite::Statement q(*db_, "INSERT OR IGNORE INTO devices VALUES (?, ?)");
    q.bind(1, device_id);
    q.bind(2, NowMillis());
    return q.exec() == 1;
  } catch (const std::exception& e) {
    return DbError("adding a device", e);
  }
}

absl::StatusOr<int64_t> AggregatorState::PopulationSize() const {
  try {
    return db_->execAndGet("SELECT COUNT(*) FROM devices").getInt64();
  } catch (const std::exception& e) {
    return DbError("counting devices", e);
  }
}

absl::Status AggregatorState::RecordTelemetry(const std::string& device_id, const std::string& json) {
  try {
    SQLite::Statement q(*db_, "INSERT OR REPLACE INTO telemetry VALUES (?, ?, ?)");
    q.bind(1, device_id);
    q.bind(2, NowMillis());
    q.bind(3, json);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("recording telemetry", e);
  }
}

absl::StatusOr<std::vector<DeviceRecord>> AggregatorState::Devices() const {
  try {
    SQLite::Statement q(*db_,
                        "SELECT d.device_id, d.first_seen_ms, COALESCE(t.reported_ms, 0), COALESCE(t.report, '') "
                        "FROM devices d LEFT JOIN telemetry t ON t.device_id = d.device_id ORDER BY d.device_id");
    std::vector<DeviceRecord> out;
    while (q.executeStep()) {
      out.push_back({.device_id = q.getColumn(0).getString(),
                     .first_seen_ms = q.getColumn(1).getInt64(),
                     .telemetry_ms = q.getColumn(2).getInt64(),
                     .telemetry_json = q.getColumn(3).getString()});
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading devices", e);
  }
}

absl::StatusOr<std::vector<RolloutRecord>> AggregatorState::Rollouts(int limit) const {
  try {
    SQLite::Statement q(
        *db_,
        "SELECT version, previous, state, started_ms, decided_ms, decided_by, reason, rollback_version, "
        "operator_request, canary FROM rollouts ORDER BY version DESC LIMIT ?");
    q.bind(1, limit > 0 ? limit : -1);
    std::vector<RolloutRecord> out;
    while (q.executeStep()) {
      out.push_back({.version = static_cast<uint64_t>(q.getColumn(0).getInt64()),
                     .previous = static_cast<uint64_t>(q.getColumn(1).getInt64()),
                     .state = q.getColumn(2).getString(),
                     .started_ms = q.getColumn(3).getInt64(),
                     .decided_ms = q.getColumn(4).getInt64(),
                     .decided_by = q.getColumn(5).getString(),
                     .reason = q.getColumn(6).getString(),
                     .rollback_version = static_cast<uint64_t>(q.getColumn(7).getInt64()),
                     .operator_request = q.getColumn(8).getString(),
                     .canary = absl::StrSplit(q.getColumn(9).getString(), ',', absl::SkipEmpty())});
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading rollouts", e);
  }
}

absl::Status AggregatorState::StartRollout(uint64_t version, uint64_t previous) {
  try {
    SQLite::Statement q(*db_,
                        "INSERT OR REPLACE INTO rollouts (version, previous, state, started_ms) "
                        "VALUES (?, ?, 'canary', ?)");
    q.bind(1, static_cast<int64_t>(version));
    q.bind(2, static_cast<int64_t>(previous));
    q.bind(3, NowMillis());
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("starting a rollout", e);
  }
}

namespace {

// Marks the canary of `version` decided; FAILED_PRECONDITION if it is not
// in canary. Throws what SQLite throws.
absl::Status DecideRollout(SQLite::Database& db, uint64_t version, const char* state, const std::string& decided_by,
                           const std::string& reason, const std::vector<std::string>& canary,
                           uint64_t rollback_version) {
  SQLite::Statement q(db,
                      "UPDATE rollouts SET state = ?, decided_ms = ?, decided_by = ?, reason = ?, "
                      "rollback_version = ?, operator_request = '', canary = ? WHERE version = ? AND state = 'canary'");
  q.bind(1, state);
  q.bind(2, NowMillis());
  q.bind(3, decided_by);
  q.bind(4, reason);
  q.bind(5, static_cast<int64_t>(rollback_version));
  q.bind(6, absl::StrJoin(canary, ","));  // device ids hold no comma
  q.bind(7, static_cast<int64_t>(version));
  if (q.exec() != 1) return absl::FailedPreconditionError(absl::StrCat("model v", version, " is not in canary"));
  return absl::OkStatus();
}

}  // namespace

absl::Status AggregatorState::PromoteRollout(uint64_t version, const std::string& decided_by, const std::string& reason,
                                             const std::vector<std::string>& canary) {
  try {
    return DecideRollout(*db_, version, "promoted", decided_by, reason, canary, 0);
  } catch (const std::exception& e) {
    return DbError("promoting a rollout", e);
  }
}

absl::Status AggregatorState::RollBack(uint64_t version, const std::string& decided_by, const std::string& reason,
                                       const std::vector<std::string>& canary, const PublishedModel& model,
                                       const std::vector<float>& first_moment,
                                       const std::vector<float>& second_moment) {
  try {
    SQLite::Transaction tx(*db_);
    TINYFED_RETURN_IF_ERROR(DecideRollout(*db_, version, "rolled_back", decided_by, reason, canary, model.version));
    SQLite::Statement q(*db_, "INSERT INTO models VALUES (?, 0, ?, ?, ?)");
    q.bind(1, static_cast<int64_t>(model.version));
    q.bind(2, model.bundle_sha256.data(), static_cast<int>(model.bundle_sha256.size()));
    q.bind(3, model.file.string());
    q.bind(4, NowMillis());
    q.exec();
    const std::string m = FloatsToBlob(first_moment), v = FloatsToBlob(second_moment);
    SQLite::Statement opt(*db_, "INSERT OR REPLACE INTO optimizer VALUES (1, ?, ?)");
    opt.bind(1, m.data(), static_cast<int>(m.size()));
    opt.bind(2, v.data(), static_cast<int>(v.size()));
    opt.exec();
    tx.commit();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("rolling back a rollout", e);
  }
}

absl::Status AggregatorState::RequestRolloutDecision(const std::string& action) {
  if (action != "promote" && action != "rollback") {
    return absl::InvalidArgumentError(absl::StrCat("a rollout decision is promote or rollback, not '", action, "'"));
  }
  try {
    SQLite::Statement q(*db_, "UPDATE rollouts SET operator_request = ? WHERE state = 'canary'");
    q.bind(1, action);
    if (q.exec() == 0) return absl::FailedPreconditionError("no model is in canary");
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("recording an operator's rollout decision", e);
  }
}

absl::Status AggregatorState::SetDriftFlag(const DriftFlag& flag) {
  try {
    SQLite::Statement q(*db_, "INSERT OR REPLACE INTO drift VALUES (?, ?, ?)");
    q.bind(1, flag.scope);
    q.bind(2, flag.flagged_ms);
    q.bind(3, flag.reason);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("flagging drift", e);
  }
}

absl::Status AggregatorState::ClearDriftFlag(const std::string& scope) {
  try {
    SQLite::Statement q(*db_, "DELETE FROM drift WHERE scope = ?");
    q.bind(1, scope);
    q.exec();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return DbError("clearing a drift flag", e);
  }
}

absl::StatusOr<std::vector<DriftFlag>> AggregatorState::DriftFlags() const {
  try {
    SQLite::Statement q(*db_, "SELECT scope, flagged_ms, reason FROM drift ORDER BY scope");
    std::vector<DriftFlag> out;
    while (q.executeStep()) {
      out.push_back({.scope = q.getColumn(0).getString(),
                     .flagged_ms = q.getColumn(1).getInt64(),
                     .reason = q.getColumn(2).getString()});
    }
    return out;
  } catch (const std::exception& e) {
    return DbError("reading drift flags", e);
  }
}

absl::StatusOr<uint64_t> AggregatorState::DatabaseBytes() const {
  std::error_code ec;
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.ends_with(".db") && !name.ends_with(".db-wal")) continue;
    std::error_code gone;  // a write-ahead log checkpointed away meanwhile
    const uintmax_t size = entry.file_size(gone);
    if (!gone) total += size;
  }
  if (ec) return absl::InternalError(absl::StrCat("aggregator state: sizing ", dir_.string(), ": ", ec.message()));
  return total;
}

absl::StatusOr<v1::ModelBundle> ReadPublishedBundle(const PublishedModel& model) {
  TINYFED_ASSIGN_OR_RETURN(std::string bytes, base::ReadFileBytes(model.file, 1 << 30));
  v1::SignedBundle signed_bundle;
  if (!signed_bundle.ParseFromString(bytes) || base::Sha256(signed_bundle.bundle()) != model.bundle_sha256) {
    return absl::DataLossError(absl::StrCat(model.file.string(), " is not the signed bundle of model v", model.version,
                                            " recorded in the state"));
  }
  return models::DecodeBundleFile(signed_bundle.bundle());
}

}  // namespace tinyfed::aggregator
