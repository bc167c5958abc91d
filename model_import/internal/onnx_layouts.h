// Weights from ONNX's layouts (NCHW activations, OIHW filters) to a
// bundle's (HWC activations, OHWI and HWC filters, OI dense rows).
#ifndef TINYFED_MODEL_IMPORT_INTERNAL_ONNX_LAYOUTS_H_
#define TINYFED_MODEL_IMPORT_INTERNAL_ONNX_LAYOUTS_H_

#include <vector>

namespace tinyfed::model_import::internal {

// A Conv's [out][in][kh][kw] as Conv2D's [out][kh][kw][in].
std::vector<float> OhwiFromOihw(const std::vector<float>& w, int out, int in, int kh, int kw);
// A grouped Conv's [out][in / group][kh][kw] as a dense [out][in][kh][kw],
// zero where an output channel does not read an input channel.
std::vector<float> OihwFromGrouped(const std::vector<float>& w, int out, int in, int group, int kh, int kw);
// A depthwise Conv's [c][1][kh][kw] as DepthwiseConv2D's [kh][kw][c].
std::vector<float> HwcFromC1hw(const std::vector<float>& w, int c, int kh, int kw);
// A dense layer's rows (out x in) in the order tinyfed holds its input: B is
// Gemm's [out][in] when `trans`, MatMul's [in][out] otherwise; an input
// flattened from an NCHW map (`chw_order`) is read from its HWC tensor.
std::vector<float> DenseRowsInHwcOrder(const std::vector<float>& b, bool trans, int out, int c, int h, int w,
                                       bool chw_order);

}  // namespace tinyfed::model_import::internal

#endif  // TINYFED_MODEL_IMPORT_INTERNAL_ONNX_LAYOUTS_H_
