// The int8 inference engine for a model bundle's backbone, plus its float head.
//
// Create() does all the work that can fail or allocate: it validates the
// bundle, computes requantization multipliers, packs weights for the chosen
// kernels and plans one arena in which tensors whose lifetimes do not overlap
// share memory. Afterwards Invoke() and Predict() allocate nothing and cannot
// fail. One interpreter serves one thread at a time; it is not copyable.
//
//   auto interpreter = Interpreter::Create(bundle);
//   if (!interpreter.ok()) return interpreter.status();
//   Prediction p = (*interpreter)->Predict(features);
#ifndef TINYFED_MODELS_INTERPRETER_H_
#define TINYFED_MODELS_INTERPRETER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models {

enum class KernelSet {
  kBest,        // the CPU's vector kernels (on x86-64 AVX2, with VNNI where the core has
                // it; on 64-bit ARM NEON, with SDOT where the core has it), else portable
  kReference,   // portable C++ everywhere: the definition of correct output
  kAvx2,        // FAILED_PRECONDITION at Create() on a CPU without AVX2
  kAvx512Vnni,  // AVX2, Conv2D and FullyConnected on AVX-512 VNNI (256-bit vectors):
                // FAILED_PRECONDITION at Create() on a CPU without AVX512VL and VNNI
  kNeon,        // FAILED_PRECONDITION at Create() on a CPU that is not 64-bit ARM
  kNeonDot,     // NEON, Conv2D and FullyConnected on the ARMv8.2 dot-product instructions:
                // FAILED_PRECONDITION at Create() on a CPU without them
};

struct LayerInfo {
  std::string kind;  // "Conv2D", ...
  int output_height = 0, output_width = 0, output_channels = 0;
  uint64_t macs = 0;
  uint64_t weight_bytes = 0;
};

struct Prediction {
  int label = 0;
  float confidence = 0.0f;  // softmax probability of `label`
};

class Interpreter {
 public:
  // INVALID_ARGUMENT for a bundle that fails validation or is not int8.
  static absl::StatusOr<std::unique_ptr<Interpreter>> Create(const v1::ModelBundle& bundle,
                                                             KernelSet kernels = KernelSet::kBest);
  ~Interpreter();
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Raw features (input_size() values, HWC order) are normalized with the
  // bundle's input spec and quantized into the input tensor.
  void SetInput(std::span<const float> features);
  // The quantized input tensor, for callers that already hold int8 data.
  std::span<int8_t> quantized_input();
  // Runs the backbone (the int8 part) only.
  void Invoke();
  // The backbone's output (the embedding) of the last Invoke(), dequantized
  // on first use.
  std::span<const float> embedding();
  // Head logits on that embedding, computed on first use.
  std::span<const float> logits();
  // SetInput + Invoke + head + softmax.
  Prediction Predict(std::span<const float> features);

  size_t input_size() const;
  size_t embedding_size() const;
  int num_classes() const;
  uint64_t arena_bytes() const;         // peak arena, scratch included
  uint64_t weight_bytes() const;        // int8 weights and int32 biases of the backbone
  KernelSet kernel_set() const;         // what kBest chose: never kBest
  const char* kernel_set_name() const;  // "avx2", "avx512-vnni", "neon", "neon-dot" or "reference"
  const std::vector<LayerInfo>& layers() const;

 private:
  struct State;
  explicit Interpreter(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Per-layer cost of any valid bundle (float or int8), without building kernels.
absl::StatusOr<std::vector<LayerInfo>> DescribeLayers(const v1::ModelBundle& bundle);

}  // namespace tinyfed::models

#endif  // TINYFED_MODELS_INTERPRETER_H_
