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
  EXPECT_NE(ReadIdx(Write("ok", images), two_labels).status().message().find("3 images but"),
            absl::string_view::npos);
  EXPECT_EQ(ReadIdx(Write("bad", "hello world"), lab).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadIdx("/nonexistent", lab).status().code(), absl::StatusCode::kNotFound);
}

TEST(ReadCsv, HeaderNamesAndLabelColumn) {
  const auto path = Write("h.csv", "age,label,bp\n30,sick,120\n40,well,130\n50,sick,125\n");
  auto d = ReadCsv(path, CsvOptions{"label"});
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
  EXPECT_NE(bad.status().message().find("line 3 column b: 'x' is not a finite number"),
            absl::string_view::npos) << bad.status();
  auto ragged = ReadCsv(Write("ragged.csv", "1,2,0\n3,1\n"));
  EXPECT_NE(ragged.status().message().find("line 2: 2 fields, expected 3"), absl::string_view::npos)
      << ragged.status();
  auto one_class = ReadCsv(Write("one.csv", "1,0\n2,0\n"));
  EXPECT_EQ(one_class.status().code(), absl::StatusCode::kInvalidArgument);
  auto no_column = ReadCsv(Write("nc.csv", "a,y\n1,0\n2,1\n"), CsvOptions{"missing"});
  EXPECT_NE(no_column.status().message().find("no label column 'missing'"), absl::string_view::npos);
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
