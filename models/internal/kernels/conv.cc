// Conv2D and FullyConnected. The reference kernels are the definition of
// correct output (TFLite's reference_integer_ops). With AVX2 both become one
// GEMM: input patches widened to int16 (im2col), weights pre-widened and
// packed so that vpmaddwd multiplies two depth positions of 8 output
// channels at once. With AVX-512 VNNI the patches stay bytes and vpdpbusd
// multiplies four depth positions. The input zero point is folded into the
// bias at prepare time: sum((x - zp) * w) = sum(x * w) - zp * sum(w), so
// padded positions are filled with zp.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {
namespace {

absl::Status Conv2DShape(const OpSite& site, OpAnalysis* a) {
  const auto& p = site.op.conv2d();
  Geometry& g = a->geometry;
  if (auto s = ApplyWindow(WindowOf(p), &g, site.where); !s.ok()) return s;
  g.out_c = static_cast<int>(p.out_channels());
  if (p.out_channels() == 0 || p.out_channels() > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(site.where, ": out_channels ", p.out_channels()));
  }
  const uint32_t in_c = site.in.shape().channels();
  a->depth = uint64_t{p.kernel_height()} * p.kernel_width() * in_c;
  return CheckWeights(p.weights(), {p.out_channels(), p.kernel_height(), p.kernel_width(), in_c}, p.out_channels(),
                      site.precision, site.where, &a->weight_bytes);
}

absl::Status FullyConnectedShape(const OpSite& site, OpAnalysis* a) {
  const auto& p = site.op.fully_connected();
  Geometry& g = a->geometry;
  a->depth = Elements(site.in.shape());
  g.in_h = g.in_w = 1;
  g.in_c = static_cast<int>(a->depth);
  g.out_h = g.out_w = 1;
  g.out_c = static_cast<int>(p.out_features());
  if (p.out_features() == 0 || p.out_features() > kMaxDimension) {
    return absl::InvalidArgumentError(absl::StrCat(site.where, ": out_features ", p.out_features()));
  }
  return CheckWeights(p.weights(), {p.out_features(), a->depth}, p.out_features(), site.precision, site.where,
                      &a->weight_bytes);
}

}  // namespace

const OpAnalyzer kConv2DAnalyzer = {
    .shape = Conv2DShape,
    .requantize = [](const OpSite& site,
                     OpAnalysis* a) { return ChannelMultipliers(site, site.op.conv2d().weights(), a); },
};
const OpAnalyzer kFullyConnectedAnalyzer = {
    .shape = FullyConnectedShape,
    .requantize = [](const OpSite& site,
                     OpAnalysis* a) { return ChannelMultipliers(site, site.op.fully_connected().weights(), a); },
};

void ReferenceConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      for (int oc = 0; oc < g.out_c; ++oc) {
        int32_t acc = op.bias[static_cast<size_t>(oc)];
        ForEachTapInside(g, in_y0, in_x0, [&](int ky, int kx, int iy, int ix) {
          const int8_t* x = in + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c;
          const int8_t* w =
              op.weights.data() + ((static_cast<size_t>(oc) * g.kernel_h + ky) * g.kernel_w + kx) * g.in_c;
          for (int ic = 0; ic < g.in_c; ++ic) acc = WrapAdd(acc, WrapMul(x[ic] - op.input_zero_point, w[ic]));
        });
        out[(static_cast<size_t>(oy) * g.out_w + ox) * g.out_c + oc] = Requantize(acc, op, oc);
      }
    }
  }
}

void ReferenceFullyConnected(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int o = 0; o < g.out_c; ++o) {
    int32_t acc = op.bias[static_cast<size_t>(o)];
    const int8_t* w = op.weights.data() + static_cast<size_t>(o) * g.in_c;
    for (int i = 0; i < g.in_c; ++i) acc = WrapAdd(acc, WrapMul(in[i] - op.input_zero_point, w[i]));
    out[o] = Requantize(acc, op, o);
  }
}

