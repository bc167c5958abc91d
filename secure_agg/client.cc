// The client as one class per round (as fcp's secagg_client_state.h): each
// state's transition is const, builds the next state and the reply, and the
// facade swaps the state in only on success.
#include "tinyfed/secure_agg/client.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "secure_agg/internal/crypto.h"
#include "secure_agg/internal/shamir.h"
#include "secure_agg/internal/wire.h"
#include "tinyfed/base/sodium.h"
#include "tinyfed/base/status_macros.h"
#include "tinyfed/proto/packing.h"

namespace tinyfed::secagg {

using internal::SecretKey;

struct ClientContext {
  const SecAggParams& params;
  uint32_t id;
  Random& rng;
};

class ClientState {
 public:
  struct Transition {
    std::unique_ptr<ClientState> next;
    v1::SecAggClientMessage reply;
  };
  virtual ~ClientState() = default;
  virtual ClientPhase phase() const = 0;
  virtual absl::StatusOr<Transition> AdvertiseKeys(const ClientContext& c) const { return WrongPhase(c); }
  virtual absl::StatusOr<Transition> Handle(const ClientContext& c, const v1::SecAggServerMessage&) const {
    return WrongPhase(c);
  }

 protected:
  absl::Status WrongPhase(const ClientContext& c) const {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", c.id, " cannot do that in phase ", static_cast<int>(phase())));
  }
  static v1::SecAggClientMessage Reply(const ClientContext& c) {
    v1::SecAggClientMessage m;
    m.set_round_id(c.params.config().round_id);
    m.set_sender(c.id);
    return m;
  }
};

namespace {

struct HeldShares {
  std::string masking_key_share;
  std::string self_mask_share;
  ~HeldShares() {
    sodium_memzero(masking_key_share.data(), masking_key_share.size());
    sodium_memzero(self_mask_share.data(), self_mask_share.size());
  }
};

class DoneState : public ClientState {
 public:
  ClientPhase phase() const override { return ClientPhase::kDone; }
};

// Round 3: reveal, for each neighbor whose shares this client holds, the
// self-mask share if it survived or the masking-key share if it dropped.
class UnmaskingState : public ClientState {
 public:
  // `own`: this client's share of its own self-mask seed (self_shares()).
  UnmaskingState(std::map<uint32_t, HeldShares> held, std::string own)
      : held_(std::move(held)), own_self_mask_share_(std::move(own)) {}
  ~UnmaskingState() override { sodium_memzero(own_self_mask_share_.data(), own_self_mask_share_.size()); }
  ClientPhase phase() const override { return ClientPhase::kUnmasking; }
  absl::StatusOr<Transition> Handle(const ClientContext& c, const v1::SecAggServerMessage& m) const override {
    if (!m.has_unmasking()) return WrongPhase(c);
    const auto& req = m.unmasking();
    std::set<uint32_t> survivors, dropped;
    for (uint32_t u : req.survivors()) {
      if (!survivors.insert(u).second) return absl::InvalidArgumentError(absl::StrCat("survivor ", u, " listed twice"));
    }
    for (uint32_t u : req.dropped()) {
      if (survivors.count(u) || !dropped.insert(u).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("client ", u, " is listed as both survivor and dropped, or twice"));
      }
    }
    const int t = c.params.threshold();
    if (static_cast<int>(survivors.size()) < t) {
      return absl::FailedPreconditionError(
          absl::StrCat("unmasking request names ", survivors.size(), " survivors, fewer than the threshold ", t));
    }
    if (!survivors.count(c.id)) {
      return absl::InvalidArgumentError(absl::StrCat("client ", c.id, " sent its masked input but is not a survivor"));
    }
    Transition tr{std::make_unique<DoneState>(), Reply(c)};
    auto* resp = tr.reply.mutable_unmasking();
    if (!own_self_mask_share_.empty()) {
      resp->add_self_mask_owners(c.id);
      resp->mutable_self_mask_shares()->append(own_self_mask_share_);
    }
    for (const auto& [owner, shares] : held_) {
      if (survivors.count(owner)) {
        resp->add_self_mask_owners(owner);
        resp->mutable_self_mask_shares()->append(shares.self_mask_share);
      } else if (dropped.count(owner)) {
        resp->add_masking_key_owners(owner);
        resp->mutable_masking_key_shares()->append(shares.masking_key_share);
      }
    }
    return tr;
  }

