// The window of a Conv or pooling node: kernel, strides and ONNX's padding
// mapped to a bundle's (none, TFLite's SAME, or explicit per side), and the
// output size it gives.
#ifndef TINYFED_MODEL_IMPORT_INTERNAL_ONNX_WINDOW_H_
#define TINYFED_MODEL_IMPORT_INTERNAL_ONNX_WINDOW_H_

#include <onnx/onnx_pb.h>

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::model_import::internal {

struct Padding {
  v1::Padding kind = v1::PADDING_VALID;
  v1::Pads pads;  // PADDING_EXPLICIT only
};

struct Window {
  int kh, kw, sh, sw;
  Padding padding;
  int out_h, out_w;
};

// For `node` reading an in_h x in_w map with `kernel` (2 values), padded by
// its own pads plus `extra_pads` (a Pad before it; top, left, bottom,
// right). The status's message says what is unsupported, for the caller to
// prefix with the node.
absl::StatusOr<Window> WindowOf(const onnx::NodeProto& node, int in_h, int in_w, const std::vector<int64_t>& kernel,
                                const std::array<int64_t, 4>& extra_pads = {0, 0, 0, 0});

// Kernel, strides and padding into a bundle op's parameters.
template <typename P>
void SetWindow(P* p, const Window& w) {
  p->set_kernel_height(static_cast<uint32_t>(w.kh));
  p->set_kernel_width(static_cast<uint32_t>(w.kw));
  p->set_stride_height(static_cast<uint32_t>(w.sh));
  p->set_stride_width(static_cast<uint32_t>(w.sw));
  p->set_padding(w.padding.kind);
  if (w.padding.kind == v1::PADDING_EXPLICIT) *p->mutable_pads() = w.padding.pads;
}

}  // namespace tinyfed::model_import::internal

#endif  // TINYFED_MODEL_IMPORT_INTERNAL_ONNX_WINDOW_H_
