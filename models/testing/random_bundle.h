// Random int8 bundles for tests and benchmarks: arbitrary shapes, strides,
// paddings, scales and zero points, all valid.
#ifndef TINYFED_MODELS_TESTING_RANDOM_BUNDLE_H_
#define TINYFED_MODELS_TESTING_RANDOM_BUNDLE_H_

#include <cstdint>
#include <random>

#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models::testing {

struct ConvSpec {
  int in_h = 8, in_w = 8, in_c = 4, out_c = 8;
  int kernel_h = 3, kernel_w = 3, stride_h = 1, stride_w = 1;
  v1::Padding padding = v1::PADDING_SAME;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;  // PADDING_EXPLICIT
  v1::Activation activation = v1::ACTIVATION_NONE;
};

// A bundle whose backbone is one op of `kind` (Conv2D, DepthwiseConv2D,
// FullyConnected, MaxPool, AveragePool, GlobalAveragePool, Add, Reshape,
// Concat) with
// the geometry of `spec` and random weights and quantization, followed by a
// two-class head. out_c is ignored where the op keeps channels.
v1::ModelBundle RandomSingleOpBundle(v1::Op::KindCase kind, const ConvSpec& spec, std::mt19937& rng);

// Appends a random op to `bundle`'s backbone reading `input`, returns the
// index of its output tensor. Used to build multi-op graphs.
int AppendRandomOp(v1::ModelBundle* bundle, v1::Op::KindCase kind, int input, const ConvSpec& spec, std::mt19937& rng);

// Completes a bundle whose backbone is built: input spec, head, labels.
void FinishBundle(v1::ModelBundle* bundle, int num_classes, std::mt19937& rng);

}  // namespace tinyfed::models::testing

#endif  // TINYFED_MODELS_TESTING_RANDOM_BUNDLE_H_
