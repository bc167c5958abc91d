// int8 kernels. Each op has a portable reference kernel, written to mirror
// TFLite's reference_integer_ops, and vector kernels (AVX2; NEON, with or
// without SDOT) that must produce the same bytes (kernels_test.cc checks
// them against each other). Prepare-time data
// (multipliers, packed weights, scratch sizes) lives in PreparedOp; the Eval
// functions only read it and write into the arena, and never allocate.
//
// Integer accumulation wraps modulo 2^32 in both kernel sets, so even a hostile
// model whose sums overflow gives the same bytes on both and never reaches
// undefined behaviour.
#ifndef TINYFED_MODELS_INTERNAL_KERNELS_H_
#define TINYFED_MODELS_INTERNAL_KERNELS_H_

#include <cstdint>
#include <vector>

#include "models/internal/graph.h"

namespace tinyfed::models::internal {

// One input of a Concat.
struct ConcatPart {
  uint64_t offset = 0;  // in the arena
  int channels = 0;
  int32_t zero_point = 0;
  QuantizedMultiplier multiplier;  // the input's scale / the output's
  bool copies = false;             // already on the output's grid: the same bytes
};

struct PreparedOp {
  v1::Op::KindCase kind = v1::Op::KIND_NOT_SET;
  Geometry g;
  int32_t input_zero_point = 0;
  int32_t second_input_zero_point = 0;
  int32_t output_zero_point = 0;
  ActivationRange activation;
  // Weighted ops: OHWI / HWC / OI weights, int32 bias and per-channel
  // multipliers split into arrays so SIMD code can load them.
  std::vector<int8_t> weights;
  std::vector<int32_t> bias;
  std::vector<int32_t> multiplier;
  std::vector<int32_t> shift;
  // Add.
  QuantizedMultiplier input_multiplier, second_input_multiplier, output_multiplier;
  std::vector<ConcatPart> concat_parts;
  // Arena offsets.
  uint64_t input_offset = 0, second_input_offset = 0, output_offset = 0, scratch_offset = 0;
  uint64_t scratch_bytes = 0;
  // Vector kernels: weights widened to int16 and packed for the GEMM
  // micro-kernel (AVX2, NEON), or int8 for SDOT and VNNI, and the bias
  // minus (input_zero_point + the kernel's patch offset) * sum(weights) per
  // channel.
  std::vector<int16_t> packed_weights;
  std::vector<int8_t> packed_int8_weights;
  std::vector<int32_t> folded_bias;
  int packed_depth = 0;         // inner-product length rounded up to the kernel's step
  bool any_left_shift = false;  // some channel multiplier is 1 or more
  // AVX2 and VNNI convolutions: bias, multiplier and shifts of each output,
  // in lane order (kernels/arithmetic.h: kLaneChannel, RequantizationRow).
  std::vector<int32_t> requantization;
};

// Fills everything but arena offsets from the analysis and the bundle's op.
PreparedOp PrepareOp(const v1::Graph& graph, const v1::Op& op, const OpAnalysis& analysis);

using KernelFn = void (*)(const PreparedOp& op, uint8_t* arena);

KernelFn ReferenceKernel(v1::Op::KindCase kind);

// True when this CPU runs AVX2 (and the binary was built for x86-64).
bool CpuHasAvx2();
// Packs weights and sets scratch_bytes for the AVX2 kernel of the op (its
// kind, and for a Conv2D its shape, pick the kernel).
void PrepareAvx2(PreparedOp* op);
KernelFn Avx2Kernel(const PreparedOp& op);
// True when this CPU runs AVX-512 VNNI on 256-bit vectors (AVX512VL, and
// the OS saves the AVX-512 state): Ice Lake and later Intel cores, AMD Zen 4
// and later.
bool CpuHasAvx512Vnni();
// The AVX2 kernels with Conv2D (but the single-channel one) and
// FullyConnected on vpdpbusd.
void PrepareAvx512Vnni(PreparedOp* op);
KernelFn Avx512VnniKernel(const PreparedOp& op);

// True on 64-bit ARM, where NEON is part of the architecture.
bool CpuHasNeon();
// As PrepareAvx2 and Avx2Kernel, for the NEON kernels (Reshape runs its
// reference kernel).
void PrepareNeon(PreparedOp* op);
KernelFn NeonKernel(const PreparedOp& op);
// True on 64-bit ARM cores with the dot-product instructions (the kernel's
// HWCAP_ASIMDDP): Cortex-A55, A76 and later, not the Raspberry Pi 3's and
// 4's A53 and A72.
bool CpuHasNeonDot();
// The NEON kernels with Conv2D and FullyConnected on SDOT.
void PrepareNeonDot(PreparedOp* op);
KernelFn NeonDotKernel(const PreparedOp& op);

}  // namespace tinyfed::models::internal

#endif  // TINYFED_MODELS_INTERNAL_KERNELS_H_
