// The client's model installation and local behaviour against a fake
// aggregator: which published models it accepts, which it refuses (and then
// keeps serving the installed one), and resumable downloads.
#include "tinyfed/client/client.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "base/testing/fake_env.h"
#include "base/testing/value_or_die.h"
#include "client/internal/personal_head.h"
#include "client/testing/heads.h"
#include "models/testing/tiny_classifier.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/sha256.h"
#include "tinyfed/dp/pld_accountant.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/head_release.h"
#include "tinyfed/models/signing.h"
#include "tinyfed/models/trust.h"

namespace tinyfed::client {
namespace {

// Announces `ref` at check-in and serves `blob` in small chunks.
class FakeAggregator : public Transport {
 public:
  v1::ModelRef ref;
  std::string blob;
  size_t chunk_bytes = 1000;
  std::string head_blob;  // ref's SignedHead, served to a gateway that asks for only the head
  int chunks_served = 0;
  size_t bytes_served = 0;
  int fail_after_chunks = -1;  // simulate a lost link after this many chunks
  std::vector<v1::Telemetry> telemetry;
  std::vector<v1::SignedMetadata> roots;  // 1.root, 2.root, ...
  bool admit = false;  // admit the client to round `round_id`, a trusted-aggregator round training `ref`
  uint64_t round_id = 7;
  std::optional<v1::PatientDpSettings> patient_dp;  // makes the round patient-level
  absl::Status checkin_error;

  int checkins = 0;

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    ++checkins;
    if (!checkin_error.ok()) return checkin_error;
    v1::CheckInResponse r;
    if (admit) {
      r.mutable_admitted()->set_round_id(round_id);
    } else {
      r.mutable_retry_later()->set_delay_ms(1000);
    }
    *r.mutable_latest_model() = ref;
    for (size_t v = request.trusted_root_version(); v < roots.size(); ++v) *r.add_roots() = roots[v];
    return r;
  }
  absl::StatusOr<v1::AwaitResponse> Await(const v1::AwaitRequest& request) override {
    if (!admit || request.header().phase() != v1::PHASE_TASK) return absl::UnimplementedError("not in this test");
    v1::AwaitResponse r;
    v1::RoundTask* task = r.mutable_task();
    task->set_round_id(round_id);
    *task->mutable_model() = ref;
    if (patient_dp) *task->mutable_patient_dp() = *patient_dp;
    task->mutable_training()->set_epochs(1);
    task->mutable_training()->set_batch_size(8);
    task->mutable_training()->set_learning_rate(0.1f);
    task->mutable_plain()->set_clip(1.0);
    return r;
  }
  absl::StatusOr<v1::SubmitResponse> Submit(const v1::SubmitRequest&) override {
    return absl::FailedPreconditionError("the fake ends the round here");
  }
  absl::StatusOr<v1::ModelChunk> GetModelChunk(const v1::ModelChunkRequest& request) override {
    if (fail_after_chunks >= 0 && chunks_served >= fail_after_chunks) return absl::UnavailableError("link lost");
    ++chunks_served;
    v1::ModelChunk c;
    c.set_version(request.version());
    const std::string& served = request.head_only() ? head_blob : blob;
    c.set_total_size(served.size());
    c.set_download_sha256(request.head_only() ? ref.head_download_sha256() : ref.download_sha256());
    c.set_offset(request.offset());
    c.set_data(served.substr(std::min<size_t>(request.offset(), served.size()), chunk_bytes));
    bytes_served += c.data().size();
    return c;
  }
  absl::StatusOr<v1::TelemetryResponse> ReportTelemetry(const v1::TelemetryRequest& request) override {
    telemetry.push_back(request.telemetry());
    return v1::TelemetryResponse();
  }
};

constexpr const char* kFederation = "clinics-test/tiny";

// How a test model is published.
struct Release {
  std::string federation = kFederation;
  absl::Duration expires_in = absl::Hours(24);
  float head_scale = 1.0f;
  int classes = 0;  // 0: the tiny classifier's 3
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tinyfed-client-" + std::to_string(getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    roots_.push_back(SignedRoot(1, key_));
    ASSERT_TRUE(models::WriteRoot(dir_ / "roots", roots_[0]).ok());
    config_.device_id = "clinic-1";
    config_.data_dir = dir_ / "gateway";
    config_.trusted_root = dir_ / "roots" / "1.root";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Root `version` (one root key, threshold 1) naming `publishing`, signed
  // by the previous root's key and its own.
  v1::SignedMetadata SignedRoot(uint64_t version, const models::SigningKey& publishing) {
    v1::RootMetadata r;
    r.set_version(version);
    r.set_federation(kFederation);
    r.set_expires_unix_seconds(absl::ToUnixSeconds(absl::Now() + absl::Hours(24 * 365)));
    r.mutable_root()->add_public_keys(models::KeyBytes(root_key_.public_key()));
    r.mutable_root()->set_threshold(1);
    r.mutable_publishing()->add_public_keys(models::KeyBytes(publishing.public_key()));
    r.mutable_publishing()->set_threshold(1);
    const models::SigningKey* signer = &root_key_;
    return models::SignRoot(r, {&signer, 1});
  }

  // A published model: bundle `version` with its head scaled by `head_scale`.
  static std::string Publish(uint64_t version, const models::SigningKey& key, Release r = {}) {
    v1::ModelBundle b = models::testing::TinyClassifier();
    for (auto& w : *b.mutable_head()->mutable_weights()) w *= r.head_scale;
    if (r.classes > 0) {
      v1::Head& head = *b.mutable_head();
      head.set_num_classes(r.classes);
      head.mutable_weights()->Resize(static_cast<int>(r.classes * head.in_features()), 0.1f);
      head.mutable_bias()->Resize(r.classes, 0.0f);
      b.mutable_label_names()->Clear();
      for (int i = 0; i < r.classes; ++i) b.add_label_names("class-" + std::to_string(i));
    }
    b.mutable_metadata()->set_version(version);
    v1::SignedBundle out;
    out.set_bundle(models::EncodeBundleFile(b));
    v1::ReleaseMetadata release =
        base::testing::ValueOrDie(models::DescribeRelease(out.bundle(), r.federation), "describing the release");
    release.set_version(version);
    release.set_expires_unix_seconds(absl::ToUnixSeconds(absl::Now() + r.expires_in));
    const models::SigningKey* signer = &key;
    *out.mutable_release() = models::SignRelease(release, {&signer, 1});
    return out.SerializeAsString();
  }
  static v1::ModelRef RefFor(const std::string& blob) {
    v1::SignedBundle s;
    s.ParseFromString(blob);
    v1::ReleaseMetadata release;
    release.ParseFromString(s.release().payload());
    v1::ModelRef ref;
    ref.set_version(release.model_version());
    ref.set_bundle_sha256(release.bundle_sha256());
    ref.set_download_size(blob.size());
    ref.set_download_sha256(base::Sha256(blob));
    return ref;
  }

