#include "tinyfed/base/file_io.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

namespace tinyfed::base {
namespace {

class FileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / ("file-io-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(FileIoTest, WritesAtomicallyWithItsModeAndReadsBack) {
  const auto file = dir_ / "secret";
  ASSERT_TRUE(WriteFileAtomically(file, "first", 0600).ok());
  ASSERT_TRUE(WriteFileAtomically(file, "second, longer", 0600).ok());
  EXPECT_EQ(*ReadFileBytes(file, 100), "second, longer");
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Nothing but the file is left in the directory.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(FileIoTest, AFailedWriteLeavesTheOldFileAndNoTemporary) {
  const auto file = dir_ / "kept";
  ASSERT_TRUE(WriteFileAtomically(file, "old").ok());
  // A directory where the file should go cannot be replaced by a rename.
  const auto blocked = dir_ / "blocked";
  std::filesystem::create_directories(blocked / "child");
  EXPECT_FALSE(WriteFileAtomically(blocked, "new").ok());
  EXPECT_FALSE(WriteFileAtomically(dir_ / "no-such-dir" / "f", "x").ok());
  EXPECT_EQ(*ReadFileBytes(file, 100), "old");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 2);  // "kept" and "blocked"
}

TEST_F(FileIoTest, ReadsRefuseWhatIsNotASmallRegularFile) {
  EXPECT_EQ(ReadFileBytes(dir_ / "missing", 10).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadFileBytes(dir_, 10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFileBytes("/dev/zero", 10).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteFileAtomically(dir_ / "big", std::string(64, 'x')).ok());
  auto big = ReadFileBytes(dir_ / "big", 63);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(big.status().message().find("63"), std::string::npos) << big.status();
  EXPECT_EQ(ReadFileBytes(dir_ / "big", 64)->size(), 64u);
}

}  // namespace
}  // namespace tinyfed::base
