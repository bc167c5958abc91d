#include "tinyfed/models/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tinyfed::models {
namespace {

constexpr uint64_t kMaxSamples = uint64_t{1} << 26;

// A file read as a stream, gunzipped when it is gzip (zlib passes plain files
// through), counting what it decompresses against a limit.
class InputFile {
 public:
  static absl::StatusOr<std::unique_ptr<InputFile>> Open(const std::filesystem::path& path, uint64_t max_bytes) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      return absl::NotFoundError(absl::StrCat("no dataset file at ", path.string()));
    if (!std::filesystem::is_regular_file(path, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), " is not a regular file"));
    }
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr)
      return absl::InternalError(absl::StrCat("cannot open ", path.string(), ": ", std::strerror(errno)));
    gzbuffer(f, 1 << 16);
    return std::unique_ptr<InputFile>(new InputFile(f, path.string(), max_bytes));
  }
  ~InputFile() { gzclose(file_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // Up to `n` bytes into `out`; fewer only at the end of the file.
  absl::StatusOr<size_t> Read(char* out, size_t n) {
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

  // The next line without its end, or false at the end of the file.
  absl::StatusOr<bool> ReadLine(std::string* line, size_t max_line_bytes) {
    line->clear();
    for (;;) {
      if (pos_ == end_) {
        auto got = Read(buffer_.data(), buffer_.size());
        if (!got.ok()) return got.status();
        pos_ = 0;
        end_ = *got;
        if (end_ == 0) return !line->empty();
      }
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
  size_t lines() const { return lines_; }

 private:
  InputFile(gzFile f, std::string name, uint64_t max_bytes)
      : file_(f), name_(std::move(name)), max_bytes_(max_bytes), buffer_(1 << 16) {}
  gzFile file_;
  const std::string name_;
  const uint64_t max_bytes_;
  uint64_t read_ = 0;
  std::vector<char> buffer_;
  size_t pos_ = 0, end_ = 0;
  size_t lines_ = 0;
};

struct IdxArray {
  uint8_t type = 0;
  std::vector<uint64_t> dims;
  std::string data;
};

// The header first, so that an array larger than the limit is refused
// before any of it is read.
absl::StatusOr<IdxArray> ReadIdxArray(const std::filesystem::path& path, const ReadLimits& limits) {
  const std::string name = path.string();
  auto file = InputFile::Open(path, limits.max_bytes);
  if (!file.ok()) return file.status();
  char magic[4];
  auto got = (*file)->Read(magic, 4);
  if (!got.ok()) return got.status();
  if (*got < 4 || magic[0] != 0 || magic[1] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not an IDX file (bad magic)"));
  }
  IdxArray a;
  a.type = static_cast<uint8_t>(magic[2]);
  const int ndims = static_cast<uint8_t>(magic[3]);
  int elem = 0;
  switch (a.type) {
    case 0x08:
    case 0x09:
      elem = 1;
      break;
    case 0x0B:
      elem = 2;
      break;
    case 0x0C:
    case 0x0D:
      elem = 4;
      break;
    case 0x0E:
      elem = 8;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(name, ": unknown IDX element type 0x", absl::Hex(a.type)));
  }
  char dims[16];
  got = ndims >= 1 && ndims <= 4 ? (*file)->Read(dims, 4 * static_cast<size_t>(ndims)) : absl::StatusOr<size_t>(0);
  if (!got.ok()) return got.status();
  if (ndims < 1 || ndims > 4 || *got < 4 * static_cast<size_t>(ndims)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": IDX header has ", ndims, " dimensions"));
  }
  uint64_t bytes = static_cast<uint64_t>(elem);
  for (int d = 0; d < ndims; ++d) {
    uint64_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(dims[4 * d + i]);
    if (v == 0 || v > kMaxSamples)
      return absl::InvalidArgumentError(absl::StrCat(name, ": IDX dimension ", d, " is ", v));
    a.dims.push_back(v);
    bytes *= v;
    if (bytes > limits.max_bytes) {
      return absl::OutOfRangeError(absl::StrCat(name, ": the IDX header announces more than ", limits.max_bytes,
                                                " bytes, the limit for one dataset file"));
    }
  }
  a.data.resize(bytes);
  got = (*file)->Read(a.data.data(), a.data.size());
  if (!got.ok()) return got.status();
  char extra;
  auto more = (*file)->Read(&extra, 1);
  if (!more.ok()) return more.status();
  if (*got != bytes || *more != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": IDX header announces ", bytes,
                                                   " data bytes but the file has ",
                                                   *more ? "more" : std::to_string(*got)));
  }
  return a;
}

