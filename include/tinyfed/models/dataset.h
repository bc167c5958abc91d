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
  // What a reader noticed but accepted, one sentence each, for the log.
  std::vector<std::string> warnings;

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

// What to do with a missing value: a cell that is empty or NA, N/A, NaN, ?,
// null or None (any case).
enum class MissingValues {
  kError,  // refuse the file, counting every affected row and column
  kDrop,   // leave out each row that has one
  kMean,   // a feature takes its column's mean; a row without a label goes
};

struct CsvOptions {
  // Column holding the label: a header name or a 0-based index; empty means
  // the last column.
  std::string label_column;
  // Integer labels 0..K-1 are class ids; other integer codes (2 and 4, or -1
  // and 1) are classes named by their code, in numeric order. Set this to
  // declare K, so that ids 0..K-1 may be missing from this file.
  int num_classes = 0;
  // Every distinct label is a class name, classes in sorted order.
  bool labels_as_names = false;
  // The field separator; 0 detects one of , ; TAB | from the first line.
  // Fields may be quoted as RFC 4180 has it ("a ""b"", c"), lines may end in
  // CRLF. With ';' a decimal comma is read too ("1,5").
  char delimiter = 0;
  MissingValues missing = MissingValues::kError;
  // Columns that are not features (an identifier, a date): header names or
  // 0-based indices.
  std::vector<std::string> ignore_columns;
  // Each row's features as an image of height x width x channels, row-major
  // with channels last; empty: a row of D features is 1 x 1 x D.
  std::vector<int> shape;
  ReadLimits limits;
};

// Delimited numeric features and one label column (see CsvOptions),
// gzip-compressed or not. The first record is a header of column names when
// any of its fields is not a number. scikit-learn's bundled format, whose
// first line is "n_samples,n_features,name0,name1,...", is recognised and its
// class names kept; R's write.csv row names (an unnamed first column holding
// 1..N) are left out. Labels are either all integers (1.0 is 1) or all names
// (classes in sorted order). INVALID_ARGUMENT names the line and column of
// the first bad cell, lists the columns when one is not found, and counts
// every missing value. What the reader noticed but accepted (a column that
// looks like an identifier, rows dropped, codes mapped) is in the dataset's
// `warnings`.
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
