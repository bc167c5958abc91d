// DepthwiseConv2D: the reference loop nest, and with AVX2 16 channels at a
// time over pairs of horizontally adjacent taps: the input interleaved once
// per call, the weights at prepare time, in the order vpunpck{l,h}wd
// interleaves them.
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

// The rows and columns the windows cover, padding included.
int PairedInputHeight(const Geometry& g) { return (g.out_h - 1) * g.stride_h + g.kernel_h; }
int PairedInputWidth(const Geometry& g) { return (g.out_w - 1) * g.stride_w + g.kernel_w; }

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

// Depthwise weights: the taps of each kernel row in pairs (kx, kx + 1), the
// last of an odd row with a zero partner; per pair and 16-channel block, the
// two taps interleaved exactly as vpunpcklwd / vpunpckhwd interleave the
// inputs, which leaves the sums in kLaneChannel order.
void PackDepthwiseWeights(PreparedOp* op) {
  const Geometry& g = op->g;
  const int c = g.in_c;
  const int row_pairs = (g.kernel_w + 1) / 2;
  const int blocks = c / kChannelBlock;
  op->packed_weights.assign(static_cast<size_t>(g.kernel_h) * row_pairs * blocks * 32, 0);
  auto tap_weight = [&](int ky, int kx, int ch) -> int16_t {
    return kx < g.kernel_w ? op->weights[(static_cast<size_t>(ky) * g.kernel_w + kx) * c + ch] : 0;
  };
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    for (int p = 0; p < row_pairs; ++p) {
      for (int b = 0; b < blocks; ++b) {
        int16_t* dst = op->packed_weights.data() + ((static_cast<size_t>(ky) * row_pairs + p) * blocks + b) * 32;
        for (int half = 0; half < 2; ++half) {  // unpacklo, unpackhi
          for (int lane128 = 0; lane128 < 2; ++lane128) {
            for (int j = 0; j < 4; ++j) {
              const int ch = b * kChannelBlock + lane128 * 8 + half * 4 + j;
              int16_t* out = dst + half * 16 + lane128 * 8 + j * 2;
              out[0] = tap_weight(ky, 2 * p, ch);
              out[1] = tap_weight(ky, 2 * p + 1, ch);
            }
          }
        }
      }
    }
  }
  PrepareRequantization(op, op->bias);
  op->scratch_bytes = static_cast<uint64_t>(PairedInputHeight(g)) * PairedInputWidth(g) * blocks * 64;
}

#if defined(__x86_64__)

namespace {

// x - zp for 16 channels of an input pixel, or zeros outside the input.
TINYFED_AVX2_INLINE __m256i CenteredPixel(const PreparedOp& op, const int8_t* in, int iy, int ix, int c) {
  const Geometry& g = op.g;
  if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) return _mm256_setzero_si256();
  const __m128i v =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c + c));
  return _mm256_sub_epi16(_mm256_cvtepi8_epi16(v), _mm256_set1_epi16(static_cast<int16_t>(op.input_zero_point)));
}

// The padded input, centered, with each pixel's 16-channel blocks
// interleaved with its right neighbour's as vpunpck{l,h}wd do: one load then
// gives a row tap pair's inputs. Rows and columns from the window's first
// (-pad_top, -pad_left) to its last.
TINYFED_AVX2_INLINE void PairInput(const PreparedOp& op, const int8_t* in, int16_t* paired) {
  const Geometry& g = op.g;
  const int blocks = g.in_c / kChannelBlock;
  const int height = PairedInputHeight(g), width = PairedInputWidth(g);
  for (int y = 0; y < height; ++y) {
    const int iy = y - g.pad_top;
    for (int b = 0; b < blocks; ++b) {
      const int c = b * kChannelBlock;
      __m256i left = CenteredPixel(op, in, iy, -g.pad_left, c);
      for (int x = 0; x < width; ++x) {
        const __m256i right = CenteredPixel(op, in, iy, x + 1 - g.pad_left, c);
        int16_t* dst = paired + ((static_cast<size_t>(y) * width + x) * blocks + b) * 32;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_unpacklo_epi16(left, right));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 16), _mm256_unpackhi_epi16(left, right));
        left = right;
      }
    }
  }
}

// The depthwise convolution over the paired input; kRows kernel rows of
// kPairs tap pairs, or with 0 the op's at run time: the 3x3 kernels nearly
// every depthwise layer has unroll into straight code.
template <int kRows, int kPairs>
TINYFED_AVX2_INLINE void PairedDepthwise(const PreparedOp& op, const int8_t* in, const int16_t* paired, int8_t* out) {
  const Geometry& g = op.g;
  const int blocks = g.in_c / kChannelBlock;
  const int rows = kRows > 0 ? kRows : g.kernel_h;
  const int pairs = kPairs > 0 ? kPairs : (g.kernel_w + 1) / 2;
  const size_t width = static_cast<size_t>(PairedInputWidth(g));
  const size_t block_stride = 32, pixel_stride = static_cast<size_t>(blocks) * 32;
  const int16_t* weights = op.packed_weights.data();
  const Requantizer rq = RequantizerOf(op);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      int8_t* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      // The window's top left in the paired input.
      const int16_t* window = paired + (static_cast<size_t>(oy) * g.stride_h * width + ox * g.stride_w) * pixel_stride;
      for (int b = 0; b < blocks; ++b) {
        __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
        for (int ky = 0; ky < rows; ++ky) {
          for (int p = 0; p < pairs; ++p) {
            const int16_t* x = window + (ky * width + 2 * p) * pixel_stride + b * block_stride;
            const int16_t* w = weights + (static_cast<size_t>(ky * pairs + p) * blocks + b) * block_stride;
            const __m256i x_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
            const __m256i x_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 16));
            const __m256i w_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
            const __m256i w_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16));
            acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(x_lo, w_lo));
            acc_hi = _mm256_add_epi32(acc_hi, _mm256_madd_epi16(x_hi, w_hi));
          }
        }
        const int c = b * kChannelBlock;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c), RequantizeBlock(acc_lo, acc_hi, rq, c));
      }
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      for (int c = blocks * kChannelBlock; c < g.in_c; ++c) {  // channel tail
        dst[c] = Requantize(ReferenceChannelSum(op, in, in_y0, in_x0, c), op, c);
      }
    }
  }
}

}  // namespace

TINYFED_AVX2 void Avx2DepthwiseConv2D(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* paired = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  PairInput(op, in, paired);
  if (op.g.kernel_h == 3 && op.g.kernel_w == 3) {
    PairedDepthwise<3, 2>(op, in, paired, out);
  } else {
    PairedDepthwise<0, 0>(op, in, paired, out);
  }
}

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels
