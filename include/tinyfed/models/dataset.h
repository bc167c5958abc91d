// Labelled datasets in memory, and readers for the IDX and CSV files users
// point at. Features stay raw (no normalization); the statistics for it are
// computed here and stored in a bundle's input spec.
#ifndef TINYFED_MODELS_DATASET_H_
#define TINYFED_MODELS_DATASET_H_

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tinyfed::models {

struct Dataset {
  // Shape of one sample, HWC. A tabular row of D features is 1x1xD.
  int height = 1, width = 1, channels = 1;
  std::vector<float> features;  // size() rows of feature_size() values
  std::vector<int> labels;      // in [0, label_names.size())
  std::vector<std::string> label_names;
  std::string source;

  size_t size() const { return labels.size(); }
  size_t feature_size() const { return static_cast<size_t>(height) * width * channels; }
  int num_classes() const { return static_cast<int>(label_names.size()); }
  std::span<const float> sample(size_t i) const { return {features.data() + i * feature_size(), feature_size()}; }
  std::vector<uint64_t> ClassCounts() const;
  // The rows at `indices`, in that order.
  Dataset Subset(std::span<const size_t> indices) const;
};

// Classes a dataset may have: a head has one output per class.
inline constexpr int kMaxClasses = 1000;

// What a reader takes from one file at most; a gateway has little memory.
// Readers stream: they hold the features (4 bytes a value) and a line or a
// chunk of the file, never the whole file. Past a limit: OUT_OF_RANGE.
struct ReadLimits {
  uint64_t max_bytes = uint64_t{512} << 20;  // of the file, decompressed
  size_t max_line_bytes = size_t{1} << 20;   // of one CSV line
};

// IDX files (the MNIST format), optionally gzip-compressed. Images may be
// unsigned bytes, signed bytes, int32, float or double with 2 (N x D), 3
// (N x H x W) or 4 (N x H x W x C) dimensions; labels are N unsigned bytes.
// Label names are the class ids unless `label_names` gives them.
absl::StatusOr<Dataset> ReadIdx(const std::filesystem::path& images, const std::filesystem::path& labels,
                                std::vector<std::string> label_names = {}, const ReadLimits& limits = {});

struct CsvOptions {
  // Column holding the label: a header name or a 0-based index; empty means
  // the last column.
  std::string label_column;
  // Integer labels are class ids 0..K-1 with K the largest plus one, and a
  // missing id is an error (a typo would make phantom classes); set this to
  // declare K, so ids may be missing from this file.
  int num_classes = 0;
  // Every distinct label is a class name, classes in sorted order ("-1" and
  // "1" become classes 0 and 1).
  bool labels_as_names = false;
  ReadLimits limits;
};

// Comma-separated numeric features and one label column, gzip-compressed or
// not. The first line is a header of column names when any of its fields is
// not a number. scikit-learn's bundled format, whose first line is
// "n_samples,n_features,name0,name1,...", is recognised and its class names
// kept. Labels are either all class ids (integers; "1.0" is 1) or all names
// (text, classes in sorted order); a file mixing the two, a label such as
// 0.5, -1 or 2^31, and more than kMaxClasses classes are INVALID_ARGUMENT
// naming the first offending line (see CsvOptions to read such files).
absl::StatusOr<Dataset> ReadCsv(const std::filesystem::path& path, const CsvOptions& options = {});

// A training part and a held-out part with the same class proportions,
// reproducible from the seed. holdout_fraction in [0, 1).
struct Split {
  Dataset train;
  Dataset holdout;
};
Split StratifiedSplit(const Dataset& data, double holdout_fraction, uint64_t seed);

// Per-channel mean and standard deviation over all samples and positions.
struct Normalization {
  std::vector<float> mean;
  std::vector<float> stddev;  // never below 1e-6
};
Normalization ComputeNormalization(const Dataset& data);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_DATASET_H_
