#include "models/internal/csv_records.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::models::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

std::string Strip(std::string_view f) {
  return std::string(absl::StripAsciiWhitespace(absl::string_view(f.data(), f.size())));
}

}  // namespace

char DetectDelimiter(std::string_view line) {
  char best = ',';
  size_t best_count = 0;
  for (char candidate : {',', ';', '\t', '|'}) {
    size_t count = 0;
    bool quoted = false;
    for (char ch : line) {
      if (ch == '"') quoted = !quoted;
      if (!quoted && ch == candidate) ++count;
    }
    if (count > best_count) {
      best = candidate;
      best_count = count;
    }
  }
  return best;
}

std::string DelimiterName(char d) {
  switch (d) {
    case '\t':
      return "TAB";
    case ',':
      return "','";
    default:
      return StrCat("'", std::string(1, d), "'");
  }
}

absl::StatusOr<std::string> RecordReader::PeekFirstLine() {
  for (;;) {
    TINYFED_ASSIGN_OR_RETURN(bool more, NextLine(&pending_));
    if (!more) return std::string();
    if (in_.lines() == 1 && absl::StartsWith(pending_, "\xEF\xBB\xBF")) pending_.erase(0, 3);
    if (!absl::StripAsciiWhitespace(pending_).empty()) {
      has_pending_ = true;
      return pending_;
    }
  }
}

absl::StatusOr<bool> RecordReader::Next(std::vector<std::string>* fields, size_t* line) {
  std::string text;
  for (;;) {
    if (has_pending_) {
      text = std::move(pending_);
      has_pending_ = false;
    } else {
      TINYFED_ASSIGN_OR_RETURN(bool more, NextLine(&text));
      if (!more) return false;
    }
    if (!absl::StripAsciiWhitespace(text).empty()) break;
  }
  *line = in_.lines();
  size_t record_bytes = text.size();
  fields->clear();
  std::string field;
  bool quoted = false, was_quoted = false;
  for (size_t i = 0;; ++i) {
    if (i == text.size()) {
      if (!quoted) break;
      // A line break inside quotes belongs to the field.
      std::string next;
      TINYFED_ASSIGN_OR_RETURN(bool more, NextLine(&next));
      if (!more) {
        return InvalidArgumentError(StrCat(in_.name(), " line ", *line, ": a quoted field is not closed"));
      }
      record_bytes += next.size();
      if (record_bytes > limits_.max_line_bytes) {
        return absl::OutOfRangeError(
            StrCat(in_.name(), " line ", *line, ": a record is longer than ", limits_.max_line_bytes, " bytes"));
      }
      field.push_back('\n');
      text = std::move(next);
      i = static_cast<size_t>(-1);
      continue;
    }
    const char ch = text[i];
    if (quoted) {
      if (ch != '"') {
        field.push_back(ch);
      } else if (i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else {
        quoted = false;
      }
    } else if (ch == delimiter_) {
      fields->push_back(was_quoted ? std::move(field) : Strip(field));
      field.clear();
      was_quoted = false;
    } else if (ch == '"' && absl::StripAsciiWhitespace(field).empty() && !was_quoted) {
      field.clear();
      quoted = was_quoted = true;
    } else if (was_quoted && !absl::ascii_isspace(static_cast<unsigned char>(ch))) {
      return InvalidArgumentError(StrCat(in_.name(), " line ", in_.lines(), " field ", fields->size() + 1,
                                         ": text after the closing quote of a quoted field"));
    } else if (!was_quoted) {
      field.push_back(ch);
    }
  }
  fields->push_back(was_quoted ? std::move(field) : Strip(field));
  return true;
}

absl::StatusOr<bool> RecordReader::NextLine(std::string* out) {
  auto more = in_.ReadLine(out, limits_.max_line_bytes);
  if (more.ok() && *more && !out->empty() && out->back() == '\r') out->pop_back();
  return more;
}

}  // namespace tinyfed::models::internal