// Gemm weights: [channel block][depth pair][16 lanes][2 depths], zero padded.
void PackGemmWeights(PreparedOp* op, int depth) {
  const int out_c = op->g.out_c;
  op->packed_depth = RoundUp(depth, 2);
  const int blocks = RoundUp(out_c, kChannelBlock) / kChannelBlock;
  const int pairs = op->packed_depth / 2;
  op->packed_weights.assign(static_cast<size_t>(blocks) * pairs * kChannelBlock * 2, 0);
  for (int oc = 0; oc < out_c; ++oc) {
    const int b = oc / kChannelBlock, lane = kLaneChannel[oc % kChannelBlock];
    for (int k = 0; k < depth; ++k) {
      const size_t idx = ((static_cast<size_t>(b) * pairs + k / 2) * kChannelBlock + lane) * 2 + (k % 2);
      op->packed_weights[idx] = op->weights[static_cast<size_t>(oc) * depth + k];
    }
  }
  FoldInputZeroPoint(op, depth, 0);
  PrepareRequantization(op, op->folded_bias);
}

void FoldInputZeroPoint(PreparedOp* op, int depth, int32_t patch_offset) {
  const int out_c = op->g.out_c;
  const int32_t folded_zero_point = WrapAdd(op->input_zero_point, patch_offset);
  op->folded_bias.assign(static_cast<size_t>(RoundUp(out_c, kChannelBlock)), 0);
  for (int oc = 0; oc < out_c; ++oc) {
    int32_t sum = 0;
    for (int k = 0; k < depth; ++k) sum += op->weights[static_cast<size_t>(oc) * depth + k];
    op->folded_bias[static_cast<size_t>(oc)] =
        WrapSub(op->bias[static_cast<size_t>(oc)], WrapMul(folded_zero_point, sum));
  }
}

#if defined(__aarch64__)

void PrepareNeonGemm(PreparedOp* op, int depth) {
  op->packed_depth = RoundUp(depth, 8);
  const size_t stride = static_cast<size_t>(op->packed_depth);
  op->packed_weights.assign(static_cast<size_t>(op->g.out_c) * stride, 0);
  for (int oc = 0; oc < op->g.out_c; ++oc) {
    for (int k = 0; k < depth; ++k) {
      op->packed_weights[static_cast<size_t>(oc) * stride + static_cast<size_t>(k)] =
          op->weights[static_cast<size_t>(oc) * static_cast<size_t>(depth) + static_cast<size_t>(k)];
    }
  }
  op->scratch_bytes = sizeof(int16_t) * stride;
}

namespace {

// One output pixel (or an FC's one row): the patch, x - zero point widened
// to int16 (0 where the window leaves the input) and padded to packed_depth,
// against every output channel.
void NeonGemmRow(const PreparedOp& op, const int16_t* patch, int8_t* out) {
  const size_t stride = static_cast<size_t>(op.packed_depth);
  for (int oc = 0; oc < op.g.out_c; ++oc) {
    const int32_t sum = NeonDot(patch, op.packed_weights.data() + static_cast<size_t>(oc) * stride, op.packed_depth);
    out[oc] = Requantize(WrapAdd(op.bias[static_cast<size_t>(oc)], sum), op, oc);
  }
}

// x - zero point for n int8 values, widened to int16.
void WidenCentered(const int8_t* x, int n, int32_t zero_point, int16_t* out) {
  const int16x8_t zp = vdupq_n_s16(static_cast<int16_t>(zero_point));
  int i = 0;
  for (; i + 8 <= n; i += 8) vst1q_s16(out + i, vsubq_s16(vmovl_s8(vld1_s8(x + i)), zp));
  for (; i < n; ++i) out[i] = static_cast<int16_t>(x[i] - zero_point);
}

}  // namespace

void NeonConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patch = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      std::memset(patch, 0, sizeof(int16_t) * static_cast<size_t>(op.packed_depth));
      int16_t* p = patch;
      for (int ky = 0; ky < g.kernel_h; ++ky) {
        const int iy = in_y0 + ky;
        for (int kx = 0; kx < g.kernel_w; ++kx, p += g.in_c) {
          const int ix = in_x0 + kx;
          if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
          WidenCentered(in + (static_cast<size_t>(iy) * g.in_w + ix) * g.in_c, g.in_c, op.input_zero_point, p);
        }
      }
      NeonGemmRow(op, patch, out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c);
    }
  }
}

void NeonFullyConnected(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patch = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  std::memset(patch, 0, sizeof(int16_t) * static_cast<size_t>(op.packed_depth));
  WidenCentered(in, op.g.in_c, op.input_zero_point, patch);
  NeonGemmRow(op, patch, out);
}