  // A client whose aggregator offers `blob` announced as `ref`.
  std::unique_ptr<Client> ClientOffering(const std::string& blob, const v1::ModelRef& ref, FakeAggregator** fake,
                                         base::Env& env = base::Env::Default()) {
    auto transport = std::make_unique<FakeAggregator>();
    transport->blob = blob;
    transport->ref = ref;
    transport->roots = roots_;
    *fake = transport.get();
    auto c = Client::Create(config_, std::move(transport), {}, env);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  models::SigningKey root_key_ = models::SigningKey::Generate();
  models::SigningKey key_ = models::SigningKey::Generate();  // publishing
  std::vector<v1::SignedMetadata> roots_;
  std::filesystem::path dir_;
  ClientConfig config_;
};

TEST_F(ClientTest, InstallsASignedNewerModelAndPredictsWithIt) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  EXPECT_EQ(c->Predict(std::vector<float>(8, 0.0f)).status().code(), absl::StatusCode::kFailedPrecondition);
  auto report = c->ParticipateOnce();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->outcome, RoundOutcome::kNotSelected);
  EXPECT_EQ(c->model_version(), 1u);
  const models::Dataset data = models::testing::TinyClassifierData(30, 9);
  int correct = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    auto p = c->Predict(data.sample(i));
    ASSERT_TRUE(p.ok());
    correct += p->label == data.labels[i];
  }
  EXPECT_GE(correct, 24);
  EXPECT_EQ(c->Predict(std::vector<float>(7, 0.0f)).status().code(), absl::StatusCode::kInvalidArgument);
  // A restarted client finds the model installed.
  c.reset();
  auto again = ClientOffering(v1, RefFor(v1), &fake);
  EXPECT_EQ(again->model_version(), 1u);
}

// Release expiry is read on the client's Env: the same release (24 hours to
// live) installs on a gateway whose clock reads now, and is refused as
// expired on one whose clock reads two days on.
TEST_F(ClientTest, ReleaseExpiryIsReadOnTheInjectedClock) {
  const std::string v1 = Publish(1, key_);
  FakeAggregator* fake = nullptr;
  base::testing::FakeEnv later(1, absl::Now() + absl::Hours(48));
  auto late = ClientOffering(v1, RefFor(v1), &fake, later);
  ASSERT_TRUE(late->ParticipateOnce().ok());
  EXPECT_EQ(late->model_version(), 0u);
  ASSERT_TRUE(late->SendTelemetry().ok());
  ASSERT_FALSE(fake->telemetry.empty());
  EXPECT_NE(fake->telemetry.back().model_status().find("expired"), std::string::npos)
      << fake->telemetry.back().model_status();
  late.reset();
  base::testing::FakeEnv now(1, absl::Now());
  auto timely = ClientOffering(v1, RefFor(v1), &fake, now);
  ASSERT_TRUE(timely->ParticipateOnce().ok());
  EXPECT_EQ(timely->model_version(), 1u);
}

// A gateway whose disk is full: it cannot start without writing its key,
// and says which file; later a model it cannot store is not installed, the
// one it has keeps answering, and the next round installs it once there is
// room.
TEST_F(ClientTest, AFullDiskKeepsTheInstalledModelAndNamesTheFile) {
  base::testing::FakeEnv env(1, absl::Now());
  env.FailWritesUnder(config_.data_dir);
  auto refused = Client::Create(config_, std::make_unique<FakeAggregator>(), {}, env);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find((config_.data_dir / "device_signing.key").string()), std::string::npos)
      << refused.status();
  refused = absl::UnknownError("closed");
  env.FailWritesUnder(std::nullopt);

  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto c = ClientOffering(v1, RefFor(v1), &fake, env);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_EQ(c->model_version(), 1u);
  const std::vector<float> x(8, 0.5f);
  auto before = c->Predict(x);
  ASSERT_TRUE(before.ok()) << before.status();

  const std::string v2 = Publish(2, key_, {.head_scale = 0.3f});
  fake->blob = v2;
  fake->ref = RefFor(v2);
  env.FailWritesUnder(config_.data_dir);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 1u);
  auto still = c->Predict(x);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->label, before->label);
  EXPECT_EQ(still->confidence, before->confidence);
  ASSERT_TRUE(c->SendTelemetry().ok());
  ASSERT_FALSE(fake->telemetry.empty());
  const std::string status = fake->telemetry.back().model_status();
  EXPECT_NE(status.find("model v2 not installed"), std::string::npos) << status;
  EXPECT_NE(status.find(config_.data_dir.string()), std::string::npos) << status;

  env.FailWritesUnder(std::nullopt);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 2u);
}

// A screening class: Predict decides it by a threshold set on the held-out
// slice, which only ever catches more of that class than the argmax.
TEST_F(ClientTest, DecidesAScreeningClassByAThresholdSetOnItsHeldOutSlice) {
  config_.positive_class = "a";
  config_.target_sensitivity = 0.99;
  config_.holdout_fraction = 0.5;
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_, {.head_scale = 0.3f});
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  EXPECT_EQ(c->DecisionThreshold().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_EQ(c->model_version(), 1u);
  const models::Dataset data = models::testing::TinyClassifierData(60, 4);
  const std::vector<Sample> samples = testing::TinySamples(data);
  ASSERT_TRUE(c->AddSamples(samples).ok());
  auto threshold = c->DecisionThreshold();
  ASSERT_TRUE(threshold.ok()) << threshold.status();
  EXPECT_GT(*threshold, 0.0);
  EXPECT_LE(*threshold, 0.5);
  // The same model deciding by argmax.
  ClientConfig plain = config_;
  plain.positive_class.clear();
  plain.data_dir = dir_ / "plain";
  auto transport = std::make_unique<FakeAggregator>();
  transport->blob = v1;
  transport->ref = RefFor(v1);
  transport->roots = roots_;
  auto argmax = Client::Create(plain, std::move(transport));
  ASSERT_TRUE(argmax.ok());
  ASSERT_TRUE((*argmax)->ParticipateOnce().ok());
  int caught = 0, caught_by_argmax = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    if (data.labels[i] != 0) continue;
    caught += c->Predict(data.sample(i))->label == 0;
    caught_by_argmax += (*argmax)->Predict(data.sample(i))->label == 0;
  }
  EXPECT_GE(caught, caught_by_argmax);
  // A class the model lacks is named.
  config_.positive_class = "zebra";
  config_.data_dir = dir_ / "zebra";
  auto z = ClientOffering(v1, RefFor(v1), &fake);
  ASSERT_TRUE(z->ParticipateOnce().ok());
  EXPECT_EQ(z->DecisionThreshold().status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(z->Predict(data.sample(0)).status().message().find("positive_class 'zebra'"), std::string::npos);
}

