// How the simulator scores a head for one clinic on the test split: each
// class's accuracy there, weighted by the clinic's class shares.
#include "sim/internal/metrics.h"

#include <gtest/gtest.h>

namespace tinyfed::sim::internal {
namespace {

models::Dataset Labelled(std::vector<int> labels) {
  models::Dataset d;
  d.labels = std::move(labels);
  return d;
}

TEST(CaseMixTest, WeighsEachClassByItsShareOfTheClinicsSamples) {
  // Three quarters of the clinic's cases are class 0 (train and slice
  // together), a quarter class 1, none class 2.
  Clinic clinic;
  clinic.train = Labelled({0, 0, 0, 0, 0, 1});
  clinic.holdout = Labelled({0, 1});
  // The test split: class 0 answered right 1 time in 2, class 1 always,
  // class 2 never.
  const std::vector<int> test{0, 0, 1, 1, 1, 2, 2};
  const std::vector<bool> right{true, false, true, true, true, false, false};
  const CaseMix mix(clinic, test, 3);
  EXPECT_DOUBLE_EQ(mix.Accuracy(right), 0.75 * 0.5 + 0.25 * 1.0);
  EXPECT_DOUBLE_EQ(mix.Accuracy(std::vector<bool>(test.size(), true)), 1.0);
  EXPECT_DOUBLE_EQ(mix.Accuracy(std::vector<bool>(test.size(), false)), 0.0);
}

TEST(CaseMixTest, LeavesOutClassesTheTestSplitLacks) {
  Clinic clinic;
  clinic.train = Labelled({0, 0, 2, 2});  // half of its cases are class 2,
  clinic.holdout = Labelled({1, 1});
  const std::vector<int> test{0, 1, 1};  // which the test split lacks
  const CaseMix mix(clinic, test, 3);
  EXPECT_DOUBLE_EQ(mix.Accuracy({true, false, true}), 0.5 * 1.0 + 0.5 * 0.5);
}

TEST(RightAnswersTest, ComparesTheMostLikelyClassWithTheLabel) {
  v1::Head head;
  head.set_in_features(1);
  head.set_num_classes(2);
  for (float w : {1.0f, -1.0f}) head.add_weights(w);
  for (float b : {0.0f, 0.0f}) head.add_bias(b);
  const std::vector<float> x{2.0f, -2.0f, 3.0f};
  EXPECT_EQ(RightAnswers(head, x, std::vector<int>{0, 1, 1}), (std::vector<bool>{true, true, false}));
}

}  // namespace
}  // namespace tinyfed::sim::internal
