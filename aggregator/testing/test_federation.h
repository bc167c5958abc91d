// What an aggregator test needs before the engine starts: the tiny
// classifier as initial model, a single-key repository, and a config with
// them that listens on a free loopback port.
#ifndef TINYFED_AGGREGATOR_TESTING_TEST_FEDERATION_H_
#define TINYFED_AGGREGATOR_TESTING_TEST_FEDERATION_H_

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::aggregator::testing {

struct TestFederation {
  Config config;
  std::filesystem::path pinned_root;  // for the clients' trusted_root
};

inline absl::StatusOr<TestFederation> WriteTestFederation(const std::filesystem::path& dir,
                                                          const std::string& federation) {
  if (auto s = models::WriteBundleFile(dir / "model.tfb", models::testing::TinyClassifier()); !s.ok()) return s;
  auto repository = models::CreateSingleKeyRepository(dir / "trust", federation);
  if (!repository.ok()) return repository.status();
  TestFederation f{.config = DefaultConfig(), .pinned_root = repository->pinned_root};
  f.config.listen = "127.0.0.1:0";
  f.config.state_dir = dir / "state";
  f.config.initial_model = dir / "model.tfb";
  f.config.publishing_key = repository->publishing_key;
  f.config.roots_dir = repository->roots_dir;
  return f;
}

}  // namespace tinyfed::aggregator::testing

#endif  // TINYFED_AGGREGATOR_TESTING_TEST_FEDERATION_H_
