// Concat along channels: each output pixel holds the channels of every input
// in turn. TFLite's converter forces one scale on all of them; a file
// quantized elsewhere (a QDQ ONNX) may not, so each input is requantized to
// the output's scale in integers, (x - zp_in) * (s_in / s_out) + zp_out, and
// an input already on the output's grid is copied (the same bytes).
#include <cstring>

#include "absl/strings/str_cat.h"
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {
namespace {

absl::Status ConcatShape(const OpSite& site, OpAnalysis* a) {
  uint64_t channels = 0;
  for (int t : a->inputs) {
    const v1::Shape& s = site.graph.tensors(t).shape();
    if (s.height() != site.in.shape().height() || s.width() != site.in.shape().width()) {
      return absl::InvalidArgumentError(absl::StrCat(site.where, ": input ", t, " is ", s.height(), "x", s.width(),
                                                     ", input ", a->input, " is ", site.in.shape().height(), "x",
                                                     site.in.shape().width(), " (only channels may differ)"));
    }
    channels += s.channels();
  }
  if (channels > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(site.where, ": ", channels, " channels in all"));
  }
  a->geometry.out_c = static_cast<int>(channels);
  return absl::OkStatus();
}

absl::Status ConcatRequantize(const OpSite& site, OpAnalysis* a) {
  for (int t : a->inputs) {
    auto m = Multiplier(static_cast<double>(site.graph.tensors(t).scale()) / site.out.scale(),
                        absl::StrCat(site.where, " input ", t));
    if (!m.ok()) return m.status();
    a->input_multipliers.push_back(*m);
  }
  return absl::OkStatus();
}

int32_t Requantize(int8_t x, const ConcatPart& part, const PreparedOp& op) {
  const int32_t v = WrapAdd(MultiplyByQuantizedMultiplier(x - part.zero_point, part.multiplier), op.output_zero_point);
  return std::clamp(v, op.activation.min, op.activation.max);
}

// Calls join(part, in, dst) for each input's channels of each
// output pixel, in order.
template <typename Join>
void ForEachPart(const PreparedOp& op, uint8_t* arena, Join join) {
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t pixels = static_cast<size_t>(op.g.out_h) * op.g.out_w;
  for (size_t p = 0; p < pixels; ++p) {
    int8_t* dst = out + p * static_cast<size_t>(op.g.out_c);
    for (const ConcatPart& part : op.concat_parts) {
      join(part, reinterpret_cast<const int8_t*>(arena + part.offset) + p * static_cast<size_t>(part.channels), dst);
      dst += part.channels;
    }
  }
}

}  // namespace

const OpAnalyzer kConcatAnalyzer = {.shape = ConcatShape, .requantize = ConcatRequantize};

void ReferenceConcat(const PreparedOp& op, uint8_t* arena) {
  ForEachPart(op, arena, [&](const ConcatPart& part, const int8_t* in, int8_t* dst) {
    for (int c = 0; c < part.channels; ++c) dst[c] = static_cast<int8_t>(Requantize(in[c], part, op));
  });
}

#if defined(__aarch64__)

void NeonConcat(const PreparedOp& op, uint8_t* arena) {
  ForEachPart(op, arena, [&](const ConcatPart& part, const int8_t* in, int8_t* dst) {
    if (part.copies) {
      std::memcpy(dst, in, static_cast<size_t>(part.channels));
      return;
    }
    const int16x8_t zp = vdupq_n_s16(static_cast<int16_t>(part.zero_point));
    auto four = [&](int16x4_t centered) {
      return NeonOffsetAndClamp(NeonMultiplyByQuantizedMultiplier(vmovl_s16(centered), part.multiplier), op);
    };
    // Loads may read up to 15 bytes past the input (the arena's slack).
    for (int c = 0; c < part.channels; c += 16) {
      const int8x16_t x = vld1q_s8(in + c);
      const int16x8_t lo = vsubq_s16(vmovl_s8(vget_low_s8(x)), zp), hi = vsubq_s16(vmovl_high_s8(x), zp);
      NeonStoreFirstBytes(
          dst + c,
          NeonNarrow(four(vget_low_s16(lo)), four(vget_high_s16(lo)), four(vget_low_s16(hi)), four(vget_high_s16(hi))),
          part.channels - c);
    }
  });
}

#endif  // __aarch64__

#if defined(__x86_64__)

namespace {

TINYFED_AVX2_INLINE __m256i Requantize8(const int8_t* in, const ConcatPart& part, const PreparedOp& op) {
  const __m256i x = _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in))),
                                     _mm256_set1_epi32(part.zero_point));
  const __m256i m = _mm256_set1_epi32(part.multiplier.multiplier);
  const __m256i s = _mm256_set1_epi32(part.multiplier.shift);
  __m256i v = part.multiplier.shift > 0 ? MultiplyByQuantizedMultiplier(x, m, s)
                                        : MultiplyByQuantizedMultiplierBelowOne(x, m, s);
  v = _mm256_add_epi32(v, _mm256_set1_epi32(op.output_zero_point));
  v = _mm256_max_epi32(v, _mm256_set1_epi32(op.activation.min));
  return _mm256_min_epi32(v, _mm256_set1_epi32(op.activation.max));
}

}  // namespace

TINYFED_AVX2 void Avx2Concat(const PreparedOp& op, uint8_t* arena) {
  ForEachPart(op, arena, [&](const ConcatPart& part, const int8_t* in, int8_t* dst) TINYFED_AVX2 {
    if (part.copies) {
      std::memcpy(dst, in, static_cast<size_t>(part.channels));
      return;
    }
    // Loads may read up to 15 bytes past the input (the arena's slack).
    for (int c = 0; c < part.channels; c += 16) {
      StoreFirstBytes(dst + c, PackToInt8(Requantize8(in + c, part, op), Requantize8(in + c + 8, part, op)),
                      part.channels - c);
    }
  });
}

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels
