#include "tinyfed/model_import/onnx_import.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "model_import/internal/onnx_converter.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/status_macros.h"

namespace tinyfed::model_import {

using absl::InvalidArgumentError;
using absl::StrCat;

absl::StatusOr<v1::ModelBundle> ImportOnnxBytes(const std::string& bytes, const std::string& source,
                                                const OnnxImportOptions& options) {
  if (bytes.size() > kMaxOnnxFileBytes) {
    return absl::OutOfRangeError(
        StrCat(source, " is ", bytes.size(), " bytes, more than ", kMaxOnnxFileBytes, " a gateway's model may be"));
  }
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    return InvalidArgumentError(StrCat(source, " is not an ONNX model (a ModelProto)"));
  // ONNX's checker throws; a hostile file must only ever give an error.
  // ONNX's shape inference is not run: Debian's libonnx 1.12 divides by zero
  // on a Conv with stride 0 (fixed upstream in onnx/onnx#7764; found here by
  // fuzz/onnx_import_fuzz), and the conversion derives and checks every
  // shape itself.
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    return InvalidArgumentError(StrCat(source, " fails ONNX's checker: ", std::string(e.what()).substr(0, 300)));
  }
  return internal::OnnxConverter(model, source, options).Convert();
}

absl::StatusOr<v1::ModelBundle> ImportOnnx(const std::filesystem::path& path, const OnnxImportOptions& options) {
  TINYFED_ASSIGN_OR_RETURN(std::string bytes, base::ReadFileBytes(path, kMaxOnnxFileBytes));
  return ImportOnnxBytes(bytes, path.string(), options);
}

}  // namespace tinyfed::model_import