float IdxValue(const IdxArray& a, size_t i) {
  const char* p = a.data.data();
  auto be = [&](int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k)
      v = (v << 8) | static_cast<uint8_t>(p[i * static_cast<size_t>(n) + static_cast<size_t>(k)]);
    return v;
  };
  switch (a.type) {
    case 0x08:
      return static_cast<uint8_t>(p[i]);
    case 0x09:
      return static_cast<int8_t>(p[i]);
    case 0x0B:
      return static_cast<int16_t>(be(2));
    case 0x0C:
      return static_cast<float>(static_cast<int32_t>(be(4)));
    case 0x0D: {
      const uint32_t b = static_cast<uint32_t>(be(4));
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    }
    default: {
      const uint64_t b = be(8);
      double d;
      std::memcpy(&d, &b, 8);
      return static_cast<float>(d);
    }
  }
}

bool ParseNumber(std::string_view field, double* out) {
  const absl::string_view f = absl::StripAsciiWhitespace(absl::string_view(field.data(), field.size()));
  return !f.empty() && absl::SimpleAtod(f, out);
}

}  // namespace

std::vector<uint64_t> Dataset::ClassCounts() const {
  std::vector<uint64_t> counts(label_names.size(), 0);
  for (int l : labels) ++counts[static_cast<size_t>(l)];
  return counts;
}

Dataset Dataset::Subset(std::span<const size_t> indices) const {
  Dataset d;
  d.height = height;
  d.width = width;
  d.channels = channels;
  d.label_names = label_names;
  d.source = source;
  d.features.reserve(indices.size() * feature_size());
  d.labels.reserve(indices.size());
  for (size_t i : indices) {
    const auto s = sample(i);
    d.features.insert(d.features.end(), s.begin(), s.end());
    d.labels.push_back(labels[i]);
  }
  return d;
}

absl::StatusOr<Dataset> ReadIdx(const std::filesystem::path& images, const std::filesystem::path& labels,
                                std::vector<std::string> label_names, const ReadLimits& limits) {
  auto img = ReadIdxArray(images, limits);
  if (!img.ok()) return img.status();
  auto lab = ReadIdxArray(labels, limits);
  if (!lab.ok()) return lab.status();
  if (img->dims.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(images.string(), ": images need at least 2 dimensions"));
  }
  if (lab->dims.size() != 1 || lab->type != 0x08) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels.string(), ": labels must be one dimension of unsigned bytes"));
  }
  if (lab->dims[0] != img->dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(images.string(), " has ", img->dims[0], " images but ",
                                                   labels.string(), " has ", lab->dims[0], " labels"));
  }
  Dataset d;
  d.source = images.string();
  const auto& dims = img->dims;
  if (dims.size() == 2) {
    d.channels = static_cast<int>(dims[1]);
  } else {
    d.height = static_cast<int>(dims[1]);
    d.width = static_cast<int>(dims[2]);
    d.channels = dims.size() == 4 ? static_cast<int>(dims[3]) : 1;
  }
  const size_t n = dims[0];
  const size_t total = n * d.feature_size();
  d.features.resize(total);
  for (size_t i = 0; i < total; ++i) d.features[i] = IdxValue(*img, i);
  std::string().swap(img->data);
  int max_label = 0;
  d.labels.resize(n);
  for (size_t i = 0; i < n; ++i) {
    d.labels[i] = static_cast<uint8_t>(lab->data[i]);
    max_label = std::max(max_label, d.labels[i]);
  }
  const int classes = std::max<int>(max_label + 1, static_cast<int>(label_names.size()));
  if (!label_names.empty() && static_cast<int>(label_names.size()) != classes) {
    return absl::InvalidArgumentError(absl::StrCat(labels.string(), " has label ", max_label, " but only ",
                                                   label_names.size(), " label names were given"));
  }
  if (label_names.empty()) {
    for (int c = 0; c < classes; ++c) label_names.push_back(std::to_string(c));
  }
  d.label_names = std::move(label_names);
  return d;
}

