#include "sim/internal/federation_data.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "tinyfed/model_import/onnx_import.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/sim/partition.h"

namespace tinyfed::sim::internal {

using absl::StrCat;

absl::StatusOr<Splits> LoadData(const Scenario& s) {
  absl::StatusOr<models::Dataset> all =
      s.data.labels.empty() ? models::ReadCsv(s.data.path, s.data.csv) : models::ReadIdx(s.data.path, s.data.labels);
  if (!all.ok()) return absl::Status(all.status().code(), StrCat("data.path: ", all.status().message()));
  for (const std::string& w : all->warnings) spdlog::warn("data.path: {}", w);
  if (s.data.max_samples > 0 && s.data.max_samples < all->size()) {
    const double keep = static_cast<double>(s.data.max_samples) / static_cast<double>(all->size());
    *all = models::StratifiedSplit(*all, keep, s.seed).holdout;
  }
  Splits out;
  models::Split first = models::StratifiedSplit(*all, s.data.test_fraction, s.seed);
  out.test = std::move(first.holdout);
  if (s.data.validation_fraction > 0) {
    models::Split rest = models::StratifiedSplit(first.train, s.data.validation_fraction, s.seed + 2);
    out.validation = std::move(rest.holdout);
    first.train = std::move(rest.train);
  }
  if (s.backbone.bundle.empty()) {
    models::Split second = models::StratifiedSplit(first.train, s.data.public_fraction, s.seed + 1);
    out.public_data = std::move(second.holdout);
    out.pool = std::move(second.train);
  } else {
    out.pool = std::move(first.train);
  }
  return out;
}

absl::StatusOr<v1::ModelBundle> BackboneShape(const Scenario& s, const models::Dataset& public_data) {
  if (!s.backbone.bundle.empty()) return models::ReadBundleFile(s.backbone.bundle);
  if (!s.backbone.onnx.empty()) {
    const models::Normalization norm = models::ComputeNormalization(public_data);
    auto imported = model_import::ImportOnnx(s.backbone.onnx, {.embedding = s.backbone.onnx_embedding,
                                                               .labels = public_data.label_names,
                                                               .mean = norm.mean,
                                                               .stddev = norm.stddev,
                                                               .name = ""});
    if (!imported.ok())
      return absl::Status(imported.status().code(), StrCat("backbone.onnx: ", imported.status().message()));
    return imported;
  }
  auto arch = models::ParseArchitecture(s.backbone.arch);
  if (!arch.ok()) return arch.status();
  models::ArchitectureOptions options;
  options.mlp_hidden = s.backbone.hidden;
  return models::BuildBackbone(*arch, public_data, s.seed, options);
}

absl::StatusOr<v1::ModelBundle> MakeBackbone(const Scenario& s, const models::Dataset& public_data,
                                             std::string* description) {
  if (!s.backbone.bundle.empty()) {
    *description = StrCat("given: ", s.backbone.bundle.string());
    return models::ReadBundleFile(s.backbone.bundle);
  }
  auto bundle = BackboneShape(s, public_data);
  if (!bundle.ok()) return bundle.status();
  if (!s.backbone.onnx.empty() && s.backbone.epochs == 0) {
    *description = StrCat("imported from ", s.backbone.onnx.filename().string(), " (ONNX), int8 (PTQ on ",
                          public_data.size(), " public samples)");
    return models::QuantizePostTraining(*bundle, public_data, {});
  }
  models::TrainOptions train;
  train.epochs = s.backbone.epochs;
  train.batch_size = s.backbone.batch_size;
  train.learning_rate = static_cast<float>(s.backbone.learning_rate);
  train.seed = s.seed;
  if (auto st = models::Train(&*bundle, public_data, train); !st.ok()) return st;
  *description = s.backbone.onnx.empty()
                     ? StrCat(s.backbone.arch, " pretrained on ", public_data.size(), " public samples for ",
                              s.backbone.epochs, " epochs, int8 (PTQ)")
                     : StrCat("imported from ", s.backbone.onnx.filename().string(), " (ONNX), fine-tuned on ",
                              public_data.size(), " public samples for ", s.backbone.epochs, " epochs, int8 (PTQ)");
  return models::QuantizePostTraining(*bundle, public_data, {});
}

namespace {

// Per-clinic brightness/contrast (images) or sensor gain and noise (tabular):
// `scale` and `offset` are the clinic's, the noise is drawn per value.
void ShiftFeatures(models::Dataset& d, FeatureShift shift, double strength, double scale, double offset,
                   std::mt19937_64& rng, const models::Normalization& stats) {
  if (shift == FeatureShift::kNone || strength <= 0.0 || d.size() == 0) return;
  std::normal_distribution<double> noise(0.0, 1.0);
  const size_t channels = stats.mean.size(), width = d.feature_size();
  for (size_t i = 0; i < d.features.size(); ++i) {
    const size_t c = channels == 1 ? 0 : (i % width) % channels;
    const double mean = stats.mean[c], stddev = stats.stddev[c];
    double x = d.features[i];
    if (shift == FeatureShift::kBrightness) {
      x = mean + scale * (x - mean) + offset * stddev;
    } else {
      x = scale * x + strength * stddev * noise(rng);
    }
    d.features[i] = static_cast<float>(x);
  }
}

}  // namespace

absl::StatusOr<std::vector<Clinic>> MakeClinics(const Scenario& s, const models::Dataset& pool) {
  absl::StatusOr<Partition> parts;
  const int n = s.clinics.count;
  if (s.partition.kind == PartitionKind::kDirichlet) {
    parts = DirichletLabelPartition(pool.labels, n, s.partition.alpha, s.seed, s.partition.min_samples);
  } else if (s.partition.quantity_skew > 0.0) {
    // Log-normal clinic sizes over a shuffled pool.
    std::mt19937_64 rng(s.seed);
    std::lognormal_distribution<double> size(0.0, s.partition.quantity_skew);
    std::vector<double> w(static_cast<size_t>(n));
    for (double& v : w) v = size(rng);
    const double total = std::accumulate(w.begin(), w.end(), 0.0);
    std::vector<size_t> order(pool.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), rng);
    const size_t min = s.partition.min_samples;
    if (pool.size() < min * static_cast<size_t>(n)) {
      return absl::InvalidArgumentError(StrCat(pool.size(), " samples cannot give ", n, " clinics ", min, " each"));
    }
    const size_t spare = pool.size() - min * static_cast<size_t>(n);
    Partition p(static_cast<size_t>(n));
    size_t at = 0;
    for (size_t c = 0; c < p.size(); ++c) {
      const size_t take =
          c + 1 == p.size() ? pool.size() - at : min + static_cast<size_t>(std::floor(spare * w[c] / total));
      p[c].assign(order.begin() + static_cast<std::ptrdiff_t>(at),
                  order.begin() + static_cast<std::ptrdiff_t>(at + take));
      at += take;
    }
    parts = std::move(p);
  } else {
    parts = IidPartition(pool.size(), n, s.seed);
  }
  if (!parts.ok()) return absl::InvalidArgumentError(StrCat("partition: ", parts.status().message()));
  const models::Normalization stats = models::ComputeNormalization(pool);
  std::vector<Clinic> clinics(static_cast<size_t>(n));
  for (int c = 0; c < n; ++c) {
    Clinic& clinic = clinics[static_cast<size_t>(c)];
    clinic.id = absl::StrFormat("clinic-%04d", c);
    std::vector<size_t> idx = (*parts)[static_cast<size_t>(c)];
    std::mt19937_64 rng(s.seed * 7919 + static_cast<uint64_t>(c));
    std::shuffle(idx.begin(), idx.end(), rng);
    const size_t held = std::max<size_t>(1, static_cast<size_t>(std::round(idx.size() * s.partition.holdout_fraction)));
    if (idx.size() <= held)
      return absl::InvalidArgumentError(StrCat(clinic.id, " has too few samples (", idx.size(), ")"));
    std::vector<size_t> hold(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(held));
    std::vector<size_t> train(idx.begin() + static_cast<std::ptrdiff_t>(held), idx.end());
    clinic.train = pool.Subset(train);
    clinic.holdout = pool.Subset(hold);
    // One clinic, one sensor: the same scale and offset on both of its
    // slices, fresh noise on every value.
    std::mt19937_64 shift_rng(s.seed * 104729 + static_cast<uint64_t>(c));
    std::uniform_real_distribution<double> spread(-s.partition.shift_strength, s.partition.shift_strength);
    const double scale = 1.0 + spread(shift_rng), offset = spread(shift_rng);
    for (models::Dataset* slice : {&clinic.train, &clinic.holdout}) {
      ShiftFeatures(*slice, s.partition.shift, s.partition.shift_strength, scale, offset, shift_rng, stats);
    }
    if (c < s.faults.shifted_clinics) {
      clinic.shifted_holdout = clinic.holdout;
      ShiftFeatures(clinic.shifted_holdout, FeatureShift::kBrightness, 1.0, s.faults.shift_scale, s.faults.shift_offset,
                    shift_rng, stats);
    }
  }
  return clinics;
}

std::vector<float> Embed(models::Interpreter& interpreter, const models::Dataset& d) {
  std::vector<float> out;
  out.reserve(d.size() * interpreter.embedding_size());
  for (size_t i = 0; i < d.size(); ++i) {
    interpreter.SetInput(d.sample(i));
    interpreter.Invoke();
    const auto e = interpreter.embedding();
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

}  // namespace tinyfed::sim::internal