 private:
  const std::map<uint32_t, HeldShares> held_;
  std::string own_self_mask_share_;
};

// Round 2: open the shares neighbors sent and send the masked input.
class MaskedInputState : public ClientState {
 public:
  MaskedInputState(std::vector<uint32_t> input, SecretKey masking_secret, SecretKey self_mask_key,
                   std::map<uint32_t, v1::NeighborKeys> neighbors, std::map<uint32_t, SecretKey> share_keys,
                   std::string own_self_mask_share)
      : input_(std::move(input)),
        masking_secret_(std::move(masking_secret)),
        self_mask_key_(std::move(self_mask_key)),
        neighbors_(std::move(neighbors)),
        share_keys_(std::move(share_keys)),
        own_self_mask_share_(std::move(own_self_mask_share)) {}
  ~MaskedInputState() override {
    sodium_memzero(input_.data(), input_.size() * sizeof(uint32_t));
    sodium_memzero(own_self_mask_share_.data(), own_self_mask_share_.size());
  }
  ClientPhase phase() const override { return ClientPhase::kMaskedInput; }

  absl::StatusOr<Transition> Handle(const ClientContext& c, const v1::SecAggServerMessage& m) const override {
    if (!m.has_masked_input()) return WrongPhase(c);
    const uint64_t round = c.params.config().round_id;
    std::map<uint32_t, HeldShares> held;
    std::set<uint32_t> rejected;
    for (const auto& share : m.masked_input().shares()) {
      const auto key = share_keys_.find(share.sender());
      if (key == share_keys_.end() || share.recipient() != c.id) {
        return absl::InvalidArgumentError(absl::StrCat("share from client ", share.sender(), " to client ",
                                                       share.recipient(), " is not for this client from a neighbor"));
      }
      if (held.count(share.sender()) || rejected.count(share.sender())) {
        return absl::InvalidArgumentError(absl::StrCat("two shares from client ", share.sender()));
      }
      // A neighbor whose shares are not what it committed to is treated as
      // dropped: no mask with it, and the server is told, so that one bad
      // insider cannot make its honest neighbors give up the round (and a
      // dealer cannot cheat at reconstruction).
      const bool well_formed = share.ciphertext().size() == 2 * internal::kShareBytes &&
                               share.masking_key_commitment().size() == internal::kShareCommitmentBytes &&
                               share.self_mask_commitment().size() == internal::kShareCommitmentBytes;
      std::string plain =
          well_formed ? internal::CipherShares(key->second, share.ciphertext(), share.sender(), c.id) : std::string();
      const std::string_view halves(plain);
      if (!well_formed ||
          internal::Commitment(internal::Committed::kMaskingKeyShare, round, share.sender(), c.id,
                               halves.substr(0, internal::kShareBytes)) != share.masking_key_commitment() ||
          internal::Commitment(internal::Committed::kSelfMaskShare, round, share.sender(), c.id,
                               halves.substr(internal::kShareBytes)) != share.self_mask_commitment()) {
        sodium_memzero(plain.data(), plain.size());
        rejected.insert(share.sender());
        continue;
      }
      auto& h = held[share.sender()];
      h.masking_key_share = plain.substr(0, internal::kShareBytes);
      h.self_mask_share = plain.substr(internal::kShareBytes);
      sodium_memzero(plain.data(), plain.size());
    }
    // input + PRG(self seed) + sum over neighbors that shared of +-PRG(pairwise
    // key), + when this client's id is the smaller of the pair.
    std::vector<uint32_t> y = input_;
    const int bits = c.params.config().bits;
    internal::AddMask(self_mask_key_, +1, bits, y);
    for (const auto& [v, _] : held) {
      auto pairwise = internal::AgreeKey(masking_secret_, internal::FromBytes(neighbors_.at(v).masking_public_key()),
                                         internal::Purpose::kPairwiseMask, round, c.id, v);
      if (!pairwise.ok()) return pairwise.status();
      internal::AddMask(*pairwise, c.id < v ? +1 : -1, bits, y);
    }
    Transition tr{nullptr, Reply(c)};
    tr.reply.mutable_masked_input()->set_masked_input(proto::PackBits(y, bits));
    for (uint32_t v : rejected) tr.reply.mutable_masked_input()->add_rejected(v);
    tr.next = std::make_unique<UnmaskingState>(std::move(held), own_self_mask_share_);
    return tr;
  }

