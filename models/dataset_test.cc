#include "tinyfed/models/dataset.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace tinyfed::models {
namespace {

std::filesystem::path Write(const std::string& name, const std::string& bytes) {
  const auto path = std::filesystem::path(::testing::TempDir()) / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

CsvOptions LabelColumn(const std::string& column) {
  CsvOptions o;
  o.label_column = column;
  return o;
}

std::filesystem::path WriteGzip(const std::string& name, const std::string& bytes) {
  const auto path = std::filesystem::path(::testing::TempDir()) / name;
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  return path;
}

std::string IdxHeader(uint8_t type, std::initializer_list<uint32_t> dims) {
  std::string h = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int i = 3; i >= 0; --i) h.push_back(static_cast<char>((d >> (8 * i)) & 0xff));
  }
  return h;
}

TEST(ReadIdx, ImagesAndLabelsGzippedOrNot) {
  std::string images = IdxHeader(0x08, {3, 2, 2});
  for (int i = 0; i < 12; ++i) images.push_back(static_cast<char>(i * 20));
  const std::string labels = IdxHeader(0x08, {3}) + std::string{0, 2, 1};
  for (bool gz : {false, true}) {
    const auto img = gz ? WriteGzip("i.gz", images) : Write("i", images);
    const auto lab = gz ? WriteGzip("l.gz", labels) : Write("l", labels);
    auto d = ReadIdx(img, lab);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->size(), 3u);
    EXPECT_EQ(d->height, 2);
    EXPECT_EQ(d->width, 2);
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(d->num_classes(), 3);
    EXPECT_EQ(d->sample(1)[0], 80.0f);
    EXPECT_EQ(d->labels[1], 2);
  }
}

TEST(ReadIdx, RejectsTruncatedAndMismatchedFiles) {
  std::string images = IdxHeader(0x08, {3, 2, 2}) + std::string(11, '\0');
  const auto lab = Write("l3", IdxHeader(0x08, {3}) + std::string{0, 1, 1});
  auto d = ReadIdx(Write("short", images), lab);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("announces 12 data bytes but the file has 11"), absl::string_view::npos)
      << d.status();
  images.push_back(0);
  const auto two_labels = Write("l2", IdxHeader(0x08, {2}) + std::string{0, 1});
  EXPECT_NE(ReadIdx(Write("ok", images), two_labels).status().message().find("3 images but"), absl::string_view::npos);
  EXPECT_EQ(ReadIdx(Write("bad", "hello world"), lab).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadIdx("/nonexistent", lab).status().code(), absl::StatusCode::kNotFound);
}

