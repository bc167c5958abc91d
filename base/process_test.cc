#include "tinyfed/base/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tinyfed/base/await_path.h"

namespace tinyfed::base {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tinyfed-process-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  Process Shell(const std::string& script) { return Process::Spawn({"/bin/sh", "-c", script}, dir_ / "log"); }
  std::filesystem::path dir_;
};

TEST_F(ProcessTest, WaitReturnsTheExitStatus) {
  Process p = Shell("echo hello; exit 3");
  ASSERT_GT(p.pid(), 0);
  const auto status = p.Wait(seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 3);
  EXPECT_FALSE(p.running());
}

TEST_F(ProcessTest, WaitTimesOutOnARunningProcessAndSeesItsSignal) {
  Process p = Shell("kill -STOP $$");  // blocks until killed
  ASSERT_GT(p.pid(), 0);
  EXPECT_FALSE(p.Wait(milliseconds(1)).has_value());
  EXPECT_TRUE(p.running());
  p.Signal(SIGKILL);
  const auto status = p.Wait(seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL);
}

TEST_F(ProcessTest, SamplesThePeakResidentMemoryOfItsOwnImage) {
  // The shell holds 30 MB of 'a's, then waits (in a child) to be killed.
  Process p = Shell("x=$(head -c 30000000 /dev/zero | tr '\\0' a); sleep 600; echo ${#x}");
  ASSERT_GT(p.pid(), 0);
  EXPECT_EQ(p.peak_rss_bytes(), 0u) << "nothing sampled yet";
  // Until the shell has read it all: bounded by a condition, not a sleep.
  for (int i = 0; i < 300000 && p.peak_rss_bytes() < 30'000'000; ++i) {
    p.SampleMemory();
    if (p.Wait(milliseconds(1)).has_value()) break;
  }
  EXPECT_GE(p.peak_rss_bytes(), 30'000'000u);
  EXPECT_LT(p.peak_rss_bytes(), 200'000'000u);
  p.Signal(SIGKILL);
  ASSERT_TRUE(p.Wait(seconds(30)).has_value());
  const uint64_t peak = p.peak_rss_bytes();
  p.SampleMemory();  // an exited process has no image left to read
  EXPECT_EQ(p.peak_rss_bytes(), peak);
}

TEST_F(ProcessTest, AMissingProgramIsNoProcess) {
  Process p = Process::Spawn({"/nonexistent/program"}, dir_ / "log");
  // posix_spawn may report the failure itself, or as the child's exit 127.
  if (p.pid() > 0) {
    const auto status = p.Wait(seconds(30));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(WEXITSTATUS(*status), 127);
  }
  EXPECT_FALSE(Process::Spawn({}, dir_ / "log").running());
}

TEST_F(ProcessTest, AwaitPathSeesAFileAnotherProcessRenamesIntoPlace) {
  const auto target = dir_ / "listening";
  Process p = Shell("echo 127.0.0.1:1 > '" + (dir_ / "tmp").string() + "' && mv '" + (dir_ / "tmp").string() + "' '" +
                    target.string() + "'");
  EXPECT_TRUE(AwaitPath(target, seconds(30)).ok());
  EXPECT_TRUE(std::filesystem::exists(target));
}

TEST_F(ProcessTest, AwaitPathGivesUpWhenTheWriterExitsOrTimeRunsOut) {
  Process p = Shell("exit 0");
  const absl::Status exited = AwaitPath(dir_ / "never", seconds(30), &p);
  EXPECT_TRUE(absl::IsAborted(exited)) << exited;
  const absl::Status late = AwaitPath(dir_ / "never", milliseconds(1));
  EXPECT_TRUE(absl::IsDeadlineExceeded(late)) << late;
  const absl::Status no_dir = AwaitPath(dir_ / "missing" / "file", seconds(30));
  EXPECT_TRUE(absl::IsFailedPrecondition(no_dir)) << no_dir;
  EXPECT_NE(no_dir.message().find("missing"), std::string::npos) << no_dir;
}

TEST_F(ProcessTest, AwaitPathReturnsAtOnceForAFileThatExists) {
  std::filesystem::create_directories(dir_ / "already");
  EXPECT_TRUE(AwaitPath(dir_ / "already", milliseconds(0)).ok());
}

}  // namespace
}  // namespace tinyfed::base
