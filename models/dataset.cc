#include "tinyfed/models/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tinyfed::models {
namespace {

constexpr uint64_t kMaxDatasetBytes = uint64_t{4} << 30;
constexpr uint64_t kMaxSamples = uint64_t{1} << 26;

// Reads a whole file, gunzipping it when it is gzip (gzread passes plain files
// through unchanged).
absl::StatusOr<std::string> ReadMaybeGzip(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    if (!std::filesystem::exists(path)) {
      return absl::NotFoundError(absl::StrCat("no dataset file at ", path.string()));
    }
    return absl::InternalError(absl::StrCat("cannot open ", path.string()));
  }
  std::string out;
  std::string chunk(1 << 20, '\0');
  while (true) {
    const int n = gzread(f, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) {
      int err = 0;
      const std::string msg = gzerror(f, &err);
      gzclose(f);
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", msg));
    }
    if (n == 0) break;
    out.append(chunk.data(), static_cast<size_t>(n));
    if (out.size() > kMaxDatasetBytes) {
      gzclose(f);
      return absl::OutOfRangeError(absl::StrCat(path.string(), " decompresses to more than ",
                                                kMaxDatasetBytes, " bytes"));
    }
  }
  gzclose(f);
  return out;
}

struct IdxArray {
  uint8_t type = 0;
  std::vector<uint64_t> dims;
  std::string_view data;
};

absl::StatusOr<IdxArray> ParseIdx(std::string_view bytes, const std::string& name) {
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not an IDX file (bad magic)"));
  }
  IdxArray a;
  a.type = static_cast<uint8_t>(bytes[2]);
  const int ndims = static_cast<uint8_t>(bytes[3]);
  int elem = 0;
  switch (a.type) {
    case 0x08: case 0x09: elem = 1; break;
    case 0x0B: elem = 2; break;
    case 0x0C: case 0x0D: elem = 4; break;
    case 0x0E: elem = 8; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(name, ": unknown IDX element type 0x",
                                                     absl::Hex(a.type)));
  }
  if (ndims < 1 || ndims > 4 || bytes.size() < 4 + 4 * static_cast<size_t>(ndims)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": IDX header has ", ndims, " dimensions"));
  }
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    uint64_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[4 + 4 * d + i]);
    if (v == 0 || v > kMaxSamples) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": IDX dimension ", d, " is ", v));
    }
    a.dims.push_back(v);
    count *= v;
    if (count > kMaxDatasetBytes) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": IDX array is too large"));
    }
  }
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (bytes.size() - header != count * static_cast<uint64_t>(elem)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": IDX header announces ",
                                                   count * static_cast<uint64_t>(elem),
                                                   " data bytes but the file has ",
                                                   bytes.size() - header));
  }
  a.data = bytes.substr(header);
  return a;
}

float IdxValue(const IdxArray& a, size_t i) {
  const char* p = a.data.data();
  auto be = [&](int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; ++k) v = (v << 8) | static_cast<uint8_t>(p[i * static_cast<size_t>(n) + static_cast<size_t>(k)]);
    return v;
  };
  switch (a.type) {
    case 0x08: return static_cast<uint8_t>(p[i]);
    case 0x09: return static_cast<int8_t>(p[i]);
    case 0x0B: return static_cast<int16_t>(be(2));
    case 0x0C: return static_cast<float>(static_cast<int32_t>(be(4)));
    case 0x0D: { const uint32_t b = static_cast<uint32_t>(be(4)); float f; std::memcpy(&f, &b, 4); return f; }
    default: { const uint64_t b = be(8); double d; std::memcpy(&d, &b, 8); return static_cast<float>(d); }
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

absl::StatusOr<Dataset> ReadIdx(const std::filesystem::path& images,
                                const std::filesystem::path& labels,
                                std::vector<std::string> label_names) {
  auto image_bytes = ReadMaybeGzip(images);
  if (!image_bytes.ok()) return image_bytes.status();
  auto label_bytes = ReadMaybeGzip(labels);
  if (!label_bytes.ok()) return label_bytes.status();
  auto img = ParseIdx(*image_bytes, images.string());
  if (!img.ok()) return img.status();
  auto lab = ParseIdx(*label_bytes, labels.string());
  if (!lab.ok()) return lab.status();
  if (img->dims.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(images.string(),
                                                   ": images need at least 2 dimensions"));
  }
  if (lab->dims.size() != 1 || lab->type != 0x08) {
    return absl::InvalidArgumentError(absl::StrCat(labels.string(),
                                                   ": labels must be one dimension of unsigned bytes"));
  }
  if (lab->dims[0] != img->dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(images.string(), " has ", img->dims[0],
                                                   " images but ", labels.string(), " has ",
                                                   lab->dims[0], " labels"));
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
  int max_label = 0;
  d.labels.resize(n);
  for (size_t i = 0; i < n; ++i) {
    d.labels[i] = static_cast<uint8_t>(lab->data[i]);
    max_label = std::max(max_label, d.labels[i]);
  }
  const int classes = std::max<int>(max_label + 1, static_cast<int>(label_names.size()));
  if (!label_names.empty() && static_cast<int>(label_names.size()) != classes) {
    return absl::InvalidArgumentError(absl::StrCat(labels.string(), " has label ", max_label,
                                                   " but only ", label_names.size(),
                                                   " label names were given"));
  }
  if (label_names.empty()) {
    for (int c = 0; c < classes; ++c) label_names.push_back(std::to_string(c));
  }
  d.label_names = std::move(label_names);
  return d;
}

