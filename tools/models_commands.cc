// `tinyfed backbone ...` and `tinyfed model ...`: thin wrappers over models/.
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/file_io.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trainer.h"
#include "tools/commands.h"

namespace tinyfed::tools {
namespace {

using models::Dataset;

struct DataFlags {
  std::string data;
  std::string labels;
  std::string label_column;
  std::string label_names;
  double holdout = 0.0;
  uint64_t split_seed = 1;
  std::string part = "train";

  void Add(CLI::App* app, const std::string& default_part) {
    part = default_part;
    app->add_option("--data", data,
                    "dataset: a CSV file, or an IDX images file (optionally .gz) with --labels")
        ->required();
    app->add_option("--labels", labels, "IDX labels file that goes with IDX --data");
    app->add_option("--label-column", label_column, "CSV label column: name or 0-based index (default: last)");
    app->add_option("--label-names", label_names, "comma-separated class names, for IDX data");
    app->add_option("--holdout", holdout, "fraction held out by a stratified split, in [0, 1)")
        ->check(CLI::Range(0.0, 0.99));
    app->add_option("--split-seed", split_seed, "seed of the stratified split");
    app->add_option("--part", part, "which part of a --holdout split to use: train or holdout")
        ->check(CLI::IsMember({"train", "holdout"}));
  }

