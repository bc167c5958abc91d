#include "tinyfed/models/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "models/internal/float_network.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::models {
namespace {

class GraphBuilder {
 public:
  GraphBuilder(v1::ModelBundle* bundle, std::mt19937_64* rng) : bundle_(bundle), rng_(rng) {}

  int Input(int h, int w, int c) {
    const int t = Tensor(h, w, c);
    bundle_->mutable_backbone()->set_input(static_cast<uint32_t>(t));
    return t;
  }
  int Conv(int in, int out_c, int kh, int kw, int stride, v1::Padding pad, v1::Activation act) {
    const v1::Shape s = Shape(in);
    const int oh = Out(static_cast<int>(s.height()), kh, stride, pad);
    const int ow = Out(static_cast<int>(s.width()), kw, stride, pad);
    v1::Op* op = Op(in, Tensor(oh, ow, out_c), act);
    auto* p = op->mutable_conv2d();
    p->set_out_channels(static_cast<uint32_t>(out_c));
    SetWindow(p, kh, kw, stride, pad);
    Init(p->mutable_weights(), {out_c, kh, kw, static_cast<int>(s.channels())}, out_c,
         kh * kw * static_cast<int>(s.channels()));
    return static_cast<int>(op->output());
  }
  int Depthwise(int in, int k, v1::Activation act) {
    const v1::Shape s = Shape(in);
    const int c = static_cast<int>(s.channels());
    v1::Op* op = Op(in, Tensor(static_cast<int>(s.height()), static_cast<int>(s.width()), c), act);
    auto* p = op->mutable_depthwise_conv2d();
    SetWindow(p, k, k, 1, v1::PADDING_SAME);
    Init(p->mutable_weights(), {k, k, c}, c, k * k);
    return static_cast<int>(op->output());
  }
  int Dense(int in, int out, v1::Activation act) {
    const auto depth = static_cast<int>(internal::Elements(Shape(in)));
    v1::Op* op = Op(in, Tensor(1, 1, out), act);
    op->mutable_fully_connected()->set_out_features(static_cast<uint32_t>(out));
    Init(op->mutable_fully_connected()->mutable_weights(), {out, depth}, out, depth);
    return static_cast<int>(op->output());
  }
  int MaxPool(int in, int k) {
    const v1::Shape s = Shape(in);
    v1::Op* op = Op(in,
                    Tensor(Out(static_cast<int>(s.height()), k, k, v1::PADDING_VALID),
                           Out(static_cast<int>(s.width()), k, k, v1::PADDING_VALID), static_cast<int>(s.channels())),
                    v1::ACTIVATION_NONE);
    SetWindow(op->mutable_max_pool(), k, k, k, v1::PADDING_VALID);
    return static_cast<int>(op->output());
  }
  int GlobalAveragePool(int in) {
    v1::Op* op = Op(in, Tensor(1, 1, static_cast<int>(Shape(in).channels())), v1::ACTIVATION_NONE);
    op->mutable_global_average_pool();
    return static_cast<int>(op->output());
  }
  void Output(int t, int num_classes) {
    bundle_->mutable_backbone()->set_output(static_cast<uint32_t>(t));
    const auto dim = static_cast<int>(internal::Elements(Shape(t)));
    auto* head = bundle_->mutable_head();
    head->set_in_features(static_cast<uint32_t>(dim));
    head->set_num_classes(static_cast<uint32_t>(num_classes));
    const float limit = std::sqrt(6.0f / static_cast<float>(dim + num_classes));
    std::uniform_real_distribution<float> u(-limit, limit);
    for (int i = 0; i < dim * num_classes; ++i) head->add_weights(u(*rng_));
    for (int c = 0; c < num_classes; ++c) head->add_bias(0.0f);
  }

 private:
  static int Out(int in, int k, int stride, v1::Padding pad) {
    return pad == v1::PADDING_SAME ? (in + stride - 1) / stride : (in - k) / stride + 1;
  }
  template <typename P>
  static void SetWindow(P* p, int kh, int kw, int stride, v1::Padding pad) {
    p->set_kernel_height(static_cast<uint32_t>(kh));
    p->set_kernel_width(static_cast<uint32_t>(kw));
    p->set_stride_height(static_cast<uint32_t>(stride));
    p->set_stride_width(static_cast<uint32_t>(stride));
    p->set_padding(pad);
  }
  v1::Shape Shape(int t) const { return bundle_->backbone().tensors(t).shape(); }
  int Tensor(int h, int w, int c) {
    auto* t = bundle_->mutable_backbone()->add_tensors();
    t->mutable_shape()->set_height(static_cast<uint32_t>(std::max(h, 0)));
    t->mutable_shape()->set_width(static_cast<uint32_t>(std::max(w, 0)));
    t->mutable_shape()->set_channels(static_cast<uint32_t>(c));
    return bundle_->backbone().tensors_size() - 1;
  }
  v1::Op* Op(int in, int out, v1::Activation act) {
    v1::Op* op = bundle_->mutable_backbone()->add_ops();
    op->add_inputs(static_cast<uint32_t>(in));
    op->set_output(static_cast<uint32_t>(out));
    op->set_activation(act);
    return op;
  }
  // He initialization for ReLU layers.
  void Init(v1::Weights* w, std::initializer_list<int> dims, int channels, int fan_in) {
    size_t count = 1;
    for (int d : dims) {
      w->add_dims(static_cast<uint32_t>(d));
      count *= static_cast<size_t>(d);
    }
    std::normal_distribution<float> n(0.0f, std::sqrt(2.0f / static_cast<float>(fan_in)));
    for (size_t i = 0; i < count; ++i) w->add_float_values(n(*rng_));
    for (int c = 0; c < channels; ++c) w->add_float_bias(0.0f);
  }

