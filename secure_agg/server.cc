// The server as one class per round: each collects its round's messages
// (Receive validates fully before it records anything) and Advance builds the
// next round's state and requests. An ABORTED Advance moves the facade to the
// aborted state.
#include "tinyfed/secure_agg/server.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "secure_agg/internal/crypto.h"
#include "secure_agg/internal/shamir.h"
#include "secure_agg/internal/wire.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/proto/packing.h"

namespace tinyfed::secagg {

struct ServerContext {
  const SecAggParams& params;
  int min_survivors;
};

class ServerState {
 public:
  struct Transition {
    std::unique_ptr<ServerState> next;
    std::vector<v1::SecAggServerMessage> messages;
  };
  virtual ~ServerState() = default;
  virtual ServerPhase phase() const = 0;
  virtual absl::Status Receive(const ServerContext&, const v1::SecAggClientMessage& m) {
    return absl::FailedPreconditionError(absl::StrCat(
        "message from client ", m.sender(), " outside its phase (server phase ", static_cast<int>(phase()), ")"));
  }
  virtual absl::StatusOr<Transition> Advance(const ServerContext&) {
    return absl::FailedPreconditionError("the secure aggregation round is over");
  }
  virtual const std::vector<uint32_t>* result() const { return nullptr; }
  virtual std::vector<uint32_t> survivors() const { return {}; }
  virtual std::vector<Accusation> accusations() const { return {}; }

 protected:
  static v1::SecAggServerMessage MessageFor(const ServerContext& c, uint32_t v) {
    v1::SecAggServerMessage m;
    m.set_round_id(c.params.config().round_id);
    m.set_recipient(v);
    return m;
  }
  static absl::Status TooFew(const ServerContext& c, size_t count, const char* what) {
    return absl::AbortedError(absl::StrCat(count, " clients ", what, ", fewer than ", c.min_survivors));
  }
  static absl::Status Duplicate(const char* what, uint32_t u) {
    return absl::InvalidArgumentError(absl::StrCat("duplicate ", what, " from client ", u));
  }
};

namespace {

using Advertised = std::map<uint32_t, v1::AdvertiseKeys>;

// What each dealer committed to: its self-mask seed, and both halves of the
// share it sent each holder.
struct Dealt {
  std::string seed;
  std::map<uint32_t, std::pair<std::string, std::string>> shares;  // holder -> masking key, self mask
};
using Commitments = std::map<uint32_t, Dealt>;
using SharesByOwner = std::map<uint32_t, std::map<uint32_t, std::string>>;  // owner -> holder -> share

// The (owner, share) pairs of one list of an unmasking response; nullopt when
// the bytes are not kShareBytes per owner.
std::optional<std::vector<std::pair<uint32_t, std::string_view>>> Revealed(
    const google::protobuf::RepeatedField<uint32_t>& owners, const std::string& shares) {
  if (shares.size() != internal::kShareBytes * static_cast<size_t>(owners.size())) return std::nullopt;
  std::vector<std::pair<uint32_t, std::string_view>> out;
  for (int i = 0; i < owners.size(); ++i) {
    out.emplace_back(owners[i], std::string_view(shares).substr(internal::kShareBytes * static_cast<size_t>(i),
                                                                internal::kShareBytes));
  }
  return out;
}

void Wipe(SharesByOwner& shares) {
  for (auto& [owner, by_holder] : shares)
    for (auto& [holder, share] : by_holder) sodium_memzero(share.data(), share.size());
  shares.clear();
}

class AbortedState : public ServerState {
 public:
  ServerPhase phase() const override { return ServerPhase::kAborted; }
};

class DoneState : public ServerState {
 public:
  DoneState(std::vector<uint32_t> result, std::set<uint32_t> survivors, std::vector<Accusation> accusations)
      : result_(std::move(result)), survivors_(std::move(survivors)), accusations_(std::move(accusations)) {}
  ServerPhase phase() const override { return ServerPhase::kDone; }
  const std::vector<uint32_t>* result() const override { return &result_; }
  std::vector<uint32_t> survivors() const override { return {survivors_.begin(), survivors_.end()}; }
  std::vector<Accusation> accusations() const override { return accusations_; }

 private:
  std::vector<uint32_t> result_;
  std::set<uint32_t> survivors_;
  std::vector<Accusation> accusations_;
};

// Round 3: collect shares, then rebuild and remove the masks.
class UnmaskingState : public ServerState {
 public:
  UnmaskingState(Advertised advertised, Commitments commitments, std::set<uint32_t> shared, std::set<uint32_t> masked,
                 std::map<uint32_t, std::set<uint32_t>> masked_with, std::vector<uint32_t> sum,
                 std::vector<Accusation> accusations)
      : advertised_(std::move(advertised)),
        commitments_(std::move(commitments)),
        shared_(std::move(shared)),
        masked_(std::move(masked)),
        masked_with_(std::move(masked_with)),
        sum_(std::move(sum)),
        accusations_(std::move(accusations)) {}
  std::vector<Accusation> accusations() const override { return accusations_; }
  ~UnmaskingState() override {
    Wipe(self_mask_shares_);
    Wipe(masking_key_shares_);
  }
  ServerPhase phase() const override { return ServerPhase::kUnmasking; }

  absl::Status Receive(const ServerContext& c, const v1::SecAggClientMessage& m) override {
    const uint32_t u = m.sender();
    if (!m.has_unmasking() || !masked_.count(u)) return ServerState::Receive(c, m);
    if (unmasked_.count(u)) return Duplicate("unmasking response", u);
    const auto& r = m.unmasking();
    const auto self_mask = Revealed(r.self_mask_owners(), r.self_mask_shares());
    const auto masking_key = Revealed(r.masking_key_owners(), r.masking_key_shares());
    if (!self_mask || !masking_key) {
      return absl::InvalidArgumentError(
          absl::StrCat("unmasking response from client ", u, " does not hold 16 bytes for each owner it names"));
    }
    std::set<uint32_t> owners;
    for (const auto& [owner, share] : *self_mask) {
      const bool holder = c.params.AreNeighbors(u, owner) || (owner == u && c.params.self_shares());
      if (!masked_.count(owner) || !holder || !owners.insert(owner).second) {
        return absl::InvalidArgumentError(absl::StrCat("bad self-mask share from client ", u, " for client ", owner));
      }
    }
    for (const auto& [owner, share] : *masking_key) {
      const bool dropped = shared_.count(owner) && !masked_.count(owner);
      if (!dropped || !c.params.AreNeighbors(u, owner) || !owners.insert(owner).second) {
        return absl::InvalidArgumentError(absl::StrCat("bad masking-key share from client ", u, " for client ", owner));
      }
    }
    // A holder reveals what the dealer committed to, or nothing of it counts.
    const uint64_t round = c.params.config().round_id;
    auto committed = [&](uint32_t owner, internal::Committed what, std::string_view share) {
      const auto dealt = commitments_.find(owner);
      if (dealt == commitments_.end()) return false;
      const auto held = dealt->second.shares.find(u);
      if (held == dealt->second.shares.end()) return false;
      const std::string& expected =
          what == internal::Committed::kMaskingKeyShare ? held->second.first : held->second.second;
      return internal::Commitment(what, round, owner, u, share) == expected;
    };
    for (const auto& [owner, share] : *self_mask) {
      if (!committed(owner, internal::Committed::kSelfMaskShare, share)) {
        return absl::InvalidArgumentError(absl::StrCat("client ", u, " revealed a self-mask share of client ", owner,
                                                       " that is not the one dealt to it"));
      }
    }
    for (const auto& [owner, share] : *masking_key) {
      if (!committed(owner, internal::Committed::kMaskingKeyShare, share)) {
        return absl::InvalidArgumentError(absl::StrCat("client ", u, " revealed a masking-key share of client ", owner,
                                                       " that is not the one dealt to it"));
      }
    }
    for (const auto& [owner, share] : *self_mask) self_mask_shares_[owner][u] = std::string(share);
    for (const auto& [owner, share] : *masking_key) masking_key_shares_[owner][u] = std::string(share);
    unmasked_.insert(u);
    return absl::OkStatus();
  }

  absl::StatusOr<Transition> Advance(const ServerContext& c) override {
    const auto& config = c.params.config();
    const int t = c.params.threshold();
    auto combine = [&](uint32_t owner, const SharesByOwner& all,
                       const char* what) -> absl::StatusOr<internal::SecretSeed> {
      const auto it = all.find(owner);
      const size_t have = it == all.end() ? 0 : it->second.size();
      if (static_cast<int>(have) < t) {
        return absl::AbortedError(
            absl::StrCat("the ", what, " of client ", owner, " has ", have, " shares, needs ", t));
      }
      std::vector<uint64_t> points;
      std::vector<std::string> shares;
      for (const auto& [holder, share] : it->second) {
        points.push_back(uint64_t{holder} + 1);
        shares.push_back(share);
      }
      auto key = internal::CombineShares(points, shares, t);
      for (auto& share : shares) sodium_memzero(share.data(), share.size());
      if (!key.ok()) return absl::AbortedError(key.status().message());
      return key;
    };
    // Remove each survivor's self mask.
    for (uint32_t u : masked_) {
      auto seed = combine(u, self_mask_shares_, "self mask");
      if (!seed.ok()) return seed.status();
      // Shares that each match their commitment can still disagree if the
      // dealer made them so: the seed they give must be the one it committed to.
      if (internal::Commitment(internal::Committed::kSelfMaskSeed, config.round_id, u, u,
                               std::string_view(reinterpret_cast<const char*>(seed->bytes.data()),
                                                seed->bytes.size())) != commitments_[u].seed) {
        return absl::AbortedError(absl::StrCat("the self-mask shares of client ", u,
                                               " do not rebuild the seed it committed to (it dealt bad shares)"));
      }
      internal::AddMask(internal::SelfMaskKeyOf(*seed), -1, config.bits, sum_);
    }
    // For each dropped client, remove the pairwise masks its surviving
    // neighbors added with it.
    for (uint32_t v : shared_) {
      if (masked_.count(v)) continue;
      const bool masked_by_a_survivor = std::any_of(masked_with_.begin(), masked_with_.end(),
                                                    [&](const auto& entry) { return entry.second.count(v) > 0; });
      if (!masked_by_a_survivor) continue;
      auto seed = combine(v, masking_key_shares_, "masking key");
      if (!seed.ok()) return seed.status();
      const internal::KeyPair key = internal::MaskingKeyPairOf(*seed);
      if (key.public_key != internal::FromBytes(advertised_[v].masking_public_key())) {
        return absl::AbortedError(
            absl::StrCat("reconstructed masking key of client ", v, " does not match its advertised key (bad shares)"));
      }
      for (uint32_t w : c.params.Neighbors(v)) {
        if (!masked_.count(w) || !masked_with_[w].count(v)) continue;
        auto pairwise = internal::AgreeKey(key.secret, internal::FromBytes(advertised_[w].masking_public_key()),
                                           internal::Purpose::kPairwiseMask, config.round_id, v, w);
        if (!pairwise.ok()) return absl::AbortedError(pairwise.status().message());
        internal::AddMask(*pairwise, w < v ? -1 : +1, config.bits, sum_);  // undo w's +-PRG
      }
    }
    return Transition{std::make_unique<DoneState>(std::move(sum_), std::move(masked_), std::move(accusations_)), {}};
  }

 private:
  Advertised advertised_;
  Commitments commitments_;
  const std::set<uint32_t> shared_;
  std::set<uint32_t> masked_;
  std::map<uint32_t, std::set<uint32_t>> masked_with_;
  std::vector<uint32_t> sum_;
  std::vector<Accusation> accusations_;
  SharesByOwner self_mask_shares_, masking_key_shares_;
  std::set<uint32_t> unmasked_;
};

// Round 2: collect masked inputs and the neighbors each client rejected.
// The inputs are kept apart until the round closes: a rejected client's
// input must stay out of the sum.
class MaskedInputState : public ServerState {
 public:
  MaskedInputState(Advertised advertised, Commitments commitments, std::set<uint32_t> shared)
      : advertised_(std::move(advertised)), commitments_(std::move(commitments)), shared_(std::move(shared)) {}
  ServerPhase phase() const override { return ServerPhase::kMaskedInput; }

  absl::Status Receive(const ServerContext& c, const v1::SecAggClientMessage& m) override {
    const uint32_t u = m.sender();
    if (!m.has_masked_input() || !shared_.count(u)) return ServerState::Receive(c, m);
    if (inputs_.count(u)) return Duplicate("masked input", u);
    const auto& config = c.params.config();
    auto y = proto::UnpackBits(m.masked_input().masked_input(), config.bits, config.vector_length);
    if (!y.ok())
      return absl::InvalidArgumentError(absl::StrCat("masked input from client ", u, ": ", y.status().message()));
    std::set<uint32_t> rejected;
    for (uint32_t v : m.masked_input().rejected()) {
      if (!shared_.count(v) || !c.params.AreNeighbors(u, v) || !rejected.insert(v).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("client ", u, " rejects client ", v, ", which sent it no share (or is named twice)"));
      }
    }
    inputs_[u] = std::move(*y);
    rejected_by_[u] = std::move(rejected);
    return absl::OkStatus();
  }

  absl::StatusOr<Transition> Advance(const ServerContext& c) override {
    // Whoever a client rejected is out: its input is not summed, and its
    // masking key is rebuilt like a dropped client's. A rejection may be a
    // lie (an insider framing an honest neighbor); either way the pair's
    // masks do not cancel, and both ids are on record.
    std::vector<Accusation> accusations;
    std::set<uint32_t> accused;
    for (const auto& [u, rejected] : rejected_by_) {
      for (uint32_t v : rejected) {
        accusations.push_back({.accuser = u, .accused = v});
        accused.insert(v);
      }
    }
    std::set<uint32_t> survivors;
    for (const auto& [u, _] : inputs_) {
      if (!accused.count(u)) survivors.insert(u);
    }
    if (static_cast<int>(survivors.size()) < c.min_survivors) {
      if (accused.empty()) return TooFew(c, survivors.size(), "sent masked inputs");
      return absl::AbortedError(absl::StrCat(survivors.size(),
                                             " clients sent masked inputs and were rejected by no "
                                             "neighbor, fewer than ",
                                             c.min_survivors, "; rejected: ", absl::StrJoin(accused, ", ")));
    }
    const auto& config = c.params.config();
    const uint32_t mask = config.bits == 32 ? ~uint32_t{0} : (uint32_t{1} << config.bits) - 1;
    std::vector<uint32_t> sum(config.vector_length, 0);
    for (uint32_t u : survivors) {
      const std::vector<uint32_t>& y = inputs_[u];
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = (sum[i] + y[i]) & mask;
    }
    // The pairwise masks each survivor added: one for every neighbor whose
    // share it held.
    std::map<uint32_t, std::set<uint32_t>> masked_with;
    for (uint32_t w : survivors) {
      for (uint32_t v : c.params.Neighbors(w)) {
        if (shared_.count(v) && !rejected_by_[w].count(v)) masked_with[w].insert(v);
      }
    }
    Transition tr;
    for (uint32_t v : survivors) {
      auto m = MessageFor(c, v);
      auto* req = m.mutable_unmasking();
      for (uint32_t w : survivors) req->add_survivors(w);
      for (uint32_t w : shared_) {
        if (!survivors.count(w)) req->add_dropped(w);
      }
      tr.messages.push_back(std::move(m));
    }
    tr.next =
        std::make_unique<UnmaskingState>(std::move(advertised_), std::move(commitments_), shared_, std::move(survivors),
                                         std::move(masked_with), std::move(sum), std::move(accusations));
    return tr;
  }

 private:
  Advertised advertised_;
  Commitments commitments_;
  const std::set<uint32_t> shared_;
  std::map<uint32_t, std::vector<uint32_t>> inputs_;
  std::map<uint32_t, std::set<uint32_t>> rejected_by_;
};

// Round 1: collect encrypted shares and route them to their recipients.
class ShareKeysState : public ServerState {
 public:
  explicit ShareKeysState(Advertised advertised) : advertised_(std::move(advertised)) {}
  ServerPhase phase() const override { return ServerPhase::kShareKeys; }