// Each refusal keeps the installed model and says why in the telemetry.
TEST_F(ClientTest, RefusesTamperedForeignOlderAndOversizedModels) {
  FakeAggregator* fake = nullptr;
  const std::string v2 = Publish(2, key_);
  {
    auto c = ClientOffering(v2, RefFor(v2), &fake);
    ASSERT_TRUE(c->ParticipateOnce().ok());
    ASSERT_EQ(c->model_version(), 2u);
  }
  struct Attack {
    const char* name;
    std::string blob;
    v1::ModelRef ref;
    const char* why;
  };
  std::vector<Attack> attacks;
  {  // a byte of the bundle flipped, announced with the tampered download's hash
    v1::SignedBundle s;
    s.ParseFromString(Publish(3, key_));
    std::string bundle = s.bundle();
    bundle[bundle.size() / 2] ^= 1;
    s.set_bundle(bundle);
    const std::string blob = s.SerializeAsString();
    v1::ModelRef ref = RefFor(blob);
    attacks.push_back({"tampered", blob, ref, "SHA-256"});
  }
  {  // signed by a key the client never pinned
    const std::string blob = Publish(3, models::SigningKey::Generate());
    attacks.push_back({"foreign key", blob, RefFor(blob), "0 valid signature(s) of the 1 required"});
  }
  {  // an older, genuinely signed model announced as a newer version
    const std::string blob = Publish(1, key_);
    v1::ModelRef ref = RefFor(blob);
    ref.set_version(3);
    attacks.push_back({"older", blob, ref, "rollback"});
  }
  {  // more bytes than announced (endless data)
    const std::string blob = Publish(3, key_);
    v1::ModelRef ref = RefFor(blob);
    ref.set_download_size(blob.size() - 100);
    attacks.push_back({"endless data", blob, ref, "does not match"});
  }
  {  // a release past its expiry (a freeze: the attacker replays an old state)
    const std::string blob = Publish(3, key_, {.expires_in = -absl::Minutes(1)});
    attacks.push_back({"expired", blob, RefFor(blob), "expired"});
  }
  {  // genuinely signed, for another federation
    const std::string blob = Publish(3, key_, {.federation = "clinics-south/other"});
    attacks.push_back({"another federation", blob, RefFor(blob), "clinics-south/other"});
  }
  {  // genuinely signed, but for another task (5 classes instead of 3)
    const std::string blob = Publish(3, key_, {.classes = 5});
    attacks.push_back({"another task", blob, RefFor(blob), "another task"});
  }
  {  // the download is longer than the signed bundle (endless data past the metadata's length)
    v1::SignedBundle s;
    s.ParseFromString(Publish(3, key_));
    s.mutable_bundle()->append(4096, '\0');
    const std::string blob = s.SerializeAsString();
    attacks.push_back({"longer than signed", blob, RefFor(blob), "the release signs"});
  }
  for (const Attack& attack : attacks) {
    SCOPED_TRACE(attack.name);
    auto c = ClientOffering(attack.blob, attack.ref, &fake);
    auto report = c->ParticipateOnce();
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(c->model_version(), 2u);
    EXPECT_TRUE(c->Predict(std::vector<float>(8, 0.5f)).ok());  // still serving
    ASSERT_TRUE(c->SendTelemetry().ok());
    ASSERT_EQ(fake->telemetry.size(), 1u);
    EXPECT_EQ(fake->telemetry[0].model_version(), 2u);
    EXPECT_NE(fake->telemetry[0].model_status().find("refused"), std::string::npos);
    EXPECT_NE(fake->telemetry[0].model_status().find(attack.why), std::string::npos)
        << attack.name << fake->telemetry[0].model_status();
    EXPECT_FALSE(std::filesystem::exists(config_.data_dir / "download.partial"));
  }
}

TEST_F(ClientTest, ResumesADownloadAfterTheLinkDrops) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  fake->chunk_bytes = 128;
  fake->fail_after_chunks = 3;
  ASSERT_GT(v1.size(), 4u * 128);
  auto report = c->ParticipateOnce();
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c->model_version(), 0u);
  EXPECT_EQ(std::filesystem::file_size(config_.data_dir / "download.partial"), 3u * 128);
  fake->fail_after_chunks = -1;
  fake->chunks_served = 0;
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 1u);
  // Only the missing chunks were fetched again.
  EXPECT_EQ(fake->chunks_served, static_cast<int>((v1.size() + 127) / 128) - 3);
}

