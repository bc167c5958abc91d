// `tinyfed backbone ...`: training a float backbone, and making one smaller
// (structured pruning, distillation) before it is quantized.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/distill.h"
#include "tinyfed/models/prune.h"
#include "tinyfed/models/trainer.h"
#include "tools/commands.h"
#include "tools/data_flags.h"

namespace tinyfed::tools {
namespace {

void PrintEpoch(const models::EpochReport& r) {
  fmt::print("epoch {:3d}  loss {:.4f}  train accuracy {:.2f}%  lr {:.4f}  {:.1f}s\n", r.epoch, r.loss,
             100.0 * r.train_accuracy, r.learning_rate, r.seconds);
  std::fflush(stdout);
}

// --hidden "64,32": the mlp's layer widths.
models::ArchitectureOptions ArchitectureOptionsOf(const std::string& hidden) {
  models::ArchitectureOptions options;
  options.mlp_hidden.clear();
  for (absl::string_view h : absl::StrSplit(hidden, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(h, &v)) {
      throw CommandError(absl::InvalidArgumentError(absl::StrCat("--hidden: '", h, "' is not an integer")));
    }
    options.mlp_hidden.push_back(v);
  }
  return options;
}

void AddBackboneTrain(CLI::App* backbone) {
  auto* cmd = backbone->add_subcommand("train", "train a float backbone and head on a dataset");
  struct Flags {
    DataFlags data;
    std::string architecture = "cnn";
    std::string out;
    std::string name;
    std::string hidden = "64,32";
    models::TrainOptions train;
  };
  auto flags = std::make_shared<Flags>();
  flags->data.Add(cmd, "train");
  cmd->add_option("--arch", flags->architecture, "mlp, cnn or dscnn")->check(CLI::IsMember({"mlp", "cnn", "dscnn"}));
  cmd->add_option("--out", flags->out, "float bundle to write")->required();
  cmd->add_option("--name", flags->name, "model name stored in the bundle");
  cmd->add_option("--hidden", flags->hidden, "mlp hidden sizes, comma-separated; the last is the embedding");
  AddTrainFlags(cmd, &flags->train);
  cmd->callback([flags] {
    auto data = flags->data.Load();
    if (!data.ok()) throw CommandError(data.status());
    auto arch = models::ParseArchitecture(flags->architecture);
    if (!arch.ok()) throw CommandError(arch.status());
    auto bundle = models::BuildBackbone(*arch, *data, flags->train.seed, ArchitectureOptionsOf(flags->hidden));
    if (!bundle.ok()) throw CommandError(bundle.status());
    if (!flags->name.empty()) bundle->mutable_metadata()->set_name(flags->name);
    auto* summary = bundle->mutable_metadata()->mutable_training_data();
    summary->set_holdout_fraction(static_cast<float>(flags->data.holdout));
    summary->set_split_seed(flags->data.split_seed);
    fmt::print("training {} on {} samples of {}x{}x{} from {}\n", flags->architecture, data->size(), data->height,
               data->width, data->channels, data->source);
    models::TrainOptions options = flags->train;
    options.on_epoch = PrintEpoch;
    if (auto s = models::Train(&*bundle, *data, options); !s.ok()) throw CommandError(s);
    if (auto s = models::WriteBundleFile(flags->out, *bundle); !s.ok()) throw CommandError(s);
    fmt::print("wrote {}\n", flags->out);
  });
}

void AddBackbonePrune(CLI::App* backbone) {
  auto* cmd = backbone->add_subcommand(
      "prune",
      "remove the least important channels of a float backbone (structured pruning), then fine-tune it: channels are "
      "scored on the --holdout part of --data (default 0.1, class-balanced), the fine-tune (--epochs, --lr, ...) runs "
      "on the rest");
  struct Flags {
    DataFlags data;
    std::string in, out, channels = "30%";
    models::PruneOptions prune;
  };
  auto flags = std::make_shared<Flags>();
  flags->prune.fine_tune.epochs = 3;
  flags->prune.fine_tune.learning_rate = 0.005f;
  flags->data.Add(cmd, "train");
  flags->data.holdout = 0.1;
  cmd->add_option("--model", flags->in, "float bundle")->required();
  cmd->add_option("--out", flags->out, "float bundle to write")->required();
  cmd->add_option("--channels", flags->channels, "share of each prunable layer's channels to remove, as 30% or 0.3");
  cmd->add_option("--samples-per-class", flags->prune.samples_per_class,
                  "held-out samples per class that score the channels")
      ->check(CLI::Range(1, 1 << 20));
  AddTrainFlags(cmd, &flags->prune.fine_tune);
  cmd->callback([flags] {
    std::string share = flags->channels;
    const bool percent = share.ends_with('%');
    if (percent) share.pop_back();
    double fraction = 0;
    if (!absl::SimpleAtod(share, &fraction) || !(fraction > 0 && fraction < (percent ? 100 : 1))) {
      throw CommandError(absl::InvalidArgumentError(
          absl::StrCat("--channels '", flags->channels, "': give a share between 0 and 1, or 0% and 100%")));
    }
    flags->prune.channel_fraction = percent ? fraction / 100 : fraction;
    if (flags->data.holdout <= 0) {
      throw CommandError(absl::InvalidArgumentError("--holdout must be above 0: channels are scored on held-out data"));
    }
    auto bundle = models::ReadBundleFile(flags->in);
    if (!bundle.ok()) throw CommandError(bundle.status());
    DataFlags all = flags->data;
    all.holdout = 0;
    auto data = all.Load();
    if (!data.ok()) throw CommandError(data.status());
    const models::Split split = models::StratifiedSplit(*data, flags->data.holdout, flags->data.split_seed);
    models::PruneOptions options = flags->prune;
    options.fine_tune.on_epoch = PrintEpoch;
    fmt::print("scoring channels on {} held-out samples, fine-tuning on {}\n", split.holdout.size(),
               split.train.size());
    auto report = models::PruneChannels(&*bundle, split.holdout, split.train, options);
    if (!report.ok()) throw CommandError(report.status());
    for (const auto& l : report->layers) {
      fmt::print("op {:2d} {:<16} {:4d} -> {:4d} channels\n", l.op, l.kind, l.channels_before, l.channels_after);
    }
    fmt::print("MACs {} -> {} ({:.1f}% fewer), weights {} -> {} bytes\n", report->macs_before, report->macs_after,
               100.0 * (1.0 - static_cast<double>(report->macs_after) / static_cast<double>(report->macs_before)),
               report->weight_bytes_before, report->weight_bytes_after);
    if (auto s = models::WriteBundleFile(flags->out, *bundle); !s.ok()) throw CommandError(s);
    fmt::print("wrote {}\n", flags->out);
  });
}

void AddBackboneDistill(CLI::App* backbone) {
  auto* cmd = backbone->add_subcommand(
      "distill", "train a small student backbone from a teacher's soft targets and the labels (distillation)");
  struct Flags {
    DataFlags data;
    std::string teacher, out, name, architecture = "mlp", hidden = "64,32";
    models::DistillOptions distill;
  };
  auto flags = std::make_shared<Flags>();
  flags->data.Add(cmd, "train");
  cmd->add_option("--teacher", flags->teacher, "float bundle of the teacher")->required();
  cmd->add_option("--arch", flags->architecture, "the student: mlp, cnn or dscnn")
      ->check(CLI::IsMember({"mlp", "cnn", "dscnn"}));
  cmd->add_option("--hidden", flags->hidden, "mlp hidden sizes, comma-separated; the last is the embedding");
  cmd->add_option("--out", flags->out, "float bundle of the student to write")->required();
  cmd->add_option("--name", flags->name, "model name stored in the bundle");
  cmd->add_option("--temperature", flags->distill.temperature, "softmax temperature of the soft targets");
  cmd->add_option("--soft-weight", flags->distill.soft_weight, "weight of the soft targets; the rest is the labels'");
  cmd->add_option("--hard-case-epochs", flags->distill.hard_case_epochs,
                  "epochs of fine-tuning on the cases the student gets wrong (0: none)");
  cmd->add_option("--hard-case-lr", flags->distill.hard_case_learning_rate, "their constant learning rate");
  AddTrainFlags(cmd, &flags->distill.train);
  cmd->callback([flags] {
    auto teacher = models::ReadBundleFile(flags->teacher);
    if (!teacher.ok()) throw CommandError(teacher.status());
    auto data = flags->data.Load();
    if (!data.ok()) throw CommandError(data.status());
    auto arch = models::ParseArchitecture(flags->architecture);
    if (!arch.ok()) throw CommandError(arch.status());
    auto student = models::BuildBackbone(*arch, *data, flags->distill.train.seed, ArchitectureOptionsOf(flags->hidden));
    if (!student.ok()) throw CommandError(student.status());
    if (!flags->name.empty()) student->mutable_metadata()->set_name(flags->name);
    models::DistillOptions options = flags->distill;
    options.train.on_epoch = PrintEpoch;
    auto report = models::Distill(*teacher, &*student, *data, options);
    if (!report.ok()) throw CommandError(report.status());
    fmt::print("teacher {:.2f}%, student {:.2f}% on the training data; {} hard cases, then {:.2f}%\n",
               100 * report->teacher_accuracy, 100 * report->student_accuracy, report->hard_cases,
               100 * report->final_student_accuracy);
    if (auto s = models::WriteBundleFile(flags->out, *student); !s.ok()) throw CommandError(s);
    fmt::print("wrote {}\n", flags->out);
  });
}

}  // namespace

void AddBackboneCommands(CLI::App* app) {
  auto* backbone = app->add_subcommand("backbone", "train backbones, prune them, distill them");
  backbone->require_subcommand(1);
  AddBackboneTrain(backbone);
  AddBackbonePrune(backbone);
  AddBackboneDistill(backbone);
}

}  // namespace tinyfed::tools
