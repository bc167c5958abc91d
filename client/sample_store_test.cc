#include "tinyfed/client/sample_store.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "base/testing/fake_env.h"
#include "base/testing/kill_nine.h"
#include "gtest/gtest.h"

namespace tinyfed::client {
namespace {

std::filesystem::path FreshDir(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::remove_all(dir);
  return dir;
}

Sample Numbered(int i) { return {{static_cast<float>(i), 1234.5678f, -static_cast<float>(i)}, i % 3}; }

TEST(SampleStore, SamplesSurviveReopeningAndNoPlaintextReachesDisk) {
  const auto dir = FreshDir("store1");
  {
    auto store = SampleStore::Open(dir, 100);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<Sample> batch = {Numbered(1), Numbered(2)};
    ASSERT_TRUE((*store)->Add(batch).ok());
    ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(3)}).ok());
  }
  auto store = SampleStore::Open(dir, 100);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->size(), 3u);
  auto all = (*store)->ReadAll();
  ASSERT_TRUE(all.ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*all)[static_cast<size_t>(i)].features, Numbered(i + 1).features);
    EXPECT_EQ((*all)[static_cast<size_t>(i)].label, Numbered(i + 1).label);
  }
  struct stat st;
  ASSERT_EQ(stat((dir / "device.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The distinctive feature value 1234.5678f must not appear in any file.
  const float marker = 1234.5678f;
  const std::string needle(reinterpret_cast<const char*>(&marker), 4);
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::stringstream content;
    content << std::ifstream(e.path(), std::ios::binary).rdbuf();
    EXPECT_EQ(content.str().find(needle), std::string::npos) << e.path();
  }
}

TEST(SampleStore, ReplayBufferKeepsTheNewest) {
  auto store = SampleStore::Open(FreshDir("store2"), 10);
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 25; ++i) ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(i)}).ok());
  EXPECT_EQ((*store)->size(), 10u);
  auto all = (*store)->ReadAll();
  ASSERT_EQ(all->size(), 10u);
  EXPECT_EQ(all->front().features[0], 15.0f);
  EXPECT_EQ(all->back().features[0], 24.0f);
}

TEST(SampleStore, TamperingIsDataLossAndBadSamplesAreRefused) {
  const auto dir = FreshDir("store3");
  {
    auto store = SampleStore::Open(dir, 100);
    ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(1), Numbered(2)}).ok());
    EXPECT_EQ((*store)->Add(std::vector<Sample>{Sample{{}, 0}}).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ((*store)->Add(std::vector<Sample>{Sample{{NAN}, 0}}).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ((*store)->size(), 2u);
  }
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("segment-", 0) != 0) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(60);
    f.put('\x7f');
  }
  EXPECT_EQ(SampleStore::Open(dir, 100).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SampleStore::Open(FreshDir("store4"), 0).status().code(), absl::StatusCode::kInvalidArgument);
}

// Power loss: a writer killed at random moments leaves, on reopen, a prefix
// of what it added, readable and authenticated.
// Deleting the manifest used to make the next open delete every segment,
// silently: the next add-samples said the store held only the new ones.
TEST(SampleStore, AMissingOrDamagedManifestIsDataLossAndDeletesNothing) {
  const auto dir = FreshDir("store_manifest");
  {
    auto store = SampleStore::Open(dir, 100);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(1), Numbered(2)}).ok());
    ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(3)}).ok());
  }
  std::ifstream saved(dir / "manifest");
  const std::string manifest(std::istreambuf_iterator<char>(saved), {});
  auto segments = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      n += e.path().filename().string().rfind("segment-", 0) == 0;
    }
    return n;
  };
  ASSERT_EQ(segments(), 2);
  for (const std::string& damaged :
       {std::string(), std::string("segment-0\nsegment-0\n"), std::string("\x1b[2J\n"), std::string("garbage")}) {
    if (damaged.empty()) {
      std::filesystem::remove(dir / "manifest");
    } else {
      std::ofstream(dir / "manifest", std::ios::trunc) << damaged;
    }
    auto store = SampleStore::Open(dir, 100);
    ASSERT_FALSE(store.ok()) << "opened with manifest '" << damaged << "'";
    EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_NE(store.status().message().find("manifest"), std::string::npos) << store.status();
    if (damaged.empty()) {
      EXPECT_NE(store.status().message().find("segment-0, segment-1"), std::string::npos) << store.status();
    }
    EXPECT_EQ(segments(), 2) << "a segment was deleted";
  }
  // Restored, every sample is there.
  std::ofstream(dir / "manifest", std::ios::trunc) << manifest;
  auto store = SampleStore::Open(dir, 100);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->size(), 3u);
}

// A full disk: every write fails. Each Add says so and changes nothing, in
// memory or on disk (also one that would push the oldest sample out); the
// store goes on once writes succeed again.
TEST(SampleStore, AFailedWriteLosesNothing) {
  const auto dir = FreshDir("store_full");
  base::testing::FakeEnv env;
  auto store = SampleStore::Open(dir, 4, env);
  ASSERT_TRUE(store.ok()) << store.status();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(i)}).ok());
  env.FailWritesUnder(dir);
  for (int i = 4; i < 7; ++i) {  // each would push the oldest out
    const absl::Status full = (*store)->Add(std::vector<Sample>{Numbered(i)});
    EXPECT_FALSE(full.ok());
    EXPECT_NE(full.message().find(dir.string()), std::string::npos) << full;
    EXPECT_EQ((*store)->size(), 4u);
  }
  auto all = (*store)->ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ((*all)[static_cast<size_t>(i)].features, Numbered(i).features);
  // Nor can a new store be made where its key cannot be written.
  EXPECT_FALSE(SampleStore::Open(dir / "another", 4, env).ok());

  env.FailWritesUnder(std::nullopt);
  ASSERT_TRUE((*store)->Add(std::vector<Sample>{Numbered(4)}).ok());
  store->reset();
  auto reopened = SampleStore::Open(dir, 4, env);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  all = (*reopened)->ReadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ((*all)[static_cast<size_t>(i)].features, Numbered(i + 1).features);
}

TEST(SampleStore, KillNineMidWriteLosesNothingCommitted) {
  const auto dir = FreshDir("store_kill");
  size_t committed = 0;
  for (int trial = 0; trial < 8; ++trial) {
    const base::testing::KilledWriter killed =
        base::testing::KillNineAfter(1 + 5 * trial % 11, [&](const std::function<void()>& report) {
          auto store = SampleStore::Open(dir, 1000000);
          if (!store.ok()) _exit(2);
          for (int i = static_cast<int>((*store)->size());; ++i) {
            if (!(*store)->Add(std::vector<Sample>{Numbered(i)}).ok()) return;
            report();
          }
        });
    ASSERT_TRUE(WIFSIGNALED(killed.wait_status)) << "the writer exited with " << WEXITSTATUS(killed.wait_status);
    committed += static_cast<size_t>(killed.commits_reported);
    auto store = SampleStore::Open(dir, 1000000);
    ASSERT_TRUE(store.ok()) << store.status();
    auto all = (*store)->ReadAll();
    ASSERT_TRUE(all.ok()) << all.status();
    for (size_t i = 0; i < all->size(); ++i) ASSERT_EQ((*all)[i].features[0], static_cast<float>(i));
    // Every Add that returned OK is there; at most the one in flight more.
    EXPECT_GE(all->size(), committed);
    EXPECT_LE(all->size(), committed + 1);
    committed = all->size();
  }
  EXPECT_GT(committed, 10u);
}

}  // namespace
}  // namespace tinyfed::client