// A gateway that has the backbone fetches only the new head (as the
// aggregator offers it: the model's SignedHead), and installs the very file
// a whole download would have; a head that does not rebuild the signed
// bundle costs the whole download, not the model.
TEST_F(ClientTest, FetchesOnlyTheHeadOntoTheBackboneItHas) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_), v2 = Publish(2, key_, {.head_scale = 2.0f}),
                    v3 = Publish(3, key_, {.head_scale = 3.0f});
  auto offer_head_of = [&](const std::string& blob, std::string head_blob) {
    fake->blob = blob;
    fake->ref = RefFor(blob);
    fake->head_blob = std::move(head_blob);
    v1::SignedBundle s;
    ASSERT_TRUE(s.ParseFromString(blob));
    fake->ref.set_backbone_sha256(
        base::testing::ValueOrDie(models::ParseRelease(s.release()), "the release").backbone_sha256());
    fake->ref.set_head_download_size(fake->head_blob.size());
    fake->ref.set_head_download_sha256(base::Sha256(fake->head_blob));
    fake->bytes_served = 0;
  };
  auto head_of = [](const std::string& blob) {
    v1::SignedBundle s;
    EXPECT_TRUE(s.ParseFromString(blob));
    return base::testing::ValueOrDie(models::SignedHeadOf(s), "the head").SerializeAsString();
  };
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  offer_head_of(v1, head_of(v1));  // nothing installed yet: the whole model
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_EQ(c->model_version(), 1u);
  EXPECT_EQ(fake->bytes_served, v1.size());

  offer_head_of(v2, head_of(v2));
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 2u);
  EXPECT_EQ(fake->bytes_served, fake->head_blob.size());
  EXPECT_LT(fake->bytes_served, v2.size());
  EXPECT_EQ(*base::ReadFileBytes(config_.data_dir / "model.signed", 1 << 30), v2);

  v1::SignedHead tampered;
  ASSERT_TRUE(tampered.ParseFromString(head_of(v3)));
  v1::ModelBundle part;
  ASSERT_TRUE(part.ParseFromString(tampered.bundle_without_backbone()));
  part.mutable_head()->set_bias(0, part.head().bias(0) + 1.0f);
  tampered.set_bundle_without_backbone(part.SerializeAsString());
  offer_head_of(v3, tampered.SerializeAsString());
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 3u);
  EXPECT_EQ(fake->bytes_served, fake->head_blob.size() + v3.size()) << "the head, then the whole model";
  EXPECT_EQ(*base::ReadFileBytes(config_.data_dir / "model.signed", 1 << 30), v3);
}

// A damaged installed model used to keep the gateway from starting. It is
// set aside, the gateway starts without a model (and says why), fetches and
// verifies the model again at its next check-in, and still refuses older ones.
TEST_F(ClientTest, SetsADamagedInstalledModelAsideAndFetchesItAgain) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_), v2 = Publish(2, key_);
  {
    auto c = ClientOffering(v2, RefFor(v2), &fake);
    ASSERT_TRUE(c->ParticipateOnce().ok());
    ASSERT_EQ(c->model_version(), 2u);
  }
  std::string bytes = *base::ReadFileBytes(config_.data_dir / "model.signed", 1 << 30);
  bytes[bytes.size() / 2] ^= 1;
  ASSERT_TRUE(base::WriteFileAtomically(config_.data_dir / "model.signed", bytes).ok());
  {
    auto older = ClientOffering(v1, RefFor(v1), &fake);
    ASSERT_NE(older, nullptr);
    EXPECT_EQ(older->model_version(), 0u);
    EXPECT_EQ(older->Predict(std::vector<float>(8, 0.0f)).status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(std::filesystem::exists(config_.data_dir / "model.signed.damaged"));
    ASSERT_TRUE(older->ParticipateOnce().ok());
    EXPECT_EQ(older->model_version(), 0u) << "v1 is older than the damaged v2: a rollback";
    ASSERT_TRUE(older->SendTelemetry().ok());
    EXPECT_NE(fake->telemetry.back().model_status().find("refused"), std::string::npos)
        << fake->telemetry.back().model_status();
  }
  auto c = ClientOffering(v2, RefFor(v2), &fake);
  ASSERT_TRUE(c->SendTelemetry().ok());
  EXPECT_NE(fake->telemetry.back().model_status().find("failed verification"), std::string::npos)
      << fake->telemetry.back().model_status();
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 2u);
  EXPECT_TRUE(c->Predict(std::vector<float>(8, 0.0f)).ok());
  EXPECT_FALSE(std::filesystem::exists(config_.data_dir / "model.signed.damaged"));
}

// A gateway that lost its device key after enrolling used to make a new one
// silently and be refused forever. Without a token it says to re-enroll;
// with one it makes a new key and enrolls again.
TEST_F(ClientTest, ALostDeviceKeyAfterEnrollmentAsksToReEnroll) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  ASSERT_NE(ClientOffering(v1, RefFor(v1), &fake), nullptr);
  ASSERT_TRUE(base::WriteFileAtomically(config_.data_dir / "enrolled", "enrolled\n").ok());
  std::filesystem::remove(config_.data_dir / "device_signing.key");
  auto lost = Client::Create(config_, std::make_unique<FakeAggregator>());
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(lost.status().message().find("Re-enroll"), std::string::npos) << lost.status();
  config_.enrollment_token = "a-new-token";
  auto again = Client::Create(config_, std::make_unique<FakeAggregator>());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(std::filesystem::exists(config_.data_dir / "device_signing.key"));
  EXPECT_FALSE(std::filesystem::exists(config_.data_dir / "enrolled"));  // enrolls at its next check-in
}

TEST_F(ClientTest, ASecondClientOnTheSameDataDirectoryIsRefused) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto first = ClientOffering(v1, RefFor(v1), &fake);
  auto second = Client::Create(config_, std::make_unique<FakeAggregator>());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("tinyfed client clinic-1, pid"), std::string::npos) << second.status();
}

// Refused as unknown, the gateway stops instead of retrying forever.
TEST_F(ClientTest, RunStopsWhenTheAggregatorDoesNotKnowTheKey) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  fake->checkin_error = absl::UnauthenticatedError("device clinic-1 is not enrolled");
  const absl::Status s = c->Run(0);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(s.message().find("re-enroll"), std::string::npos) << s;
}

