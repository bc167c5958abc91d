// Claims on real data, small enough for every `make test`:
// - Breast Cancer Wisconsin (scripts/fetch_data.sh puts the CSV in
//   TINYFED_DATA_DIR): the int8 MLP reaches 95% accuracy and 0.93 malignant
//   sensitivity on a stratified 20% hold-out, with PTQ and with QAT.
// - Fashion-MNIST (package dataset-fashion-mnist): a short CNN run on a
//   subset, where int8 stays within a point of float and the AVX2 and
//   reference kernels classify every test image identically.
// - scikit-learn's 8x8 digits, CSV rows read as images: the cnn takes them
//   (SAME padding below 16x16) and its int8 model reaches 90%.
#include <filesystem>

#include "gtest/gtest.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models {
namespace {

const std::filesystem::path kDataDir = TINYFED_DATA_DIR;
const std::filesystem::path kFashionMnist = "/usr/share/datasets/fashion-mnist";

Split BreastCancer() {
  auto data = ReadCsv(kDataDir / "breast_cancer.csv");
  EXPECT_TRUE(data.ok()) << data.status() << " (run scripts/fetch_data.sh)";
  if (!data.ok()) return {};
  EXPECT_EQ(data->size(), 569u);
  EXPECT_EQ(data->label_names[0], "malignant");
  return StratifiedSplit(*data, 0.2, 1);
}

absl::StatusOr<v1::ModelBundle> TrainedMlp(const Dataset& train) {
  auto bundle = BuildBackbone(Architecture::kMlp, train, 1);
  if (!bundle.ok()) return bundle.status();
  TrainOptions options;
  options.epochs = 20;
  options.batch_size = 16;
  options.learning_rate = 0.01f;
  if (absl::Status trained = Train(&*bundle, train, options); !trained.ok()) return trained;
  return bundle;
}

TEST(BreastCancer, Int8MlpMeetsTheClinicalBar) {
  const Split split = BreastCancer();
  ASSERT_GT(split.holdout.size(), 100u);
  auto trained = TrainedMlp(split.train);
  ASSERT_TRUE(trained.ok()) << trained.status();
  const v1::ModelBundle& float_model = *trained;
  auto fm = Evaluate(float_model, split.holdout);
  ASSERT_TRUE(fm.ok());
  for (auto calibration : {Calibration::kMinMax, Calibration::kPercentile}) {
    QuantizeOptions q;
    q.calibration = calibration;
    auto int8 = QuantizePostTraining(float_model, split.train, q);
    ASSERT_TRUE(int8.ok()) << int8.status();
    auto m = Evaluate(*int8, split.holdout);
    ASSERT_TRUE(m.ok());
    EXPECT_GE(m->accuracy(), 0.95);
    EXPECT_GE(m->sensitivity(0), 0.93) << "malignant sensitivity";
    EXPECT_NEAR(m->accuracy(), fm->accuracy(), 0.01);
  }
}

TEST(BreastCancer, QuantizationAwareTrainingKeepsAccuracy) {
  const Split split = BreastCancer();
  ASSERT_GT(split.holdout.size(), 100u);
  auto trained = TrainedMlp(split.train);
  ASSERT_TRUE(trained.ok()) << trained.status();
  const v1::ModelBundle& float_model = *trained;
  TrainOptions fine_tune;
  fine_tune.epochs = 3;
  fine_tune.batch_size = 16;
  fine_tune.learning_rate = 0.002f;
  auto int8 = QuantizeAwareTraining(float_model, split.train, QuantizeOptions{}, fine_tune);
  ASSERT_TRUE(int8.ok()) << int8.status();
  EXPECT_EQ(int8->metadata().quantization(), v1::QUANTIZATION_QAT);
  auto m = Evaluate(*int8, split.holdout);
  ASSERT_TRUE(m.ok());
  EXPECT_GE(m->accuracy(), 0.95);
  EXPECT_GE(m->sensitivity(0), 0.93);
}

TEST(FashionMnist, Int8StaysWithinAPointOfFloatOnASubset) {
  auto train = ReadIdx(kFashionMnist / "train-images-idx3-ubyte.gz", kFashionMnist / "train-labels-idx1-ubyte.gz");
  auto test = ReadIdx(kFashionMnist / "t10k-images-idx3-ubyte.gz", kFashionMnist / "t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_TRUE(test.ok()) << test.status();
  ASSERT_EQ(train->size(), 60000u);
  ASSERT_EQ(test->size(), 10000u);
  const Dataset small_train = StratifiedSplit(*train, 0.8, 1).train;  // 12,000 images
  const Dataset small_test = StratifiedSplit(*test, 0.7, 1).train;    // 3,000 images
  auto bundle = BuildBackbone(Architecture::kCnn, small_train, 1);
  ASSERT_TRUE(bundle.ok());
  TrainOptions options;
  options.epochs = 2;
  options.learning_rate = 0.02f;
  ASSERT_TRUE(Train(&*bundle, small_train, options).ok());
  auto int8 = QuantizePostTraining(*bundle, small_train, QuantizeOptions{});
  ASSERT_TRUE(int8.ok());
  auto f = Evaluate(*bundle, small_test);
  auto q = Evaluate(*int8, small_test, KernelSet::kBest);
  auto r = Evaluate(*int8, small_test, KernelSet::kReference);
  ASSERT_TRUE(f.ok() && q.ok() && r.ok());
  EXPECT_GE(f->accuracy(), 0.78);
  EXPECT_NEAR(q->accuracy(), f->accuracy(), 0.01);
  for (int t = 0; t < 10; ++t) {
    for (int p = 0; p < 10; ++p) EXPECT_EQ(q->count(t, p), r->count(t, p));
  }
}

TEST(Digits, CsvRowsAsEightByEightImagesTrainTheCnn) {
  CsvOptions csv;
  csv.shape = {8, 8, 1};
  auto data = ReadCsv(kDataDir / "digits.csv.gz", csv);
  ASSERT_TRUE(data.ok()) << data.status() << " (run scripts/fetch_data.sh)";
  ASSERT_EQ(data->size(), 1797u);
  ASSERT_EQ(data->num_classes(), 10);
  EXPECT_TRUE(data->warnings.empty());
  const Split split = StratifiedSplit(*data, 0.2, 1);
  auto bundle = BuildBackbone(Architecture::kCnn, split.train, 1);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  TrainOptions options;
  options.epochs = 10;
  options.learning_rate = 0.02f;
  ASSERT_TRUE(Train(&*bundle, split.train, options).ok());
  auto int8 = QuantizePostTraining(*bundle, split.train, QuantizeOptions{});
  ASSERT_TRUE(int8.ok()) << int8.status();
  auto m = Evaluate(*int8, split.holdout);
  ASSERT_TRUE(m.ok());
  EXPECT_GE(m->accuracy(), 0.90);
}

}  // namespace
}  // namespace tinyfed::models
