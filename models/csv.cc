// ReadCsv (dataset.h): records as RFC 4180 has them, the columns they name,
// missing values by the chosen policy, and classes from the label column.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "models/internal/csv_records.h"
#include "models/internal/input_file.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/models/dataset.h"

namespace tinyfed::models {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;
using internal::DelimiterName;
using internal::DetectDelimiter;
using internal::InputFile;
using internal::RecordReader;

// A field as it may appear in an error message: short, escaped.
std::string Shown(std::string_view field) {
  const std::string_view kept = field.substr(0, 40);
  return StrCat(absl::CHexEscape(absl::string_view(kept.data(), kept.size())), kept.size() < field.size() ? "..." : "");
}

bool IsMissing(const std::string& field) {
  static const std::set<std::string> kMissing = {"", "na", "n/a", "nan", "?", "null", "none"};
  return kMissing.contains(absl::AsciiStrToLower(field));
}

// A number, with a decimal comma when fields are ';'-separated (as European
// spreadsheets write them).
bool ParseNumber(const std::string& field, char delimiter, double* out) {
  if (field.empty()) return false;
  if (absl::SimpleAtod(field, out)) return true;
  if (delimiter != ';' || std::count(field.begin(), field.end(), ',') != 1 || field.find('.') != std::string::npos) {
    return false;
  }
  std::string dotted = field;
  std::replace(dotted.begin(), dotted.end(), ',', '.');
  return absl::SimpleAtod(dotted, out);
}

// Every row's label text, and where each distinct one first appears.
struct LabelColumn {
  std::map<std::string, int> ids;  // label text -> first-seen id
  std::vector<std::string> texts;  // by id
  std::vector<size_t> first_line;  // by id
  std::vector<int> rows;           // each row's id

  absl::Status Add(const std::string& text, size_t line, const std::string& file) {
    auto [it, added] = ids.emplace(text, static_cast<int>(texts.size()));
    if (added) {
      if (texts.size() >= 4 * static_cast<size_t>(kMaxClasses)) {
        return InvalidArgumentError(StrCat(file, " line ", line, ": the label column has more than ", 4 * kMaxClasses,
                                           " distinct values; is it the right column?"));
      }
      texts.push_back(text);
      first_line.push_back(line);
    }
    rows.push_back(it->second);
    return absl::OkStatus();
  }
};

enum class LabelKind { kClassCode, kOtherNumber, kText };

// Integer codes fit an int32 ("1.0" is 1); other numbers are not codes.
LabelKind KindOf(const std::string& label, int64_t* code) {
  double v = 0;
  if (absl::SimpleAtoi(label, code)) {
    return std::abs(*code) < (int64_t{1} << 31) ? LabelKind::kClassCode : LabelKind::kOtherNumber;
  }
  if (!absl::SimpleAtod(label, &v)) return LabelKind::kText;
  if (std::isfinite(v) && v == std::floor(v) && std::abs(v) < 2147483648.0) {
    *code = static_cast<int64_t>(v);
    return LabelKind::kClassCode;
  }
  return LabelKind::kOtherNumber;
}

// What is known of one column while the rows stream past.
struct ColumnStats {
  size_t missing = 0;
  size_t first_missing_line = 0;
  bool integers = true;  // every value so far an integer
  bool sequence = true;  // each value the previous plus one
  double previous = 0;
};

class CsvReader {
 public:
  CsvReader(InputFile& in, const CsvOptions& options)
      : options_(options), file_(in.name()), records_(in, options.limits) {}

  absl::StatusOr<Dataset> Read() {
    TINYFED_RETURN_IF_ERROR(ReadHeader());
    TINYFED_RETURN_IF_ERROR(PlanColumns());
    TINYFED_RETURN_IF_ERROR(ReadRows());
    TINYFED_RETURN_IF_ERROR(ApplyMissingPolicy());
    DropRowNames();
    WarnAboutIdentifiers();
    TINYFED_RETURN_IF_ERROR(AssignClasses());
    TINYFED_RETURN_IF_ERROR(ApplyShape());
    return std::move(d_);
  }

