#include "model_import/internal/onnx_layouts.h"

#include <cstddef>

namespace tinyfed::model_import::internal {

std::vector<float> OhwiFromOihw(const std::vector<float>& w, int out, int in, int kh, int kw) {
  std::vector<float> r(w.size());
  for (int o = 0; o < out; ++o)
    for (int i = 0; i < in; ++i)
      for (int y = 0; y < kh; ++y)
        for (int x = 0; x < kw; ++x)
          r[static_cast<size_t>(((o * kh + y) * kw + x) * in + i)] =
              w[static_cast<size_t>(((o * in + i) * kh + y) * kw + x)];
  return r;
}

std::vector<float> OihwFromGrouped(const std::vector<float>& w, int out, int in, int group, int kh, int kw) {
  const int per_in = in / group, per_out = out / group;
  std::vector<float> r(static_cast<size_t>(out) * static_cast<size_t>(in) * static_cast<size_t>(kh * kw), 0.0f);
  for (int o = 0; o < out; ++o)
    for (int j = 0; j < per_in; ++j) {
      const int i = o / per_out * per_in + j;
      for (int k = 0; k < kh * kw; ++k)
        r[static_cast<size_t>((o * in + i) * kh * kw + k)] = w[static_cast<size_t>((o * per_in + j) * kh * kw + k)];
    }
  return r;
}

std::vector<float> HwcFromC1hw(const std::vector<float>& w, int c, int kh, int kw) {
  std::vector<float> r(w.size());
  for (int k = 0; k < c; ++k)
    for (int y = 0; y < kh; ++y)
      for (int x = 0; x < kw; ++x)
        r[static_cast<size_t>((y * kw + x) * c + k)] = w[static_cast<size_t>((k * kh + y) * kw + x)];
  return r;
}

std::vector<float> DenseRowsInHwcOrder(const std::vector<float>& b, bool trans, int out, int c, int h, int w,
                                       bool chw_order) {
  const int in = c * h * w;
  std::vector<float> r(static_cast<size_t>(out) * static_cast<size_t>(in));
  for (int o = 0; o < out; ++o) {
    for (int j = 0; j < in; ++j) {
      // j is ONNX's feature index; k where the HWC tensor holds it.
      int k = j;
      if (chw_order) {
        const int ch = j / (h * w), y = j / w % h, x = j % w;
        k = (y * w + x) * c + ch;
      }
      r[static_cast<size_t>(o) * static_cast<size_t>(in) + static_cast<size_t>(k)] =
          b[trans ? static_cast<size_t>(o) * static_cast<size_t>(in) + static_cast<size_t>(j)
                  : static_cast<size_t>(j) * static_cast<size_t>(out) + static_cast<size_t>(o)];
    }
  }
  return r;
}

}  // namespace tinyfed::model_import::internal
