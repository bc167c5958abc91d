#include "model_import/internal/onnx_window.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model_import/internal/onnx_parts.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::model_import::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

// None, TFLite's SAME, or each side as ONNX says.
absl::StatusOr<Padding> PaddingOf(const onnx::NodeProto& node, int in_h, int in_w, int kh, int kw, int sh, int sw,
                                  const std::array<int64_t, 4>& extra) {
  const std::string auto_pad = StringAttribute(node, "auto_pad");
  const bool padded_before = extra != std::array<int64_t, 4>{0, 0, 0, 0};
  if (padded_before && !auto_pad.empty() && auto_pad != "NOTSET") {
    return InvalidArgumentError(StrCat("a Pad before auto_pad ", auto_pad));
  }
  if (auto_pad == "VALID") return Padding{};
  if (auto_pad == "SAME_UPPER") return Padding{.kind = v1::PADDING_SAME, .pads = {}};
  if (!auto_pad.empty() && auto_pad != "NOTSET") return InvalidArgumentError(StrCat("auto_pad ", auto_pad));
  std::vector<int64_t> pads = IntsAttribute(node, "pads");
  if (pads.empty()) pads = {0, 0, 0, 0};
  if (pads.size() != 4) return InvalidArgumentError("pads must have 4 values");
  for (size_t i = 0; i < 4; ++i) {
    if (pads[i] < 0 || pads[i] > 255) return InvalidArgumentError("pads must be 0 to 255");
    pads[i] += extra[i];
  }
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) return Padding{};
  auto same = [](int in, int k, int s, int64_t before, int64_t after) {
    const int out = (in + s - 1) / s;
    const int total = std::max((out - 1) * s + k - in, 0);
    return before == total / 2 && after == total - total / 2;
  };
  if (same(in_h, kh, sh, pads[0], pads[2]) && same(in_w, kw, sw, pads[1], pads[3])) {
    return Padding{.kind = v1::PADDING_SAME, .pads = {}};
  }
  // ONNX orders pads as [top, left, bottom, right].
  if (pads[0] < 0 || pads[0] >= kh || pads[2] < 0 || pads[2] >= kh || pads[1] < 0 || pads[1] >= kw || pads[3] < 0 ||
      pads[3] >= kw) {
    return InvalidArgumentError(StrCat("pads [", absl::StrJoin(pads, ", "), "] must each be 0 to the kernel side - 1"));
  }
  Padding p{.kind = v1::PADDING_EXPLICIT, .pads = {}};
  p.pads.set_top(static_cast<uint32_t>(pads[0]));
  p.pads.set_left(static_cast<uint32_t>(pads[1]));
  p.pads.set_bottom(static_cast<uint32_t>(pads[2]));
  p.pads.set_right(static_cast<uint32_t>(pads[3]));
  return p;
}

}  // namespace

absl::StatusOr<Window> WindowOf(const onnx::NodeProto& node, int in_h, int in_w, const std::vector<int64_t>& kernel,
                                const std::array<int64_t, 4>& extra_pads) {
  if (kernel.size() != 2) return InvalidArgumentError("kernel_shape must have 2 values (2-D)");
  std::vector<int64_t> strides = IntsAttribute(node, "strides");
  if (strides.empty()) strides = {1, 1};
  const std::vector<int64_t> dilations = IntsAttribute(node, "dilations");
  if (std::any_of(dilations.begin(), dilations.end(), [](int64_t d) { return d != 1; })) {
    return InvalidArgumentError("dilations other than 1");
  }
  if (IntAttribute(node, "ceil_mode", 0) != 0) return InvalidArgumentError("ceil_mode 1");
  if (strides.size() != 2 || std::any_of(kernel.begin(), kernel.end(), [](int64_t k) { return k < 1 || k > 255; }) ||
      std::any_of(strides.begin(), strides.end(), [](int64_t s) { return s < 1 || s > 255; })) {
    return InvalidArgumentError("kernel sides and strides must be 1 to 255, 2 of each");
  }
  Window w{static_cast<int>(kernel[0]),
           static_cast<int>(kernel[1]),
           static_cast<int>(strides[0]),
           static_cast<int>(strides[1]),
           Padding{},
           0,
           0};
  TINYFED_ASSIGN_OR_RETURN(w.padding, PaddingOf(node, in_h, in_w, w.kh, w.kw, w.sh, w.sw, extra_pads));
  if (w.padding.kind == v1::PADDING_SAME) {
    w.out_h = (in_h + w.sh - 1) / w.sh;
    w.out_w = (in_w + w.sw - 1) / w.sw;
    return w;
  }
  const v1::Pads& p = w.padding.pads;  // all zero for VALID
  const int padded_h = in_h + static_cast<int>(p.top() + p.bottom());
  const int padded_w = in_w + static_cast<int>(p.left() + p.right());
  if (w.kh > padded_h || w.kw > padded_w) return InvalidArgumentError("the kernel is larger than its padded input");
  w.out_h = (padded_h - w.kh) / w.sh + 1;
  w.out_w = (padded_w - w.kw) / w.sw + 1;
  return w;
}

}  // namespace tinyfed::model_import::internal
