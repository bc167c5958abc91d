// Structured pruning removes whole channels: the surgery computes exactly
// what the network computed with those channels silenced, the pruned model
// is smaller in MACs and bytes and still classifies, the channel scores
// weigh each class alike, and what cannot be pruned is refused by name.
#include "tinyfed/models/prune.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "models/internal/channel_surgery.h"
#include "models/internal/graph.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/float_model.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models {
namespace {

// 8x8 single-channel images of 3 classes: a bright row at a class's height.
Dataset Images(size_t n, uint64_t seed) {
  Dataset d;
  d.height = d.width = 8;
  d.label_names = {"top", "middle", "bottom"};
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  for (size_t i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % 3);
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 8; ++x) d.features.push_back((y / 3 == label ? 1.0f : 0.0f) + noise(rng));
    d.labels.push_back(label);
  }
  return d;
}

v1::ModelBundle TrainedCnn(const Dataset& data) {
  auto b = BuildBackbone(Architecture::kCnn, data, 3);
  EXPECT_TRUE(b.ok()) << b.status();
  TrainOptions options;
  options.epochs = 4;
  EXPECT_TRUE(Train(&*b, data, options).ok());
  return *b;
}

// Of the int8 model quantized from it, as a gateway runs it.
double Accuracy(const v1::ModelBundle& float_bundle, const Dataset& test) {
  auto q = QuantizePostTraining(float_bundle, test, {});
  EXPECT_TRUE(q.ok()) << q.status();
  auto m = Evaluate(*q, test);
  EXPECT_TRUE(m.ok()) << m.status();
  return m->accuracy();
}

TEST(ChannelSurgery, RemovingAChannelComputesWhatSilencingItDid) {
  const Dataset data = Images(60, 1);
  v1::ModelBundle silenced = TrainedCnn(data);
  // Filter 2 of the first conv (6 filters, OHWI 6x5x5x1): weights 0 and a
  // negative bias, so that its ReLU output is 0 everywhere.
  v1::Weights* w = silenced.mutable_backbone()->mutable_ops(0)->mutable_conv2d()->mutable_weights();
  for (int j = 0; j < 25; ++j) w->set_float_values(2 * 25 + j, 0.0f);
  w->set_float_bias(2, -1.0f);
  v1::ModelBundle removed = silenced;
  ASSERT_TRUE(internal::CanRemoveChannels(removed.backbone(), 0));
  ASSERT_TRUE(internal::RemoveChannels(removed.mutable_backbone(), 0, {0, 1, 3, 4, 5}).ok());
  ASSERT_TRUE(ValidateBundle(removed).ok());
  EXPECT_EQ(removed.backbone().ops(2).conv2d().weights().dims(3), 5u);  // conv2 reads 5 channels now
  auto a = FloatModel::Create(silenced);
  auto b = FloatModel::Create(removed);
  ASSERT_TRUE(a.ok() && b.ok());
  const auto ea = (*a)->Embed(data.features, static_cast<int>(data.size()));
  const auto eb = (*b)->Embed(data.features, static_cast<int>(data.size()));
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_NEAR(ea[i], eb[i], 1e-5f * (1.0f + std::abs(ea[i]))) << i;

  // The second dense layer feeds the embedding: it keeps its width. Bad
  // channel lists leave the graph as it was.
  EXPECT_FALSE(internal::CanRemoveChannels(removed.backbone(), 5));
  const v1::Graph before = removed.backbone();
  EXPECT_FALSE(internal::RemoveChannels(removed.mutable_backbone(), 2, {3, 1}).ok());
  EXPECT_FALSE(internal::RemoveChannels(removed.mutable_backbone(), 2, {}).ok());
  EXPECT_FALSE(internal::RemoveChannels(removed.mutable_backbone(), 2, {0, 16}).ok());
  EXPECT_EQ(removed.backbone().SerializeAsString(), before.SerializeAsString());
}