  v1::ModelBundle* bundle_;
  std::mt19937_64* rng_;
};

}  // namespace

absl::StatusOr<Architecture> ParseArchitecture(std::string_view name) {
  if (name == "mlp") return Architecture::kMlp;
  if (name == "cnn") return Architecture::kCnn;
  if (name == "dscnn") return Architecture::kDsCnn;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown architecture '", std::string(name), "' (expected mlp, cnn or dscnn)"));
}

std::string ArchitectureName(Architecture architecture) {
  switch (architecture) {
    case Architecture::kMlp:
      return "mlp";
    case Architecture::kCnn:
      return "cnn";
    case Architecture::kDsCnn:
      return "dscnn";
  }
  return "unknown";
}

absl::StatusOr<v1::ModelBundle> BuildBackbone(Architecture architecture, const Dataset& data, uint64_t seed,
                                              const ArchitectureOptions& options) {
  if (data.num_classes() < 2) {
    return absl::InvalidArgumentError(absl::StrCat("dataset has ", data.num_classes(), " classes; need 2 or more"));
  }
  if (architecture == Architecture::kCnn && (data.height < 4 || data.width < 4)) {
    return absl::InvalidArgumentError(absl::StrCat("the cnn needs images of at least 4x4; ", data.source, " has ",
                                                   data.height, "x", data.width,
                                                   " (give a CSV's rows an image shape, or use the mlp)"));
  }
  if (options.mlp_hidden.empty() ||
      std::any_of(options.mlp_hidden.begin(), options.mlp_hidden.end(), [](int h) { return h < 1 || h > 65535; }) ||
      options.dscnn_channels < 1 || options.dscnn_blocks < 1) {
    return absl::InvalidArgumentError("layer sizes must be positive");
  }
  std::mt19937_64 rng(seed);
  v1::ModelBundle bundle;
  bundle.set_format_version(kBundleFormatVersion);
  bundle.set_precision(v1::PRECISION_FLOAT32);
  GraphBuilder b(&bundle, &rng);
  int t = b.Input(data.height, data.width, data.channels);
  switch (architecture) {
    case Architecture::kMlp:
      for (int h : options.mlp_hidden) t = b.Dense(t, h, v1::ACTIVATION_RELU);
      break;
    case Architecture::kCnn: {
      // NIID-Bench's layers from 16x16 up. Smaller images (8x8 digits) keep
      // their size through SAME-padded convolutions, so that both poolings
      // still leave a map.
      const v1::Padding padding = data.height < 16 || data.width < 16 ? v1::PADDING_SAME : v1::PADDING_VALID;
      t = b.Conv(t, 6, 5, 5, 1, padding, v1::ACTIVATION_RELU);
      t = b.MaxPool(t, 2);
      t = b.Conv(t, 16, 5, 5, 1, padding, v1::ACTIVATION_RELU);
      t = b.MaxPool(t, 2);
      t = b.Dense(t, 120, v1::ACTIVATION_RELU);
      t = b.Dense(t, 84, v1::ACTIVATION_RELU);
      break;
    }
    case Architecture::kDsCnn:
      t = b.Conv(t, options.dscnn_channels, std::min(10, data.height), std::min(4, data.width), 2, v1::PADDING_SAME,
                 v1::ACTIVATION_RELU);
      for (int i = 0; i < options.dscnn_blocks; ++i) {
        t = b.Depthwise(t, 3, v1::ACTIVATION_RELU);
        t = b.Conv(t, options.dscnn_channels, 1, 1, 1, v1::PADDING_SAME, v1::ACTIVATION_RELU);
      }
      t = b.GlobalAveragePool(t);
      break;
  }
  b.Output(t, data.num_classes());
  auto* input = bundle.mutable_input();
  *input->mutable_shape() = bundle.backbone().tensors(static_cast<int>(bundle.backbone().input())).shape();
  const Normalization norm = ComputeNormalization(data);
  input->mutable_mean()->Assign(norm.mean.begin(), norm.mean.end());
  input->mutable_stddev()->Assign(norm.stddev.begin(), norm.stddev.end());
  for (const auto& name : data.label_names) bundle.add_label_names(name);
  auto* meta = bundle.mutable_metadata();
  meta->set_name(ArchitectureName(architecture));
  meta->set_version(1);
  meta->set_architecture(ArchitectureName(architecture));
  meta->set_training_seed(seed);
  auto* summary = meta->mutable_training_data();
  summary->set_source(data.source);
  summary->set_num_samples(data.size());
  for (uint64_t c : data.ClassCounts()) summary->add_class_counts(c);
  if (auto s = ValidateBundle(bundle); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot build a ", ArchitectureName(architecture), " for ",
                                                   data.height, "x", data.width, "x", data.channels,
                                                   " samples: ", s.message()));
  }
  return bundle;
}