TEST(ReadCsv, HeaderNamesAndLabelColumn) {
  const auto path = Write("h.csv", "age,label,bp\n30,sick,120\n40,well,130\n50,sick,125\n");
  auto d = ReadCsv(path, LabelColumn("label"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->channels, 2);
  EXPECT_EQ(d->label_names, (std::vector<std::string>{"sick", "well"}));
  EXPECT_EQ(d->labels, (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(d->sample(1)[1], 130.0f);
}

TEST(ReadCsv, ScikitLearnFormatKeepsClassNames) {
  const auto path = Write("sk.csv", "3,2,malignant,benign\n1.5,2,0\n3,4,1\n5,6,1\n");
  auto d = ReadCsv(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->label_names, (std::vector<std::string>{"malignant", "benign"}));
  EXPECT_EQ(d->size(), 3u);
  EXPECT_EQ(d->sample(0)[0], 1.5f);
}

TEST(ReadCsv, ErrorsNameLineAndColumn) {
  auto bad = ReadCsv(Write("bad.csv", "a,b,y\n1,2,0\n3,x,1\n"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 3 column b: 'x' is not a finite number"), absl::string_view::npos)
      << bad.status();
  auto ragged = ReadCsv(Write("ragged.csv", "1,2,0\n3,1\n"));
  EXPECT_NE(ragged.status().message().find("line 2: 2 fields, expected 3"), absl::string_view::npos) << ragged.status();
  auto one_class = ReadCsv(Write("one.csv", "1,0\n2,0\n"));
  EXPECT_EQ(one_class.status().code(), absl::StatusCode::kInvalidArgument);
  auto no_column = ReadCsv(Write("nc.csv", "a,y\n1,0\n2,1\n"), LabelColumn("missing"));
  EXPECT_NE(no_column.status().message().find("no label column 'missing'"), absl::string_view::npos);
}

// One odd label used to switch the whole file to sorted-string classes, so
// "0" became class 1, and a single 99 made 100 classes. Integer codes now
// keep their value when they are 0..K-1 and are named by themselves when not.
TEST(ReadCsv, IntegerLabelsKeepTheirValueAndOddLabelsAreRefused) {
  std::string rows;
  for (int i = 0; i < 6; ++i) rows += std::to_string(i) + ".5," + std::to_string(i % 3) + "\n";
  auto ok = ReadCsv(Write("ids.csv", "x,y\n" + rows));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->labels, (std::vector<int>{0, 1, 2, 0, 1, 2}));
  EXPECT_TRUE(ok->warnings.empty());
  auto floats = ReadCsv(Write("floats.csv", "x,y\n1,0.0\n2,1.0\n3,1\n"));  // pandas writes 1.0
  ASSERT_TRUE(floats.ok()) << floats.status();
  EXPECT_EQ(floats->labels, (std::vector<int>{0, 1, 1}));
  struct Case {
    std::string odd, why;
  };
  for (const Case& c :
       std::vector<Case>{{"0.5", "line 4: label '0.5' is not a class id (an integer)"},
                         {"2147483648", "line 4: label '2147483648' is not a class id (an integer)"},
                         {"-inf", "line 4: label '-inf' is not a class id"},
                         {"sick", "line 4: label 'sick' is text but line 2's label '0' is a class id"}}) {
    auto d = ReadCsv(Write("odd.csv", "x,y\n1,0\n2,1\n3," + c.odd + "\n4,2\n5,1\n"));
    ASSERT_FALSE(d.ok()) << "label " << c.odd << " was accepted";
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find(c.why), absl::string_view::npos) << d.status();
  }
  // A stray code is a class of its own, named by it, and called out as rare.
  std::string with_stray = "x,y\n3,99\n";
  for (int i = 0; i < 30; ++i) with_stray += std::to_string(i % 7) + "," + std::to_string(i % 3) + "\n";
  auto stray = ReadCsv(Write("stray.csv", with_stray));
  ASSERT_TRUE(stray.ok()) << stray.status();
  EXPECT_EQ(stray->label_names, (std::vector<std::string>{"0", "1", "2", "99"}));
  EXPECT_EQ(stray->labels[0], 3);
  EXPECT_EQ(stray->labels[1], 0);
  ASSERT_EQ(stray->warnings.size(), 1u);
  EXPECT_NE(stray->warnings[0].find("rare codes, typos?: 99 (1 row)"), std::string::npos) << stray->warnings[0];
  // Text first, then a number: the number is the odd one.
  auto mixed = ReadCsv(Write("mixed.csv", "x,y\n1,well\n2,sick\n3,7\n"));
  EXPECT_NE(mixed.status().message().find("line 4: label '7' is a number but line 2's label 'well' is text"),
            absl::string_view::npos)
      << mixed.status();
  // What the options allow.
  CsvOptions three;
  three.num_classes = 3;
  auto declared = ReadCsv(Write("gap.csv", "x,y\n1,0\n2,2\n"), three);
  ASSERT_TRUE(declared.ok()) << declared.status();
  EXPECT_EQ(declared->num_classes(), 3);
  CsvOptions as_names;
  as_names.labels_as_names = true;
  auto names = ReadCsv(Write("svm.csv", "x,y\n1,-1\n2,1\n3,-1\n"), as_names);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(names->label_names, (std::vector<std::string>{"-1", "1"}));
  EXPECT_EQ(names->labels, (std::vector<int>{0, 1, 0}));
  std::string many = "x,y\n";
  for (int i = 0; i < 1200; ++i) many += "1,c" + std::to_string(i) + "\n";
  EXPECT_NE(ReadCsv(Write("many.csv", many)).status().message().find("1200 classes, more than the 1000"),
            absl::string_view::npos);
}

// A small file that expands to far more than a gateway has, and a line
// longer than any CSV row should be: refused with a clear error, early.
TEST(ReadCsv, LimitsHoldAgainstHugeInputs) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "bomb.csv.gz";
  {
    gzFile f = gzopen(path.c_str(), "wb9");
    const std::string block(1 << 20, '1');
    for (int i = 0; i < 64; ++i) gzwrite(f, block.data(), static_cast<unsigned>(block.size()));
    gzclose(f);
  }
  EXPECT_LT(std::filesystem::file_size(path), 1u << 20);
  auto one_line = ReadCsv(path);
  EXPECT_EQ(one_line.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(one_line.status().message().find("line 1 is longer than 1048576 bytes"), absl::string_view::npos)
      << one_line.status();
  CsvOptions small;
  small.limits = {.max_bytes = 1 << 20, .max_line_bytes = size_t{1} << 30};
  auto capped = ReadCsv(path, small);
  EXPECT_EQ(capped.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(capped.status().message().find("holds more than 1048576 bytes (decompressed)"), absl::string_view::npos)
      << capped.status();
  // An IDX header announcing more than the limit is refused before reading on.
  std::string idx = {0, 0, 0x08, 3, 0, 0, char(0x27), char(0x10), 0, 0, 0, 28, 0, 0, 0, 28};
  auto big = ReadIdx(Write("big.idx", idx), Write("big-labels.idx", idx), {}, {.max_bytes = 1 << 20});
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(big.status().message().find("announces more than 1048576 bytes"), absl::string_view::npos) << big.status();
  EXPECT_EQ(ReadCsv(::testing::TempDir()).status().code(), absl::StatusCode::kInvalidArgument);  // a directory
}

TEST(StratifiedSplit, KeepsClassProportionsAndIsReproducible) {
  Dataset d;
  d.channels = 1;
  d.label_names = {"a", "b"};
  for (int i = 0; i < 100; ++i) {
    d.features.push_back(static_cast<float>(i));
    d.labels.push_back(i < 80 ? 0 : 1);
  }
  const Split s = StratifiedSplit(d, 0.25, 7);
  EXPECT_EQ(s.holdout.ClassCounts(), (std::vector<uint64_t>{20, 5}));
  EXPECT_EQ(s.train.ClassCounts(), (std::vector<uint64_t>{60, 15}));
  EXPECT_EQ(StratifiedSplit(d, 0.25, 7).holdout.features, s.holdout.features);
  EXPECT_NE(StratifiedSplit(d, 0.25, 8).holdout.features, s.holdout.features);
}

}  // namespace
}  // namespace tinyfed::models
