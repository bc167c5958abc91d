// `tinyfed backbone ...` and `tinyfed model ...`: thin wrappers over models/.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/model_import/onnx_import.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/models/trust.h"
#include "tools/commands.h"
#include "tools/data_flags.h"
#include <nlohmann/json.hpp>

namespace tinyfed::tools {
namespace {

std::string Percent(double x) { return std::isnan(x) ? "n/a" : fmt::format("{:.2f}%", 100.0 * x); }

nlohmann::json EvaluationJson(const std::string& path, const v1::ModelBundle& bundle, const models::ConfusionMatrix& m,
                              uint64_t file_bytes, uint64_t arena_bytes) {
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

void AddModelImport(CLI::App* model) {
  auto* cmd = model->add_subcommand("import", "an ONNX model (PyTorch, TensorFlow) -> float bundle, to quantize next");
  struct Flags {
    std::string onnx, out, labels, mean, stddev;
    model_import::OnnxImportOptions options;
  };
  auto flags = std::make_shared<Flags>();
  cmd->add_option("--onnx", flags->onnx, "the .onnx file")->required();
  cmd->add_option("--embedding", flags->options.embedding, "the tensor the head reads (a node output name)")
      ->required();
  cmd->add_option("--labels", flags->labels, "comma-separated class names, in the model's output order")->required();
  cmd->add_option("--mean", flags->mean, "input normalization: comma-separated means, one or one per channel");
  cmd->add_option("--stddev", flags->stddev, "input normalization: comma-separated standard deviations");
  cmd->add_option("--name", flags->options.name, "model name stored in the bundle (default: the file's stem)");
  cmd->add_option("--out", flags->out, "float bundle to write")->required();
  cmd->callback([flags] {
    flags->options.labels = absl::StrSplit(flags->labels, ',', absl::SkipEmpty());
    auto floats = [](const std::string& text, const char* what) {
      std::vector<float> v;
      for (absl::string_view f : absl::StrSplit(text, ',', absl::SkipEmpty())) {
        float x = 0;
        if (!absl::SimpleAtof(f, &x) || !std::isfinite(x)) {
          throw CommandError(
              absl::InvalidArgumentError(absl::StrCat(what, ": '", std::string(f), "' is not a number")));
        }
        v.push_back(x);
      }
      return v;
    };
    flags->options.mean = floats(flags->mean, "--mean");
    flags->options.stddev = floats(flags->stddev, "--stddev");
    auto bundle = model_import::ImportOnnx(flags->onnx, flags->options);
    if (!bundle.ok()) throw CommandError(bundle.status());
    if (auto s = models::WriteBundleFile(flags->out, *bundle); !s.ok()) throw CommandError(s);
    const bool int8 = bundle->precision() == v1::PRECISION_INT8;
    fmt::print("wrote {} ({}: {} ops, embedding of {}, {} classes); {}\n", flags->out, int8 ? "int8" : "float",
               bundle->backbone().ops_size(), bundle->head().in_features(), bundle->head().num_classes(),
               int8 ? "quantized as the file says (QDQ), ready to sign and publish"
                    : "quantize it next (tinyfed model quantize)");
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
    flags->quantize.calibration =
        flags->calibration == "percentile" ? models::Calibration::kPercentile : models::Calibration::kMinMax;
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
  auto* cmd =
      model->add_subcommand("eval",
                            "accuracy, per-class sensitivity and specificity, confusion matrix; several --model "
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
      double seconds = 0;
      absl::StatusOr<models::ConfusionMatrix> m;
      if (bundle->precision() == v1::PRECISION_INT8) {
        auto it = models::Interpreter::Create(*bundle, kernels);
        if (!it.ok())
          throw CommandError(absl::Status(it.status().code(), absl::StrCat(path, ": ", it.status().message())));
        arena = (*it)->arena_bytes();
        const auto start = std::chrono::steady_clock::now();
        m = models::Evaluate(**it, *data);
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      } else {
        m = models::Evaluate(*bundle, *data, kernels);
      }
      if (!m.ok()) throw CommandError(absl::Status(m.status().code(), absl::StrCat(path, ": ", m.status().message())));
      all.push_back(EvaluationJson(path, *bundle, *m, std::filesystem::file_size(path), arena));
      // What one sample costs on this machine, batch 1 as a gateway runs it
      // (bench/ has the careful figure); int8 only.
      if (seconds > 0) all.back()["microseconds_per_sample"] = 1e6 * seconds / static_cast<double>(m->total());
      if (flags->json) continue;
      fmt::print("{} ({}) on {} samples: accuracy {}\n", std::filesystem::path(path).filename().string(),
                 all.back()["precision"].get<std::string>(), m->total(), Percent(m->accuracy()));
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
      fmt::print("\n{}",
                 row({"model", "precision", "accuracy", "sensitivity", "specificity", "model bytes", "peak arena"}));
      for (const auto& j : all) {
        auto rate = [&](const char* key) {
          if (positive < 0) return std::string();
          const auto& v = j["classes"][static_cast<size_t>(positive)][key];
          return v.is_null() ? std::string("n/a") : fmt::format("{:.3f}", v.get<double>());
        };
        const uint64_t arena = j["peak_arena_bytes"].get<uint64_t>();
        fmt::print("{}",
                   row({std::filesystem::path(j["model"].get<std::string>()).filename().string(),
                        j["precision"].get<std::string>(), Percent(j["accuracy"].get<double>()), rate("sensitivity"),
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
    std::string kernels = "float";
    if (int8) {
      auto it = models::Interpreter::Create(*bundle);
      if (!it.ok()) throw CommandError(it.status());
      arena = (*it)->arena_bytes();
      kernels = (*it)->kernel_set_name();
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
                          {"kernels", kernels}};
      fmt::print("{}\n", j.dump(2));
      return;
    }
    fmt::print("{}: {} v{} ({}, {})\n", *path, meta.name(), meta.version(), meta.architecture(),
               int8 ? "int8" : "float32");
    fmt::print("{:>3} {:<18} {:>14} {:>12} {:>12}\n", "#", "op", "output", "MACs", "weight bytes");
    for (size_t i = 0; i < layers->size(); ++i) {
      const auto& l = (*layers)[i];
      fmt::print("{:>3} {:<18} {:>14} {:>12} {:>12}\n", i, l.kind,
                 fmt::format("{}x{}x{}", l.output_height, l.output_width, l.output_channels), l.macs, l.weight_bytes);
    }
    fmt::print("total MACs {}  backbone weight bytes {}  head bytes {}  file bytes {}\n", macs, weights, head_bytes,
               std::filesystem::file_size(*path));
    if (int8) fmt::print("peak arena bytes {} ({} kernels)\n", arena, kernels);
  });
}

void AddKeysGenerate(CLI::App* app) {
  auto* keys = app->add_subcommand("keys", "Ed25519 keys for root metadata and publishing");
  keys->require_subcommand(1);
  auto* cmd = keys->add_subcommand("generate", "make an Ed25519 key pair (a root key or a publishing key)");
  auto secret = std::make_shared<std::string>(), pub = std::make_shared<std::string>();
  cmd->add_option("--secret", *secret, "secret key file to write (mode 0600)")->required();
  cmd->add_option("--public", *pub, "public key file to write")->required();
  cmd->callback([secret, pub] {
    if (std::filesystem::exists(*secret)) {
      throw CommandError(absl::AlreadyExistsError(absl::StrCat(*secret, " exists; refusing to overwrite a key")));
    }
    if (auto s = models::WriteSigningKey(models::SigningKey::Generate(), *secret, *pub); !s.ok()) throw CommandError(s);
    fmt::print("wrote {} and {}\n", *secret, *pub);
  });
}

absl::StatusOr<v1::SignedMetadata> ReadSignedMetadata(const std::string& path) {
  auto bytes = base::ReadFileBytes(path, 2 * models::kMaxMetadataBytes);
  if (!bytes.ok()) return bytes.status();
  v1::SignedMetadata m;
  if (!m.ParseFromString(*bytes)) return absl::InvalidArgumentError(absl::StrCat(path, " is not signed metadata"));
  return m;
}

void AddRootCommands(CLI::App* app) {
  auto* root = app->add_subcommand("root", "root metadata of model distribution (offline, by the operator)");
  root->require_subcommand(1);
  auto* create = root->add_subcommand(
      "new", "sign the next root: 1.root for a new federation, or a rotation of root or publishing keys");
  struct NewFlags {
    std::string roots, federation;
    std::vector<std::string> root_keys, root_public_keys, publishing_keys, old_root_keys;
    uint32_t threshold = 1;
    double expires_days = 365;
  };
  auto f = std::make_shared<NewFlags>();
  create->add_option("--roots", f->roots, "directory of 1.root, 2.root, ... (the aggregator's roots_dir)")->required();
  create->add_option("--federation", f->federation, "the task and population (required for 1.root)");
  create->add_option("--root-key", f->root_keys, "secret file of each root key of the new root (each signs it)")
      ->required();
  create->add_option("--root-public-key", f->root_public_keys,
                     "public file of a root key of the new root that does not sign (held elsewhere)");
  create->add_option("--threshold", f->threshold, "root signatures a later root needs")->check(CLI::PositiveNumber);
  create->add_option("--publishing-key", f->publishing_keys, "public key file of each publishing key")->required();
  create->add_option("--sign-with", f->old_root_keys,
                     "secret file of a retiring root key of the current root (rotations need a threshold of them)");
  create->add_option("--expires-days", f->expires_days, "lifetime")->check(CLI::Range(0.01, 3650.0));
  create->callback([f] {
    std::optional<models::TrustedRoot> current;
    auto chain = models::ReadRootChain(f->roots);
    if (chain.ok()) {
      auto pinned = models::TrustedRoot::Pin(chain->back());
      if (!pinned.ok()) throw CommandError(pinned.status());
      current.emplace(std::move(*pinned));
    } else if (chain.status().code() != absl::StatusCode::kNotFound) {
      throw CommandError(chain.status());
    }
    v1::RootMetadata next;
    next.set_version(current ? current->root().version() + 1 : 1);
    if (current && !f->federation.empty() && f->federation != current->root().federation()) {
      throw CommandError(absl::InvalidArgumentError(absl::StrCat(
          "--federation ", f->federation, " differs from the current root's ", current->root().federation())));
    }
    next.set_federation(current ? current->root().federation() : f->federation);
    if (next.federation().empty()) throw CommandError(absl::InvalidArgumentError("1.root needs --federation"));
    next.set_expires_unix_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(24 * f->expires_days)));
    std::vector<models::SigningKey> signers;
    for (const auto& file : f->root_keys) {
      auto key = models::ReadSigningKey(file);
      if (!key.ok()) throw CommandError(key.status());
      next.mutable_root()->add_public_keys(models::KeyBytes(key->public_key()));
      signers.push_back(std::move(*key));
    }
    for (const auto& file : f->root_public_keys) {
      auto key = models::ReadPublicKey(file);
      if (!key.ok()) throw CommandError(key.status());
      next.mutable_root()->add_public_keys(models::KeyBytes(*key));
    }
    next.mutable_root()->set_threshold(f->threshold);
    for (const auto& file : f->publishing_keys) {
      auto key = models::ReadPublicKey(file);
      if (!key.ok()) throw CommandError(key.status());
      next.mutable_publishing()->add_public_keys(models::KeyBytes(*key));
    }
    next.mutable_publishing()->set_threshold(1);
    for (const auto& file : f->old_root_keys) {
      auto key = models::ReadSigningKey(file);
      if (!key.ok()) throw CommandError(key.status());
      signers.push_back(std::move(*key));
    }
    std::vector<const models::SigningKey*> keys;
    for (const auto& k : signers) keys.push_back(&k);
    const v1::SignedMetadata signed_root = models::SignRoot(next, keys);
    // Refuse to write a root that gateways would refuse.
    absl::Status accepted = current ? current->Advance(signed_root) : models::TrustedRoot::Pin(signed_root).status();
    if (!accepted.ok()) throw CommandError(accepted);
    if (auto s = models::WriteRoot(f->roots, signed_root); !s.ok()) throw CommandError(s);
    fmt::print("wrote {}/{}.root: federation {}, {} root key(s) threshold {}, {} publishing key(s), expires {}\n",
               f->roots, next.version(), next.federation(), next.root().public_keys_size(), next.root().threshold(),
               next.publishing().public_keys_size(),
               absl::FormatTime("%Y-%m-%d", absl::FromUnixSeconds(next.expires_unix_seconds()), absl::UTCTimeZone()));
  });
}

void AddModelVerify(CLI::App* model) {
  auto* verify = model->add_subcommand("verify", "check a published model as a gateway would");
  struct VerifyFlags {
    std::string model, root, roots, out;
  };
  auto vf = std::make_shared<VerifyFlags>();
  verify->add_option("--model", vf->model, "signed bundle (state_dir/models/model-vN.signed)")->required();
  verify->add_option("--root", vf->root, "the pinned root metadata file")->required();
  verify->add_option("--roots", vf->roots, "directory of later roots to advance through");
  verify->add_option("--out", vf->out, "write the verified bundle file here (for model eval)");
  verify->callback([vf] {
    auto pinned = ReadSignedMetadata(vf->root);
    if (!pinned.ok()) throw CommandError(pinned.status());
    auto trusted = models::TrustedRoot::Pin(*pinned);
    if (!trusted.ok()) throw CommandError(trusted.status());
    if (!vf->roots.empty()) {
      auto chain = models::ReadRootChain(vf->roots);
      if (!chain.ok()) throw CommandError(chain.status());
      for (const auto& next : *chain) {
        auto parsed = models::ParseRoot(next);
        if (parsed->version() <= trusted->root().version()) continue;
        if (auto s = trusted->Advance(next); !s.ok()) throw CommandError(s);
      }
    }
    auto bytes = base::ReadFileBytes(vf->model, models::kMaxBundleFileBytes + 2 * models::kMaxMetadataBytes);
    if (!bytes.ok()) throw CommandError(bytes.status());
    v1::SignedBundle signed_bundle;
    if (!signed_bundle.ParseFromString(*bytes)) {
      throw CommandError(absl::InvalidArgumentError(absl::StrCat(vf->model, " is not a signed bundle")));
    }
    auto verified = trusted->VerifyModel(signed_bundle, nullptr, absl::Now());
    if (!verified.ok()) {
      throw CommandError(
          absl::Status(verified.status().code(), absl::StrCat(vf->model, ": ", verified.status().message())));
    }
    if (!vf->out.empty()) {
      if (auto s = base::WriteFileAtomically(vf->out, signed_bundle.bundle()); !s.ok()) throw CommandError(s);
    }
    fmt::print("{}: verified model v{} (release {}) of {} under root v{}\n", vf->model,
               verified->release.model_version(), verified->release.version(), verified->release.federation(),
               trusted->root().version());
  });
}

}  // namespace

void AddModelCommands(CLI::App* app) {
  auto* model = app->add_subcommand("model", "quantize, evaluate and inspect model bundles");
  model->require_subcommand(1);
  AddModelImport(model);
  AddModelQuantize(model);
  AddModelEval(model);
  AddModelInspect(model);
  AddModelVerify(model);
  AddKeysGenerate(app);
  AddRootCommands(app);
}

}  // namespace tinyfed::tools
