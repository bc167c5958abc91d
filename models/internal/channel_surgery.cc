#include "models/internal/channel_surgery.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tinyfed::models::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

// What removing channels does to one op downstream of the pruned layer.
struct Change {
  enum Kind { kReadsAsInputChannels, kReadsAsColumns, kPassesOn } kind;
  int op;
};

std::vector<int> Readers(const v1::Graph& graph, uint32_t tensor) {
  std::vector<int> r;
  for (int i = 0; i < graph.ops_size(); ++i) {
    const auto& in = graph.ops(i).inputs();
    if (std::find(in.begin(), in.end(), tensor) != in.end()) r.push_back(i);
  }
  return r;
}

// The ops that change when tensor `t`'s channels (every `period`-th value)
// shrink, or false if something reading them cannot.
bool Plan(const v1::Graph& graph, uint32_t t, uint32_t period, std::vector<Change>* changes) {
  if (t == graph.output()) return false;  // the embedding: the head reads it
  const uint32_t channels = graph.tensors(static_cast<int>(t)).shape().channels();
  for (int r : Readers(graph, t)) {
    const v1::Op& op = graph.ops(r);
    switch (op.kind_case()) {
      case v1::Op::kConv2D:
        if (channels != period) return false;
        changes->push_back({Change::kReadsAsInputChannels, r});
        break;
      case v1::Op::kFullyConnected:
        changes->push_back({Change::kReadsAsColumns, r});
        break;
      case v1::Op::kDepthwiseConv2D:
      case v1::Op::kMaxPool:
      case v1::Op::kAveragePool:
      case v1::Op::kGlobalAveragePool:
        if (channels != period) return false;
        changes->push_back({Change::kPassesOn, r});
        if (!Plan(graph, op.output(), period, changes)) return false;
        break;
      case v1::Op::kReshape: {
        const v1::Shape& s = graph.tensors(static_cast<int>(op.output())).shape();
        if (s.height() != 1 || s.width() != 1) return false;  // only a flatten keeps channels findable
        changes->push_back({Change::kPassesOn, r});
        if (!Plan(graph, op.output(), period, changes)) return false;
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

// Keeps the entries of a row-major float array of `dims` whose index along
// `axis`, taken modulo `period`, is in `keep`; shrinks dims[axis].
absl::Status Keep(v1::Weights* w, size_t axis, uint32_t period, const std::vector<bool>& keep) {
  if (w->float_values().empty() || !w->int8_values().empty() || axis >= static_cast<size_t>(w->dims_size())) {
    return InvalidArgumentError("channels are removed from float weights only (prune before quantizing)");
  }
  uint64_t inner = 1, outer = 1;
  for (int d = static_cast<int>(axis) + 1; d < w->dims_size(); ++d) inner *= w->dims(d);
  for (int d = 0; d < static_cast<int>(axis); ++d) outer *= w->dims(d);
  const uint32_t n = w->dims(static_cast<int>(axis));
  if (n % period != 0 || outer * n * inner != static_cast<uint64_t>(w->float_values_size())) {
    return InvalidArgumentError("weights whose size does not match their dims");
  }
  std::vector<float> kept;
  uint32_t kept_n = 0;
  for (uint32_t j = 0; j < n; ++j) kept_n += keep[j % period] ? 1 : 0;
  for (uint64_t o = 0; o < outer; ++o) {
    for (uint32_t j = 0; j < n; ++j) {
      if (!keep[j % period]) continue;
      const auto* from = w->float_values().data() + (o * n + j) * inner;
      kept.insert(kept.end(), from, from + inner);
    }
  }
  w->mutable_float_values()->Assign(kept.begin(), kept.end());
  w->set_dims(static_cast<int>(axis), kept_n);
  return absl::OkStatus();
}

absl::Status KeepBias(v1::Weights* w, const std::vector<bool>& keep) {
  if (static_cast<size_t>(w->float_bias_size()) != keep.size()) return InvalidArgumentError("a bias of the wrong size");
  std::vector<float> kept;
  for (size_t c = 0; c < keep.size(); ++c)
    if (keep[c]) kept.push_back(w->float_bias(static_cast<int>(c)));
  w->mutable_float_bias()->Assign(kept.begin(), kept.end());
  return absl::OkStatus();
}

void ScaleChannels(v1::Shape* s, uint32_t period, uint32_t kept) { s->set_channels(s->channels() / period * kept); }

}  // namespace

bool CanRemoveChannels(const v1::Graph& graph, int op) {
  if (op < 0 || op >= graph.ops_size()) return false;
  const v1::Op& o = graph.ops(op);
  if (!o.has_conv2d() && !o.has_fully_connected()) return false;
  std::vector<Change> changes;
  return Plan(graph, o.output(), graph.tensors(static_cast<int>(o.output())).shape().channels(), &changes);
}

absl::Status RemoveChannels(v1::Graph* graph, int op, const std::vector<int>& keep) {
  if (!CanRemoveChannels(*graph, op)) {
    return InvalidArgumentError(StrCat("op ", op,
                                       " cannot lose channels (only a Conv2D or FullyConnected whose "
                                       "channels reach nothing but convolutions, pools, reshapes and dense layers)"));
  }
  v1::Graph g = *graph;
  v1::Op& producer = *g.mutable_ops(op);
  const uint32_t period = g.tensors(static_cast<int>(producer.output())).shape().channels();
  std::vector<bool> kept(period, false);
  for (size_t i = 0; i < keep.size(); ++i) {
    if (keep[i] < 0 || static_cast<uint32_t>(keep[i]) >= period || (i > 0 && keep[i] <= keep[i - 1])) {
      return InvalidArgumentError(StrCat("channels to keep must ascend within 0..", period - 1));
    }
    kept[static_cast<size_t>(keep[i])] = true;
  }
  if (keep.empty()) return InvalidArgumentError("keep at least one channel");
  const auto k = static_cast<uint32_t>(keep.size());
  std::vector<Change> changes;
  Plan(g, producer.output(), period, &changes);  // allowed, as checked above
  v1::Weights* w = producer.has_conv2d() ? producer.mutable_conv2d()->mutable_weights()
                                         : producer.mutable_fully_connected()->mutable_weights();
  if (auto s = Keep(w, 0, period, kept); !s.ok()) return s;
  if (auto s = KeepBias(w, kept); !s.ok()) return s;
  if (producer.has_conv2d()) {
    producer.mutable_conv2d()->set_out_channels(k);
  } else {
    producer.mutable_fully_connected()->set_out_features(k);
  }
  ScaleChannels(g.mutable_tensors(static_cast<int>(producer.output()))->mutable_shape(), period, k);
  for (const Change& c : changes) {
    v1::Op& o = *g.mutable_ops(c.op);
    absl::Status s;
    switch (c.kind) {
      case Change::kReadsAsInputChannels:  // OHWI
        s = Keep(o.mutable_conv2d()->mutable_weights(), 3, period, kept);
        break;
      case Change::kReadsAsColumns:  // out x (H * W * C): column j is channel j % C
        s = Keep(o.mutable_fully_connected()->mutable_weights(), 1, period, kept);
        break;
      case Change::kPassesOn:
        if (o.has_depthwise_conv2d()) {  // HWC
          s = Keep(o.mutable_depthwise_conv2d()->mutable_weights(), 2, period, kept);
          if (s.ok()) s = KeepBias(o.mutable_depthwise_conv2d()->mutable_weights(), kept);
        }
        ScaleChannels(g.mutable_tensors(static_cast<int>(o.output()))->mutable_shape(), period, k);
        break;
    }
    if (!s.ok()) return s;
  }
  *graph = std::move(g);
  return absl::OkStatus();
}

}  // namespace tinyfed::models::internal
