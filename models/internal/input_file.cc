#include "models/internal/input_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tinyfed::models::internal {

absl::StatusOr<std::unique_ptr<InputFile>> InputFile::Open(const std::filesystem::path& path, uint64_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return absl::NotFoundError(absl::StrCat("no dataset file at ", path.string()));
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), " is not a regular file"));
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot open ", path.string(), ": ", std::strerror(errno)));
  gzbuffer(f, 1 << 16);
  return std::unique_ptr<InputFile>(new InputFile(f, path.string(), max_bytes));
}

InputFile::InputFile(gzFile f, std::string name, uint64_t max_bytes)
    : file_(f), name_(std::move(name)), max_bytes_(max_bytes), buffer_(1 << 16) {}

InputFile::~InputFile() { gzclose(file_); }

absl::StatusOr<size_t> InputFile::Read(char* out, size_t n) {
  size_t done = 0;
  while (done < n) {
    const unsigned want = static_cast<unsigned>(std::min<size_t>(n - done, 1 << 20));
    const int got = gzread(file_, out + done, want);
    if (got < 0) {
      int err = 0;
      return absl::InvalidArgumentError(absl::StrCat(name_, ": ", gzerror(file_, &err)));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
    read_ += static_cast<uint64_t>(got);
    if (read_ > max_bytes_) {
      return absl::OutOfRangeError(absl::StrCat(name_, " holds more than ", max_bytes_,
                                                " bytes (decompressed), the limit for one dataset file"));
    }
  }
  return done;
}

absl::StatusOr<bool> InputFile::ReadLine(std::string* line, size_t max_line_bytes) {
  line->clear();
  bool any = false;
  for (;;) {
    if (pos_ == end_) {
      auto got = Read(buffer_.data(), buffer_.size());
      if (!got.ok()) return got.status();
      pos_ = 0;
      end_ = *got;
      if (end_ == 0) {
        if (any) ++lines_;
        return any;
      }
    }
    any = true;
    const char* start = buffer_.data() + pos_;
    const void* nl = std::memchr(start, '\n', end_ - pos_);
    const size_t take = nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : end_ - pos_;
    if (line->size() + take > max_line_bytes) {
      return absl::OutOfRangeError(
          absl::StrCat(name_, " line ", lines_ + 1, " is longer than ", max_line_bytes, " bytes"));
    }
    line->append(start, take);
    pos_ += take;
    if (nl) {
      ++pos_;
      ++lines_;
      return true;
    }
  }
}

}  // namespace tinyfed::models::internal
