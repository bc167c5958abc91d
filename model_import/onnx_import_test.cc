// ONNX files as PyTorch exports them become float bundles that compute what
// the file computes: the embedding of each of 100 inputs matches PyTorch's
// own (scripts/export_onnx_models.py, torch.onnx.export) within 1e-4
// relative to the largest value, for the NIID-Bench CNN and the MLPerf Tiny
// ResNet-8, DS-CNN and MobileNetV1 0.25; a small block of the other
// supported ops (scripts/make_onnx_models.py, checked against NumPy) too.
// Each then quantizes. A file that cannot be
// imported gets an error naming the node.
#include "tinyfed/model_import/onnx_import.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tinyfed/base/file_io.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/float_model.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/quantize.h"

namespace tinyfed::model_import {
namespace {

const std::filesystem::path kTestData = TINYFED_ONNX_TESTDATA;

std::vector<float> ReadFloats(const std::filesystem::path& path) {
  auto bytes = base::ReadFileBytes(path, 1 << 24);
  EXPECT_TRUE(bytes.ok()) << bytes.status() << " (scripts/export_onnx_models.py or make_onnx_models.py writes it)";
  if (!bytes.ok()) return {};
  std::vector<float> v(bytes->size() / 4);
  std::memcpy(v.data(), bytes->data(), v.size() * 4);
  return v;
}

// The inputs the scripts evaluated: value i of the NCHW batch is
// ((i * 2654435761) mod 2^32) / 2^32.
std::vector<float> Inputs(size_t count) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i) {
    v[i] = static_cast<float>(static_cast<double>((uint64_t{i} * 2654435761u) % (uint64_t{1} << 32)) / 4294967296.0);
  }
  return v;
}

// A test model changed by a test, imported with the embedding "embedding"
// and two classes.
absl::StatusOr<v1::ModelBundle> ImportChanged(const onnx::ModelProto& model, const std::string& name) {
  return ImportOnnxBytes(model.SerializeAsString(), name,
                         {.embedding = "embedding", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
}

// NCHW rows as tinyfed takes them: HWC.
std::vector<float> ToHwc(const std::vector<float>& nchw, int n, int c, int h, int w) {
  std::vector<float> out(nchw.size());
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < c; ++k)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          out[((static_cast<size_t>(i) * h + y) * w + x) * c + k] =
              nchw[((static_cast<size_t>(i) * c + k) * h + y) * w + x];
  return out;
}

struct Reference {
  std::string name;
  int c, h, w;
  std::vector<std::string> labels;
};

class OnnxReferenceTest : public ::testing::TestWithParam<Reference> {};

TEST_P(OnnxReferenceTest, FloatImportComputesWhatTheFileDoes) {
  const Reference& r = GetParam();
  auto bundle = ImportOnnx(kTestData / (r.name + ".onnx"),
                           {.embedding = "embedding", .labels = r.labels, .mean = {}, .stddev = {}, .name = ""});
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_TRUE(models::ValidateBundle(*bundle).ok());
  auto model = models::FloatModel::Create(*bundle);
  ASSERT_TRUE(model.ok()) << model.status();
  const size_t n = 100;
  const std::vector<float> inputs = Inputs(n * static_cast<size_t>(r.c * r.h * r.w));
  const std::vector<float> expected = ReadFloats(kTestData / (r.name + ".embedding.f32"));
  ASSERT_EQ(inputs.size(), n * static_cast<size_t>(r.c * r.h * r.w));
  ASSERT_EQ((*model)->input_size(), static_cast<size_t>(r.c * r.h * r.w));
  ASSERT_EQ(expected.size(), n * (*model)->embedding_size());
  const std::vector<float> hwc = ToHwc(inputs, static_cast<int>(n), r.c, r.h, r.w);
  const std::vector<float> got = (*model)->Embed(hwc, static_cast<int>(n));
  ASSERT_EQ(got.size(), expected.size());
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t e = (*model)->embedding_size();
    float largest = 0;
    for (size_t j = 0; j < e; ++j) largest = std::max(largest, std::abs(expected[i * e + j]));
    for (size_t j = 0; j < e; ++j) {
      worst = std::max(worst,
                       std::abs(static_cast<double>(got[i * e + j]) - expected[i * e + j]) / std::max(largest, 1e-6f));
    }
  }
  EXPECT_LE(worst, 1e-4) << r.name << ": largest relative difference";
  char shown[32];
  std::snprintf(shown, sizeof shown, "%.3g", worst);
  RecordProperty("max_relative_difference", shown);

  // The import goes on to int8 like any backbone, calibrated on these inputs.
  models::Dataset calibration;
  calibration.height = r.h;
  calibration.width = r.w;
  calibration.channels = r.c;
  calibration.features = hwc;
  calibration.labels.assign(n, 0);
  calibration.label_names = r.labels;
  auto int8 = models::QuantizePostTraining(*bundle, calibration, models::QuantizeOptions{});
  ASSERT_TRUE(int8.ok()) << int8.status();
  auto interpreter = models::Interpreter::Create(*int8);
  ASSERT_TRUE(interpreter.ok()) << interpreter.status();
  // Post-training int8 on its own calibration inputs stays near the file's
  // float embedding: within 5% of each input's largest value (0.25% to 2.4%
  // measured; the most where a Concat requantizes its inputs).
  double worst_int8 = 0;
  const size_t e = (*model)->embedding_size(), features = hwc.size() / n;
  for (size_t i = 0; i < n; ++i) {
    (*interpreter)->SetInput(std::span(hwc).subspan(i * features, features));
    (*interpreter)->Invoke();
    const auto values = (*interpreter)->embedding();
    float largest = 0;
    for (size_t j = 0; j < e; ++j) largest = std::max(largest, std::abs(expected[i * e + j]));
    for (size_t j = 0; j < e; ++j) {
      worst_int8 = std::max(worst_int8,
                            std::abs(static_cast<double>(values[j]) - expected[i * e + j]) / std::max(largest, 1e-6f));
    }
  }
  EXPECT_LE(worst_int8, 0.05) << r.name << ": largest int8 difference relative to the embedding's largest value";
  std::snprintf(shown, sizeof shown, "%.3g", worst_int8);
  RecordProperty("int8_max_relative_difference", shown);
}

