// Removing whole output channels of a float backbone's layer, and every
// weight that reads them, so that the network gets smaller in MACs and
// bytes (not just zeroed): the surgery behind structured pruning.
#ifndef TINYFED_MODELS_INTERNAL_CHANNEL_SURGERY_H_
#define TINYFED_MODELS_INTERNAL_CHANNEL_SURGERY_H_

#include <vector>

#include "absl/status/status.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models::internal {

// Whether op `op` of a float backbone may lose output channels: a Conv2D or
// FullyConnected whose output is not the embedding and reaches, through
// depthwise convolutions, pools and reshapes only, nothing but Conv2D and
// FullyConnected readers (an Add needs both its inputs to agree).
bool CanRemoveChannels(const v1::Graph& graph, int op);

// Keeps output channels `keep` (ascending, at least one) of op `op`, which
// CanRemoveChannels allows, and removes the rest: from its weights and bias,
// from the depthwise convolutions and pools they pass through, and from the
// input weights of the layers that read them. INVALID_ARGUMENT otherwise;
// the graph is then unchanged.
absl::Status RemoveChannels(v1::Graph* graph, int op, const std::vector<int>& keep);

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_CHANNEL_SURGERY_H_
