#include "tinyfed/models/quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "models/internal/float_network.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/quantization.h"

namespace tinyfed::models {
namespace {

using internal::FloatNetwork;
using internal::Range;

constexpr size_t kMaxKeptValuesPerTensor = size_t{1} << 21;

absl::Status CheckOptions(const v1::ModelBundle& bundle, const QuantizeOptions& options) {
  if (bundle.precision() != v1::PRECISION_FLOAT32) {
    return absl::InvalidArgumentError("quantization needs a float32 bundle (from tinyfed backbone train)");
  }
  if (!(options.percentile > 50.0 && options.percentile <= 100.0)) {
    return absl::InvalidArgumentError(absl::StrCat("percentile ", options.percentile, " outside (50, 100]"));
  }
  if (options.calibration_samples == 0) {
    return absl::InvalidArgumentError("calibration needs at least one sample");
  }
  return absl::OkStatus();
}

// Activation ranges of every tensor over a random sample of `data`.
absl::StatusOr<std::vector<Range>> Calibrate(FloatNetwork& net, const Dataset& data, const QuantizeOptions& options) {
  if (auto s = internal::CheckDataFits(net, data); !s.ok()) return s;
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(options.seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::min(order.size(), options.calibration_samples));
  const Dataset sample = data.Subset(order);

  const auto tensors = static_cast<size_t>(net.num_tensors());
  std::vector<Range> ranges(tensors, {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()});
  std::vector<std::vector<float>> kept(tensors);
  const bool percentile = options.calibration == Calibration::kPercentile;
  constexpr size_t kBatch = 256;
  for (size_t first = 0; first < sample.size(); first += kBatch) {
    const size_t n = std::min(kBatch, sample.size() - first);
    net.Forward(std::span(sample.features).subspan(first * sample.feature_size(), n * sample.feature_size()),
                static_cast<int>(n));
    for (size_t t = 0; t < tensors; ++t) {
      const auto a = net.activations(static_cast<int>(t));
      if (a.empty()) continue;
      const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
      ranges[t].min = std::min(ranges[t].min, *lo);
      ranges[t].max = std::max(ranges[t].max, *hi);
      if (percentile) {
        // Keep an evenly strided subset so memory stays bounded.
        const size_t budget = kMaxKeptValuesPerTensor / ((sample.size() + kBatch - 1) / kBatch);
        const size_t stride = std::max<size_t>(1, a.size() / std::max<size_t>(budget, 1));
        for (size_t k = 0; k < a.size(); k += stride) kept[t].push_back(a[k]);
      }
    }
  }
  if (percentile) {
    for (size_t t = 0; t < tensors; ++t) {
      auto& v = kept[t];
      if (v.empty()) continue;
      const double tail = (100.0 - options.percentile) / 100.0;
      const auto lo_idx = static_cast<size_t>(tail * static_cast<double>(v.size() - 1));
      const auto hi_idx = static_cast<size_t>((1.0 - tail) * static_cast<double>(v.size() - 1));
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo_idx), v.end());
      ranges[t].min = v[lo_idx];
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(hi_idx), v.end());
      ranges[t].max = v[hi_idx];
    }
  }
  for (auto& r : ranges) {
    if (!std::isfinite(r.min) || !std::isfinite(r.max)) r = {0.0f, 0.0f};
  }
  return ranges;
}