  absl::Status Receive(const ServerContext& c, const v1::SecAggClientMessage& m) override {
    const uint32_t u = m.sender();
    if (!m.has_share_keys() || !advertised_.count(u)) return ServerState::Receive(c, m);
    if (shared_.count(u)) return Duplicate("key shares", u);
    const auto& sk = m.share_keys();
    constexpr size_t kRecord = 2 * internal::kShareBytes + 2 * internal::kShareCommitmentBytes;
    if (sk.sealed_shares().size() != kRecord * static_cast<size_t>(sk.recipients_size())) {
      return absl::InvalidArgumentError(absl::StrCat("client ", u, " sent ", sk.sealed_shares().size(),
                                                     " bytes of shares for ", sk.recipients_size(), " recipients, not ",
                                                     kRecord, " each"));
    }
    std::set<uint32_t> recipients;
    for (uint32_t v : sk.recipients()) {
      if (!c.params.AreNeighbors(u, v) || !advertised_.count(v) || !recipients.insert(v).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("share from client ", u, " to client ", v, " is misaddressed or repeated"));
      }
    }
    // Every advertised neighbor, or a pair's masks would not cancel: the one
    // that got a share adds its mask, the other does not.
    size_t advertised_neighbors = 0;
    for (uint32_t w : c.params.Neighbors(u)) advertised_neighbors += advertised_.count(w);
    if (recipients.size() != advertised_neighbors) {
      return absl::InvalidArgumentError(absl::StrCat("client ", u, " shared with ", recipients.size(), " of its ",
                                                     advertised_neighbors,
                                                     " neighbors that advertised keys; it must "
                                                     "share with all"));
    }
    if (sk.self_mask_seed_commitment().size() != internal::kSeedCommitmentBytes) {
      return absl::InvalidArgumentError(absl::StrCat("client ", u, " committed to no self-mask seed"));
    }
    if ((sk.own_self_mask_commitment().size() == internal::kShareCommitmentBytes) != c.params.self_shares()) {
      return absl::InvalidArgumentError(absl::StrCat("client ", u,
                                                     c.params.self_shares() ? " committed to no" : " sent a",
                                                     " share of its own self-mask seed (only a complete graph's do)"));
    }
    Dealt& dealt = commitments_[u];
    dealt.seed = sk.self_mask_seed_commitment();
    if (c.params.self_shares()) dealt.shares[u] = {"", sk.own_self_mask_commitment()};
    for (int i = 0; i < sk.recipients_size(); ++i) {
      const std::string_view record =
          std::string_view(sk.sealed_shares()).substr(kRecord * static_cast<size_t>(i), kRecord);
      v1::EncryptedShare share;
      share.set_sender(u);
      share.set_recipient(sk.recipients(i));
      share.set_ciphertext(std::string(record.substr(0, 2 * internal::kShareBytes)));
      share.set_masking_key_commitment(
          std::string(record.substr(2 * internal::kShareBytes, internal::kShareCommitmentBytes)));
      share.set_self_mask_commitment(
          std::string(record.substr(2 * internal::kShareBytes + internal::kShareCommitmentBytes)));
      dealt.shares[share.recipient()] = {share.masking_key_commitment(), share.self_mask_commitment()};
      shares_for_[share.recipient()].push_back(std::move(share));
    }
    shared_.insert(u);
    return absl::OkStatus();
  }

  absl::StatusOr<Transition> Advance(const ServerContext& c) override {
    if (static_cast<int>(shared_.size()) < c.min_survivors) return TooFew(c, shared_.size(), "shared keys");
    Transition tr;
    for (uint32_t v : shared_) {
      auto m = MessageFor(c, v);
      auto* req = m.mutable_masked_input();  // present even when empty
      for (const auto& share : shares_for_[v]) {
        if (shared_.count(share.sender())) *req->add_shares() = share;
      }
      tr.messages.push_back(std::move(m));
    }
    tr.next = std::make_unique<MaskedInputState>(std::move(advertised_), std::move(commitments_), std::move(shared_));
    return tr;
  }

 private:
  Advertised advertised_;
  Commitments commitments_;
  std::map<uint32_t, std::vector<v1::EncryptedShare>> shares_for_;  // by recipient
  std::set<uint32_t> shared_;
};

// Round 0: collect public keys, then tell each client its neighbors' keys.
class AdvertiseState : public ServerState {
 public:
  ServerPhase phase() const override { return ServerPhase::kAdvertise; }

