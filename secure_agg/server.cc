#include "tinyfed/secure_agg/server.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "secure_agg/internal/crypto.h"
#include "secure_agg/internal/shamir.h"
#include "secure_agg/internal/wire.h"
#include "tinyfed/proto/packing.h"

namespace tinyfed::secagg {

struct Server::State {
  ServerPhase phase = ServerPhase::kAdvertise;
  std::map<uint32_t, v1::AdvertiseKeys> advertised;                  // U1
  std::map<uint32_t, std::vector<v1::EncryptedShare>> shares_for;    // recipient -> shares
  std::set<uint32_t> shared;                                         // U2
  std::set<uint32_t> masked;                                         // U3
  std::vector<uint32_t> sum;                                         // running sum of masked inputs
  std::map<uint32_t, std::map<uint32_t, std::string>> self_mask_shares;    // owner -> holder -> share
  std::map<uint32_t, std::map<uint32_t, std::string>> masking_key_shares;  // owner -> holder -> share
  std::set<uint32_t> unmasked;                                       // responders in round 3
  std::vector<uint32_t> result;

  void WipeShares() {
    for (auto* by_owner : {&self_mask_shares, &masking_key_shares}) {
      for (auto& [owner, by_holder] : *by_owner)
        for (auto& [holder, share] : by_holder) sodium_memzero(share.data(), share.size());
      by_owner->clear();
    }
  }
  ~State() { WipeShares(); }
};

Server::Server(const SecAggParams& params, int min_survivors)
    : params_(params), min_survivors_(min_survivors), state_(std::make_unique<State>()) {}
Server::~Server() = default;

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const SecAggParams& params, int min_survivors) {
  if (min_survivors < params.threshold() || min_survivors > params.config().num_clients) {
    return absl::InvalidArgumentError(absl::StrCat("min survivors ", min_survivors, " must be in [t = ",
                                                   params.threshold(), ", n = ", params.config().num_clients, "]"));
  }
  auto server = std::unique_ptr<Server>(new Server(params, min_survivors));
  absl::MutexLock lock(&server->mu_);
  server->state_->sum.assign(params.config().vector_length, 0);
  return server;
}

ServerPhase Server::phase() const {
  absl::MutexLock lock(&mu_);
  return state_->phase;
}