 private:
  // The delimiter, and whether the first record is a header, scikit-learn's
  // line or data.
  absl::Status ReadHeader() {
    TINYFED_ASSIGN_OR_RETURN(std::string first_line, records_.PeekFirstLine());
    delimiter_ = options_.delimiter != 0 ? options_.delimiter : DetectDelimiter(first_line);
    records_.set_delimiter(delimiter_);
    std::vector<std::string> head;
    TINYFED_ASSIGN_OR_RETURN(bool more, records_.Next(&head, &head_line_));
    if (more) {
      TINYFED_ASSIGN_OR_RETURN(more, records_.Next(&second_, &second_line_));
    }
    if (!more) return InvalidArgumentError(StrCat(file_, ": needs a header or at least 2 rows"));
    double v = 0;
    const bool numeric =
        std::all_of(head.begin(), head.end(),
                    [&](const std::string& f) { return ParseNumber(f, delimiter_, &v) || IsMissing(f); }) &&
        !std::all_of(head.begin(), head.end(), IsMissing);
    double n_features = 0;
    if (head.size() != second_.size() && head.size() >= 2 && ParseNumber(head[1], delimiter_, &n_features) &&
        n_features >= 0 && n_features < 65536 && static_cast<size_t>(n_features) + 1 == second_.size()) {
      for (size_t i = 2; i < head.size(); ++i) sklearn_classes_.push_back(head[i]);  // n_samples, n_features, names
    } else if (!numeric) {
      names_ = std::move(head);
    } else {
      first_row_ = std::move(head);
    }
    width_ = first_row_.empty() ? second_.size() : first_row_.size();
    if (!names_.empty() && names_.size() != width_) {
      return InvalidArgumentError(StrCat(file_, ": the header has ", names_.size(), " columns but line ", second_line_,
                                         " has ", width_, " (fields separated by ", DelimiterName(delimiter_), Hint(),
                                         ")"));
    }
    if (width_ < 2) {
      return InvalidArgumentError(StrCat(file_, ": needs a feature and a label column, but line ", second_line_,
                                         " is one field when split at ", DelimiterName(delimiter_), Hint()));
    }
    return absl::OkStatus();
  }

  std::string Hint() const { return options_.delimiter != 0 ? "" : "; give the delimiter if it is another"; }

  std::string ColumnName(size_t c) const {
    return names_.empty() || names_[c].empty() ? StrCat("column ", c) : StrCat("column ", Shown(names_[c]));
  }

  std::string ColumnList() const {
    std::vector<std::string> shown;
    for (size_t c = 0; c < width_; ++c) {
      shown.push_back(names_.empty() || names_[c].empty() ? std::to_string(c) : StrCat("'", Shown(names_[c]), "'"));
    }
    return StrCat("the ", width_, " columns are ", absl::StrJoin(shown, ", "));
  }

  // A header name or a 0-based index; `what` names the setting in errors.
  absl::StatusOr<size_t> FindColumn(const std::string& wanted, const std::string& what) const {
    if (auto it = std::find(names_.begin(), names_.end(), wanted); it != names_.end()) {
      return static_cast<size_t>(it - names_.begin());
    }
    if (size_t index = 0; absl::SimpleAtoi(wanted, &index) && index < width_) return index;
    std::string suggestion;
    for (const std::string& name : names_) {
      if (absl::EqualsIgnoreCase(name, wanted)) suggestion = StrCat(" (did you mean '", Shown(name), "'?)");
    }
    return InvalidArgumentError(StrCat(file_, ": no ", what, " '", Shown(wanted), "'", suggestion, "; ", ColumnList()));
  }

  // The label column, the ignored ones, and the features in between.
  absl::Status PlanColumns() {
    label_col_ = width_ - 1;
    if (!options_.label_column.empty()) {
      TINYFED_ASSIGN_OR_RETURN(label_col_, FindColumn(options_.label_column, "label column"));
    }
    is_feature_.assign(width_, true);
    is_feature_[label_col_] = false;
    for (const std::string& ignored : options_.ignore_columns) {
      TINYFED_ASSIGN_OR_RETURN(size_t c, FindColumn(ignored, "column to ignore"));
      if (c == label_col_) {
        return InvalidArgumentError(StrCat(file_, ": ", ColumnName(c), " is the label column; it cannot be ignored"));
      }
      is_feature_[c] = false;
    }
    // R's write.csv: the row names, an unnamed first column ("" in the header).
    row_names_ = !names_.empty() && names_[0].empty() && is_feature_[0];
    for (size_t c = 0; c < width_; ++c) {
      if (is_feature_[c]) feature_cols_.push_back(c);
    }
    if (feature_cols_.empty()) {
      return InvalidArgumentError(StrCat(file_, ": no feature column is left besides the label and the ignored"));
    }
    stats_.resize(width_);
    return absl::OkStatus();
  }

  absl::Status ReadRows() {
    if (!first_row_.empty()) TINYFED_RETURN_IF_ERROR(AddRow(first_row_, head_line_));
    TINYFED_RETURN_IF_ERROR(AddRow(second_, second_line_));
    std::vector<std::string> row;
    size_t line = 0;
    for (;;) {
      TINYFED_ASSIGN_OR_RETURN(bool more, records_.Next(&row, &line));
      if (!more) return absl::OkStatus();
      TINYFED_RETURN_IF_ERROR(AddRow(row, line));
    }
  }

  absl::Status AddRow(const std::vector<std::string>& row, size_t line) {
    if (row.size() != width_) {
      return InvalidArgumentError(StrCat(file_, " line ", line, ": ", row.size(), " fields, expected ", width_,
                                         " (fields separated by ", DelimiterName(delimiter_), ")"));
    }
    if (labels_.rows.size() >= internal::kMaxSamples) {
      return absl::OutOfRangeError(StrCat(file_, ": more than ", internal::kMaxSamples, " rows"));
    }
    const size_t index = labels_.rows.size();
    bool incomplete = false;
    for (size_t c : feature_cols_) {
      ColumnStats& st = stats_[c];
      double v = 0;
      if (IsMissing(row[c])) {
        if (st.missing++ == 0) st.first_missing_line = line;
        incomplete = true;
        d_.features.push_back(std::nanf(""));
        continue;
      }
      // Features are floats: a value past their range would become infinite.
      if (!ParseNumber(row[c], delimiter_, &v) || !std::isfinite(static_cast<float>(v))) {
        return InvalidArgumentError(
            StrCat(file_, " line ", line, " ", ColumnName(c), ": '", Shown(row[c]), "' is not a finite number"));
      }
      st.integers = st.integers && v == std::floor(v);
      st.sequence = st.sequence && (index == 0 || v == st.previous + 1);
      st.previous = v;
      d_.features.push_back(static_cast<float>(v));
    }
    if (row_names_)
      row_names_ = stats_[0].missing == 0 &&
                   d_.features[d_.features.size() - feature_cols_.size()] == static_cast<float>(index + 1);
    if (IsMissing(row[label_col_])) {
      ColumnStats& st = stats_[label_col_];
      if (st.missing++ == 0) st.first_missing_line = line;
      incomplete = true;
    }
    if (incomplete) incomplete_rows_.push_back(index);
    return labels_.Add(row[label_col_], line, file_);
  }

  absl::Status ApplyMissingPolicy() {
    if (incomplete_rows_.empty()) return absl::OkStatus();
    std::vector<std::string> columns;
    size_t cells = 0;
    for (size_t c = 0; c < width_; ++c) {
      if (stats_[c].missing == 0) continue;
      cells += stats_[c].missing;
      columns.push_back(StrCat(c == label_col_ ? "the label " : "", ColumnName(c), ": ", stats_[c].missing,
                               " (first on line ", stats_[c].first_missing_line, ")"));
    }
    const std::string counted =
        StrCat(incomplete_rows_.size(), " of ", labels_.rows.size(), " rows have missing values (", cells,
               " cells, empty or NA, N/A, NaN, ?, null, None) in ", columns.size(),
               " columns: ", absl::StrJoin(columns, "; "));
    if (options_.missing == MissingValues::kError) {
      return InvalidArgumentError(StrCat(file_, ": ", counted, "; choose missing = \"drop\" or \"mean\""));
    }
    std::vector<bool> drop(labels_.rows.size(), false);
    size_t dropped = 0;
    for (size_t row : incomplete_rows_) {
      const bool no_label = IsMissing(labels_.texts[static_cast<size_t>(labels_.rows[row])]);
      if (options_.missing == MissingValues::kDrop || no_label) {
        drop[row] = true;
        ++dropped;
      }
    }
    if (dropped > 0) KeepRows(drop);
    if (options_.missing == MissingValues::kMean) TINYFED_RETURN_IF_ERROR(FillWithMeans());
    d_.warnings.push_back(
        StrCat(file_, ": ", counted, "; ",
               options_.missing == MissingValues::kDrop
                   ? StrCat(dropped, " rows dropped")
                   : StrCat("features filled with their column's mean, ", dropped, " rows without a label dropped")));
    return absl::OkStatus();
  }

