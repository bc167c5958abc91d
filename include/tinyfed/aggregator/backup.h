// Backups of an aggregator's state directory, taken while it runs, and
// their restore into a fresh directory (`tinyfed aggregator backup` and
// `restore`).
//
// A backup holds the three databases (aggregator.db: rounds, models and
// optimizer; ledger.db: the privacy ledger; devices.db: enrollments) copied
// with SQLite's online backup API, and every published model file they
// name. The ledger and the rounds must be from one instant, or a restore
// would void or miss a charge: the copy is retried until aggregator.db did
// not change between the start of its copy and the end of the ledger's.
// The backup is one SQLite file (table `files`: name, SHA-256, content),
// written to a temporary name and renamed, so a crash leaves no half file.
//
// Keys, roots and the config are not in it: they live outside the state
// directory and are backed up (and rotated) on their own.
#ifndef TINYFED_AGGREGATOR_BACKUP_H_
#define TINYFED_AGGREGATOR_BACKUP_H_

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"

namespace tinyfed::aggregator {

struct BackupSummary {
  uint64_t latest_model_version = 0;
  int64_t rounds = 0;  // rows of the rounds table, any state
  int files = 0;
  uint64_t bytes = 0;
  int attempts = 0;  // copies taken until one was consistent
};

// FAILED_PRECONDITION if `state_dir` holds no aggregator state or `out`
// exists; UNAVAILABLE if no consistent copy could be taken in 20 attempts
// (rounds completing faster than the copy).
absl::StatusOr<BackupSummary> BackupState(const std::filesystem::path& state_dir, const std::filesystem::path& out);

// Writes the backup's files into `state_dir`, which must be missing or
// empty, checking each file's SHA-256, and points the model rows at the
// new directory. DATA_LOSS for a damaged backup (nothing is left behind).
absl::StatusOr<BackupSummary> RestoreState(const std::filesystem::path& backup, const std::filesystem::path& state_dir);

}  // namespace tinyfed::aggregator

#endif  // TINYFED_AGGREGATOR_BACKUP_H_
