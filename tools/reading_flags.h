// The flags every command that reads a dataset file shares: how a CSV file
// is read and how much a file may hold (models::CsvOptions,
// models::ReadLimits).
#ifndef TINYFED_TOOLS_READING_FLAGS_H_
#define TINYFED_TOOLS_READING_FLAGS_H_

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "tinyfed/models/dataset.h"

namespace tinyfed::tools {

struct ReadingFlags {
  std::string label_column;
  int classes = 0;
  bool labels_as_names = false;
  std::string delimiter;
  std::string missing = "error";
  std::vector<std::string> ignore_columns;
  std::vector<int> shape;
  double max_input_mb = 512;

  void Add(CLI::App* app) {
    app->add_option("--label-column", label_column, "CSV label column: name or 0-based index (default: last)");
    app->add_option("--classes", classes, "CSV: the number of classes, when some class ids have no row in this file")
        ->check(CLI::Range(1, models::kMaxClasses));
    app->add_flag("--labels-as-names", labels_as_names,
                  "CSV: every distinct label is a class name (sorted), e.g. -1 and 1");
    app->add_option("--delimiter", delimiter, "CSV field separator: , ; tab or | (default: detected)")
        ->check(CLI::IsMember({",", ";", "tab", "|"}));
    app->add_option("--missing", missing,
                    "CSV cells that are empty, NA, ?...: error (count them all), drop (the rows) or mean (fill)")
        ->check(CLI::IsMember({"error", "drop", "mean"}));
    app->add_option("--ignore-columns", ignore_columns, "CSV columns that are not features (names or indices)")
        ->delimiter(',');
    app->add_option("--shape", shape, "CSV: each row as an image, H,W,C (e.g. 8,8,1)")->delimiter(',')->expected(3);
    app->add_option("--max-input-mb", max_input_mb, "the most a dataset file may hold, decompressed (MB)")
        ->check(CLI::Range(1.0, 1e6));
  }
  models::ReadLimits Limits() const {
    models::ReadLimits limits;
    limits.max_bytes = static_cast<uint64_t>(max_input_mb * 1024 * 1024);
    return limits;
  }
  models::CsvOptions Csv() const {
    models::CsvOptions o;
    o.label_column = label_column;
    o.num_classes = classes;
    o.labels_as_names = labels_as_names;
    if (!delimiter.empty()) o.delimiter = delimiter == "tab" ? '\t' : delimiter[0];
    o.missing = missing == "drop"   ? models::MissingValues::kDrop
                : missing == "mean" ? models::MissingValues::kMean
                                    : models::MissingValues::kError;
    o.ignore_columns = ignore_columns;
    o.shape = shape;
    o.limits = Limits();
    return o;
  }
};

// What the reader noticed but accepted, for the operator.
inline void LogReadingWarnings(const models::Dataset& d) {
  for (const std::string& w : d.warnings) spdlog::warn("{}", w);
}

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_READING_FLAGS_H_