  // Each missing feature takes the mean of its column over the rows kept.
  absl::Status FillWithMeans() {
    const size_t width = feature_cols_.size();
    const size_t n = d_.features.size() / width;
    for (size_t k = 0; k < width; ++k) {
      double sum = 0;
      size_t count = 0;
      for (size_t r = 0; r < n; ++r) {
        const float x = d_.features[r * width + k];
        if (std::isnan(x)) continue;
        sum += x;
        ++count;
      }
      if (count == n) continue;
      if (count == 0) {
        return InvalidArgumentError(
            StrCat(file_, ": ", ColumnName(feature_cols_[k]), " has no value at all; add it to the columns to ignore"));
      }
      const auto mean = static_cast<float>(sum / static_cast<double>(count));
      for (size_t r = 0; r < n; ++r) {
        float& x = d_.features[r * width + k];
        if (std::isnan(x)) x = mean;
      }
    }
    return absl::OkStatus();
  }

  // Keeps the rows not marked, features and labels alike.
  void KeepRows(const std::vector<bool>& drop) {
    const size_t width = feature_cols_.size();
    size_t kept = 0;
    std::vector<int> rows;
    for (size_t r = 0; r < drop.size(); ++r) {
      if (drop[r]) continue;
      std::copy_n(d_.features.begin() + static_cast<std::ptrdiff_t>(r * width), width,
                  d_.features.begin() + static_cast<std::ptrdiff_t>(kept * width));
      rows.push_back(labels_.rows[r]);
      ++kept;
    }
    d_.features.resize(kept * width);
    labels_.rows = std::move(rows);
  }

  // R's row names are no feature: left out once they proved to be 1..N.
  void DropRowNames() {
    if (!row_names_ || feature_cols_.size() < 2) return;
    const size_t width = feature_cols_.size();
    const size_t n = d_.features.size() / width;
    for (size_t r = 0; r < n; ++r) {
      std::copy_n(d_.features.begin() + static_cast<std::ptrdiff_t>(r * width + 1), width - 1,
                  d_.features.begin() + static_cast<std::ptrdiff_t>(r * (width - 1)));
    }
    d_.features.resize(n * (width - 1));
    feature_cols_.erase(feature_cols_.begin());
    d_.warnings.push_back(StrCat(file_, ": the unnamed first column holds the row numbers 1 to ", n,
                                 " (R's write.csv row names); it is not used as a feature"));
  }

  void WarnAboutIdentifiers() {
    static const std::set<std::string> kIdNames = {"id",     "patientid", "patient", "recordid", "subjectid", "mrn",
                                                   "caseid", "sampleid",  "index",   "rowid",    "no",        "number"};
    for (size_t c : feature_cols_) {
      std::string key;
      if (!names_.empty()) {
        for (char ch : names_[c]) {
          if (absl::ascii_isalnum(static_cast<unsigned char>(ch))) key.push_back(absl::ascii_tolower(ch));
        }
      }
      const bool named =
          kIdNames.contains(key) || (key.size() > 2 && absl::EndsWith(key, "id") && !names_[c].empty() &&
                                     !absl::ascii_isalpha(static_cast<unsigned char>(names_[c][names_[c].size() - 3])));
      const ColumnStats& st = stats_[c];
      // Over enough rows that a real measurement would not do it by chance.
      const bool counts_up = st.integers && st.sequence && labels_.rows.size() >= 20;
      if (!named && !counts_up) continue;
      d_.warnings.push_back(StrCat(file_, ": ", ColumnName(c), " looks like an identifier (",
                                   named ? "its name" : "its values count up by one",
                                   "); it is used as a feature. "
                                   "If it is not one, add it to the columns to ignore"));
    }
  }