// The float bundle at the tensors' quantization `q`: weights per channel, at
// the scales `given` holds for an op (on [-128, 127]), else symmetric at
// their own largest magnitude / 127.
absl::StatusOr<v1::ModelBundle> Int8Bundle(const v1::ModelBundle& float_bundle,
                                           const std::vector<AffineQuantization>& q,
                                           const std::map<int, std::vector<float>>& given,
                                           v1::QuantizationMethod method, size_t samples) {
  v1::ModelBundle out = float_bundle;
  out.set_precision(v1::PRECISION_INT8);
  v1::Graph* g = out.mutable_backbone();
  if (q.size() != static_cast<size_t>(g->tensors_size())) {
    return absl::InvalidArgumentError(
        absl::StrCat(q.size(), " tensor quantizations for a backbone of ", g->tensors_size(), " tensors"));
  }
  for (size_t t = 0; t < q.size(); ++t) {
    if (!(q[t].scale > 0.0f) || !std::isfinite(q[t].scale) || q[t].zero_point < -128 || q[t].zero_point > 127) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", t, " has scale ", q[t].scale, " and zero point ",
                                                     q[t].zero_point, " (a positive scale, an int8 zero point)"));
    }
    g->mutable_tensors(static_cast<int>(t))->set_scale(q[t].scale);
    g->mutable_tensors(static_cast<int>(t))->set_zero_point(q[t].zero_point);
  }
  for (int i = 0; i < g->ops_size(); ++i) {
    v1::Op* op = g->mutable_ops(i);
    v1::Weights* w = nullptr;
    if (op->has_conv2d()) w = op->mutable_conv2d()->mutable_weights();
    if (op->has_depthwise_conv2d()) w = op->mutable_depthwise_conv2d()->mutable_weights();
    if (op->has_fully_connected()) w = op->mutable_fully_connected()->mutable_weights();
    if (w == nullptr) continue;
    const int channels = w->float_bias_size();
    const size_t count = static_cast<size_t>(w->float_values_size());
    const size_t per = count / static_cast<size_t>(channels);
    // Quantize channel-major; depthwise weights are HWC, so transpose there.
    const bool depthwise = op->has_depthwise_conv2d();
    std::vector<float> rows(count);
    for (size_t k = 0; k < count; ++k) {
      const size_t dst = depthwise ? (k % static_cast<size_t>(channels)) * per + k / static_cast<size_t>(channels) : k;
      rows[dst] = w->float_values(static_cast<int>(k));
    }
    std::vector<int8_t> values(count);
    std::vector<float> scales(static_cast<size_t>(channels));
    if (const auto it = given.find(i); it != given.end()) {
      if (it->second.size() != scales.size() ||
          std::any_of(it->second.begin(), it->second.end(), [](float s) { return !(s > 0.0f) || !std::isfinite(s); })) {
        return absl::InvalidArgumentError(absl::StrCat("op ", i, " has ", it->second.size(), " weight scales for ",
                                                       channels, " channels (positive ones)"));
      }
      scales = it->second;
      // The file's grid is the whole int8 range: PyTorch's weights may be
      // -128, which the kernels take like any other value.
      for (size_t k = 0; k < count; ++k) {
        const float s = scales[k / per];
        values[k] = static_cast<int8_t>(std::clamp(RoundHalfAwayFromZero(rows[k] / s), -128, 127));
      }
    } else {
      QuantizeSymmetricPerChannel(rows, channels, values, scales);
    }
    std::string bytes(count, '\0');
    for (size_t k = 0; k < count; ++k) {
      const size_t src = depthwise ? (k % static_cast<size_t>(channels)) * per + k / static_cast<size_t>(channels) : k;
      bytes[k] = static_cast<char>(values[src]);
    }
    const float in_scale = q[op->inputs(0)].scale;
    for (int c = 0; c < channels; ++c) {
      const double bias = w->float_bias(c) / (static_cast<double>(in_scale) * scales[static_cast<size_t>(c)]);
      w->add_channel_scales(scales[static_cast<size_t>(c)]);
      w->add_int32_bias(static_cast<int32_t>(std::clamp(std::round(bias), -2147483647.0, 2147483647.0)));
    }
    w->set_int8_values(std::move(bytes));
    w->clear_float_values();
    w->clear_float_bias();
  }
  out.mutable_metadata()->set_quantization(method);
  out.mutable_metadata()->set_calibration_samples(samples);
  if (auto s = ValidateBundle(out); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("quantized bundle is invalid: ", s.message()));
  }
  return out;
}

absl::StatusOr<v1::ModelBundle> ConvertToInt8(const v1::ModelBundle& float_bundle, const FloatNetwork& net,
                                              const std::vector<Range>& ranges, v1::QuantizationMethod method,
                                              size_t samples) {
  std::vector<AffineQuantization> q(ranges.size());
  for (size_t t = 0; t < ranges.size(); ++t) {
    const auto src = static_cast<size_t>(net.quantization_source()[t]);
    q[t] = ChooseAffineQuantization(ranges[src].min, ranges[src].max);
  }
  return Int8Bundle(float_bundle, q, {}, method, samples);
}

// The float network of `bundle` and its activation ranges on `data`.
struct Calibrated {
  FloatNetwork net;
  std::vector<Range> ranges;
};
absl::StatusOr<Calibrated> CalibratedNetwork(const v1::ModelBundle& bundle, const Dataset& data,
                                             const QuantizeOptions& options) {
  if (auto s = CheckOptions(bundle, options); !s.ok()) return s;
  auto net = FloatNetwork::Create(bundle);
  if (!net.ok()) return net.status();
  auto ranges = Calibrate(*net, data, options);
  if (!ranges.ok()) return ranges.status();
  return Calibrated{std::move(*net), std::move(*ranges)};
}

}  // namespace

absl::StatusOr<v1::ModelBundle> QuantizePostTraining(const v1::ModelBundle& float_bundle, const Dataset& calibration,
                                                     const QuantizeOptions& options) {
  auto c = CalibratedNetwork(float_bundle, calibration, options);
  if (!c.ok()) return c.status();
  return ConvertToInt8(
      float_bundle, c->net, c->ranges,
      options.calibration == Calibration::kPercentile ? v1::QUANTIZATION_PTQ_PERCENTILE : v1::QUANTIZATION_PTQ_MINMAX,
      std::min(options.calibration_samples, calibration.size()));
}

absl::StatusOr<v1::ModelBundle> QuantizeAwareTraining(const v1::ModelBundle& float_bundle, const Dataset& train,
                                                      const QuantizeOptions& options, const TrainOptions& fine_tune) {
  auto c = CalibratedNetwork(float_bundle, train, options);
  if (!c.ok()) return c.status();
  c->net.EnableFakeQuantization(c->ranges);
  if (auto s = internal::TrainNetwork(&c->net, train, fine_tune); !s.ok()) return s;
  v1::ModelBundle tuned = float_bundle;
  c->net.WriteTo(&tuned);
  return ConvertToInt8(tuned, c->net, c->net.ranges(), v1::QUANTIZATION_QAT, train.size());
}

absl::StatusOr<v1::ModelBundle> QuantizeAsGiven(const v1::ModelBundle& float_bundle, const GivenQuantization& given) {
  if (float_bundle.precision() != v1::PRECISION_FLOAT32) {
    return absl::InvalidArgumentError("quantize a float32 bundle");
  }
  return Int8Bundle(float_bundle, given.tensors, given.weight_scales, v1::QUANTIZATION_IMPORTED, 0);
}

}  // namespace tinyfed::models
