// What the int8 kernels share: modular int32 arithmetic without undefined
// behaviour, the reference requantization, and their NEON (64-bit ARM, 4
// lanes) and AVX2 (x86-64, 8 lanes) counterparts, with the GEMM and
// depthwise blocking constants.
// Only functions marked TINYFED_AVX2 use AVX2, so the rest of the binary
// stays baseline x86-64 and the interpreter picks AVX2 at run time.
#ifndef TINYFED_MODELS_INTERNAL_KERNELS_ARITHMETIC_H_
#define TINYFED_MODELS_INTERNAL_KERNELS_ARITHMETIC_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "models/internal/kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>
// The ARMv8.2 dot-product instructions (SDOT), optional before ARMv8.4: only
// functions marked TINYFED_DOTPROD use them, chosen at run time.
#define TINYFED_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#define TINYFED_AVX2 __attribute__((target("avx2")))
#define TINYFED_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline
// AVX-512 VNNI on 256-bit vectors (AVX512VL): vpdpbusd, four byte products
// summed into each int32 lane. Ice Lake and later Intel cores, AMD Zen 4 and
// later; only functions marked TINYFED_AVX512_VNNI use it, chosen at run time.
#define TINYFED_AVX512_VNNI __attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512vnni")))
#define TINYFED_AVX512_VNNI_INLINE \
  __attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512vnni"), always_inline)) inline
#endif

namespace tinyfed::models::internal::kernels {

inline constexpr int kChannelBlock = 16;         // output channels per GEMM micro-kernel
inline constexpr int kRowBlock = 4;              // output pixels per GEMM micro-kernel
inline constexpr uint64_t kOvershootBytes = 32;  // how far past their end im2col copies and fills may write
inline constexpr int kIm2colRows = 64;           // output pixels widened per GEMM call, bounding scratch

// The lane order of a 16-channel block's sums in the AVX2 and VNNI kernels:
// channels 0-3 and 8-11 in the first vector, 4-7 and 12-15 in the second.
// vpunpck{l,h}wd + vpmaddwd leave a depthwise block's sums so, the GEMMs'
// weights are packed so, and vpackssdw of the two vectors restores channel
// order. It is its own inverse: lane l holds channel kLaneChannel[l], and
// channel c sits in lane kLaneChannel[c].
inline constexpr int kLaneChannel[kChannelBlock] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};

// The rows of PreparedOp::requantization, each 8 lanes wide.
enum RequantizationRow {
  kBiasRow,
  kMultiplierRow,
  kOddMultiplierRow,  // the odd lanes' multipliers in the even lanes, as vpmuldq reads them
  kLeftShiftRow,
  kRightShiftRow,
  kRoundingMaskRow,  // 2^right shift - 1
  kRoundingHalfRow,  // the mask halved, rounded down
  kRequantizationRows,
};

inline int RoundUp(int x, int m) { return (x + m - 1) / m * m; }

// Modular int32 arithmetic without undefined behaviour.
inline int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t WrapSub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}
inline int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

// Calls f(ky, kx, iy, ix) for each tap of the window whose top left corner
// is input (in_y0, in_x0) that lies inside the input, row by row: padded
// taps contribute nothing.
template <typename F>
inline void ForEachTapInside(const Geometry& g, int in_y0, int in_x0, F&& f) {
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    const int iy = in_y0 + ky;
    if (iy < 0 || iy >= g.in_h) continue;
    for (int kx = 0; kx < g.kernel_w; ++kx) {
      const int ix = in_x0 + kx;
      if (ix < 0 || ix >= g.in_w) continue;
      f(ky, kx, iy, ix);
    }
  }
}

inline int8_t Requantize(int32_t acc, const PreparedOp& op, int channel) {
  int32_t v = MultiplyByQuantizedMultiplier(
      acc, QuantizedMultiplier{op.multiplier[static_cast<size_t>(channel)], op.shift[static_cast<size_t>(channel)]});
  v = WrapAdd(v, op.output_zero_point);
  return static_cast<int8_t>(std::clamp(v, op.activation.min, op.activation.max));
}

#if defined(__aarch64__)

