#include "tinyfed/secure_agg/client.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "secure_agg/internal/crypto.h"
#include "secure_agg/internal/shamir.h"
#include "secure_agg/internal/wire.h"
#include "tinyfed/proto/packing.h"

namespace tinyfed::secagg {

using internal::Key;
using internal::SecretKey;

struct Client::State {
  ClientPhase phase = ClientPhase::kAdvertise;
  std::vector<uint32_t> input;
  std::unique_ptr<Random> rng;
  internal::KeyPair encryption, masking;
  SecretKey self_mask_seed;
  std::map<uint32_t, v1::NeighborKeys> neighbor_keys;  // after round 1
  std::map<uint32_t, SecretKey> share_keys;           // agreed in round 1, reused in round 2
  // After round 2: shares others gave me, keyed by owner.
  struct HeldShares {
    std::string masking_key_share;
    std::string self_mask_share;
  };
  std::map<uint32_t, HeldShares> held;
};

namespace {

absl::Status CheckAddressing(const SecAggParams& params, uint32_t id, const v1::SecAggServerMessage& m) {
  if (m.round_id() != params.config().round_id) {
    return absl::InvalidArgumentError(absl::StrCat("message for round ", m.round_id(), ", this is round ",
                                                   params.config().round_id));
  }
  if (m.recipient() != id) {
    return absl::InvalidArgumentError(absl::StrCat("message for client ", m.recipient(), " delivered to client ", id));
  }
  return absl::OkStatus();
}

}  // namespace

Client::Client(const SecAggParams& params, uint32_t id, std::unique_ptr<State> state)
    : params_(params), id_(id), state_(std::move(state)) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const SecAggParams& params, uint32_t id,
                                                       std::vector<uint32_t> input, std::unique_ptr<Random> rng) {
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
  auto state = std::make_unique<State>();
  state->input = std::move(input);
  state->rng = std::move(rng);
  state->encryption = internal::GenerateKeyPair(*state->rng);
  state->masking = internal::GenerateKeyPair(*state->rng);
  return std::unique_ptr<Client>(new Client(params, id, std::move(state)));
}

ClientPhase Client::phase() const {
  absl::MutexLock lock(&mu_);
  return state_->phase;
}

absl::StatusOr<v1::SecAggClientMessage> Client::AdvertiseKeys() {
  absl::MutexLock lock(&mu_);
  if (state_->phase != ClientPhase::kAdvertise) {
    return absl::FailedPreconditionError(absl::StrCat("client ", id_, " already advertised its keys"));
  }
  v1::SecAggClientMessage out;
  out.set_round_id(params_.config().round_id);
  out.set_sender(id_);
  auto* adv = out.mutable_advertise_keys();
  adv->set_encryption_public_key(internal::ToBytes(state_->encryption.public_key));
  adv->set_masking_public_key(internal::ToBytes(state_->masking.public_key));
  state_->phase = ClientPhase::kShareKeys;
  return out;
}

