// Distillation: with no weight on the teacher it is exactly plain training;
// with it, a small student learns a teacher's task; bad options and
// mismatched models are refused by name and leave the student as it was.
#include "tinyfed/models/distill.h"

#include <gtest/gtest.h>

#include <cmath>

#include "models/testing/tiny_classifier.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"

namespace tinyfed::models {
namespace {

using testing::TinyClassifierData;

v1::ModelBundle Teacher(const Dataset& data) {
  auto b = BuildBackbone(Architecture::kMlp, data, 1, {.mlp_hidden = {32, 16}});
  EXPECT_TRUE(b.ok());
  TrainOptions options;
  options.epochs = 5;
  EXPECT_TRUE(Train(&*b, data, options).ok());
  return *b;
}

v1::ModelBundle Student(const Dataset& data) {
  auto b = BuildBackbone(Architecture::kMlp, data, 2, {.mlp_hidden = {8}});
  EXPECT_TRUE(b.ok());
  return *b;
}

TEST(Distill, WithoutTheTeachersWeightItIsPlainTraining) {
  const Dataset data = TinyClassifierData(300, 1);
  DistillOptions options;
  options.soft_weight = 0.0f;
  options.hard_case_epochs = 0;
  options.train.epochs = 3;
  v1::ModelBundle distilled = Student(data), trained = Student(data);
  ASSERT_TRUE(Distill(Teacher(data), &distilled, data, options).ok());
  ASSERT_TRUE(Train(&trained, data, options.train).ok());
  EXPECT_EQ(distilled.SerializeAsString(), trained.SerializeAsString());
}

TEST(Distill, ASmallStudentLearnsTheTeachersTask) {
  const Dataset train = TinyClassifierData(300, 2), test = TinyClassifierData(150, 3);
  const v1::ModelBundle teacher = Teacher(train);
  v1::ModelBundle student = Student(train);
  DistillOptions options;
  options.train.epochs = 10;
  auto report = Distill(teacher, &student, train, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GT(report->teacher_accuracy, 0.9);
  EXPECT_EQ(report->hard_cases, static_cast<size_t>(std::lround((1.0 - report->student_accuracy) * 300)));
  auto q = QuantizePostTraining(student, train, {});
  ASSERT_TRUE(q.ok()) << q.status();
  auto m = Evaluate(*q, test);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->accuracy(), 0.9);
}

TEST(Distill, RefusesBadOptionsAndModelsThatDoNotFit) {
  const Dataset data = TinyClassifierData(60, 4);
  const v1::ModelBundle teacher = Teacher(data);
  v1::ModelBundle student = Student(data);
  const std::string before = student.SerializeAsString();
  DistillOptions options;
  options.temperature = 0.5f;
  auto cold = Distill(teacher, &student, data, options);
  ASSERT_FALSE(cold.ok());
  EXPECT_NE(cold.status().message().find("temperature 0.5 (1 to 100)"), std::string::npos) << cold.status();

  Dataset two = data;
  two.label_names = {"a", "b"};
  for (int& y : two.labels) y %= 2;
  auto other = BuildBackbone(Architecture::kMlp, two, 1, {.mlp_hidden = {8}});
  ASSERT_TRUE(other.ok());
  auto mismatch = Distill(*other, &student, data, DistillOptions{});
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("the teacher: "), std::string::npos) << mismatch.status();
  EXPECT_NE(mismatch.status().message().find("has 3 classes but the model has 2"), std::string::npos)
      << mismatch.status();

  auto int8 = QuantizePostTraining(teacher, data, {});
  ASSERT_TRUE(int8.ok());
  EXPECT_FALSE(Distill(*int8, &student, data, DistillOptions{}).ok());
  EXPECT_EQ(student.SerializeAsString(), before);
}

}  // namespace
}  // namespace tinyfed::models