  absl::Status Receive(const ServerContext& c, const v1::SecAggClientMessage& m) override {
    const uint32_t u = m.sender();
    if (!m.has_advertise_keys()) return ServerState::Receive(c, m);
    if (advertised_.count(u)) return Duplicate("key advertisement", u);
    const auto& a = m.advertise_keys();
    if (a.encryption_public_key().size() != 32 || a.masking_public_key().size() != 32) {
      return absl::InvalidArgumentError(absl::StrCat("keys from client ", u, " are not 32 bytes"));
    }
    advertised_[u] = a;
    return absl::OkStatus();
  }

  absl::StatusOr<Transition> Advance(const ServerContext& c) override {
    if (static_cast<int>(advertised_.size()) < c.min_survivors) return TooFew(c, advertised_.size(), "advertised keys");
    Transition tr;
    for (const auto& [v, _] : advertised_) {
      auto m = MessageFor(c, v);
      auto* req = m.mutable_share_keys();
      for (uint32_t w : c.params.Neighbors(v)) {
        const auto it = advertised_.find(w);
        if (it == advertised_.end()) continue;
        auto* nk = req->add_neighbors();
        nk->set_id(w);
        nk->set_encryption_public_key(it->second.encryption_public_key());
        nk->set_masking_public_key(it->second.masking_public_key());
        nk->set_signature(it->second.signature());
      }
      tr.messages.push_back(std::move(m));
    }
    tr.next = std::make_unique<ShareKeysState>(std::move(advertised_));
    return tr;
  }

 private:
  Advertised advertised_;
};

}  // namespace

Server::Server(const SecAggParams& params, int min_survivors)
    : params_(params), min_survivors_(min_survivors), state_(std::make_unique<AdvertiseState>()) {}
Server::~Server() = default;

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const SecAggParams& params, int min_survivors) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  if (min_survivors < params.threshold() || min_survivors > params.config().num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("min survivors ", min_survivors, " must be in [t = ",
                                                   params.threshold(), ", n = ", params.config().num_clients, "]"));
  }
  return std::unique_ptr<Server>(new Server(params, min_survivors));
}

ServerPhase Server::phase() const {
  absl::MutexLock lock(&mu_);
  return state_->phase();
}

absl::Status Server::Receive(const v1::SecAggClientMessage& m) {
  absl::MutexLock lock(&mu_);
  const auto& c = params_.config();
  if (m.round_id() != c.round_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("message from client ", m.sender(), " for round ", m.round_id(), ", this is round ", c.round_id));
  }
  if (m.sender() >= static_cast<uint32_t>(c.num_clients)) {
    return absl::InvalidArgumentError(absl::StrCat("sender ", m.sender(), " is not in the cohort of ", c.num_clients));
  }
  if (m.phase_case() == v1::SecAggClientMessage::PHASE_NOT_SET) {
    return absl::InvalidArgumentError(absl::StrCat("message from client ", m.sender(), " has no phase"));
  }
  return state_->Receive(ServerContext{params_, min_survivors_}, m);
}

absl::StatusOr<std::vector<v1::SecAggServerMessage>> Server::AdvancePhase() {
  absl::MutexLock lock(&mu_);
  auto tr = state_->Advance(ServerContext{params_, min_survivors_});
  if (!tr.ok()) {
    if (tr.status().code() != absl::StatusCode::kAborted) return tr.status();
    state_ = std::make_unique<AbortedState>();  // the old state wipes its shares
    return absl::AbortedError(
        absl::StrCat("secure aggregation round ", params_.config().round_id, " aborted: ", tr.status().message()));
  }
  state_ = std::move(tr->next);
  return std::move(tr->messages);
}

absl::StatusOr<std::vector<uint32_t>> Server::Result() const {
  absl::MutexLock lock(&mu_);
  const auto* r = state_->result();
  if (r == nullptr) return absl::FailedPreconditionError("secure aggregation has no result (not finished or aborted)");
  return *r;
}

std::vector<uint32_t> Server::Survivors() const {
  absl::MutexLock lock(&mu_);
  return state_->survivors();
}

std::vector<Accusation> Server::Accusations() const {
  absl::MutexLock lock(&mu_);
  return state_->accusations();
}

}  // namespace tinyfed::secagg
