#include "tinyfed/models/interpreter.h"

#include <algorithm>
#include <cmath>
#include <new>

#include "absl/strings/str_cat.h"
#include "models/internal/graph.h"
#include "models/internal/kernels.h"
#include "models/internal/memory_planner.h"
#include "tinyfed/models/quantization.h"

namespace tinyfed::models {
namespace {

struct AlignedDelete {
  void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{internal::kArenaAlignment}); }
};

std::vector<LayerInfo> LayersOf(const internal::GraphAnalysis& analysis) {
  std::vector<LayerInfo> layers;
  for (const auto& op : analysis.ops) {
    LayerInfo info;
    info.kind = internal::OpKindName(op.kind);
    info.output_height = op.geometry.out_h;
    info.output_width = op.geometry.out_w;
    info.output_channels = op.geometry.out_c;
    info.macs = op.macs;
    info.weight_bytes = op.weight_bytes;
    layers.push_back(std::move(info));
  }
  return layers;
}

}  // namespace

struct Interpreter::State {
  std::vector<internal::PreparedOp> ops;
  std::vector<internal::KernelFn> kernels;
  std::unique_ptr<uint8_t[], AlignedDelete> arena;
  uint64_t arena_bytes = 0;
  uint64_t weight_bytes = 0;
  KernelSet kernel_set = KernelSet::kReference;
  std::vector<LayerInfo> layers;
  // Input normalization, expanded to one (scale, offset) per channel:
  // q = round(x * scale + offset) + zero_point.
  std::vector<float> input_scale, input_offset;
  int input_channels = 1;
  int32_t input_zero_point = 0;
  uint64_t input_offset_bytes = 0;
  size_t input_size = 0;
  uint64_t output_offset_bytes = 0;
  AffineQuantization output_quantization;
  // Head.
  int num_classes = 0;
  std::vector<float> head_weights, head_bias;
  std::vector<float> embedding, logits;
  bool embedding_ready = false, logits_ready = false;
};

Interpreter::Interpreter(std::unique_ptr<State> state) : state_(std::move(state)) {}
Interpreter::~Interpreter() = default;

absl::StatusOr<std::unique_ptr<Interpreter>> Interpreter::Create(const v1::ModelBundle& bundle, KernelSet kernels) {
  auto analysis = internal::AnalyzeBundle(bundle);
  if (!analysis.ok()) return analysis.status();
  if (bundle.precision() != v1::PRECISION_INT8) {
    return absl::InvalidArgumentError(
        "bundle holds float32 weights; quantize it (tinyfed model quantize) before running it");
  }
  if (kernels == KernelSet::kAvx2 && !internal::CpuHasAvx2()) {
    return absl::FailedPreconditionError("AVX2 kernels requested but this CPU has no AVX2");
  }
  if (kernels == KernelSet::kAvx512Vnni && !internal::CpuHasAvx512Vnni()) {
    return absl::FailedPreconditionError("AVX-512 VNNI kernels requested but this CPU has no AVX512VL and VNNI");
  }
  if (kernels == KernelSet::kNeon && !internal::CpuHasNeon()) {
    return absl::FailedPreconditionError("NEON kernels requested but this is not a 64-bit ARM CPU");
  }
  if (kernels == KernelSet::kNeonDot && !internal::CpuHasNeonDot()) {
    return absl::FailedPreconditionError("NEON dot-product kernels requested but this CPU has no SDOT");
  }
  if (kernels == KernelSet::kBest) {
    kernels = internal::CpuHasAvx512Vnni() ? KernelSet::kAvx512Vnni
              : internal::CpuHasAvx2()     ? KernelSet::kAvx2
              : internal::CpuHasNeonDot()  ? KernelSet::kNeonDot
              : internal::CpuHasNeon()     ? KernelSet::kNeon
                                           : KernelSet::kReference;
  }
  auto state = std::make_unique<State>();
  state->kernel_set = kernels;
  state->layers = LayersOf(*analysis);
  state->weight_bytes = analysis->total_weight_bytes;
  const v1::Graph& graph = bundle.backbone();

  std::vector<internal::BufferRequest> requests;
  for (const auto& t : analysis->tensors) {
    // Tensors nobody writes get no memory.
    requests.push_back({t.first_op == -2 ? 0 : t.bytes, t.first_op, t.last_op});
  }
  for (int i = 0; i < graph.ops_size(); ++i) {
    const auto& a = analysis->ops[static_cast<size_t>(i)];
    internal::PreparedOp op = internal::PrepareOp(graph, graph.ops(i), a);
    switch (kernels) {
      case KernelSet::kAvx2:
        internal::PrepareAvx2(&op);
        state->kernels.push_back(internal::Avx2Kernel(op));
        break;
      case KernelSet::kAvx512Vnni:
        internal::PrepareAvx512Vnni(&op);
        state->kernels.push_back(internal::Avx512VnniKernel(op));
        break;
      case KernelSet::kNeon:
        internal::PrepareNeon(&op);
        state->kernels.push_back(internal::NeonKernel(op));
        break;
      case KernelSet::kNeonDot:
        internal::PrepareNeonDot(&op);
        state->kernels.push_back(internal::NeonDotKernel(op));
        break;
      case KernelSet::kBest:  // resolved above
      case KernelSet::kReference:
        state->kernels.push_back(internal::ReferenceKernel(op.kind));
        break;
    }
    requests.push_back({op.scratch_bytes, i, i});
    state->ops.push_back(std::move(op));
  }
  const internal::MemoryPlan plan = internal::PlanMemory(requests);
  if (plan.arena_bytes > internal::kMaxArenaBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model needs an arena of ", plan.arena_bytes,
                                                   " bytes, more than the limit of ", internal::kMaxArenaBytes));
  }
  for (size_t i = 0; i < state->ops.size(); ++i) {
    auto& op = state->ops[i];
    const auto& a = analysis->ops[i];
    op.input_offset = plan.offsets[static_cast<size_t>(a.input)];
    if (a.second_input >= 0) op.second_input_offset = plan.offsets[static_cast<size_t>(a.second_input)];
    for (size_t k = 0; k < op.concat_parts.size(); ++k) {
      op.concat_parts[k].offset = plan.offsets[static_cast<size_t>(a.inputs[k])];
    }
    op.output_offset = plan.offsets[static_cast<size_t>(a.output)];
    op.scratch_offset = plan.offsets[analysis->tensors.size() + i];
  }
  state->arena_bytes = plan.arena_bytes + internal::kArenaSlackBytes;
  state->arena.reset(new (std::align_val_t{internal::kArenaAlignment}) uint8_t[state->arena_bytes]());

  const v1::Tensor& in = graph.tensors(static_cast<int>(graph.input()));
  state->input_size = internal::Elements(in.shape());
  state->input_channels = static_cast<int>(in.shape().channels());
  state->input_zero_point = in.zero_point();
  state->input_offset_bytes = plan.offsets[graph.input()];
  const v1::InputSpec& spec = bundle.input();
  for (int c = 0; c < state->input_channels; ++c) {
    const int i = spec.mean_size() == 1 ? 0 : c;
    // (x - mean) / stddev / scale = x * a + b
    const float a = 1.0f / (spec.stddev(i) * in.scale());
    state->input_scale.push_back(a);
    state->input_offset.push_back(-spec.mean(i) * a);
  }
  const v1::Tensor& out = graph.tensors(static_cast<int>(graph.output()));
  state->output_offset_bytes = plan.offsets[graph.output()];
  state->output_quantization = {out.scale(), out.zero_point()};
  state->embedding.resize(internal::Elements(out.shape()));
  state->num_classes = static_cast<int>(bundle.head().num_classes());
  state->head_weights.assign(bundle.head().weights().begin(), bundle.head().weights().end());
  state->head_bias.assign(bundle.head().bias().begin(), bundle.head().bias().end());
  state->logits.resize(static_cast<size_t>(state->num_classes));
  return std::unique_ptr<Interpreter>(new Interpreter(std::move(state)));
}

void Interpreter::SetInput(std::span<const float> features) {
  State& s = *state_;
  auto* q = reinterpret_cast<int8_t*>(s.arena.get() + s.input_offset_bytes);
  const size_t n = std::min(features.size(), s.input_size);
  for (size_t i = 0; i < n; ++i) {
    const size_t c = i % static_cast<size_t>(s.input_channels);
    const float v = features[i] * s.input_scale[c] + s.input_offset[c];
    const int32_t r = std::isfinite(v) ? RoundHalfAwayFromZero(std::clamp(v, -1e6f, 1e6f)) : 0;
    q[i] = static_cast<int8_t>(std::clamp(r + s.input_zero_point, -128, 127));
  }
  std::fill(q + n, q + s.input_size, static_cast<int8_t>(s.input_zero_point));
}

std::span<int8_t> Interpreter::quantized_input() {
  return {reinterpret_cast<int8_t*>(state_->arena.get() + state_->input_offset_bytes), state_->input_size};
}

void Interpreter::Invoke() {
  State& s = *state_;
  for (size_t i = 0; i < s.ops.size(); ++i) s.kernels[i](s.ops[i], s.arena.get());
  s.embedding_ready = s.logits_ready = false;
}

std::span<const float> Interpreter::embedding() {
  State& s = *state_;
  if (!s.embedding_ready) {
    const auto* out = reinterpret_cast<const int8_t*>(s.arena.get() + s.output_offset_bytes);
    for (size_t i = 0; i < s.embedding.size(); ++i) {
      s.embedding[i] = DequantizeValue(out[i], s.output_quantization);
    }
    s.embedding_ready = true;
  }
  return s.embedding;
}

std::span<const float> Interpreter::logits() {
  State& s = *state_;
  if (!s.logits_ready) {
    const auto emb = embedding();
    for (int c = 0; c < s.num_classes; ++c) {
      float acc = s.head_bias[static_cast<size_t>(c)];
      const float* w = s.head_weights.data() + static_cast<size_t>(c) * emb.size();
      for (size_t i = 0; i < emb.size(); ++i) acc += w[i] * emb[i];
      s.logits[static_cast<size_t>(c)] = acc;
    }
    s.logits_ready = true;
  }
  return s.logits;
}

Prediction Interpreter::Predict(std::span<const float> features) {
  SetInput(features);
  Invoke();
  const auto logits = this->logits();
  const auto best = std::max_element(logits.begin(), logits.end());
  float total = 0.0f;
  for (float l : logits) total += std::exp(l - *best);
  return {static_cast<int>(best - logits.begin()), 1.0f / total};
}

size_t Interpreter::input_size() const { return state_->input_size; }
size_t Interpreter::embedding_size() const { return state_->embedding.size(); }
int Interpreter::num_classes() const { return state_->num_classes; }
uint64_t Interpreter::arena_bytes() const { return state_->arena_bytes; }
uint64_t Interpreter::weight_bytes() const { return state_->weight_bytes; }
KernelSet Interpreter::kernel_set() const { return state_->kernel_set; }
const char* Interpreter::kernel_set_name() const {
  switch (state_->kernel_set) {
    case KernelSet::kAvx2:
      return "avx2";
    case KernelSet::kAvx512Vnni:
      return "avx512-vnni";
    case KernelSet::kNeon:
      return "neon";
    case KernelSet::kNeonDot:
      return "neon-dot";
    case KernelSet::kBest:
    case KernelSet::kReference:
      break;
  }
  return "reference";
}
const std::vector<LayerInfo>& Interpreter::layers() const { return state_->layers; }

absl::StatusOr<std::vector<LayerInfo>> DescribeLayers(const v1::ModelBundle& bundle) {
  auto analysis = internal::AnalyzeBundle(bundle);
  if (!analysis.ok()) return analysis.status();
  return LayersOf(*analysis);
}

}  // namespace tinyfed::models
