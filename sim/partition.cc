#include "tinyfed/sim/partition.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"

namespace tinyfed::sim {

absl::StatusOr<Partition> IidPartition(size_t num_samples, int clients, uint64_t seed) {
  if (clients < 1 || num_samples < static_cast<size_t>(clients)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot split ", num_samples, " samples among ", clients, " clients"));
  }
  std::vector<size_t> order(num_samples);
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  Partition out(static_cast<size_t>(clients));
  for (size_t i = 0; i < num_samples; ++i) out[i % out.size()].push_back(order[i]);
  return out;
}

absl::StatusOr<Partition> DirichletLabelPartition(std::span<const int> labels, int clients, double alpha, uint64_t seed,
                                                  size_t min_size) {
  if (!(alpha > 0.0) || clients < 1) {
    return absl::InvalidArgumentError(absl::StrCat("need alpha > 0 and clients >= 1, got ", alpha, " and ", clients));
  }
  if (labels.size() < static_cast<size_t>(clients) * min_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels.size(), " samples cannot give ", clients, " clients ", min_size, " each"));
  }
  std::map<int, std::vector<size_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(i);
  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> gamma(alpha, 1.0);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    Partition out(static_cast<size_t>(clients));
    for (auto& [label, indices] : by_class) {
      std::shuffle(indices.begin(), indices.end(), rng);
      std::vector<double> p(out.size());
      double total = 0.0;
      for (double& v : p) total += (v = gamma(rng));
      if (!(total > 0.0)) continue;
      // Cut points from the cumulative proportions.
      double cumulative = 0.0;
      size_t begin = 0;
      for (size_t c = 0; c < out.size(); ++c) {
        cumulative += p[c] / total;
        const size_t end = c + 1 == out.size()
                               ? indices.size()
                               : std::min(indices.size(), static_cast<size_t>(cumulative * indices.size()));
        out[c].insert(out[c].end(), indices.begin() + static_cast<std::ptrdiff_t>(begin),
                      indices.begin() + static_cast<std::ptrdiff_t>(std::max(begin, end)));
        begin = std::max(begin, end);
      }
    }
    if (std::all_of(out.begin(), out.end(), [&](const auto& part) { return part.size() >= min_size; })) {
      for (auto& part : out) std::sort(part.begin(), part.end());
      return out;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("no Dirichlet(", alpha, ") split in 1000 draws gave every one of ",
                                                 clients, " clients ", min_size, " samples"));
}

}  // namespace tinyfed::sim
