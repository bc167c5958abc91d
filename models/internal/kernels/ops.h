// One file per kernel, as tflite-micro keeps them: each op's analysis (its
// parameter checks and int8 constants, run by graph.h), its reference kernel
// (the definition of correct output), its NEON kernel (on 64-bit ARM) and
// AVX2 kernel (on x86-64), each bit-exact against the reference
// (kernels_test.cc), and what they prepare. Reshape, a clamped copy, has the
// reference kernel only. models/internal/kernels.h dispatches to the kernels.
#ifndef TINYFED_MODELS_INTERNAL_KERNELS_OPS_H_
#define TINYFED_MODELS_INTERNAL_KERNELS_OPS_H_

#include <cstdint>

#include "models/internal/kernels.h"
#include "models/internal/op_analysis.h"

namespace tinyfed::models::internal::kernels {

// conv.cc
extern const OpAnalyzer kConv2DAnalyzer;
extern const OpAnalyzer kFullyConnectedAnalyzer;
void ReferenceConv2D(const PreparedOp& op, uint8_t* arena);
void ReferenceFullyConnected(const PreparedOp& op, uint8_t* arena);
// Gemm weights: [channel block][depth pair][16 lanes][2 depths], zero
// padded, the bias with the input zero point folded in, and the
// requantization table.
void PackGemmWeights(PreparedOp* op, int depth);
// folded_bias: the bias minus (input_zero_point + patch_offset) * sum(weights)
// per channel, for kernels whose patches hold x + patch_offset.
void FoldInputZeroPoint(PreparedOp* op, int depth, int32_t patch_offset);
// requantization.cc: requantization with `bias` (one per output channel),
// for RequantizeBlock.
void PrepareRequantization(PreparedOp* op, const std::vector<int32_t>& bias);
// depthwise_conv.cc
extern const OpAnalyzer kDepthwiseConv2DAnalyzer;
void ReferenceDepthwiseConv2D(const PreparedOp& op, uint8_t* arena);
// Packs the AVX2 kernel's weights and sets its scratch: the padded input,
// each pixel interleaved with its right neighbour.
void PackDepthwiseWeights(PreparedOp* op);
// pooling.cc: kMax, or the average
extern const OpAnalyzer kMaxPoolAnalyzer;
extern const OpAnalyzer kAveragePoolAnalyzer;
extern const OpAnalyzer kGlobalAveragePoolAnalyzer;
template <bool kMax>
void ReferencePool(const PreparedOp& op, uint8_t* arena);
// add.cc
extern const OpAnalyzer kAddAnalyzer;
void ReferenceAdd(const PreparedOp& op, uint8_t* arena);
// concat.cc
extern const OpAnalyzer kConcatAnalyzer;
void ReferenceConcat(const PreparedOp& op, uint8_t* arena);
// reshape.cc
extern const OpAnalyzer kReshapeAnalyzer;
void ReferenceReshape(const PreparedOp& op, uint8_t* arena);

#if defined(__aarch64__)
// NEON, which every 64-bit ARM core has: int16 products summed in int32
// lanes (the reference's sums exactly), requantized as the reference does.
// Weights widened to int16 at prepare time, each output channel's (a
// depthwise tap's channels) zero padded to a multiple of 8.
void PrepareNeonGemm(PreparedOp* op, int depth);
void NeonConv2D(const PreparedOp& op, uint8_t* arena);
void NeonFullyConnected(const PreparedOp& op, uint8_t* arena);
void PrepareNeonDepthwise(PreparedOp* op);
void NeonDepthwiseConv2D(const PreparedOp& op, uint8_t* arena);
// 16 channels (bytes) at a time; tails load up to 15 bytes past their input,
// into the arena's slack, as the AVX2 kernels do.
void NeonMaxPool(const PreparedOp& op, uint8_t* arena);
void NeonAveragePool(const PreparedOp& op, uint8_t* arena);
void NeonAdd(const PreparedOp& op, uint8_t* arena);
void NeonConcat(const PreparedOp& op, uint8_t* arena);
// With SDOT (CpuHasNeonDot): int8 patches against int8 weights, 16 depths
// per instruction, the input zero point folded into the bias (folded_bias),
// so padded taps hold the zero point. Weights per output channel, zero
// padded to a multiple of 16.
void PrepareNeonDotGemm(PreparedOp* op, int depth);
void NeonDotConv2D(const PreparedOp& op, uint8_t* arena);
void NeonDotFullyConnected(const PreparedOp& op, uint8_t* arena);
#endif

#if defined(__x86_64__)
// single_channel_conv.cc: a Conv2D of one input channel, stride 1 across and
// at most 16 output channels, with 8 output pixels in the SIMD lanes.
bool FitsSingleChannelConv(const Geometry& g);
void PrepareSingleChannelConv(PreparedOp* op);
void Avx2SingleChannelConv(const PreparedOp& op, uint8_t* arena);

void Avx2Conv2D(const PreparedOp& op, uint8_t* arena);
// With AVX-512 VNNI (CpuHasAvx512Vnni): offset-binary patches (x + 128 as
// unsigned bytes, the zero point's where the window leaves the input)
// against int8 weights, four depths per 32-bit lane; the offset and the input
// zero point folded into the bias (folded_bias). Weights
// [channel block][depth quad][16 lanes][4 depths], zero padded.
void PrepareAvx512VnniGemm(PreparedOp* op, int depth);
void Avx512VnniConv2D(const PreparedOp& op, uint8_t* arena);
void Avx512VnniFullyConnected(const PreparedOp& op, uint8_t* arena);
void Avx2FullyConnected(const PreparedOp& op, uint8_t* arena);
void Avx2DepthwiseConv2D(const PreparedOp& op, uint8_t* arena);
void Avx2MaxPool(const PreparedOp& op, uint8_t* arena);
void Avx2AveragePool(const PreparedOp& op, uint8_t* arena);
void Avx2Add(const PreparedOp& op, uint8_t* arena);
void Avx2Concat(const PreparedOp& op, uint8_t* arena);
#endif

}  // namespace tinyfed::models::internal::kernels

#endif  // TINYFED_MODELS_INTERNAL_KERNELS_OPS_H_
