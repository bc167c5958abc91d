// Add of two int8 tensors with their own scales (TFLite's quantized add:
// both inputs rescaled to a common exponent, summed, requantized).
#include "absl/strings/str_cat.h"
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {
namespace {

absl::Status AddShape(const OpSite& site, OpAnalysis* a) {
  a->second_input = static_cast<int>(site.op.inputs(1));
  const v1::Shape& one = site.in.shape();
  const v1::Shape& other = site.graph.tensors(a->second_input).shape();
  if (other.height() != one.height() || other.width() != one.width() || other.channels() != one.channels()) {
    return absl::InvalidArgumentError(
        absl::StrCat(site.where, ": inputs ", a->input, " and ", a->second_input, " have different shapes"));
  }
  return absl::OkStatus();
}

// Both inputs rescaled to twice the larger scale, shifted left, summed and
// brought to the output scale, as TFLite does.
absl::Status AddRequantize(const OpSite& site, OpAnalysis* a) {
  const v1::Tensor& in2 = site.graph.tensors(a->second_input);
  const double twice_max = 2.0 * std::max(site.in.scale(), in2.scale());
  auto m1 = Multiplier(site.in.scale() / twice_max, site.where);
  auto m2 = Multiplier(in2.scale() / twice_max, site.where);
  auto mo = Multiplier(twice_max / ((1 << kAddLeftShift) * static_cast<double>(site.out.scale())), site.where);
  if (!m1.ok()) return m1.status();
  if (!m2.ok()) return m2.status();
  if (!mo.ok()) return mo.status();
  a->input_multiplier = *m1;
  a->second_input_multiplier = *m2;
  a->output_multiplier = *mo;
  return absl::OkStatus();
}

}  // namespace

const OpAnalyzer kAddAnalyzer = {.shape = AddShape, .requantize = AddRequantize};

void ReferenceAdd(const PreparedOp& op, uint8_t* arena) {
  const auto* a = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  const auto* b = reinterpret_cast<const int8_t*>(arena + op.second_input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t n = static_cast<size_t>(op.g.out_h) * op.g.out_w * op.g.out_c;
  for (size_t i = 0; i < n; ++i) {
    const int32_t sa = (a[i] - op.input_zero_point) * (1 << kAddLeftShift);
    const int32_t sb = (b[i] - op.second_input_zero_point) * (1 << kAddLeftShift);
    const int32_t ra = MultiplyByQuantizedMultiplier(sa, op.input_multiplier);
    const int32_t rb = MultiplyByQuantizedMultiplier(sb, op.second_input_multiplier);
    int32_t v = MultiplyByQuantizedMultiplier(WrapAdd(ra, rb), op.output_multiplier);
    v = WrapAdd(v, op.output_zero_point);
    out[i] = static_cast<int8_t>(std::clamp(v, op.activation.min, op.activation.max));
  }
}

#if defined(__aarch64__)

// 16 elements at a time; the last 1..15 load past the inputs' ends, into the
// arena's slack, and store only what there is.
void NeonAdd(const PreparedOp& op, uint8_t* arena) {
  const auto* a = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  const auto* b = reinterpret_cast<const int8_t*>(arena + op.second_input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t n = static_cast<size_t>(op.g.out_h) * op.g.out_w * op.g.out_c;
  const int16x8_t zp_a = vdupq_n_s16(static_cast<int16_t>(op.input_zero_point));
  const int16x8_t zp_b = vdupq_n_s16(static_cast<int16_t>(op.second_input_zero_point));
  // Four lanes: both inputs centred, shifted, rescaled, summed, requantized.
  auto four = [&](int16x4_t ca, int16x4_t cb) {
    const int32x4_t ea = vshlq_n_s32(vmovl_s16(ca), kAddLeftShift);
    const int32x4_t eb = vshlq_n_s32(vmovl_s16(cb), kAddLeftShift);
    const int32x4_t sum = vaddq_s32(NeonMultiplyByQuantizedMultiplier(ea, op.input_multiplier),
                                    NeonMultiplyByQuantizedMultiplier(eb, op.second_input_multiplier));
    return NeonOffsetAndClamp(NeonMultiplyByQuantizedMultiplier(sum, op.output_multiplier), op);
  };
  for (size_t i = 0; i < n; i += 16) {
    const int8x16_t va = vld1q_s8(a + i), vb = vld1q_s8(b + i);
    const int16x8_t a0 = vsubq_s16(vmovl_s8(vget_low_s8(va)), zp_a), a1 = vsubq_s16(vmovl_high_s8(va), zp_a);
    const int16x8_t b0 = vsubq_s16(vmovl_s8(vget_low_s8(vb)), zp_b), b1 = vsubq_s16(vmovl_high_s8(vb), zp_b);
    const int8x16_t v =
        NeonNarrow(four(vget_low_s16(a0), vget_low_s16(b0)), four(vget_high_s16(a0), vget_high_s16(b0)),
                   four(vget_low_s16(a1), vget_low_s16(b1)), four(vget_high_s16(a1), vget_high_s16(b1)));
    NeonStoreFirstBytes(out + i, v, static_cast<int>(std::min<size_t>(16, n - i)));
  }
}

#endif  // __aarch64__

#if defined(__x86_64__)

TINYFED_AVX2 void Avx2Add(const PreparedOp& op, uint8_t* arena) {
  const auto* a = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  const auto* b = reinterpret_cast<const int8_t*>(arena + op.second_input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const size_t n = static_cast<size_t>(op.g.out_h) * op.g.out_w * op.g.out_c;
  const __m256i zp_a = _mm256_set1_epi32(op.input_zero_point);
  const __m256i zp_b = _mm256_set1_epi32(op.second_input_zero_point);
  const __m256i zp_out = _mm256_set1_epi32(op.output_zero_point);
  const __m256i ma = _mm256_set1_epi32(op.input_multiplier.multiplier);
  const __m256i sa = _mm256_set1_epi32(op.input_multiplier.shift);
  const __m256i mb = _mm256_set1_epi32(op.second_input_multiplier.multiplier);
  const __m256i sb = _mm256_set1_epi32(op.second_input_multiplier.shift);
  const __m256i mo = _mm256_set1_epi32(op.output_multiplier.multiplier);
  const __m256i so = _mm256_set1_epi32(op.output_multiplier.shift);
  const __m256i lo = _mm256_set1_epi32(op.activation.min);
  const __m256i hi = _mm256_set1_epi32(op.activation.max);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    auto eight = [&](__m128i xa, __m128i xb) TINYFED_AVX2 {
      const __m256i ea = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_cvtepi8_epi32(xa), zp_a), kAddLeftShift);
      const __m256i eb = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_cvtepi8_epi32(xb), zp_b), kAddLeftShift);
      const __m256i sum =
          _mm256_add_epi32(MultiplyByQuantizedMultiplier(ea, ma, sa), MultiplyByQuantizedMultiplier(eb, mb, sb));
      const __m256i v = _mm256_add_epi32(MultiplyByQuantizedMultiplier(sum, mo, so), zp_out);
      return _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
    };
    const __m256i first = eight(va, vb);
    const __m256i second = eight(_mm_srli_si128(va, 8), _mm_srli_si128(vb, 8));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), PackToInt8(first, second));
  }
  for (; i < n; ++i) {
    const int32_t ra = tinyfed::models::MultiplyByQuantizedMultiplier(
        (a[i] - op.input_zero_point) * (1 << kAddLeftShift), op.input_multiplier);
    const int32_t rb = tinyfed::models::MultiplyByQuantizedMultiplier(
        (b[i] - op.second_input_zero_point) * (1 << kAddLeftShift), op.second_input_multiplier);
    int32_t v = tinyfed::models::MultiplyByQuantizedMultiplier(
        static_cast<int32_t>(static_cast<uint32_t>(ra) + static_cast<uint32_t>(rb)), op.output_multiplier);
    v = static_cast<int32_t>(static_cast<uint32_t>(v) + static_cast<uint32_t>(op.output_zero_point));
    out[i] = static_cast<int8_t>(std::clamp(v, op.activation.min, op.activation.max));
  }
}

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels
