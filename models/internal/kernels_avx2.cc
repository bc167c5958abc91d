// AVX2 kernels. Needs: AVX2 (256-bit integer ops, vpmaddwd, variable shifts).
// Only functions marked TINYFED_AVX2 use it, so the rest of the binary stays
// baseline x86-64 and the interpreter can pick these at run time.
//
// Conv2D and FullyConnected become one GEMM: input patches widened to int16
// (im2col), weights pre-widened and packed so that vpmaddwd multiplies two
// depth positions of 8 output channels at once. The input zero point is
// folded into the bias at prepare time: sum((x - zp) * w) = sum(x * w) - zp *
// sum(w), so padded positions are filled with zp.
#include <algorithm>
#include <cstring>

#include "models/internal/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define TINYFED_AVX2 __attribute__((target("avx2")))
#define TINYFED_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
#endif

namespace tinyfed::models::internal {
namespace {

constexpr int kChannelBlock = 16;              // output channels per GEMM micro-kernel
constexpr int kRowBlock = 4;                   // output pixels per GEMM micro-kernel
constexpr uint64_t kWidenOvershootBytes = 32;  // WidenInt8 writes up to 15 int16 past its end
constexpr int kIm2colRows = 64;                // output pixels widened per GEMM call, bounding scratch

int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

int32_t WrapSub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}
int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

// Gemm weights: [channel block][depth pair][16 channels][2 depths], zero padded.
void PackGemmWeights(PreparedOp* op, int depth) {
  const int out_c = op->g.out_c;
  op->packed_depth = RoundUp(depth, 2);
  const int blocks = RoundUp(out_c, kChannelBlock) / kChannelBlock;
  const int pairs = op->packed_depth / 2;
  op->packed_weights.assign(static_cast<size_t>(blocks) * pairs * kChannelBlock * 2, 0);
  for (int oc = 0; oc < out_c; ++oc) {
    const int b = oc / kChannelBlock, lane = oc % kChannelBlock;
    for (int k = 0; k < depth; ++k) {
      const size_t idx = ((static_cast<size_t>(b) * pairs + k / 2) * kChannelBlock + lane) * 2 + (k % 2);
      op->packed_weights[idx] = op->weights[static_cast<size_t>(oc) * depth + k];
    }
  }
  op->folded_bias.assign(static_cast<size_t>(RoundUp(out_c, kChannelBlock)), 0);
  for (int oc = 0; oc < out_c; ++oc) {
    int32_t sum = 0;
    for (int k = 0; k < depth; ++k) sum += op->weights[static_cast<size_t>(oc) * depth + k];
    op->folded_bias[static_cast<size_t>(oc)] =
        WrapSub(op->bias[static_cast<size_t>(oc)], WrapMul(op->input_zero_point, sum));
  }
}

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

// SaturatingRoundingDoublingHighMul on 8 lanes. The multiplier is never
// INT32_MIN (QuantizeMultiplier returns 0 or [2^30, 2^31)), so the one
// saturating case of the scalar version cannot occur. For p = a * b the
// scalar form is trunc((p + nudge) / 2^31) with nudge = 2^30 or 1 - 2^30 by
// the sign of p; both cases equal floor((p + 2^30) / 2^31), because for
// negative n, trunc(n / d) = floor((n + d - 1) / d). The result fits in 32
// bits, and bits 31..62 of a 64-bit value are the same under logical and
// arithmetic shifts, so a logical shift (all AVX2 has) gives it exactly.
TINYFED_AVX2_INLINE __m256i RoundingDoublingHighMul(__m256i a, __m256i b) {
  const __m256i nudge = _mm256_set1_epi64x(int64_t{1} << 30);
  const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, b), nudge), 31);
  const __m256i odd = _mm256_srli_epi64(
      _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)), nudge), 31);
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

TINYFED_AVX2_INLINE __m256i RoundingDivideByPOT(__m256i x, __m256i exponent) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, exponent), one);
  const __m256i remainder = _mm256_and_si256(x, mask);
  const __m256i threshold =
      _mm256_add_epi32(_mm256_srai_epi32(mask, 1), _mm256_and_si256(_mm256_cmpgt_epi32(zero, x), one));
  return _mm256_add_epi32(_mm256_srav_epi32(x, exponent),
                          _mm256_and_si256(_mm256_cmpgt_epi32(remainder, threshold), one));
}

TINYFED_AVX2_INLINE __m256i MultiplyByQuantizedMultiplier(__m256i x, __m256i multiplier, __m256i shift) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i left = _mm256_max_epi32(shift, zero);
  const __m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
  return RoundingDivideByPOT(RoundingDoublingHighMul(_mm256_sllv_epi32(x, left), multiplier), right);
}

