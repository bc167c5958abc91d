// Fixed-point requantization with the arithmetic of TensorFlow Lite's
// reference int8 kernels, so a model quantized the TFLite way produces the
// same bytes here.
//
// A real multiplier m > 0 is stored as (multiplier, shift) with
// m ~= multiplier * 2^(shift - 31) and multiplier in [2^30, 2^31).
// Applying it rounds twice, as TFLite does without TFLITE_SINGLE_ROUNDING:
// gemmlowp's rounding doubling high multiply (ties round upward), then a
// rounding right shift (ties round away from zero).
#ifndef TINYFED_MODELS_QUANTIZATION_H_
#define TINYFED_MODELS_QUANTIZATION_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace tinyfed::models {

struct QuantizedMultiplier {
  int32_t multiplier = 0;  // 0, or in [2^30, 2^31)
  int32_t shift = 0;       // in [-31, 30]; positive shifts left
};

// Fails with INVALID_ARGUMENT for a negative, NaN or infinite multiplier, or
// one of 2^31 or more. Multipliers below 2^-32 quantize to zero, as in TFLite.
absl::StatusOr<QuantizedMultiplier> QuantizeMultiplier(double real_multiplier);

// a * b / 2^31 rounded to nearest with ties upward (gemmlowp), saturating
// the single overflowing case a == b == INT32_MIN.
int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b);

// x / 2^exponent rounded half away from zero; exponent in [0, 31].
int32_t RoundingDivideByPOT(int32_t x, int exponent);

// x * m for the real multiplier m that q represents. A left shift wraps
// modulo 2^32 (TFLite leaves that overflow undefined; fast kernels match it).
int32_t MultiplyByQuantizedMultiplier(int32_t x, QuantizedMultiplier q);

// TFLite's TfLiteRound: nearest integer, halves away from zero; saturates
// outside the int32 range and maps NaN to 0.
int32_t RoundHalfAwayFromZero(float x);

// Asymmetric int8 parameters for values in [min, max]; the range is widened
// to contain 0 so that zero is exactly representable (padding relies on it).
struct AffineQuantization {
  float scale = 1.0f;
  int32_t zero_point = 0;
};
AffineQuantization ChooseAffineQuantization(float min, float max);

// Clamp bounds of a fused activation in the quantized domain.
struct ActivationRange {
  int32_t min = -128;
  int32_t max = 127;
};

int8_t QuantizeValue(float real, AffineQuantization q);
inline float DequantizeValue(int8_t q, AffineQuantization params) {
  return params.scale * static_cast<float>(static_cast<int32_t>(q) - params.zero_point);
}

// Symmetric per-channel weights: scale = max|w| / 127, values in [-127, 127].
// `weights` holds `channels` rows of equal length; outputs are resized.
void QuantizeSymmetricPerChannel(std::span<const float> weights, int channels, std::span<int8_t> out,
                                 std::span<float> scales);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_QUANTIZATION_H_