namespace {

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  for (absl::string_view f : absl::StrSplit(absl::string_view(line.data(), line.size()), ',')) {
    fields.emplace_back(f.data(), f.size());
  }
  return fields;
}

// A field as it may appear in an error message: short, escaped.
std::string Shown(std::string_view field) {
  const std::string_view kept = field.substr(0, 40);
  return absl::StrCat(absl::CHexEscape(absl::string_view(kept.data(), kept.size())),
                      kept.size() < field.size() ? "..." : "");
}

std::string_view Strip(std::string_view f) {
  const absl::string_view s = absl::StripAsciiWhitespace(absl::string_view(f.data(), f.size()));
  return {s.data(), s.size()};
}

// The distinct labels of a CSV file, each with the line it first appears on.
struct LabelColumn {
  std::map<std::string, int> ids;  // label text -> first-seen id
  std::vector<std::string> texts;  // by id
  std::vector<size_t> first_line;  // by id
  std::vector<int> rows;           // each row's id

  absl::Status Add(std::string_view text, size_t line, const std::string& file) {
    auto [it, added] = ids.emplace(std::string(text), static_cast<int>(texts.size()));
    if (added) {
      if (texts.size() >= 4 * static_cast<size_t>(kMaxClasses)) {
        return absl::InvalidArgumentError(absl::StrCat(file, " line ", line, ": the label column has more than ",
                                                       4 * kMaxClasses, " distinct values; is it the right column?"));
      }
      texts.emplace_back(text);
      first_line.push_back(line);
    }
    rows.push_back(it->second);
    return absl::OkStatus();
  }
};

enum class LabelKind { kClassId, kOtherNumber, kText };

LabelKind KindOf(const std::string& label, int64_t* id) {
  double v = 0;
  if (absl::SimpleAtoi(label, id)) return LabelKind::kClassId;
  if (!absl::SimpleAtod(label, &v)) return LabelKind::kText;
  if (std::isfinite(v) && v == std::floor(v) && std::abs(v) < 1e15) {
    *id = static_cast<int64_t>(v);
    return LabelKind::kClassId;
  }
  return LabelKind::kOtherNumber;
}