// NEON: sum of a[k] * b[k] over `n` int16 pairs, n a multiple of 8, in int32
// lanes that wrap as WrapAdd does: the same sum as the reference's loop, in
// any order.
inline int32_t NeonDot(const int16_t* a, const int16_t* b, int n) {
  int32x4_t lo = vdupq_n_s32(0), hi = lo;
  for (int k = 0; k < n; k += 8) {
    const int16x8_t x = vld1q_s16(a + k), w = vld1q_s16(b + k);
    lo = vmlal_s16(lo, vget_low_s16(x), vget_low_s16(w));
    hi = vmlal_high_s16(hi, x, w);
  }
  return vaddvq_s32(vaddq_s32(lo, hi));
}

// MultiplyByQuantizedMultiplier on 4 lanes, bit-exact: SQRDMULH is
// floor((a * b + 2^30) / 2^31) with the scalar version's one saturating case
// (see the AVX2 RoundingDoublingHighMul below for why the scalar equals that
// floor), and subtracting 1 from negative values before a rounding right
// shift (round half up) rounds their halves away from zero, as
// RoundingDivideByPOT does; the saturating subtraction leaves INT32_MIN,
// whose remainder is zero, exact.
inline int32x4_t NeonMultiplyByQuantizedMultiplier(int32x4_t x, QuantizedMultiplier q) {
  const int32x4_t left = vdupq_n_s32(q.shift > 0 ? q.shift : 0);
  const int32x4_t high = vqrdmulhq_s32(vshlq_s32(x, left), vdupq_n_s32(q.multiplier));
  const int32x4_t right = vdupq_n_s32(q.shift > 0 ? 0 : q.shift);  // negative: a right shift
  const int32x4_t fixup = vshrq_n_s32(vandq_s32(high, right), 31);
  return vrshlq_s32(vqaddq_s32(high, fixup), right);
}

// Adds the output zero point to 4 requantized lanes and clamps them to the
// activation's range.
inline int32x4_t NeonOffsetAndClamp(int32x4_t v, const PreparedOp& op) {
  v = vaddq_s32(v, vdupq_n_s32(op.output_zero_point));
  return vminq_s32(vmaxq_s32(v, vdupq_n_s32(op.activation.min)), vdupq_n_s32(op.activation.max));
}

// 16 clamped int32 lanes, in order, narrowed to int8.
inline int8x16_t NeonNarrow(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
  return vcombine_s8(vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b))),
                     vqmovn_s16(vcombine_s16(vqmovn_s32(c), vqmovn_s32(d))));
}

// Stores the first n (0..16) bytes of v: a tail of channels.
inline void NeonStoreFirstBytes(int8_t* dst, int8x16_t v, int n) {
  if (n >= 16) {
    vst1q_s8(dst, v);
    return;
  }
  int8_t bytes[16];
  vst1q_s8(bytes, v);
  std::memcpy(dst, bytes, static_cast<size_t>(n));
}

#endif

#if defined(__x86_64__)

// SaturatingRoundingDoublingHighMul on 8 lanes. The multiplier is never
// INT32_MIN (QuantizeMultiplier returns 0 or [2^30, 2^31)), so the one
// saturating case of the scalar version cannot occur. For p = a * b the
// scalar form is trunc((p + nudge) / 2^31) with nudge = 2^30 or 1 - 2^30 by
// the sign of p; both cases equal floor((p + 2^30) / 2^31), because for
// negative n, trunc(n / d) = floor((n + d - 1) / d). The result fits in 32
// bits, and bits 31..62 of a 64-bit value are the same under logical and
// arithmetic shifts, so a logical shift (all AVX2 has) gives it exactly.
// b_odd holds b's odd lanes in its even ones, as vpmuldq reads them.
TINYFED_AVX2_INLINE __m256i RoundingDoublingHighMul(__m256i a, __m256i b, __m256i b_odd) {
  const __m256i nudge = _mm256_set1_epi64x(int64_t{1} << 30);
  const __m256i even = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(a, b), nudge), 31);
  // The odd lanes' bits 31..62 shifted left once are the high half of their 64 bits.
  const __m256i odd = _mm256_slli_epi64(_mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), b_odd), nudge), 1);
  return _mm256_blend_epi32(even, odd, 0xAA);
}

TINYFED_AVX2_INLINE __m256i RoundingDoublingHighMul(__m256i a, __m256i b) {
  return RoundingDoublingHighMul(a, b, _mm256_srli_epi64(b, 32));
}

