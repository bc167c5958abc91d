// A dataset file read as a stream: gunzipped when it is gzip (zlib passes
// plain files through), counting what it decompresses against a limit, so
// that a small file expanding to gigabytes is refused early.
#ifndef TINYFED_MODELS_INTERNAL_INPUT_FILE_H_
#define TINYFED_MODELS_INTERNAL_INPUT_FILE_H_

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::models::internal {

// The most rows (samples) a reader takes from one file.
inline constexpr uint64_t kMaxSamples = uint64_t{1} << 26;

class InputFile {
 public:
  // NOT_FOUND for a missing file, INVALID_ARGUMENT for a directory.
  static absl::StatusOr<std::unique_ptr<InputFile>> Open(const std::filesystem::path& path, uint64_t max_bytes);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // Up to `n` bytes into `out`; fewer only at the end of the file.
  // OUT_OF_RANGE past max_bytes.
  absl::StatusOr<size_t> Read(char* out, size_t n);
  // The next line without its "\n", or false at the end of the file.
  // OUT_OF_RANGE for a line longer than max_line_bytes.
  absl::StatusOr<bool> ReadLine(std::string* line, size_t max_line_bytes);
  // Lines read so far, the last one counted also without its "\n".
  size_t lines() const { return lines_; }
  const std::string& name() const { return name_; }

 private:
  InputFile(gzFile f, std::string name, uint64_t max_bytes);
  gzFile file_;
  const std::string name_;
  const uint64_t max_bytes_;
  uint64_t read_ = 0;
  std::vector<char> buffer_;
  size_t pos_ = 0, end_ = 0;
  size_t lines_ = 0;
};

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_INPUT_FILE_H_
