#include "tinyfed/models/directory_lock.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace tinyfed::models {
namespace {

// Two aggregators on one state directory used to both run.
TEST(DirectoryLock, ASecondHolderIsRefusedNamingTheFirstAndAKilledHolderLeavesNoLock) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / ("tinyfed-lock-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto lock = DirectoryLock::Acquire(dir, "tinyfed aggregator");
    const char ok = lock.ok() ? 'y' : 'n';
    (void)!::write(ready[1], &ok, 1);
    ::pause();  // holds the lock until killed
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  auto second = DirectoryLock::Acquire(dir, "tinyfed aggregator");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(
      second.status().message().find("in use by another process (tinyfed aggregator, pid " + std::to_string(child)),
      std::string::npos)
      << second.status();
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  auto after = DirectoryLock::Acquire(dir, "tinyfed aggregator");
  ASSERT_TRUE(after.ok()) << after.status();
  // Within one process too.
  EXPECT_EQ(DirectoryLock::Acquire(dir, "again").status().code(), absl::StatusCode::kFailedPrecondition);
  after->reset();
  EXPECT_TRUE(DirectoryLock::Acquire(dir, "again").ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tinyfed::models
