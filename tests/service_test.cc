// The aggregator's gRPC service under bad requests: malformed, oversized,
// wrong-phase, forged and replayed. Each gets a clear status, and the round
// it was aimed at completes with the honest clients and the right sum.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sodium.h>

#include <functional>
#include <future>
#include <thread>

#include "absl/synchronization/notification.h"
#include "aggregator/testing/round_engine_peer.h"
#include "aggregator/testing/test_federation.h"
#include "base/testing/value_or_die.h"
#include "client/testing/client_peer.h"
#include "models/testing/tiny_classifier.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tinyfed/aggregator/round_engine.h"
#include "tinyfed/aggregator/server.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/auth/device_signature.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/client/client.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/proto/authentication.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/v1/service.grpc.pb.h"

namespace tinyfed::aggregator {
namespace {

constexpr int kHonest = 4;
constexpr int kBits = 16;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tinyfed-service-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto federation = testing::WriteTestFederation(dir_, "service-test");
    ASSERT_TRUE(federation.ok()) << federation.status();
    config_ = federation->config;
    pinned_root_ = federation->pinned_root;
    config_.max_rounds = 1;
    config_.cohort_size = kHonest + 1;
    config_.min_cohort = 3;
    config_.poll_interval = absl::Milliseconds(20);
    config_.training_timeout = absl::Seconds(20);
    config_.share_keys_timeout = absl::Seconds(2);
    config_.masked_input_timeout = absl::Seconds(2);
    config_.unmasking_timeout = absl::Seconds(2);
    config_.max_dropout = 0.4;
    config_.dp.bits = kBits;
    config_.security.requests_per_minute = 100000;
    auto engine = RoundEngine::Create(config_);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    devices_ = engine_->devices();
    testing::RoundEnginePeer::ObserveSecureSums(
        *engine_, [this](int64_t round, std::span<const uint32_t> sum, const std::vector<std::string>&) {
          std::lock_guard lock(sums_mu_);
          sums_[round].assign(sum.begin(), sum.end());
        });
    Enroll("mallory", mallory_key_);
    Enroll("outsider", mallory_key_);  // enrolled, never in a cohort
    auto server = AggregatorServer::Start(engine_.get(), config_.listen, config_.security, /*insecure=*/true);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
    channel_ = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::Aggregator::NewStub(channel_);
  }
  void TearDown() override {
    server_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  static v1::RequestHeader Header(const std::string& device, uint64_t round, v1::Phase phase) {
    v1::RequestHeader h;
    h.set_device_id(device);
    h.set_round_id(round);
    h.set_phase(phase);
    return h;
  }
  void Enroll(const std::string& device, const models::SigningKey& key) {
    auto token = devices_->IssueToken(device, absl::Hours(1));
    ASSERT_TRUE(token.ok()) << token.status();
    ASSERT_TRUE(devices_->Enroll(auth::SignedEnrollRequest(device, *token, key)).ok());
  }
  // Stamps and signs `r` as its header's device would, with mallory's key:
  // mallory is the enrolled insider of these tests.
  template <typename Request>
  Request Signed(grpc::ClientContext* c, const std::string& method, Request r) {
    auth::StampHeader(r.mutable_header(), absl::Now());
    c->AddMetadata(proto::kSignatureMetadataKey,
                   auth::SignRequest("/tinyfed.v1.Aggregator/" + method, r.SerializeAsString(), mallory_key_));
    return r;
  }
  grpc::Status CheckIn(const v1::CheckInRequest& r, v1::CheckInResponse* out) {
    grpc::ClientContext c;
    return stub_->CheckIn(&c, Signed(&c, "CheckIn", r), out);
  }
  grpc::Status Await(const std::string& device, uint64_t round, v1::Phase phase, v1::AwaitResponse* out) {
    grpc::ClientContext c;
    v1::AwaitRequest r;
    *r.mutable_header() = Header(device, round, phase);
    return stub_->Await(&c, Signed(&c, "Await", r), out);
  }
  grpc::Status Submit(const v1::RequestHeader& h, const v1::SecAggClientMessage& m) {
    grpc::ClientContext c;
    v1::SubmitRequest r;
    *r.mutable_header() = h;
    *r.mutable_message() = m;
    v1::SubmitResponse out;
    return stub_->Submit(&c, Signed(&c, "Submit", r), &out);
  }
  // One round with a full cohort (so that selection closes at once): device
  // 0, named `first`, talks through `wrap(its transport)`, the others are
  // clinic-1.. . Each client's report of the round it took part in.
  std::vector<client::RoundReport> RunFullCohort(
      const std::string& first,
      const std::function<std::unique_ptr<client::Transport>(std::unique_ptr<client::Transport>)>& wrap) {
    std::vector<std::thread> threads;
    std::vector<client::RoundReport> reports(kHonest + 1);
    for (int i = 0; i < kHonest + 1; ++i) {
      threads.emplace_back([&, i] {
        client::ClientConfig cc;
        cc.device_id = i == 0 ? first : "clinic-" + std::to_string(i);
        cc.data_dir = dir_ / cc.device_id;
        cc.trusted_root = pinned_root_;
        cc.holdout_fraction = 0.0;
        cc.enrollment_token = *devices_->IssueToken(cc.device_id, absl::Hours(1));
        auto transport = std::move(*client::ConnectGrpc(address_, client::ChannelSecurity::Plaintext()));
        if (i == 0) transport = wrap(std::move(transport));
        auto c = client::Client::Create(cc, std::move(transport));
        ASSERT_TRUE(c.ok()) << c.status();
        ASSERT_TRUE((*c)->AddSamples(client::ToSamples(models::testing::TinyClassifierData(40, 20 + i))).ok());
        // The cohort is exactly these clients and selection opens at the
        // first check-in, so each is admitted at its first.
        auto report = (*c)->ParticipateOnce();
        ASSERT_TRUE(report.ok()) << report.status();
        EXPECT_NE(report->outcome, client::RoundOutcome::kNotSelected) << report->detail;
        reports[static_cast<size_t>(i)] = *report;
      });
    }
    for (auto& t : threads) t.join();
    return reports;
  }

  // kHonest gateways, honest-0 .. honest-3, each running one round on its
  // own thread. They tell the test what happened (a task arrived: the cohort
  // is fixed; share_keys opened) so that it waits on events, not the clock;
  // honest-0 waits in the advertise phase until ReleaseAdvertise.
  struct HonestGateways {
    explicit HonestGateways(ServiceTest& test) : hold_advertise(release_advertise.get_future().share()) {
      for (int i = 0; i < kHonest; ++i) threads.emplace_back([this, &test, i] { Run(test, i); });
    }
    // Also on an early failed assertion: the threads end before they are destroyed.
    ~HonestGateways() { Join(); }
    void ReleaseAdvertise() {
      std::call_once(released, [this] { release_advertise.set_value(); });
    }
    void Join() {
      ReleaseAdvertise();
      for (auto& t : threads) {
        if (t.joinable()) t.join();
      }
    }
    void Run(ServiceTest& test, int i) {
      client::ClientConfig cc;
      cc.device_id = "honest-" + std::to_string(i);
      cc.data_dir = test.dir_ / cc.device_id;
      cc.trusted_root = test.pinned_root_;
      cc.holdout_fraction = 0.0;
      auto token = test.devices_->IssueToken(cc.device_id, absl::Hours(1));
      ASSERT_TRUE(token.ok());
      cc.enrollment_token = *token;
      client::ClientHooks hooks;
      hooks.on_phase = [this, i](uint64_t, v1::Phase phase) {
        if (phase == v1::PHASE_TASK) std::call_once(cohort_fixed_once, [this] { cohort_fixed.Notify(); });
        if (phase == v1::PHASE_SHARE_KEYS) std::call_once(share_keys_open_once, [this] { share_keys_open.Notify(); });
        if (i == 0 && phase == v1::PHASE_ADVERTISE_KEYS) hold_advertise.wait();
        return true;
      };
      auto c = client::Client::Create(
          cc, std::move(*client::ConnectGrpc(test.address_, client::ChannelSecurity::Plaintext())), hooks);
      ASSERT_TRUE(c.ok()) << c.status();
      client::testing::ClientPeer::ObserveEncodedUpdates(
          **c, [this, id = cc.device_id](uint64_t, std::span<const uint32_t> e) {
            std::lock_guard lock(encoded_mu);
            encoded[id].assign(e.begin(), e.end());
          });
      const models::Dataset data = models::testing::TinyClassifierData(60, 10 + static_cast<uint64_t>(i));
      ASSERT_TRUE((*c)->AddSamples(client::ToSamples(data)).ok());
      // mallory and these four are the whole cohort: admitted at once.
      auto report = (*c)->ParticipateOnce();
      ASSERT_TRUE(report.ok()) << report.status();
      outcomes[static_cast<size_t>(i)] = report->outcome;
      EXPECT_NE(report->outcome, client::RoundOutcome::kNotSelected) << report->detail;
      EXPECT_NE(report->outcome, client::RoundOutcome::kAborted) << report->detail;
    }

    absl::Notification cohort_fixed, share_keys_open;
    std::vector<client::RoundOutcome> outcomes = std::vector<client::RoundOutcome>(kHonest);
    std::mutex encoded_mu;
    std::map<std::string, std::vector<uint32_t>> encoded;

   private:
    std::once_flag cohort_fixed_once, share_keys_open_once, released;
    std::promise<void> release_advertise;
    std::shared_future<void> hold_advertise;
    std::vector<std::thread> threads;
  };

  // The federation's one round is done with every gateway of `encoded` as a
  // survivor, and its secure sum is theirs modulo 2^kBits.
  void ExpectOneRoundSummed(const std::map<std::string, std::vector<uint32_t>>& encoded, size_t length) {
    auto state = AggregatorState::Open(config_.state_dir);
    ASSERT_TRUE(state.ok());
    auto rounds = (*state)->Rounds();
    ASSERT_TRUE(rounds.ok());
    ASSERT_EQ(rounds->size(), 1u);
    EXPECT_EQ((*rounds)[0].state, "done") << (*rounds)[0].reason;
    EXPECT_EQ((*rounds)[0].survivors, static_cast<int>(encoded.size()));
    std::vector<uint32_t> sum;
    {
      std::lock_guard lock(sums_mu_);
      ASSERT_TRUE(sums_.contains(1));
      sum = sums_[1];
    }
    std::vector<uint32_t> expected(length, 0);
    ASSERT_EQ(encoded.size(), static_cast<size_t>(kHonest));
    for (const auto& [device, e] : encoded) {
      ASSERT_EQ(e.size(), length) << device;
      for (size_t i = 0; i < expected.size(); ++i) expected[i] = (expected[i] + e[i]) & ((1u << kBits) - 1);
    }
    EXPECT_EQ(sum, expected);
  }

  // Raw bytes to a method, bypassing the typed stub.
  grpc::Status SendBytes(const std::string& method, const std::string& bytes) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext c;
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    grpc::Status status;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    generic.UnaryCall(&c, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
      std::lock_guard lock(mu);
      status = s;
      done = true;
      cv.notify_all();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
    return status;
  }

  std::filesystem::path dir_;
  std::mutex sums_mu_;
  std::map<int64_t, std::vector<uint32_t>> sums_;  // each round's secure sum (RoundEnginePeer)
  models::SigningKey mallory_key_ = models::SigningKey::Generate();
  Config config_;
  std::filesystem::path pinned_root_;
  DeviceRegistry* devices_ = nullptr;  // the engine's
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<AggregatorServer> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Aggregator::Stub> stub_;
};

#define EXPECT_CODE(expr, code)                                               \
  do {                                                                        \
    const grpc::Status _s = (expr);                                           \
    EXPECT_EQ(_s.error_code(), grpc::StatusCode::code) << _s.error_message(); \
  } while (0)

TEST_F(ServiceTest, BeforeAnyRoundBadRequestsGetClearErrors) {
  // Malformed, oversized and ill-formed requests.
  EXPECT_CODE(SendBytes("/tinyfed.v1.Aggregator/CheckIn", "\xff\xff\xff garbage"), INVALID_ARGUMENT);
  v1::CheckInRequest bad;
  v1::CheckInResponse checkin;
  *bad.mutable_header() = Header("", 0, v1::PHASE_CHECK_IN);
  EXPECT_CODE(CheckIn(bad, &checkin), INVALID_ARGUMENT);
  *bad.mutable_header() = Header("mallory", 0, v1::PHASE_TASK);
  EXPECT_CODE(CheckIn(bad, &checkin), INVALID_ARGUMENT);
  {  // round 2^64-1 used to be echoed as "round -1"
    v1::AwaitResponse out;
    const grpc::Status huge = Await("mallory", ~uint64_t{0}, v1::PHASE_TASK, &out);
    EXPECT_EQ(huge.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(huge.error_message().find("header.round_id 18446744073709551615 is not a round id"), std::string::npos)
        << huge.error_message();
  }
  *bad.mutable_header() = Header(std::string(5000, 'm'), 0, v1::PHASE_CHECK_IN);
  const grpc::Status oversized = CheckIn(bad, &checkin);
  EXPECT_EQ(oversized.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(oversized.error_message().find("limit of 1024 bytes"), std::string::npos) << oversized.error_message();
  v1::SecAggClientMessage huge;
  huge.mutable_masked_input()->set_masked_input(std::string(4 << 20, 'x'));
  EXPECT_CODE(Submit(Header("mallory", 1, v1::PHASE_MASKED_INPUT), huge), RESOURCE_EXHAUSTED);
  v1::AwaitResponse await;
  EXPECT_CODE(Await("mallory", 99, v1::PHASE_TASK, &await), FAILED_PRECONDITION);
  {
    grpc::ClientContext c;
    v1::TelemetryRequest t;
    *t.mutable_header() = Header("mallory", 0, v1::PHASE_TELEMETRY);
    t.mutable_telemetry()->set_holdout_accuracy(2.0f);
    v1::TelemetryResponse out;
    EXPECT_CODE(stub_->ReportTelemetry(&c, Signed(&c, "ReportTelemetry", t), &out), INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext c1, c2;
    v1::ModelChunkRequest m;
    *m.mutable_header() = Header("mallory", 0, v1::PHASE_MODEL_DOWNLOAD);
    m.set_version(99);
    v1::ModelChunk out;
    EXPECT_CODE(stub_->GetModelChunk(&c1, Signed(&c1, "GetModelChunk", m), &out), NOT_FOUND);
    m.set_version(1);
    m.set_offset(uint64_t{1} << 40);
    EXPECT_CODE(stub_->GetModelChunk(&c2, Signed(&c2, "GetModelChunk", m), &out), OUT_OF_RANGE);
  }
}

TEST_F(ServiceTest, BadRequestsInARoundGetClearErrorsAndTheRoundCompletesIntact) {
  v1::CheckInResponse checkin;
  v1::AwaitResponse await;
  // Mallory joins the cohort first.
  v1::CheckInRequest mallory;
  *mallory.mutable_header() = Header("mallory", 0, v1::PHASE_CHECK_IN);
  ASSERT_TRUE(CheckIn(mallory, &checkin).ok());
  ASSERT_TRUE(checkin.has_admitted());
  const uint64_t round = checkin.admitted().round_id();
  v1::SecAggClientMessage early;
  early.set_round_id(round);
  early.mutable_advertise_keys();
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), early), FAILED_PRECONDITION);

  // Four honest gateways; honest-0 holds the advertise phase open until
  // mallory's checks are done.
  HonestGateways honest(*this);
  // The cohort is fixed once all five checked in.
  v1::RoundTask task;
  ASSERT_TRUE(honest.cohort_fixed.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(Await("mallory", round, v1::PHASE_TASK, &await).ok());
  ASSERT_TRUE(await.has_task()) << await.DebugString();
  task = await.task();
  const uint32_t me = task.secagg_id();
  EXPECT_CODE(Await("outsider", round, v1::PHASE_TASK, &await), FAILED_PRECONDITION);

  auto params = secagg::ParamsOfTask(round, task.cohort_size(), task.secagg());
  ASSERT_TRUE(params.ok());
  auto make_advertise = [&] {
    auto c = secagg::Client::Create(*params, me, std::vector<uint32_t>(task.secagg().vector_length(), 0),
                                    secagg::OsRandom());
    v1::SecAggClientMessage m = *(*c)->AdvertiseKeys();
    v1::AdvertiseKeys* keys = m.mutable_advertise_keys();
    keys->set_signature(mallory_key_.Sign(proto::AdvertiseKeysSigningMessage(
        round, me, "mallory", keys->encryption_public_key(), keys->masking_public_key())));
    return m;
  };
  const v1::SecAggClientMessage advertise = make_advertise();

  // Wrong phase, mismatched phase, forged sender, another round, bad keys.
  v1::SecAggClientMessage shares;
  shares.set_round_id(round);
  shares.set_sender(me);
  shares.mutable_share_keys();
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_SHARE_KEYS), shares), FAILED_PRECONDITION);
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_SHARE_KEYS), advertise), INVALID_ARGUMENT);
  v1::SecAggClientMessage forged = advertise;
  forged.set_sender((me + 1) % task.cohort_size());
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), forged), INVALID_ARGUMENT);
  forged.set_sender(me);
  forged.mutable_advertise_keys()->set_masking_public_key("short");
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), forged), INVALID_ARGUMENT);
  v1::SecAggClientMessage stale = advertise;
  stale.set_round_id(round + 7);
  EXPECT_CODE(Submit(Header("mallory", round + 7, v1::PHASE_ADVERTISE_KEYS), stale), FAILED_PRECONDITION);
  // A forged device id: the signature is mallory's, not honest-0's.
  EXPECT_CODE(Submit(Header("honest-0", round, v1::PHASE_ADVERTISE_KEYS), advertise), UNAUTHENTICATED);
  // Keys whose signature is not over this round's keys (a substitution).
  v1::SecAggClientMessage substituted = make_advertise();
  substituted.mutable_advertise_keys()->set_masking_public_key(advertise.advertise_keys().masking_public_key());
  const grpc::Status unsigned_keys = Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), substituted);
  EXPECT_EQ(unsigned_keys.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(unsigned_keys.error_message().find("advertise_keys.signature"), std::string::npos);

  // A valid message; its retry is acknowledged, a different one is a replay.
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), advertise), OK);
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), advertise), OK);
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), make_advertise()), FAILED_PRECONDITION);
  honest.ReleaseAdvertise();

  // Once the round moved on, a different message for the old phase is
  // refused; the same one (its acknowledgement lost as the phase closed, or
  // across an aggregator restart) is acknowledged again and changes nothing.
  ASSERT_TRUE(honest.share_keys_open.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(Await("mallory", round, v1::PHASE_SHARE_KEYS, &await).ok());
  ASSERT_TRUE(await.has_secagg()) << await.DebugString();
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), make_advertise()), FAILED_PRECONDITION);
  EXPECT_CODE(Submit(Header("mallory", round, v1::PHASE_ADVERTISE_KEYS), advertise), OK);
  EXPECT_CODE(Await("mallory", round, v1::PHASE_TASK, &await), OK);

  // Mallory goes silent; the honest four finish the round, and the secure
  // sum is the sum of their encoded updates.
  honest.Join();
  for (auto outcome : honest.outcomes) EXPECT_EQ(outcome, client::RoundOutcome::kCompleted);
  ExpectOneRoundSummed(honest.encoded, task.secagg().vector_length());

  // The federation is closed after its one round.
  ASSERT_TRUE(CheckIn(mallory, &checkin).ok());
  EXPECT_TRUE(checkin.has_closed());
  EXPECT_EQ(checkin.latest_model().version(), 2u);
}

// The malicious-server attack on SecAgg+ (Bonawitz et al.): the aggregator
// hands a client another key for a neighbour, to learn the pairwise mask.
// The key is not signed by the neighbour's device, so the client refuses to
// go on, before it shares or masks anything.
class SubstitutingTransport : public client::ForwardingTransport {
 public:
  using ForwardingTransport::ForwardingTransport;
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& r) override {
    auto out = ForwardingTransport::Await(r);
    if (out.ok() && out->has_secagg() && out->secagg().has_share_keys() &&
        out->secagg().share_keys().neighbors_size() > 0) {
      // The server's own key in place of the first neighbour's.
      std::string key(32, '\0');
      randombytes_buf(key.data(), key.size());
      out->mutable_secagg()->mutable_share_keys()->mutable_neighbors(0)->set_masking_public_key(key);
    }
    return out;
  }
};

TEST_F(ServiceTest, AClientRefusesANeighbourKeyItsDeviceDidNotSign) {
  const std::vector<client::RoundReport> reports =
      RunFullCohort("clinic-0", [](auto inner) { return std::make_unique<SubstitutingTransport>(std::move(inner)); });
  EXPECT_EQ(reports[0].outcome, client::RoundOutcome::kAborted);
  EXPECT_NE(reports[0].detail.find("keys are not signed by device 'clinic-"), std::string::npos) << reports[0].detail;
}

// An enrolled insider that follows the protocol but sends key shares nobody
// can open: its neighbours used to refuse them and drop out themselves, so
// every round it joined aborted without naming it.
class GarblingTransport : public client::ForwardingTransport {
 public:
  using ForwardingTransport::ForwardingTransport;
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest& r) override {
    v1::SubmitRequest garbled = r;
    if (garbled.message().has_share_keys()) {
      std::string& sealed = *garbled.mutable_message()->mutable_share_keys()->mutable_sealed_shares();
      for (size_t at = 0; at < sealed.size(); at += 64) {
        sealed[at] ^= 0x5a;  // each neighbour's record
      }
    }
    return ForwardingTransport::Submit(garbled);
  }
};

TEST_F(ServiceTest, AnInsiderWithGarbageSharesCostsTheRoundOnlyItself) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  const std::vector<client::RoundReport> reports =
      RunFullCohort("insider", [](auto inner) { return std::make_unique<GarblingTransport>(std::move(inner)); });
  spdlog::set_default_logger(previous);
  for (int i = 1; i <= kHonest; ++i) {
    EXPECT_EQ(reports[static_cast<size_t>(i)].outcome, client::RoundOutcome::kCompleted)
        << "clinic-" << i << ": " << reports[static_cast<size_t>(i)].detail;
  }
  EXPECT_EQ(reports[0].outcome, client::RoundOutcome::kAborted) << reports[0].detail;
  auto outcome = engine_->Outcome(1);
  ASSERT_TRUE(outcome.has_value() && outcome->has_result()) << (outcome ? outcome->DebugString() : "no outcome");
  EXPECT_EQ(outcome->result().survivors(), static_cast<uint32_t>(kHonest));
  const std::string text = log.str();
  EXPECT_NE(text.find("device insider is left out of the sum: its key shares failed authentication at"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("excluded from later cohorts (rejected by 4 devices)"), std::string::npos) << text;
}