TEST_F(ClientTest, ChecksSamplesAgainstTheInstalledModel) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  ASSERT_TRUE(c->AddSamples(std::vector<Sample>{{std::vector<float>(5, 1.0f), 0}}).ok());  // no model yet
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->AddSamples(std::vector<Sample>{{std::vector<float>(5, 1.0f), 0}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->AddSamples(std::vector<Sample>{{std::vector<float>(8, 1.0f), 3}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->AddSamples(std::vector<Sample>{{std::vector<float>(8, 1.0f), 2}}).ok());
  EXPECT_EQ(c->sample_count(), 2u);
}

// A root rotation reaches the gateway at check-in: it then installs models
// signed by the new publishing key and refuses the retired one's, and it
// remembers the rotation across a restart. Nothing is reinstalled.
// A gateway with nothing it can train on skips the round and says why
// (it used to deadlock: the round's end took the lock training held).
TEST_F(ClientTest, SkipsARoundWithNothingToTrainOn) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  {
    auto c = ClientOffering(v1, RefFor(v1), &fake);
    fake->admit = true;
    auto empty = c->ParticipateOnce();
    ASSERT_TRUE(empty.ok()) << empty.status();
    EXPECT_EQ(empty->outcome, RoundOutcome::kSkipped);
    EXPECT_NE(empty->detail.find("no samples to train on: 0 stored"), std::string::npos) << empty->detail;
  }
  std::filesystem::remove_all(config_.data_dir);
  // Samples stored before any model, with a label the model lacks.
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  fake->admit = true;
  const models::Dataset data = models::testing::TinyClassifierData(5, 3);
  std::vector<Sample> samples;
  for (size_t i = 0; i < data.size(); ++i) {
    const auto x = data.sample(i);
    samples.push_back({.features = std::vector<float>(x.begin(), x.end()), .label = 99});
  }
  ASSERT_TRUE(c->AddSamples(samples).ok());
  auto foreign = c->ParticipateOnce();
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  EXPECT_EQ(foreign->outcome, RoundOutcome::kSkipped);
  EXPECT_NE(foreign->detail.find("5 stored, 5 with features or labels model v1 does not take"), std::string::npos)
      << foreign->detail;
  EXPECT_EQ(foreign->model_version, 1u);
}

// The clinic's own ledger: each patient-level round is charged before it
// trains, a round past the clinic's budget is declined (also after a
// restart, whatever the aggregator asks), and the epsilon the gateway
// reports is the one its records give.
TEST_F(ClientTest, DeclinesAPatientLevelRoundPastItsOwnBudget) {
  v1::PatientDpSettings dp;
  dp.set_sampling_rate(0.5);
  dp.set_noise_multiplier(2.0);
  dp.set_clip(1.0);
  dp.set_steps(4);
  dp.set_delta(1e-5);
  const dp::SampledGaussianSteps one_round{0.5, 2.0, 4}, two_rounds{0.5, 2.0, 8};
  const double after_two = *dp::PldEpsilon({&two_rounds, 1}, 1e-5);
  const double after_three = *dp::PldEpsilon({&one_round, 1}, 1e-5) + after_two;  // above the true three-round value
  config_.privacy_budget = {.epsilon = after_two * 1.001, .delta = 1e-5};
  ASSERT_GT(after_three, config_.privacy_budget.epsilon);
  const std::string v1 = Publish(1, key_);
  const models::Dataset data = models::testing::TinyClassifierData(30, 3);
  const std::vector<Sample> samples = testing::TinySamples(data);
  FakeAggregator* fake = nullptr;
  {
    auto c = ClientOffering(v1, RefFor(v1), &fake);
    ASSERT_TRUE(c->AddSamples(samples).ok());
    fake->admit = true;
    fake->patient_dp = dp;
    for (uint64_t round : {7, 8}) {
      fake->round_id = round;
      auto r = c->ParticipateOnce();
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->outcome, RoundOutcome::kAborted) << r->detail;  // trained, then the fake ends it
      EXPECT_GT(r->samples_trained, 0u);
    }
    fake->round_id = 9;
    auto declined = c->ParticipateOnce();
    ASSERT_TRUE(declined.ok()) << declined.status();
    EXPECT_EQ(declined->outcome, RoundOutcome::kSkipped);
    EXPECT_NE(declined->detail.find("declined: it would take this clinic"), std::string::npos) << declined->detail;
    EXPECT_NE(declined->detail.find("past the budget"), std::string::npos) << declined->detail;
    EXPECT_EQ(declined->samples_trained, 0u);
    ASSERT_TRUE(c->SendTelemetry().ok());
    const v1::Telemetry& t = fake->telemetry.back();
    EXPECT_EQ(t.rounds_declined(), 1u);
    EXPECT_NE(t.privacy_status().find("declined round 9"), std::string::npos) << t.privacy_status();
    EXPECT_DOUBLE_EQ(t.epsilon_budget(), config_.privacy_budget.epsilon);
    EXPECT_NEAR(t.epsilon_spent(), after_two, 1e-12);
  }
  // After a restart the ledger still holds both rounds and still declines.
  {
    auto c = ClientOffering(v1, RefFor(v1), &fake);
    fake->admit = true;
    fake->patient_dp = dp;
    fake->round_id = 10;
    auto declined = c->ParticipateOnce();
    ASSERT_TRUE(declined.ok()) << declined.status();
    EXPECT_EQ(declined->outcome, RoundOutcome::kSkipped) << declined->detail;
  }
  // The reported epsilon is a recomputation from the gateway's own records.
  auto ledger = dp::PrivacyLedger::Open(config_.data_dir / "privacy.db", config_.privacy_budget);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  auto charges = (*ledger)->Charges();
  ASSERT_TRUE(charges.ok());
  ASSERT_EQ(charges->size(), 2u);
  std::vector<dp::SampledGaussianSteps> recorded;
  for (const auto& c : *charges) recorded.insert(recorded.end(), c.pld.begin(), c.pld.end());
  EXPECT_NEAR(*dp::PldEpsilon(recorded, 1e-5), after_two, 1e-12);
  EXPECT_STREQ((*ledger)->Spent()->accountant, "pld");
}

// With a budget, a round whose update would leave without the gateway's own
// noise (here a trusted-aggregator round) is declined, not trained.
TEST_F(ClientTest, ABudgetedGatewayDeclinesARoundWithoutDpOfItsOwn) {
  config_.privacy_budget = {.epsilon = 8.0, .delta = 1e-5};
  const std::string v1 = Publish(1, key_);
  FakeAggregator* fake = nullptr;
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  const models::Dataset data = models::testing::TinyClassifierData(10, 5);
  const std::vector<Sample> samples = testing::TinySamples(data);
  ASSERT_TRUE(c->AddSamples(samples).ok());
  fake->admit = true;
  auto r = c->ParticipateOnce();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, RoundOutcome::kSkipped);
  EXPECT_NE(r->detail.find("without differential privacy of its own"), std::string::npos) << r->detail;
  EXPECT_EQ(r->samples_trained, 0u);
}

