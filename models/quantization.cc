#include "tinyfed/models/quantization.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tinyfed::models {

absl::StatusOr<QuantizedMultiplier> QuantizeMultiplier(double real_multiplier) {
  if (!std::isfinite(real_multiplier) || real_multiplier < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantized multiplier must be finite and non-negative, got ", real_multiplier));
  }
  if (real_multiplier >= 2147483648.0) {
    return absl::InvalidArgumentError(absl::StrCat("quantized multiplier ", real_multiplier, " is 2^31 or more"));
  }
  QuantizedMultiplier q;
  if (real_multiplier == 0.0) return q;
  int exponent = 0;
  const double fraction = std::frexp(real_multiplier, &exponent);
  auto fixed = static_cast<int64_t>(std::round(fraction * (1LL << 31)));
  if (fixed == (1LL << 31)) {
    fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) return QuantizedMultiplier{};
  if (exponent > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantized multiplier ", real_multiplier, " needs a left shift of ", exponent, ", more than 30"));
  }
  q.multiplier = static_cast<int32_t>(fixed);
  q.shift = exponent;
  return q;
}

int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  if (a == b && a == std::numeric_limits<int32_t>::min()) {
    return std::numeric_limits<int32_t>::max();
  }
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
  return static_cast<int32_t>((ab + nudge) / (1LL << 31));
}

int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((1LL << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t MultiplyByQuantizedMultiplier(int32_t x, QuantizedMultiplier q) {
  const int left_shift = q.shift > 0 ? q.shift : 0;
  const int right_shift = q.shift > 0 ? 0 : -q.shift;
  const auto shifted = static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(shifted, q.multiplier), right_shift);
}

int32_t RoundHalfAwayFromZero(float x) {
  // Saturates (and maps NaN to 0) where a plain cast would be undefined.
  if (!(std::fabs(x) < 2147483520.0f)) return std::isnan(x) ? 0 : (x > 0 ? INT32_MAX : INT32_MIN);
  return static_cast<int32_t>(std::round(x));
}

AffineQuantization ChooseAffineQuantization(float min, float max) {
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  AffineQuantization q;
  if (!(max > min) || !std::isfinite(max - min)) return q;  // all zeros: any scale works
  q.scale = (max - min) / 255.0f;
  const float zero = -128.0f - min / q.scale;
  q.zero_point = std::clamp(RoundHalfAwayFromZero(zero), -128, 127);
  return q;
}

int8_t QuantizeValue(float real, AffineQuantization q) {
  const float scaled = real / q.scale;
  if (!(std::fabs(scaled) < 1e9f)) return real > 0 ? 127 : -128;  // also catches NaN -> -128
  return static_cast<int8_t>(std::clamp(RoundHalfAwayFromZero(scaled) + q.zero_point, -128, 127));
}

void QuantizeSymmetricPerChannel(std::span<const float> weights, int channels, std::span<int8_t> out,
                                 std::span<float> scales) {
  const size_t per_channel = weights.size() / static_cast<size_t>(channels);
  for (int c = 0; c < channels; ++c) {
    const auto row = weights.subspan(static_cast<size_t>(c) * per_channel, per_channel);
    float max_abs = 0.0f;
    for (float w : row) max_abs = std::max(max_abs, std::fabs(w));
    // A dead channel keeps a tiny positive scale so multipliers stay defined.
    const float scale = max_abs > 0.0f ? max_abs / 127.0f : 1e-8f;
    scales[static_cast<size_t>(c)] = scale;
    for (size_t i = 0; i < per_channel; ++i) {
      out[static_cast<size_t>(c) * per_channel + i] =
          static_cast<int8_t>(std::clamp(RoundHalfAwayFromZero(row[i] / scale), -127, 127));
    }
  }
}

}  // namespace tinyfed::models
