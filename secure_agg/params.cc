#include "tinyfed/secure_agg/params.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tinyfed/secure_agg/random.h"

namespace tinyfed::secagg {
namespace {

// Bound on the probability that any client's secret is unrecoverable, or
// recoverable by the corrupted, in a round (union bound over the cohort).
constexpr double kLog2Failure = -20.0;

// log2 P[Binomial(k, p) >= t].
double Log2UpperTail(int k, double p, int t) {
  if (t <= 0) return 0.0;
  if (t > k) return -1e9;
  if (p <= 0.0) return -1e9;
  if (p >= 1.0) return 0.0;
  double total = 0.0;
  for (int i = t; i <= k; ++i) {
    const double log_term = std::lgamma(k + 1.0) - std::lgamma(i + 1.0) - std::lgamma(k - i + 1.0) + i * std::log(p) +
                            (k - i) * std::log1p(-p);
    total += std::exp(log_term);
  }
  return total > 0 ? std::log2(total) : -1e9;
}

// log2 P[Binomial(k, q) < t] = log2 P[Binomial(k, 1 - q) > k - t].
double Log2LowerTail(int k, double q, int t) { return Log2UpperTail(k, 1.0 - q, k - t + 1); }

}  // namespace

absl::StatusOr<SecAggParams> SecAggParams::Create(const SecAggConfig& c, int k, int t) {
  if (c.num_clients < 3)
    return absl::InvalidArgumentError(absl::StrCat("need at least 3 clients, got ", c.num_clients));
  if (c.bits < 1 || c.bits > 32)
    return absl::InvalidArgumentError(absl::StrCat("bits must be in [1, 32], got ", c.bits));
  if (c.vector_length == 0 || c.vector_length > (size_t{1} << 26)) {
    return absl::InvalidArgumentError(absl::StrCat("vector length must be in [1, 2^26], got ", c.vector_length));
  }
  const int n = c.num_clients;
  if (k < 2 || k > n - 1 || (k % 2 == 1 && k != n - 1)) {
    return absl::InvalidArgumentError(absl::StrCat("degree ", k, " must be even and in [2, ", n - 1, "], or ", n - 1));
  }
  if (t <= k / 2 || t > k) {
    return absl::InvalidArgumentError(absl::StrCat("threshold ", t, " must be in (", k, "/2, ", k, "]"));
  }
  // The ring order: a Fisher-Yates shuffle driven by the public seed.
  std::vector<uint32_t> ring(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ring[static_cast<size_t>(i)] = static_cast<uint32_t>(i);
  auto rng = SeededRandom(c.graph_seed);
  for (int i = n - 1; i > 0; --i) {
    uint64_t r;
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    do {
      rng->Fill(std::span(reinterpret_cast<uint8_t*>(&r), sizeof(r)));
    } while (r >= limit);
    std::swap(ring[static_cast<size_t>(i)], ring[static_cast<size_t>(r % bound)]);
  }
  std::vector<uint32_t> position(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) position[ring[static_cast<size_t>(p)]] = static_cast<uint32_t>(p);
  return SecAggParams(c, k, t, std::move(ring), std::move(position));
}

std::vector<uint32_t> SecAggParams::Neighbors(uint32_t id) const {
  const auto n = static_cast<int64_t>(ring_.size());
  std::vector<uint32_t> out;
  if (degree_ == n - 1) {
    for (uint32_t v = 0; v < static_cast<uint32_t>(n); ++v) {
      if (v != id) out.push_back(v);
    }
    return out;
  }
  const int64_t p = position_[id];
  for (int64_t j = 1; j <= degree_ / 2; ++j) {
    out.push_back(ring_[static_cast<size_t>((p + j) % n)]);
    out.push_back(ring_[static_cast<size_t>(((p - j) % n + n) % n)]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool SecAggParams::AreNeighbors(uint32_t a, uint32_t b) const {
  const auto n = static_cast<int64_t>(ring_.size());
  if (a == b || a >= n || b >= n) return false;
  if (degree_ == n - 1) return true;
  const int64_t d = std::llabs(static_cast<int64_t>(position_[a]) - static_cast<int64_t>(position_[b]));
  return std::min(d, n - d) <= degree_ / 2;
}

absl::StatusOr<SecAggParams> ChooseParams(const SecAggConfig& c) {
  if (!(c.max_dropout >= 0.0 && c.max_dropout < 0.5) || !(c.max_corrupted >= 0.0 && c.max_corrupted < 0.5)) {
    return absl::InvalidArgumentError(absl::StrCat("dropout (", c.max_dropout, ") and corruption (", c.max_corrupted,
                                                   ") fractions must be in [0, 0.5)"));
  }
  const int n = c.num_clients;
  const double per_client = kLog2Failure - std::log2(static_cast<double>(n));
  for (int k = 2; k < n - 1; k += 2) {
    for (int t = k / 2 + 1; t <= k; ++t) {
      if (Log2LowerTail(k, 1.0 - c.max_dropout, t) <= per_client &&
          Log2UpperTail(k, c.max_corrupted, t) <= per_client) {
        return SecAggParams::Create(c, k, t);
      }
    }
  }
  // Complete graph: the largest t that still tolerates the dropout fraction.
  const int k = n - 1;
  int t = std::max(k / 2 + 1, static_cast<int>(std::floor(k * (1.0 - c.max_dropout))));
  t = std::min(t, k);
  return SecAggParams::Create(c, k, t);
}

absl::StatusOr<SecAggParams> ParamsOfTask(uint64_t round_id, uint32_t cohort_size, const v1::SecAggSettings& s) {
  SecAggConfig c;
  c.round_id = round_id;
  c.num_clients = static_cast<int>(cohort_size);
  c.bits = static_cast<int>(s.bits());
  c.vector_length = s.vector_length();
  c.max_dropout = s.max_dropout();
  c.max_corrupted = s.max_corrupted();
  if (s.graph_seed().size() != c.graph_seed.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("secagg.graph_seed has ", s.graph_seed().size(), " bytes, not ", c.graph_seed.size()));
  }
  std::memcpy(c.graph_seed.data(), s.graph_seed().data(), c.graph_seed.size());
  return SecAggParams::Create(c, static_cast<int>(s.degree()), static_cast<int>(s.threshold()));
}

}  // namespace tinyfed::secagg
