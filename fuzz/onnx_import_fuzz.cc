// Fuzzes the ONNX import as an operator's tool meets a file handed over: the
// bytes are the .onnx file, read with an embedding and labels that the seed
// models have. Nothing may crash, and an accepted import is a valid bundle.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tinyfed/model_import/onnx_import.h"
#include "tinyfed/models/bundle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tinyfed::model_import::OnnxImportOptions options{
      .embedding = "embedding", .labels = {"a", "b", "c", "d"}, .mean = {}, .stddev = {}, .name = "fuzz"};
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto bundle = tinyfed::model_import::ImportOnnxBytes(bytes, "fuzz.onnx", options);
  if (bundle.ok() && !tinyfed::models::ValidateBundle(*bundle).ok()) std::abort();
  return 0;
}
