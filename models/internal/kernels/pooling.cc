// MaxPool, AveragePool and GlobalAveragePool (an average over the whole
// input): the reference loop nest, the NEON kernels 16 channels at a time,
// and the AVX2 kernels, 32 channels at a time and the rest 16 at a time.
#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal::kernels {
const OpAnalyzer kMaxPoolAnalyzer = {
    .shape = [](const OpSite& site,
                OpAnalysis* a) { return ApplyWindow(WindowOf(site.op.max_pool()), &a->geometry, site.where); },
    .requantize = SameQuantization,
};
const OpAnalyzer kAveragePoolAnalyzer = {
    .shape = [](const OpSite& site,
                OpAnalysis* a) { return ApplyWindow(WindowOf(site.op.average_pool()), &a->geometry, site.where); },
    .requantize = SameQuantization,
};
// A window over the whole input.
const OpAnalyzer kGlobalAveragePoolAnalyzer = {
    .shape =
        [](const OpSite&, OpAnalysis* a) {
          Geometry& g = a->geometry;
          g.kernel_h = g.stride_h = g.in_h;
          g.kernel_w = g.stride_w = g.in_w;
          g.out_h = g.out_w = 1;
          return absl::OkStatus();
        },
    .requantize = SameQuantization,
};

// The part of output pixel (oy, ox)'s window inside the input: taps
// [ky0, ky1) x [kx0, kx1) of the window whose corner is input (y0, x0).
struct InputWindow {
  int y0, x0, ky0, ky1, kx0, kx1;
};
inline InputWindow InputWindowAt(const Geometry& g, int oy, int ox) {
  const int y0 = oy * g.stride_h - g.pad_top, x0 = ox * g.stride_w - g.pad_left;
  return {
      y0, x0, std::max(0, -y0), std::min(g.kernel_h, g.in_h - y0), std::max(0, -x0), std::min(g.kernel_w, g.in_w - x0)};
}

// Max and average pooling skip padded positions, as TFLite does.
template <bool kMax>
void ReferencePool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const auto [y0, x0, ky_begin, ky_end, kx_begin, kx_end] = InputWindowAt(g, oy, ox);
      for (int c = 0; c < g.in_c; ++c) {
        int32_t acc = kMax ? -128 : 0;
        int32_t count = 0;
        for (int ky = ky_begin; ky < ky_end; ++ky) {
          for (int kx = kx_begin; kx < kx_end; ++kx) {
            const int32_t x = in[(static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c];
            acc = kMax ? std::max(acc, x) : acc + x;
            ++count;
          }
        }
        if (!kMax) {
          count = std::max(count, 1);
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
        }
        out[(static_cast<size_t>(oy) * g.out_w + ox) * g.out_c + c] =
            static_cast<int8_t>(std::clamp(acc, op.activation.min, op.activation.max));
      }
    }
  }
}

template void ReferencePool<true>(const PreparedOp&, uint8_t*);
template void ReferencePool<false>(const PreparedOp&, uint8_t*);

#if defined(__aarch64__)

void NeonMaxPool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const int8x16_t lo = vdupq_n_s8(static_cast<int8_t>(op.activation.min));
  const int8x16_t hi = vdupq_n_s8(static_cast<int8_t>(op.activation.max));
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const auto [y0, x0, ky0, ky1, kx0, kx1] = InputWindowAt(g, oy, ox);
      int8_t* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      for (int c = 0; c < g.in_c; c += 16) {
        int8x16_t m = vdupq_n_s8(-128);
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            m = vmaxq_s8(m, vld1q_s8(in + (static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c));
          }
        }
        NeonStoreFirstBytes(dst + c, vminq_s8(vmaxq_s8(m, lo), hi), g.in_c - c);
      }
    }
  }
}

// Sums in int32 lanes, then the reference's rounding division per channel.
void NeonAveragePool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const auto [y0, x0, ky0, ky1, kx0, kx1] = InputWindowAt(g, oy, ox);
      const int count = std::max(1, (ky1 - ky0) * (kx1 - kx0));
      int8_t* dst = out + (static_cast<size_t>(oy) * g.out_w + ox) * g.out_c;
      for (int c = 0; c < g.in_c; c += 16) {
        int32x4_t s[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            const int8x16_t v = vld1q_s8(in + (static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c);
            const int16x8_t low = vmovl_s8(vget_low_s8(v)), high = vmovl_high_s8(v);
            s[0] = vaddw_s16(s[0], vget_low_s16(low));
            s[1] = vaddw_high_s16(s[1], low);
            s[2] = vaddw_s16(s[2], vget_low_s16(high));
            s[3] = vaddw_high_s16(s[3], high);
          }
        }
        int32_t acc[16];
        for (int i = 0; i < 4; ++i) vst1q_s32(acc + 4 * i, s[i]);
        for (int i = 0; i < 16 && c + i < g.in_c; ++i) {
          const int32_t a = acc[i] > 0 ? (acc[i] + count / 2) / count : (acc[i] - count / 2) / count;
          dst[c + i] = static_cast<int8_t>(std::clamp(a, op.activation.min, op.activation.max));
        }
      }
    }
  }
}

#endif  // __aarch64__

#if defined(__x86_64__)

TINYFED_AVX2 void Avx2MaxPool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const __m256i lo = _mm256_set1_epi8(static_cast<int8_t>(op.activation.min));
  const __m256i hi = _mm256_set1_epi8(static_cast<int8_t>(op.activation.max));
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const auto [y0, x0, ky0, ky1, kx0, kx1] = InputWindowAt(g, oy, ox);
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
      // The last 1..31 channels, 16 at a time: the loads may read up to 15
      // bytes past the input (the arena's slack), the stores write only the
      // channels there are. Narrow maps (the first pooling of a small CNN has
      // 4 to 6 channels) take this path for every pixel.
      for (; c < g.in_c; c += 16) {
        __m128i m = _mm_set1_epi8(-128);
        for (int ky = ky0; ky < ky1; ++ky) {
          for (int kx = kx0; kx < kx1; ++kx) {
            const int8_t* src = in + (static_cast<size_t>(y0 + ky) * g.in_w + (x0 + kx)) * g.in_c + c;
            m = _mm_max_epi8(m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
          }
        }
        m = _mm_min_epi8(_mm_max_epi8(m, _mm256_castsi256_si128(lo)), _mm256_castsi256_si128(hi));
        StoreFirstBytes(dst + c, m, g.in_c - c);
      }
    }
  }
}

// Average pooling: int32 sums in SIMD, then TFLite's rounding division. The
// division goes through double, which is exact here: |numerator| < 2^24
// (window <= 2^16 elements of |x| <= 128), so the rounded quotient never
// crosses an integer.
TINYFED_AVX2 void Avx2AveragePool(const PreparedOp& op, uint8_t* arena) {
  const Geometry& g = op.g;
  const auto* in = reinterpret_cast<const int8_t*>(arena + op.input_offset);
  auto* out = reinterpret_cast<int8_t*>(arena + op.output_offset);
  const __m256i act_lo = _mm256_set1_epi32(op.activation.min);
  const __m256i act_hi = _mm256_set1_epi32(op.activation.max);
  for (int oy = 0; oy < g.out_h; ++oy) {
    for (int ox = 0; ox < g.out_w; ++ox) {
      const auto [y0, x0, ky0, ky1, kx0, kx1] = InputWindowAt(g, oy, ox);
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

#endif  // __x86_64__

}  // namespace tinyfed::models::internal::kernels
