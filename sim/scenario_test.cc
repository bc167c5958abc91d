#include "tinyfed/sim/scenario.h"

#include <gtest/gtest.h>

#include <string>

namespace tinyfed::sim {
namespace {

absl::StatusOr<Scenario> WithData(const std::string& data_keys) {
  return ParseScenario(
      "[data]\npath = \"clinic-export.csv\"\n" + data_keys + "\n[clinics]\ncount = 4\n[rounds]\nmax_rounds = 3\n",
      "/srv/scenarios/export.toml");
}

// How a clinic's export is read is part of the scenario, under [data].
TEST(ScenarioTest, DataKeysSayHowACsvExportIsRead) {
  auto s = WithData(
      "label_column = \"diagnosis\"\ndelimiter = \";\"\nmissing = \"mean\"\n"
      "ignore_columns = [\"PatientID\", \"0\"]\nshape = [8, 8, 1]\nclasses = 3\n");
  ASSERT_TRUE(s.ok()) << s.status();
  const models::CsvOptions& csv = s->data.csv;
  EXPECT_EQ(s->data.path, "/srv/scenarios/clinic-export.csv");
  EXPECT_EQ(csv.label_column, "diagnosis");
  EXPECT_EQ(csv.delimiter, ';');
  EXPECT_EQ(csv.missing, models::MissingValues::kMean);
  EXPECT_EQ(csv.ignore_columns, (std::vector<std::string>{"PatientID", "0"}));
  EXPECT_EQ(csv.shape, (std::vector<int>{8, 8, 1}));
  EXPECT_EQ(csv.num_classes, 3);
  auto tab = WithData("delimiter = \"tab\"");
  ASSERT_TRUE(tab.ok()) << tab.status();
  EXPECT_EQ(tab->data.csv.delimiter, '\t');
  auto defaults = WithData("");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->data.csv.delimiter, 0);
  EXPECT_EQ(defaults->data.csv.missing, models::MissingValues::kError);
}

TEST(ScenarioTest, BadDataKeysNameTheKey) {
  struct Case {
    std::string keys, why;
  };
  for (const Case& c : std::vector<Case>{{"missing = \"zero\"", "missing"},
                                         {"delimiter = \"::\"", "delimiter"},
                                         {"shape = [8, 8]", "shape must be [height, width, channels]"},
                                         {"shape = [8, 0, 1]", "shape"},
                                         {"ignore_columns = \"id\"", "ignore_columns"},
                                         {"ignore_columns = [1]", "ignore_columns"}}) {
    auto s = WithData(c.keys);
    ASSERT_FALSE(s.ok()) << c.keys << " was accepted";
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.why), std::string::npos) << c.keys << ": " << s.status();
  }
}

}  // namespace
}  // namespace tinyfed::sim