absl::StatusOr<v1::SecAggClientMessage> Client::Handle(const v1::SecAggServerMessage& m) {
  absl::MutexLock lock(&mu_);
  State& s = *state_;
  if (auto st = CheckAddressing(params_, id_, m); !st.ok()) return st;
  const uint64_t round = params_.config().round_id;
  const int t = params_.threshold();
  v1::SecAggClientMessage out;
  out.set_round_id(round);
  out.set_sender(id_);

  if (m.has_share_keys() && s.phase == ClientPhase::kShareKeys) {
    std::map<uint32_t, v1::NeighborKeys> keys;
    for (const auto& nk : m.share_keys().neighbors()) {
      if (!params_.AreNeighbors(id_, nk.id())) {
        return absl::InvalidArgumentError(absl::StrCat("client ", nk.id(), " is not a neighbor of client ", id_));
      }
      if (nk.encryption_public_key().size() != 32 || nk.masking_public_key().size() != 32) {
        return absl::InvalidArgumentError(absl::StrCat("keys of client ", nk.id(), " are not 32 bytes"));
      }
      if (!keys.emplace(nk.id(), nk).second) {
        return absl::InvalidArgumentError(absl::StrCat("client ", nk.id(), " listed twice"));
      }
    }
    if (static_cast<int>(keys.size()) < t) {
      return absl::FailedPreconditionError(absl::StrCat("only ", keys.size(), " neighbors advertised keys; ",
                                                        "sharing needs ", t));
    }
    SecretKey seed;
    s.rng->Fill(seed.bytes);
    std::vector<uint64_t> points;
    for (const auto& [v, _] : keys) points.push_back(uint64_t{v} + 1);
    auto key_shares = internal::SplitSecret(s.masking.secret, t, points, *s.rng);
    auto seed_shares = internal::SplitSecret(seed, t, points, *s.rng);
    auto* resp = out.mutable_share_keys();
    std::map<uint32_t, SecretKey> share_keys;
    size_t i = 0;
    for (const auto& [v, nk] : keys) {
      auto k = internal::AgreeKey(s.encryption.secret, internal::FromBytes(nk.encryption_public_key()),
                                  internal::Purpose::kShareEncryption, round, id_, v);
      if (!k.ok()) return k.status();
      share_keys[v] = *k;
      std::string plain = key_shares[i] + seed_shares[i];
      const internal::Sealed sealed = internal::SealShare(*k, plain, round, id_, v, *s.rng);
      sodium_memzero(plain.data(), plain.size());
      auto* share = resp->add_shares();
      share->set_sender(id_);
      share->set_recipient(v);
      share->set_nonce(sealed.nonce);
      share->set_ciphertext(sealed.ciphertext);
      ++i;
    }
    for (auto* shares : {&key_shares, &seed_shares}) {
      for (auto& share : *shares) sodium_memzero(share.data(), share.size());
    }
    s.neighbor_keys = std::move(keys);
    s.share_keys = std::move(share_keys);
    s.self_mask_seed = seed;
    s.phase = ClientPhase::kMaskedInput;
    return out;
  }

  if (m.has_masked_input() && s.phase == ClientPhase::kMaskedInput) {
    std::map<uint32_t, State::HeldShares> held;
    for (const auto& share : m.masked_input().shares()) {
      const auto it = s.neighbor_keys.find(share.sender());
      if (it == s.neighbor_keys.end() || share.recipient() != id_) {
        return absl::InvalidArgumentError(absl::StrCat("share from client ", share.sender(), " to client ",
                                                       share.recipient(), " is not for this client from a neighbor"));
      }
      if (held.count(share.sender())) {
        return absl::InvalidArgumentError(absl::StrCat("two shares from client ", share.sender()));
      }
      auto plain = internal::OpenShare(s.share_keys[share.sender()], {share.nonce(), share.ciphertext()}, round,
                                       share.sender(), id_);
      if (!plain.ok()) return plain.status();
      if (plain->size() != 2 * internal::kShareBytes) {
        return absl::InvalidArgumentError(absl::StrCat("share from client ", share.sender(), " has the wrong size"));
      }
      held[share.sender()] = {plain->substr(0, internal::kShareBytes), plain->substr(internal::kShareBytes)};
      sodium_memzero(plain->data(), plain->size());
    }
    // Mask: input + PRG(self seed) + sum over neighbors that shared of
    // +-PRG(pairwise key), + when this client's id is the smaller.
    std::vector<uint32_t> y = s.input;
    const int bits = params_.config().bits;
    internal::AddMask(s.self_mask_seed, +1, bits, y);
    for (const auto& [v, _] : held) {
      auto pairwise = internal::AgreeKey(s.masking.secret, internal::FromBytes(s.neighbor_keys[v].masking_public_key()),
                                         internal::Purpose::kPairwiseMask, round, id_, v);
      if (!pairwise.ok()) return pairwise.status();
      internal::AddMask(*pairwise, id_ < v ? +1 : -1, bits, y);
    }
    out.mutable_masked_input()->set_masked_input(proto::PackBits(y, bits));
    s.held = std::move(held);
    s.share_keys.clear();  // SecretKey wipes itself
    sodium_memzero(s.input.data(), s.input.size() * sizeof(uint32_t));
    s.phase = ClientPhase::kUnmasking;
    return out;
  }

  if (m.has_unmasking() && s.phase == ClientPhase::kUnmasking) {
    const auto& req = m.unmasking();
    std::set<uint32_t> survivors, dropped;
    for (uint32_t u : req.survivors()) {
      if (!survivors.insert(u).second) return absl::InvalidArgumentError(absl::StrCat("survivor ", u, " listed twice"));
    }
    for (uint32_t u : req.dropped()) {
      if (survivors.count(u) || !dropped.insert(u).second) {
        return absl::InvalidArgumentError(absl::StrCat("client ", u, " is listed as both survivor and dropped, or twice"));
      }
    }
    if (static_cast<int>(survivors.size()) < t) {
      return absl::FailedPreconditionError(absl::StrCat("unmasking request names ", survivors.size(),
                                                        " survivors, fewer than the threshold ", t));
    }
    if (!survivors.count(id_)) {
      return absl::InvalidArgumentError(absl::StrCat("client ", id_, " sent its masked input but is not a survivor"));
    }
    auto* resp = out.mutable_unmasking();
    for (const auto& [owner, shares] : s.held) {
      if (survivors.count(owner)) {
        auto* r = resp->add_self_mask_shares();
        r->set_owner(owner);
        r->set_share(shares.self_mask_share);
      } else if (dropped.count(owner)) {
        auto* r = resp->add_masking_key_shares();
        r->set_owner(owner);
        r->set_share(shares.masking_key_share);
      }
    }
    for (auto& [owner, shares] : s.held) {
      sodium_memzero(shares.masking_key_share.data(), shares.masking_key_share.size());
      sodium_memzero(shares.self_mask_share.data(), shares.self_mask_share.size());
    }
    s.held.clear();
    s.masking.secret = SecretKey();
    s.encryption.secret = SecretKey();
    s.self_mask_seed = SecretKey();
    s.phase = ClientPhase::kDone;
    return out;
  }

  return absl::FailedPreconditionError(absl::StrCat("client ", id_, " cannot handle this message in phase ",
                                                    static_cast<int>(s.phase)));
}

}  // namespace tinyfed::secagg
