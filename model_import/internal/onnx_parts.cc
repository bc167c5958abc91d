#include "model_import/internal/onnx_parts.h"

#include <cmath>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace tinyfed::model_import::internal {
namespace {

using absl::InvalidArgumentError;
using absl::StrCat;

}  // namespace

std::string Shown(const std::string& s) {
  return StrCat("'", absl::CHexEscape(s.substr(0, 60)), s.size() > 60 ? "...'" : "'");
}

int64_t IntAttribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.i();
  }
  return fallback;
}
float FloatAttribute(const onnx::NodeProto& node, const std::string& name, float fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.f();
  }
  return fallback;
}
std::vector<int64_t> IntsAttribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return {a.ints().begin(), a.ints().end()};
  }
  return {};
}
std::string StringAttribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.s();
  }
  return "";
}

absl::StatusOr<Initializer> ReadTensor(const onnx::TensorProto& t, const std::string& source, uint64_t* total) {
  auto damaged = [&] {
    return InvalidArgumentError(
        StrCat(source, ": tensor ", Shown(t.name()), " holds fewer or more values than its dims say"));
  };
  Initializer init;
  uint64_t count = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || d > 1 << 24)
      return InvalidArgumentError(StrCat(source, ": tensor ", Shown(t.name()), " has dimension ", d));
    init.dims.push_back(d);
    count *= static_cast<uint64_t>(d);
  }
  *total += count;
  if (*total > kMaxConstantElements) {
    return InvalidArgumentError(StrCat(source, ": the initializers and constants hold more than ", kMaxConstantElements,
                                       " values, more than a gateway holds"));
  }
  if (t.has_data_location() && t.data_location() == onnx::TensorProto::EXTERNAL) {
    return InvalidArgumentError(
        StrCat(source, ": tensor ", Shown(t.name()), " is stored in an external file; export with the weights inside"));
  }
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      if (!t.raw_data().empty()) {
        if (t.raw_data().size() != count * 4) return damaged();
        init.floats.resize(count);
        std::memcpy(init.floats.data(), t.raw_data().data(), count * 4);  // little-endian, as ONNX stores it
      } else {
        if (static_cast<uint64_t>(t.float_data_size()) != count) return damaged();
        init.floats.assign(t.float_data().begin(), t.float_data().end());
      }
      for (float v : init.floats) {
        if (!std::isfinite(v)) {
          return InvalidArgumentError(
              StrCat(source, ": tensor ", Shown(t.name()), " holds a value that is not finite"));
        }
      }
      return init;
    case onnx::TensorProto::INT64:
      init.is_float = false;
      if (!t.raw_data().empty()) {
        if (t.raw_data().size() != count * 8) return damaged();
        init.ints.resize(count);
        std::memcpy(init.ints.data(), t.raw_data().data(), count * 8);
      } else {
        if (static_cast<uint64_t>(t.int64_data_size()) != count) return damaged();
        init.ints.assign(t.int64_data().begin(), t.int64_data().end());
      }
      return init;
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8:
      // Quantized weights and zero points (QDQ exports): one byte each.
      init.is_float = false;
      init.is_uint8 = t.data_type() == onnx::TensorProto::UINT8;
      if (!t.raw_data().empty()) {
        if (t.raw_data().size() != count) return damaged();
        for (char c : t.raw_data()) {
          init.ints.push_back(init.is_uint8 ? static_cast<uint8_t>(c) : static_cast<int8_t>(c));
        }
      } else {
        if (static_cast<uint64_t>(t.int32_data_size()) != count) return damaged();
        init.ints.assign(t.int32_data().begin(), t.int32_data().end());
      }
      return init;
    case onnx::TensorProto::INT32:
      init.is_float = false;
      if (!t.raw_data().empty()) {
        if (t.raw_data().size() != count * 4) return damaged();
        std::vector<int32_t> v(count);
        std::memcpy(v.data(), t.raw_data().data(), count * 4);
        init.ints.assign(v.begin(), v.end());
      } else {
        if (static_cast<uint64_t>(t.int32_data_size()) != count) return damaged();
        init.ints.assign(t.int32_data().begin(), t.int32_data().end());
      }
      return init;
    default:
      return InvalidArgumentError(
          StrCat(source, ": tensor ", Shown(t.name()), " has element type ",
                 onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(t.data_type())),
                 "; float32 weights, int8 or uint8 quantized ones, and int64 or int32 shapes are supported"));
  }
}

absl::StatusOr<std::map<std::string, Initializer>> ReadInitializers(const onnx::GraphProto& graph,
                                                                    const std::string& source, uint64_t* total) {
  std::map<std::string, Initializer> initializers;
  for (const onnx::TensorProto& t : graph.initializer()) {
    auto init = ReadTensor(t, source, total);
    if (!init.ok()) return init.status();
    initializers[t.name()] = *std::move(init);
  }
  return initializers;
}

}  // namespace tinyfed::model_import::internal