INSTANTIATE_TEST_SUITE_P(
    Models, OnnxReferenceTest,
    ::testing::Values(Reference{"niid_cnn", 1, 28, 28, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
                      Reference{"mobile", 3, 16, 16, {"a", "b", "c", "d"}},
                      Reference{"grouped", 4, 12, 10, {"a", "b", "c", "d"}},
                      Reference{"fire", 3, 16, 16, {"a", "b", "c"}},
                      Reference{"resnet8", 3, 32, 32, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
                      Reference{"ds_cnn", 1, 49, 10, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}},
                      Reference{"mobilenet_v1_025", 3, 96, 96, {"no person", "person"}}),
    [](const auto& param_info) { return param_info.param.name; });

// PyTorch's own int8 model (eager mode, qnnpack), exported as QDQ: imported
// straight to int8 with the file's scales and zero points, it computes
// PyTorch's int8 embedding within one step of the grid. The steps that
// differ come from requantization: qnnpack rounds a float product once,
// the engine rounds TFLite's fixed-point product twice.
class OnnxQuantizedTest : public ::testing::TestWithParam<Reference> {};

TEST_P(OnnxQuantizedTest, KeepsItsScalesAndComputesPyTorchsBytes) {
  const Reference& r = GetParam();
  auto bundle = ImportOnnx(kTestData / (r.name + "_int8.onnx"),
                           {.embedding = "embedding", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(bundle->precision(), v1::PRECISION_INT8);
  EXPECT_EQ(bundle->metadata().quantization(), v1::QUANTIZATION_IMPORTED);
  auto interpreter = models::Interpreter::Create(*bundle);
  ASSERT_TRUE(interpreter.ok()) << interpreter.status();
  const size_t n = 100, features = static_cast<size_t>(r.c * r.h * r.w), e = (*interpreter)->embedding_size();
  auto bytes = base::ReadFileBytes(kTestData / (r.name + "_int8.embedding.u8"), 1 << 20);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_EQ(bytes->size(), n * e);
  const v1::Tensor& out = bundle->backbone().tensors(static_cast<int>(bundle->backbone().output()));
  const std::vector<float> hwc = ToHwc(Inputs(n * features), static_cast<int>(n), r.c, r.h, r.w);
  int worst = 0;
  size_t off_by_one = 0;
  for (size_t i = 0; i < n; ++i) {
    (*interpreter)->SetInput(std::span(hwc).subspan(i * features, features));
    (*interpreter)->Invoke();
    const auto values = (*interpreter)->embedding();
    for (size_t j = 0; j < e; ++j) {
      const int ours = static_cast<int>(std::lround(values[j] / out.scale())) + out.zero_point();
      const int pytorch = static_cast<uint8_t>((*bytes)[i * e + j]) - 128;
      worst = std::max(worst, std::abs(ours - pytorch));
      off_by_one += ours != pytorch;
    }
  }
  EXPECT_LE(worst, 1) << r.name << ": largest difference from PyTorch, in steps of the int8 grid";
  RecordProperty("max_lsb_difference", worst);
  RecordProperty("values_off", static_cast<int>(off_by_one));
  RecordProperty("values", static_cast<int>(n * e));
}

INSTANTIATE_TEST_SUITE_P(Models, OnnxQuantizedTest,
                         ::testing::Values(Reference{"niid_cnn", 1, 28, 28, {}}, Reference{"ds_cnn", 1, 49, 10, {}},
                                           Reference{"mobilenet_v1_025", 3, 96, 96, {}},
                                           Reference{"resnet8", 3, 32, 32, {}}),
                         [](const auto& param_info) { return param_info.param.name; });

// PyTorch's int8 weights span [-128, 127]; the file's -128 stays -128.
TEST(OnnxImport, AQuantizedWeightOfMinus128IsKept) {
  auto bytes = base::ReadFileBytes(kTestData / "niid_cnn_int8.onnx", 1 << 24);
  ASSERT_TRUE(bytes.ok());
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(*bytes));
  bool changed = false;
  for (auto& node : *model.mutable_graph()->mutable_node()) {  // the first conv's int8 weights, a Constant node
    if (node.op_type() != "Constant" || node.output(0) != "/body/0/Constant_2_output_0") continue;
    onnx::TensorProto* w = node.mutable_attribute(0)->mutable_t();
    ASSERT_EQ(w->data_type(), onnx::TensorProto::INT8);
    if (!w->raw_data().empty()) {
      (*w->mutable_raw_data())[0] = static_cast<char>(-128);
    } else {
      w->set_int32_data(0, -128);
    }
    changed = true;
  }
  ASSERT_TRUE(changed);
  auto bundle = ImportChanged(model, "minus128.onnx");
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(static_cast<int8_t>(bundle->backbone().ops(0).conv2d().weights().int8_values()[0]), -128);
}

TEST(OnnxImport, TheHeadAfterTheEmbeddingIsKept) {
  auto bundle = ImportOnnx(kTestData / "niid_cnn.onnx", {.embedding = "embedding",
                                                         .labels = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
                                                         .mean = {},
                                                         .stddev = {},
                                                         .name = ""});
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ(bundle->head().in_features(), 84u);
  EXPECT_EQ(bundle->head().num_classes(), 10u);
  EXPECT_TRUE(
      std::any_of(bundle->head().weights().begin(), bundle->head().weights().end(), [](float w) { return w != 0.0f; }));
  // An embedding earlier in the graph: what follows is no single Gemm, so
  // the head starts at zero.
  auto earlier = ImportOnnx(kTestData / "niid_cnn.onnx", {.embedding = "/backbone/backbone.5/MaxPool_output_0",
                                                          .labels = {"a", "b"},
                                                          .mean = {},
                                                          .stddev = {},
                                                          .name = ""});
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  EXPECT_EQ(earlier->head().in_features(), 256u);
  EXPECT_TRUE(std::all_of(earlier->head().weights().begin(), earlier->head().weights().end(),
                          [](float w) { return w == 0.0f; }));
  // The wrong number of labels for the file's own head.
  auto labels = ImportOnnx(kTestData / "niid_cnn.onnx",
                           {.embedding = "embedding", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
  ASSERT_FALSE(labels.ok());
  EXPECT_NE(labels.status().message().find("has 10 outputs but 2 labels were given"), std::string::npos)
      << labels.status();
}

// What a user gets wrong, and a file that is not what it says.
TEST(OnnxImport, ErrorsNameTheNodeTheOpAndWhatIsSupported) {
  const std::string file = (kTestData / "niid_cnn.onnx").string();
  auto missing = ImportOnnx(kTestData / "niid_cnn.onnx",
                            {.embedding = "features", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no node output is named 'features' (--embedding)"), std::string::npos)
      << missing.status();
  EXPECT_NE(missing.status().message().find("'probabilities'"), std::string::npos) << missing.status();

  auto bytes = base::ReadFileBytes(kTestData / "niid_cnn.onnx", 1 << 24);
  ASSERT_TRUE(bytes.ok());
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(*bytes));
  // An op tinyfed does not run, in the middle of the backbone.
  model.mutable_graph()->mutable_node(1)->set_op_type("LeakyRelu");
  auto leaky = ImportChanged(model, "leaky.onnx");
  ASSERT_FALSE(leaky.ok());
  EXPECT_NE(leaky.status().message().find(
                "leaky.onnx: node '/backbone/backbone.1/Relu' (LeakyRelu, opset 13): this op is not supported; "
                "supported: Conv"),
            std::string::npos)
      << leaky.status();
  // Padding as large as the kernel: windows of padding alone.
  model.ParseFromString(*bytes);
  for (auto& a : *model.mutable_graph()->mutable_node(0)->mutable_attribute()) {
    if (a.name() != "pads") continue;
    a.clear_ints();
    for (int p : {5, 0, 0, 5}) a.add_ints(p);
  }
  auto padded = ImportChanged(model, "pads.onnx");
  ASSERT_FALSE(padded.ok());
  EXPECT_NE(
      padded.status().message().find(
          "node '/backbone/backbone.0/Conv' (Conv, opset 13): pads [5, 0, 0, 5] must each be 0 to the kernel side - 1"),
      std::string::npos)
      << padded.status();

  // A Pad (PyTorch's ZeroPad2d, its pads computed by a chain of constant
  // nodes) before anything but a Conv.
  auto ds_bytes = base::ReadFileBytes(kTestData / "ds_cnn.onnx", 1 << 24);
  ASSERT_TRUE(ds_bytes.ok());
  ASSERT_TRUE(model.ParseFromString(*ds_bytes));
  for (auto& node : *model.mutable_graph()->mutable_node()) {
    if (node.op_type() == "Conv") {
      node.set_op_type("MaxPool");
      node.mutable_input()->DeleteSubrange(1, node.input_size() - 1);
      auto& attributes = *node.mutable_attribute();
      for (int i = attributes.size(); i-- > 0;) {
        if (attributes[i].name() == "group") attributes.DeleteSubrange(i, 1);
      }
      break;
    }
  }
  auto pooled = ImportChanged(model, "pad-pool.onnx");
  ASSERT_FALSE(pooled.ok());
  EXPECT_NE(pooled.status().message().find("comes from a Pad, which only a Conv may read"), std::string::npos)
      << pooled.status();

  // A Concat of activations along anything but channels.
  auto fire_bytes = base::ReadFileBytes(kTestData / "fire.onnx", 1 << 24);
  ASSERT_TRUE(fire_bytes.ok());
  ASSERT_TRUE(model.ParseFromString(*fire_bytes));
  for (auto& node : *model.mutable_graph()->mutable_node()) {
    if (node.op_type() != "Concat") continue;
    for (auto& a : *node.mutable_attribute()) a.set_i(2);
  }
  auto rows = ImportChanged(model, "concat-rows.onnx");
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("node 'concat' (Concat, opset 13): axis 2 (only the channel axis, 1)"),
            std::string::npos)
      << rows.status();

  // A grouping the channels do not divide into.
  auto grouped_bytes = base::ReadFileBytes(kTestData / "grouped.onnx", 1 << 24);
  ASSERT_TRUE(grouped_bytes.ok());
  ASSERT_TRUE(model.ParseFromString(*grouped_bytes));
  for (auto& node : *model.mutable_graph()->mutable_node()) {
    for (auto& a : *node.mutable_attribute()) {
      if (node.name() == "grouped" && a.name() == "group") a.set_i(3);
    }
  }
  auto thirds = ImportChanged(model, "thirds.onnx");
  ASSERT_FALSE(thirds.ok());
  EXPECT_NE(thirds.status().message().find("node 'grouped' (Conv, opset 13): group 3 with 4 input and 8 output"),
            std::string::npos)
      << thirds.status();

  auto garbage = ImportOnnxBytes("definitely not protobuf \xff\xff", "junk.onnx",
                                 {.embedding = "e", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
  ASSERT_FALSE(garbage.ok());
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument) << garbage.status();
  auto big = ImportOnnxBytes(std::string(kMaxOnnxFileBytes + 1, '\0'), "big.onnx",
                             {.embedding = "e", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange) << big.status();
  auto none =
      ImportOnnx("/nonexistent.onnx", {.embedding = "e", .labels = {"a", "b"}, .mean = {}, .stddev = {}, .name = ""});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound) << none.status();
}

}  // namespace
}  // namespace tinyfed::model_import
