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
#include "models/internal/input_file.h"

namespace tinyfed::models {
namespace {

using internal::InputFile;
using internal::kMaxSamples;

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