TEST(PruneChannels, ThirtyPercentOfTheChannelsGoAndTheModelStillClassifies) {
  const Dataset train = Images(300, 2), validation = Images(90, 3), test = Images(150, 4);
  v1::ModelBundle bundle = TrainedCnn(train);
  const double accuracy_before = Accuracy(bundle, test);
  PruneOptions options;
  options.fine_tune.epochs = 2;
  options.fine_tune.learning_rate = 0.005f;
  auto report = PruneChannels(&bundle, validation, train, options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(ValidateBundle(bundle).ok());
  // conv 6 -> 4, conv 16 -> 11, dense 120 -> 84; the embedding keeps 84.
  ASSERT_EQ(report->layers.size(), 3u);
  EXPECT_EQ(report->layers[0].channels_after, 4);
  EXPECT_EQ(report->layers[1].channels_after, 11);
  EXPECT_EQ(report->layers[2].channels_after, 84);
  EXPECT_EQ(bundle.head().in_features(), 84u);
  EXPECT_LE(report->macs_after, report->macs_before * 7 / 10);
  EXPECT_LT(report->weight_bytes_after, report->weight_bytes_before * 7 / 10);
  auto analysis = internal::AnalyzeBundle(bundle);
  ASSERT_TRUE(analysis.ok());
  EXPECT_EQ(analysis->total_macs, report->macs_after);
  EXPECT_GE(Accuracy(bundle, test), accuracy_before - 0.05) << "before " << accuracy_before;
}

TEST(PruneChannels, EachClassWeighsAlikeHoweverManySamplesItHas) {
  const Dataset train = Images(300, 5);
  const v1::ModelBundle trained = TrainedCnn(train);
  Dataset balanced = Images(30, 6);
  // The same samples with the first class's repeated ten times: a score
  // pooled over samples would change, a per-class mean does not.
  std::vector<size_t> rows;
  for (size_t i = 0; i < balanced.size(); ++i) {
    for (int k = 0; k < (balanced.labels[i] == 0 ? 10 : 1); ++k) rows.push_back(i);
  }
  const Dataset skewed = balanced.Subset(rows);
  PruneOptions options;
  options.samples_per_class = 1000;
  options.fine_tune.epochs = 0;
  v1::ModelBundle a = trained, b = trained;
  ASSERT_TRUE(PruneChannels(&a, balanced, train, options).ok());
  ASSERT_TRUE(PruneChannels(&b, skewed, train, options).ok());
  EXPECT_EQ(a.backbone().SerializeAsString(), b.backbone().SerializeAsString());
}

TEST(PruneChannels, RefusesWhatItCannotPruneAndLeavesTheBundle) {
  const Dataset data = Images(60, 7);
  v1::ModelBundle bundle = TrainedCnn(data);
  const std::string before = bundle.SerializeAsString();
  PruneOptions options;
  options.channel_fraction = 1.0;
  auto all = PruneChannels(&bundle, data, data, options);
  ASSERT_FALSE(all.ok());
  EXPECT_NE(all.status().message().find("channel fraction 1"), std::string::npos) << all.status();

  auto int8 = QuantizePostTraining(bundle, data, {});
  ASSERT_TRUE(int8.ok());
  auto quantized = PruneChannels(&*int8, data, data, PruneOptions{});
  ASSERT_FALSE(quantized.ok());
  EXPECT_NE(quantized.status().message().find("float"), std::string::npos) << quantized.status();

  // An mlp whose only hidden layer is the embedding has nothing to prune.
  Dataset tabular;
  tabular.width = 4;
  tabular.label_names = {"a", "b"};
  for (int i = 0; i < 20; ++i) {
    for (int j = 0; j < 4; ++j) tabular.features.push_back(static_cast<float>((i + j) % 3));
    tabular.labels.push_back(i % 2);
  }
  auto mlp = BuildBackbone(Architecture::kMlp, tabular, 1, {.mlp_hidden = {8}});
  ASSERT_TRUE(mlp.ok());
  auto none = PruneChannels(&*mlp, tabular, tabular, PruneOptions{});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no layer can lose channels"), std::string::npos) << none.status();

  auto wrong = PruneChannels(&bundle, tabular, data, PruneOptions{});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("has samples of 4 values but the model takes 64"), std::string::npos)
      << wrong.status();
  EXPECT_EQ(bundle.SerializeAsString(), before);
}

}  // namespace
}  // namespace tinyfed::models
