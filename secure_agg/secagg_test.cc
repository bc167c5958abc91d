// Property tests of the whole protocol with random cohorts, graphs and
// dropouts at every phase, plus the refusals the issue names.
#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "base/testing/value_or_die.h"
#include "gtest/gtest.h"
#include "tinyfed/secure_agg/client.h"
#include "tinyfed/secure_agg/server.h"

namespace tinyfed::secagg {
namespace {

GraphSeed SeedOf(uint32_t x) {
  GraphSeed s{};
  for (int i = 0; i < 4; ++i) s[static_cast<size_t>(i)] = static_cast<uint8_t>(x >> (8 * i));
  return s;
}

// drop_at[u]: 0 never drops; 1 before advertising; 2 before sharing keys;
// 3 before sending its masked input; 4 before answering unmasking.
struct Outcome {
  absl::Status status;
  std::vector<uint32_t> result;
  std::vector<uint32_t> expected;
  std::set<uint32_t> survivors;
  bool recoverable = false;  // what the protocol promises for this dropout pattern
};

Outcome RunRound(const SecAggParams& params, int min_survivors, const std::vector<int>& drop_at, uint32_t seed) {
  const auto& c = params.config();
  const int n = c.num_clients;
  const uint32_t mask = c.bits == 32 ? ~uint32_t{0} : (uint32_t{1} << c.bits) - 1;
  std::mt19937 rng(seed);
  std::vector<std::vector<uint32_t>> inputs(static_cast<size_t>(n));
  std::vector<std::unique_ptr<Client>> clients;
  for (int u = 0; u < n; ++u) {
    for (size_t i = 0; i < c.vector_length; ++i) inputs[static_cast<size_t>(u)].push_back(rng() & mask);
    std::array<uint8_t, 32> s{};
    s[0] = static_cast<uint8_t>(u);
    s[1] = static_cast<uint8_t>(u >> 8);
    s[2] = static_cast<uint8_t>(seed);
    clients.push_back(base::testing::ValueOrDie(
        Client::Create(params, static_cast<uint32_t>(u), inputs[static_cast<size_t>(u)], SeededRandom(s)),
        "a SecAgg+ client"));
  }
  auto server = base::testing::ValueOrDie(Server::Create(params, min_survivors), "the SecAgg+ server");
  Outcome out;
  std::vector<int> done(static_cast<size_t>(n), 0);  // phases completed by each client
  for (int u = 0; u < n; ++u) {
    if (drop_at[static_cast<size_t>(u)] == 1) continue;
    EXPECT_TRUE(
        server->Receive(base::testing::ValueOrDie(clients[static_cast<size_t>(u)]->AdvertiseKeys(), "advertise keys"))
            .ok());
    done[static_cast<size_t>(u)] = 1;
  }
  for (int phase = 2; phase <= 4; ++phase) {
    auto requests = server->AdvancePhase();
    if (!requests.ok()) {
      out.status = requests.status();
      break;
    }
    for (const auto& req : *requests) {
      const uint32_t u = req.recipient();
      if (drop_at[u] == phase) continue;
      auto reply = clients[u]->Handle(req);
      if (!reply.ok()) continue;  // e.g. fewer than t neighbors advertised: the client cannot go on
      EXPECT_TRUE(server->Receive(*reply).ok()) << reply->DebugString().substr(0, 200);
      done[u] = phase;
    }
  }
  if (out.status.ok()) {
    auto last = server->AdvancePhase();
    out.status = last.status();
  }
  if (out.status.ok()) {
    out.result = base::testing::ValueOrDie(server->Result(), "the result");
    const auto s = server->Survivors();
    out.survivors = {s.begin(), s.end()};
  }
  // Oracle: who completed what, and could every needed secret be rebuilt?
  std::set<uint32_t> u1, u2, u3, u4;
  for (int u = 0; u < n; ++u) {
    if (done[static_cast<size_t>(u)] >= 1) u1.insert(static_cast<uint32_t>(u));
    if (done[static_cast<size_t>(u)] >= 2) u2.insert(static_cast<uint32_t>(u));
    if (done[static_cast<size_t>(u)] >= 3) u3.insert(static_cast<uint32_t>(u));
    if (done[static_cast<size_t>(u)] >= 4) u4.insert(static_cast<uint32_t>(u));
  }
  out.expected.assign(c.vector_length, 0);
  for (uint32_t u : u3)
    for (size_t i = 0; i < c.vector_length; ++i) out.expected[i] = (out.expected[i] + inputs[u][i]) & mask;
  bool ok = static_cast<int>(u1.size()) >= min_survivors && static_cast<int>(u2.size()) >= min_survivors &&
            static_cast<int>(u3.size()) >= min_survivors;
  for (uint32_t v : u2) {  // v's secret is needed if v is in U3 (self mask) or dropped (masking key)
    int holders = 0;
    for (uint32_t w : params.Neighbors(v)) holders += (u2.count(w) && u4.count(w)) ? 1 : 0;
    // A survivor in a complete graph of even degree holds a share of its own self-mask seed too.
    if (params.self_shares() && u3.count(v) && u4.count(v)) ++holders;
    if (holders < params.threshold()) ok = false;
  }
  out.recoverable = ok;
  return out;
}

TEST(SecAggPlus, RandomCohortsAndDropoutsGiveTheSurvivorsSum) {
  std::mt19937 rng(2024);
  int completed = 0, aborted = 0;
  for (int trial = 0; trial < 120; ++trial) {
    SecAggConfig c;
    c.round_id = 1000 + static_cast<uint64_t>(trial);
    c.num_clients = trial % 20 == 0 ? 150 + static_cast<int>(rng() % 151) : 3 + static_cast<int>(rng() % 40);
    c.bits = 1 + static_cast<int>(rng() % 32);
    c.vector_length = 1 + rng() % (c.num_clients > 100 ? 40 : 300);
    c.graph_seed = SeedOf(static_cast<uint32_t>(trial));
    const int n = c.num_clients;
    // Small cohorts try every degree up to the complete graph; large ones a
    // logarithmic degree, as deployed (the complete graph there is slow).
    int k = n - 1;
    const int max_half = n > 60 ? 20 : (n - 2) / 2;
    if (n > 60 || (n > 4 && rng() % 3 != 0)) k = 2 * (1 + static_cast<int>(rng() % static_cast<uint32_t>(max_half)));
    const int t = k / 2 + 1 + static_cast<int>(rng() % static_cast<uint32_t>(k - k / 2));
    auto params = SecAggParams::Create(c, k, t);
    ASSERT_TRUE(params.ok()) << params.status();
    const double p_drop = (rng() % 4) * 0.05;
    std::vector<int> drop_at(static_cast<size_t>(n), 0);
    std::uniform_real_distribution<double> u01(0, 1);
    for (int& d : drop_at) {
      for (int phase = 1; phase <= 4 && d == 0; ++phase) {
        if (u01(rng) < p_drop) d = phase;
      }
    }
    const Outcome o = RunRound(*params, t, drop_at, static_cast<uint32_t>(trial));
    ASSERT_EQ(o.status.ok(), o.recoverable)
        << "trial " << trial << " n " << n << " k " << k << " t " << t << ": " << o.status;
    if (o.status.ok()) {
      ++completed;
      ASSERT_EQ(o.result, o.expected) << "trial " << trial;
    } else {
      ++aborted;
      EXPECT_EQ(o.status.code(), absl::StatusCode::kAborted);
    }
  }
  std::printf("%d rounds completed, %d aborted\n", completed, aborted);
  // Both outcomes must be exercised, or the test explores too little.
  EXPECT_GT(completed, 30);
  EXPECT_GT(aborted, 3);
}

// Three clients (a national round of three regions): the complete graph
// with self shares, t = 2 of 3 holders, loses any one client at any phase
// and still gives the others' exact sum. Four clients keep k = 3, t = 2 and
// no self shares.
TEST(SecAggPlus, ThreeClientsLoseAnyOneAtAnyPhase) {
  SecAggConfig c;
  c.round_id = 7;
  c.num_clients = 3;
  c.bits = 20;
  c.vector_length = 50;
  c.graph_seed = SeedOf(7);
  const SecAggParams params = base::testing::ValueOrDie(ChooseParams(c), "parameters for 3 clients");
  EXPECT_EQ(params.degree(), 2);
  EXPECT_EQ(params.threshold(), 2);
  EXPECT_TRUE(params.self_shares());
  c.num_clients = 4;
  EXPECT_FALSE(base::testing::ValueOrDie(ChooseParams(c), "parameters for 4 clients").self_shares());
  c.num_clients = 3;
  for (int lost = 0; lost < 3; ++lost) {
    for (int phase = 1; phase <= 4; ++phase) {
      std::vector<int> drop_at(3, 0);
      drop_at[static_cast<size_t>(lost)] = phase;
      const Outcome o = RunRound(params, 2, drop_at, static_cast<uint32_t>(10 * lost + phase));
      ASSERT_TRUE(o.status.ok()) << "client " << lost << " lost before phase " << phase << ": " << o.status;
      EXPECT_EQ(o.result, o.expected) << "client " << lost << " lost before phase " << phase;
      EXPECT_EQ(o.survivors.size(), phase <= 3 ? 2u : 3u);
    }
  }
}

TEST(SecAggPlus, ChosenParametersSurviveTenPercentDropout) {
  SecAggConfig c;
  c.round_id = 7;
  c.num_clients = 200;
  c.bits = 16;
  c.vector_length = 50;
  c.graph_seed = SeedOf(7);
  auto params = ChooseParams(c);
  ASSERT_TRUE(params.ok());
  EXPECT_LT(params->degree(), 100);  // logarithmic, not the complete graph
  std::vector<int> drop_at(200, 0);
  for (int u = 0; u < 200; u += 10) drop_at[static_cast<size_t>(u)] = 3;  // 10% after sharing keys
  for (int u = 5; u < 200; u += 40) drop_at[static_cast<size_t>(u)] = 4;  // and a few before unmasking
  const Outcome o = RunRound(*params, params->threshold(), drop_at, 1);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.result, o.expected);
  EXPECT_EQ(o.survivors.size(), 180u);
}

class SecAggRefusals : public ::testing::Test {
 protected:
  void SetUp() override {
    SecAggConfig c;
    c.round_id = 42;
    c.num_clients = 5;
    c.bits = 8;
    c.vector_length = 4;
    params_ = std::make_unique<SecAggParams>(*SecAggParams::Create(c, 4, 3));
    for (uint32_t u = 0; u < 5; ++u) {
      std::array<uint8_t, 32> s{};
      s[0] = static_cast<uint8_t>(u + 1);
      clients_.push_back(*Client::Create(*params_, u, {1, 2, 3, 4}, SeededRandom(s)));
    }
    server_ = *Server::Create(*params_, 3);
  }
  // Runs round 0 and returns the round-1 requests.
  std::vector<v1::SecAggServerMessage> Advertise() {
    for (auto& c : clients_)
      EXPECT_TRUE(server_->Receive(base::testing::ValueOrDie(c->AdvertiseKeys(), "advertise keys")).ok());
    return *server_->AdvancePhase();
  }
  std::unique_ptr<SecAggParams> params_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::unique_ptr<Server> server_;
};

TEST_F(SecAggRefusals, ServerRefusesWrongRoundDuplicatesAndReplays) {
  auto adv = *clients_[0]->AdvertiseKeys();
  ASSERT_TRUE(server_->Receive(adv).ok());
  EXPECT_EQ(server_->Receive(adv).code(), absl::StatusCode::kInvalidArgument);  // duplicate sender
  auto other_round = *clients_[1]->AdvertiseKeys();
  other_round.set_round_id(41);
  EXPECT_EQ(server_->Receive(other_round).code(), absl::StatusCode::kInvalidArgument);
  other_round.set_round_id(42);
  ASSERT_TRUE(server_->Receive(other_round).ok());  // the refusal left the state intact
  const auto adv2 = *clients_[2]->AdvertiseKeys();
  auto bad_keys = adv2;
  bad_keys.mutable_advertise_keys()->set_masking_public_key("short");
  EXPECT_EQ(server_->Receive(bad_keys).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(server_->Receive(adv2).ok());
  auto stranger = adv;
  stranger.set_sender(99);
  EXPECT_EQ(server_->Receive(stranger).code(), absl::StatusCode::kInvalidArgument);
  for (int u = 3; u < 5; ++u) ASSERT_TRUE(server_->Receive(*clients_[static_cast<size_t>(u)]->AdvertiseKeys()).ok());
  auto requests = *server_->AdvancePhase();
  // Replaying a round-0 message in round 1 is out of phase.
  EXPECT_EQ(server_->Receive(adv).code(), absl::StatusCode::kFailedPrecondition);
  auto shares = *clients_[0]->Handle(requests[0]);
  ASSERT_TRUE(server_->Receive(shares).ok());
  EXPECT_EQ(server_->Receive(shares).code(), absl::StatusCode::kInvalidArgument);  // replayed
}

// A share that does not open (a neighbor sent garbage) is rejected, not the
// whole message: the client carries on without that neighbor and says so.
// A misaddressed share is the message's fault and refuses it.
TEST_F(SecAggRefusals, ClientRejectsATamperedShareAndCarriesOn) {
  auto round1 = Advertise();
  for (size_t u = 0; u < 5; ++u) ASSERT_TRUE(server_->Receive(*clients_[u]->Handle(round1[u])).ok());
  auto round2 = *server_->AdvancePhase();
  auto misrouted = round2[0];
  misrouted.mutable_masked_input()->mutable_shares(0)->set_recipient(4);
  EXPECT_FALSE(clients_[0]->Handle(misrouted).ok());
  auto wrong_round = round2[0];
  wrong_round.set_round_id(7);
  EXPECT_EQ(clients_[0]->Handle(wrong_round).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(clients_[0]->Handle(round1[0]).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(clients_[0]->phase(), ClientPhase::kMaskedInput);
  auto tampered = round2[0];
  auto* share = tampered.mutable_masked_input()->mutable_shares(0);
  const uint32_t culprit = share->sender();
  (*share->mutable_ciphertext())[3] = static_cast<char>((*share->mutable_ciphertext())[3] ^ 1);
  const auto carried_on = clients_[0]->Handle(tampered);
  ASSERT_TRUE(carried_on.ok()) << carried_on.status();
  ASSERT_EQ(carried_on->masked_input().rejected_size(), 1);
  EXPECT_EQ(carried_on->masked_input().rejected(0), culprit);
  EXPECT_EQ(clients_[0]->phase(), ClientPhase::kUnmasking);
}

TEST_F(SecAggRefusals, ClientNeverRevealsBothSharesAndChecksTheSurvivorList) {
  auto round1 = Advertise();
  for (size_t u = 0; u < 5; ++u) ASSERT_TRUE(server_->Receive(*clients_[u]->Handle(round1[u])).ok());
  auto round2 = *server_->AdvancePhase();
  for (size_t u = 0; u < 5; ++u) ASSERT_TRUE(server_->Receive(*clients_[u]->Handle(round2[u])).ok());
  auto round3 = *server_->AdvancePhase();
  auto too_few = round3[0];
  too_few.mutable_unmasking()->clear_survivors();
  too_few.mutable_unmasking()->add_survivors(0);
  too_few.mutable_unmasking()->add_survivors(1);
  EXPECT_EQ(clients_[0]->Handle(too_few).status().code(), absl::StatusCode::kFailedPrecondition);
  auto both = round3[0];
  both.mutable_unmasking()->add_dropped(2);  // 2 is also a survivor
  EXPECT_EQ(clients_[0]->Handle(both).status().code(), absl::StatusCode::kInvalidArgument);
  auto reply = clients_[0]->Handle(round3[0]);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->unmasking().masking_key_owners_size(), 0);
  EXPECT_TRUE(reply->unmasking().masking_key_shares().empty());
  // Its four neighbours' self-mask shares and, in this complete graph of even degree, its own.
  ASSERT_EQ(reply->unmasking().self_mask_owners_size(), 5);
  EXPECT_EQ(reply->unmasking().self_mask_owners(0), 0u);
  EXPECT_EQ(reply->unmasking().self_mask_shares().size(), 5 * 16u);
  // Asked again, now naming everyone as dropped: refused, nothing revealed.
  auto again = round3[0];
  again.mutable_unmasking()->clear_survivors();
  EXPECT_EQ(clients_[0]->Handle(again).status().code(), absl::StatusCode::kFailedPrecondition);
}

// Insiders: a random minority of a cohort sends shares nobody can open,
// malformed masked inputs or malformed unmasking responses, or rejects an
// honest neighbor's share falsely. Every round either completes with exactly
// the sum of its survivors' inputs, with no garbage-share or malformed-input
// insider among the survivors and every honest client that completed among
// them unless falsely rejected, or aborts; never a wrong sum. (A false
// rejecter keeps the mask it claims it did not add: like any insider it can
// put arbitrary values into the sum through its own input, which SecAgg+
// cannot tell from data. The sum is then checked only where none did.)
enum class Insider {
  kHonest,
  kGarbageShares,
  kMalformedInput,
  kMalformedUnmasking,
  kFalseRejection,
  kWrongUnmaskingShares,  // well formed, but not the shares it was dealt
  kBadSeedCommitment,     // deals shares of another seed than it committed to
};

TEST(SecAggPlus, InsidersCostOnlyThemselvesAndNeverChangeTheSum) {
  std::mt19937 rng(77);
  int completed = 0, aborted = 0, insiders_seen = 0, exact = 0, named_dealers = 0;
  constexpr int kTrials = 120;
  for (int trial = 0; trial < kTrials; ++trial) {
    SecAggConfig c;
    c.round_id = 5000 + static_cast<uint64_t>(trial);
    c.num_clients = 5 + static_cast<int>(rng() % 26);
    c.bits = 8 + static_cast<int>(rng() % 25);
    c.vector_length = 1 + rng() % 64;
    c.graph_seed = SeedOf(static_cast<uint32_t>(trial) + 99);
    c.max_dropout = 0.1;
    c.max_corrupted = 0.2;
    auto params = ChooseParams(c);
    ASSERT_TRUE(params.ok()) << params.status();
    const int n = c.num_clients, t = params->threshold();
    const uint32_t mask = c.bits == 32 ? ~uint32_t{0} : (uint32_t{1} << c.bits) - 1;
    std::vector<Insider> kind(static_cast<size_t>(n), Insider::kHonest);
    const int insiders = 1 + static_cast<int>(rng() % static_cast<uint32_t>(std::max(1, n / 5)));
    for (int i = 0; i < insiders; ++i) kind[rng() % static_cast<uint32_t>(n)] = static_cast<Insider>(1 + rng() % 6);
    std::vector<std::vector<uint32_t>> inputs(static_cast<size_t>(n));
    std::vector<std::unique_ptr<Client>> clients;
    for (int u = 0; u < n; ++u) {
      for (size_t i = 0; i < c.vector_length; ++i) inputs[static_cast<size_t>(u)].push_back(rng() & mask);
      std::array<uint8_t, 32> s{};
      s[0] = static_cast<uint8_t>(u);
      s[1] = static_cast<uint8_t>(trial);
      clients.push_back(std::move(
          *Client::Create(*params, static_cast<uint32_t>(u), inputs[static_cast<size_t>(u)], SeededRandom(s))));
    }
    auto server = *Server::Create(*params, t);
    for (int u = 0; u < n; ++u) ASSERT_TRUE(server->Receive(*clients[static_cast<size_t>(u)]->AdvertiseKeys()).ok());
    absl::Status status;
    std::set<uint32_t> falsely_rejected;
    for (int phase = 2; phase <= 4 && status.ok(); ++phase) {
      auto requests = server->AdvancePhase();
      if (!requests.ok()) {
        status = requests.status();
        break;
      }
      for (const auto& req : *requests) {
        const uint32_t u = req.recipient();
        auto reply = clients[u]->Handle(req);
        if (!reply.ok()) continue;
        const Insider k = kind[u];
        if (phase == 2 && k == Insider::kGarbageShares) {
          std::string& sealed = *reply->mutable_share_keys()->mutable_sealed_shares();
          for (size_t at = 0; at < sealed.size(); at += 64) sealed[at] ^= 0x5a;  // each record's first byte
        }
        if (phase == 2 && k == Insider::kBadSeedCommitment) {
          reply->mutable_share_keys()->set_self_mask_seed_commitment(std::string(32, 'x'));
        }
        if (phase == 3 && k == Insider::kMalformedInput) reply->mutable_masked_input()->set_masked_input("x");
        if (phase == 3 && k == Insider::kFalseRejection && req.masked_input().shares_size() > 0) {
          const uint32_t victim = req.masked_input().shares(0).sender();
          bool listed = false;
          for (uint32_t r : reply->masked_input().rejected()) listed |= r == victim;
          if (!listed) {
            reply->mutable_masked_input()->add_rejected(victim);
            falsely_rejected.insert(victim);
          }
        }
        if (phase == 4 && k == Insider::kMalformedUnmasking) {
          if (reply->unmasking().self_mask_owners_size() > 0) reply->mutable_unmasking()->set_self_mask_shares("short");
        }
        if (phase == 4 && k == Insider::kWrongUnmaskingShares) {
          std::string& shares = *reply->mutable_unmasking()->mutable_self_mask_shares();
          for (size_t at = 0; at < shares.size(); at += 16) shares[at] ^= 1;
        }
        const absl::Status received = server->Receive(*reply);
        const bool malformed =
            (phase == 3 && k == Insider::kMalformedInput) ||
            (phase == 4 && (k == Insider::kMalformedUnmasking || k == Insider::kWrongUnmaskingShares) &&
             reply->unmasking().self_mask_owners_size() > 0);
        EXPECT_EQ(received.ok(), !malformed)
            << "trial " << trial << " client " << u << " phase " << phase << ": " << received;
      }
    }
    if (status.ok()) status = server->AdvancePhase().status();
    insiders_seen += insiders;
    if (!status.ok()) {
      ++aborted;
      EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
      if (status.message().find("do not rebuild the seed it committed to") != absl::string_view::npos) {
        ++named_dealers;
      }
      continue;
    }
    ++completed;
    const auto survivors = server->Survivors();
    std::vector<uint32_t> expected(c.vector_length, 0);
    for (uint32_t u : survivors) {
      EXPECT_NE(kind[u], Insider::kGarbageShares) << "trial " << trial;
      EXPECT_NE(kind[u], Insider::kMalformedInput) << "trial " << trial;
      EXPECT_NE(kind[u], Insider::kBadSeedCommitment) << "trial " << trial;
      for (size_t i = 0; i < expected.size(); ++i) expected[i] = (expected[i] + inputs[u][i]) & mask;
    }
    bool liar_in_sum = false;
    for (uint32_t u : survivors) {
      bool rejected_someone = false;
      for (const Accusation& a : server->Accusations()) rejected_someone |= a.accuser == u;
      liar_in_sum |= kind[u] == Insider::kFalseRejection && rejected_someone;
    }
    if (!liar_in_sum) {
      ASSERT_EQ(*server->Result(), expected) << "trial " << trial << ": a wrong sum";
    }
    exact += !liar_in_sum;
    const std::set<uint32_t> in_sum(survivors.begin(), survivors.end());
    for (int u = 0; u < n; ++u) {
      if (kind[static_cast<size_t>(u)] == Insider::kHonest && !falsely_rejected.count(static_cast<uint32_t>(u))) {
        EXPECT_TRUE(in_sum.count(static_cast<uint32_t>(u)))
            << "trial " << trial << ": honest client " << u << " left out";
      }
    }
    std::set<uint32_t> accused;
    for (const Accusation& a : server->Accusations()) accused.insert(a.accused);
    for (int u = 0; u < n; ++u) {
      if (kind[static_cast<size_t>(u)] == Insider::kGarbageShares) {
        EXPECT_TRUE(accused.count(static_cast<uint32_t>(u))) << "trial " << trial << ": culprit " << u << " not named";
      }
    }
  }
  std::printf(
      "%d rounds with %d insiders: %d completed (%d sums checked exactly), %d aborted (%d naming a dealer of "
      "bad shares)\n",
      kTrials, insiders_seen, completed, exact, aborted, named_dealers);
  EXPECT_GT(completed, 60);
  EXPECT_GT(named_dealers, 0);
  EXPECT_GT(exact, 40);
}

TEST(SecAggParams, DegreeAndThresholdGrowLogarithmically) {
  std::map<int, int> degree;
  for (int n : {1000, 10000}) {
    SecAggConfig c;
    c.num_clients = n;
    c.vector_length = 1;
    c.max_dropout = 0.1;
    auto p = ChooseParams(c);
    ASSERT_TRUE(p.ok());
    degree[n] = p->degree();
    EXPECT_LT(p->degree(), n / 10) << n;
    EXPECT_GT(p->threshold(), p->degree() / 2);
    EXPECT_EQ(p->Neighbors(0).size(), static_cast<size_t>(p->degree()));
    for (uint32_t v : p->Neighbors(17)) EXPECT_TRUE(p->AreNeighbors(v, 17));
  }
  // Ten times the cohort adds a few neighbors, not ten times as many.
  EXPECT_LT(degree[10000], degree[1000] + 16);
  SecAggConfig small;
  small.num_clients = 5;
  small.vector_length = 1;
  EXPECT_EQ(ChooseParams(small)->degree(), 4);           // complete graph
  EXPECT_FALSE(SecAggParams::Create(small, 3, 2).ok());  // odd degree below n - 1
  EXPECT_FALSE(SecAggParams::Create(small, 4, 2).ok());  // t <= k / 2
}

}  // namespace
}  // namespace tinyfed::secagg