// A kill -9 in the middle of a round whose journal is lost (a backup taken
// mid-round and restored; aggregator_round_engine_resume_test resumes one
// that has it): the next process records that round as aborted, keeps every
// published model and charges nothing for it.
TEST_F(ServiceTest, RestartWithoutTheJournalAbortsTheRunningRoundAndKeepsPublishedModels) {
  v1::CheckInRequest request;
  v1::CheckInResponse response;
  for (int i = 0; i < kHonest + 1; ++i) {
    Enroll("clinic-" + std::to_string(i), mallory_key_);
    *request.mutable_header() = Header("clinic-" + std::to_string(i), 0, v1::PHASE_CHECK_IN);
    ASSERT_TRUE(CheckIn(request, &response).ok());
    ASSERT_TRUE(response.has_admitted());
  }
  server_.reset();
  engine_.reset();  // as if killed: no round state is flushed on the way out
  std::filesystem::remove(config_.state_dir / "round_journal.db");

  auto engine = RoundEngine::Create(config_);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->latest_model().version(), 1u);
  auto state = AggregatorState::Open(config_.state_dir);
  ASSERT_TRUE(state.ok());
  auto rounds = (*state)->Rounds();
  ASSERT_TRUE(rounds.ok());
  ASSERT_EQ(rounds->size(), 1u);
  EXPECT_EQ((*rounds)[0].state, "aborted");
  EXPECT_EQ((*rounds)[0].reason, "the aggregator restarted and had no journal of it");
  EXPECT_EQ((*rounds)[0].selected, kHonest + 1);
  auto ledger = dp::PrivacyLedger::Open(config_.state_dir / "ledger.db", {.epsilon = 10, .delta = 1e-5});
  ASSERT_TRUE(ledger.ok());
  EXPECT_TRUE(ledger->get()->Charges()->empty());
  // The next round gets a fresh id.
  *request.mutable_header() = Header("clinic-0", 0, v1::PHASE_CHECK_IN);
  auto again = (*engine)->CheckIn(request);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->has_admitted());
  EXPECT_EQ(again->admitted().round_id(), 2u);
}

