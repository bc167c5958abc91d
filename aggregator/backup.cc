#include "tinyfed/aggregator/backup.h"

#include <sqlite3.h>

#include <cstring>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "SQLiteCpp/Backup.h"
#include "SQLiteCpp/SQLiteCpp.h"
#include "absl/strings/str_cat.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::aggregator {
namespace {

using absl::StrCat;

constexpr int kAttempts = 20;
constexpr const char* kDatabases[] = {"aggregator.db", "ledger.db", "devices.db"};
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 30;

// The database `db` as one file image, copied by SQLite's online backup API
// in a single step (a consistent snapshot beside the aggregator's writes).
std::string Snapshot(SQLite::Database& db) {
  SQLite::Database copy(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  SQLite::Backup(copy, db).executeStep(-1);
  sqlite3_int64 size = 0;
  unsigned char* image = sqlite3_serialize(copy.getHandle(), "main", &size, 0);
  if (image == nullptr) throw std::runtime_error("cannot serialize the copy (out of memory)");
  std::string bytes(reinterpret_cast<const char*>(image), static_cast<size_t>(size));
  sqlite3_free(image);
  return bytes;
}

// A connection to a database held in `image`.
std::unique_ptr<SQLite::Database> OpenImage(const std::string& image) {
  auto db = std::make_unique<SQLite::Database>(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  auto* buffer = static_cast<unsigned char*>(sqlite3_malloc64(image.size()));
  if (buffer == nullptr) throw std::runtime_error("out of memory");
  std::memcpy(buffer, image.data(), image.size());
  // A copy of a WAL database says so in its header (bytes 18 and 19), and
  // an in-memory database cannot have a write-ahead log: read it as a
  // rollback-journal one (the aggregator turns WAL on again when it opens).
  if (image.size() >= 20 && buffer[18] == 2 && buffer[19] == 2) buffer[18] = buffer[19] = 1;
  const int rc = sqlite3_deserialize(db->getHandle(), "main", buffer, static_cast<sqlite3_int64>(image.size()),
                                     static_cast<sqlite3_int64>(image.size()),
                                     SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE);
  if (rc != SQLITE_OK) throw std::runtime_error("not a SQLite database image");
  return db;
}

int64_t DataVersion(SQLite::Database& db) { return db.execAndGet("PRAGMA data_version").getInt64(); }

// What a backup may hold: the three databases and model files, nothing
// that could point outside the directory it is restored into.
bool IsBackupName(const std::string& name) {
  static const std::regex model("models/model-v[0-9]{1,19}\\.signed");
  for (const char* db : kDatabases) {
    if (name == db) return true;
  }
  return std::regex_match(name, model);
}

void CountInto(BackupSummary& summary, const std::string& aggregator_image) {
  auto db = OpenImage(aggregator_image);
  summary.rounds = db->execAndGet("SELECT COUNT(*) FROM rounds").getInt64();
  summary.latest_model_version =
      static_cast<uint64_t>(db->execAndGet("SELECT COALESCE(MAX(version), 0) FROM models").getInt64());
}

}  // namespace

absl::StatusOr<BackupSummary> BackupState(const std::filesystem::path& state_dir, const std::filesystem::path& out) {
  if (!std::filesystem::exists(state_dir / "aggregator.db")) {
    return absl::FailedPreconditionError(StrCat(state_dir.string(), " holds no aggregator state (no aggregator.db)"));
  }
  if (std::filesystem::exists(out)) {
    return absl::FailedPreconditionError(StrCat(out.string(), " exists; a backup never overwrites a file"));
  }
  BackupSummary summary;
  std::map<std::string, std::string> files;  // name -> bytes
  try {
    SQLite::Database aggregator((state_dir / "aggregator.db").string(), SQLite::OPEN_READONLY);
    SQLite::Database ledger((state_dir / "ledger.db").string(), SQLite::OPEN_READONLY);
    SQLite::Database devices((state_dir / "devices.db").string(), SQLite::OPEN_READONLY);
    for (SQLite::Database* db : {&aggregator, &ledger, &devices}) db->setBusyTimeout(5000);
    bool consistent = false;
    while (!consistent && summary.attempts < kAttempts) {
      ++summary.attempts;
      const int64_t before = DataVersion(aggregator);
      files["aggregator.db"] = Snapshot(aggregator);
      files["ledger.db"] = Snapshot(ledger);
      // Unchanged since before its copy: the rounds and models of the copy
      // were the live ones when the ledger was copied.
      consistent = DataVersion(aggregator) == before;
    }
    if (!consistent) {
      return absl::UnavailableError(StrCat("no consistent copy of ", state_dir.string(), " in ", kAttempts,
                                           " attempts: rounds completed during every copy; try again"));
    }
    files["devices.db"] = Snapshot(devices);
    CountInto(summary, files["aggregator.db"]);
    // Model files never change once their row is committed. A row may name
    // its file relative to where the aggregator ran: the file is found by
    // its name under the state directory's models/.
    auto copy = OpenImage(files["aggregator.db"]);
    SQLite::Statement q(*copy, "SELECT version, file FROM models ORDER BY version");
    while (q.executeStep()) {
      const std::filesystem::path file =
          state_dir / "models" / std::filesystem::path(q.getColumn(1).getString()).filename();
      TINYFED_ASSIGN_OR_RETURN(std::string bytes, base::ReadFileBytes(file, kMaxFileBytes));
      files[StrCat("models/model-v", q.getColumn(0).getInt64(), ".signed")] = std::move(bytes);
    }

    SQLite::Database archive(":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    archive.exec(
        "CREATE TABLE files (name TEXT PRIMARY KEY, sha256 BLOB NOT NULL, content BLOB NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);");
    SQLite::Statement put(archive, "INSERT INTO files VALUES (?, ?, ?)");
    for (const auto& [name, bytes] : files) {
      const std::string digest = base::Sha256(bytes);
      put.bind(1, name);
      put.bind(2, digest.data(), static_cast<int>(digest.size()));
      put.bind(3, bytes.data(), static_cast<int>(bytes.size()));
      put.exec();
      put.reset();
      ++summary.files;
      summary.bytes += bytes.size();
    }
    SQLite::Statement meta(archive, "INSERT INTO meta VALUES ('format', 'tinyfed-aggregator-backup-1')");
    meta.exec();
    TINYFED_RETURN_IF_ERROR(base::WriteFileAtomically(out, Snapshot(archive), 0600));
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("backing up ", state_dir.string(), ": ", e.what()));
  }
  return summary;
}

absl::StatusOr<BackupSummary> RestoreState(const std::filesystem::path& backup,
                                           const std::filesystem::path& state_dir) {
  std::error_code ec;
  if (std::filesystem::exists(state_dir) && !std::filesystem::is_empty(state_dir, ec)) {
    return absl::FailedPreconditionError(
        StrCat(state_dir.string(), " is not empty: a restore goes into a new or empty state directory"));
  }
  TINYFED_ASSIGN_OR_RETURN(std::string image, base::ReadFileBytes(backup, uint64_t{16} << 30));
  BackupSummary summary;
  std::map<std::string, std::string> files;
  try {
    auto archive = OpenImage(image);
    const bool is_backup =
        archive->tableExists("meta") && archive->tableExists("files") &&
        archive->execAndGet("SELECT COUNT(*) FROM meta WHERE key = 'format' AND value = 'tinyfed-aggregator-backup-1'")
                .getInt() == 1;
    if (!is_backup) return absl::InvalidArgumentError(StrCat(backup.string(), " is not a tinyfed aggregator backup"));
    SQLite::Statement q(*archive, "SELECT name, sha256, content FROM files");
    while (q.executeStep()) {
      const std::string name = q.getColumn(0).getString();
      if (!IsBackupName(name)) {
        return absl::DataLossError(StrCat(backup.string(), " holds an unexpected file '", name.substr(0, 80), "'"));
      }
      std::string bytes(static_cast<const char*>(q.getColumn(2).getBlob()),
                        static_cast<size_t>(q.getColumn(2).getBytes()));
      const std::string digest(static_cast<const char*>(q.getColumn(1).getBlob()),
                               static_cast<size_t>(q.getColumn(1).getBytes()));
      if (base::Sha256(bytes) != digest) {
        return absl::DataLossError(StrCat(backup.string(), ": ", name, " does not match its SHA-256 (damaged backup)"));
      }
      summary.bytes += bytes.size();
      ++summary.files;
      files[name] = std::move(bytes);
    }
    for (const char* db : kDatabases) {
      if (!files.contains(db)) return absl::DataLossError(StrCat(backup.string(), " has no ", db));
    }
    // The model rows name files of the directory the backup came from.
    auto aggregator = OpenImage(files["aggregator.db"]);
    const std::filesystem::path models = std::filesystem::absolute(state_dir) / "models";
    SQLite::Statement rows(*aggregator, "SELECT version FROM models");
    std::vector<int64_t> versions;
    while (rows.executeStep()) versions.push_back(rows.getColumn(0).getInt64());
    for (int64_t v : versions) {
      const std::string name = StrCat("models/model-v", v, ".signed");
      if (!files.contains(name)) return absl::DataLossError(StrCat(backup.string(), " lacks ", name));
      SQLite::Statement set(*aggregator, "UPDATE models SET file = ? WHERE version = ?");
      set.bind(1, (models / StrCat("model-v", v, ".signed")).string());
      set.bind(2, v);
      set.exec();
    }
    files["aggregator.db"] = Snapshot(*aggregator);
    CountInto(summary, files["aggregator.db"]);
  } catch (const std::exception& e) {
    return absl::DataLossError(StrCat(backup.string(), " cannot be read as a backup: ", e.what()));
  }

  // Everything goes into a staging directory beside the target, renamed
  // into place at the end: a failed restore leaves no partial state.
  const std::filesystem::path target = std::filesystem::absolute(state_dir);
  const std::filesystem::path staging = target.parent_path() / StrCat(".", target.filename().string(), ".restoring");
  std::filesystem::remove_all(staging, ec);
  std::filesystem::create_directories(staging / "models", ec);
  if (ec) return absl::FailedPreconditionError(StrCat("cannot create ", staging.string(), ": ", ec.message()));
  for (const auto& [name, bytes] : files) {
    if (absl::Status s = base::WriteFileAtomically(staging / name, bytes, 0600); !s.ok()) {
      std::filesystem::remove_all(staging, ec);
      return s;
    }
  }
  std::filesystem::remove(target, ec);  // empty, if it exists
  std::filesystem::rename(staging, target, ec);
  if (ec) {
    const std::string why = ec.message();
    std::filesystem::remove_all(staging, ec);
    return absl::FailedPreconditionError(StrCat("cannot move the restored state into ", target.string(), ": ", why));
  }
  return summary;
}

}  // namespace tinyfed::aggregator