void PrepareNeonDotGemm(PreparedOp* op, int depth) {
  op->packed_depth = RoundUp(depth, 16);
  const size_t stride = static_cast<size_t>(op->packed_depth);
  op->packed_int8_weights.assign(static_cast<size_t>(op->g.out_c) * stride, 0);
  for (int oc = 0; oc < op->g.out_c; ++oc) {
    std::memcpy(op->packed_int8_weights.data() + static_cast<size_t>(oc) * stride,
                op->weights.data() + static_cast<size_t>(oc) * static_cast<size_t>(depth), static_cast<size_t>(depth));
  }
  FoldInputZeroPoint(op, depth, 0);
  op->scratch_bytes = stride;
}

namespace {

// One output pixel (or an FC's one row): the int8 patch (the input zero
// point where the window leaves the input, so that the folded bias cancels
// it) against every output channel, four channels per pass over the patch.
TINYFED_DOTPROD void NeonDotGemmRow(const PreparedOp& op, const int8_t* patch, int8_t* out) {
  const size_t stride = static_cast<size_t>(op.packed_depth);
  const int8_t* w = op.packed_int8_weights.data();
  const int out_c = op.g.out_c;
  int oc = 0;
  for (; oc + 4 <= out_c; oc += 4) {
    const int8_t* w0 = w + static_cast<size_t>(oc) * stride;
    int32x4_t a0 = vdupq_n_s32(0), a1 = a0, a2 = a0, a3 = a0;
    for (size_t k = 0; k < stride; k += 16) {
      const int8x16_t x = vld1q_s8(patch + k);
      a0 = vdotq_s32(a0, x, vld1q_s8(w0 + k));
      a1 = vdotq_s32(a1, x, vld1q_s8(w0 + stride + k));
      a2 = vdotq_s32(a2, x, vld1q_s8(w0 + 2 * stride + k));
      a3 = vdotq_s32(a3, x, vld1q_s8(w0 + 3 * stride + k));
    }
    int32_t acc[4];
    vst1q_s32(acc,
              vaddq_s32(vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3)), vld1q_s32(op.folded_bias.data() + oc)));
    for (int i = 0; i < 4; ++i) out[oc + i] = Requantize(acc[i], op, oc + i);
  }
  for (; oc < out_c; ++oc) {
    const int8_t* w0 = w + static_cast<size_t>(oc) * stride;
    int32x4_t a = vdupq_n_s32(0);
    for (size_t k = 0; k < stride; k += 16) a = vdotq_s32(a, vld1q_s8(patch + k), vld1q_s8(w0 + k));
    out[oc] = Requantize(WrapAdd(op.folded_bias[static_cast<size_t>(oc)], vaddvq_s32(a)), op, oc);
  }
}

}  // namespace

TINYFED_DOTPROD void NeonDotConv2D(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patch = reinterpret_cast<int8_t*>(arena + op.scratch_offset);
  const size_t tap = static_cast<size_t>(g.in_c);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const int in_y0 = oy * g.stride_h - g.pad_top;
      const int in_x0 = ox * g.stride_w - g.pad_left;
      std::memset(patch, op.input_zero_point, static_cast<size_t>(op.packed_depth));
      int8_t* p = patch;
      for (int ky = 0; ky < g.kernel_h; ++ky) {
        const int iy = in_y0 + ky;
        for (int kx = 0; kx < g.kernel_w; ++kx, p += tap) {
          const int ix = in_x0 + kx;
          if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
          std::memcpy(p, in + (static_cast<size_t>(iy) * g.in_w + ix) * tap, tap);
        }
      }
      NeonDotGemmRow(op, patch, out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c);
    }
  }
}

TINYFED_DOTPROD void NeonDotFullyConnected(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patch = reinterpret_cast<int8_t*>(arena + op.scratch_offset);
  std::memset(patch, op.input_zero_point, static_cast<size_t>(op.packed_depth));
  std::memcpy(patch, in, static_cast<size_t>(op.g.in_c));
  NeonDotGemmRow(op, patch, out);
}

#endif

#if defined(__x86_64__)

