// DepthwiseConv2D: the reference loop nest, and with AVX2 16 channels at a
// time over tap pairs, the weights packed at prepare time in the order
// vpunpck{l,h}wd interleaves the inputs.
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {
const OpAnalyzer kDepthwiseConv2DAnalyzer = {
    .shape =
        [](const OpSite& site, OpAnalysis* a) {
          const auto& p = site.op.depthwise_conv2d();
          if (auto s = ApplyWindow(WindowOf(p), &a->geometry, site.where); !s.ok()) return s;
          const uint32_t in_c = site.in.shape().channels();
          a->depth = uint64_t{p.kernel_height()} * p.kernel_width();
          return CheckWeights(p.weights(), {p.kernel_height(), p.kernel_width(), in_c}, in_c, site.precision,
                              site.where, &a->weight_bytes);
        },
    .requantize = [](const OpSite& site,
                     OpAnalysis* a) { return ChannelMultipliers(site, site.op.depthwise_conv2d().weights(), a); },
};

namespace {

// Channel c's bias plus its taps inside the input, for the window whose top
// left corner is (in_y0, in_x0).
int32_t ReferenceChannelSum(const PreparedOp& op, const int8_t* in, int in_y0, int in_x0, int c) {
  const Geometry& g = op.g;
  int32_t acc = op.bias[static_cast<size_t>(c)];
  ForEachTapInside(g, in_y0, in_x0, [&](int ky, int kx, int iy, int ix) {
    const int32_t x = in[(static_cast<size_t>(iy) * g.in_w + ix) * g.in_c + c];
    const int32_t w = op.weights[(static_cast<size_t>(ky) * g.kernel_w + kx) * g.in_c + c];
    acc = WrapAdd(acc, WrapMul(x - op.input_zero_point, w));
  });
  return acc;
}

}  // namespace

void ReferenceDepthwiseConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      for (int c = 0; c < g.in_c; ++c) {
        out[(static_cast<size_t>(oy) * g.out_w + ox) * g.out_c + c] =
            Requantize(ReferenceChannelSum(op, in, in_y0, in_x0, c), op, c);
      }
    }
  }
}

#if defined(__aarch64__)

// Per tap, the channels' weights widened to int16 and padded to a multiple
// of 8: one vector load per tap and 8 channels.
void PrepareNeonDepthwise(PreparedOp* op) {
  const int c = op->g.in_c;
  const int taps = op->g.kernel_h * op->g.kernel_w;
  op->packed_depth = RoundUp(c, 8);
  op->packed_weights.assign(static_cast<size_t>(taps) * static_cast<size_t>(op->packed_depth), 0);
  for (int t = 0; t < taps; ++t) {
    for (int ch = 0; ch < c; ++ch) {
      op->packed_weights[static_cast<size_t>(t) * static_cast<size_t>(op->packed_depth) + static_cast<size_t>(ch)] =
          op->weights[static_cast<size_t>(t) * static_cast<size_t>(c) + static_cast<size_t>(ch)];
    }
  }
}

// Eight channels at a time over the taps inside the input; the last
// channels (fewer than eight) as the reference computes them.
void NeonDepthwiseConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const int16x8_t zp = vdupq_n_s16(static_cast<int16_t>(op.input_zero_point));
  const int vector_channels = g.in_c / 8 * 8;
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      int8_t* o = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      for (int c = 0; c < vector_channels; c += 8) {
        int32x4_t lo = vld1q_s32(op.bias.data() + c), hi = vld1q_s32(op.bias.data() + c + 4);
        ForEachTapInside(g, in_y0, in_x0, [&](int ky, int kx, int iy, int ix) {
          const int8_t* x = in + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c + c;
          const int16_t* w = op.packed_weights.data() +
                             static_cast<size_t>(ky * g.kernel_w + kx) * static_cast<size_t>(op.packed_depth) + c;
          const int16x8_t centered = vsubq_s16(vmovl_s8(vld1_s8(x)), zp);
          const int16x8_t weights = vld1q_s16(w);
          lo = vmlal_s16(lo, vget_low_s16(centered), vget_low_s16(weights));
          hi = vmlal_high_s16(hi, centered, weights);
        });
        int32_t acc[8];
        vst1q_s32(acc, lo);
        vst1q_s32(acc + 4, hi);
        for (int j = 0; j < 8; ++j) o[c + j] = Requantize(acc[j], op, c + j);
      }
      for (int c = vector_channels; c < g.in_c; ++c) {
        o[c] = Requantize(ReferenceChannelSum(op, in, in_y0, in_x0, c), op, c);
      }
    }
  }
}

#endif

// vpunpck{l,h}wd + vpmaddwd leave a 16-channel block's sums in this lane
// order: channels 0-3 and 8-11 in the first vector, 4-7 and 12-15 in the second.
constexpr int kDepthwiseLane[kChannelBlock] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};

