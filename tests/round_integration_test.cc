// The federated round end to end, as an operator and 20 gateways run it:
// `tinyfed aggregator` and 20 `tinyfed client run` processes on loopback,
// each client holding a Dirichlet(0.5) share of Fashion-MNIST, 5 rounds with
// SecAgg+ and distributed DP. In round 3 three clients lose power (SIGKILL)
// in three different phases; they are restarted once round 3 is over.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "aggregator/testing/self_signed.h"
#include "tinyfed/aggregator/config.h"
#include "tinyfed/aggregator/devices.h"
#include "tinyfed/aggregator/state.h"
#include "tinyfed/base/await_path.h"
#include "tinyfed/base/file_io.h"
#include "tinyfed/base/process.h"
#include "tinyfed/client/sample_store.h"
#include "tinyfed/dp/ddg.h"
#include "tinyfed/dp/ledger.h"
#include "tinyfed/dp/rdp_accountant.h"
#include "tinyfed/models/bundle.h"
#include "tinyfed/models/dataset.h"
#include "tinyfed/models/evaluate.h"
#include "tinyfed/models/quantize.h"
#include "tinyfed/models/trainer.h"
#include "tinyfed/models/trust.h"
#include "tinyfed/sim/partition.h"

namespace tinyfed {
namespace {

using base::Process;
using std::chrono::seconds;

constexpr int kClients = 20;
constexpr int kRounds = 5;
constexpr int kBits = 20;
// Who loses power in round 3, and when: while training, after advertising
// keys, and after sharing keys (before sending the masked input).
const std::map<int, std::string> kKilled = {{3, "task"}, {8, "share_keys"}, {13, "masked_input"}};

std::string DeviceId(int i) { return absl::StrCat("clinic-", i < 10 ? "0" : "", i); }

std::string ReadText(const std::filesystem::path& p) {
  auto bytes = base::ReadFileBytes(p, 1 << 30);
  return bytes.ok() ? *bytes : "";
}

std::vector<uint32_t> ReadWords(const std::filesystem::path& p) {
  const std::string bytes = ReadText(p);
  std::vector<uint32_t> words(bytes.size() / 4);
  std::memcpy(words.data(), bytes.data(), words.size() * 4);
  return words;
}

class RoundIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("TINYFED_BIN");
    ASSERT_NE(bin, nullptr) << "TINYFED_BIN must name the tinyfed binary";
    tinyfed_ = bin;
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("tinyfed-round-", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Data, the pretrained int8 backbone, the trust repository and each
  // clinic's store.
  void PrepareFederation();
  // `tinyfed_testing aggregator` on a TLS loopback port, and a token per clinic.
  void StartAggregator();
  // `tinyfed_testing client run` for clinic c, killing itself at `exit_at` of round 3 if set.
  Process StartClient(int c, const std::string& exit_at);
  // Every clinic, three of them losing power in round 3 and restarted after it.
  void RunWithPowerCuts();
  // Every round completed and published a model that verifies in sequence.
  void VerifyPublishedModels();
  // Each decoded sum is the sum of its survivors' encoded updates, mod 2^b,
  // and the privacy spent is what dp/'s accountant says for these rounds.
  void CheckSumsAndPrivacy();
  // The head learned, and the power cuts lost no sample.
  void CheckLearnedAndNothingLost();

  std::filesystem::path tinyfed_, dir_;
  models::Dataset test_;
  models::Repository repository_;
  std::vector<size_t> stored_;  // samples per clinic
  Process aggregator_;
  std::string address_;
  std::vector<std::string> tokens_;
  std::vector<aggregator::RoundRecord> rounds_;
  std::vector<v1::ModelBundle> bundles_;  // v1 .. v6, verified
};

void RoundIntegrationTest::PrepareFederation() {
  const std::filesystem::path fm = "/usr/share/datasets/fashion-mnist";
  auto train = models::ReadIdx(fm / "train-images-idx3-ubyte.gz", fm / "train-labels-idx1-ubyte.gz");
  auto test = models::ReadIdx(fm / "t10k-images-idx3-ubyte.gz", fm / "t10k-labels-idx1-ubyte.gz");
  if (!train.ok() || !test.ok()) GTEST_SKIP() << "Fashion-MNIST not installed (package dataset-fashion-mnist)";

  // A backbone pretrained on a public slice (the first 6,000 images); the
  // head starts from zero, so everything it knows comes from the round.
  std::vector<size_t> public_idx(6000), clinic_idx(20000);
  std::iota(public_idx.begin(), public_idx.end(), size_t{0});
  std::iota(clinic_idx.begin(), clinic_idx.end(), size_t{10000});
  const models::Dataset public_data = train->Subset(public_idx);
  auto backbone = models::BuildBackbone(models::Architecture::kCnn, public_data, 1);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  models::TrainOptions pretraining;
  pretraining.epochs = 6;
  pretraining.learning_rate = 0.05f;
  ASSERT_TRUE(models::Train(&*backbone, public_data, pretraining).ok());
  auto int8 = models::QuantizePostTraining(*backbone, public_data, {});
  ASSERT_TRUE(int8.ok()) << int8.status();
  ASSERT_TRUE(models::WriteBundleFile(dir_ / "backbone.tfb", *int8).ok());
  if (auto pre = models::Evaluate(*int8, *test); pre.ok())
    std::printf("centralized head on the public slice %.2f%%\n", 100 * pre->accuracy());
  auto repository = models::CreateSingleKeyRepository(dir_ / "trust", "integration/fmnist");
  ASSERT_TRUE(repository.ok()) << repository.status();
  repository_ = *repository;

  // Each clinic's Dirichlet(0.5) share, in its encrypted store.
  const models::Dataset clinics = train->Subset(clinic_idx);
  auto partition = sim::DirichletLabelPartition(clinics.labels, kClients, 0.5, 2026, 50);
  ASSERT_TRUE(partition.ok()) << partition.status();
  stored_.assign(kClients, 0);
  for (int c = 0; c < kClients; ++c) {
    auto store = client::SampleStore::Open(dir_ / DeviceId(c) / "store", 20000);
    ASSERT_TRUE(store.ok()) << store.status();
    const auto samples = client::ToSamples(clinics.Subset((*partition)[static_cast<size_t>(c)]));
    ASSERT_TRUE((*store)->Add(samples).ok());
    stored_[static_cast<size_t>(c)] = samples.size();
  }
  test_ = *std::move(test);
}

void RoundIntegrationTest::StartAggregator() {
  const std::string toml = absl::StrCat(R"(listen = "127.0.0.1:0"
state_dir = "state"
initial_model = "backbone.tfb"
publishing_key = ")",
                                        repository_.publishing_key.string(), R"("
roots_dir = ")",
                                        repository_.roots_dir.string(), R"("
[rounds]
max_rounds = )",
                                        kRounds, R"(
cohort_size = 20
min_cohort = 12
reset_head = true
poll_interval_ms = 50
[deadlines]
selection = 30
training = 6
share_keys = 3
masked_input = 3
unmasking = 3
[training]
epochs = 5
batch_size = 32
learning_rate = 0.05
[dp]
clip = 2.0
noise_multiplier = 0.3
delta = 1e-5
epsilon_budget = 1000
bits = )",
                                        kBits, R"(
[secagg]
max_dropout = 0.3
[optimizer]
kind = "fedavg"
learning_rate = 1.0
[security]
tls_certificate = "cert.pem"
tls_private_key = "key.pem"
requests_per_minute = 6000
)");
  ASSERT_TRUE(aggregator::testing::WriteSelfSignedCertificate(dir_, dir_ / "cert.pem", dir_ / "key.pem"));
  ASSERT_TRUE(base::WriteFileAtomically(dir_ / "aggregator.toml", toml).ok());
  // Made here so that their files can be awaited before the aggregator runs.
  std::filesystem::create_directories(dir_ / "state");
  std::filesystem::create_directories(dir_ / "record");
  aggregator_ = Process::Spawn({tinyfed_.string(), "aggregator", "--config", (dir_ / "aggregator.toml").string(),
                                "--record-dir", (dir_ / "record").string()},
                               dir_ / "aggregator.log");
  ASSERT_GT(aggregator_.pid(), 0);
  const absl::Status listening = base::AwaitPath(dir_ / "state" / "listening", seconds(10), &aggregator_);
  ASSERT_TRUE(listening.ok()) << listening << "\n" << ReadText(dir_ / "aggregator.log");
  address_ = std::string(absl::StripTrailingAsciiWhitespace(ReadText(dir_ / "state" / "listening")));
  ASSERT_FALSE(address_.empty()) << ReadText(dir_ / "aggregator.log");
  // The operator's `tinyfed enroll`, one token per clinic.
  {
    auto devices = aggregator::DeviceRegistry::Open(dir_ / "state");
    ASSERT_TRUE(devices.ok()) << devices.status();
    for (int c = 0; c < kClients; ++c) tokens_.push_back(*(*devices)->IssueToken(DeviceId(c), absl::Hours(1)));
  }
}