namespace {

// Requantizes a block's 16 sums (in kLaneChannel order) and stores the
// channels of the block that exist.
TINYFED_AVX2_INLINE void StoreChannelBlock(const Requantizer& r, int out_c, __m256i lo, __m256i hi, int c0,
                                           int8_t* dst) {
  StoreFirstBytes(dst, RequantizeBlock(lo, hi, r, c0), std::min(kChannelBlock, out_c - c0));
}

// Fills `count` im2col rows (stride op.packed_depth) for the output pixels
// from `first`: each run of input values through Copy::Run(src, n, dst),
// Copy::Fill(dst, n, pad) where the window leaves the input, 0 in the depth
// padding. Rows are filled left to right, so copies and fills may overshoot
// into the positions after theirs, which later ones overwrite, and past the
// last row by kOvershootBytes.
template <typename T, typename Copy>
TINYFED_AVX2_INLINE void FillPatches(const PreparedOp& op, const int8_t* in, int first, int count, T pad, T* rows) {
  const Geometry& g = op.g;
  const int depth = g.kernel_h * g.kernel_w * g.in_c;
  const bool pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_top == 0 &&
                         g.pad_left == 0 && g.in_w == g.out_w;
  if (pointwise && op.packed_depth == depth) {  // the rows are the input's pixels
    Copy::Run(in + static_cast<size_t>(first) * depth, count * depth, rows);
    return;
  }
  for (int pixel = first; pixel < first + count; ++pixel, rows += op.packed_depth) {
    const int oy = pixel / g.out_w, ox = pixel % g.out_w;
    const int y0 = oy * g.stride_h - g.pad_top;
    const int x0 = ox * g.stride_w - g.pad_left;
    // Each kernel row is the padding left of the input, one run of input
    // values, and the padding right of it.
    const int left = std::clamp(-x0, 0, g.kernel_w);
    const int right = std::clamp(x0 + g.kernel_w - g.in_w, 0, g.kernel_w - left);
    const int inside = (g.kernel_w - left - right) * g.in_c;
    T* dst = rows;
    for (int ky = 0; ky < g.kernel_h; ++ky, dst += g.kernel_w * g.in_c) {
      const int iy = y0 + ky;
      if (iy < 0 || iy >= g.in_h || inside == 0) {
        Copy::Fill(dst, g.kernel_w * g.in_c, pad);
        continue;
      }
      Copy::Fill(dst, left * g.in_c, pad);
      Copy::Run(in + (static_cast<size_t>(iy) * g.in_w + x0 + left) * g.in_c, inside, dst + left * g.in_c);
      Copy::Fill(dst + left * g.in_c + inside, right * g.in_c, pad);
    }
    Copy::Fill(rows + depth, op.packed_depth - depth, T{0});
  }
}

// Overshoots as WidenInt8 does, and fills whole vectors: up to 15 values past the end.
struct Widen {
  TINYFED_AVX2_INLINE static void Run(const int8_t* src, int n, int16_t* dst) { WidenInt8(src, n, dst); }
  TINYFED_AVX2_INLINE static void Fill(int16_t* dst, int n, int16_t value) {
    const __m256i v = _mm256_set1_epi16(value);
    for (int i = 0; i < n; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), v);
  }
};

// Multiplies `rows` int16 rows (stride packed_depth) by the packed weights and
// writes requantized int8 rows of out_c values.
// kRows is 1 or 4.
template <int kRows>
TINYFED_AVX2_INLINE void GemmBlock(const PreparedOp& op, const Requantizer& rq, const int16_t* rows, int8_t* out) {
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
    // One store loop after the sums (not a call per row): GCC then keeps
    // all eight accumulators in registers through the loop above.
    const __m256i acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    const int c0 = b * kChannelBlock;
    for (int r = 0; r < kRows; ++r) StoreChannelBlock(rq, out_c, acc[r][0], acc[r][1], c0, out + r * out_c + c0);
  }
}

TINYFED_AVX2 void Gemm(const PreparedOp& op, const int16_t* rows, int num_rows, int8_t* out) {
  const Requantizer rq = RequantizerOf(op);
  int r = 0;
  for (; r + kRowBlock <= num_rows; r += kRowBlock) {
    GemmBlock<kRowBlock>(op, rq, rows + static_cast<size_t>(r) * op.packed_depth,
                         out + static_cast<size_t>(r) * op.g.out_c);
  }
  for (; r < num_rows; ++r) {
    GemmBlock<1>(op, rq, rows + static_cast<size_t>(r) * op.packed_depth, out + static_cast<size_t>(r) * op.g.out_c);
  }
}

}  // namespace

TINYFED_AVX2 void Avx2Conv2D(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patches = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  const auto zp = static_cast<int16_t>(op.input_zero_point);
  const int pixels = op.g.out_h * op.g.out_w;
  for (int first = 0; first < pixels; first += kIm2colRows) {
    const int count = std::min(kIm2colRows, pixels - first);
    FillPatches<int16_t, Widen>(op, in, first, count, zp, patches);
    Gemm(op, patches, count, out + static_cast<size_t>(first) * op.g.out_c);
  }
}

TINYFED_AVX2 void Avx2FullyConnected(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* row = reinterpret_cast<int16_t*>(arena + op.scratch_offset);
  WidenInt8(in, op.g.in_c, row);
  if (op.packed_depth > op.g.in_c) row[op.g.in_c] = 0;
  Gemm(op, row, 1, out);
}

// vpdpbusd multiplies unsigned bytes by signed ones: patches hold x + 128,
// and the bias takes off (zero point + 128) * sum(weights).
constexpr int32_t kOffsetBinary = 128;

// Gemm weights for vpdpbusd: [channel block][depth quad][16 lanes][4 depths], zero padded.
void PrepareAvx512VnniGemm(PreparedOp* op, int depth) {
  const int out_c = op->g.out_c;
  op->packed_depth = RoundUp(depth, 4);
  const int blocks = RoundUp(out_c, kChannelBlock) / kChannelBlock;
  const int quads = op->packed_depth / 4;
  op->packed_int8_weights.assign(static_cast<size_t>(blocks) * quads * kChannelBlock * 4, 0);
  for (int oc = 0; oc < out_c; ++oc) {
    const int b = oc / kChannelBlock, lane = kLaneChannel[oc % kChannelBlock];
    for (int k = 0; k < depth; ++k) {
      const size_t idx = ((static_cast<size_t>(b) * quads + k / 4) * kChannelBlock + lane) * 4 + (k % 4);
      op->packed_int8_weights[idx] = op->weights[static_cast<size_t>(oc) * depth + k];
    }
  }
  FoldInputZeroPoint(op, depth, kOffsetBinary);
  PrepareRequantization(op, op->folded_bias);
  const int rows = op->kind == v1::Op::kConv2D ? std::min(kIm2colRows, op->g.out_h * op->g.out_w) : 1;
  op->scratch_bytes = static_cast<uint64_t>(op->packed_depth) * static_cast<uint64_t>(rows) + kOvershootBytes;
}

namespace {

// int8 x as the unsigned byte x + 128 (offset binary): vpdpbusd's unsigned operand.
struct ToOffsetBinary {
  // Writes and reads whole words or vectors: up to 31 bytes past the run
  // (the arena's slack, kOvershootBytes of scratch), which the callers'
  // left-to-right order overwrites. Runs of a few bytes (a first
  // convolution's taps of one channel) take one 8-byte word, not a vector:
  // the DS-CNN's first convolution ran about 6% faster so.
  TINYFED_AVX2_INLINE static void Run(const int8_t* src, int n, uint8_t* dst) {
    if (n <= 8) {
      uint64_t word;
      std::memcpy(&word, src, 8);
      word ^= 0x8080808080808080ull;
      std::memcpy(dst, &word, 8);
      return;
    }
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int i = 0; i < n; i += 32) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)), flip));
    }
  }
  TINYFED_AVX2_INLINE static void Fill(uint8_t* dst, int n, uint8_t value) {
    if (n <= 0) return;
    if (n <= 8) {
      const uint64_t word = 0x0101010101010101ull * value;
      std::memcpy(dst, &word, 8);
      return;
    }
    const __m256i v = _mm256_set1_epi8(static_cast<char>(value));
    for (int i = 0; i < n; i += 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), v);
  }
};

// Four bytes of a row at depth 4q..4q+3, in every 32-bit lane.
TINYFED_AVX2_INLINE __m256i BroadcastQuad(const uint8_t* row, int q) {
  int32_t quad;
  std::memcpy(&quad, row + 4 * q, 4);
  return _mm256_set1_epi32(quad);
}