absl::StatusOr<Dataset> ReadCsv(const std::filesystem::path& path, const CsvOptions& options) {
  auto bytes = ReadMaybeGzip(path);
  if (!bytes.ok()) return bytes.status();
  std::vector<std::vector<std::string_view>> rows;
  std::vector<size_t> line_numbers;
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(*bytes, '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<std::string_view> fields;
    for (absl::string_view f : absl::StrSplit(line, ',')) fields.emplace_back(f.data(), f.size());
    rows.push_back(std::move(fields));
    line_numbers.push_back(line_no);
  }
  if (rows.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": needs a header or at least 2 rows"));
  }
  std::vector<std::string> names;
  std::vector<std::string> sklearn_classes;
  size_t first_data = 0;
  double v = 0;
  const bool first_numeric =
      std::all_of(rows[0].begin(), rows[0].end(), [&](auto f) { return ParseNumber(f, &v); });
  double n_features = 0;
  if (rows[0].size() != rows[1].size() && rows[0].size() >= 2 &&
      ParseNumber(rows[0][1], &n_features) && static_cast<size_t>(n_features) + 1 == rows[1].size()) {
    // scikit-learn: n_samples, n_features, class names.
    for (size_t i = 2; i < rows[0].size(); ++i) sklearn_classes.emplace_back(rows[0][i]);
    first_data = 1;
  } else if (!first_numeric) {
    for (auto f : rows[0]) {
      names.emplace_back(absl::StripAsciiWhitespace(absl::string_view(f.data(), f.size())));
    }
    first_data = 1;
  }
  const size_t width = rows[first_data].size();
  if (!names.empty() && names.size() != width) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": header has ", names.size(),
                                                   " columns but line ", line_numbers[1], " has ",
                                                   width));
  }
  if (width < 2) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": needs a feature and a label column"));
  }
  size_t label_col = width - 1;
  if (!options.label_column.empty()) {
    auto it = std::find(names.begin(), names.end(), options.label_column);
    if (it != names.end()) {
      label_col = static_cast<size_t>(it - names.begin());
    } else if (size_t idx = 0; absl::SimpleAtoi(options.label_column, &idx) && idx < width) {
      label_col = idx;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ": no label column '",
                                                     options.label_column, "' (",
                                                     width, " columns)"));
    }
  }
  Dataset d;
  d.source = path.string();
  d.channels = static_cast<int>(width - 1);
  std::vector<std::string> raw_labels;
  for (size_t r = first_data; r < rows.size(); ++r) {
    if (rows[r].size() != width) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), " line ", line_numbers[r],
                                                     ": ", rows[r].size(), " fields, expected ",
                                                     width));
    }
    for (size_t c = 0; c < width; ++c) {
      if (c == label_col) {
        raw_labels.emplace_back(absl::StripAsciiWhitespace(
            absl::string_view(rows[r][c].data(), rows[r][c].size())));
        continue;
      }
      if (!ParseNumber(rows[r][c], &v) || !std::isfinite(v)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path.string(), " line ", line_numbers[r], " column ",
            names.empty() ? std::to_string(c) : names[c], ": '", std::string(rows[r][c]),
            "' is not a finite number"));
      }
      d.features.push_back(static_cast<float>(v));
    }
  }
  // Labels: integers 0..K-1 keep their value, anything else maps in sorted order.
  std::set<std::string> distinct(raw_labels.begin(), raw_labels.end());
  bool integral = true;
  int max_label = -1;
  for (const auto& l : distinct) {
    int x = 0;
    if (!absl::SimpleAtoi(l, &x) || x < 0 || x > 65535) {
      integral = false;
      break;
    }
    max_label = std::max(max_label, x);
  }
  if (integral) {
    const int classes = std::max<int>(max_label + 1, static_cast<int>(sklearn_classes.size()));
    for (const auto& l : raw_labels) d.labels.push_back(std::stoi(l));
    if (sklearn_classes.size() == static_cast<size_t>(classes)) {
      d.label_names = sklearn_classes;
    } else {
      for (int c = 0; c < classes; ++c) d.label_names.push_back(std::to_string(c));
    }
  } else {
    std::map<std::string, int> index;
    for (const auto& l : distinct) {
      index.emplace(l, static_cast<int>(index.size()));
      d.label_names.push_back(l);
    }
    for (const auto& l : raw_labels) d.labels.push_back(index[l]);
  }
  if (d.label_names.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": the label column has ",
                                                   d.label_names.size(), " class; need 2 or more"));
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
