// Preparing an op for its kernels and picking them: the reference set
// everywhere, the vector sets where the CPU has them (models/internal/kernels/).
#include "models/internal/kernels.h"

#include <algorithm>
#include <cstring>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "models/internal/kernels/arithmetic.h"
#include "models/internal/kernels/ops.h"

namespace tinyfed::models::internal {

PreparedOp PrepareOp(const v1::Graph& graph, const v1::Op& op, const OpAnalysis& a) {
  PreparedOp p;
  p.kind = a.kind;
  p.g = a.geometry;
  p.input_zero_point = graph.tensors(a.input).zero_point();
  p.output_zero_point = graph.tensors(a.output).zero_point();
  p.activation = a.activation;
  const v1::Weights* w = nullptr;
  if (a.kind == v1::Op::kConv2D) w = &op.conv2d().weights();
  if (a.kind == v1::Op::kDepthwiseConv2D) w = &op.depthwise_conv2d().weights();
  if (a.kind == v1::Op::kFullyConnected) w = &op.fully_connected().weights();
  if (w != nullptr) {
    p.weights.resize(w->int8_values().size());
    std::memcpy(p.weights.data(), w->int8_values().data(), p.weights.size());
    p.bias.assign(w->int32_bias().begin(), w->int32_bias().end());
    for (const auto& m : a.channel_multipliers) {
      p.multiplier.push_back(m.multiplier);
      p.shift.push_back(m.shift);
    }
    p.any_left_shift = std::any_of(p.shift.begin(), p.shift.end(), [](int32_t v) { return v > 0; });
  }
  if (a.kind == v1::Op::kConcat) {
    const bool full_range = p.activation.min == -128 && p.activation.max == 127;
    for (size_t i = 0; i < a.inputs.size(); ++i) {
      ConcatPart part;
      const v1::Tensor& t = graph.tensors(a.inputs[i]);
      part.channels = static_cast<int>(t.shape().channels());
      part.zero_point = t.zero_point();
      part.multiplier = a.input_multipliers[i];
      // QuantizeMultiplier(1.0) is 2^30 shifted left once: x comes out as x.
      part.copies = part.multiplier.multiplier == 1 << 30 && part.multiplier.shift == 1 &&
                    part.zero_point == p.output_zero_point && full_range;
      p.concat_parts.push_back(part);
    }
  }
  if (a.kind == v1::Op::kAdd) {
    p.second_input_zero_point = graph.tensors(a.second_input).zero_point();
    p.input_multiplier = a.input_multiplier;
    p.second_input_multiplier = a.second_input_multiplier;
    p.output_multiplier = a.output_multiplier;
  }
  return p;
}

KernelFn ReferenceKernel(v1::Op::KindCase kind) {
  switch (kind) {
    case v1::Op::kConv2D:
      return &kernels::ReferenceConv2D;
    case v1::Op::kDepthwiseConv2D:
      return &kernels::ReferenceDepthwiseConv2D;
    case v1::Op::kFullyConnected:
      return &kernels::ReferenceFullyConnected;
    case v1::Op::kMaxPool:
      return &kernels::ReferencePool<true>;
    case v1::Op::kAveragePool:
    case v1::Op::kGlobalAveragePool:
      return &kernels::ReferencePool<false>;
    case v1::Op::kAdd:
      return &kernels::ReferenceAdd;
    case v1::Op::kReshape:
      return &kernels::ReferenceReshape;
    case v1::Op::kConcat:
      return &kernels::ReferenceConcat;
    case v1::Op::KIND_NOT_SET:
      break;
  }
  return nullptr;
}

bool CpuHasAvx2() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

namespace {

bool RunsSingleChannelConv([[maybe_unused]] const PreparedOp& op) {
#if defined(__x86_64__)
  return op.kind == v1::Op::kConv2D && kernels::FitsSingleChannelConv(op.g);
#else
  return false;
#endif
}

void PrepareSingleChannelConv([[maybe_unused]] PreparedOp* op) {
#if defined(__x86_64__)
  kernels::PrepareSingleChannelConv(op);
#endif
}

[[maybe_unused]] bool RunsVnniGemm(const PreparedOp& op) {
  return (op.kind == v1::Op::kConv2D && !RunsSingleChannelConv(op)) || op.kind == v1::Op::kFullyConnected;
}

}  // namespace

void PrepareAvx2(PreparedOp* op) {
  const Geometry& g = op->g;
  if (RunsSingleChannelConv(*op)) {
    PrepareSingleChannelConv(op);
  } else if (op->kind == v1::Op::kConv2D) {
    kernels::PackGemmWeights(op, g.kernel_h * g.kernel_w * g.in_c);
    op->scratch_bytes =
        uint64_t{2} * op->packed_depth * static_cast<uint64_t>(std::min(kernels::kIm2colRows, g.out_h * g.out_w)) +
        kernels::kOvershootBytes;
  } else if (op->kind == v1::Op::kFullyConnected) {
    kernels::PackGemmWeights(op, g.in_c);
    op->scratch_bytes = uint64_t{2} * op->packed_depth + kernels::kOvershootBytes;
  } else if (op->kind == v1::Op::kDepthwiseConv2D) {
    kernels::PackDepthwiseWeights(op);
  }
}

KernelFn Avx2Kernel(const PreparedOp& op) {
  const v1::Op::KindCase kind = op.kind;
#if defined(__x86_64__)
  switch (kind) {
    case v1::Op::kConv2D:
      return RunsSingleChannelConv(op) ? &kernels::Avx2SingleChannelConv : &kernels::Avx2Conv2D;
    case v1::Op::kDepthwiseConv2D:
      return &kernels::Avx2DepthwiseConv2D;
    case v1::Op::kFullyConnected:
      return &kernels::Avx2FullyConnected;
    case v1::Op::kMaxPool:
      return &kernels::Avx2MaxPool;
    case v1::Op::kAveragePool:
    case v1::Op::kGlobalAveragePool:
      return &kernels::Avx2AveragePool;
    case v1::Op::kAdd:
      return &kernels::Avx2Add;
    case v1::Op::kConcat:
      return &kernels::Avx2Concat;
    // A reshape is a clamped copy; the reference loop vectorizes as it is.
    case v1::Op::kReshape:
      return ReferenceKernel(kind);
    case v1::Op::KIND_NOT_SET:
      break;
  }
#endif
  return ReferenceKernel(kind);
}

bool CpuHasAvx512Vnni() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

void PrepareAvx512Vnni(PreparedOp* op) {
#if defined(__x86_64__)
  if (RunsVnniGemm(*op)) {
    const Geometry& g = op->g;
    kernels::PrepareAvx512VnniGemm(op, op->kind == v1::Op::kConv2D ? g.kernel_h * g.kernel_w * g.in_c : g.in_c);
    return;
  }
#endif
  PrepareAvx2(op);
}

KernelFn Avx512VnniKernel(const PreparedOp& op) {
#if defined(__x86_64__)
  if (RunsVnniGemm(op)) {
    return op.kind == v1::Op::kConv2D ? &kernels::Avx512VnniConv2D : &kernels::Avx512VnniFullyConnected;
  }
#endif
  return Avx2Kernel(op);
}

bool CpuHasNeon() {
#if defined(__aarch64__)
  return true;
#else
  return false;
#endif
}

void PrepareNeon([[maybe_unused]] PreparedOp* op) {
#if defined(__aarch64__)
  const Geometry& g = op->g;
  if (op->kind == v1::Op::kConv2D) kernels::PrepareNeonGemm(op, g.kernel_h * g.kernel_w * g.in_c);
  if (op->kind == v1::Op::kFullyConnected) kernels::PrepareNeonGemm(op, g.in_c);
  if (op->kind == v1::Op::kDepthwiseConv2D) kernels::PrepareNeonDepthwise(op);
#endif
}

bool CpuHasNeonDot() {
#if defined(__aarch64__) && defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
  return false;
#endif
}

void PrepareNeonDot([[maybe_unused]] PreparedOp* op) {
#if defined(__aarch64__)
  const Geometry& g = op->g;
  if (op->kind == v1::Op::kConv2D) return kernels::PrepareNeonDotGemm(op, g.kernel_h * g.kernel_w * g.in_c);
  if (op->kind == v1::Op::kFullyConnected) return kernels::PrepareNeonDotGemm(op, g.in_c);
  PrepareNeon(op);
#endif
}

KernelFn NeonDotKernel(const PreparedOp& op) {
#if defined(__aarch64__)
  if (op.kind == v1::Op::kConv2D) return &kernels::NeonDotConv2D;
  if (op.kind == v1::Op::kFullyConnected) return &kernels::NeonDotFullyConnected;
#endif
  return NeonKernel(op);
}

KernelFn NeonKernel(const PreparedOp& op) {
#if defined(__aarch64__)
  if (op.kind == v1::Op::kConv2D) return &kernels::NeonConv2D;
  if (op.kind == v1::Op::kFullyConnected) return &kernels::NeonFullyConnected;
  if (op.kind == v1::Op::kDepthwiseConv2D) return &kernels::NeonDepthwiseConv2D;
  if (op.kind == v1::Op::kMaxPool) return &kernels::NeonMaxPool;
  if (op.kind == v1::Op::kAveragePool || op.kind == v1::Op::kGlobalAveragePool) return &kernels::NeonAveragePool;
  if (op.kind == v1::Op::kAdd) return &kernels::NeonAdd;
  if (op.kind == v1::Op::kConcat) return &kernels::NeonConcat;
    // A reshape is a clamped copy; the reference loop vectorizes as it is.
#endif
  return ReferenceKernel(op.kind);
}

}  // namespace tinyfed::models::internal