Process RoundIntegrationTest::StartClient(int c, const std::string& exit_at) {
  std::vector<std::string> argv = {tinyfed_.string(),
                                   "client",
                                   "run",
                                   "--device-id",
                                   DeviceId(c),
                                   "--data-dir",
                                   (dir_ / DeviceId(c)).string(),
                                   "--aggregator",
                                   address_,
                                   "--root",
                                   repository_.pinned_root.string(),
                                   "--ca",
                                   (dir_ / "cert.pem").string(),
                                   "--enroll-token",
                                   tokens_[static_cast<size_t>(c)],
                                   "--record-dir",
                                   (dir_ / "encoded").string()};
  if (!exit_at.empty()) {
    argv.push_back("--exit-at");
    argv.push_back("3:" + exit_at);
  }
  return Process::Spawn(argv, dir_ / absl::StrCat(DeviceId(c), exit_at.empty() ? "" : "-first", ".log"));
}

void RoundIntegrationTest::RunWithPowerCuts() {
  std::vector<Process> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(StartClient(c, kKilled.contains(c) ? kKilled.at(c) : ""));
  }

  // Restart the three once round 3 is over: they must rejoin.
  const absl::Status round3 = base::AwaitPath(dir_ / "record" / "round-3.sum", seconds(180), &aggregator_);
  ASSERT_TRUE(round3.ok()) << round3 << "\n" << ReadText(dir_ / "aggregator.log");
  for (const auto& [c, phase] : kKilled) {
    auto status = clients[static_cast<size_t>(c)].Wait(seconds(5));
    ASSERT_TRUE(status.has_value()) << DeviceId(c) << " did not die at " << phase;
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << DeviceId(c);
    clients[static_cast<size_t>(c)] = StartClient(c, "");
  }
  auto aggregator_status = aggregator_.Wait(seconds(120));
  ASSERT_TRUE(aggregator_status.has_value()) << "the aggregator did not finish 5 rounds in time";
  EXPECT_TRUE(WIFEXITED(*aggregator_status) && WEXITSTATUS(*aggregator_status) == 0)
      << ReadText(dir_ / "aggregator.log");
  for (auto& p : clients) {
    auto s = p.Wait(seconds(20));  // they exit when told the federation closed
    EXPECT_TRUE(s.has_value() && WIFEXITED(*s) && WEXITSTATUS(*s) == 0);
  }
}

