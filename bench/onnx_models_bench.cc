// The four reference models of the ONNX import, as a gateway runs them:
// imported from the files PyTorch exported (model_import/testdata), PTQ to
// int8, batch 1, one thread (interpreter_run.h). bench/torch_peer.py times
// PyTorch on the same modules in the same run, float32 and int8 (qnnpack).
//   BM_Onnx/<model>/<kernels>   niid_cnn, ds_cnn, mobilenet_v1_025, resnet8
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/interpreter_run.h"
#include "tinyfed/model_import/onnx_import.h"
#include "tinyfed/models/quantize.h"

namespace tinyfed::models {
namespace {

struct Reference {
  const char* name;
  int c, h, w, classes;
};
constexpr Reference kReferences[] = {{"niid_cnn", 1, 28, 28, 10},
                                     {"ds_cnn", 1, 49, 10, 12},
                                     {"mobilenet_v1_025", 3, 96, 96, 2},
                                     {"resnet8", 3, 32, 32, 10}};

v1::ModelBundle Int8Reference(const Reference& r) {
  std::vector<std::string> labels;
  for (int i = 0; i < r.classes; ++i) labels.push_back(std::to_string(i));
  auto bundle =
      model_import::ImportOnnx(std::filesystem::path(TINYFED_ONNX_TESTDATA) / (std::string(r.name) + ".onnx"),
                               {.embedding = "embedding", .labels = labels, .mean = {}, .stddev = {}, .name = ""});
  if (!bundle.ok()) std::abort();
  // Calibrated on the inputs the import test uses: (i * 2654435761 mod 2^32) / 2^32.
  Dataset calibration;
  calibration.height = r.h;
  calibration.width = r.w;
  calibration.channels = r.c;
  calibration.label_names = labels;
  const size_t n = 32, size = static_cast<size_t>(r.c * r.h * r.w);
  for (size_t i = 0; i < n * size; ++i) {
    calibration.features.push_back(
        static_cast<float>(static_cast<double>((uint64_t{i} * 2654435761u) % (uint64_t{1} << 32)) / 4294967296.0));
  }
  calibration.labels.assign(n, 0);
  auto q = QuantizePostTraining(*bundle, calibration, QuantizeOptions{});
  if (!q.ok()) std::abort();
  return *q;
}

void BM_Onnx(benchmark::State& state, size_t which) {
  static std::vector<v1::ModelBundle> bundles = [] {
    std::vector<v1::ModelBundle> b;
    for (const Reference& r : kReferences) b.push_back(Int8Reference(r));
    return b;
  }();
  RunInterpreter(state, bundles[which]);
}

BENCHMARK_CAPTURE(BM_Onnx, niid_cnn, 0)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Onnx, ds_cnn, 1)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Onnx, mobilenet_v1_025, 2)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Onnx, resnet8, 3)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tinyfed::models

BENCHMARK_MAIN();