// A gateway that restarts mid-round may continue it until it has sent its
// first message of the round; after that it waits for the next round.
TEST_F(ServiceTest, RestartedClientContinuesUntilItSentItsFirstMessage) {
  server_.reset();
  engine_.reset();
  std::filesystem::remove_all(config_.state_dir);
  config_.secure_aggregation = false;
  config_.dp.mode = DpMode::kOff;
  config_.cohort_size = 3;
  auto engine = RoundEngine::Create(config_);
  ASSERT_TRUE(engine.ok()) << engine.status();
  RoundEngine& e = **engine;
  auto check_in = [&](const std::string& device) {
    v1::CheckInRequest r;
    *r.mutable_header() = Header(device, 0, v1::PHASE_CHECK_IN);
    return base::testing::ValueOrDie(e.CheckIn(r), "check-in of " + device);
  };
  for (const char* d : {"a", "b", "c"}) ASSERT_TRUE(check_in(d).has_admitted());
  // "a" restarts after the cohort closed, before sending its update.
  v1::CheckInResponse again = check_in("a");
  ASSERT_TRUE(again.has_admitted()) << again.DebugString();
  const uint64_t round = again.admitted().round_id();
  v1::AwaitRequest await;
  *await.mutable_header() = Header("a", round, v1::PHASE_TASK);
  auto task = e.Await(await);
  ASSERT_TRUE(task.ok() && task->has_task());
  ASSERT_TRUE(task->task().has_plain());
  v1::SubmitRequest submit;
  *submit.mutable_header() = Header("a", round, v1::PHASE_UPDATE);
  submit.mutable_update()->set_round_id(round);
  const size_t head =
      models::testing::TinyClassifier().head().weights_size() + models::testing::TinyClassifier().head().bias_size();
  submit.mutable_update()->set_dimension(static_cast<uint32_t>(head));
  submit.mutable_update()->mutable_dense()->set_values(std::string(head * sizeof(float), '\0'));
  ASSERT_TRUE(e.Submit(submit).ok());
  // Now it must wait for the next round.
  EXPECT_TRUE(check_in("a").has_retry_later());
}