 private:
  std::vector<uint32_t> input_;
  const SecretKey masking_secret_, self_mask_key_;
  const std::map<uint32_t, v1::NeighborKeys> neighbors_;
  const std::map<uint32_t, SecretKey> share_keys_;
  std::string own_self_mask_share_;  // empty without self_shares()
};

// Round 1: share the masking seed and a fresh self-mask seed t-of-k among
// the neighbors that advertised (and this client, of the self-mask seed, in a
// complete graph), each pair of shares encrypted for its recipient.
class ShareKeysState : public ClientState {
 public:
  ShareKeysState(std::vector<uint32_t> input, internal::KeyPair encryption, internal::SecretSeed masking_seed)
      : input_(std::move(input)), encryption_(std::move(encryption)), masking_seed_(std::move(masking_seed)) {}
  ~ShareKeysState() override { sodium_memzero(input_.data(), input_.size() * sizeof(uint32_t)); }
  ClientPhase phase() const override { return ClientPhase::kShareKeys; }

  absl::StatusOr<Transition> Handle(const ClientContext& c, const v1::SecAggServerMessage& m) const override {
    if (!m.has_share_keys()) return WrongPhase(c);
    const uint64_t round = c.params.config().round_id;
    const int t = c.params.threshold();
    std::map<uint32_t, v1::NeighborKeys> keys;
    for (const auto& nk : m.share_keys().neighbors()) {
      if (!c.params.AreNeighbors(c.id, nk.id())) {
        return absl::InvalidArgumentError(absl::StrCat("client ", nk.id(), " is not a neighbor of client ", c.id));
      }
      if (nk.encryption_public_key().size() != 32 || nk.masking_public_key().size() != 32) {
        return absl::InvalidArgumentError(absl::StrCat("keys of client ", nk.id(), " are not 32 bytes"));
      }
      if (!keys.emplace(nk.id(), nk).second)
        return absl::InvalidArgumentError(absl::StrCat("client ", nk.id(), " listed twice"));
    }
    const bool self = c.params.self_shares();
    if (static_cast<int>(keys.size()) + (self ? 1 : 0) < t) {
      return absl::FailedPreconditionError(
          absl::StrCat("only ", keys.size(), " neighbors advertised keys; sharing needs ", t, " holders"));
    }
    const internal::SecretSeed seed = internal::RandomSeed(c.rng);
    std::vector<uint64_t> points;
    for (const auto& [v, _] : keys) points.push_back(uint64_t{v} + 1);
    if (self) points.push_back(uint64_t{c.id} + 1);  // the last share is this client's own
    auto key_shares = internal::SplitSecret(masking_seed_, t, points, c.rng);
    auto seed_shares = internal::SplitSecret(seed, t, points, c.rng);
    Transition tr{nullptr, Reply(c)};
    auto* resp = tr.reply.mutable_share_keys();
    std::map<uint32_t, SecretKey> share_keys;
    absl::Status status;
    size_t i = 0;
    for (const auto& [v, nk] : keys) {
      auto k = internal::AgreeKey(encryption_.secret, internal::FromBytes(nk.encryption_public_key()),
                                  internal::Purpose::kShareEncryption, round, c.id, v);
      if (!k.ok()) {
        status = k.status();
        break;
      }
      std::string plain = key_shares[i] + seed_shares[i];
      resp->add_recipients(v);
      std::string* sealed = resp->mutable_sealed_shares();
      sealed->append(internal::CipherShares(*k, plain, c.id, v));
      sodium_memzero(plain.data(), plain.size());
      sealed->append(internal::Commitment(internal::Committed::kMaskingKeyShare, round, c.id, v, key_shares[i]));
      sealed->append(internal::Commitment(internal::Committed::kSelfMaskShare, round, c.id, v, seed_shares[i]));
      share_keys[v] = *k;
      ++i;
    }
    std::string own_self_mask_share;
    if (self) {
      own_self_mask_share = seed_shares.back();
      resp->set_own_self_mask_commitment(
          internal::Commitment(internal::Committed::kSelfMaskShare, round, c.id, c.id, own_self_mask_share));
    }
    for (auto* shares : {&key_shares, &seed_shares}) {
      for (auto& share : *shares) sodium_memzero(share.data(), share.size());
    }
    if (!status.ok()) {
      sodium_memzero(own_self_mask_share.data(), own_self_mask_share.size());
      return status;
    }
    resp->set_self_mask_seed_commitment(
        internal::Commitment(internal::Committed::kSelfMaskSeed, round, c.id, c.id,
                             std::string_view(reinterpret_cast<const char*>(seed.bytes.data()), seed.bytes.size())));
    tr.next = std::make_unique<MaskedInputState>(input_, internal::MaskingKeyPairOf(masking_seed_).secret,
                                                 internal::SelfMaskKeyOf(seed), std::move(keys), std::move(share_keys),
                                                 std::move(own_self_mask_share));
    return tr;
  }

