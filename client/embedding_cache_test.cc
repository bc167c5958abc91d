#include "tinyfed/client/embedding_cache.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "client/testing/heads.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/models/bundle.h"

namespace tinyfed::client {
namespace {

std::vector<Sample> Samples(int n, uint32_t seed) {
  return testing::TinySamples(models::testing::TinyClassifierData(n, seed));
}

class EmbeddingCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / ("embedding-cache-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    auto store = SampleStore::Open(dir_, 1000);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    bundle_ = models::testing::TinyClassifier();
    auto interpreter = models::Interpreter::Create(bundle_);
    ASSERT_TRUE(interpreter.ok()) << interpreter.status();
    interpreter_ = std::move(*interpreter);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::unique_ptr<SampleStore> store_;
  v1::ModelBundle bundle_;
  std::unique_ptr<models::Interpreter> interpreter_;
};

TEST_F(EmbeddingCacheTest, ComputesOnceThenServesFromTheSealedCache) {
  const auto samples = Samples(12, 1);
  const std::string id = BackboneId(bundle_);
  EmbeddingCache cache = EmbeddingCache::Load(*store_, id);
  const std::vector<float> first = cache.Embed(samples, *interpreter_);
  EXPECT_EQ(cache.computed(), samples.size());
  EXPECT_EQ(first.size(), samples.size() * interpreter_->embedding_size());
  ASSERT_TRUE(cache.Save(*store_).ok());
  EmbeddingCache again = EmbeddingCache::Load(*store_, id);
  EXPECT_EQ(again.size(), samples.size());
  EXPECT_EQ(again.Embed(samples, *interpreter_), first);
  EXPECT_EQ(again.computed(), 0u);
  // What Embed returns is what the interpreter computes, row by row.
  interpreter_->SetInput(samples[3].features);
  interpreter_->Invoke();
  const auto e = interpreter_->embedding();
  const size_t d = interpreter_->embedding_size();
  EXPECT_EQ(std::vector<float>(first.begin() + 3 * d, first.begin() + 4 * d), std::vector<float>(e.begin(), e.end()));
}

TEST_F(EmbeddingCacheTest, KeepsExactlyTheSamplesAskedForAndComputesOnlyNewOnes) {
  const auto old_samples = Samples(8, 2), new_samples = Samples(5, 3);
  const std::string id = BackboneId(bundle_);
  EmbeddingCache cache = EmbeddingCache::Load(*store_, id);
  cache.Embed(old_samples, *interpreter_);
  std::vector<Sample> mixed(old_samples.begin(), old_samples.begin() + 4);
  mixed.insert(mixed.end(), new_samples.begin(), new_samples.end());
  cache.Embed(mixed, *interpreter_);
  EXPECT_EQ(cache.computed(), new_samples.size());
  EXPECT_EQ(cache.size(), mixed.size());
}

TEST_F(EmbeddingCacheTest, AnotherBackboneOrADamagedFileStartsEmpty) {
  const auto samples = Samples(6, 4);
  EmbeddingCache cache = EmbeddingCache::Load(*store_, BackboneId(bundle_));
  cache.Embed(samples, *interpreter_);
  ASSERT_TRUE(cache.Save(*store_).ok());
  v1::ModelBundle other = bundle_;
  other.mutable_input()->set_mean(0, other.input().mean(0) + 1.0f);  // what embeddings depend on
  EXPECT_NE(BackboneId(other), BackboneId(bundle_));
  EXPECT_EQ(EmbeddingCache::Load(*store_, BackboneId(other)).size(), 0u);
  ASSERT_TRUE(store_->WriteSealed(EmbeddingCache::kFileName, "not a cache").ok());
  EXPECT_EQ(EmbeddingCache::Load(*store_, BackboneId(bundle_)).size(), 0u);
  // A head-only change (a new round's model) keeps the backbone's identity.
  v1::ModelBundle new_head = bundle_;
  new_head.mutable_head()->set_bias(0, 5.0f);
  EXPECT_EQ(BackboneId(new_head), BackboneId(bundle_));
}

TEST(SampleKey, IsTheSameForTheSameSampleOnly) {
  const auto s = Samples(2, 5);
  EXPECT_EQ(KeyOf(s[0]), KeyOf(s[0]));
  EXPECT_NE(KeyOf(s[0]), KeyOf(s[1]));
  Sample relabelled = s[0];
  relabelled.label = (s[0].label + 1) % 3;
  EXPECT_NE(KeyOf(relabelled), KeyOf(s[0]));
}

}  // namespace
}  // namespace tinyfed::client
