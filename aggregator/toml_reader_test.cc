// The TOML reader on its own: every accessor, absent keys, wrong types,
// ranges, unknown keys, and errors that name the file, line and key.
#include "tinyfed/aggregator/toml_reader.h"

#include <gtest/gtest.h>

namespace tinyfed::aggregator {
namespace {

// Held in the StatusOr as parsed: a copied table loses its source lines.
absl::StatusOr<toml::table> Parsed(std::string_view text) {
  auto t = ParseToml(text, "conf.toml");
  EXPECT_TRUE(t.ok()) << t.status();
  return t;
}

TEST(TomlReader, ReadsEveryKindAndLeavesAbsentKeysAlone) {
  const auto parsed = Parsed(
      "ratio = 0.5\nwhole = 3\ncount = 7\nwait = 1.5\non = true\nname = \"x\"\nkind = \"b\"\n"
      "weights = [1, 2.5]\n[inner]\nk = 1\n");
  ASSERT_TRUE(parsed.ok());
  TomlTableReader r(*parsed, "", "conf.toml");
  double ratio = 0, whole = 0, untouched = 9;
  int64_t count = 0;
  absl::Duration wait;
  bool on = false;
  std::string name;
  int kind = -1;
  std::vector<double> weights;
  ASSERT_TRUE(r.Double("ratio", &ratio, 0, 1).ok());
  ASSERT_TRUE(r.Double("whole", &whole, 0, 10).ok());  // an integer reads as a number
  ASSERT_TRUE(r.Double("missing", &untouched, 0, 1).ok());
  ASSERT_TRUE(r.Integer("count", &count, 0, 10).ok());
  ASSERT_TRUE(r.Seconds("wait", &wait, 0, 10).ok());
  ASSERT_TRUE(r.Bool("on", &on).ok());
  ASSERT_TRUE(r.String("name", &name).ok());
  ASSERT_TRUE(r.Choice("kind", {"a", "b"}, &kind).ok());
  ASSERT_TRUE(r.Doubles("weights", &weights, 0, 10).ok());
  auto inner = r.Table("inner");
  ASSERT_TRUE(inner.ok() && *inner != nullptr);
  EXPECT_EQ(ratio, 0.5);
  EXPECT_EQ(whole, 3.0);
  EXPECT_EQ(untouched, 9.0);
  EXPECT_EQ(count, 7);
  EXPECT_EQ(wait, absl::Milliseconds(1500));
  EXPECT_TRUE(on);
  EXPECT_EQ(name, "x");
  EXPECT_EQ(kind, 1);
  EXPECT_EQ(weights, (std::vector<double>{1.0, 2.5}));
  EXPECT_EQ(*r.Table("absent"), nullptr);
  EXPECT_TRUE(r.RejectUnknown().ok());
}

TEST(TomlReader, ErrorsNameTheFileLineSectionAndKey) {
  const auto parsed = Parsed(
      "[s]\nflag = 1\nn = 1.5\nbig = 11\nword = \"\"\nnum = true\nlist = [1, \"x\"]\n"
      "pick = \"z\"\nsub = 3\nextra = 1\n");
  ASSERT_TRUE(parsed.ok());
  const toml::table& s = *(*parsed)["s"].as_table();
  TomlTableReader r(s, "s", "conf.toml");
  bool flag;
  int64_t n, big;
  std::string word;
  double num;
  std::vector<double> list;
  int pick;
  auto expect = [](const absl::Status& st, const std::string& needle) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  };
  expect(r.Bool("flag", &flag), "conf.toml:2: s.flag: must be true or false");
  expect(r.Integer("n", &n, 0, 10), "conf.toml:3: s.n: must be an integer");
  expect(r.Integer("big", &big, 0, 10), "conf.toml:4: s.big: must be in [0, 10], got 11");
  expect(r.String("word", &word), "conf.toml:5: s.word: must not be empty");
  expect(r.Double("num", &num, 0, 1), "conf.toml:6: s.num: must be a number");
  expect(r.Doubles("list", &list, 0, 1), "conf.toml:7: s.list: must be an array of numbers");
  expect(r.Choice("pick", {"a", "b"}, &pick), "conf.toml:8: s.pick: must be one of a, b, got 'z'");
  expect(r.Table("sub").status(), "conf.toml:9: s.sub: must be a table");
  expect(r.RejectUnknown(), "conf.toml:10: s.extra: unknown key");
  expect(ParseToml("a = [\n", "bad.toml").status(), "bad.toml:");
}

}  // namespace
}  // namespace tinyfed::aggregator