absl::Status Server::Receive(const v1::SecAggClientMessage& m) {
  absl::MutexLock lock(&mu_);
  State& s = *state_;
  const auto& c = params_.config();
  const uint32_t u = m.sender();
  if (m.round_id() != c.round_id) {
    return absl::InvalidArgumentError(absl::StrCat("message from client ", u, " for round ", m.round_id(),
                                                   ", this is round ", c.round_id));
  }
  if (u >= static_cast<uint32_t>(c.num_clients)) {
    return absl::InvalidArgumentError(absl::StrCat("sender ", u, " is not in the cohort of ", c.num_clients));
  }
  auto wrong_phase = [&](const char* what) {
    return absl::FailedPreconditionError(absl::StrCat(what, " from client ", u, " outside its phase (server phase ",
                                                      static_cast<int>(s.phase), ")"));
  };
  auto duplicate = [&](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("duplicate ", what, " from client ", u));
  };

  switch (m.phase_case()) {
    case v1::SecAggClientMessage::kAdvertiseKeys: {
      if (s.phase != ServerPhase::kAdvertise) return wrong_phase("key advertisement");
      if (s.advertised.count(u)) return duplicate("key advertisement");
      const auto& a = m.advertise_keys();
      if (a.encryption_public_key().size() != 32 || a.masking_public_key().size() != 32) {
        return absl::InvalidArgumentError(absl::StrCat("keys from client ", u, " are not 32 bytes"));
      }
      s.advertised[u] = a;
      return absl::OkStatus();
    }
    case v1::SecAggClientMessage::kShareKeys: {
      if (s.phase != ServerPhase::kShareKeys) return wrong_phase("key shares");
      if (!s.advertised.count(u)) return wrong_phase("key shares (no keys advertised)");
      if (s.shared.count(u)) return duplicate("key shares");
      std::set<uint32_t> recipients;
      for (const auto& share : m.share_keys().shares()) {
        if (share.sender() != u || !params_.AreNeighbors(u, share.recipient()) ||
            !s.advertised.count(share.recipient()) || !recipients.insert(share.recipient()).second ||
            share.nonce().size() != 24 || share.ciphertext().size() > 512) {
          return absl::InvalidArgumentError(absl::StrCat("malformed or misaddressed share from client ", u,
                                                         " to client ", share.recipient()));
        }
      }
      if (static_cast<int>(recipients.size()) < params_.threshold()) {
        return absl::InvalidArgumentError(absl::StrCat("client ", u, " shared with ", recipients.size(),
                                                       " neighbors, fewer than t = ", params_.threshold()));
      }
      for (const auto& share : m.share_keys().shares()) s.shares_for[share.recipient()].push_back(share);
      s.shared.insert(u);
      return absl::OkStatus();
    }
    case v1::SecAggClientMessage::kMaskedInput: {
      if (s.phase != ServerPhase::kMaskedInput) return wrong_phase("masked input");
      if (!s.shared.count(u)) return wrong_phase("masked input (no shares sent)");
      if (s.masked.count(u)) return duplicate("masked input");
      auto y = proto::UnpackBits(m.masked_input().masked_input(), c.bits, c.vector_length);
      if (!y.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("masked input from client ", u, ": ", y.status().message()));
      }
      const uint32_t mask = c.bits == 32 ? ~uint32_t{0} : (uint32_t{1} << c.bits) - 1;
      for (size_t i = 0; i < s.sum.size(); ++i) s.sum[i] = (s.sum[i] + (*y)[i]) & mask;
      s.masked.insert(u);
      return absl::OkStatus();
    }
    case v1::SecAggClientMessage::kUnmasking: {
      if (s.phase != ServerPhase::kUnmasking) return wrong_phase("unmasking response");
      if (!s.masked.count(u)) return wrong_phase("unmasking response (not a survivor)");
      if (s.unmasked.count(u)) return duplicate("unmasking response");
      const auto& r = m.unmasking();
      std::set<uint32_t> owners;
      for (const auto& share : r.self_mask_shares()) {
        if (!s.masked.count(share.owner()) || !params_.AreNeighbors(u, share.owner()) ||
            share.share().size() != internal::kShareBytes || !owners.insert(share.owner()).second) {
          return absl::InvalidArgumentError(absl::StrCat("bad self-mask share from client ", u, " for client ",
                                                         share.owner()));
        }
      }
      for (const auto& share : r.masking_key_shares()) {
        const bool dropped = s.shared.count(share.owner()) && !s.masked.count(share.owner());
        if (!dropped || !params_.AreNeighbors(u, share.owner()) || share.share().size() != internal::kShareBytes ||
            !owners.insert(share.owner()).second) {
          return absl::InvalidArgumentError(absl::StrCat("bad masking-key share from client ", u, " for client ",
                                                         share.owner()));
        }
      }
      for (const auto& share : r.self_mask_shares()) s.self_mask_shares[share.owner()][u] = share.share();
      for (const auto& share : r.masking_key_shares()) s.masking_key_shares[share.owner()][u] = share.share();
      s.unmasked.insert(u);
      return absl::OkStatus();
    }
    case v1::SecAggClientMessage::PHASE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("message from client ", u, " has no phase"));
}

absl::StatusOr<std::vector<v1::SecAggServerMessage>> Server::AdvancePhase() {
  absl::MutexLock lock(&mu_);
  State& s = *state_;
  const auto& c = params_.config();
  auto abort = [&](std::string why) {
    s.phase = ServerPhase::kAborted;
    s.sum.clear();
    s.WipeShares();
    return absl::AbortedError(absl::StrCat("secure aggregation round ", c.round_id, " aborted: ", why));
  };
  auto enough = [&](size_t count) { return static_cast<int>(count) >= min_survivors_; };
  auto message_for = [&](uint32_t v) {
    v1::SecAggServerMessage m;
    m.set_round_id(c.round_id);
    m.set_recipient(v);
    return m;
  };
  std::vector<v1::SecAggServerMessage> out;
  switch (s.phase) {
    case ServerPhase::kAdvertise:
      if (!enough(s.advertised.size())) {
        return abort(absl::StrCat(s.advertised.size(), " clients advertised keys, fewer than ", min_survivors_));
      }
      for (const auto& [v, _] : s.advertised) {
        auto m = message_for(v);
        for (uint32_t w : params_.Neighbors(v)) {
          const auto it = s.advertised.find(w);
          if (it == s.advertised.end()) continue;
          auto* nk = m.mutable_share_keys()->add_neighbors();
          nk->set_id(w);
          nk->set_encryption_public_key(it->second.encryption_public_key());
          nk->set_masking_public_key(it->second.masking_public_key());
        }
        out.push_back(std::move(m));
      }
      s.phase = ServerPhase::kShareKeys;
      return out;
    case ServerPhase::kShareKeys:
      if (!enough(s.shared.size())) {
        return abort(absl::StrCat(s.shared.size(), " clients shared keys, fewer than ", min_survivors_));
      }
      for (uint32_t v : s.shared) {
        auto m = message_for(v);
        for (const auto& share : s.shares_for[v]) {
          if (s.shared.count(share.sender())) *m.mutable_masked_input()->add_shares() = share;
        }
        m.mutable_masked_input();  // present even when empty
        out.push_back(std::move(m));
      }
      s.shares_for.clear();
      s.phase = ServerPhase::kMaskedInput;
      return out;
    case ServerPhase::kMaskedInput:
      if (!enough(s.masked.size())) {
        return abort(absl::StrCat(s.masked.size(), " clients sent masked inputs, fewer than ", min_survivors_));
      }
      for (uint32_t v : s.masked) {
        auto m = message_for(v);
        auto* req = m.mutable_unmasking();
        for (uint32_t w : s.masked) req->add_survivors(w);
        for (uint32_t w : s.shared) {
          if (!s.masked.count(w)) req->add_dropped(w);
        }
        out.push_back(std::move(m));
      }
      s.phase = ServerPhase::kUnmasking;
      return out;
    case ServerPhase::kUnmasking:
      if (auto st = Finish(); !st.ok()) return abort(std::string(st.message()));
      s.phase = ServerPhase::kDone;
      return out;
    case ServerPhase::kDone:
    case ServerPhase::kAborted:
      break;
  }
  return absl::FailedPreconditionError("the secure aggregation round is over");
}

absl::Status Server::Finish() {
  State& s = *state_;
  const auto& c = params_.config();
  const int t = params_.threshold();
  auto combine = [&](uint32_t owner, const std::map<uint32_t, std::string>& by_holder,
                     const char* what) -> absl::StatusOr<internal::SecretKey> {
    if (static_cast<int>(by_holder.size()) < t) {
      return absl::FailedPreconditionError(absl::StrCat("the ", what, " of client ", owner, " has ", by_holder.size(),
                                                        " shares, needs ", t));
    }
    std::vector<uint64_t> points;
    std::vector<std::string> shares;
    for (const auto& [holder, share] : by_holder) {
      points.push_back(uint64_t{holder} + 1);
      shares.push_back(share);
    }
    return internal::CombineShares(points, shares, t);
  };
  std::vector<uint32_t> sum = s.sum;
  // Remove each survivor's self mask.
  for (uint32_t u : s.masked) {
    auto seed = combine(u, s.self_mask_shares[u], "self mask");
    if (!seed.ok()) return seed.status();
    internal::AddMask(*seed, -1, c.bits, sum);
  }
  // For each dropped client, remove the pairwise masks its surviving
  // neighbors added with it.
  for (uint32_t v : s.shared) {
    if (s.masked.count(v)) continue;
    auto key = combine(v, s.masking_key_shares[v], "masking key");
    if (!key.ok()) return key.status();
    if (internal::PublicKeyOf(*key) != internal::FromBytes(s.advertised[v].masking_public_key())) {
      return absl::DataLossError(absl::StrCat("reconstructed masking key of client ", v,
                                              " does not match its advertised key (bad shares)"));
    }
    for (uint32_t w : params_.Neighbors(v)) {
      if (!s.masked.count(w)) continue;
      auto pairwise = internal::AgreeKey(*key, internal::FromBytes(s.advertised[w].masking_public_key()),
                                         internal::Purpose::kPairwiseMask, c.round_id, v, w);
      if (!pairwise.ok()) return pairwise.status();
      internal::AddMask(*pairwise, w < v ? -1 : +1, c.bits, sum);  // undo w's +-PRG
    }
  }
  s.result = std::move(sum);
  s.WipeShares();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> Server::Result() const {
  absl::MutexLock lock(&mu_);
  if (state_->phase != ServerPhase::kDone) {
    return absl::FailedPreconditionError("secure aggregation has no result (not finished or aborted)");
  }
  return state_->result;
}

std::vector<uint32_t> Server::Survivors() const {
  absl::MutexLock lock(&mu_);
  return {state_->masked.begin(), state_->masked.end()};
}

}  // namespace tinyfed::secagg