// models::RoundingDivideByPOT on 8 lanes: x / 2^exponent rounded half away
// from zero, as the quotient rounded down plus one where the remainder is
// above the threshold.
// mask is 2^exponent - 1 and half is mask / 2, rounded down.
TINYFED_AVX2_INLINE __m256i RoundingDivideByPOT(__m256i x, __m256i exponent, __m256i mask, __m256i half) {
  const __m256i remainder = _mm256_and_si256(x, mask);
  const __m256i threshold = _mm256_add_epi32(half, _mm256_srli_epi32(x, 31));
  // The comparison's all-ones is -1: subtracting it adds one.
  return _mm256_sub_epi32(_mm256_srav_epi32(x, exponent), _mm256_cmpgt_epi32(remainder, threshold));
}

TINYFED_AVX2_INLINE __m256i RoundingDivideByPOT(__m256i x, __m256i exponent) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, exponent), one);
  return RoundingDivideByPOT(x, exponent, mask, _mm256_srai_epi32(mask, 1));
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

TINYFED_AVX2_INLINE __m256i LoadRow(const int32_t* group, RequantizationRow row) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + row * 8));
}

// What requantizing an op's outputs takes besides its table, loaded once per
// call: stores through int8_t pointers may alias any object, so the compiler
// reloads whatever a loop reads through the op after each store.
struct Requantizer {
  const int32_t* table;  // op.requantization
  __m256i output_zero_point;
  __m128i min, max;  // the activation's range
  bool any_left_shift;
};

TINYFED_AVX2_INLINE Requantizer RequantizerOf(const PreparedOp& op) {
  return {.table = op.requantization.data(),
          .output_zero_point = _mm256_set1_epi32(op.output_zero_point),
          .min = _mm_set1_epi8(static_cast<char>(op.activation.min)),
          .max = _mm_set1_epi8(static_cast<char>(op.activation.max)),
          .any_left_shift = op.any_left_shift};
}

// MultiplyByQuantizedMultiplier of 8 sums plus their bias, with the
// constants of a group of the table, plus the output zero point.
// Loading the shifts' masks and the odd lanes' multipliers instead of
// deriving them saves five instructions a group: these kernels are bound by
// vector instructions, and requantization is half of a pointwise
// convolution's.
TINYFED_AVX2_INLINE __m256i RequantizeGroup(__m256i acc, const Requantizer& r, const int32_t* group) {
  __m256i x = _mm256_add_epi32(acc, LoadRow(group, kBiasRow));
  if (r.any_left_shift) x = _mm256_sllv_epi32(x, LoadRow(group, kLeftShiftRow));
  const __m256i high = RoundingDoublingHighMul(x, LoadRow(group, kMultiplierRow), LoadRow(group, kOddMultiplierRow));
  const __m256i rounded = RoundingDivideByPOT(high, LoadRow(group, kRightShiftRow), LoadRow(group, kRoundingMaskRow),
                                              LoadRow(group, kRoundingHalfRow));
  return _mm256_add_epi32(rounded, r.output_zero_point);
}

// The 16 sums of the block whose first channel is c (a multiple of 16; lo:
// lanes 0-7, in kLaneChannel order) requantized, packed to int8 in channel
// order and clamped to the activation. The packs saturate to ranges that
// hold the activation's, so clamping the bytes clamps the int32 values.
TINYFED_AVX2_INLINE __m128i RequantizeBlock(__m256i lo, __m256i hi, const Requantizer& r, int c) {
  const int32_t* block = r.table + static_cast<size_t>(c) * kRequantizationRows;
  const __m256i words =
      _mm256_packs_epi32(RequantizeGroup(lo, r, block), RequantizeGroup(hi, r, block + kRequantizationRows * 8));
  const __m128i bytes = _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
  return _mm_min_epi8(_mm_max_epi8(bytes, r.min), r.max);
}

// Packs 16 clamped int32 lanes (lo = first 8, hi = next 8) into 16 int8 in order.
TINYFED_AVX2_INLINE __m128i PackToInt8(__m256i lo, __m256i hi) {
  const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
  return _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}

// Stores the first n (0..16) bytes of v: a tail of channels. Fixed-size
// copies, because a memcpy of a variable length is a library call per pixel.
TINYFED_AVX2_INLINE void StoreFirstBytes(int8_t* dst, __m128i v, int n) {
  if (n >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
    return;
  }
  alignas(16) int8_t bytes[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(bytes), v);
  int i = 0;
  for (int size : {8, 4, 2, 1}) {
    if ((n & size) == 0) continue;
    std::memcpy(dst + i, bytes + i, static_cast<size_t>(size));
    i += size;
  }
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

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels

#endif  // TINYFED_MODELS_INTERNAL_KERNELS_ARITHMETIC_H_