// The same for multipliers below one (shift <= 0), the usual case: no left shift.
TINYFED_AVX2_INLINE __m256i MultiplyByQuantizedMultiplierBelowOne(__m256i x, __m256i multiplier, __m256i shift) {
  return RoundingDivideByPOT(RoundingDoublingHighMul(x, multiplier), _mm256_sub_epi32(_mm256_setzero_si256(), shift));
}

// Requantizes 8 accumulators with the 8 multipliers and shifts at `multiplier`
// and `shift`, then adds the output zero point and clamps.
TINYFED_AVX2_INLINE __m256i Requantize8(__m256i acc, const PreparedOp& op, const int32_t* multiplier,
                                        const int32_t* shift) {
  const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(multiplier));
  const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(shift));
  const __m256i scaled =
      op.any_left_shift ? MultiplyByQuantizedMultiplier(acc, m, s) : MultiplyByQuantizedMultiplierBelowOne(acc, m, s);
  __m256i v = _mm256_add_epi32(scaled, _mm256_set1_epi32(op.output_zero_point));
  v = _mm256_max_epi32(v, _mm256_set1_epi32(op.activation.min));
  return _mm256_min_epi32(v, _mm256_set1_epi32(op.activation.max));
}

// Channels [c, c+8) in natural order.
TINYFED_AVX2_INLINE __m256i RequantizeChannels(__m256i acc, const PreparedOp& op, int c) {
  return Requantize8(acc, op, op.multiplier.data() + c, op.shift.data() + c);
}

// Packs 16 clamped int32 lanes (lo = first 8, hi = next 8) into 16 int8 in order.
TINYFED_AVX2_INLINE __m128i PackToInt8(__m256i lo, __m256i hi) {
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
  return _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}

// Both int16 values at depth 2p and 2p+1 of a row, in every 32-bit lane.
TINYFED_AVX2_INLINE __m256i BroadcastPair(const int16_t* row, int p) {
  int32_t pair;
  std::memcpy(&pair, row + 2 * p, 4);
  return _mm256_set1_epi32(pair);
}

// Widens n int8 values to int16. Rounds n up to a multiple of 8: it may read
// up to 15 bytes past src and write up to 15 values past dst + n, which the
// arena's slack (kArenaSlackBytes) and the callers' fill order allow.
TINYFED_AVX2_INLINE void WidenInt8(const int8_t* src, int n, int16_t* dst) {
  int i = 0;
  for (; i + 8 < n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_cvtepi8_epi16(v));
  }
  if (i < n) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_cvtepi8_epi16(v));
  }
}

// Multiplies `rows` int16 rows (stride packed_depth) by the packed weights and
// writes requantized int8 rows of out_c values.
// kRows is 1 or 4.
template <int kRows>
TINYFED_AVX2_INLINE void GemmBlock(const PreparedOp& op, const int16_t* rows, int8_t* out) {
  const int pairs = op.packed_depth / 2;
  const int out_c = op.g.out_c;
  const int blocks = RoundUp(out_c, kChannelBlock) / kChannelBlock;
  for (int b = 0; b < blocks; ++b) {
    // Named accumulators: with an array GCC keeps them on the stack.
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00;
    __m256i a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const int16_t* w = op.packed_weights.data() + static_cast<size_t>(b) * pairs * 32;
    const int16_t* r0 = rows;
    const int16_t* r1 = rows + (kRows > 1 ? op.packed_depth : 0);
    const int16_t* r2 = rows + (kRows > 2 ? 2 * op.packed_depth : 0);
    const int16_t* r3 = rows + (kRows > 3 ? 3 * op.packed_depth : 0);
    for (int p = 0; p < pairs; ++p) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 32));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 32 + 16));
      const __m256i x0 = BroadcastPair(r0, p);
      a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(x0, w0));
      a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(x0, w1));
      if constexpr (kRows > 1) {
        const __m256i x1 = BroadcastPair(r1, p);
        a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(x1, w0));
        a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(x1, w1));
        const __m256i x2 = BroadcastPair(r2, p);
        a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(x2, w0));
        a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(x2, w1));
        const __m256i x3 = BroadcastPair(r3, p);
        a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(x3, w0));
        a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(x3, w1));
      }
    }
    const __m256i acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    const int c0 = b * kChannelBlock;
    const int valid = std::min(kChannelBlock, out_c - c0);
    for (int r = 0; r < kRows; ++r) {
      const __m256i bias0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(op.folded_bias.data() + c0));
      const __m256i bias1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(op.folded_bias.data() + c0 + 8));
      __m256i lo = _mm256_add_epi32(acc[r][0], bias0);
      __m256i hi = _mm256_add_epi32(acc[r][1], bias1);
      int8_t* dst = out + static_cast<size_t>(r) * out_c + c0;
      // Multipliers are padded to whole blocks (PrepareAvx2), so the tail
      // block requantizes in SIMD too and stores only its valid bytes.
      lo = RequantizeChannels(lo, op, c0);
      hi = RequantizeChannels(hi, op, c0 + 8);
      const __m128i packed = PackToInt8(lo, hi);
      if (valid == kChannelBlock) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), packed);
      } else {
        alignas(16) int8_t bytes[kChannelBlock];
        _mm_store_si128(reinterpret_cast<__m128i*>(bytes), packed);
        std::memcpy(dst, bytes, static_cast<size_t>(valid));
      }
    }
  }
}