// An enrolled device's telemetry used to reach the log verbatim: a forged
// "round ... published" line and terminal escapes appeared as lines of their
// own, and 490 reports in a second added 290 KB.
TEST_F(ServiceTest, DeviceTextCannotForgeLogLinesOrFloodTheLog) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  for (int i = 0; i < 490; ++i) {
    v1::TelemetryRequest r;
    *r.mutable_header() = Header("mallory", 0, v1::PHASE_TELEMETRY);
    r.mutable_telemetry()->set_model_version(1);
    r.mutable_telemetry()->set_model_status(
        "refused\n2026-12-01T00:00:00.000 info round 4242 done: 6 of 6 survived, model v4243 published\x1b[2J" +
        std::string(400, 'x') + std::to_string(i));
    ASSERT_TRUE(engine_->ReportTelemetry(r).ok());
  }
  spdlog::set_default_logger(previous);
  const std::string text = log.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;  // one line, however many reports
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_NE(text.find("device mallory keeps model v1: 'refused\\n2026"), std::string::npos) << text;
  EXPECT_NE(text.find("\\x1b[2J"), std::string::npos) << text;
  EXPECT_NE(text.find("more bytes)"), std::string::npos) << text;  // bounded
  EXPECT_LT(text.size(), 600u) << text;
}

TEST_F(ServiceTest, ASecondAggregatorOnTheSameStateDirectoryIsRefused) {
  auto second = RoundEngine::Create(config_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use by another process (tinyfed aggregator, pid"), std::string::npos)
      << second.status();
}

TEST(ConfigTest, NamesTheKeyAndLineOfEachMistake) {
  auto expect_error = [](const std::string& toml, const std::string& needle) {
    auto c = ParseConfig(toml, "/etc/tinyfed/aggregator.toml");
    ASSERT_FALSE(c.ok()) << toml;
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
  };
  const std::string paths = "state_dir = \"s\"\ninitial_model = \"m\"\npublishing_key = \"k\"\nroots_dir = \"r\"\n";
  expect_error(paths + "[rounds]\ncohort = 5\n", "aggregator.toml:6: rounds.cohort: unknown key");
  expect_error(paths + "[rounds]\ncohort_size = -3\n", "aggregator.toml:6: rounds.cohort_size: must be in [2,");
  expect_error(paths + "[dp]\nclip = \"big\"\n", "dp.clip: must be a number");
  expect_error(paths + "[optimizer]\nkind = \"sgd\"\n", "optimizer.kind: must be one of fedavg, fedavgm");
  expect_error(paths + "[dp]\nnoise_multiplier = 1.0\ntarget_epsilon = 8\n", "exactly one");
  expect_error(paths + "[dp]\nnoise_multiplier = 0\ntarget_epsilon = 8\n", "needs rounds.max_rounds");
  expect_error(paths + "[rounds]\ncohort_size = 5\nmin_cohort = 6\n", "exceeds");
  expect_error(paths + "[rounds]\ncohort_size = 2\nmin_cohort = 2\n", "rounds.cohort_size (2) is below 3");
  expect_error(paths + "[operator]\nport = 9464\n", "operator.port: unknown key");
  expect_error(paths + "[operator]\ndrain_timeout = -1\n", "operator.drain_timeout: must be in");
  expect_error("initial_model = \"m\"\npublishing_key = \"k\"\n", "missing required key 'state_dir'");
  expect_error(paths + "[rounds\n", "aggregator.toml:5");
  expect_error(paths + "colour = 1\n", "aggregator.toml:5: colour: unknown key");
  expect_error(paths + "[security]\ntls_certificate = \"c.pem\"\n", "set both or neither");
  expect_error(paths + "[security]\nrequests_per_minute = 0\n", "security.requests_per_minute: must be in");
  // Honest gateways with one-second rounds were rate-limited at 600 a minute.
  expect_error(paths + "[security]\nrequests_per_minute = 600\n",
               "requests_per_minute (600) is below 840: twice the rate clients poll at (120 a minute");
  expect_error(paths + "[security]\nmax_connections = 0\n", "security.max_connections: must be in");

  expect_error(paths + "[secagg]\nenabled = false\n", "need secagg.enabled = true");
  expect_error(paths + "[dp]\nmode = \"central\"\n", "set secagg.enabled = false");
  expect_error(paths + "[dp]\nunit = \"hospital\"\n", "dp.unit: must be one of clinic, patient");
  expect_error(paths + "[dp]\nunit = \"patient\"\nmode = \"local\"\n", "needs dp.mode = \"distributed\"");
  expect_error(paths + "[dp]\nunit = \"patient\"\nsampling_rate = 0\n", "dp.sampling_rate: must be in");
  expect_error(paths + "[dp]\nunit = \"patient\"\nnoise_multiplier = 0.01\n", "at least 0.05");
  expect_error(paths + "[training]\nclass_weights = [1, 2]\n", "class_weights apply to patient-level DP-SGD only");
  expect_error(paths + "[dp]\nunit = \"patient\"\n[training]\nclass_weights = [1, -2]\n",
               "training.class_weights: values must be in");
  expect_error(paths + "[dp]\nunit = \"patient\"\n[training]\nclass_weights = \"heavy\"\n",
               "training.class_weights: must be an array of numbers");

  auto ok = ParseConfig(paths + "[dp]\ntarget_epsilon = 8\n[rounds]\nmax_rounds = 50\n[deadlines]\ntraining = 1.5\n",
                        "/etc/tinyfed/aggregator.toml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->state_dir, "/etc/tinyfed/s");
  EXPECT_EQ(ok->dp.target_epsilon, 8.0);
  EXPECT_EQ(ok->dp.noise_multiplier, 0.0);
  EXPECT_EQ(ok->training_timeout, absl::Milliseconds(1500));

  // FormatConfig writes what ParseConfig reads back.
  Config c = *ok;
  c.dp.mode = DpMode::kCentral;
  c.secure_aggregation = false;
  c.compression = v1::COMPRESSION_TOPK;
  c.topk_fraction = 0.25;
  c.simulation_seed = 42;
  c.optimizer.kind = ServerOptimizerKind::kFedYogi;
  c.security.tls_certificate = "/etc/tinyfed/tls/cert.pem";
  c.security.tls_private_key = "/etc/tinyfed/tls/key.pem";
  c.security.release_expiry = absl::Hours(36);
  c.operator_port.listen = "0.0.0.0:9464";
  c.operator_port.token_file = "/etc/tinyfed/operator.token";
  c.operator_port.drain_timeout = absl::Seconds(12);
  auto back = ParseConfig(FormatConfig(c), "/elsewhere/copy.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << FormatConfig(c);
  EXPECT_EQ(FormatConfig(*back), FormatConfig(c));
  // And the patient unit's keys.
  c.dp.mode = DpMode::kDistributed;
  c.secure_aggregation = true;
  c.compression = v1::COMPRESSION_NONE;
  c.dp.unit = DpUnit::kPatient;
  c.dp.sampling_rate = 0.25;
  c.dp.update_clip = 3.0;
  c.training.add_class_weights(2.0f);
  c.training.add_class_weights(1.0f);
  back = ParseConfig(FormatConfig(c), "/elsewhere/copy.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << FormatConfig(c);
  EXPECT_EQ(FormatConfig(*back), FormatConfig(c));
  EXPECT_EQ(back->state_dir, "/etc/tinyfed/s");
  EXPECT_EQ(back->simulation_seed, 42u);
  EXPECT_EQ(back->dp.unit, DpUnit::kPatient);
  EXPECT_EQ(back->dp.sampling_rate, 0.25);
  EXPECT_EQ(back->training.class_weights_size(), 2);
  EXPECT_EQ(PatientStepsPerRound(*back), 4 * back->training.epochs());
}

TEST(ConfigTest, ARegionalAggregatorNeedsItsUpstreamAndNoModelOrKey) {
  const std::string region = "state_dir = \"s\"\nroots_dir = \"r\"\n";
  const std::string upstream = "[upstream]\naddress = \"national:7443\"\ndevice_id = \"region-north\"\n";
  auto expect_error = [](const std::string& toml, const std::string& needle) {
    auto c = ParseConfig(toml, "/etc/tinyfed/region.toml");
    ASSERT_FALSE(c.ok()) << toml;
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
  };
  expect_error(region, "missing required key 'initial_model'");  // without [upstream], a national or flat one
  expect_error(region + "publishing_key = \"k\"\n" + upstream, "publishing_key is not used by a regional aggregator");
  expect_error(region + "[upstream]\ndevice_id = \"region-north\"\n", "[upstream] address");
  expect_error(region + "[upstream]\naddress = \"n:1\"\ndevice_id = \"north/../x\"\n", "[upstream] device_id");
  expect_error(region + upstream + "colour = 1\n", "upstream.colour: unknown key");
  expect_error(region + upstream + "[rounds]\nnational_clinics = 30\n", "no rounds.national_clinics");

  auto ok = ParseConfig(region + upstream + "ca_certificate = \"ca.pem\"\nenrollment_token_file = \"t\"\n",
                        "/etc/tinyfed/region.toml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(ok->upstream.has_value());
  EXPECT_EQ(ok->upstream->address, "national:7443");
  EXPECT_EQ(ok->upstream->ca_certificate, "/etc/tinyfed/ca.pem");
  EXPECT_EQ(ok->upstream->enrollment_token_file, "/etc/tinyfed/t");
  EXPECT_TRUE(ok->initial_model.empty());
  auto back = ParseConfig(FormatConfig(*ok), "/elsewhere/copy.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << FormatConfig(*ok);
  EXPECT_EQ(FormatConfig(*back), FormatConfig(*ok));
}

TEST(ConfigTest, RolloutTakesACanaryAndThresholdsAndIsOnlyForAFederationOfGateways) {
  const std::string flat = "state_dir = \"s\"\nroots_dir = \"r\"\ninitial_model = \"m\"\npublishing_key = \"k\"\n";
  auto c = ParseConfig(flat +
                           "[rollout]\ncanary_fraction = 0.1\ncanary_devices = [\"clinic-7\"]\ncanary_reports = 4\n"
                           "max_accuracy_drop = 0.02\n",
                       "/etc/tinyfed/aggregator.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->rollout.enabled());
  EXPECT_EQ(c->rollout.canary_devices, std::vector<std::string>{"clinic-7"});
  EXPECT_EQ(c->rollout.canary_reports, 4);
  auto back = ParseConfig(FormatConfig(*c), "/elsewhere/copy.toml");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << FormatConfig(*c);
  EXPECT_EQ(FormatConfig(*back), FormatConfig(*c));
  EXPECT_FALSE(ParseConfig(flat, "/a.toml")->rollout.enabled()) << "off unless asked for";

  auto expect_error = [](const std::string& toml, const std::string& needle) {
    auto bad = ParseConfig(toml, "/etc/tinyfed/aggregator.toml");
    ASSERT_FALSE(bad.ok()) << toml;
    EXPECT_NE(bad.status().message().find(needle), std::string::npos) << bad.status().message();
  };
  expect_error(flat + "[rollout]\ncanary_fraction = 0.9\n", "canary_fraction");
  expect_error(flat + "[rollout]\ncanary_devices = [\"../etc\"]\n", "is not a device id");
  expect_error(flat + "[rollout]\ncanary_reports = 0\n", "canary_reports");
  expect_error(flat + "[rounds]\nnational_clinics = 30\n[rollout]\ncanary_fraction = 0.1\n",
               "[rollout] is for a federation of gateways");
}

}  // namespace
}  // namespace tinyfed::aggregator