namespace internal {

absl::Status CheckDataFits(const FloatNetwork& net, const Dataset& data) {
  if (data.feature_size() != net.input_size()) {
    return absl::InvalidArgumentError(absl::StrCat(data.source, " has samples of ", data.feature_size(),
                                                   " values but the model takes ", net.input_size()));
  }
  if (data.num_classes() != net.num_classes()) {
    return absl::InvalidArgumentError(
        absl::StrCat(data.source, " has ", data.num_classes(), " classes but the model has ", net.num_classes()));
  }
  if (data.size() == 0) return absl::InvalidArgumentError(absl::StrCat(data.source, " is empty"));
  return absl::OkStatus();
}

absl::Status TrainNetwork(FloatNetwork* net, const Dataset& train, const TrainOptions& options,
                          const Objective& objective) {
  if (auto s = CheckDataFits(*net, train); !s.ok()) return s;
  if (options.epochs < 0 || options.batch_size < 1 || !(options.learning_rate > 0.0f) || options.momentum < 0.0f ||
      options.momentum >= 1.0f || options.weight_decay < 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat("training options out of range: epochs ", options.epochs,
                                                   ", batch size ", options.batch_size, ", learning rate ",
                                                   options.learning_rate, ", momentum ", options.momentum,
                                                   ", weight decay ", options.weight_decay));
  }
  std::mt19937_64 rng(options.seed);
  std::vector<size_t> order(train.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t batch = std::min<size_t>(static_cast<size_t>(options.batch_size), train.size());
  const size_t steps_per_epoch = (train.size() + batch - 1) / batch;
  const double total_steps = static_cast<double>(steps_per_epoch) * options.epochs;
  std::vector<float> x(batch * train.feature_size());
  std::vector<int> y(batch);
  std::vector<float> grad_logits(batch * static_cast<size_t>(net->num_classes()));
  size_t step = 0;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    std::shuffle(order.begin(), order.end(), rng);
    double loss_sum = 0.0;
    size_t correct = 0;
    float lr = options.learning_rate;
    for (size_t first = 0; first < order.size(); first += batch) {
      const size_t n = std::min(batch, order.size() - first);
      for (size_t k = 0; k < n; ++k) {
        const auto s = train.sample(order[first + k]);
        std::copy(s.begin(), s.end(), x.begin() + static_cast<std::ptrdiff_t>(k * train.feature_size()));
        y[k] = train.labels[order[first + k]];
      }
      net->Forward(std::span(x).first(n * train.feature_size()), static_cast<int>(n));
      const auto logits = net->logits();
      for (size_t k = 0; k < n; ++k) {
        const auto row =
            logits.subspan(k * static_cast<size_t>(net->num_classes()), static_cast<size_t>(net->num_classes()));
        if (std::max_element(row.begin(), row.end()) - row.begin() == y[k]) ++correct;
      }
      if (objective) {
        const auto rows = std::span<const size_t>(order).subspan(first, n);
        const auto g = std::span(grad_logits).first(n * static_cast<size_t>(net->num_classes()));
        loss_sum += objective(rows, logits, g) * static_cast<double>(n);
        net->BackwardFrom(g);
      } else {
        loss_sum += net->Backward(std::span(y).first(n)) * static_cast<double>(n);
      }
      lr = options.cosine_decay ? static_cast<float>(0.5 * options.learning_rate *
                                                     (1.0 + std::cos(M_PI * static_cast<double>(step) / total_steps)))
                                : options.learning_rate;
      net->Step(lr, options.momentum, options.weight_decay);
      ++step;
    }
    if (!std::isfinite(loss_sum)) {
      return absl::InvalidArgumentError(absl::StrCat("training diverged in epoch ", epoch,
                                                     " (loss is not finite); lower the learning rate ",
                                                     options.learning_rate));
    }
    if (options.on_epoch) {
      EpochReport r;
      r.epoch = epoch;
      r.loss = static_cast<float>(loss_sum / static_cast<double>(train.size()));
      r.train_accuracy = static_cast<float>(correct) / static_cast<float>(train.size());
      r.learning_rate = lr;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      options.on_epoch(r);
    }
  }
  return absl::OkStatus();
}

}  // namespace internal

absl::Status Train(v1::ModelBundle* bundle, const Dataset& train, const TrainOptions& options) {
  auto net = internal::FloatNetwork::Create(*bundle);
  if (!net.ok()) return net.status();
  if (auto s = internal::TrainNetwork(&*net, train, options); !s.ok()) return s;
  net->WriteTo(bundle);
  bundle->mutable_metadata()->set_training_seed(options.seed);
  return absl::OkStatus();
}

}  // namespace tinyfed::models