TINYFED_AVX2 void Gemm(const PreparedOp& op, const int16_t* rows, int num_rows, int8_t* out) {
  int r = 0;
  for (; r + kRowBlock <= num_rows; r += kRowBlock) {
    GemmBlock<kRowBlock>(op, rows + static_cast<size_t>(r) * op.packed_depth,
                         out + static_cast<size_t>(r) * op.g.out_c);
  }
  for (; r < num_rows; ++r) {
    GemmBlock<1>(op, rows + static_cast<size_t>(r) * op.packed_depth, out + static_cast<size_t>(r) * op.g.out_c);
  }
}

TINYFED_AVX2 void Conv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patches = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  const int depth = g.kernel_h * g.kernel_w * g.in_c;
  const auto zp = static_cast<int16_t>(op.input_zero_point);
  const int pixels = g.out_h * g.out_w;
  for (int first = 0; first < pixels; first += kIm2colRows) {
    const int count = std::min(kIm2colRows, pixels - first);
    int16_t* row = patches;
    for (int pixel = first; pixel < first + count; ++pixel) {
      const int oy = pixel / g.out_w, ox = pixel % g.out_w;
      const int y0 = oy * g.stride_h - g.pad_top;
      const int x0 = ox * g.stride_w - g.pad_left;
      int16_t* dst = row;
      const bool columns_inside = x0 >= 0 && x0 + g.kernel_w <= g.in_w;
      for (int ky = 0; ky < g.kernel_h; ++ky) {
        const int iy = y0 + ky;
        if (iy < 0 || iy >= g.in_h) {
          std::fill(dst, dst + g.kernel_w * g.in_c, zp);
          dst += g.kernel_w * g.in_c;
          continue;
        }
        if (columns_inside) {  // one contiguous run of kernel_w * in_c values
          WidenInt8(in + (static_cast<size_t>(iy) * g.in_w + x0) * g.in_c, g.kernel_w * g.in_c, dst);
          dst += g.kernel_w * g.in_c;
          continue;
        }
        for (int kx = 0; kx < g.kernel_w; ++kx, dst += g.in_c) {
          const int ix = x0 + kx;
          if (ix < 0 || ix >= g.in_w) {
            std::fill(dst, dst + g.in_c, zp);
          } else {
            WidenInt8(in + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c, g.in_c, dst);
          }
        }
      }
      // Runs are filled left to right, so WidenInt8's overshoot into later
      // positions is overwritten; only the depth padding needs restoring.
      if (op.packed_depth > depth) row[depth] = 0;
      row += op.packed_depth;
    }
    Gemm(op, patches, count, out + static_cast<size_t>(first) * g.out_c);
  }
}

TINYFED_AVX2 void FullyConnected(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* row = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  WidenInt8(in, op.g.in_c, row);
  if (op.packed_depth > op.g.in_c) row[op.g.in_c] = 0;
  Gemm(op, row, 1, out);
}

TINYFED_AVX2 void DepthwiseConv2D(const PreparedOp& op, uint8_t* arena) {
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

TINYFED_AVX2 void MaxPool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const __m256i lo = _mm256_set1_epi8(static_cast<int8_t>(op.activation.min));
  const __m256i hi = _mm256_set1_epi8(static_cast<int8_t>(op.activation.max));
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int y0 = oy * g.stride_h - g.pad_top, x0 = ox * g.stride_w - g.pad_left;
      const int ky0 = std::max(0, -y0), ky1 = std::min(g.kernel_h, g.in_h - y0);
      const int kx0 = std::max(0, -x0), kx1 = std::min(g.kernel_w, g.in_w - x0);
      int8_t* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      int c = 0;
      for (; c + 32 <= g.in_c; c += 32) {
        __m256i m = _mm256_set1_epi8(-128);
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            const int8_t* src = in + (static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c;
            m = _mm256_max_epi8(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
          }
        }
        m = _mm256_min_epi8(_mm256_max_epi8(m, lo), hi);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), m);
      }
      for (; c < g.in_c; ++c) {
        int32_t m = -128;
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            m = std::max<int32_t>(m, in[(static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c]);
          }
        }
        dst[c] = static_cast<int8_t>(std::clamp(m, op.activation.min, op.activation.max));
      }
    }
  }
}

// Average pooling: int32 sums in SIMD, then TFLite's rounding division. The
// division goes through double, which is exact here: |numerator| < 2^24
// (window <= 2^16 elements of |x| <= 128), so the rounded quotient never
// crosses an integer.
TINYFED_AVX2 void AveragePool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const __m256i act_lo = _mm256_set1_epi32(op.activation.min);
  const __m256i act_hi = _mm256_set1_epi32(op.activation.max);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int y0 = oy * g.stride_h - g.pad_top, x0 = ox * g.stride_w - g.pad_left;
      const int ky0 = std::max(0, -y0), ky1 = std::min(g.kernel_h, g.in_h - y0);
      const int kx0 = std::max(0, -x0), kx1 = std::min(g.kernel_w, g.in_w - x0);
      const int count = std::max(1, (ky1 - ky0) * (kx1 - kx0));
      const __m256i half = _mm256_set1_epi32(count / 2);
      const __m256d divisor = _mm256_set1_pd(count);
      int8_t* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      int c = 0;
      for (; c + 16 <= g.in_c; c += 16) {
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            const int8_t* src = in + (static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c;
            const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
            s0 = _mm256_add_epi32(s0, _mm256_cvtepi8_epi32(v));
            s1 = _mm256_add_epi32(s1, _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
          }
        }
        auto divide = [&](__m256i s) TINYFED_AVX2 {
          const __m256i positive = _mm256_cmpgt_epi32(s, _mm256_setzero_si256());
          const __m256i n = _mm256_blendv_epi8(_mm256_sub_epi32(s, half), _mm256_add_epi32(s, half), positive);
          const __m128i q0 = _mm256_cvttpd_epi32(_mm256_div_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(n)), divisor));
          const __m128i q1 =
              _mm256_cvttpd_epi32(_mm256_div_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(n, 1)), divisor));
          const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
          return _mm256_min_epi32(_mm256_max_epi32(q, act_lo), act_hi);
        };
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c), PackToInt8(divide(s0), divide(s1)));
      }
      for (; c < g.in_c; ++c) {
        int32_t acc = 0;
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            acc += in[(static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c];
          }
        }
        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        dst[c] = static_cast<int8_t>(std::clamp(acc, op.activation.min, op.activation.max));
      }
    }
  }
}

TINYFED_AVX2 void Add(const PreparedOp& op, uint8_t* arena) {
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

}  // namespace

bool CpuHasAvx2() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

void PrepareAvx2(PreparedOp* op) {
  const Geometry& g = op->g;
  if (op->kind == v1::Op::kConv2D) {
    PackGemmWeights(op, g.kernel_h * g.kernel_w * g.in_c);
    op->scratch_bytes =
        uint64_t{2} * op->packed_depth * static_cast<uint64_t>(std::min(kIm2colRows, g.out_h * g.out_w)) +
        kWidenOvershootBytes;
  } else if (op->kind == v1::Op::kFullyConnected) {
    PackGemmWeights(op, g.in_c);
    op->scratch_bytes = uint64_t{2} * op->packed_depth + kWidenOvershootBytes;
  } else if (op->kind == v1::Op::kDepthwiseConv2D) {
    PackDepthwiseWeights(op);
    const uint64_t taps = static_cast<uint64_t>(g.kernel_h) * g.kernel_w;
    op->scratch_bytes =
        sizeof(int16_t*) * (taps + 1) + sizeof(int16_t) * (static_cast<uint64_t>(g.in_c) * (1 + g.in_h * g.in_w));
  }
  op->any_left_shift = std::any_of(op->shift.begin(), op->shift.end(), [](int32_t v) { return v > 0; });
  if (op->kind == v1::Op::kConv2D || op->kind == v1::Op::kFullyConnected) {
    const auto padded = static_cast<size_t>(RoundUp(g.out_c, kChannelBlock));
    op->multiplier.resize(padded, 0);
    op->shift.resize(padded, 0);
  }
}

KernelFn Avx2Kernel(v1::Op::KindCase kind) {
#if defined(__x86_64__)
  switch (kind) {
    case v1::Op::kConv2D:
      return &Conv2D;
    case v1::Op::kDepthwiseConv2D:
      return &DepthwiseConv2D;
    case v1::Op::kFullyConnected:
      return &FullyConnected;
    case v1::Op::kMaxPool:
      return &MaxPool;
    case v1::Op::kAveragePool:
    case v1::Op::kGlobalAveragePool:
      return &AveragePool;
    case v1::Op::kAdd:
      return &Add;
    // A reshape is a clamped copy; the reference loop vectorizes as it is.
    case v1::Op::kReshape:
      return ReferenceKernel(kind);
    case v1::Op::KIND_NOT_SET:
      break;
  }
#endif
  return ReferenceKernel(kind);
}

}  // namespace tinyfed::models::internal
