// The flags every command that reads a labelled dataset shares: the file
// (CSV, or IDX images with their labels), how it is read, and which part of
// a stratified split to use.
#ifndef TINYFED_TOOLS_DATA_FLAGS_H_
#define TINYFED_TOOLS_DATA_FLAGS_H_

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/trainer.h"
#include "tools/reading_flags.h"

namespace tinyfed::tools {

struct DataFlags {
  std::string data;
  std::string labels;
  ReadingFlags reading;
  std::string label_names;
  double holdout = 0.0;
  uint64_t split_seed = 1;
  std::string part = "train";

  void Add(CLI::App* app, const std::string& default_part) {
    part = default_part;
    app->add_option("--data", data, "dataset: a CSV file, or an IDX images file (optionally .gz) with --labels")
        ->required();
    app->add_option("--labels", labels, "IDX labels file that goes with IDX --data");
    reading.Add(app);
    app->add_option("--label-names", label_names, "comma-separated class names, for IDX data");
    app->add_option("--holdout", holdout, "fraction held out by a stratified split, in [0, 1)")
        ->check(CLI::Range(0.0, 0.99));
    app->add_option("--split-seed", split_seed, "seed of the stratified split");
    app->add_option("--part", part, "which part of a --holdout split to use: train or holdout")
        ->check(CLI::IsMember({"train", "holdout"}));
  }

  absl::StatusOr<models::Dataset> Load() const {
    absl::StatusOr<models::Dataset> d;
    const bool csv =
        data.ends_with(".csv") || data.ends_with(".csv.gz") || data.ends_with(".tsv") || data.ends_with(".tsv.gz");
    if (csv) {
      d = models::ReadCsv(data, reading.Csv());
      if (d.ok()) LogReadingWarnings(*d);
    } else {
      if (labels.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--data ", data, " is not a .csv or .tsv file, so it is read as IDX and needs --labels"));
      }
      std::vector<std::string> names;
      if (!label_names.empty()) names = absl::StrSplit(label_names, ',');
      d = models::ReadIdx(data, labels, names, reading.Limits());
    }
    if (!d.ok() || holdout <= 0.0) return d;
    auto split = models::StratifiedSplit(*d, holdout, split_seed);
    return part == "holdout" ? std::move(split.holdout) : std::move(split.train);
  }
};

// The flags of a float training run (models::TrainOptions).
inline void AddTrainFlags(CLI::App* app, models::TrainOptions* train) {
  app->add_option("--epochs", train->epochs)->check(CLI::Range(0, 100000));
  app->add_option("--batch-size", train->batch_size)->check(CLI::Range(1, 1 << 16));
  app->add_option("--lr", train->learning_rate, "peak learning rate (cosine decay)");
  app->add_option("--momentum", train->momentum);
  app->add_option("--weight-decay", train->weight_decay);
  app->add_option("--seed", train->seed, "seed of initialization and shuffling");
}

}  // namespace tinyfed::tools

#endif  // TINYFED_TOOLS_DATA_FLAGS_H_
