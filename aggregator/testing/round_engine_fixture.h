// A round engine driven directly (no transport) on a FakeEnv clock, with
// four enrolled devices and the SecAgg+ side of each: what the engine's own
// tests and the tests of what runs beside it (backups) build rounds with.
#ifndef TINYFED_AGGREGATOR_TESTING_ROUND_ENGINE_FIXTURE_H_
#define TINYFED_AGGREGATOR_TESTING_ROUND_ENGINE_FIXTURE_H_

#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "aggregator/testing/test_federation.h"
#include "base/testing/fake_env.h"
#include "base/testing/value_or_die.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/random.h"

namespace tinyfed::aggregator::testing {

class RoundEngineFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("round_engine_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto federation = testing::WriteTestFederation(dir_, "test");
    ASSERT_TRUE(federation.ok()) << federation.status();
    config_ = federation->config;
    config_.cohort_size = 4;
    config_.min_cohort = 3;
    config_.max_dropout = 0.4;
    config_.max_rounds = 5;
    config_.dp.bits = 16;
    config_.dp.noise_multiplier = 1.0;
    config_.dp.target_epsilon = 0.0;
    config_.dp.epsilon_budget = 1e6;
    config_.simulation_seed = 1;
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Start() {
    auto engine = RoundEngine::Create(config_, env_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    for (int i = 0; i < 4; ++i) {
      const std::string device = Device(i);
      keys_.emplace(device, models::SigningKey::Generate());
      auto token = engine_->devices()->IssueToken(device, absl::Hours(1));
      ASSERT_TRUE(token.ok());
      v1::EnrollRequest r;
      r.set_device_id(device);
      r.set_token(*token);
      r.set_device_public_key(models::KeyBytes(keys_.at(device).public_key()));
      r.set_proof(keys_.at(device).Sign(proto::EnrollmentProofMessage(device, *token)));
      ASSERT_TRUE(engine_->devices()->Enroll(r).ok());
    }
  }

  // As if killed -9: the engine goes without flushing anything, and a new
  // one opens the same state directory.
  void Restart() {
    engine_.reset();
    auto engine = RoundEngine::Create(config_, env_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  static std::string Device(int i) { return "clinic-" + std::to_string(i); }
  static v1::RequestHeader Header(const std::string& device, uint64_t round, v1::Phase phase) {
    v1::RequestHeader h;
    h.set_device_id(device);
    h.set_round_id(round);
    h.set_phase(phase);
    return h;
  }
  v1::CheckInResponse CheckIn(const std::string& device) {
    v1::CheckInRequest r;
    *r.mutable_header() = Header(device, 0, v1::PHASE_CHECK_IN);
    auto response = engine_->CheckIn(r);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::CheckInResponse();
  }
  absl::StatusOr<v1::AwaitResponse> Await(const std::string& device, uint64_t round, v1::Phase phase) {
    v1::AwaitRequest r;
    *r.mutable_header() = Header(device, round, phase);
    return engine_->Await(r);
  }
  // `contributors`: a region's clinics, for a national round's masked input.
  absl::Status Submit(const std::string& device, uint64_t round, v1::Phase phase,
                      const v1::SecAggClientMessage& message, uint32_t contributors = 0) {
    v1::SubmitRequest r;
    *r.mutable_header() = Header(device, round, phase);
    *r.mutable_message() = message;
    r.set_contributors(contributors);
    return engine_->Submit(r).status();
  }
  std::vector<RoundRecord> Rounds() {
    auto state = base::testing::ValueOrDie(AggregatorState::Open(config_.state_dir), "opening the state");
    return base::testing::ValueOrDie(state->Rounds(), "reading the rounds");
  }
  // Admits clinic-0 .. clinic-(n-1); the round id.
  uint64_t Admit(int n) {
    uint64_t round = 0;
    for (int i = 0; i < n; ++i) {
      v1::CheckInResponse r = CheckIn(Device(i));
      EXPECT_TRUE(r.has_admitted()) << r.DebugString();
      round = r.admitted().round_id();
    }
    return round;
  }

  // The SecAgg+ side of each member, built from its task.
  struct Member {
    std::unique_ptr<secagg::Client> client;
    uint32_t id = 0;
    std::vector<uint32_t> input;
  };
  // All-zero inputs (the DDG encoding of a zero update), or with `distinct`
  // small values that differ by member, to check a sum by.
  std::map<std::string, Member> Members(uint64_t round, int n, bool distinct = false) {
    std::map<std::string, Member> members;
    for (int i = 0; i < n; ++i) {
      const v1::RoundTask t = Task(round, i);
      std::vector<uint32_t> input(t.secagg().vector_length(), 0);
      for (size_t j = 0; distinct && j < input.size(); ++j) input[j] = static_cast<uint32_t>((7 * i + j) % 5);
      members[Device(i)] = Join(t, i, std::move(input));
    }
    return members;
  }
  // Device i's task in `round`.
  v1::RoundTask Task(uint64_t round, int i) {
    const v1::AwaitResponse task = base::testing::ValueOrDie(Await(Device(i), round, v1::PHASE_TASK), Device(i));
    EXPECT_TRUE(task.has_task()) << task.DebugString();
    return task.task();
  }
  // Device i's SecAgg+ side in the round of `task`, holding `input`.
  static Member Join(const v1::RoundTask& task, int i, std::vector<uint32_t> input) {
    const secagg::SecAggParams params = base::testing::ValueOrDie(
        secagg::ParamsOfTask(task.round_id(), task.cohort_size(), task.secagg()), "the task's parameters");
    std::array<uint8_t, 32> seed{};
    seed[0] = static_cast<uint8_t>(i);
    return Member{
        base::testing::ValueOrDie(secagg::Client::Create(params, task.secagg_id(), input, secagg::SeededRandom(seed)),
                                  "a SecAgg+ client"),
        task.secagg_id(), input};
  }
  // Sends the member's signed keys; the message sent.
  v1::SecAggClientMessage Advertise(uint64_t round, const std::string& device, Member& m) {
    v1::SecAggClientMessage message = base::testing::ValueOrDie(m.client->AdvertiseKeys(), "advertising keys");
    v1::AdvertiseKeys* a = message.mutable_advertise_keys();
    a->set_signature(keys_.at(device).Sign(
        proto::AdvertiseKeysSigningMessage(round, m.id, device, a->encryption_public_key(), a->masking_public_key())));
    EXPECT_TRUE(Submit(device, round, v1::PHASE_ADVERTISE_KEYS, message).ok()) << device;
    return message;
  }
  // Answers `phase` for `device` with the server's message for it.
  void Answer(uint64_t round, const std::string& device, Member& m, v1::Phase phase, uint32_t contributors = 0) {
    auto await = Await(device, round, phase);
    ASSERT_TRUE(await.ok()) << await.status();
    ASSERT_TRUE(await->has_secagg()) << await->DebugString();
    auto reply = m.client->Handle(await->secagg());
    ASSERT_TRUE(reply.ok()) << reply.status();
    const absl::Status sent = Submit(device, round, phase, *reply, contributors);
    ASSERT_TRUE(sent.ok()) << sent;
  }

  std::filesystem::path dir_;
  Config config_;
  base::testing::FakeEnv env_;
  std::unique_ptr<RoundEngine> engine_;
  std::map<std::string, models::SigningKey> keys_;
};

}  // namespace tinyfed::aggregator::testing

#endif  // TINYFED_AGGREGATOR_TESTING_ROUND_ENGINE_FIXTURE_H_