void RoundIntegrationTest::VerifyPublishedModels() {
  // Every round completed and published a model that verifies in sequence.
  auto state = aggregator::AggregatorState::Open(dir_ / "state");
  ASSERT_TRUE(state.ok());
  auto rounds = (*state)->Rounds();
  auto published = (*state)->Models();
  ASSERT_TRUE(rounds.ok() && published.ok());
  ASSERT_EQ(rounds->size(), static_cast<size_t>(kRounds));
  ASSERT_EQ(published->size(), static_cast<size_t>(kRounds + 1));
  v1::SignedMetadata root;
  ASSERT_TRUE(root.ParseFromString(ReadText(repository_.pinned_root)));
  auto trusted = models::TrustedRoot::Pin(root);
  ASSERT_TRUE(trusted.ok()) << trusted.status();
  std::optional<v1::ReleaseMetadata> previous;
  for (const auto& m : *published) {
    v1::SignedBundle signed_bundle;
    ASSERT_TRUE(signed_bundle.ParseFromString(ReadText(m.file)));
    auto verified = trusted->VerifyModel(signed_bundle, previous ? &*previous : nullptr, absl::Now());
    ASSERT_TRUE(verified.ok()) << "v" << m.version << ": " << verified.status();
    EXPECT_EQ(verified->release.model_version(), m.version);
    previous = verified->release;
    bundles_.push_back(std::move(verified->bundle));
  }
  rounds_ = *rounds;
}