// What the aggregator's canary and drift watch read: the head a new model
// replaced, scored beside it on the same held-out samples, and the cases
// answered since the last report (counted once).
TEST_F(ClientTest, ReportsTheReplacedHeadBesideTheNewOneAndTheRecentCasesOnce) {
  config_.holdout_fraction = 0.5;
  const std::string v1 = Publish(1, key_), v2 = Publish(2, key_, {.head_scale = -1.0f});
  FakeAggregator* fake = nullptr;
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  const models::Dataset data = models::testing::TinyClassifierData(40, 9);
  ASSERT_TRUE(c->AddSamples(testing::TinySamples(data)).ok());
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_TRUE(c->SendTelemetry().ok());
  EXPECT_EQ(fake->telemetry.back().replaced_model_version(), 0u) << "nothing was replaced yet";
  const float v1_accuracy = fake->telemetry.back().holdout_accuracy();

  fake->blob = v2;
  fake->ref = RefFor(v2);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_EQ(c->model_version(), 2u);
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(c->Predict(data.sample(static_cast<size_t>(i))).ok());
  ASSERT_TRUE(c->SendTelemetry().ok());
  const v1::Telemetry t = fake->telemetry.back();
  EXPECT_EQ(t.model_version(), 2u);
  EXPECT_EQ(t.replaced_model_version(), 1u);
  EXPECT_FLOAT_EQ(t.replaced_holdout_accuracy(), v1_accuracy);
  ASSERT_GT(t.holdout_samples(), 10u);
  // The head flipped in sign: it loses most of what the old one got right.
  EXPECT_GT(t.regressions(), t.improvements());
  EXPECT_NEAR(t.replaced_holdout_accuracy() - t.holdout_accuracy(),
              (static_cast<double>(t.regressions()) - t.improvements()) / t.holdout_samples(), 1e-6);
  uint32_t held = 0, predicted = 0, recent = 0, recent_classes = 0;
  for (uint32_t n : t.replaced_confidence_histogram()) held += n;
  for (uint32_t n : t.holdout_predicted_classes()) predicted += n;
  for (uint32_t n : t.recent_confidence_histogram()) recent += n;
  for (uint32_t n : t.recent_predicted_classes()) recent_classes += n;
  EXPECT_EQ(held, t.holdout_samples());
  EXPECT_EQ(predicted, t.holdout_samples());
  EXPECT_EQ(recent, 7u);
  EXPECT_EQ(recent_classes, 7u);
  // Sent once: the next report starts a new window.
  ASSERT_TRUE(c->SendTelemetry().ok());
  recent = 0;
  for (uint32_t n : fake->telemetry.back().recent_confidence_histogram()) recent += n;
  EXPECT_EQ(recent, 0u);
}

TEST_F(ClientTest, FollowsARootRotationAndRefusesTheRetiredKey) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  {
    auto c = ClientOffering(v1, RefFor(v1), &fake);
    ASSERT_TRUE(c->ParticipateOnce().ok());
    ASSERT_EQ(c->model_version(), 1u);
  }
  const models::SigningKey replacement = models::SigningKey::Generate();
  roots_.push_back(SignedRoot(2, replacement));
  {  // the retired key, even with a far newer version
    const std::string stale = Publish(1000, key_);
    auto c = ClientOffering(stale, RefFor(stale), &fake);
    ASSERT_TRUE(c->ParticipateOnce().ok());
    EXPECT_EQ(c->model_version(), 1u);
    ASSERT_TRUE(c->SendTelemetry().ok());
    EXPECT_NE(fake->telemetry[0].model_status().find("publishing keys of root v2"), std::string::npos)
        << fake->telemetry[0].model_status();
  }
  EXPECT_TRUE(std::filesystem::exists(config_.data_dir / "roots" / "2.root"));
  const std::string v2 = Publish(2, replacement);
  auto c = ClientOffering(v2, RefFor(v2), &fake);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  EXPECT_EQ(c->model_version(), 2u);
  // A root signed by a stranger is refused and reported; the trusted root stays.
  const models::SigningKey stranger = models::SigningKey::Generate();
  v1::SignedMetadata evil = SignedRoot(3, stranger);
  v1::RootMetadata parsed;
  parsed.ParseFromString(evil.payload());
  parsed.mutable_root()->set_public_keys(0, models::KeyBytes(stranger.public_key()));
  const models::SigningKey* signer = &stranger;
  roots_.push_back(models::SignRoot(parsed, {&signer, 1}));
  c.reset();
  c = ClientOffering(v2, RefFor(v2), &fake);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_TRUE(c->SendTelemetry().ok());
  EXPECT_NE(fake->telemetry[0].model_status().find("root refused"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(config_.data_dir / "roots" / "3.root"));
}

TEST(ClientConfigTest, RefusesBadDeviceIdsAndMissingKeys) {
  ClientConfig config;
  config.data_dir = std::filesystem::temp_directory_path() / "tinyfed-client-config";
  config.trusted_root = "/nonexistent/1.root";
  config.device_id = "bad id!";
  EXPECT_EQ(Client::Create(config, std::make_unique<FakeAggregator>()).status().code(),
            absl::StatusCode::kInvalidArgument);
  config.device_id = "ok";
  EXPECT_EQ(Client::Create(config, std::make_unique<FakeAggregator>()).status().code(), absl::StatusCode::kNotFound);
}

namespace personal {

// `data` with every label moved to the next class: a clinic whose cases the
// federation's head gets wrong.
std::vector<Sample> Shifted(const models::Dataset& data) {
  std::vector<Sample> samples = testing::TinySamples(data);
  for (Sample& s : samples) s.label = (s.label + 1) % 3;
  return samples;
}

}  // namespace personal

TEST(PersonalHeadTest, WinsOnlyBeyondChance) {
  // Exact one-sided McNemar: P(X >= wins), X ~ Binomial(wins + losses, 1/2).
  EXPECT_DOUBLE_EQ(models::McNemarPValue(2, 0), 0.25);
  EXPECT_DOUBLE_EQ(models::McNemarPValue(3, 0), 0.125);
  EXPECT_NEAR(models::McNemarPValue(10, 4), 1471.0 / 16384, 1e-12);
  EXPECT_NEAR(models::McNemarPValue(6, 3), 130.0 / 512, 1e-12);
  EXPECT_DOUBLE_EQ(models::McNemarPValue(0, 0), 1.0);
  // A candidate serves at p <= 0.25: 2 wins without a loss, 4 against 1,
  // 5 against 2.
  EXPECT_FALSE(internal::WinsBeyondChance(1, 0, internal::kWinLevel));  // 0.5
  EXPECT_TRUE(internal::WinsBeyondChance(2, 0, internal::kWinLevel));   // 0.25
  EXPECT_FALSE(internal::WinsBeyondChance(3, 1, internal::kWinLevel));  // 0.3125
  EXPECT_TRUE(internal::WinsBeyondChance(4, 1, internal::kWinLevel));   // 0.1875
  EXPECT_FALSE(internal::WinsBeyondChance(4, 2, internal::kWinLevel));  // 0.3438
  EXPECT_TRUE(internal::WinsBeyondChance(5, 2, internal::kWinLevel));   // 0.2266
  EXPECT_FALSE(internal::WinsBeyondChance(4, 12, internal::kWinLevel));
  EXPECT_FALSE(internal::WinsBeyondChance(0, 0, internal::kWinLevel));
  // A stricter level asks for more: at p <= 0.05, 5 wins without a loss.
  EXPECT_FALSE(internal::WinsBeyondChance(4, 0, 0.05));  // 0.0625
  EXPECT_TRUE(internal::WinsBeyondChance(5, 0, 0.05));   // 0.0313
}

