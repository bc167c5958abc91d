#include "aggregator/internal/drift_detector.h"

#include <gtest/gtest.h>

#include <random>

namespace tinyfed::aggregator::internal {
namespace {

// `n` draws from a distribution over bins.
std::vector<uint64_t> Draw(std::mt19937_64& rng, const std::vector<double>& p, int n) {
  std::discrete_distribution<size_t> d(p.begin(), p.end());
  std::vector<uint64_t> counts(p.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[d(rng)];
  return counts;
}

const std::vector<double> kConfident = {0, 0, 0, 1, 2, 3, 4, 6, 10, 20};  // a model sure of most cases
const std::vector<double> kUnsure = {0, 2, 6, 8, 6, 4, 2, 1, 1, 1};
const std::vector<double> kClasses = {5, 3, 1, 1, 0.5, 0.5, 4, 2, 1, 2};  // one clinic's label skew

// A gateway's report: 30 recent cases and 60 held-out samples, 75 % right.
DriftWindow Report(std::mt19937_64& rng, const std::vector<double>& recent_confidence,
                   const std::vector<double>& recent_classes, uint64_t correct = 45) {
  return {.confidence = Draw(rng, recent_confidence, 30),
          .classes = Draw(rng, recent_classes, 30),
          .holdout_confidence = Draw(rng, kConfident, 60),
          .holdout_classes = Draw(rng, kClasses, 60),
          .holdout_samples = 60,
          .holdout_correct = correct};
}

TEST(DriftDetectorTest, RaisesNoFlagWhileRecentCasesLookLikeTheHeldOutSlice) {
  std::mt19937_64 rng(1);
  int flags = 0;
  for (int device = 0; device < 50; ++device) {
    DriftDetector d;
    for (int report = 0; report < 50; ++report) flags += d.Observe(Report(rng, kConfident, kClasses)).flagged;
  }
  EXPECT_EQ(flags, 0) << "2,500 reports of 50 devices without drift";
}

TEST(DriftDetectorTest, FlagsLowConfidenceOnTheSecondSuspectReportAndClearsWhenItPasses) {
  std::mt19937_64 rng(2);
  DriftDetector d;
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(d.Observe(Report(rng, kConfident, kClasses)).flagged);
  const DriftDetector::Change first = d.Observe(Report(rng, kUnsure, kClasses));
  EXPECT_FALSE(first.flagged) << "one suspect report is not yet a flag";
  EXPECT_NE(first.reason.find("mean confidence"), std::string::npos) << first.reason;
  EXPECT_TRUE(d.Observe(Report(rng, kUnsure, kClasses)).flagged);
  // A report right after a round holds no cases: it says nothing either way.
  DriftWindow empty = Report(rng, kConfident, kClasses);
  empty.confidence.assign(10, 0);
  empty.classes.assign(10, 0);
  EXPECT_TRUE(d.Observe(empty).flagged);
  EXPECT_FALSE(d.Observe(Report(rng, kConfident, kClasses)).flagged);
}

TEST(DriftDetectorTest, FlagsAShiftOfPredictedClasses) {
  std::mt19937_64 rng(3);
  DriftDetector d;
  // The cases now fall in classes the clinic's slice seldom shows.
  const std::vector<double> other = {0, 0, 6, 6, 6, 6, 0, 0, 0, 0};
  d.Observe(Report(rng, kConfident, other));
  const DriftDetector::Change c = d.Observe(Report(rng, kConfident, other));
  EXPECT_TRUE(c.flagged);
  EXPECT_NE(c.reason.find("predicted classes"), std::string::npos) << c.reason;
}

TEST(DriftDetectorTest, FlagsADropOfHeldOutAccuracyUnderTheSameModelOnly) {
  std::mt19937_64 rng(4);
  DriftDetector d;
  auto report = [&](uint64_t version, uint64_t correct) {
    DriftWindow w = Report(rng, kConfident, kClasses, correct);
    w.model_version = version;
    return d.Observe(w);
  };
  report(7, 54);                        // 90 %
  EXPECT_FALSE(report(8, 20).flagged);  // a new model at 33 %: the canary's to judge
  EXPECT_FALSE(report(8, 20).flagged);
  report(9, 54);
  report(9, 20);  // the same model, newly labelled samples it gets wrong
  const DriftDetector::Change c = report(9, 21);
  EXPECT_TRUE(c.flagged);
  EXPECT_NE(c.reason.find("held-out accuracy 90.0% -> 35.0%"), std::string::npos) << c.reason;
}

TEST(DriftDetectorTest, ChiSquareTailMatchesTables) {
  EXPECT_NEAR(ChiSquareTail(3.841, 1), 0.05, 0.005);
  EXPECT_NEAR(ChiSquareTail(23.21, 10), 0.01, 0.001);
  EXPECT_NEAR(ChiSquareTail(16.92, 9), 0.05, 0.002);
  EXPECT_DOUBLE_EQ(ChiSquareTail(0.0, 3), 1.0);
}

}  // namespace
}  // namespace tinyfed::aggregator::internal
