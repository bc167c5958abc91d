// The records of a delimited text file as RFC 4180 has them, and choosing
// its delimiter: the bottom of ReadCsv (csv.cc), which gives them meaning.
#ifndef TINYFED_MODELS_INTERNAL_CSV_RECORDS_H_
#define TINYFED_MODELS_INTERNAL_CSV_RECORDS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "models/internal/input_file.h"
#include "tinyfed/models/dataset.h"

namespace tinyfed::models::internal {

// The delimiter among , ; TAB | that splits `line` into the most fields,
// counting outside quotes; ',' when none does.
char DetectDelimiter(std::string_view line);
// "','", "TAB", ...: for messages.
std::string DelimiterName(char d);

// A quoted field may hold the delimiter, quotes written twice and line
// breaks. Empty lines are skipped; a UTF-8 byte order mark (as Excel writes)
// and a CR before each line end are dropped.
class RecordReader {
 public:
  RecordReader(InputFile& in, const ReadLimits& limits) : in_(in), limits_(limits) {}

  // The first non-empty line, unsplit, to choose a delimiter by; it is the
  // first record Next returns.
  absl::StatusOr<std::string> PeekFirstLine();
  void set_delimiter(char d) { delimiter_ = d; }
  // The next record's fields (unquoted; outer whitespace of unquoted fields
  // stripped), or false at the end. `line` is where the record starts.
  // INVALID_ARGUMENT for an unclosed quote or text after a closing one,
  // OUT_OF_RANGE for a record past max_line_bytes.
  absl::StatusOr<bool> Next(std::vector<std::string>* fields, size_t* line);

 private:
  // One physical line without its CR LF.
  absl::StatusOr<bool> NextLine(std::string* out);

  InputFile& in_;
  const ReadLimits limits_;
  char delimiter_ = ',';
  std::string pending_;
  bool has_pending_ = false;
};

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_CSV_RECORDS_H_
