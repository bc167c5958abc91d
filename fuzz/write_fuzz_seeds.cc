// Writes a seed corpus of small valid bundles, one per op kind, both as files
// and as bare payloads.
#include <filesystem>
#include <fstream>
#include <random>

#include "models/internal/graph.h"
#include "models/testing/random_bundle.h"
#include "tinyfed/models/bundle.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);
  std::mt19937 rng(1);
  using K = tinyfed::v1::Op;
  int n = 0;
  for (auto kind : {K::kConv2D, K::kDepthwiseConv2D, K::kFullyConnected, K::kMaxPool,
                    K::kAveragePool, K::kGlobalAveragePool, K::kAdd, K::kReshape}) {
    tinyfed::models::testing::ConvSpec spec;
    spec.in_h = 5;
    spec.in_w = 4;
    spec.in_c = 3;
    spec.out_c = 4;
    const auto bundle = tinyfed::models::testing::RandomSingleOpBundle(kind, spec, rng);
    std::ofstream(dir / ("file_" + std::to_string(n))) << tinyfed::models::EncodeBundleFile(bundle);
    std::ofstream(dir / ("payload_" + std::to_string(n))) << bundle.SerializeAsString();
    ++n;
  }
  return 0;
}
