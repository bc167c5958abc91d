// Batch-1, single-thread int8 inference of the backbone (Interpreter::Invoke,
// input already quantized): the figure that matters on a gateway.
//   BM_Cnn/<kernels>      NIID-Bench CNN on a 28x28x1 image (kernels: interpreter_run.h)
//   BM_DsCnn/<kernels>    DS-CNN: 49x10x1 input, 64 channels, 4 separable blocks
//   BM_DsCnnDepthwise     one of the DS-CNN's depthwise convolutions (25x5x64, 3x3)
//   BM_DsCnnPointwise     one of the DS-CNN's pointwise convolutions (25x5x64 -> 64)
//   BM_CnnPruned/<kernels> the CNN after `backbone prune --channels 30%`
//                         (conv 4 and 11 filters, FC 84 units)
// Counters as interpreter_run.h has them.
#include <benchmark/benchmark.h>

#include <random>

#include "bench/interpreter_run.h"
#include "tinyfed/models/interpreter.h"
#include "tinyfed/models/prune.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models {
namespace {

Dataset RandomData(int h, int w, int c, int n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> noise;
  Dataset d;
  d.height = h;
  d.width = w;
  d.channels = c;
  d.source = "random";
  d.label_names = {"a", "b"};
  for (int i = 0; i < n * h * w * c; ++i) d.features.push_back(noise(rng));
  for (int i = 0; i < n; ++i) d.labels.push_back(i % 2);
  return d;
}

v1::ModelBundle Int8Model(Architecture arch, int h, int w, double pruned_fraction = 0) {
  const Dataset data = RandomData(h, w, 1, 64);
  auto float_bundle = BuildBackbone(arch, data, 1);
  if (pruned_fraction > 0) {
    PruneOptions prune;
    prune.channel_fraction = pruned_fraction;
    prune.fine_tune.epochs = 0;  // the shapes are what is timed
    if (!PruneChannels(&*float_bundle, data, data, prune).ok()) std::abort();
  }
  auto q = QuantizePostTraining(*float_bundle, data, QuantizeOptions{});
  if (!q.ok()) std::abort();
  return *q;
}

// A one-op bundle: op `index` of the DS-CNN (conv, then depthwise and
// pointwise convolutions, each 25x5x64 -> 25x5x64).
v1::ModelBundle DsCnnLayerModel(int index) {
  v1::ModelBundle dscnn = Int8Model(Architecture::kDsCnn, 49, 10);
  v1::ModelBundle pw = dscnn;
  v1::Graph* g = pw.mutable_backbone();
  const v1::Op op = dscnn.backbone().ops(index);
  g->clear_ops();
  *g->add_ops() = op;
  g->set_input(op.inputs(0));
  g->set_output(op.output());
  *pw.mutable_input()->mutable_shape() = g->tensors(static_cast<int>(op.inputs(0))).shape();
  pw.mutable_input()->clear_mean();
  pw.mutable_input()->clear_stddev();
  pw.mutable_input()->add_mean(0.0f);
  pw.mutable_input()->add_stddev(1.0f);
  auto* head = pw.mutable_head();
  head->set_in_features(25 * 5 * 64);
  head->clear_weights();
  for (int i = 0; i < 2 * 25 * 5 * 64; ++i) head->add_weights(0.0f);
  return pw;
}

void BM_Cnn(benchmark::State& state) {
  static const v1::ModelBundle bundle = Int8Model(Architecture::kCnn, 28, 28);
  RunInterpreter(state, bundle);
}
void BM_CnnPruned(benchmark::State& state) {
  static const v1::ModelBundle bundle = Int8Model(Architecture::kCnn, 28, 28, 0.3);
  RunInterpreter(state, bundle);
}
void BM_DsCnn(benchmark::State& state) {
  static const v1::ModelBundle bundle = Int8Model(Architecture::kDsCnn, 49, 10);
  RunInterpreter(state, bundle);
}
void BM_DsCnnFirstConv(benchmark::State& state) {
  static const v1::ModelBundle bundle = DsCnnLayerModel(0);
  RunInterpreter(state, bundle);
}
void BM_DsCnnDepthwise(benchmark::State& state) {
  static const v1::ModelBundle bundle = DsCnnLayerModel(1);
  RunInterpreter(state, bundle);
}
void BM_DsCnnPointwise(benchmark::State& state) {
  static const v1::ModelBundle bundle = DsCnnLayerModel(2);
  RunInterpreter(state, bundle);
}

BENCHMARK(BM_Cnn)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CnnPruned)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DsCnn)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DsCnnFirstConv)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DsCnnDepthwise)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DsCnnPointwise)->Arg(2)->Arg(1)->Arg(0)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tinyfed::models

BENCHMARK_MAIN();