// A head twice as confident as the clinic's cases warrant: the scale that
// makes them most likely is below 1, and the recalibrated head keeps the
// direction of the weights. Too timid a head is scaled up.
TEST(PersonalHeadTest, RecalibrationScalesAnOverconfidentHeadDown) {
  // One feature; class 0 for x = +1 and class 1 for x = -1, three times in four.
  std::vector<float> x;
  std::vector<int> y;
  for (int i = 0; i < 400; ++i) {
    const float v = i % 2 ? 1.0f : -1.0f;
    x.push_back(v);
    y.push_back((v > 0) == (i % 8 < 6) ? 0 : 1);
  }
  // Weights of log(3) / 2 match the data (odds of 3 to 1 at x = 1).
  const float matched = std::log(3.0f) / 2;
  v1::Head confident = testing::ZeroHead(1, 2);
  confident.set_weights(0, 2 * matched);
  confident.set_weights(1, -2 * matched);
  const v1::Head recalibrated = internal::RecalibrateHead(confident, x, y);
  EXPECT_FLOAT_EQ(recalibrated.weights(0), matched);
  EXPECT_FLOAT_EQ(recalibrated.weights(1), -matched);
  EXPECT_NEAR(recalibrated.bias(0) - recalibrated.bias(1), 0.0f, 1e-3);

  v1::Head timid = confident;
  timid.set_weights(0, matched / 2);
  timid.set_weights(1, -matched / 2);
  EXPECT_FLOAT_EQ(internal::RecalibrateHead(timid, x, y).weights(0), matched);

  // No samples, or samples that do not fit the head: unchanged.
  for (const auto& [xs, ys] : {std::pair{std::vector<float>{}, std::vector<int>{}},
                               std::pair{std::vector<float>{1.0f, 2.0f}, std::vector<int>{0}},
                               std::pair{std::vector<float>{1.0f}, std::vector<int>{2}}}) {
    const v1::Head same = internal::RecalibrateHead(confident, xs, ys);
    EXPECT_EQ(same.SerializeAsString(), confident.SerializeAsString());
  }
}

// With the weights at zero the logits are the biases, and the best biases
// give each class its share of the labels: the fit finds them, and leaves
// the weights, and a class the clinic never saw, where they belong.
TEST(PersonalHeadTest, ClassBiasesFollowTheClinicsProportions) {
  v1::Head head = testing::ZeroHead(4, 3);
  const std::vector<int> labels{0, 0, 0, 0, 0, 0, 1, 1, 1, 2};
  const std::vector<float> embeddings(labels.size() * 4, 0.5f);
  internal::RefitClassBiases(&head, embeddings, labels);
  double total = 0.0;
  for (int c = 0; c < 3; ++c) total += std::exp(head.bias(c));
  EXPECT_NEAR(std::exp(head.bias(0)) / total, 0.6, 1e-4);
  EXPECT_NEAR(std::exp(head.bias(1)) / total, 0.3, 1e-4);
  EXPECT_NEAR(std::exp(head.bias(2)) / total, 0.1, 1e-4);
  for (float w : head.weights()) EXPECT_EQ(w, 0.0f);

  v1::Head unseen = testing::ZeroHead(4, 3);
  internal::RefitClassBiases(&unseen, std::vector<float>(4 * 4, 0.5f), std::vector<int>{0, 1, 0, 1});
  // The prior holds the unseen class at a share of a few in ten thousand.
  const double unseen_share =
      std::exp(unseen.bias(2)) / (std::exp(unseen.bias(0)) + std::exp(unseen.bias(1)) + std::exp(unseen.bias(2)));
  EXPECT_GT(unseen_share, 1e-4);
  EXPECT_LT(unseen_share, 1e-3);

  v1::Head mismatched = testing::ZeroHead(4, 3);
  internal::RefitClassBiases(&mismatched, std::vector<float>(7, 0.5f), std::vector<int>{0, 1});
  internal::RefitClassBiases(&mismatched, std::vector<float>(8, 0.5f), std::vector<int>{0, 3});
  internal::RefitClassBiases(&mismatched, std::vector<float>(8, 0.5f), std::vector<int>{-1, 0});
  std::vector<float> not_a_number(8, 0.5f);
  not_a_number[5] = std::numeric_limits<float>::quiet_NaN();
  internal::RefitClassBiases(&mismatched, not_a_number, std::vector<int>{0, 1});
  for (float b : mismatched.bias()) EXPECT_EQ(b, 0.0f);
}

TEST_F(ClientTest, ServesThePersonalHeadOnlyWhereItWinsCrossValidated) {
  config_.holdout_fraction = 0.3;
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  const models::Dataset data = models::testing::TinyClassifierData(300, 21);
  // A clinic whose cases disagree with the federation's head.
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  ASSERT_TRUE(c->AddSamples(personal::Shifted(data)).ok());
  ASSERT_TRUE(c->ParticipateOnce().ok());
  ASSERT_EQ(c->model_version(), 1u);
  const models::Dataset fresh = models::testing::TinyClassifierData(60, 22);
  int right = 0, by_personal = 0;
  for (size_t i = 0; i < fresh.size(); ++i) {
    auto p = c->Predict(fresh.sample(i));
    ASSERT_TRUE(p.ok());
    by_personal += p->head == Head::kPersonal;
    right += p->label == (fresh.labels[i] + 1) % 3;
  }
  EXPECT_GE(right, 45) << "the personal head learned the clinic's own labels";
  EXPECT_EQ(by_personal, 60) << "a served personal head answers every case";
  ASSERT_TRUE(c->SendTelemetry().ok());
  const v1::Telemetry& t = fake->telemetry.back();
  EXPECT_TRUE(t.personal_head_served());
  EXPECT_GT(t.personal_holdout_accuracy(), t.holdout_accuracy() + 0.5f);
  EXPECT_GT(t.holdout_samples(), 50u);

  // The same disagreement on 12 samples: heads fitted on ten or so of them
  // answer none of the others right (nor does the global head): no wins,
  // no evidence, so the federation's head serves.
  config_.data_dir = dir_ / "small";
  config_.holdout_fraction = 0.1;
  auto small = ClientOffering(v1, RefFor(v1), &fake);
  const models::Dataset few = models::testing::TinyClassifierData(12, 23);
  ASSERT_TRUE(small->AddSamples(personal::Shifted(few)).ok());
  ASSERT_TRUE(small->ParticipateOnce().ok());
  ASSERT_TRUE(small->SendTelemetry().ok());
  ASSERT_LE(fake->telemetry.back().holdout_samples(), 1u);
  auto p = small->Predict(fresh.sample(0));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->head, Head::kGlobal);

  // Without personalization, the global head serves whatever the data.
  config_.data_dir = dir_ / "off";
  config_.personal_head_epochs = 0;
  auto off = ClientOffering(v1, RefFor(v1), &fake);
  ASSERT_TRUE(off->AddSamples(personal::Shifted(data)).ok());
  ASSERT_TRUE(off->ParticipateOnce().ok());
  EXPECT_EQ(off->Predict(fresh.sample(0))->head, Head::kGlobal);
  ASSERT_TRUE(off->SendTelemetry().ok());
  EXPECT_FALSE(fake->telemetry.back().personal_head_served());
}