 private:
  std::vector<uint32_t> input_;
  const internal::KeyPair encryption_;
  const internal::SecretSeed masking_seed_;
};

// Round 0: advertise the two public keys.
class AdvertiseState : public ClientState {
 public:
  AdvertiseState(std::vector<uint32_t> input, internal::KeyPair encryption, internal::SecretSeed masking_seed)
      : input_(std::move(input)), encryption_(std::move(encryption)), masking_seed_(std::move(masking_seed)) {}
  ~AdvertiseState() override { sodium_memzero(input_.data(), input_.size() * sizeof(uint32_t)); }
  ClientPhase phase() const override { return ClientPhase::kAdvertise; }
  absl::StatusOr<Transition> AdvertiseKeys(const ClientContext& c) const override {
    Transition tr{std::make_unique<ShareKeysState>(input_, encryption_, masking_seed_), Reply(c)};
    auto* adv = tr.reply.mutable_advertise_keys();
    adv->set_encryption_public_key(internal::ToBytes(encryption_.public_key));
    adv->set_masking_public_key(internal::ToBytes(internal::MaskingKeyPairOf(masking_seed_).public_key));
    return tr;
  }

 private:
  std::vector<uint32_t> input_;
  const internal::KeyPair encryption_;
  const internal::SecretSeed masking_seed_;
};

absl::Status CheckAddressing(const SecAggParams& params, uint32_t id, const v1::SecAggServerMessage& m) {
  if (m.round_id() != params.config().round_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("message for round ", m.round_id(), ", this is round ", params.config().round_id));
  }
  if (m.recipient() != id) {
    return absl::InvalidArgumentError(absl::StrCat("message for client ", m.recipient(), " delivered to client ", id));
  }
  return absl::OkStatus();
}

}  // namespace

Client::Client(const SecAggParams& params, uint32_t id, std::unique_ptr<Random> rng, std::unique_ptr<ClientState> state)
    : params_(params), id_(id), rng_(std::move(rng)), state_(std::move(state)) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const SecAggParams& params, uint32_t id,
                                                       std::vector<uint32_t> input, std::unique_ptr<Random> rng) {
  TINYFED_RETURN_IF_ERROR(base::InitSodium());
  const auto& c = params.config();
  if (id >= static_cast<uint32_t>(c.num_clients)) {
    return absl::InvalidArgumentError(absl::StrCat("client id ", id, " is not in the cohort of ", c.num_clients));
  }
  if (input.size() != c.vector_length) {
    return absl::InvalidArgumentError(absl::StrCat("input has ", input.size(), " values, expected ", c.vector_length));
  }
  const uint64_t limit = uint64_t{1} << c.bits;
  for (uint32_t v : input) {
    if (v >= limit) return absl::InvalidArgumentError(absl::StrCat("input value ", v, " is not below 2^", c.bits));
  }
  auto encryption = internal::GenerateKeyPair(*rng);
  auto masking_seed = internal::RandomSeed(*rng);
  auto state = std::make_unique<AdvertiseState>(std::move(input), std::move(encryption), std::move(masking_seed));
  return std::unique_ptr<Client>(new Client(params, id, std::move(rng), std::move(state)));
}

ClientPhase Client::phase() const {
  absl::MutexLock lock(&mu_);
  return state_->phase();
}

absl::StatusOr<v1::SecAggClientMessage> Client::AdvertiseKeys() {
  absl::MutexLock lock(&mu_);
  auto tr = state_->AdvertiseKeys(ClientContext{params_, id_, *rng_});
  if (!tr.ok()) return tr.status();
  state_ = std::move(tr->next);
  return std::move(tr->reply);
}

absl::StatusOr<v1::SecAggClientMessage> Client::Handle(const v1::SecAggServerMessage& m) {
  absl::MutexLock lock(&mu_);
  if (auto st = CheckAddressing(params_, id_, m); !st.ok()) return st;
  auto tr = state_->Handle(ClientContext{params_, id_, *rng_}, m);
  if (!tr.ok()) return tr.status();
  state_ = std::move(tr->next);
  return std::move(tr->reply);
}

}  // namespace tinyfed::secagg