  absl::StatusOr<Dataset> Load() const {
    absl::StatusOr<Dataset> d;
    const bool csv = data.ends_with(".csv") || data.ends_with(".csv.gz");
    if (csv) {
      d = models::ReadCsv(data, models::CsvOptions{label_column});
    } else {
      if (labels.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--data ", data, " is not a .csv file, so it is read as IDX and needs --labels"));
      }
      std::vector<std::string> names;
      if (!label_names.empty()) names = absl::StrSplit(label_names, ',');
      d = models::ReadIdx(data, labels, names);
    }
    if (!d.ok() || holdout <= 0.0) return d;
    auto split = models::StratifiedSplit(*d, holdout, split_seed);
    return part == "holdout" ? std::move(split.holdout) : std::move(split.train);
  }
};

std::string Percent(double x) { return std::isnan(x) ? "n/a" : fmt::format("{:.2f}%", 100.0 * x); }

nlohmann::json EvaluationJson(const std::string& path, const v1::ModelBundle& bundle,
                              const models::ConfusionMatrix& m, uint64_t file_bytes,
                              uint64_t arena_bytes) {
  nlohmann::json j;
  j["model"] = path;
  j["precision"] = bundle.precision() == v1::PRECISION_INT8 ? "int8" : "float32";
  j["samples"] = m.total();
  j["accuracy"] = m.accuracy();
  j["model_bytes"] = file_bytes;
  j["peak_arena_bytes"] = arena_bytes;
  nlohmann::json classes = nlohmann::json::array();
  nlohmann::json confusion = nlohmann::json::array();
  for (int c = 0; c < m.num_classes(); ++c) {
    const auto nan_to_null = [](double x) { return std::isnan(x) ? nlohmann::json() : nlohmann::json(x); };
    classes.push_back({{"name", bundle.label_names(c)},
                       {"sensitivity", nan_to_null(m.sensitivity(c))},
                       {"specificity", nan_to_null(m.specificity(c))}});
    nlohmann::json row = nlohmann::json::array();
    for (int p = 0; p < m.num_classes(); ++p) row.push_back(m.count(c, p));
    confusion.push_back(row);
  }
  j["classes"] = classes;
  j["confusion"] = confusion;
  return j;
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
  cmd->add_option("--epochs", flags->train.epochs)->check(CLI::Range(0, 100000));
  cmd->add_option("--batch-size", flags->train.batch_size)->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--lr", flags->train.learning_rate, "peak learning rate (cosine decay)");
  cmd->add_option("--momentum", flags->train.momentum);
  cmd->add_option("--weight-decay", flags->train.weight_decay);
  cmd->add_option("--seed", flags->train.seed, "seed of initialization and shuffling");
  cmd->callback([flags] {
    auto data = flags->data.Load();
    if (!data.ok()) throw CommandError(data.status());
    auto arch = models::ParseArchitecture(flags->architecture);
    if (!arch.ok()) throw CommandError(arch.status());
    models::ArchitectureOptions arch_options;
    arch_options.mlp_hidden.clear();
    for (absl::string_view h : absl::StrSplit(flags->hidden, ',')) {
      int v = 0;
      if (!absl::SimpleAtoi(h, &v)) {
        throw CommandError(absl::InvalidArgumentError(absl::StrCat("--hidden: '", h, "' is not an integer")));
      }
      arch_options.mlp_hidden.push_back(v);
    }
    auto bundle = models::BuildBackbone(*arch, *data, flags->train.seed, arch_options);
    if (!bundle.ok()) throw CommandError(bundle.status());
    if (!flags->name.empty()) bundle->mutable_metadata()->set_name(flags->name);
    auto* summary = bundle->mutable_metadata()->mutable_training_data();
    summary->set_holdout_fraction(static_cast<float>(flags->data.holdout));
    summary->set_split_seed(flags->data.split_seed);
    fmt::print("training {} on {} samples of {}x{}x{} from {}\n", flags->architecture, data->size(),
               data->height, data->width, data->channels, data->source);
    models::TrainOptions options = flags->train;
    options.on_epoch = [&](const models::EpochReport& r) {
      fmt::print("epoch {:3d}  loss {:.4f}  train accuracy {:.2f}%  lr {:.4f}  {:.1f}s\n", r.epoch,
                 r.loss, 100.0 * r.train_accuracy, r.learning_rate, r.seconds);
      std::fflush(stdout);
    };
    if (auto s = models::Train(&*bundle, *data, options); !s.ok()) throw CommandError(s);
    if (auto s = models::WriteBundleFile(flags->out, *bundle); !s.ok()) throw CommandError(s);
    fmt::print("wrote {}\n", flags->out);
  });
}

void AddModelQuantize(CLI::App* model) {
  auto* cmd = model->add_subcommand("quantize", "float bundle -> int8 bundle (PTQ or QAT)");
  struct Flags {
    DataFlags data;
    std::string in, out, method = "ptq", calibration = "minmax";
    models::QuantizeOptions quantize;
    models::TrainOptions qat;
  };
  auto flags = std::make_shared<Flags>();
  flags->qat.epochs = 2;
  flags->qat.learning_rate = 0.005f;
  flags->data.Add(cmd, "train");
  cmd->add_option("--model", flags->in, "float bundle")->required();
  cmd->add_option("--out", flags->out, "int8 bundle to write")->required();
  cmd->add_option("--method", flags->method, "ptq or qat")->check(CLI::IsMember({"ptq", "qat"}));
  cmd->add_option("--calibration", flags->calibration, "minmax or percentile")
      ->check(CLI::IsMember({"minmax", "percentile"}));
  cmd->add_option("--percentile", flags->quantize.percentile, "for --calibration percentile");
  cmd->add_option("--calibration-samples", flags->quantize.calibration_samples);
  cmd->add_option("--seed", flags->quantize.seed);
  cmd->add_option("--qat-epochs", flags->qat.epochs, "fine-tuning epochs for --method qat");
  cmd->add_option("--qat-lr", flags->qat.learning_rate, "peak learning rate for --method qat");
  cmd->callback([flags] {
    auto bundle = models::ReadBundleFile(flags->in);
    if (!bundle.ok()) throw CommandError(bundle.status());
    auto data = flags->data.Load();
    if (!data.ok()) throw CommandError(data.status());
    flags->quantize.calibration = flags->calibration == "percentile" ? models::Calibration::kPercentile
                                                                     : models::Calibration::kMinMax;
    absl::StatusOr<v1::ModelBundle> q;
    if (flags->method == "qat") {
      flags->qat.seed = flags->quantize.seed;
      flags->qat.on_epoch = [](const models::EpochReport& r) {
        fmt::print("qat epoch {:3d}  loss {:.4f}  train accuracy {:.2f}%  {:.1f}s\n", r.epoch, r.loss,
                   100.0 * r.train_accuracy, r.seconds);
      };
      q = models::QuantizeAwareTraining(*bundle, *data, flags->quantize, flags->qat);
    } else {
      q = models::QuantizePostTraining(*bundle, *data, flags->quantize);
    }
    if (!q.ok()) throw CommandError(q.status());
    if (auto s = models::WriteBundleFile(flags->out, *q); !s.ok()) throw CommandError(s);
    fmt::print("wrote {} ({} {})\n", flags->out, flags->method, flags->calibration);
  });
}

void AddModelEval(CLI::App* model) {
  auto* cmd = model->add_subcommand(
      "eval", "accuracy, per-class sensitivity and specificity, confusion matrix; several --model "
              "flags print a comparison");
  struct Flags {
    DataFlags data;
    std::vector<std::string> models;
    bool json = false;
    bool reference = false;
    std::string positive;
  };
  auto flags = std::make_shared<Flags>();
  flags->data.Add(cmd, "holdout");
  cmd->add_option("--positive-class", flags->positive,
                  "class whose sensitivity and specificity the comparison table shows");
  cmd->add_option("--model", flags->models, "bundle to evaluate (repeatable)")->required();
  cmd->add_flag("--json", flags->json, "print JSON (an array with one object per model)");
  cmd->add_flag("--reference-kernels", flags->reference, "run the portable kernels instead of AVX2");
  cmd->callback([flags] {
    auto data = flags->data.Load();
    if (!data.ok()) throw CommandError(data.status());
    nlohmann::json all = nlohmann::json::array();
    for (const auto& path : flags->models) {
      auto bundle = models::ReadBundleFile(path);
      if (!bundle.ok()) throw CommandError(bundle.status());
      const auto kernels = flags->reference ? models::KernelSet::kReference : models::KernelSet::kBest;
      uint64_t arena = 0;
      absl::StatusOr<models::ConfusionMatrix> m;
      if (bundle->precision() == v1::PRECISION_INT8) {
        auto it = models::Interpreter::Create(*bundle, kernels);
        if (!it.ok()) throw CommandError(absl::Status(it.status().code(), absl::StrCat(path, ": ", it.status().message())));
        arena = (*it)->arena_bytes();
        m = models::Evaluate(**it, *data);
      } else {
        m = models::Evaluate(*bundle, *data, kernels);
      }
      if (!m.ok()) throw CommandError(absl::Status(m.status().code(), absl::StrCat(path, ": ", m.status().message())));
      all.push_back(EvaluationJson(path, *bundle, *m, std::filesystem::file_size(path), arena));
      if (flags->json) continue;
      fmt::print("{} ({}) on {} samples: accuracy {}\n", std::filesystem::path(path).filename().string(), all.back()["precision"].get<std::string>(),
                 m->total(), Percent(m->accuracy()));
      fmt::print("  {:<16} {:>12} {:>12}\n", "class", "sensitivity", "specificity");
      for (int c = 0; c < m->num_classes(); ++c) {
        fmt::print("  {:<16} {:>12} {:>12}\n", bundle->label_names(c), Percent(m->sensitivity(c)),
                   Percent(m->specificity(c)));
      }
      fmt::print("  confusion (rows: truth, columns: predicted)\n");
      for (int c = 0; c < m->num_classes(); ++c) {
        std::string row;
        for (int p = 0; p < m->num_classes(); ++p) row += fmt::format(" {:6d}", m->count(c, p));
        fmt::print("  {}\n", row);
      }
    }
    if (flags->json) {
      fmt::print("{}\n", all.dump(2));
    } else if (all.size() > 1 || !flags->positive.empty()) {
      int positive = -1;
      for (size_t c = 0; c < data->label_names.size(); ++c) {
        if (data->label_names[c] == flags->positive) positive = static_cast<int>(c);
      }
      if (!flags->positive.empty() && positive < 0) {
        throw CommandError(absl::InvalidArgumentError(
            absl::StrCat("--positive-class ", flags->positive, " is not a class of ", data->source)));
      }
      // One row per model; the positive-class columns only when asked for.
      auto row = [&](std::vector<std::string> cells) {
        std::string line = fmt::format("{:<36} {:>9} {:>9}", cells[0], cells[1], cells[2]);
        if (positive >= 0) line += fmt::format(" {:>11} {:>11}", cells[3], cells[4]);
        return line + fmt::format(" {:>11} {:>10}\n", cells[5], cells[6]);
      };
      fmt::print("\n{}", row({"model", "precision", "accuracy", "sensitivity", "specificity",
                               "model bytes", "peak arena"}));
      for (const auto& j : all) {
        auto rate = [&](const char* key) {
          if (positive < 0) return std::string();
          const auto& v = j["classes"][static_cast<size_t>(positive)][key];
          return v.is_null() ? std::string("n/a") : fmt::format("{:.3f}", v.get<double>());
        };
        const uint64_t arena = j["peak_arena_bytes"].get<uint64_t>();
        fmt::print("{}", row({std::filesystem::path(j["model"].get<std::string>()).filename().string(),
                              j["precision"].get<std::string>(),
                              Percent(j["accuracy"].get<double>()), rate("sensitivity"),
                              rate("specificity"), std::to_string(j["model_bytes"].get<uint64_t>()),
                              arena ? std::to_string(arena) : std::string("-")}));
      }
      if (positive >= 0) fmt::print("sensitivity and specificity of class '{}'\n", flags->positive);
    }
  });
}

void AddModelInspect(CLI::App* model) {
  auto* cmd = model->add_subcommand("inspect", "layers, MACs, weight bytes and peak arena of a bundle");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", *path, "bundle")->required();
  cmd->add_flag("--json", *json, "print JSON");
  cmd->callback([path, json] {
    auto bundle = models::ReadBundleFile(*path);
    if (!bundle.ok()) throw CommandError(bundle.status());
    auto layers = models::DescribeLayers(*bundle);
    if (!layers.ok()) throw CommandError(layers.status());
    const bool int8 = bundle->precision() == v1::PRECISION_INT8;
    uint64_t arena = 0;
    bool avx2 = false;
    if (int8) {
      auto it = models::Interpreter::Create(*bundle);
      if (!it.ok()) throw CommandError(it.status());
      arena = (*it)->arena_bytes();
      avx2 = (*it)->uses_avx2();
    }
    uint64_t macs = 0, weights = 0;
    nlohmann::json jl = nlohmann::json::array();
    for (const auto& l : *layers) {
      macs += l.macs;
      weights += l.weight_bytes;
      jl.push_back({{"kind", l.kind},
                    {"output", {l.output_height, l.output_width, l.output_channels}},
                    {"macs", l.macs},
                    {"weight_bytes", l.weight_bytes}});
    }
    const auto& meta = bundle->metadata();
    const uint64_t head_bytes = 4 * static_cast<uint64_t>(bundle->head().weights_size() + bundle->head().bias_size());
    if (*json) {
      nlohmann::json j = {{"model", *path},
                          {"name", meta.name()},
                          {"version", meta.version()},
                          {"architecture", meta.architecture()},
                          {"precision", int8 ? "int8" : "float32"},
                          {"file_bytes", std::filesystem::file_size(*path)},
                          {"layers", jl},
                          {"total_macs", macs},
                          {"weight_bytes", weights},
                          {"head_bytes", head_bytes},
                          {"labels", bundle->label_names()},
                          {"peak_arena_bytes", int8 ? nlohmann::json(arena) : nlohmann::json()},
                          {"kernels", int8 ? (avx2 ? "avx2" : "reference") : "float"}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    fmt::print("{}: {} v{} ({}, {})\n", *path, meta.name(), meta.version(), meta.architecture(),
               int8 ? "int8" : "float32");
    fmt::print("{:>3} {:<18} {:>14} {:>12} {:>12}\n", "#", "op", "output", "MACs", "weight bytes");
    for (size_t i = 0; i < layers->size(); ++i) {
      const auto& l = (*layers)[i];
      fmt::print("{:>3} {:<18} {:>14} {:>12} {:>12}\n", i, l.kind,
                 fmt::format("{}x{}x{}", l.output_height, l.output_width, l.output_channels), l.macs,
                 l.weight_bytes);
    }
    fmt::print("total MACs {}  backbone weight bytes {}  head bytes {}  file bytes {}\n", macs, weights,
               head_bytes, std::filesystem::file_size(*path));
    if (int8) fmt::print("peak arena bytes {} ({} kernels)\n", arena, avx2 ? "avx2" : "reference");
  });
}

void AddKeysGenerate(CLI::App* app) {
  auto* keys = app->add_subcommand("keys", "signing keys of an aggregator");
  keys->require_subcommand(1);
  auto* cmd = keys->add_subcommand("generate", "make an Ed25519 key pair for signing models");
  auto secret = std::make_shared<std::string>(), pub = std::make_shared<std::string>();
  cmd->add_option("--secret", *secret, "secret key file to write (mode 0600)")->required();
  cmd->add_option("--public", *pub, "public key file to write (give it to gateways)")->required();
  cmd->callback([secret, pub] {
    if (std::filesystem::exists(*secret)) {
      throw CommandError(absl::AlreadyExistsError(absl::StrCat(*secret, " exists; refusing to overwrite a key")));
    }
    if (auto s = models::WriteSigningKey(models::SigningKey::Generate(), *secret, *pub); !s.ok()) throw CommandError(s);
    fmt::print("wrote {} and {}\n", *secret, *pub);
  });
}

void AddModelSignAndVerify(CLI::App* model) {
  auto* sign = model->add_subcommand("sign", "sign a bundle as a published version");
  struct SignFlags {
    std::string model, key, out;
    uint64_t version = 0;
  };
  auto sf = std::make_shared<SignFlags>();
  sign->add_option("--model", sf->model, "bundle to publish")->required();
  sign->add_option("--key", sf->key, "secret key file")->required();
  sign->add_option("--version", sf->version, "version number, strictly increasing")->required()->check(CLI::PositiveNumber);
  sign->add_option("--out", sf->out, "signed bundle to write")->required();
  sign->callback([sf] {
    auto key = models::ReadSigningKey(sf->key);
    if (!key.ok()) throw CommandError(key.status());
    auto bytes = models::ReadFileBytes(sf->model, models::kMaxBundleFileBytes);
    if (!bytes.ok()) throw CommandError(bytes.status());
    if (auto b = models::DecodeBundleFile(*bytes); !b.ok()) {
      throw CommandError(absl::InvalidArgumentError(absl::StrCat(sf->model, ": ", b.status().message())));
    }
    const auto signed_bundle = models::SignBundle(*bytes, sf->version, *key);
    if (auto s = models::WriteFileAtomically(sf->out, signed_bundle.SerializeAsString()); !s.ok()) throw CommandError(s);
    fmt::print("wrote {} (version {})\n", sf->out, sf->version);
  });

  auto* verify = model->add_subcommand("verify", "check a signed bundle against a public key");
  struct VerifyFlags {
    std::string model, key, out;
    uint64_t installed = 0;
  };
  auto vf = std::make_shared<VerifyFlags>();
  verify->add_option("--model", vf->model, "signed bundle")->required();
  verify->add_option("--public-key", vf->key, "the aggregator's public key file")->required();
  verify->add_option("--installed-version", vf->installed, "refuse versions not newer than this");
  verify->add_option("--out", vf->out, "write the verified bundle file here (for model eval)");
  verify->callback([vf] {
    auto key = models::ReadPublicKey(vf->key);
    if (!key.ok()) throw CommandError(key.status());
    auto bytes = models::ReadFileBytes(vf->model, models::kMaxBundleFileBytes + 4096);
    if (!bytes.ok()) throw CommandError(bytes.status());
    v1::SignedBundle signed_bundle;
    if (!signed_bundle.ParseFromString(*bytes)) {
      throw CommandError(absl::InvalidArgumentError(absl::StrCat(vf->model, " is not a signed bundle")));
    }
    auto bundle = models::VerifySignedBundle(signed_bundle, *key, vf->installed);
    if (!bundle.ok()) throw CommandError(absl::Status(bundle.status().code(), absl::StrCat(vf->model, ": ", bundle.status().message())));
    if (!vf->out.empty()) {
      if (auto s = models::WriteFileAtomically(vf->out, signed_bundle.bundle()); !s.ok()) throw CommandError(s);
    }
    fmt::print("{}: verified version {} of {} ({} classes)\n", vf->model, signed_bundle.version(),
               bundle->metadata().name(), bundle->label_names_size());
  });
}

}  // namespace

void AddModelCommands(CLI::App* app) {
  auto* backbone = app->add_subcommand("backbone", "train backbones");
  backbone->require_subcommand(1);
  AddBackboneTrain(backbone);
  auto* model = app->add_subcommand("model", "quantize, evaluate and inspect model bundles");
  model->require_subcommand(1);
  AddModelQuantize(model);
  AddModelEval(model);
  AddModelInspect(model);
  AddModelSignAndVerify(model);
  AddKeysGenerate(app);
}

}  // namespace tinyfed::tools