void RoundIntegrationTest::CheckSumsAndPrivacy() {
  // The decoded sum is the sum of the survivors' encoded updates, mod 2^b,
  // and the privacy spent is what dp/'s accountant says for these rounds.
  const auto orders = dp::DefaultOrders();
  std::vector<double> total_rdp(orders.size(), 0.0);
  const size_t head_size = bundles_[0].head().weights_size() + bundles_[0].head().bias_size();
  for (const auto& r : rounds_) {
    ASSERT_EQ(r.state, "done") << "round " << r.round_id << ": " << r.reason;
    const std::vector<std::string> survivors = absl::StrSplit(
        ReadText(dir_ / "record" / absl::StrCat("round-", r.round_id, ".survivors")), '\n', absl::SkipEmpty());
    EXPECT_EQ(static_cast<int>(survivors.size()), r.survivors);
    const std::vector<uint32_t> sum = ReadWords(dir_ / "record" / absl::StrCat("round-", r.round_id, ".sum"));
    ASSERT_FALSE(sum.empty());
    std::vector<uint32_t> expected(sum.size(), 0);
    for (const auto& device : survivors) {
      const auto encoded = ReadWords(dir_ / "encoded" / absl::StrCat("round-", r.round_id, "-", device, ".encoded"));
      ASSERT_EQ(encoded.size(), sum.size()) << device;
      for (size_t i = 0; i < sum.size(); ++i) expected[i] = (expected[i] + encoded[i]) & ((1u << kBits) - 1);
    }
    EXPECT_EQ(sum, expected) << "round " << r.round_id;
    if (r.round_id == 3) {
      EXPECT_EQ(r.survivors, kClients - 3);
      for (const auto& [c, phase] : kKilled) {
        EXPECT_EQ(std::count(survivors.begin(), survivors.end(), DeviceId(c)), 0) << DeviceId(c) << " at " << phase;
      }
    }
    if (r.round_id == kRounds) {
      for (const auto& [c, phase] : kKilled) {
        EXPECT_EQ(std::count(survivors.begin(), survivors.end(), DeviceId(c)), 1) << DeviceId(c) << " did not rejoin";
      }
    }
    dp::DdgConfig c;
    c.dimension = head_size;
    c.clip = 2.0;
    c.bits = kBits;
    c.expected_clients = static_cast<int>(r.selected * (1.0 - 0.3));
    c.delta = 1e-5;
    c.noise_multiplier = 0.3;
    auto params = dp::ChooseDdgParams(c);
    ASSERT_TRUE(params.ok());
    auto rdp = dp::DdgRdp(*params, r.survivors, 1, orders);
    ASSERT_TRUE(rdp.ok());
    for (size_t i = 0; i < orders.size(); ++i) total_rdp[i] += (*rdp)[i];
    auto spent = dp::EpsilonFromRdp(orders, total_rdp, 1e-5);
    ASSERT_TRUE(spent.ok());
    EXPECT_NEAR(r.epsilon, spent->epsilon, 1e-9 * spent->epsilon) << "round " << r.round_id;
    std::printf("round %lld: %d of %d survived, epsilon %.4f\n", static_cast<long long>(r.round_id), r.survivors,
                r.selected, r.epsilon);
  }
}

void RoundIntegrationTest::CheckLearnedAndNothingLost() {
  // The head learned: test accuracy of v6 against v1 (a zero head).
  auto initial = models::Evaluate(bundles_.front(), test_);
  auto final_model = models::Evaluate(bundles_.back(), test_);
  ASSERT_TRUE(initial.ok() && final_model.ok());
  std::printf("test accuracy: initial head %.2f%%, after %d rounds %.2f%%\n", 100 * initial->accuracy(), kRounds,
              100 * final_model->accuracy());
  EXPECT_GT(final_model->accuracy(), initial->accuracy() + 0.3);

  // No sample was lost by the power cuts.
  for (int c = 0; c < kClients; ++c) {
    auto store = client::SampleStore::Open(dir_ / DeviceId(c) / "store", 20000);
    ASSERT_TRUE(store.ok());
    EXPECT_EQ((*store)->size(), stored_[static_cast<size_t>(c)]) << DeviceId(c);
  }
}

TEST_F(RoundIntegrationTest, FiveRoundsWithDropoutsPublishVerifiedModelsThatLearn) {
  ASSERT_NO_FATAL_FAILURE(PrepareFederation());
  if (IsSkipped()) return;
  ASSERT_NO_FATAL_FAILURE(StartAggregator());
  ASSERT_NO_FATAL_FAILURE(RunWithPowerCuts());
  ASSERT_NO_FATAL_FAILURE(VerifyPublishedModels());
  ASSERT_NO_FATAL_FAILURE(CheckSumsAndPrivacy());
  CheckLearnedAndNothingLost();
}

}  // namespace
}  // namespace tinyfed