// Depthwise weights: per tap pair and 16-channel block, the two taps
// interleaved exactly as vpunpcklwd / vpunpckhwd interleave the inputs; bias,
// multipliers and shifts of whole blocks stored in lane order.
void PackDepthwiseWeights(PreparedOp* op) {
  const int c = op->g.in_c;
  const int taps = op->g.kernel_h * op->g.kernel_w;
  const int pairs = (taps + 1) / 2;
  const int blocks = c / kChannelBlock;
  op->packed_weights.assign(static_cast<size_t>(pairs) * blocks * 32, 0);
  auto tap_weight = [&](int tap, int ch) -> int16_t {
    return tap < taps ? op->weights[static_cast<size_t>(tap) * c + ch] : 0;
  };
  for (int p = 0; p < pairs; ++p) {
    for (int b = 0; b < blocks; ++b) {
      int16_t* dst = op->packed_weights.data() + (static_cast<size_t>(p) * blocks + b) * 32;
      for (int half = 0; half < 2; ++half) {  // unpacklo, unpackhi
        for (int lane128 = 0; lane128 < 2; ++lane128) {
          for (int j = 0; j < 4; ++j) {
            const int ch = b * kChannelBlock + lane128 * 8 + half * 4 + j;
            int16_t* out = dst + half * 16 + lane128 * 8 + j * 2;
            out[0] = tap_weight(2 * p, ch);
            out[1] = tap_weight(2 * p + 1, ch);
          }
        }
      }
    }
  }
  const size_t whole = static_cast<size_t>(blocks) * kChannelBlock;
  op->lane_bias.resize(whole);
  op->lane_multiplier.resize(whole);
  op->lane_shift.resize(whole);
  for (size_t i = 0; i < whole; ++i) {
    const size_t src = i / kChannelBlock * kChannelBlock + kDepthwiseLane[i % kChannelBlock];
    op->lane_bias[i] = op->bias[src];
    op->lane_multiplier[i] = op->multiplier[src];
    op->lane_shift[i] = op->shift[src];
  }
}

#if defined(__x86_64__)

TINYFED_AVX2 void Avx2DepthwiseConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const int taps = g.kernel_h * g.kernel_w;
  const int pairs = (taps + 1) / 2;
  const int blocks = g.in_c / kChannelBlock;
  // The input once as int16 x - zp (each input pixel feeds up to
  // kernel_h * kernel_w taps), and per pixel where each tap reads: its input
  // pixel, or for padding (and the missing partner of an odd last tap) a row
  // of zeros, so the inner loop has no branches.
  auto* tap_row = reinterpret_cast<const int16_t**>(arena + op.scratch_offset);
  auto* zero_row = reinterpret_cast<int16_t*>(tap_row + 2 * pairs);
  int16_t* centered_input = zero_row + g.in_c;
  std::fill(zero_row, zero_row + g.in_c, int16_t{0});
  {
    const size_t n = static_cast<size_t>(g.in_h) * g.in_w * g.in_c;
    const __m256i zp16 = _mm256_set1_epi16(static_cast<int16_t>(op.input_zero_point));
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(centered_input + i),
                          _mm256_sub_epi16(_mm256_cvtepi8_epi16(v), zp16));
    }
    for (; i < n; ++i) centered_input[i] = static_cast<int16_t>(in[i] - op.input_zero_point);
  }
  tap_row[2 * pairs - 1] = zero_row;
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int y0 = oy * g.stride_h - g.pad_top;
      const int x0 = ox * g.stride_w - g.pad_left;
      int8_t* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      for (int ky = 0, tap = 0; ky < g.kernel_h; ++ky) {
        for (int kx = 0; kx < g.kernel_w; ++kx, ++tap) {
          const int iy = y0 + ky, ix = x0 + kx;
          tap_row[tap] = (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w)
                             ? zero_row
                             : centered_input + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c;
        }
      }
      auto centered = [&](int tap, int c) TINYFED_AVX2 {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tap_row[tap] + c));
      };
      for (int b = 0; b < blocks; ++b) {
        const int c = b * kChannelBlock;
        __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
        for (int p = 0; p < pairs; ++p) {
          const __m256i x0v = centered(2 * p, c), x1v = centered(2 * p + 1, c);
          const int16_t* w = op.packed_weights.data() + (static_cast<size_t>(p) * blocks + b) * 32;
          const __m256i wlo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
          const __m256i whi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16));
          acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0v, x1v), wlo));
          acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0v, x1v), whi));
        }
        // Sums are in kDepthwiseLane order, as are the lane_* arrays; packing
        // the two halves with vpackssdw then restores channel order.
        const __m256i lo = Requantize8(
            _mm256_add_epi32(acc_lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(op.lane_bias.data() + c))), op,
            op.lane_multiplier.data() + c, op.lane_shift.data() + c);
        const __m256i hi = Requantize8(
            _mm256_add_epi32(acc_hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(op.lane_bias.data() + c + 8))),
            op, op.lane_multiplier.data() + c + 8, op.lane_shift.data() + c + 8);
        const __m256i words = _mm256_packs_epi32(lo, hi);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c),
                         _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1)));
      }
      for (int c = blocks * kChannelBlock; c < g.in_c; ++c) {  // channel tail
        int32_t acc = op.bias[static_cast<size_t>(c)];
        for (int tap = 0; tap < taps; ++tap) {
          const int32_t x = tap_row[tap][c];  // already x - zp, 0 for padding
          const int32_t w = op.weights[static_cast<size_t>(tap) * g.in_c + c];
          acc = static_cast<int32_t>(static_cast<uint32_t>(acc) + static_cast<uint32_t>(x * w));
        }
        int32_t v = tinyfed::models::MultiplyByQuantizedMultiplier(
            acc, QuantizedMultiplier{op.multiplier[static_cast<size_t>(c)], op.shift[static_cast<size_t>(c)]});
        v = static_cast<int32_t>(static_cast<uint32_t>(v) + static_cast<uint32_t>(op.output_zero_point));
        dst[c] = static_cast<int8_t>(std::clamp(v, op.activation.min, op.activation.max));
      }
    }
  }
}

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels
