// Whole-file reads and crash-safe writes, shared by every part that persists.
#ifndef TINYFED_BASE_FILE_IO_H_
#define TINYFED_BASE_FILE_IO_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tinyfed::base {

// NOT_FOUND if the file is missing, INVALID_ARGUMENT for a directory or
// anything but a regular file, OUT_OF_RANGE if it is larger than max_bytes
// (checked before reading), INTERNAL on an I/O error.
absl::StatusOr<std::string> ReadFileBytes(const std::filesystem::path& path, uint64_t max_bytes);

// Writes to a temporary file beside `path` (created with `mode`), fsyncs it,
// renames it over `path` and fsyncs the directory. On failure the old file is
// untouched and the temporary file removed. Secrets use mode 0600.
absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes, unsigned mode = 0644);

}  // namespace tinyfed::base

#endif  // TINYFED_BASE_FILE_IO_H_