// GemmBlock on vpdpbusd: unsigned offset-binary rows against the int8
// weights, 32 products an instruction. kRows is 1 or 4. A twin rather than a
// template argument of GemmBlock: a function compiled for AVX2 alone cannot
// inline VNNI instructions, so the loop lives in a VNNI-marked function.
template <int kRows>
TINYFED_AVX512_VNNI_INLINE void VnniGemmBlock(const PreparedOp& op, const Requantizer& rq, const uint8_t* rows,
                                              int8_t* out) {
  const int quads = op.packed_depth / 4;
  const int out_c = op.g.out_c;
  const int blocks = RoundUp(out_c, kChannelBlock) / kChannelBlock;
  for (int b = 0; b < blocks; ++b) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00;
    __m256i a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    const int8_t* w = op.packed_int8_weights.data() + static_cast<size_t>(b) * quads * 64;
    const uint8_t* r0 = rows;
    const uint8_t* r1 = rows + (kRows > 1 ? op.packed_depth : 0);
    const uint8_t* r2 = rows + (kRows > 2 ? 2 * op.packed_depth : 0);
    const uint8_t* r3 = rows + (kRows > 3 ? 3 * op.packed_depth : 0);
    for (int q = 0; q < quads; ++q) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + q * 64 + 32));
      const __m256i x0 = BroadcastQuad(r0, q);
      a00 = _mm256_dpbusd_epi32(a00, x0, w0);
      a01 = _mm256_dpbusd_epi32(a01, x0, w1);
      if constexpr (kRows > 1) {
        const __m256i x1 = BroadcastQuad(r1, q);
        a10 = _mm256_dpbusd_epi32(a10, x1, w0);
        a11 = _mm256_dpbusd_epi32(a11, x1, w1);
        const __m256i x2 = BroadcastQuad(r2, q);
        a20 = _mm256_dpbusd_epi32(a20, x2, w0);
        a21 = _mm256_dpbusd_epi32(a21, x2, w1);
        const __m256i x3 = BroadcastQuad(r3, q);
        a30 = _mm256_dpbusd_epi32(a30, x3, w0);
        a31 = _mm256_dpbusd_epi32(a31, x3, w1);
      }
    }
    // One store loop after the sums (not a call per row): GCC then keeps
    // all eight accumulators in registers through the loop above.
    const __m256i acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
    const int c0 = b * kChannelBlock;
    for (int r = 0; r < kRows; ++r) StoreChannelBlock(rq, out_c, acc[r][0], acc[r][1], c0, out + r * out_c + c0);
  }
}

TINYFED_AVX512_VNNI void VnniGemm(const PreparedOp& op, const uint8_t* rows, int num_rows, int8_t* out) {
  const Requantizer rq = RequantizerOf(op);
  int r = 0;
  for (; r + kRowBlock <= num_rows; r += kRowBlock) {
    VnniGemmBlock<kRowBlock>(op, rq, rows + static_cast<size_t>(r) * op.packed_depth,
                             out + static_cast<size_t>(r) * op.g.out_c);
  }
  for (; r < num_rows; ++r) {
    VnniGemmBlock<1>(op, rq, rows + static_cast<size_t>(r) * op.packed_depth,
                     out + static_cast<size_t>(r) * op.g.out_c);
  }
}

}  // namespace

TINYFED_AVX512_VNNI void Avx512VnniConv2D(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  auto* patches = arena + op.scratch_offset;
  const auto pad = static_cast<uint8_t>(static_cast<uint8_t>(op.input_zero_point) ^ 0x80);
  const int pixels = op.g.out_h * op.g.out_w;
  for (int first = 0; first < pixels; first += kIm2colRows) {
    const int count = std::min(kIm2colRows, pixels - first);
    FillPatches<uint8_t, ToOffsetBinary>(op, in, first, count, pad, patches);
    VnniGemm(op, patches, count, out + static_cast<size_t>(first) * op.g.out_c);
  }
}

TINYFED_AVX512_VNNI void Avx512VnniFullyConnected(const PreparedOp& op, uint8_t* arena) {
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  uint8_t* row = arena + op.scratch_offset;
  ToOffsetBinary::Run(in, op.g.in_c, row);
  std::fill(row + op.g.in_c, row + op.packed_depth, uint8_t{0});
  VnniGemm(op, row, 1, out);
}

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels
