// The AVX2 kernel for a Conv2D that reads one input channel with a
// horizontal stride of 1 and writes at most 16 channels: the first layer of a
// grayscale image model. The GEMM puts output channels in SIMD lanes, so
// below 16 channels most lanes idle and the im2col of 1-channel patches costs
// more than the products; here the lanes are 8 neighbouring output pixels
// instead, the products of each channel cost the same whatever the channel
// count, and removing a channel (backbone prune) removes its share of the
// time. Bit-exact with ReferenceConv2D: (x - zp) * w summed in int32 wraps
// modulo 2^32 in any order.
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

#if defined(__x86_64__)

namespace tinyfed::models::internal::kernels {
namespace {

// Kernel columns in pairs: vpmaddwd multiplies two neighbouring columns.
int ColumnPairs(const Geometry& g) { return RoundUp(g.kernel_w, 2) / 2; }

// One input row as int16 minus the input zero point, zero where the window
// hangs over the edge. A block of 8 pixels at ox reads [ox, ox + 8 + kernel_w].
int RowLength(const Geometry& g) { return RoundUp(g.out_w, 8) + 2 * ColumnPairs(g) + 8; }

int PixelBlocks(const Geometry& g) { return RoundUp(g.out_w, 8) / 8; }

// Output pixel blocks that share one broadcast of a weight pair.
constexpr int kBlocksAtOnce = 4;

// Multiplies the products' inputs of `count` (1..4) blocks by one channel's
// weights and writes the requantized channel of those pixels.
template <int kCount>
TINYFED_AVX2_INLINE void ChannelBlocks(const PreparedOp& op, const __m256i* pixels, int taps, int oc, int ox,
                                       int8_t* row_out) {
  const Geometry& g = op.g;
  const int blocks = PixelBlocks(g);
  const int16_t* w = op.packed_weights.data() + static_cast<size_t>(oc) * taps * 2;
  __m256i acc[kCount];
  for (int j = 0; j < kCount; ++j) acc[j] = _mm256_set1_epi32(op.bias[static_cast<size_t>(oc)]);
  for (int t = 0; t < taps; ++t) {
    const __m256i weight = BroadcastPair(w, t);
    const __m256i* v = pixels + static_cast<size_t>(t) * blocks + ox / 8;
    for (int j = 0; j < kCount; ++j)
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_loadu_si256(v + j), weight));
  }
  const __m256i m = _mm256_set1_epi32(op.multiplier[static_cast<size_t>(oc)]);
  const __m256i s = _mm256_set1_epi32(op.shift[static_cast<size_t>(oc)]);
  const __m256i zero_point = _mm256_set1_epi32(op.output_zero_point);
  for (int j = 0; j < kCount; ++j) {
    __m256i q = op.any_left_shift ? MultiplyByQuantizedMultiplier(acc[j], m, s)
                                  : MultiplyByQuantizedMultiplierBelowOne(acc[j], m, s);
    q = _mm256_add_epi32(q, zero_point);
    q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(op.activation.min)),
                         _mm256_set1_epi32(op.activation.max));
    alignas(16) int8_t bytes[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(bytes), PackToInt8(q, q));
    const int first = ox + 8 * j;
    const int valid = std::min(8, g.out_w - first);
    int8_t* dst = row_out + static_cast<size_t>(first) * g.out_c + oc;
    for (int l = 0; l < valid; ++l) dst[static_cast<size_t>(l) * g.out_c] = bytes[l];
  }
}

}  // namespace

bool FitsSingleChannelConv(const Geometry& g) { return g.in_c == 1 && g.stride_w == 1 && g.out_c <= kChannelBlock; }

// Weights as int16 pairs [channel][kernel row][column pair][2], zero for the
// column past an odd kernel width.
void PrepareSingleChannelConv(PreparedOp* op) {
  const Geometry& g = op->g;
  const int pairs = ColumnPairs(g);
  op->packed_weights.assign(static_cast<size_t>(g.out_c) * g.kernel_h * pairs * 2, 0);
  for (int oc = 0; oc < g.out_c; ++oc) {
    for (int ky = 0; ky < g.kernel_h; ++ky) {
      for (int kx = 0; kx < g.kernel_w; ++kx) {
        op->packed_weights[((static_cast<size_t>(oc) * g.kernel_h + ky) * pairs) * 2 + kx] =
            op->weights[(static_cast<size_t>(oc) * g.kernel_h + ky) * g.kernel_w + kx];
      }
    }
  }
  // The input rows and a row of zeros, then the products' inputs of one
  // output row: an 8-pixel vector per kernel tap (row, column pair) and block.
  op->scratch_bytes = sizeof(int16_t) * (static_cast<uint64_t>(g.in_h) + 1) * RowLength(g) +
                      sizeof(__m256i) * static_cast<uint64_t>(g.kernel_h) * pairs * PixelBlocks(g);
}

TINYFED_AVX2 void Avx2SingleChannelConv(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* rows = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  const int row_length = RowLength(g);
  const int pairs = ColumnPairs(g);
  const int taps = g.kernel_h * pairs;
  const int blocks = PixelBlocks(g);
  const int16_t* zeros = rows + static_cast<size_t>(g.in_h) * row_length;
  auto* pixels = reinterpret_cast<__m256i*>(rows + (static_cast<size_t>(g.in_h) + 1) * row_length);
  // Each input row is widened once, not once per kernel row that reads it.
  std::fill(rows, rows + (static_cast<size_t>(g.in_h) + 1) * row_length, int16_t{0});
  const int columns = std::min(g.in_w, row_length - g.pad_left);
  for (int iy = 0; iy < g.in_h; ++iy) {
    int16_t* row = rows + static_cast<size_t>(iy) * row_length + g.pad_left;
    const int8_t* src = in + static_cast<size_t>(iy) * g.in_w;
    for (int x = 0; x < columns; ++x) row[x] = static_cast<int16_t>(src[x] - op.input_zero_point);
  }
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ky = 0; ky < g.kernel_h; ++ky) {
      const int iy = oy * g.stride_h - g.pad_top + ky;
      const int16_t* row = iy < 0 || iy >= g.in_h ? zeros : rows + static_cast<size_t>(iy) * row_length;
      for (int p = 0; p < pairs; ++p) {
        for (int b = 0; b < blocks; ++b) {
          // Lane l holds columns 2p and 2p + 1 of pixel 8b + l's window.
          const int16_t* at = row + 8 * b + 2 * p;
          const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
          const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at + 1));
          _mm256_storeu_si256(pixels + static_cast<size_t>(ky * pairs + p) * blocks + b,
                              _mm256_set_m128i(_mm_unpackhi_epi16(lo, hi), _mm_unpacklo_epi16(lo, hi)));
        }
      }
    }
    int8_t* row_out = out + static_cast<size_t>(oy) * g.out_w * g.out_c;
    for (int oc = 0; oc < g.out_c; ++oc) {
      int b = 0;
      for (; b + kBlocksAtOnce <= blocks; b += kBlocksAtOnce) {
        ChannelBlocks<kBlocksAtOnce>(op, pixels, taps, oc, 8 * b, row_out);
      }
      switch (blocks - b) {
        case 3:
          ChannelBlocks<3>(op, pixels, taps, oc, 8 * b, row_out);
          break;
        case 2:
          ChannelBlocks<2>(op, pixels, taps, oc, 8 * b, row_out);
          break;
        case 1:
          ChannelBlocks<1>(op, pixels, taps, oc, 8 * b, row_out);
          break;
        default:
          break;
      }
    }
  }
}

}  // namespace tinyfed::models::internal::kernels

#endif  // __x86_64__
