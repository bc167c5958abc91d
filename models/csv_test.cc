// The files clinics really export, one test per case: each is read, or
// refused with the error text a user can act on.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tinyfed/models/dataset.h"

namespace tinyfed::models {
namespace {

std::filesystem::path Write(const std::string& name, const std::string& bytes) {
  const auto path = std::filesystem::path(::testing::TempDir()) / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// Options with the fields `set` gives, the rest at their defaults.
template <typename Set>
CsvOptions With(Set set) {
  CsvOptions o;
  set(o);
  return o;
}

bool Mentions(const std::vector<std::string>& warnings, const std::string& text) {
  for (const auto& w : warnings) {
    if (w.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string Joined(const std::vector<std::string>& warnings) {
  std::string all;
  for (const auto& w : warnings) all += w + "\n";
  return all;
}

// R's write.csv(df, "x.csv"): every text quoted, row names in an unnamed
// first column. Used to fail with `column "": '"1"' is not a finite number`.
TEST(CsvExports, RWriteCsvWithQuotesAndRowNames) {
  auto d = ReadCsv(Write("r.csv",
                         "\"\",\"radius\",\"texture\",\"diagnosis\"\n"
                         "\"1\",17.99,10.38,\"M\"\n"
                         "\"2\",20.57,17.77,\"B\"\n"
                         "\"3\",19.69,21.25,\"M\"\n"),
                   With([](CsvOptions& o) { o.label_column = "diagnosis"; }));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->channels, 2);  // radius, texture: not the row names
  EXPECT_EQ(d->features, (std::vector<float>{17.99f, 10.38f, 20.57f, 17.77f, 19.69f, 21.25f}));
  EXPECT_EQ(d->label_names, (std::vector<std::string>{"B", "M"}));
  EXPECT_EQ(d->labels, (std::vector<int>{1, 0, 1}));
  EXPECT_TRUE(Mentions(d->warnings, "R's write.csv row names")) << Joined(d->warnings);
}

// RFC 4180: the delimiter and quotes inside quotes, a line break inside a
// field, CRLF line ends, an Excel byte order mark.
TEST(CsvExports, QuotedFieldsCrlfAndByteOrderMark) {
  auto d = ReadCsv(Write("rfc.csv",
                         "\xEF\xBB\xBF"
                         "age,\"blood pressure, systolic\",result\r\n"
                         "41,120,\"negative, \"\"confirmed\"\"\"\r\n"
                         "57,141,\"positive\r\nsee note\"\r\n"
                         "33,118,\"negative, \"\"confirmed\"\"\"\r\n"),
                   {});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->features, (std::vector<float>{41, 120, 57, 141, 33, 118}));
  EXPECT_EQ(d->label_names, (std::vector<std::string>{"negative, \"confirmed\"", "positive\nsee note"}));
  EXPECT_EQ(d->labels, (std::vector<int>{0, 1, 0}));

  auto open = ReadCsv(Write("open.csv", "a,b\n1,\"x\n2,y\n"));
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("line 2: a quoted field is not closed"), std::string::npos) << open.status();
  auto huge = ReadCsv(Write("huge.csv", "a,y\n1e39,0\n2,1\n"));  // past a float's range
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("line 2 column a: '1e39' is not a finite number"), std::string::npos)
      << huge.status();
  auto after = ReadCsv(Write("after.csv", "a,b\n1,\"x\"y\n2,z\n"));
  ASSERT_FALSE(after.ok());
  EXPECT_NE(after.status().message().find("line 2 field 2: text after the closing quote"), std::string::npos)
      << after.status();
}

// A European spreadsheet: ';' between fields, ',' in decimals. Used to fail
// with "header has 1 columns but line 2 has 3".
TEST(CsvExports, SemicolonsAndDecimalCommasAreDetected) {
  auto d = ReadCsv(Write("semi.csv", "glucose;bmi;outcome\n5,5;31,2;1\n7,1;25;0\n6;28,9;1\n"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->features, (std::vector<float>{5.5f, 31.2f, 7.1f, 25.0f, 6.0f, 28.9f}));
  EXPECT_EQ(d->labels, (std::vector<int>{1, 0, 1}));
  auto tabs = ReadCsv(Write("tabs.tsv", "a\tb\ty\n1\t2\t0\n3\t4\t1\n"));
  ASSERT_TRUE(tabs.ok()) << tabs.status();
  EXPECT_EQ(tabs->channels, 2);
  // A delimiter given that does not split the file says so.
  auto wrong = ReadCsv(Write("wrong.csv", "a;b;y\n1;2;0\n3;4;1\n"), With([](CsvOptions& o) { o.delimiter = ','; }));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("is one field when split at ','"), std::string::npos) << wrong.status();
}

// 'NA', empty and '?' cells used to stop the run naming only the first.
TEST(CsvExports, MissingValuesAreCountedDroppedOrFilled) {
  const auto path = Write("missing.csv",
                          "age,bmi,bp,y\n"
                          "40,NA,120,0\n"
                          "50,30,,1\n"
                          "60,?,130,0\n"
                          "70,28,140,\n"
                          "80,26,150,1\n"
                          "90,24,160,0\n");
  auto refused = ReadCsv(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("4 of 6 rows have missing values (4 cells"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("column bmi: 2 (first on line 2)"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("column bp: 1 (first on line 3)"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find("the label column y: 1 (first on line 5)"), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("choose missing = \"drop\" or \"mean\""), std::string::npos);

  auto dropped = ReadCsv(path, With([](CsvOptions& o) { o.missing = MissingValues::kDrop; }));
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(dropped->features, (std::vector<float>{80, 26, 150, 90, 24, 160}));
  EXPECT_EQ(dropped->labels, (std::vector<int>{1, 0}));
  EXPECT_TRUE(Mentions(dropped->warnings, "4 rows dropped")) << Joined(dropped->warnings);
  auto filled = ReadCsv(path, With([](CsvOptions& o) { o.missing = MissingValues::kMean; }));
  ASSERT_TRUE(filled.ok()) << filled.status();
  // The row without a label goes; over the rows kept, bmi takes the mean of
  // 30, 26 and 24, bp that of 120, 130, 150 and 160.
  EXPECT_EQ(filled->features,
            (std::vector<float>{40, 80.0f / 3, 120, 50, 30, 140, 60, 80.0f / 3, 130, 80, 26, 150, 90, 24, 160}));
  EXPECT_EQ(filled->labels, (std::vector<int>{0, 1, 0, 1, 0}));
  EXPECT_TRUE(Mentions(filled->warnings, "1 rows without a label dropped")) << Joined(filled->warnings);
}

// An Id column used to be a feature without a word.
TEST(CsvExports, AnIdentifierColumnIsCalledOutAndCanBeIgnored) {
  std::string rows = "PatientID,glucose,outcome\n";
  for (int i = 0; i < 30; ++i)
    rows += std::to_string(1000 + i) + "," + std::to_string(80 + i % 9) + "," + std::to_string(i % 2) + "\n";
  const auto path = Write("ids.csv", rows);
  auto warned = ReadCsv(path);
  ASSERT_TRUE(warned.ok()) << warned.status();
  EXPECT_EQ(warned->channels, 2);
  EXPECT_TRUE(Mentions(warned->warnings, "column PatientID looks like an identifier (its name)"))
      << Joined(warned->warnings);
  auto ignored = ReadCsv(path, With([](CsvOptions& o) { o.ignore_columns = {"PatientID"}; }));
  ASSERT_TRUE(ignored.ok()) << ignored.status();
  EXPECT_EQ(ignored->channels, 1);
  EXPECT_EQ(ignored->features[0], 80.0f);
  EXPECT_TRUE(ignored->warnings.empty()) << Joined(ignored->warnings);
  // A row counter without a telling name is caught by its values.
  std::string counter = "n,glucose,outcome\n";
  for (int i = 0; i < 30; ++i)
    counter += std::to_string(i + 1) + "," + std::to_string(80 + i % 9) + "," + std::to_string(i % 2) + "\n";
  auto counted = ReadCsv(Write("counter.csv", counter));
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_TRUE(Mentions(counted->warnings, "column n looks like an identifier (its values count up by one)"))
      << Joined(counted->warnings);
  auto unknown = ReadCsv(path, With([](CsvOptions& o) { o.ignore_columns = {"Patient"}; }));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("no column to ignore 'Patient'"), std::string::npos) << unknown.status();
}

// Labels coded 2 and 4 (the original Wisconsin file) used to make five
// classes, three of them empty.
TEST(CsvExports, LabelCodesAreClassesNamedByThemselves) {
  auto d = ReadCsv(Write("codes.csv", "clump,class\n5,2\n8,4\n1,2\n10,4\n"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->label_names, (std::vector<std::string>{"2", "4"}));
  EXPECT_EQ(d->labels, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_TRUE(Mentions(d->warnings, "the labels are the codes 2, 4")) << Joined(d->warnings);
  auto svm = ReadCsv(Write("svm.csv", "x,y\n1,-1\n2,1\n3,-1\n"));
  ASSERT_TRUE(svm.ok()) << svm.status();
  EXPECT_EQ(svm->label_names, (std::vector<std::string>{"-1", "1"}));
  EXPECT_EQ(svm->labels, (std::vector<int>{0, 1, 0}));
}

// A mistyped label column used to give `no label column 'Diabetes' (9
// columns)` without naming them.
TEST(CsvExports, AMissingColumnListsTheColumnsThereAre) {
  auto d = ReadCsv(Write("pima.csv", "Pregnancies,Glucose,BMI,diabetes\n6,148,33.6,1\n1,85,26.6,0\n"),
                   With([](CsvOptions& o) { o.label_column = "Diabetes"; }));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("no label column 'Diabetes' (did you mean 'diabetes'?); the 4 columns are "
                                      "'Pregnancies', 'Glucose', 'BMI', 'diabetes'"),
            std::string::npos)
      << d.status();
}

// CSV rows could not be images.
TEST(CsvExports, RowsShapedAsImages) {
  auto d = ReadCsv(Write("pixels.csv", "0,1,2,3,0\n4,5,6,7,1\n"), With([](CsvOptions& o) { o.shape = {2, 2, 1}; }));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->height, 2);
  EXPECT_EQ(d->width, 2);
  EXPECT_EQ(d->channels, 1);
  EXPECT_EQ(d->feature_size(), 4u);
  auto wrong = ReadCsv(Write("pixels.csv", "0,1,2,3,0\n4,5,6,7,1\n"), With([](CsvOptions& o) { o.shape = {3, 3, 1}; }));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("shape [3, 3, 1] is not height, width, channels holding the 4 features"),
            std::string::npos)
      << wrong.status();
}

}  // namespace
}  // namespace tinyfed::models