// Class ids or names for the rows of `column`, into `d`.
absl::Status AssignClasses(const LabelColumn& column, const std::vector<std::string>& declared_names,
                           const CsvOptions& options, const std::string& file, Dataset* d) {
  const size_t n = column.texts.size();
  auto at = [&](size_t id) {
    return absl::StrCat(file, " line ", column.first_line[id], ": label '", Shown(column.texts[id]), "'");
  };
  const std::string remedy = "; pass --labels-as-names to read every label as a class name";
  std::vector<int> class_of(n);
  if (options.labels_as_names) {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return column.texts[a] < column.texts[b]; });
    for (size_t c = 0; c < n; ++c) {
      class_of[order[c]] = static_cast<int>(c);
      d->label_names.push_back(column.texts[order[c]]);
    }
  } else {
    std::vector<LabelKind> kind(n);
    std::vector<int64_t> value(n, 0);
    for (size_t id = 0; id < n; ++id) kind[id] = KindOf(column.texts[id], &value[id]);
    // The kind of the first row decides; the first row of another kind is the culprit.
    const LabelKind expected = kind[0] == LabelKind::kText ? LabelKind::kText : LabelKind::kClassId;
    std::optional<size_t> culprit;
    for (size_t id = 0; id < n; ++id) {
      if (kind[id] != expected && (!culprit || column.first_line[id] < column.first_line[*culprit])) culprit = id;
    }
    if (culprit) {
      if (kind[*culprit] == LabelKind::kOtherNumber) {
        return absl::InvalidArgumentError(
            absl::StrCat(at(*culprit), " is not a class id (an integer from 0 to ", kMaxClasses - 1, ")", remedy));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          at(*culprit), (expected == LabelKind::kText ? " is a number" : " is text"), " but line ",
          column.first_line[0], "'s label '", Shown(column.texts[0]), "' is ",
          expected == LabelKind::kText ? "text" : "a class id", ": labels must be all class ids or all names"));
    }
    if (expected == LabelKind::kText) {
      CsvOptions as_names = options;
      as_names.labels_as_names = true;
      return AssignClasses(column, declared_names, as_names, file, d);
    }
    int classes = options.num_classes > 0 ? options.num_classes : static_cast<int>(declared_names.size());
    std::optional<size_t> out_of_range;
    int64_t largest = -1;
    for (size_t id = 0; id < n; ++id) {
      const int64_t limit = classes > 0 ? classes : kMaxClasses;
      if ((value[id] < 0 || value[id] >= limit) &&
          (!out_of_range || column.first_line[id] < column.first_line[*out_of_range])) {
        out_of_range = id;
      }
      largest = std::max(largest, value[id]);
    }
    if (out_of_range) {
      return absl::InvalidArgumentError(absl::StrCat(at(*out_of_range), " is not a class id from 0 to ",
                                                     (classes > 0 ? classes : kMaxClasses) - 1, remedy));
    }
    if (classes == 0) {
      classes = static_cast<int>(largest + 1);
      const std::set<int64_t> present(value.begin(), value.end());
      if (present.size() != static_cast<size_t>(classes)) {
        int64_t missing = 0;
        while (present.contains(missing)) ++missing;
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": the labels are class ids up to ", largest, " but no row has class ", missing, " (",
                         classes - static_cast<int>(present.size()), " of ", classes,
                         " ids unused); relabel them 0 to K-1, declare the number of classes (--classes), or pass "
                         "--labels-as-names"));
      }
    }
    for (size_t id = 0; id < n; ++id) class_of[id] = static_cast<int>(value[id]);
    if (declared_names.size() == static_cast<size_t>(classes)) {
      d->label_names = declared_names;
    } else {
      for (int c = 0; c < classes; ++c) d->label_names.push_back(std::to_string(c));
    }
  }
  if (d->label_names.size() > static_cast<size_t>(kMaxClasses)) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", d->label_names.size(), " classes, more than the ",
                                                   kMaxClasses, " a head may have; is the label column right?"));
  }
  d->labels.reserve(column.rows.size());
  for (int id : column.rows) d->labels.push_back(class_of[static_cast<size_t>(id)]);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Dataset> ReadCsv(const std::filesystem::path& path, const CsvOptions& options) {
  if (options.num_classes < 0 || options.num_classes > kMaxClasses) {
    return absl::InvalidArgumentError(
        absl::StrCat("the number of classes must be 1 to ", kMaxClasses, ", got ", options.num_classes));
  }
  const std::string file = path.string();
  auto input = InputFile::Open(path, options.limits.max_bytes);
  if (!input.ok()) return input.status();
  InputFile& in = **input;
  std::string line, first;
  size_t first_line = 0;
  // The first two non-empty lines decide whether there is a header.
  auto next = [&](std::string* out) -> absl::StatusOr<bool> {
    for (;;) {
      auto more = in.ReadLine(out, options.limits.max_line_bytes);
      if (!more.ok() || !*more) return more;
      const absl::string_view stripped = absl::StripTrailingAsciiWhitespace(*out);
      out->resize(stripped.size());
      if (!out->empty()) return true;
    }
  };
  auto more = next(&first);
  if (!more.ok()) return more.status();
  first_line = in.lines();
  if (*more) more = next(&line);
  if (!more.ok()) return more.status();
  if (!*more) return absl::InvalidArgumentError(absl::StrCat(file, ": needs a header or at least 2 rows"));
  const std::vector<std::string_view> head = SplitFields(first);
  std::vector<std::string_view> fields = SplitFields(line);
  std::vector<std::string> names, sklearn_classes;
  double v = 0;
  const bool first_numeric = std::all_of(head.begin(), head.end(), [&](auto f) { return ParseNumber(f, &v); });
  double n_features = 0;
  bool first_is_data = false;
  if (head.size() != fields.size() && head.size() >= 2 && ParseNumber(head[1], &n_features) &&
      static_cast<size_t>(n_features) + 1 == fields.size()) {
    // scikit-learn: n_samples, n_features, class names.
    for (size_t i = 2; i < head.size(); ++i) sklearn_classes.emplace_back(Strip(head[i]));
  } else if (!first_numeric) {
    for (auto f : head) names.emplace_back(Strip(f));
  } else {
    first_is_data = true;
  }
  const size_t width = first_is_data ? head.size() : fields.size();
  if (!names.empty() && names.size() != width) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": header has ", names.size(), " columns but line ", in.lines(), " has ", width));
  }
  if (width < 2) return absl::InvalidArgumentError(absl::StrCat(file, ": needs a feature and a label column"));
  size_t label_col = width - 1;
  if (!options.label_column.empty()) {
    auto it = std::find(names.begin(), names.end(), options.label_column);
    if (it != names.end()) {
      label_col = static_cast<size_t>(it - names.begin());
    } else if (size_t idx = 0; absl::SimpleAtoi(options.label_column, &idx) && idx < width) {
      label_col = idx;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": no label column '", options.label_column, "' (", width, " columns)"));
    }
  }
  Dataset d;
  d.source = file;
  d.channels = static_cast<int>(width - 1);
  LabelColumn labels;
  auto add_row = [&](const std::vector<std::string_view>& row, size_t line_no) -> absl::Status {
    if (row.size() != width) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, " line ", line_no, ": ", row.size(), " fields, expected ", width));
    }
    if (labels.rows.size() >= kMaxSamples) {
      return absl::OutOfRangeError(absl::StrCat(file, ": more than ", kMaxSamples, " rows"));
    }
    for (size_t c = 0; c < width; ++c) {
      if (c == label_col) continue;
      if (!ParseNumber(row[c], &v) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(file, " line ", line_no, " column ",
                                                       names.empty() ? std::to_string(c) : names[c], ": '",
                                                       Shown(Strip(row[c])), "' is not a finite number"));
      }
      d.features.push_back(static_cast<float>(v));
    }
    return labels.Add(Strip(row[label_col]), line_no, file);
  };
  if (first_is_data) {
    if (auto s = add_row(head, first_line); !s.ok()) return s;
  }
  if (auto s = add_row(fields, in.lines()); !s.ok()) return s;
  for (;;) {
    more = next(&line);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (auto s = add_row(SplitFields(line), in.lines()); !s.ok()) return s;
  }
  if (auto s = AssignClasses(labels, sklearn_classes, options, file, &d); !s.ok()) return s;
  if (d.label_names.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": the label column has ", d.label_names.size(), " class; need 2 or more"));
  }
  return d;
}