  absl::Status AssignClasses() {
    const LabelColumn& column = labels_;
    const size_t n = column.texts.size();
    std::vector<int> class_of(n, -1);
    std::vector<size_t> present;  // ids of the labels still in use
    {
      std::vector<bool> used(n, false);
      for (int id : column.rows) used[static_cast<size_t>(id)] = true;
      for (size_t id = 0; id < n; ++id) {
        if (used[id]) present.push_back(id);
      }
    }
    if (present.empty()) return InvalidArgumentError(StrCat(file_, ": no row is left"));
    auto at = [&](size_t id) {
      return StrCat(file_, " line ", column.first_line[id], ": label '", Shown(column.texts[id]), "'");
    };
    const std::string remedy = "; pass --labels-as-names to read every label as a class name";
    auto by_name = [&] {
      std::vector<size_t> order = present;
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return column.texts[a] < column.texts[b]; });
      for (size_t c = 0; c < order.size(); ++c) {
        class_of[order[c]] = static_cast<int>(c);
        d_.label_names.push_back(column.texts[order[c]]);
      }
    };
    if (options_.labels_as_names) {
      by_name();
    } else {
      std::vector<LabelKind> kind(n);
      std::vector<int64_t> value(n, 0);
      for (size_t id : present) kind[id] = KindOf(column.texts[id], &value[id]);
      // The kind of the first label decides; the first label of another kind is the culprit.
      const size_t first = present.front();
      const LabelKind expected = kind[first] == LabelKind::kText ? LabelKind::kText : LabelKind::kClassCode;
      std::optional<size_t> culprit;
      for (size_t id : present) {
        if (kind[id] != expected && (!culprit || column.first_line[id] < column.first_line[*culprit])) culprit = id;
      }
      if (culprit) {
        if (kind[*culprit] == LabelKind::kOtherNumber) {
          return InvalidArgumentError(StrCat(at(*culprit), " is not a class id (an integer)", remedy));
        }
        return InvalidArgumentError(StrCat(
            at(*culprit), (expected == LabelKind::kText ? " is a number" : " is text"), " but line ",
            column.first_line[first], "'s label '", Shown(column.texts[first]), "' is ",
            expected == LabelKind::kText ? "text" : "a class id", ": labels must be all class ids or all names"));
      }
      if (expected == LabelKind::kText) {
        by_name();
      } else {
        TINYFED_RETURN_IF_ERROR(ClassesFromCodes(present, value, remedy, at, class_of));
      }
    }
    if (d_.label_names.size() > static_cast<size_t>(kMaxClasses)) {
      return InvalidArgumentError(StrCat(file_, ": ", d_.label_names.size(), " classes, more than the ", kMaxClasses,
                                         " a head may have; is the label column right?"));
    }
    if (d_.label_names.size() < 2) {
      return InvalidArgumentError(
          StrCat(file_, ": the label column has ", d_.label_names.size(), " class; need 2 or more"));
    }
    d_.labels.reserve(column.rows.size());
    for (int id : column.rows) d_.labels.push_back(class_of[static_cast<size_t>(id)]);
    return absl::OkStatus();
  }

  // Class ids 0..K-1 when they are (or K is declared), else the codes named
  // by themselves in numeric order: 2 and 4 are two classes, not five.
  template <typename At>
  absl::Status ClassesFromCodes(const std::vector<size_t>& present, const std::vector<int64_t>& value,
                                const std::string& remedy, const At& at, std::vector<int>& class_of) {
    const int declared = options_.num_classes > 0 ? options_.num_classes : static_cast<int>(sklearn_classes_.size());
    std::set<int64_t> codes;
    for (size_t id : present) codes.insert(value[id]);
    const bool ids = declared > 0 || (*codes.begin() == 0 && *codes.rbegin() == static_cast<int64_t>(codes.size()) - 1);
    if (ids) {
      const int64_t classes = declared > 0 ? declared : static_cast<int64_t>(codes.size());
      for (size_t id : present) {
        if (value[id] < 0 || value[id] >= classes) {
          return InvalidArgumentError(StrCat(at(id), " is not a class id from 0 to ", classes - 1, remedy));
        }
        class_of[id] = static_cast<int>(value[id]);
      }
      if (sklearn_classes_.size() == static_cast<size_t>(classes)) {
        d_.label_names = sklearn_classes_;
      } else {
        for (int64_t c = 0; c < classes; ++c) d_.label_names.push_back(std::to_string(c));
      }
      return absl::OkStatus();
    }
    if (codes.size() > static_cast<size_t>(kMaxClasses)) {
      return InvalidArgumentError(StrCat(file_, ": ", codes.size(), " classes, more than the ", kMaxClasses,
                                         " a head may have; is the label column right?"));
    }
    const std::vector<int64_t> sorted(codes.begin(), codes.end());
    std::map<int64_t, size_t> rows_of;
    for (int id : labels_.rows) ++rows_of[value[static_cast<size_t>(id)]];
    for (size_t id : present) {
      class_of[id] = static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), value[id]) - sorted.begin());
    }
    std::vector<std::string> shown, rare;
    for (int64_t code : sorted) {
      d_.label_names.push_back(std::to_string(code));
      shown.push_back(StrCat(code, " -> class ", shown.size()));
      // Far fewer rows than the average code: a typo more likely than a class.
      if (rows_of[code] <= 5 && 4 * rows_of[code] * sorted.size() < labels_.rows.size()) {
        rare.push_back(StrCat(code, " (", rows_of[code], rows_of[code] == 1 ? " row)" : " rows)"));
      }
    }
    d_.warnings.push_back(StrCat(file_, ": the labels are the codes ", absl::StrJoin(sorted, ", "),
                                 ", each a class named by its code (", absl::StrJoin(shown, ", "), ")",
                                 rare.empty() ? "" : StrCat("; rare codes, typos?: ", absl::StrJoin(rare, ", ")),
                                 ". If they are class ids with some absent from this file, declare the number of "
                                 "classes"));
    return absl::OkStatus();
  }

  absl::Status ApplyShape() {
    const int features = static_cast<int>(feature_cols_.size());
    if (options_.shape.empty()) {
      d_.channels = features;
      return absl::OkStatus();
    }
    const std::vector<int>& s = options_.shape;
    if (s.size() != 3 || std::any_of(s.begin(), s.end(), [](int v) { return v < 1; }) ||
        int64_t{s[0]} * s[1] * s[2] != features) {
      return InvalidArgumentError(StrCat(file_, ": shape [", absl::StrJoin(s, ", "),
                                         "] is not height, width, channels holding the ", features,
                                         " features of each row"));
    }
    d_.height = s[0];
    d_.width = s[1];
    d_.channels = s[2];
    return absl::OkStatus();
  }

  const CsvOptions& options_;
  const std::string file_;
  RecordReader records_;
  char delimiter_ = ',';
  std::vector<std::string> names_, sklearn_classes_, first_row_, second_;
  size_t head_line_ = 0, second_line_ = 0;
  size_t width_ = 0, label_col_ = 0;
  std::vector<bool> is_feature_;
  std::vector<size_t> feature_cols_;
  bool row_names_ = false;
  std::vector<ColumnStats> stats_;
  std::vector<size_t> incomplete_rows_;  // rows with a missing value
  LabelColumn labels_;
  Dataset d_;
};

}  // namespace

absl::StatusOr<Dataset> ReadCsv(const std::filesystem::path& path, const CsvOptions& options) {
  if (options.num_classes < 0 || options.num_classes > kMaxClasses) {
    return InvalidArgumentError(
        StrCat("the number of classes must be 1 to ", kMaxClasses, ", got ", options.num_classes));
  }
  if (options.delimiter == '"' || options.delimiter == '\n' || options.delimiter == '\r') {
    return InvalidArgumentError(
        StrCat("the delimiter cannot be ", absl::CHexEscape(std::string(1, options.delimiter))));
  }
  TINYFED_ASSIGN_OR_RETURN(std::unique_ptr<InputFile> in, InputFile::Open(path, options.limits.max_bytes));
  auto d = CsvReader(*in, options).Read();
  if (d.ok()) d->source = path.string();
  return d;
}

}  // namespace tinyfed::models