TEST_F(ClientTest, AClinicianConfirmsOrCorrectsAPredictionWhichBecomesASample) {
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto c = ClientOffering(v1, RefFor(v1), &fake);
  ASSERT_TRUE(c->ParticipateOnce().ok());
  const models::Dataset data = models::testing::TinyClassifierData(10, 31);
  auto first = c->Predict(data.sample(0));
  auto second = c->Predict(data.sample(1));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(first->id, second->id);
  EXPECT_EQ(c->Confirm(first->id, 3).code(), absl::StatusCode::kInvalidArgument);  // 3 classes
  EXPECT_EQ(c->Confirm(first->id + 100, 0).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(c->Confirm(first->id, first->label).ok());                                 // confirmed
  ASSERT_TRUE(c->Confirm(second->id, (second->label + 1) % 3).ok());                     // corrected
  EXPECT_EQ(c->Confirm(second->id, second->label).code(), absl::StatusCode::kNotFound);  // answered already
  EXPECT_EQ(c->sample_count(), 2u);
  ASSERT_TRUE(c->SendTelemetry().ok());
  const v1::Telemetry& t = fake->telemetry.back();
  EXPECT_EQ(t.predictions(), 2u);
  EXPECT_EQ(t.confirmations(), 2u);
  EXPECT_EQ(t.overrides(), 1u);
  // Only the last 1,024 predictions wait for an answer.
  for (int i = 0; i < 1030; ++i) ASSERT_TRUE(c->Predict(data.sample(2)).ok());
  auto last = c->Predict(data.sample(3));
  EXPECT_EQ(c->Confirm(last->id - 1025, 0).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(c->Confirm(last->id - 1023, 0).ok());
}

TEST(EligibilityTest, SaysEveryReasonAGatewayMayNotTakePart) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time at_14 = absl::FromCivil(absl::CivilHour(2026, 12, 6, 14), utc);
  const absl::Time at_23 = absl::FromCivil(absl::CivilHour(2026, 12, 6, 23), utc);
  EligibilityPolicy any;
  EXPECT_EQ(WhyIneligible(any, {.mains_power = false, .battery = 0.05}, at_14, utc), "");
  EligibilityPolicy strict{.mains_power_only = true,
                           .min_battery = 0.5,
                           .unmetered_only = true,
                           .idle_only = true,
                           .window_start_hour = 22,
                           .window_end_hour = 6};  // the night, across midnight
  EXPECT_EQ(WhyIneligible(strict, {}, at_23, utc), "");
  EXPECT_EQ(
      WhyIneligible(strict, {.mains_power = false, .battery = 0.3, .unmetered_link = false, .idle = false}, at_14, utc),
      "on battery power; rounds only on mains power; battery at 30 %, below 50 %; on a metered link; the "
      "gateway is in use; 14:00 is outside the window 22:00-06:00");
  EligibilityPolicy solar{.min_battery = 0.5, .window_start_hour = 10, .window_end_hour = 16};
  EXPECT_EQ(WhyIneligible(solar, {.mains_power = false, .battery = 0.8}, at_14, utc), "");
  EXPECT_EQ(WhyIneligible(solar, {.mains_power = false, .battery = 0.8}, at_23, utc),
            "23:00 is outside the window 10:00-16:00");
}

TEST_F(ClientTest, DeclinesRoundsItIsNotEligibleForWithoutCallingTheAggregator) {
  config_.eligibility = {.min_battery = 0.5, .unmetered_only = true};
  DeviceConditions now{.mains_power = false, .battery = 0.3};
  FakeAggregator* fake = nullptr;
  const std::string v1 = Publish(1, key_);
  auto transport = std::make_unique<FakeAggregator>();
  transport->blob = v1;
  transport->ref = RefFor(v1);
  transport->roots = roots_;
  fake = transport.get();
  auto c = Client::Create(config_, std::move(transport), {.on_phase = nullptr, .conditions = [&] { return now; }});
  ASSERT_TRUE(c.ok()) << c.status();
  auto report = (*c)->ParticipateOnce();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->outcome, RoundOutcome::kIneligible);
  EXPECT_EQ(report->detail, "battery at 30 %, below 50 %");
  EXPECT_GE(report->retry_after, absl::Minutes(1));
  EXPECT_EQ(fake->checkins, 0);
  // Charged, on mains power: it checks in and installs the model.
  now = {.mains_power = true, .battery = 0.3};
  report = (*c)->ParticipateOnce();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->outcome, RoundOutcome::kNotSelected);
  EXPECT_EQ(fake->checkins, 1);
  EXPECT_EQ((*c)->model_version(), 1u);
  // A metered link: declined again, and telemetry says how often and why.
  now.unmetered_link = false;
  EXPECT_EQ((*c)->ParticipateOnce()->outcome, RoundOutcome::kIneligible);
  ASSERT_TRUE((*c)->SendTelemetry().ok());
  EXPECT_EQ(fake->telemetry.back().rounds_ineligible(), 2u);
  EXPECT_EQ(fake->telemetry.back().eligibility_status(), "on a metered link");
}

}  // namespace
}  // namespace tinyfed::client
