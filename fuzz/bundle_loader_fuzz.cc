// libFuzzer target for the bundle loader: file bytes -> DecodeBundleFile, and
// the same bytes as a bare payload (so the fuzzer need not forge checksums to
// reach the parser and validator). Whatever is accepted is prepared and run
// with both kernel sets, which must agree; accepted float bundles run through
// the float network.
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/interpreter.h"

namespace {

void Run(const tinyfed::v1::ModelBundle& bundle) {
  if (bundle.precision() == tinyfed::v1::PRECISION_FLOAT32) {
    // One sample of the bundle's own shape through the float network.
    tinyfed::models::Dataset one;
    const auto& shape = bundle.input().shape();
    one.height = static_cast<int>(shape.height());
    one.width = static_cast<int>(shape.width());
    one.channels = static_cast<int>(shape.channels());
    one.features.assign(one.feature_size(), 0.25f);
    one.labels = {0};
    one.label_names.assign(bundle.label_names().begin(), bundle.label_names().end());
    if (!tinyfed::models::Evaluate(bundle, one).ok()) __builtin_trap();  // the loader accepted what cannot run
    return;
  }
  using tinyfed::models::Interpreter;
  using tinyfed::models::KernelSet;
  auto ref = Interpreter::Create(bundle, KernelSet::kReference);
  if (!ref.ok()) __builtin_trap();  // the loader accepted what Create refuses
  std::vector<float> features((*ref)->input_size(), 0.25f);
  (*ref)->Predict(features);
  auto fast = Interpreter::Create(bundle, KernelSet::kBest);
  if (!fast.ok()) __builtin_trap();
  (*fast)->Predict(features);
  const auto a = (*ref)->embedding(), b = (*fast)->embedding();
  if (std::memcmp(a.data(), b.data(), a.size_bytes()) != 0) __builtin_trap();
}

}  // namespace

// Hostile strings make protobuf log a line per input; the verdict is the status.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  if (auto b = tinyfed::models::DecodeBundleFile(bytes); b.ok()) Run(*b);
  if (auto b = tinyfed::models::DecodeBundlePayload(bytes); b.ok()) Run(*b);
  return 0;
}
