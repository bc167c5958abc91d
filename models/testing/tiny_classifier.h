// A small trained int8 classifier for tests that need a real model quickly:
// an MLP (8 -> 16 -> 8 embedding -> 3 classes) on well-separated synthetic
// data (the class sets every third feature).
#ifndef TINYFED_MODELS_TESTING_TINY_CLASSIFIER_H_
#define TINYFED_MODELS_TESTING_TINY_CLASSIFIER_H_

#include <cstdint>

#include "tinyfed/models/dataset.h"
#include "tinyfed/v1/bundle.pb.h"

namespace tinyfed::models::testing {

Dataset TinyClassifierData(size_t samples, uint64_t seed);
// Trained and quantized once per process.
const v1::ModelBundle& TinyClassifier();

}  // namespace tinyfed::models::testing

#endif  // TINYFED_MODELS_TESTING_TINY_CLASSIFIER_H_