Split StratifiedSplit(const Dataset& data, double holdout_fraction, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<size_t>> by_class(data.label_names.size());
  for (size_t i = 0; i < data.size(); ++i) by_class[static_cast<size_t>(data.labels[i])].push_back(i);
  std::vector<size_t> train, holdout;
  for (auto& idx : by_class) {
    std::shuffle(idx.begin(), idx.end(), rng);
    const auto h = static_cast<size_t>(std::llround(holdout_fraction * static_cast<double>(idx.size())));
    holdout.insert(holdout.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(h));
    train.insert(train.end(), idx.begin() + static_cast<std::ptrdiff_t>(h), idx.end());
  }
  std::shuffle(train.begin(), train.end(), rng);
  std::shuffle(holdout.begin(), holdout.end(), rng);
  return {data.Subset(train), data.Subset(holdout)};
}

Normalization ComputeNormalization(const Dataset& data) {
  const auto c = static_cast<size_t>(data.channels);
  std::vector<double> sum(c, 0.0), sq(c, 0.0);
  for (size_t i = 0; i < data.features.size(); ++i) {
    sum[i % c] += data.features[i];
    sq[i % c] += static_cast<double>(data.features[i]) * data.features[i];
  }
  const double count = static_cast<double>(data.features.size() / std::max<size_t>(c, 1));
  Normalization n;
  for (size_t k = 0; k < c; ++k) {
    const double mean = count > 0 ? sum[k] / count : 0.0;
    const double var = count > 0 ? std::max(0.0, sq[k] / count - mean * mean) : 1.0;
    n.mean.push_back(static_cast<float>(mean));
    n.stddev.push_back(static_cast<float>(std::max(std::sqrt(var), 1e-6)));
  }
  return n;
}

}  // namespace tinyfed::models
