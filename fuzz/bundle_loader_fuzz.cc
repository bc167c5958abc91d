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

#include "models/internal/float_network.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/interpreter.h"

namespace {

void Run(const tinyfed::v1::ModelBundle& bundle) {
  if (bundle.precision() == tinyfed::v1::PRECISION_FLOAT32) {
    auto net = tinyfed::models::internal::FloatNetwork::Create(bundle);
    if (!net.ok()) __builtin_trap();
    std::vector<float> features(net->input_size(), 0.25f);
    net->Forward(features, 1);
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
