// SecAgg+ parameters: who talks to whom, and how many shares reconstruct.
//
// Each client talks only to its k neighbors in a Harary graph H(k, n) laid
// on a random permutation of the cohort (the permutation comes from a public
// per-round seed, so everyone derives the same graph). A client's secrets are
// Shamir-shared t-of-k among its neighbors.
//
// How k and t are chosen (ChooseParams): for a client's secret to be
// recoverable, at least t of its k neighbors must survive; for it to stay
// secret, fewer than t may be corrupted. With dropout fraction delta and
// corruption fraction gamma (each neighbor independently), we take the
// smallest even k, and then t, such that for each client
//   P[Binomial(k, 1 - delta) < t] <= 2^-20 / n   (recovery fails) and
//   P[Binomial(k, gamma) >= t]   <= 2^-20 / n    (a secret leaks),
// so that by the union bound the round fails or leaks with probability at
// most 2^-20 each,
// with t > k/2 always, so the server can never collect both a client's
// masking-key shares and its self-mask shares from a majority. Small cohorts
// that cannot meet the bounds use the complete graph (k = n - 1) with the
// most secure t that still tolerates the dropout fraction. Both k and t grow
// like log n, which is what makes SecAgg+ scale (Bell et al. 2020).
//
// In a complete graph of even degree (n odd) each client also holds a share
// of its own self-mask seed, as in Bonawitz et al. 2017, where secrets are
// shared among all n, and reveals it when it survives: its self mask then
// has k + 1 holders, of which t > k/2 is still a majority, so the extra
// holder costs no threshold. Three clients (a national round of three
// regions) then lose one (t = 2 of 3 holders) where t = 2 of 2 neighbours
// could lose none. (With k odd the extra holder would need t one higher.)
#ifndef TINYFED_SECURE_AGG_PARAMS_H_
#define TINYFED_SECURE_AGG_PARAMS_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tinyfed/v1/service.pb.h"

namespace tinyfed::secagg {

using GraphSeed = std::array<uint8_t, 32>;

struct SecAggConfig {
  uint64_t round_id = 0;
  int num_clients = 0;       // n; clients are 0..n-1
  int bits = 16;             // inputs and the sum live in Z_{2^bits}, 1..32
  size_t vector_length = 0;  // m
  double max_dropout = 0.2;
  double max_corrupted = 0.1;
  GraphSeed graph_seed{};
};

class SecAggParams {
 public:
  // k even (or n - 1), 1 <= t <= k <= n - 1, t > k / 2.
  static absl::StatusOr<SecAggParams> Create(const SecAggConfig& config, int degree, int threshold);

  const SecAggConfig& config() const { return config_; }
  int degree() const { return degree_; }
  int threshold() const { return threshold_; }
  // The complete graph of even degree: a client holds a share of its own
  // self-mask seed too.
  bool self_shares() const { return degree_ == config_.num_clients - 1 && degree_ % 2 == 0; }
  // The k neighbors of `id`, sorted.
  std::vector<uint32_t> Neighbors(uint32_t id) const;
  bool AreNeighbors(uint32_t a, uint32_t b) const;

 private:
  SecAggParams(SecAggConfig c, int k, int t, std::vector<uint32_t> ring, std::vector<uint32_t> position)
      : config_(c), degree_(k), threshold_(t), ring_(std::move(ring)), position_(std::move(position)) {}
  SecAggConfig config_;
  int degree_;
  int threshold_;
  std::vector<uint32_t> ring_;      // client at each ring position
  std::vector<uint32_t> position_;  // ring position of each client
};

absl::StatusOr<SecAggParams> ChooseParams(const SecAggConfig& config);

// The parameters a round's task announces (RoundTask.secagg, cohort_size):
// what each member builds its client from. INVALID_ARGUMENT for settings no
// aggregator would send (a graph seed of the wrong length, k or t out of range).
absl::StatusOr<SecAggParams> ParamsOfTask(uint64_t round_id, uint32_t cohort_size, const v1::SecAggSettings& s);

}  // namespace tinyfed::secagg

#endif  // TINYFED_SECURE_AGG_PARAMS_H_
