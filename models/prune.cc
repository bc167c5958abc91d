#include "tinyfed/models/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "models/internal/channel_surgery.h"
#include "models/internal/float_network.h"
#include "models/internal/graph.h"

namespace tinyfed::models {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

// Taylor scores of each prunable op's output channels, class-balanced.
class ChannelScorer {
 public:
  ChannelScorer(internal::FloatNetwork* net, const v1::Graph& graph, std::vector<int> ops)
      : net_(net), graph_(graph), ops_(std::move(ops)) {
    for (int op : ops_) scores_.emplace_back(Channels(op), 0.0);
  }

  // Adds one class's mean score per channel, from its samples `rows`.
  void AddClass(const Dataset& data, const std::vector<size_t>& rows) {
    const size_t d = data.feature_size();
    std::vector<float> x(rows.size() * d);
    std::vector<int> y(rows.size());
    for (size_t k = 0; k < rows.size(); ++k) {
      const auto s = data.sample(rows[k]);
      std::copy(s.begin(), s.end(), x.begin() + static_cast<std::ptrdiff_t>(k * d));
      y[k] = data.labels[rows[k]];
    }
    const auto batch = static_cast<int>(rows.size());
    net_->Forward(x, batch);
    net_->Backward(y);
    for (size_t i = 0; i < ops_.size(); ++i) {
      const int t = static_cast<int>(graph_.ops(ops_[i]).output());
      const auto a = net_->activations(t);
      const auto g = net_->gradients(t);
      const size_t channels = scores_[i].size();
      const size_t per_sample = a.size() / rows.size();
      for (size_t b = 0; b < rows.size(); ++b) {
        std::vector<double> sum(channels, 0.0);
        for (size_t j = 0; j < per_sample; ++j) {
          const size_t k = b * per_sample + j;
          // The loss is a batch mean: each sample's own gradient is B times this.
          sum[j % channels] += static_cast<double>(a[k]) * g[k] * batch;
        }
        for (size_t c = 0; c < channels; ++c) scores_[i][c] += sum[c] * sum[c] / static_cast<double>(rows.size());
      }
    }
  }

  // The channels op i keeps: all but the `fraction` lowest-scoring.
  std::vector<int> Kept(size_t i, double fraction) const {
    const auto channels = static_cast<int>(scores_[i].size());
    const int removed = std::min(channels - 1, static_cast<int>(std::lround(fraction * channels)));
    std::vector<int> order(static_cast<size_t>(channels));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int p, int q) {
      return scores_[i][static_cast<size_t>(p)] > scores_[i][static_cast<size_t>(q)];
    });
    order.resize(static_cast<size_t>(channels - removed));
    std::sort(order.begin(), order.end());
    return order;
  }

 private:
  size_t Channels(int op) const { return graph_.tensors(static_cast<int>(graph_.ops(op).output())).shape().channels(); }

  internal::FloatNetwork* net_;
  const v1::Graph& graph_;
  std::vector<int> ops_;
  std::vector<std::vector<double>> scores_;
};

}  // namespace

absl::StatusOr<PruneReport> PruneChannels(v1::ModelBundle* bundle, const Dataset& validation, const Dataset& train,
                                          const PruneOptions& options) {
  if (!(options.channel_fraction > 0.0 && options.channel_fraction < 1.0) || options.samples_per_class < 1) {
    return InvalidArgumentError(StrCat("pruning options out of range: channel fraction ", options.channel_fraction,
                                       " (in (0, 1)), samples per class ", options.samples_per_class));
  }
  auto net = internal::FloatNetwork::Create(*bundle);
  if (!net.ok()) return net.status();
  if (auto s = internal::CheckDataFits(*net, validation); !s.ok()) return s;
  if (auto s = internal::CheckDataFits(*net, train); !s.ok()) return s;
  auto before = internal::AnalyzeBundle(*bundle);
  if (!before.ok()) return before.status();

  const v1::Graph& graph = bundle->backbone();
  std::vector<int> ops;
  for (int i = 0; i < graph.ops_size(); ++i) {
    if (internal::CanRemoveChannels(graph, i)) ops.push_back(i);
  }
  if (ops.empty()) {
    return InvalidArgumentError(
        "no layer can lose channels: each convolution or dense layer feeds the embedding or an Add");
  }
  ChannelScorer scorer(&*net, graph, ops);
  for (int c = 0; c < validation.num_classes(); ++c) {
    std::vector<size_t> rows;
    for (size_t i = 0; i < validation.size() && rows.size() < static_cast<size_t>(options.samples_per_class); ++i) {
      if (validation.labels[i] == c) rows.push_back(i);
    }
    if (!rows.empty()) scorer.AddClass(validation, rows);
  }

  v1::ModelBundle pruned = *bundle;
  PruneReport report;
  for (size_t i = 0; i < ops.size(); ++i) {
    const std::vector<int> keep = scorer.Kept(i, options.channel_fraction);
    const v1::Op& op = graph.ops(ops[i]);
    report.layers.push_back(
        {.op = ops[i],
         .kind = op.has_conv2d() ? "conv2d" : "fully_connected",
         .channels_before = static_cast<int>(graph.tensors(static_cast<int>(op.output())).shape().channels()),
         .channels_after = static_cast<int>(keep.size())});
    if (auto s = internal::RemoveChannels(pruned.mutable_backbone(), ops[i], keep); !s.ok()) return s;
  }
  auto after = internal::AnalyzeBundle(pruned);
  if (!after.ok()) return after.status();
  if (auto s = Train(&pruned, train, options.fine_tune); !s.ok()) return s;
  report.macs_before = before->total_macs;
  report.macs_after = after->total_macs;
  report.weight_bytes_before = before->total_weight_bytes;
  report.weight_bytes_after = after->total_weight_bytes;
  *bundle = std::move(pruned);
  return report;
}

}  // namespace tinyfed::models
